//! Runs every SMEV transform pair and reproduces the real SMEV digests byte for byte.
//! Must not skip a case silently: a missing vectors folder fails the test.

mod vectors;
use vectors::vectors_dir;

use roxmltree::{Document, Node};
use smev_adapter::config::XmlLimits;
use smev_adapter::xml::c14n::{Options, canonicalize_to_vec};
use smev_adapter::xml::scan::transform_for_signing;
use smev_adapter::xml::smev_transform::{transform, transform_xml};
use streebog::{Digest, Streebog256};

fn show(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn by_id<'a, 'i>(doc: &'a Document<'i>, id: &str) -> Node<'a, 'i> {
    let found: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("Id") == Some(id))
        .collect();
    assert_eq!(
        found.len(),
        1,
        "Id {id} must resolve to exactly one element"
    );
    found[0]
}

/// exc-c14n as octets, then the transform as a separate octet-stream step (reference pipeline).
fn two_step(node: Node<'_, '_>) -> Vec<u8> {
    let c14n = canonicalize_to_vec(node, &Options::EXCLUSIVE, None).expect("c14n");
    let text = String::from_utf8(c14n).expect("utf8");
    let mut out = Vec::new();
    transform_xml(&text, &mut out).expect("transform");
    out
}

fn direct(node: Node<'_, '_>) -> Vec<u8> {
    let mut out = Vec::new();
    transform(node, None, &mut out).expect("transform");
    out
}

#[test]
fn transform_pairs() {
    let dir = vectors_dir().join("smev/transform");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("smev/transform")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let mut ran = 0;
    for name in &names {
        let Some(stem) = name.strip_suffix(".in.xml") else {
            continue;
        };
        let input = std::fs::read_to_string(dir.join(name)).expect("in");
        let expected = std::fs::read(dir.join(format!("{stem}.out.xml")))
            .unwrap_or_else(|_| panic!("{stem}: .out.xml missing"));
        let mut out = Vec::new();
        transform_xml(&input, &mut out).expect("transform");
        assert_eq!(
            show(&out),
            show(&expected),
            "{stem}: transform output differs"
        );
        // The same through exc-c14n first (what a Reference computes).
        let doc = Document::parse(&input).expect("parse");
        assert_eq!(
            show(&two_step(doc.root())),
            show(&expected),
            "{stem}: via c14n"
        );
        ran += 1;
    }
    // The response pair: transform(exc-c14n(Id=SIGNED_BY_SMEV)) of the digests message.
    let msg =
        std::fs::read_to_string(vectors_dir().join("smev/digests/get-response-async-status.xml"))
            .expect("message");
    let expected =
        std::fs::read(dir.join("get-response-async-status.response.out.xml")).expect("out");
    let doc = Document::parse(&msg).expect("parse");
    let node = by_id(&doc, "SIGNED_BY_SMEV");
    assert_eq!(
        show(&two_step(node)),
        show(&expected),
        "response pair, two-step"
    );
    assert_eq!(
        show(&direct(node)),
        show(&expected),
        "response pair, direct"
    );
    ran += 1;
    eprintln!("smev transform pairs: {ran} passed, 0 failed");
    assert_eq!(ran, 5, "expected 4 .in/.out pairs plus the response pair");
}

#[test]
fn real_digests() {
    let dir = vectors_dir().join("smev");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("README");
    let mut ran = 0;
    for line in readme.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | file | element Id | DigestValue |
        if cells.len() < 5 || !cells[1].ends_with(".xml") {
            continue;
        }
        let file = cells[1];
        let id = cells[2].split_whitespace().next().expect("id");
        let want = cells[3];
        let msg = std::fs::read_to_string(dir.join("digests").join(file)).expect("message");
        let doc = Document::parse(&msg).expect("parse");
        let node = by_id(&doc, id);
        // The signing path reads the text without a tree; any element outside the signed one
        // (here the root) can stand for the signature's holder.
        let root = doc.root_element().tag_name();
        let holder = (root.namespace().unwrap_or(""), root.name());
        let (streamed, _) =
            transform_for_signing(&msg, &XmlLimits::default(), id, holder, Vec::new())
                .expect("tree-less scan");
        for (how, bytes) in [
            ("direct", direct(node)),
            ("two-step", two_step(node)),
            ("tree-less", streamed),
        ] {
            let digest = Streebog256::digest(&bytes);
            let got = openssl::base64::encode_block(&digest);
            assert_eq!(got, want, "{file} ({how}): digest mismatch");
        }
        ran += 1;
    }
    eprintln!("smev digests: {ran} passed, 0 failed");
    assert_eq!(ran, 2, "README lists two messages");
}
