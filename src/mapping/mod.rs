//! Mappings: which request QName selects which SQL, how request fields feed it and rows become XML.
//! It owns loading, validation (file:line), parameter extraction and rendering; it must not open sockets.

mod file;
mod render;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use regex::Regex;
use roxmltree::Node;

use crate::datasource::{Datasources, Rows};
use crate::diag::{Problem, Problems};
use crate::xml::Position;

pub use file::load_dir;

/// A namespace-qualified element name, as it appears in mapping files: `{uri}Local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QName {
    pub namespace: String,
    pub local: String,
}

impl std::fmt::Display for QName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{{{}}}{}", self.namespace, self.local)
    }
}

/// An element name the renderer writes: a prefix declared on the response root, and its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrefixedName {
    pub prefix: String,
    pub local: String,
    pub namespace: String,
}

impl PrefixedName {
    pub fn qualified(&self) -> String {
        format!("{}:{}", self.prefix, self.local)
    }
}

/// What a mapping answers when the query finds nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNoRows {
    /// RequestRejected with NO_DATA.
    NoData,
    /// An answer holding just the empty response element.
    Empty,
}

/// One request parameter: where it is in the payload and what it must look like.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    /// Child steps from the MessagePrimaryContent element.
    pub path: Vec<QName>,
    pub path_text: String,
    pub pattern: Option<Regex>,
}

/// How rows become the response element.
#[derive(Debug, Clone)]
pub struct ResponseShape {
    pub root: PrefixedName,
    /// When set, each row is wrapped in this element; otherwise the query must return at most one row.
    pub row: Option<PrefixedName>,
    pub fields: Vec<Field>,
    pub namespaces: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub column: String,
    pub element: PrefixedName,
}

/// A validated mapping, ready to serve.
#[derive(Debug, Clone)]
pub struct Mapping {
    pub name: String,
    pub file: PathBuf,
    pub request: QName,
    pub datasource: String,
    pub params: Vec<Param>,
    pub sql: String,
    pub max_rows: usize,
    pub on_no_rows: OnNoRows,
    pub response: ResponseShape,
}

/// A request field that is missing or malformed: answered with InvalidContent at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub message: String,
    pub position: Position,
}

/// The result of running a mapping on a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The response element, well-formed XML.
    Answer(Vec<u8>),
    NoData,
    /// The admin's mapping or database failed; the caller answers FAILURE and logs this.
    Failed(String),
}

impl Mapping {
    /// Reads every parameter from `content` (the MessagePrimaryContent child), checking each.
    pub fn extract<'a>(
        &self,
        doc: &roxmltree::Document<'_>,
        content: Node<'a, '_>,
    ) -> Result<Vec<(&str, &'a str)>, Vec<ParamError>> {
        let mut values = Vec::with_capacity(self.params.len());
        let mut errors = Vec::new();
        for p in &self.params {
            match find_path(content, &p.path) {
                None => errors.push(ParamError {
                    message: format!("{} is missing (parameter `{}`)", p.path_text, p.name),
                    position: crate::xml::node_position(doc, content),
                }),
                Some(node) => {
                    let text = node.text().unwrap_or("").trim();
                    match &p.pattern {
                        Some(re) if !re.is_match(text) => errors.push(ParamError {
                            message: format!(
                                "{} = `{}` does not match {} (parameter `{}`)",
                                p.path_text,
                                text.chars().take(64).collect::<String>(),
                                re.as_str(),
                                p.name
                            ),
                            position: crate::xml::node_position(doc, node),
                        }),
                        _ => values.push((p.name.as_str(), text)),
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }

    /// Runs the query with `params` bound and renders the rows.
    pub fn execute(&self, datasources: &Datasources, params: &[(&str, &str)]) -> Outcome {
        let Some(ds) = datasources.get(&self.datasource) else {
            return Outcome::Failed(format!(
                "mapping `{}`: datasource `{}` is not open",
                self.name, self.datasource
            ));
        };
        match ds.query(&self.sql, params, self.max_rows) {
            Ok(rows) => self.render(&rows),
            Err(e) => Outcome::Failed(format!("mapping `{}`: {e}", self.name)),
        }
    }

    fn render(&self, rows: &Rows) -> Outcome {
        if rows.rows.is_empty() && self.on_no_rows == OnNoRows::NoData {
            return Outcome::NoData;
        }
        if self.response.row.is_none() && rows.rows.len() > 1 {
            return Outcome::Failed(format!(
                "mapping `{}`: the query returned {} rows but [response] declares no `row` element to hold them",
                self.name,
                rows.rows.len()
            ));
        }
        match render::render(&self.response, rows) {
            Ok(xml) => Outcome::Answer(xml),
            Err(missing) => Outcome::Failed(format!(
                "mapping `{}`: the query returned no column `{missing}`",
                self.name
            )),
        }
    }
}

fn find_path<'a, 'i>(start: Node<'a, 'i>, path: &[QName]) -> Option<Node<'a, 'i>> {
    let mut node = start;
    for step in path {
        node = node.children().find(|c| {
            c.is_element()
                && c.tag_name().name() == step.local
                && c.tag_name().namespace().unwrap_or("") == step.namespace
        })?;
    }
    Some(node)
}

/// The mapping set in force: routes a request QName to its mapping.
#[derive(Debug, Clone, Default)]
pub struct MappingSet {
    /// namespace → local name → mapping, so routing borrows the request's strings.
    by_request: HashMap<String, HashMap<String, Arc<Mapping>>>,
}

impl MappingSet {
    pub fn new(mappings: Vec<Mapping>) -> MappingSet {
        let mut by_request: HashMap<String, HashMap<String, Arc<Mapping>>> = HashMap::new();
        for m in mappings {
            let ns = by_request.entry(m.request.namespace.clone()).or_default();
            ns.insert(m.request.local.clone(), Arc::new(m));
        }
        MappingSet { by_request }
    }

    /// The mapping for a payload element `{namespace}local`.
    pub fn route(&self, namespace: &str, local: &str) -> Option<&Arc<Mapping>> {
        self.by_request.get(namespace)?.get(local)
    }

    pub fn len(&self) -> usize {
        self.by_request.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_request.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Mapping>> {
        self.by_request.values().flat_map(HashMap::values)
    }

    /// Loads `dir` and checks every mapping against the open datasources.
    pub fn load(dir: &Path, datasources: &Datasources) -> Result<MappingSet, Problems> {
        let (mappings, mut problems) = load_dir(
            dir,
            &datasources.names().map(str::to_string).collect::<Vec<_>>(),
        );
        for m in &mappings {
            problems.extend(file::check_against_datasource(m, datasources));
        }
        if problems.is_empty() {
            Ok(MappingSet::new(mappings))
        } else {
            Err(Problems(problems))
        }
    }
}

/// Reports a problem at the value `key` of a mapping file.
fn problem_at(file: &Path, text: &str, key: &[&str], message: String) -> Problem {
    Problem::at_span(file, text, crate::tomlfile::value_span(text, key), message)
}
