//! Writing the node's SOAP answers with quick-xml into a caller-owned buffer, in the caller's version.
//! It owns the exact element shapes; it must not decide what the answer says.

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::fault::text_element;
use super::{MessageId, SOAP11_NS, Version};

/// The `Id` of the element the provider signs in its answer.
pub const RESPONSE_DATA_ID: &str = "SIGNED_BY_PROVIDER";

/// RejectionReasonCode values (types 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectionCode {
    AccessDenied,
    NoData,
    UnknownRequestDescription,
    Failure,
}

impl RejectionCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectionCode::AccessDenied => "ACCESS_DENIED",
            RejectionCode::NoData => "NO_DATA",
            RejectionCode::UnknownRequestDescription => "UNKNOWN_REQUEST_DESCRIPTION",
            RejectionCode::Failure => "FAILURE",
        }
    }
}

/// What the provider answers a request with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// The business response element, already written as well-formed XML with its own namespace declarations.
    Primary(Vec<u8>),
    Rejected {
        code: RejectionCode,
        description: String,
    },
}

/// The parts of a `SendResponseRequest` besides the answer itself.
pub struct ResponseHeader<'a> {
    pub version: Version,
    pub message_id: &'a MessageId,
    /// The request this answers (its MessageID, or its ReplyTo token where the gateway gives one).
    pub to: &'a str,
}

/// Writes a complete `SendResponseRequest` envelope into `out`.
pub fn write_send_response(out: &mut Vec<u8>, header: &ResponseHeader<'_>, answer: &Answer) {
    let mut w = Writer::new(out);
    // Writing into a Vec cannot fail; the Results are io-shaped only.
    let _ = write_envelope(&mut w, header, answer);
}

fn write_envelope(
    w: &mut Writer<&mut Vec<u8>>,
    h: &ResponseHeader<'_>,
    answer: &Answer,
) -> std::io::Result<()> {
    w.write_event(Event::Start(
        BytesStart::new("soap:Envelope").with_attributes([("xmlns:soap", SOAP11_NS)]),
    ))?;
    w.write_event(Event::Start(BytesStart::new("soap:Body")))?;
    let op = BytesStart::new("ns:SendResponseRequest").with_attributes([
        ("xmlns:ns", h.version.types_ns()),
        ("xmlns:basic", h.version.basic_ns()),
    ]);
    w.write_event(Event::Start(op))?;
    let data = BytesStart::new("ns:SenderProvidedResponseData")
        .with_attributes([("Id", RESPONSE_DATA_ID)]);
    w.write_event(Event::Start(data))?;
    text_element(w, "ns:MessageID", h.message_id.as_str())?;
    text_element(w, "ns:To", h.to)?;
    match answer {
        Answer::Primary(xml) => {
            w.write_event(Event::Start(BytesStart::new("basic:MessagePrimaryContent")))?;
            w.get_mut().extend_from_slice(xml);
            w.write_event(Event::End(BytesEnd::new("basic:MessagePrimaryContent")))?;
        }
        Answer::Rejected { code, description } => {
            w.write_event(Event::Start(BytesStart::new("ns:RequestRejected")))?;
            text_element(w, "ns:RejectionReasonCode", code.as_str())?;
            text_element(w, "ns:RejectionReasonDescription", description)?;
            w.write_event(Event::End(BytesEnd::new("ns:RequestRejected")))?;
        }
    }
    w.write_event(Event::End(BytesEnd::new("ns:SenderProvidedResponseData")))?;
    w.write_event(Event::End(BytesEnd::new("ns:SendResponseRequest")))?;
    w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
    w.write_event(Event::End(BytesEnd::new("soap:Envelope")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_reply_is_well_formed_in_the_callers_version() {
        let id = MessageId::parse("e3867df0-effb-11f1-a485-076090a46bf4").expect("id");
        let header = ResponseHeader {
            version: Version::V1_1,
            message_id: &id,
            to: "abc",
        };
        let mut out = Vec::new();
        let answer = Answer::Rejected {
            code: RejectionCode::NoData,
            description: "нет данных <none>".into(),
        };
        write_send_response(&mut out, &header, &answer);
        let xml = String::from_utf8(out).expect("utf-8");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let ns = Version::V1_1.types_ns();
        let data = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "SenderProvidedResponseData")))
            .expect("data");
        assert_eq!(data.attribute("Id"), Some(RESPONSE_DATA_ID));
        let code = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "RejectionReasonCode")))
            .and_then(|n| n.text());
        assert_eq!(code, Some("NO_DATA"));
        let desc = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "RejectionReasonDescription")))
            .and_then(|n| n.text());
        assert_eq!(desc, Some("нет данных <none>"));
    }
}
