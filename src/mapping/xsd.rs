//! XSD validation of request payloads and produced responses through libxml2 (the `libxml` crate).
//! It owns compiling schemas and mapping libxml2's line numbers back to request positions; no SQL.
//!
//! libxml2's validation contexts are not thread-safe, so each thread compiles its own copy of a schema
//! on first use (kept per schema load, so a hot reload recompiles). The request payload is re-serialized
//! with every start tag on its own line: libxml2 reports the line of the offending element, and that
//! line is the element's index, so the error points at the exact element of the original request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use libxml::parser::Parser;
use libxml::schemas::{SchemaParserContext, SchemaValidationContext};
use roxmltree::{Document, Node};

use super::ParamError;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static CONTEXTS: RefCell<HashMap<u64, SchemaValidationContext>> = RefCell::new(HashMap::new());
}

/// A compiled-and-checked schema file, validated against per thread.
#[derive(Debug)]
pub struct Xsd {
    pub path: PathBuf,
    id: u64,
}

impl Xsd {
    /// Compiles the schema once to prove it is valid; returns libxml2's messages when it is not.
    pub fn load(path: &Path) -> Result<Xsd, String> {
        let text = path
            .to_str()
            .filter(|p| !p.contains('\0'))
            .ok_or_else(|| format!("schema path {} is not valid UTF-8", path.display()))?;
        if !path.is_file() {
            return Err(format!("schema file {} does not exist", path.display()));
        }
        compile(text)?;
        Ok(Xsd {
            path: path.to_path_buf(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
        })
    }

    fn with_context<T>(
        &self,
        f: impl FnOnce(&mut SchemaValidationContext) -> T,
    ) -> Result<T, String> {
        CONTEXTS.with(|cell| {
            let mut map = cell.borrow_mut();
            if !map.contains_key(&self.id) {
                if map.len() >= 64 {
                    map.clear();
                }
                let path = self.path.to_str().unwrap_or_default();
                map.insert(self.id, compile(path)?);
            }
            match map.get_mut(&self.id) {
                Some(ctx) => Ok(f(ctx)),
                None => Err("schema context vanished".to_string()),
            }
        })
    }

    /// Validates the payload element `content` of `doc`; each error points at its element.
    pub fn validate_payload(
        &self,
        doc: &Document<'_>,
        content: Node<'_, '_>,
    ) -> Result<(), Vec<ParamError>> {
        let (text, elements) = one_element_per_line(doc.input_text(), content);
        let whole = crate::xml::node_position(doc, content);
        let parsed = match Parser::default().parse_string(text.as_bytes()) {
            Ok(d) => d,
            Err(e) => {
                return Err(vec![ParamError {
                    message: format!("the payload could not be prepared for XSD validation: {e:?}"),
                    position: whole,
                }]);
            }
        };
        let result = self.with_context(|ctx| ctx.validate_document(&parsed));
        match result {
            Err(e) => Err(vec![ParamError {
                message: format!("XSD {}: {e}", self.path.display()),
                position: whole,
            }]),
            Ok(Ok(())) => Ok(()),
            Ok(Err(errors)) => Err(errors
                .into_iter()
                .map(|e| {
                    let at = e
                        .line
                        .and_then(|l| usize::try_from(l).ok())
                        .and_then(|l| l.checked_sub(1))
                        .and_then(|i| elements.get(i).copied());
                    ParamError {
                        message: clean(e.message.as_deref()),
                        position: at.map_or(whole, |n| crate::xml::node_position(doc, n)),
                    }
                })
                .collect()),
        }
    }

    /// Validates a document the node produced (a response); returns libxml2's messages.
    pub fn validate_bytes(&self, xml: &[u8]) -> Result<(), Vec<String>> {
        let parsed = Parser::default()
            .parse_string(xml)
            .map_err(|e| vec![format!("not well-formed: {e:?}")])?;
        match self.with_context(|ctx| ctx.validate_document(&parsed)) {
            Err(e) => Err(vec![e]),
            Ok(Ok(())) => Ok(()),
            Ok(Err(errors)) => Err(errors
                .into_iter()
                .map(|e| clean(e.message.as_deref()))
                .collect()),
        }
    }
}

fn compile(path: &str) -> Result<SchemaValidationContext, String> {
    let mut parser = SchemaParserContext::from_file(path);
    SchemaValidationContext::from_parser(&mut parser).map_err(|errors| {
        let messages: Vec<String> = errors
            .iter()
            .map(|e| {
                let place = match (&e.filename, e.line) {
                    (Some(f), Some(l)) => format!("{f}:{l}: "),
                    _ => String::new(),
                };
                format!("{place}{}", clean(e.message.as_deref()))
            })
            .collect();
        if messages.is_empty() {
            "the schema is invalid".to_string()
        } else {
            messages.join("; ")
        }
    })
}

fn clean(message: Option<&str>) -> String {
    message.unwrap_or("invalid").trim().to_string()
}

/// Serializes `content` with each start tag on its own line, returning the text and the elements in
/// line order. Namespace declarations are carried over; text is escaped so no line break appears in it.
fn one_element_per_line<'a, 'i>(
    source: &str,
    content: Node<'a, 'i>,
) -> (String, Vec<Node<'a, 'i>>) {
    let mut out = String::with_capacity(content.range().len() + 256);
    let mut elements = Vec::new();
    write_element(source, content, None, &mut out, &mut elements);
    (out, elements)
}

fn write_element<'a, 'i>(
    source: &str,
    node: Node<'a, 'i>,
    parent: Option<Node<'a, 'i>>,
    out: &mut String,
    elements: &mut Vec<Node<'a, 'i>>,
) {
    if !elements.is_empty() {
        out.push('\n');
    }
    elements.push(node);
    let name = source_qname(source, node);
    out.push('<');
    out.push_str(&name);
    // Declarations: everything in scope at the root, then what differs from the parent.
    for ns in node.namespaces() {
        if ns.name() == Some("xml") {
            continue;
        }
        let inherited = parent.is_some_and(|p| {
            p.namespaces()
                .any(|pn| pn.name() == ns.name() && pn.uri() == ns.uri())
        });
        if inherited {
            continue;
        }
        match ns.name() {
            Some(prefix) => {
                let _ = write!(out, " xmlns:{prefix}=\"{}\"", attr_escape(ns.uri()));
            }
            None => {
                let _ = write!(out, " xmlns=\"{}\"", attr_escape(ns.uri()));
            }
        }
    }
    let parent_default = parent.and_then(|p| p.namespaces().find(|n| n.name().is_none()));
    if parent_default.is_some() && !node.namespaces().any(|n| n.name().is_none()) {
        out.push_str(" xmlns=\"\"");
    }
    for attr in node.attributes() {
        let qname = match attr.namespace() {
            Some(uri) => match node.lookup_prefix(uri) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}:{}", attr.name()),
                _ => continue,
            },
            None => attr.name().to_string(),
        };
        let _ = write!(out, " {qname}=\"{}\"", attr_escape(attr.value()));
    }
    out.push('>');
    for child in node.children() {
        if child.is_element() {
            write_element(source, child, Some(node), out, elements);
        } else if child.is_text() {
            text_escape(child.text().unwrap_or(""), out);
        }
    }
    out.push_str("</");
    out.push_str(&name);
    out.push('>');
}

/// The element's qualified name exactly as the request wrote it (`r:Series`, `Series`).
fn source_qname(source: &str, node: Node<'_, '_>) -> String {
    let start = node.range().start + 1;
    let rest = source.get(start..).unwrap_or("");
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    let name = &rest[..end];
    if name.is_empty() {
        node.tag_name().name().to_string()
    } else {
        name.to_string()
    }
}

fn text_escape(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            c => out.push(c),
        }
    }
}

fn attr_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialization_puts_each_element_on_its_own_line_and_keeps_namespaces() {
        let src = "<e:Env xmlns:e=\"urn:e\"><r:Req xmlns:r=\"urn:r\" a=\"1\"><r:A>x\ny</r:A><B xmlns=\"urn:d\"><C/></B></r:Req></e:Env>";
        let doc = Document::parse(src).expect("xml");
        let req = doc
            .descendants()
            .find(|n| n.has_tag_name(("urn:r", "Req")))
            .expect("Req");
        let (text, elements) = one_element_per_line(src, req);
        assert_eq!(elements.len(), 4);
        assert_eq!(text.lines().count(), 4);
        let again = Document::parse(&text).expect("reparses");
        let a = again
            .descendants()
            .find(|n| n.has_tag_name(("urn:r", "A")))
            .expect("A");
        assert_eq!(a.text(), Some("x\ny"));
        assert!(again.descendants().any(|n| n.has_tag_name(("urn:d", "C"))));
        assert!(
            text.starts_with("<r:Req xmlns:e=\"urn:e\" xmlns:r=\"urn:r\" a=\"1\">")
                || text.starts_with("<r:Req xmlns:r=\"urn:r\" xmlns:e=\"urn:e\" a=\"1\">"),
            "{text}"
        );
    }
}
