//! PostgreSQL datasources: a deadpool of tokio-postgres connections (TLS optional) driven by a small
//! runtime of their own, so blocking-pool threads and the CLI call them synchronously. It must not build XML.
//!
//! Statement timeouts are the server's `statement_timeout`, set on a pooled connection only when it
//! differs from what that connection already has: a client-side timer would cost a cross-thread wakeup
//! on every query (measured: roughly tripling the time of a single-row lookup).

use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime,
};
use futures_util::Stream;
use std::collections::HashMap;
use std::future::poll_fn;
use std::pin::pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::pgvalue::{self, PgParam, PgText};
use super::{DatasourceError, Rows, Statement};
use crate::config::{PgTls, PostgresDatasource};

/// How the pool's connections negotiate TLS.
enum Tls {
    Off,
    On(postgres_openssl::MakeTlsConnector),
}

/// Detects a dead server while a query waits for its answer.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
const KEEPALIVE_RETRIES: u32 = 3;

/// A pool of PostgreSQL connections with per-connection prepared-statement caches.
pub struct PgPool {
    name: String,
    pool: Pool,
    /// The `statement_timeout` (ms) each pooled connection was last given.
    timeouts: Mutex<HashMap<deadpool_postgres::ObjectId, u64>>,
    /// Drives the connections; `Option` only so that `Drop` can shut it down without blocking.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for PgPool {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PgPool {
    /// Builds the pool without connecting: a server that is down now is retried on each use.
    pub fn open(name: &str, cfg: &PostgresDatasource) -> Result<PgPool, DatasourceError> {
        let config_err = |message: String| DatasourceError::PgConfig {
            name: name.to_string(),
            message,
        };
        let mut pg: tokio_postgres::Config = cfg
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| config_err(e.to_string()))?;
        pg.connect_timeout(cfg.connect_timeout)
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .keepalives_interval(KEEPALIVE_INTERVAL)
            .keepalives_retries(KEEPALIVE_RETRIES)
            .tcp_user_timeout(KEEPALIVE_IDLE);
        // Read-only unless a mapping declares that it writes (writes open READ WRITE transactions).
        let options = format!(
            "{} -c default_transaction_read_only=on",
            pg.get_options().unwrap_or("")
        );
        pg.options(options.trim());
        if pg.get_application_name().is_none() {
            pg.application_name("smev-adapter");
        }
        let tls = match &cfg.tls {
            PgTls::Off => Tls::Off,
            PgTls::On { ca_file } => {
                pg.ssl_mode(tokio_postgres::config::SslMode::Require);
                let mut builder =
                    openssl::ssl::SslConnector::builder(openssl::ssl::SslMethod::tls())
                        .map_err(|e| config_err(e.to_string()))?;
                if let Some(ca) = ca_file {
                    // The file's certificates are the only roots trusted (like libpq's sslrootcert).
                    let ca_err = |e: String| config_err(format!("ca_file {}: {e}", ca.display()));
                    let pem = std::fs::read(ca).map_err(|e| ca_err(e.to_string()))?;
                    let certs = openssl::x509::X509::stack_from_pem(&pem)
                        .map_err(|e| ca_err(e.to_string()))?;
                    if certs.is_empty() {
                        return Err(ca_err("holds no PEM certificate".into()));
                    }
                    let mut store = openssl::x509::store::X509StoreBuilder::new()
                        .map_err(|e| ca_err(e.to_string()))?;
                    for cert in certs {
                        store.add_cert(cert).map_err(|e| ca_err(e.to_string()))?;
                    }
                    builder.set_cert_store(store.build());
                }
                Tls::On(postgres_openssl::MakeTlsConnector::new(builder.build()))
            }
        };
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match tls {
            Tls::Off => Manager::from_config(pg, NoTls, manager_config),
            Tls::On(connector) => Manager::from_config(pg, connector, manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(cfg.connect_timeout))
            .create_timeout(Some(cfg.connect_timeout))
            .build()
            .map_err(|e| config_err(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(format!("pg-{name}"))
            .enable_all()
            .build()
            .map_err(|source| DatasourceError::Runtime {
                name: name.to_string(),
                source,
            })?;
        Ok(PgPool {
            name: name.to_string(),
            pool,
            timeouts: Mutex::new(HashMap::new()),
            rt: Some(rt),
        })
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt
            .as_ref()
            .expect("the driver runtime lives until the pool is dropped")
            .block_on(f)
    }

    fn pg_err(&self, e: tokio_postgres::Error) -> DatasourceError {
        if e.code() == Some(&SqlState::QUERY_CANCELED) {
            return DatasourceError::Timeout {
                name: self.name.clone(),
                timeout: Duration::ZERO,
            };
        }
        if e.is_closed() {
            return DatasourceError::PgUnavailable {
                name: self.name.clone(),
                message: with_causes(&e),
            };
        }
        let message = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.severity(), db.message()),
            None => with_causes(&e),
        };
        DatasourceError::Pg {
            name: self.name.clone(),
            message,
        }
    }

    fn pool_err(&self, e: PoolError) -> DatasourceError {
        let message = match &e {
            PoolError::Backend(inner) => with_causes(inner),
            other => with_causes(other),
        };
        DatasourceError::PgUnavailable {
            name: self.name.clone(),
            message,
        }
    }

    /// Runs the statement; the server cancels it when it outlives the mapping's timeout.
    pub fn run(&self, stmt: &Statement<'_>) -> Result<Rows, DatasourceError> {
        let result = self.block_on(async {
            let mut client = self.pool.get().await.map_err(|e| self.pool_err(e))?;
            self.set_timeout(&client, stmt.timeout).await?;
            if stmt.writes {
                let tx = client
                    .build_transaction()
                    .read_only(false)
                    .start()
                    .await
                    .map_err(|e| self.pg_err(e))?;
                let prepared = tx
                    .prepare_cached(&stmt.positional.sql)
                    .await
                    .map_err(|e| self.pg_err(e))?;
                let rows = self.collect(tx.client(), &prepared, stmt).await?;
                if stmt.rollback {
                    tx.rollback().await.map_err(|e| self.pg_err(e))?;
                } else {
                    tx.commit().await.map_err(|e| self.pg_err(e))?;
                }
                Ok(rows)
            } else {
                let prepared = client
                    .prepare_cached(&stmt.positional.sql)
                    .await
                    .map_err(|e| self.pg_err(e))?;
                self.collect(&client, &prepared, stmt).await
            }
        });
        result.map_err(|e| match e {
            DatasourceError::Timeout { name, .. } => DatasourceError::Timeout {
                name,
                timeout: stmt.timeout,
            },
            other => other,
        })
    }

    /// Gives the connection the statement timeout unless it already has it.
    async fn set_timeout(&self, client: &Object, timeout: Duration) -> Result<(), DatasourceError> {
        let ms = u64::try_from(timeout.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let id = Object::id(client);
        let current = self.timeouts.lock().ok().and_then(|t| t.get(&id).copied());
        if current == Some(ms) {
            return Ok(());
        }
        // `ms` is the mapping's own number, never request data.
        client
            .batch_execute(&format!("SET statement_timeout = {ms}"))
            .await
            .map_err(|e| self.pg_err(e))?;
        if let Ok(mut t) = self.timeouts.lock() {
            if t.len() > 4 * self.pool.status().max_size.max(1) {
                t.clear();
            }
            t.insert(id, ms);
        }
        Ok(())
    }

    async fn collect(
        &self,
        client: &tokio_postgres::Client,
        prepared: &tokio_postgres::Statement,
        stmt: &Statement<'_>,
    ) -> Result<Rows, DatasourceError> {
        let columns: Vec<String> = prepared
            .columns()
            .iter()
            .map(|c| c.name().to_string())
            .collect();
        self.check_types(prepared)?;
        let mut values: Vec<PgParam<'_>> = Vec::with_capacity(stmt.positional.names.len());
        for name in &stmt.positional.names {
            let value = stmt
                .params
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v)
                .unwrap_or(&super::BindValue::Null);
            values.push(PgParam(value));
        }
        let refs: Vec<&(dyn ToSql + Sync)> =
            values.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        let stream = client
            .query_raw(prepared, refs.iter().copied())
            .await
            .map_err(|e| self.pg_err(e))?;
        let mut stream = pin!(stream);
        let mut rows = Vec::new();
        while let Some(row) = poll_fn(|cx| stream.as_mut().poll_next(cx)).await {
            let row = row.map_err(|e| self.pg_err(e))?;
            if rows.len() == stmt.max_rows {
                return Err(DatasourceError::TooManyRows {
                    name: self.name.clone(),
                    limit: stmt.max_rows,
                });
            }
            let mut out = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                let v: PgText = row.try_get(i).map_err(|e| self.pg_err(e))?;
                out.push(v.0);
            }
            rows.push(out);
        }
        Ok(Rows { columns, rows })
    }

    fn check_types(&self, prepared: &tokio_postgres::Statement) -> Result<(), DatasourceError> {
        match prepared
            .columns()
            .iter()
            .find(|c| !pgvalue::supported(c.type_()))
        {
            Some(c) => Err(DatasourceError::UnsupportedType {
                name: self.name.clone(),
                column: c.name().to_string(),
                pg_type: c.type_().name().to_string(),
            }),
            None => Ok(()),
        }
    }

    /// Prepares `sql` (with `$n` placeholders) on the server, returning its result columns.
    pub fn describe(&self, sql: &str) -> Result<Vec<String>, DatasourceError> {
        self.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.pool_err(e))?;
            let prepared = client.prepare(sql).await.map_err(|e| self.pg_err(e))?;
            self.check_types(&prepared)?;
            Ok(prepared
                .columns()
                .iter()
                .map(|c| c.name().to_string())
                .collect())
        })
    }

    /// (open, idle, max) connections of the pool, for /metrics.
    pub fn stats(&self) -> (usize, usize, usize) {
        let st = self.pool.status();
        (st.size, st.available, st.max_size)
    }

    pub fn ping(&self) -> Result<(), DatasourceError> {
        self.block_on(async {
            let client = self.pool.get().await.map_err(|e| self.pool_err(e))?;
            client
                .simple_query("SELECT 1")
                .await
                .map_err(|e| self.pg_err(e))?;
            Ok(())
        })
    }
}

/// An error with its causes ("error performing TLS handshake: ... certificate verify failed").
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
        source = cause.source();
    }
    text
}
