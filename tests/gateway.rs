//! The gateway simulator against real agency nodes: routing by recipient and by QName, fan-out, relaying pushed
//! and synchronous answers, a provider down then back, injected drop/delay/duplicate/5xx, SMEV faults, gateway.toml.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::gateway::FakeGateway;
use common::*;
use smev_adapter::config::Config;
use smev_adapter::gateway::control::Counters;
use smev_adapter::gateway::{Gateway, GatewayConfig};
use smev_adapter::node::Node;
use smev_adapter::soap::MessageId;
use smev_adapter::soap::reply::{Answer as ReplyAnswer, RejectionCode, ResponseHeader};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const ROUTING_NS: &str = "urn://smev-adapter/routing/1.0";
const REGISTRATION: &str = "{urn://example.gov/registration/1.0}RegistrationRequest";

/// The simulator running in-process on its own port.
struct Sim {
    addr: SocketAddr,
    gw: Arc<Gateway>,
    _stop: oneshot::Sender<()>,
}

impl Sim {
    fn counters(&self) -> Counters {
        self.gw.counters()
    }

    async fn control(&self, json: &str) -> Answer {
        send(
            self.addr,
            "POST",
            "/control",
            Some("application/json"),
            json.as_bytes().to_vec(),
        )
        .await
    }

    /// Waits until `cond` holds for the counters (or panics after `secs`, naming `what`).
    async fn wait(&self, what: &str, secs: u64, cond: impl Fn(&Counters) -> bool) -> Counters {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let c = self.counters();
            if cond(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "gateway: {what} did not happen within {secs} s: {c:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// gateway.toml text: nodes (mnemonic, url), routes (request QName, recipients), extra lines.
fn gateway_toml(nodes: &[(&str, String)], routes: &[(&str, &[&str])], extra: &str) -> String {
    let mut text = String::from(
        "listen = \"127.0.0.1:0\"\n\n[delivery]\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\ntimeout = \"5s\"\n\n",
    );
    for (mnemonic, url) in nodes {
        text.push_str(&format!(
            "[[nodes]]\nmnemonic = \"{mnemonic}\"\nurl = \"{url}\"\n\n"
        ));
    }
    for (request, recipients) in routes {
        let list: Vec<String> = recipients.iter().map(|r| format!("\"{r}\"")).collect();
        text.push_str(&format!(
            "[[routes]]\nrequest = \"{request}\"\nrecipients = [{}]\n\n",
            list.join(", ")
        ));
    }
    text.push_str(extra);
    text
}

/// Starts the simulator on `listener` with the config `text`.
async fn start_sim(listener: TcpListener, text: &str) -> Sim {
    let config = GatewayConfig::parse(std::path::Path::new("gateway.toml"), text)
        .unwrap_or_else(|p| panic!("gateway.toml invalid:\n{p}\n{text}"));
    let addr = listener.local_addr().expect("addr");
    let gw = Gateway::new(config);
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(smev_adapter::gateway::serve(
        gw.clone(),
        listener,
        async move {
            let _ = rx.await;
        },
    ));
    Sim {
        addr,
        gw,
        _stop: tx,
    }
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

/// [gateway] and [delivery] tables pointing a node at the simulator, with quick retries.
fn node_extra(gateway_url: &str) -> String {
    format!(
        "[gateway]\nurl = \"{gateway_url}\"\n\n[delivery]\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\npoll_interval = \"50ms\"\n"
    )
}

async fn provider(mode: &str, gateway_url: &str) -> TestNode {
    TestNode::start_with(&format!("reply = \"{mode}\""), "", &node_extra(gateway_url)).await
}

/// A registration request for passport 4510 123456 with routing elements in soap:Header.
fn routed(version: &str, id: &str, sender: Option<&str>, recipients: &[&str]) -> String {
    let mut header = String::new();
    if let Some(s) = sender {
        header.push_str(&format!("<a:Sender>{s}</a:Sender>"));
    }
    for r in recipients {
        header.push_str(&format!("<a:Recipient>{r}</a:Recipient>"));
    }
    registration_request(version, id, "4510", "123456").replacen(
        "<soap:Body>",
        &format!("<soap:Header xmlns:a=\"{ROUTING_NS}\">{header}</soap:Header><soap:Body>"),
        1,
    )
}

/// The text of `{TYPES_13}local` inside the first `{TYPES_13}parent`.
fn child_text(doc: &roxmltree::Document<'_>, parent: &str, local: &str) -> Option<String> {
    doc.descendants()
        .find(|n| n.has_tag_name((TYPES_13, parent)))?
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, local)))?
        .text()
        .map(str::to_string)
}

fn stored_count(node: &TestNode) -> usize {
    node.node
        .store
        .list(None, false, 100)
        .expect("store readable")
        .len()
}

/// The SMEV fault element's local name and namespace in a fault answer.
fn fault_detail(answer: &Answer) -> (String, String) {
    let doc = answer.doc();
    let detail = doc
        .descendants()
        .find(|n| n.has_tag_name("detail"))
        .and_then(|d| d.children().find(|n| n.is_element()))
        .unwrap_or_else(|| panic!("no fault detail:\n{}", answer.body));
    (
        detail.tag_name().name().to_string(),
        detail.tag_name().namespace().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn routes_by_payload_qname_and_relays_the_async_providers_answer_to_the_sender() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;

    let id = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let doc = ack.doc();
    assert!(
        doc.descendants()
            .any(|n| n.has_tag_name((TYPES_13, "SendRequestResponse")))
    );
    assert_eq!(
        child_text(&doc, "MessageMetadata", "MessageId").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(
        child_text(&doc, "MessageMetadata", "MessageType").as_deref(),
        Some("REQUEST")
    );
    assert_eq!(child_text(&doc, "Sender", "Mnemonic").as_deref(), Some("A"));
    assert_eq!(
        child_text(&doc, "Recipient", "Mnemonic").as_deref(),
        Some("B")
    );
    assert_eq!(
        child_text(&doc, "MessageMetadata", "Status").as_deref(),
        Some("requestIsQueued")
    );

    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id, "the answer names the request");
    assert!(
        got[0].body.contains("RegistrationResponse") && got[0].body.contains("Иванов"),
        "B's answer from B's database is relayed: {}",
        got[0].body
    );
    assert_eq!(stored_count(&b), 1);

    // A repeat (the sender lost the acknowledgement) is acknowledged again and not forwarded again.
    let queued = sim.counters().queued;
    let repeat = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(repeat.status, 200, "{}", repeat.body);
    assert_eq!(
        child_text(&repeat.doc(), "Recipient", "Mnemonic").as_deref(),
        Some("B")
    );
    assert_eq!(sim.counters().queued, queued);
}

#[tokio::test]
async fn an_explicit_recipient_wins_over_the_route() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let c = provider("async", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[
                ("A", consumer.url()),
                ("B", b.url("/ws")),
                ("C", c.url("/ws")),
            ],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;

    let id = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &id, Some("A"), &["C"])).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert_eq!(
        child_text(&ack.doc(), "Recipient", "Mnemonic").as_deref(),
        Some("C")
    );
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    assert_eq!(stored_count(&c), 1, "C got the request");
    // Forwards are queued when the request is accepted: one to C, then one relay to A; none to B.
    let counters = sim.counters();
    assert_eq!(counters.queued, 2, "{counters:?}");
    assert_eq!(counters.forwarded_to.get("B"), None, "{counters:?}");
    assert_eq!(stored_count(&b), 0, "B never saw it");
}

#[tokio::test]
async fn fans_out_to_two_providers_and_relays_both_answers() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let c = provider("sync", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[
                ("A", consumer.url()),
                ("B", b.url("/ws")),
                ("C", c.url("/ws")),
            ],
            &[(REGISTRATION, &["B", "C"])],
            "",
        ),
    )
    .await;

    let id = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert_eq!(
        child_text(&ack.doc(), "Recipient", "Mnemonic").as_deref(),
        Some("B"),
        "metadata names the first recipient"
    );
    let got = consumer.wait_for(2, 30).await;
    assert!(got.iter().all(|r| r.to == id), "{got:?}");
    let ids: std::collections::HashSet<String> = got
        .iter()
        .map(|r| {
            let doc = roxmltree::Document::parse(&r.body).expect("xml");
            child_text(&doc, "SenderProvidedResponseData", "MessageID").expect("MessageID")
        })
        .collect();
    assert_eq!(ids.len(), 2, "two different answers, one from each agency");
    assert_eq!(stored_count(&b), 1);
    assert_eq!(stored_count(&c), 1);
}

#[tokio::test]
async fn a_sync_providers_answer_is_taken_from_its_http_reply_and_relayed() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("sync", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;
    let id = new_message_id();
    let ack = post_soap(sim.addr, routed("1.1", &id, Some("A"), &[])).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    assert!(
        ack.body
            .contains("urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.1"),
        "acknowledged in the caller's version: {}",
        ack.body
    );
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    assert!(
        got[0].body.contains("RegistrationResponse"),
        "{}",
        got[0].body
    );
    let counters = sim.counters();
    assert_eq!(counters.sync_answers, 1, "{counters:?}");
    // B answered synchronously: it never pushed a SendResponse to the gateway.
    assert_eq!(counters.received, 1, "{counters:?}");
}

/// Starts a real node on `listener` (so it can come up on a port chosen before it exists).
async fn node_on(listener: TcpListener, node: &str, extra: &str) -> (Arc<Node>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text_with(dir.path(), node, "", extra);
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, &text).expect("write config");
    let config = Config::parse(&path, &text, &|_| None).unwrap_or_else(|p| panic!("{p}"));
    let node = tokio::task::spawn_blocking(move || Node::start(config))
        .await
        .expect("join")
        .expect("node starts");
    let node = Arc::new(node);
    tokio::spawn(smev_adapter::server::serve(
        node.clone(),
        listener,
        std::future::pending::<()>(),
    ));
    (node, dir)
}

#[tokio::test]
async fn a_provider_down_for_a_while_gets_the_request_when_it_returns_and_the_answer_is_delivered()
{
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    // B's port: reserved, then left closed, so the gateway's forwards are refused until B starts there.
    let b_addr = bind().await.local_addr().expect("addr");
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", format!("http://{b_addr}/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;
    let id = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    sim.wait("two refused forwards to B", 30, |c| c.retried >= 2)
        .await;
    assert!(consumer.received().is_empty());

    let mut b_listener = None;
    for _ in 0..50 {
        if let Ok(l) = TcpListener::bind(b_addr).await {
            b_listener = Some(l);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (b, _dir) = node_on(
        b_listener.expect("B's port is free again"),
        "reply = \"async\"",
        &node_extra(&gw_url),
    )
    .await;
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    assert!(got[0].body.contains("RegistrationResponse"));
    assert!(b.store.show(&id).expect("read").is_some());
    assert_eq!(sim.counters().failed, 0);
}

#[tokio::test]
async fn an_injected_duplicate_reaches_the_provider_twice_and_is_processed_once() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;
    let armed = sim.control(r#"{"duplicate": 1}"#).await;
    assert_eq!(armed.status, 200, "{}", armed.body);

    let id = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    sim.wait("both copies delivered to B", 30, |c| {
        c.forwarded_to.get("B") == Some(&2)
    })
    .await;
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    assert_eq!(stored_count(&b), 1, "B stored the request once");
    let detail = b.node.store.show(&id).expect("read").expect("stored");
    let processed = detail
        .history
        .iter()
        .filter(|h| h.1 == "PROCESSING")
        .count();
    assert_eq!(processed, 1, "B processed it once: {:?}", detail.history);
    assert_eq!(sim.counters().duplicated, 1);
}

#[tokio::test]
async fn an_injected_drop_is_acknowledged_but_never_forwarded() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "[faults]\ndrop = 1\n",
        ),
    )
    .await;
    let dropped = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &dropped, Some("A"), &[])).await;
    assert_eq!(
        ack.status, 200,
        "the sender is told it was queued: {}",
        ack.body
    );
    let counters = sim.counters();
    assert_eq!((counters.dropped, counters.queued), (1, 0), "{counters:?}");

    let kept = new_message_id();
    let ack = post_soap(sim.addr, routed("1.3", &kept, Some("A"), &[])).await;
    assert_eq!(ack.status, 200);
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, kept);
    assert!(b.node.store.show(&dropped).expect("read").is_none());
    assert_eq!(stored_count(&b), 1);
}

#[tokio::test]
async fn an_injected_delay_holds_the_forward_then_delivers_it() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("sync", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;
    let armed = sim.control(r#"{"delay_ms": 300, "count": 1}"#).await;
    assert_eq!(armed.status, 200, "{}", armed.body);
    let id = new_message_id();
    assert_eq!(
        post_soap(sim.addr, routed("1.3", &id, Some("A"), &[]))
            .await
            .status,
        200
    );
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    let counters = sim.counters();
    assert_eq!(counters.delayed, 1, "{counters:?}");
    let shown = send(sim.addr, "GET", "/control", None, Vec::new()).await;
    let json: serde_json::Value = serde_json::from_str(&shown.body).expect("json");
    assert_eq!(json["armed"]["count"], 0, "the knob was used up: {json}");
    assert_eq!(json["counters"]["delayed"], 1, "{json}");
}

#[tokio::test]
async fn an_injected_5xx_answers_503_with_smev_failure_and_a_resend_goes_through() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;
    assert_eq!(sim.control(r#"{"status_5xx": 1}"#).await.status, 200);
    let id = new_message_id();
    let refused = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert_eq!(
        fault_detail(&refused),
        ("SMEVFailure".to_string(), FAULTS_13.to_string())
    );
    let doc = refused.doc();
    let code = doc
        .descendants()
        .find(|n| n.has_tag_name("faultcode"))
        .and_then(|n| n.text());
    assert_eq!(code, Some("soap:Server"), "{}", refused.body);
    assert_eq!(stored_count(&b), 0, "nothing was forwarded");

    let again = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(again.status, 200, "{}", again.body);
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    assert_eq!(sim.counters().injected_5xx, 1);
}

#[tokio::test]
async fn an_unknown_sender_recipient_or_target_gets_the_smev_fault_in_the_callers_version() {
    let consumer = FakeGateway::start().await;
    let sim = start_sim(
        bind().await,
        &gateway_toml(&[("A", consumer.url())], &[(REGISTRATION, &["A"])], ""),
    )
    .await;
    let faults_11 = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.1";
    let cases: [(String, &str, &str); 4] = [
        (
            routed("1.3", &new_message_id(), None, &[]),
            "SenderIsNotRegistered",
            FAULTS_13,
        ),
        (
            routed("1.1", &new_message_id(), Some("Z"), &[]),
            "SenderIsNotRegistered",
            faults_11,
        ),
        (
            routed("1.3", &new_message_id(), Some("A"), &["Z"]),
            "RecipientIsNotFound",
            FAULTS_13,
        ),
        (
            routed("1.3", &new_message_id(), Some("A"), &[])
                .replace("RegistrationRequest", "OtherRequest"),
            "RecipientIsNotFound",
            FAULTS_13,
        ),
    ];
    for (body, fault, ns) in cases {
        let answer = post_soap(sim.addr, body).await;
        assert_eq!(answer.status, 500, "{}", answer.body);
        assert_eq!(
            fault_detail(&answer),
            (fault.to_string(), ns.to_string()),
            "{}",
            answer.body
        );
    }

    let mut response = Vec::new();
    let own_id = MessageId::parse(&new_message_id()).expect("id");
    let never_sent = new_message_id();
    smev_adapter::soap::reply::write_send_response(
        &mut response,
        &ResponseHeader {
            version: smev_adapter::soap::Version::V1_3,
            message_id: &own_id,
            to: &never_sent,
        },
        &ReplyAnswer::Rejected {
            code: RejectionCode::NoData,
            description: "no data".into(),
        },
    );
    let answer = post_soap(sim.addr, response).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(
        fault_detail(&answer),
        ("TargetMessageIsNotFound".to_string(), FAULTS_13.to_string())
    );
    assert!(consumer.received().is_empty());
    let counters = sim.counters();
    assert_eq!((counters.received, counters.faults), (5, 5), "{counters:?}");
}

#[tokio::test]
async fn control_refuses_unknown_knobs_and_shows_counters() {
    let sim = start_sim(bind().await, &gateway_toml(&[], &[], "")).await;
    let bad = sim.control(r#"{"explode": 1}"#).await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("unknown knob `explode`"), "{}", bad.body);
    let shown = send(sim.addr, "GET", "/control", None, Vec::new()).await;
    let json: serde_json::Value = serde_json::from_str(&shown.body).expect("json");
    for key in ["received", "forwarded", "retried", "dropped", "duplicated"] {
        assert_eq!(json["counters"][key], 0, "{key}: {json}");
    }
}

#[test]
fn gateway_check_names_file_and_line_of_each_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    let text = gateway_toml(
        &[
            ("A", "http://127.0.0.1:7575/ws".into()),
            ("B", "not a url".into()),
        ],
        &[(REGISTRATION, &["A", "C"])],
        "",
    );
    std::fs::write(&path, &text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .args(["gateway", "--check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).expect("line") + 1;
    let p = path.display();
    assert!(
        stdout.contains(&format!(
            "{p}:{}:7: node B url `not a url`",
            line_of("not a url")
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "{p}:{}:14: route {REGISTRATION} names unknown node `C`",
            line_of("recipients")
        )),
        "{stdout}"
    );

    std::fs::write(
        &path,
        text.replace("not a url", "http://127.0.0.1:7577/ws")
            .replace(", \"C\"", ""),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .args(["gateway", "--check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test]
async fn a_request_the_recipient_refuses_is_reported_to_the_sender_as_rejected_by_smev() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("sync", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "",
        ),
    )
    .await;
    let id = new_message_id();
    // Series 45AB is not four digits: B refuses the request with InvalidContent, a fault not worth retrying.
    // Signed as it is: altering a signed request would fail its signature, not its content.
    let request = registration_request("1.2", &id, "45AB", "123456").replacen(
        "<soap:Body>",
        &format!(
            "<soap:Header xmlns:a=\"{ROUTING_NS}\"><a:Sender>A</a:Sender></soap:Header><soap:Body>"
        ),
        1,
    );
    let ack = post_soap(sim.addr, request).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    let doc = roxmltree::Document::parse(&got[0].body).expect("xml");
    let types_12 = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.2";
    assert_eq!(
        text_of(&doc, types_12, "StatusCategory"),
        Some("requestIsRejectedBySmev"),
        "{}",
        got[0].body
    );
    assert_eq!(
        text_of(&doc, types_12, "OriginalMessageId"),
        Some(id.as_str())
    );
    let details = text_of(&doc, types_12, "StatusDetails").unwrap_or("");
    assert!(
        details.contains("recipient B") && details.contains("InvalidContent"),
        "{details}"
    );
    let counters = sim.counters();
    assert_eq!(
        (counters.failed, counters.rejections_sent, counters.retried),
        (1, 1, 0),
        "{counters:?}"
    );
}

#[tokio::test]
async fn a_full_forwarding_queue_answers_destination_overflow_and_forgets_the_request() {
    let consumer = FakeGateway::start().await;
    let sim = start_sim(
        bind().await,
        &gateway_toml(
            &[
                ("A", consumer.url()),
                ("B", "http://127.0.0.1:9/ws".into()),
                ("C", "http://127.0.0.1:9/ws".into()),
            ],
            &[(REGISTRATION, &["B", "C"])],
            "",
        )
        .replace("timeout = \"5s\"\n", "timeout = \"5s\"\nmax_queue = 1\n"),
    )
    .await;
    let id = new_message_id();
    let answer = post_soap(sim.addr, routed("1.3", &id, Some("A"), &[])).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        fault_detail(&answer),
        ("DestinationOverflow".to_string(), FAULTS_13.to_string())
    );
    assert_eq!(sim.counters().queued, 0);

    let mut response = Vec::new();
    let own_id = MessageId::parse(&new_message_id()).expect("id");
    smev_adapter::soap::reply::write_send_response(
        &mut response,
        &ResponseHeader {
            version: smev_adapter::soap::Version::V1_3,
            message_id: &own_id,
            to: &id,
        },
        &ReplyAnswer::Rejected {
            code: RejectionCode::NoData,
            description: "no data".into(),
        },
    );
    let answer = post_soap(sim.addr, response).await;
    assert_eq!(
        fault_detail(&answer).0,
        "TargetMessageIsNotFound",
        "a refused request is not remembered"
    );
}

#[test]
fn the_sample_gateway_toml_is_valid() {
    let config = GatewayConfig::load(&repo().join("samples/gateway.toml"))
        .unwrap_or_else(|p| panic!("samples/gateway.toml:\n{p}"));
    assert_eq!(config.listen.to_string(), "127.0.0.1:7576");
    assert_eq!(config.nodes.len(), 2);
    assert_eq!(config.routes.len(), 1);
}

#[tokio::test]
async fn a_provider_whose_push_gets_an_injected_503_retries_and_the_answer_is_relayed() {
    let consumer = FakeGateway::start().await;
    let listener = bind().await;
    let gw_url = format!("http://{}/ws", listener.local_addr().expect("addr"));
    let b = provider("async", &gw_url).await;
    let sim = start_sim(
        listener,
        &gateway_toml(
            &[("A", consumer.url()), ("B", b.url("/ws"))],
            &[(REGISTRATION, &["B"])],
            "[faults]\ndrop = 1\n",
        ),
    )
    .await;
    // The gateway accepts the request but drops the forward; the test hands it to B itself, so B's push is
    // the next call the gateway receives, and it gets the injected 503.
    let id = new_message_id();
    let request = routed("1.3", &id, Some("A"), &[]);
    assert_eq!(post_soap(sim.addr, request.clone()).await.status, 200);
    assert_eq!(sim.control(r#"{"status_5xx": 1}"#).await.status, 200);
    assert_eq!(post_soap(b.addr, request).await.status, 200);

    let got = consumer.wait_for(1, 30).await;
    assert_eq!(got[0].to, id);
    assert_eq!(sim.counters().injected_5xx, 1);
    // B records its successful attempt after the gateway's answer, which may be after the relay.
    let deadline = Instant::now() + Duration::from_secs(30);
    let detail = loop {
        let detail = b.node.store.show(&id).expect("read").expect("stored");
        if detail.attempts.iter().any(|a| a.1) || Instant::now() > deadline {
            break detail;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let http: Vec<Option<i64>> = detail.attempts.iter().map(|a| a.2).collect();
    assert_eq!(
        http,
        vec![Some(503), Some(200)],
        "B retried after the 503: {:?}",
        detail.attempts
    );
}
