//! Mappings: which request QName selects which SQL, how request fields feed it and rows become XML.
//! It owns the validated mapping model, parameter extraction and execution; it must not open sockets.

mod dry_run;
mod file;
mod render;
pub mod sql;
pub mod types;
pub mod watch;
mod xsd;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use roxmltree::Node;

use crate::datasource::{BindValue, Datasources, PositionalSql, Rows, Statement};
use crate::diag::{Problem, Problems};
use crate::xml::Position;

pub use dry_run::{DryRun, DryRunError, dry_run};
pub use file::load_dir;
pub use types::ValueType;
pub use xsd::Xsd;

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
    /// `prefix:local`, computed once.
    pub qualified: String,
}

impl PrefixedName {
    pub fn new(prefix: &str, local: &str, namespace: &str) -> PrefixedName {
        PrefixedName {
            prefix: prefix.into(),
            local: local.into(),
            namespace: namespace.into(),
            qualified: format!("{prefix}:{local}"),
        }
    }

    pub fn qualified(&self) -> &str {
        &self.qualified
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

/// Which senders a mapping serves (the exchange agreement). Enforced once senders are verified
/// from their signing certificates (the signatures work); until then it is parsed, checked and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Senders {
    Any,
    Only(Vec<String>),
}

impl Senders {
    pub fn allows(&self, mnemonic: &str) -> bool {
        match self {
            Senders::Any => true,
            Senders::Only(list) => list.iter().any(|s| s == mnemonic),
        }
    }
}

/// One request parameter: where it is in the payload, its type and what it must look like.
#[derive(Debug, Clone)]
pub struct Param {
    pub name: String,
    /// Child element steps from the MessagePrimaryContent element.
    pub path: Vec<QName>,
    /// A final `@attribute` step, read instead of the element's text.
    pub attribute: Option<QName>,
    pub path_text: String,
    pub ty: ValueType,
    pub required: bool,
    /// Bound when the element is absent (or empty, for non-string types); NULL when unset.
    pub default: Option<BindValue>,
    pub pattern: Option<Regex>,
    pub min: Option<BindValue>,
    pub max: Option<BindValue>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    /// Every matching element, bound as a list.
    pub repeated: bool,
    pub max_items: usize,
}

/// One response value: a column written as an element.
#[derive(Debug, Clone)]
pub struct Field {
    pub column: String,
    pub element: PrefixedName,
    /// Formats the value (xs:date, xs:dateTime, ...); `None` writes it as the database gives it.
    pub ty: Option<ValueType>,
    /// For decimals: exactly this many fraction digits (`scale = 2` writes 120000 as 120000.00).
    pub scale: Option<usize>,
}

/// A repeated element: one per row, or one per run of rows sharing `key` (1:N nesting).
#[derive(Debug, Clone)]
pub struct Group {
    /// Written around the repeated elements when there is at least one (e.g. `i:Employers`).
    pub wrapper: Option<PrefixedName>,
    pub element: PrefixedName,
    pub key: Option<String>,
    pub fields: Vec<Field>,
    pub each: Option<Box<Group>>,
}

/// How rows become the response element.
#[derive(Debug, Clone)]
pub struct ResponseShape {
    pub root: PrefixedName,
    /// Written once, from the first row.
    pub fields: Vec<Field>,
    pub each: Option<Box<Group>>,
    pub namespaces: Vec<(String, String)>,
}

impl ResponseShape {
    /// Every column the response reads (fields and group keys, at every level).
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.fields.iter().map(|f| f.column.as_str()).collect();
        let mut group = self.each.as_deref();
        while let Some(g) = group {
            out.extend(g.key.as_deref());
            out.extend(g.fields.iter().map(|f| f.column.as_str()));
            group = g.each.as_deref();
        }
        out
    }
}

/// A validated mapping, ready to serve.
#[derive(Debug)]
pub struct Mapping {
    pub name: String,
    pub file: PathBuf,
    pub request: QName,
    pub datasource: String,
    pub allowed_senders: Senders,
    /// How long the sender may wait for the answer (overdue flags come with delivery).
    pub deadline: Option<Duration>,
    pub params: Vec<Param>,
    pub sql: String,
    pub positional: PositionalSql,
    /// Runs in a read-write transaction and gets `:message_id`.
    pub writes: bool,
    pub uses_message_id: bool,
    pub max_rows: usize,
    pub timeout: Duration,
    pub on_no_rows: OnNoRows,
    pub response: ResponseShape,
    pub request_xsd: Option<Xsd>,
    pub response_xsd: Option<Xsd>,
}

/// A request field that is missing or malformed: answered with InvalidContent at its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamError {
    pub message: String,
    pub position: Position,
}

/// Parameters extracted from a request, by name, ready to bind.
pub type Params<'m> = Vec<(&'m str, BindValue)>;

/// The result of running a mapping on a payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The response element, well-formed XML (and valid against the response XSD when one is set).
    Answer(Vec<u8>),
    NoData,
    /// The admin's mapping or database failed; the caller answers FAILURE and logs this.
    Failed(String),
}

impl Mapping {
    /// Validates the payload (XSD when configured) and reads every parameter from `content`.
    pub fn extract(
        &self,
        doc: &roxmltree::Document<'_>,
        content: Node<'_, '_>,
    ) -> Result<Params<'_>, Vec<ParamError>> {
        if let Some(xsd) = &self.request_xsd {
            xsd.validate_payload(doc, content)?;
        }
        let mut values = Vec::with_capacity(self.params.len());
        let mut errors = Vec::new();
        for p in &self.params {
            match self.extract_one(doc, content, p) {
                Ok(v) => values.push((p.name.as_str(), v)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(values)
        } else {
            Err(errors)
        }
    }

    fn extract_one(
        &self,
        doc: &roxmltree::Document<'_>,
        content: Node<'_, '_>,
        p: &Param,
    ) -> Result<BindValue, ParamError> {
        let mut found: Vec<(Node<'_, '_>, Cow<'_, str>)> = Vec::new();
        collect_path(content, &p.path, &mut |n| {
            let text = match &p.attribute {
                Some(a) => if a.namespace.is_empty() {
                    n.attribute(a.local.as_str())
                } else {
                    n.attribute((a.namespace.as_str(), a.local.as_str()))
                }
                .map(Cow::Borrowed),
                None => Some(direct_text(n)),
            };
            if let Some(t) = text {
                let trimmed = match t {
                    Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
                    Cow::Owned(o) => Cow::Owned(o.trim().to_string()),
                };
                found.push((n, trimmed));
            }
        });
        // An empty element is "absent" for every type but string.
        if p.ty != ValueType::String {
            found.retain(|(_, t)| !t.is_empty());
        }
        let error = |node: Node<'_, '_>, message: String| ParamError {
            message,
            position: crate::xml::node_position(doc, node),
        };
        if found.is_empty() {
            if p.required {
                return Err(error(
                    content,
                    format!("{} is missing (parameter `{}`)", p.path_text, p.name),
                ));
            }
            return Ok(p.default.clone().unwrap_or(if p.repeated {
                BindValue::List(Vec::new())
            } else {
                BindValue::Null
            }));
        }
        if !p.repeated && found.len() > 1 {
            return Err(error(
                found[1].0,
                format!(
                    "{} appears {} times but parameter `{}` takes one value",
                    p.path_text,
                    found.len(),
                    p.name
                ),
            ));
        }
        if found.len() > p.max_items {
            return Err(error(
                found[p.max_items].0,
                format!(
                    "{} appears {} times; parameter `{}` takes at most {}",
                    p.path_text,
                    found.len(),
                    p.name,
                    p.max_items
                ),
            ));
        }
        let mut items = Vec::with_capacity(found.len());
        for (node, text) in found {
            items.push(check_value(p, &text).map_err(|why| error(node, why))?);
        }
        if p.repeated {
            Ok(BindValue::List(items))
        } else {
            Ok(items.pop().unwrap_or(BindValue::Null))
        }
    }

    /// Runs the query with `params` bound (plus `:message_id`) and renders the rows.
    pub fn execute(
        &self,
        datasources: &Datasources,
        params: &[(&str, BindValue)],
        message_id: &str,
    ) -> Outcome {
        match self.query(datasources, params, message_id) {
            Ok(rows) => self.render(&rows),
            Err(reason) => Outcome::Failed(reason),
        }
    }

    /// Runs the query alone, returning the rows (the dry run shows them).
    pub fn query(
        &self,
        datasources: &Datasources,
        params: &[(&str, BindValue)],
        message_id: &str,
    ) -> Result<Rows, String> {
        self.run_query(datasources, params, message_id, false)
    }

    /// Like [`Mapping::query`], but a writing mapping's transaction is rolled back.
    pub fn query_without_writing(
        &self,
        datasources: &Datasources,
        params: &[(&str, BindValue)],
        message_id: &str,
    ) -> Result<Rows, String> {
        self.run_query(datasources, params, message_id, true)
    }

    fn run_query(
        &self,
        datasources: &Datasources,
        params: &[(&str, BindValue)],
        message_id: &str,
        rollback: bool,
    ) -> Result<Rows, String> {
        let Some(ds) = datasources.get(&self.datasource) else {
            return Err(format!(
                "mapping `{}`: datasource `{}` is not open",
                self.name, self.datasource
            ));
        };
        let with_id;
        let bound: &[(&str, BindValue)] = if self.uses_message_id {
            let mut v = params.to_vec();
            v.push(("message_id", BindValue::Text(message_id.to_string())));
            with_id = v;
            &with_id
        } else {
            params
        };
        let stmt = Statement {
            sql: &self.sql,
            positional: &self.positional,
            params: bound,
            max_rows: self.max_rows,
            timeout: self.timeout,
            writes: self.writes,
            rollback,
        };
        ds.run(&stmt)
            .map_err(|e| format!("mapping `{}`: {e}", self.name))
    }

    /// Turns rows into the answer (or NO_DATA), validating it against the response XSD when set.
    pub fn render(&self, rows: &Rows) -> Outcome {
        if rows.rows.is_empty() && self.on_no_rows == OnNoRows::NoData {
            return Outcome::NoData;
        }
        if self.response.each.is_none() && rows.rows.len() > 1 {
            return Outcome::Failed(format!(
                "mapping `{}`: the query returned {} rows but [response] declares no repeated element ([response.each]) to hold them",
                self.name,
                rows.rows.len()
            ));
        }
        let xml = match render::render(&self.response, rows) {
            Ok(xml) => xml,
            Err(e) => return Outcome::Failed(format!("mapping `{}`: {e}", self.name)),
        };
        if let Some(xsd) = &self.response_xsd
            && let Err(errors) = xsd.validate_bytes(&xml)
        {
            return Outcome::Failed(format!(
                "mapping `{}`: the response it produced is not valid against {}: {}",
                self.name,
                xsd.path.display(),
                errors.join("; ")
            ));
        }
        Outcome::Answer(xml)
    }
}

/// Checks one request value against its parameter's type and restrictions.
fn check_value(p: &Param, text: &str) -> Result<BindValue, String> {
    let shown = || text.chars().take(64).collect::<String>();
    let value = p.ty.parse(text).map_err(|why| {
        format!(
            "{} = `{}` {why} (parameter `{}`)",
            p.path_text,
            shown(),
            p.name
        )
    })?;
    if let Some(re) = &p.pattern
        && !re.is_match(text)
    {
        return Err(format!(
            "{} = `{}` does not match {} (parameter `{}`)",
            p.path_text,
            shown(),
            re.as_str(),
            p.name
        ));
    }
    let chars = text.chars().count();
    if let Some(max) = p.max_length
        && chars > max
    {
        return Err(format!(
            "{} is {chars} characters long; parameter `{}` allows at most {max}",
            p.path_text, p.name
        ));
    }
    if let Some(min) = p.min_length
        && chars < min
    {
        return Err(format!(
            "{} is {chars} characters long; parameter `{}` needs at least {min}",
            p.path_text, p.name
        ));
    }
    if let Some(min) = &p.min
        && types::compare(p.ty, &value, min) == Some(std::cmp::Ordering::Less)
    {
        return Err(format!(
            "{} = `{}` is below the minimum {min} (parameter `{}`)",
            p.path_text,
            shown(),
            p.name
        ));
    }
    if let Some(max) = &p.max
        && types::compare(p.ty, &value, max) == Some(std::cmp::Ordering::Greater)
    {
        return Err(format!(
            "{} = `{}` is above the maximum {max} (parameter `{}`)",
            p.path_text,
            shown(),
            p.name
        ));
    }
    Ok(value)
}

/// The element's own text: its direct text children joined (comments between them are skipped,
/// child elements ignored). Borrowed in the usual case of a single text node.
fn direct_text<'a>(node: Node<'a, '_>) -> Cow<'a, str> {
    let mut texts = node.children().filter(|c| c.is_text());
    match (texts.next(), texts.next()) {
        (None, _) => Cow::Borrowed(""),
        (Some(only), None) => Cow::Borrowed(only.text().unwrap_or("")),
        (Some(first), Some(second)) => {
            let mut joined = String::from(first.text().unwrap_or(""));
            joined.push_str(second.text().unwrap_or(""));
            for t in texts {
                joined.push_str(t.text().unwrap_or(""));
            }
            Cow::Owned(joined)
        }
    }
}

/// Calls `found` for every element reached by `path` from `start` (all branches).
fn collect_path<'a, 'i>(start: Node<'a, 'i>, path: &[QName], found: &mut dyn FnMut(Node<'a, 'i>)) {
    let Some((step, rest)) = path.split_first() else {
        found(start);
        return;
    };
    for c in start.children() {
        if c.is_element()
            && c.tag_name().name() == step.local
            && c.tag_name().namespace().unwrap_or("") == step.namespace
        {
            collect_path(c, rest, found);
        }
    }
}

/// The mapping set in force: routes a request QName to its mapping.
#[derive(Debug, Default)]
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

    /// The mapping whose file is `NAME.toml`.
    pub fn by_name(&self, name: &str) -> Option<&Arc<Mapping>> {
        self.iter().find(|m| m.name == name)
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

    /// Mapping names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.iter().map(|m| m.name.as_str()).collect();
        names.sort_unstable();
        names
    }

    /// Loads `dir` and checks every mapping against the open datasources (prepares its SQL).
    /// An unreachable database is a problem (`check`, hot reload: nothing unchecked goes live).
    pub fn load(dir: &Path, datasources: &Datasources) -> Result<MappingSet, Problems> {
        Self::load_with(dir, datasources, false)
    }

    /// Like [`MappingSet::load`], but a database that cannot be reached is only logged, so that a
    /// node starts while PostgreSQL is down and answers FAILURE until it returns.
    pub fn load_at_start(dir: &Path, datasources: &Datasources) -> Result<MappingSet, Problems> {
        Self::load_with(dir, datasources, true)
    }

    fn load_with(
        dir: &Path,
        datasources: &Datasources,
        tolerate_unreachable: bool,
    ) -> Result<MappingSet, Problems> {
        let (mappings, mut problems) = load_dir(
            dir,
            &datasources.names().map(str::to_string).collect::<Vec<_>>(),
        );
        for m in &mappings {
            problems.extend(file::check_against_datasource(
                m,
                datasources,
                tolerate_unreachable,
            ));
        }
        if problems.is_empty() {
            Ok(MappingSet::new(mappings))
        } else {
            // In reading order: file by file, line by line.
            problems.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            Err(Problems(problems))
        }
    }
}

/// Reports a problem at the value `key` of a mapping file.
fn problem_at(file: &Path, text: &str, key: &[&str], message: String) -> Problem {
    Problem::at_span(file, text, crate::tomlfile::value_span(text, key), message)
}
