//! Forwarding accepted messages to agency nodes: a bounded in-memory queue, retries with backoff while a
//! node is down, injected delay and duplication, and picking up a synchronous provider's answer. Nothing is durable.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, watch};

use super::Gateway;
use super::control::ForwardFaults;
use crate::delivery::{Verdict, backoff, classify};

/// SOAPAction of a forwarded request.
pub const SEND_REQUEST_ACTION: &str = "\"urn:SendRequest\"";
/// SOAPAction of a relayed answer.
pub const SEND_RESPONSE_ACTION: &str = "\"urn:SendResponse\"";

/// One message to hand to one node.
#[derive(Debug, Clone)]
pub struct Job {
    /// The node's mnemonic.
    pub target: String,
    pub url: String,
    pub action: &'static str,
    /// The body exactly as the gateway received it.
    pub body: Bytes,
    /// For logs: the MessageID of what is forwarded.
    pub message_id: String,
    /// A forwarded SendRequest: the node's HTTP answer may be its (synchronous) SendResponse.
    pub request: bool,
    pub faults: ForwardFaults,
}

/// The queue's capacity, the HTTP client and the stop signal.
pub struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    slots: Arc<Semaphore>,
    pending: AtomicUsize,
    max_queue: usize,
    stop: watch::Receiver<bool>,
}

impl Forwarder {
    pub fn new(max_queue: usize, concurrency: usize, stop: watch::Receiver<bool>) -> Forwarder {
        Forwarder {
            client: Client::builder(TokioExecutor::new()).build_http(),
            slots: Arc::new(Semaphore::new(concurrency)),
            pending: AtomicUsize::new(0),
            max_queue,
            stop,
        }
    }

    /// Forwards waiting or in flight.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::SeqCst)
    }

    /// Takes room for `n` forwards, or none when the queue would overflow.
    pub fn reserve(&self, n: usize) -> bool {
        self.pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                (p + n <= self.max_queue).then_some(p + n)
            })
            .is_ok()
    }

    /// Gives back room taken by [`Forwarder::reserve`] for a forward that will not run.
    pub fn release(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| p.checked_sub(1));
    }
}

/// Runs one reserved forward to completion in the background (room was taken with `reserve`).
pub fn spawn(gw: Arc<Gateway>, job: Job) {
    tokio::spawn(async move {
        run(&gw, &job).await;
        gw.forwarder.release();
    });
}

async fn run(gw: &Arc<Gateway>, job: &Job) {
    let mut stop = gw.forwarder.stop.clone();
    if let Some(delay) = job.faults.delay {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
    }
    let copies = if job.faults.duplicate { 2 } else { 1 };
    for _ in 0..copies {
        match deliver(gw, job).await {
            Ok(answer) if job.request => gw.sync_answer(&job.target, &answer),
            Ok(_) => {}
            Err(NotDelivered::GaveUp(why)) if job.request => {
                gw.request_not_delivered(&job.target, &job.message_id, &why);
                return;
            }
            Err(_) => return,
        }
    }
}

/// Why a forward ended without the node taking it.
enum NotDelivered {
    Stopping,
    GaveUp(String),
}

/// Delivers `job` until the node takes it: the node's answer body, or why not.
async fn deliver(gw: &Gateway, job: &Job) -> Result<Bytes, NotDelivered> {
    let opts = &gw.config.delivery;
    let mut stop = gw.forwarder.stop.clone();
    let mut attempts: u32 = 0;
    loop {
        attempts += 1;
        let verdict = {
            let Ok(_slot) = gw.forwarder.slots.acquire().await else {
                return Err(NotDelivered::Stopping);
            };
            attempt(gw, job).await
        };
        match verdict {
            Ok(answer) => {
                gw.delivered(&job.target);
                return Ok(answer);
            }
            Err(Failure::Retry(why)) if attempts < opts.max_attempts => {
                tracing::debug!(message_id = %job.message_id, node = %job.target, "retrying: {why}");
                gw.count(|c| c.retried += 1);
                let wait = backoff(opts.retry_initial, opts.retry_max, i64::from(attempts));
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    _ = stop.changed() => return Err(NotDelivered::Stopping),
                }
            }
            Err(Failure::Retry(why) | Failure::Final(why)) => {
                tracing::warn!(message_id = %job.message_id, node = %job.target, attempts, "forward given up: {why}");
                gw.count(|c| c.failed += 1);
                return Err(NotDelivered::GaveUp(format!(
                    "after {attempts} attempt(s): {why}"
                )));
            }
        }
    }
}

/// Why one attempt failed: worth retrying (node down, 5xx, SMEVFailure) or not (the node refused the message).
enum Failure {
    Retry(String),
    Final(String),
}

/// One POST; the answer body when the node took the message, else why not.
async fn attempt(gw: &Gateway, job: &Job) -> Result<Bytes, Failure> {
    let opts = &gw.config.delivery;
    let request = Request::post(&job.url)
        .header("content-type", "text/xml; charset=utf-8")
        .header("soapaction", job.action)
        .body(Full::new(job.body.clone()))
        .map_err(|e| Failure::Final(format!("cannot build a request to {}: {e}", job.url)))?;
    let call = async {
        let response = gw
            .forwarder
            .client
            .request(request)
            .await
            .map_err(|e| Failure::Retry(format!("cannot reach {}: {e}", job.url)))?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), gw.config.limits.max_body_bytes)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .map_err(|e| {
                Failure::Retry(format!("reading the answer of {} failed: {e}", job.url))
            })?;
        match classify(status, &body) {
            Verdict::Delivered => Ok(body),
            Verdict::Retry(why) => Err(Failure::Retry(why)),
            Verdict::Final(why) => Err(Failure::Final(why)),
        }
    };
    match tokio::time::timeout(opts.timeout, call).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Retry(format!(
            "{} did not answer within {:?}",
            job.url, opts.timeout
        ))),
    }
}
