//! The local JSON API through which the agency's own systems send requests and read answers.
//! A separate listener (loopback by default) behind a bearer token; it never serves SOAP.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::consumer;
use crate::node::Node;
use crate::storage::outbox::Channel;
use crate::storage::{Status, rfc3339};

type Body = Full<Bytes>;

struct Api {
    node: Arc<Node>,
    token: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRequest {
    /// One mnemonic, or several separated by commas; empty = routed by the gateway.
    #[serde(default)]
    recipient: String,
    payload_xml: String,
    #[serde(default)]
    transaction_code: Option<String>,
    /// `5m`, `2d`: when the request is flagged overdue.
    #[serde(default)]
    deadline: Option<String>,
}

/// Serves the API until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    token: String,
    shutdown: impl Future<Output = ()>,
) {
    let api = Arc::new(Api { node, token });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| route(api.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}

fn json_response(status: StatusCode, value: Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json_response(status, json!({ "error": message.into() }))
}

async fn route(api: Arc<Api>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let authorized = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| crate::trust::same_secret(t, &api.token));
    if !authorized {
        return Ok(error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <consumer.api_token>",
        ));
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::POST, "/api/requests") => create(&api, req).await,
        (Method::GET, "/api/requests") => {
            let status = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("status="))
                .map(str::to_string);
            list(&api, status).await
        }
        (Method::GET, p) if p.starts_with("/api/requests/") => {
            let id = p.trim_start_matches("/api/requests/").to_string();
            show(&api, id).await
        }
        _ => error(
            StatusCode::NOT_FOUND,
            "no such endpoint: POST /api/requests, GET /api/requests[?status=S], GET /api/requests/{id}",
        ),
    })
}

async fn create(api: &Arc<Api>, req: Request<Incoming>) -> Response<Body> {
    let limit = api.node.config.limits.max_body_bytes;
    let body = match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {limit} bytes"),
            );
        }
    };
    let new: NewRequest = match serde_json::from_slice(&body) {
        Ok(n) => n,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let deadline_at = match new.deadline.as_deref().map(crate::config::parse_duration) {
        None => None,
        Some(Some(d)) => Some(crate::storage::now_millis() + d.as_millis() as i64),
        Some(None) => return error(StatusCode::BAD_REQUEST, "deadline must be like 5m or 2d"),
    };
    let recipients: Vec<String> = new
        .recipient
        .split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_string)
        .collect();
    let config = &api.node.config;
    let built = match consumer::build_request(
        config,
        api.node.new_message_id(),
        &new.payload_xml,
        &recipients,
        new.transaction_code.as_deref(),
    )
    .and_then(|b| consumer::sign(config, &api.node.trust.key, b))
    {
        Ok(b) => b,
        Err(e) => return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    };
    let message_id = built.message_id.to_string();
    let record = consumer::outgoing(config, built, &recipients, Channel::Api, None, deadline_at);
    match api.node.store.queue_outgoing(record).await {
        Ok(_) => json_response(StatusCode::ACCEPTED, json!({ "message_id": message_id })),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

async fn show(api: &Arc<Api>, id: String) -> Response<Body> {
    let node = api.node.clone();
    let lookup = id.clone();
    let view = tokio::task::spawn_blocking(move || node.store.outgoing(&lookup)).await;
    let view = match view {
        Ok(Ok(Some(v))) => v,
        Ok(Ok(None)) => return error(StatusCode::NOT_FOUND, format!("no request {id}")),
        _ => return error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read"),
    };
    let answers: Vec<Value> = view
        .answers
        .iter()
        .map(|a| {
            json!({
                "response_message_id": a.response_message_id,
                "kind": a.kind,
                "received_at": rfc3339(a.received_at),
                "payload_xml": consumer::answer_payload(&a.body),
            })
        })
        .collect();
    if !view.answers.is_empty()
        && let Ok(Some(detail)) = api.node.store.show(&view.message_id)
    {
        let _ = api.node.store.mark_handed_back(detail.summary.id).await;
    }
    let history: Vec<Value> = view
        .history
        .iter()
        .map(|(at, s, d)| json!({ "at": rfc3339(*at), "status": s, "detail": d }))
        .collect();
    json_response(
        StatusCode::OK,
        json!({ "message_id": view.message_id, "status": view.status, "recipient": view.recipient, "history": history, "answers": answers }),
    )
}

async fn list(api: &Arc<Api>, status: Option<String>) -> Response<Body> {
    let status = match status.as_deref().map(Status::parse) {
        None => None,
        Some(Some(s)) => Some(s),
        Some(None) => return error(StatusCode::BAD_REQUEST, "unknown status"),
    };
    let node = api.node.clone();
    match tokio::task::spawn_blocking(move || node.store.outgoing_list(status, 200)).await {
        Ok(Ok(rows)) => {
            let items: Vec<Value> = rows
                .into_iter()
                .map(|(id, s, r)| json!({ "message_id": id, "status": s, "recipient": r }))
                .collect();
            json_response(StatusCode::OK, json!({ "requests": items }))
        }
        _ => error(StatusCode::SERVICE_UNAVAILABLE, "the store cannot be read"),
    }
}
