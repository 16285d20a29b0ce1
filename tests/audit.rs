//! The audit journal: every status change is recorded, `audit verify` detects an edited, deleted or
//! reordered entry and names the first bad one, `audit export` writes JSON lines for a time range.

mod common;

use common::*;

fn cli(node: &TestNode, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .arg("--config")
        .arg(node.dir.path().join("adapter.toml"))
        .args(args)
        .output()
        .expect("run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Opens the store file directly, as someone tampering with it would.
fn tamper(node: &TestNode, sql: &str) {
    let conn =
        rusqlite::Connection::open(node.dir.path().join("data/adapter.db")).expect("open store");
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
    )
    .expect("drop triggers");
    conn.execute_batch(sql).expect("tamper");
}

async fn node_with_history() -> TestNode {
    let node = TestNode::start().await;
    for (series, number) in [("4510", "123456"), ("6003", "000111"), ("4012", "654321")] {
        let answer = post_soap(
            node.addr,
            registration_request("1.3", &new_message_id(), series, number),
        )
        .await;
        assert_eq!(answer.status, 200);
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_status_change_and_decision_is_journaled_and_the_chain_verifies() {
    let node = node_with_history().await;
    let (ok, out) = cli(&node, &["audit", "verify"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("OK: 6 audit entries"),
        "two per sync exchange (received, answered): {out}"
    );
    let (ok, out) = cli(&node, &["audit", "export"]);
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    assert_eq!(lines.len(), 6);
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert_eq!(
        events,
        vec![
            "RECEIVED",
            "DELIVERED",
            "RECEIVED",
            "REJECTED",
            "RECEIVED",
            "DELIVERED"
        ]
    );
    assert!(
        lines[3]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("rejected NO_DATA"),
        "the decision and its reason: {}",
        lines[3]
    );
    assert!(
        lines
            .iter()
            .all(|l| l["message_id"].as_str().is_some_and(|m| m.len() == 36))
    );

    let (_, none) = cli(
        &node,
        &[
            "audit",
            "export",
            "--from",
            "2000-01-01",
            "--to",
            "2000-01-02",
        ],
    );
    assert!(
        !none.contains('{'),
        "a range with no entries exports none: {none}"
    );
    let (ok, bad) = cli(&node, &["audit", "export", "--from", "yesterday"]);
    assert!(!ok && bad.contains("`yesterday` is not a time"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_journal_refuses_edits_through_sql() {
    let node = node_with_history().await;
    let conn = rusqlite::Connection::open(node.dir.path().join("data/adapter.db")).expect("open");
    let err = conn
        .execute("UPDATE audit SET detail = 'x' WHERE seq = 1", [])
        .expect_err("append-only");
    assert!(err.to_string().contains("append-only"), "{err}");
    assert!(conn.execute("DELETE FROM audit WHERE seq = 1", []).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_entry_is_named() {
    let node = node_with_history().await;
    tamper(
        &node,
        "UPDATE audit SET detail = 'answered with nothing' WHERE seq = 4",
    );
    let (ok, out) = cli(&node, &["audit", "verify"]);
    assert!(!ok);
    assert!(
        out.contains("BROKEN: audit entry 4: its content does not match its hash (edited)"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_entry_is_named() {
    let node = node_with_history().await;
    tamper(&node, "DELETE FROM audit WHERE seq = 3");
    let (ok, out) = cli(&node, &["audit", "verify"]);
    assert!(!ok);
    assert!(
        out.contains("BROKEN: audit entry 4: sequence jumps from 2 to 4"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_entries_are_named() {
    let node = node_with_history().await;
    // Swap the contents of entries 2 and 3, renumbering them so the sequence itself looks intact.
    tamper(
        &node,
        "UPDATE audit SET seq = -2 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = -2;",
    );
    let (ok, out) = cli(&node, &["audit", "verify"]);
    assert!(!ok);
    assert!(
        out.contains("BROKEN: audit entry 2: it does not follow the entry before it"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_are_journaled() {
    let node = node_with_history().await;
    let (ok, out) = cli(&node, &["queue", "purge", "--older-than", "0s"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&node, &["audit", "export"]);
    assert!(ok);
    let last = out.lines().rfind(|l| l.starts_with('{')).expect("an entry");
    assert!(
        last.contains("\"event\":\"ADMIN_PURGE\"") && last.contains("purged 3 finished messages"),
        "{last}"
    );
    let (ok, out) = cli(&node, &["audit", "verify"]);
    assert!(
        ok && out.contains("OK: 7 audit entries"),
        "the journal survives the purge of its messages: {out}"
    );
}
