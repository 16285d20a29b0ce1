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
    let op = what.element();
    let mut unsigned = Vec::with_capacity(element.len() + 512);
    let mut w = Writer::new(&mut unsigned);
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
        w.write_event(Event::Empty(BytesStart::new("ns:SMEVSignature")))?;
        w.write_event(Event::End(BytesEnd::new(op)))?;
        w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Envelope")))
    })();
    out.extend_from_slice(&sign_metadata(&unsigned, version).unwrap_or(unsigned));
}

/// The simulator's own signing key: a development ECDSA key made once per process (it is a test tool).
fn gateway_key() -> Option<&'static crate::dsig::SigningKey> {
    static KEY: std::sync::OnceLock<Option<crate::dsig::SigningKey>> = std::sync::OnceLock::new();
    KEY.get_or_init(|| {
        let crypto = crate::dsig::Crypto::load();
        let key =
            crate::dsig::tools::generate_key(crate::dsig::tools::DevKeyAlg::Ecdsa, &crypto).ok()?;
        let cert =
            crate::dsig::tools::self_signed_certificate(&key, "GATEWAY (simulator)", 365, &crypto)
                .ok()?;
        let alg = crate::dsig::SignatureAlg::default_for(&key).ok()?;
        crate::dsig::SigningKey::new(key, &cert, alg, crypto).ok()
    })
    .as_ref()
}

/// Signs the envelope's MessageMetadata into its SMEVSignature, as the SMEV gateway does.
fn sign_metadata(envelope: &[u8], version: Version) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(envelope).ok()?;
    let limits = crate::config::XmlLimits::default();
    let signed = crate::dsig::sign_message(
        text,
        &limits,
        GATEWAY_METADATA_ID,
        (version.types_ns(), "SMEVSignature"),
        gateway_key()?,
    );
    match signed {
        Ok(s) => Some(s.into_bytes()),
        Err(e) => {
            tracing::error!("the simulator could not sign its metadata: {e}");
            None
        }
    }
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
/// It is signed into `SMEVSignature` by [`write_acknowledgement`].
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
        // The metadata is signed into SMEVSignature, and the signature verifies against its own certificate.
        let holder = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "SMEVSignature")))
            .expect("SMEVSignature");
        let cert_b64 = holder
            .descendants()
            .find(|n| n.tag_name().name() == "X509Certificate")
            .and_then(|n| n.text())
            .expect("certificate in KeyInfo");
        let der = openssl::base64::decode_block(cert_b64).expect("base64");
        let cert = openssl::x509::X509::from_der(&der).expect("certificate");
        let store =
            crate::dsig::TrustStore::new([cert], crate::dsig::Crypto::load()).expect("store");
        let limits = crate::config::XmlLimits::default();
        let doc = crate::xml::parse(&xml, &limits).expect("parse");
        let md = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "MessageMetadata")))
            .expect("metadata");
        let holder = doc
            .descendants()
            .find(|n| n.has_tag_name((ns, "SMEVSignature")))
            .expect("holder");
        crate::dsig::verify_message(&doc, md, holder, &store)
            .expect("the gateway's metadata signature verifies");
    }
}
