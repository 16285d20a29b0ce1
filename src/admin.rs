//! The admin status page: a small server-rendered HTML UI on its own (loopback) listener, behind a token.
//! It shows queues, messages, overdue and failed ones, and retries (CSRF-protected); it never serves SOAP.

use std::convert::Infallible;
use std::fmt::Write;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, COOKIE, HeaderValue, LOCATION, SET_COOKIE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::node::Node;
use crate::storage::{Status, now_millis, rfc3339};

const COOKIE_NAME: &str = "smev_admin";

type Body = Full<Bytes>;

struct Admin {
    node: Arc<Node>,
    token: String,
    csrf: String,
}

/// Serves the status page until `shutdown` resolves.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    token: String,
    shutdown: impl Future<Output = ()>,
) {
    let csrf = hex(&Sha256::digest(format!("csrf:{token}").as_bytes()));
    let admin = Arc::new(Admin { node, token, csrf });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let admin = admin.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| route(admin.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            () = &mut shutdown => break,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Admin {
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let bearer = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let cookie = req
            .headers()
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(&format!("{COOKIE_NAME}="))
                    .map(str::to_string)
            });
        bearer.is_some_and(|t| crate::trust::same_secret(t, &self.token))
            || cookie.is_some_and(|t| crate::trust::same_secret(&t, &self.token))
    }
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|kv| {
        kv.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

/// Decodes `application/x-www-form-urlencoded` values (only what the page itself sends).
fn form_value(body: &str, name: &str) -> Option<String> {
    let raw = query_param(body, name)?;
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hexpair = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hexpair, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; style-src 'unsafe-inline'"),
    );
    r
}

fn redirect(to: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(LOCATION, v);
    }
    r
}

/// HTML-escapes text for element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

async fn route(admin: Arc<Admin>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    if req.method() == Method::GET && path == "/login" {
        return Ok(match query_param(&query, "token") {
            Some(t) if crate::trust::same_secret(t, &admin.token) => {
                let mut r = redirect("/");
                let cookie = format!("{COOKIE_NAME}={t}; HttpOnly; SameSite=Strict; Path=/");
                if let Ok(v) = HeaderValue::from_str(&cookie) {
                    r.headers_mut().insert(SET_COOKIE, v);
                }
                r
            }
            _ => html(
                StatusCode::UNAUTHORIZED,
                page(
                    "Sign in",
                    "<p>Open <code>/login?token=…</code> with the admin token from the node's config.</p>",
                ),
            ),
        });
    }
    if !admin.authorized(&req) {
        return Ok(html(
            StatusCode::UNAUTHORIZED,
            page(
                "Sign in",
                "<p>Not signed in: open <code>/login?token=…</code> with the admin token.</p>",
            ),
        ));
    }
    let response = match (req.method(), path.as_str()) {
        (&Method::GET, "/") => {
            let (admin, query) = (admin.clone(), query.clone());
            blocking(move || overview(&admin, &query)).await
        }
        (&Method::GET, p) if p.starts_with("/message/") => {
            let key = p.trim_start_matches("/message/").to_string();
            let admin = admin.clone();
            blocking(move || message(&admin, &key)).await
        }
        (&Method::POST, "/retry") => retry(&admin, req).await,
        _ => html(
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                "<p>No such page. <a href=\"/\">Overview</a></p>",
            ),
        ),
    };
    Ok(response)
}

async fn blocking(f: impl FnOnce() -> Response<Body> + Send + 'static) -> Response<Body> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        html(
            StatusCode::INTERNAL_SERVER_ERROR,
            page("Error", "<p>internal error</p>"),
        )
    })
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} · smev-adapter</title>\
         <style>body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2em .5em;text-align:left}}\
         .bad{{color:#a00}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = esc(title)
    )
}

fn overview(admin: &Admin, query: &str) -> Response<Body> {
    let store = &admin.node.store;
    let status_filter = query_param(query, "status").and_then(Status::parse);
    let overdue_filter = query_param(query, "overdue") == Some("1");
    let (counts, recent, overdue, failed) = match (
        store.counts(),
        store.list(status_filter, overdue_filter, 100),
        store.list(None, true, 100),
        store.list(Some(Status::Failed), false, 100),
    ) {
        (Ok(c), Ok(r), Ok(o), Ok(f)) => (c, r, o, f),
        _ => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page("Store unavailable", "<p>The store cannot be read.</p>"),
            );
        }
    };
    let node = &admin.node;
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>Node <b>{}</b> ({}), {} mappings loaded: {}.</p>",
        esc(&node.config.node.mnemonic),
        esc(&node.config.node.name),
        node.mappings().len(),
        esc(&node
            .mappings()
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", "))
    );
    b.push_str("<h2>Queues</h2><table id=\"queues\"><tr><th>status</th><th>messages</th></tr>");
    for (status, n) in &counts {
        let _ = write!(
            b,
            "<tr><td><a href=\"/?status={s}\">{s}</a></td><td id=\"count-{s}\">{n}</td></tr>",
            s = esc(status)
        );
    }
    b.push_str("</table>");
    let _ = write!(
        b,
        "<h2>Overdue</h2><p id=\"overdue-count\">{}</p>",
        overdue.len()
    );
    b.push_str(&message_table("overdue", &overdue, None));
    let _ = write!(
        b,
        "<h2>Failed</h2><p id=\"failed-count\">{}</p>",
        failed.len()
    );
    b.push_str(&message_table("failed", &failed, Some(&admin.csrf)));
    let filter = match (status_filter, overdue_filter) {
        (Some(s), _) => format!(" with status {s}"),
        (None, true) => " (overdue)".into(),
        _ => String::new(),
    };
    let _ = write!(
        b,
        "<h2>Recent messages{}</h2><form method=\"get\" action=\"/\"><select name=\"status\"><option value=\"\">any status</option>{}</select> <button>filter</button> <a href=\"/?overdue=1\">overdue only</a></form>",
        esc(&filter),
        Status::ALL
            .iter()
            .map(|s| format!("<option>{s}</option>"))
            .collect::<String>()
    );
    b.push_str(&message_table("recent", &recent, None));
    html(StatusCode::OK, page("smev-adapter status", &b))
}

fn message_table(id: &str, rows: &[crate::storage::queue::Summary], csrf: Option<&str>) -> String {
    let now = now_millis();
    let mut t = format!(
        "<table id=\"{id}\"><tr><th>id</th><th>MessageID</th><th>status</th><th>mapping</th><th>attempts</th><th>updated</th><th>note</th>{}</tr>",
        if csrf.is_some() { "<th></th>" } else { "" }
    );
    for m in rows {
        let note = if m.overdue(now) {
            "OVERDUE".to_string()
        } else {
            m.last_error.clone().unwrap_or_default()
        };
        let _ = write!(
            t,
            "<tr><td>{}</td><td><a href=\"/message/{mid}\">{mid}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"bad\">{}</td>",
            m.id,
            esc(&m.status),
            esc(m.mapping.as_deref().unwrap_or("-")),
            m.attempts,
            rfc3339(m.updated_at),
            esc(&note),
            mid = esc(&m.message_id)
        );
        if let Some(csrf) = csrf {
            let _ = write!(
                t,
                "<td><form method=\"post\" action=\"/retry\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"id\" value=\"{}\"><button data-retry=\"{}\">retry</button></form></td>",
                m.id, m.id
            );
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

fn message(admin: &Admin, key: &str) -> Response<Body> {
    let detail = match admin.node.store.show(key) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return html(
                StatusCode::NOT_FOUND,
                page(
                    "Not found",
                    "<p>No such message. <a href=\"/\">Overview</a></p>",
                ),
            );
        }
        Err(_) => {
            return html(
                StatusCode::SERVICE_UNAVAILABLE,
                page("Store unavailable", "<p>The store cannot be read.</p>"),
            );
        }
    };
    let m = &detail.summary;
    let mut b = format!(
        "<p><a href=\"/\">Overview</a></p><p>{} message from {}, status <b id=\"status\">{}</b>, mapping {}, created {}</p><h2>History</h2><table id=\"history\"><tr><th>at</th><th>status</th><th>detail</th></tr>",
        esc(&m.direction),
        esc(&m.sender),
        esc(&m.status),
        esc(m.mapping.as_deref().unwrap_or("-")),
        rfc3339(m.created_at)
    );
    for (at, status, d) in &detail.history {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            rfc3339(*at),
            esc(status),
            esc(d.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table><h2>Delivery attempts</h2><table id=\"attempts\"><tr><th>at</th><th>result</th><th>HTTP</th><th>error</th></tr>");
    for (at, ok, http, error) in &detail.attempts {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            rfc3339(*at),
            if *ok { "ok" } else { "failed" },
            http.map_or("-".into(), |h| h.to_string()),
            esc(error.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    html(
        StatusCode::OK,
        page(&format!("Message {}", m.message_id), &b),
    )
}

async fn retry(admin: &Arc<Admin>, req: Request<Incoming>) -> Response<Body> {
    let body = match Limited::new(req.into_body(), 4096).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return html(
                StatusCode::BAD_REQUEST,
                page("Bad request", "<p>unreadable form</p>"),
            );
        }
    };
    let form = String::from_utf8_lossy(&body).into_owned();
    if !form_value(&form, "csrf").is_some_and(|t| crate::trust::same_secret(&t, &admin.csrf)) {
        return html(
            StatusCode::FORBIDDEN,
            page(
                "Forbidden",
                "<p>The form's CSRF token is missing or wrong; reload the page and try again.</p>",
            ),
        );
    }
    let Some(id) =
        form_value(&form, "id").filter(|i| i.chars().all(|c| c.is_ascii_digit()) && !i.is_empty())
    else {
        return html(
            StatusCode::BAD_REQUEST,
            page("Bad request", "<p>no message id</p>"),
        );
    };
    let node = admin.node.clone();
    let done = tokio::task::spawn_blocking(move || node.store.retry_blocking(Some(id))).await;
    match done {
        Ok(Ok(_)) => redirect("/"),
        _ => html(
            StatusCode::SERVICE_UNAVAILABLE,
            page("Store unavailable", "<p>The retry could not be stored.</p>"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_and_form_decoding() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(
            form_value("csrf=ab%2Fc+d&id=12", "csrf").as_deref(),
            Some("ab/c d")
        );
        assert_eq!(form_value("csrf=ab&id=12", "id").as_deref(), Some("12"));
        assert_eq!(form_value("id=%zz", "id"), None);
        assert!(
            crate::trust::same_secret("abc", "abc")
                && !crate::trust::same_secret("abc", "abd")
                && !crate::trust::same_secret("abc", "ab")
        );
    }
}
