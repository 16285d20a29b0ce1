//! GOST R 34.10-2012 through OpenSSL's gost engine: the aleksey-xmldsig-01 vectors, keys in every file format, SMEV-profile round trips, and the exact failure without the engine.
//! Must not skip when the engine is missing: CI installs libengine-gost-openssl, so a missing engine fails these tests.

mod vectors;
use vectors::{aleksey, keys, read, signature_of};

use roxmltree::Document;
use smev_adapter::dsig::{
    Crypto, DigestAlg, DsigError, Expect, GOST_UNAVAILABLE, KeySource, SignOptions, SignatureAlg,
    SigningKey, TrustStore, insert_as_last_child, load_private_key, public_key_from_bytes,
    resolve_id, sign_element, verify,
};

fn crypto() -> Crypto {
    let c = Crypto::load();
    assert!(
        c.gost_available(),
        "the GOST engine must load in CI (apt-get install libengine-gost-openssl): {:?}",
        c.gost_status()
    );
    c
}

fn trust(crypto: Crypto) -> TrustStore {
    TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        crypto,
    )
    .expect("trust store")
}

#[test]
fn aleksey_gost_vectors_verify() {
    let crypto = crypto();
    let store = trust(crypto);
    for (case, bits, alg) in [
        ("enveloped-gost2012-256", 256, SignatureAlg::Gost2012_256),
        ("enveloped-gost2012-512", 512, SignatureAlg::Gost2012_512),
    ] {
        let xml = aleksey(case);
        let doc = Document::parse(&xml).expect("parse");
        let sig = signature_of(&doc);
        // KeyInfo carries root CA, second-level CA and the GOST leaf: the leaf must be picked
        // and chained to the root.
        let v = verify(&doc, sig, Expect::Document, &KeySource::Trusted(&store))
            .unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(v.signature_alg, alg);
        assert!(v.element.is_document());
        assert!(!v.weak);
        // The same with the public key file named by KeyName.
        let pk = public_key_from_bytes(
            &read(keys().join(format!("gost/gost-2012-{bits}-pubkey.pem"))),
            &crypto,
        )
        .expect("GOST public key");
        verify(&doc, sig, Expect::Document, &KeySource::Key(&pk, crypto))
            .unwrap_or_else(|e| panic!("{case} with the public key file: {e}"));

        // A flipped byte in the signed data or in SignedInfo breaks it.
        let tampered = xml.replace("Hello, World!", "Hello, World?");
        let tdoc = Document::parse(&tampered).expect("parse");
        assert!(matches!(
            verify(
                &tdoc,
                signature_of(&tdoc),
                Expect::Document,
                &KeySource::Key(&pk, crypto)
            ),
            Err(DsigError::DigestMismatch)
        ));
        let dv_start = xml.find("<DigestValue>").expect("DigestValue") + "<DigestValue>".len();
        let mut bytes = xml.clone().into_bytes();
        bytes[dv_start] = if bytes[dv_start] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("utf8");
        let tdoc = Document::parse(&tampered).expect("parse");
        let r = verify(
            &tdoc,
            signature_of(&tdoc),
            Expect::Document,
            &KeySource::Key(&pk, crypto),
        );
        assert!(
            matches!(r, Err(DsigError::DigestMismatch | DsigError::BadSignature)),
            "{case}: {r:?}"
        );
    }
}

#[test]
fn alternate_gost_uri_spelling_is_accepted_on_input() {
    assert_eq!(
        SignatureAlg::from_uri(
            "http://www.w3.org/2001/04/xmldsig-more#gostr34102012-gostr34112012-256"
        )
        .expect("alternate spelling"),
        SignatureAlg::Gost2012_256
    );
    assert_eq!(
        SignatureAlg::Gost2012_256.uri(),
        "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
    );
    assert_eq!(
        SignatureAlg::Gost2012_512.uri(),
        "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-512"
    );
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

fn gost_key(bits: u32, file: &str, password: Option<&str>, crypto: Crypto) -> SigningKey {
    let cert = keys().join(format!("gost/gost-2012-{bits}-cert.pem"));
    SigningKey::from_files(
        &keys().join(format!("gost/{file}")),
        Some(&cert),
        password,
        None,
        crypto,
    )
    .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn gost_sign_smev_profile_round_trip() {
    let crypto = crypto();
    let store = trust(crypto);
    for (bits, alg, digest) in [
        (256, SignatureAlg::Gost2012_256, DigestAlg::Gost256),
        (512, SignatureAlg::Gost2012_512, DigestAlg::Gost512),
    ] {
        let key = gost_key(bits, &format!("gost-2012-{bits}-key.pem"), None, crypto);
        assert_eq!(
            key.algorithm(),
            alg,
            "the default algorithm follows the key"
        );
        let opts = SignOptions {
            digest,
            smev_transform: true,
            enveloped: false,
        };
        let doc = Document::parse(SMEV_DOC).expect("parse");
        let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
        let frag = sign_element(&doc, target, &key, &opts).expect("sign");
        assert!(frag.contains(alg.uri()) && frag.contains(digest.uri()));
        assert!(frag.contains("urn://smev-gov-ru/xmldsig/transform"));
        let holder = doc
            .descendants()
            .find(|n| n.tag_name().name() == "CallerInformationSystemSignature")
            .expect("holder");
        let signed = insert_as_last_child(SMEV_DOC, holder, &frag).expect("insert");
        let sdoc = Document::parse(&signed).expect("parse");
        let target = resolve_id(&sdoc, "SIGNED_BY_CONSUMER").expect("target");
        let v = verify(
            &sdoc,
            signature_of(&sdoc),
            Expect::Element(target),
            &KeySource::Trusted(&store),
        )
        .unwrap_or_else(|e| panic!("GOST {bits}: {e}\n{signed}"));
        assert_eq!(v.element.node(), target);
        assert_eq!((v.signature_alg, v.digest_alg), (alg, digest));

        let bad = signed.replace("Иванов", "Петров");
        let bdoc = Document::parse(&bad).expect("parse");
        assert!(matches!(
            verify(
                &bdoc,
                signature_of(&bdoc),
                Expect::AnyElement,
                &KeySource::Trusted(&store)
            ),
            Err(DsigError::DigestMismatch)
        ));
    }
}

#[test]
fn gost_keys_load_from_every_format() {
    let crypto = crypto();
    for bits in [256, 512] {
        for (file, password) in [
            (format!("gost-2012-{bits}-key.pem"), None),
            (format!("gost-2012-{bits}-key.der"), None),
            (format!("gost-2012-{bits}-key.p8-pem"), Some("secret123")),
            (format!("gost-2012-{bits}-key.p8-der"), Some("secret123")),
            (format!("gost-2012-{bits}-key.p12"), Some("secret123")),
        ] {
            let path = keys().join("gost").join(&file);
            let m = load_private_key(&path, password, &crypto)
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let expected = if bits == 256 {
                SignatureAlg::Gost2012_256
            } else {
                SignatureAlg::Gost2012_512
            };
            assert_eq!(
                SignatureAlg::default_for(&m.key).expect("alg"),
                expected,
                "{file}"
            );
        }
    }
}

#[test]
fn without_the_engine_gost_fails_with_the_exact_message_and_the_rest_works() {
    let none = Crypto::without_gost();
    assert!(!none.gost_available());
    assert_eq!(DsigError::GostUnavailable.to_string(), GOST_UNAVAILABLE);
    assert_eq!(
        GOST_UNAVAILABLE,
        "GOST not available: install libengine-gost-openssl"
    );

    // Verifying a GOST signature.
    let xml = aleksey("enveloped-gost2012-256");
    let doc = Document::parse(&xml).expect("parse");
    let err = verify(
        &doc,
        signature_of(&doc),
        Expect::Document,
        &KeySource::Untrusted(none),
    )
    .expect_err("GOST must be unavailable");
    assert_eq!(err.to_string(), GOST_UNAVAILABLE);

    // Making a GOST signing key (the key itself parses once the engine is loaded in this
    // process; SigningKey must still refuse it under a GOST-less handle).
    let with = crypto();
    let m = load_private_key(&keys().join("gost/gost-2012-256-key.pem"), None, &with).expect("key");
    let cert = smev_adapter::dsig::load_certificates(&keys().join("gost/gost-2012-256-cert.pem"))
        .expect("cert")
        .remove(0);
    let err = SigningKey::new(m.key, &cert, SignatureAlg::Gost2012_256, none)
        .err()
        .expect("GOST signing key must be refused");
    assert_eq!(err.to_string(), GOST_UNAVAILABLE);

    // ECDSA still signs and verifies under the same handle.
    let ec = SigningKey::from_files(
        &keys().join("ec/ec-prime256v1-key.pem"),
        Some(&keys().join("ec/ec-prime256v1-cert.pem")),
        None,
        None,
        none,
    )
    .expect("EC key");
    let doc = Document::parse(SMEV_DOC).expect("parse");
    let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
    let frag = sign_element(&doc, target, &ec, &SignOptions::SMEV_GOST).expect("sign");
    let holder = doc
        .descendants()
        .find(|n| n.tag_name().name() == "CallerInformationSystemSignature")
        .expect("holder");
    let signed = insert_as_last_child(SMEV_DOC, holder, &frag).expect("insert");
    let sdoc = Document::parse(&signed).expect("parse");
    let store = TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        none,
    )
    .expect("store");
    verify(
        &sdoc,
        signature_of(&sdoc),
        Expect::AnyElement,
        &KeySource::Trusted(&store),
    )
    .expect("ECDSA works without GOST");
}

/// A process where OpenSSL cannot find the engine (OPENSSL_ENGINES points nowhere): the test
/// binary re-runs this test in such a child, which checks that `Crypto::load` reports GOST
/// unavailable with the exact message, GOST keys and signatures fail with it, and ECDSA works.
#[test]
fn a_process_without_the_engine() {
    if std::env::var_os("SMEV_TEST_NO_GOST_CHILD").is_some() {
        let crypto = Crypto::load();
        assert!(!crypto.gost_available(), "the engine loaded from nowhere");
        let status = crypto.gost_status().expect("a reason");
        assert!(status.starts_with(GOST_UNAVAILABLE), "{status}");

        let err = load_private_key(&keys().join("gost/gost-2012-256-key.pem"), None, &crypto)
            .err()
            .expect("GOST key without the engine");
        assert_eq!(err.to_string(), GOST_UNAVAILABLE);
        let err = public_key_from_bytes(&read(keys().join("gost/gost-2012-512-cert.pem")), &crypto)
            .expect_err("GOST certificate key without the engine");
        assert_eq!(err.to_string(), GOST_UNAVAILABLE);

        let store = TrustStore::from_files(&[keys().join("cacert.pem")], crypto).expect("store");
        let xml = aleksey("enveloped-gost2012-512");
        let doc = Document::parse(&xml).expect("parse");
        let err = verify(
            &doc,
            signature_of(&doc),
            Expect::Document,
            &KeySource::Trusted(&store),
        )
        .expect_err("GOST verification without the engine");
        assert_eq!(err.to_string(), GOST_UNAVAILABLE);

        let ec = SigningKey::from_files(
            &keys().join("ec/ec-prime256v1-key.pem"),
            Some(&keys().join("ec/ec-prime256v1-cert.pem")),
            None,
            None,
            crypto,
        )
        .expect("EC key");
        let doc = Document::parse(SMEV_DOC).expect("parse");
        let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
        let frag = sign_element(
            &doc,
            target,
            &ec,
            &SignOptions {
                digest: DigestAlg::Sha256,
                smev_transform: true,
                enveloped: true,
            },
        )
        .expect("sign");
        let signed = insert_as_last_child(SMEV_DOC, target, &frag).expect("insert");
        let sdoc = Document::parse(&signed).expect("parse");
        let pk = ec.certificate().public_key().expect("pk");
        verify(
            &sdoc,
            signature_of(&sdoc),
            Expect::AnyElement,
            &KeySource::Key(&pk, crypto),
        )
        .expect("ECDSA without the engine");
        println!("CHILD-CHECKS-RAN");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let out = std::process::Command::new(exe)
        .args(["--exact", "a_process_without_the_engine", "--nocapture"])
        .env("SMEV_TEST_NO_GOST_CHILD", "1")
        .env("OPENSSL_ENGINES", "/nonexistent/engines")
        .output()
        .expect("re-run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("CHILD-CHECKS-RAN"),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
