//! The consumer side: the three ways in (CLI `send`, the JSON API, the drop folder), delivery of the
//! SendRequest to the gateway with retries, and answers matched, stored and handed back the same way.

mod common;

use std::time::{Duration, Instant};

use common::gateway::FakeGateway;
use common::*;
use serde_json::Value;

const TOKEN: &str = "consumer-api-token-0123456789";
const PAYLOAD: &str = r#"<r:RegistrationRequest xmlns:r="urn://example.gov/registration/1.0"><r:Series>4510</r:Series><r:Number>123456</r:Number></r:RegistrationRequest>"#;

struct Consumer {
    node: TestNode,
    gw: FakeGateway,
    api: std::net::SocketAddr,
}

async fn consumer(script: Vec<(u16, String)>) -> Consumer {
    let gw = FakeGateway::start().await;
    gw.script(script);
    let api = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[gateway]\nurl = \"{}\"\n\n[delivery]\nmode = \"pull\"\nretry_initial = \"50ms\"\npoll_interval = \"50ms\"\n\n[consumer]\napi_listen = \"{api}\"\napi_token = \"{TOKEN}\"\nfolder = \"{}/exchange\"\n",
        gw.url(),
        dir.path().display()
    );
    let node = TestNode::start_in(dir, "reply = \"sync\"", "", &extra).await;
    Consumer { node, gw, api }
}

/// The MessageID of the n-th SendRequest the gateway received.
async fn sent_message_id(gw: &FakeGateway, n: usize) -> (String, String) {
    let got = gw.wait_for(n, 10).await;
    let body = got[n - 1].body.clone();
    let doc = roxmltree::Document::parse(&body).expect("SendRequest XML");
    let id = text_of(&doc, TYPES_13, "MessageID")
        .expect("MessageID")
        .to_string();
    (id, body)
}

fn relay(to: &str, content: &str) -> String {
    let unsigned = format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:SendResponseRequest xmlns:ns="{TYPES_13}" xmlns:basic="{BASIC_13}"><ns:SenderProvidedResponseData Id="R"><ns:MessageID>{}</ns:MessageID><ns:To>{to}</ns:To>{content}</ns:SenderProvidedResponseData><ns:CallerInformationSystemSignature/></ns:SendResponseRequest></soap:Body></soap:Envelope>"#,
        new_message_id()
    );
    sign_as("AGENCY_B", &unsigned, "R")
}

const ANSWER: &str = r#"<basic:MessagePrimaryContent><r:RegistrationResponse xmlns:r="urn://example.gov/registration/1.0"><r:LastName>Иванов</r:LastName></r:RegistrationResponse></basic:MessagePrimaryContent>"#;

async fn api(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    // The node binds its API listener when it starts serving: give it a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stream = loop {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => break s,
            Err(e) => assert!(Instant::now() < deadline, "connect api: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string())
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(Full::new(bytes::Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .expect("request");
    let resp = sender.send_request(req).await.expect("answer");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn wait_file(path: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_send_wait_delivers_the_request_and_prints_the_answer() {
    let c = consumer(vec![(503, String::new())]).await;
    let payload = c.node.dir.path().join("payload.xml");
    std::fs::write(&payload, PAYLOAD).expect("payload");
    let config = c.node.dir.path().join("adapter.toml");
    let cli = std::thread::spawn(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
            .arg("--config")
            .arg(config)
            .args(["send", "--to", "AGENCY_B", "--wait", "--timeout", "20s"])
            .arg(payload)
            .output()
            .expect("run send")
    });
    // The first attempt gets a 503 and is retried: the request reaches the gateway twice.
    let (id, body) = sent_message_id(&c.gw, 2).await;
    assert!(
        body.contains("<a:Recipient>AGENCY_B</a:Recipient>")
            && body.contains("<a:Sender>TEST_NODE</a:Sender>"),
        "{body}"
    );
    assert!(
        body.contains(PAYLOAD),
        "the payload is carried verbatim: {body}"
    );
    assert_eq!(
        c.gw.received()[0].body,
        body,
        "a retry sends the same bytes"
    );
    let ack = post_soap(c.node.addr, relay(&id, ANSWER)).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert!(ack.body.contains("SendResponseResponse"));
    let ack_doc = ack.doc();
    let answered_by = ack_doc
        .descendants()
        .find(|n| n.tag_name().name() == "Sender")
        .and_then(|s| s.children().find(|n| n.tag_name().name() == "Mnemonic"))
        .and_then(|n| n.text());
    assert_eq!(
        answered_by,
        Some("AGENCY_B"),
        "the acknowledgement names the verified signer: {}",
        ack.body
    );

    let out = cli.join().expect("cli thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&id),
        "prints the MessageID first: {stdout}"
    );
    assert!(
        stdout.contains("<r:LastName>Иванов</r:LastName>"),
        "prints the answer: {stdout}"
    );
    let view = c
        .node
        .node
        .store
        .outgoing(&id)
        .expect("read")
        .expect("stored");
    let statuses: Vec<&str> = view.history.iter().map(|h| h.1.as_str()).collect();
    assert_eq!(
        statuses,
        vec!["QUEUED", "WAITING_FOR_RETRY", "SENT", "ANSWERED"]
    );
    let answered = &view.history[3].2;
    assert!(
        answered
            .as_deref()
            .is_some_and(|d| d.contains("from AGENCY_B") && d.contains("signature verified")),
        "the history records who signed the answer: {answered:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_api_queues_reports_and_hands_back_answers() {
    let c = consumer(Vec::new()).await;
    let (status, _) = api(
        c.api,
        "POST",
        "/api/requests",
        "wrong-token-wrong-token",
        Some(serde_json::json!({"payload_xml": PAYLOAD})),
    )
    .await;
    assert_eq!(status, 401);
    let (status, err) = api(
        c.api,
        "POST",
        "/api/requests",
        TOKEN,
        Some(serde_json::json!({"payload_xml": "<no-namespace/>"})),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"].as_str().unwrap_or("").contains("no namespace"),
        "{err}"
    );

    let (status, created) = api(c.api, "POST", "/api/requests", TOKEN, Some(serde_json::json!({"recipient": "AGENCY_B", "payload_xml": PAYLOAD, "transaction_code": "T-42", "deadline": "5m"}))).await;
    assert_eq!(status, 202, "{created}");
    let id = created["message_id"]
        .as_str()
        .expect("message_id")
        .to_string();
    let (sent_id, body) = sent_message_id(&c.gw, 1).await;
    assert_eq!(sent_id, id);
    assert!(body.contains("<ns:TransactionCode>T-42</ns:TransactionCode>"));

    let rejected = r#"<ns:RequestRejected><ns:RejectionReasonCode>NO_DATA</ns:RejectionReasonCode><ns:RejectionReasonDescription>none</ns:RejectionReasonDescription></ns:RequestRejected>"#;
    assert_eq!(
        post_soap(c.node.addr, relay(&id, rejected)).await.status,
        200
    );
    let (status, view) = api(c.api, "GET", &format!("/api/requests/{id}"), TOKEN, None).await;
    assert_eq!(status, 200);
    assert_eq!(view["status"], "REJECTED", "{view}");
    assert_eq!(view["answers"][0]["kind"], "rejected");
    assert!(
        view["answers"][0]["payload_xml"]
            .as_str()
            .unwrap_or("")
            .contains("NO_DATA"),
        "{view}"
    );
    let (_, listed) = api(c.api, "GET", "/api/requests?status=rejected", TOKEN, None).await;
    assert_eq!(listed["requests"][0]["message_id"], id.as_str());
    let (status, _) = api(c.api, "GET", "/api/requests/nope", TOKEN, None).await;
    assert_eq!(status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drop_folder_picks_up_files_and_writes_answers_to_incoming() {
    let c = consumer(Vec::new()).await;
    let root = c.node.dir.path().join("exchange");
    let outgoing = root.join("outgoing");
    let target = outgoing.join("AGENCY_B");
    // Written elsewhere, then renamed in: the documented convention.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !outgoing.is_dir() {
        assert!(
            Instant::now() < deadline,
            "the node creates the drop folder"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    std::fs::create_dir_all(&target).expect("recipient folder");
    std::fs::write(target.join(".req.xml.tmp"), PAYLOAD).expect("write");
    std::fs::rename(target.join(".req.xml.tmp"), target.join("req.xml")).expect("rename");
    std::fs::write(outgoing.join("broken.xml"), "<r:Oops").expect("write broken");

    let (id, body) = sent_message_id(&c.gw, 1).await;
    assert!(body.contains("<a:Recipient>AGENCY_B</a:Recipient>"));
    let sent = root.join("sent").join(format!("{id}.req.xml"));
    wait_file(&sent).await;
    let error = wait_file(&root.join("failed").join("broken.xml.error.txt")).await;
    assert!(error.contains("not usable XML"), "{error}");
    assert!(root.join("failed").join("broken.xml").exists());

    assert_eq!(post_soap(c.node.addr, relay(&id, ANSWER)).await.status, 200);
    let answer = wait_file(&root.join("incoming").join(format!("{id}.xml"))).await;
    assert_eq!(
        answer,
        r#"<r:RegistrationResponse xmlns:r="urn://example.gov/registration/1.0"><r:LastName>Иванов</r:LastName></r:RegistrationResponse>"#
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while c
        .node
        .node
        .store
        .outgoing(&id)
        .expect("read")
        .expect("stored")
        .status
        != "CLOSED"
    {
        assert!(Instant::now() < deadline, "handed back → CLOSED");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_unmatched_response_gets_a_fault_and_a_repeat_is_stored_once() {
    let c = consumer(Vec::new()).await;
    let answer = post_soap(c.node.addr, relay(&new_message_id(), ANSWER)).await;
    assert_eq!(answer.status, 500);
    assert!(
        answer.body.contains("TargetMessageIsNotFound"),
        "{}",
        answer.body
    );

    let (status, created) = api(
        c.api,
        "POST",
        "/api/requests",
        TOKEN,
        Some(serde_json::json!({"payload_xml": PAYLOAD})),
    )
    .await;
    assert_eq!(status, 202);
    let id = created["message_id"].as_str().expect("id").to_string();
    sent_message_id(&c.gw, 1).await;
    let once = relay(&id, ANSWER);
    assert_eq!(post_soap(c.node.addr, once.clone()).await.status, 200);
    assert_eq!(
        post_soap(c.node.addr, once).await.status,
        200,
        "a redelivered answer is acknowledged again"
    );
    let view = c
        .node
        .node
        .store
        .outgoing(&id)
        .expect("read")
        .expect("stored");
    assert_eq!(view.answers.len(), 1, "and stored once");
}
