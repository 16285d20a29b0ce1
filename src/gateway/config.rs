//! The gateway simulator's config (`gateway.toml`): nodes, routes, retry and initial fault knobs.
//! It reports every problem with file:line like `check` does; it must not open sockets or start anything.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::control::FaultPlan;
use crate::config::{XmlLimits, parse_duration, parse_size};
use crate::diag::{Problem, Problems};
use crate::tomlfile;

/// Where `smev-adapter gateway` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "gateway.toml";
/// The listen address when the file names none.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7576";
/// The gateway's own mnemonic when the file names none.
pub const DEFAULT_MNEMONIC: &str = "GATEWAY";

/// A loaded, validated gateway.toml.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub source: PathBuf,
    pub listen: SocketAddr,
    pub mnemonic: String,
    pub name: String,
    /// Agency nodes by mnemonic: where requests to them and answers for them are POSTed.
    pub nodes: BTreeMap<String, String>,
    /// `(namespace, local name)` of the MessagePrimaryContent child → recipients, in order.
    pub routes: BTreeMap<(String, String), Vec<String>>,
    pub delivery: GatewayDelivery,
    pub limits: GatewayLimits,
    /// Fault knobs armed at start (the control endpoint adds to them).
    pub faults: FaultPlan,
}

/// How hard the gateway tries to hand a message to a node.
#[derive(Debug, Clone)]
pub struct GatewayDelivery {
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// Attempts per forward before it is given up (counted as `failed`).
    pub max_attempts: u32,
    /// One HTTP call, connect to last byte.
    pub timeout: Duration,
    /// Forwards waiting or in flight; beyond it incoming calls get DestinationOverflow.
    pub max_queue: usize,
    /// Forwards in flight at once.
    pub concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct GatewayLimits {
    pub max_body_bytes: usize,
    pub xml: XmlLimits,
    /// MessageIDs remembered (request → sender, relayed answers); the oldest are forgotten first.
    pub remember: usize,
}

// ---- the file's shape -------------------------------------------------------------------------

#[derive(Deserialize)]
struct Raw {
    listen: Option<String>,
    mnemonic: Option<String>,
    name: Option<String>,
    #[serde(default)]
    nodes: Vec<RawNode>,
    #[serde(default)]
    routes: Vec<RawRoute>,
    #[serde(default)]
    delivery: RawDelivery,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    faults: FaultPlan,
}

#[derive(Deserialize)]
struct RawNode {
    mnemonic: String,
    url: String,
}

#[derive(Deserialize)]
struct RawRoute {
    request: String,
    recipients: Vec<String>,
}

#[derive(Deserialize, Default)]
struct RawDelivery {
    retry_initial: Option<String>,
    retry_max: Option<String>,
    max_attempts: Option<u32>,
    timeout: Option<String>,
    max_queue: Option<usize>,
    concurrency: Option<usize>,
}

#[derive(Deserialize, Default)]
struct RawLimits {
    max_body: Option<String>,
    remember: Option<usize>,
}

impl GatewayConfig {
    /// `explicit`, else ./gateway.toml.
    pub fn locate(explicit: Option<&Path>) -> PathBuf {
        explicit.map_or_else(|| PathBuf::from(DEFAULT_CONFIG), Path::to_path_buf)
    }

    pub fn load(path: &Path) -> Result<GatewayConfig, Problems> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Problems(vec![Problem::whole_file(path, format!("cannot read: {e}"))]))?;
        Self::parse(path, &text)
    }

    /// Validates `text` as the contents of `path`.
    pub fn parse(path: &Path, text: &str) -> Result<GatewayConfig, Problems> {
        let parsed = tomlfile::parse::<Raw>(path, text);
        let mut problems = parsed.problems;
        let Some(raw) = parsed.value else {
            return Err(Problems(problems));
        };
        let table = DeTable::parse(text).ok();
        let mut v = Validator {
            file: path,
            text,
            table: table.as_ref().map(|t| t.get_ref()),
            problems: &mut problems,
        };
        let config = v.build(raw);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(Problems(problems))
        }
    }
}

/// A segment of a path into the file: a key or an array index.
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

struct Validator<'a, 't> {
    file: &'a Path,
    text: &'a str,
    table: Option<&'t DeTable<'t>>,
    problems: &'a mut Vec<Problem>,
}

impl Validator<'_, '_> {
    fn problem(&mut self, at: &[Seg<'_>], message: String) {
        let span = self.table.and_then(|t| span_of(t, at));
        self.problems
            .push(Problem::at_span(self.file, self.text, span, message));
    }

    fn build(&mut self, raw: Raw) -> GatewayConfig {
        let listen_text = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = listen_text.parse().unwrap_or_else(|_| {
            self.problem(
                &[Seg::Key("listen")],
                format!("listen `{listen_text}` is not an address like {DEFAULT_LISTEN}"),
            );
            SocketAddr::from(([127, 0, 0, 1], 7576))
        });
        let mnemonic = raw.mnemonic.unwrap_or_else(|| DEFAULT_MNEMONIC.into());
        if !valid_mnemonic(&mnemonic) {
            self.problem(
                &[Seg::Key("mnemonic")],
                "mnemonic must be 1-100 characters of A-Z, a-z, 0-9, '_' or '-'".into(),
            );
        }
        let name = raw.name.unwrap_or_else(|| mnemonic.clone());
        let nodes = self.nodes(raw.nodes);
        let routes = self.routes(raw.routes, &nodes);
        let delivery = self.delivery(raw.delivery);
        let limits = self.limits(raw.limits);
        GatewayConfig {
            source: self.file.to_path_buf(),
            listen,
            mnemonic,
            name,
            nodes,
            routes,
            delivery,
            limits,
            faults: raw.faults,
        }
    }

    fn nodes(&mut self, raw: Vec<RawNode>) -> BTreeMap<String, String> {
        let mut nodes = BTreeMap::new();
        for (i, node) in raw.into_iter().enumerate() {
            let at = |key| [Seg::Key("nodes"), Seg::Index(i), Seg::Key(key)];
            if !valid_mnemonic(&node.mnemonic) {
                self.problem(
                    &at("mnemonic"),
                    format!(
                        "node mnemonic `{}` must be 1-100 characters of A-Z, a-z, 0-9, '_' or '-'",
                        node.mnemonic
                    ),
                );
            }
            if let Err(why) = check_url(&node.url) {
                self.problem(
                    &at("url"),
                    format!("node {} url `{}` {why}", node.mnemonic, node.url),
                );
            }
            if nodes.contains_key(&node.mnemonic) {
                self.problem(
                    &at("mnemonic"),
                    format!("node {} is listed twice", node.mnemonic),
                );
            }
            nodes.insert(node.mnemonic, node.url);
        }
        nodes
    }

    fn routes(
        &mut self,
        raw: Vec<RawRoute>,
        nodes: &BTreeMap<String, String>,
    ) -> BTreeMap<(String, String), Vec<String>> {
        let mut routes = BTreeMap::new();
        for (i, route) in raw.into_iter().enumerate() {
            let at = |key| [Seg::Key("routes"), Seg::Index(i), Seg::Key(key)];
            let Some(qname) = parse_qname(&route.request) else {
                self.problem(
                    &at("request"),
                    format!(
                        "route request `{}` must be a QName written {{namespace}}LocalName",
                        route.request
                    ),
                );
                continue;
            };
            if route.recipients.is_empty() {
                self.problem(
                    &at("recipients"),
                    format!("route {} names no recipients", route.request),
                );
            }
            for r in &route.recipients {
                if !nodes.contains_key(r) {
                    let known: Vec<&str> = nodes.keys().map(String::as_str).collect();
                    self.problem(
                        &at("recipients"),
                        format!(
                            "route {} names unknown node `{r}` (known nodes: {})",
                            route.request,
                            if known.is_empty() {
                                "none".to_string()
                            } else {
                                known.join(", ")
                            }
                        ),
                    );
                }
            }
            if routes.contains_key(&qname) {
                self.problem(
                    &at("request"),
                    format!("route {} is listed twice", route.request),
                );
            }
            routes.insert(qname, route.recipients);
        }
        routes
    }

    fn duration(&mut self, key: &'static str, raw: Option<String>, default: Duration) -> Duration {
        let Some(text) = raw else { return default };
        match parse_duration(&text).filter(|d| !d.is_zero()) {
            Some(d) => d,
            None => {
                self.problem(
                    &[Seg::Key("delivery"), Seg::Key(key)],
                    format!(
                        "delivery.{key} `{text}` is not a positive duration like 500ms, 30s, 5m"
                    ),
                );
                default
            }
        }
    }

    fn delivery(&mut self, raw: RawDelivery) -> GatewayDelivery {
        let retry_initial = self.duration(
            "retry_initial",
            raw.retry_initial,
            Duration::from_millis(200),
        );
        let retry_max = self.duration("retry_max", raw.retry_max, Duration::from_secs(10));
        let timeout = self.duration("timeout", raw.timeout, Duration::from_secs(10));
        let mut positive = |key: &'static str, value: Option<usize>, default: usize| match value {
            Some(0) => {
                self.problem(
                    &[Seg::Key("delivery"), Seg::Key(key)],
                    format!("delivery.{key} must be at least 1"),
                );
                default
            }
            Some(n) => n,
            None => default,
        };
        let max_queue = positive("max_queue", raw.max_queue, 10_000);
        let concurrency = positive("concurrency", raw.concurrency, 16);
        let max_attempts =
            positive("max_attempts", raw.max_attempts.map(|n| n as usize), 100) as u32;
        GatewayDelivery {
            retry_initial,
            retry_max,
            max_attempts,
            timeout,
            max_queue,
            concurrency,
        }
    }

    fn limits(&mut self, raw: RawLimits) -> GatewayLimits {
        let default_body = 10 * 1024 * 1024;
        let max_body_bytes = match raw.max_body {
            None => default_body,
            Some(text) => parse_size(&text).unwrap_or_else(|| {
                self.problem(
                    &[Seg::Key("limits"), Seg::Key("max_body")],
                    format!("limits.max_body `{text}` is not a size like 10MiB"),
                );
                default_body
            }),
        };
        GatewayLimits {
            max_body_bytes,
            xml: XmlLimits {
                max_text_bytes: max_body_bytes,
                ..XmlLimits::default()
            },
            remember: raw.remember.unwrap_or(100_000).max(1),
        }
    }
}

fn valid_mnemonic(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 100
        && m.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Why `url` cannot be POSTed to by the gateway's plain-HTTP client.
fn check_url(url: &str) -> Result<(), &'static str> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|_| "is not a URL like http://127.0.0.1:7575/ws")?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(_) => return Err("must be an http:// URL (the simulator speaks plain HTTP)"),
        None => return Err("is not a URL like http://127.0.0.1:7575/ws"),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err("has no host");
    }
    Ok(())
}

/// `{namespace}Local` → (namespace, local).
pub fn parse_qname(text: &str) -> Option<(String, String)> {
    let rest = text.trim().strip_prefix('{')?;
    let (ns, local) = rest.split_once('}')?;
    let local_ok = !local.is_empty()
        && local
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    (!ns.is_empty() && local_ok).then(|| (ns.to_string(), local.to_string()))
}

/// The span of the value at `path` (keys and array indexes) in the parsed file.
fn span_of(table: &DeTable<'_>, path: &[Seg<'_>]) -> Option<Range<usize>> {
    let (first, rest) = path.split_first()?;
    let Seg::Key(key) = first else { return None };
    let (_, value) = table.iter().find(|(k, _)| k.get_ref().as_ref() == *key)?;
    value_span(value, rest)
}

fn value_span(value: &toml::Spanned<DeValue<'_>>, path: &[Seg<'_>]) -> Option<Range<usize>> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value.span());
    };
    match (value.get_ref(), first) {
        (DeValue::Table(t), Seg::Key(_)) => span_of(t, path),
        (DeValue::Array(items), Seg::Index(i)) => value_span(items.get(*i)?, rest),
        _ => None,
    }
    .or_else(|| Some(value.span()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match GatewayConfig::parse(Path::new("gateway.toml"), text) {
            Ok(_) => Vec::new(),
            Err(p) => p.0.iter().map(ToString::to_string).collect(),
        }
    }

    const GOOD: &str = r#"listen = "127.0.0.1:0"

[[nodes]]
mnemonic = "A"
url = "http://127.0.0.1:7575/ws"

[[nodes]]
mnemonic = "B"
url = "http://127.0.0.1:7577/ws"

[[routes]]
request = "{urn://example.gov/registration/1.0}RegistrationRequest"
recipients = ["B", "A"]
"#;

    #[test]
    fn a_good_file_loads_with_defaults() {
        let c = GatewayConfig::parse(Path::new("gateway.toml"), GOOD).expect("valid");
        assert_eq!(c.mnemonic, "GATEWAY");
        assert_eq!(c.nodes.len(), 2);
        let key = (
            "urn://example.gov/registration/1.0".to_string(),
            "RegistrationRequest".to_string(),
        );
        assert_eq!(c.routes.get(&key), Some(&vec!["B".into(), "A".into()]));
        assert_eq!(c.delivery.max_queue, 10_000);
    }

    #[test]
    fn unknown_keys_unknown_nodes_and_bad_urls_name_their_lines() {
        let text = GOOD
            .replace("url = \"http://127.0.0.1:7577/ws\"", "url = \"ftp://x/ws\"")
            .replace("[\"B\", \"A\"]", "[\"B\", \"Z\"]")
            .replacen("\n\n", "\ncolour = \"blue\"\n", 1);
        let got = problems(&text);
        assert!(
            got.iter().any(|p| p.starts_with("gateway.toml:9:7:")
                && p.contains("must be an http:// URL")),
            "{got:?}"
        );
        assert!(
            got.iter().any(|p| p.starts_with("gateway.toml:13:")
                && p.contains("unknown node `Z` (known nodes: A, B)")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("gateway.toml:2:1:") && p.contains("unknown key `colour`")),
            "{got:?}"
        );
    }

    #[test]
    fn bad_qnames_listen_and_durations_are_refused() {
        let text = GOOD
            .replace("{urn://example.gov/registration/1.0}", "")
            .replace("127.0.0.1:0", "localhost")
            + "[delivery]\nretry_initial = \"soon\"\n";
        let got = problems(&text);
        assert!(
            got.iter()
                .any(|p| p.starts_with("gateway.toml:1:") && p.contains("listen `localhost`")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("gateway.toml:12:") && p.contains("{namespace}LocalName")),
            "{got:?}"
        );
        assert!(
            got.iter()
                .any(|p| p.starts_with("gateway.toml:15:") && p.contains("retry_initial")),
            "{got:?}"
        );
    }
}
