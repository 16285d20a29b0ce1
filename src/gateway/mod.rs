//! The gateway simulator (`smev-adapter gateway`), a test and demo tool: routes SendRequest to agency nodes by
//! recipient or payload QName (fan-out), relays SendResponse back, injects faults. Not a production gateway.

pub mod config;
pub mod control;
pub mod forward;
pub mod metadata;

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use roxmltree::{Document, Node};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::diag::Problems;
use crate::soap::envelope::{self, Operation, SendResponse};
use crate::soap::reply::{Metadata, Participant};
use crate::soap::{
    EnvelopeError, Fault, MessageId, SOAP11_NS, SignatureFaultCode, SmevFault, Version,
};
use crate::storage::{now_millis, rfc3339};
use crate::xml;
pub use config::GatewayConfig;
use control::{Control, Counters};
use forward::{Forwarder, Job, SEND_REQUEST_ACTION, SEND_RESPONSE_ACTION};
use metadata::{Acknowledged, write_acknowledgement};

/// Namespace of the routing elements a node may put in soap:Header: `Sender` (once), `Recipient` (any number).
pub use crate::consumer::ROUTING_NS;

/// How long open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The node part of the v1 UUIDs the gateway makes for its own messages.
const GATEWAY_NODE_ID: [u8; 6] = [0x03, 0x47, 0x41, 0x54, 0x45, 0x57];

/// Why the gateway could not run.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{0}")]
    Config(Problems),
    #[error("cannot listen on {addr} (set listen in the gateway config): {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A request the gateway accepted: who asked, and whom it went to.
#[derive(Debug, Clone)]
struct Sent {
    sender: String,
    recipients: Vec<String>,
    version: Version,
}

/// What the gateway remembers, bounded: the oldest entries are forgotten first.
#[derive(Default)]
struct Memory {
    requests: HashMap<String, Sent>,
    request_order: VecDeque<String>,
    /// MessageIDs of answers already relayed: a repeat is acknowledged again but not relayed again.
    relayed: HashSet<String>,
    relayed_order: VecDeque<String>,
}

impl Memory {
    fn remember_request(&mut self, id: &str, sent: Sent, cap: usize) {
        if self.requests.insert(id.to_string(), sent).is_none() {
            self.request_order.push_back(id.to_string());
        }
        while self.request_order.len() > cap {
            if let Some(old) = self.request_order.pop_front() {
                self.requests.remove(&old);
            }
        }
    }

    /// True when `id` was not relayed before.
    fn remember_relay(&mut self, id: &str, cap: usize) -> bool {
        if !self.relayed.insert(id.to_string()) {
            return false;
        }
        self.relayed_order.push_back(id.to_string());
        while self.relayed_order.len() > cap {
            if let Some(old) = self.relayed_order.pop_front() {
                self.relayed.remove(&old);
            }
        }
        true
    }
}

/// The running simulator.
pub struct Gateway {
    pub config: GatewayConfig,
    control: Mutex<Control>,
    memory: Mutex<Memory>,
    forwarder: Forwarder,
    stop: watch::Sender<bool>,
}

type Body = Full<Bytes>;

impl Gateway {
    pub fn new(config: GatewayConfig) -> Arc<Gateway> {
        let (stop, stopped) = watch::channel(false);
        Arc::new(Gateway {
            control: Mutex::new(Control::new(config.faults.clone())),
            memory: Mutex::default(),
            forwarder: Forwarder::new(
                config.delivery.max_queue,
                config.delivery.concurrency,
                stopped,
            ),
            stop,
            config,
        })
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // A panic while holding the lock leaves plain counters behind; they stay usable.
        self.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn memory(&self) -> MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the counters.
    pub fn counters(&self) -> Counters {
        self.control().counters.clone()
    }

    fn count(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.control().counters);
    }

    fn delivered(&self, target: &str) {
        self.count(|c| {
            c.forwarded += 1;
            *c.forwarded_to.entry(target.to_string()).or_default() += 1;
        });
    }

    /// Queues `body` for each target, applying the armed faults; false (nothing queued) when the queue is full.
    fn forward(
        self: &Arc<Self>,
        targets: &[String],
        action: &'static str,
        body: &Bytes,
        message_id: &str,
    ) -> bool {
        if !self.forwarder.reserve(targets.len()) {
            return false;
        }
        for target in targets {
            let faults = self.control().take_forward();
            let url = self.config.nodes.get(target).cloned();
            let (false, Some(url)) = (faults.drop, url) else {
                if faults.drop {
                    tracing::info!(message_id, node = %target, "dropped on purpose (fault injection)");
                }
                self.forwarder.release();
                continue;
            };
            forward::spawn(
                self.clone(),
                Job {
                    target: target.clone(),
                    url,
                    action,
                    body: body.clone(),
                    message_id: message_id.to_string(),
                    request: action == SEND_REQUEST_ACTION,
                    faults,
                },
            );
        }
        true
    }

    /// A synchronous provider's HTTP answer to a forwarded request: when it is a SendResponseRequest, relay it.
    fn sync_answer(self: &Arc<Self>, from: &str, answer: &Bytes) {
        let Ok(text) = xml::utf8_text(answer) else {
            return;
        };
        let Ok(doc) = xml::parse(text, &self.config.limits.xml) else {
            return;
        };
        let Ok(env) = envelope::parse(&doc) else {
            return;
        };
        if let Operation::SendResponse(resp) = env.operation {
            self.count(|c| c.sync_answers += 1);
            if let Err(fault) = self.accept_response(env.version, &resp, Some(from), answer) {
                tracing::warn!(node = %from, "a synchronous answer cannot be relayed: {}", fault.message);
                self.count(|c| c.failed += 1);
            }
        }
    }

    /// A recipient could not be given request `request_id` (attempts spent, or it refused the message): the
    /// requester is told with an `AsyncProcessingStatus` / `requestIsRejectedBySmev`, relayed like an answer.
    fn request_not_delivered(self: &Arc<Self>, recipient: &str, request_id: &str, why: &str) {
        let Some(sent) = self.memory().requests.get(request_id).cloned() else {
            return;
        };
        let status_id = MessageId::generate(&GATEWAY_NODE_ID);
        let mut body = Vec::with_capacity(1024);
        metadata::write_status_response(
            &mut body,
            sent.version,
            status_id.as_str(),
            request_id,
            "requestIsRejectedBySmev",
            &format!("recipient {recipient} did not take the request {why}"),
        );
        self.count(|c| c.rejections_sent += 1);
        if !self.forward(
            std::slice::from_ref(&sent.sender),
            SEND_RESPONSE_ACTION,
            &Bytes::from(body),
            status_id.as_str(),
        ) {
            tracing::warn!(
                message_id = request_id,
                "the forwarding queue is full; the requester is not told that {recipient} did not take it"
            );
        }
    }

    /// Handles one SOAP call POSTed to /ws.
    async fn soap(self: &Arc<Self>, body: Bytes) -> (u16, Vec<u8>) {
        self.count(|c| c.received += 1);
        let version = guess_version(&body);
        if self.control().take_5xx() {
            let fault = Fault::server(
                version,
                SmevFault::SmevFailure,
                "the gateway is failing on purpose (fault injection); retry later",
            )
            .with_status(503);
            return self.fault(fault);
        }
        match self.decide(&body) {
            Ok(reply) => (200, reply),
            Err(fault) => self.fault(fault),
        }
    }

    fn fault(&self, fault: Fault) -> (u16, Vec<u8>) {
        self.count(|c| c.faults += 1);
        (fault.http_status, fault.to_xml())
    }

    fn decide(self: &Arc<Self>, body: &Bytes) -> Result<Vec<u8>, Fault> {
        let text = xml::utf8_text(body).map_err(|e| invalid(Version::NEWEST, e.to_string()))?;
        let doc = xml::parse(text, &self.config.limits.xml)
            .map_err(|e| invalid(Version::NEWEST, e.to_string()))?;
        let env = envelope::parse(&doc).map_err(|e| {
            envelope_fault(envelope::sniff_version(&doc).unwrap_or(Version::NEWEST), e)
        })?;
        let version = env.version;
        let routing = Routing::read(&doc);
        match env.operation {
            Operation::SendRequest(req) => {
                let content = req.content.tag_name();
                let qname = (
                    content.namespace().unwrap_or("").to_string(),
                    content.name().to_string(),
                );
                self.accept_request(version, &routing, req.message_id.as_str(), &qname, body)
            }
            Operation::SendResponse(resp) => {
                self.accept_response(version, &resp, routing.sender.as_deref(), body)
            }
            other => Err(Fault::client(
                version,
                SmevFault::UnknownMessageType,
                format!(
                    "the gateway simulator takes SendRequest and SendResponse only, not {}",
                    other.name()
                ),
            )),
        }
    }

    fn accept_request(
        self: &Arc<Self>,
        version: Version,
        routing: &Routing,
        message_id: &str,
        qname: &(String, String),
        body: &Bytes,
    ) -> Result<Vec<u8>, Fault> {
        let sender = match routing.sender.as_deref() {
            None => {
                return Err(Fault::client(
                    version,
                    SmevFault::SenderIsNotRegistered,
                    format!(
                        "the request names no sender: put <a:Sender>MNEMONIC</a:Sender> (xmlns:a=\"{ROUTING_NS}\") in soap:Header"
                    ),
                ));
            }
            Some(s) if !self.config.nodes.contains_key(s) => {
                return Err(Fault::client(
                    version,
                    SmevFault::SenderIsNotRegistered,
                    format!("sender `{s}` is not a node this gateway knows"),
                ));
            }
            Some(s) => s.to_string(),
        };
        let recipients = self.recipients(version, routing, qname)?;
        let now = rfc3339(now_millis());
        let ack = |recipient: &str| {
            let mut out = Vec::with_capacity(1024);
            let metadata = Metadata {
                message_id,
                message_type: "REQUEST",
                sender: Participant {
                    mnemonic: &sender,
                    name: &sender,
                },
                recipient: Participant {
                    mnemonic: recipient,
                    name: recipient,
                },
                sending_timestamp: &now,
                delivery_timestamp: &now,
                status: "requestIsQueued",
            };
            write_acknowledgement(&mut out, version, Acknowledged::SendRequest, &metadata);
            out
        };
        let first = recipients.first().cloned().unwrap_or_default();
        {
            let mut memory = self.memory();
            if let Some(earlier) = memory.requests.get(message_id) {
                // A repeat after a lost acknowledgement: acknowledged again, not forwarded again.
                let first = earlier.recipients.first().cloned().unwrap_or_default();
                return Ok(ack(&first));
            }
            memory.remember_request(
                message_id,
                Sent {
                    sender: sender.clone(),
                    recipients: recipients.clone(),
                    version,
                },
                self.config.limits.remember,
            );
        }
        if !self.forward(&recipients, SEND_REQUEST_ACTION, body, message_id) {
            self.memory().requests.remove(message_id);
            return Err(overflow(version));
        }
        tracing::info!(message_id, sender = %sender, recipients = %recipients.join(","), "request accepted");
        Ok(ack(&first))
    }

    /// The explicit recipients if any (each must be known), else the route of the payload's QName.
    fn recipients(
        &self,
        version: Version,
        routing: &Routing,
        qname: &(String, String),
    ) -> Result<Vec<String>, Fault> {
        let mut out: Vec<String> = Vec::new();
        if routing.recipients.is_empty() {
            let route = self.config.routes.get(qname).ok_or_else(|| {
                Fault::client(
                    version,
                    SmevFault::RecipientIsNotFound,
                    format!(
                        "no a:Recipient in soap:Header and no route for {{{}}}{}",
                        qname.0, qname.1
                    ),
                )
            })?;
            for r in route {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
            return Ok(out);
        }
        for r in &routing.recipients {
            if !self.config.nodes.contains_key(r) {
                return Err(Fault::client(
                    version,
                    SmevFault::RecipientIsNotFound,
                    format!("recipient `{r}` is not a node this gateway knows"),
                ));
            }
            if !out.contains(r) {
                out.push(r.clone());
            }
        }
        Ok(out)
    }

    /// An answer to a request the gateway forwarded (POSTed by an async provider, or a sync provider's reply):
    /// acknowledged, and relayed unchanged to the node that asked.
    fn accept_response(
        self: &Arc<Self>,
        version: Version,
        resp: &SendResponse<'_, '_>,
        from: Option<&str>,
        body: &Bytes,
    ) -> Result<Vec<u8>, Fault> {
        let to = resp.to.trim();
        let Some(sent) = self.memory().requests.get(to).cloned() else {
            return Err(Fault::client(
                version,
                SmevFault::TargetMessageIsNotFound,
                format!("the gateway has no request with MessageID `{to}` to answer"),
            ));
        };
        let responder = match from {
            Some(f) if self.config.nodes.contains_key(f) => f.to_string(),
            _ if sent.recipients.len() == 1 => sent.recipients[0].clone(),
            // Fan-out without a From header: which recipient answered is not known here.
            _ => "UNKNOWN_RESPONDER".to_string(),
        };
        let response_id = resp.message_id.as_str();
        let fresh = self
            .memory()
            .remember_relay(response_id, self.config.limits.remember);
        if fresh
            && !self.forward(
                std::slice::from_ref(&sent.sender),
                SEND_RESPONSE_ACTION,
                body,
                response_id,
            )
        {
            self.memory().relayed.remove(response_id);
            return Err(overflow(version));
        }
        if fresh {
            tracing::info!(message_id = response_id, to, from = %responder, recipient = %sent.sender, "response accepted");
        }
        let now = rfc3339(now_millis());
        let metadata = Metadata {
            message_id: response_id,
            message_type: "RESPONSE",
            sender: Participant {
                mnemonic: &responder,
                name: &responder,
            },
            recipient: Participant {
                mnemonic: &sent.sender,
                name: &sent.sender,
            },
            sending_timestamp: &now,
            delivery_timestamp: &now,
            status: "responseIsQueued",
        };
        let mut out = Vec::with_capacity(1024);
        write_acknowledgement(&mut out, version, Acknowledged::SendResponse, &metadata);
        Ok(out)
    }

    /// `GET /control`.
    pub fn control_json(&self) -> String {
        let pending = self.forwarder.pending();
        self.control().to_json(pending)
    }
}

/// The routing elements of soap:Header.
#[derive(Debug, Default)]
struct Routing {
    sender: Option<String>,
    recipients: Vec<String>,
}

impl Routing {
    fn read(doc: &Document<'_>) -> Routing {
        let mut routing = Routing::default();
        let Some(header) = doc
            .root_element()
            .children()
            .find(|n| n.is_element() && n.has_tag_name((SOAP11_NS, "Header")))
        else {
            return routing;
        };
        for n in header.descendants().filter(Node::is_element) {
            let value = n.text().unwrap_or("").trim();
            if value.is_empty() {
                continue;
            }
            if n.has_tag_name((ROUTING_NS, "Sender")) && routing.sender.is_none() {
                routing.sender = Some(value.to_string());
            } else if n.has_tag_name((ROUTING_NS, "Recipient")) {
                routing.recipients.push(value.to_string());
            }
        }
        routing
    }
}

/// The caller's version from the raw bytes, for answers given before (or without) parsing.
fn guess_version(body: &[u8]) -> Version {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    Version::ALL
        .into_iter()
        .rev()
        .find(|v| text.contains(v.types_ns()))
        .unwrap_or(Version::NEWEST)
}

fn invalid(version: Version, message: String) -> Fault {
    Fault::client(
        version,
        SmevFault::InvalidContent {
            errors: vec![(message.clone(), None)],
        },
        message,
    )
}

fn envelope_fault(version: Version, e: EnvelopeError) -> Fault {
    match e {
        EnvelopeError::Soap12 => crate::provider::version_mismatch(),
        EnvelopeError::MessageId { .. } => {
            Fault::client(version, SmevFault::InvalidMessageIdFormat, e.to_string())
        }
        _ => Fault::client(
            version,
            SmevFault::SignatureVerification(SignatureFaultCode::PoorSoapEnvelopeFormat),
            e.to_string(),
        ),
    }
}

fn overflow(version: Version) -> Fault {
    Fault::server(
        version,
        SmevFault::DestinationOverflow,
        "the gateway's forwarding queue is full (delivery.max_queue); retry later",
    )
    .with_status(503)
}

// ---- HTTP ---------------------------------------------------------------------------------------

/// Serves /ws and /control until `shutdown` resolves; then stops forwarding (queued forwards are lost:
/// it is a simulator) and gives open connections a moment to finish.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let gw = gw.clone();
                let service = service_fn(move |req| route(gw.clone(), req));
                let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                tokio::spawn(async move {
                    if let Err(e) = conn.await {
                        tracing::debug!("connection ended: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = gw.stop.send(true);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {}
    }
    Ok(())
}

async fn route(gw: Arc<Gateway>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    Ok(match (req.method(), path.as_str()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        (&Method::POST, "/ws") => {
            let max = gw.config.limits.max_body_bytes;
            match Limited::new(req.into_body(), max).collect().await {
                Ok(body) => {
                    let (status, reply) = gw.soap(body.to_bytes()).await;
                    let mut r = text(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        "text/xml; charset=utf-8",
                        reply,
                    );
                    if status == 503 {
                        r.headers_mut()
                            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
                    }
                    r
                }
                Err(e) => {
                    let message = format!("the message could not be read (limit {max} bytes): {e}");
                    let fault = invalid(Version::NEWEST, message).with_status(413);
                    let (status, reply) = gw.fault(fault);
                    text(
                        StatusCode::from_u16(status).unwrap_or(StatusCode::PAYLOAD_TOO_LARGE),
                        "text/xml; charset=utf-8",
                        reply,
                    )
                }
            }
        }
        (&Method::GET, "/control") => text(StatusCode::OK, "application/json", gw.control_json()),
        (&Method::POST, "/control") => {
            let body = Limited::new(req.into_body(), 64 * 1024)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let applied = gw.control().apply_json(&body);
            match applied {
                Ok(()) => text(StatusCode::OK, "application/json", gw.control_json()),
                Err(e) => text(
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    serde_json::json!({ "error": e.to_string() }).to_string(),
                ),
            }
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "the gateway simulator serves POST /ws, GET|POST /control and GET /healthz\n",
        ),
    })
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

// ---- the command --------------------------------------------------------------------------------

/// `smev-adapter gateway [--check]`: validate gateway.toml (`--config`, default ./gateway.toml), then serve
/// until SIGINT/SIGTERM. With `check_only`, print the problems (or OK) and stop; false when there were any.
pub fn run(explicit: Option<&Path>, check_only: bool) -> Result<bool, GatewayError> {
    let path = GatewayConfig::locate(explicit);
    let config = GatewayConfig::load(&path).map_err(GatewayError::Config);
    if check_only {
        return Ok(match config {
            Ok(c) => {
                println!(
                    "OK: {} is valid ({} nodes, {} routes)",
                    path.display(),
                    c.nodes.len(),
                    c.routes.len()
                );
                true
            }
            Err(GatewayError::Config(problems)) => {
                println!("{problems}");
                println!("{} problem(s) found", problems.0.len());
                false
            }
            Err(other) => return Err(other),
        });
    }
    let config = config?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let addr = config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| GatewayError::Listen { addr, source })?;
        tracing::warn!(
            "gateway SIMULATOR (a test and demo tool, not a production gateway) serving http://{}/ws, control at /control; {} nodes, {} routes; metadata is not signed yet",
            listener.local_addr()?,
            config.nodes.len(),
            config.routes.len()
        );
        serve(Gateway::new(config), listener, stop_signal()).await?;
        Ok(true)
    })
}

async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
