//! Where the shared conformance vectors are (`../shared/vectors`), for the tests that read them.
//! It finds and reads files (and a vector's ds:Signature); what a vector means is the test's business.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use roxmltree::{Document, Node};
use smev_adapter::dsig::DSIG_NS;

/// `../shared/vectors` next to the repository, else `/work/shared/vectors`; a missing folder fails the test.
pub fn vectors_dir() -> PathBuf {
    let rel = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/vectors");
    if rel.is_dir() {
        return rel;
    }
    let abs = PathBuf::from("/work/shared/vectors");
    assert!(
        abs.is_dir(),
        "conformance vectors missing: neither {} nor {} exists",
        rel.display(),
        abs.display()
    );
    abs
}

/// The XMLDSig interop keys and certificates.
pub fn keys() -> PathBuf {
    vectors_dir().join("xmldsig/keys")
}

/// A vector file's bytes; a missing file fails the test naming it.
pub fn read(p: impl AsRef<Path>) -> Vec<u8> {
    std::fs::read(p.as_ref()).unwrap_or_else(|e| panic!("{}: {e}", p.as_ref().display()))
}

/// An aleksey-xmldsig-01 interop document.
pub fn aleksey(name: &str) -> String {
    String::from_utf8(read(
        vectors_dir().join(format!("xmldsig/aleksey-xmldsig-01/{name}.xml")),
    ))
    .expect("utf8")
}

/// The first ds:Signature in `doc`.
pub fn signature_of<'a, 'i>(doc: &'a Document<'i>) -> Node<'a, 'i> {
    doc.descendants()
        .find(|n| n.has_tag_name((DSIG_NS, "Signature")))
        .expect("ds:Signature")
}
