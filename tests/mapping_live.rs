//! A running node's mappings over real HTTP: the sample mappings, XSD faults with positions, hot reload
//! (good, bad, in-flight), and a PostgreSQL datasource that goes down and comes back.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::backends::{Backend, pg_url, workspace};
use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const FAMILY_NS: &str = "urn://example.gov/family/1.0";

/// Copies the repository's mappings (with their XSDs) into `to`.
fn copy_mappings(to: &Path) {
    let from = repo().join("mappings");
    for entry in walk(&from) {
        let rel = entry.strip_prefix(&from).expect("inside");
        let target = to.join(rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::copy(&entry, &target).expect("copy");
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A node on the sample SQLite database with its own copy of mappings/.
async fn node_with_own_mappings() -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let r = repo();
    let own = dir.path().join("mappings");
    std::fs::create_dir(&own).expect("mkdir");
    copy_mappings(&own);
    let text = config_text(dir.path(), "").replace(
        &format!("dir = \"{}/mappings\"", r.display()),
        &format!("dir = \"{}\"", own.display()),
    );
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, text).expect("config");
    TestNode::start_with_config(dir, &path).await
}

fn mappings_dir(node: &TestNode) -> std::path::PathBuf {
    node.dir.path().join("mappings")
}

/// Polls `check` every 100 ms until it holds, for at most 30 s (the watcher debounces changes).
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 30 s");
}

/// The first element of the RegistrationResponse for the sample passport, as `Name=text`.
async fn last_name(node: &TestNode) -> Option<String> {
    // A fresh MessageID each time: a repeat would get the first answer back (dedup).
    let request = common::registration_request("1.3", &new_message_id(), "4510", "123456");
    let answer = post_soap(node.addr, request).await;
    let doc = answer.doc();
    let response = doc
        .descendants()
        .find(|n| n.has_tag_name((REG_NS, "RegistrationResponse")))?;
    let first = response.children().find(|c| c.is_element())?;
    Some(format!(
        "{}={}",
        first.tag_name().name(),
        first.text().unwrap_or("")
    ))
}

#[tokio::test]
async fn the_family_and_income_samples_are_answered_over_http() {
    let node = TestNode::start().await;
    let answer = post_soap(node.addr, sample("family.xml")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let doc = answer.doc();
    let members: Vec<&str> = doc
        .descendants()
        .filter(|n| n.has_tag_name((FAMILY_NS, "Member")))
        .filter_map(|m| {
            m.children()
                .find(|c| c.has_tag_name((FAMILY_NS, "FirstName")))
                .and_then(|c| c.text())
        })
        .collect();
    assert_eq!(members, vec!["Елена", "Пётр", "Софья"]);
    let answer = post_soap(node.addr, sample("income.xml")).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let expected =
        std::fs::read_to_string(repo().join("samples/responses/income.xml")).expect("expected");
    assert!(answer.body.contains(expected.trim_end()), "{}", answer.body);
}

#[tokio::test]
async fn a_request_that_breaks_the_xsd_gets_invalid_content_at_the_offending_element() {
    let node = TestNode::start().await;
    let request = sample("income-invalid.xml");
    let answer = post_soap(node.addr, request.clone()).await;
    assert_eq!(answer.status, 500, "{}", answer.body);
    let doc = answer.doc();
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name((FAULTS_13, "ValidationError")))
        .expect("ValidationError");
    let at = request.find("<i:To>").expect("To element");
    assert_eq!(
        error.attribute("errorPosition"),
        Some((request[..at].chars().count() + 1).to_string().as_str())
    );
    assert!(
        error
            .text()
            .unwrap_or("")
            .contains("'31.03.2024' is not a valid value of the atomic type 'xs:date'"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_good_change_to_a_mapping_is_served_without_restart() {
    let node = node_with_own_mappings().await;
    assert_eq!(last_name(&node).await.as_deref(), Some("LastName=Иванов"));
    let file = mappings_dir(&node).join("registration.toml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace("element = \"r:LastName\"", "element = \"r:Surname\""),
    )
    .expect("write");
    eventually("the new mapping serving", || async {
        last_name(&node).await.as_deref() == Some("Surname=Иванов")
    })
    .await;
    assert!(
        node.node
            .live_mappings
            .reloads_applied
            .load(Ordering::Relaxed)
            >= 1
    );
    let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
    assert!(
        ready.body.contains("mappings: ok (3 in force"),
        "{}",
        ready.body
    );
    assert!(!ready.body.contains("REFUSED"), "{}", ready.body);
}

#[tokio::test]
async fn a_bad_change_is_refused_the_old_set_keeps_serving_and_the_error_is_visible() {
    let node = node_with_own_mappings().await;
    let file = mappings_dir(&node).join("registration.toml");
    let text = std::fs::read_to_string(&file).expect("read");
    // Two mistakes: SQL naming a missing table, and a response element with an undeclared prefix.
    let broken = text
        .replace("FROM passport pp", "FROM pasport pp")
        .replace("element = \"r:LastName\"", "element = \"x:LastName\"");
    std::fs::write(&file, broken).expect("write");
    eventually("the refusal to show in /readyz", || async {
        let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
        ready.body.contains("LAST CHANGE REFUSED")
    })
    .await;
    let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
    assert_eq!(ready.status, 200, "the node stays ready: {}", ready.body);
    assert!(
        ready.body.contains("registration.toml:") && ready.body.contains("prefix `x`"),
        "{}",
        ready.body
    );
    assert!(
        node.node
            .live_mappings
            .reloads_refused
            .load(Ordering::Relaxed)
            >= 1
    );
    // The old mapping still answers exactly as before.
    assert_eq!(last_name(&node).await.as_deref(), Some("LastName=Иванов"));
    // Fixing the file clears the refusal.
    std::fs::write(&file, text).expect("restore");
    eventually("the refusal to clear", || async {
        let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
        !ready.body.contains("REFUSED")
    })
    .await;
}

#[tokio::test]
async fn a_snapshot_of_the_mapping_set_is_untouched_by_a_reload() {
    let node = node_with_own_mappings().await;
    let snapshot = node.node.mappings();
    let before = snapshot
        .route(REG_NS, "RegistrationRequest")
        .expect("mapping")
        .clone();
    let file = mappings_dir(&node).join("registration.toml");
    let text = std::fs::read_to_string(&file).expect("read");
    std::fs::write(
        &file,
        text.replace("element = \"r:LastName\"", "element = \"r:Surname\""),
    )
    .expect("write");
    let inner = node.node.clone();
    tokio::task::spawn_blocking(move || inner.reload_mappings())
        .await
        .expect("join")
        .expect("valid change");
    // The snapshot taken before the swap is untouched; new snapshots see the change.
    let still = snapshot
        .route(REG_NS, "RegistrationRequest")
        .expect("mapping");
    assert!(Arc::ptr_eq(&before, still));
    assert_eq!(still.response.fields[0].element.local, "LastName");
    let now = node.node.mappings();
    assert_eq!(
        now.route(REG_NS, "RegistrationRequest")
            .expect("mapping")
            .response
            .fields[0]
            .element
            .local,
        "Surname"
    );
}

/// A TCP forwarder to PostgreSQL that the test can cut and restore.
struct Proxy {
    addr: SocketAddr,
    target: SocketAddr,
    accept: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut p = Proxy {
            addr,
            target,
            accept: None,
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        p.serve(listener);
        p
    }

    fn serve(&mut self, listener: TcpListener) {
        let target = self.target;
        let conns = self.conns.clone();
        self.accept = Some(tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                conns.lock().expect("lock").push(task);
            }
        }));
    }

    /// The database "goes down": no listener, every open connection cut.
    fn cut(&mut self) {
        if let Some(a) = self.accept.take() {
            a.abort();
        }
        for c in self.conns.lock().expect("lock").drain(..) {
            c.abort();
        }
    }

    async fn restore(&mut self) {
        let listener = TcpListener::bind(self.addr)
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }
}

fn failure_code(answer: &Answer) -> Option<String> {
    text_of(&answer.doc(), TYPES_13, "RejectionReasonCode").map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_at_start_or_later_answers_failure_the_node_keeps_running_and_recovers() {
    let schema_sql = format!(
        "{}\n{}",
        std::fs::read_to_string(repo().join("samples/schema.sql")).expect("schema"),
        std::fs::read_to_string(repo().join("samples/fixed.sql")).expect("fixed")
    );
    let backend = tokio::task::spawn_blocking(move || Backend::postgres(&schema_sql))
        .await
        .expect("join");
    let pg: tokio_postgres::Config = pg_url().parse().expect("SMEV_TEST_PG_URL parses");
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let host = match pg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_string(),
    };
    let target: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let mut proxy = Proxy::start(target).await;
    let user = pg.get_user().unwrap_or("postgres");
    let db = pg.get_dbname().unwrap_or("test");
    let schema = backend.pg_schema.clone().expect("schema");
    let ds = format!(
        "[datasources.agency]\nkind = \"postgres\"\nurl = \"postgresql://{user}@{}/{db}?options=-c%20search_path%3D{schema}\"\nconnect_timeout = \"2s\"\n",
        proxy.addr
    );
    let (dir, path) = workspace(&ds, &[]);
    copy_mappings(&dir.path().join("mappings"));
    // The database is down when the node starts: it starts anyway and answers FAILURE.
    proxy.cut();
    let node = TestNode::start_with_config(dir, &path).await;
    // A fresh MessageID each time: a repeat would get the first answer back (dedup).
    let early = post_soap(
        node.addr,
        common::registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(
        failure_code(&early).as_deref(),
        Some("FAILURE"),
        "{}",
        early.body
    );

    proxy.restore().await;
    // A fresh MessageID each time: a repeat would get the first answer back (dedup).
    let ok = post_soap(
        node.addr,
        common::registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(
        text_of(&ok.doc(), REG_NS, "LastName"),
        Some("Иванов"),
        "{}",
        ok.body
    );

    proxy.cut();
    // A fresh MessageID each time: a repeat would get the first answer back (dedup).
    let down = post_soap(
        node.addr,
        common::registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(down.status, 200, "{}", down.body);
    assert_eq!(
        failure_code(&down).as_deref(),
        Some("FAILURE"),
        "{}",
        down.body
    );
    let health = send(node.addr, "GET", "/healthz", None, Vec::new()).await;
    assert_eq!(health.status, 200);
    let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(
        ready.body.contains("datasource agency: FAIL"),
        "{}",
        ready.body
    );

    proxy.restore().await;
    // A fresh MessageID each time: a repeat would get the first answer back (dedup).
    let back = post_soap(
        node.addr,
        common::registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert_eq!(
        text_of(&back.doc(), REG_NS, "LastName"),
        Some("Иванов"),
        "{}",
        back.body
    );
    let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    drop(node);
    tokio::task::spawn_blocking(move || drop(backend))
        .await
        .expect("join");
}

fn hold_mapping(lock: i64, element: &str) -> String {
    format!(
        r#"request = "{{urn:t}}Hold"
datasource = "db"
namespaces = {{ t = "urn:t" }}

[params]
name = {{ path = "t:Name" }}

[query]
sql = "SELECT t.name FROM thing t CROSS JOIN LATERAL (SELECT pg_advisory_lock_shared({lock})) l WHERE t.name = :name"

[response]
element = "t:{element}"
fields = [ {{ column = "name", element = "t:Name" }} ]
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_finishes_on_the_mapping_it_started_with() {
    let backend = tokio::task::spawn_blocking(|| {
        Backend::postgres(
            "CREATE TABLE thing (name TEXT NOT NULL); INSERT INTO thing VALUES ('Alpha');",
        )
    })
    .await
    .expect("join");
    let lock = i64::from(uuid::Uuid::new_v4().as_fields().0 & 0x7fff_ffff);
    let (dir, path) = workspace(
        &backend.datasource_toml("db"),
        &[("hold.toml", &hold_mapping(lock, "Old"))],
    );
    let node = TestNode::start_with_config(dir, &path).await;

    // Hold the lock the mapping's query waits for, so the request stays in flight.
    let (holder, conn) = tokio_postgres::connect(&pg_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    holder
        .execute(&format!("SELECT pg_advisory_lock({lock})"), &[])
        .await
        .expect("lock");
    let addr = node.addr;
    let unsigned = common::unsigned_registration_request("1.3", &new_message_id(), "0000", "000000").replace(
        "<r:RegistrationRequest xmlns:r=\"urn://example.gov/registration/1.0\"><r:Series>0000</r:Series><r:Number>000000</r:Number></r:RegistrationRequest>",
        "<t:Hold xmlns:t=\"urn:t\"><t:Name>Alpha</t:Name></t:Hold>",
    );
    let body = common::sign_as("AGENCY_B", &unsigned, "SIGNED_BY_CONSUMER");
    let in_flight = tokio::spawn(post_soap(addr, body.clone()));
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%pg_advisory_lock_shared({lock})%'"
    );
    eventually("the request to wait on the lock", || async {
        holder
            .query_one(&waiting, &[])
            .await
            .map(|r| r.get::<_, i64>(0) == 1)
            .unwrap_or(false)
    })
    .await;

    // The mapping changes while the request waits.
    std::fs::write(
        node.dir.path().join("mappings/hold.toml"),
        hold_mapping(lock, "New"),
    )
    .expect("write");
    let inner = node.node.clone();
    tokio::task::spawn_blocking(move || inner.reload_mappings())
        .await
        .expect("join")
        .expect("the change is valid");
    let set = node.node.mappings();
    assert_eq!(
        set.route("urn:t", "Hold")
            .expect("mapping")
            .response
            .root
            .local,
        "New"
    );

    holder
        .execute(&format!("SELECT pg_advisory_unlock({lock})"), &[])
        .await
        .expect("unlock");
    let answer = in_flight.await.expect("join");
    assert!(
        answer
            .body
            .contains("<t:Old xmlns:t=\"urn:t\"><t:Name>Alpha</t:Name></t:Old>"),
        "{}",
        answer.body
    );
    // A new request (a repeat of the same MessageID would get the stored first answer).
    let again = common::unsigned_registration_request("1.3", &new_message_id(), "0000", "000000").replace(
        "<r:RegistrationRequest xmlns:r=\"urn://example.gov/registration/1.0\"><r:Series>0000</r:Series><r:Number>000000</r:Number></r:RegistrationRequest>",
        "<t:Hold xmlns:t=\"urn:t\"><t:Name>Alpha</t:Name></t:Hold>",
    );
    let after = post_soap(
        addr,
        common::sign_as("AGENCY_B", &again, "SIGNED_BY_CONSUMER"),
    )
    .await;
    assert!(
        after.body.contains("<t:New xmlns:t=\"urn:t\">"),
        "{}",
        after.body
    );
    drop(node);
    tokio::task::spawn_blocking(move || drop(backend))
        .await
        .expect("join");
}
