//! Typed parsing of every SMEV envelope the node accepts, in types 1.1, 1.2 and 1.3,
//! and the structural errors that become PoorSOAPEnvelopeFormat / InvalidMessageIdFormat faults.

use smev_adapter::soap::envelope::{self, EnvelopeError, Operation, ResponseContent};
use smev_adapter::soap::{DS_NS, Version};

const ID: &str = "e3867df0-effb-11f1-a485-076090a46bf4";
const ID2: &str = "f1a2b3c4-effb-11f1-8485-076090a46bf4";

fn wrap(version: Version, body: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/><soap:Body>{}</soap:Body></soap:Envelope>"#,
        body.replace("TYPES", version.types_ns())
            .replace("BASIC", version.basic_ns())
    )
}

fn parse_with<T>(
    text: &str,
    check: impl FnOnce(Result<envelope::Envelope<'_, '_>, EnvelopeError>) -> T,
) -> T {
    let doc = roxmltree::Document::parse(text).expect("well-formed test input");
    check(envelope::parse(&doc))
}

const SEND_REQUEST: &str = r#"<ns:SendRequestRequest xmlns:ns="TYPES" xmlns:b="BASIC" xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
<ns:SenderProvidedRequestData Id="REQ">
  <ns:MessageID>ID1</ns:MessageID><ns:ReferenceMessageID>ID2</ns:ReferenceMessageID>
  <ns:TransactionCode>T-1</ns:TransactionCode><ns:NodeID>node-7</ns:NodeID><ns:EOL>2030-01-01T00:00:00Z</ns:EOL>
  <b:MessagePrimaryContent><x:Q xmlns:x="urn:x"><x:A>1</x:A></x:Q></b:MessagePrimaryContent>
  <ns:PersonalSignature><ds:Signature/></ns:PersonalSignature>
  <b:AttachmentHeaderList><b:AttachmentHeader><b:contentId>a1</b:contentId><b:MimeType>text/plain</b:MimeType></b:AttachmentHeader></b:AttachmentHeaderList>
  <ns:BusinessProcessMetadata/><ns:TestMessage/>
</ns:SenderProvidedRequestData>
<b:AttachmentContentList><b:AttachmentContent><b:Id>a1</b:Id><b:Content>aGk=</b:Content></b:AttachmentContent></b:AttachmentContentList>
<ns:CallerInformationSystemSignature><ds:Signature Id="sig"/></ns:CallerInformationSystemSignature>
</ns:SendRequestRequest>"#;

#[test]
fn send_request_is_parsed_with_every_part_in_each_version() {
    for version in Version::ALL {
        let text = wrap(
            version,
            &SEND_REQUEST.replace("ID1", ID).replace("ID2", ID2),
        );
        parse_with(&text, |env| {
            let env = env.expect("parses");
            assert_eq!(env.version, version);
            let Operation::SendRequest(r) = env.operation else {
                panic!("SendRequest expected")
            };
            assert_eq!(r.id, Some("REQ"));
            assert_eq!(r.message_id.as_str(), ID);
            assert_eq!(
                r.reference_message_id.as_ref().map(|m| m.as_str()),
                Some(ID2)
            );
            assert_eq!(
                (r.transaction_code, r.node_id, r.eol),
                (Some("T-1"), Some("node-7"), Some("2030-01-01T00:00:00Z"))
            );
            assert!(r.content.has_tag_name(("urn:x", "Q")));
            assert!(
                r.personal_signature
                    .is_some_and(|s| s.has_tag_name((DS_NS, "Signature")))
            );
            assert!(
                r.attachment_headers.is_some()
                    && r.attachment_content.is_some()
                    && r.business_process_metadata.is_some()
            );
            assert!(r.test_message);
            assert_eq!(
                r.caller_signature.and_then(|s| s.attribute("Id")),
                Some("sig")
            );
        });
    }
}

#[test]
fn send_response_carries_each_kind_of_answer() {
    let cases = [
        (
            "<b:MessagePrimaryContent><x:R xmlns:x=\"urn:x\"/></b:MessagePrimaryContent>",
            "primary",
        ),
        (
            "<ns:RequestRejected><ns:RejectionReasonCode>ACCESS_DENIED</ns:RejectionReasonCode><ns:RejectionReasonDescription>no</ns:RejectionReasonDescription></ns:RequestRejected><ns:RequestRejected><ns:RejectionReasonCode>SOMETHING_NEW</ns:RejectionReasonCode></ns:RequestRejected>",
            "rejected",
        ),
        (
            "<ns:RequestStatus><ns:StatusCode>3</ns:StatusCode><ns:StatusDescription>in work</ns:StatusDescription></ns:RequestStatus>",
            "status",
        ),
        (
            "<ns:AsyncProcessingStatus><ns:OriginalMessageId>ORIG</ns:OriginalMessageId><ns:StatusCategory>responseIsDelivered</ns:StatusCategory></ns:AsyncProcessingStatus>",
            "async",
        ),
    ];
    for version in Version::ALL {
        for (content, kind) in cases {
            let body = format!(
                r#"<ns:SendResponseRequest xmlns:ns="TYPES" xmlns:b="BASIC"><ns:SenderProvidedResponseData Id="RESP"><ns:MessageID>{ID}</ns:MessageID><ns:To>reply-token</ns:To>{content}</ns:SenderProvidedResponseData><ns:CallerInformationSystemSignature/></ns:SendResponseRequest>"#
            );
            parse_with(&wrap(version, &body), |env| {
                let env = env.unwrap_or_else(|e| panic!("{kind} in {version:?}: {e}"));
                let Operation::SendResponse(r) = env.operation else {
                    panic!("SendResponse expected")
                };
                assert_eq!(
                    (r.id, r.to, r.message_id.as_str()),
                    (Some("RESP"), "reply-token", ID)
                );
                match (kind, r.content) {
                    ("primary", ResponseContent::Primary(n)) => {
                        assert!(n.has_tag_name(("urn:x", "R")))
                    }
                    ("rejected", ResponseContent::Rejected(list)) => {
                        let codes: Vec<&str> = list.iter().map(|r| r.code).collect();
                        assert_eq!(
                            codes,
                            vec!["ACCESS_DENIED", "SOMETHING_NEW"],
                            "unknown codes are kept, not refused"
                        );
                    }
                    ("status", ResponseContent::Status { code, description }) => {
                        assert_eq!((code, description), ("3", "in work"))
                    }
                    (
                        "async",
                        ResponseContent::AsyncStatus {
                            original_message_id,
                            category,
                            ..
                        },
                    ) => {
                        assert_eq!(
                            (original_message_id, category),
                            ("ORIG", "responseIsDelivered"),
                            "lenient status values"
                        )
                    }
                    (k, other) => panic!("{k}: got {other:?}"),
                }
            });
        }
    }
}

#[test]
fn get_status_get_response_and_ack_are_parsed() {
    for version in Version::ALL {
        let status = format!(
            r#"<ns:GetStatusRequest xmlns:ns="TYPES" xmlns:b="BASIC"><b:MessageReference>{ID}</b:MessageReference></ns:GetStatusRequest>"#
        );
        parse_with(&wrap(version, &status), |env| {
            let Operation::GetStatus(s) = env.expect("GetStatus").operation else {
                panic!("GetStatus expected")
            };
            assert_eq!(
                s.message_id.map(|m| m.as_str().to_string()).as_deref(),
                Some(ID)
            );
        });
        let by_time = r#"<ns:GetStatusRequest xmlns:ns="TYPES" xmlns:b="BASIC"><b:Timestamp>2026-12-04T10:00:00Z</b:Timestamp></ns:GetStatusRequest>"#;
        parse_with(&wrap(version, by_time), |env| {
            let Operation::GetStatus(s) = env.expect("GetStatus").operation else {
                panic!("GetStatus expected")
            };
            assert_eq!(
                (s.message_id, s.timestamp),
                (None, Some("2026-12-04T10:00:00Z"))
            );
        });
        let pull = r#"<ns:GetResponseRequest xmlns:ns="TYPES" xmlns:b="BASIC"><b:MessageTypeSelector Id="SEL"><b:NamespaceURI>urn:x</b:NamespaceURI><b:RootElementLocalName>Q</b:RootElementLocalName><b:Timestamp>2026-12-04T10:00:00Z</b:Timestamp></b:MessageTypeSelector><ns:CallerInformationSystemSignature/></ns:GetResponseRequest>"#
            .replace("<b:MessageTypeSelector", "<ns:MessageTypeSelector")
            .replace("</b:MessageTypeSelector>", "</ns:MessageTypeSelector>");
        parse_with(&wrap(version, &pull), |env| {
            let Operation::GetResponse(g) = env.expect("GetResponse").operation else {
                panic!("GetResponse expected")
            };
            assert_eq!(
                (g.namespace_uri, g.root_element_local_name, g.timestamp),
                (Some("urn:x"), Some("Q"), "2026-12-04T10:00:00Z")
            );
        });
        let ack = format!(
            r#"<ns:AckRequest xmlns:ns="TYPES"><ns:AckTargetMessage Id="A" accepted="false">{ID}</ns:AckTargetMessage></ns:AckRequest>"#
        );
        parse_with(&wrap(version, &ack), |env| {
            let Operation::Ack(a) = env.expect("Ack").operation else {
                panic!("Ack expected")
            };
            assert_eq!((a.message_id.as_str(), a.accepted), (ID, false));
        });
    }
}

#[test]
fn structural_mistakes_are_named() {
    let v = Version::V1_3;
    let cases: Vec<(String, &str)> = vec![
        (r#"<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope"><soap:Body/></soap:Envelope>"#.into(), "SOAP 1.2"),
        ("<Envelope/>".into(), "root element must be soap:Envelope"),
        (r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"/>"#.into(), "no soap:Body"),
        (wrap(v, "<a/><b/>"), "exactly one element, found 2"),
        (wrap(v, r#"<ns:Unknown xmlns:ns="TYPES"/>"#), "unknown operation"),
        (wrap(v, r#"<ns:SendRequestRequest xmlns:ns="urn://other/1.3"/>"#), "unknown operation"),
        (wrap(v, &SEND_REQUEST.replace("ID1", ID).replace("ID2", ID2).replace("<x:A>1</x:A></x:Q>", "</x:Q><y:B xmlns:y=\"urn:y\"/>")), "MessagePrimaryContent must hold exactly one element, found 2"),
        (wrap(v, &SEND_REQUEST.replace("<ns:MessageID>ID1</ns:MessageID>", "").replace("ID2", ID2)), "SenderProvidedRequestData has no MessageID"),
        (wrap(v, &SEND_REQUEST.replace("ID1", ID).replace("ID2", ID2).replace("<ns:TestMessage/>", "<ns:TestMessage/><ns:TestMessage/>")), "more than one TestMessage"),
        (wrap(v, &SEND_REQUEST.replace("ID1", ID).replace("ID2", "not-an-id")), "is not a lowercase RFC 4122 version 1 UUID"),
        (wrap(v, &SEND_REQUEST.replace("ID1", ID).replace("ID2", ID2).replace("T-1", &"x".repeat(1501))), "TransactionCode"),
    ];
    for (text, expected) in cases {
        parse_with(&text, |env| {
            let err = env.expect_err(expected).to_string();
            assert!(err.contains(expected), "expected `{expected}` in `{err}`");
        });
    }
}
