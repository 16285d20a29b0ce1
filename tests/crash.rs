//! Crash safety, proven: the real binary under load is killed with SIGKILL at random moments and restarted;
//! every acknowledged request must end with exactly one answer content delivered to the (fake) gateway.
//! CRASH_REQUESTS and CRASH_KILLS make the run longer (defaults: 5000 requests, 10 kills).

mod common;

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::gateway::FakeGateway;
use common::*;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Supervised {
    child: Child,
    config: std::path::PathBuf,
    port: u16,
}

impl Supervised {
    fn spawn(config: &std::path::Path, port: u16) -> Child {
        Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
            .args(["serve", "--config"])
            .arg(config)
            .env("SMEV_ADAPTER_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn node")
    }

    fn kill_and_restart(&mut self) {
        let _ = self.child.kill(); // SIGKILL on Unix
        let _ = self.child.wait();
        self.child = Self::spawn(&self.config, self.port);
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node did not start listening on {port}");
}

/// One POST on a fresh connection; Err on any transport problem (the node may be dead).
async fn try_post(port: u16, body: String) -> Result<(u16, String), String> {
    use http_body_util::{BodyExt, Full};
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/ws")
        .header("host", "node")
        .header("content-type", "text/xml; charset=utf-8")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(Duration::from_secs(20), sender.send_request(req))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

struct Report {
    requests: usize,
    kills: usize,
    acknowledged: usize,
    deliveries: usize,
    redelivered_same_content: usize,
    client_retries: usize,
}

async fn run(gateway_outage: Option<Duration>) -> Report {
    let requests = env_usize("CRASH_REQUESTS", 5000);
    let kills = env_usize("CRASH_KILLS", 10);
    let mut gw = FakeGateway::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "[gateway]\nurl = \"{}\"\n\n[delivery]\nretry_initial = \"100ms\"\nretry_max = \"500ms\"\npoll_interval = \"100ms\"\nmax_attempts = 1000\n",
        gw.url()
    );
    let config = dir.path().join("adapter.toml");
    std::fs::write(
        &config,
        config_text_with(dir.path(), "reply = \"async\"", "", &extra),
    )
    .expect("config");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let node = Arc::new(Mutex::new(Supervised {
        child: Supervised::spawn(&config, port),
        config: config.clone(),
        port,
    }));
    wait_ready(port).await;

    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let ids: Arc<Vec<String>> = Arc::new((0..requests).map(|_| new_message_id()).collect());
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (next, retries, acked, ids) =
            (next.clone(), retries.clone(), acked.clone(), ids.clone());
        clients.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ids.len() {
                    break;
                }
                let passports = [("4510", "123456"), ("4012", "654321"), ("6003", "000111")];
                let (series, number) = passports[i % passports.len()];
                let body = registration_request("1.3", &ids[i], series, number);
                // Like a real gateway: resend the same request until it is acknowledged.
                loop {
                    match try_post(port, body.clone()).await {
                        Ok((200, answer)) if answer.contains("MessageMetadata") => {
                            acked.lock().expect("acked").push(ids[i].clone());
                            break;
                        }
                        _ => {
                            retries.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(25)).await;
                        }
                    }
                }
            }
        }));
    }

    if let Some(outage) = gateway_outage {
        gw.down();
        tokio::time::sleep(outage).await;
        gw.up().await;
    }
    // Kill at random moments while the load runs (spread over the run).
    let mut killed = 0;
    while killed < kills {
        let pause = 150 + (uuid::Uuid::new_v4().as_u128() % 450) as u64;
        tokio::time::sleep(Duration::from_millis(pause)).await;
        node.lock().expect("node").kill_and_restart();
        killed += 1;
        wait_ready(port).await;
    }
    for c in clients {
        c.await.expect("client");
    }
    let acked: Vec<String> = acked.lock().expect("acked").clone();
    assert_eq!(
        acked.len(),
        requests,
        "every request was eventually acknowledged"
    );

    // Every acknowledged request must get its answer delivered.
    let expected: HashSet<&String> = acked.iter().collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    let by_to = loop {
        let mut by_to: HashMap<String, Vec<String>> = HashMap::new();
        for r in gw.received() {
            by_to.entry(r.to).or_default().push(r.body);
        }
        if expected.iter().all(|id| by_to.contains_key(id.as_str())) {
            break by_to;
        }
        let missing = expected
            .iter()
            .filter(|id| !by_to.contains_key(id.as_str()))
            .count();
        assert!(
            Instant::now() < deadline,
            "{missing} acknowledged requests never had an answer delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut redelivered = 0;
    for (to, bodies) in &by_to {
        assert!(
            expected.contains(to),
            "an answer was delivered for a request never acknowledged: {to}"
        );
        assert!(
            bodies.iter().all(|b| b == &bodies[0]),
            "answers to {to} were delivered with different content"
        );
        redelivered += bodies.len() - 1;
    }
    Report {
        requests,
        kills: killed,
        acknowledged: acked.len(),
        deliveries: by_to.values().map(Vec::len).sum(),
        redelivered_same_content: redelivered,
        client_retries: retries.load(Ordering::Relaxed),
    }
}

/// Redeliveries come only from kills: at most the deliveries in flight (delivery.concurrency = 16) per kill.
fn assert_repeats_only_from_kills(r: &Report) {
    assert!(
        r.redelivered_same_content <= r.kills * 16,
        "{} repeated deliveries for {} kills: the node redelivers without being killed",
        r.redelivered_same_content,
        r.kills
    );
}

fn print(name: &str, r: &Report) {
    println!(
        "{name}: {} requests, {} SIGKILLs, {} acknowledged, {} deliveries ({} repeats with identical content), {} client resends",
        r.requests,
        r.kills,
        r.acknowledged,
        r.deliveries,
        r.redelivered_same_content,
        r.client_retries
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_and_delivers_each_answer_with_one_content() {
    let report = run(None).await;
    print("crash", &report);
    assert_repeats_only_from_kills(&report);
    assert!(report.kills >= 10 || std::env::var("CRASH_KILLS").is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_with_the_gateway_down_for_a_while_still_delivers_everything() {
    let report = run(Some(Duration::from_secs(3))).await;
    print("crash with gateway outage", &report);
    assert_repeats_only_from_kills(&report);
}
