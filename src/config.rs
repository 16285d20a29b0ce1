//! The node's configuration (`adapter.toml`): its shape, defaults, environment overrides and checks.
//! It reports every problem with file:line; it must not open databases, keys or sockets.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::diag::{Problem, Problems};
use crate::tomlfile;

/// Where the node looks for its config when `--config` is not given, in order.
pub const DEFAULT_CONFIG_PATHS: [&str; 2] = ["adapter.toml", "/etc/smev-adapter/adapter.toml"];
/// Overrides the listen address from the config.
pub const ENV_LISTEN: &str = "SMEV_ADAPTER_LISTEN";
/// Overrides `storage.data_dir` from the config.
pub const ENV_DATA_DIR: &str = "SMEV_ADAPTER_DATA_DIR";

/// A loaded, validated configuration. Relative paths are already resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct Config {
    pub source: PathBuf,
    pub node: NodeIdentity,
    pub listen: SocketAddr,
    pub endpoint_path: String,
    /// The WSDL and XSD files served at `/ws?wsdl`.
    pub wsdl_dir: PathBuf,
    /// HTTPS on the SOAP listener (TLS 1.2 and 1.3); `None` only when the config says
    /// `server.plain_http = true` explicitly (loading refuses a config that says neither).
    pub tls: Option<TlsOptions>,
    pub limits: Limits,
    pub data_dir: PathBuf,
    pub storage: StorageOptions,
    pub delivery: DeliveryOptions,
    pub gateway_url: Option<String>,
    /// TLS to an `https://` gateway: trusted roots (default: the system's) and an optional client certificate.
    pub gateway_tls: GatewayTls,
    /// The status page; `None` when no token is configured (the page is then off).
    pub admin: Option<AdminOptions>,
    /// The local ways in for this node's own requests.
    pub consumer: ConsumerOptions,
    pub keys: KeyPaths,
    pub trust: TrustOptions,
    pub mappings_dir: PathBuf,
    pub datasources: BTreeMap<String, DatasourceConfig>,
}

#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub mnemonic: String,
    pub name: String,
    pub reply: ReplyMode,
}

/// How a provider answer reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReplyMode {
    /// The signed answer is returned in the HTTP response to SendRequest (still stored first).
    Sync,
    /// SendRequest is acknowledged at once with MessageMetadata; the answer is delivered later (push or pull).
    Async,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub max_concurrent: usize,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub xml: XmlLimits,
}

/// Bounds on an incoming XML document, checked before anything reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XmlLimits {
    pub max_depth: usize,
    pub max_nodes: u32,
    pub max_attributes_per_element: usize,
    pub max_text_bytes: usize,
}

impl Default for XmlLimits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_nodes: 100_000,
            max_attributes_per_element: 64,
            max_text_bytes: 8 * 1024 * 1024,
        }
    }
}

/// How the node connects to an `https://` gateway.
#[derive(Debug, Clone, Default)]
pub struct GatewayTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// The listener's certificate and key, and (for mTLS) the CA that client certificates must chain to.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// How the node's own store commits.
#[derive(Debug, Clone)]
pub struct StorageOptions {
    pub durability: crate::storage::Durability,
    pub group_commit: bool,
}

/// How answers reach the gateway, and how hard the node tries.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    pub mode: DeliveryMode,
    /// Workers processing stored requests (async mode).
    pub workers: usize,
    /// Deliveries in flight at once (push).
    pub concurrency: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub max_attempts: u32,
    pub max_age: Duration,
    pub pull_visibility: Duration,
    pub poll_interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// The node sends SendResponse to `gateway.url`, retrying until acknowledged.
    Push,
    /// The gateway polls with GetResponse and confirms with Ack.
    Pull,
}

/// The consumer side's local intake: the JSON API (off without a token) and the drop folder (off without a path).
#[derive(Clone, Default)]
pub struct ConsumerOptions {
    pub api: Option<(SocketAddr, String)>,
    /// Holds outgoing/, sent/, failed/ and incoming/.
    pub folder: Option<PathBuf>,
}

impl std::fmt::Debug for ConsumerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("ConsumerOptions")
            .field("api", &self.api.as_ref().map(|a| a.0))
            .field("folder", &self.folder)
            .finish()
    }
}

/// The admin status page: its own listener (loopback by default) and the token that opens it.
#[derive(Clone)]
pub struct AdminOptions {
    pub listen: SocketAddr,
    pub token: String,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_struct("AdminOptions")
            .field("listen", &self.listen)
            .field("token", &"<hidden>")
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct KeyPaths {
    pub private_key: Option<PathBuf>,
    pub certificate: Option<PathBuf>,
    /// The key's password, from a file only its owner may read ...
    pub password_file: Option<PathBuf>,
    /// ... or from this environment variable. Never logged.
    pub password_env: Option<String>,
    /// `keys.algorithm`; unset = the key's own (development keys: GOST 2012-256 when the engine
    /// loads, else ECDSA P-256).
    pub algorithm: Option<crate::dsig::SignatureAlg>,
}

/// Whose signatures the node accepts, and how a signer becomes a sender mnemonic.
#[derive(Debug, Clone)]
pub struct TrustOptions {
    pub ca: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER), each issued by one of the `ca` certificates.
    pub crl: Vec<PathBuf>,
    pub sender_from: crate::trust::SenderFrom,
    pub senders: std::collections::HashMap<String, String>,
    /// Who may poll (GetResponse, Ack, GetStatus); empty = any registered sender.
    pub pollers: Vec<String>,
    /// Accept GetResponse, Ack and GetStatus without a CallerInformationSystemSignature
    /// (for gateways that do not sign polls). A signature that is present is still verified.
    pub unsigned_polling: bool,
    /// How far a signed GetResponse's Timestamp may be from the node's clock; each signed poll is
    /// accepted once within it (zero: no check). See `poll_guard`.
    pub poll_max_age: Duration,
}

#[derive(Debug, Clone)]
pub enum DatasourceConfig {
    Sqlite(SqliteDatasource),
    Postgres(PostgresDatasource),
}

#[derive(Debug, Clone)]
pub struct SqliteDatasource {
    pub path: PathBuf,
    /// When set and the database file is missing, it is built from this sample folder on start.
    pub create_from_samples: Option<PathBuf>,
    pub busy_timeout: Duration,
    pub pool_size: usize,
}

/// A PostgreSQL datasource (`kind = "postgres"`).
#[derive(Debug, Clone)]
pub struct PostgresDatasource {
    /// `postgresql://user[:password]@host[:port]/database[?options]` (libpq URL or key=value form).
    pub url: String,
    pub pool_size: usize,
    /// Time to connect, and to wait for a free pooled connection.
    pub connect_timeout: Duration,
    pub tls: PgTls,
}

/// TLS to PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgTls {
    Off,
    /// Required, with the server certificate verified against `ca_file` (else the system roots).
    On {
        ca_file: Option<PathBuf>,
    },
}

// ---- the file's shape -------------------------------------------------------------------------

#[derive(Deserialize)]
struct RawConfig {
    node: RawNode,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    gateway: RawGateway,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    consumer: RawConsumer,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    trust: RawTrust,
    #[serde(default)]
    mappings: RawMappings,
    #[serde(default)]
    datasources: BTreeMap<String, RawDatasource>,
}

#[derive(Deserialize)]
struct RawNode {
    mnemonic: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    reply: Option<ReplyMode>,
}

#[derive(Deserialize, Default)]
struct RawServer {
    listen: Option<String>,
    path: Option<String>,
    wsdl_dir: Option<String>,
    tls: Option<RawTls>,
    plain_http: Option<bool>,
}

#[derive(Deserialize)]
struct RawTls {
    cert: String,
    key: String,
    client_ca: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawLimits {
    max_body: Option<Size>,
    max_concurrent: Option<usize>,
    request_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_xml_depth: Option<usize>,
    max_xml_nodes: Option<u32>,
    max_attributes: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawStorage {
    data_dir: Option<String>,
    synchronous: Option<String>,
    group_commit: Option<bool>,
}

#[derive(Deserialize, Default)]
struct RawDelivery {
    mode: Option<String>,
    workers: Option<usize>,
    concurrency: Option<usize>,
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_attempts: Option<u32>,
    max_age: Option<String>,
    pull_visibility: Option<String>,
    poll_interval: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawGateway {
    url: Option<String>,
    ca_file: Option<String>,
    client_cert: Option<String>,
    client_key: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawConsumer {
    api_listen: Option<String>,
    api_token: Option<String>,
    api_token_file: Option<String>,
    folder: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawAdmin {
    listen: Option<String>,
    token: Option<String>,
    token_file: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawKeys {
    private_key: Option<String>,
    certificate: Option<String>,
    password_file: Option<String>,
    password_env: Option<String>,
    algorithm: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawTrust {
    #[serde(default)]
    ca: Vec<String>,
    #[serde(default)]
    crl: Vec<String>,
    sender_from: Option<String>,
    #[serde(default)]
    senders: BTreeMap<String, String>,
    #[serde(default)]
    pollers: Vec<String>,
    #[serde(default)]
    unsigned_polling: bool,
    poll_max_age: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawMappings {
    dir: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum RawDatasource {
    Sqlite {
        path: String,
        #[serde(default)]
        create_from_samples: Option<String>,
        #[serde(default)]
        busy_timeout: Option<String>,
        #[serde(default)]
        pool_size: Option<usize>,
    },
    #[serde(alias = "postgresql")]
    Postgres {
        url: String,
        #[serde(default)]
        pool_size: Option<usize>,
        #[serde(default)]
        connect_timeout: Option<String>,
        #[serde(default)]
        tls: Option<bool>,
        #[serde(default)]
        ca_file: Option<String>,
    },
}

/// A size written as bytes (`1048576`) or with a unit (`"10MiB"`, `"512KiB"`, `"1GiB"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

// ---- loading ----------------------------------------------------------------------------------

impl Config {
    /// The config file to use: the given one, else the first of [`DEFAULT_CONFIG_PATHS`] that exists.
    pub fn locate(explicit: Option<&Path>) -> Result<PathBuf, Problems> {
        if let Some(p) = explicit {
            return Ok(p.to_path_buf());
        }
        DEFAULT_CONFIG_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| {
                Problems(vec![Problem::whole_file(
                    Path::new(DEFAULT_CONFIG_PATHS[0]),
                    format!(
                        "no config file: looked for {} (pass --config PATH)",
                        DEFAULT_CONFIG_PATHS.join(" and ")
                    ),
                )])
            })
    }

    /// Reads and validates the file, applying the process environment's overrides.
    pub fn load(path: &Path) -> Result<Config, Problems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problems(vec![Problem::whole_file(path, format!("cannot read: {e}"))]))?;
        Self::parse(path, &text, &|name| std::env::var(name).ok())
    }

    /// Validates `text` as the contents of `path`; `env` supplies override variables (tests pass their own).
    pub fn parse(
        path: &Path,
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, Problems> {
        let parsed = tomlfile::parse::<RawConfig>(path, text);
        let mut problems = parsed.problems;
        let Some(raw) = parsed.value else {
            return Err(Problems(problems));
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut v = Validator {
            file: path,
            text,
            base: &base,
            problems: &mut problems,
        };
        let config = v.build(raw, env);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(problems))
        }
    }
}

/// Turns the raw shape into a [`Config`], recording a located problem for each bad value.
struct Validator<'a> {
    file: &'a Path,
    text: &'a str,
    base: &'a Path,
    problems: &'a mut Vec<Problem>,
}

impl Validator<'_> {
    fn problem(&mut self, key: &[&str], message: String) {
        let span = tomlfile::value_span(self.text, key);
        self.problems
            .push(Problem::at_span(self.file, self.text, span, message));
    }

    /// `keys.algorithm`: a short name or an XMLDSig algorithm URI. SHA-1 signs nothing.
    fn signature_algorithm(&mut self, name: &str) -> Option<crate::dsig::SignatureAlg> {
        use crate::dsig::SignatureAlg as A;
        let alg = match name {
            "gost2012-256" => Some(A::Gost2012_256),
            "gost2012-512" => Some(A::Gost2012_512),
            "ecdsa" | "ecdsa-sha256" => Some(A::EcdsaSha256),
            "ecdsa-sha384" => Some(A::EcdsaSha384),
            "ecdsa-sha512" => Some(A::EcdsaSha512),
            "rsa" | "rsa-sha256" => Some(A::RsaSha256),
            "rsa-sha384" => Some(A::RsaSha384),
            "rsa-sha512" => Some(A::RsaSha512),
            "rsa-pss" | "rsa-pss-sha256" => Some(A::RsaPssSha256),
            "rsa-pss-sha384" => Some(A::RsaPssSha384),
            "rsa-pss-sha512" => Some(A::RsaPssSha512),
            uri => A::from_uri(uri).ok().filter(|a| !a.is_weak()),
        };
        if alg.is_none() {
            self.problem(
                &["keys", "algorithm"],
                format!(
                    "keys.algorithm `{name}` must be gost2012-256, gost2012-512, ecdsa-sha256|384|512, \
                     rsa-sha256|384|512 or rsa-pss-sha256|384|512"
                ),
            );
        }
        alg
    }

    /// Plain HTTP is a decision an admin writes down, never a default: a node that forgot its
    /// `[server.tls]` must not quietly take requests in the clear.
    fn check_transport(&mut self, has_tls: bool, plain_http: Option<bool>) {
        match (has_tls, plain_http) {
            (true, Some(true)) => self.problem(
                &["server", "plain_http"],
                "server.plain_http = true contradicts [server.tls]: remove one of them".into(),
            ),
            (false, None | Some(false)) => self.problem(
                &["server"],
                "the SOAP listener needs [server.tls] (cert, key, optional client_ca), or \
                 `plain_http = true` under [server] to serve plain HTTP on purpose \
                 (development, or behind a TLS-terminating proxy)"
                    .into(),
            ),
            _ => {}
        }
    }

    fn resolve(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base.join(p)
        }
    }

    fn build(&mut self, raw: RawConfig, env: &dyn Fn(&str) -> Option<String>) -> Config {
        let node = self.node(raw.node);
        let listen = self.listen(raw.server.listen, env);
        let endpoint_path = self.endpoint_path(raw.server.path);
        let wsdl_dir = self.resolve(raw.server.wsdl_dir.as_deref().unwrap_or("wsdl"));
        let tls = raw.server.tls.map(|t| {
            let tls = TlsOptions {
                cert: self.resolve(&t.cert),
                key: self.resolve(&t.key),
                client_ca: t.client_ca.map(|c| self.resolve(&c)),
            };
            for (key, path) in [
                ("cert", Some(&tls.cert)),
                ("key", Some(&tls.key)),
                ("client_ca", tls.client_ca.as_ref()),
            ] {
                if let Some(path) = path.filter(|p| !p.is_file()) {
                    let shown = path.display().to_string();
                    self.problem(
                        &["server", "tls", key],
                        format!("server.tls.{key} `{shown}` does not exist"),
                    );
                }
            }
            tls
        });
        self.check_transport(tls.is_some(), raw.server.plain_http);
        if !wsdl_dir.join(crate::server::WSDL_FILE).is_file() {
            let shown = wsdl_dir.display().to_string();
            self.problem(
                &["server", "wsdl_dir"],
                format!("wsdl_dir `{shown}` holds no {}", crate::server::WSDL_FILE),
            );
        }
        let limits = self.limits(raw.limits);
        let data_dir = match env(ENV_DATA_DIR) {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => self.resolve(raw.storage.data_dir.as_deref().unwrap_or("data")),
        };
        let gateway_tls = GatewayTls {
            ca_file: raw.gateway.ca_file.as_deref().map(|p| self.resolve(p)),
            client_cert: raw.gateway.client_cert.as_deref().map(|p| self.resolve(p)),
            client_key: raw.gateway.client_key.as_deref().map(|p| self.resolve(p)),
        };
        for (key, path) in [
            ("ca_file", &gateway_tls.ca_file),
            ("client_cert", &gateway_tls.client_cert),
            ("client_key", &gateway_tls.client_key),
        ] {
            if let Some(path) = path.as_ref().filter(|p| !p.is_file()) {
                let shown = path.display().to_string();
                self.problem(
                    &["gateway", key],
                    format!("gateway.{key} `{shown}` does not exist"),
                );
            }
        }
        if gateway_tls.client_cert.is_some() != gateway_tls.client_key.is_some() {
            self.problem(
                &["gateway", "client_cert"],
                "set gateway.client_cert and gateway.client_key together".into(),
            );
        }
        let gateway_url = self.gateway_url(raw.gateway.url);
        let admin = self.admin(raw.admin);
        let consumer = self.consumer(raw.consumer);
        let storage = self.storage(&raw.storage);
        let delivery = self.delivery(raw.delivery, gateway_url.is_some());
        let keys = KeyPaths {
            private_key: raw.keys.private_key.map(|p| self.resolve(&p)),
            certificate: raw.keys.certificate.map(|p| self.resolve(&p)),
            password_file: raw.keys.password_file.map(|p| self.resolve(&p)),
            password_env: raw.keys.password_env,
            algorithm: raw
                .keys
                .algorithm
                .and_then(|a| self.signature_algorithm(&a)),
        };
        let trust = self.trust(raw.trust);
        let mappings_dir = self.resolve(raw.mappings.dir.as_deref().unwrap_or("mappings"));
        if !mappings_dir.is_dir() {
            let shown = mappings_dir.display().to_string();
            self.problem(
                &["mappings", "dir"],
                format!("mappings directory `{shown}` does not exist"),
            );
        }
        let datasources = raw
            .datasources
            .into_iter()
            .map(|(name, ds)| (name.clone(), self.datasource(&name, ds)))
            .collect();
        Config {
            source: self.file.to_path_buf(),
            node,
            listen,
            endpoint_path,
            wsdl_dir,
            tls,
            limits,
            data_dir,
            storage,
            delivery,
            gateway_url,
            gateway_tls,
            admin,
            consumer,
            keys,
            trust,
            mappings_dir,
            datasources,
        }
    }

    fn node(&mut self, raw: RawNode) -> NodeIdentity {
        let mnemonic_ok = !raw.mnemonic.is_empty()
            && raw.mnemonic.len() <= 100
            && raw
                .mnemonic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !mnemonic_ok {
            self.problem(
                &["node", "mnemonic"],
                "node.mnemonic must be 1-100 characters of A-Z, a-z, 0-9, '_' or '-'".into(),
            );
        }
        NodeIdentity {
            name: raw.name.unwrap_or_else(|| raw.mnemonic.clone()),
            mnemonic: raw.mnemonic,
            reply: raw.reply.unwrap_or(ReplyMode::Async),
        }
    }

    fn listen(&mut self, raw: Option<String>, env: &dyn Fn(&str) -> Option<String>) -> SocketAddr {
        let fallback = SocketAddr::from(([127, 0, 0, 1], 7575));
        if let Some(value) = env(ENV_LISTEN).filter(|v| !v.is_empty()) {
            return value.parse().unwrap_or_else(|_| {
                self.problems.push(Problem::whole_file(
                    self.file,
                    format!("environment variable {ENV_LISTEN}=`{value}` is not an address like 127.0.0.1:7575"),
                ));
                fallback
            });
        }
        let Some(value) = raw else { return fallback };
        value.parse().unwrap_or_else(|_| {
            self.problem(
                &["server", "listen"],
                format!("server.listen `{value}` is not an address like 127.0.0.1:7575"),
            );
            fallback
        })
    }

    fn endpoint_path(&mut self, raw: Option<String>) -> String {
        let path = raw.unwrap_or_else(|| "/ws".into());
        if !path.starts_with('/') || path.contains(['?', '#', ' ']) {
            self.problem(
                &["server", "path"],
                format!("server.path `{path}` must start with '/' and hold no '?', '#' or spaces"),
            );
        }
        path
    }

    fn limits(&mut self, raw: RawLimits) -> Limits {
        let max_body_bytes = match raw.max_body {
            None => 10 * 1024 * 1024,
            Some(size) => self
                .size(&["limits", "max_body"], size)
                .unwrap_or(10 * 1024 * 1024),
        };
        let max_concurrent = raw.max_concurrent.unwrap_or(256);
        if max_concurrent == 0 {
            self.problem(
                &["limits", "max_concurrent"],
                "limits.max_concurrent must be at least 1".into(),
            );
        }
        let defaults = XmlLimits::default();
        let xml = XmlLimits {
            max_depth: raw.max_xml_depth.unwrap_or(defaults.max_depth),
            max_nodes: raw.max_xml_nodes.unwrap_or(defaults.max_nodes),
            max_attributes_per_element: raw
                .max_attributes
                .unwrap_or(defaults.max_attributes_per_element),
            max_text_bytes: max_body_bytes,
        };
        Limits {
            max_body_bytes,
            max_concurrent: max_concurrent.max(1),
            request_timeout: self.duration(
                &["limits", "request_timeout"],
                raw.request_timeout,
                Duration::from_secs(30),
            ),
            shutdown_grace: self.duration(
                &["limits", "shutdown_grace"],
                raw.shutdown_grace,
                Duration::from_secs(10),
            ),
            xml,
        }
    }

    fn size(&mut self, key: &[&str], size: Size) -> Option<usize> {
        let parsed = match &size {
            Size::Bytes(b) => usize::try_from(*b).ok(),
            Size::Text(t) => parse_size(t),
        };
        match parsed {
            Some(0) | None => {
                let shown = match size {
                    Size::Bytes(b) => b.to_string(),
                    Size::Text(t) => t,
                };
                self.problem(
                    key,
                    format!(
                        "{} `{shown}` is not a size like 10MiB, 512KiB or 1048576",
                        key.join(".")
                    ),
                );
                None
            }
            ok => ok,
        }
    }

    fn duration(&mut self, key: &[&str], raw: Option<String>, default: Duration) -> Duration {
        let Some(text) = raw else { return default };
        parse_duration(&text).unwrap_or_else(|| {
            self.problem(
                key,
                format!(
                    "{} `{text}` is not a duration like 500ms, 30s, 5m, 2h or 2d",
                    key.join(".")
                ),
            );
            default
        })
    }

    fn storage(&mut self, raw: &RawStorage) -> StorageOptions {
        let durability = match raw.synchronous.as_deref() {
            None => crate::storage::Durability::Full,
            Some(text) => crate::storage::Durability::parse(text).unwrap_or_else(|| {
                self.problem(
                    &["storage", "synchronous"],
                    format!("storage.synchronous `{text}` must be \"full\", \"normal\" or \"off\""),
                );
                crate::storage::Durability::Full
            }),
        };
        StorageOptions {
            durability,
            group_commit: raw.group_commit.unwrap_or(true),
        }
    }

    fn delivery(&mut self, raw: RawDelivery, has_gateway: bool) -> DeliveryOptions {
        let mode = match raw.mode.as_deref() {
            None if has_gateway => DeliveryMode::Push,
            None => DeliveryMode::Pull,
            Some("push") => {
                if !has_gateway {
                    self.problem(
                        &["delivery", "mode"],
                        "delivery.mode = \"push\" needs gateway.url".into(),
                    );
                }
                DeliveryMode::Push
            }
            Some("pull") => DeliveryMode::Pull,
            Some(other) => {
                self.problem(
                    &["delivery", "mode"],
                    format!("delivery.mode `{other}` must be \"push\" or \"pull\""),
                );
                DeliveryMode::Pull
            }
        };
        let d = |v: &mut Self, key: &'static str, raw: Option<String>, default: Duration| {
            v.duration(&["delivery", key], raw, default)
        };
        DeliveryOptions {
            mode,
            workers: raw.workers.unwrap_or(4).max(1),
            concurrency: raw.concurrency.unwrap_or(16).max(1),
            retry_initial: d(
                self,
                "retry_initial",
                raw.retry_initial,
                Duration::from_secs(1),
            ),
            retry_max: d(self, "retry_max", raw.retry_max, Duration::from_secs(300)),
            max_attempts: raw.max_attempts.unwrap_or(50).max(1),
            max_age: d(
                self,
                "max_age",
                raw.max_age,
                Duration::from_secs(2 * 86_400),
            ),
            pull_visibility: d(
                self,
                "pull_visibility",
                raw.pull_visibility,
                Duration::from_secs(60),
            ),
            poll_interval: d(
                self,
                "poll_interval",
                raw.poll_interval,
                Duration::from_secs(1),
            ),
            timeout: d(self, "timeout", raw.timeout, Duration::from_secs(30)),
        }
    }

    fn trust(&mut self, raw: RawTrust) -> TrustOptions {
        use crate::trust::SenderFrom;
        let ca = self.existing_files("ca", &raw.ca);
        let crl = self.existing_files("crl", &raw.crl);
        let sender_from = match raw.sender_from.as_deref() {
            None | Some("cn") => SenderFrom::CommonName,
            Some("ogrn") => SenderFrom::Ogrn,
            Some("snils") => SenderFrom::Snils,
            Some("fingerprint") => SenderFrom::Fingerprint,
            Some(other) => {
                self.problem(
                    &["trust", "sender_from"],
                    format!("trust.sender_from `{other}` must be cn, ogrn, snils or fingerprint"),
                );
                SenderFrom::CommonName
            }
        };
        let senders = raw
            .senders
            .into_iter()
            .map(|(k, v)| (k.replace(':', "").to_lowercase(), v))
            .collect();
        TrustOptions {
            ca,
            crl,
            sender_from,
            senders,
            pollers: raw.pollers,
            unsigned_polling: raw.unsigned_polling,
            poll_max_age: self.duration(
                &["trust", "poll_max_age"],
                raw.poll_max_age,
                Duration::from_secs(300),
            ),
        }
    }

    /// `trust.<key>`'s paths, resolved; each missing one is a problem at that key.
    fn existing_files(&mut self, key: &str, paths: &[String]) -> Vec<PathBuf> {
        let resolved: Vec<PathBuf> = paths.iter().map(|p| self.resolve(p)).collect();
        for (i, path) in resolved.iter().enumerate() {
            if !path.exists() {
                let shown = path.display().to_string();
                let span = crate::tomlfile::value_span(self.text, &["trust", key]);
                self.problems.push(Problem::at_span(
                    self.file,
                    self.text,
                    span,
                    format!("trust.{key}[{i}] `{shown}` does not exist"),
                ));
            }
        }
        resolved
    }

    fn consumer(&mut self, raw: RawConsumer) -> ConsumerOptions {
        let folder = raw.folder.map(|f| self.resolve(&f));
        let token = self.token(
            &["consumer", "api_token"],
            &["consumer", "api_token_file"],
            raw.api_token,
            raw.api_token_file,
        );
        let api = token.and_then(|token| {
            let text = raw.api_listen.unwrap_or_else(|| "127.0.0.1:7581".into());
            match text.parse() {
                Ok(addr) => Some((addr, token)),
                Err(_) => {
                    self.problem(
                        &["consumer", "api_listen"],
                        format!(
                            "consumer.api_listen `{text}` is not an address like 127.0.0.1:7581"
                        ),
                    );
                    None
                }
            }
        });
        ConsumerOptions { api, folder }
    }

    /// A token given inline or in a file that only its owner may read; at least 16 characters.
    fn token(
        &mut self,
        inline_key: &[&str],
        file_key: &[&str],
        inline: Option<String>,
        file: Option<String>,
    ) -> Option<String> {
        let token = match (inline, file) {
            (Some(_), Some(_)) => {
                self.problem(
                    inline_key,
                    format!(
                        "set {} or {}, not both",
                        inline_key.join("."),
                        file_key.join(".")
                    ),
                );
                return None;
            }
            (Some(token), None) => token,
            (None, Some(file)) => match read_secret_file(&self.resolve(&file)) {
                Ok(t) => t,
                Err(e) => {
                    self.problem(file_key, e);
                    return None;
                }
            },
            (None, None) => return None,
        };
        if token.len() < 16 {
            self.problem(
                inline_key,
                format!("{} must be at least 16 characters", inline_key.join(".")),
            );
            return None;
        }
        Some(token)
    }

    fn admin(&mut self, raw: RawAdmin) -> Option<AdminOptions> {
        let listen = match raw.listen.as_deref() {
            None => SocketAddr::from(([127, 0, 0, 1], 7580)),
            Some(text) => match text.parse() {
                Ok(a) => a,
                Err(_) => {
                    self.problem(
                        &["admin", "listen"],
                        format!("admin.listen `{text}` is not an address like 127.0.0.1:7580"),
                    );
                    return None;
                }
            },
        };
        let token = self.token(
            &["admin", "token"],
            &["admin", "token_file"],
            raw.token,
            raw.token_file,
        )?;
        Some(AdminOptions { listen, token })
    }

    fn gateway_url(&mut self, raw: Option<String>) -> Option<String> {
        let url = raw?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.problem(
                &["gateway", "url"],
                format!("gateway.url `{url}` must start with http:// or https://"),
            );
        }
        Some(url)
    }

    fn datasource(&mut self, name: &str, raw: RawDatasource) -> DatasourceConfig {
        match raw {
            RawDatasource::Sqlite {
                path,
                create_from_samples,
                busy_timeout,
                pool_size,
            } => {
                let path = self.resolve(&path);
                let create_from_samples = create_from_samples.map(|p| self.resolve(&p));
                match &create_from_samples {
                    Some(samples) if !samples.is_dir() => {
                        let shown = samples.display().to_string();
                        self.problem(
                            &["datasources", name, "create_from_samples"],
                            format!("sample folder `{shown}` does not exist"),
                        );
                    }
                    None if !path.exists() => {
                        let shown = path.display().to_string();
                        self.problem(
                            &["datasources", name, "path"],
                            format!("SQLite database `{shown}` does not exist"),
                        );
                    }
                    _ => {}
                }
                let busy = self.duration(
                    &["datasources", name, "busy_timeout"],
                    busy_timeout,
                    Duration::from_secs(5),
                );
                DatasourceConfig::Sqlite(SqliteDatasource {
                    path,
                    create_from_samples,
                    busy_timeout: busy,
                    pool_size: pool_size.unwrap_or(8).max(1),
                })
            }
            RawDatasource::Postgres {
                url,
                pool_size,
                connect_timeout,
                tls,
                ca_file,
            } => self.postgres(name, url, pool_size, connect_timeout, tls, ca_file),
        }
    }

    fn postgres(
        &mut self,
        name: &str,
        url: String,
        pool_size: Option<usize>,
        connect_timeout: Option<String>,
        tls: Option<bool>,
        ca_file: Option<String>,
    ) -> DatasourceConfig {
        if let Err(e) = url.parse::<tokio_postgres::Config>() {
            self.problem(
                &["datasources", name, "url"],
                format!("datasources.{name}.url is not a PostgreSQL connection URL: {e}"),
            );
        }
        let ca_file = ca_file.map(|p| self.resolve(&p));
        if let Some(ca) = &ca_file
            && !ca.is_file()
        {
            let shown = ca.display().to_string();
            self.problem(
                &["datasources", name, "ca_file"],
                format!("CA file `{shown}` does not exist"),
            );
        }
        if ca_file.is_some() && tls != Some(true) {
            self.problem(
                &["datasources", name, "ca_file"],
                "ca_file is only used with tls = true".into(),
            );
        }
        if pool_size == Some(0) {
            self.problem(
                &["datasources", name, "pool_size"],
                "pool_size must be at least 1".into(),
            );
        }
        DatasourceConfig::Postgres(PostgresDatasource {
            url,
            pool_size: pool_size.unwrap_or(8).max(1),
            connect_timeout: self.duration(
                &["datasources", name, "connect_timeout"],
                connect_timeout,
                Duration::from_secs(5),
            ),
            tls: if tls == Some(true) {
                PgTls::On { ca_file }
            } else {
                PgTls::Off
            },
        })
    }
}

/// Reads a secret (token, password) from a file that only its owner may read.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "secret file {} is readable by group or others (mode {mode:o}); fix with: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))?;
    Ok(text.trim().to_string())
}

/// Parses `500ms`, `30s`, `5m`, `2h`, `2d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "ms" => n,
        "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(millis))
}

/// Parses `10MiB`, `512KiB`, `1GiB`, `100B` or a bare number of bytes.
pub fn parse_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: usize = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "KB" => 1024,
        "MiB" | "M" | "MB" => 1024 * 1024,
        "GiB" | "G" | "GB" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(factor)
}
