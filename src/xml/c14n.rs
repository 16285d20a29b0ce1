//! Owns XML canonicalization (inclusive C14N 1.0/1.1, exclusive C14N 1.0, with or without comments) over a parsed `roxmltree` document, streamed into any `std::io::Write`.
//! Must not parse XML, allocate a string per node, resolve DTDs or evaluate XPath: callers pick the node set (whole document, element subtree, or a `NodeSet` they implement).

use std::io::Write;

use roxmltree::{Attribute, Document, Node, NodeId, NodeType};

/// The XML namespace (`xml:` prefix), never declared in canonical output.
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Canonicalization algorithm URIs.
pub const C14N10: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315";
pub const C14N10_COMMENTS: &str = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments";
pub const C14N11: &str = "http://www.w3.org/2006/12/xml-c14n11";
pub const C14N11_COMMENTS: &str = "http://www.w3.org/2006/12/xml-c14n11#WithComments";
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const EXC_C14N_COMMENTS: &str = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments";

/// Errors raised while canonicalizing.
#[derive(Debug, thiserror::Error)]
pub enum C14nError {
    #[error("writing canonical output failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("canonicalization applies to a document or an element, not a {0:?} node")]
    UnsupportedApex(NodeType),
    #[error("cannot recover the namespace prefix of {what} `{local}` (namespace `{ns}`)")]
    UnresolvedPrefix {
        what: &'static str,
        local: String,
        ns: String,
    },
    #[error("unknown canonicalization algorithm `{0}`")]
    UnknownAlgorithm(String),
}

/// Which canonicalization family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// Canonical XML 1.0 (inclusive).
    C14n10,
    /// Canonical XML 1.1 (inclusive, xml:id not inherited, xml:base fixed up).
    C14n11,
    /// Exclusive XML Canonicalization 1.0.
    ExcC14n,
}

impl Algorithm {
    /// Maps an algorithm URI to the algorithm and whether comments are kept.
    pub fn from_uri(uri: &str) -> Result<(Algorithm, bool), C14nError> {
        Ok(match uri {
            C14N10 => (Algorithm::C14n10, false),
            C14N10_COMMENTS => (Algorithm::C14n10, true),
            C14N11 => (Algorithm::C14n11, false),
            C14N11_COMMENTS => (Algorithm::C14n11, true),
            EXC_C14N => (Algorithm::ExcC14n, false),
            EXC_C14N_COMMENTS => (Algorithm::ExcC14n, true),
            other => return Err(C14nError::UnknownAlgorithm(other.to_owned())),
        })
    }

    /// The algorithm URI.
    pub fn uri(self, with_comments: bool) -> &'static str {
        match (self, with_comments) {
            (Algorithm::C14n10, false) => C14N10,
            (Algorithm::C14n10, true) => C14N10_COMMENTS,
            (Algorithm::C14n11, false) => C14N11,
            (Algorithm::C14n11, true) => C14N11_COMMENTS,
            (Algorithm::ExcC14n, false) => EXC_C14N,
            (Algorithm::ExcC14n, true) => EXC_C14N_COMMENTS,
        }
    }
}

/// How to canonicalize.
#[derive(Clone, Copy, Debug)]
pub struct Options<'p> {
    pub algorithm: Algorithm,
    pub with_comments: bool,
    /// Exclusive c14n InclusiveNamespaces PrefixList; `"#default"` names the default namespace.
    /// Ignored by the inclusive algorithms.
    pub inclusive_prefixes: &'p [&'p str],
}

impl Options<'static> {
    /// Exclusive c14n without comments and without a prefix list (the SMEV profile).
    pub const EXCLUSIVE: Options<'static> = Options {
        algorithm: Algorithm::ExcC14n,
        with_comments: false,
        inclusive_prefixes: &[],
    };

    /// Options for `algorithm`, no prefix list.
    pub fn new(algorithm: Algorithm, with_comments: bool) -> Options<'static> {
        Options {
            algorithm,
            with_comments,
            inclusive_prefixes: &[],
        }
    }
}

/// Splits an InclusiveNamespaces `PrefixList` attribute value into prefixes.
pub fn split_prefix_list(list: &str) -> impl Iterator<Item = &str> {
    list.split_ascii_whitespace()
}

/// A document subset (XPath node-set) to canonicalize.
///
/// The walker visits nodes in document order and asks about each one; implementations for
/// XPath-selected sets live with the caller. All methods must be cheap.
pub trait NodeSet<'a, 'i> {
    /// True when neither `node` nor anything below it is in the set (lets the walker skip it).
    fn prune(&self, _node: Node<'a, 'i>) -> bool {
        false
    }
    /// True when every attribute and namespace node of every element in the set is in the set
    /// too (lets inclusive c14n skip per-namespace-node checks).
    fn complete_elements(&self) -> bool {
        false
    }
    /// Whether an element, text, comment or processing-instruction node is in the set.
    fn contains(&self, node: Node<'a, 'i>) -> bool;
    /// Whether attribute `attr` of `element` is in the set.
    fn contains_attribute(&self, _element: Node<'a, 'i>, _attr: &Attribute<'a, 'i>) -> bool {
        true
    }
    /// Whether the namespace node (`prefix` `None` = default) of `element` is in the set.
    fn contains_namespace(
        &self,
        _element: Node<'a, 'i>,
        _prefix: Option<&str>,
        _uri: &str,
    ) -> bool {
        true
    }
}

/// Everything below the apex, except an optional excluded subtree.
struct Subtree {
    exclude: Option<NodeId>,
}

impl<'a, 'i> NodeSet<'a, 'i> for Subtree {
    #[inline]
    fn prune(&self, node: Node<'a, 'i>) -> bool {
        Some(node.id()) == self.exclude
    }
    #[inline]
    fn contains(&self, _node: Node<'a, 'i>) -> bool {
        true
    }
    #[inline]
    fn complete_elements(&self) -> bool {
        true
    }
}

/// Canonicalizes `apex` (the document root node for the whole document, or an element for
/// its subtree with the proper inherited context) into `out`. `exclude`, if given, drops that
/// node and its subtree (the enveloped-signature transform).
pub fn canonicalize<'a, 'i, W: Write + ?Sized>(
    apex: Node<'a, 'i>,
    opts: &Options<'_>,
    exclude: Option<NodeId>,
    out: &mut W,
) -> Result<(), C14nError> {
    match apex.node_type() {
        NodeType::Root | NodeType::Element => {}
        other => return Err(C14nError::UnsupportedApex(other)),
    }
    let set = Subtree { exclude };
    Walker::new(apex.document(), opts, &set, out).run(apex)
}

/// Canonicalizes `apex` into a new byte vector (convenience for tests and small inputs).
pub fn canonicalize_to_vec(
    apex: Node<'_, '_>,
    opts: &Options<'_>,
    exclude: Option<NodeId>,
) -> Result<Vec<u8>, C14nError> {
    let mut v = Vec::with_capacity(2048);
    canonicalize(apex, opts, exclude, &mut v)?;
    Ok(v)
}

/// Canonicalizes an arbitrary document subset, walking the whole document.
pub fn canonicalize_node_set<'a, 'i, S: NodeSet<'a, 'i> + ?Sized, W: Write + ?Sized>(
    doc: &'a Document<'i>,
    set: &S,
    opts: &Options<'_>,
    out: &mut W,
) -> Result<(), C14nError> {
    Walker::new(doc, opts, set, out).run(doc.root())
}

/// One namespace declaration to render: prefix ("" = default) and URI.
type NsDecl<'a> = (&'a str, &'a str);

struct AttrOut<'a> {
    ns: &'a str,
    prefix: &'a str,
    local: &'a str,
    value: std::borrow::Cow<'a, str>,
}

struct Walker<'a, 'i, 'o, 'p, S: ?Sized, W: ?Sized> {
    doc: &'a Document<'i>,
    opts: &'o Options<'p>,
    set: &'o S,
    out: &'o mut W,
    /// Exclusive mode: namespaces rendered by open output elements (prefix "" = default).
    rendered: Vec<NsDecl<'a>>,
    /// Per open output element: its node id, the `rendered` length before it, its prefix.
    open: Vec<(NodeId, usize, &'a str)>,
    ns_buf: Vec<NsDecl<'a>>,
    attr_buf: Vec<AttrOut<'a>>,
    /// Prefixes declared on the current start tag (inclusive fast path).
    own_buf: Vec<&'i str>,
    root_element: Option<NodeId>,
}

impl<'a, 'i: 'a, 'o, 'p, S, W> Walker<'a, 'i, 'o, 'p, S, W>
where
    S: NodeSet<'a, 'i> + ?Sized,
    W: Write + ?Sized,
{
    fn new(doc: &'a Document<'i>, opts: &'o Options<'p>, set: &'o S, out: &'o mut W) -> Self {
        let root_element = doc
            .root()
            .children()
            .find(|n| n.is_element())
            .map(|n| n.id());
        Walker {
            doc,
            opts,
            set,
            out,
            rendered: Vec::with_capacity(16),
            open: Vec::with_capacity(32),
            ns_buf: Vec::with_capacity(8),
            attr_buf: Vec::with_capacity(8),
            own_buf: Vec::new(),
            root_element,
        }
    }

    fn run(mut self, apex: Node<'a, 'i>) -> Result<(), C14nError> {
        let mut cur = apex;
        loop {
            let descend = self.enter(cur)?;
            if descend {
                if let Some(child) = cur.first_child() {
                    cur = child;
                    continue;
                }
                self.leave(cur)?;
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
                        self.leave(cur)?;
                    }
                    None => return Ok(()),
                }
            }
        }
    }

    /// Returns true when the node's children must be visited (and `leave` called after).
    fn enter(&mut self, node: Node<'a, 'i>) -> Result<bool, C14nError> {
        if self.set.prune(node) {
            return Ok(false);
        }
        match node.node_type() {
            NodeType::Root => Ok(true),
            NodeType::Element => {
                let in_set = self.set.contains(node);
                self.element_axes(node, in_set)?;
                Ok(true)
            }
            NodeType::Text => {
                if self.set.contains(node) {
                    // Text outside the document element is not part of the canonical form.
                    if node.parent().is_some_and(|p| p.is_element()) {
                        write_escaped_text(self.out, node.text().unwrap_or(""))?;
                    }
                }
                Ok(false)
            }
            NodeType::Comment => {
                if self.opts.with_comments && self.set.contains(node) {
                    let (before, after) = self.doc_level_newlines(node);
                    if before {
                        self.out.write_all(b"\n")?;
                    }
                    self.out.write_all(b"<!--")?;
                    self.out.write_all(node.text().unwrap_or("").as_bytes())?;
                    self.out.write_all(b"-->")?;
                    if after {
                        self.out.write_all(b"\n")?;
                    }
                }
                Ok(false)
            }
            NodeType::PI => {
                if self.set.contains(node)
                    && let Some(pi) = node.pi()
                {
                    let (before, after) = self.doc_level_newlines(node);
                    if before {
                        self.out.write_all(b"\n")?;
                    }
                    self.out.write_all(b"<?")?;
                    self.out.write_all(pi.target.as_bytes())?;
                    if let Some(v) = pi.value.filter(|v| !v.is_empty()) {
                        self.out.write_all(b" ")?;
                        self.out.write_all(v.as_bytes())?;
                    }
                    self.out.write_all(b"?>")?;
                    if after {
                        self.out.write_all(b"\n")?;
                    }
                }
                Ok(false)
            }
        }
    }

    fn leave(&mut self, node: Node<'a, 'i>) -> Result<(), C14nError> {
        if !node.is_element() {
            return Ok(());
        }
        if let Some(&(id, mark, prefix)) = self.open.last()
            && id == node.id()
        {
            self.open.pop();
            self.rendered.truncate(mark);
            self.out.write_all(b"</")?;
            if !prefix.is_empty() {
                self.out.write_all(prefix.as_bytes())?;
                self.out.write_all(b":")?;
            }
            self.out.write_all(node.tag_name().name().as_bytes())?;
            self.out.write_all(b">")?;
        }
        Ok(())
    }

    /// Newline placement for comments/PIs that are children of the document node.
    fn doc_level_newlines(&self, node: Node<'a, 'i>) -> (bool, bool) {
        if !node.parent().is_some_and(|p| p.is_root()) {
            return (false, false);
        }
        match self.root_element {
            Some(re) if node.id().get() > re.get() => (true, false),
            _ => (false, true),
        }
    }

    /// Renders an element in the set (`in_set`), or the namespace and attribute axes of an
    /// element outside the set whose namespace/attribute nodes are in it.
    fn element_axes(&mut self, node: Node<'a, 'i>, in_set: bool) -> Result<(), C14nError> {
        let prefix = if in_set { element_prefix(node)? } else { "" };
        let nearest_out = self.open.last().map(|&(id, _, _)| id);
        let mark = self.rendered.len();

        self.ns_buf.clear();
        match self.opts.algorithm {
            Algorithm::ExcC14n => self.exclusive_namespaces(node, prefix, in_set, mark),
            Algorithm::C14n10 | Algorithm::C14n11 => {
                self.inclusive_namespaces(node, nearest_out, in_set)
            }
        }
        self.ns_buf.sort_unstable_by(|a, b| a.0.cmp(b.0));

        self.attr_buf.clear();
        for attr in node.attributes() {
            if !self.set.contains_attribute(node, &attr) {
                continue;
            }
            let ns = attr.namespace().unwrap_or("");
            let aprefix = if ns.is_empty() {
                ""
            } else {
                attribute_prefix(node, &attr)?
            };
            self.attr_buf.push(AttrOut {
                ns,
                prefix: aprefix,
                local: attr.name(),
                value: std::borrow::Cow::Borrowed(attr.value()),
            });
        }
        if in_set && self.opts.algorithm != Algorithm::ExcC14n {
            self.inherit_xml_attributes(node, nearest_out);
        }
        self.attr_buf
            .sort_unstable_by(|a, b| a.ns.cmp(b.ns).then_with(|| a.local.cmp(b.local)));

        let out = &mut *self.out;
        if in_set {
            out.write_all(b"<")?;
            if !prefix.is_empty() {
                out.write_all(prefix.as_bytes())?;
                out.write_all(b":")?;
            }
            out.write_all(node.tag_name().name().as_bytes())?;
        }
        for &(p, uri) in &self.ns_buf {
            if p.is_empty() {
                out.write_all(b" xmlns=\"")?;
            } else {
                out.write_all(b" xmlns:")?;
                out.write_all(p.as_bytes())?;
                out.write_all(b"=\"")?;
            }
            write_escaped_attr(out, uri)?;
            out.write_all(b"\"")?;
        }
        for a in &self.attr_buf {
            out.write_all(b" ")?;
            if !a.prefix.is_empty() {
                out.write_all(a.prefix.as_bytes())?;
                out.write_all(b":")?;
            }
            out.write_all(a.local.as_bytes())?;
            out.write_all(b"=\"")?;
            write_escaped_attr(out, &a.value)?;
            out.write_all(b"\"")?;
        }
        if in_set {
            out.write_all(b">")?;
            self.open.push((node.id(), mark, prefix));
        }
        Ok(())
    }

    fn lookup_rendered(&self, prefix: &str) -> &'a str {
        self.rendered
            .iter()
            .rev()
            .find(|(p, _)| *p == prefix)
            .map_or("", |&(_, u)| u)
    }

    /// Exclusive c14n: render visibly utilized namespaces (and the InclusiveNamespaces list)
    /// not already rendered by the nearest output ancestor that visibly utilizes them.
    fn exclusive_namespaces(
        &mut self,
        node: Node<'a, 'i>,
        elem_prefix: &'a str,
        in_set: bool,
        mark: usize,
    ) {
        if in_set {
            self.exclusive_candidate(node, elem_prefix, true, mark);
            for attr in node.attributes() {
                if attr.namespace().is_some_and(|ns| ns != XML_NS)
                    && self.set.contains_attribute(node, &attr)
                    && let Ok(p) = attribute_prefix(node, &attr)
                {
                    self.exclusive_candidate(node, p, true, mark);
                }
            }
        }
        for &p in self.opts.inclusive_prefixes {
            // Prefix-list entries are treated as in inclusive c14n: rendered when in scope.
            if p == "#default" {
                self.exclusive_candidate(node, "", in_set, mark);
            } else if let Some(name) = node
                .namespaces()
                .find_map(|n| n.name().filter(|name| *name == p))
            {
                self.exclusive_candidate(node, name, in_set, mark);
            }
        }
    }

    /// Marks a prefix utilized by an output element whose namespace node is not in the set:
    /// a descendant re-declares it (the nearest utilizing ancestor lacks the node).
    const NOT_IN_SET: &'static str = "\u{0}";

    fn exclusive_candidate(
        &mut self,
        node: Node<'a, 'i>,
        prefix: &'a str,
        in_set: bool,
        mark: usize,
    ) {
        if prefix == "xml"
            || self.ns_buf.iter().any(|(p, _)| *p == prefix)
            || self
                .rendered
                .get(mark..)
                .is_some_and(|r| r.iter().any(|(p, _)| *p == prefix))
        {
            return;
        }
        let pfx = if prefix.is_empty() {
            None
        } else {
            Some(prefix)
        };
        let uri = node
            .namespaces()
            .find(|n| n.name() == pfx)
            .map_or("", |n| n.uri());
        if uri.is_empty() {
            // No default namespace: xmlns="" when an output ancestor rendered a non-empty one.
            if prefix.is_empty() && in_set && !self.lookup_rendered("").is_empty() {
                self.ns_buf.push(("", ""));
                self.rendered.push(("", ""));
            }
            return;
        }
        if !self.set.contains_namespace(node, pfx, uri) {
            if in_set {
                let fallback = if prefix.is_empty() {
                    ""
                } else {
                    Self::NOT_IN_SET
                };
                if prefix.is_empty() && !self.lookup_rendered("").is_empty() {
                    self.ns_buf.push(("", ""));
                }
                self.rendered.push((prefix, fallback));
            }
            return;
        }
        if self.lookup_rendered(prefix) == uri {
            return;
        }
        self.ns_buf.push((prefix, uri));
        if in_set {
            self.rendered.push((prefix, uri));
        }
    }

    /// Inclusive c14n: render namespace nodes in the set that the nearest output ancestor
    /// does not carry (in the set) with the same value; `xmlns=""` when the default goes away.
    fn inclusive_namespaces(
        &mut self,
        node: Node<'a, 'i>,
        nearest_out: Option<NodeId>,
        in_set: bool,
    ) {
        if in_set
            && self.set.complete_elements()
            && node.parent().map(|p| p.id()) == nearest_out
            && self.inclusive_from_own_declarations(node)
        {
            return;
        }
        let ancestor = nearest_out.and_then(|id| self.doc.get_node(id));
        let mut has_default = false;
        for ns in node.namespaces() {
            let prefix = ns.name();
            let uri = ns.uri();
            if prefix == Some("xml") || (prefix.is_none() && uri.is_empty()) {
                continue;
            }
            if !self.set.contains_namespace(node, prefix, uri) {
                continue;
            }
            if prefix.is_none() {
                has_default = true;
            }
            if let Some(a) = ancestor
                && a.namespaces().any(|n| n.name() == prefix && n.uri() == uri)
                && self.set.contains_namespace(a, prefix, uri)
            {
                continue;
            }
            self.ns_buf.push((prefix.unwrap_or(""), uri));
        }
        if in_set
            && !has_default
            && let Some(a) = ancestor
            && a.namespaces().any(|n| {
                n.name().is_none()
                    && !n.uri().is_empty()
                    && self.set.contains_namespace(a, None, n.uri())
            })
        {
            self.ns_buf.push(("", ""));
        }
    }

    /// Fast path when the parent is output with all its namespace nodes: only the element's own
    /// declarations can differ from the parent's, so only those are looked at (linear in the
    /// in-scope namespaces instead of quadratic). Returns false when the source start tag
    /// cannot be read (the caller then takes the general path).
    fn inclusive_from_own_declarations(&mut self, node: Node<'a, 'i>) -> bool {
        let mut own = std::mem::take(&mut self.own_buf);
        own.clear();
        if !own_declarations(node, &mut own) {
            self.own_buf = own;
            return false;
        }
        if !own.is_empty() {
            own.sort_unstable();
            own.dedup();
            let mut declares_default = false;
            let mut default_set = false;
            for ns in node.namespaces() {
                let p = ns.name().unwrap_or("");
                if p == "xml" || own.binary_search(&p).is_err() {
                    continue;
                }
                if p.is_empty() {
                    declares_default = true;
                    if ns.uri().is_empty() {
                        continue;
                    }
                    default_set = true;
                }
                self.ns_buf.push((p, ns.uri()));
            }
            if let Some(parent) = node.parent() {
                for ns in parent.namespaces() {
                    let p = ns.name().unwrap_or("");
                    if own.binary_search(&p).is_err() {
                        continue;
                    }
                    let uri = ns.uri();
                    if let Some(i) = self
                        .ns_buf
                        .iter()
                        .position(|&(bp, bu)| bp == p && bu == uri)
                    {
                        // Redeclared with the same value: not rendered again.
                        self.ns_buf.remove(i);
                    } else if p.is_empty() && declares_default && !default_set && !uri.is_empty() {
                        // xmlns="" undeclares the parent's default.
                        self.ns_buf.push(("", ""));
                    }
                }
            }
        }
        self.own_buf = own;
        true
    }

    /// Inclusive c14n of a document subset: an element whose parent is not output inherits the
    /// xml:* attributes of the omitted ancestors (1.0: all; 1.1: lang/space, base fixed up).
    fn inherit_xml_attributes(&mut self, node: Node<'a, 'i>, nearest_out: Option<NodeId>) {
        let Some(parent) = node.parent().filter(|p| p.is_element()) else {
            return;
        };
        if Some(parent.id()) == nearest_out {
            return;
        }
        let c11 = self.opts.algorithm == Algorithm::C14n11;
        // Bases of omitted ancestors, nearest first (1.1 only).
        let mut bases: Vec<&'a str> = Vec::new();
        // xml:* attributes come from all ancestors (nearest wins); 1.1 joins xml:base only
        // across the omitted ancestors (those below the nearest output ancestor).
        let mut omitted = true;
        let mut cur = Some(parent);
        while let Some(anc) = cur {
            if !anc.is_element() {
                break;
            }
            if Some(anc.id()) == nearest_out {
                omitted = false;
            }
            for attr in anc.attributes() {
                if attr.namespace() != Some(XML_NS) {
                    continue;
                }
                let local = attr.name();
                if c11 {
                    if local == "base" {
                        if omitted {
                            bases.push(attr.value());
                        }
                        continue;
                    }
                    if local != "lang" && local != "space" {
                        continue;
                    }
                }
                if self
                    .attr_buf
                    .iter()
                    .any(|a| a.ns == XML_NS && a.local == local)
                {
                    continue;
                }
                self.attr_buf.push(AttrOut {
                    ns: XML_NS,
                    prefix: "xml",
                    local,
                    value: std::borrow::Cow::Borrowed(attr.value()),
                });
            }
            cur = anc.parent();
        }
        if c11 && !bases.is_empty() {
            let own = self
                .attr_buf
                .iter()
                .position(|a| a.ns == XML_NS && a.local == "base");
            let mut value = String::new();
            for b in bases.iter().rev() {
                value = join_base(&value, b);
            }
            match own {
                Some(i) => {
                    let joined = join_base(&value, &self.attr_buf[i].value);
                    self.attr_buf[i].value = std::borrow::Cow::Owned(joined);
                }
                None => {
                    if !value.is_empty() {
                        self.attr_buf.push(AttrOut {
                            ns: XML_NS,
                            prefix: "xml",
                            local: "base",
                            value: std::borrow::Cow::Owned(value),
                        });
                    }
                }
            }
        }
    }
}

/// C14N 1.1 xml:base fix-up: RFC 3986 reference resolution of `reference` against `base`,
/// with dot-segment removal that keeps leading `..` segments of relative paths.
fn join_base(base: &str, reference: &str) -> String {
    if base.is_empty() {
        return reference.to_owned();
    }
    if reference.is_empty() {
        return base.to_owned();
    }
    let r = split_uri(reference);
    let b = split_uri(base);
    let (scheme, authority, path, query);
    if r.scheme.is_some() {
        scheme = r.scheme;
        authority = r.authority;
        path = remove_dot_segments(r.path);
        query = r.query;
    } else {
        scheme = b.scheme;
        if r.authority.is_some() {
            authority = r.authority;
            path = remove_dot_segments(r.path);
            query = r.query;
        } else {
            authority = b.authority;
            if r.path.is_empty() {
                path = b.path.to_owned();
                query = r.query.or(b.query);
            } else {
                if r.path.starts_with('/') {
                    path = remove_dot_segments(r.path);
                } else {
                    let merged = if b.authority.is_some() && b.path.is_empty() {
                        format!("/{}", r.path)
                    } else if b.path == ".."
                        || b.path.ends_with("/..")
                        || b.path == "."
                        || b.path.ends_with("/.")
                    {
                        // C14N 1.1: a base ending in a dot segment names a directory.
                        format!("{}/{}", b.path, r.path)
                    } else {
                        match b.path.rfind('/') {
                            Some(i) => format!("{}{}", &b.path[..=i], r.path),
                            None => r.path.to_owned(),
                        }
                    };
                    path = remove_dot_segments(&merged);
                }
                query = r.query;
            }
        }
    }
    let mut s = String::new();
    if let Some(sc) = scheme {
        s.push_str(sc);
        s.push(':');
    }
    if let Some(a) = authority {
        s.push_str("//");
        s.push_str(a);
    }
    s.push_str(&path);
    if let Some(q) = query {
        s.push('?');
        s.push_str(q);
    }
    if let Some(f) = r.fragment {
        s.push('#');
        s.push_str(f);
    }
    s
}

struct UriParts<'s> {
    scheme: Option<&'s str>,
    authority: Option<&'s str>,
    path: &'s str,
    query: Option<&'s str>,
    fragment: Option<&'s str>,
}

fn split_uri(s: &str) -> UriParts<'_> {
    let (rest, fragment) = match s.split_once('#') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (rest, None),
    };
    let (scheme, rest) = match rest.find(':') {
        Some(i)
            if i > 0
                && rest[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && rest[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            (Some(&rest[..i]), &rest[i + 1..])
        }
        _ => (None, rest),
    };
    let (authority, path) = match rest.strip_prefix("//") {
        Some(r) => match r.find('/') {
            Some(i) => (Some(&r[..i]), &r[i..]),
            None => (Some(r), ""),
        },
        None => (None, rest),
    };
    UriParts {
        scheme,
        authority,
        path,
        query,
        fragment,
    }
}

/// RFC 3986 remove_dot_segments, modified per C14N 1.1: leading `..` segments of a relative
/// path are kept instead of being dropped.
fn remove_dot_segments(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut segs: Vec<&str> = Vec::new();
    let parts: Vec<&str> = path.split('/').collect();
    let n = parts.len();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == n;
        if i == 0 && absolute {
            continue;
        }
        match *seg {
            "." => {
                if last {
                    segs.push("");
                }
            }
            ".." => {
                if segs.last().is_some_and(|s| *s != "..") {
                    segs.pop();
                } else if !absolute {
                    segs.push("..");
                }
                if last {
                    segs.push("");
                }
            }
            s => segs.push(s),
        }
    }
    let joined = segs.join("/");
    if absolute {
        format!("/{joined}")
    } else {
        joined
    }
}

/// Collects the prefixes ("" = default) of the namespace declarations written on the
/// element's own start tag. Returns false if the source text does not look like that tag
/// (e.g. content expanded from an entity).
fn own_declarations<'i>(node: Node<'_, 'i>, out: &mut Vec<&'i str>) -> bool {
    let input: &'i str = node.document().input_text();
    let Some(tag) = input.get(node.range().start..) else {
        return false;
    };
    let bytes = tag.as_bytes();
    if bytes.first() != Some(&b'<') {
        return false;
    }
    // Skip the element name.
    let mut i = 1;
    while i < bytes.len() && !matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>') {
        i += 1;
    }
    loop {
        while i < bytes.len() && matches!(bytes[i], b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        match bytes.get(i) {
            Some(b'/') | Some(b'>') => return true,
            None => return false,
            _ => {}
        }
        let name_start = i;
        while i < bytes.len() && !matches!(bytes[i], b'=' | b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        let name = &tag[name_start..i];
        while i < bytes.len() && matches!(bytes[i], b'=' | b' ' | b'\t' | b'\r' | b'\n') {
            i += 1;
        }
        let Some(&quote) = bytes.get(i).filter(|q| matches!(q, b'"' | b'\'')) else {
            return false;
        };
        i += 1;
        while i < bytes.len() && bytes[i] != quote {
            i += 1;
        }
        if i >= bytes.len() {
            return false;
        }
        i += 1;
        if name == "xmlns" {
            out.push("");
        } else if let Some(p) = name.strip_prefix("xmlns:") {
            out.push(p);
        }
    }
}

/// The prefix the element was written with in the source ("" = none).
fn element_prefix<'a, 'i>(node: Node<'a, 'i>) -> Result<&'a str, C14nError> {
    // roxmltree reports `xmlns=""` as the empty namespace: that is no namespace.
    let ns = node.tag_name().namespace().filter(|u| !u.is_empty());
    let input = node.document().input_text();
    let start = node.range().start + 1;
    let from_source = input.get(start..).and_then(|rest| {
        let end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '/' || c == '>')
            .unwrap_or(rest.len());
        let qname = &rest[..end];
        let (p, local) = qname.split_once(':').unwrap_or(("", qname));
        (local == node.tag_name().name()).then_some(p)
    });
    if let Some(p) = from_source {
        let resolved = node.lookup_namespace_uri(if p.is_empty() { None } else { Some(p) });
        let resolved = resolved.filter(|u| !u.is_empty());
        if resolved == ns {
            return Ok(p);
        }
    }
    // Fallback (e.g. content from an entity): any prefix bound to the URI.
    match ns {
        None => Ok(""),
        Some(uri) => {
            if node.default_namespace() == Some(uri) {
                return Ok("");
            }
            node.namespaces()
                .find(|n| n.uri() == uri && n.name().is_some())
                .and_then(|n| n.name())
                .ok_or_else(|| C14nError::UnresolvedPrefix {
                    what: "element",
                    local: node.tag_name().name().to_owned(),
                    ns: uri.to_owned(),
                })
        }
    }
}

/// The prefix a namespaced attribute was written with in the source.
fn attribute_prefix<'a, 'i>(
    node: Node<'a, 'i>,
    attr: &Attribute<'a, 'i>,
) -> Result<&'a str, C14nError> {
    let ns = attr.namespace().unwrap_or("");
    if ns == XML_NS {
        return Ok("xml");
    }
    let input = node.document().input_text();
    let from_source = input.get(attr.range().start..).and_then(|rest| {
        let end = rest
            .find(|c: char| c.is_ascii_whitespace() || c == '=')
            .unwrap_or(rest.len());
        let qname = &rest[..end];
        qname
            .split_once(':')
            .filter(|(_, local)| *local == attr.name())
            .map(|(p, _)| p)
    });
    if let Some(p) = from_source
        && node.lookup_namespace_uri(Some(p)) == Some(ns)
    {
        return Ok(p);
    }
    node.namespaces()
        .find(|n| n.uri() == ns && n.name().is_some())
        .and_then(|n| n.name())
        .ok_or_else(|| C14nError::UnresolvedPrefix {
            what: "attribute",
            local: attr.name().to_owned(),
            ns: ns.to_owned(),
        })
}

/// Writes text-node content with c14n escaping (`&`, `<`, `>`, CR).
pub fn write_escaped_text<W: Write + ?Sized>(out: &mut W, s: &str) -> std::io::Result<()> {
    // A parsed CR only comes from `&#13;` (line ends are normalized), so text almost never
    // holds one: then a vectorized search for the other three does the whole job.
    if memchr::memchr(b'\r', s.as_bytes()).is_none() {
        return write_escaped_markup(out, s.as_bytes());
    }
    write_escaped(out, s, |b| match b {
        b'&' => Some(b"&amp;".as_slice()),
        b'<' => Some(b"&lt;".as_slice()),
        b'>' => Some(b"&gt;".as_slice()),
        b'\r' => Some(b"&#xD;".as_slice()),
        _ => None,
    })
}

/// Writes an attribute value with c14n escaping (`&`, `<`, `"`, TAB, LF, CR).
pub fn write_escaped_attr<W: Write + ?Sized>(out: &mut W, s: &str) -> std::io::Result<()> {
    write_escaped(out, s, |b| match b {
        b'&' => Some(b"&amp;".as_slice()),
        b'<' => Some(b"&lt;".as_slice()),
        b'"' => Some(b"&quot;".as_slice()),
        b'\t' => Some(b"&#x9;".as_slice()),
        b'\n' => Some(b"&#xA;".as_slice()),
        b'\r' => Some(b"&#xD;".as_slice()),
        _ => None,
    })
}

/// Writes `bytes` with `&`, `<` and `>` replaced by their entities, finding them with a
/// vectorized search; text escaping in c14n and the SMEV transform agrees on these three.
pub(crate) fn write_escaped_markup<W: Write + ?Sized>(
    out: &mut W,
    bytes: &[u8],
) -> std::io::Result<()> {
    let mut start = 0;
    for i in memchr::memchr3_iter(b'&', b'<', b'>', bytes) {
        let rep: &[u8] = match bytes[i] {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            _ => b"&gt;",
        };
        out.write_all(&bytes[start..i])?;
        out.write_all(rep)?;
        start = i + 1;
    }
    out.write_all(&bytes[start..])
}

#[inline]
fn write_escaped<W: Write + ?Sized>(
    out: &mut W,
    s: &str,
    esc: impl Fn(u8) -> Option<&'static [u8]>,
) -> std::io::Result<()> {
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if let Some(rep) = esc(b) {
            if start < i {
                out.write_all(&bytes[start..i])?;
            }
            out.write_all(rep)?;
            start = i + 1;
        }
    }
    if start < bytes.len() {
        out.write_all(&bytes[start..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exc(xml: &str) -> String {
        let doc = Document::parse(xml).expect("parse");
        let v = canonicalize_to_vec(doc.root(), &Options::EXCLUSIVE, None).expect("c14n");
        String::from_utf8(v).expect("utf8")
    }

    #[test]
    fn escapes_and_empty_elements() {
        assert_eq!(
            exc("<a b='x&amp;&lt;\"&#9;&#10;&#13;'>t&gt;&#13;<c/></a>"),
            "<a b=\"x&amp;&lt;&quot;&#x9;&#xA;&#xD;\">t&gt;&#xD;<c></c></a>"
        );
    }

    #[test]
    fn exclusive_drops_unused_namespaces() {
        let doc = Document::parse("<r xmlns:a='urn:a' xmlns:b='urn:b'><a:x b:y='1'/><z/></r>")
            .expect("parse");
        let x = doc.descendants().find(|n| n.has_tag_name("x")).expect("x");
        let v = canonicalize_to_vec(x, &Options::EXCLUSIVE, None).expect("c14n");
        assert_eq!(
            String::from_utf8(v).expect("utf8"),
            "<a:x xmlns:a=\"urn:a\" xmlns:b=\"urn:b\" b:y=\"1\"></a:x>"
        );
    }

    #[test]
    fn inclusive_subtree_inherits_namespaces_and_xml_attrs() {
        let doc = Document::parse(
            "<r xmlns='urn:d' xmlns:a='urn:a' xml:lang='ru' xml:id='i'><x xmlns:a='urn:a'/></r>",
        )
        .expect("parse");
        let x = doc.root_element().first_element_child().expect("x");
        let v = canonicalize_to_vec(x, &Options::new(Algorithm::C14n10, false), None).expect("c");
        assert_eq!(
            String::from_utf8(v).expect("utf8"),
            "<x xmlns=\"urn:d\" xmlns:a=\"urn:a\" xml:id=\"i\" xml:lang=\"ru\"></x>"
        );
        let v = canonicalize_to_vec(x, &Options::new(Algorithm::C14n11, false), None).expect("c");
        assert_eq!(
            String::from_utf8(v).expect("utf8"),
            "<x xmlns=\"urn:d\" xmlns:a=\"urn:a\" xml:lang=\"ru\"></x>"
        );
    }

    #[test]
    fn inclusive_redeclarations() {
        let xml = "<doc xmlns:foo=\"http://www.bar.org\"><e6 xmlns=\"\" xmlns:a=\"http://www.w3.org\">\
                   <e7 xmlns=\"http://www.ietf.org\"><e8 xmlns=\"\" xmlns:a=\"http://www.w3.org\">\
                   <e9 xmlns=\"\" xmlns:a=\"http://www.ietf.org\"/></e8></e7></e6></doc>";
        let doc = Document::parse(xml).expect("parse");
        let v = canonicalize_to_vec(doc.root(), &Options::new(Algorithm::C14n10, false), None)
            .expect("c14n");
        assert_eq!(
            String::from_utf8(v).expect("utf8"),
            "<doc xmlns:foo=\"http://www.bar.org\"><e6 xmlns:a=\"http://www.w3.org\">\
             <e7 xmlns=\"http://www.ietf.org\"><e8 xmlns=\"\">\
             <e9 xmlns:a=\"http://www.ietf.org\"></e9></e8></e7></e6></doc>"
        );
    }

    #[test]
    fn exclude_subtree() {
        let doc = Document::parse("<r><s><t/></s><u/></r>").expect("parse");
        let s = doc.descendants().find(|n| n.has_tag_name("s")).expect("s");
        let v = canonicalize_to_vec(doc.root(), &Options::EXCLUSIVE, Some(s.id())).expect("c");
        assert_eq!(String::from_utf8(v).expect("utf8"), "<r><u></u></r>");
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        let depth = 20_000;
        let xml = format!("{}{}", "<a xmlns='u'>".repeat(depth), "</a>".repeat(depth));
        let opt = roxmltree::ParsingOptions {
            nodes_limit: u32::MAX,
            ..Default::default()
        };
        // roxmltree may refuse such depth itself; if it parses, we must not overflow.
        if let Ok(doc) = Document::parse_with_options(&xml, opt) {
            for alg in [Algorithm::ExcC14n, Algorithm::C14n10] {
                let v =
                    canonicalize_to_vec(doc.root(), &Options::new(alg, false), None).expect("c14n");
                assert!(v.len() >= depth * 7);
            }
            let mut v = Vec::new();
            crate::xml::smev_transform::transform(doc.root(), None, &mut v).expect("smev");
            assert!(v.len() >= depth * 7);
        }
    }

    #[test]
    fn rejects_text_apex() {
        let doc = Document::parse("<r>t</r>").expect("parse");
        let t = doc.root_element().first_child().expect("t");
        assert!(canonicalize_to_vec(t, &Options::EXCLUSIVE, None).is_err());
    }

    #[test]
    fn base_join() {
        assert_eq!(
            join_base("http://www.example.com/something/else.xml", "../bar/"),
            "http://www.example.com/bar/"
        );
        assert_eq!(join_base("../a/", "../b/"), "../b/");
        assert_eq!(join_base("a/b/", "../../../c"), "../c");
    }
}
