//! The signing profile's safety rules and the algorithm/key matrix: every RSA/ECDSA algorithm round-trips (and xmlsec1 agrees), keys load from every file format, unknown algorithms/transforms and extra References are refused, any flipped byte fails, the merlin RSA vector verifies and the rest are refused for a stated reason.
//! Must not parse test documents with anything but the crate's secure parser when they stand for messages, and must not skip: missing vectors or xmlsec1 fail.

mod vectors;
use vectors::{keys, signature_of, vectors_dir};

use std::path::Path;
use std::process::Command;

use openssl::bn::BigNum;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use roxmltree::Document;
use smev_adapter::config::XmlLimits;
use smev_adapter::dsig::{
    Crypto, DSIG_NS, DigestAlg, DsigError, Expect, KeySource, SignOptions, SignatureAlg,
    SigningKey, TrustStore, insert_as_last_child, load_private_key, public_key_from_bytes,
    resolve_id, sign_element, verify,
};
use smev_adapter::xml;

fn parse(text: &str) -> Document<'_> {
    xml::parse(text, &XmlLimits::default()).expect("secure parse")
}

fn store() -> TrustStore {
    TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        Crypto::load(),
    )
    .expect("trust store")
}

const SMEV_DOC: &str = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns1:SendRequestRequest xmlns:ns1="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3">
  <ns1:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER">
    <ns1:MessageID>db0486d0-3c08-11e5-95e2-d4c9eff07b77</ns1:MessageID>
    <MessagePrimaryContent xmlns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3">
      <r:Req xmlns:r="urn://example/agency/1.0" kind="a&amp;b">Иванов</r:Req>
    </MessagePrimaryContent>
  </ns1:SenderProvidedRequestData>
  <ns1:CallerInformationSystemSignature/>
</ns1:SendRequestRequest></S:Body></S:Envelope>"#;

const TYPES_13: &str = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3";

fn key(file: &str, cert: &str, alg: SignatureAlg) -> SigningKey {
    SigningKey::from_files(
        &keys().join(file),
        Some(&keys().join(cert)),
        None,
        Some(alg),
        Crypto::load(),
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Signs SenderProvidedRequestData of SMEV_DOC; the signature goes into
/// CallerInformationSystemSignature, or inside the element when `enveloped`.
fn sign(key: &SigningKey, opts: &SignOptions) -> String {
    let doc = parse(SMEV_DOC);
    let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
    let frag = sign_element(&doc, target, key, opts).expect("sign");
    let parent = if opts.enveloped {
        target
    } else {
        doc.descendants()
            .find(|n| n.has_tag_name((TYPES_13, "CallerInformationSystemSignature")))
            .expect("holder")
    };
    insert_as_last_child(SMEV_DOC, parent, &frag).expect("insert")
}

fn verify_smev(signed: &str, keys: &KeySource<'_>) -> Result<(), DsigError> {
    let doc = parse(signed);
    let target = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, "SenderProvidedRequestData")))
        .expect("target");
    let v = verify(&doc, signature_of(&doc), Expect::Element(target), keys)?;
    assert_eq!(v.element.node(), target);
    Ok(())
}

fn xmlsec1_verify(name: &str, signed: &str) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dsig-profile");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(format!("{name}.xml"));
    std::fs::write(&path, signed).expect("write");
    let out = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--trusted-pem")
        .arg(keys().join("cacert.pem"))
        .arg("--untrusted-pem")
        .arg(keys().join("ca2cert.pem"))
        .arg("--id-attr:Id")
        .arg(format!("{TYPES_13}:SenderProvidedRequestData"))
        .arg(&path)
        .output()
        .expect("xmlsec1 is required for the interop tests (apt-get install -y xmlsec1)");
    assert!(
        out.status.success(),
        "xmlsec1 rejected our {name} signature:\n{}\n{signed}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_rsa_and_ecdsa_algorithm_round_trips_and_xmlsec1_agrees() {
    let trust = store();
    let cases = [
        (
            "rsa/rsa-4096-key.pem",
            "rsa/rsa-4096-cert.pem",
            SignatureAlg::RsaSha256,
            DigestAlg::Sha256,
            true,
        ),
        (
            "rsa/rsa-4096-key.pem",
            "rsa/rsa-4096-cert.pem",
            SignatureAlg::RsaSha384,
            DigestAlg::Sha384,
            true,
        ),
        (
            "rsa/rsa-4096-key.pem",
            "rsa/rsa-4096-cert.pem",
            SignatureAlg::RsaSha512,
            DigestAlg::Sha512,
            true,
        ),
        (
            "rsa/rsa-2048-key.pem",
            "rsa/rsa-2048-cert.pem",
            SignatureAlg::RsaPssSha256,
            DigestAlg::Sha256,
            false,
        ),
        (
            "rsa/rsa-2048-key.pem",
            "rsa/rsa-2048-cert.pem",
            SignatureAlg::RsaPssSha384,
            DigestAlg::Sha384,
            false,
        ),
        (
            "rsa/rsa-2048-key.pem",
            "rsa/rsa-2048-cert.pem",
            SignatureAlg::RsaPssSha512,
            DigestAlg::Sha512,
            false,
        ),
        (
            "ec/ec-prime256v1-key.pem",
            "ec/ec-prime256v1-cert.pem",
            SignatureAlg::EcdsaSha256,
            DigestAlg::Sha256,
            true,
        ),
        (
            "ec/ec-prime384v1-key.pem",
            "ec/ec-prime384v1-cert.pem",
            SignatureAlg::EcdsaSha384,
            DigestAlg::Sha384,
            true,
        ),
        (
            "ec/ec-prime521v1-key.pem",
            "ec/ec-prime521v1-cert.pem",
            SignatureAlg::EcdsaSha512,
            DigestAlg::Sha512,
            true,
        ),
    ];
    for (file, cert, alg, digest, xmlsec_knows) in cases {
        let k = key(file, cert, alg);
        for enveloped in [false, true] {
            // The SMEV profile (exc-c14n + SMEV transform) for the node itself.
            let smev = SignOptions {
                digest,
                smev_transform: true,
                enveloped,
            };
            let signed = sign(&k, &smev);
            verify_smev(&signed, &KeySource::Trusted(&trust))
                .unwrap_or_else(|e| panic!("{alg:?} enveloped={enveloped}: {e}"));
            // Plain exc-c14n, which xmlsec1 can check too.
            let plain = SignOptions {
                smev_transform: false,
                ..smev
            };
            let signed = sign(&k, &plain);
            verify_smev(&signed, &KeySource::Trusted(&trust))
                .unwrap_or_else(|e| panic!("{alg:?} plain enveloped={enveloped}: {e}"));
            if xmlsec_knows {
                xmlsec1_verify(&format!("{}-{enveloped}", alg.name()), &signed);
            }
        }
    }
}

#[test]
fn keys_load_from_pem_der_pkcs8_and_pkcs12() {
    let crypto = Crypto::load();
    for stem in ["rsa/rsa-2048", "ec/ec-prime256v1", "ec/ec-prime521v1"] {
        let cert = keys().join(format!("{stem}-cert.pem"));
        let reference = load_private_key(&keys().join(format!("{stem}-key.pem")), None, &crypto)
            .expect("PEM key");
        for (suffix, password) in [
            ("key.der", None),
            ("key.p8-pem", Some("secret123")),
            ("key.p8-der", Some("secret123")),
            ("key.p12", Some("secret123")),
        ] {
            let path = keys().join(format!("{stem}-{suffix}"));
            let m = load_private_key(&path, password, &crypto)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(m.key.public_eq(&reference.key), "{}", path.display());
            if suffix == "key.p12" {
                // PKCS#12 carries the certificate: no separate file needed.
                assert!(m.certificate.is_some(), "{}", path.display());
                SigningKey::from_files(&path, None, password, None, crypto)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
            SigningKey::from_files(&path, Some(&cert), password, None, crypto)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
        // Wrong or missing passwords are reported, never prompted for.
        let err = load_private_key(
            &keys().join(format!("{stem}-key.p12")),
            Some("nope"),
            &crypto,
        )
        .err()
        .expect("wrong password");
        assert!(matches!(err, DsigError::Key(_)), "{err}");
        let err = load_private_key(&keys().join(format!("{stem}-key.p8-pem")), None, &crypto)
            .err()
            .expect("missing password");
        assert!(err.to_string().contains("no password"), "{err}");
        // Certificates from DER too.
        let der = keys().join(format!("{stem}-cert.der"));
        assert_eq!(
            smev_adapter::dsig::load_certificates(&der)
                .expect("DER cert")
                .len(),
            1
        );
    }
    // A key that does not belong to the certificate is refused.
    let err = SigningKey::from_files(
        &keys().join("ec/ec-prime256v1-key.pem"),
        Some(&keys().join("ec/ec-prime256v1-second-cert.pem")),
        None,
        None,
        crypto,
    )
    .err()
    .expect("mismatch");
    assert!(matches!(err, DsigError::KeyMismatch(_)), "{err}");
}

#[test]
fn sha1_is_never_used_to_sign() {
    let k = key(
        "rsa/rsa-2048-key.pem",
        "rsa/rsa-2048-cert.pem",
        SignatureAlg::RsaSha256,
    );
    let doc = parse(SMEV_DOC);
    let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
    let opts = SignOptions {
        digest: DigestAlg::Sha1,
        smev_transform: true,
        enveloped: false,
    };
    assert!(matches!(
        sign_element(&doc, target, &k, &opts),
        Err(DsigError::WeakAlgorithm(_))
    ));
    let err = SigningKey::from_files(
        &keys().join("rsa/rsa-2048-key.pem"),
        Some(&keys().join("rsa/rsa-2048-cert.pem")),
        None,
        Some(SignatureAlg::RsaSha1),
        Crypto::load(),
    )
    .err()
    .expect("RSA-SHA1 signing key");
    assert!(matches!(err, DsigError::WeakAlgorithm(_)), "{err}");
}

fn ec() -> SigningKey {
    key(
        "ec/ec-prime256v1-key.pem",
        "ec/ec-prime256v1-cert.pem",
        SignatureAlg::EcdsaSha256,
    )
}

/// Applies `edit` to a freshly signed document and expects verification to fail as `check` says.
fn refused(edit: impl Fn(&str) -> String, check: impl Fn(&DsigError) -> bool, what: &str) {
    let signed = sign(&ec(), &SignOptions::SMEV_GOST);
    let edited = edit(&signed);
    assert_ne!(edited, signed, "{what}: the edit changed nothing");
    let trust = store();
    match verify_smev(&edited, &KeySource::Trusted(&trust)) {
        Err(e) if check(&e) => {}
        other => panic!("{what}: expected refusal, got {other:?}\n{edited}"),
    }
}

#[test]
fn unknown_algorithms_transforms_and_extra_references_are_refused() {
    refused(
        |s| s.replace("xmldsig-more#ecdsa-sha256", "xmldsig-more#ecdsa-sha224"),
        |e| matches!(e, DsigError::UnsupportedAlgorithm(_)),
        "unknown SignatureMethod",
    );
    refused(
        |s| {
            s.replace(
                "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34112012-256",
                "http://www.w3.org/2001/04/xmldsig-more#md5",
            )
        },
        |e| matches!(e, DsigError::UnsupportedAlgorithm(_)),
        "unknown DigestMethod",
    );
    refused(
        |s| {
            s.replace(
                "urn://smev-gov-ru/xmldsig/transform",
                "urn://example/transform",
            )
        },
        |e| matches!(e, DsigError::UnsupportedTransforms(_)),
        "unknown Transform",
    );
    refused(
        |s| {
            s.replace(
                "<ds:Transforms>",
                "<ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/TR/1999/REC-xslt-19991116\"></ds:Transform>",
            )
        },
        |e| matches!(e, DsigError::UnsupportedTransforms(_)),
        "XSLT transform",
    );
    refused(
        |s| {
            s.replace(
                "http://www.w3.org/2001/10/xml-exc-c14n#\"></ds:CanonicalizationMethod>",
                "http://example/c14n\"></ds:CanonicalizationMethod>",
            )
        },
        |e| matches!(e, DsigError::C14n(_) | DsigError::UnsupportedAlgorithm(_)),
        "unknown CanonicalizationMethod",
    );
    // A second Reference (even one that would verify) is not what the profile expects.
    refused(
        |s| {
            let start = s.find("<ds:Reference ").expect("Reference");
            let end = s.find("</ds:Reference>").expect("end") + "</ds:Reference>".len();
            let reference = &s[start..end];
            format!("{}{reference}{}", &s[..end], &s[end..])
        },
        |e| matches!(e, DsigError::ReferenceCount(2)),
        "two References",
    );
    refused(
        |s| s.replace("URI=\"#SIGNED_BY_CONSUMER\"", "URI=\"#xpointer(/)\""),
        |e| matches!(e, DsigError::UnsupportedUri(_)),
        "XPointer URI",
    );
    refused(
        |s| s.replace("URI=\"#SIGNED_BY_CONSUMER\"", "URI=\"http://example/doc\""),
        |e| matches!(e, DsigError::UnsupportedUri(_)),
        "external URI",
    );
    refused(
        |s| s.replace("URI=\"#SIGNED_BY_CONSUMER\"", "URI=\"\""),
        |e| matches!(e, DsigError::WrongTarget(_)),
        "whole-document reference where an element is expected",
    );
    // Signature wrapping: the original element moved aside, a forged one in its place.
    refused(
        |s| {
            s.replace(
                "<S:Body>",
                "<S:Header><x Id=\"SIGNED_BY_CONSUMER\"/></S:Header><S:Body>",
            )
        },
        |e| matches!(e, DsigError::AmbiguousReference { count: 2, .. }),
        "duplicate Id",
    );
    refused(
        |s| s.replace("Id=\"SIGNED_BY_CONSUMER\"", "Id=\"OTHER\""),
        |e| matches!(e, DsigError::ReferenceNotFound(_)),
        "Id not found",
    );
    // A KeyInfo stuffed with certificates is refused before any quadratic work.
    refused(
        |s| {
            let a = s.find("<ds:X509Data>").expect("X509Data") + "<ds:X509Data>".len();
            let b = s.find("</ds:X509Data>").expect("end");
            let cert = &s[a..b];
            format!("{}{}{}", &s[..a], cert.repeat(9), &s[b..])
        },
        |e| matches!(e, DsigError::Malformed(m) if m.contains("9 certificates")),
        "nine KeyInfo certificates",
    );
    refused(
        |s| {
            let a = s.find("<ds:KeyInfo>").expect("KeyInfo");
            let b = s.find("</ds:KeyInfo>").expect("end") + "</ds:KeyInfo>".len();
            format!("{}{}", &s[..a], &s[b..])
        },
        |e| matches!(e, DsigError::NoKey),
        "no KeyInfo",
    );
}

/// Flips one byte at a time over the signed element and over SignedInfo: every flip must
/// make the document unparsable or the signature invalid.
#[test]
fn flipping_any_byte_of_signed_content_fails() {
    let key = ec();
    let signed = sign(&key, &SignOptions::SMEV_GOST);
    let pk = key.certificate().public_key().expect("pk");
    let crypto = Crypto::load();
    verify_smev(&signed, &KeySource::Key(&pk, crypto)).expect("the original verifies");
    let doc = parse(&signed);
    let element = resolve_id(&doc, "SIGNED_BY_CONSUMER")
        .expect("target")
        .range();
    let si = doc
        .descendants()
        .find(|n| n.has_tag_name((DSIG_NS, "SignedInfo")))
        .expect("SignedInfo")
        .range();
    // A namespace declaration's own name is not content: renaming an unused declaration
    // leaves every canonical form unchanged (and renaming a used one breaks the parse).
    let mut declaration_names = Vec::new();
    let mut from = 0;
    while let Some(at) = signed[from..].find("xmlns") {
        let start = from + at;
        let end = start + signed[start..].find('=').expect("declaration");
        declaration_names.push(start..end);
        from = end;
    }
    let mut checked = 0;
    for i in element.chain(si) {
        if declaration_names.iter().any(|r| r.contains(&i)) {
            continue;
        }
        let mut bytes = signed.clone().into_bytes();
        if !bytes[i].is_ascii() {
            continue;
        }
        bytes[i] ^= 0x01;
        let Ok(text) = String::from_utf8(bytes) else {
            continue;
        };
        let Ok(doc) = xml::parse(&text, &XmlLimits::default()) else {
            continue;
        };
        let Some(target) = doc
            .descendants()
            .find(|n| n.has_tag_name((TYPES_13, "SenderProvidedRequestData")))
        else {
            continue;
        };
        let Some(sig) = doc
            .descendants()
            .find(|n| n.has_tag_name((DSIG_NS, "Signature")))
        else {
            continue;
        };
        let r = verify(
            &doc,
            sig,
            Expect::Element(target),
            &KeySource::Key(&pk, crypto),
        );
        assert!(
            r.is_err(),
            "flipping byte {i} ({:?}) still verifies",
            &signed[i.saturating_sub(10)..(i + 10).min(signed.len())]
        );
        checked += 1;
    }
    assert!(checked > 300, "only {checked} flips checked");
}

/// merlin-xmldsig-twenty-three: the one signature with a supported algorithm (enveloping
/// RSA-SHA1, key in KeyValue) verifies, flagged weak; the others use DSA, HMAC or external
/// URIs, which the node does not support, and are refused for that reason; so are the DSA
/// signatures of merlin-exc-c14n-one and merlin-c14n-three.
#[test]
fn merlin_interop_signatures() {
    let dir = vectors_dir().join("xmldsig/merlin-xmldsig-twenty-three");
    let text = std::fs::read_to_string(dir.join("signature-enveloping-rsa.xml")).expect("read");
    let doc = Document::parse(&text).expect("parse");
    let text_of = |local: &str| -> Vec<u8> {
        let t: String = doc
            .descendants()
            .find(|n| n.has_tag_name((DSIG_NS, local)))
            .and_then(|n| n.text())
            .expect("RSAKeyValue")
            .split_whitespace()
            .collect();
        openssl::base64::decode_block(&t).expect("base64")
    };
    let rsa = Rsa::from_public_components(
        BigNum::from_slice(&text_of("Modulus")).expect("n"),
        BigNum::from_slice(&text_of("Exponent")).expect("e"),
    )
    .expect("rsa");
    let pk = PKey::from_rsa(rsa).expect("pkey");
    let v = verify(
        &doc,
        signature_of(&doc),
        Expect::AnyElement,
        &KeySource::Key(&pk, Crypto::load()),
    )
    .expect("signature-enveloping-rsa verifies");
    assert!(v.weak);
    assert_eq!(v.element.node().attribute("Id"), Some("object"));
    let tampered = text.replace("some text", "some test");
    let tdoc = Document::parse(&tampered).expect("parse");
    assert!(matches!(
        verify(
            &tdoc,
            signature_of(&tdoc),
            Expect::AnyElement,
            &KeySource::Key(&pk, Crypto::load())
        ),
        Err(DsigError::DigestMismatch)
    ));

    let unsupported: &[(&str, &str)] = &[
        ("signature-enveloped-dsa", "DSA"),
        ("signature-enveloping-b64-dsa", "DSA"),
        ("signature-enveloping-dsa", "DSA"),
        ("signature-enveloping-hmac-sha1-40", "HMAC"),
        ("signature-enveloping-hmac-sha1", "HMAC"),
        ("signature-external-b64-dsa", "DSA, external URI"),
        ("signature-external-dsa", "DSA, external URI"),
        ("signature-keyname", "DSA, external URI"),
        ("signature-retrievalmethod-rawx509crt", "DSA, external URI"),
        ("signature-x509-crt-crl", "DSA, external URI"),
        ("signature-x509-crt", "DSA, external URI"),
        ("signature-x509-is", "DSA, external URI"),
        ("signature-x509-ski", "DSA, external URI"),
        ("signature-x509-sn", "DSA, external URI"),
    ];
    // The c14n interop signatures are DSA-SHA1 too (their canonical forms and digests are
    // checked byte for byte in tests/c14n_vectors.rs); the signatures are refused.
    for case in [
        "merlin-exc-c14n-one/exc-signature.xml",
        "merlin-c14n-three/signature.xml",
    ] {
        let text = std::fs::read_to_string(vectors_dir().join("xmldsig").join(case)).expect("read");
        let doc = Document::parse(&text).expect("parse");
        let r = verify(
            &doc,
            signature_of(&doc),
            Expect::Any,
            &KeySource::Untrusted(Crypto::load()),
        );
        assert!(
            matches!(r, Err(DsigError::UnsupportedAlgorithm(ref a)) if a.ends_with("#dsa-sha1")),
            "{case} (DSA) must be refused as unsupported: {r:?}"
        );
    }
    // signature.xml (DSA, 21 References incl. external, XSLT, manifests) carries a DTD,
    // which the node refuses before any signature work.
    let text = std::fs::read_to_string(dir.join("signature.xml")).expect("read");
    assert!(matches!(
        xml::parse(&text, &XmlLimits::default()),
        Err(xml::XmlError::DtdRefused { .. })
    ));
    for (case, reason) in unsupported {
        let text = std::fs::read_to_string(dir.join(format!("{case}.xml"))).expect("read");
        let doc = Document::parse(&text).expect("parse");
        let r = verify(
            &doc,
            signature_of(&doc),
            Expect::Any,
            &KeySource::Untrusted(Crypto::load()),
        );
        assert!(
            matches!(r, Err(DsigError::UnsupportedAlgorithm(_))),
            "{case} ({reason}) must be refused as unsupported: {r:?}"
        );
    }
}

/// The certificate's public key works as an out-of-band key, from PEM and DER.
#[test]
fn public_keys_load_from_files() {
    let crypto = Crypto::load();
    for f in [
        "ec/ec-prime256v1-pubkey.pem",
        "ec/ec-prime256v1-pubkey.der",
        "ec/ec-prime256v1-cert.pem",
        "ec/ec-prime256v1-cert.der",
    ] {
        let bytes = std::fs::read(keys().join(f)).expect("read");
        let pk = public_key_from_bytes(&bytes, &crypto).unwrap_or_else(|e| panic!("{f}: {e}"));
        let signed = sign(&ec(), &SignOptions::SMEV_GOST);
        verify_smev(&signed, &KeySource::Key(&pk, crypto)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
}

/// A signer whose certificate chains but has expired is refused as expired (CertificateIsExpired),
/// every time: a failed check is never cached as trusted.
#[test]
fn expired_certificates_are_refused() {
    let k = key(
        "rsa/rsa-expired-key.pem",
        "rsa/rsa-expired-cert.pem",
        SignatureAlg::RsaSha256,
    );
    let signed = sign(&k, &SignOptions::SMEV_GOST);
    let trust = store();
    for attempt in 0..2 {
        let r = verify_smev(&signed, &KeySource::Trusted(&trust));
        assert!(
            matches!(r, Err(DsigError::CertificateExpired(_))),
            "attempt {attempt}: {r:?}"
        );
    }
}
