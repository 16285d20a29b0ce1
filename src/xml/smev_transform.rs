//! Owns the SMEV 3 `urn://smev-gov-ru/xmldsig/transform` (prefix rewriting to ns1.., attribute sorting, whitespace-only text dropped), streamed into any `std::io::Write`.
//! Must not canonicalize, digest or re-parse: applied to a subtree it yields exactly transform(exc-c14n(subtree)) straight from the `roxmltree` tree.

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
        counter: 1,
        scope: Vec::with_capacity(16),
        frames: Vec::with_capacity(32),
        attrs: Vec::with_capacity(8),
        new_decls: Vec::with_capacity(4),
    };
    t.run(apex)
}

/// Parses `xml` (no DTD) and transforms the whole document (the transform as a byte-stream
/// step, e.g. for the vectors or a transform chain that already produced octets).
pub fn transform_xml<W: Write + ?Sized>(xml: &str, out: &mut W) -> Result<(), SmevTransformError> {
    let doc = crate::xml::parse(xml, &crate::config::XmlLimits::default())?;
    transform(doc.root(), None, out)
}

struct Transformer<'o, 'a, W: ?Sized> {
    out: &'o mut W,
    exclude: Option<NodeId>,
    /// Next `nsN` number; one counter per transform run, never reset.
    counter: u32,
    /// (namespace URI, prefix number) declared by open elements, outermost first; the URIs
    /// are borrowed from the document, so a declaration costs no allocation.
    scope: Vec<(&'a str, u32)>,
    /// Per open element: `scope` length before it.
    frames: Vec<usize>,
    /// (attribute index, prefix number; 0 = unqualified), reused per element.
    attrs: Vec<(usize, u32)>,
    new_decls: Vec<(u32, usize)>,
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

    fn lookup(&self, uri: &str) -> Option<u32> {
        // Innermost first: the same URI cannot be in scope twice, so the order only saves time.
        self.scope
            .iter()
            .rev()
            .find(|(u, _)| *u == uri)
            .map(|&(_, p)| p)
    }

    fn prefix_for(&mut self, uri: &'a str) -> u32 {
        if let Some(p) = self.lookup(uri) {
            return p;
        }
        let p = self.counter;
        self.counter = self.counter.saturating_add(1);
        self.scope.push((uri, p));
        self.new_decls.push((p, self.scope.len() - 1));
        p
    }

    fn start(&mut self, node: Node<'a, '_>) -> Result<(), SmevTransformError> {
        self.frames.push(self.scope.len());
        self.new_decls.clear();
        let uri = node.tag_name().namespace().unwrap_or("");
        let prefix = self.prefix_for(uri);

        // Sorted: qualified attributes by (URI, local name), then unqualified by local name.
        // The buffer holds attribute indexes so it can be reused without borrowing the tree.
        let attr = |i: usize| node.attributes().nth(i);
        let key = |i: usize| attr(i).map_or(("", ""), |a| (a.namespace().unwrap_or(""), a.name()));
        self.attrs.clear();
        self.attrs
            .extend((0..node.attributes().len()).map(|i| (i, 0u32)));
        self.attrs.sort_by(|&(x, _), &(y, _)| {
            let (xn, xl) = key(x);
            let (yn, yl) = key(y);
            match (xn.is_empty(), yn.is_empty()) {
                (true, true) => xl.cmp(yl),
                (false, false) => xn.cmp(yn).then_with(|| xl.cmp(yl)),
                (true, false) => std::cmp::Ordering::Greater,
                (false, true) => std::cmp::Ordering::Less,
            }
        });
        for k in 0..self.attrs.len() {
            let (i, _) = self.attrs[k];
            let ns = key(i).0;
            if !ns.is_empty() {
                let p = self.prefix_for(ns);
                self.attrs[k].1 = p;
            }
        }

        let out = &mut *self.out;
        write_prefix(out, b"<", prefix, b":")?;
        out.write_all(node.tag_name().name().as_bytes())?;
        for &(p, idx) in &self.new_decls {
            write_prefix(out, b" xmlns:", p, b"=\"")?;
            if let Some((u, _)) = self.scope.get(idx) {
                write_escaped(out, u, true)?;
            }
            out.write_all(b"\"")?;
        }
        for &(i, p) in &self.attrs {
            let Some(a) = attr(i) else { continue };
            if p == 0 {
                out.write_all(b" ")?;
            } else {
                write_prefix(out, b" ", p, b":")?;
            }
            out.write_all(a.name().as_bytes())?;
            out.write_all(b"=\"")?;
            write_escaped(out, a.value(), true)?;
            out.write_all(b"\"")?;
        }
        out.write_all(b">")?;
        Ok(())
    }

    fn end(&mut self, node: Node<'_, '_>) -> Result<(), SmevTransformError> {
        if !node.is_element() {
            return Ok(());
        }
        let uri = node.tag_name().namespace().unwrap_or("");
        let prefix = self.lookup(uri).unwrap_or(0);
        write_prefix(self.out, b"</", prefix, b":")?;
        self.out.write_all(node.tag_name().name().as_bytes())?;
        self.out.write_all(b">")?;
        if let Some(mark) = self.frames.pop() {
            self.scope.truncate(mark);
        }
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
                // Java String.trim() treats every char <= U+0020 as blank.
                blank &= n.text().unwrap_or("").chars().all(|c| c <= '\u{20}');
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
