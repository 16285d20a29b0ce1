//! The HTTP front: routes /ws (SOAP, WSDL), /healthz, /readyz; enforces body, concurrency and time limits.
//! It owns connections and graceful shutdown; SOAP decisions belong to `provider`, run off the reactor.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::node::Node;
use crate::provider::{self, Reply};

use crate::soap::{Fault, SmevFault, Version};

/// The WSDL document served at `GET /ws?wsdl`.
pub const WSDL_FILE: &str = "smev-adapter-1.3.wsdl";
/// The address the WSDL file carries, replaced by the node's real one when served.
const WSDL_ADDRESS_PLACEHOLDER: &str = "http://127.0.0.1:7575/ws";

const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";

type Body = Full<Bytes>;

/// State shared by every connection.
struct Shared {
    node: Arc<Node>,
    limiter: Arc<Semaphore>,
    /// Runs the blocking part of each SOAP call on one thread per core, so a burst queues there
    /// instead of spawning threads that fight over the cores.
    cpu: crate::exchange::CpuPool,
    delivery: crate::delivery::Delivery,
    wsdl: HashMap<String, Bytes>,
}

/// Serves until `shutdown` resolves, then stops accepting and gives in-flight requests
/// `limits.shutdown_grace` to finish.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let wsdl = load_wsdl(&node)?;
    // Hot reload of mappings/ for as long as the server runs.
    let _mapping_watch = Node::watch_mappings(&node)
        .inspect_err(|e| tracing::warn!("mappings will not reload on change: {e}"))
        .ok();
    // A change made between loading the mappings and watching them would otherwise go unnoticed.
    if _mapping_watch.is_some() {
        let reload = node.clone();
        tokio::task::spawn_blocking(move || {
            let _ = reload.reload_mappings();
        });
    }
    let limits = node.config.limits.clone();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Async-mode processing of stored requests goes through tokio's blocking pool, bounded by this.
    let background_cpu = Arc::new(Semaphore::new(cores * 2));
    let cpu = crate::exchange::CpuPool::new(cores, "smev-cpu")?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let delivery = crate::delivery::spawn(node.clone(), background_cpu, stopped.clone());
    start_consumer_intake(&node, &stopped).await?;
    let shared = Arc::new(Shared {
        limiter: Arc::new(Semaphore::new(limits.max_concurrent)),
        cpu,
        delivery,
        node,
        wsdl,
    });
    let tls = match &shared.node.config.tls {
        Some(options) => Some(tls_acceptor(options)?),
        None => {
            tracing::warn!(
                "the SOAP listener speaks plain HTTP (server.plain_http = true): keep it on loopback or behind a TLS-terminating proxy"
            );
            None
        }
    };
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.request_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let service = service_fn(move |req| route(shared.clone(), req));
                match &tls {
                    None => {
                        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
                        tokio::spawn(async move {
                            if let Err(e) = conn.await {
                                tracing::debug!("connection ended: {e}");
                            }
                        });
                    }
                    Some(acceptor) => {
                        let (acceptor, http, watcher) = (acceptor.clone(), http.clone(), graceful.watcher());
                        let handshake_timeout = limits.request_timeout;
                        tokio::spawn(async move {
                            let Some(tls_stream) = tls_handshake(&acceptor, stream, handshake_timeout).await else { return };
                            let conn = watcher.watch(http.serve_connection(TokioIo::new(tls_stream), service));
                            if let Err(e) = conn.await {
                                tracing::debug!("connection ended: {e}");
                            }
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = stop.send(true);
    tracing::info!(
        "shutting down: no new connections; waiting up to {:?} for requests in flight",
        limits.shutdown_grace
    );
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(limits.shutdown_grace) => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    Ok(())
}

/// The listener's TLS settings: TLS 1.2 and 1.3 only; with `client_ca`, a client certificate that chains
/// to it is required (mTLS).
fn tls_acceptor(
    options: &crate::config::TlsOptions,
) -> std::io::Result<std::sync::Arc<openssl::ssl::SslAcceptor>> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode, SslVersion};
    let io = |what: &str, e: openssl::error::ErrorStack| {
        std::io::Error::other(format!("TLS {what}: {e}"))
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| io("setup", e))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| io("setup", e))?;
    b.set_certificate_chain_file(&options.cert)
        .map_err(|e| io(&format!("certificate {}", options.cert.display()), e))?;
    b.set_private_key_file(&options.key, SslFiletype::PEM)
        .map_err(|e| io(&format!("key {}", options.key.display()), e))?;
    b.check_private_key()
        .map_err(|e| io("key does not match the certificate", e))?;
    if let Some(ca) = &options.client_ca {
        b.set_ca_file(ca)
            .map_err(|e| io(&format!("client CA {}", ca.display()), e))?;
        b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    Ok(std::sync::Arc::new(b.build()))
}

/// Completes a TLS handshake within `timeout`; a failed or slow one just closes the connection.
async fn tls_handshake(
    acceptor: &openssl::ssl::SslAcceptor,
    stream: tokio::net::TcpStream,
    timeout: Duration,
) -> Option<tokio_openssl::SslStream<tokio::net::TcpStream>> {
    let ssl = openssl::ssl::Ssl::new(acceptor.context()).ok()?;
    let mut tls = tokio_openssl::SslStream::new(ssl, stream).ok()?;
    match tokio::time::timeout(timeout, std::pin::Pin::new(&mut tls).accept()).await {
        Ok(Ok(())) => Some(tls),
        Ok(Err(e)) => {
            tracing::info!("TLS handshake refused: {e}");
            None
        }
        Err(_) => None,
    }
}

/// The consumer side's local ways in: the JSON API and the drop folder, when configured.
async fn start_consumer_intake(
    node: &Arc<Node>,
    stopped: &tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    if let Some((addr, token)) = node.config.consumer.api.clone() {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(
            "local API at http://{}/api/requests",
            listener.local_addr()?
        );
        let mut stop = stopped.clone();
        tokio::spawn(crate::api::serve(
            node.clone(),
            listener,
            token,
            async move {
                let _ = stop.changed().await;
            },
        ));
    }
    if let Some(folder) = node.config.consumer.folder.clone() {
        tracing::info!("drop folder at {}", folder.display());
        tokio::spawn(crate::consumer::watch_folder(
            node.clone(),
            folder,
            stopped.clone(),
        ));
    }
    Ok(())
}

/// Reads the WSDL and XSDs once, pointing their schemaLocations at `?xsd=NAME` on this endpoint.
fn load_wsdl(node: &Node) -> std::io::Result<HashMap<String, Bytes>> {
    let dir = &node.config.wsdl_dir;
    let path = &node.config.endpoint_path;
    let mut files = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.ends_with(".wsdl") || name.ends_with(".xsd")) {
            continue;
        }
        let text = std::fs::read_to_string(entry.path())?;
        files.insert(name, text);
    }
    let names: Vec<String> = files
        .keys()
        .filter(|n| n.ends_with(".xsd"))
        .cloned()
        .collect();
    Ok(files
        .into_iter()
        .map(|(name, mut text)| {
            for xsd in &names {
                text = text.replace(
                    &format!("schemaLocation=\"{xsd}\""),
                    &format!("schemaLocation=\"{path}?xsd={xsd}\""),
                );
            }
            (name, Bytes::from(text))
        })
        .collect())
}

async fn route(shared: Arc<Shared>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path();
    let endpoint = path == shared.node.config.endpoint_path;
    Ok(match (req.method(), path) {
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readiness(&shared.node).await,
        (&Method::GET, "/metrics") => metrics(&shared.node).await,
        (&Method::GET, _) if endpoint => wsdl(&shared, &req),
        (&Method::POST, _) if endpoint => soap(shared.clone(), req).await,
        (_, _) if endpoint => {
            let mut r = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "use POST for SOAP or GET ?wsdl\n",
            );
            r.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, POST"));
            r
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    })
}

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn xml_response(status: u16, body: Vec<u8>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
    r
}

fn fault_response(fault: Fault) -> Response<Body> {
    let reply: Reply = fault.into();
    xml_response(reply.status, reply.body)
}

fn wsdl(shared: &Shared, req: &Request<Incoming>) -> Response<Body> {
    let query = req.uri().query().unwrap_or("");
    let (file, rewrite_address) = if query.eq_ignore_ascii_case("wsdl") {
        (WSDL_FILE, true)
    } else if let Some(name) = query.strip_prefix("xsd=") {
        (name, false)
    } else {
        return plain(
            StatusCode::NOT_FOUND,
            "GET ?wsdl for the WSDL, ?xsd=NAME for its schemas\n",
        );
    };
    let Some(content) = shared.wsdl.get(file) else {
        return plain(StatusCode::NOT_FOUND, "no such schema file\n");
    };
    let mut body = content.clone();
    if rewrite_address
        && let Some(host) = req
            .headers()
            .get(hyper::header::HOST)
            .and_then(|h| h.to_str().ok())
    {
        let address = format!("http://{host}{}", shared.node.config.endpoint_path);
        let text = String::from_utf8_lossy(content).replace(WSDL_ADDRESS_PLACEHOLDER, &address);
        body = Bytes::from(text);
    }
    let mut r = Response::new(Full::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
    r
}

async fn metrics(node: &Arc<Node>) -> Response<Body> {
    let node = node.clone();
    let text = tokio::task::spawn_blocking(move || {
        let snapshot = crate::metrics::Snapshot {
            queue_by_status: node.store.counts().unwrap_or_default(),
            overdue: node.store.overdue_count().unwrap_or(0),
            pools: node.datasources.pool_stats(),
        };
        node.metrics.render(&snapshot)
    })
    .await
    .unwrap_or_default();
    let mut r = Response::new(Full::new(Bytes::from(text)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn readiness(node: &Arc<Node>) -> Response<Body> {
    let node = node.clone();
    let checks = tokio::task::spawn_blocking(move || {
        let mut checks = vec![("storage".to_string(), node.storage_health())];
        checks.extend(
            node.datasources
                .health()
                .into_iter()
                .map(|(n, r)| (format!("datasource {n}"), r)),
        );
        (checks, node.live_mappings.status_line())
    })
    .await
    .unwrap_or_else(|e| {
        (
            vec![("readiness check".to_string(), Err(e.to_string()))],
            String::new(),
        )
    });
    let (checks, mappings_line) = checks;
    let ready = checks.iter().all(|(_, r)| r.is_ok());
    let mut text = String::from(if ready { "ready\n" } else { "not ready\n" });
    for (name, result) in checks {
        match result {
            Ok(()) => text.push_str(&format!("{name}: ok\n")),
            Err(e) => text.push_str(&format!("{name}: FAIL {e}\n")),
        }
    }
    // Mappings never make the node unready: a refused reload leaves the previous set serving.
    text.push_str(&format!("mappings: {mappings_line}\n"));
    let mut r = Response::new(Full::new(Bytes::from(text)));
    *r.status_mut() = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// What the Content-Type says about the body.
enum ContentKind {
    Soap11,
    Soap12,
    WrongCharset(String),
    Other(String),
}

fn content_kind(req: &Request<Incoming>) -> ContentKind {
    let Some(value) = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        // Be lenient in what we accept: no header is read as SOAP 1.1.
        return ContentKind::Soap11;
    };
    let mut parts = value.split(';').map(str::trim);
    let mime = parts.next().unwrap_or("").to_ascii_lowercase();
    let charset = parts
        .find_map(|p| {
            p.strip_prefix("charset=")
                .or_else(|| p.strip_prefix("CHARSET="))
        })
        .map(|c| c.trim_matches('"'));
    match mime.as_str() {
        "application/soap+xml" => ContentKind::Soap12,
        "text/xml" => match charset {
            Some(c) if !c.eq_ignore_ascii_case("utf-8") => ContentKind::WrongCharset(c.to_string()),
            _ => ContentKind::Soap11,
        },
        _ => ContentKind::Other(value.to_string()),
    }
}

/// Counts a call refused before it reached the exchange (the exchange counts the rest).
fn refused(shared: &Shared, outcome: &'static str, response: Response<Body>) -> Response<Body> {
    shared
        .node
        .metrics
        .request("unknown", outcome, Duration::ZERO);
    response
}

async fn soap(shared: Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let Ok(_permit) = shared.limiter.clone().try_acquire_owned() else {
        let limit = shared.node.config.limits.max_concurrent;
        let fault = Fault::server(
            Version::NEWEST,
            SmevFault::DestinationOverflow,
            format!("the node is handling its limit of {limit} concurrent requests; retry later"),
        );
        let mut r = fault_response(fault.with_status(503));
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return refused(&shared, "overload", r);
    };
    match content_kind(&req) {
        ContentKind::Soap11 => {}
        ContentKind::Soap12 => {
            return refused(
                &shared,
                "VersionMismatch",
                fault_response(provider::version_mismatch()),
            );
        }
        ContentKind::WrongCharset(c) => {
            let message = format!(
                "Content-Type charset `{c}` is not supported: SMEV messages must be sent as text/xml; charset=utf-8"
            );
            let fault = Fault::client(
                Version::NEWEST,
                SmevFault::InvalidContent {
                    errors: vec![(message.clone(), None)],
                },
                message,
            );
            return refused(&shared, "charset", fault_response(fault));
        }
        ContentKind::Other(t) => {
            let message =
                format!("Content-Type `{t}` is not SOAP 1.1: send text/xml; charset=utf-8");
            let fault = Fault::client(
                Version::NEWEST,
                SmevFault::InvalidContent {
                    errors: vec![(message.clone(), None)],
                },
                message,
            );
            return refused(
                &shared,
                "unsupported_media_type",
                fault_response(fault.with_status(415)),
            );
        }
    }
    let limits = &shared.node.config.limits;
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_body_bytes as u64) {
        return refused(&shared, "too_large", too_large(limits.max_body_bytes));
    }
    let inner = shared.clone();
    let max_body = limits.max_body_bytes;
    let work = async move {
        let body = match Limited::new(req.into_body(), max_body).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e)
                if e.downcast_ref::<http_body_util::LengthLimitError>()
                    .is_some() =>
            {
                inner
                    .node
                    .metrics
                    .request("unknown", "too_large", Duration::ZERO);
                return too_large(max_body);
            }
            Err(e) => {
                tracing::debug!("reading the request body failed: {e}");
                return plain(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                );
            }
        };
        let reply = crate::exchange::handle(&inner.node, &inner.delivery, &inner.cpu, body).await;
        xml_response(reply.status, reply.body)
    };
    match tokio::time::timeout(limits.request_timeout, work).await {
        Ok(r) => r,
        Err(_) => refused(
            &shared,
            "timeout",
            fault_response(
                Fault::server(
                    Version::NEWEST,
                    SmevFault::SmevFailure,
                    format!(
                        "the request was not processed within {:?}; retry later",
                        limits.request_timeout
                    ),
                )
                .with_status(503),
            ),
        ),
    }
}

fn too_large(limit: usize) -> Response<Body> {
    let message = format!("the message is larger than this node's limit of {limit} bytes");
    fault_response(
        Fault::client(
            Version::NEWEST,
            SmevFault::InvalidContent {
                errors: vec![(message.clone(), None)],
            },
            message,
        )
        .with_status(413),
    )
}
