//! Owns the tree-less pass over a document the node is about to sign: its tokens, the namespaces
//! in scope, the limits, the one element with the given Id (streamed through the SMEV transform
//! as it goes by) and the one element that will hold the signature.
//! Must not serve verification (a verifier needs the tree, so that the node it verified is the node
//! it goes on to process), and must not accept a DTD or an undeclared prefix.
//!
//! Signing used to parse the whole document into a tree only to walk one element of it once;
//! this pass does the same work in one sweep over the text, at a fraction of the cost. Its output
//! is the same bytes as `smev_transform::transform` over the tree (the differential tests below
//! check that on every element of every conformance document).

use std::borrow::Cow;
use std::io::Write;
use std::ops::Range;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use super::c14n::XML_NS;
use super::smev_transform::{SmevTransformError, StreamAttribute, StreamTransform};
use super::{XmlError, position_at};
use crate::config::XmlLimits;

/// Where the signature goes into the holder element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Insertion {
    /// The holder has an end tag: insert at this byte offset (where its `</` starts).
    BeforeEndTag(usize),
    /// The holder is `<h .../>`: its `/>` starts at `slash`, and `qname` is the range of its
    /// qualified name (for the end tag the insertion has to write).
    ExpandEmpty { slash: usize, qname: Range<usize> },
}

/// Why a document could not be prepared for signing.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error(transparent)]
    Xml(#[from] XmlError),
    #[error("no element has Id `{0}`")]
    IdNotFound(String),
    #[error("Id `{id}` names {count} elements")]
    IdAmbiguous { id: String, count: usize },
    #[error("no <{0}> element to hold the signature")]
    NoHolder(String),
    #[error("several <{0}> elements")]
    SeveralHolders(String),
    #[error("the <{0}> element that holds the signature is inside the signed element")]
    HolderInsideTarget(String),
    #[error(transparent)]
    Transform(#[from] SmevTransformError),
}

/// Which element to transform.
#[derive(Debug, Clone, Copy)]
enum Select<'s> {
    /// The one element with an `Id`, `ID` or `id` attribute (any namespace) of this value, as
    /// `dsig::verify::resolve_id` finds it.
    Id(&'s str),
    /// The element at this index in document order (the differential tests).
    #[cfg_attr(not(test), allow(dead_code))]
    Nth(usize),
}

/// Writes the SMEV transform of the element of `text` whose Id is `id` (exactly one must have
/// it) into `out`, and finds the single `holder` element (namespace, local name) outside it.
/// Returns `out` and where the signature goes into the holder.
pub fn transform_for_signing<W: Write>(
    text: &str,
    limits: &XmlLimits,
    id: &str,
    holder: (&str, &str),
    out: W,
) -> Result<(W, Insertion), ScanError> {
    let (out, insertion) = scan(text, limits, Select::Id(id), Some(holder), out)?;
    let insertion = insertion.ok_or_else(|| ScanError::NoHolder(holder.1.to_owned()))?;
    Ok((out, insertion))
}

fn scan<W: Write>(
    text: &str,
    limits: &XmlLimits,
    select: Select<'_>,
    holder: Option<(&str, &str)>,
    out: W,
) -> Result<(W, Option<Insertion>), ScanError> {
    let mut s = Scanner {
        text,
        limits,
        select,
        holder,
        ns: Vec::with_capacity(16),
        frames: Vec::with_capacity(32),
        nodes: 0,
        elements: 0,
        matches: 0,
        holders: 0,
        holder_open: None,
        insertion: None,
        root_seen: false,
        raw: Vec::with_capacity(8),
        attrs: Vec::with_capacity(8),
        transform: StreamTransform::new(out),
    };
    s.run()?;
    s.finish()
}

struct Scanner<'a, 's, W> {
    text: &'a str,
    limits: &'s XmlLimits,
    select: Select<'s>,
    holder: Option<(&'s str, &'s str)>,
    /// (prefix, URI) declared by open elements, outermost first; "" is the default namespace
    /// (an empty URI undeclares it).
    ns: Vec<(&'a str, Cow<'a, str>)>,
    /// Per open element: `ns` length before it.
    frames: Vec<usize>,
    nodes: u32,
    /// Elements started so far.
    elements: usize,
    /// Elements that matched `select`.
    matches: usize,
    holders: usize,
    /// Depth of the open holder element, until its end tag is seen.
    holder_open: Option<usize>,
    insertion: Option<Insertion>,
    root_seen: bool,
    /// (qualified name, normalized value) of the current element's attributes, before their
    /// prefixes are resolved (a declaration may follow the attribute that uses it); reused.
    raw: Vec<(&'a str, Cow<'a, str>)>,
    attrs: Vec<StreamAttribute<'a>>,
    transform: StreamTransform<'a, W>,
}

impl<'a, W: Write> Scanner<'a, '_, W> {
    fn run(&mut self) -> Result<(), ScanError> {
        let mut reader = Reader::from_str(self.text);
        let config = reader.config_mut();
        config.check_end_names = true;
        config.check_comments = true;
        config.expand_empty_elements = false;
        config.trim_text(false);
        loop {
            let tag_start = offset(reader.buffer_position());
            let event = match reader.read_event() {
                Ok(e) => e,
                Err(e) => {
                    return Err(self.malformed(offset(reader.error_position()), e.to_string()));
                }
            };
            let end = offset(reader.buffer_position());
            match event {
                Event::Start(e) => self.start(&e, tag_start, end, false)?,
                Event::Empty(e) => self.start(&e, tag_start, end, true)?,
                Event::End(_) => self.end(end)?,
                Event::Text(t) => {
                    let raw = self.input(&t.into_inner(), tag_start)?;
                    self.character_data(raw, tag_start, true)?;
                }
                Event::CData(c) => {
                    let raw = self.input(&c.into_inner(), tag_start)?;
                    self.character_data(raw, tag_start, false)?;
                }
                Event::GeneralRef(r) => {
                    let name = self.input(&r.into_inner(), tag_start)?;
                    self.reference(name, tag_start)?;
                }
                Event::Comment(_) => self.count_node()?,
                Event::PI(_) => {
                    self.count_node()?;
                    if self.transform.depth() > 0 {
                        self.transform.processing_instruction()?;
                    }
                }
                Event::Decl(_) => {
                    let before = self.text.get(..tag_start).unwrap_or("");
                    if !before.trim_start_matches('\u{feff}').is_empty() {
                        return Err(self.malformed(tag_start, "an XML declaration after the start"));
                    }
                }
                Event::DocType(_) => {
                    return Err(XmlError::DtdRefused {
                        position: position_at(self.text, tag_start),
                    }
                    .into());
                }
                Event::Eof => return self.at_eof(end),
            }
        }
    }

    fn finish(self) -> Result<(W, Option<Insertion>), ScanError> {
        let wanted = match self.select {
            Select::Id(id) => id.to_owned(),
            Select::Nth(n) => format!("#{n}"),
        };
        match self.matches {
            1 => {}
            0 => return Err(ScanError::IdNotFound(wanted)),
            count => return Err(ScanError::IdAmbiguous { id: wanted, count }),
        }
        if let Some((_, local)) = self.holder {
            match self.holders {
                0 => return Err(ScanError::NoHolder(local.to_owned())),
                1 => {}
                _ => return Err(ScanError::SeveralHolders(local.to_owned())),
            }
        }
        Ok((self.transform.into_inner(), self.insertion))
    }

    fn at_eof(&self, end: usize) -> Result<(), ScanError> {
        if !self.frames.is_empty() {
            return Err(self.malformed(end, "the document ends inside an element"));
        }
        if !self.root_seen {
            return Err(self.malformed(end, "the document has no root element"));
        }
        Ok(())
    }

    fn start(
        &mut self,
        e: &BytesStart<'_>,
        tag_start: usize,
        tag_end: usize,
        empty: bool,
    ) -> Result<(), ScanError> {
        self.count_node()?;
        if self.frames.is_empty() {
            if self.root_seen {
                return Err(self.malformed(tag_start, "a second root element"));
            }
            self.root_seen = true;
        }
        self.frames.push(self.ns.len());
        if self.frames.len() > self.limits.max_depth {
            return Err(XmlError::TooDeep {
                limit: self.limits.max_depth,
                position: position_at(self.text, tag_start),
            }
            .into());
        }
        let qname = self.input(e.name().as_ref(), tag_start)?;
        check_name(qname).map_err(|why| self.malformed(tag_start, why))?;
        self.read_attributes(e, tag_start)?;
        self.resolve_attributes(tag_start)?;
        let (prefix, local) = split_qname(qname);
        let uri = self.element_namespace(prefix, tag_start)?;

        let index = self.elements;
        self.elements += 1;
        let inside = self.transform.depth() > 0;
        let selected = match self.select {
            Select::Id(id) => self
                .attrs
                .iter()
                .any(|a| matches!(a.local, "Id" | "ID" | "id") && a.value == id),
            Select::Nth(n) => n == index,
        };
        if selected {
            self.matches += 1;
        }
        if inside || (selected && self.matches == 1) {
            self.transform.start(uri.clone(), local, &self.attrs)?;
        }

        if let Some((h_ns, h_local)) = self.holder
            && local == h_local
            && uri == h_ns
        {
            self.holders += 1;
            if self.transform.depth() > 0 {
                return Err(ScanError::HolderInsideTarget(h_local.to_owned()));
            }
            if empty {
                let slash = tag_end.saturating_sub(2);
                if self.text.get(slash..tag_end) != Some("/>") {
                    return Err(self.malformed(tag_start, "an empty element without `/>`"));
                }
                let name_start = tag_start + 1;
                self.insertion = Some(Insertion::ExpandEmpty {
                    slash,
                    qname: name_start..name_start + qname.len(),
                });
            } else {
                self.holder_open = Some(self.frames.len());
            }
        }
        if empty {
            self.end(tag_end)?;
        }
        Ok(())
    }

    /// Splits the tag's attributes into namespace declarations (pushed onto `ns`) and the
    /// others (values normalized, kept in `raw`).
    fn read_attributes(&mut self, e: &BytesStart<'_>, tag_start: usize) -> Result<(), ScanError> {
        self.raw.clear();
        let declared_before = self.ns.len();
        let mut rest = self.input(e.attributes_raw(), tag_start)?;
        while let Some((key, value, after)) =
            next_attribute(rest).map_err(|why| self.malformed(tag_start, why))?
        {
            rest = after;
            check_name(key).map_err(|why| self.malformed(tag_start, why))?;
            if self.raw.len() >= self.limits.max_attributes_per_element {
                return Err(XmlError::TooManyAttributes {
                    limit: self.limits.max_attributes_per_element,
                    position: position_at(self.text, tag_start),
                }
                .into());
            }
            let declared = self.ns.get(declared_before..).unwrap_or(&[]);
            let twice = self.raw.iter().any(|(k, _)| *k == key)
                || declared
                    .iter()
                    .any(|(p, _)| match key.strip_prefix("xmlns") {
                        Some("") => p.is_empty(),
                        Some(rest) => rest.strip_prefix(':') == Some(*p),
                        None => false,
                    });
            if twice {
                return Err(self.malformed(tag_start, format!("attribute `{key}` twice")));
            }
            if key == "xmlns" {
                let uri = self.attribute_value(value, tag_start)?;
                self.ns.push(("", uri));
            } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                let uri = self.attribute_value(value, tag_start)?;
                check_declaration(prefix, &uri).map_err(|why| self.malformed(tag_start, why))?;
                self.ns.push((prefix, uri));
            } else {
                let value = self.attribute_value(value, tag_start)?;
                self.raw.push((key, value));
            }
        }
        Ok(())
    }

    /// Moves `raw` into `attrs`: prefixes resolved, no attribute twice (by namespace and name).
    fn resolve_attributes(&mut self, tag_start: usize) -> Result<(), ScanError> {
        self.attrs.clear();
        // Taken out and put back so that its buffer is reused while `self` resolves prefixes.
        let mut raw = std::mem::take(&mut self.raw);
        for (qname, value) in raw.drain(..) {
            let (prefix, local) = split_qname(qname);
            let uri = match prefix {
                None => Cow::Borrowed(""),
                Some(p) => self.prefixed_namespace(p, tag_start)?,
            };
            if self.attrs.iter().any(|a| a.local == local && a.uri == uri) {
                return Err(self.malformed(tag_start, format!("attribute `{local}` twice")));
            }
            self.attrs.push(StreamAttribute { uri, local, value });
        }
        self.raw = raw;
        Ok(())
    }

    fn element_namespace(
        &self,
        prefix: Option<&'a str>,
        at: usize,
    ) -> Result<Cow<'a, str>, ScanError> {
        match prefix {
            Some(p) => self.prefixed_namespace(p, at),
            None => Ok(self
                .ns
                .iter()
                .rev()
                .find(|(p, _)| p.is_empty())
                .map_or(Cow::Borrowed(""), |(_, uri)| uri.clone())),
        }
    }

    fn prefixed_namespace(&self, prefix: &str, at: usize) -> Result<Cow<'a, str>, ScanError> {
        if prefix == "xml" {
            return Ok(Cow::Borrowed(XML_NS));
        }
        self.ns
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map(|(_, uri)| uri.clone())
            .ok_or_else(|| self.malformed(at, format!("unknown namespace prefix `{prefix}`")))
    }

    fn end(&mut self, tag_end: usize) -> Result<(), ScanError> {
        if self.transform.depth() > 0 {
            self.transform.end()?;
        }
        if self.holder_open == Some(self.frames.len()) {
            self.holder_open = None;
            let close = self
                .text
                .get(..tag_end)
                .and_then(|t| t.rfind("</"))
                .ok_or_else(|| self.malformed(tag_end, "an end tag without `</`"))?;
            self.insertion = Some(Insertion::BeforeEndTag(close));
        }
        if let Some(mark) = self.frames.pop() {
            self.ns.truncate(mark);
        }
        Ok(())
    }

    fn character_data(&mut self, raw: &str, at: usize, is_text: bool) -> Result<(), ScanError> {
        if self.frames.is_empty() {
            if is_text
                && raw
                    .bytes()
                    .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                return Ok(());
            }
            return Err(self.malformed(at, "character data outside the root element"));
        }
        self.count_node()?;
        // Most text holds none of the bytes that need a closer look (one pass, no search calls).
        let plain = !raw.bytes().any(|b| TEXT_SPECIAL[usize::from(b)]);
        if !plain {
            if has_control_character(raw.as_bytes()) {
                return Err(self.malformed(at, "a control character in character data"));
            }
            if is_text && raw.contains("]]>") {
                return Err(self.malformed(at, "`]]>` in text"));
            }
        }
        if self.transform.depth() > 0 {
            if plain {
                self.transform.text(raw);
            } else {
                self.transform.text(&normalize_line_ends(raw));
            }
        }
        Ok(())
    }

    fn reference(&mut self, name: &str, at: usize) -> Result<(), ScanError> {
        if self.frames.is_empty() {
            return Err(self.malformed(at, "a reference outside the root element"));
        }
        let c = resolve_reference(name).ok_or_else(|| {
            self.malformed(at, format!("unknown or invalid reference `&{name};`"))
        })?;
        if self.transform.depth() > 0 {
            self.transform.text(c.encode_utf8(&mut [0u8; 4]));
        }
        Ok(())
    }

    fn count_node(&mut self) -> Result<(), ScanError> {
        self.nodes = self.nodes.saturating_add(1);
        if self.nodes > self.limits.max_nodes {
            return Err(XmlError::TooManyNodes {
                limit: self.limits.max_nodes,
            }
            .into());
        }
        Ok(())
    }

    fn attribute_value(&self, raw: &'a str, at: usize) -> Result<Cow<'a, str>, ScanError> {
        normalize_attribute(raw).map_err(|why| self.malformed(at, why))
    }

    /// `part`, a token quick-xml borrowed from the input, as a slice of the input itself (so it
    /// lives as long as the document).
    fn input(&self, part: &[u8], at: usize) -> Result<&'a str, ScanError> {
        if part.is_empty() {
            return Ok("");
        }
        let start = (part.as_ptr() as usize).wrapping_sub(self.text.as_ptr() as usize);
        self.text
            .get(start..start.saturating_add(part.len()))
            .filter(|s| s.as_ptr() == part.as_ptr())
            .ok_or_else(|| self.malformed(at, "a token outside the input (internal error)"))
    }

    fn malformed(&self, at: usize, message: impl Into<String>) -> ScanError {
        XmlError::Malformed {
            message: message.into(),
            position: position_at(self.text, at),
        }
        .into()
    }
}

/// Bytes after which text needs a closer look: C0 controls (`\r` for line ends) but tab and line feed, and
/// `>` (for `]]>`).
const TEXT_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0usize;
    while b < 0x20 {
        t[b] = b != 0x09 && b != 0x0a;
        b += 1;
    }
    t[b'>' as usize] = true;
    t
};

/// Bytes after which an attribute value needs a closer look: every C0 control (tab, line feed and
/// carriage return become spaces), `&` and `<`.
const ATTRIBUTE_SPECIAL: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0usize;
    while b < 0x20 {
        t[b] = true;
        b += 1;
    }
    t[b'&' as usize] = true;
    t[b'<' as usize] = true;
    t
};

/// Whether `bytes` hold a C0 control other than tab, line feed and carriage return: no XML 1.0 document
/// may (written without an early exit, so that it compiles to a vector loop over the whole text).
fn has_control_character(bytes: &[u8]) -> bool {
    bytes.iter().fold(false, |found, &b| {
        found | ((b < 0x20) & (b != b'\t') & (b != b'\n') & (b != b'\r'))
    })
}

fn offset(position: u64) -> usize {
    usize::try_from(position).unwrap_or(usize::MAX)
}

fn split_qname(qname: &str) -> (Option<&str>, &str) {
    // Names are short: a plain loop beats a vectorized search's set-up.
    match qname.bytes().position(|b| b == b':') {
        // A colon is ASCII, so both sides are on character boundaries.
        Some(i) => (qname.get(..i), qname.get(i + 1..).unwrap_or("")),
        None => (None, qname),
    }
}

/// The first attribute of `rest` (what follows a tag's name): `(name, raw value, what follows)`, or `None`
/// when only whitespace is left. XML wants whitespace before every attribute, `=` (with optional
/// whitespace around it) and a value in matching quotes; quick-xml's reader lets `a='1'b='2'` pass.
/// Every split is at an ASCII byte, so the slices stay on character boundaries.
fn next_attribute(rest: &str) -> Result<Option<(&str, &str, &str)>, String> {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\r' | b'\n');
    let bytes = rest.as_bytes();
    let skip = |mut i: usize| {
        while bytes.get(i).is_some_and(|&b| is_space(b)) {
            i += 1;
        }
        i
    };
    let start = skip(0);
    if start == bytes.len() {
        return Ok(None);
    }
    if start == 0 {
        return Err("no whitespace before an attribute".into());
    }
    let mut i = start;
    while bytes.get(i).is_some_and(|&b| !is_space(b) && b != b'=') {
        i += 1;
    }
    let name = rest.get(start..i).unwrap_or("");
    i = skip(i);
    if bytes.get(i) != Some(&b'=') {
        return Err(format!("attribute `{name}` has no value"));
    }
    i = skip(i + 1);
    let quote = match bytes.get(i) {
        Some(&q @ (b'"' | b'\'')) => q,
        _ => return Err(format!("the value of attribute `{name}` is not in quotes")),
    };
    let value_start = i + 1;
    let len = bytes
        .get(value_start..)
        .and_then(|v| memchr::memchr(quote, v))
        .ok_or_else(|| format!("the value of attribute `{name}` has no closing quote"))?;
    let value = rest.get(value_start..value_start + len).unwrap_or("");
    let after = rest.get(value_start + len + 1..).unwrap_or("");
    Ok(Some((name, value, after)))
}

/// A cheap guard on names: what quick-xml hands over is whatever lies between the markup, so
/// refuse the ASCII characters no XML name may hold, an empty part, a part starting with a
/// digit, `-` or `.`, and more than one colon.
fn check_name(qname: &str) -> Result<(), String> {
    let bytes = qname.as_bytes();
    let mut colons = 0;
    let mut part_start = true;
    let ok = bytes.iter().all(|&b| {
        let fine = if b == b':' {
            colons += 1;
            !part_start
        } else if part_start {
            !(b == b'-' || b == b'.' || b.is_ascii_digit()) && NAME_BYTE[usize::from(b)]
        } else {
            NAME_BYTE[usize::from(b)]
        };
        part_start = b == b':';
        fine
    });
    if !ok || bytes.is_empty() || part_start || colons > 1 {
        return Err(format!("`{qname}` is not an XML name"));
    }
    Ok(())
}

/// Bytes that may appear in an XML name: ASCII letters, digits, `-`, `.`, `_`, `:` and every
/// byte of a multi-byte character (the guard does not check which non-ASCII characters).
const NAME_BYTE: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0usize;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b':') || c >= 0x80;
        b += 1;
    }
    t
};

/// The rules of Namespaces in XML 1.0 for `xmlns:prefix="uri"`.
fn check_declaration(prefix: &str, uri: &str) -> Result<(), String> {
    const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";
    if uri.is_empty() {
        return Err(format!("prefix `{prefix}` bound to the empty namespace"));
    }
    if prefix == "xmlns" || uri == XMLNS_NS {
        return Err("the `xmlns` prefix and namespace cannot be declared".into());
    }
    if (prefix == "xml") != (uri == XML_NS) {
        return Err("the `xml` prefix belongs to the XML namespace only".into());
    }
    Ok(())
}

/// `&name;` as a character: the five predefined entities and character references to XML
/// characters. Anything else needs a DTD, which is refused.
fn resolve_reference(name: &str) -> Option<char> {
    let code = match name {
        "lt" => return Some('<'),
        "gt" => return Some('>'),
        "amp" => return Some('&'),
        "apos" => return Some('\''),
        "quot" => return Some('"'),
        _ => {
            let digits = name.strip_prefix('#')?;
            match digits.strip_prefix('x') {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => digits.parse::<u32>().ok()?,
            }
        }
    };
    char::from_u32(code).filter(|&c| {
        matches!(c, '\t' | '\n' | '\r')
            || ('\u{20}'..='\u{d7ff}').contains(&c)
            || ('\u{e000}'..='\u{fffd}').contains(&c)
            || c >= '\u{10000}'
    })
}

/// Line ends as XML reads them: `\r\n` and a lone `\r` become `\n`.
fn normalize_line_ends(raw: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\r', raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
}

/// An attribute value as XML reads it (all attributes are CDATA without a DTD): references
/// resolved, a line end or tab becomes one space (a referenced one is kept).
fn normalize_attribute(raw: &str) -> Result<Cow<'_, str>, String> {
    let bytes = raw.as_bytes();
    // Values are short: one pass over a table beats several searches.
    if !bytes.iter().any(|&b| ATTRIBUTE_SPECIAL[usize::from(b)]) {
        return Ok(Cow::Borrowed(raw));
    }
    if bytes.contains(&b'<') {
        return Err("`<` in an attribute value".into());
    }
    if has_control_character(bytes) {
        return Err("a control character in an attribute value".into());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find(['&', '\t', '\n', '\r']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix('&') {
            let semi = after
                .find(';')
                .ok_or_else(|| "an unterminated reference in an attribute value".to_string())?;
            let name = &after[..semi];
            let c = resolve_reference(name)
                .ok_or_else(|| format!("unknown or invalid reference `&{name};`"))?;
            out.push(c);
            rest = &after[semi + 1..];
        } else {
            out.push(' ');
            rest = tail
                .strip_prefix("\r\n")
                .unwrap_or_else(|| tail.get(1..).unwrap_or(""));
        }
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::smev_transform::transform;

    fn limits() -> XmlLimits {
        XmlLimits::default()
    }

    fn tree_transform(text: &str, nth: usize) -> Option<Vec<u8>> {
        let doc = crate::xml::parse(text, &limits()).ok()?;
        let node = doc.descendants().filter(|n| n.is_element()).nth(nth)?;
        let mut out = Vec::new();
        transform(node, None, &mut out).ok()?;
        Some(out)
    }

    fn stream_transform(text: &str, nth: usize) -> Result<Vec<u8>, ScanError> {
        scan(text, &limits(), Select::Nth(nth), None, Vec::new()).map(|(out, _)| out)
    }

    /// Every element of `text`: the stream gives the tree's bytes. Returns how many compared.
    fn same_as_tree(name: &str, text: &str) -> usize {
        let Ok(doc) = crate::xml::parse(text, &limits()) else {
            return 0;
        };
        let count = doc.descendants().filter(|n| n.is_element()).count();
        for nth in 0..count {
            let tree = tree_transform(text, nth).expect("tree transform");
            let stream = stream_transform(text, nth)
                .unwrap_or_else(|e| panic!("{name}: element {nth}: the scan refused it: {e}"));
            assert_eq!(
                String::from_utf8_lossy(&stream),
                String::from_utf8_lossy(&tree),
                "{name}: element {nth}"
            );
        }
        count
    }

    fn vector_files() -> Vec<std::path::PathBuf> {
        // As tests/vectors finds them: next to the repository, else where CI keeps them.
        let rel = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
        let root = if rel.is_dir() {
            rel
        } else {
            std::path::PathBuf::from("/work/shared/vectors")
        };
        let mut files = Vec::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "xml") {
                    files.push(path);
                }
            }
        }
        files.sort();
        files
    }

    #[test]
    fn every_element_of_every_vector_transforms_as_the_tree_does() {
        let files = vector_files();
        assert!(
            files.len() > 20,
            "the shared vectors are missing ({} files)",
            files.len()
        );
        let mut elements = 0;
        let mut documents = 0;
        for path in &files {
            let Ok(text) = std::fs::read_to_string(path) else {
                continue;
            };
            let n = same_as_tree(&path.display().to_string(), &text);
            if n > 0 {
                documents += 1;
            }
            elements += n;
        }
        assert!(
            documents > 20 && elements > 500,
            "compared {elements} elements of {documents} documents"
        );
    }

    #[test]
    fn tricky_documents_transform_as_the_tree_does() {
        let cases = [
            "<a xmlns='u'> <!--c--> x<?pi x?> y<![CDATA[ <z> ]]>&amp;&#x41;&#66;</a>",
            "<a xmlns='u'>\r\n<b>l1\r\nl2\rl3</b> \r </a>",
            "<a xmlns='u' z='1' xmlns:p='v' p:y='2' b='&lt;&quot;&#10;&#9;x\ty\r\nz'/>",
            "<p:a xmlns:p='u' xmlns:q='v'><q:b q:x='1' p:x='2' x='3'/><c xmlns=''>t</c></p:a>",
            "<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='ru'><b xml:space='preserve'> </b></a>",
            "<a>no namespace <b xmlns='u'><c xmlns=''/></b></a>",
            "\u{feff}<?xml version='1.0' encoding='UTF-8'?>\n<!--before--><a xmlns='u'>Значение &amp; ещё</a>\n<?after?>",
            "<a xmlns='u'><b xmlns='v'/><c xmlns='v'><d xmlns='u'/></c><e/></a>",
        ];
        for (i, text) in cases.iter().enumerate() {
            assert!(
                same_as_tree(&format!("case {i}"), text) > 0,
                "case {i} did not parse"
            );
        }
    }

    #[test]
    fn finds_the_id_and_where_the_signature_goes() {
        let text = "<e xmlns='t'><d Id='X'><v>1</v></d><h/></e>";
        let (out, at) =
            transform_for_signing(text, &limits(), "X", ("t", "h"), Vec::new()).expect("scan");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "<ns1:d xmlns:ns1=\"t\" Id=\"X\"><ns1:v>1</ns1:v></ns1:d>"
        );
        let slash = text.find("/>").expect("slash");
        assert_eq!(
            at,
            Insertion::ExpandEmpty {
                slash,
                qname: slash - 1..slash
            }
        );

        let text = "<e xmlns='t'><d Id='X'/><h> </h></e>";
        let (_, at) =
            transform_for_signing(text, &limits(), "X", ("t", "h"), Vec::new()).expect("scan");
        assert_eq!(at, Insertion::BeforeEndTag(text.find("</h>").expect("end")));
    }

    fn refusal(text: &str) -> String {
        match transform_for_signing(text, &limits(), "X", ("t", "h"), Vec::new()) {
            Ok(_) => panic!("accepted: {text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_what_the_tree_parser_refuses() {
        for (text, why) in [
            ("<!DOCTYPE e []><e xmlns='t'><d Id='X'/><h/></e>", "DTD"),
            ("<e xmlns='t'><d Id='X'></x><h/></e>", "not well-formed"),
            ("<e xmlns='t'><d Id='X'/><h/>", "not well-formed"),
            (
                "<e xmlns='t'><p:d Id='X'/><h/></e>",
                "unknown namespace prefix `p`",
            ),
            (
                "<e xmlns='t'><d Id='X' p:a='1'/><h/></e>",
                "unknown namespace prefix `p`",
            ),
            ("<e xmlns='t'><d Id='X'>&nbsp;</d><h/></e>", "`&nbsp;`"),
            ("<e xmlns='t'><d Id='X'>&#0;</d><h/></e>", "`&#0;`"),
            ("<e xmlns='t'><d Id='X' a='&bogus;'/><h/></e>", "`&bogus;`"),
            ("<e xmlns='t' a='&bogus;'><d Id='X'/><h/></e>", "`&bogus;`"),
            (
                "<e xmlns='t' p:a='1'><d Id='X'/><h/></e>",
                "unknown namespace prefix `p`",
            ),
            (
                "<e xmlns='t'><d Id='X' a='1' a='2'/><h/></e>",
                "attribute `a` twice",
            ),
            (
                "<e xmlns='t'><d Id='X' xmlns:p='u' xmlns:p='v'/><h/></e>",
                "`xmlns:p` twice",
            ),
            (
                "<e xmlns='t'><d Id='X' xmlns='u' xmlns='v'/><h/></e>",
                "`xmlns` twice",
            ),
            (
                "<e xmlns='t'><d Id='X' a='1'b='2'/><h/></e>",
                "not well-formed",
            ),
            ("<e xmlns='t'><d Id='X' a=1/><h/></e>", "not well-formed"),
            ("<e xmlns='t'><:d Id='X'/><h/></e>", "not an XML name"),
            ("<e xmlns='t'><d: Id='X'/><h/></e>", "not an XML name"),
            ("<e xmlns='t'><a:b:d Id='X'/><h/></e>", "not an XML name"),
            (
                "<e xmlns='t' xmlns:p='t'><d Id='X' a='1' p:a='2' xmlns:q='t' q:a='3'/><h/></e>",
                "attribute `a` twice",
            ),
            ("<e xmlns='t'><d Id='X'/><h/></e><e/>", "second root"),
            ("<e xmlns='t'><d Id='X'/><h/></e>text", "outside the root"),
            (
                "<e xmlns='t' xmlns:p=''><d Id='X'/><h/></e>",
                "empty namespace",
            ),
            ("<e xmlns='t'><1d Id='X'/><h/></e>", "not an XML name"),
            (
                "<e xmlns='t'><d Id='X'>a\u{1}b</d><h/></e>",
                "control character in character data",
            ),
            (
                "<e xmlns='t'><d Id='X'><![CDATA[\u{8}]]></d><h/></e>",
                "control character in character data",
            ),
            (
                "<e xmlns='t'><d Id='X' a='\u{1f}'/><h/></e>",
                "control character in an attribute value",
            ),
            ("<e xmlns='t'><d Id='X'>a]]>b</d><h/></e>", "`]]>` in text"),
            ("<e xmlns='t'><d Id='X' a='<'/><h/></e>", "`<`"),
            (
                "<e xmlns='t'><!-- a -- b --><d Id='X'/><h/></e>",
                "not well-formed",
            ),
            (
                "<e xmlns='t'><d Id='X'/><d Id='X'/><h/></e>",
                "names 2 elements",
            ),
            ("<e xmlns='t'><d id='Y'/><h/></e>", "no element has Id `X`"),
            ("<e xmlns='t'><d Id='X'/></e>", "no <h> element"),
            ("<e xmlns='t'><d Id='X'/><h/><h/></e>", "several <h>"),
            (
                "<e xmlns='t'><d Id='X'><h/></d></e>",
                "inside the signed element",
            ),
        ] {
            let got = refusal(text);
            assert!(got.contains(why), "{text}: expected `{why}`, got `{got}`");
        }
    }

    #[test]
    fn enforces_the_limits() {
        let tight = XmlLimits {
            max_depth: 3,
            max_nodes: 10,
            max_attributes_per_element: 2,
            ..XmlLimits::default()
        };
        let run = |text: &str| {
            transform_for_signing(text, &tight, "X", ("t", "h"), Vec::new())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(run("<e xmlns='t'><d Id='X'><a><b/></a></d><h/></e>").contains("deeper than 3"));
        assert!(
            run("<e xmlns='t'><d Id='X' a='1' b='2'/><h/></e>").contains("more than 2 attributes")
        );
        assert!(
            run(&format!(
                "<e xmlns='t'><d Id='X'/>{}<h/></e>",
                "<i/>".repeat(10)
            ))
            .contains("more than 10 nodes")
        );
        assert_eq!(run("<e xmlns='t'><d Id='X' a='1'><a/></d><h/></e>"), "");
    }
}
