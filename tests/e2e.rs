//! End to end with real processes on loopback: the gateway simulator and two or three agency nodes (each its own
//! data_dir, database and keys from `pki init`), agency A (MFC_01) asking B (AGENCY_B) and C (AGENCY_C).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_smev-adapter");
const A: &str = "MFC_01";
const B: &str = "AGENCY_B";
const C: &str = "AGENCY_C";
const TOKEN: &str = "e2e-consumer-api-token-0123456789";
const PAYLOAD: &str = r#"<r:RegistrationRequest xmlns:r="urn://example.gov/registration/1.0"><r:Series>4510</r:Series><r:Number>123456</r:Number></r:RegistrationRequest>"#;
const REGISTRATION: &str = "{urn://example.gov/registration/1.0}RegistrationRequest";
/// How long anything in these tests may take before it counts as not happening.
const DEADLINE: Duration = Duration::from_secs(30);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary to completion.
fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("the smev-adapter binary runs")
}

/// Runs the binary and insists on exit 0; returns stdout.
fn run_ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "smev-adapter {args:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sample agency database, built once per test process by `samples build-db` and copied to each node.
fn sample_db() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir").keep();
        let out = dir.join("agency.db");
        let samples = repo().join("samples");
        run_ok(&[
            "samples",
            "build-db",
            "--samples",
            &samples.display().to_string(),
            "--out",
            &out.display().to_string(),
        ]);
        out
    })
}

/// A loopback port nobody listens on right now (the OS picks it; the listener is closed again at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// Polls `probe` until it returns Some, or panics naming `what` after [`DEADLINE`].
fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: did not happen within {DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`); `None` when the port does not answer.
fn http(port: u16, method: &str, path: &str, body: Option<&str>) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(DEADLINE)).ok()?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    Some((
        status,
        if chunked {
            unchunk(rest)
        } else {
            rest.to_string()
        },
    ))
}

/// Decodes a chunked HTTP body.
fn unchunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

fn json(port: u16, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(port, method, path, body.as_deref())
        .unwrap_or_else(|| panic!("{method} {path} on port {port}: no answer"));
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A child process, killed (SIGKILL) and reaped when dropped, also when a test panics.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(BIN)
            .args(args)
            .env("SMEV_ADAPTER_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file)
            .spawn()
            .expect("spawn smev-adapter");
        Proc { child }
    }

    /// Panics when the process has exited (it was meant to keep running).
    fn assert_running(&mut self, name: &str) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{name} exited early ({status}); see its log");
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An agency node: its config, ports, folder and (when running) its process.
struct Agency {
    mnemonic: &'static str,
    port: u16,
    api_port: u16,
    dir: PathBuf,
    config: PathBuf,
    proc: Option<Proc>,
}

impl Agency {
    fn config_arg(&self) -> String {
        self.config.display().to_string()
    }

    /// `smev-adapter --config THIS ARGS...`, insisting on success.
    fn cli(&self, args: &[&str]) -> String {
        let config = self.config_arg();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        run_ok(&all)
    }

    /// The store's rows (`queue list`) that mention `message_id`.
    fn queue_rows(&self, message_id: &str) -> Vec<String> {
        self.cli(&["queue", "list", "--limit", "1000"])
            .lines()
            .filter(|l| l.contains(message_id))
            .map(str::to_string)
            .collect()
    }

    /// A sample of `/metrics` summed over the lines whose labels contain every one of `labels`.
    fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let (status, text) = http(self.port, "GET", "/metrics", None).unwrap_or_default();
        assert_eq!(status, 200, "{} /metrics", self.mnemonic);
        text.lines()
            .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// The gateway simulator and the agency nodes of one scenario, in their own temporary folder.
struct World {
    gateway_port: u16,
    gateway: Option<Proc>,
    agencies: Vec<Agency>,
    dir: tempfile::TempDir,
}

impl World {
    /// A (MFC_01, async, consumer API and drop folder on) and the `providers` (mnemonic, reply mode); the gateway
    /// routes a registration request without a recipient to `route`. Nothing is started yet.
    fn new(providers: &[(&'static str, &str)], route: &[&str]) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = dir.path().join("pki");
        let others: Vec<&str> = providers.iter().map(|(m, _)| *m).collect();
        run_ok(&[
            "pki",
            "init",
            &pki.display().to_string(),
            "--node",
            A,
            "--agencies",
            &others.join(","),
        ]);
        let gateway_port = free_port();
        let mut agencies = Vec::new();
        for (mnemonic, reply) in std::iter::once(&(A, "async")).chain(providers) {
            let home = dir.path().join(mnemonic.to_lowercase());
            std::fs::create_dir_all(&home).expect("agency folder");
            let agency = Agency {
                mnemonic,
                port: free_port(),
                api_port: free_port(),
                config: home.join("adapter.toml"),
                dir: home,
                proc: None,
            };
            // Each agency has its own copy of the sample database, its passport holder's flat tagged with the
            // agency's name: an answer shows whose database it came from.
            let db = agency.dir.join("agency.db");
            std::fs::copy(sample_db(), &db).expect("copy the sample database");
            let conn = rusqlite::Connection::open(&db).expect("open the agency database");
            conn.execute(
                "UPDATE address SET flat = flat || ' (' || ?1 || ')' WHERE id IN (SELECT r.address_id FROM registration r JOIN passport p ON p.person_id = r.person_id WHERE p.series = '4510' AND p.number = '123456' AND r.deregistered_on IS NULL)",
                [mnemonic],
            )
            .expect("tag the agency database");
            drop(conn);
            let consumer = if *mnemonic == A {
                format!(
                    "[consumer]\napi_listen = \"127.0.0.1:{}\"\napi_token = \"{TOKEN}\"\nfolder = \"{}/exchange\"\n",
                    agency.api_port,
                    agency.dir.display()
                )
            } else {
                String::new()
            };
            let text = node_config(&agency, reply, gateway_port, &pki, &consumer);
            std::fs::write(&agency.config, text).expect("write the node config");
            agencies.push(agency);
        }
        let mut gateway = format!(
            "listen = \"127.0.0.1:{gateway_port}\"\nmnemonic = \"GATEWAY\"\n\n[delivery]\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\ntimeout = \"10s\"\nmax_attempts = 1000\n\n"
        );
        for a in &agencies {
            gateway.push_str(&format!(
                "[[nodes]]\nmnemonic = \"{}\"\nurl = \"http://127.0.0.1:{}/ws\"\n\n",
                a.mnemonic, a.port
            ));
        }
        let recipients: Vec<String> = route.iter().map(|r| format!("\"{r}\"")).collect();
        gateway.push_str(&format!(
            "[[routes]]\nrequest = \"{REGISTRATION}\"\nrecipients = [{}]\n",
            recipients.join(", ")
        ));
        std::fs::write(dir.path().join("gateway.toml"), gateway).expect("write gateway.toml");
        World {
            gateway_port,
            gateway: None,
            agencies,
            dir,
        }
    }

    /// Starts the gateway and every agency, and waits until all are ready.
    fn start_all(&mut self) -> &mut World {
        self.start_gateway();
        for name in self.names() {
            self.start(name);
        }
        self
    }

    fn names(&self) -> Vec<&'static str> {
        self.agencies.iter().map(|a| a.mnemonic).collect()
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{}.log", name.to_lowercase()))
    }

    fn start_gateway(&mut self) {
        let config = self.dir.path().join("gateway.toml").display().to_string();
        let log = self.log("gateway");
        let mut proc = Proc::spawn(&["--config", &config, "gateway"], &log);
        let port = self.gateway_port;
        wait_for("the gateway answers /healthz", || {
            proc.assert_running("the gateway");
            http(port, "GET", "/healthz", None).filter(|(s, _)| *s == 200)
        });
        self.gateway = Some(proc);
    }

    /// Starts (or restarts, on the same store) an agency's node and waits for /readyz.
    fn start(&mut self, name: &str) {
        let log = self.log(name);
        let agency = self.agency_mut(name);
        let config = agency.config_arg();
        let mut proc = Proc::spawn(&["--config", &config, "serve"], &log);
        let port = agency.port;
        wait_for(&format!("{name} answers /readyz"), || {
            proc.assert_running(name);
            http(port, "GET", "/readyz", None).filter(|(s, _)| *s == 200)
        });
        agency.proc = Some(proc);
    }

    /// kill -9.
    fn kill(&mut self, name: &str) {
        let proc = self.agency_mut(name).proc.take();
        drop(proc);
    }

    fn agency(&self, name: &str) -> &Agency {
        self.agencies
            .iter()
            .find(|a| a.mnemonic == name)
            .unwrap_or_else(|| panic!("no agency {name}"))
    }

    fn agency_mut(&mut self, name: &str) -> &mut Agency {
        self.agencies
            .iter_mut()
            .find(|a| a.mnemonic == name)
            .unwrap_or_else(|| panic!("no agency {name}"))
    }

    /// POST /control on the gateway (fault injection).
    fn control(&self, armed: Value) {
        let (status, _) = json(self.gateway_port, "POST", "/control", Some(armed));
        assert_eq!(status, 200, "the gateway takes the fault plan");
    }

    /// The gateway's counters and queue (GET /control).
    fn gateway_state(&self) -> Value {
        json(self.gateway_port, "GET", "/control", None).1
    }

    /// A asks through its JSON API; returns the MessageID.
    fn api_send(&self, recipient: Option<&str>) -> String {
        let mut body = serde_json::json!({ "payload_xml": PAYLOAD });
        if let Some(r) = recipient {
            body["recipient"] = Value::from(r);
        }
        let (status, created) = json(self.agency(A).api_port, "POST", "/api/requests", Some(body));
        assert_eq!(status, 202, "the API queues the request: {created}");
        created["message_id"]
            .as_str()
            .expect("a message_id")
            .to_string()
    }

    /// A's view of its request (GET /api/requests/{id}).
    fn api_view(&self, id: &str) -> Value {
        let (status, view) = json(
            self.agency(A).api_port,
            "GET",
            &format!("/api/requests/{id}"),
            None,
        );
        assert_eq!(status, 200, "{view}");
        view
    }

    /// Waits until A's request has `n` answers and returns their payloads.
    fn api_answers(&self, id: &str, n: usize) -> Vec<String> {
        let view = wait_for(&format!("{n} answer(s) to {id} at {A}"), || {
            let view = self.api_view(id);
            (view["answers"].as_array().map_or(0, Vec::len) >= n).then_some(view)
        });
        view["answers"]
            .as_array()
            .expect("answers")
            .iter()
            .map(|a| a["payload_xml"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // The processes are still running here; their logs tell why the scenario failed.
            for name in std::iter::once("gateway").chain(self.names()) {
                let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                eprintln!("--- last lines of {name}'s log:");
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

fn node_config(agency: &Agency, reply: &str, gateway_port: u16, pki: &Path, extra: &str) -> String {
    let r = repo().display().to_string();
    let d = agency.dir.display();
    let p = pki.display();
    let key = agency.mnemonic.to_lowercase();
    format!(
        r#"[node]
mnemonic = "{mnemonic}"
reply = "{reply}"

[server]
listen = "127.0.0.1:{port}"
plain_http = true
wsdl_dir = "{r}/wsdl"

[storage]
data_dir = "{d}/data"
synchronous = "normal"

[gateway]
url = "http://127.0.0.1:{gateway_port}/ws"

[delivery]
retry_initial = "100ms"
retry_max = "300ms"
poll_interval = "100ms"
timeout = "10s"

[trust]
ca = ["{p}/ca.crt"]

[keys]
private_key = "{p}/{key}.key"
certificate = "{p}/{key}.crt"

[mappings]
dir = "{r}/mappings"

[datasources.agency]
kind = "sqlite"
path = "{d}/agency.db"
create_from_samples = "{r}/samples"

{extra}"#,
        mnemonic = agency.mnemonic,
        port = agency.port,
    )
}

/// Asserts that `payload` is the registration answer for passport 4510 123456 from `provider`'s database.
fn assert_answer_from(payload: &str, provider: &str) {
    let doc = roxmltree::Document::parse(payload)
        .unwrap_or_else(|e| panic!("the answer is not XML ({e}): {payload}"));
    let text = |local: &str| {
        doc.descendants()
            .find(|n| n.has_tag_name(("urn://example.gov/registration/1.0", local)))
            .and_then(|n| n.text())
            .map(str::to_string)
    };
    assert_eq!(text("LastName").as_deref(), Some("Иванов"), "{payload}");
    assert_eq!(text("FirstName").as_deref(), Some("Иван"), "{payload}");
    let address = text("Address").unwrap_or_default();
    assert!(
        address.ends_with(&format!("кв. 12 ({provider})")),
        "the answer comes from {provider}'s database: {payload}"
    );
}

/// The MessageID printed first by `send`, and the answer payloads after it.
fn split_send_output(stdout: &str) -> (String, Vec<String>) {
    let mut lines = stdout.lines();
    let id = lines.next().unwrap_or("").trim().to_string();
    (id, lines.map(str::to_string).collect())
}

#[test]
fn a_asks_b_with_send_wait_and_gets_bs_signed_answer_from_bs_database() {
    let mut w = World::new(&[(B, "async")], &[B]);
    w.start_all();
    let payload = w.dir.path().join("request.xml");
    std::fs::write(&payload, PAYLOAD).expect("write the payload");
    let stdout = w.agency(A).cli(&[
        "send",
        &payload.display().to_string(),
        "--to",
        B,
        "--wait",
        "--timeout",
        "30s",
    ]);
    let (id, answers) = split_send_output(&stdout);
    assert_eq!(answers.len(), 1, "one answer printed: {stdout}");
    assert_answer_from(&answers[0], B);

    // B received it from MFC_01 (A's certificate, verified), answered from its registration mapping, and
    // the gateway took the answer; A verified B's signature and matched the answer to its request.
    let b_rows = w.agency(B).queue_rows(&id);
    assert_eq!(b_rows.len(), 1, "{b_rows:?}");
    assert!(
        b_rows[0].contains("DELIVERED") && b_rows[0].contains("registration"),
        "{b_rows:?}"
    );
    let b_audit = w.agency(B).cli(&["audit", "export"]);
    let received = b_audit
        .lines()
        .find(|l| l.contains(&id) && l.contains("\"RECEIVED\""))
        .unwrap_or_else(|| panic!("B's audit records the request:\n{b_audit}"));
    assert!(
        received.contains("from MFC_01") && received.contains("signature verified"),
        "{received}"
    );
    let answered = b_audit
        .lines()
        .find(|l| l.contains(&id) && l.contains("\"RESPONSE_READY\""))
        .expect("B's audit records its answer");
    let shown = w.agency(A).cli(&["queue", "show", &id]);
    assert!(shown.contains("ANSWERED"), "{shown}");
    let response_id = shown
        .lines()
        .find_map(|l| l.split("answer ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("A names the answer it got:\n{shown}"));
    assert!(
        answered.contains(response_id),
        "A stored the answer B made ({response_id}): {answered}"
    );
    // A took B's answer as a verified SendResponse and refused no signature.
    let a = w.agency(A);
    assert_eq!(
        a.metric(
            "smev_requests_total",
            &["operation=\"SendResponse\"", "outcome=\"ok\""]
        ),
        1.0
    );
    assert_eq!(
        a.metric("smev_signature_failures_total", &[]),
        0.0,
        "A refused no signature"
    );
}

#[test]
fn a_fans_out_to_b_and_c_and_gets_both_answers_on_one_request_via_the_api() {
    let mut w = World::new(&[(B, "async"), (C, "async")], &[B, C]);
    w.start_all();
    // No recipient: the gateway routes by the payload's type, to both B and C.
    let id = w.api_send(None);
    let mut answers = w.api_answers(&id, 2);
    answers.sort_by_key(|a| a.contains(C));
    assert_answer_from(&answers[0], B);
    assert_answer_from(&answers[1], C);
    let view = w.api_view(&id);
    assert!(
        matches!(view["status"].as_str(), Some("ANSWERED" | "CLOSED")),
        "{view}"
    );
    for provider in [B, C] {
        assert_eq!(
            w.agency(provider).queue_rows(&id).len(),
            1,
            "{provider} got the request once"
        );
    }
}

#[test]
fn b_is_down_for_a_while_and_the_answer_arrives_after_b_returns() {
    let mut w = World::new(&[(B, "async")], &[B]);
    w.start_all();
    w.kill(B);
    let id = w.api_send(Some(B));
    // The gateway keeps trying B while it is down; A's request waits, unanswered.
    wait_for("the gateway retries the forward to B", || {
        (w.gateway_state()["counters"]["retried"].as_u64() >= Some(2)).then_some(())
    });
    let view = wait_for("the gateway's acknowledgement is recorded at A", || {
        let view = w.api_view(&id);
        (view["status"] != "QUEUED").then_some(view)
    });
    assert_eq!(view["status"], "SENT", "accepted, not answered: {view}");
    assert_eq!(view["answers"].as_array().map(Vec::len), Some(0), "{view}");

    w.start(B);
    let answers = w.api_answers(&id, 1);
    assert_answer_from(&answers[0], B);
    let rows = w.agency(B).queue_rows(&id);
    assert_eq!(rows.len(), 1, "{rows:?}");
}

#[test]
fn a_delivery_duplicated_by_the_gateway_is_processed_once_by_b_and_answered_once() {
    let mut w = World::new(&[(B, "async")], &[B]);
    w.start_all();
    w.control(serde_json::json!({ "duplicate": 1 }));
    let id = w.api_send(Some(B));
    let answers = w.api_answers(&id, 1);
    assert_answer_from(&answers[0], B);

    // B saw the second copy and gave it the stored acknowledgement instead of running it again.
    let b = w.agency(B);
    wait_for("B counts the duplicate", || {
        (b.metric(
            "smev_requests_total",
            &["operation=\"SendRequest\"", "outcome=\"duplicate\""],
        ) >= 1.0)
            .then_some(())
    });
    assert_eq!(w.gateway_state()["counters"]["duplicated"], 1);
    assert_eq!(
        b.metric(
            "smev_requests_total",
            &["operation=\"SendRequest\"", "outcome=\"duplicate\""]
        ),
        1.0
    );
    let rows = b.queue_rows(&id);
    assert_eq!(rows.len(), 1, "B stored the request once: {rows:?}");
    let audit = b.cli(&["audit", "export"]);
    let processed = audit
        .lines()
        .filter(|l| l.contains(&id) && l.contains("\"PROCESSING\""))
        .count();
    assert_eq!(processed, 1, "B ran the mapping once:\n{audit}");

    // Once the gateway has nothing left in flight, A still has exactly one answer.
    wait_for("the gateway drains", || {
        (w.gateway_state()["pending"].as_u64() == Some(0)).then_some(())
    });
    assert_eq!(w.api_view(&id)["answers"].as_array().map(Vec::len), Some(1));
}

#[test]
fn all_three_intake_paths_cli_api_and_drop_folder_carry_a_request_through() {
    // B answers synchronously here: the gateway takes the answer from B's HTTP reply and relays it.
    let mut w = World::new(&[(B, "sync")], &[B]);
    w.start_all();

    // 1. CLI.
    let payload = w.dir.path().join("request.xml");
    std::fs::write(&payload, PAYLOAD).expect("write the payload");
    let stdout = w.agency(A).cli(&[
        "send",
        &payload.display().to_string(),
        "--to",
        B,
        "--wait",
        "--timeout",
        "30s",
    ]);
    let (cli_id, answers) = split_send_output(&stdout);
    assert_eq!(answers.len(), 1, "{stdout}");
    assert_answer_from(&answers[0], B);

    // 2. JSON API.
    let api_id = w.api_send(Some(B));
    let answers = w.api_answers(&api_id, 1);
    assert_answer_from(&answers[0], B);

    // 3. Drop folder: written elsewhere, renamed into outgoing/<recipient>/.
    let root = w.agency(A).dir.join("exchange");
    let target = root.join("outgoing").join(B);
    std::fs::create_dir_all(&target).expect("the recipient's outgoing folder");
    let staged = root.join(".request.xml.tmp");
    std::fs::write(&staged, PAYLOAD).expect("stage the payload");
    std::fs::rename(&staged, target.join("request.xml")).expect("drop the payload");
    let sent = root.join("sent");
    let folder_id = wait_for("the drop folder picks the file up", || {
        std::fs::read_dir(&sent).ok()?.find_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".request.xml").map(str::to_string)
        })
    });
    let incoming = root.join("incoming").join(format!("{folder_id}.xml"));
    let answer = wait_for("the answer lands in incoming/", || {
        std::fs::read_to_string(&incoming).ok()
    });
    assert_answer_from(&answer, B);

    // Three distinct requests, each answered once by B.
    let ids = [cli_id, api_id, folder_id];
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "{ids:?}"
    );
    for id in &ids {
        assert_eq!(w.agency(B).queue_rows(id).len(), 1, "B answered {id}");
    }
}
