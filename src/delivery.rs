//! After the acknowledgement: processing stored requests (async mode) and pushing answers to the gateway
//! with retries, backoff and a budget. It must not answer HTTP requests or decide mapping outcomes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use crate::config::{DeliveryMode, DeliveryOptions};
use crate::node::Node;
use crate::provider;
use crate::storage::{AttemptOutcome, Due, Status, now_millis};

/// Hands stored requests to the processing workers.
#[derive(Clone)]
pub struct Delivery {
    work: mpsc::UnboundedSender<(i64, Vec<u8>)>,
}

impl Delivery {
    /// Queues a stored request for processing.
    pub fn enqueue(&self, id: i64, request: Vec<u8>) {
        let _ = self.work.send((id, request));
    }
}

/// Starts the processing workers and, in push mode, the delivery loop. They stop when `stop` turns true.
pub fn spawn(node: Arc<Node>, cpu: Arc<Semaphore>, stop: watch::Receiver<bool>) -> Delivery {
    let (work, queue) = mpsc::unbounded_channel();
    let wake = Arc::new(Notify::new());
    let delivery = Delivery { work };
    match node.store.unprocessed() {
        Ok(pending) if !pending.is_empty() => {
            tracing::info!(
                "{} stored requests were not answered before the last stop; processing them now",
                pending.len()
            );
            for (id, request) in pending {
                delivery.enqueue(id, request);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!("cannot read unprocessed requests: {e}"),
    }
    tokio::spawn(process_loop(
        node.clone(),
        cpu,
        queue,
        wake.clone(),
        stop.clone(),
    ));
    if node.config.gateway_url.is_some() {
        tokio::spawn(push_loop(node, wake, stop));
    }
    delivery
}

async fn process_loop(
    node: Arc<Node>,
    cpu: Arc<Semaphore>,
    mut queue: mpsc::UnboundedReceiver<(i64, Vec<u8>)>,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let workers = Arc::new(Semaphore::new(node.config.delivery.workers));
    loop {
        let next = tokio::select! {
            next = queue.recv() => next,
            _ = stop.changed() => None,
        };
        let Some((id, request)) = next else { break };
        let Ok(permit) = workers.clone().acquire_owned().await else {
            break;
        };
        let (node, cpu, wake) = (node.clone(), cpu.clone(), wake.clone());
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = process_one(&node, &cpu, id, request).await {
                tracing::error!(
                    id,
                    "processing a stored request failed; it is retried after a restart: {e}"
                );
            }
            wake.notify_one();
        });
    }
}

async fn process_one(
    node: &Arc<Node>,
    cpu: &Arc<Semaphore>,
    id: i64,
    request: Vec<u8>,
) -> Result<(), crate::storage::StoreError> {
    node.store.transition(id, Status::Processing, None).await?;
    let lookup = node.clone();
    let sender = tokio::task::spawn_blocking(move || lookup.store.show(&id.to_string()))
        .await
        .map_err(|e| {
            crate::storage::StoreError::Commit(format!("reading the sender panicked: {e}"))
        })??
        .map(|d| d.summary.sender)
        .unwrap_or_default();
    let answer = {
        let _cpu = cpu
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| crate::storage::StoreError::WriterGone)?;
        let node = node.clone();
        tokio::task::spawn_blocking(move || provider::process_stored(&node, &request, &sender))
            .await
            .map_err(|e| crate::storage::StoreError::Commit(format!("processing panicked: {e}")))?
    };
    node.store.set_response(id, answer).await
}

async fn push_loop(node: Arc<Node>, wake: Arc<Notify>, mut stop: watch::Receiver<bool>) {
    let Some(url) = node.config.gateway_url.clone() else {
        return;
    };
    let client = match gateway_client(&node.config.gateway_tls, url.starts_with("https://")) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(
                "cannot set up the connection to the gateway: {e}; nothing will be delivered"
            );
            return;
        }
    };
    // Ids being delivered. Finished ones are removed only at the start of an iteration, before the store
    // is read again: a read that began before a delivery was recorded must not send it a second time.
    let mut in_flight: HashSet<i64> = HashSet::new();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<i64>();
    let slots = Arc::new(Semaphore::new(node.config.delivery.concurrency));
    let poll = node.config.delivery.poll_interval;
    loop {
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(poll) => {}
            _ = stop.changed() => break,
        }
        while let Ok(id) = done_rx.try_recv() {
            in_flight.remove(&id);
        }
        let store_node = node.clone();
        let answers = node.config.delivery.mode == DeliveryMode::Push;
        let due = tokio::task::spawn_blocking(move || {
            store_node
                .store
                .due_for_delivery(now_millis(), 256, answers)
        })
        .await;
        let due = match due {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                tracing::error!("cannot read due deliveries: {e}");
                continue;
            }
            Err(_) => continue,
        };
        for item in due {
            if !in_flight.insert(item.id) {
                continue;
            }
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (node, client, url, done, wake) = (
                node.clone(),
                client.clone(),
                url.clone(),
                done_tx.clone(),
                wake.clone(),
            );
            tokio::spawn(async move {
                let _permit = permit;
                let id = item.id;
                deliver(&node, &client, &url, item).await;
                let _ = done.send(id);
                wake.notify_one();
            });
        }
    }
}

type GatewayClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// An HTTP(S) client for the gateway: TLS 1.2+, the configured (or the system's) roots, host names verified,
/// and the client certificate when the gateway requires one. For an `http://` gateway no roots are loaded:
/// the system bundle costs a noticeable start-up time and resident memory that plain HTTP never uses.
fn gateway_client(
    tls: &crate::config::GatewayTls,
    https: bool,
) -> Result<GatewayClient, openssl::error::ErrorStack> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVersion};
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let mut ssl = SslConnector::builder(SslMethod::tls_client())?;
    ssl.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    match &tls.ca_file {
        Some(ca) => ssl.set_ca_file(ca)?,
        None if https => ssl.set_default_verify_paths()?,
        None => {}
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        ssl.set_certificate_chain_file(cert)?;
        ssl.set_private_key_file(key, SslFiletype::PEM)?;
    }
    let https = HttpsConnector::with_connector(http, ssl)?;
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

/// What the gateway's answer to a SendResponse means for the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    Retry(String),
    Final(String),
}

async fn deliver(node: &Node, client: &GatewayClient, url: &str, item: Due) {
    let opts = &node.config.delivery;
    let request = Request::post(url)
        .header("content-type", "text/xml; charset=utf-8")
        .header(
            "soapaction",
            if item.outgoing {
                "\"urn:SendRequest\""
            } else {
                "\"urn:SendResponse\""
            },
        )
        .body(Full::new(Bytes::from(item.response)));
    let (status, verdict) = match request {
        Err(e) => (
            None,
            Verdict::Final(format!("cannot build the request to {url}: {e}")),
        ),
        Ok(request) => match tokio::time::timeout(opts.timeout, client.request(request)).await {
            Err(_) => (
                None,
                Verdict::Retry(format!(
                    "the gateway did not answer within {:?}",
                    opts.timeout
                )),
            ),
            Ok(Err(e)) => (
                None,
                Verdict::Retry(format!("cannot reach the gateway at {url}: {e}")),
            ),
            Ok(Ok(response)) => {
                let status = response.status().as_u16();
                let body = tokio::time::timeout(opts.timeout, response.into_body().collect()).await;
                let body = match body {
                    Ok(Ok(b)) => b.to_bytes(),
                    _ => Bytes::new(),
                };
                (Some(status), classify(status, &body))
            }
        },
    };
    let outcome = match verdict {
        Verdict::Delivered => AttemptOutcome::Delivered,
        Verdict::Final(error) => AttemptOutcome::Failed { error },
        Verdict::Retry(error) => next_retry(opts, item.attempts + 1, item.created_at, error),
    };
    node.metrics.delivery(match &outcome {
        AttemptOutcome::Delivered => "delivered",
        AttemptOutcome::Retry { .. } => "retry",
        AttemptOutcome::Failed { .. } => "failed",
    });
    if let AttemptOutcome::Failed { error } = &outcome {
        tracing::warn!(message_id = %item.message_id, "delivery failed for good: {error}");
    }
    if let Err(e) = node.store.record_attempt(item.id, status, outcome).await {
        tracing::error!(message_id = %item.message_id, "cannot record a delivery attempt: {e}");
    }
}

/// Retry later with exponential backoff and jitter, or give up when the budget is spent.
pub fn next_retry(
    opts: &DeliveryOptions,
    attempts: i64,
    created_at: i64,
    error: String,
) -> AttemptOutcome {
    let now = now_millis();
    if attempts >= i64::from(opts.max_attempts) {
        return AttemptOutcome::Failed {
            error: format!("gave up after {attempts} attempts; last error: {error}"),
        };
    }
    if now - created_at > opts.max_age.as_millis() as i64 {
        return AttemptOutcome::Failed {
            error: format!(
                "gave up after {:?} (delivery.max_age); last error: {error}",
                opts.max_age
            ),
        };
    }
    let delay = backoff(opts.retry_initial, opts.retry_max, attempts);
    AttemptOutcome::Retry {
        at: now + delay.as_millis() as i64,
        error,
    }
}

/// `initial * 2^(attempts-1)`, capped at `max`, with ±20% jitter so retries from many messages spread out.
pub fn backoff(initial: Duration, max: Duration, attempts: i64) -> Duration {
    let exp = attempts.clamp(1, 30) as u32 - 1;
    let base = initial.saturating_mul(1u32 << exp.min(20)).min(max);
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as f64 / 1000.0;
    base.mul_f64(0.8 + 0.4 * random)
}

/// Reads the gateway's answer: SOAP faults by their SMEV name, otherwise the HTTP status.
pub fn classify(status: u16, body: &[u8]) -> Verdict {
    if let Some((code, detail)) = fault_of(body) {
        return match detail.as_deref() {
            Some("MessageIsAlreadySent") => Verdict::Delivered,
            Some("SMEVFailure" | "DestinationOverflow") => {
                Verdict::Retry(format!("gateway fault {}", detail.unwrap_or_default()))
            }
            Some(other) => Verdict::Final(format!("gateway fault {other}")),
            None if code.ends_with("Server") => Verdict::Retry(format!("gateway fault {code}")),
            None => Verdict::Final(format!("gateway fault {code}")),
        };
    }
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry(format!("gateway answered HTTP {status}")),
        _ => Verdict::Final(format!("gateway answered HTTP {status}")),
    }
}

/// (faultcode, local name of the first element in detail) when `body` is a SOAP fault.
fn fault_of(body: &[u8]) -> Option<(String, Option<String>)> {
    let text = std::str::from_utf8(body).ok()?;
    let limits = crate::config::XmlLimits::default();
    let doc = crate::xml::parse(text, &limits).ok()?;
    let fault = doc.descendants().find(|n| n.tag_name().name() == "Fault")?;
    let code = fault
        .children()
        .find(|n| n.tag_name().name() == "faultcode")
        .and_then(|n| n.text())
        .unwrap_or("")
        .trim()
        .to_string();
    let detail = fault
        .children()
        .find(|n| n.tag_name().name() == "detail")
        .and_then(|d| d.children().find(|n| n.is_element()))
        .map(|n| n.tag_name().name().to_string());
    Some((code, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(code: &str, detail: &str) -> Vec<u8> {
        format!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>{code}</faultcode><faultstring>x</faultstring><detail>{detail}</detail></s:Fault></s:Body></s:Envelope>"#
        )
        .into_bytes()
    }

    #[test]
    fn gateway_answers_are_classified() {
        let f = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.3";
        assert_eq!(classify(200, b"<ok/>"), Verdict::Delivered);
        assert_eq!(
            classify(
                500,
                &fault(
                    "s:Client",
                    &format!("<f:MessageIsAlreadySent xmlns:f=\"{f}\"/>")
                )
            ),
            Verdict::Delivered
        );
        assert!(matches!(
            classify(
                500,
                &fault("s:Server", &format!("<f:SMEVFailure xmlns:f=\"{f}\"/>"))
            ),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(
                500,
                &fault(
                    "s:Server",
                    &format!("<f:DestinationOverflow xmlns:f=\"{f}\"/>")
                )
            ),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(
                500,
                &fault("s:Client", &format!("<f:InvalidContent xmlns:f=\"{f}\"/>"))
            ),
            Verdict::Final(_)
        ));
        assert!(matches!(
            classify(500, &fault("s:Server", "")),
            Verdict::Retry(_)
        ));
        assert!(matches!(
            classify(500, &fault("s:Client", "")),
            Verdict::Final(_)
        ));
        assert!(matches!(classify(503, b""), Verdict::Retry(_)));
        assert!(matches!(classify(404, b"not found"), Verdict::Final(_)));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let (i, m) = (Duration::from_secs(1), Duration::from_secs(60));
        let first = backoff(i, m, 1);
        assert!(
            first >= Duration::from_millis(800) && first <= Duration::from_millis(1200),
            "{first:?}"
        );
        let fourth = backoff(i, m, 4);
        assert!(
            fourth >= Duration::from_millis(6400) && fourth <= Duration::from_millis(9600),
            "{fourth:?}"
        );
        let capped = backoff(i, m, 30);
        assert!(capped <= Duration::from_secs(72), "{capped:?}");
    }
}
