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
    // The holder the node's signature goes into (see `Node::sign`).
    w.write_event(Event::Empty(BytesStart::new(
        "ns:CallerInformationSystemSignature",
    )))?;
    w.write_event(Event::End(BytesEnd::new("ns:SendResponseRequest")))?;
    w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
    w.write_event(Event::End(BytesEnd::new("soap:Envelope")))?;
    Ok(())
}

/// A participant in MessageMetadata.
pub struct Participant<'a> {
    pub mnemonic: &'a str,
    pub name: &'a str,
}

/// The node's record of a message it accepted (`MessageMetadata`), as returned in `SendRequestResponse`.
pub struct Metadata<'a> {
    pub message_id: &'a str,
    /// `REQUEST` or `RESPONSE`.
    pub message_type: &'a str,
    pub sender: Participant<'a>,
    pub recipient: Participant<'a>,
    pub sending_timestamp: &'a str,
    pub delivery_timestamp: &'a str,
    /// An InteractionStatusType value.
    pub status: &'a str,
}

/// The `Id` of the metadata element the node signs.
pub const METADATA_ID: &str = "SIGNED_BY_NODE";

fn start_envelope<W: std::io::Write>(
    w: &mut Writer<W>,
    version: Version,
    op: &str,
) -> std::io::Result<()> {
    w.write_event(Event::Start(
        BytesStart::new("soap:Envelope").with_attributes([("xmlns:soap", SOAP11_NS)]),
    ))?;
    w.write_event(Event::Start(BytesStart::new("soap:Body")))?;
    let op = BytesStart::new(op).with_attributes([
        ("xmlns:ns", version.types_ns()),
        ("xmlns:basic", version.basic_ns()),
    ]);
    w.write_event(Event::Start(op))
}

fn end_envelope<W: std::io::Write>(w: &mut Writer<W>, op: &str) -> std::io::Result<()> {
    w.write_event(Event::End(BytesEnd::new(op)))?;
    w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
    w.write_event(Event::End(BytesEnd::new("soap:Envelope")))
}

fn write_participant<W: std::io::Write>(
    w: &mut Writer<W>,
    name: &str,
    p: &Participant<'_>,
) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))?;
    text_element(w, "ns:Mnemonic", p.mnemonic)?;
    text_element(w, "ns:HumanReadableName", p.name)?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

fn write_metadata<W: std::io::Write>(w: &mut Writer<W>, m: &Metadata<'_>) -> std::io::Result<()> {
    let start = BytesStart::new("ns:MessageMetadata").with_attributes([("Id", METADATA_ID)]);
    w.write_event(Event::Start(start))?;
    text_element(w, "ns:MessageId", m.message_id)?;
    text_element(w, "ns:MessageType", m.message_type)?;
    write_participant(w, "ns:Sender", &m.sender)?;
    text_element(w, "ns:SendingTimestamp", m.sending_timestamp)?;
    write_participant(w, "ns:Recipient", &m.recipient)?;
    text_element(w, "ns:DeliveryTimestamp", m.delivery_timestamp)?;
    text_element(w, "ns:Status", m.status)?;
    w.write_event(Event::End(BytesEnd::new("ns:MessageMetadata")))
}

/// `SendRequestResponse`: the acknowledgement that a request is stored.
pub fn write_send_request_response(out: &mut Vec<u8>, version: Version, metadata: &Metadata<'_>) {
    write_metadata_envelope(out, version, "ns:SendRequestResponse", metadata);
}

/// `SendResponseResponse`: the acknowledgement that an answer is stored.
pub fn write_send_response_response(out: &mut Vec<u8>, version: Version, metadata: &Metadata<'_>) {
    write_metadata_envelope(out, version, "ns:SendResponseResponse", metadata);
}

fn write_metadata_envelope(out: &mut Vec<u8>, version: Version, op: &str, metadata: &Metadata<'_>) {
    let mut w = Writer::new(out);
    let _ = start_envelope(&mut w, version, op)
        .and_then(|()| write_metadata(&mut w, metadata))
        .and_then(|()| w.write_event(Event::Empty(BytesStart::new("ns:SMEVSignature"))))
        .and_then(|()| end_envelope(&mut w, op));
}

/// `GetStatusResponse` for one message; `category` is an InteractionStatusType value.
pub fn write_get_status_response(
    out: &mut Vec<u8>,
    version: Version,
    original: &str,
    category: &str,
    details: &str,
) {
    let mut w = Writer::new(out);
    let _ = (|| -> std::io::Result<()> {
        start_envelope(&mut w, version, "ns:GetStatusResponse")?;
        w.write_event(Event::Start(BytesStart::new(
            "ns:SmevAsyncProcessingMessage",
        )))?;
        let data =
            BytesStart::new("ns:AsyncProcessingStatusData").with_attributes([("Id", "STATUS")]);
        w.write_event(Event::Start(data))?;
        w.write_event(Event::Start(BytesStart::new("ns:AsyncProcessingStatus")))?;
        text_element(&mut w, "ns:OriginalMessageId", original)?;
        text_element(&mut w, "ns:StatusCategory", category)?;
        text_element(&mut w, "ns:StatusDetails", details)?;
        w.write_event(Event::End(BytesEnd::new("ns:AsyncProcessingStatus")))?;
        w.write_event(Event::End(BytesEnd::new("ns:AsyncProcessingStatusData")))?;
        w.write_event(Event::End(BytesEnd::new("ns:SmevAsyncProcessingMessage")))?;
        end_envelope(&mut w, "ns:GetStatusResponse")
    })();
}

/// `GetResponseResponse`; `response_data` is a stored `SenderProvidedResponseData` element, copied verbatim
/// (it was written with the same `ns`/`basic` prefixes, which this envelope declares). `None`: nothing ready.
pub fn write_get_response_response(
    out: &mut Vec<u8>,
    version: Version,
    ready: Option<(&str, &[u8], &Metadata<'_>)>,
) {
    let mut w = Writer::new(out);
    let _ = (|| -> std::io::Result<()> {
        start_envelope(&mut w, version, "ns:GetResponseResponse")?;
        if let Some((original, response_data, metadata)) = ready {
            w.write_event(Event::Start(BytesStart::new("ns:ResponseMessage")))?;
            w.write_event(Event::Start(
                BytesStart::new("ns:Response").with_attributes([("Id", "RESPONSE")]),
            ))?;
            text_element(&mut w, "ns:OriginalMessageId", original)?;
            w.get_mut().extend_from_slice(response_data);
            write_metadata(&mut w, metadata)?;
            w.write_event(Event::End(BytesEnd::new("ns:Response")))?;
            w.write_event(Event::End(BytesEnd::new("ns:ResponseMessage")))?;
        }
        end_envelope(&mut w, "ns:GetResponseResponse")
    })();
}

/// `AckResponse` (empty).
pub fn write_ack_response(out: &mut Vec<u8>, version: Version) {
    let mut w = Writer::new(out);
    let _ = start_envelope(&mut w, version, "ns:AckResponse")
        .and_then(|()| end_envelope(&mut w, "ns:AckResponse"));
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
