//! SOAP 1.1 faults carrying SMEV fault elements, as the gateway expects them (DESIGN §3, §10).
//! It owns the mapping from a refusal to faultcode, HTTP status and detail; it must not decide refusals.

use quick_xml::Writer;
use quick_xml::events::{BytesEnd, BytesStart, Event};

use super::{SOAP11_NS, Version};
use crate::xml::Position;

/// The SOAP 1.1 `faultcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    VersionMismatch,
    /// The sender's message is at fault; resending it unchanged will fail again.
    Client,
    /// The node could not process it now; a retry may succeed.
    Server,
}

impl FaultCode {
    fn as_qname(self) -> &'static str {
        match self {
            FaultCode::VersionMismatch => "soap:VersionMismatch",
            FaultCode::Client => "soap:Client",
            FaultCode::Server => "soap:Server",
        }
    }
}

/// The reasons of `SignatureVerificationFault` (faults 1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureFaultCode {
    PoorSoapEnvelopeFormat,
    NoSignatureFound,
    IncorrectSignatureTarget,
    SignatureIsInvalid,
    CertificateIsNotFound,
    CertificateIsExpired,
}

impl SignatureFaultCode {
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureFaultCode::PoorSoapEnvelopeFormat => "PoorSOAPEnvelopeFormat",
            SignatureFaultCode::NoSignatureFound => "NoSignatureFound",
            SignatureFaultCode::IncorrectSignatureTarget => "IncorrectSignatureTarget",
            SignatureFaultCode::SignatureIsInvalid => "SignatureIsInvalid",
            SignatureFaultCode::CertificateIsNotFound => "CertificateIsNotFound",
            SignatureFaultCode::CertificateIsExpired => "CertificateIsExpired",
        }
    }
}

/// The SMEV fault element placed in `detail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmevFault {
    InvalidMessageIdFormat,
    InvalidContent {
        errors: Vec<(String, Option<Position>)>,
    },
    SignatureVerification(SignatureFaultCode),
    AccessDenied,
    SenderIsNotRegistered,
    RecipientIsNotFound,
    UnknownMessageType,
    TargetMessageIsNotFound,
    DestinationOverflow,
    SmevFailure,
}

impl SmevFault {
    pub fn element_name(&self) -> &'static str {
        match self {
            SmevFault::InvalidMessageIdFormat => "InvalidMessageIdFormat",
            SmevFault::InvalidContent { .. } => "InvalidContent",
            SmevFault::SignatureVerification(_) => "SignatureVerificationFault",
            SmevFault::AccessDenied => "AccessDenied",
            SmevFault::SenderIsNotRegistered => "SenderIsNotRegistered",
            SmevFault::RecipientIsNotFound => "RecipientIsNotFound",
            SmevFault::UnknownMessageType => "UnknownMessageType",
            SmevFault::TargetMessageIsNotFound => "TargetMessageIsNotFound",
            SmevFault::DestinationOverflow => "DestinationOverflow",
            SmevFault::SmevFailure => "SMEVFailure",
        }
    }
}

/// A complete fault answer: what to say, in which version, with which HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: FaultCode,
    pub message: String,
    pub detail: Option<SmevFault>,
    pub version: Version,
    pub http_status: u16,
}

impl Fault {
    /// A fault about the sender's message (HTTP 500, as SOAP 1.1 over HTTP requires).
    pub fn client(version: Version, detail: SmevFault, message: impl Into<String>) -> Fault {
        Fault {
            code: FaultCode::Client,
            message: message.into(),
            detail: Some(detail),
            version,
            http_status: 500,
        }
    }

    /// A fault on the node's side; the gateway may retry.
    pub fn server(version: Version, detail: SmevFault, message: impl Into<String>) -> Fault {
        Fault {
            code: FaultCode::Server,
            message: message.into(),
            detail: Some(detail),
            version,
            http_status: 500,
        }
    }

    pub fn with_status(mut self, status: u16) -> Fault {
        self.http_status = status;
        self
    }

    /// The fault as a SOAP 1.1 envelope.
    pub fn to_xml(&self) -> Vec<u8> {
        let mut w = Writer::new(Vec::with_capacity(512));
        // Writing into a Vec cannot fail; the Results are io-shaped only.
        let _ = self.write(&mut w);
        w.into_inner()
    }

    fn write(&self, w: &mut Writer<Vec<u8>>) -> std::io::Result<()> {
        w.write_event(Event::Start(
            BytesStart::new("soap:Envelope").with_attributes([("xmlns:soap", SOAP11_NS)]),
        ))?;
        w.write_event(Event::Start(BytesStart::new("soap:Body")))?;
        w.write_event(Event::Start(BytesStart::new("soap:Fault")))?;
        text_element(w, "faultcode", self.code.as_qname())?;
        text_element(w, "faultstring", &self.message)?;
        if let Some(detail) = &self.detail {
            w.write_event(Event::Start(BytesStart::new("detail")))?;
            self.write_detail(w, detail)?;
            w.write_event(Event::End(BytesEnd::new("detail")))?;
        }
        w.write_event(Event::End(BytesEnd::new("soap:Fault")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Body")))?;
        w.write_event(Event::End(BytesEnd::new("soap:Envelope")))?;
        Ok(())
    }

    fn write_detail(&self, w: &mut Writer<Vec<u8>>, detail: &SmevFault) -> std::io::Result<()> {
        let name = format!("f:{}", detail.element_name());
        let start = BytesStart::new(name.as_str()).with_attributes([
            ("xmlns:f", self.version.faults_ns()),
            ("xmlns:b", self.version.basic_ns()),
        ]);
        w.write_event(Event::Start(start))?;
        text_element(w, "b:Code", detail.element_name())?;
        text_element(w, "b:Description", &self.message)?;
        match detail {
            SmevFault::InvalidContent { errors } => {
                for (message, position) in errors {
                    let offset = position.map_or(0, |p| p.offset).to_string();
                    let el = BytesStart::new("f:ValidationError")
                        .with_attributes([("errorPosition", offset.as_str())]);
                    w.write_event(Event::Start(el))?;
                    w.write_event(Event::Text(crate::xml::text(message)))?;
                    w.write_event(Event::End(BytesEnd::new("f:ValidationError")))?;
                }
            }
            SmevFault::SignatureVerification(code) => {
                text_element(w, "f:SignatureVerificationFault", code.as_str())?
            }
            _ => {}
        }
        w.write_event(Event::End(BytesEnd::new(name.as_str())))?;
        Ok(())
    }
}

pub(crate) fn text_element<W: std::io::Write>(
    w: &mut Writer<W>,
    name: &str,
    text: &str,
) -> std::io::Result<()> {
    w.write_event(Event::Start(BytesStart::new(name)))?;
    w.write_event(Event::Text(crate::xml::text(text)))?;
    w.write_event(Event::End(BytesEnd::new(name)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_content_fault_carries_position_and_escaped_text() {
        let position = Position {
            line: 2,
            column: 5,
            offset: 17,
        };
        let fault = Fault::client(
            Version::V1_2,
            SmevFault::InvalidContent {
                errors: vec![("bad <value> & more".into(), Some(position))],
            },
            "payload is invalid",
        );
        let xml = String::from_utf8(fault.to_xml()).expect("utf-8");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let ve = doc
            .descendants()
            .find(|n| n.has_tag_name((Version::V1_2.faults_ns(), "ValidationError")))
            .expect("ValidationError");
        assert_eq!(ve.attribute("errorPosition"), Some("17"));
        assert_eq!(ve.text(), Some("bad <value> & more"));
        let code = doc
            .descendants()
            .find(|n| n.has_tag_name("faultcode"))
            .and_then(|n| n.text());
        assert_eq!(code, Some("soap:Client"));
    }

    #[test]
    fn signature_fault_names_its_reason() {
        let fault = Fault::client(
            Version::V1_3,
            SmevFault::SignatureVerification(SignatureFaultCode::PoorSoapEnvelopeFormat),
            "no body",
        );
        let xml = String::from_utf8(fault.to_xml()).expect("utf-8");
        let doc = roxmltree::Document::parse(&xml).expect("well-formed");
        let outer = doc
            .descendants()
            .find(|n| n.has_tag_name((Version::V1_3.faults_ns(), "SignatureVerificationFault")))
            .expect("outer");
        let inner = outer
            .children()
            .find(|n| n.has_tag_name((Version::V1_3.faults_ns(), "SignatureVerificationFault")));
        assert_eq!(inner.and_then(|n| n.text()), Some("PoorSOAPEnvelopeFormat"));
    }
}
