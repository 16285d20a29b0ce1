//! Trust on the wire: every signature fault by its SMEV reason, sender identity, exchange agreements,
//! the node's own signatures verifying, private key permissions, and `pki init`.

mod common;

use common::*;
use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::x509::{X509, X509NameBuilder};

/// A test node whose [trust] table starts with `line` (e.g. `pollers = ["AGENCY_C"]`).
async fn node_with_trust(line: &str) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), "").replace("[trust]\n", &format!("[trust]\n{line}\n"));
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, &text).expect("write");
    TestNode::start_with_config(dir, &path).await
}

fn signature_reason(answer: &Answer) -> String {
    let doc = answer.doc();
    let outer = doc
        .descendants()
        .find(|n| n.has_tag_name((FAULTS_13, "SignatureVerificationFault")));
    outer
        .and_then(|o| {
            o.children()
                .find(|n| n.has_tag_name((FAULTS_13, "SignatureVerificationFault")))
        })
        .and_then(|n| n.text())
        .unwrap_or_else(|| panic!("no SignatureVerificationFault in {}", answer.body))
        .to_string()
}

#[tokio::test]
async fn unsigned_tampered_and_foreign_signatures_get_their_smev_reason() {
    let node = TestNode::start().await;
    let unsigned = post_soap(
        node.addr,
        unsigned_registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(
        (unsigned.status, signature_reason(&unsigned).as_str()),
        (500, "NoSignatureFound")
    );

    let tampered = registration_request("1.3", &new_message_id(), "4510", "123456")
        .replace(">123456<", ">654321<");
    let answer = post_soap(node.addr, tampered).await;
    assert_eq!(
        signature_reason(&answer),
        "SignatureIsInvalid",
        "{}",
        answer.body
    );

    // Signed by a key from a CA this node does not trust.
    let dir = tempfile::tempdir().expect("tempdir");
    let foreign = smev_adapter::trust::pki_init(dir.path(), "X", &["STRANGER"]).expect("pki");
    let (_, key, cert) = &foreign.parties[1];
    let crypto = smev_adapter::dsig::Crypto::load();
    let stranger = smev_adapter::dsig::SigningKey::from_files(key, Some(cert), None, None, crypto)
        .expect("key");
    let unsigned = unsigned_registration_request("1.3", &new_message_id(), "4510", "123456");
    let limits = smev_adapter::config::XmlLimits::default();
    let signed = smev_adapter::dsig::sign_message(
        &unsigned,
        &limits,
        "SIGNED_BY_CONSUMER",
        (TYPES_13, "CallerInformationSystemSignature"),
        &stranger,
    )
    .expect("sign");
    let answer = post_soap(node.addr, signed).await;
    assert_eq!(
        signature_reason(&answer),
        "CertificateIsNotFound",
        "{}",
        answer.body
    );

    let metrics = send(node.addr, "GET", "/metrics", None, Vec::new())
        .await
        .body;
    for reason in [
        "NoSignatureFound",
        "SignatureIsInvalid",
        "CertificateIsNotFound",
    ] {
        assert!(
            metrics.contains(&format!(
                "smev_signature_failures_total{{reason=\"{reason}\"}} 1"
            )),
            "{reason}: {metrics}"
        );
    }
}

#[tokio::test]
async fn a_signature_over_another_element_is_an_incorrect_target() {
    let node = TestNode::start().await;
    // The payload element gets an Id and the signature covers it, not SenderProvidedRequestData.
    let unsigned = unsigned_registration_request("1.3", &new_message_id(), "4510", "123456")
        .replace(
            "<r:RegistrationRequest ",
            "<r:RegistrationRequest Id=\"PAYLOAD\" ",
        );
    let signed = sign_as("AGENCY_B", &unsigned, "PAYLOAD");
    let answer = post_soap(node.addr, signed).await;
    assert_eq!(
        signature_reason(&answer),
        "IncorrectSignatureTarget",
        "{}",
        answer.body
    );
}

/// AGENCY_B's signing key with a certificate from the test CA valid between the two Unix times.
fn agency_b_valid_between(not_before: i64, not_after: i64) -> smev_adapter::dsig::SigningKey {
    let pki = test_pki();
    let ca_dir = pki.ca.parent().expect("pki dir");
    let ca = X509::from_pem(&std::fs::read(&pki.ca).expect("ca")).expect("ca cert");
    let ca_key = PKey::private_key_from_pem(&std::fs::read(ca_dir.join("ca.key")).expect("ca key"))
        .expect("ca key");
    let key = PKey::from_ec_key(
        openssl::ec::EcKey::generate(
            &openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1)
                .expect("group"),
        )
        .expect("ec"),
    )
    .expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, "AGENCY_B")
        .expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(ca.subject_name()).expect("issuer");
    b.set_not_before(&Asn1Time::from_unix(not_before).expect("t"))
        .expect("nb");
    b.set_not_after(&Asn1Time::from_unix(not_after).expect("t"))
        .expect("na");
    b.set_pubkey(&key).expect("pub");
    b.sign(&ca_key, MessageDigest::sha256()).expect("sign cert");
    let cert = b.build();
    let crypto = smev_adapter::dsig::Crypto::load();
    let alg = smev_adapter::dsig::SignatureAlg::default_for(&key).expect("alg");
    smev_adapter::dsig::SigningKey::new(key, &cert, alg, crypto).expect("signing key")
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

/// A registration request signed with `signer` (any key, any certificate).
fn request_signed_with(signer: &smev_adapter::dsig::SigningKey) -> String {
    let unsigned = unsigned_registration_request("1.3", &new_message_id(), "4510", "123456");
    smev_adapter::dsig::sign_message(
        &unsigned,
        &smev_adapter::config::XmlLimits::default(),
        "SIGNED_BY_CONSUMER",
        (TYPES_13, "CallerInformationSystemSignature"),
        signer,
    )
    .expect("sign")
}

#[tokio::test]
async fn expired_and_not_yet_valid_certificates_are_refused_as_expired() {
    let node = TestNode::start().await;
    let now = unix_now();
    for (what, signer) in [
        (
            "expired",
            agency_b_valid_between(now - 30 * 86_400, now - 86_400),
        ),
        (
            "not yet valid",
            agency_b_valid_between(now + 86_400, now + 30 * 86_400),
        ),
    ] {
        let answer = post_soap(node.addr, request_signed_with(&signer)).await;
        assert_eq!(
            signature_reason(&answer),
            "CertificateIsExpired",
            "{what}: {}",
            answer.body
        );
    }
    assert!(
        node.node
            .store
            .list(None, false, 10)
            .expect("list")
            .is_empty(),
        "nothing was stored"
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_with_the_reason_and_others_still_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki_dir = dir.path().join("pki");
    let pki = smev_adapter::trust::pki_init(&pki_dir, "TEST_NODE", &["AGENCY_B", "AGENCY_C"])
        .expect("pki");
    let crl = smev_adapter::revocation::pki_revoke(&pki_dir, &["AGENCY_C"]).expect("revoke");
    // Trust only this PKI's CA, with its CRL.
    let text = config_text(dir.path(), "")
        .lines()
        .map(|line| {
            if line.starts_with("ca = ") {
                format!(
                    "ca = [\"{}\"]\ncrl = [\"{}\"]",
                    pki.ca.display(),
                    crl.display()
                )
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, &text).expect("write");
    let node = TestNode::start_with_config(dir, &path).await;
    let key = |name: &str| {
        let (_, key, cert) = pki
            .parties
            .iter()
            .find(|p| p.0 == name)
            .expect("party")
            .clone();
        smev_adapter::dsig::SigningKey::from_files(
            &key,
            Some(&cert),
            None,
            None,
            smev_adapter::dsig::Crypto::load(),
        )
        .expect("key")
    };
    let revoked = post_soap(node.addr, request_signed_with(&key("AGENCY_C"))).await;
    assert_eq!(revoked.status, 500, "{}", revoked.body);
    assert_eq!(
        signature_reason(&revoked),
        "CertificateIsExpired",
        "{}",
        revoked.body
    );
    assert!(
        revoked.body.contains("revoked since") && revoked.body.contains("ca.crl"),
        "the fault says why: {}",
        revoked.body
    );
    let fine = post_soap(node.addr, request_signed_with(&key("AGENCY_B"))).await;
    assert_eq!(fine.status, 200, "{}", fine.body);
    assert_eq!(
        node.node.store.list(None, false, 10).expect("list").len(),
        1,
        "only the unrevoked sender's request is stored"
    );
}

#[test]
fn a_crl_not_issued_by_a_trusted_ca_stops_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let other = dir.path().join("other");
    smev_adapter::trust::pki_init(&other, "X", &["Y"]).expect("other pki");
    let crl = smev_adapter::revocation::pki_revoke(&other, &["Y"]).expect("revoke");
    let text = config_text(dir.path(), "").replace(
        "[trust]\n",
        &format!("[trust]\ncrl = [\"{}\"]\n", crl.display()),
    );
    let path = dir.path().join("adapter.toml");
    let config = smev_adapter::config::Config::parse(&path, &text, &|_| None).expect("config");
    let err = match smev_adapter::node::Node::start(config) {
        Ok(_) => panic!("a foreign CRL must stop the node"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("not signed by any certificate in trust.ca"),
        "{err}"
    );
}

#[tokio::test]
async fn a_signer_that_maps_to_no_sender_is_not_registered() {
    // With sender_from = fingerprint and an empty map, nobody is a registered sender.
    let node = node_with_trust("sender_from = \"fingerprint\"").await;
    let answer = post_soap(
        node.addr,
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(answer.status, 500);
    assert!(
        fault_names(&answer).contains(&"SenderIsNotRegistered".to_string()),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("is not in trust.senders"),
        "{}",
        answer.body
    );
}

fn fault_names(answer: &Answer) -> Vec<String> {
    let doc = answer.doc();
    doc.descendants()
        .filter(|n| n.tag_name().name() == "detail")
        .flat_map(|d| {
            d.children()
                .filter(|c| c.is_element())
                .map(|c| c.tag_name().name().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn a_sender_without_an_exchange_agreement_gets_access_denied() {
    let node = TestNode::start().await;
    // family.toml allows AGENCY_B but not AGENCY_C.
    let family = std::fs::read_to_string(repo().join("samples/templates/family.xml"))
        .expect("family template");
    let id = new_message_id();
    let unsigned = family.replacen(
        &family[family.find("<ns:MessageID>").expect("id") + 14
            ..family.find("</ns:MessageID>").expect("id end")],
        &id,
        1,
    );
    let as_c = post_soap(
        node.addr,
        sign_as("AGENCY_C", &unsigned, "SIGNED_BY_CONSUMER"),
    )
    .await;
    assert_eq!(as_c.status, 200);
    assert_eq!(
        text_of(&as_c.doc(), TYPES_13, "RejectionReasonCode"),
        Some("ACCESS_DENIED"),
        "{}",
        as_c.body
    );
    let detail = node.node.store.show(&id).expect("read").expect("stored");
    assert_eq!(detail.summary.sender, "AGENCY_C");
    assert_eq!(detail.summary.status, "REJECTED");
    assert!(
        detail.history[0]
            .2
            .as_deref()
            .unwrap_or("")
            .starts_with("from AGENCY_C (AGENCY_C), signature verified"),
        "{:?}",
        detail.history
    );

    let as_b = post_soap(
        node.addr,
        sign_as(
            "AGENCY_B",
            &unsigned.replace(&id, &new_message_id()),
            "SIGNED_BY_CONSUMER",
        ),
    )
    .await;
    assert!(
        text_of(&as_b.doc(), TYPES_13, "RejectionReasonCode") != Some("ACCESS_DENIED"),
        "{}",
        as_b.body
    );
}

/// Verifies `element`'s signature in `holder` (both found by local name) against the node's dev certificate.
fn assert_signed_by_node(node: &TestNode, body: &str, element: &str, holder: &str) {
    let cert = node.dir.path().join("data/dev-keys/node.crt");
    let store =
        smev_adapter::dsig::TrustStore::from_files(&[cert], smev_adapter::dsig::Crypto::load())
            .expect("store");
    let limits = smev_adapter::config::XmlLimits::default();
    let doc = smev_adapter::xml::parse(body, &limits).expect("answer parses");
    let data = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, element)))
        .unwrap_or_else(|| panic!("no {element} in {body}"));
    let holder = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, holder)))
        .unwrap_or_else(|| panic!("no {holder} in {body}"));
    let verified = smev_adapter::dsig::verify_message(&doc, data, holder, &store)
        .unwrap_or_else(|e| panic!("{element} is not validly signed ({e}): {body}"));
    assert_eq!(verified.element.node(), data);
}

#[tokio::test]
async fn the_nodes_answers_rejections_and_acknowledgements_carry_signatures_that_verify() {
    let node = TestNode::start().await;
    let answer = post_soap(
        node.addr,
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(text_of(&answer.doc(), REG_NS, "LastName"), Some("Иванов"));
    assert_signed_by_node(
        &node,
        &answer.body,
        "SenderProvidedResponseData",
        "CallerInformationSystemSignature",
    );
    // A refusal in business terms (RequestRejected) is an answer like any other: signed.
    let no_data = post_soap(
        node.addr,
        registration_request("1.3", &new_message_id(), "0000", "000000"),
    )
    .await;
    assert_eq!(
        text_of(&no_data.doc(), TYPES_13, "RejectionReasonCode"),
        Some("NO_DATA"),
        "{}",
        no_data.body
    );
    assert_signed_by_node(
        &node,
        &no_data.body,
        "SenderProvidedResponseData",
        "CallerInformationSystemSignature",
    );

    let async_node = TestNode::start_with("reply = \"async\"", "", "").await;
    let ack = post_soap(
        async_node.addr,
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert!(ack.body.contains("SendRequestResponse"), "{}", ack.body);
    assert_signed_by_node(&async_node, &ack.body, "MessageMetadata", "SMEVSignature");
}

#[tokio::test]
async fn a_private_key_readable_by_others_stops_the_node_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, key, cert) = test_pki().parties[1].clone();
    let key_copy = dir.path().join("node.key");
    std::fs::copy(&key, &key_copy).expect("copy key");
    std::fs::set_permissions(&key_copy, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = format!(
        "{}\n[keys]\nprivate_key = \"{}\"\ncertificate = \"{}\"\n",
        config_text(dir.path(), ""),
        key_copy.display(),
        cert.display()
    );
    let path = dir.path().join("adapter.toml");
    let config = smev_adapter::config::Config::parse(&path, &text, &|_| None).expect("config");
    let err = match smev_adapter::node::Node::start(config) {
        Ok(_) => panic!("a world-readable key must stop the node"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("readable by group or others (mode 644)") && err.contains("chmod 600"),
        "{err}"
    );
}

#[test]
fn pki_init_writes_a_ca_and_owner_only_keys_for_each_party() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .args(["pki", "init"])
        .arg(dir.path())
        .args(["--node", "NODE_A", "--agencies", "B1,C1"])
        .output()
        .expect("run pki init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in ["ca.crt", "node_a.crt", "b1.crt", "c1.crt"] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    for key in ["ca.key", "node_a.key", "b1.key", "c1.key"] {
        let mode = std::fs::metadata(dir.path().join(key))
            .expect(key)
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{key}");
    }
    let ca = X509::from_pem(&std::fs::read(dir.path().join("ca.crt")).expect("ca")).expect("ca");
    let b1 = X509::from_pem(&std::fs::read(dir.path().join("b1.crt")).expect("b1")).expect("b1");
    assert!(
        b1.verify(&ca.public_key().expect("ca key"))
            .expect("verify"),
        "b1 is issued by the CA"
    );
}

/// Sends `body` and returns the SMEV fault name in its detail (the signature reason for signature faults).
async fn refusal(node: &TestNode, body: String) -> String {
    let answer = post_soap(node.addr, body).await;
    assert_eq!(answer.status, 500, "refused: {}", answer.body);
    let names = fault_names(&answer);
    if names.iter().any(|n| n == "SignatureVerificationFault") {
        signature_reason(&answer)
    } else {
        names.join(",")
    }
}

#[tokio::test]
async fn signature_wrapping_attempts_are_refused_and_nothing_is_stored() {
    let node = TestNode::start().await;
    let id = new_message_id();
    let signed = registration_request("1.3", &id, "4510", "123456");
    let data_start = signed.find("<ns:SenderProvidedRequestData").expect("data");
    let data_end = signed
        .find("</ns:SenderProvidedRequestData>")
        .expect("data end")
        + "</ns:SenderProvidedRequestData>".len();
    let original = &signed[data_start..data_end];
    let forged = original
        .replace(">4510<", ">4012<")
        .replace(">123456<", ">654321<")
        .replace(" Id=\"SIGNED_BY_CONSUMER\"", "");
    let header = |inner: &str| {
        signed.replacen(
            "<soap:Body>",
            &format!("<soap:Header>{inner}</soap:Header><soap:Body>"),
            1,
        )
    };
    let attempts: Vec<(&str, String, &str)> = vec![
        (
            "a duplicate Id elsewhere in the document",
            header("<x:Evil xmlns:x=\"urn:x\" Id=\"SIGNED_BY_CONSUMER\"/>"),
            "IncorrectSignatureTarget",
        ),
        (
            "the signed element moved into the header, a forged one in its place",
            {
                let moved = signed.replacen(original, &forged, 1);
                let wrapper = format!("<x:W xmlns:x=\"urn:x\" xmlns:ns=\"{TYPES_13}\" xmlns:basic=\"urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3\">");
                moved.replacen("<soap:Body>", &format!("<soap:Header>{wrapper}{original}</x:W></soap:Header><soap:Body>"), 1)
            },
            "IncorrectSignatureTarget",
        ),
        (
            "a second SenderProvidedRequestData",
            signed.replacen(original, &format!("{original}{forged}"), 1),
            "PoorSOAPEnvelopeFormat",
        ),
        (
            "the signature covering a sibling",
            sign_as(
                "AGENCY_B",
                &unsigned_registration_request("1.3", &id, "4510", "123456").replace(
                    "<ns:CallerInformationSystemSignature/>",
                    "<ns:BusinessProcessMetadata Id=\"SIBLING\"/><ns:CallerInformationSystemSignature/>",
                ),
                "SIBLING",
            ),
            "IncorrectSignatureTarget",
        ),
        ("a comment injected inside a signed value", signed.replace(">4510<", ">45<!---->10<"), "SignatureIsInvalid"),
        ("whitespace injected inside signed content", signed.replace("<r:Series>", "<r:Series> "), "SignatureIsInvalid"),
        (
            "a namespace redeclared to another URI inside the signed element",
            signed.replace("xmlns:r=\"urn://example.gov/registration/1.0\"", "xmlns:r=\"urn://example.gov/registration/9.9\""),
            "SignatureIsInvalid",
        ),
        (
            "a second Signature in the holder",
            {
                let sig_start = signed.find("<ds:Signature").expect("sig");
                let sig_end = signed.find("</ds:Signature>").expect("sig end") + "</ds:Signature>".len();
                let sig = &signed[sig_start..sig_end];
                signed.replacen(sig, &format!("{sig}{sig}"), 1)
            },
            "PoorSOAPEnvelopeFormat",
        ),
        (
            "Reference URI=\"\" (the whole document) instead of the element",
            signed.replace("URI=\"#SIGNED_BY_CONSUMER\"", "URI=\"\""),
            "IncorrectSignatureTarget",
        ),
    ];
    for (what, body, expected) in attempts {
        assert_eq!(refusal(&node, body).await, expected, "{what}");
    }
    assert!(
        node.node
            .store
            .list(None, false, 10)
            .expect("list")
            .is_empty(),
        "nothing was stored as accepted"
    );
    // The untouched request is still accepted.
    assert_eq!(post_soap(node.addr, signed).await.status, 200);
}

#[tokio::test]
async fn a_request_signed_by_xmlsec1_is_accepted_end_to_end() {
    let node = TestNode::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, key, cert) = test_pki()
        .parties
        .iter()
        .find(|p| p.0 == "AGENCY_B")
        .expect("AGENCY_B")
        .clone();
    let id = new_message_id();
    let template = unsigned_registration_request("1.3", &id, "4510", "123456").replace(
        "<ns:CallerInformationSystemSignature/>",
        "<ns:CallerInformationSystemSignature><ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo><ds:CanonicalizationMethod Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/><ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256\"/><ds:Reference URI=\"#SIGNED_BY_CONSUMER\"><ds:Transforms><ds:Transform Algorithm=\"http://www.w3.org/2001/10/xml-exc-c14n#\"/></ds:Transforms><ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/></ds:Reference></ds:SignedInfo><ds:SignatureValue/><ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature></ns:CallerInformationSystemSignature>",
    );
    let path = dir.path().join("template.xml");
    std::fs::write(&path, template).expect("write");
    let out = std::process::Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(format!("{},{}", key.display(), cert.display()))
        .arg("--id-attr:Id")
        .arg(format!("{TYPES_13}:SenderProvidedRequestData"))
        .arg(&path)
        .output()
        .expect("xmlsec1 is required (apt-get install -y xmlsec1)");
    assert!(
        out.status.success(),
        "xmlsec1 --sign: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer = post_soap(node.addr, out.stdout).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(text_of(&answer.doc(), REG_NS, "LastName"), Some("Иванов"));
}

#[tokio::test]
async fn polls_are_verified_and_only_configured_pollers_may_take_answers() {
    let node = node_with_trust("pollers = [\"AGENCY_C\"]").await;

    let unsigned = post_soap(node.addr, unsigned_get_response_request()).await;
    assert_eq!(signature_reason(&unsigned), "NoSignatureFound");
    assert!(
        unsigned.body.contains("trust.unsigned_polling"),
        "the fault names the setting: {}",
        unsigned.body
    );
    let tampered = get_response_request("AGENCY_C").replace("<b:Timestamp>2", "<b:Timestamp>1");
    assert_eq!(
        signature_reason(&post_soap(node.addr, tampered).await),
        "SignatureIsInvalid"
    );
    let outsider = post_soap(node.addr, get_response_request("AGENCY_B")).await;
    assert_eq!(outsider.status, 500);
    assert_eq!(
        fault_names(&outsider),
        ["AccessDenied"],
        "{}",
        outsider.body
    );
    let status = post_soap(node.addr, get_status_request("AGENCY_B", &new_message_id())).await;
    assert_eq!(fault_names(&status), ["AccessDenied"], "{}", status.body);
    let ack = post_soap(node.addr, ack_request("AGENCY_B", &new_message_id())).await;
    assert_eq!(fault_names(&ack), ["AccessDenied"], "{}", ack.body);

    let poller = post_soap(node.addr, get_response_request("AGENCY_C")).await;
    assert_eq!(poller.status, 200, "{}", poller.body);
    assert!(
        poller.body.contains("GetResponseResponse"),
        "{}",
        poller.body
    );
}

#[tokio::test]
async fn a_signed_poll_works_once_and_only_while_fresh() {
    let node = node_with_trust("poll_max_age = \"2m\"").await;
    let poll = get_response_request("AGENCY_B");
    let first = post_soap(node.addr, poll.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let replay = post_soap(node.addr, poll).await;
    assert_eq!(fault_names(&replay), ["InvalidContent"], "{}", replay.body);
    assert!(replay.body.contains("already answered"), "{}", replay.body);

    let old = smev_adapter::storage::rfc3339(smev_adapter::storage::now_millis() - 3 * 60_000);
    let stale = post_soap(node.addr, get_response_request_at("AGENCY_B", &old)).await;
    assert_eq!(fault_names(&stale), ["InvalidContent"], "{}", stale.body);
    assert!(stale.body.contains("trust.poll_max_age"), "{}", stale.body);

    // A new poll (a new signature) still passes.
    let next = post_soap(node.addr, get_response_request("AGENCY_B")).await;
    assert_eq!(next.status, 200, "{}", next.body);
}

#[tokio::test]
async fn poll_max_age_zero_turns_the_replay_check_off() {
    let node = node_with_trust("poll_max_age = \"0s\"").await;
    let poll = get_response_request_at("AGENCY_B", "2001-01-01T00:00:00Z");
    for _ in 0..2 {
        let answer = post_soap(node.addr, poll.clone()).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

#[tokio::test]
async fn unsigned_polls_pass_only_when_the_config_allows_them() {
    let node = node_with_trust("unsigned_polling = true").await;
    let unsigned = post_soap(node.addr, unsigned_get_response_request()).await;
    assert_eq!(unsigned.status, 200, "{}", unsigned.body);
    // A signature that is there is still checked.
    let tampered = get_response_request("AGENCY_B").replace("<b:Timestamp>2", "<b:Timestamp>1");
    assert_eq!(
        signature_reason(&post_soap(node.addr, tampered).await),
        "SignatureIsInvalid"
    );
}

/// A registration request whose business element carries a PersonalSignature by `personal`,
/// the whole signed by AGENCY_B. With `tamper`, the personal signature's content is changed afterwards
/// (before the caller's signature, so only the personal one breaks).
fn request_with_personal_signature(message_id: &str, personal: &str, tamper: bool) -> String {
    let unsigned = unsigned_registration_request("1.3", message_id, "4510", "123456")
        .replace(
            "<r:RegistrationRequest xmlns:r=",
            "<r:RegistrationRequest Id=\"PERSONAL\" xmlns:r=",
        )
        .replace(
            "</basic:MessagePrimaryContent>",
            "</basic:MessagePrimaryContent><ns:PersonalSignature/>",
        );
    let limits = smev_adapter::config::XmlLimits::default();
    let mut personally_signed = smev_adapter::dsig::sign_message(
        &unsigned,
        &limits,
        "PERSONAL",
        (TYPES_13, "PersonalSignature"),
        test_key(personal),
    )
    .expect("personal signature");
    if tamper {
        personally_signed = personally_signed.replace("<r:Number>123456<", "<r:Number>123457<");
    }
    sign_as("AGENCY_B", &personally_signed, "SIGNED_BY_CONSUMER")
}

#[tokio::test]
async fn a_personal_signature_is_verified_and_its_result_recorded() {
    let node = TestNode::start().await;
    for (tamper, expected) in [
        (false, "; personal signature valid"),
        (true, "; personal signature INVALID"),
    ] {
        let id = new_message_id();
        let answer = post_soap(
            node.addr,
            request_with_personal_signature(&id, "AGENCY_C", tamper),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let detail = node.node.store.show(&id).expect("read").expect("stored");
        let received = detail.history[0].2.as_deref().unwrap_or("");
        assert!(
            received.starts_with("from AGENCY_B (AGENCY_B), signature verified")
                && received.contains(expected),
            "tamper={tamper}: {received}"
        );
    }
}

/// The SignatureMethod URI in the node's answer.
fn answer_signature_method(body: &str) -> String {
    let doc = roxmltree::Document::parse(body).expect("answer parses");
    doc.descendants()
        .find(|n| n.tag_name().name() == "SignatureMethod")
        .and_then(|n| n.attribute("Algorithm"))
        .unwrap_or_else(|| panic!("no SignatureMethod in {body}"))
        .to_string()
}

#[tokio::test]
async fn development_keys_sign_with_gost_2012_256_when_the_engine_loads_and_keys_algorithm_overrides()
 {
    let node = TestNode::start().await;
    let answer = post_soap(
        node.addr,
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    let expected = if smev_adapter::dsig::Crypto::load().gost_available() {
        "urn:ietf:params:xml:ns:cpxmlsec:algorithms:gostr34102012-gostr34112012-256"
    } else {
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    };
    assert_eq!(answer_signature_method(&answer.body), expected);

    // Same data_dir, the algorithm set explicitly: the development key is replaced to fit it.
    let dir = tempfile::tempdir().expect("tempdir");
    for (alg, uri) in [
        (
            "rsa-pss-sha256",
            "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1",
        ),
        (
            "ecdsa-sha256",
            "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256",
        ),
    ] {
        let text = format!(
            "{}\n[keys]\nalgorithm = \"{alg}\"\n",
            config_text(dir.path(), "")
        );
        let path = dir.path().join("adapter.toml");
        std::fs::write(&path, &text).expect("write");
        let config = smev_adapter::config::Config::parse(&path, &text, &|_| None).expect("config");
        let trust = smev_adapter::trust::Trust::load(&config).expect("trust");
        assert_eq!(trust.key.algorithm().uri(), uri, "{alg}");
    }
}

#[test]
fn a_configured_key_that_does_not_fit_keys_algorithm_stops_the_node_and_a_bad_name_is_located() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, key, cert) = test_pki().parties[1].clone();
    let text = format!(
        "{}\n[keys]\nprivate_key = \"{}\"\ncertificate = \"{}\"\nalgorithm = \"rsa-sha256\"\n",
        config_text(dir.path(), ""),
        key.display(),
        cert.display()
    );
    let path = dir.path().join("adapter.toml");
    let config = smev_adapter::config::Config::parse(&path, &text, &|_| None).expect("config");
    let err = match smev_adapter::trust::Trust::load(&config) {
        Ok(_) => panic!("an EC key cannot sign RSA-SHA256"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("key does not fit"), "{err}");

    let bad = format!(
        "{}\n[keys]\nalgorithm = \"dsa\"\n",
        config_text(dir.path(), "")
    );
    let err = smev_adapter::config::Config::parse(&path, &bad, &|_| None)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keys.algorithm `dsa` must be gost2012-256"),
        "{err}"
    );
}
