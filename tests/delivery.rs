//! Durable inbox/outbox over real HTTP: stored before acknowledged, dedup across restarts, async push with
//! retries and a budget, fault classification, pull delivery (GetResponse/Ack), GetStatus, schema versions.

mod common;

use std::time::Duration;

use common::gateway::{self, FakeGateway};
use common::*;
use smev_adapter::storage::Status;

fn async_extra(gateway_url: &str, delivery: &str) -> String {
    format!(
        "[gateway]\nurl = \"{gateway_url}\"\n\n[delivery]\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\npoll_interval = \"50ms\"\n{delivery}\n"
    )
}

async fn wait_status(
    node: &TestNode,
    message_id: &str,
    want: Status,
    secs: u64,
) -> smev_adapter::storage::queue::Detail {
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let detail = node.node.store.show(message_id).expect("store readable");
        if let Some(d) = &detail
            && d.summary.status == want.as_str()
        {
            return d.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{message_id} did not reach {want} within {secs} s: {detail:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sync_answers_are_stored_before_they_are_sent_and_a_repeat_gets_the_same_bytes_even_after_restart()
 {
    let node = TestNode::start().await;
    let id = new_message_id();
    let request = registration_request("1.3", &id, "4510", "123456");
    let first = post_soap(node.addr, request.clone()).await;
    assert_eq!(first.status, 200);
    let detail = node.node.store.show(&id).expect("read").expect("stored");
    assert_eq!(detail.summary.status, "DELIVERED");
    assert_eq!(detail.summary.mapping.as_deref(), Some("registration"));
    let statuses: Vec<&str> = detail.history.iter().map(|h| h.1.as_str()).collect();
    assert_eq!(statuses, vec!["RECEIVED", "DELIVERED"]);

    let repeat = post_soap(node.addr, request.clone()).await;
    assert_eq!(
        repeat.body, first.body,
        "a repeat gets the stored answer, byte for byte"
    );

    // Restart on the same data directory: the repeat still gets the same answer and nothing runs twice.
    let TestNode {
        dir, mut handle, ..
    } = node;
    handle.abort();
    let _ = (&mut handle).await;
    let node = TestNode::start_in(dir, "reply = \"sync\"", "", "").await;
    let after = post_soap(node.addr, request).await;
    assert_eq!(after.body, first.body);
    assert_eq!(
        node.node.store.list(None, false, 100).expect("list").len(),
        1,
        "one message stored, not two"
    );
}

#[tokio::test]
async fn async_mode_acknowledges_with_metadata_then_pushes_the_answer_once() {
    let gw = FakeGateway::start().await;
    let node = TestNode::start_with("reply = \"async\"", "", &async_extra(&gw.url(), "")).await;
    let id = new_message_id();
    let request = registration_request("1.3", &id, "4012", "654321");
    let ack = post_soap(node.addr, request.clone()).await;
    assert_eq!(ack.status, 200, "{}", ack.body);
    let doc = ack.doc();
    let metadata = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, "MessageMetadata")))
        .expect("MessageMetadata");
    assert_eq!(
        metadata.parent().map(|p| p.tag_name().name()),
        Some("SendRequestResponse")
    );
    assert_eq!(text_of(&doc, TYPES_13, "MessageId"), Some(id.as_str()));
    assert_eq!(text_of(&doc, TYPES_13, "MessageType"), Some("REQUEST"));

    let delivered = gw.wait_for(1, 10).await;
    assert_eq!(delivered[0].to, id);
    assert!(
        delivered[0]
            .body
            .contains("<r:LastName>Петрова</r:LastName>"),
        "{}",
        delivered[0].body
    );
    let detail = wait_status(&node, &id, Status::Delivered, 10).await;
    let statuses: Vec<&str> = detail.history.iter().map(|h| h.1.as_str()).collect();
    assert_eq!(
        statuses,
        vec!["RECEIVED", "PROCESSING", "RESPONSE_READY", "DELIVERED"]
    );
    assert_eq!(detail.attempts.len(), 1);

    let repeat = post_soap(node.addr, request).await;
    assert_eq!(
        repeat.body, ack.body,
        "a repeat gets the same acknowledgement"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        gw.received().len(),
        1,
        "and nothing is processed or delivered twice"
    );
}

#[tokio::test]
async fn retryable_gateway_failures_are_retried_with_backoff_until_delivered() {
    let gw = FakeGateway::start().await;
    gw.script([
        (503, String::new()),
        (500, gateway::fault("Server", "SMEVFailure")),
        (500, gateway::fault("Server", "DestinationOverflow")),
    ]);
    let node = TestNode::start_with("reply = \"async\"", "", &async_extra(&gw.url(), "")).await;
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
    let detail = wait_status(&node, &id, Status::Delivered, 15).await;
    assert_eq!(detail.attempts.len(), 4, "{:?}", detail.attempts);
    assert_eq!(
        detail.attempts.iter().filter(|a| a.1).count(),
        1,
        "only the last attempt succeeded"
    );
    assert!(
        detail.attempts[0]
            .3
            .as_deref()
            .unwrap_or("")
            .contains("HTTP 503")
    );
    assert!(detail.history.iter().any(|h| h.1 == "WAITING_FOR_RETRY"));
    let all = gw.received();
    assert!(
        all.iter().all(|r| r.body == all[0].body),
        "every retry sends the same stored response"
    );
}

#[tokio::test]
async fn validation_faults_are_final_and_message_is_already_sent_counts_as_delivered() {
    let gw = FakeGateway::start().await;
    gw.script([
        (500, gateway::fault("Client", "InvalidContent")),
        (500, gateway::fault("Client", "MessageIsAlreadySent")),
    ]);
    let node = TestNode::start_with("reply = \"async\"", "", &async_extra(&gw.url(), "")).await;
    let first = new_message_id();
    assert_eq!(
        post_soap(
            node.addr,
            registration_request("1.3", &first, "4510", "123456")
        )
        .await
        .status,
        200
    );
    let failed = wait_status(&node, &first, Status::Failed, 10).await;
    assert_eq!(
        failed.attempts.len(),
        1,
        "a validation fault is not retried"
    );
    assert!(
        failed
            .summary
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("InvalidContent")
    );
    let second = new_message_id();
    assert_eq!(
        post_soap(
            node.addr,
            registration_request("1.3", &second, "4510", "123456")
        )
        .await
        .status,
        200
    );
    wait_status(&node, &second, Status::Delivered, 10).await;
}

#[tokio::test]
async fn the_retry_budget_ends_in_failed_and_an_operator_retry_delivers_it() {
    let mut gw = FakeGateway::start().await;
    gw.down();
    let node = TestNode::start_with(
        "reply = \"async\"",
        "",
        &async_extra(&gw.url(), "max_attempts = 3"),
    )
    .await;
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
    let failed = wait_status(&node, &id, Status::Failed, 10).await;
    assert_eq!(failed.attempts.len(), 3);
    assert!(
        failed
            .summary
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("gave up after 3 attempts"),
        "{failed:?}"
    );

    gw.up().await;
    let (n, key) = (node.node.clone(), id.clone());
    let retried = tokio::task::spawn_blocking(move || n.store.retry_blocking(Some(key)))
        .await
        .expect("join");
    assert_eq!(retried.expect("retry"), 1);
    wait_status(&node, &id, Status::Delivered, 10).await;
    assert_eq!(gw.received().len(), 1);
}

#[tokio::test]
async fn pull_delivery_leases_the_oldest_answer_and_ack_completes_it() {
    let node = TestNode::start_with(
        "reply = \"async\"",
        "",
        "[delivery]\nmode = \"pull\"\npull_visibility = \"400ms\"\n",
    )
    .await;
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
    wait_status(&node, &id, Status::ResponseReady, 10).await;

    // Each poll is signed anew: the node accepts a signed poll once.
    let get = || get_response_request("AGENCY_B");
    let first = post_soap(node.addr, get()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let doc = first.doc();
    assert_eq!(
        text_of(&doc, TYPES_13, "OriginalMessageId"),
        Some(id.as_str())
    );
    assert_eq!(text_of(&doc, REG_NS, "LastName"), Some("Иванов"));
    let recipient = doc
        .descendants()
        .find(|n| n.tag_name().name() == "Recipient")
        .and_then(|s| s.children().find(|n| n.tag_name().name() == "Mnemonic"))
        .and_then(|n| n.text());
    assert_eq!(
        recipient,
        Some("AGENCY_B"),
        "the answer goes to the request's verified signer"
    );
    let response_id = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, "SenderProvidedResponseData")))
        .and_then(|d| {
            d.children()
                .find(|n| n.has_tag_name((TYPES_13, "MessageID")))
        })
        .and_then(|n| n.text())
        .expect("response MessageID")
        .to_string();

    let leased = post_soap(node.addr, get()).await;
    assert!(
        !leased.body.contains("ResponseMessage"),
        "a leased answer is not offered twice at once: {}",
        leased.body
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = post_soap(node.addr, get()).await;
    assert!(
        again.body.contains(&response_id),
        "an unacknowledged answer is offered again after the visibility timeout"
    );

    let ack = ack_request("AGENCY_B", &response_id);
    let acked = post_soap(node.addr, ack.clone()).await;
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert!(acked.body.contains("AckResponse"));
    wait_status(&node, &id, Status::Delivered, 5).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        !post_soap(node.addr, get())
            .await
            .body
            .contains("ResponseMessage"),
        "nothing left after the Ack"
    );

    let unknown = ack_request("AGENCY_B", &new_message_id());
    let answer = post_soap(node.addr, unknown).await;
    assert_eq!(answer.status, 500);
    assert!(
        answer.body.contains("TargetMessageIsNotFound"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn get_status_reports_the_stored_status_or_does_not_exist() {
    let node = TestNode::start().await;
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
    let ask = |mid: &str| get_status_request("AGENCY_B", mid);
    let known = post_soap(node.addr, ask(&id)).await;
    let doc = known.doc();
    assert_eq!(
        text_of(&doc, TYPES_13, "OriginalMessageId"),
        Some(id.as_str())
    );
    assert_eq!(
        text_of(&doc, TYPES_13, "StatusCategory"),
        Some("responseIsDelivered")
    );
    assert!(
        text_of(&doc, TYPES_13, "StatusDetails")
            .unwrap_or("")
            .starts_with("DELIVERED since 20")
    );
    let unknown = post_soap(node.addr, ask(&new_message_id())).await;
    assert_eq!(
        text_of(&unknown.doc(), TYPES_13, "StatusCategory"),
        Some("doesNotExist")
    );
}

#[tokio::test]
async fn a_store_written_by_a_newer_version_is_refused_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("data")).expect("data dir");
    let conn = rusqlite::Connection::open(dir.path().join("data/adapter.db")).expect("db");
    conn.pragma_update(None, "user_version", 99)
        .expect("version");
    drop(conn);
    let text = config_text(dir.path(), "");
    let path = dir.path().join("adapter.toml");
    let config = smev_adapter::config::Config::parse(&path, &text, &|_| None).expect("config");
    let err = match smev_adapter::node::Node::start(config) {
        Ok(_) => panic!("a newer store must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("schema version 99 is newer than this smev-adapter supports"),
        "{err}"
    );
}

#[tokio::test]
async fn requests_stored_but_not_answered_before_a_stop_are_processed_after_restart() {
    let gw = FakeGateway::start().await;
    let extra = async_extra(&gw.url(), "");
    let dir = tempfile::tempdir().expect("tempdir");
    // Store a request as an interrupted node would have left it: RECEIVED, no answer.
    {
        let node = TestNode::start_in(
            dir,
            "reply = \"async\"",
            "",
            "[delivery]\nmode = \"pull\"\nworkers = 1\n",
        )
        .await;
        let id = new_message_id();
        let record = smev_adapter::storage::NewIncoming {
            sender: "AGENCY_B".into(),
            received_detail: None,
            message_id: id.clone(),
            version: "1.3",
            mapping: None,
            request: registration_request("1.3", &id, "4510", "123456").into_bytes(),
            deadline_at: None,
            ack: None,
            answer: None,
        };
        node.node
            .store
            .insert_incoming(record)
            .await
            .expect("stored");
        let TestNode { dir, handle, .. } = node;
        handle.abort();
        let node = TestNode::start_in(dir, "reply = \"async\"", "", &extra).await;
        let delivered = gw.wait_for(1, 10).await;
        assert_eq!(delivered[0].to, id);
        wait_status(&node, &id, Status::Delivered, 10).await;
    }
}

fn queue_cli(node: &TestNode, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .arg("--config")
        .arg(node.dir.path().join("adapter.toml"))
        .arg("queue")
        .args(args)
        .output()
        .expect("run queue");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_cli_lists_shows_retries_and_purges_on_a_live_node() {
    let mut gw = FakeGateway::start().await;
    gw.down();
    let node = TestNode::start_with(
        "reply = \"async\"",
        "",
        &async_extra(&gw.url(), "max_attempts = 1"),
    )
    .await;
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
    wait_status(&node, &id, Status::Failed, 10).await;

    let (ok, list) = queue_cli(&node, &["list", "--status", "failed"]);
    assert!(
        ok && list.contains(&id) && list.contains("FAILED"),
        "{list}"
    );
    let (ok, list) = queue_cli(&node, &["list", "--status", "delivered"]);
    assert!(ok && !list.contains(&id), "{list}");
    let (ok, show) = queue_cli(&node, &["show", &id]);
    assert!(ok, "{show}");
    for needle in [
        "RECEIVED",
        "PROCESSING",
        "RESPONSE_READY",
        "FAILED",
        "delivery attempts: 1",
        "cannot reach the gateway",
    ] {
        assert!(
            show.contains(needle),
            "`queue show` mentions {needle}:\n{show}"
        );
    }

    gw.up().await;
    let (ok, retried) = queue_cli(&node, &["retry", "--failed"]);
    assert!(ok && retried.contains("1 message put back"), "{retried}");
    wait_status(&node, &id, Status::Delivered, 10).await;

    let (ok, purged) = queue_cli(&node, &["purge", "--older-than", "0s"]);
    assert!(ok && purged.contains("1 finished message"), "{purged}");
    assert!(node.node.store.show(&id).expect("read").is_none());
    let (ok, bad) = queue_cli(&node, &["list", "--status", "nonsense"]);
    assert!(!ok && bad.contains("unknown status `nonsense`"), "{bad}");
}

#[tokio::test]
async fn metrics_count_requests_outcomes_queue_depth_deliveries_and_pools() {
    let gw = FakeGateway::start().await;
    gw.script([(503, String::new())]);
    let node = TestNode::start_with("reply = \"async\"", "", &async_extra(&gw.url(), "")).await;
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
    assert_eq!(
        post_soap(
            node.addr,
            registration_request("1.3", &id, "4510", "123456")
        )
        .await
        .status,
        200
    );
    assert_eq!(
        post_soap(
            node.addr,
            registration_request("1.3", "not-a-uuid", "4510", "123456")
        )
        .await
        .status,
        500
    );
    assert_eq!(
        send(
            node.addr,
            "POST",
            "/ws",
            Some("application/soap+xml"),
            b"<x/>".to_vec()
        )
        .await
        .status,
        500
    );
    wait_status(&node, &id, Status::Delivered, 10).await;

    let metrics = send(node.addr, "GET", "/metrics", None, Vec::new()).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.body;
    for line in [
        "smev_requests_total{operation=\"SendRequest\",outcome=\"ok\"} 1",
        "smev_requests_total{operation=\"SendRequest\",outcome=\"duplicate\"} 1",
        "smev_requests_total{operation=\"invalid\",outcome=\"InvalidMessageIdFormat\"} 1",
        "smev_requests_total{operation=\"unknown\",outcome=\"VersionMismatch\"} 1",
        "smev_request_duration_seconds_count{operation=\"SendRequest\"} 2",
        "smev_queue_messages{status=\"DELIVERED\"} 1",
        "smev_delivery_attempts_total{outcome=\"retry\"} 1",
        "smev_delivery_attempts_total{outcome=\"delivered\"} 1",
        "smev_overdue_messages 0",
        "smev_datasource_connections{datasource=\"agency\",state=\"max\"} 8",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics has `{line}`:\n{text}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapping_deadline_is_stored_and_an_unfinished_message_past_it_is_flagged_overdue() {
    let node = TestNode::start_with("reply = \"async\"", "", "[delivery]\nmode = \"pull\"\n").await;
    let id = new_message_id();
    let before = smev_adapter::storage::now_millis();
    assert_eq!(
        post_soap(
            node.addr,
            registration_request("1.3", &id, "4510", "123456")
        )
        .await
        .status,
        200
    );
    let stored = wait_status(&node, &id, Status::ResponseReady, 10).await;
    let deadline = stored
        .summary
        .deadline_at
        .expect("registration.toml has deadline = 5m");
    assert!(
        (deadline - before - 300_000).abs() < 5_000,
        "deadline = received + 5m: {deadline} vs {before}"
    );
    assert!(!stored.summary.overdue(smev_adapter::storage::now_millis()));

    // A request whose deadline has passed and is still not delivered.
    let late = new_message_id();
    let record = smev_adapter::storage::NewIncoming {
        sender: "AGENCY_B".into(),
        received_detail: None,
        message_id: late.clone(),
        version: "1.3",
        mapping: Some("registration".into()),
        request: registration_request("1.3", &late, "4510", "123456").into_bytes(),
        deadline_at: Some(smev_adapter::storage::now_millis() - 1_000),
        ack: None,
        answer: None,
    };
    node.node
        .store
        .insert_incoming(record)
        .await
        .expect("stored");
    let overdue = node.node.store.list(None, true, 10).expect("list");
    assert_eq!(
        overdue
            .iter()
            .map(|m| m.message_id.as_str())
            .collect::<Vec<_>>(),
        vec![late.as_str()]
    );
    let metrics = send(node.addr, "GET", "/metrics", None, Vec::new())
        .await
        .body;
    assert!(
        metrics.lines().any(|l| l == "smev_overdue_messages 1"),
        "{metrics}"
    );
    let (ok, listed) = queue_cli(&node, &["list", "--overdue"]);
    assert!(
        ok && listed.contains(&late) && listed.contains("OVERDUE") && !listed.contains(&id),
        "{listed}"
    );
}
