//! The node's own durable store (`data_dir/adapter.db`, SQLite WAL): inbox, outbox, status history, attempts.
//! All writes go through the group-commit writer; reads use their own connections. No SOAP or HTTP here.

pub mod audit;
mod checkpoint;
pub mod outbox;
pub mod queue;
mod schema;
mod status;
mod writer;

pub use checkpoint::CheckpointOptions;
use checkpoint::Checkpointer;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

pub use schema::{CURRENT_VERSION, SchemaError};
pub use status::Status;
pub use writer::Writer;

/// The store's file name inside data_dir.
pub const STORE_FILE: &str = "adapter.db";

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sql(#[from] std::sync::Arc<rusqlite::Error>),
    #[error("store: the transaction could not be committed: {0}")]
    Commit(String),
    #[error("store: the writer thread has stopped")]
    WriterGone,
    #[error("store: cannot open {path}: {message}")]
    Open { path: PathBuf, message: String },
    #[error("store: {0}")]
    Schema(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        StoreError::Sql(std::sync::Arc::new(e))
    }
}

/// SQLite's `synchronous` setting for the store: how much a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: an acknowledged message survives power loss (the default).
    Full,
    /// WAL without fsync per commit: survives a process crash, not a power loss.
    Normal,
    /// No fsync at all: for benchmarks only.
    Off,
}

impl Durability {
    pub fn parse(text: &str) -> Option<Durability> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Some(Durability::Full),
            "normal" => Some(Durability::Normal),
            "off" => Some(Durability::Off),
            _ => None,
        }
    }

    fn pragma(self) -> &'static str {
        match self {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
            Durability::Off => "OFF",
        }
    }
}

/// How the store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub durability: Durability,
    pub group_commit: bool,
    pub max_batch: usize,
    pub checkpoint: CheckpointOptions,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::Full,
            group_commit: true,
            max_batch: 512,
            checkpoint: CheckpointOptions::default(),
        }
    }
}

/// A request received by this node, as it is to be stored.
#[derive(Debug, Clone)]
pub struct NewIncoming {
    pub sender: String,
    /// The RECEIVED entry's detail (who signed it, how).
    pub received_detail: Option<String>,
    pub message_id: String,
    pub version: &'static str,
    pub mapping: Option<String>,
    pub request: Vec<u8>,
    pub deadline_at: Option<i64>,
    pub ack: Option<Vec<u8>>,
    /// Set when the answer is already known (sync mode): stored together with the request.
    pub answer: Option<StoredAnswer>,
}

#[derive(Debug, Clone)]
pub struct StoredAnswer {
    pub response_message_id: String,
    pub response: Vec<u8>,
    pub rejected: bool,
    /// The status the message takes with this answer.
    pub status: Status,
    pub detail: String,
}

/// What the store already holds for a (sender, MessageID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Existing {
    pub id: i64,
    pub status: Status,
    pub ack: Option<Vec<u8>>,
    pub response: Option<Vec<u8>>,
}

/// The result of storing an incoming request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    New(i64),
    /// A repeat: nothing was written; this is what the first one left.
    Duplicate(Existing),
}

/// A response due for push delivery.
#[derive(Debug, Clone)]
pub struct Due {
    pub id: i64,
    pub message_id: String,
    /// This node's own request (SendRequest) rather than an answer (SendResponse).
    pub outgoing: bool,
    pub response: Vec<u8>,
    pub attempts: i64,
    pub created_at: i64,
    pub rejected: bool,
}

/// A response leased to a polling gateway (GetResponse).
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: i64,
    pub original_message_id: String,
    /// Who sent the request (its verified signer's mnemonic): the answer's recipient.
    pub sender: String,
    pub response: Vec<u8>,
}

/// What happened to one delivery attempt, and so what the message becomes.
#[derive(Debug, Clone)]
pub enum AttemptOutcome {
    Delivered,
    Retry { at: i64, error: String },
    Failed { error: String },
}

/// Milliseconds since the Unix epoch.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// `2026-12-04T16:45:00.123Z`
pub fn rfc3339(millis: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// Page cache of each read connection, in KiB (see `Store::read`).
const READER_CACHE_KIB: i64 = 256;

/// The durable store. Cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    writer: Writer,
    readers: Mutex<Vec<Connection>>,
    /// Declared last: dropped after the writer's handle, so its final round comes after the last
    /// jobs were handed over (the writer thread may still be committing them).
    _checkpointer: Checkpointer,
}

impl Store {
    /// Opens (creating or upgrading) the store in `data_dir`.
    pub fn open(data_dir: &Path, options: &StoreOptions) -> Result<Store, StoreError> {
        let path = data_dir.join(STORE_FILE);
        let open_err = |e: rusqlite::Error| StoreError::Open {
            path: path.clone(),
            message: e.to_string(),
        };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path,
                message: format!("WAL mode refused (journal_mode = {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", options.durability.pragma())
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        // The writer runs each job in a savepoint (its failure undoes only its own rows); SQLite keeps the
        // pages a savepoint may restore in a sub-journal, which spilled to a temporary file: two pwrite
        // calls per page, about 13 per request (strace), more than the WAL itself got. In memory it costs
        // one job's pages (a few KiB; the sub-journal is emptied at each RELEASE) and no syscalls.
        conn.pragma_update(None, "temp_store", "MEMORY")
            .map_err(open_err)?;
        let found = schema::migrate(&mut conn).map_err(|e| StoreError::Schema(e.to_string()))?;
        if found != 0 && found < CURRENT_VERSION {
            tracing::info!(
                "upgraded the store {} from schema version {found} to {CURRENT_VERSION}",
                path.display()
            );
        }
        conn.set_prepared_statement_cache_capacity(64);
        // The checkpointer thread copies the WAL into the database file; the writer's own checkpoint is
        // only the safety net (see storage::checkpoint).
        conn.pragma_update(
            None,
            "wal_autocheckpoint",
            checkpoint::WRITER_SAFETY_NET_PAGES,
        )
        .map_err(open_err)?;
        let checkpointer = Checkpointer::start(&path, options.checkpoint)?;
        let catch_up = checkpointer.catch_up();
        let writer = Writer::start(conn, options.group_commit, options.max_batch, catch_up)
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Ok(Store {
            path,
            writer,
            readers: Mutex::new(Vec::new()),
            _checkpointer: checkpointer,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn writer(&self) -> &Writer {
        &self.writer
    }

    /// Runs `f` on a read connection (never blocked by the writer, thanks to WAL).
    pub fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let conn = match self.readers.lock().ok().and_then(|mut r| r.pop()) {
            Some(c) => c,
            None => {
                let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let c = Connection::open_with_flags(&self.path, flags)?;
                c.busy_timeout(Duration::from_secs(10))?;
                c.set_prepared_statement_cache_capacity(32);
                // Readers look up a few recent index pages (the dedup check, the delivery poll); the OS
                // page cache holds the rest. SQLite's default 2 MiB per connection filled up over a long
                // run: peers load for 10 s, VmHWM 37.0-37.3 MiB with it, 31.6-31.7 MiB with this, same
                // req/s and p99 within noise (3 alternated pairs).
                c.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
                c
            }
        };
        let result = f(&conn).map_err(StoreError::from);
        if let Ok(mut r) = self.readers.lock()
            && r.len() < 16
        {
            r.push(conn);
        }
        result
    }

    /// Whether the store answers, for /readyz.
    pub fn health(&self) -> Result<(), StoreError> {
        self.read(|c| c.query_row("SELECT count(*) FROM message WHERE 0", [], |_| Ok(())))
    }

    /// What is already stored for an incoming (sender, MessageID), if anything.
    pub fn find_incoming(
        &self,
        sender: &str,
        message_id: &str,
    ) -> Result<Option<Existing>, StoreError> {
        self.read(|c| existing(c, sender, message_id))
    }

    /// Stores an incoming request (with its answer in sync mode) durably; a repeat returns what is stored.
    pub async fn insert_incoming(&self, rec: NewIncoming) -> Result<Inserted, StoreError> {
        self.writer.write(move |c| insert_incoming(c, &rec)).await
    }

    /// [`Store::insert_incoming`] for a blocking caller that must not wait: `done` gets the outcome on the
    /// writer thread once the row is durable (or the write failed).
    pub fn insert_incoming_then(
        &self,
        rec: NewIncoming,
        done: impl FnOnce(Result<Inserted, StoreError>) + Send + 'static,
    ) {
        self.writer
            .submit_then(move |c| insert_incoming(c, &rec), done);
    }

    /// Records the answer to an incoming request: RESPONSE_READY.
    pub async fn set_response(&self, id: i64, answer: StoredAnswer) -> Result<(), StoreError> {
        self.writer
            .write(move |c| {
                let now = now_millis();
                c.prepare_cached(
                    "UPDATE message SET response_message_id = ?2, response = ?3, rejected = ?4, status = ?5, updated_at = ?6, next_attempt_at = ?6 WHERE id = ?1",
                )?
                .execute(params![id, answer.response_message_id, answer.response, answer.rejected, answer.status.as_str(), now])?;
                history(c, id, answer.status, now, Some(&answer.detail))
            })
            .await
    }

    /// Moves a message to `status`, recording why.
    pub async fn transition(
        &self,
        id: i64,
        status: Status,
        detail: Option<String>,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |c| set_status(c, id, status, detail.as_deref()))
            .await
    }

    /// Records a delivery attempt and its consequence.
    pub async fn record_attempt(
        &self,
        id: i64,
        http_status: Option<u16>,
        outcome: AttemptOutcome,
    ) -> Result<(), StoreError> {
        self.writer
            .write(move |c| record_attempt(c, id, http_status, &outcome))
            .await
    }

    /// Incoming requests that were stored but not answered (after a restart, these are processed again).
    pub fn unprocessed(&self) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                // `+direction` keeps SQLite on the status index (see due_for_delivery).
                "SELECT id, request FROM message WHERE +direction = 'incoming' AND status IN ('RECEIVED', 'PROCESSING') ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect()
        })
    }

    /// Messages whose push delivery is due, oldest first: answers to incoming requests, and this node's
    /// own outgoing requests.
    /// With `answers` false (pull mode), only outgoing requests.
    /// `+direction` (here, in `unprocessed` and in `lease_next_response`) stops SQLite from using the
    /// (direction, sender, message_id) index for `direction = ?`, which walked every incoming message ever
    /// stored on each poll; the status index finds the few that are due.
    pub fn due_for_delivery(
        &self,
        now: i64,
        limit: usize,
        answers: bool,
    ) -> Result<Vec<Due>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, CASE direction WHEN 'outgoing' THEN request ELSE response END, attempts, created_at,
                        rejected, message_id, direction = 'outgoing'
                   FROM message
                  WHERE ((?3 AND +direction = 'incoming' AND status IN ('RESPONSE_READY', 'WAITING_FOR_RETRY') AND response IS NOT NULL
                          AND coalesce(leased_until, 0) <= ?1)
                      OR (+direction = 'outgoing' AND status IN ('QUEUED', 'WAITING_FOR_RETRY')))
                    AND coalesce(next_attempt_at, 0) <= ?1
                  ORDER BY coalesce(next_attempt_at, 0), id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now, limit as i64, answers], |r| {
                Ok(Due {
                    id: r.get(0)?,
                    message_id: r.get(5)?,
                    response: r.get(1)?,
                    attempts: r.get(2)?,
                    created_at: r.get(3)?,
                    rejected: r.get(4)?,
                    outgoing: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Leases the oldest ready response to a polling gateway for `visibility`.
    pub async fn lease_next_response(
        &self,
        visibility: Duration,
    ) -> Result<Option<Leased>, StoreError> {
        self.writer
            .write(move |c| {
                let now = now_millis();
                let leased = c
                    .prepare_cached(
                        // `+direction`: see due_for_delivery.
                        "SELECT id, message_id, response, sender FROM message
                          WHERE +direction = 'incoming' AND status IN ('RESPONSE_READY', 'WAITING_FOR_RETRY')
                            AND response IS NOT NULL AND coalesce(leased_until, 0) <= ?1
                          ORDER BY id LIMIT 1",
                    )?
                    .query_row(params![now], |r| Ok(Leased { id: r.get(0)?, original_message_id: r.get(1)?, response: r.get(2)?, sender: r.get(3)? }))
                    .optional()?;
                if let Some(l) = &leased {
                    let until = now + visibility.as_millis() as i64;
                    c.prepare_cached("UPDATE message SET leased_until = ?2, updated_at = ?3 WHERE id = ?1")?
                        .execute(params![l.id, until, now])?;
                }
                Ok(leased)
            })
            .await
    }

    /// A polling gateway acknowledges the response with MessageID `response_message_id`.
    /// Returns false when no such response exists.
    pub async fn acknowledge(
        &self,
        response_message_id: String,
        accepted: bool,
    ) -> Result<bool, StoreError> {
        self.writer
            .write(move |c| {
                let found: Option<(i64, bool)> = c
                    .prepare_cached("SELECT id, rejected FROM message WHERE response_message_id = ?1 AND direction = 'incoming'")?
                    .query_row(params![response_message_id], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let Some((id, rejected)) = found else { return Ok(false) };
                if accepted {
                    let to = if rejected { Status::Rejected } else { Status::Delivered };
                    set_status(c, id, to, Some("acknowledged by the gateway (pull)"))?;
                    c.prepare_cached("UPDATE message SET leased_until = NULL WHERE id = ?1")?.execute(params![id])?;
                } else {
                    // Not accepted: offer it again at once.
                    c.prepare_cached("UPDATE message SET leased_until = NULL WHERE id = ?1")?.execute(params![id])?;
                    history(c, id, Status::ResponseReady, now_millis(), Some("the gateway did not accept it; offered again"))?;
                }
                Ok(true)
            })
            .await
    }

    /// The status and history of the message with MessageID `message_id` (either direction).
    pub fn status_of(&self, message_id: &str) -> Result<Option<(Status, i64)>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT status, updated_at FROM message WHERE message_id = ?1 ORDER BY id DESC LIMIT 1")?
                .query_row(params![message_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
                .optional()
                .map(|o| o.map(|(s, at)| (Status::parse(&s).unwrap_or(Status::Failed), at)))
        })
    }
}

fn existing(c: &Connection, sender: &str, message_id: &str) -> rusqlite::Result<Option<Existing>> {
    c.prepare_cached(
        "SELECT id, status, ack, response FROM message WHERE direction = 'incoming' AND sender = ?1 AND message_id = ?2",
    )?
    .query_row(params![sender, message_id], |r| {
        let status: String = r.get(1)?;
        Ok(Existing { id: r.get(0)?, status: Status::parse(&status).unwrap_or(Status::Failed), ack: r.get(2)?, response: r.get(3)? })
    })
    .optional()
}

fn insert_incoming(c: &Connection, rec: &NewIncoming) -> rusqlite::Result<Inserted> {
    let now = now_millis();
    let status = rec.answer.as_ref().map_or(Status::Received, |a| a.status);
    let (response_id, response, rejected) = match &rec.answer {
        Some(a) => (
            Some(a.response_message_id.as_str()),
            Some(a.response.as_slice()),
            a.rejected,
        ),
        None => (None, None, false),
    };
    let inserted = c
        .prepare_cached(
            "INSERT INTO message (direction, sender, message_id, version, mapping, status, created_at, updated_at,
                                  deadline_at, request, ack, response_message_id, response, rejected, next_attempt_at)
             VALUES ('incoming', ?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?6)
             ON CONFLICT (direction, sender, message_id) DO NOTHING",
        )?
        .execute(params![
            rec.sender,
            rec.message_id,
            rec.version,
            rec.mapping,
            status.as_str(),
            now,
            rec.deadline_at,
            rec.request,
            rec.ack,
            response_id,
            response,
            rejected
        ])?;
    if inserted == 0 {
        return match existing(c, &rec.sender, &rec.message_id)? {
            Some(e) => Ok(Inserted::Duplicate(e)),
            None => Err(rusqlite::Error::QueryReturnedNoRows),
        };
    }
    let id = c.last_insert_rowid();
    let message_id = Some(rec.message_id.as_str());
    history_of(
        c,
        id,
        message_id,
        Status::Received,
        now,
        rec.received_detail.as_deref(),
    )?;
    if let Some(a) = &rec.answer {
        history_of(c, id, message_id, a.status, now, Some(&a.detail))?;
    }
    Ok(Inserted::New(id))
}

pub(crate) fn history(
    c: &Connection,
    id: i64,
    status: Status,
    at: i64,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    let message_id: Option<String> = c
        .prepare_cached("SELECT message_id FROM message WHERE id = ?1")?
        .query_row(params![id], |r| r.get(0))
        .optional()?;
    history_of(c, id, message_id.as_deref(), status, at, detail)
}

/// [`history`] for a caller that already knows the message's MessageID: no lookup of it.
fn history_of(
    c: &Connection,
    id: i64,
    message_id: Option<&str>,
    status: Status,
    at: i64,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    c.prepare_cached(
        "INSERT INTO status_history (message, status, at, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![id, status.as_str(), at, detail])?;
    audit::append(c, message_id, status.as_str(), detail)
}

fn set_status(
    c: &Connection,
    id: i64,
    status: Status,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    let now = now_millis();
    c.prepare_cached("UPDATE message SET status = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, status.as_str(), now])?;
    history(c, id, status, now, detail)
}

fn record_attempt(
    c: &Connection,
    id: i64,
    http_status: Option<u16>,
    outcome: &AttemptOutcome,
) -> rusqlite::Result<()> {
    let now = now_millis();
    let (ok, error) = match outcome {
        AttemptOutcome::Delivered => (true, None),
        AttemptOutcome::Retry { error, .. } | AttemptOutcome::Failed { error } => {
            (false, Some(error.as_str()))
        }
    };
    c.prepare_cached(
        "INSERT INTO attempt (message, at, ok, http_status, error) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![id, now, ok, http_status, error])?;
    c.prepare_cached("UPDATE message SET attempts = attempts + 1, last_error = ?2 WHERE id = ?1")?
        .execute(params![id, error])?;
    match outcome {
        AttemptOutcome::Delivered => {
            let (rejected, outgoing): (bool, bool) = c.query_row(
                "SELECT rejected, direction = 'outgoing' FROM message WHERE id = ?1",
                params![id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (status, detail) = match (outgoing, rejected) {
                (true, _) => (Status::Sent, "the gateway accepted the request"),
                (false, true) => (Status::Rejected, "the gateway acknowledged the rejection"),
                (false, false) => (Status::Delivered, "the gateway acknowledged the response"),
            };
            // An answer may have arrived before the gateway's acknowledgement was recorded: keep it.
            let current: String = c.query_row(
                "SELECT status FROM message WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )?;
            if outgoing && current != "QUEUED" && current != "WAITING_FOR_RETRY" {
                return Ok(());
            }
            set_status(c, id, status, Some(detail))
        }
        AttemptOutcome::Retry { at, error } => {
            c.prepare_cached("UPDATE message SET next_attempt_at = ?2 WHERE id = ?1")?
                .execute(params![id, at])?;
            set_status(c, id, Status::WaitingForRetry, Some(error))
        }
        AttemptOutcome::Failed { error } => set_status(c, id, Status::Failed, Some(error)),
    }
}
