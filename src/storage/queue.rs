//! Operator views and actions on the store (`smev-adapter queue ...`), safe on a live node's database.
//! Reads use their own connection; changes go through the writer like the node's own.

use rusqlite::{OptionalExtension, params};

use super::{Status, Store, StoreError, now_millis};

/// One line of `queue list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub id: i64,
    pub direction: String,
    pub sender: String,
    pub message_id: String,
    pub mapping: Option<String>,
    pub status: String,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub deadline_at: Option<i64>,
    pub last_error: Option<String>,
}

impl Summary {
    pub fn overdue(&self, now: i64) -> bool {
        self.deadline_at.is_some_and(|d| d < now)
            && !Status::parse(&self.status).is_some_and(Status::is_final)
    }
}

/// `queue show`: a message, its history and its attempts.
#[derive(Debug, Clone)]
pub struct Detail {
    pub summary: Summary,
    pub response_message_id: Option<String>,
    pub history: Vec<(i64, String, Option<String>)>,
    pub attempts: Vec<(i64, bool, Option<i64>, Option<String>)>,
}

const SUMMARY_COLUMNS: &str = "id, direction, sender, message_id, mapping, status, attempts, created_at, updated_at, deadline_at, last_error";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<Summary> {
    Ok(Summary {
        id: r.get(0)?,
        direction: r.get(1)?,
        sender: r.get(2)?,
        message_id: r.get(3)?,
        mapping: r.get(4)?,
        status: r.get(5)?,
        attempts: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
        deadline_at: r.get(9)?,
        last_error: r.get(10)?,
    })
}

impl Store {
    /// Messages, newest first, optionally with one status or only the overdue ones.
    pub fn list(
        &self,
        status: Option<Status>,
        overdue: bool,
        limit: usize,
    ) -> Result<Vec<Summary>, StoreError> {
        let now = now_millis();
        self.read(|c| {
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS} FROM message
                  WHERE (?1 IS NULL OR status = ?1)
                    AND (?2 = 0 OR (deadline_at IS NOT NULL AND deadline_at < ?3
                                    AND status NOT IN ('DELIVERED', 'REJECTED', 'CLOSED', 'FAILED')))
                  ORDER BY id DESC LIMIT ?4"
            );
            let mut stmt = c.prepare(&sql)?;
            let rows = stmt.query_map(params![status.map(Status::as_str), overdue, now, limit as i64], summary)?;
            rows.collect()
        })
    }

    /// Unfinished messages past their deadline.
    pub fn overdue_count(&self) -> Result<i64, StoreError> {
        let now = now_millis();
        self.read(|c| {
            c.query_row(
                "SELECT count(*) FROM message WHERE deadline_at IS NOT NULL AND deadline_at < ?1
                   AND status NOT IN ('DELIVERED', 'REJECTED', 'CLOSED', 'FAILED')",
                params![now],
                |r| r.get(0),
            )
        })
    }

    /// Counts by status, for the status page and metrics.
    pub fn counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            let mut stmt =
                c.prepare("SELECT status, count(*) FROM message GROUP BY status ORDER BY status")?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// One message by its row id or MessageID.
    pub fn show(&self, key: &str) -> Result<Option<Detail>, StoreError> {
        self.read(|c| {
            let sql = format!("SELECT {SUMMARY_COLUMNS}, response_message_id FROM message WHERE id = ?1 OR message_id = ?2 OR response_message_id = ?2 ORDER BY id DESC LIMIT 1");
            let id_key: i64 = key.parse().unwrap_or(-1);
            let found = c
                .query_row(&sql, params![id_key, key], |r| Ok((summary(r)?, r.get::<_, Option<String>>(11)?)))
                .optional()?;
            let Some((summary, response_message_id)) = found else { return Ok(None) };
            let mut h = c.prepare("SELECT at, status, detail FROM status_history WHERE message = ?1 ORDER BY id")?;
            let history = h.query_map(params![summary.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect::<rusqlite::Result<_>>()?;
            let mut a = c.prepare("SELECT at, ok, http_status, error FROM attempt WHERE message = ?1 ORDER BY id")?;
            let attempts = a.query_map(params![summary.id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?.collect::<rusqlite::Result<_>>()?;
            Ok(Some(Detail { summary, response_message_id, history, attempts }))
        })
    }

    /// Puts FAILED messages back in line for delivery now. `key` is a row id or MessageID; None = every FAILED one.
    /// Returns how many were requeued.
    pub fn retry_blocking(&self, key: Option<String>) -> Result<usize, StoreError> {
        self.writer().write_blocking(move |c| {
            let now = now_millis();
            let ids: Vec<i64> = {
                let mut stmt = c.prepare(
                    "SELECT id FROM message WHERE status = 'FAILED'
                       AND (?1 IS NULL OR id = ?2 OR message_id = ?1)",
                )?;
                let id_key: i64 = key.as_deref().and_then(|k| k.parse().ok()).unwrap_or(-1);
                stmt.query_map(params![key, id_key], |r| r.get(0))?.collect::<rusqlite::Result<_>>()?
            };
            if ids.is_empty() {
                super::audit::append(c, None, "ADMIN_RETRY", Some("nothing to retry"))?;
            }
            for id in &ids {
let sendable: bool = c.query_row(
                    "SELECT response IS NOT NULL OR direction = 'outgoing' FROM message WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )?;
                let to = if sendable { Status::WaitingForRetry } else { Status::Received };
                c.execute("UPDATE message SET status = ?2, next_attempt_at = ?3, attempts = 0, updated_at = ?3 WHERE id = ?1", params![id, to.as_str(), now])?;
                super::history(c, *id, to, now, Some("retried by an operator"))?;
            }
            Ok(ids.len())
        })
    }

    /// Deletes messages in a final status last changed before `cutoff` (ms). Returns how many.
    pub fn purge_blocking(&self, cutoff: i64) -> Result<usize, StoreError> {
        self.writer().write_blocking(move |c| {
            let n = c.execute(
                "DELETE FROM message WHERE updated_at < ?1 AND status IN ('DELIVERED', 'REJECTED', 'CLOSED', 'FAILED')",
                params![cutoff],
            )?;
            let detail = format!("purged {n} finished messages last changed before {}", super::rfc3339(cutoff));
            super::audit::append(c, None, "ADMIN_PURGE", Some(&detail))?;
            Ok(n)
        })
    }
}
