//! The two datasource kinds every mapping test runs on: a fresh SQLite file, and a uniquely named
//! schema in the real PostgreSQL (SMEV_TEST_PG_URL), dropped afterwards. A missing PostgreSQL fails.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use tokio_postgres::NoTls;

pub const PG_ENV: &str = "SMEV_TEST_PG_URL";

/// The PostgreSQL URL the tests use; panics (fails the test) when it is not set.
pub fn pg_url() -> String {
    match std::env::var(PG_ENV) {
        Ok(u) if !u.is_empty() => u,
        _ => panic!(
            "{PG_ENV} is not set: the mapping tests run against PostgreSQL too. Run ./scripts/test.sh, \
             or export {PG_ENV}=postgresql://postgres@127.0.0.1:5432/test with PostgreSQL running"
        ),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `sql` (several statements) on PostgreSQL, optionally inside `schema`.
pub fn pg_batch(schema: Option<&str>, sql: &str) {
    let url = pg_url();
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url} ({PG_ENV}) is unreachable: {e}"));
        let driver = tokio::spawn(conn);
        if let Some(s) = schema {
            client
                .batch_execute(&format!("SET search_path TO {s}"))
                .await
                .expect("search_path");
        }
        client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL setup failed: {e}\n{sql}"));
        drop(client);
        let _ = driver.await;
    });
}

/// Which database a backend is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// One prepared database holding the test's tables.
pub struct Backend {
    pub kind: Kind,
    pub dir: tempfile::TempDir,
    pub sqlite_path: PathBuf,
    pub pg_schema: Option<String>,
}

impl Backend {
    /// A SQLite file with `setup` applied.
    pub fn sqlite(setup: &str) -> Backend {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("test.db");
        let conn = rusqlite::Connection::open(&path).expect("sqlite");
        conn.execute_batch(setup).expect("sqlite setup");
        Backend {
            kind: Kind::Sqlite,
            dir,
            sqlite_path: path,
            pg_schema: None,
        }
    }

    /// A new PostgreSQL schema with `setup` applied in it.
    pub fn postgres(setup: &str) -> Backend {
        let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
        pg_batch(None, &format!("CREATE SCHEMA {schema}"));
        pg_batch(Some(&schema), setup);
        let dir = tempfile::tempdir().expect("tempdir");
        Backend {
            kind: Kind::Postgres,
            sqlite_path: dir.path().join("unused.db"),
            dir,
            pg_schema: Some(schema),
        }
    }

    /// Both kinds, SQLite first, with the same setup.
    pub fn both(setup: &str) -> Vec<Backend> {
        vec![Backend::sqlite(setup), Backend::postgres(setup)]
    }

    /// The PostgreSQL URL that puts this backend's schema first on the search path.
    pub fn pg_url_with_schema(&self) -> String {
        let url = pg_url();
        let schema = self.pg_schema.as_deref().unwrap_or("public");
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}options=-c%20search_path%3D{schema}")
    }

    /// The `[datasources.NAME]` table for adapter.toml.
    pub fn datasource_toml(&self, name: &str) -> String {
        match self.kind {
            Kind::Sqlite => format!(
                "[datasources.{name}]\nkind = \"sqlite\"\npath = \"{}\"\n",
                self.sqlite_path.display()
            ),
            Kind::Postgres => format!(
                "[datasources.{name}]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 4\nconnect_timeout = \"5s\"\n",
                self.pg_url_with_schema()
            ),
        }
    }

    /// Runs `sql` on this backend (for checking effects).
    pub fn exec(&self, sql: &str) {
        match self.kind {
            Kind::Sqlite => rusqlite::Connection::open(&self.sqlite_path)
                .expect("open")
                .execute_batch(sql)
                .expect("exec"),
            Kind::Postgres => pg_batch(self.pg_schema.as_deref(), sql),
        }
    }

    /// A single integer from `sql`.
    pub fn count(&self, sql: &str) -> i64 {
        match self.kind {
            Kind::Sqlite => rusqlite::Connection::open(&self.sqlite_path)
                .expect("open")
                .query_row(sql, [], |r| r.get(0))
                .expect("count"),
            Kind::Postgres => {
                let url = self.pg_url_with_schema();
                runtime().block_on(async {
                    let (client, conn) =
                        tokio_postgres::connect(&url, NoTls).await.expect("connect");
                    let driver = tokio::spawn(conn);
                    let row = client.query_one(sql, &[]).await.expect("count");
                    let n: i64 = row.get(0);
                    drop(client);
                    let _ = driver.await;
                    n
                })
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(schema) = &self.pg_schema {
            let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
            // Never panic in drop (a failing test is already unwinding).
            let url = pg_url();
            let _ = std::panic::catch_unwind(|| {
                runtime().block_on(async {
                    if let Ok((client, conn)) = tokio_postgres::connect(&url, NoTls).await {
                        let driver = tokio::spawn(conn);
                        let _ = client.batch_execute(&sql).await;
                        drop(client);
                        let _ = driver.await;
                    }
                })
            });
        }
    }
}

/// A folder with an adapter.toml (node settings + `datasources`) and a mappings/ folder holding `mappings`.
pub fn workspace(datasources: &str, mappings: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = dir.path().join("mappings");
    std::fs::create_dir(&m).expect("mappings dir");
    for (name, text) in mappings {
        std::fs::write(m.join(name), text).expect("write mapping");
    }
    let repo = super::repo();
    let config = format!(
        "[node]\nmnemonic = \"TEST_NODE\"\nreply = \"sync\"\n\n[server]\nlisten = \"127.0.0.1:0\"\nplain_http = true\nwsdl_dir = \"{}/wsdl\"\n\n[storage]\ndata_dir = \"{}/data\"\n\n[mappings]\ndir = \"mappings\"\n\n{datasources}",
        repo.display(),
        dir.path().display()
    );
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

/// Loads a workspace's config.
pub fn load_config(path: &Path) -> smev_adapter::config::Config {
    smev_adapter::config::Config::load(path).unwrap_or_else(|p| panic!("config invalid:\n{p}"))
}
