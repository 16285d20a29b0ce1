//! Mapping files on disk → validated [`Mapping`]s, with every problem located at file:line.
//! It must not execute queries; it only prepares them to prove they are valid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use regex::Regex;
use serde::Deserialize;

use super::{Field, Mapping, OnNoRows, Param, PrefixedName, QName, ResponseShape, problem_at};
use crate::datasource::Datasources;
use crate::diag::Problem;
use crate::tomlfile;

#[derive(Deserialize)]
struct RawMapping {
    request: String,
    datasource: String,
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
}

#[derive(Deserialize)]
struct RawParam {
    path: String,
    #[serde(default)]
    pattern: Option<String>,
}

#[derive(Deserialize)]
struct RawQuery {
    sql: String,
}

#[derive(Deserialize)]
struct RawResponse {
    element: String,
    #[serde(default)]
    row: Option<String>,
    fields: Vec<RawField>,
}

#[derive(Deserialize)]
struct RawField {
    column: String,
    element: String,
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
pub fn check_against_datasource(m: &Mapping, datasources: &Datasources) -> Vec<Problem> {
    let Some(ds) = datasources.get(&m.datasource) else {
        return Vec::new();
    };
    let text = std::fs::read_to_string(&m.file).unwrap_or_default();
    let columns = match ds.describe(&m.sql) {
        Ok(c) => c,
        Err(e) => {
            return vec![problem_at(
                &m.file,
                &text,
                &["query", "sql"],
                format!("the datasource cannot prepare this SQL: {e}"),
            )];
        }
    };
    m.response
        .fields
        .iter()
        .enumerate()
        .filter(|(_, f)| !columns.iter().any(|c| c.eq_ignore_ascii_case(&f.column)))
        .map(|(i, f)| {
            let span = field_span(&text, i);
            Problem::at_span(
                &m.file,
                &text,
                span,
                format!(
                    "response field column `{}` is not returned by the query (it returns: {})",
                    f.column,
                    columns.join(", ")
                ),
            )
        })
        .collect()
}

fn field_span(text: &str, index: usize) -> Option<std::ops::Range<usize>> {
    let table = toml::de::DeTable::parse(text).ok()?;
    let (_, response) = table
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == "response")?;
    let toml::de::DeValue::Table(t) = response.get_ref() else {
        return None;
    };
    let (_, fields) = t.iter().find(|(k, _)| k.get_ref() == "fields")?;
    let toml::de::DeValue::Array(items) = fields.get_ref() else {
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
        let params: Vec<Param> = raw
            .params
            .iter()
            .filter_map(|(name, p)| self.param(name, p))
            .collect();
        self.check_sql_params(&raw.query.sql, &params);
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
        let max_rows = raw.max_rows.unwrap_or(100);
        if max_rows == 0 {
            self.problem(&["max_rows"], "max_rows must be at least 1".into());
        }
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
            params,
            sql: raw.query.sql.clone(),
            max_rows,
            on_no_rows,
            response: response?,
        })
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
            Some(ns) => Some(PrefixedName {
                prefix: prefix.into(),
                local: local.into(),
                namespace: ns.clone(),
            }),
            None => {
                let known: Vec<&str> = self.namespaces.keys().map(String::as_str).collect();
                self.problem(key, format!("prefix `{prefix}` in `{text}` is not declared in `namespaces` (declared: {})", known.join(", ")));
                None
            }
        }
    }

    fn param(&mut self, name: &str, raw: &RawParam) -> Option<Param> {
        let key = ["params", name, "path"];
        let mut path = Vec::new();
        for step in raw.path.split('/') {
            let p = self.prefixed(&key, step)?;
            path.push(QName {
                namespace: p.namespace,
                local: p.local,
            });
        }
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
                    self.problem(&["params", name, "pattern"], format!("pattern of parameter `{name}` is not a valid regular expression: {first_line}"));
                    return None;
                }
            },
        };
        Some(Param {
            name: name.to_string(),
            path,
            path_text: raw.path.clone(),
            pattern,
        })
    }

    fn check_sql_params(&mut self, sql: &str, params: &[Param]) {
        let used = sql_parameter_names(sql);
        for name in used
            .iter()
            .filter(|u| !params.iter().any(|p| &p.name == *u))
        {
            self.problem(
                &["query", "sql"],
                format!("the SQL uses :{name} but [params] does not declare `{name}`"),
            );
        }
        for p in params.iter().filter(|p| !used.contains(p.name.as_str())) {
            self.problem(
                &["params", &p.name, "path"],
                format!(
                    "parameter `{}` is declared but the SQL never uses :{}",
                    p.name, p.name
                ),
            );
        }
    }

    fn response(&mut self, raw: &RawResponse) -> Option<ResponseShape> {
        let root = self.prefixed(&["response", "element"], &raw.element);
        let row = match &raw.row {
            Some(r) => Some(self.prefixed(&["response", "row"], r)?),
            None => None,
        };
        let mut fields = Vec::new();
        for f in &raw.fields {
            let element = self.prefixed(&["response", "fields"], &f.element)?;
            fields.push(Field {
                column: f.column.clone(),
                element,
            });
        }
        if fields.is_empty() {
            self.problem(
                &["response", "fields"],
                "[response] needs at least one field".into(),
            );
        }
        let namespaces = self
            .namespaces
            .iter()
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        Some(ResponseShape {
            root: root?,
            row,
            fields,
            namespaces,
        })
    }
}

/// The `:name` placeholders in `sql`, skipping string literals, quoted identifiers and `::` casts.
pub fn sql_parameter_names(sql: &str) -> BTreeSet<&str> {
    let bytes = sql.as_bytes();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
                i += 1;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b':' if bytes.get(i + 1) == Some(&b':') => i += 2,
            b':' => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_')
                {
                    end += 1;
                }
                if end > start {
                    names.insert(&sql[start..end]);
                }
                i = end.max(i + 1);
            }
            _ => i += 1,
        }
    }
    names
}

fn is_ncname(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sql_parameters_skip_literals_comments_and_casts() {
        let sql = "SELECT ':no', x::text FROM t -- :nope\nWHERE a = :series AND b = :number AND c = \":q\"";
        let names: Vec<&str> = sql_parameter_names(sql).into_iter().collect();
        assert_eq!(names, vec!["number", "series"]);
    }

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
        assert!(text.iter().any(|p| p.starts_with("m.toml:7:") && p.contains("not a valid regular expression")), "{text:?}");
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
}
