//! Measures requests/s, latency percentiles and CPU per request of the node's SendRequest path (sync: each answer is
//! stored durably before it is sent), next to a trivial hyper handler, and the store's durability/group-commit matrix.
//! It reports numbers only: it must not assert on timings (no pass/fail thresholds), and it exits non-zero only when replies are wrong.

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

type BoxError = Box<dyn Error + Send + Sync>;

const CONFIG_FILE: &str = "adapter.toml";
/// The unsigned template; each body is signed by the sample agency key the sample config trusts.
const HAPPY_REQUEST: &str = "samples/templates/happy.xml";
const HAPPY_MESSAGE_ID: &str = "6f1c2e10-b1a2-11ef-8a3c-0242ac120002";
const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";
const SOAP_ACTION: &str = "\"urn:SendRequest\"";
/// What every correct reply, trivial or real, contains.
const EXPECTED: &[u8] = b"RegistrationResponse";
/// Passports the sample data is known to hold; always sent, and first.
const KNOWN_PASSPORTS: [(&str, &str); 2] = [("4510", "123456"), ("4012", "654321")];
/// Passports that have a current registration, so the mapping answers with data rather than NoData.
const PASSPORT_QUERY: &str = "SELECT pp.series, pp.number FROM passport pp \
     JOIN registration r ON r.person_id = pp.person_id AND r.deregistered_on IS NULL \
     LIMIT 1000";
/// `/proc/self/stat` times are in clock ticks; Linux reports them at 100 per second.
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// Knobs read from the environment.
struct Settings {
    connections: usize,
    warmup: Duration,
    measure: Duration,
    bodies: usize,
}

impl Settings {
    fn from_env() -> Result<Settings, BoxError> {
        Ok(Settings {
            connections: env_number("BENCH_CONNECTIONS", 64)?.max(1),
            warmup: Duration::from_secs(env_number("BENCH_WARMUP", 2)?),
            measure: Duration::from_secs(env_number("BENCH_SECONDS", 5)?.max(1)),
            bodies: env_number("BENCH_BODIES", 60_000)?.max(1),
        })
    }
}

fn env_number<T: std::str::FromStr>(name: &str, default: T) -> Result<T, BoxError> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a number").into()),
        Err(_) => Ok(default),
    }
}

/// One server under load: where it listens and what path it serves.
#[derive(Clone)]
struct Target {
    label: &'static str,
    addr: SocketAddr,
    path: String,
}

/// What one measured phase produced.
struct PhaseResult {
    label: &'static str,
    requests: usize,
    seconds: f64,
    /// Sorted per-request latencies in microseconds.
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    response_bytes: u64,
    cpu_ticks: u64,
    body_reuses: usize,
    /// The process's thread count at the end of the window (the blocking pool grows under load).
    threads: Option<u64>,
    /// VmHWM right after the phase, KiB.
    hwm_kib: Option<u64>,
}

impl PhaseResult {
    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.latencies_us.len() as f64).ceil() as usize;
        let idx = rank.clamp(1, self.latencies_us.len()) - 1;
        f64::from(self.latencies_us[idx]) / 1000.0
    }

    fn cpu_us_per_request(&self) -> f64 {
        if self.requests == 0 {
            return f64::NAN;
        }
        (self.cpu_ticks * 1_000_000 / CLOCK_TICKS_PER_SEC) as f64 / self.requests as f64
    }

    fn mean_response_bytes(&self) -> u64 {
        self.response_bytes / (self.requests.max(1) as u64)
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("FAILED: {errors} request(s) got a wrong or no answer");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("bench setup failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The node variants measured: the default (FULL, group commit) first, then the storage matrix.
const NODE_VARIANTS: [(&str, &str, bool); 4] = [
    ("node sync, FULL + group commit", "full", true),
    ("node sync, FULL, no group commit", "full", false),
    ("node sync, OFF + group commit", "off", true),
    ("node sync, OFF, no group commit", "off", false),
];

/// Runs trivial → each node variant (fresh store each) → trivial, prints the tables; returns the error count.
fn run() -> Result<u64, BoxError> {
    let settings = Settings::from_env()?;
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-server")
        .enable_all()
        .build()?;
    let mut nodes = Vec::new();
    for (label, synchronous, group_commit) in NODE_VARIANTS {
        let data_dir = tempfile::tempdir()?;
        let config = node_config(
            &data_dir.path().to_string_lossy(),
            synchronous,
            group_commit,
        )?;
        let node = Arc::new(smev_adapter::node::Node::start(config)?);
        let (stop, stopped) = oneshot::channel::<()>();
        let target = server_rt.block_on(start_node(label, node.clone(), stopped))?;
        nodes.push((target, node, stop, data_dir));
    }
    let hwm_node = proc_status("VmHWM:");
    let passports = load_passports(&nodes[0].1)?;
    let bodies = Arc::new(build_bodies(&passports, settings.bodies)?);
    let trivial = server_rt.block_on(start_trivial())?;

    print_header(&settings, &bodies, passports.len());
    let hwm_setup = proc_status("VmHWM:");
    let mut results = Vec::new();
    let mut phases = vec![trivial.clone()];
    phases.extend(nodes.iter().map(|n| n.0.clone()));
    phases.push(trivial);
    for target in phases {
        let result = run_phase(target, &settings, bodies.clone())?;
        print_phase(&result);
        results.push(result);
    }
    for (_, _, stop, _) in nodes {
        let _ = stop.send(());
    }
    server_rt.shutdown_timeout(Duration::from_secs(1));

    print_summary(&results, &bodies);
    print_storage_matrix(&results);
    // VmHWM is sampled from per-thread counters and can read a little low; keep the highest seen.
    let hwm_end = results
        .iter()
        .map(|r| r.hwm_kib)
        .chain([proc_status("VmHWM:")])
        .max()
        .flatten();
    print_memory(hwm_node, hwm_setup, hwm_end);
    Ok(results.iter().map(|r| r.errors).sum())
}

/// Acknowledged (stored, then answered) requests/s for each durability setting, relative to OFF + group commit.
fn print_storage_matrix(results: &[PhaseResult]) {
    let rate = |label: &str| {
        results
            .iter()
            .find(|r| r.label == label)
            .map(PhaseResult::rate)
    };
    let Some(off_group) = rate(NODE_VARIANTS[2].0) else {
        return;
    };
    println!();
    println!("storage matrix (acknowledged requests/s; ratio to OFF + group commit):");
    for (label, _, _) in NODE_VARIANTS {
        if let Some(r) = rate(label) {
            println!(
                "  {label:<34} {:>7} req/s  {:.2}",
                thousands(r),
                r / off_group
            );
        }
    }
}

// ---- servers ----------------------------------------------------------------------------------

/// The node's config: the repo's sample file with data_dir in a temp folder, an ephemeral port and
/// the given durability.
fn node_config(
    data_dir: &str,
    synchronous: &str,
    group_commit: bool,
) -> Result<smev_adapter::config::Config, BoxError> {
    // DESIGN §11 measures ECDSA P-256; the development key would otherwise be GOST where the engine loads.
    let text = std::fs::read_to_string(CONFIG_FILE)?.replace(
        "[storage]\n",
        &format!("[storage]\nsynchronous = \"{synchronous}\"\ngroup_commit = {group_commit}\n"),
    ) + "\n[keys]\nalgorithm = \"ecdsa-sha256\"\n";
    let data_dir = data_dir.to_string();
    let env = move |name: &str| match name {
        "SMEV_ADAPTER_DATA_DIR" => Some(data_dir.clone()),
        "SMEV_ADAPTER_LISTEN" => Some("127.0.0.1:0".into()),
        _ => None,
    };
    smev_adapter::config::Config::parse(std::path::Path::new(CONFIG_FILE), &text, &env)
        .map_err(|p| p.to_string().into())
}

/// Binds the trivial server on the calling (server) runtime and spawns its accept loop.
async fn start_trivial() -> Result<Target, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let target = Target {
        label: "trivial hyper handler",
        addr: listener.local_addr()?,
        path: "/ws".into(),
    };
    tokio::spawn(serve_trivial(listener, Bytes::from(trivial_body())));
    Ok(target)
}

/// Binds one node on the calling (server) runtime and serves it until `stop`.
async fn start_node(
    label: &'static str,
    node: Arc<smev_adapter::node::Node>,
    stop: oneshot::Receiver<()>,
) -> Result<Target, BoxError> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let target = Target {
        label,
        addr: listener.local_addr()?,
        path: node.config.endpoint_path.clone(),
    };
    tokio::spawn(async move {
        let shutdown = async {
            let _ = stop.await;
        };
        if let Err(e) = smev_adapter::server::serve(node, listener, shutdown).await {
            eprintln!("node server stopped: {e}");
        }
    });
    Ok(target)
}

/// A fixed SOAP answer of exactly 1 KiB that contains what the client checks for.
fn trivial_body() -> String {
    let head = concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body>"#,
        r#"<ns:SendRequestResponse xmlns:ns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3">"#,
        r#"<r:RegistrationResponse xmlns:r="urn://example.gov/registration/1.0"><r:LastName>Ivanov</r:LastName>"#,
        r#"<r:FirstName>Ivan</r:FirstName><r:Address>101000, Moscow, Tverskaya, 1</r:Address></r:RegistrationResponse>"#,
    );
    let tail = "</ns:SendRequestResponse></soap:Body></soap:Envelope>";
    let pad = 1024usize.saturating_sub(head.len() + tail.len() + "<!---->".len());
    format!("{head}<!--{}-->{tail}", "x".repeat(pad))
}

async fn serve_trivial(listener: TcpListener, body: Bytes) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("trivial server: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        let service = service_fn(move |req| trivial_answer(req, body.clone()));
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Reads the request body (as any real handler must) and answers with the fixed XML.
async fn trivial_answer(
    req: Request<Incoming>,
    body: Bytes,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let status = match req.into_body().collect().await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::BAD_REQUEST,
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(XML_CONTENT_TYPE));
    Ok(r)
}

// ---- request bodies ---------------------------------------------------------------------------

/// Passports with a current registration from the node's sample database, the known pairs first.
fn load_passports(node: &smev_adapter::node::Node) -> Result<Vec<(String, String)>, BoxError> {
    let mut pairs: Vec<(String, String)> = KNOWN_PASSPORTS
        .iter()
        .map(|(s, n)| (s.to_string(), n.to_string()))
        .collect();
    let Some(smev_adapter::config::DatasourceConfig::Sqlite(ds)) =
        node.config.datasources.values().next()
    else {
        return Ok(pairs);
    };
    let db = rusqlite::Connection::open_with_flags(
        &ds.path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )?;
    let mut stmt = db.prepare(PASSPORT_QUERY)?;
    let rows = stmt.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    for row in rows {
        let pair = row?;
        if !pairs.contains(&pair) {
            pairs.push(pair);
        }
    }
    Ok(pairs)
}

/// `count` copies of happy.xml, each with a fresh v1 MessageID, cycling over `passports`.
fn build_bodies(passports: &[(String, String)], count: usize) -> Result<Vec<Bytes>, BoxError> {
    let template = std::fs::read_to_string(HAPPY_REQUEST)?;
    let (series, number) = KNOWN_PASSPORTS[0];
    let series_tag = format!("<r:Series>{series}</r:Series>");
    let number_tag = format!("<r:Number>{number}</r:Number>");
    for needle in [HAPPY_MESSAGE_ID, &series_tag, &number_tag] {
        if !template.contains(needle) {
            return Err(
                format!("{HAPPY_REQUEST} no longer contains `{needle}`; update the bench").into(),
            );
        }
    }
    let template = template
        .replace(HAPPY_MESSAGE_ID, "{ID}")
        .replace(&series_tag, "<r:Series>{S}</r:Series>")
        .replace(&number_tag, "<r:Number>{N}</r:Number>");
    let node_id = [1, 2, 3, 4, 5, 6];
    let crypto = smev_adapter::dsig::Crypto::load();
    let key = smev_adapter::dsig::SigningKey::from_files(
        std::path::Path::new("samples/pki/agency_b.key"),
        Some(std::path::Path::new("samples/pki/agency_b.crt")),
        None,
        None,
        crypto,
    )?;
    let limits = smev_adapter::config::XmlLimits::default();
    let holder = (
        "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3",
        "CallerInformationSystemSignature",
    );
    // One contiguous buffer sliced per body: no per-body allocation, and a compact footprint.
    let mut buffer = Vec::with_capacity(count * (template.len() + 8));
    let mut ranges = Vec::with_capacity(count);
    for i in 0..count {
        let (s, n) = &passports[i % passports.len()];
        let id = uuid::Uuid::now_v1(&node_id).hyphenated().to_string();
        let unsigned = template
            .replace("{ID}", &id)
            .replace("{S}", s)
            .replace("{N}", n);
        // The node verifies every request, so each body carries its own signature.
        let body = smev_adapter::dsig::sign_message(
            &unsigned,
            &limits,
            "SIGNED_BY_CONSUMER",
            holder,
            &key,
        )?;
        ranges.push(buffer.len()..buffer.len() + body.len());
        buffer.extend_from_slice(body.as_bytes());
    }
    let buffer = Bytes::from(buffer);
    Ok(ranges.into_iter().map(|r| buffer.slice(r)).collect())
}

// ---- load client ------------------------------------------------------------------------------

/// Runs warm-up then measurement against `target` from a current_thread runtime on its own OS thread.
fn run_phase(
    target: Target,
    settings: &Settings,
    bodies: Arc<Vec<Bytes>>,
) -> Result<PhaseResult, BoxError> {
    let connections = settings.connections;
    let (warmup, measure) = (settings.warmup, settings.measure);
    let handle = std::thread::Builder::new()
        .name("bench-client".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(load(target, connections, warmup, measure, bodies))
        })?;
    handle
        .join()
        .map_err(|_| "the load client thread panicked")?
}

/// The shared clock of one phase: measurement covers completions in `[start, end)`.
#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

/// What one connection's worker saw.
#[derive(Default)]
struct WorkerStats {
    latencies_us: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    response_bytes: u64,
}

impl WorkerStats {
    fn error(&mut self, what: String) {
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }
}

async fn load(
    target: Target,
    connections: usize,
    warmup: Duration,
    measure: Duration,
    bodies: Arc<Vec<Bytes>>,
) -> Result<PhaseResult, BoxError> {
    let start = Instant::now() + warmup;
    let window = Window {
        start,
        end: start + measure,
    };
    let next = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..connections)
        .map(|_| tokio::spawn(worker(target.clone(), window, bodies.clone(), next.clone())))
        .collect();

    tokio::time::sleep_until(window.start.into()).await;
    let (cpu_start, t_start) = (cpu_ticks()?, Instant::now());
    tokio::time::sleep_until(window.end.into()).await;
    let (cpu_end, t_end) = (cpu_ticks()?, Instant::now());
    let threads = proc_status("Threads:");

    let mut all = WorkerStats::default();
    for w in workers {
        let stats = w.await?;
        all.latencies_us.extend(stats.latencies_us);
        all.errors += stats.errors;
        all.response_bytes += stats.response_bytes;
        if all.first_error.is_none() {
            all.first_error = stats.first_error;
        }
    }
    all.latencies_us.sort_unstable();
    Ok(PhaseResult {
        label: target.label,
        requests: all.latencies_us.len(),
        seconds: (t_end - t_start).as_secs_f64(),
        latencies_us: all.latencies_us,
        errors: all.errors,
        first_error: all.first_error,
        response_bytes: all.response_bytes,
        cpu_ticks: cpu_end.saturating_sub(cpu_start),
        body_reuses: next.load(Ordering::Relaxed).saturating_sub(bodies.len()),
        threads,
        hwm_kib: proc_status("VmHWM:"),
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive connection in a closed loop: next request only after the whole previous answer.
async fn worker(
    target: Target,
    window: Window,
    bodies: Arc<Vec<Bytes>>,
    next: Arc<AtomicUsize>,
) -> WorkerStats {
    let mut stats = WorkerStats::default();
    let host = HeaderValue::from_str(&target.addr.to_string())
        .expect("a socket address is a valid Host header");
    let mut sender: Option<Sender> = None;
    while Instant::now() < window.end {
        let conn = match sender.as_mut() {
            Some(s) => s,
            None => match connect(target.addr).await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    stats.error(format!("connect: {e}"));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let body = bodies[next.fetch_add(1, Ordering::Relaxed) % bodies.len()].clone();
        let began = Instant::now();
        match exchange(conn, &target.path, &host, body).await {
            Ok(answer) => {
                let done = Instant::now();
                if done >= window.start && done < window.end {
                    stats.response_bytes += answer.len() as u64;
                    stats
                        .latencies_us
                        .push(u32::try_from((done - began).as_micros()).unwrap_or(u32::MAX));
                }
            }
            Err(Failure::Answer(what)) => stats.error(what),
            Err(Failure::Transport(what)) => {
                stats.error(what);
                sender = None;
            }
        }
    }
    stats
}

async fn connect(addr: SocketAddr) -> Result<Sender, BoxError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

enum Failure {
    /// The server answered, but not with a 200 RegistrationResponse.
    Answer(String),
    /// The connection is unusable.
    Transport(String),
}

/// Sends one SendRequest and reads the whole reply; returns its body when it is a 200 RegistrationResponse.
async fn exchange(
    sender: &mut Sender,
    path: &str,
    host: &HeaderValue,
    body: Bytes,
) -> Result<Bytes, Failure> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(HOST, host)
        .header(CONTENT_TYPE, XML_CONTENT_TYPE)
        .header("SOAPAction", SOAP_ACTION)
        .body(Full::new(body))
        .map_err(|e| Failure::Answer(format!("building the request: {e}")))?;
    sender
        .ready()
        .await
        .map_err(|e| Failure::Transport(format!("connection not ready: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| Failure::Transport(format!("send: {e}")))?;
    let status = response.status();
    let answer = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Failure::Transport(format!("reading the reply: {e}")))?
        .to_bytes();
    if status != StatusCode::OK || !contains(&answer, EXPECTED) {
        let snippet: String = String::from_utf8_lossy(&answer).chars().take(300).collect();
        return Err(Failure::Answer(format!("HTTP {status}: {snippet}")));
    }
    Ok(answer)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// ---- process metrics --------------------------------------------------------------------------

/// utime + stime of this process, in clock ticks.
fn cpu_ticks() -> Result<u64, BoxError> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // The command name may contain spaces; fields after it start with state (field 3).
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unexpected /proc/self/stat format")?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |n: usize| -> Result<u64, BoxError> {
        let value = fields.get(n - 3).ok_or("/proc/self/stat is too short")?;
        Ok(value.parse()?)
    };
    Ok(field(14)? + field(15)?)
}

/// The number on a `/proc/self/status` line such as `VmHWM:` (KiB) or `Threads:`.
fn proc_status(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

// ---- output -----------------------------------------------------------------------------------

fn print_header(settings: &Settings, bodies: &[Bytes], passports: usize) {
    let body_bytes: usize = bodies.iter().map(Bytes::len).sum();
    println!(
        "{} keep-alive connections, warm-up {} s, measure {} s per phase; servers: tokio multi-thread (2 workers), client: current_thread on its own thread",
        settings.connections,
        settings.warmup.as_secs(),
        settings.measure.as_secs()
    );
    println!(
        "{} pre-built SendRequest bodies ({:.1} MiB, {} B mean) over {passports} passports",
        bodies.len(),
        body_bytes as f64 / 1_048_576.0,
        body_bytes / bodies.len().max(1)
    );
    println!();
    println!(
        "{:<24} {:>8} {:>7} {:>7} {:>7} {:>7} {:>11} {:>6} {:>7} {:>8} {:>6}",
        "phase",
        "req/s",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "CPU µs/req",
        "resp B",
        "threads",
        "HWM MiB",
        "errors"
    );
}

fn print_phase(r: &PhaseResult) {
    println!(
        "{:<24} {:>8} {:>7.2} {:>7.2} {:>7.2} {:>7.2} {:>11.1} {:>6} {:>7} {:>8} {:>6}",
        r.label,
        thousands(r.rate()),
        r.percentile_ms(50.0),
        r.percentile_ms(90.0),
        r.percentile_ms(99.0),
        r.percentile_ms(100.0),
        r.cpu_us_per_request(),
        r.mean_response_bytes(),
        r.threads.map_or("?".into(), |t| t.to_string()),
        mib(r.hwm_kib),
        r.errors
    );
    if let Some(e) = &r.first_error {
        println!("    first error: {e}");
    }
}

/// The two-line comparison: trivial is the mean of the runs before and after the node.
fn print_summary(results: &[PhaseResult], bodies: &[Bytes]) {
    let (trivial, node): (Vec<&PhaseResult>, Vec<&PhaseResult>) =
        results.iter().partition(|r| r.label.starts_with("trivial"));
    let Some(node) = node.first() else { return };
    let mean = |f: &dyn Fn(&PhaseResult) -> f64| {
        trivial.iter().map(|r| f(r)).sum::<f64>() / trivial.len().max(1) as f64
    };
    let t_rate = mean(&|r| r.rate());
    println!();
    println!(
        "trivial hyper handler  : {:>7} req/s  p50 {:.2} ms  p99 {:.2} ms  CPU {:.1} µs/req (server+client)  [mean of {} runs: {}]",
        thousands(t_rate),
        mean(&|r| r.percentile_ms(50.0)),
        mean(&|r| r.percentile_ms(99.0)),
        mean(&|r| r.cpu_us_per_request()),
        trivial.len(),
        trivial
            .iter()
            .map(|r| thousands(r.rate()))
            .collect::<Vec<_>>()
            .join(" / ")
    );
    println!(
        "node (sync, FULL+group): {:>7} req/s  p50 {:.2} ms  p99 {:.2} ms  CPU {:.1} µs/req (server+client)  ratio {:.2} of trivial",
        thousands(node.rate()),
        node.percentile_ms(50.0),
        node.percentile_ms(99.0),
        node.cpu_us_per_request(),
        node.rate() / t_rate
    );
    if node.body_reuses > 0 {
        println!(
            "note: the node phase used {} bodies more than the {} pre-built; those reused a MessageID (raise BENCH_BODIES)",
            node.body_reuses,
            bodies.len()
        );
    }
}

fn print_memory(after_node_start: Option<u64>, after_setup: Option<u64>, at_end: Option<u64>) {
    println!(
        "peak RSS (VmHWM): {} MiB at the end; {} MiB once the node started, {} MiB after building the bodies, before any load",
        mib(at_end),
        mib(after_node_start),
        mib(after_setup)
    );
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("?".to_string(), |k| format!("{:.1}", k as f64 / 1024.0))
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
