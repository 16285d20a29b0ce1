//! Secure reading of untrusted XML: UTF-8 only, no DTD, bounded depth, node and attribute counts.
//! It owns the parse of every incoming document; it must not interpret SOAP or SMEV semantics.

pub mod c14n;
pub mod scan;
pub mod smev_transform;

use roxmltree::{Document, Node, ParsingOptions};

use crate::config::XmlLimits;

/// Text content for quick-xml, escaping only `<`, `>` and `&` (quotes need no escaping in text).
pub fn text(value: &str) -> quick_xml::events::BytesText<'_> {
    quick_xml::events::BytesText::from_escaped(quick_xml::escape::partial_escape(value))
}

/// A place in the input document, for error messages and InvalidContent's `errorPosition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// 1-based line.
    pub line: u32,
    /// 1-based column, in characters.
    pub column: u32,
    /// 1-based character offset from the start of the document.
    pub offset: usize,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// Why an incoming document was refused before any SOAP processing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error(
        "the message is not valid UTF-8 (first bad byte at offset {byte_offset}); SMEV messages must be UTF-8"
    )]
    NotUtf8 {
        byte_offset: usize,
        position: Position,
    },
    #[error("the XML declaration names encoding `{encoding}`; only UTF-8 is accepted")]
    DeclaredEncoding {
        encoding: String,
        position: Position,
    },
    #[error("a DTD (<!DOCTYPE>) is not allowed in SMEV messages")]
    DtdRefused { position: Position },
    #[error("XML is not well-formed at {position}: {message}")]
    Malformed { message: String, position: Position },
    #[error("XML nesting deeper than {limit} elements at {position}")]
    TooDeep { limit: usize, position: Position },
    #[error("XML holds more than {limit} nodes")]
    TooManyNodes { limit: u32 },
    #[error("an element holds more than {limit} attributes at {position}")]
    TooManyAttributes { limit: usize, position: Position },
}

impl XmlError {
    /// Where in the document the problem is, when there is a place to point at.
    pub fn position(&self) -> Option<Position> {
        match self {
            XmlError::NotUtf8 { position, .. }
            | XmlError::DeclaredEncoding { position, .. }
            | XmlError::DtdRefused { position }
            | XmlError::Malformed { position, .. }
            | XmlError::TooDeep { position, .. }
            | XmlError::TooManyAttributes { position, .. } => Some(*position),
            XmlError::TooManyNodes { .. } => None,
        }
    }
}

/// Checks that `bytes` are UTF-8 and that the XML declaration (if any) does not claim otherwise.
pub fn utf8_text(bytes: &[u8]) -> Result<&str, XmlError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(good).unwrap_or_default();
            return Err(XmlError::NotUtf8 {
                byte_offset: e.valid_up_to(),
                position: position_at(prefix, prefix.len()),
            });
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if let Some(encoding) = declared_encoding(text)
        && !encoding.eq_ignore_ascii_case("utf-8")
        && !encoding.eq_ignore_ascii_case("utf8")
    {
        return Err(XmlError::DeclaredEncoding {
            encoding: encoding.to_string(),
            position: position_at(text, 0),
        });
    }
    Ok(text)
}

fn declared_encoding(text: &str) -> Option<&str> {
    let decl = text.strip_prefix("<?xml")?;
    let decl = &decl[..decl.find("?>")?];
    let rest = &decl[decl.find("encoding")? + "encoding".len()..];
    let rest = rest.trim_start().strip_prefix('=')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &rest[1..];
    Some(&rest[..rest.find(quote)?])
}

/// Parses `text` with DTDs refused and every limit in `limits` enforced.
pub fn parse<'a>(text: &'a str, limits: &XmlLimits) -> Result<Document<'a>, XmlError> {
    let options = ParsingOptions {
        allow_dtd: false,
        nodes_limit: limits.max_nodes,
        ..ParsingOptions::default()
    };
    let doc =
        Document::parse_with_options(text, options).map_err(|e| from_roxml(text, e, limits))?;
    check_shape(&doc, limits)?;
    Ok(doc)
}

fn from_roxml(text: &str, e: roxmltree::Error, limits: &XmlLimits) -> XmlError {
    match e {
        roxmltree::Error::DtdDetected => {
            let at = text.find("<!DOCTYPE").unwrap_or(0);
            XmlError::DtdRefused {
                position: position_at(text, at),
            }
        }
        roxmltree::Error::NodesLimitReached => XmlError::TooManyNodes {
            limit: limits.max_nodes,
        },
        other => {
            let pos = other.pos();
            // roxmltree appends " at ROW:COL"; the position is reported separately.
            let message = other.to_string();
            let message = message
                .rsplit_once(" at ")
                .map_or(message.as_str(), |(m, _)| m)
                .to_string();
            XmlError::Malformed {
                message,
                position: position_from_row_col(text, pos.row, pos.col),
            }
        }
    }
}

fn check_shape(doc: &Document<'_>, limits: &XmlLimits) -> Result<(), XmlError> {
    // Document order visits parents before children, so one pass computes every depth.
    let mut depths: Vec<u32> = Vec::with_capacity(256);
    for n in doc.descendants().filter(Node::is_element) {
        let parent_depth = n
            .parent_element()
            .map_or(0, |p| depths.get(p.id().get_usize()).copied().unwrap_or(0));
        let depth = parent_depth + 1;
        let id = n.id().get_usize();
        if depths.len() <= id {
            depths.resize(id + 1, 0);
        }
        depths[id] = depth;
        if depth as usize > limits.max_depth {
            return Err(XmlError::TooDeep {
                limit: limits.max_depth,
                position: node_position(doc, n),
            });
        }
        if n.attributes().len() > limits.max_attributes_per_element {
            return Err(XmlError::TooManyAttributes {
                limit: limits.max_attributes_per_element,
                position: node_position(doc, n),
            });
        }
    }
    Ok(())
}

/// The position where `node` starts in its document.
pub fn node_position(doc: &Document<'_>, node: Node<'_, '_>) -> Position {
    position_at(doc.input_text(), node.range().start)
}

/// The position of byte offset `at` within `text`.
pub fn position_at(text: &str, at: usize) -> Position {
    let (line, column) = crate::diag::line_col(text, at);
    let mut end = at.min(text.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    Position {
        line: line as u32,
        column: column as u32,
        offset: text[..end].chars().count() + 1,
    }
}

fn position_from_row_col(text: &str, row: u32, col: u32) -> Position {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(row.saturating_sub(1) as usize)
        .map(str::len)
        .sum();
    let line = &text[line_start.min(text.len())..];
    let in_line: usize = line
        .chars()
        .take(col.saturating_sub(1) as usize)
        .map(char::len_utf8)
        .sum();
    position_at(text, line_start + in_line)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> XmlLimits {
        XmlLimits {
            max_depth: 4,
            max_nodes: 50,
            max_attributes_per_element: 2,
            max_text_bytes: 1024,
        }
    }

    #[test]
    fn dtd_is_refused_with_its_position() {
        let text = "<?xml version=\"1.0\"?>\n<!DOCTYPE a [<!ENTITY x \"y\">]><a>&x;</a>";
        let err = parse(text, &limits()).unwrap_err();
        assert!(
            matches!(err, XmlError::DtdRefused { position } if position.line == 2 && position.column == 1),
            "{err:?}"
        );
    }

    #[test]
    fn depth_nodes_and_attributes_are_bounded() {
        assert!(parse("<a><b><c><d/></c></b></a>", &limits()).is_ok());
        let err = parse("<a><b><c><d><e/></d></c></b></a>", &limits()).unwrap_err();
        assert!(matches!(err, XmlError::TooDeep { limit: 4, .. }), "{err:?}");
        let many = format!("<a>{}</a>", "<b/>".repeat(60));
        assert!(matches!(
            parse(&many, &limits()).unwrap_err(),
            XmlError::TooManyNodes { limit: 50 }
        ));
        let err = parse("<a x='1' y='2' z='3'/>", &limits()).unwrap_err();
        assert!(
            matches!(err, XmlError::TooManyAttributes { limit: 2, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn malformed_xml_reports_line_and_column() {
        let err = parse("<a>\n  <b></c>\n</a>", &limits()).unwrap_err();
        let pos = err.position().expect("position");
        assert_eq!(pos.line, 2, "{err}");
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    #[test]
    fn non_utf8_and_foreign_encodings_are_refused() {
        let err = utf8_text(b"<a>\xcf\xf0\xe8</a>").unwrap_err();
        assert!(
            matches!(err, XmlError::NotUtf8 { byte_offset: 3, .. }),
            "{err:?}"
        );
        let err = utf8_text(b"<?xml version='1.0' encoding='windows-1251'?><a/>").unwrap_err();
        assert!(
            matches!(err, XmlError::DeclaredEncoding { ref encoding, .. } if encoding == "windows-1251")
        );
        assert!(
            utf8_text("<?xml version=\"1.0\" encoding=\"UTF-8\"?><a>Иванов</a>".as_bytes()).is_ok()
        );
    }

    #[test]
    fn positions_count_characters_not_bytes() {
        let text = "<a>Иван</a>";
        let pos = position_at(text, text.find("</a>").unwrap_or(0));
        assert_eq!((pos.line, pos.column, pos.offset), (1, 8, 8));
    }
}
