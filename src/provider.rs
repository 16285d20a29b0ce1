//! The blocking part of one SOAP call: secure parse → envelope → dedup check → route → mapping → reply bytes.
//! It decides outcomes and faults; durable writes and waiting for them belong to `exchange`, HTTP to `server`.

use roxmltree::Document;

use crate::config::ReplyMode;
use crate::mapping::Outcome;
use crate::node::Node;
use crate::soap::envelope::{self, Operation, SendRequest};
use crate::soap::reply::{
    self, Answer, Metadata, Participant, RejectionCode, ResponseHeader, write_send_response,
};
use crate::soap::{EnvelopeError, Fault, FaultCode, SignatureFaultCode, SmevFault, Version};
use crate::storage::{self, Existing, NewIncoming, Status, StoredAnswer};
use crate::xml::{self, XmlError};

/// An HTTP answer body with its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    /// For metrics: `ok`, `duplicate`, or the SMEV fault's name.
    pub outcome: &'static str,
}

impl From<Fault> for Reply {
    fn from(f: Fault) -> Reply {
        let outcome = f
            .detail
            .as_ref()
            .map_or("VersionMismatch", SmevFault::element_name);
        Reply {
            status: f.http_status,
            body: f.to_xml(),
            outcome,
        }
    }
}

impl Reply {
    pub fn ok(body: Vec<u8>) -> Reply {
        Reply {
            status: 200,
            body,
            outcome: "ok",
        }
    }
}

/// What the async side must do next with a received SOAP call: store a received request (the CPU pool
/// hands that to the writer itself), or one of the [`Next`] steps, which store no received request.
#[derive(Debug)]
pub enum Step {
    /// Store `record` durably, then answer with `reply` (or with what a concurrent twin stored first).
    /// With `process`, the stored request is then handed to the processing workers (async mode).
    Store {
        record: Box<NewIncoming>,
        reply: Vec<u8>,
        process: bool,
        mode: ReplyMode,
    },
    Then(Next),
}

impl Step {
    /// Answer now; nothing to store.
    pub fn reply(reply: Reply) -> Step {
        Step::Then(Next::Reply(reply))
    }
}

/// A step that stores no received request.
#[derive(Debug)]
pub enum Next {
    /// Answer now; nothing to store.
    Reply(Reply),
    /// GetResponse: lease the oldest ready response.
    Lease { version: Version },
    /// Ack: a polling gateway took a response.
    Ack {
        version: Version,
        response_message_id: String,
        accepted: bool,
    },
    /// SendResponse: an answer to one of this node's own requests, to match and store.
    Answer {
        version: Version,
        to: String,
        response_message_id: String,
        /// The verified signer's mnemonic, and who signed with what (for the history).
        sender: String,
        signed_by: String,
        kind: crate::storage::outbox::AnswerKind,
        body: Vec<u8>,
    },
}

/// Reads one POSTed SOAP body and decides the next step.
/// Returns the operation's name (for metrics; `invalid` when there is none) with the step.
pub fn receive(node: &Node, body: &[u8]) -> (&'static str, Step) {
    const INVALID: &str = "invalid";
    let text = match xml::utf8_text(body) {
        Ok(t) => t,
        Err(e) => return (INVALID, Step::reply(xml_fault(Version::NEWEST, &e).into())),
    };
    let doc = match xml::parse(text, &node.config.limits.xml) {
        Ok(d) => d,
        Err(e) => return (INVALID, Step::reply(xml_fault(Version::NEWEST, &e).into())),
    };
    let env = match envelope::parse(&doc) {
        Ok(env) => env,
        Err(e) => {
            let version = envelope::sniff_version(&doc).unwrap_or(Version::NEWEST);
            return (INVALID, Step::reply(envelope_fault(version, e).into()));
        }
    };
    let version = env.version;
    let operation = env.operation.name();
    let step = match env.operation {
        Operation::SendRequest(req) => receive_request(node, &doc, version, &req, body),
        Operation::GetStatus(s) => {
            if let Err(fault) = verify_poller(node, &doc, version, s.signed, s.caller_signature) {
                return (operation, Step::reply(fault.into()));
            }
            Step::reply(get_status(
                node,
                version,
                s.message_id.as_ref().map(|m| m.as_str()),
            ))
        }
        Operation::GetResponse(g) => {
            if let Err(fault) = verify_poller(node, &doc, version, g.selector, g.caller_signature) {
                return (operation, Step::reply(fault.into()));
            }
            if let Err(fault) = check_poll_freshness(node, version, &g) {
                return (operation, Step::reply(fault.into()));
            }
            Step::Then(Next::Lease { version })
        }
        Operation::Ack(a) => {
            if let Err(fault) = verify_poller(node, &doc, version, a.target, a.caller_signature) {
                return (operation, Step::reply(fault.into()));
            }
            Step::Then(Next::Ack {
                version,
                response_message_id: a.message_id.to_string(),
                accepted: a.accepted,
            })
        }
        Operation::SendResponse(r) => {
            use crate::soap::envelope::ResponseContent;
            let signer = match verify_caller(
                node,
                &doc,
                version,
                r.response_data,
                r.caller_signature,
            ) {
                Ok(signer) => signer,
                Err(fault) => {
                    tracing::info!(message_id = %r.to, "an answer was refused: {}", fault.message);
                    return (operation, Step::reply(fault.into()));
                }
            };
            use crate::storage::outbox::AnswerKind;
            let kind = match r.content {
                ResponseContent::Primary(_) => AnswerKind::Data,
                ResponseContent::Rejected(_) => AnswerKind::Rejected,
                ResponseContent::Status { .. } | ResponseContent::AsyncStatus { .. } => {
                    AnswerKind::Status
                }
            };
            Step::Then(Next::Answer {
                version,
                to: r.to.to_string(),
                response_message_id: r.message_id.to_string(),
                signed_by: signer.summary(),
                sender: signer.sender,
                kind,
                body: body.to_vec(),
            })
        }
    };
    (operation, step)
}

fn receive_request(
    node: &Node,
    doc: &Document<'_>,
    version: Version,
    req: &SendRequest<'_, '_>,
    body: &[u8],
) -> Step {
    let mode = node.config.node.reply;
    let signer = match verify_caller(node, doc, version, req.request_data, req.caller_signature) {
        Ok(s) => s,
        Err(fault) => {
            tracing::info!(message_id = %req.message_id, "refused: {}", fault.message);
            return Step::reply(fault.into());
        }
    };
    let sender = signer.sender.clone();
    match node.store.find_incoming(&sender, req.message_id.as_str()) {
        Ok(Some(existing)) => {
            tracing::info!(message_id = %req.message_id, status = %existing.status, "repeated request: answering with what is stored");
            return Step::reply(repeat_reply(&existing, mode, version));
        }
        Ok(None) => {}
        Err(e) => return Step::reply(store_fault(version, &e)),
    }
    let mut record = NewIncoming {
        sender: sender.clone(),
        received_detail: Some(signer.detail(node, doc, req)),
        message_id: req.message_id.to_string(),
        version: version.as_str(),
        mapping: None,
        request: body.to_vec(),
        deadline_at: None,
        ack: None,
        answer: None,
    };
    match mode {
        ReplyMode::Sync => {
            let (answer, mapping) = match decide(node, doc, version, req, &sender) {
                Ok(a) => a,
                Err(fault) => return Step::reply(fault.into()),
            };
            record.mapping = mapping;
            record.deadline_at = deadline_at(node, req);
            let mut stored = response_document(
                node,
                version,
                req.message_id.as_str(),
                &answer,
                Status::Delivered,
            );
            if stored.rejected {
                stored.status = Status::Rejected;
            }
            stored.detail = format!(
                "{}; sent in the HTTP response (reply = sync)",
                stored.detail
            );
            let reply = stored.response.clone();
            record.answer = Some(stored);
            Step::Store {
                record: Box::new(record),
                reply,
                process: false,
                mode,
            }
        }
        ReplyMode::Async => {
            // Validate what can be validated before acknowledging: a bad request gets its fault now.
            if let Err(fault) = validate(node, doc, version, req) {
                return Step::reply(fault.into());
            }
            record.mapping = mapping_name(node, req);
            record.deadline_at = deadline_at(node, req);
            let now = storage::rfc3339(storage::now_millis());
            let metadata = Metadata {
                message_id: req.message_id.as_str(),
                message_type: "REQUEST",
                sender: Participant {
                    mnemonic: &sender,
                    name: "identified by its signature",
                },
                recipient: Participant {
                    mnemonic: &node.config.node.mnemonic,
                    name: &node.config.node.name,
                },
                sending_timestamp: &now,
                delivery_timestamp: &now,
                status: "requestIsQueued",
            };
            let mut ack = Vec::with_capacity(1024);
            reply::write_send_request_response(&mut ack, version, &metadata);
            let ack = match node.sign(&ack, reply::METADATA_ID, "SMEVSignature", version) {
                Ok(signed) => signed,
                Err(e) => {
                    tracing::error!(message_id = %req.message_id, "signing the acknowledgement failed: {e}");
                    return Step::reply(
                        Fault::server(
                            version,
                            SmevFault::SmevFailure,
                            "the node could not sign its acknowledgement",
                        )
                        .into(),
                    );
                }
            };
            record.ack = Some(ack.clone());
            Step::Store {
                record: Box::new(record),
                reply: ack,
                process: true,
                mode,
            }
        }
    }
}

/// The answer to a repeated request: exactly what the first one got.
pub fn repeat_reply(existing: &Existing, mode: ReplyMode, version: Version) -> Reply {
    let stored = match mode {
        ReplyMode::Sync => existing.response.as_ref().or(existing.ack.as_ref()),
        ReplyMode::Async => existing.ack.as_ref().or(existing.response.as_ref()),
    };
    match stored {
        Some(body) => Reply {
            outcome: "duplicate",
            ..Reply::ok(body.clone())
        },
        None => Fault::server(
            version,
            SmevFault::SmevFailure,
            "the first copy of this request is still being stored; retry",
        )
        .into(),
    }
}

/// Who signed a verified message.
struct Signer {
    sender: String,
    subject: String,
    algorithm: &'static str,
    weak: bool,
}

impl Signer {
    /// The audit line for the accepted request, with the PersonalSignature's result when there is one.
    fn detail(&self, node: &Node, doc: &Document<'_>, req: &SendRequest<'_, '_>) -> String {
        let personal = match req.personal_signature.and_then(|s| s.parent_element()) {
            None => String::new(),
            Some(holder) => {
                match crate::dsig::verify_message(doc, req.content, holder, &node.trust.store) {
                    Ok(_) => "; personal signature valid".to_string(),
                    Err(e) => format!("; personal signature INVALID: {e}"),
                }
            }
        };
        format!("{}{personal}", self.summary())
    }

    /// "from SENDER (subject), signature verified with ALG".
    fn summary(&self) -> String {
        let weak = if self.weak { " (weak: SHA-1)" } else { "" };
        format!(
            "from {} ({}), signature verified with {}{weak}",
            self.sender, self.subject, self.algorithm
        )
    }
}

/// Verifies the CallerInformationSystemSignature over `target` against the trust store and names the sender.
fn verify_caller<'a, 'i>(
    node: &Node,
    doc: &'a Document<'i>,
    version: Version,
    target: roxmltree::Node<'a, 'i>,
    signature: Option<roxmltree::Node<'a, 'i>>,
) -> Result<Signer, Fault> {
    let refuse = |code: SignatureFaultCode, message: String| {
        node.metrics.signature_failure(code.as_str());
        Fault::client(version, SmevFault::SignatureVerification(code), message)
    };
    // Comments and processing instructions are not covered by exclusive c14n: inside the signed element
    // they would be content that nobody signed (and can split a signed value), so they are refused.
    if target.descendants().any(|n| n.is_comment() || n.is_pi()) {
        return Err(refuse(
            SignatureFaultCode::SignatureIsInvalid,
            "comments or processing instructions inside the signed element are not covered by the signature".into(),
        ));
    }
    let Some(holder) = signature.and_then(|s| s.parent_element()) else {
        return Err(refuse(
            SignatureFaultCode::NoSignatureFound,
            "no ds:Signature in CallerInformationSystemSignature".into(),
        ));
    };
    let verified =
        crate::dsig::verify_message(doc, target, holder, &node.trust.store).map_err(|e| {
            refuse(
                signature_fault_code(e.smev_fault()),
                format!("signature refused: {e}"),
            )
        })?;
    let Some(cert) = verified.certificate.as_ref() else {
        return Err(refuse(
            SignatureFaultCode::CertificateIsNotFound,
            "the signature carries no certificate".into(),
        ));
    };
    // A revoked certificate needs the same remedy as an expired one: a new certificate from the CA.
    node.trust
        .revocations
        .check(cert)
        .map_err(|why| refuse(SignatureFaultCode::CertificateIsExpired, why))?;
    let subject = cert
        .subject_name()
        .entries()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .collect::<Vec<_>>()
        .join(", ");
    match node.trust.sender_of(cert) {
        Ok(sender) => Ok(Signer {
            sender,
            subject,
            algorithm: verified.signature_alg.name(),
            weak: verified.weak,
        }),
        Err(why) => {
            node.metrics.signature_failure("SenderIsNotRegistered");
            Err(Fault::client(
                version,
                SmevFault::SenderIsNotRegistered,
                format!("the signer is not a registered sender: {why}"),
            ))
        }
    }
}

/// GetStatus, GetResponse and Ack: the CallerInformationSystemSignature over `target` must verify like
/// any other (unless `trust.unsigned_polling` admits unsigned polls), and the signer must be one of
/// `trust.pollers` when that list is set: whoever polls takes other parties' answers.
fn verify_poller<'a, 'i>(
    node: &Node,
    doc: &'a Document<'i>,
    version: Version,
    target: roxmltree::Node<'a, 'i>,
    signature: Option<roxmltree::Node<'a, 'i>>,
) -> Result<(), Fault> {
    let trust = &node.config.trust;
    if signature.is_none() && trust.unsigned_polling {
        return Ok(());
    }
    let signer = verify_caller(node, doc, version, target, signature).map_err(|mut fault| {
        if signature.is_none() {
            fault.message.push_str(
                " (sign polls, or set trust.unsigned_polling = true for a gateway that does not)",
            );
        }
        tracing::info!("a poll was refused: {}", fault.message);
        fault
    })?;
    if !trust.pollers.is_empty() && !trust.pollers.contains(&signer.sender) {
        tracing::info!(sender = %signer.sender, "a poll was refused: not in trust.pollers");
        return Err(Fault::client(
            version,
            SmevFault::AccessDenied,
            format!("{} may not poll this node (trust.pollers)", signer.sender),
        ));
    }
    Ok(())
}

/// A signed GetResponse (verified already) must be fresh and new: see `poll_guard`. Unsigned polls,
/// admitted by `trust.unsigned_polling`, carry nothing to check.
fn check_poll_freshness(
    node: &Node,
    version: Version,
    poll: &crate::soap::envelope::GetResponse<'_, '_>,
) -> Result<(), Fault> {
    let Some(value) = poll
        .caller_signature
        .and_then(|holder| {
            holder
                .descendants()
                .find(|n| n.has_tag_name((crate::dsig::DSIG_NS, "SignatureValue")))
        })
        .and_then(|n| n.text())
    else {
        return Ok(());
    };
    node.poll_guard
        .check(poll.timestamp, value, storage::now_millis())
        .map_err(|why| {
            tracing::info!("a poll was refused: {why}");
            Fault::client(
                version,
                SmevFault::InvalidContent {
                    errors: vec![(why.to_string(), None)],
                },
                why.to_string(),
            )
        })
}

fn signature_fault_code(f: crate::dsig::SignatureFault) -> SignatureFaultCode {
    use crate::dsig::SignatureFault as F;
    match f {
        F::PoorSoapEnvelopeFormat => SignatureFaultCode::PoorSoapEnvelopeFormat,
        F::NoSignatureFound => SignatureFaultCode::NoSignatureFound,
        F::IncorrectSignatureTarget => SignatureFaultCode::IncorrectSignatureTarget,
        F::SignatureIsInvalid => SignatureFaultCode::SignatureIsInvalid,
        F::CertificateIsNotFound => SignatureFaultCode::CertificateIsNotFound,
        F::CertificateIsExpired => SignatureFaultCode::CertificateIsExpired,
    }
}

/// When an answer to this request is due, from its mapping's `deadline` (overdue after that).
fn deadline_at(node: &Node, req: &SendRequest<'_, '_>) -> Option<i64> {
    let tag = req.content.tag_name();
    let deadline = node
        .mappings()
        .route(tag.namespace().unwrap_or(""), tag.name())?
        .deadline?;
    Some(storage::now_millis() + deadline.as_millis() as i64)
}

fn mapping_name(node: &Node, req: &SendRequest<'_, '_>) -> Option<String> {
    let tag = req.content.tag_name();
    node.mappings()
        .route(tag.namespace().unwrap_or(""), tag.name())
        .map(|m| m.name.clone())
}

/// Checks the parameters of a routed request (InvalidContent on failure); unknown types pass (they get a rejection).
fn validate(
    node: &Node,
    doc: &Document<'_>,
    version: Version,
    req: &SendRequest<'_, '_>,
) -> Result<(), Fault> {
    let tag = req.content.tag_name();
    // One snapshot per decision: a hot reload meanwhile does not change this request's mapping.
    let mappings = node.mappings();
    let Some(mapping) = mappings.route(tag.namespace().unwrap_or(""), tag.name()) else {
        return Ok(());
    };
    mapping
        .extract(doc, req.content)
        .map(|_| ())
        .map_err(|errors| invalid_content(version, errors))
}

fn invalid_content(version: Version, errors: Vec<crate::mapping::ParamError>) -> Fault {
    let errors = errors
        .into_iter()
        .map(|e| (e.message, Some(e.position)))
        .collect();
    Fault::client(
        version,
        SmevFault::InvalidContent { errors },
        "the request content is invalid",
    )
}

/// Routes the request and runs its mapping: the answer, and the mapping's name.
fn decide(
    node: &Node,
    doc: &Document<'_>,
    version: Version,
    req: &SendRequest<'_, '_>,
    sender: &str,
) -> Result<(Answer, Option<String>), Fault> {
    let tag = req.content.tag_name();
    // One snapshot per decision: a hot reload meanwhile does not change this request's mapping.
    let mappings = node.mappings();
    let found = mappings.route(tag.namespace().unwrap_or(""), tag.name());
    if let Some(mapping) = found
        && !mapping.allowed_senders.allows(sender)
    {
        // The exchange agreement: this sender may not ask this question.
        tracing::info!(message_id = %req.message_id, sender, mapping = %mapping.name, "access denied: no exchange agreement");
        let description = format!(
            "{sender} has no exchange agreement for {{{}}}{}",
            tag.namespace().unwrap_or(""),
            tag.name()
        );
        return Ok((
            Answer::Rejected {
                code: RejectionCode::AccessDenied,
                description,
            },
            Some(mapping.name.clone()),
        ));
    }
    let Some(mapping) = found else {
        tracing::info!(message_id = %req.message_id, "no mapping for {{{}}}{}", tag.namespace().unwrap_or(""), tag.name());
        let description = format!(
            "this node has no mapping for requests of type {{{}}}{}",
            tag.namespace().unwrap_or(""),
            tag.name()
        );
        return Ok((
            Answer::Rejected {
                code: RejectionCode::UnknownRequestDescription,
                description,
            },
            None,
        ));
    };
    let params = mapping.extract(doc, req.content).map_err(|errors| {
        tracing::info!(message_id = %req.message_id, mapping = %mapping.name, "request content is invalid");
        invalid_content(version, errors)
    })?;
    let answer = match mapping.execute(&node.datasources, &params, req.message_id.as_str()) {
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
    };
    Ok((answer, Some(mapping.name.clone())))
}

/// The SendResponseRequest document answering `to`, ready to store.
fn response_document(
    node: &Node,
    version: Version,
    to: &str,
    answer: &Answer,
    status: Status,
) -> StoredAnswer {
    let message_id = node.new_message_id();
    let header = ResponseHeader {
        version,
        message_id: &message_id,
        to,
    };
    let mut body = Vec::with_capacity(1024);
    write_send_response(&mut body, &header, answer);
    let body = match node.sign(
        &body,
        crate::soap::reply::RESPONSE_DATA_ID,
        "CallerInformationSystemSignature",
        version,
    ) {
        Ok(signed) => signed,
        Err(e) => {
            // The key was checked at start; this is a bug, and an unsigned answer would be refused anyway.
            tracing::error!(message_id = %message_id, "signing the answer failed; sending it unsigned: {e}");
            body
        }
    };
    StoredAnswer {
        response_message_id: message_id.to_string(),
        response: body,
        rejected: matches!(answer, Answer::Rejected { .. }),
        status,
        detail: match answer {
            Answer::Primary(_) => format!("answered with data (response {message_id})"),
            Answer::Rejected { code, description } => {
                format!(
                    "rejected {}: {description} (response {message_id})",
                    code.as_str()
                )
            }
        },
    }
}

/// Processes a stored request (async mode, also after a restart): the answer to store as RESPONSE_READY.
pub fn process_stored(node: &Node, body: &[u8], sender: &str) -> StoredAnswer {
    let failure = |version: Version, to: &str, why: String| {
        tracing::error!("a stored request cannot be processed: {why}");
        let answer = Answer::Rejected {
            code: RejectionCode::Failure,
            description:
                "the provider failed to process the request; its administrators have the details"
                    .into(),
        };
        response_document(node, version, to, &answer, Status::ResponseReady)
    };
    let Ok(text) = xml::utf8_text(body) else {
        return failure(Version::NEWEST, "", "not UTF-8".into());
    };
    let doc = match xml::parse(text, &node.config.limits.xml) {
        Ok(d) => d,
        Err(e) => return failure(Version::NEWEST, "", e.to_string()),
    };
    let env = match envelope::parse(&doc) {
        Ok(env) => env,
        Err(e) => return failure(Version::NEWEST, "", e.to_string()),
    };
    let Operation::SendRequest(req) = env.operation else {
        return failure(
            env.version,
            "",
            "the stored message is not a SendRequest".into(),
        );
    };
    match decide(node, &doc, env.version, &req, sender) {
        Ok((answer, _)) => response_document(
            node,
            env.version,
            req.message_id.as_str(),
            &answer,
            Status::ResponseReady,
        ),
        // Validated before it was acknowledged; a mapping change since then can still make it invalid.
        Err(fault) => failure(
            env.version,
            req.message_id.as_str(),
            format!("the request became invalid: {}", fault.message),
        ),
    }
}

fn get_status(node: &Node, version: Version, message_id: Option<&str>) -> Reply {
    let Some(message_id) = message_id else {
        let mut body = Vec::new();
        reply::write_get_status_response(
            &mut body,
            version,
            "",
            "doesNotExist",
            "no message reference given",
        );
        return Reply::ok(body);
    };
    match node.store.status_of(message_id) {
        Ok(found) => {
            let (category, details) = match found {
                Some((status, at)) => (
                    status.interaction_status(),
                    format!("{status} since {}", storage::rfc3339(at)),
                ),
                None => (
                    "doesNotExist",
                    "this node holds no message with this MessageID".to_string(),
                ),
            };
            let mut body = Vec::with_capacity(512);
            reply::write_get_status_response(&mut body, version, message_id, category, &details);
            Reply::ok(body)
        }
        Err(e) => store_fault(version, &e),
    }
}

/// A store failure: the gateway should retry later.
pub fn store_fault(version: Version, e: &storage::StoreError) -> Reply {
    tracing::error!("{e}");
    Fault::server(
        version,
        SmevFault::SmevFailure,
        "the node could not store the message; retry later",
    )
    .with_status(503)
    .into()
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
