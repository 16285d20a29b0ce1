//! Typed views of the SMEV envelopes the node receives, borrowed from the parsed document.
//! It checks structure only; signatures are carried as nodes here and never claimed verified.

use roxmltree::{Document, Node};

use super::{DS_NS, MessageId, MessageIdError, SOAP11_NS, SOAP12_NS, Version};
use crate::xml::{Position, node_position};

/// A SOAP 1.1 envelope holding one SMEV operation.
#[derive(Debug)]
pub struct Envelope<'a, 'i> {
    pub version: Version,
    pub operation: Operation<'a, 'i>,
}

/// The operations a node's `/ws` endpoint accepts (DESIGN §3).
#[derive(Debug)]
pub enum Operation<'a, 'i> {
    SendRequest(SendRequest<'a, 'i>),
    SendResponse(SendResponse<'a, 'i>),
    GetStatus(GetStatus<'a, 'i>),
    GetResponse(GetResponse<'a, 'i>),
    Ack(Ack<'a, 'i>),
}

impl Operation<'_, '_> {
    pub fn name(&self) -> &'static str {
        match self {
            Operation::SendRequest(_) => "SendRequest",
            Operation::SendResponse(_) => "SendResponse",
            Operation::GetStatus(_) => "GetStatus",
            Operation::GetResponse(_) => "GetResponse",
            Operation::Ack(_) => "Ack",
        }
    }
}

/// `SendRequestRequest`: a request for this agency's data.
#[derive(Debug)]
pub struct SendRequest<'a, 'i> {
    /// `SenderProvidedRequestData`, the element the caller signs.
    pub request_data: Node<'a, 'i>,
    pub id: Option<&'a str>,
    pub message_id: MessageId,
    pub reference_message_id: Option<MessageId>,
    pub transaction_code: Option<&'a str>,
    pub node_id: Option<&'a str>,
    pub eol: Option<&'a str>,
    /// The single business element inside `MessagePrimaryContent`; it selects the mapping.
    pub content: Node<'a, 'i>,
    pub personal_signature: Option<Node<'a, 'i>>,
    pub attachment_headers: Option<Node<'a, 'i>>,
    pub ref_attachment_headers: Option<Node<'a, 'i>>,
    pub business_process_metadata: Option<Node<'a, 'i>>,
    pub test_message: bool,
    pub attachment_content: Option<Node<'a, 'i>>,
    /// The `ds:Signature` inside `CallerInformationSystemSignature`, unverified.
    pub caller_signature: Option<Node<'a, 'i>>,
}

/// `SendResponseRequest`: the answer to a request this node sent.
#[derive(Debug)]
pub struct SendResponse<'a, 'i> {
    pub response_data: Node<'a, 'i>,
    pub id: Option<&'a str>,
    pub message_id: MessageId,
    pub to: &'a str,
    pub content: ResponseContent<'a, 'i>,
    pub attachment_content: Option<Node<'a, 'i>>,
    pub caller_signature: Option<Node<'a, 'i>>,
}

/// What a `SenderProvidedResponseData` carries.
#[derive(Debug)]
pub enum ResponseContent<'a, 'i> {
    Primary(Node<'a, 'i>),
    Rejected(Vec<Rejection<'a>>),
    Status {
        code: &'a str,
        description: &'a str,
    },
    AsyncStatus {
        original_message_id: &'a str,
        category: &'a str,
        details: Option<&'a str>,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct Rejection<'a> {
    /// Kept as text: gateways send codes newer than the schema.
    pub code: &'a str,
    pub description: &'a str,
}

/// `GetStatusRequest`: the status of a message by MessageID.
#[derive(Debug)]
pub struct GetStatus<'a, 'i> {
    /// The message asked about; absent in the gateway's Timestamp-only form.
    pub message_id: Option<MessageId>,
    pub timestamp: Option<&'a str>,
    /// The element the caller's signature covers: MessageReference, else Timestamp.
    pub signed: Node<'a, 'i>,
    pub caller_signature: Option<Node<'a, 'i>>,
}

/// `GetResponseRequest`: pull the oldest ready answer.
#[derive(Debug)]
pub struct GetResponse<'a, 'i> {
    pub selector: Node<'a, 'i>,
    pub namespace_uri: Option<&'a str>,
    pub root_element_local_name: Option<&'a str>,
    pub timestamp: &'a str,
    pub node_id: Option<&'a str>,
    pub caller_signature: Option<Node<'a, 'i>>,
}

/// `AckRequest`: the gateway took an answer.
#[derive(Debug)]
pub struct Ack<'a, 'i> {
    pub target: Node<'a, 'i>,
    pub message_id: MessageId,
    pub accepted: bool,
    pub caller_signature: Option<Node<'a, 'i>>,
}

/// Why a well-formed document is not an envelope the node can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error(
        "SOAP 1.2 envelopes are not supported; send SOAP 1.1 (namespace {SOAP11_NS}) as text/xml"
    )]
    Soap12,
    #[error("the root element must be soap:Envelope in namespace {SOAP11_NS}, found {found}")]
    NotAnEnvelope { found: String },
    #[error("soap:Envelope has no soap:Body")]
    NoBody,
    #[error("soap:Body must hold exactly one element, found {found}")]
    BodyChildren { found: usize },
    #[error(
        "unknown operation {found}: expected SendRequestRequest, SendResponseRequest, GetStatusRequest, GetResponseRequest or AckRequest in an SMEV types namespace 1.1, 1.2 or 1.3"
    )]
    UnknownOperation { found: String },
    #[error("{parent} has no {element}")]
    Missing {
        parent: &'static str,
        element: &'static str,
    },
    #[error("{parent} holds more than one {element}")]
    Duplicate {
        parent: &'static str,
        element: &'static str,
    },
    #[error("{element} must hold exactly one element, found {found}")]
    ExpectedOneElement { element: &'static str, found: usize },
    #[error("{element} has an unexpected value `{value}`")]
    BadValue {
        element: &'static str,
        value: String,
    },
    #[error("{error} (at {position})")]
    MessageId {
        error: MessageIdError,
        position: Position,
    },
}

type Result<T> = std::result::Result<T, EnvelopeError>;

/// Reads the SMEV operation out of a parsed SOAP document.
pub fn parse<'a, 'i>(doc: &'a Document<'i>) -> Result<Envelope<'a, 'i>> {
    let root = doc.root_element();
    let ns = root.tag_name().namespace().unwrap_or("");
    if root.tag_name().name() == "Envelope" && ns == SOAP12_NS {
        return Err(EnvelopeError::Soap12);
    }
    if root.tag_name().name() != "Envelope" || ns != SOAP11_NS {
        return Err(EnvelopeError::NotAnEnvelope { found: qname(root) });
    }
    let body = root
        .children()
        .find(|n| {
            n.is_element()
                && n.tag_name().name() == "Body"
                && n.tag_name().namespace() == Some(SOAP11_NS)
        })
        .ok_or(EnvelopeError::NoBody)?;
    let mut elements = body.children().filter(Node::is_element);
    let (Some(op), None) = (elements.next(), elements.next()) else {
        return Err(EnvelopeError::BodyChildren {
            found: body.children().filter(Node::is_element).count(),
        });
    };
    let version = op
        .tag_name()
        .namespace()
        .and_then(Version::from_types_ns)
        .ok_or_else(|| EnvelopeError::UnknownOperation { found: qname(op) })?;
    let cx = Cx { doc, version };
    let operation = match op.tag_name().name() {
        "SendRequestRequest" => Operation::SendRequest(cx.send_request(op)?),
        "SendResponseRequest" => Operation::SendResponse(cx.send_response(op)?),
        "GetStatusRequest" => Operation::GetStatus(cx.get_status(op)?),
        "GetResponseRequest" => Operation::GetResponse(cx.get_response(op)?),
        "AckRequest" => Operation::Ack(cx.ack(op)?),
        _ => return Err(EnvelopeError::UnknownOperation { found: qname(op) }),
    };
    Ok(Envelope { version, operation })
}

/// The version of the operation element, when it can be told even from a document that fails [`parse`].
pub fn sniff_version(doc: &Document<'_>) -> Option<Version> {
    doc.descendants()
        .filter(Node::is_element)
        .take(8)
        .find_map(|n| n.tag_name().namespace().and_then(Version::from_types_ns))
}

fn qname(n: Node<'_, '_>) -> String {
    match n.tag_name().namespace() {
        Some(ns) => format!("{{{ns}}}{}", n.tag_name().name()),
        None => n.tag_name().name().to_string(),
    }
}

/// Parsing context: the document (for positions) and the caller's version.
struct Cx<'a, 'i> {
    doc: &'a Document<'i>,
    version: Version,
}

impl<'a, 'i> Cx<'a, 'i> {
    fn is_types(&self, n: Node<'_, '_>, name: &str) -> bool {
        n.is_element()
            && n.tag_name().name() == name
            && n.tag_name().namespace() == Some(self.version.types_ns())
    }

    fn is_basic(n: Node<'_, '_>, name: &str) -> bool {
        n.is_element()
            && n.tag_name().name() == name
            && n.tag_name().namespace().is_some_and(Version::is_basic_ns)
    }

    /// The only child matching `pred`, if any; two are an error.
    fn optional(
        parent: Node<'a, 'i>,
        parent_name: &'static str,
        element: &'static str,
        pred: impl Fn(Node<'_, '_>) -> bool,
    ) -> Result<Option<Node<'a, 'i>>> {
        let mut found = parent.children().filter(|n| pred(*n));
        match (found.next(), found.next()) {
            (first, None) => Ok(first),
            _ => Err(EnvelopeError::Duplicate {
                parent: parent_name,
                element,
            }),
        }
    }

    fn required(
        parent: Node<'a, 'i>,
        parent_name: &'static str,
        element: &'static str,
        pred: impl Fn(Node<'_, '_>) -> bool,
    ) -> Result<Node<'a, 'i>> {
        Self::optional(parent, parent_name, element, pred)?.ok_or(EnvelopeError::Missing {
            parent: parent_name,
            element,
        })
    }

    fn types_child(
        &self,
        parent: Node<'a, 'i>,
        parent_name: &'static str,
        name: &'static str,
    ) -> Result<Option<Node<'a, 'i>>> {
        Self::optional(parent, parent_name, name, |n| self.is_types(n, name))
    }

    fn types_text(
        &self,
        parent: Node<'a, 'i>,
        parent_name: &'static str,
        name: &'static str,
    ) -> Result<Option<&'a str>> {
        Ok(self
            .types_child(parent, parent_name, name)?
            .map(|n| n.text().unwrap_or("").trim()))
    }

    fn message_id(&self, node: Node<'a, 'i>) -> Result<MessageId> {
        MessageId::parse(node.text().unwrap_or("")).map_err(|error| EnvelopeError::MessageId {
            error,
            position: node_position(self.doc, node),
        })
    }

    fn required_message_id(
        &self,
        parent: Node<'a, 'i>,
        parent_name: &'static str,
    ) -> Result<MessageId> {
        let node =
            self.types_child(parent, parent_name, "MessageID")?
                .ok_or(EnvelopeError::Missing {
                    parent: parent_name,
                    element: "MessageID",
                })?;
        self.message_id(node)
    }

    /// The `ds:Signature` inside a `CallerInformationSystemSignature` child, if present.
    fn caller_signature(
        &self,
        op: Node<'a, 'i>,
        op_name: &'static str,
    ) -> Result<Option<Node<'a, 'i>>> {
        let Some(holder) = self.types_child(op, op_name, "CallerInformationSystemSignature")?
        else {
            return Ok(None);
        };
        Self::optional(
            holder,
            "CallerInformationSystemSignature",
            "ds:Signature",
            is_signature,
        )
    }

    fn only_element(node: Node<'a, 'i>, element: &'static str) -> Result<Node<'a, 'i>> {
        let mut children = node.children().filter(Node::is_element);
        match (children.next(), children.next()) {
            (Some(only), None) => Ok(only),
            _ => Err(EnvelopeError::ExpectedOneElement {
                element,
                found: node.children().filter(Node::is_element).count(),
            }),
        }
    }

    fn send_request(&self, op: Node<'a, 'i>) -> Result<SendRequest<'a, 'i>> {
        const OP: &str = "SendRequestRequest";
        const DATA: &str = "SenderProvidedRequestData";
        let data = self
            .types_child(op, OP, DATA)?
            .ok_or(EnvelopeError::Missing {
                parent: OP,
                element: DATA,
            })?;
        let message_id = self.required_message_id(data, DATA)?;
        let reference_message_id = match self.types_child(data, DATA, "ReferenceMessageID")? {
            Some(n) => Some(self.message_id(n)?),
            None => None,
        };
        let transaction_code = self.types_text(data, DATA, "TransactionCode")?;
        if let Some(code) = transaction_code
            && code.chars().count() > 1500
        {
            return Err(EnvelopeError::BadValue {
                element: "TransactionCode",
                value: format!("{}…", code.chars().take(40).collect::<String>()),
            });
        }
        let primary = Self::required(data, DATA, "MessagePrimaryContent", |n| {
            Self::is_basic(n, "MessagePrimaryContent")
        })?;
        let content = Self::only_element(primary, "MessagePrimaryContent")?;
        let personal_signature = match self.types_child(data, DATA, "PersonalSignature")? {
            Some(holder) => {
                Self::optional(holder, "PersonalSignature", "ds:Signature", is_signature)?
            }
            None => None,
        };
        Ok(SendRequest {
            request_data: data,
            id: data.attribute("Id"),
            message_id,
            reference_message_id,
            transaction_code,
            node_id: self.types_text(data, DATA, "NodeID")?,
            eol: self.types_text(data, DATA, "EOL")?,
            content,
            personal_signature,
            attachment_headers: Self::optional(data, DATA, "AttachmentHeaderList", |n| {
                Self::is_basic(n, "AttachmentHeaderList")
            })?,
            ref_attachment_headers: Self::optional(data, DATA, "RefAttachmentHeaderList", |n| {
                Self::is_basic(n, "RefAttachmentHeaderList")
            })?,
            business_process_metadata: self.types_child(data, DATA, "BusinessProcessMetadata")?,
            test_message: self.types_child(data, DATA, "TestMessage")?.is_some(),
            attachment_content: Self::optional(op, OP, "AttachmentContentList", |n| {
                Self::is_basic(n, "AttachmentContentList")
            })?,
            caller_signature: self.caller_signature(op, OP)?,
        })
    }

    fn send_response(&self, op: Node<'a, 'i>) -> Result<SendResponse<'a, 'i>> {
        const OP: &str = "SendResponseRequest";
        const DATA: &str = "SenderProvidedResponseData";
        let data = self
            .types_child(op, OP, DATA)?
            .ok_or(EnvelopeError::Missing {
                parent: OP,
                element: DATA,
            })?;
        let message_id = self.required_message_id(data, DATA)?;
        let to = self
            .types_text(data, DATA, "To")?
            .ok_or(EnvelopeError::Missing {
                parent: DATA,
                element: "To",
            })?;
        let content = if let Some(primary) =
            Self::optional(data, DATA, "MessagePrimaryContent", |n| {
                Self::is_basic(n, "MessagePrimaryContent")
            })? {
            ResponseContent::Primary(Self::only_element(primary, "MessagePrimaryContent")?)
        } else if let Some(status) = self.types_child(data, DATA, "RequestStatus")? {
            ResponseContent::Status {
                code: self
                    .types_text(status, "RequestStatus", "StatusCode")?
                    .unwrap_or(""),
                description: self
                    .types_text(status, "RequestStatus", "StatusDescription")?
                    .unwrap_or(""),
            }
        } else if let Some(status) = self.types_child(data, DATA, "AsyncProcessingStatus")? {
            const S: &str = "AsyncProcessingStatus";
            ResponseContent::AsyncStatus {
                original_message_id: self.types_text(status, S, "OriginalMessageId")?.ok_or(
                    EnvelopeError::Missing {
                        parent: S,
                        element: "OriginalMessageId",
                    },
                )?,
                category: self.types_text(status, S, "StatusCategory")?.ok_or(
                    EnvelopeError::Missing {
                        parent: S,
                        element: "StatusCategory",
                    },
                )?,
                details: self.types_text(status, S, "StatusDetails")?,
            }
        } else {
            let rejections: Vec<Rejection<'a>> = data
                .children()
                .filter(|n| self.is_types(*n, "RequestRejected"))
                .map(|r| {
                    Ok(Rejection {
                        code: self
                            .types_text(r, "RequestRejected", "RejectionReasonCode")?
                            .ok_or(EnvelopeError::Missing {
                                parent: "RequestRejected",
                                element: "RejectionReasonCode",
                            })?,
                        description: self
                            .types_text(r, "RequestRejected", "RejectionReasonDescription")?
                            .unwrap_or(""),
                    })
                })
                .collect::<Result<_>>()?;
            if rejections.is_empty() {
                return Err(EnvelopeError::Missing {
                    parent: DATA,
                    element: "MessagePrimaryContent, RequestRejected, RequestStatus or AsyncProcessingStatus",
                });
            }
            ResponseContent::Rejected(rejections)
        };
        Ok(SendResponse {
            response_data: data,
            id: data.attribute("Id"),
            message_id,
            to,
            content,
            attachment_content: Self::optional(op, OP, "AttachmentContentList", |n| {
                Self::is_basic(n, "AttachmentContentList")
            })?,
            caller_signature: self.caller_signature(op, OP)?,
        })
    }

    fn get_status(&self, op: Node<'a, 'i>) -> Result<GetStatus<'a, 'i>> {
        const OP: &str = "GetStatusRequest";
        // The reference is basic:MessageReference in the node's WSDL; a types:MessageID is accepted too.
        let reference = Self::optional(op, OP, "MessageReference", |n| {
            Self::is_basic(n, "MessageReference") || self.is_types(n, "MessageID")
        })?;
        let timestamp = Self::optional(op, OP, "Timestamp", |n| {
            Self::is_basic(n, "Timestamp") || self.is_types(n, "Timestamp")
        })?;
        let Some(signed) = reference.or(timestamp) else {
            return Err(EnvelopeError::Missing {
                parent: OP,
                element: "MessageReference or Timestamp",
            });
        };
        Ok(GetStatus {
            signed,
            message_id: reference.map(|r| self.message_id(r)).transpose()?,
            timestamp: timestamp.map(|n| n.text().unwrap_or("").trim()),
            caller_signature: self.caller_signature(op, OP)?,
        })
    }

    fn get_response(&self, op: Node<'a, 'i>) -> Result<GetResponse<'a, 'i>> {
        const OP: &str = "GetResponseRequest";
        const SEL: &str = "MessageTypeSelector";
        // basic:MessageTypeSelector in the node's WSDL; a types-namespace one is accepted too.
        let selector = Self::optional(op, OP, SEL, |n| {
            Self::is_basic(n, SEL) || self.is_types(n, SEL)
        })?
        .ok_or(EnvelopeError::Missing {
            parent: OP,
            element: SEL,
        })?;
        let basic_text = |name: &'static str| -> Result<Option<&'a str>> {
            Ok(Self::optional(selector, SEL, name, |n| {
                Self::is_basic(n, name) || self.is_types(n, name)
            })?
            .map(|n| n.text().unwrap_or("").trim()))
        };
        Ok(GetResponse {
            selector,
            namespace_uri: basic_text("NamespaceURI")?,
            root_element_local_name: basic_text("RootElementLocalName")?,
            timestamp: basic_text("Timestamp")?.ok_or(EnvelopeError::Missing {
                parent: SEL,
                element: "Timestamp",
            })?,
            node_id: basic_text("NodeID")?,
            caller_signature: self.caller_signature(op, OP)?,
        })
    }

    fn ack(&self, op: Node<'a, 'i>) -> Result<Ack<'a, 'i>> {
        const OP: &str = "AckRequest";
        // basic:AckTargetMessage in the node's WSDL; a types-namespace one is accepted too.
        let target = Self::optional(op, OP, "AckTargetMessage", |n| {
            Self::is_basic(n, "AckTargetMessage") || self.is_types(n, "AckTargetMessage")
        })?
        .ok_or(EnvelopeError::Missing {
            parent: OP,
            element: "AckTargetMessage",
        })?;
        let accepted = match target.attribute("accepted").map(str::trim) {
            None | Some("true") | Some("1") => true,
            Some("false") | Some("0") => false,
            Some(other) => {
                return Err(EnvelopeError::BadValue {
                    element: "AckTargetMessage/@accepted",
                    value: other.to_string(),
                });
            }
        };
        Ok(Ack {
            target,
            message_id: self.message_id(target)?,
            accepted,
            caller_signature: self.caller_signature(op, OP)?,
        })
    }
}

fn is_signature(n: Node<'_, '_>) -> bool {
    n.is_element() && n.tag_name().name() == "Signature" && n.tag_name().namespace() == Some(DS_NS)
}
