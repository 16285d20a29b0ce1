//! The store's checkpointer: copies committed WAL frames into the database file on a thread and connection
//! of its own, so that the writer's commits do not stop for the copy. It must not write rows.
//!
//! Left to SQLite, the connection that commits the transaction crossing `wal_autocheckpoint` copies
//! the whole WAL into the database file before its commit returns: under load the writer stopped for
//! milliseconds every few hundred exchanges, and every request waiting on that batch waited with it (peers
//! load at c=64: p99 17-18 ms with those checkpoints, 13-14 ms with none at all). Here a PASSIVE checkpoint on
//! this thread does the bulk copy beside the writer. A PASSIVE checkpoint cannot restart the WAL while
//! commits keep arriving, though, and then the file grows without end; so once the WAL has grown past
//! `restart_frames`, this thread makes further passes over what was appended meanwhile until that is about
//! one batch, and then asks the writer to checkpoint the rest itself between two batches, after which its
//! next transaction starts the WAL over. (A restart needs the WAL fully copied when the writer begins a
//! transaction, which a thread beside a busy writer almost never sees.)
//! A RESTART checkpoint from this thread would do the same, but it makes the writer wait in SQLite's busy
//! handler, which sleeps in steps of 1, 2, 5, 10 ms (p99 went up, max to 56 ms).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use super::StoreError;

/// How the checkpointer paces itself.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointOptions {
    /// Time between two checkpoint rounds.
    pub interval: Duration,
    /// WAL size (frames, one page each) past which a round ends by having the WAL start over.
    pub restart_frames: i64,
}

impl Default for CheckpointOptions {
    fn default() -> Self {
        CheckpointOptions {
            interval: Duration::from_millis(50),
            restart_frames: 4096,
        }
    }
}

/// Pages the writer's own connection may leave in the WAL before it checkpoints in its commit (SQLite's
/// automatic checkpoint): a safety net should the checkpointer fall behind, far above what it leaves.
pub const WRITER_SAFETY_NET_PAGES: i64 = 16 * 1024;

/// The checkpointer thread. Dropping it stops the thread after its current round.
pub struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    catch_up: CatchUp,
}

/// The writer's part: set by the checkpointer when the WAL has grown past `restart_frames` and its bulk
/// copy is done; the writer then checkpoints the rest on its own connection between two batches.
#[derive(Clone, Default)]
pub struct CatchUp(Arc<AtomicBool>);

impl CatchUp {
    /// Called by the writer after a batch is committed and answered: checkpoints on `conn` (the writer's
    /// connection) when asked to. PASSIVE never waits: if this thread is mid-round, the next batch retries.
    pub fn after_batch(&self, conn: &Connection) {
        if !self.0.load(Ordering::Relaxed) {
            return;
        }
        match checkpoint(conn, "PASSIVE") {
            Ok((log, done)) if log == done => self.0.store(false, Ordering::Relaxed),
            Ok(_) => {}
            Err(e) => tracing::debug!("the writer's checkpoint will be retried: {e}"),
        }
    }
}

impl Checkpointer {
    /// Opens a connection of its own to the database at `path` (already in WAL mode) and starts the thread.
    pub fn start(path: &Path, options: CheckpointOptions) -> Result<Checkpointer, StoreError> {
        let failed = |message: String| StoreError::Open {
            path: path.to_path_buf(),
            message: format!("the checkpointer: {message}"),
        };
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| failed(e.to_string()))?;
        // A checkpoint copies frames through a buffer of its own, not the page cache: keep the cache tiny
        // (the default 2 MiB cost the node that much RSS).
        conn.pragma_update(None, "cache_size", 16)
            .map_err(|e| failed(e.to_string()))?;
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let catch_up = CatchUp::default();
        let (thread_stop, thread_catch_up) = (stop.clone(), catch_up.clone());
        let thread = std::thread::Builder::new()
            .name("store-checkpoint".into())
            .spawn(move || run(&conn, &thread_stop, &thread_catch_up, options))
            .map_err(|e| failed(e.to_string()))?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
            catch_up,
        })
    }

    /// What the writer calls after each batch.
    pub fn catch_up(&self) -> CatchUp {
        self.catch_up.clone()
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut stop) = lock.lock() {
            *stop = true;
        }
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    conn: &Connection,
    stop: &(Mutex<bool>, Condvar),
    catch_up: &CatchUp,
    options: CheckpointOptions,
) {
    let (lock, wake) = stop;
    // Logged once per spell of failures, not every round.
    let mut failing = false;
    loop {
        {
            let Ok(guard) = lock.lock() else { return };
            let Ok((guard, _)) = wake.wait_timeout_while(guard, options.interval, |stop| !*stop)
            else {
                return;
            };
            if *guard {
                // One last round, so that a clean stop leaves little for the next start.
                drop(guard);
                let _ = checkpoint(conn, "PASSIVE");
                return;
            }
        }
        match round(conn, catch_up, options.restart_frames) {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("store checkpoints work again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(
                    "store checkpoint failed (the writer's own checkpoint covers it): {e}"
                );
            }
            Err(_) => {}
        }
    }
}

/// Frames the writer may be left to copy: about one batch.
const SMALL_REST: i64 = 128;

/// One round: the bulk copy; past `restart_frames`, passes over what was appended meanwhile until that is
/// small, then the request to the writer.
fn round(conn: &Connection, catch_up: &CatchUp, restart_frames: i64) -> rusqlite::Result<()> {
    let (mut log, _) = checkpoint(conn, "PASSIVE")?;
    if log <= restart_frames {
        return Ok(());
    }
    for _ in 0..4 {
        let (now, _) = checkpoint(conn, "PASSIVE")?;
        let appended = now - log;
        log = now;
        if appended < SMALL_REST {
            break;
        }
    }
    catch_up.0.store(true, Ordering::Relaxed);
    Ok(())
}

/// Runs `PRAGMA wal_checkpoint(MODE)`: (frames in the WAL, frames copied into the database file); both are
/// -1 when the WAL is not in use.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<(i64, i64)> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
        Ok((r.get(1)?, r.get(2)?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_and_restarts_the_wal_beside_a_writer_that_never_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        let writer = Connection::open(&path).expect("open");
        writer
            .query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))
            .expect("wal");
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no automatic checkpoint");
        writer
            .execute_batch("CREATE TABLE t(v BLOB)")
            .expect("table");
        let checkpointer = Checkpointer::start(
            &path,
            CheckpointOptions {
                interval: Duration::from_millis(5),
                restart_frames: 64,
            },
        )
        .expect("start");
        let catch_up = checkpointer.catch_up();
        for _ in 0..400 {
            writer
                .execute("INSERT INTO t VALUES (randomblob(8000))", [])
                .expect("insert");
            catch_up.after_batch(&writer);
            std::thread::sleep(Duration::from_micros(200));
        }
        drop(checkpointer);
        // 400 rows of 8 KB are about 800 pages (3.2 MB): the file keeps its largest size, so without
        // restarts it would hold them all.
        let wal = std::fs::metadata(dir.path().join("db-wal"))
            .expect("wal")
            .len();
        assert!(wal < 2_000_000, "the WAL file grew to {wal} bytes");
        // And the copies reached the database file itself.
        let db = std::fs::metadata(&path).expect("db").len();
        assert!(db > 2_000_000, "the database file holds {db} bytes");
        let rows: i64 = writer
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        assert_eq!(rows, 400);
    }
}
