//! The gateway's own answers to nodes: `SendRequestResponse` / `SendResponseResponse` with its MessageMetadata,
//! and the seam where the gateway signs that metadata. It must not decide routing or what the metadata says.

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use crate::soap::reply::{Metadata, Participant};
use crate::soap::{SOAP11_NS, Version};

/// The `Id` of the MessageMetadata element the gateway signs.
pub const GATEWAY_METADATA_ID: &str = "SIGNED_BY_SMEV";

/// Which call the gateway is acknowledging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledged {
    SendRequest,
    SendResponse,
}

impl Acknowledged {
    fn element(self) -> &'static str {
        match self {
            Acknowledged::SendRequest => "ns:SendRequestResponse",
            Acknowledged::SendResponse => "ns:SendResponseResponse",
        }
    }
}

/// The complete acknowledgement envelope: MessageMetadata, then SMEVSignature when the metadata is signed.
pub fn write_acknowledgement(
    out: &mut Vec<u8>,
    version: Version,
    what: Acknowledged,
    metadata: &Metadata<'_>,
) {
    let element = metadata_element(metadata);
    let signature = smev_signature(&element);
    let op = what.element();
    let mut w = Writer::new(out);
    // Writing into a Vec cannot fail; the Results are io-shaped only.
    let _ = (|| -> std::io::Result<()> {
        w.write_event(Event::Start(
            BytesStart::new("soap:Envelope").with_attributes([("xmlns:soap", SOAP11_NS)]),
        ))?;
        w.write_event(Event::Start(BytesStart::new("soap:Body")))?;
        w.write_event(Event::Start(BytesStart::new(op).with_attributes([
            ("xmlns:ns", version.types_ns()),
            ("xmlns:basic", version.basic_ns()),
        ])))?;
        w.get_mut().extend_from_slice(&element);
        if let Some(signature) = &signature {
            w.write_event(Event::Start(BytesStart::new("ns:SMEVSignature")))?;
            w.get_mut().extend_from_slice(signature);
            w.write_event(Event::End(BytesEnd::new("ns:SMEVSignature")))?;
        }
        w.write_event(Event::End(BytesEnd::new(op)))?;
        w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Envelope")))
    })();
}

/// The `Id` of the SenderProvidedResponseData of a status the gateway itself sends.
pub const GATEWAY_STATUS_ID: &str = "SMEV_STATUS";

/// A `SendResponseRequest` the gateway itself sends to a requester: `AsyncProcessingStatus` about request `to`
/// (e.g. `requestIsRejectedBySmev` when a recipient could not be given the request).
pub fn write_status_response(
    out: &mut Vec<u8>,
    version: Version,
    message_id: &str,
    to: &str,
    category: &str,
    details: &str,
) {
    let mut w = Writer::new(out);
    let _ = (|| -> std::io::Result<()> {
        w.write_event(Event::Start(
            BytesStart::new("soap:Envelope").with_attributes([("xmlns:soap", SOAP11_NS)]),
        ))?;
        w.write_event(Event::Start(BytesStart::new("soap:Body")))?;
        w.write_event(Event::Start(
            BytesStart::new("ns:SendResponseRequest").with_attributes([
                ("xmlns:ns", version.types_ns()),
                ("xmlns:basic", version.basic_ns()),
            ]),
        ))?;
        w.write_event(Event::Start(
            BytesStart::new("ns:SenderProvidedResponseData")
                .with_attributes([("Id", GATEWAY_STATUS_ID)]),
        ))?;
        text(&mut w, "ns:MessageID", message_id)?;
        text(&mut w, "ns:To", to)?;
        w.write_event(Event::Start(BytesStart::new("ns:AsyncProcessingStatus")))?;
        text(&mut w, "ns:OriginalMessageId", to)?;
        text(&mut w, "ns:StatusCategory", category)?;
        text(&mut w, "ns:StatusDetails", details)?;
        w.write_event(Event::End(BytesEnd::new("ns:AsyncProcessingStatus")))?;
        w.write_event(Event::End(BytesEnd::new("ns:SenderProvidedResponseData")))?;
        w.write_event(Event::End(BytesEnd::new("ns:SendResponseRequest")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Envelope")))
    })();
}

/// The gateway's `ns:MessageMetadata` element (prefix `ns` is declared by the enclosing operation element).
/// This is the exact byte sequence [`smev_signature`] signs.
pub fn metadata_element(m: &Metadata<'_>) -> Vec<u8> {
    let mut w = Writer::new(Vec::with_capacity(512));
    let _ = (|| -> std::io::Result<()> {
        w.write_event(Event::Start(
            BytesStart::new("ns:MessageMetadata").with_attributes([("Id", GATEWAY_METADATA_ID)]),
        ))?;
        text(&mut w, "ns:MessageId", m.message_id)?;
        text(&mut w, "ns:MessageType", m.message_type)?;
        participant(&mut w, "ns:Sender", &m.sender)?;
        text(&mut w, "ns:SendingTimestamp", m.sending_timestamp)?;
        participant(&mut w, "ns:Recipient", &m.recipient)?;
        text(&mut w, "ns:DeliveryTimestamp", m.delivery_timestamp)?;
        text(&mut w, "ns:Status", m.status)?;
        w.write_event(Event::End(BytesEnd::new("ns:MessageMetadata")))
    })();
    w.into_inner()
}

/// SIGNING SEAM: the `ds:Signature` over the metadata element (Reference `#SIGNED_BY_SMEV`), to be placed in
/// `SMEVSignature`. Signing is pending the XMLDSig merge; until then the gateway's metadata goes unsigned.
pub fn smev_signature(_metadata_element: &[u8]) -> Option<Vec<u8>> {
    None
}

fn text<W: std::io::Write>(w: &mut Writer<W>, name: &str, value: &str) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))?;
    w.write_event(Event::Text(crate::xml::text(value)))?;
    w.write_event(Event::End(BytesEnd::new(name)))?;
    Ok(())
}

fn participant<W: std::io::Write>(
    w: &mut Writer<W>,
    name: &str,
    p: &Participant<'_>,
) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))?;
    text(w, "ns:Mnemonic", p.mnemonic)?;
    text(w, "ns:HumanReadableName", p.name)?;
    w.write_event(Event::End(BytesEnd::new(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgement_is_well_formed_in_the_callers_version() {
        let m = Metadata {
            message_id: "e3867df0-effb-11f1-a485-076090a46bf4",
            message_type: "RESPONSE",
            sender: Participant {
                mnemonic: "B",
                name: "Агентство <B>",
            },
            recipient: Participant {
                mnemonic: "A",
                name: "A",
            },
            sending_timestamp: "2026-12-04T17:00:00Z",
            delivery_timestamp: "2026-12-04T17:00:00Z",
            status: "responseIsQueued",
        };
        let mut out = Vec::new();
        write_acknowledgement(&mut out, Version::V1_2, Acknowledged::SendResponse, &m);
        let xml = String::from_utf8(out).expect("utf-8");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let ns = Version::V1_2.types_ns();
        assert!(
            doc.descendants()
                .any(|n| n.has_tag_name((ns, "SendResponseResponse")))
        );
        let md = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "MessageMetadata")))
            .expect("metadata");
        assert_eq!(md.attribute("Id"), Some(GATEWAY_METADATA_ID));
        let name = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "HumanReadableName")))
            .and_then(|n| n.text());
        assert_eq!(name, Some("Агентство <B>"));
    }
}
