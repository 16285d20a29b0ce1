//! The agency's databases that mappings query: SQLite and PostgreSQL pools, bound-parameter queries, health.
//! It owns connections and SQL execution; it must not build XML or know which request is asking.

mod pgvalue;
pub mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::DatasourceConfig;

pub use postgres::PgPool;
pub use sqlite::SqlitePool;

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
    #[error(
        "datasource `{name}`: the statement ran longer than its timeout of {timeout:?} and was cancelled"
    )]
    Timeout { name: String, timeout: Duration },
    #[error("datasource `{name}`: PostgreSQL configuration: {message}")]
    PgConfig { name: String, message: String },
    #[error("datasource `{name}`: PostgreSQL is unreachable: {message}")]
    PgUnavailable { name: String, message: String },
    #[error("datasource `{name}`: {message}")]
    Pg { name: String, message: String },
    #[error(
        "datasource `{name}`: column `{column}` has PostgreSQL type `{pg_type}`, which mappings cannot read; cast it in the SQL (e.g. `{column}::text`)"
    )]
    UnsupportedType {
        name: String,
        column: String,
        pg_type: String,
    },
    #[error("datasource `{name}`: cannot start the PostgreSQL driver runtime: {source}")]
    Runtime {
        name: String,
        source: std::io::Error,
    },
}

/// A parameter value, typed by the mapping, bound to a statement placeholder (never spliced into SQL).
#[derive(Debug, Clone, PartialEq)]
pub enum BindValue {
    Null,
    Text(String),
    Int(i64),
    /// A validated xs:decimal lexical form.
    Decimal(String),
    /// `YYYY-MM-DD`.
    Date(String),
    /// xs:dateTime lexical form.
    DateTime(String),
    Bool(bool),
    /// A repeated element: SQLite receives a JSON array (use `json_each(:p)`), PostgreSQL an array (`= ANY(:p)`).
    List(Vec<BindValue>),
}

impl BindValue {
    /// The value as text, the way both databases read literals of its type (None for NULL).
    pub fn as_text(&self) -> Option<String> {
        match self {
            BindValue::Null => None,
            BindValue::Text(s)
            | BindValue::Decimal(s)
            | BindValue::Date(s)
            | BindValue::DateTime(s) => Some(s.clone()),
            BindValue::Int(i) => Some(i.to_string()),
            BindValue::Bool(b) => Some(b.to_string()),
            BindValue::List(items) => Some(pg_array_literal(items)),
        }
    }

    /// The JSON form of a list for SQLite's `json_each`.
    pub fn json(&self) -> String {
        match self {
            BindValue::Null => "null".into(),
            BindValue::Int(i) => i.to_string(),
            BindValue::Bool(b) => b.to_string(),
            BindValue::Decimal(d) => d.trim_start_matches('+').to_string(),
            BindValue::Text(s) | BindValue::Date(s) | BindValue::DateTime(s) => json_string(s),
            BindValue::List(items) => {
                let inner: Vec<String> = items.iter().map(BindValue::json).collect();
                format!("[{}]", inner.join(","))
            }
        }
    }
}

impl std::fmt::Display for BindValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindValue::Null => f.write_str("NULL"),
            BindValue::Text(s) => write!(f, "{s:?}"),
            BindValue::Int(i) => write!(f, "{i}"),
            BindValue::Decimal(s) | BindValue::Date(s) | BindValue::DateTime(s) => f.write_str(s),
            BindValue::Bool(b) => write!(f, "{b}"),
            BindValue::List(items) => {
                f.write_str("[")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{v}")?;
                }
                f.write_str("]")
            }
        }
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `{"a","b"}`: a PostgreSQL array in text form, every element quoted and escaped.
fn pg_array_literal(items: &[BindValue]) -> String {
    let mut out = String::from("{");
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match v.as_text() {
            None => out.push_str("NULL"),
            Some(t) => {
                out.push('"');
                for c in t.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
    out
}

/// One statement to run: SQL with `:name` placeholders and the values to bind by name.
pub struct Statement<'a> {
    /// The SQL as written in the mapping, with `:name` placeholders.
    pub sql: &'a str,
    /// For PostgreSQL: the same SQL with `$n` placeholders, and the parameter name of each `$n`.
    pub positional: &'a PositionalSql,
    pub params: &'a [(&'a str, BindValue)],
    pub max_rows: usize,
    pub timeout: Duration,
    /// Runs in a read-write transaction instead of on a read-only connection.
    pub writes: bool,
    /// Rolls the write transaction back instead of committing (dry runs).
    pub rollback: bool,
}

/// SQL rewritten from `:name` to `$n` placeholders (PostgreSQL's form), computed once per mapping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PositionalSql {
    pub sql: String,
    pub names: Vec<String>,
}

/// Rows as text, the form every response value is written in. `None` is SQL NULL.
/// Dates come as `YYYY-MM-DD`, timestamps as `YYYY-MM-DDTHH:MM:SS[.f][Z]`, booleans as `true`/`false`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

/// One configured datasource.
pub enum Datasource {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Datasource {
    pub fn kind(&self) -> &'static str {
        match self {
            Datasource::Sqlite(_) => "sqlite",
            Datasource::Postgres(_) => "postgres",
        }
    }

    /// Runs one statement with its parameters bound.
    pub fn run(&self, stmt: &Statement<'_>) -> Result<Rows, DatasourceError> {
        match self {
            Datasource::Sqlite(p) => p.run(stmt),
            Datasource::Postgres(p) => p.run(stmt),
        }
    }

    /// Prepares the statement without running it: its result columns and its placeholder names.
    pub fn describe(
        &self,
        sql: &str,
        positional: &PositionalSql,
    ) -> Result<Vec<String>, DatasourceError> {
        match self {
            Datasource::Sqlite(p) => p.describe(sql),
            Datasource::Postgres(p) => p.describe(&positional.sql),
        }
    }

    pub fn ping(&self) -> Result<(), DatasourceError> {
        match self {
            Datasource::Sqlite(p) => p.ping(),
            Datasource::Postgres(p) => p.ping(),
        }
    }
}

/// All configured datasources by name, opened once at start.
#[derive(Clone, Default)]
pub struct Datasources {
    by_name: BTreeMap<String, Arc<Datasource>>,
}

impl Datasources {
    /// Opens every datasource. SQLite files must open; a PostgreSQL server may be down (it is
    /// connected lazily, so the node starts and answers FAILURE until the database returns).
    pub fn open(
        configs: &BTreeMap<String, DatasourceConfig>,
    ) -> Result<Datasources, DatasourceError> {
        let mut by_name = BTreeMap::new();
        for (name, cfg) in configs {
            let ds = match cfg {
                DatasourceConfig::Sqlite(sqlite) => {
                    Datasource::Sqlite(SqlitePool::open(name, sqlite)?)
                }
                DatasourceConfig::Postgres(pg) => Datasource::Postgres(PgPool::open(name, pg)?),
            };
            by_name.insert(name.clone(), Arc::new(ds));
        }
        Ok(Datasources { by_name })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Datasource>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    /// (name, open, idle, max) SQLite read connections per datasource, for /metrics (PostgreSQL: its pool's).
    pub fn pool_stats(&self) -> Vec<(String, usize, usize, usize)> {
        self.by_name
            .iter()
            .map(|(n, d)| {
                let (open, idle, max) = match d.as_ref() {
                    Datasource::Sqlite(p) => p.stats(),
                    Datasource::Postgres(p) => p.stats(),
                };
                (n.clone(), open, idle, max)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_literals_quote_and_escape_every_element() {
        let list = BindValue::List(vec![
            BindValue::Text("a\"b".into()),
            BindValue::Text("c\\d".into()),
            BindValue::Int(3),
            BindValue::Null,
        ]);
        assert_eq!(
            list.as_text().as_deref(),
            Some(r#"{"a\"b","c\\d","3",NULL}"#)
        );
        assert_eq!(list.json(), r#"["a\"b","c\\d",3,null]"#);
    }
}
