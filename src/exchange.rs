//! One SOAP call end to end: the blocking decision (`provider`), then the durable write and the reply.
//! An acknowledgement is sent only after the message is committed; it must not parse HTTP or run SQL itself.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::config::ReplyMode;
use crate::consumer;
use crate::delivery::Delivery;
use crate::node::Node;
use crate::provider::{self, Next, Reply, Step};
use crate::soap::reply::{self, Metadata, Participant};
use crate::soap::{Fault, SmevFault, Version};
use crate::storage::outbox::{AnswerRecorded, Channel};
use crate::storage::{self, Inserted, StoreError};

mod pool;
pub use pool::CpuPool;

/// Handles one POSTed SOAP body and counts it. The blocking work runs on `cpu`.
pub async fn handle(node: &Arc<Node>, delivery: &Delivery, cpu: &CpuPool, body: Bytes) -> Reply {
    let started = std::time::Instant::now();
    let (operation, reply) = decide_and_store(node, delivery, cpu, body).await;
    node.metrics
        .request(operation, reply.outcome, started.elapsed());
    reply
}

/// What the CPU pool hands back to the async side.
enum Decided {
    /// Anything but a received request to store.
    Next(&'static str, Next),
    /// A received request, already through the writer: the pool thread hands the record to the writer
    /// itself, so the async side is woken once per request (after the commit), not twice.
    Stored(Stored),
}

/// A received request after its write: what is needed to answer it.
struct Stored {
    operation: &'static str,
    outcome: Result<Inserted, StoreError>,
    reply: Vec<u8>,
    /// The request to hand to the processing workers (async mode).
    request: Option<Vec<u8>>,
    mode: ReplyMode,
    version: Version,
}

impl Stored {
    /// Our reply when the row is new (it is durable now); what the first copy got when it is a repeat.
    fn answer(self, delivery: &Delivery) -> Reply {
        match self.outcome {
            Ok(Inserted::New(id)) => {
                if let Some(request) = self.request {
                    delivery.enqueue(id, request);
                }
                Reply::ok(self.reply)
            }
            Ok(Inserted::Duplicate(existing)) => {
                provider::repeat_reply(&existing, self.mode, self.version)
            }
            Err(e) => provider::store_fault(self.version, &e),
        }
    }
}

/// Decides on the pool; a request to store goes from there to the writer, and is answered after the commit.
fn decide_on_pool(node: Arc<Node>, body: Bytes, done: oneshot::Sender<Decided>) {
    let (operation, step) = provider::receive(&node, &body);
    let (record, reply, process, mode) = match step {
        Step::Store {
            record,
            reply,
            process,
            mode,
        } => (record, reply, process, mode),
        Step::Then(next) => {
            let _ = done.send(Decided::Next(operation, next));
            return;
        }
    };
    let version = Version::ALL
        .into_iter()
        .find(|v| v.as_str() == record.version)
        .unwrap_or(Version::NEWEST);
    let request = process.then(|| record.request.clone());
    node.store.insert_incoming_then(*record, move |outcome| {
        let stored = Stored {
            operation,
            outcome,
            reply,
            request,
            mode,
            version,
        };
        let _ = done.send(Decided::Stored(stored));
    });
}

async fn decide_and_store(
    node: &Arc<Node>,
    delivery: &Delivery,
    cpu: &CpuPool,
    body: Bytes,
) -> (&'static str, Reply) {
    let (done, decided) = oneshot::channel();
    let job_node = node.clone();
    cpu.execute(move || decide_on_pool(job_node, body, done));
    let (operation, next) = match decided.await {
        Ok(Decided::Next(operation, next)) => (operation, next),
        Ok(Decided::Stored(stored)) => return (stored.operation, stored.answer(delivery)),
        // The job panicked (the pool logged it) or the writer went away before answering.
        Err(_) => return ("unknown", internal_error()),
    };
    let reply = match next {
        Next::Reply(reply) => reply,
        Next::Lease { version } => lease(node, version).await,
        Next::Ack {
            version,
            response_message_id,
            accepted,
        } => match node.store.acknowledge(response_message_id, accepted).await {
            Ok(true) => {
                let mut body = Vec::with_capacity(256);
                reply::write_ack_response(&mut body, version);
                Reply::ok(body)
            }
            Ok(false) => Fault::client(
                version,
                SmevFault::TargetMessageIsNotFound,
                "no response with this MessageID is waiting for an Ack",
            )
            .into(),
            Err(e) => provider::store_fault(version, &e),
        },
        Next::Answer {
            version,
            to,
            response_message_id,
            sender,
            signed_by,
            kind,
            body,
        } => {
            let recorded = node
                .store
                .record_answer(
                    to.clone(),
                    response_message_id.clone(),
                    kind,
                    body.clone(),
                    signed_by,
                )
                .await;
            match recorded {
                Ok(AnswerRecorded::Unmatched) => {
                    tracing::warn!(message_id = %to, "a response answers no request of this node");
                    Fault::client(
                        version,
                        SmevFault::TargetMessageIsNotFound,
                        "this node sent no request with the MessageID in To",
                    )
                    .into()
                }
                Ok(recorded) => {
                    if let AnswerRecorded::New {
                        message,
                        channel: Some(channel),
                        ..
                    } = &recorded
                        && channel == Channel::Folder.as_str()
                    {
                        hand_back_to_folder(node, *message, &to, &response_message_id, &body).await;
                    }
                    answer_ack(node, version, &response_message_id, &sender)
                }
                Err(e) => provider::store_fault(version, &e),
            }
        }
    };
    (operation, reply)
}

fn internal_error() -> Reply {
    Fault::server(
        Version::NEWEST,
        SmevFault::SmevFailure,
        "internal error while processing the request",
    )
    .into()
}

/// `SendResponseResponse`: the answer is stored.
fn answer_ack(node: &Node, version: Version, response_message_id: &str, sender: &str) -> Reply {
    let now = storage::rfc3339(storage::now_millis());
    let metadata = Metadata {
        message_id: response_message_id,
        message_type: "RESPONSE",
        sender: Participant {
            mnemonic: sender,
            name: "identified by its signature",
        },
        recipient: Participant {
            mnemonic: &node.config.node.mnemonic,
            name: &node.config.node.name,
        },
        sending_timestamp: &now,
        delivery_timestamp: &now,
        status: "responseIsDelivered",
    };
    let mut body = Vec::with_capacity(1024);
    reply::write_send_response_response(&mut body, version, &metadata);
    Reply::ok(body)
}

/// Writes the answer into the drop folder's incoming/ (atomically) and records that it was handed back.
async fn hand_back_to_folder(
    node: &Arc<Node>,
    message: i64,
    to: &str,
    response_message_id: &str,
    body: &[u8],
) {
    let Some(root) = node.config.consumer.folder.clone() else {
        return;
    };
    let (to, response_id, payload) = (
        to.to_string(),
        response_message_id.to_string(),
        consumer::answer_payload(body),
    );
    let written = tokio::task::spawn_blocking(move || {
        let folder = consumer::Folder::new(&root);
        folder.create()?;
        let first = format!("{to}.xml");
        let name = if folder.incoming.join(&first).exists() {
            format!("{to}.{response_id}.xml")
        } else {
            first
        };
        consumer::write_atomically(&folder.incoming, &name, payload.as_bytes())
    })
    .await;
    match written {
        Ok(Ok(())) => {
            if let Err(e) = node.store.mark_handed_back(message).await {
                tracing::error!("cannot record that an answer was handed back: {e}");
            }
        }
        Ok(Err(e)) => tracing::error!("cannot write an answer into the drop folder: {e}"),
        Err(e) => tracing::error!("writing an answer panicked: {e}"),
    }
}

/// GetResponse: the oldest ready response, leased for `delivery.pull_visibility`.
async fn lease(node: &Arc<Node>, version: Version) -> Reply {
    let leased = match node
        .store
        .lease_next_response(node.config.delivery.pull_visibility)
        .await
    {
        Ok(l) => l,
        Err(e) => return provider::store_fault(version, &e),
    };
    let mut body = Vec::with_capacity(2048);
    let Some(leased) = leased else {
        reply::write_get_response_response(&mut body, version, None);
        return Reply::ok(body);
    };
    let Some((data, response_id)) = response_data(&leased.response) else {
        tracing::error!(message_id = %leased.original_message_id, "a stored response is unreadable");
        return Fault::server(
            version,
            SmevFault::SmevFailure,
            "a stored response is unreadable",
        )
        .into();
    };
    let now = storage::rfc3339(storage::now_millis());
    let metadata = Metadata {
        message_id: &response_id,
        message_type: "RESPONSE",
        sender: Participant {
            mnemonic: &node.config.node.mnemonic,
            name: &node.config.node.name,
        },
        recipient: Participant {
            mnemonic: &leased.sender,
            name: "identified by its signature",
        },
        sending_timestamp: &now,
        delivery_timestamp: &now,
        status: "responseIsQueued",
    };
    reply::write_get_response_response(
        &mut body,
        version,
        Some((&leased.original_message_id, &data, &metadata)),
    );
    Reply::ok(body)
}

/// The stored SenderProvidedResponseData element's bytes and its MessageID.
fn response_data(stored: &[u8]) -> Option<(Vec<u8>, String)> {
    let text = std::str::from_utf8(stored).ok()?;
    let doc = roxmltree::Document::parse(text).ok()?;
    let data = doc
        .descendants()
        .find(|n| n.tag_name().name() == "SenderProvidedResponseData")?;
    let id = data
        .children()
        .find(|n| n.tag_name().name() == "MessageID")?
        .text()?
        .to_string();
    Some((text[data.range()].as_bytes().to_vec(), id))
}
