//! SQLite datasources: a pool of read-only connections with cached prepared statements, a lazily
//! opened writer for mappings that write, statement timeouts. It must not build XML.

use std::sync::{Condvar, Mutex};
use std::time::Instant;

use rusqlite::{Connection, OpenFlags, types::ValueRef};

use super::{BindValue, DatasourceError, Rows, Statement};
use crate::config::SqliteDatasource;

/// How many SQLite VM steps run between two checks of the statement deadline.
const PROGRESS_STEPS: i32 = 1000;

/// A small pool of read-only SQLite connections; statements are prepared once per connection and cached.
struct Slots {
    idle: Vec<Connection>,
    open: usize,
    /// Requests waiting for a connection: a returned one wakes a waiter only when there is one.
    waiting: usize,
}

pub struct SqlitePool {
    name: String,
    cfg: SqliteDatasource,
    /// Read connections: at most `pool_size` open, kept for the node's life so their prepared
    /// statements stay cached; a request waits for a free one rather than opening another.
    slots: Mutex<Slots>,
    returned: Condvar,
    /// Opened on the first write: the database stays read-only unless a mapping writes.
    writer: Mutex<Option<Connection>>,
}

impl SqlitePool {
    pub fn open(name: &str, cfg: &SqliteDatasource) -> Result<SqlitePool, DatasourceError> {
        let pool = SqlitePool {
            name: name.to_string(),
            cfg: cfg.clone(),
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
                waiting: 0,
            }),
            returned: Condvar::new(),
            writer: Mutex::new(None),
        };
        let first = pool.take()?;
        pool.put_back(first);
        Ok(pool)
    }

    fn connect(&self, write: bool) -> Result<Connection, DatasourceError> {
        let mode = if write {
            OpenFlags::SQLITE_OPEN_READ_WRITE
        } else {
            OpenFlags::SQLITE_OPEN_READ_ONLY
        };
        let flags = mode | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open_err = |source| DatasourceError::Open {
            name: self.name.clone(),
            path: self.cfg.path.clone(),
            source,
        };
        let conn = Connection::open_with_flags(&self.cfg.path, flags).map_err(open_err)?;
        conn.busy_timeout(self.cfg.busy_timeout).map_err(open_err)?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(conn)
    }

    /// An idle connection, a new one while fewer than `pool_size` are open, or else the next one returned.
    fn take(&self) -> Result<Connection, DatasourceError> {
        let max = self.cfg.pool_size.max(1);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(c) = slots.idle.pop() {
                return Ok(c);
            }
            if slots.open < max {
                slots.open += 1;
                drop(slots);
                return self.connect(false).inspect_err(|_| {
                    let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
                    slots.open -= 1;
                });
            }
            slots.waiting += 1;
            slots = self.returned.wait(slots).unwrap_or_else(|p| p.into_inner());
            slots.waiting -= 1;
        }
    }

    fn put_back(&self, conn: Connection) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.idle.push(conn);
        let wake = slots.waiting > 0;
        drop(slots);
        // std's notify_one makes a futex call even with no waiter; skip it on the common path.
        if wake {
            self.returned.notify_one();
        }
    }

    /// (open, idle, max) read connections, for /metrics.
    pub fn stats(&self) -> (usize, usize, usize) {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        (slots.open, slots.idle.len(), self.cfg.pool_size.max(1))
    }

    fn err(&self, source: rusqlite::Error) -> DatasourceError {
        DatasourceError::Query {
            name: self.name.clone(),
            source,
        }
    }

    /// Runs the statement with every `:name` bound, returning at most `max_rows` rows.
    pub fn run(&self, stmt: &Statement<'_>) -> Result<Rows, DatasourceError> {
        if stmt.writes {
            // A panic while holding the writer cannot leave it half-written: SQLite rolls back.
            let mut guard = self.writer.lock().unwrap_or_else(|e| e.into_inner());
            let conn = match guard.as_mut() {
                Some(c) => c,
                None => guard.insert(self.connect(true)?),
            };
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.err(e))?;
            let rows = self.query_on(&tx, stmt)?;
            if stmt.rollback {
                tx.rollback().map_err(|e| self.err(e))?;
            } else {
                tx.commit().map_err(|e| self.err(e))?;
            }
            return Ok(rows);
        }
        let conn = self.take()?;
        let result = self.query_on(&conn, stmt);
        self.put_back(conn);
        result
    }

    fn query_on(&self, conn: &Connection, stmt: &Statement<'_>) -> Result<Rows, DatasourceError> {
        let deadline = Instant::now() + stmt.timeout;
        conn.progress_handler(PROGRESS_STEPS, Some(move || Instant::now() > deadline));
        let result = self.query_inner(conn, stmt);
        conn.progress_handler(PROGRESS_STEPS, None::<fn() -> bool>);
        result.map_err(|e| match e {
            QueryError::Sql(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::OperationInterrupted =>
            {
                DatasourceError::Timeout {
                    name: self.name.clone(),
                    timeout: stmt.timeout,
                }
            }
            QueryError::Sql(source) => self.err(source),
            QueryError::TooMany(limit) => DatasourceError::TooManyRows {
                name: self.name.clone(),
                limit,
            },
        })
    }

    fn query_inner(&self, conn: &Connection, stmt: &Statement<'_>) -> Result<Rows, QueryError> {
        let mut prepared = conn.prepare_cached(stmt.sql)?;
        prepared.clear_bindings();
        for (name, value) in stmt.params {
            let Some(i) = prepared.parameter_index(&format!(":{name}"))? else {
                continue;
            };
            match value {
                BindValue::Null => prepared.raw_bind_parameter(i, rusqlite::types::Null)?,
                BindValue::Text(s) | BindValue::Date(s) | BindValue::DateTime(s) => {
                    prepared.raw_bind_parameter(i, s.as_str())?
                }
                BindValue::Int(n) => prepared.raw_bind_parameter(i, *n)?,
                BindValue::Decimal(d) => match d.parse::<f64>() {
                    Ok(f) => prepared.raw_bind_parameter(i, f)?,
                    Err(_) => prepared.raw_bind_parameter(i, d.as_str())?,
                },
                BindValue::Bool(b) => prepared.raw_bind_parameter(i, i64::from(*b))?,
                BindValue::List(_) => prepared.raw_bind_parameter(i, value.json())?,
            }
        }
        let columns: Vec<String> = prepared
            .column_names()
            .into_iter()
            .map(str::to_string)
            .collect();
        let width = columns.len();
        let mut rows = Vec::new();
        let mut raw = prepared.raw_query();
        while let Some(row) = raw.next()? {
            if rows.len() == stmt.max_rows {
                return Err(QueryError::TooMany(stmt.max_rows));
            }
            let mut values = Vec::with_capacity(width);
            for i in 0..width {
                values.push(text_of(row.get_ref(i)?));
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
            .map_err(|e| self.err(e));
        self.put_back(conn);
        result
    }

    pub fn ping(&self) -> Result<(), DatasourceError> {
        let conn = self.take()?;
        let result = conn
            .query_row("SELECT 1", [], |_| Ok(()))
            .map_err(|e| self.err(e));
        self.put_back(conn);
        result
    }
}

enum QueryError {
    Sql(rusqlite::Error),
    TooMany(usize),
}

impl From<rusqlite::Error> for QueryError {
    fn from(e: rusqlite::Error) -> Self {
        QueryError::Sql(e)
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
