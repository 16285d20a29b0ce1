//! Property checks over every XML file in the vectors: c14n output re-parses and is idempotent, and the direct SMEV transform equals transform(exc-c14n(x)) for every element.
//! Must not depend on expected outputs: it cross-checks the engine against itself on real inputs.

mod vectors;
use vectors::vectors_dir;

use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};
use smev_adapter::xml::c14n::{
    Algorithm, NodeSet, Options, canonicalize_node_set, canonicalize_to_vec,
};
use smev_adapter::xml::smev_transform::{transform, transform_xml};

/// The apex's subtree as a generic node set (no fast-path hints), for differential checks.
struct Below<'a, 'i>(Node<'a, 'i>);

impl<'a, 'i> NodeSet<'a, 'i> for Below<'a, 'i> {
    fn contains(&self, node: Node<'a, 'i>) -> bool {
        node == self.0 || node.ancestors().any(|a| a == self.0)
    }
    fn contains_attribute(&self, element: Node<'a, 'i>, _: &roxmltree::Attribute<'a, 'i>) -> bool {
        self.contains(element)
    }
    fn contains_namespace(&self, element: Node<'a, 'i>, _: Option<&str>, _: &str) -> bool {
        self.contains(element)
    }
}

fn xml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            xml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "xml" || e == "tmpl") {
            out.push(p);
        }
    }
}

#[test]
fn every_element_of_every_vector() {
    let mut files = Vec::new();
    xml_files(&vectors_dir(), &mut files);
    let (mut docs, mut with_dtd, mut elements) = (0, 0, 0);
    for path in &files {
        let text = std::fs::read_to_string(path).expect("read");
        let doc = match Document::parse(&text) {
            Ok(d) => d,
            Err(e) => {
                assert!(text.contains("<!DOCTYPE"), "{}: {e}", path.display());
                with_dtd += 1;
                continue;
            }
        };
        docs += 1;
        for el in doc.descendants().filter(|n| n.is_element()) {
            elements += 1;
            let at = || format!("{} element {:?}", path.display(), el.tag_name());
            for alg in [Algorithm::C14n10, Algorithm::C14n11, Algorithm::ExcC14n] {
                let opts = Options::new(alg, false);
                let out = canonicalize_to_vec(el, &opts, None)
                    .unwrap_or_else(|e| panic!("{}: {e}", at()));
                let s = String::from_utf8(out).expect("utf8");
                let re = Document::parse(&s)
                    .unwrap_or_else(|e| panic!("{} {alg:?} output does not parse: {e}\n{s}", at()));
                let again = canonicalize_to_vec(re.root(), &opts, None).expect("c14n again");
                assert_eq!(
                    String::from_utf8(again).expect("utf8"),
                    s,
                    "{} {alg:?} not idempotent",
                    at()
                );
                if alg == Algorithm::ExcC14n {
                    let mut two = Vec::new();
                    transform_xml(&s, &mut two).expect("transform two-step");
                    let mut one = Vec::new();
                    transform(el, None, &mut one).expect("transform direct");
                    assert_eq!(
                        String::from_utf8_lossy(&one),
                        String::from_utf8_lossy(&two),
                        "{}: direct SMEV transform differs from transform(exc-c14n)",
                        at()
                    );
                }
            }
            // The streamlined subtree path equals the general node-set path.
            for alg in [Algorithm::C14n10, Algorithm::C14n11, Algorithm::ExcC14n] {
                let opts = Options::new(alg, false);
                let fast = canonicalize_to_vec(el, &opts, None).expect("c14n");
                let mut general = Vec::new();
                canonicalize_node_set(&doc, &Below(el), &opts, &mut general).expect("c14n");
                assert_eq!(
                    String::from_utf8_lossy(&fast),
                    String::from_utf8_lossy(&general),
                    "{} {alg:?}: subtree fast path differs from the node-set path",
                    at()
                );
            }
            // Excluding this element from the whole document must not fail either.
            canonicalize_to_vec(doc.root(), &Options::EXCLUSIVE, Some(el.id()))
                .unwrap_or_else(|e| panic!("{}: {e}", at()));
        }
    }
    eprintln!(
        "properties: {docs} documents, {elements} elements checked, {with_dtd} DTD documents not parsed"
    );
    assert!(elements > 100);
}
