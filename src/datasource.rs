//! The agency's databases that mappings query: connection pools, bound-parameter queries, health.
//! It owns connections and SQL execution; it must not build XML or know which request is asking.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, types::ValueRef};

use crate::config::{DatasourceConfig, SqliteDatasource};

#[derive(Debug, thiserror::Error)]
pub enum DatasourceError {
    #[error("datasource `{name}`: cannot open SQLite database {path}: {source}")]
    Open {
        name: String,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("datasource `{name}`: {source}")]
    Query {
        name: String,
        source: rusqlite::Error,
    },
    #[error("datasource `{name}`: the query returned more than {limit} rows")]
    TooManyRows { name: String, limit: usize },
}

/// Rows as text, the form every response value is written in. `None` is SQL NULL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// All configured datasources by name, opened once at start.
#[derive(Clone, Default)]
pub struct Datasources {
    by_name: BTreeMap<String, Arc<SqlitePool>>,
}

impl Datasources {
    pub fn open(
        configs: &BTreeMap<String, DatasourceConfig>,
    ) -> Result<Datasources, DatasourceError> {
        let mut by_name = BTreeMap::new();
        for (name, cfg) in configs {
            let pool = match cfg {
                DatasourceConfig::Sqlite(sqlite) => SqlitePool::open(name, sqlite)?,
            };
            by_name.insert(name.clone(), Arc::new(pool));
        }
        Ok(Datasources { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<SqlitePool>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// (name, open, idle, max) connections per pool, for /metrics.
    pub fn pool_stats(&self) -> Vec<(String, usize, usize, usize)> {
        self.by_name
            .iter()
            .map(|(n, p)| {
                let (open, idle) = p.slots.lock().map_or((0, 0), |s| (s.open, s.idle.len()));
                (n.clone(), open, idle, p.max)
            })
            .collect()
    }

    /// Each datasource's health, for /readyz.
    pub fn health(&self) -> Vec<(String, Result<(), String>)> {
        self.by_name
            .iter()
            .map(|(n, p)| (n.clone(), p.ping().map_err(|e| e.to_string())))
            .collect()
    }
}

/// A bounded pool of read-only SQLite connections; statements are prepared once per connection and cached,
/// so connections are kept for the node's life rather than opened per request.
pub struct SqlitePool {
    name: String,
    path: PathBuf,
    busy_timeout: Duration,
    slots: Mutex<Slots>,
    returned: Condvar,
    max: usize,
}

struct Slots {
    idle: Vec<Connection>,
    open: usize,
}

impl SqlitePool {
    pub fn open(name: &str, cfg: &SqliteDatasource) -> Result<SqlitePool, DatasourceError> {
        let pool = SqlitePool {
            name: name.to_string(),
            path: cfg.path.clone(),
            busy_timeout: cfg.busy_timeout,
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            returned: Condvar::new(),
            max: cfg.pool_size.max(1),
        };
        let first = pool.take()?;
        pool.put_back(first);
        Ok(pool)
    }

    fn connect(&self) -> Result<Connection, DatasourceError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let open_err = |source| DatasourceError::Open {
            name: self.name.clone(),
            path: self.path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(&self.path, flags).map_err(open_err)?;
        conn.busy_timeout(self.busy_timeout).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// An idle connection, a new one while fewer than `max` are open, or else the next one returned.
    fn take(&self) -> Result<Connection, DatasourceError> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = slots.idle.pop() {
                return Ok(c);
            }
            if slots.open < self.max {
                slots.open += 1;
                drop(slots);
                return self.connect().inspect_err(|_| {
                    let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                    slots.open -= 1;
                });
            }
            slots = self.returned.wait(slots).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn put_back(&self, conn: Connection) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.push(conn);
        drop(slots);
        self.returned.notify_one();
    }

    /// Runs `sql` with every `:name` bound from `params`, returning at most `max_rows` rows.
    pub fn query(
        &self,
        sql: &str,
        params: &[(&str, &str)],
        max_rows: usize,
    ) -> Result<Rows, DatasourceError> {
        let conn = self.take()?;
        let result = self.query_on(&conn, sql, params, max_rows);
        self.put_back(conn);
        result
    }

    fn query_on(
        &self,
        conn: &Connection,
        sql: &str,
        params: &[(&str, &str)],
        max_rows: usize,
    ) -> Result<Rows, DatasourceError> {
        let q = |source| DatasourceError::Query {
            name: self.name.clone(),
            source,
        };
        let mut stmt = conn.prepare_cached(sql).map_err(q)?;
        for (name, value) in params {
            let index = stmt.parameter_index(&format!(":{name}")).map_err(q)?;
            if let Some(i) = index {
                stmt.raw_bind_parameter(i, *value).map_err(q)?;
            }
        }
        let columns: Vec<String> = stmt
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut raw = stmt.raw_query();
        while let Some(row) = raw.next().map_err(q)? {
            if rows.len() == max_rows {
                return Err(DatasourceError::TooManyRows {
                    name: self.name.clone(),
                    limit: max_rows,
                });
            }
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(text_of(row.get_ref(i).map_err(q)?));
            }
            rows.push(values);
        }
        Ok(Rows { columns, rows })
    }

    /// Checks that `sql` prepares, returning its result column names (for `check`).
    pub fn describe(&self, sql: &str) -> Result<Vec<String>, DatasourceError> {
        let conn = self.take()?;
        let result = conn
            .prepare(sql)
            .map(|s| s.column_names().into_iter().map(str::to_string).collect())
            .map_err(|source| DatasourceError::Query {
                name: self.name.clone(),
                source,
            });
        self.put_back(conn);
        result
    }

    pub fn ping(&self) -> Result<(), DatasourceError> {
        let conn = self.take()?;
        let result = conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|source| DatasourceError::Query {
                name: self.name.clone(),
                source,
            });
        self.put_back(conn);
        result
    }
}

fn text_of(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
    }
}
