//! The library side of `sign`, `verify` and `keys generate`: development keys for every algorithm sign documents that verify against their own certificate, reports say which element, by whom, with what, and exactly why not.
//! Must not skip GOST: CI installs the engine.

use smev_adapter::dsig::tools::{DevKeyAlg, generate_dev_keys, sign_document, verify_document};
use smev_adapter::dsig::{Crypto, SigningKey, TrustStore};

const DOC: &str = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/"><S:Body><ns1:SendRequestRequest xmlns:ns1="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3"><ns1:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER"><ns1:MessageID>db0486d0-3c08-11e5-95e2-d4c9eff07b77</ns1:MessageID><r:Req xmlns:r="urn://example/agency/1.0">Иванов</r:Req></ns1:SenderProvidedRequestData><ns1:CallerInformationSystemSignature/></ns1:SendRequestRequest></S:Body></S:Envelope>"#;

#[test]
fn generated_keys_sign_and_verify_for_every_algorithm() {
    let crypto = Crypto::load();
    assert!(crypto.gost_available(), "{:?}", crypto.gost_status());
    let tmp = tempfile::tempdir().expect("tmp");
    for (name, alg) in [
        ("rsa", DevKeyAlg::Rsa),
        ("ecdsa", DevKeyAlg::Ecdsa),
        ("gost2012-256", DevKeyAlg::Gost2012_256),
        ("gost2012-512", DevKeyAlg::Gost2012_512),
    ] {
        assert_eq!(DevKeyAlg::parse(name), Some(alg));
        let dir = tmp.path().join(name);
        let (key_path, cert_path) =
            generate_dev_keys(alg, &dir, &crypto).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(key_path, dir.join("key.pem"));
        assert_eq!(cert_path, dir.join("cert.pem"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key_path)
                .expect("meta")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{name}: key.pem must be owner-only");
        }
        let key = SigningKey::from_files(&key_path, Some(&cert_path), None, None, crypto)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let signed = sign_document(DOC, "SIGNED_BY_CONSUMER", &key).expect("sign");
        assert!(
            signed.contains("<ns1:CallerInformationSystemSignature><ds:Signature"),
            "{name}: the signature goes into the holder"
        );
        let trust = TrustStore::from_files(&[&cert_path], crypto).expect("trust");
        let reports = verify_document(&signed, Some(&trust), crypto).expect("verify");
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert!(r.is_valid(), "{name}: {r}");
        let text = r.to_string();
        assert!(
            text.contains("SenderProvidedRequestData Id=\"SIGNED_BY_CONSUMER\""),
            "{text}"
        );
        assert!(text.contains("smev-adapter development key"), "{text}");
        assert!(text.contains(key.algorithm().uri()), "{text}");
        assert!(text.ends_with("OK"), "{text}");

        // Tampered: the report says exactly why, with the SMEV fault.
        let reports = verify_document(&signed.replace("Иванов", "Петров"), Some(&trust), crypto)
            .expect("verify");
        assert!(!reports[0].is_valid());
        let text = reports[0].to_string();
        assert!(
            text.contains("FAILED: digest of the referenced data does not match DigestValue (SignatureIsInvalid)"),
            "{text}"
        );
    }
}

#[test]
fn without_a_holder_the_signature_is_enveloped_and_untrusted_reports_say_so() {
    let crypto = Crypto::load();
    let tmp = tempfile::tempdir().expect("tmp");
    let (k, c) = generate_dev_keys(DevKeyAlg::Ecdsa, tmp.path(), &crypto).expect("keys");
    let key = SigningKey::from_files(&k, Some(&c), None, None, crypto).expect("key");
    let doc = DOC.replace("<ns1:CallerInformationSystemSignature/>", "");
    let signed = sign_document(&doc, "SIGNED_BY_CONSUMER", &key).expect("sign");
    assert!(signed.contains("</ds:Signature></ns1:SenderProvidedRequestData>"));
    assert!(signed.contains("xmldsig#enveloped-signature"));
    let reports = verify_document(&signed, None, crypto).expect("verify");
    assert!(reports[0].is_valid());
    assert!(
        reports[0]
            .to_string()
            .contains("not checked against a trust anchor")
    );
    // Another self-signed certificate as the anchor: refused.
    let other = tempfile::tempdir().expect("tmp");
    let (_, other_cert) = generate_dev_keys(DevKeyAlg::Ecdsa, other.path(), &crypto).expect("keys");
    let trust = TrustStore::from_files(&[&other_cert], crypto).expect("trust");
    let reports = verify_document(&signed, Some(&trust), crypto).expect("verify");
    assert!(!reports[0].is_valid());
    assert!(
        reports[0].to_string().contains("(CertificateIsNotFound)"),
        "{}",
        reports[0]
    );
    // No signature at all: no reports.
    assert!(
        verify_document(DOC, None, crypto)
            .expect("verify")
            .is_empty()
    );
}

#[test]
fn gost_keys_cannot_be_generated_without_the_engine() {
    let tmp = tempfile::tempdir().expect("tmp");
    let err = generate_dev_keys(DevKeyAlg::Gost2012_256, tmp.path(), &Crypto::without_gost())
        .expect_err("no engine");
    assert_eq!(
        err.to_string(),
        "GOST not available: install libengine-gost-openssl"
    );
}
