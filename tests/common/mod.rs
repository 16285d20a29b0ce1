//! Shared test harness: a real node on an ephemeral port with its own data dir, and a tiny HTTP client.
//! Tests use the repository's mappings, samples and WSDL, so they exercise what ships.
#![allow(dead_code)]

pub mod backends;
pub mod gateway;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use smev_adapter::config::Config;
use smev_adapter::node::Node;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TYPES_13: &str = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3";
pub const BASIC_13: &str =
    "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/1.3";
pub const FAULTS_13: &str =
    "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.3";
pub const REG_NS: &str = "urn://example.gov/registration/1.0";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config for a test node answering synchronously: repository mappings/samples/WSDL, everything else in
/// `dir`. `limits` is inserted into the [limits] table.
pub fn config_text(dir: &Path, limits: &str) -> String {
    config_text_with(dir, "reply = \"sync\"", limits, "")
}

/// Like [`config_text`], with lines for [node] and [limits] and extra tables appended.
pub fn config_text_with(dir: &Path, node: &str, limits: &str, extra: &str) -> String {
    let repo = repo();
    let r = repo.display();
    let d = dir.display();
    let ca = test_pki().ca.display().to_string();
    format!(
        r#"[node]
mnemonic = "TEST_NODE"
{node}

[server]
listen = "127.0.0.1:0"
wsdl_dir = "{r}/wsdl"
plain_http = true

[limits]
shutdown_grace = "10s"
{limits}

[storage]
data_dir = "{d}/data"

[trust]
ca = ["{ca}", "{r}/samples/pki/ca.crt"]

[mappings]
dir = "{r}/mappings"

[datasources.agency]
kind = "sqlite"
path = "{d}/agency.db"
create_from_samples = "{r}/samples"

{extra}
"#
    )
}

pub struct TestNode {
    pub addr: SocketAddr,
    pub node: Arc<Node>,
    shutdown: Option<oneshot::Sender<()>>,
    pub handle: JoinHandle<std::io::Result<()>>,
    pub dir: tempfile::TempDir,
}

impl TestNode {
    pub async fn start() -> TestNode {
        Self::start_with_limits("").await
    }

    pub async fn start_with_limits(limits: &str) -> TestNode {
        Self::start_with("reply = \"sync\"", limits, "").await
    }

    /// A node with its own [node] lines, [limits] lines and extra tables.
    pub async fn start_with(node: &str, limits: &str, extra: &str) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        Self::start_in(dir, node, limits, extra).await
    }

    /// A node whose data directory is `dir` (reuse one to restart a node on the same store).
    pub async fn start_in(
        dir: tempfile::TempDir,
        node: &str,
        limits: &str,
        extra: &str,
    ) -> TestNode {
        let text = config_text_with(dir.path(), node, limits, extra);
        let path = dir.path().join("adapter.toml");
        std::fs::write(&path, &text).expect("write config");
        Self::start_with_config(dir, &path).await
    }

    /// Starts a node from the config file `path`; `dir` is kept alive with the node.
    pub async fn start_with_config(dir: tempfile::TempDir, path: &Path) -> TestNode {
        let mut text = std::fs::read_to_string(path).expect("read config");
        if !text.contains("[trust]") {
            // Every node verifies signatures: trust the test PKI and the sample one.
            let ca = test_pki().ca.display().to_string();
            text.push_str(&format!(
                "\n[trust]\nca = [\"{ca}\", \"{}/samples/pki/ca.crt\"]\n",
                repo().display()
            ));
        }
        let config = Config::parse(path, &text, &|_| None)
            .unwrap_or_else(|p| panic!("test config invalid:\n{p}"));
        let node = tokio::task::spawn_blocking(move || Node::start(config))
            .await
            .expect("join")
            .expect("node starts");
        let node = Arc::new(node);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(smev_adapter::server::serve(
            node.clone(),
            listener,
            async move {
                let _ = rx.await;
            },
        ));
        TestNode {
            addr,
            node,
            shutdown: Some(tx),
            handle,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Asks the server to stop; it then finishes what is in flight.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A complete HTTP answer.
pub struct Answer {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn doc(&self) -> roxmltree::Document<'_> {
        roxmltree::Document::parse(&self.body)
            .unwrap_or_else(|e| panic!("answer is not XML ({e}):\n{}", self.body))
    }
}

/// Sends one request on a fresh connection.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = sender.send_request(req).await.expect("response");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// POSTs a SOAP 1.1 body to /ws.
pub async fn post_soap(addr: SocketAddr, body: impl Into<Vec<u8>>) -> Answer {
    send(
        addr,
        "POST",
        "/ws",
        Some("text/xml; charset=utf-8"),
        body.into(),
    )
    .await
}

pub fn sample(name: &str) -> String {
    std::fs::read_to_string(repo().join("samples/requests").join(name)).expect("sample request")
}

/// A SendRequest for a passport, with its own MessageID, in SMEV types version `version`, signed by AGENCY_B.
pub fn registration_request(version: &str, message_id: &str, series: &str, number: &str) -> String {
    sign_as(
        "AGENCY_B",
        &unsigned_registration_request(version, message_id, series, number),
        "SIGNED_BY_CONSUMER",
    )
}

/// The test PKI (CA, AGENCY_B, AGENCY_C), made once per test process.
pub fn test_pki() -> &'static smev_adapter::trust::Pki {
    static PKI: std::sync::OnceLock<smev_adapter::trust::Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::tempdir().expect("pki dir").keep();
        smev_adapter::trust::pki_init(&dir, "TEST_NODE", &["AGENCY_B", "AGENCY_C"])
            .expect("pki init")
    })
}

/// A party's signing key from the test PKI.
pub fn test_key(mnemonic: &str) -> &'static smev_adapter::dsig::SigningKey {
    static KEYS: std::sync::OnceLock<Vec<(String, smev_adapter::dsig::SigningKey)>> =
        std::sync::OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let crypto = smev_adapter::dsig::Crypto::load();
        test_pki()
            .parties
            .iter()
            .map(|(name, key, cert)| {
                (
                    name.clone(),
                    smev_adapter::dsig::SigningKey::from_files(key, Some(cert), None, None, crypto)
                        .expect("test key"),
                )
            })
            .collect()
    });
    keys.iter()
        .find(|(n, _)| n == mnemonic)
        .map(|(_, k)| k)
        .unwrap_or_else(|| panic!("no test key for {mnemonic}"))
}

/// Signs a SendRequest/SendResponse's `Id` element into its CallerInformationSystemSignature, as `signer`.
pub fn sign_as(signer: &str, xml: &str, id: &str) -> String {
    let version = smev_adapter::soap::Version::ALL
        .into_iter()
        .rev()
        .find(|v| xml.contains(v.types_ns()))
        .expect("an SMEV message");
    let limits = smev_adapter::config::XmlLimits::default();
    smev_adapter::dsig::sign_message(
        xml,
        &limits,
        id,
        (version.types_ns(), "CallerInformationSystemSignature"),
        test_key(signer),
    )
    .expect("sign test message")
}

/// An unsigned SendRequest for a passport (for tests of signature refusals).
pub fn unsigned_registration_request(
    version: &str,
    message_id: &str,
    series: &str,
    number: &str,
) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:SendRequestRequest xmlns:ns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/{version}" xmlns:basic="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/basic/{version}"><ns:SenderProvidedRequestData Id="SIGNED_BY_CONSUMER"><ns:MessageID>{message_id}</ns:MessageID><basic:MessagePrimaryContent><r:RegistrationRequest xmlns:r="urn://example.gov/registration/1.0"><r:Series>{series}</r:Series><r:Number>{number}</r:Number></r:RegistrationRequest></basic:MessagePrimaryContent></ns:SenderProvidedRequestData><ns:CallerInformationSystemSignature/></ns:SendRequestRequest></soap:Body></soap:Envelope>"#
    )
}

/// A GetResponseRequest (pull), its MessageTypeSelector signed by `signer`.
pub fn get_response_request(signer: &str) -> String {
    get_response_request_at(signer, &fresh_timestamp())
}

/// A GetResponseRequest signed by `signer` whose signed Timestamp is `timestamp`.
pub fn get_response_request_at(signer: &str, timestamp: &str) -> String {
    sign_as(signer, &unsigned_get_response_request_at(timestamp), "POLL")
}

/// A GetResponseRequest with an empty signature holder, timestamped now.
pub fn unsigned_get_response_request() -> String {
    unsigned_get_response_request_at(&fresh_timestamp())
}

fn unsigned_get_response_request_at(timestamp: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:GetResponseRequest xmlns:ns="{TYPES_13}" xmlns:b="{BASIC_13}"><b:MessageTypeSelector Id="POLL"><b:Timestamp>{timestamp}</b:Timestamp></b:MessageTypeSelector><ns:CallerInformationSystemSignature/></ns:GetResponseRequest></soap:Body></soap:Envelope>"#
    )
}

/// Now, as an xs:dateTime, a millisecond later than any earlier call's: every poll the tests sign is a
/// new one (the node accepts each signed poll once).
pub fn fresh_timestamp() -> String {
    use std::sync::atomic::{AtomicI64, Ordering};
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = smev_adapter::storage::now_millis();
    let at = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .map_or(now, |last| now.max(last + 1));
    smev_adapter::storage::rfc3339(at)
}

/// An AckRequest for `response_id`, its AckTargetMessage signed by `signer`.
pub fn ack_request(signer: &str, response_id: &str) -> String {
    sign_as(
        signer,
        &format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:AckRequest xmlns:ns="{TYPES_13}" xmlns:b="{BASIC_13}"><b:AckTargetMessage Id="POLL" accepted="true">{response_id}</b:AckTargetMessage><ns:CallerInformationSystemSignature/></ns:AckRequest></soap:Body></soap:Envelope>"#
        ),
        "POLL",
    )
}

/// A GetStatusRequest for `message_id`, its MessageReference signed by `signer`.
pub fn get_status_request(signer: &str, message_id: &str) -> String {
    sign_as(
        signer,
        &format!(
            r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:GetStatusRequest xmlns:ns="{TYPES_13}" xmlns:b="{BASIC_13}"><b:MessageReference Id="POLL">{message_id}</b:MessageReference><ns:CallerInformationSystemSignature/></ns:GetStatusRequest></soap:Body></soap:Envelope>"#
        ),
        "POLL",
    )
}

pub fn new_message_id() -> String {
    uuid::Uuid::now_v1(&[7, 7, 7, 7, 7, 7])
        .hyphenated()
        .to_string()
}

/// The text of the first element named `{ns}local` in `doc`.
pub fn text_of<'a>(doc: &'a roxmltree::Document<'_>, ns: &str, local: &str) -> Option<&'a str> {
    doc.descendants()
        .find(|n| n.has_tag_name((ns, local)))
        .and_then(|n| n.text())
}
