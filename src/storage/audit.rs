//! The tamper-evident audit journal: every status change, decision and admin action, hash-chained.
//! Entries are appended inside the same transaction as the change they record; nothing here edits them.

use std::io::Write;

use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use super::{Store, StoreError, now_millis, rfc3339};

/// The hash before the first entry.
const GENESIS: [u8; 32] = [0u8; 32];

/// Appends one entry chained to the previous one. Runs on the writer's connection, inside its transaction.
pub fn append(
    c: &Connection,
    message_id: Option<&str>,
    event: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    let last: Option<(i64, Vec<u8>)> = c
        .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (seq, prev) = match last {
        Some((seq, hash)) => (seq + 1, hash),
        None => (1, GENESIS.to_vec()),
    };
    let at = now_millis();
    let hash = entry_hash(&prev, seq, at, message_id, event, detail);
    c.prepare_cached("INSERT INTO audit (seq, at, message_id, event, detail, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?
        .execute(params![seq, at, message_id, event, detail, prev, hash.as_slice()])?;
    Ok(())
}

/// SHA-256 over the previous hash and every field, each length-prefixed so fields cannot run into each other.
fn entry_hash(
    prev: &[u8],
    seq: i64,
    at: i64,
    message_id: Option<&str>,
    event: &str,
    detail: Option<&str>,
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(at.to_be_bytes());
    for field in [message_id, Some(event), detail] {
        match field {
            Some(text) => {
                h.update([1u8]);
                h.update((text.len() as u64).to_be_bytes());
                h.update(text.as_bytes());
            }
            None => h.update([0u8]),
        }
    }
    h.finalize().into()
}

/// The result of `audit verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub entries: u64,
    /// Hex of the last entry's hash: record it elsewhere to detect a truncated tail later.
    pub last_hash: String,
    /// The first entry that breaks the chain, and why.
    pub first_bad: Option<(i64, String)>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Entry {
    seq: i64,
    at: i64,
    message_id: Option<String>,
    event: String,
    detail: Option<String>,
    prev: Vec<u8>,
    hash: Vec<u8>,
}

fn entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    Ok(Entry {
        seq: r.get(0)?,
        at: r.get(1)?,
        message_id: r.get(2)?,
        event: r.get(3)?,
        detail: r.get(4)?,
        prev: r.get(5)?,
        hash: r.get(6)?,
    })
}

const ENTRY_COLUMNS: &str = "seq, at, message_id, event, detail, prev_hash, hash";

impl Store {
    /// Walks the whole journal: detects an edited, deleted, inserted or reordered entry and names the first.
    pub fn audit_verify(&self) -> Result<Verification, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!("SELECT {ENTRY_COLUMNS} FROM audit ORDER BY seq"))?;
            let mut rows = stmt.query([])?;
            let mut expected_prev = GENESIS.to_vec();
            let mut expected_seq = 1i64;
            let mut entries = 0u64;
            while let Some(row) = rows.next()? {
                let e = entry(row)?;
                entries += 1;
                let bad = if e.seq != expected_seq {
                    Some(format!(
                        "sequence jumps from {} to {}: entries are missing",
                        expected_seq - 1,
                        e.seq
                    ))
                } else if e.prev != expected_prev {
                    Some(
                        "it does not follow the entry before it (deleted, inserted or reordered)"
                            .to_string(),
                    )
                } else if entry_hash(
                    &e.prev,
                    e.seq,
                    e.at,
                    e.message_id.as_deref(),
                    &e.event,
                    e.detail.as_deref(),
                )
                .as_slice()
                    != e.hash
                {
                    Some("its content does not match its hash (edited)".to_string())
                } else {
                    None
                };
                if let Some(reason) = bad {
                    return Ok(Verification {
                        entries,
                        last_hash: hex(&e.hash),
                        first_bad: Some((e.seq, reason)),
                    });
                }
                expected_prev = e.hash;
                expected_seq += 1;
            }
            Ok(Verification {
                entries,
                last_hash: hex(&expected_prev),
                first_bad: None,
            })
        })
    }

    /// Writes entries with `from <= at < to` (ms) as JSON lines. Returns how many.
    pub fn audit_export(&self, from: i64, to: i64, out: &mut dyn Write) -> Result<u64, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {ENTRY_COLUMNS} FROM audit WHERE at >= ?1 AND at < ?2 ORDER BY seq"
            ))?;
            let mut rows = stmt.query(params![from, to])?;
            let mut n = 0;
            while let Some(row) = rows.next()? {
                let e = entry(row)?;
                let line = serde_json::json!({
                    "seq": e.seq,
                    "at": rfc3339(e.at),
                    "message_id": e.message_id,
                    "event": e.event,
                    "detail": e.detail,
                    "prev_hash": hex(&e.prev),
                    "hash": hex(&e.hash),
                });
                writeln!(out, "{line}")
                    .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
                n += 1;
            }
            Ok(n)
        })
    }
}
