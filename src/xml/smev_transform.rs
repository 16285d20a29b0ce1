//! Owns the SMEV 3 `urn://smev-gov-ru/xmldsig/transform` (prefix rewriting to ns1.., attribute sorting, whitespace-only text dropped), streamed into any `std::io::Write`.
//! Must not canonicalize, digest or re-parse: applied to a subtree (from the `roxmltree` tree, or from the token stream of `xml::scan` through `StreamTransform`) it yields exactly transform(exc-c14n(subtree)).

use std::borrow::Cow;
use std::io::Write;

use roxmltree::{Node, NodeId, NodeType};

/// The transform's algorithm URI.
pub const ALGORITHM: &str = "urn://smev-gov-ru/xmldsig/transform";

/// Errors raised by the SMEV transform.
#[derive(Debug, thiserror::Error)]
pub enum SmevTransformError {
    #[error("writing SMEV transform output failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the SMEV transform applies to a document or an element, not a {0:?} node")]
    UnsupportedApex(NodeType),
    #[error("SMEV transform input refused: {0}")]
    Parse(#[from] crate::xml::XmlError),
}

/// Applies the transform to `apex` (document root or element) and its descendants, leaving
/// out the subtree `exclude` (enveloped signature). Comments and processing instructions are
/// dropped. The output equals the reference (Java `SmevTransformSpi`) run over the exclusive
/// c14n (without comments) of the same node set.
///
/// Reference behaviours kept on purpose: an element in no namespace gets a prefix bound to
/// the empty URI (`<ns1:a xmlns:ns1="">`); `xml:*` attributes get an `nsN` prefix bound to the
/// XML namespace; QName-valued attribute content is not rewritten.
pub fn transform<W: Write + ?Sized>(
    apex: Node<'_, '_>,
    exclude: Option<NodeId>,
    out: &mut W,
) -> Result<(), SmevTransformError> {
    match apex.node_type() {
        NodeType::Root | NodeType::Element => {}
        other => return Err(SmevTransformError::UnsupportedApex(other)),
    }
    let mut t = Transformer {
        out,
        exclude,
        prefixes: Prefixes::new(),
        attrs: Vec::with_capacity(8),
    };
    t.run(apex)
}

/// Parses `xml` (no DTD) and transforms the whole document (the transform as a byte-stream
/// step, e.g. for the vectors or a transform chain that already produced octets).
pub fn transform_xml<W: Write + ?Sized>(xml: &str, out: &mut W) -> Result<(), SmevTransformError> {
    let doc = crate::xml::parse(xml, &crate::config::XmlLimits::default())?;
    transform(doc.root(), None, out)
}

/// The output state both walks share: the `nsN` numbering and the namespaces in scope.
struct Prefixes<'a> {
    /// Next `nsN` number; one counter per transform run, never reset.
    counter: u32,
    /// (namespace URI, prefix number) declared by open elements, outermost first; URIs are
    /// borrowed from the input wherever they can be, so a declaration costs no allocation.
    scope: Vec<(Cow<'a, str>, u32)>,
    /// Per open element: `scope` length before it.
    frames: Vec<usize>,
    /// Declarations the element being started adds: (prefix number, index into `scope`).
    new_decls: Vec<(u32, usize)>,
}

impl<'a> Prefixes<'a> {
    fn new() -> Self {
        Prefixes {
            counter: 1,
            scope: Vec::with_capacity(16),
            frames: Vec::with_capacity(32),
            new_decls: Vec::with_capacity(4),
        }
    }

    fn lookup(&self, uri: &str) -> Option<u32> {
        // Innermost first: the same URI cannot be in scope twice, so the order only saves time.
        self.scope
            .iter()
            .rev()
            .find(|(u, _)| *u == uri)
            .map(|&(_, p)| p)
    }

    fn prefix_for(&mut self, uri: Cow<'a, str>) -> u32 {
        if let Some(p) = self.lookup(&uri) {
            return p;
        }
        let p = self.counter;
        self.counter = self.counter.saturating_add(1);
        self.scope.push((uri, p));
        self.new_decls.push((p, self.scope.len() - 1));
        p
    }

    /// Opens an element in namespace `uri` (empty: none) and returns its prefix number.
    fn open(&mut self, uri: Cow<'a, str>) -> u32 {
        self.frames.push(self.scope.len());
        self.new_decls.clear();
        self.prefix_for(uri)
    }

    fn close(&mut self) {
        if let Some(mark) = self.frames.pop() {
            self.scope.truncate(mark);
        }
    }

    /// Writes `<nsP:local` and the declarations the element adds (attributes follow).
    fn write_start_tag<W: Write + ?Sized>(
        &self,
        out: &mut W,
        prefix: u32,
        local: &str,
    ) -> std::io::Result<()> {
        write_prefix(out, b"<", prefix, b":")?;
        out.write_all(local.as_bytes())?;
        for &(p, idx) in &self.new_decls {
            write_prefix(out, b" xmlns:", p, b"=\"")?;
            if let Some((u, _)) = self.scope.get(idx) {
                write_escaped(out, u, true)?;
            }
            out.write_all(b"\"")?;
        }
        Ok(())
    }

    /// Writes `</nsP:local>` for an element in namespace `uri` and closes it.
    fn write_end_tag<W: Write + ?Sized>(
        &mut self,
        out: &mut W,
        uri: &str,
        local: &str,
    ) -> std::io::Result<()> {
        let prefix = self.lookup(uri).unwrap_or(0);
        write_prefix(out, b"</", prefix, b":")?;
        out.write_all(local.as_bytes())?;
        out.write_all(b">")?;
        self.close();
        Ok(())
    }
}

/// The reference's attribute order: qualified attributes by (URI, local name), then
/// unqualified ones by local name. Arguments are (namespace URI or "", local name).
fn attribute_order(x: (&str, &str), y: (&str, &str)) -> std::cmp::Ordering {
    match (x.0.is_empty(), y.0.is_empty()) {
        (true, true) => x.1.cmp(y.1),
        (false, false) => x.0.cmp(y.0).then_with(|| x.1.cmp(y.1)),
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
    }
}

/// Writes one attribute: ` nsP:local="value"` (`p` = 0: unqualified).
fn write_attribute<W: Write + ?Sized>(
    out: &mut W,
    p: u32,
    local: &str,
    value: &str,
) -> std::io::Result<()> {
    if p == 0 {
        out.write_all(b" ")?;
    } else {
        write_prefix(out, b" ", p, b":")?;
    }
    out.write_all(local.as_bytes())?;
    out.write_all(b"=\"")?;
    write_escaped(out, value, true)?;
    out.write_all(b"\"")
}

/// Java `String.trim()` treats every char <= U+0020 as blank; in UTF-8 those are exactly the
/// bytes <= 0x20 (every byte of a longer character is >= 0x80).
fn is_blank(text: &[u8]) -> bool {
    text.iter().all(|b| *b <= 0x20)
}

struct Transformer<'o, 'a, W: ?Sized> {
    out: &'o mut W,
    exclude: Option<NodeId>,
    prefixes: Prefixes<'a>,
    /// (attribute index, prefix number; 0 = unqualified), reused per element.
    attrs: Vec<(usize, u32)>,
}

impl<'a, W: Write + ?Sized> Transformer<'_, 'a, W> {
    fn run(&mut self, apex: Node<'a, '_>) -> Result<(), SmevTransformError> {
        let mut cur = apex;
        loop {
            let mut descend = false;
            if Some(cur.id()) != self.exclude {
                match cur.node_type() {
                    NodeType::Root => descend = true,
                    NodeType::Element => {
                        self.start(cur)?;
                        descend = true;
                    }
                    NodeType::Text => cur = self.text_run(cur)?,
                    NodeType::Comment | NodeType::PI => {}
                }
            }
            if descend {
                if let Some(child) = cur.first_child() {
                    cur = child;
                    continue;
                }
                self.end(cur)?;
            }
            loop {
                if cur == apex {
                    return Ok(());
                }
                if let Some(next) = cur.next_sibling() {
                    cur = next;
                    break;
                }
                match cur.parent() {
                    Some(p) => {
                        cur = p;
                        self.end(cur)?;
                    }
                    None => return Ok(()),
                }
            }
        }
    }

    fn start(&mut self, node: Node<'a, '_>) -> Result<(), SmevTransformError> {
        let uri = node.tag_name().namespace().unwrap_or("");
        let prefix = self.prefixes.open(Cow::Borrowed(uri));

        // The buffer holds attribute indexes so it can be reused without borrowing the tree.
        let attr = |i: usize| node.attributes().nth(i);
        let key = |i: usize| attr(i).map_or(("", ""), |a| (a.namespace().unwrap_or(""), a.name()));
        self.attrs.clear();
        self.attrs
            .extend((0..node.attributes().len()).map(|i| (i, 0u32)));
        self.attrs
            .sort_by(|&(x, _), &(y, _)| attribute_order(key(x), key(y)));
        for k in 0..self.attrs.len() {
            let (i, _) = self.attrs[k];
            let ns = attr(i).and_then(|a| a.namespace()).unwrap_or("");
            if !ns.is_empty() {
                self.attrs[k].1 = self.prefixes.prefix_for(Cow::Borrowed(ns));
            }
        }

        let out = &mut *self.out;
        self.prefixes
            .write_start_tag(out, prefix, node.tag_name().name())?;
        for &(i, p) in &self.attrs {
            if let Some(a) = attr(i) {
                write_attribute(out, p, a.name(), a.value())?;
            }
        }
        out.write_all(b">")?;
        Ok(())
    }

    fn end(&mut self, node: Node<'_, '_>) -> Result<(), SmevTransformError> {
        if !node.is_element() {
            return Ok(());
        }
        let name = node.tag_name();
        self.prefixes
            .write_end_tag(self.out, name.namespace().unwrap_or(""), name.name())?;
        Ok(())
    }

    /// Handles the run of text siblings starting at `first` that exclusive c14n would emit as
    /// one piece of character data (comments and the excluded subtree vanish between them).
    /// Returns the last node of the run.
    fn text_run<'t, 'i>(
        &mut self,
        first: Node<'t, 'i>,
    ) -> Result<Node<'t, 'i>, SmevTransformError> {
        let mut last = first;
        let mut blank = true;
        let mut cur = Some(first);
        while let Some(n) = cur {
            let excluded = Some(n.id()) == self.exclude;
            if n.is_text() && !excluded {
                blank &= is_blank(n.text().unwrap_or("").as_bytes());
            } else if !(n.is_comment() || excluded) {
                break;
            }
            last = n;
            cur = n.next_sibling();
        }
        if !blank {
            let mut cur = Some(first);
            while let Some(n) = cur {
                if n.is_text() && Some(n.id()) != self.exclude {
                    write_escaped(self.out, n.text().unwrap_or(""), false)?;
                }
                if n == last {
                    break;
                }
                cur = n.next_sibling();
            }
        }
        Ok(last)
    }
}

/// One attribute of an element fed to [`StreamTransform::start`].
#[derive(Debug, Clone)]
pub struct StreamAttribute<'a> {
    /// Namespace URI; empty for an unqualified attribute.
    pub uri: Cow<'a, str>,
    pub local: &'a str,
    /// The normalized value (references resolved, whitespace normalized as XML requires).
    pub value: Cow<'a, str>,
}

/// The same transform fed by a token stream instead of a tree (see `xml::scan`): elements
/// with resolved namespaces, character data with references resolved, comments and
/// processing instructions. Fed the tokens of one element's subtree it writes exactly what
/// [`transform`] writes for that element.
pub struct StreamTransform<'a, W> {
    out: W,
    prefixes: Prefixes<'a>,
    /// The character data of the current run (a comment continues it, anything else ends it).
    run: Vec<u8>,
    /// (attribute position, prefix number), reused per element.
    order: Vec<(usize, u32)>,
    /// (namespace URI, local name) of each open element.
    open: Vec<(Cow<'a, str>, &'a str)>,
}

impl<'a, W: Write> StreamTransform<'a, W> {
    pub fn new(out: W) -> Self {
        StreamTransform {
            out,
            prefixes: Prefixes::new(),
            run: Vec::with_capacity(256),
            order: Vec::with_capacity(8),
            open: Vec::with_capacity(16),
        }
    }

    /// The writer, once the subtree is complete.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Elements opened and not yet closed.
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    pub fn start(
        &mut self,
        uri: Cow<'a, str>,
        local: &'a str,
        attributes: &[StreamAttribute<'a>],
    ) -> Result<(), SmevTransformError> {
        self.flush_run()?;
        let prefix = self.prefixes.open(uri.clone());
        self.open.push((uri, local));
        self.order.clear();
        self.order.extend((0..attributes.len()).map(|i| (i, 0u32)));
        let key = |i: usize| {
            attributes
                .get(i)
                .map_or(("", ""), |a| (a.uri.as_ref(), a.local))
        };
        self.order
            .sort_by(|&(x, _), &(y, _)| attribute_order(key(x), key(y)));
        for slot in self.order.iter_mut() {
            if let Some(a) = attributes.get(slot.0).filter(|a| !a.uri.is_empty()) {
                slot.1 = self.prefixes.prefix_for(a.uri.clone());
            }
        }
        self.prefixes
            .write_start_tag(&mut self.out, prefix, local)?;
        for &(i, p) in &self.order {
            if let Some(a) = attributes.get(i) {
                write_attribute(&mut self.out, p, a.local, &a.value)?;
            }
        }
        self.out.write_all(b">")?;
        Ok(())
    }

    /// Character data (text, CDATA content or a resolved reference), line ends normalized.
    pub fn text(&mut self, text: &str) {
        self.run.extend_from_slice(text.as_bytes());
    }

    /// A processing instruction: dropped, but it ends the run of character data.
    pub fn processing_instruction(&mut self) -> Result<(), SmevTransformError> {
        self.flush_run()
    }

    pub fn end(&mut self) -> Result<(), SmevTransformError> {
        self.flush_run()?;
        if let Some((uri, local)) = self.open.pop() {
            self.prefixes.write_end_tag(&mut self.out, &uri, local)?;
        }
        Ok(())
    }

    fn flush_run(&mut self) -> Result<(), SmevTransformError> {
        if !is_blank(&self.run) {
            crate::xml::c14n::write_escaped_markup(&mut self.out, &self.run)?;
        }
        self.run.clear();
        Ok(())
    }
}

/// Writes `lead`, `nsN`, `trail` as one piece, without the formatting machinery (`write!`
/// and separate small writes cost more than the rest of a tag). `lead` and `trail` are short
/// constants (at most 8 bytes each).
fn write_prefix<W: Write + ?Sized>(
    out: &mut W,
    lead: &[u8],
    n: u32,
    trail: &[u8],
) -> std::io::Result<()> {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut buf = [0u8; 30];
    let mut len = 0;
    for part in [lead, b"ns".as_slice(), &digits[i..], trail] {
        let end = len + part.len();
        let Some(slot) = buf.get_mut(len..end) else {
            // Only reachable with a longer lead/trail than the callers use: write unbuffered.
            out.write_all(&buf[..len])?;
            len = 0;
            out.write_all(part)?;
            continue;
        };
        slot.copy_from_slice(part);
        len = end;
    }
    out.write_all(&buf[..len])
}

/// Escaping of the reference StAX writer: `&`, `<`, `>` always; `"` in attribute values.
fn write_escaped<W: Write + ?Sized>(out: &mut W, s: &str, attr: bool) -> std::io::Result<()> {
    if !attr {
        // Text is most of the output: find the three special bytes with a vectorized search
        // instead of matching every byte.
        return crate::xml::c14n::write_escaped_markup(out, s.as_bytes());
    }
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' if attr => b"&quot;",
            _ => continue,
        };
        if start < i {
            out.write_all(&bytes[start..i])?;
        }
        out.write_all(rep)?;
        start = i + 1;
    }
    if start < bytes.len() {
        out.write_all(&bytes[start..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use roxmltree::Document;

    fn run(xml: &str) -> String {
        let mut v = Vec::new();
        transform_xml(xml, &mut v).expect("transform");
        String::from_utf8(v).expect("utf8")
    }

    #[test]
    fn sibling_gets_fresh_prefix() {
        assert_eq!(
            run("<a xmlns='u'><b xmlns='v'/><c xmlns='v'/></a>"),
            "<ns1:a xmlns:ns1=\"u\"><ns2:b xmlns:ns2=\"v\"></ns2:b><ns3:c xmlns:ns3=\"v\"></ns3:c></ns1:a>"
        );
    }

    #[test]
    fn prefix_numbers_past_nine() {
        let xml = format!("<a xmlns='u'>{}</a>", "<b xmlns='v'/>".repeat(11));
        let out = run(&xml);
        assert!(out.contains("<ns10:b xmlns:ns10=\"v\"></ns10:b>"), "{out}");
        assert!(
            out.ends_with("<ns12:b xmlns:ns12=\"v\"></ns12:b></ns1:a>"),
            "{out}"
        );
        let mut v = Vec::new();
        write_prefix(&mut v, b" xmlns:", u32::MAX, b"=\"").expect("write");
        assert_eq!(v, b" xmlns:ns4294967295=\"");
    }

    #[test]
    fn whitespace_runs_merge_across_comments() {
        assert_eq!(
            run("<a xmlns='u'> <!--c--> x</a>"),
            "<ns1:a xmlns:ns1=\"u\">  x</ns1:a>"
        );
        assert_eq!(
            run("<a xmlns='u'> <!--c--> </a>"),
            "<ns1:a xmlns:ns1=\"u\"></ns1:a>"
        );
    }

    #[test]
    fn escapes_like_stax() {
        assert_eq!(
            run("<a xmlns='u' b='&quot;&lt;&gt;&amp;'>&lt;&gt;&amp;\"</a>"),
            "<ns1:a xmlns:ns1=\"u\" b=\"&quot;&lt;&gt;&amp;\">&lt;&gt;&amp;\"</ns1:a>"
        );
    }

    #[test]
    fn excluded_subtree_is_dropped() {
        let doc = Document::parse("<a xmlns='u'>x<s/>y</a>").expect("parse");
        let s = doc.descendants().find(|n| n.has_tag_name("s")).expect("s");
        let mut v = Vec::new();
        transform(doc.root(), Some(s.id()), &mut v).expect("transform");
        assert_eq!(
            String::from_utf8(v).expect("utf8"),
            "<ns1:a xmlns:ns1=\"u\">xy</ns1:a>"
        );
    }
}
