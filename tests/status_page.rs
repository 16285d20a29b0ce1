//! The admin status page in a real headless Chromium (through chromedriver): the figures shown match the
//! store, and clicking "retry" on a failed message puts it back in line and gets it delivered.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::gateway::{self, FakeGateway};
use common::*;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use smev_adapter::storage::Status;

const TOKEN: &str = "test-admin-token-0123456789";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process and one browser session, spoken to over the W3C WebDriver protocol.
struct Browser {
    driver: Child,
    base: String,
    session: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver leads its own process group: killing the group also ends the Chromium it started,
        // which would otherwise outlive the test (also when the test panics).
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-9", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

async fn webdriver(method: &str, url: &str, body: Option<Value>) -> Value {
    let uri: hyper::Uri = url.parse().expect("uri");
    let host = format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(80)
    );
    let stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect chromedriver");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri.path())
        .header("host", host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(payload)))
        .expect("request");
    let resp = sender.send_request(req).await.expect("webdriver answer");
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

impl Browser {
    async fn start() -> Browser {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (./scripts/test.sh does, as root)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        use std::os::unix::process::CommandExt;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().expect("profile").keep();
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
                     format!("--user-data-dir={}", profile.display())]
        }}}});
        let created = webdriver("POST", &format!("{base}/session"), Some(caps)).await;
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_string();
        Browser {
            driver,
            base,
            session,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/session/{}{path}", self.base, self.session)
    }

    async fn go(&self, url: &str) {
        webdriver("POST", &self.url("/url"), Some(json!({"url": url}))).await;
    }

    async fn element(&self, css: &str) -> String {
        let found = webdriver(
            "POST",
            &self.url("/element"),
            Some(json!({"using": "css selector", "value": css})),
        )
        .await;
        let value = &found["value"];
        value
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}: {found}"))
            .to_string()
    }

    async fn text(&self, css: &str) -> String {
        let id = self.element(css).await;
        let got = webdriver("GET", &self.url(&format!("/element/{id}/text")), None).await;
        got["value"].as_str().unwrap_or_default().to_string()
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        webdriver(
            "POST",
            &self.url(&format!("/element/{id}/click")),
            Some(json!({})),
        )
        .await;
    }
}

async fn start_admin(node: &TestNode) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind admin");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(smev_adapter::admin::serve(
        node.node.clone(),
        listener,
        TOKEN.into(),
        std::future::pending(),
    ));
    addr
}

async fn wait_status(node: &TestNode, id: &str, want: Status) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if node
            .node
            .store
            .show(id)
            .ok()
            .flatten()
            .is_some_and(|d| d.summary.status == want.as_str())
        {
            return;
        }
        assert!(Instant::now() < deadline, "{id} did not reach {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count_of(counts: &[(String, i64)], status: &str) -> String {
    counts
        .iter()
        .find(|(s, _)| s == status)
        .map_or(0, |c| c.1)
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_shows_the_stores_figures_and_retry_delivers_a_failed_message() {
    let gw = FakeGateway::start().await;
    gw.script([
        (500, gateway::fault("Client", "InvalidContent")),
        (500, gateway::fault("Client", "InvalidContent")),
    ]);
    let extra = format!(
        "[gateway]\nurl = \"{}\"\n\n[delivery]\npoll_interval = \"50ms\"\n",
        gw.url()
    );
    let node = TestNode::start_with("reply = \"async\"", "", &extra).await;
    let mut ids = Vec::new();
    for want in [Status::Failed, Status::Failed, Status::Delivered] {
        let id = new_message_id();
        assert_eq!(
            post_soap(
                node.addr,
                registration_request("1.3", &id, "4510", "123456")
            )
            .await
            .status,
            200
        );
        wait_status(&node, &id, want).await;
        ids.push(id);
    }
    let admin = start_admin(&node).await;
    let browser = Browser::start().await;
    browser
        .go(&format!("http://{admin}/login?token={TOKEN}"))
        .await;

    let counts = node.node.store.counts().expect("counts");
    assert_eq!(
        browser.text("#count-FAILED").await,
        count_of(&counts, "FAILED")
    );
    assert_eq!(
        browser.text("#count-DELIVERED").await,
        count_of(&counts, "DELIVERED")
    );
    assert_eq!(browser.text("#count-FAILED").await, "2");
    assert_eq!(browser.text("#failed-count").await, "2");
    assert!(browser.text("#failed").await.contains(&ids[0]));

    let row = node
        .node
        .store
        .show(&ids[0])
        .expect("read")
        .expect("stored")
        .summary
        .id;
    browser
        .click(&format!("button[data-retry=\"{row}\"]"))
        .await;
    wait_status(&node, &ids[0], Status::Delivered).await;
    browser.go(&format!("http://{admin}/")).await;
    assert_eq!(browser.text("#count-FAILED").await, "1");
    assert_eq!(browser.text("#count-DELIVERED").await, "2");

    browser
        .go(&format!("http://{admin}/message/{}", ids[0]))
        .await;
    let history = browser.text("#history").await;
    assert!(
        history.contains("retried by an operator") && history.contains("DELIVERED"),
        "{history}"
    );
}

#[tokio::test]
async fn the_page_needs_the_token_and_retry_needs_the_csrf_token() {
    let node = TestNode::start().await;
    let admin = start_admin(&node).await;
    let plain = send(admin, "GET", "/", None, Vec::new()).await;
    assert_eq!(plain.status, 401);
    let wrong = send(admin, "GET", "/login?token=nope", None, Vec::new()).await;
    assert_eq!(wrong.status, 401);

    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let forged = hyper::Request::post("/retry")
        .header("host", admin.to_string())
        .header("cookie", format!("smev_admin={TOKEN}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from_static(b"id=1")))
        .expect("request");
    let resp = sender.send_request(forged).await.expect("answer");
    assert_eq!(
        resp.status().as_u16(),
        403,
        "a retry without the page's CSRF token is refused"
    );
}
