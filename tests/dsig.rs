//! Verifies the aleksey-xmldsig-01 vectors, round-trips our own signatures and checks interop with xmlsec1 both ways.
//! Must not skip silently: unsupported vectors are asserted to fail with the documented error.

mod vectors;
use vectors::{aleksey, keys, read, signature_of, vectors_dir};

use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::pkey::PKey;
use openssl::x509::X509;
use roxmltree::Document;
use smev_adapter::dsig::{
    Crypto, DSIG_NS, DigestAlg, DsigError, Expect, KeySource, SignOptions, SignatureAlg,
    SigningKey, TrustStore, insert_as_last_child, public_key_from_bytes, resolve_id, sign_element,
    verify,
};

fn crypto() -> Crypto {
    Crypto::load()
}

fn store() -> TrustStore {
    TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        crypto(),
    )
    .expect("trust store")
}

fn public_key_from_pem(pem: &[u8]) -> openssl::pkey::PKey<openssl::pkey::Public> {
    public_key_from_bytes(pem, &crypto()).expect("public key")
}

#[test]
fn aleksey_vectors() {
    // (case, public key file named by KeyName; None = KeyInfo certificate + trust store)
    let cases: &[(&str, Option<&str>)] = &[
        (
            "enveloped-sha256-ecdsa-sha256",
            Some("ec/ec-prime256v1-pubkey.pem"),
        ),
        (
            "enveloped-sha384-ecdsa-sha384",
            Some("ec/ec-prime521v1-pubkey.pem"),
        ),
        (
            "enveloped-sha512-ecdsa-sha512",
            Some("ec/ec-prime521v1-pubkey.pem"),
        ),
        (
            "enveloped-sha256-rsa-pss-sha256",
            Some("rsa/rsa-4096-pubkey.pem"),
        ),
    ];
    let trust = store();
    for (case, key) in cases {
        let xml = aleksey(case);
        let doc = Document::parse(&xml).expect("parse");
        let sig = signature_of(&doc);
        let v = match key {
            Some(k) => {
                let pk = public_key_from_pem(&read(keys().join(k)));
                verify(&doc, sig, Expect::Document, &KeySource::Key(&pk, crypto()))
            }
            None => verify(&doc, sig, Expect::Document, &KeySource::Trusted(&trust)),
        };
        let v = v.unwrap_or_else(|e| panic!("{case}: {e}"));
        assert!(
            v.element.is_document(),
            "{case}: URI=\"\" covers the document"
        );
        assert!(!v.weak, "{case}: not weak");
        // Tampering with the signed data must break the digest.
        let tampered = xml.replace("Hello, World!", "Hello, World?");
        let tdoc = Document::parse(&tampered).expect("parse");
        let pk = match key {
            Some(k) => public_key_from_pem(&read(keys().join(k))),
            None => v
                .certificate
                .as_ref()
                .expect("cert")
                .public_key()
                .expect("pk"),
        };
        assert!(
            matches!(
                verify(
                    &tdoc,
                    signature_of(&tdoc),
                    Expect::Document,
                    &KeySource::Key(&pk, crypto())
                ),
                Err(DsigError::DigestMismatch)
            ),
            "{case}: tampering not detected"
        );
    }

    // GOST 2012-256/512 verify in tests/dsig_gost.rs (they need the engine).

    // RSA-SHA1 / SHA-1 digest: verifies, flagged weak.
    let xml = aleksey("enveloped-sha1-rsa-sha1");
    let doc = Document::parse(&xml).expect("parse");
    let pk = public_key_from_pem(&read(keys().join("rsa/rsa-4096-pubkey.pem")));
    let v = verify(
        &doc,
        signature_of(&doc),
        Expect::Document,
        &KeySource::Key(&pk, crypto()),
    )
    .expect("RSA-SHA1 verifies");
    assert!(v.weak, "SHA-1 must be flagged weak");
    assert_eq!(v.signature_alg, SignatureAlg::RsaSha1);
    assert_eq!(v.digest_alg, DigestAlg::Sha1);
    let tampered = xml.replace("Hello, World!", "Hello, World?");
    let tdoc = Document::parse(&tampered).expect("parse");
    assert!(matches!(
        verify(
            &tdoc,
            signature_of(&tdoc),
            Expect::Document,
            &KeySource::Key(&pk, crypto())
        ),
        Err(DsigError::DigestMismatch)
    ));
}

fn ec_key() -> SigningKey {
    let key =
        PKey::private_key_from_pem(&read(keys().join("ec/ec-prime256v1-key.pem"))).expect("k");
    let cert = X509::from_pem(&read(keys().join("ec/ec-prime256v1-cert.pem"))).expect("c");
    SigningKey::new(key, &cert, SignatureAlg::EcdsaSha256, crypto()).expect("signing key")
}

fn rsa_key(alg: SignatureAlg) -> SigningKey {
    let key = PKey::private_key_from_pem(&read(keys().join("rsa/rsa-4096-key.pem"))).expect("k");
    let cert = X509::from_pem(&read(keys().join("rsa/rsa-4096-cert.pem"))).expect("c");
    SigningKey::new(key, &cert, alg, crypto()).expect("signing key")
}

const SMEV_DOC: &str = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns1:SendRequestRequest xmlns:ns1="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.2">
  <ns1:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER">
    <ns1:MessageID>db0486d0-3c08-11e5-95e2-d4c9eff07b77</ns1:MessageID>
    <MessagePrimaryContent xmlns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.2">
      <r:Req xmlns:r="urn://example/agency/1.0" kind="a&amp;b">Иванов</r:Req>
    </MessagePrimaryContent>
  </ns1:SenderProvidedRequestData>
  <ns1:CallerInformationSystemSignature/>
</ns1:SendRequestRequest></S:Body></S:Envelope>"#;

fn sign_detached(xml: &str, key: &SigningKey, opts: &SignOptions) -> String {
    let doc = Document::parse(xml).expect("parse");
    let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
    let fragment = sign_element(&doc, target, key, opts).expect("sign");
    let holder = doc
        .descendants()
        .find(|n| n.tag_name().name() == "CallerInformationSystemSignature")
        .expect("holder");
    insert_as_last_child(xml, holder, &fragment).expect("insert")
}

#[test]
fn sign_verify_round_trip() {
    let trust = store();
    let combos = [
        (ec_key(), SignOptions::SMEV_GOST),
        (
            ec_key(),
            SignOptions {
                digest: DigestAlg::Sha256,
                smev_transform: false,
                enveloped: false,
            },
        ),
        (
            rsa_key(SignatureAlg::RsaSha256),
            SignOptions {
                digest: DigestAlg::Sha512,
                smev_transform: true,
                enveloped: false,
            },
        ),
        (
            rsa_key(SignatureAlg::RsaPssSha256),
            SignOptions {
                digest: DigestAlg::Gost512,
                smev_transform: true,
                enveloped: false,
            },
        ),
    ];
    for (key, opts) in &combos {
        let signed = sign_detached(SMEV_DOC, key, opts);
        let doc = Document::parse(&signed).expect("parse signed");
        let sig = signature_of(&doc);
        let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
        let v = verify(
            &doc,
            sig,
            Expect::Element(target),
            &KeySource::Trusted(&trust),
        )
        .unwrap_or_else(|e| panic!("{opts:?}: {e}\n{signed}"));
        assert_eq!(v.element.node(), target);
        assert_eq!(v.element.node().attribute("Id"), Some("SIGNED_BY_CONSUMER"));
        // The signature must cover the element the caller goes on to process.
        let other = doc
            .descendants()
            .find(|n| n.tag_name().name() == "MessageID")
            .expect("MessageID");
        assert!(matches!(
            verify(
                &doc,
                sig,
                Expect::Element(other),
                &KeySource::Trusted(&trust)
            ),
            Err(DsigError::WrongTarget(_))
        ));
        assert!(matches!(
            verify(&doc, sig, Expect::Document, &KeySource::Trusted(&trust)),
            Err(DsigError::WrongTarget(_))
        ));

        // Tampered content.
        let bad = signed.replace("Иванов", "Петров");
        let bdoc = Document::parse(&bad).expect("parse");
        assert!(matches!(
            verify(
                &bdoc,
                signature_of(&bdoc),
                Expect::AnyElement,
                &KeySource::Untrusted(crypto())
            ),
            Err(DsigError::DigestMismatch)
        ));
        // Signature wrapping: a second element with the same Id.
        let wrapped = signed.replace(
            "<S:Body>",
            "<S:Header><x Id=\"SIGNED_BY_CONSUMER\"/></S:Header><S:Body>",
        );
        let wdoc = Document::parse(&wrapped).expect("parse");
        assert!(matches!(
            verify(
                &wdoc,
                signature_of(&wdoc),
                Expect::AnyElement,
                &KeySource::Untrusted(crypto())
            ),
            Err(DsigError::AmbiguousReference { count: 2, .. })
        ));
    }

    // Enveloped signature inside the signed element.
    let doc = Document::parse(SMEV_DOC).expect("parse");
    let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
    let opts = SignOptions {
        digest: DigestAlg::Sha256,
        smev_transform: true,
        enveloped: true,
    };
    let frag = sign_element(&doc, target, &ec_key(), &opts).expect("sign");
    let signed = insert_as_last_child(SMEV_DOC, target, &frag).expect("insert");
    let sdoc = Document::parse(&signed).expect("parse");
    let target = resolve_id(&sdoc, "SIGNED_BY_CONSUMER").expect("target");
    verify(
        &sdoc,
        signature_of(&sdoc),
        Expect::Element(target),
        &KeySource::Trusted(&trust),
    )
    .expect("enveloped verifies");
    // A certificate that does not chain to the anchors is refused.
    let unrelated =
        TrustStore::from_files(&[keys().join("rsa/rsa-2048-cert.pem")], crypto()).expect("store");
    let r = verify(
        &sdoc,
        signature_of(&sdoc),
        Expect::Element(target),
        &KeySource::Trusted(&unrelated),
    );
    assert!(matches!(r, Err(DsigError::Untrusted(_))), "{r:?}");
}

fn xmlsec1() -> Option<PathBuf> {
    let p = PathBuf::from("/usr/bin/xmlsec1");
    if p.exists() { Some(p) } else { None }
}

fn require_xmlsec1() -> PathBuf {
    xmlsec1().expect(
        "xmlsec1 is required for the interop tests (apt-get install -y xmlsec1); it is not installed",
    )
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xmlsec-interop");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    dir.join(name)
}

#[test]
fn xmlsec1_verifies_ours() {
    let xmlsec = require_xmlsec1();
    let cases = [
        ("ec", ec_key(), false),
        ("ec-enveloped", ec_key(), true),
        ("rsa", rsa_key(SignatureAlg::RsaSha256), false),
    ];
    for (name, key, enveloped) in &cases {
        let opts = SignOptions {
            digest: DigestAlg::Sha256,
            smev_transform: false, // xmlsec1 does not know the SMEV transform
            enveloped: *enveloped,
        };
        let doc = Document::parse(SMEV_DOC).expect("parse");
        let target = resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target");
        let frag = sign_element(&doc, target, key, &opts).expect("sign");
        let parent = if *enveloped {
            target
        } else {
            doc.descendants()
                .find(|n| n.tag_name().name() == "CallerInformationSystemSignature")
                .expect("holder")
        };
        let signed = insert_as_last_child(SMEV_DOC, parent, &frag).expect("insert");
        let path = scratch(&format!("ours-{name}.xml"));
        std::fs::write(&path, &signed).expect("write");
        let out = Command::new(&xmlsec)
            .arg("--verify")
            .arg("--trusted-pem")
            .arg(keys().join("cacert.pem"))
            .arg("--untrusted-pem")
            .arg(keys().join("ca2cert.pem"))
            .arg("--id-attr:Id")
            .arg("urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.2:SenderProvidedRequestData")
            .arg(&path)
            .output()
            .expect("run xmlsec1");
        assert!(
            out.status.success(),
            "xmlsec1 rejected our {name} signature:\n{}\n{signed}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn we_verify_xmlsec1() {
    let xmlsec = require_xmlsec1();
    let template_sig = |sigalg: &str, enveloped: bool| {
        format!(
            "<ds:Signature xmlns:ds=\"{DSIG_NS}\"><ds:SignedInfo>\
             <ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/>\
             <ds:SignatureMethod Algorithm=\"{sigalg}\"/>\
             <ds:Reference URI=\"#SIGNED_BY_CONSUMER\"><ds:Transforms>{}\
             <ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms>\
             <ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/>\
             <ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/>\
             <ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>",
            if enveloped {
                "<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>"
            } else {
                ""
            }
        )
    };
    let trust = store();
    let cases = [
        (
            "ec",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            "ec/ec-prime256v1-key.pem",
            "ec/ec-prime256v1-cert.pem",
            false,
        ),
        (
            "ec-enveloped",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
            "ec/ec-prime256v1-key.pem",
            "ec/ec-prime256v1-cert.pem",
            true,
        ),
        (
            "rsa",
            "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
            "rsa/rsa-4096-key.pem",
            "rsa/rsa-4096-cert.pem",
            false,
        ),
    ];
    for (name, sigalg, key, cert, enveloped) in cases {
        let doc = Document::parse(SMEV_DOC).expect("parse");
        let parent = if enveloped {
            resolve_id(&doc, "SIGNED_BY_CONSUMER").expect("target")
        } else {
            doc.descendants()
                .find(|n| n.tag_name().name() == "CallerInformationSystemSignature")
                .expect("holder")
        };
        let tmpl = insert_as_last_child(SMEV_DOC, parent, &template_sig(sigalg, enveloped))
            .expect("insert");
        let tpath = scratch(&format!("tmpl-{name}.xml"));
        let spath = scratch(&format!("xmlsec-{name}.xml"));
        std::fs::write(&tpath, &tmpl).expect("write");
        let out = Command::new(&xmlsec)
            .arg("--sign")
            .arg("--privkey-pem")
            .arg(format!(
                "{},{}",
                keys().join(key).display(),
                keys().join(cert).display()
            ))
            .arg("--id-attr:Id")
            .arg("urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.2:SenderProvidedRequestData")
            .arg("--output")
            .arg(&spath)
            .arg(&tpath)
            .output()
            .expect("run xmlsec1");
        assert!(
            out.status.success(),
            "xmlsec1 --sign failed for {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let signed = String::from_utf8(read(&spath)).expect("utf8");
        let sdoc = Document::parse(&signed).expect("parse xmlsec output");
        let target = resolve_id(&sdoc, "SIGNED_BY_CONSUMER").expect("target");
        let v = verify(
            &sdoc,
            signature_of(&sdoc),
            Expect::Element(target),
            &KeySource::Trusted(&trust),
        )
        .unwrap_or_else(|e| panic!("we reject xmlsec1's {name} signature: {e}\n{signed}"));
        assert_eq!(v.element.node(), target);
    }
}

/// The signxml WS-Security request: exc-c14n with PrefixList in SignedInfo and the Reference,
/// wsu:Id target, RSA-SHA256. Its certificate has expired, so no trust store is applied.
#[test]
fn soap_wss_request() {
    let xml = String::from_utf8(read(vectors_dir().join("soap/request.xml"))).expect("utf8");
    let doc = Document::parse(&xml).expect("parse");
    let v = verify(
        &doc,
        signature_of(&doc),
        Expect::AnyElement,
        &KeySource::Untrusted(crypto()),
    )
    .expect("soap request verifies");
    assert_eq!(v.element.node().tag_name().name(), "Body");
    let tampered = xml.replacen("<soapenv:Body", "<soapenv:Body data-x=\"1\"", 1);
    let tdoc = Document::parse(&tampered).expect("parse");
    assert!(
        verify(
            &tdoc,
            signature_of(&tdoc),
            Expect::AnyElement,
            &KeySource::Untrusted(crypto())
        )
        .is_err()
    );
}

/// Signing and verifying work on copies of per-key prepared OpenSSL contexts: every signature
/// made with one key must verify, a forged value must fail, and a failure must not leave
/// anything behind that changes the next verification.
#[test]
fn prepared_contexts_sign_and_verify_repeatedly() {
    const NS: &str = "urn://example.gov/t";
    let limits = smev_adapter::config::XmlLimits::default();
    let store = store();
    let verify_text = |xml: &str| -> Result<(), DsigError> {
        let doc = smev_adapter::xml::parse(xml, &limits)
            .map_err(|e| DsigError::Malformed(e.to_string()))?;
        let target = doc
            .descendants()
            .find(|n| n.has_tag_name((NS, "Data")))
            .ok_or(DsigError::NoSignature)?;
        let holder = doc
            .descendants()
            .find(|n| n.has_tag_name((NS, "Sig")))
            .ok_or(DsigError::NoSignature)?;
        smev_adapter::dsig::verify_message(&doc, target, holder, &store).map(|_| ())
    };
    let mut cases = vec![
        ("ec/ec-prime256v1", SignatureAlg::EcdsaSha256),
        ("rsa/rsa-2048", SignatureAlg::RsaSha256),
        ("rsa/rsa-2048", SignatureAlg::RsaPssSha256),
    ];
    if crypto().gost_available() {
        cases.push(("gost/gost-2012-256", SignatureAlg::Gost2012_256));
        cases.push(("gost/gost-2012-512", SignatureAlg::Gost2012_512));
    }
    let xml =
        format!("<t:Req xmlns:t=\"{NS}\"><t:Data Id=\"D\">данные &amp; x</t:Data><t:Sig/></t:Req>");
    for (file, alg) in cases {
        let key = SigningKey::from_files(
            &keys().join(format!("{file}-key.pem")),
            Some(&keys().join(format!("{file}-cert.pem"))),
            None,
            Some(alg),
            crypto(),
        )
        .expect("key");
        let signed: Vec<String> = (0..3)
            .map(|_| {
                smev_adapter::dsig::sign_message(&xml, &limits, "D", (NS, "Sig"), &key)
                    .expect("sign")
            })
            .collect();
        for s in &signed {
            verify_text(s).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
        // Another signature value of the right length: it decodes, and must not verify.
        let start = signed[0].find("<ds:SignatureValue>").expect("value") + 19;
        let mut forged = signed[0].clone().into_bytes();
        forged[start + 4] = if forged[start + 4] == b'A' {
            b'B'
        } else {
            b'A'
        };
        let forged = String::from_utf8(forged).expect("utf8");
        assert!(
            matches!(verify_text(&forged), Err(DsigError::BadSignature)),
            "{alg:?}: a forged value verified"
        );
        verify_text(&signed[2]).unwrap_or_else(|e| panic!("{alg:?} after a failure: {e}"));
    }
}
