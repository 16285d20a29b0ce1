//! This node's own requests (the consumer side): queueing them, matching answers, reading them back.
//! It stores and looks up; building envelopes and talking to the gateway belong elsewhere.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Status, Store, StoreError, audit, history, now_millis};

/// Where an outgoing request came from, so its answer goes back the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Cli,
    Api,
    Folder,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Cli => "cli",
            Channel::Api => "api",
            Channel::Folder => "folder",
        }
    }
}

/// A request this node sends, ready to queue.
#[derive(Debug, Clone)]
pub struct NewOutgoing {
    pub sender: String,
    pub message_id: String,
    pub version: &'static str,
    /// Comma-separated recipients; empty = routed by the gateway.
    pub recipient: String,
    /// The complete SendRequestRequest envelope.
    pub request: Vec<u8>,
    pub channel: Channel,
    pub channel_ref: Option<String>,
    pub deadline_at: Option<i64>,
}

/// What kind of answer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    Data,
    Rejected,
    /// RequestStatus / AsyncProcessingStatus: recorded, the request stays open.
    Status,
}

impl AnswerKind {
    fn as_str(self) -> &'static str {
        match self {
            AnswerKind::Data => "data",
            AnswerKind::Rejected => "rejected",
            AnswerKind::Status => "status",
        }
    }
}

/// The result of recording an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerRecorded {
    /// No outgoing request has this MessageID.
    Unmatched,
    /// Already had it (a redelivery): nothing changed.
    Repeat,
    New {
        message: i64,
        channel: Option<String>,
        channel_ref: Option<String>,
    },
}

/// One answer to an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub response_message_id: String,
    pub kind: String,
    pub body: Vec<u8>,
    pub received_at: i64,
}

/// An outgoing request with its answers.
#[derive(Debug, Clone)]
pub struct OutgoingView {
    pub message_id: String,
    pub status: String,
    pub recipient: Option<String>,
    pub history: Vec<(i64, String, Option<String>)>,
    pub answers: Vec<Answer>,
}

fn insert(c: &Connection, o: &NewOutgoing) -> rusqlite::Result<i64> {
    let now = now_millis();
    c.prepare_cached(
        "INSERT INTO message (direction, sender, message_id, version, status, created_at, updated_at, deadline_at,
                              request, recipient, channel, channel_ref, next_attempt_at)
         VALUES ('outgoing', ?1, ?2, ?3, 'QUEUED', ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?4)",
    )?
    .execute(params![
        o.sender,
        o.message_id,
        o.version,
        now,
        o.deadline_at,
        o.request,
        o.recipient,
        o.channel.as_str(),
        o.channel_ref
    ])?;
    let id = c.last_insert_rowid();
    let detail = if o.recipient.is_empty() {
        format!("queued via {}", o.channel.as_str())
    } else {
        format!("queued via {} for {}", o.channel.as_str(), o.recipient)
    };
    history(c, id, Status::Queued, now, Some(&detail))?;
    Ok(id)
}

fn record(
    c: &Connection,
    to: &str,
    response_message_id: &str,
    kind: AnswerKind,
    body: &[u8],
    signer: &str,
) -> rusqlite::Result<AnswerRecorded> {
    let found: Option<(i64, Option<String>, Option<String>)> = c
        .prepare_cached("SELECT id, channel, channel_ref FROM message WHERE direction = 'outgoing' AND message_id = ?1")?
        .query_row(params![to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((message, channel, channel_ref)) = found else {
        audit::append(
            c,
            Some(to),
            "UNMATCHED_RESPONSE",
            Some(&format!(
                "response {response_message_id} answers no request of this node"
            )),
        )?;
        return Ok(AnswerRecorded::Unmatched);
    };
    let now = now_millis();
    let inserted = c
        .prepare_cached(
            "INSERT INTO answer (message, response_message_id, kind, body, received_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (message, response_message_id) DO NOTHING",
        )?
        .execute(params![message, response_message_id, kind.as_str(), body, now])?;
    if inserted == 0 {
        return Ok(AnswerRecorded::Repeat);
    }
    let (status, detail) = match kind {
        AnswerKind::Data => (
            Status::Answered,
            format!("answer {response_message_id} received {signer}"),
        ),
        AnswerKind::Rejected => (
            Status::Rejected,
            format!("rejection {response_message_id} received {signer}"),
        ),
        AnswerKind::Status => (
            Status::Sent,
            format!("status notice {response_message_id} received {signer}"),
        ),
    };
    c.prepare_cached("UPDATE message SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![message, status.as_str(), now])?;
    history(c, message, status, now, Some(&detail))?;
    Ok(AnswerRecorded::New {
        message,
        channel,
        channel_ref,
    })
}

impl Store {
    /// Queues an outgoing request (async callers). Returns its row id.
    pub async fn queue_outgoing(&self, o: NewOutgoing) -> Result<i64, StoreError> {
        self.writer().write(move |c| insert(c, &o)).await
    }

    /// Queues an outgoing request from outside the runtime (the `send` CLI).
    pub fn queue_outgoing_blocking(&self, o: NewOutgoing) -> Result<i64, StoreError> {
        self.writer().write_blocking(move |c| insert(c, &o))
    }

    /// Records an answer addressed `to` one of this node's requests; a repeat changes nothing.
    /// `signer` says who signed it and how it was verified (for the message's history).
    pub async fn record_answer(
        &self,
        to: String,
        response_message_id: String,
        kind: AnswerKind,
        body: Vec<u8>,
        signer: String,
    ) -> Result<AnswerRecorded, StoreError> {
        self.writer()
            .write(move |c| record(c, &to, &response_message_id, kind, &body, &signer))
            .await
    }

    /// Marks an answer as handed back to its channel (and the request CLOSED once all are).
    pub async fn mark_handed_back(&self, message: i64) -> Result<(), StoreError> {
        self.writer()
            .write(move |c| {
                c.prepare_cached("UPDATE answer SET handed_back = 1 WHERE message = ?1")?
                    .execute(params![message])?;
                let status: String = c.query_row(
                    "SELECT status FROM message WHERE id = ?1",
                    params![message],
                    |r| r.get(0),
                )?;
                if status == Status::Answered.as_str() {
                    let now = now_millis();
                    c.prepare_cached(
                        "UPDATE message SET status = 'CLOSED', updated_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![message, now])?;
                    history(
                        c,
                        message,
                        Status::Closed,
                        now,
                        Some("the answer was handed back to the local system"),
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// An outgoing request by MessageID, with its history and answers.
    pub fn outgoing(&self, message_id: &str) -> Result<Option<OutgoingView>, StoreError> {
        self.read(|c| {
            let found: Option<(i64, String, Option<String>)> = c
                .query_row(
                    "SELECT id, status, recipient FROM message WHERE direction = 'outgoing' AND message_id = ?1",
                    params![message_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let Some((id, status, recipient)) = found else { return Ok(None) };
            let mut h = c.prepare("SELECT at, status, detail FROM status_history WHERE message = ?1 ORDER BY id")?;
            let history = h.query_map(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut a = c.prepare("SELECT response_message_id, kind, body, received_at FROM answer WHERE message = ?1 ORDER BY id")?;
            let answers = a
                .query_map(params![id], |r| Ok(Answer { response_message_id: r.get(0)?, kind: r.get(1)?, body: r.get(2)?, received_at: r.get(3)? }))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(Some(OutgoingView { message_id: message_id.to_string(), status, recipient, history, answers }))
        })
    }

    /// Outgoing requests, newest first, optionally with one status: (MessageID, status, recipient).
    pub fn outgoing_list(
        &self,
        status: Option<Status>,
        limit: usize,
    ) -> Result<Vec<(String, String, Option<String>)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT message_id, status, recipient FROM message WHERE direction = 'outgoing' AND (?1 IS NULL OR status = ?1)
                 ORDER BY id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![status.map(Status::as_str), limit as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
    }
}
