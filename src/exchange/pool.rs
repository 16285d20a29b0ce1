//! The CPU pool: one thread per core runs the blocking part of SOAP calls (parse, verify, SQL, sign).
//! It owns only the queue and its threads; what a job does and how its result travels is the caller's.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex};

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a job: a submit wakes one only when there is one (no syscall under load).
    idle: usize,
    closed: bool,
}

struct Inner {
    queue: Mutex<Queue>,
    ready: Condvar,
}

/// A fixed set of threads taking jobs in arrival order. Unlike tokio's blocking pool with a semaphore in
/// front, a busy thread takes the next job straight from the queue: no thread is woken and put back to
/// sleep per request, and no more threads than cores compete for the CPU. Dropping it lets the threads
/// finish the queued jobs and exit.
pub struct CpuPool {
    inner: Arc<Inner>,
}

impl CpuPool {
    /// Starts `threads` (at least one) threads named `name`.
    pub fn new(threads: usize, name: &str) -> std::io::Result<CpuPool> {
        let inner = Arc::new(Inner {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        for _ in 0..threads.max(1) {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name(name.to_string())
                .spawn(move || work(&inner))?;
        }
        Ok(CpuPool { inner })
    }

    /// Queues `job`. A job that panics is abandoned (whatever it owned is dropped, so a waiting caller
    /// sees its channel close) and the thread goes on with the next one.
    pub fn execute(&self, job: impl FnOnce() + Send + 'static) {
        let mut q = lock(&self.inner.queue);
        q.jobs.push_back(Box::new(job));
        let wake = q.idle > 0;
        drop(q);
        if wake {
            self.inner.ready.notify_one();
        }
    }
}

impl Drop for CpuPool {
    fn drop(&mut self) {
        lock(&self.inner.queue).closed = true;
        self.inner.ready.notify_all();
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    // A job runs outside the lock, so a poisoned lock only means a panic between two queue operations.
    queue.lock().unwrap_or_else(|p| p.into_inner())
}

fn work(inner: &Inner) {
    loop {
        let job = {
            let mut q = lock(&inner.queue);
            loop {
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    return;
                }
                q.idle += 1;
                q = inner.ready.wait(q).unwrap_or_else(|p| p.into_inner());
                q.idle -= 1;
            }
        };
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            tracing::error!("a request's processing panicked; it was abandoned");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn runs_every_job_and_survives_a_panic() {
        let pool = CpuPool::new(2, "test-cpu").expect("threads start");
        let (tx, rx) = mpsc::channel();
        pool.execute(|| panic!("a job that panics"));
        for i in 0..100 {
            let tx = tx.clone();
            pool.execute(move || {
                let _ = tx.send(i);
            });
        }
        drop(tx);
        let mut seen: Vec<i32> = rx.iter().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_dropped_pool_finishes_queued_jobs() {
        let (tx, rx) = mpsc::channel();
        {
            let pool = CpuPool::new(1, "test-cpu").expect("threads start");
            for i in 0..10 {
                let tx = tx.clone();
                pool.execute(move || {
                    let _ = tx.send(i);
                });
            }
        }
        drop(tx);
        assert_eq!(rx.iter().count(), 10);
    }
}
