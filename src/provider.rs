//! The provider path for one SOAP request: secure parse → envelope → route → mapping → reply bytes.
//! It runs on the blocking pool and owns the outcome-to-fault decisions; it must not do HTTP or I/O waits.

use crate::mapping::Outcome;
use crate::node::Node;
use crate::soap::envelope::{self, Operation, SendRequest};
use crate::soap::reply::{Answer, RejectionCode, ResponseHeader, write_send_response};
use crate::soap::{EnvelopeError, Fault, FaultCode, SignatureFaultCode, SmevFault, Version};
use crate::xml::{self, XmlError};

/// An HTTP answer body with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl From<Fault> for Reply {
    fn from(f: Fault) -> Reply {
        Reply {
            status: f.http_status,
            body: f.to_xml(),
        }
    }
}

/// Handles one POSTed SOAP body.
pub fn handle(node: &Node, body: &[u8]) -> Reply {
    let text = match xml::utf8_text(body) {
        Ok(t) => t,
        Err(e) => return xml_fault(Version::NEWEST, &e).into(),
    };
    let doc = match xml::parse(text, &node.config.limits.xml) {
        Ok(d) => d,
        Err(e) => return xml_fault(Version::NEWEST, &e).into(),
    };
    let env = match envelope::parse(&doc) {
        Ok(env) => env,
        Err(e) => {
            return envelope_fault(envelope::sniff_version(&doc).unwrap_or(Version::NEWEST), e)
                .into();
        }
    };
    match env.operation {
        Operation::SendRequest(req) => provide(node, &doc, env.version, &req),
        other => Fault::server(
            env.version,
            SmevFault::SmevFailure,
            format!(
                "{} is understood but not served by this node version: it has no durable store yet",
                other.name()
            ),
        )
        .into(),
    }
}

/// Answers a SendRequest synchronously with a SendResponseRequest.
fn provide(
    node: &Node,
    doc: &roxmltree::Document<'_>,
    version: Version,
    req: &SendRequest<'_, '_>,
) -> Reply {
    let tag = req.content.tag_name();
    let request_id = req.message_id.as_str();
    // One snapshot per request: a hot reload meanwhile does not change this request's mapping.
    let mappings = node.mappings();
    let answer = match mappings.route(tag.namespace().unwrap_or(""), tag.name()) {
        None => {
            tracing::info!(message_id = %req.message_id, "no mapping for {{{}}}{}", tag.namespace().unwrap_or(""), tag.name());
            Answer::Rejected {
                code: RejectionCode::UnknownRequestDescription,
                description: format!(
                    "this node has no mapping for requests of type {{{}}}{}",
                    tag.namespace().unwrap_or(""),
                    tag.name()
                ),
            }
        }
        Some(mapping) => match mapping.extract(doc, req.content) {
            Err(errors) => {
                tracing::info!(message_id = %req.message_id, mapping = %mapping.name, "request content is invalid");
                let errors = errors
                    .into_iter()
                    .map(|e| (e.message, Some(e.position)))
                    .collect();
                return Fault::client(
                    version,
                    SmevFault::InvalidContent { errors },
                    "the request content is invalid",
                )
                .into();
            }
            Ok(params) => match mapping.execute(&node.datasources, &params, request_id) {
                Outcome::Answer(xml) => Answer::Primary(xml),
                Outcome::NoData => Answer::Rejected {
                    code: RejectionCode::NoData,
                    description: "no data found for the request".into(),
                },
                Outcome::Failed(reason) => {
                    tracing::error!(message_id = %req.message_id, mapping = %mapping.name, "{reason}");
                    Answer::Rejected {
                        code: RejectionCode::Failure,
                        description: "the provider failed to process the request; its administrators have the details".into(),
                    }
                }
            },
        },
    };
    let message_id = node.new_message_id();
    let header = ResponseHeader {
        version,
        message_id: &message_id,
        to: req.message_id.as_str(),
    };
    let mut body = Vec::with_capacity(1024);
    write_send_response(&mut body, &header, &answer);
    Reply { status: 200, body }
}

/// The fault for a document refused before SOAP processing.
pub fn xml_fault(version: Version, e: &XmlError) -> Fault {
    Fault::client(
        version,
        SmevFault::InvalidContent {
            errors: vec![(e.to_string(), e.position())],
        },
        e.to_string(),
    )
}

fn envelope_fault(version: Version, e: EnvelopeError) -> Fault {
    match e {
        EnvelopeError::Soap12 => version_mismatch(),
        EnvelopeError::MessageId { .. } => {
            Fault::client(version, SmevFault::InvalidMessageIdFormat, e.to_string())
        }
        _ => Fault::client(
            version,
            SmevFault::SignatureVerification(SignatureFaultCode::PoorSoapEnvelopeFormat),
            e.to_string(),
        ),
    }
}

/// The answer to a SOAP 1.2 message: a SOAP 1.1 VersionMismatch fault, as SOAP 1.2 Appendix A describes.
pub fn version_mismatch() -> Fault {
    Fault {
        code: FaultCode::VersionMismatch,
        message: "this node speaks SOAP 1.1 only: send text/xml with the envelope namespace http://schemas.xmlsoap.org/soap/envelope/".into(),
        detail: None,
        version: Version::NEWEST,
        http_status: 500,
    }
}
