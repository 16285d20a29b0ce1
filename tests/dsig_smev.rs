//! The SMEV message-level API the node uses: sign SenderProvidedResponseData into CallerInformationSystemSignature, verify a SendRequest's CallerInformationSystemSignature against the element to be processed, and the fault each failure maps to.
//! Must not parse messages with anything but the crate's secure parser, and must not skip (GOST needs the engine, which CI installs).

mod vectors;
use vectors::keys;

use roxmltree::{Document, Node};
use smev_adapter::config::XmlLimits;
use smev_adapter::dsig::{
    Crypto, DigestAlg, DsigError, SignOptions, SignatureAlg, SignatureFault, SigningKey,
    TrustStore, sign_message, verify_message,
};
use smev_adapter::xml;

const TYPES: &str = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3";

fn key(stem: &str) -> SigningKey {
    SigningKey::from_files(
        &keys().join(format!("{stem}-key.pem")),
        Some(&keys().join(format!("{stem}-cert.pem"))),
        None,
        None,
        Crypto::load(),
    )
    .unwrap_or_else(|e| panic!("{stem}: {e}"))
}

fn store() -> TrustStore {
    TrustStore::from_files(
        &[keys().join("cacert.pem"), keys().join("ca2cert.pem")],
        Crypto::load(),
    )
    .expect("trust store")
}

const RESPONSE: &str = r#"<?xml version="1.0" encoding="UTF-8"?><soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:SendResponseRequest xmlns:ns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3"><ns:SenderProvidedResponseData Id="SIGNED_BY_PROVIDER"><ns:MessageID>4e1fa6c0-effc-11f1-a485-076090a46bf4</ns:MessageID><ns:To>e3867df0-effb-11f1-a485-076090a46bf4</ns:To><basic:MessagePrimaryContent xmlns:basic="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3"><r:RegistrationResponse xmlns:r="urn://example.gov/registration/1.0"><r:LastName>Иванова</r:LastName><r:FirstName>Анна</r:FirstName><r:Address>г. Тверь, ул. Советская, д. 5 &amp; кв. 7</r:Address></r:RegistrationResponse></basic:MessagePrimaryContent></ns:SenderProvidedResponseData><ns:CallerInformationSystemSignature/></ns:SendResponseRequest></soap:Body></soap:Envelope>"#;

fn parse(text: &str) -> Document<'_> {
    xml::parse(text, &XmlLimits::default()).expect("secure parse")
}

fn element<'a, 'i>(doc: &'a Document<'i>, local: &str) -> Node<'a, 'i> {
    doc.descendants()
        .find(|n| n.has_tag_name((TYPES, local)))
        .unwrap_or_else(|| panic!("<{local}>"))
}

fn sign(text: &str, key: &SigningKey) -> String {
    sign_message(
        text,
        &XmlLimits::default(),
        "SIGNED_BY_PROVIDER",
        (TYPES, "CallerInformationSystemSignature"),
        key,
    )
    .expect("sign_message")
}

fn check(text: &str) -> Result<(), DsigError> {
    let doc = parse(text);
    let target = element(&doc, "SenderProvidedResponseData");
    let holder = element(&doc, "CallerInformationSystemSignature");
    let v = verify_message(&doc, target, holder, &store())?;
    assert_eq!(
        v.element.node(),
        target,
        "the verified element is the target"
    );
    Ok(())
}

#[test]
fn signed_responses_verify_for_every_key_family() {
    for stem in [
        "ec/ec-prime256v1",
        "ec/ec-prime384v1",
        "rsa/rsa-2048",
        "gost/gost-2012-256",
        "gost/gost-2012-512",
    ] {
        let k = key(stem);
        let signed = sign(RESPONSE, &k);
        // Only the holder changed: the text before and after it is byte for byte the same.
        let at = RESPONSE
            .find("<ns:CallerInformationSystemSignature/>")
            .expect("holder");
        assert!(signed.starts_with(&RESPONSE[..at]), "{stem}");
        assert!(signed.ends_with("</ns:CallerInformationSystemSignature></ns:SendResponseRequest></soap:Body></soap:Envelope>"));
        assert!(signed.contains(k.algorithm().uri()), "{stem}");
        assert!(
            signed.contains("urn://smev-gov-ru/xmldsig/transform"),
            "{stem}"
        );
        check(&signed).unwrap_or_else(|e| panic!("{stem}: {e}\n{signed}"));
    }
}

#[test]
fn digest_follows_the_signature_family() {
    assert_eq!(
        SignOptions::smev_for(SignatureAlg::Gost2012_256).digest,
        DigestAlg::Gost256
    );
    assert_eq!(
        SignOptions::smev_for(SignatureAlg::Gost2012_512).digest,
        DigestAlg::Gost512
    );
    assert_eq!(
        SignOptions::smev_for(SignatureAlg::EcdsaSha256).digest,
        DigestAlg::Sha256
    );
    assert_eq!(
        SignOptions::smev_for(SignatureAlg::EcdsaSha512).digest,
        DigestAlg::Sha512
    );
    let o = SignOptions::smev_for(SignatureAlg::RsaSha256);
    assert!(o.smev_transform && !o.enveloped);
}

#[test]
fn failures_map_to_smev_faults() {
    let ec = key("ec/ec-prime256v1");
    let signed = sign(RESPONSE, &ec);
    let fault = |text: &str| check(text).map_err(|e| e.smev_fault());

    assert_eq!(fault(&signed), Ok(()));
    assert_eq!(fault(RESPONSE), Err(SignatureFault::NoSignatureFound));
    assert_eq!(
        fault(&signed.replace("Иванова", "Петрова")),
        Err(SignatureFault::SignatureIsInvalid)
    );
    // The signature covers another element than the one processed.
    let moved = signed.replace(
        "<ns:SenderProvidedResponseData Id=\"SIGNED_BY_PROVIDER\">",
        "<ns:SenderProvidedResponseData Id=\"OTHER\">",
    );
    assert_eq!(fault(&moved), Err(SignatureFault::IncorrectSignatureTarget));
    let wrapped = signed.replace(
        "<soap:Body>",
        "<soap:Header><x Id=\"SIGNED_BY_PROVIDER\"/></soap:Header><soap:Body>",
    );
    assert_eq!(
        fault(&wrapped),
        Err(SignatureFault::IncorrectSignatureTarget)
    );
    // A signer outside the trust store, and an expired one.
    let other = SigningKey::from_files(
        &keys().join("rsa/rsa-2048-key.pem"),
        Some(&keys().join("rsa/rsa-2048-cert.pem")),
        None,
        None,
        Crypto::load(),
    )
    .expect("rsa");
    let signed_by_other = sign(RESPONSE, &other);
    let doc = parse(&signed_by_other);
    let unrelated =
        TrustStore::from_files(&[keys().join("ec/ec-prime256v1-cert.pem")], Crypto::load())
            .expect("store");
    let r = verify_message(
        &doc,
        element(&doc, "SenderProvidedResponseData"),
        element(&doc, "CallerInformationSystemSignature"),
        &unrelated,
    );
    assert_eq!(
        r.map(|_| ()).map_err(|e| e.smev_fault()),
        Err(SignatureFault::CertificateIsNotFound)
    );
    let expired = key("rsa/rsa-expired");
    assert_eq!(
        fault(&sign(RESPONSE, &expired)),
        Err(SignatureFault::CertificateIsExpired)
    );
    assert_eq!(
        SignatureFault::PoorSoapEnvelopeFormat.as_str(),
        "PoorSOAPEnvelopeFormat"
    );
}

/// The node keeps one SigningKey and one TrustStore in its shared state and uses them from
/// the blocking pool's threads.
#[test]
fn keys_and_trust_are_shareable_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<SigningKey>();
    shareable::<TrustStore>();
    shareable::<Crypto>();

    let key = std::sync::Arc::new(key("ec/ec-prime256v1"));
    let trust = std::sync::Arc::new(store());
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let key = key.clone();
            let trust = trust.clone();
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let signed = sign(RESPONSE, &key);
                    let doc = parse(&signed);
                    verify_message(
                        &doc,
                        element(&doc, "SenderProvidedResponseData"),
                        element(&doc, "CallerInformationSystemSignature"),
                        &trust,
                    )
                    .expect("verify");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread");
    }
}
