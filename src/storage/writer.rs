//! The store's single writer thread: runs write jobs, batching concurrent ones into one transaction (group commit).
//! A job's result is released only after its transaction is durable; it must not run reads for callers.

use std::sync::mpsc;
use std::thread;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::StoreError;
use super::checkpoint::CatchUp;

/// What the writer does with a job: run it (in a savepoint) or fail it without running.
trait Job: Send {
    /// Runs the job; returns whether it succeeded and what to do once the commit outcome is known.
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Completion);
    fn fail(self: Box<Self>, error: StoreError);
}

type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// A job and what to do with its result once its transaction's outcome is known.
struct TypedJob<F, D> {
    f: F,
    done: D,
}

impl<F, T, D> Job for TypedJob<F, D>
where
    F: FnOnce(&Connection) -> rusqlite::Result<T> + Send,
    T: Send + 'static,
    D: FnOnce(Result<T, StoreError>) + Send + 'static,
{
    fn run(self: Box<Self>, conn: &Connection) -> (bool, Completion) {
        let TypedJob { f, done } = *self;
        let result = f(conn);
        let ok = result.is_ok();
        let completion: Completion = Box::new(move |commit| {
            let outcome = match (commit, result) {
                (Ok(()), Ok(v)) => Ok(v),
                (Err(e), _) => Err(e),
                (Ok(()), Err(e)) => Err(StoreError::from(e)),
            };
            done(outcome);
        });
        (ok, completion)
    }

    fn fail(self: Box<Self>, error: StoreError) {
        (self.done)(Err(error));
    }
}

/// Handle to the writer thread. Cloning shares the same thread.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Box<dyn Job>>,
}

impl Writer {
    /// Starts the writer on `conn`. With `group_commit`, up to `max_batch` waiting jobs share one commit.
    /// `catch_up` runs after each batch is answered (the checkpointer's request, see storage::checkpoint).
    pub fn start(
        conn: Connection,
        group_commit: bool,
        max_batch: usize,
        catch_up: CatchUp,
    ) -> std::io::Result<Writer> {
        let (jobs, rx) = mpsc::channel::<Box<dyn Job>>();
        let batch = if group_commit { max_batch.max(1) } else { 1 };
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, batch, &catch_up))?;
        Ok(Writer { jobs })
    }

    fn submit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> oneshot::Receiver<Result<T, StoreError>> {
        let (done, rx) = oneshot::channel();
        self.submit_then(f, move |outcome| {
            let _ = done.send(outcome);
        });
        rx
    }

    /// Runs `f` in the writer and calls `done` with its result once the change is committed (or failed),
    /// on the writer thread: a caller outside the runtime hands its outcome on without waiting for it.
    pub fn submit_then<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
        done: impl FnOnce(Result<T, StoreError>) + Send + 'static,
    ) {
        if let Err(mpsc::SendError(job)) = self.jobs.send(Box::new(TypedJob { f, done })) {
            job.fail(StoreError::WriterGone);
        }
    }

    /// Runs `f` in the writer; resolves once the change is committed with the configured durability.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(f).await.map_err(|_| StoreError::WriterGone)?
    }

    /// The same as [`Writer::write`] for callers outside the async runtime (CLI, blocking pool).
    pub fn write_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.submit(f)
            .blocking_recv()
            .map_err(|_| StoreError::WriterGone)?
    }
}

fn run(conn: Connection, rx: mpsc::Receiver<Box<dyn Job>>, max_batch: usize, catch_up: &CatchUp) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(max_batch);
    let mut completions: Vec<Completion> = Vec::with_capacity(max_batch);
    // Blocks for the first job, then takes whatever else is already waiting: no added latency when idle.
    while let Ok(first) = rx.recv() {
        batch.push(first);
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        if let Err(e) = run_cached(&conn, "BEGIN IMMEDIATE") {
            for job in batch.drain(..) {
                job.fail(StoreError::Commit(e.to_string()));
            }
            continue;
        }
        for job in batch.drain(..) {
            completions.push(run_in_savepoint(job, &conn));
        }
        let commit = run_cached(&conn, "COMMIT").map_err(|e| {
            let _ = conn.execute_batch("ROLLBACK");
            StoreError::Commit(e.to_string())
        });
        for completion in completions.drain(..) {
            completion(commit.clone());
        }
        catch_up.after_batch(&conn);
    }
}

/// Runs a job so that its failure undoes only its own changes, never its batch-mates'.
fn run_in_savepoint(job: Box<dyn Job>, conn: &Connection) -> Completion {
    // Prepared once and cached: parsing these two statements for every job cost as much as the job's
    // own INSERT (callgrind).
    if let Err(e) = run_cached(conn, "SAVEPOINT job") {
        job.fail(StoreError::from(e));
        return Box::new(|_| {});
    }
    let (ok, completion) = job.run(conn);
    let _ = if ok {
        run_cached(conn, "RELEASE job")
    } else {
        conn.execute_batch("ROLLBACK TO job; RELEASE job")
    };
    completion
}

fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}
