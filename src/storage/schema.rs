//! The node store's schema and its versioned migrations (PRAGMA user_version).
//! Upgrades an older database in place and refuses a newer one; it must not hold business logic.

use rusqlite::Connection;

/// Each entry upgrades the schema from version `index` to `index + 1`. Append only: never edit a shipped one.
const MIGRATIONS: &[&str] = &[
    // 1: messages with their status history and delivery attempts.
    r#"
    CREATE TABLE message (
        id                  INTEGER PRIMARY KEY,
        direction           TEXT NOT NULL CHECK (direction IN ('incoming', 'outgoing')),
        sender              TEXT NOT NULL,
        message_id          TEXT NOT NULL,
        version             TEXT NOT NULL,
        mapping             TEXT,
        status              TEXT NOT NULL,
        created_at          INTEGER NOT NULL,
        updated_at          INTEGER NOT NULL,
        deadline_at         INTEGER,
        request             BLOB NOT NULL,
        ack                 BLOB,
        response_message_id TEXT,
        response            BLOB,
        rejected            INTEGER NOT NULL DEFAULT 0,
        attempts            INTEGER NOT NULL DEFAULT 0,
        next_attempt_at     INTEGER,
        leased_until        INTEGER,
        last_error          TEXT,
        UNIQUE (direction, sender, message_id)
    );
    CREATE INDEX message_status ON message (status, next_attempt_at);
    CREATE INDEX message_response_id ON message (response_message_id);
    CREATE INDEX message_message_id ON message (message_id);
    CREATE TABLE status_history (
        id      INTEGER PRIMARY KEY,
        message INTEGER NOT NULL REFERENCES message (id) ON DELETE CASCADE,
        status  TEXT NOT NULL,
        at      INTEGER NOT NULL,
        detail  TEXT
    );
    CREATE INDEX status_history_message ON status_history (message);
    CREATE TABLE attempt (
        id          INTEGER PRIMARY KEY,
        message     INTEGER NOT NULL REFERENCES message (id) ON DELETE CASCADE,
        at          INTEGER NOT NULL,
        ok          INTEGER NOT NULL,
        http_status INTEGER,
        error       TEXT
    );
    CREATE INDEX attempt_message ON attempt (message);
    "#,
    // 2: the hash-chained audit journal, append-only (triggers refuse edits; the chain detects the rest).
    r#"
    CREATE TABLE audit (
        seq        INTEGER PRIMARY KEY,
        at         INTEGER NOT NULL,
        message_id TEXT,
        event      TEXT NOT NULL,
        detail     TEXT,
        prev_hash  BLOB NOT NULL,
        hash       BLOB NOT NULL
    );
    CREATE INDEX audit_at ON audit (at);
    CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
    CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit journal is append-only'); END;
    "#,
    // 3: this node's own requests: recipients, the channel they came in by, and their answers (one per
    // answering agency when the gateway fans out).
    r#"
    ALTER TABLE message ADD COLUMN recipient TEXT;
    ALTER TABLE message ADD COLUMN channel TEXT;
    ALTER TABLE message ADD COLUMN channel_ref TEXT;
    CREATE TABLE answer (
        id                  INTEGER PRIMARY KEY,
        message             INTEGER NOT NULL REFERENCES message (id) ON DELETE CASCADE,
        response_message_id TEXT NOT NULL,
        kind                TEXT NOT NULL CHECK (kind IN ('data', 'rejected', 'status')),
        body                BLOB NOT NULL,
        received_at         INTEGER NOT NULL,
        handed_back         INTEGER NOT NULL DEFAULT 0,
        UNIQUE (message, response_message_id)
    );
    "#,
];

/// The schema version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error(
        "the store's schema version {found} is newer than this smev-adapter supports ({supported}): \
         run the smev-adapter version that wrote it, or restore a backup"
    )]
    Newer { found: i64, supported: i64 },
    #[error("migrating the store to schema version {version}: {source}")]
    Migration {
        version: i64,
        source: rusqlite::Error,
    },
    #[error("reading the store's schema version: {0}")]
    Read(rusqlite::Error),
}

/// Brings the database to [`CURRENT_VERSION`], each step in its own transaction. Returns the version found.
pub fn migrate(conn: &mut Connection) -> Result<i64, SchemaError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(SchemaError::Read)?;
    if found > CURRENT_VERSION {
        return Err(SchemaError::Newer {
            found,
            supported: CURRENT_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let step = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
            tx.commit()
        };
        step(conn).map_err(|source| SchemaError::Migration { version, source })?;
    }
    Ok(found)
}
