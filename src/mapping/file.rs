//! Mapping files on disk → validated [`Mapping`]s, with every problem located at file:line.
//! It must not execute queries; it only prepares them (and compiles XSDs) to prove they are valid.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;

use super::{
    Field, Group, Mapping, OnNoRows, Param, PrefixedName, QName, ResponseShape, Senders, ValueType,
    Xsd, problem_at, sql,
};
use crate::datasource::{BindValue, Datasources};
use crate::diag::Problem;
use crate::tomlfile;

/// The statement timeout when [query] names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The row limit when the mapping names none.
pub const DEFAULT_MAX_ROWS: usize = 100;
/// The item limit of a repeated parameter when it names none.
pub const DEFAULT_MAX_ITEMS: usize = 1000;

#[derive(Deserialize)]
struct RawMapping {
    request: String,
    datasource: String,
    #[serde(default)]
    allowed_senders: Option<Vec<String>>,
    #[serde(default)]
    deadline: Option<String>,
    #[serde(default)]
    namespaces: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, RawParam>,
    query: RawQuery,
    response: RawResponse,
    #[serde(default)]
    on_no_rows: Option<String>,
    #[serde(default)]
    max_rows: Option<usize>,
    #[serde(default)]
    xsd: RawXsd,
}

#[derive(Deserialize)]
struct RawParam {
    path: String,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    required: Option<bool>,
    #[serde(default)]
    default: Option<toml::Value>,
    #[serde(default)]
    pattern: Option<String>,
    #[serde(default)]
    min: Option<toml::Value>,
    #[serde(default)]
    max: Option<toml::Value>,
    #[serde(default)]
    min_length: Option<usize>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    repeated: Option<bool>,
    #[serde(default)]
    max_items: Option<usize>,
}

#[derive(Deserialize)]
struct RawQuery {
    sql: String,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    writes: Option<bool>,
}

#[derive(Deserialize)]
struct RawResponse {
    element: String,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    each: Option<Box<RawGroup>>,
}

#[derive(Deserialize)]
struct RawGroup {
    #[serde(default)]
    wrapper: Option<String>,
    element: String,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    each: Option<Box<RawGroup>>,
}

#[derive(Deserialize)]
struct RawField {
    column: String,
    element: String,
    #[serde(default, rename = "type")]
    ty: Option<String>,
    #[serde(default)]
    scale: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawXsd {
    #[serde(default)]
    request: Option<String>,
    #[serde(default)]
    response: Option<String>,
}

/// Loads every `*.toml` in `dir` (sorted by name). Returns the mappings that are valid and all problems.
pub fn load_dir(dir: &Path, datasource_names: &[String]) -> (Vec<Mapping>, Vec<Problem>) {
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return (
                Vec::new(),
                vec![Problem::whole_file(
                    dir,
                    format!("cannot read mappings directory: {e}"),
                )],
            );
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    let mut mappings: Vec<Mapping> = Vec::new();
    for file in files {
        let text = match std::fs::read_to_string(&file) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::whole_file(&file, format!("cannot read: {e}")));
                continue;
            }
        };
        let (mapping, file_problems) = load_file(&file, &text, datasource_names);
        problems.extend(file_problems);
        if let Some(m) = mapping {
            if let Some(other) = mappings.iter().find(|o| o.request == m.request) {
                problems.push(problem_at(
                    &file,
                    &text,
                    &["request"],
                    format!(
                        "request {} is already mapped by {}",
                        m.request,
                        other.file.display()
                    ),
                ));
            } else {
                mappings.push(m);
            }
        }
    }
    if mappings.is_empty() && problems.is_empty() {
        problems.push(Problem::whole_file(
            dir,
            "no mapping files (*.toml) found: the node would answer nothing",
        ));
    }
    (mappings, problems)
}

/// Parses and validates one mapping file's text.
pub fn load_file(
    file: &Path,
    text: &str,
    datasource_names: &[String],
) -> (Option<Mapping>, Vec<Problem>) {
    let parsed = tomlfile::parse::<RawMapping>(file, text);
    let mut problems = parsed.problems;
    let Some(raw) = parsed.value else {
        return (None, problems);
    };
    let mut v = Check {
        file,
        text,
        problems: &mut problems,
        namespaces: &raw.namespaces,
    };
    let mapping = v.mapping(&raw, datasource_names);
    (if problems.is_empty() { mapping } else { None }, problems)
}

/// Prepares the mapping's SQL on its datasource and checks the response's columns exist.
/// With `tolerate_unreachable`, a database that cannot be reached is logged and skipped (node start).
pub fn check_against_datasource(
    m: &Mapping,
    datasources: &Datasources,
    tolerate_unreachable: bool,
) -> Vec<Problem> {
    let Some(ds) = datasources.get(&m.datasource) else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(&m.file).unwrap_or_default();
    let columns = match ds.describe(&m.sql, &m.positional) {
        Ok(c) => c,
        Err(e @ crate::datasource::DatasourceError::PgUnavailable { .. })
            if tolerate_unreachable =>
        {
            tracing::warn!(
                mapping = %m.name,
                "{e}; its SQL is not checked now and it answers FAILURE until the database is back"
            );
            return Vec::new();
        }
        Err(e) => {
            return vec![problem_at(
                &m.file,
                &text,
                &["query", "sql"],
                format!("the datasource cannot prepare this SQL: {e}"),
            )];
        }
    };
    let mut problems = Vec::new();
    let returns = columns.join(", ");
    let missing = |c: &str| !columns.iter().any(|x| x.eq_ignore_ascii_case(c));
    let mut table: Vec<&str> = vec!["response"];
    check_fields(
        &m.file,
        &text,
        &table,
        &m.response.fields,
        &missing,
        &returns,
        &mut problems,
    );
    let mut group = m.response.each.as_deref();
    while let Some(g) = group {
        table.push("each");
        if let Some(k) = &g.key
            && missing(k)
        {
            let mut key = table.clone();
            key.push("key");
            problems.push(problem_at(
                &m.file,
                &text,
                &key,
                format!(
                    "group key column `{k}` is not returned by the query (it returns: {returns})"
                ),
            ));
        }
        check_fields(
            &m.file,
            &text,
            &table,
            &g.fields,
            &missing,
            &returns,
            &mut problems,
        );
        group = g.each.as_deref();
    }
    problems
}

fn check_fields(
    file: &Path,
    text: &str,
    table: &[&str],
    fields: &[Field],
    missing: &dyn Fn(&str) -> bool,
    returns: &str,
    problems: &mut Vec<Problem>,
) {
    for (i, f) in fields.iter().enumerate() {
        if missing(&f.column) {
            let span = array_item_span(text, table, "fields", i);
            problems.push(Problem::at_span(
                file,
                text,
                span,
                format!(
                    "response field column `{}` is not returned by the query (it returns: {returns})",
                    f.column
                ),
            ));
        }
    }
}

/// The span of item `index` of the array `key` inside the table at `table`.
fn array_item_span(text: &str, table: &[&str], key: &str, index: usize) -> Option<Range<usize>> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut current = root.get_ref();
    for step in table {
        let (_, v) = current.iter().find(|(k, _)| k.get_ref() == *step)?;
        match v.get_ref() {
            toml::de::DeValue::Table(t) => current = t,
            _ => return None,
        }
    }
    let (_, items) = current.iter().find(|(k, _)| k.get_ref() == key)?;
    let toml::de::DeValue::Array(items) = items.get_ref() else {
        return None;
    };
    items.get(index).map(|i| i.span())
}

struct Check<'a> {
    file: &'a Path,
    text: &'a str,
    problems: &'a mut Vec<Problem>,
    namespaces: &'a BTreeMap<String, String>,
}

fn toml_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Check<'_> {
    fn problem(&mut self, key: &[&str], message: String) {
        self.problems
            .push(problem_at(self.file, self.text, key, message));
    }

    fn mapping(&mut self, raw: &RawMapping, datasource_names: &[String]) -> Option<Mapping> {
        let request = self.clark_qname(&raw.request);
        if !datasource_names.iter().any(|d| d == &raw.datasource) {
            let known = if datasource_names.is_empty() {
                "none are configured".to_string()
            } else {
                datasource_names.join(", ")
            };
            self.problem(
                &["datasource"],
                format!(
                    "unknown datasource `{}` (adapter.toml defines: {known})",
                    raw.datasource
                ),
            );
        }
        let allowed_senders = self.senders(raw.allowed_senders.as_deref());
        let deadline = raw.deadline.as_ref().and_then(|d| {
            let parsed = crate::config::parse_duration(d).filter(|d| !d.is_zero());
            if parsed.is_none() {
                self.problem(
                    &["deadline"],
                    format!("deadline `{d}` is not a duration like 30s, 5m, 2h or 2d"),
                );
            }
            parsed
        });
        for (prefix, uri) in self.namespaces {
            if !is_ncname(prefix) || uri.is_empty() {
                self.problem(
                    &["namespaces", prefix],
                    format!("namespace prefix `{prefix}` must be a name and its URI non-empty"),
                );
            }
        }
        let params: Vec<Param> = raw
            .params
            .iter()
            .filter_map(|(name, p)| self.param(name, p))
            .collect();
        let writes = raw.query.writes.unwrap_or(false);
        self.check_sql_params(&raw.query.sql, &raw.params);
        let uses_message_id = sql::parameter_names(&raw.query.sql).contains("message_id");
        let timeout = match &raw.query.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => match crate::config::parse_duration(t).filter(|d| !d.is_zero()) {
                Some(d) => d,
                None => {
                    self.problem(
                        &["query", "timeout"],
                        format!("query timeout `{t}` is not a duration like 500ms, 5s or 1m"),
                    );
                    DEFAULT_TIMEOUT
                }
            },
        };
        let response = self.response(&raw.response);
        let on_no_rows = match raw.on_no_rows.as_deref() {
            None | Some("no_data") => OnNoRows::NoData,
            Some("empty") => OnNoRows::Empty,
            Some(other) => {
                self.problem(
                    &["on_no_rows"],
                    format!("on_no_rows `{other}` must be \"no_data\" or \"empty\""),
                );
                OnNoRows::NoData
            }
        };
        let max_rows = raw.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
        if max_rows == 0 {
            self.problem(&["max_rows"], "max_rows must be at least 1".into());
        }
        let request_xsd = self.xsd(&["xsd", "request"], raw.xsd.request.as_deref());
        let response_xsd = self.xsd(&["xsd", "response"], raw.xsd.response.as_deref());
        let name = self
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Some(Mapping {
            name,
            file: self.file.to_path_buf(),
            request: request?,
            datasource: raw.datasource.clone(),
            allowed_senders,
            deadline,
            params,
            sql: raw.query.sql.clone(),
            positional: sql::to_positional(&raw.query.sql),
            writes,
            uses_message_id,
            max_rows,
            timeout,
            on_no_rows,
            response: response?,
            request_xsd,
            response_xsd,
        })
    }

    fn senders(&mut self, raw: Option<&[String]>) -> Senders {
        let Some(list) = raw else {
            return Senders::Any;
        };
        if list.is_empty() {
            self.problem(
                &["allowed_senders"],
                "allowed_senders is empty: no one could ask; list mnemonics, or \"*\" for any sender".into(),
            );
        }
        if list.iter().any(|s| s == "*") {
            return Senders::Any;
        }
        for s in list {
            let ok = !s.is_empty()
                && s.len() <= 100
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !ok {
                self.problem(
                    &["allowed_senders"],
                    format!(
                        "allowed sender `{s}` is not a mnemonic (A-Z, a-z, 0-9, '_', '-') or \"*\""
                    ),
                );
            }
        }
        Senders::Only(list.to_vec())
    }

    fn xsd(&mut self, key: &[&str], raw: Option<&str>) -> Option<Xsd> {
        let raw = raw?;
        let base = self.file.parent().unwrap_or(Path::new(""));
        let path: PathBuf = if Path::new(raw).is_absolute() {
            PathBuf::from(raw)
        } else {
            base.join(raw)
        };
        match Xsd::load(&path) {
            Ok(x) => Some(x),
            Err(e) => {
                let shown = path.display().to_string();
                let message = if e.contains(&shown) {
                    format!("XSD {e}")
                } else {
                    format!("XSD {shown}: {e}")
                };
                self.problem(key, message);
                None
            }
        }
    }

    /// `{namespace}Local`, the form the request selector is written in.
    fn clark_qname(&mut self, text: &str) -> Option<QName> {
        let parsed = text
            .strip_prefix('{')
            .and_then(|rest| rest.split_once('}'))
            .filter(|(ns, local)| !ns.is_empty() && is_ncname(local));
        match parsed {
            Some((ns, local)) => Some(QName {
                namespace: ns.to_string(),
                local: local.to_string(),
            }),
            None => {
                self.problem(
                    &["request"],
                    format!("request `{text}` must be written as {{namespace-uri}}LocalName"),
                );
                None
            }
        }
    }

    /// `prefix:Local` resolved through the file's `namespaces` table.
    fn prefixed(&mut self, key: &[&str], text: &str) -> Option<PrefixedName> {
        let Some((prefix, local)) = text
            .split_once(':')
            .filter(|(p, l)| is_ncname(p) && is_ncname(l))
        else {
            self.problem(
                key,
                format!("`{text}` must be prefix:LocalName with a prefix from `namespaces`"),
            );
            return None;
        };
        match self.namespaces.get(prefix) {
            Some(ns) => Some(PrefixedName::new(prefix, local, ns)),
            None => {
                let known: Vec<&str> = self.namespaces.keys().map(String::as_str).collect();
                self.problem(
                    key,
                    format!(
                        "prefix `{prefix}` in `{text}` is not declared in `namespaces` (declared: {})",
                        known.join(", ")
                    ),
                );
                None
            }
        }
    }

    fn param(&mut self, name: &str, raw: &RawParam) -> Option<Param> {
        let key = |k: &'static str| ["params", name, k];
        if name == "message_id" {
            self.problem(
                &key("path"),
                "`message_id` is reserved: the node binds :message_id itself".into(),
            );
            return None;
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            self.problem(
                &key("path"),
                format!("parameter name `{name}` must be letters, digits and '_' (it is used as :{name})"),
            );
        }
        let mut path = Vec::new();
        let mut attribute = None;
        let steps: Vec<&str> = raw.path.split('/').collect();
        for (i, step) in steps.iter().enumerate() {
            if let Some(attr) = step.strip_prefix('@') {
                if i + 1 != steps.len() {
                    self.problem(
                        &key("path"),
                        format!("`@{attr}` must be the last step of a path"),
                    );
                    return None;
                }
                attribute = Some(if attr.contains(':') {
                    let p = self.prefixed(&key("path"), attr)?;
                    QName {
                        namespace: p.namespace,
                        local: p.local,
                    }
                } else if is_ncname(attr) {
                    QName {
                        namespace: String::new(),
                        local: attr.to_string(),
                    }
                } else {
                    self.problem(&key("path"), format!("`@{attr}` is not an attribute name"));
                    return None;
                });
                continue;
            }
            let p = self.prefixed(&key("path"), step)?;
            path.push(QName {
                namespace: p.namespace,
                local: p.local,
            });
        }
        let ty = match raw.ty.as_deref() {
            None => ValueType::String,
            Some(t) => match ValueType::parse_name(t) {
                Some(ty) => ty,
                None => {
                    self.problem(
                        &key("type"),
                        format!(
                            "type `{t}` of parameter `{name}` must be one of {}",
                            ValueType::NAMES
                        ),
                    );
                    return None;
                }
            },
        };
        let pattern = match &raw.pattern {
            None => None,
            Some(p) => match Regex::new(p) {
                Ok(re) => Some(re),
                Err(e) => {
                    let first_line = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    self.problem(
                        &key("pattern"),
                        format!("pattern of parameter `{name}` is not a valid regular expression: {first_line}"),
                    );
                    return None;
                }
            },
        };
        let typed =
            |this: &mut Self, k: &'static str, v: &Option<toml::Value>| -> Option<BindValue> {
                let v = v.as_ref()?;
                let text = toml_text(v);
                match ty.parse(&text) {
                    Ok(b) => Some(b),
                    Err(why) => {
                        this.problem(&key(k), format!("{k} `{text}` of parameter `{name}` {why}"));
                        None
                    }
                }
            };
        let default = typed(self, "default", &raw.default);
        let min = typed(self, "min", &raw.min);
        let max = typed(self, "max", &raw.max);
        if (raw.min.is_some() || raw.max.is_some()) && !ty.is_ordered() {
            let k = if raw.min.is_some() { "min" } else { "max" };
            self.problem(
                &key(k),
                format!("min/max apply to int, decimal and date parameters; `{name}` is {ty}"),
            );
        }
        let required = raw.required.unwrap_or(raw.default.is_none());
        if required && raw.default.is_some() {
            self.problem(
                &key("default"),
                format!("parameter `{name}` is required, so its default is never used; set required = false"),
            );
        }
        let repeated = raw.repeated.unwrap_or(false);
        if repeated && raw.default.is_some() {
            self.problem(
                &key("default"),
                format!("repeated parameter `{name}` cannot have a default (it is an empty list when absent)"),
            );
        }
        if raw.max_items.is_some() && !repeated {
            self.problem(
                &key("max_items"),
                format!(
                    "max_items applies to repeated parameters; set repeated = true on `{name}`"
                ),
            );
        }
        let max_items = raw
            .max_items
            .unwrap_or(if repeated { DEFAULT_MAX_ITEMS } else { 1 });
        if max_items == 0 {
            self.problem(&key("max_items"), "max_items must be at least 1".into());
        }
        if let (Some(a), Some(b)) = (raw.min_length, raw.max_length)
            && a > b
        {
            self.problem(
                &key("min_length"),
                format!("min_length {a} is above max_length {b}"),
            );
        }
        Some(Param {
            name: name.to_string(),
            path,
            attribute,
            path_text: raw.path.clone(),
            ty,
            required,
            default: if repeated { None } else { default },
            pattern,
            min,
            max,
            min_length: raw.min_length,
            max_length: raw.max_length,
            repeated,
            max_items,
        })
    }

    fn check_sql_params(&mut self, sql_text: &str, params: &BTreeMap<String, RawParam>) {
        let used = sql::parameter_names(sql_text);
        for name in used
            .iter()
            .filter(|u| **u != "message_id" && !params.contains_key(**u))
        {
            self.problem(
                &["query", "sql"],
                format!("the SQL uses :{name} but [params] does not declare `{name}`"),
            );
        }
        for p in params.keys().filter(|p| !used.contains(p.as_str())) {
            self.problem(
                &["params", p, "path"],
                format!("parameter `{p}` is declared but the SQL never uses :{p}"),
            );
        }
    }

    fn fields(&mut self, table: &[&str], raw: &[RawField]) -> Option<Vec<Field>> {
        let mut key: Vec<&str> = table.to_vec();
        key.push("fields");
        let mut fields = Vec::new();
        for f in raw {
            let element = self.prefixed(&key, &f.element)?;
            let ty = match f.ty.as_deref() {
                None => None,
                Some(t) => match ValueType::parse_name(t) {
                    Some(ty) => Some(ty),
                    None => {
                        self.problem(
                            &key,
                            format!(
                                "type `{t}` of field `{}` must be one of {}",
                                f.column,
                                ValueType::NAMES
                            ),
                        );
                        return None;
                    }
                },
            };
            if f.scale.is_some() && ty != Some(ValueType::Decimal) {
                self.problem(
                    &key,
                    format!(
                        "field `{}` has a scale but is not type = \"decimal\"",
                        f.column
                    ),
                );
            }
            fields.push(Field {
                column: f.column.clone(),
                element,
                ty,
                scale: f.scale,
            });
        }
        Some(fields)
    }

    fn group(&mut self, table: &[&str], raw: &RawGroup) -> Option<Group> {
        let mut key: Vec<&str> = table.to_vec();
        key.push("element");
        let element = self.prefixed(&key, &raw.element);
        let wrapper = match &raw.wrapper {
            None => None,
            Some(w) => {
                let mut wrapper_key: Vec<&str> = table.to_vec();
                wrapper_key.push("wrapper");
                Some(self.prefixed(&wrapper_key, w)?)
            }
        };
        let fields = self.fields(table, &raw.fields);
        let each = match &raw.each {
            None => None,
            Some(inner) => {
                let mut t = table.to_vec();
                t.push("each");
                Some(Box::new(self.group(&t, inner)?))
            }
        };
        if raw.fields.is_empty() && raw.each.is_none() {
            self.problem(
                &key,
                format!("`{}` has no fields and no nested `each`", raw.element),
            );
        }
        Some(Group {
            wrapper,
            element: element?,
            key: raw.key.clone(),
            fields: fields?,
            each,
        })
    }

    fn response(&mut self, raw: &RawResponse) -> Option<ResponseShape> {
        let root = self.prefixed(&["response", "element"], &raw.element);
        let fields = self.fields(&["response"], &raw.fields);
        let each = match &raw.each {
            None => None,
            Some(g) => Some(Box::new(self.group(&["response", "each"], g)?)),
        };
        if raw.fields.is_empty() && raw.each.is_none() {
            self.problem(
                &["response", "element"],
                "[response] needs at least one field or a repeated element ([response.each])"
                    .into(),
            );
        }
        let namespaces = self
            .namespaces
            .iter()
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        Some(ResponseShape {
            root: root?,
            fields: fields?,
            each,
            namespaces,
        })
    }
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
request = "{urn://x/1}Req"
datasource = "db"
namespaces = { r = "urn://x/1" }

[params]
series = { path = "r:Series", pattern = "^[0-9]{4}$" }

[query]
sql = "SELECT name FROM t WHERE s = :series"

[response]
element = "r:Resp"
fields = [ { column = "name", element = "r:Name" } ]
"#;

    #[test]
    fn a_good_mapping_loads() {
        let (m, problems) = load_file(Path::new("m.toml"), GOOD, &["db".to_string()]);
        assert!(problems.is_empty(), "{problems:?}");
        let m = m.expect("mapping");
        assert_eq!(m.request.to_string(), "{urn://x/1}Req");
        assert_eq!(m.params[0].path[0].local, "Series");
        assert_eq!(m.allowed_senders, Senders::Any);
        assert_eq!(m.timeout, DEFAULT_TIMEOUT);
    }

    #[test]
    fn every_problem_in_a_mapping_is_reported_with_its_line() {
        let bad = GOOD
            .replace("datasource = \"db\"", "datasource = \"nosuch\"")
            .replace("^[0-9]{4}$", "^[0-9{4}$")
            .replace(":series\"", ":series AND z = :zone\"")
            .replace("r:Name", "q:Name");
        let (m, problems) = load_file(Path::new("m.toml"), &bad, &["db".to_string()]);
        assert!(m.is_none());
        let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|p| p.starts_with("m.toml:3:") && p.contains("unknown datasource `nosuch`")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|p| p.starts_with("m.toml:7:") && p.contains("not a valid regular expression")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|p| p.starts_with("m.toml:10:") && p.contains(":zone")),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|p| p.starts_with("m.toml:14:") && p.contains("prefix `q`")),
            "{text:?}"
        );
    }

    #[test]
    fn senders_deadline_types_and_defaults_are_parsed_and_checked() {
        let text = GOOD
            .replace(
                "namespaces =",
                "allowed_senders = [\"MFC_01\", \"FNS\"]\ndeadline = \"5m\"\nnamespaces =",
            )
            .replace(
                "series = { path = \"r:Series\", pattern = \"^[0-9]{4}$\" }",
                "series = { path = \"r:Series\", pattern = \"^[0-9]{4}$\" }\nlimit = { path = \"r:Limit\", type = \"int\", required = false, default = 10, min = 1, max = 50 }",
            )
            .replace(":series\"", ":series LIMIT :limit\"");
        let (m, problems) = load_file(Path::new("m.toml"), &text, &["db".to_string()]);
        assert!(problems.is_empty(), "{problems:?}");
        let m = m.expect("mapping");
        assert!(m.allowed_senders.allows("FNS") && !m.allowed_senders.allows("OTHER"));
        assert_eq!(m.deadline, Some(Duration::from_secs(300)));
        let limit = m.params.iter().find(|p| p.name == "limit").expect("limit");
        assert_eq!(limit.default, Some(BindValue::Int(10)));
        assert!(!limit.required);

        let bad = text
            .replace("\"5m\"", "\"soon\"")
            .replace("\"FNS\"", "\"F N S\"")
            .replace("type = \"int\"", "type = \"integr\"");
        let (_, problems) = load_file(Path::new("m.toml"), &bad, &["db".to_string()]);
        let all: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(all.iter().any(|p| p.contains("deadline `soon`")), "{all:?}");
        assert!(
            all.iter().any(|p| p.contains("allowed sender `F N S`")),
            "{all:?}"
        );
        assert!(all.iter().any(|p| p.contains("type `integr`")), "{all:?}");
        let bad_default = text.replace("default = 10", "default = \"ten\"");
        let (_, problems) = load_file(Path::new("m.toml"), &bad_default, &["db".to_string()]);
        assert!(
            problems.iter().any(|p| p.message.contains("default `ten`")),
            "{problems:?}"
        );
    }
}
