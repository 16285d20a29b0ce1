//! `smev-adapter doctor`: checks an installation (config, keys, GOST, datasources, disk, gateway), one verdict line each.
//! It must not change anything beyond what `check` does (build a missing sample database): no repairs, no store writes.

use std::fmt;
use std::io::Write;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::config::{Config, DatasourceConfig};
use crate::datasource::{Datasources, SqlitePool};
use crate::mapping::MappingSet;

/// Free space in data_dir below this is a FAIL.
pub const DISK_FAIL_BELOW: u64 = 100 * 1024 * 1024;
/// Free space in data_dir below this is a WARN.
pub const DISK_WARN_BELOW: u64 = 1024 * 1024 * 1024;
/// A certificate expiring within this many days is a WARN.
pub const CERT_WARN_DAYS: i32 = 30;
/// How long the gateway's TCP connect may take.
pub const GATEWAY_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Warn,
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Ok => "OK",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        })
    }
}

/// One checked thing: `VERDICT  subject: detail` and, when something is wrong, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub verdict: Verdict,
    pub subject: String,
    pub detail: String,
    pub fix: Option<String>,
}

impl Finding {
    fn ok(subject: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Ok,
            subject: subject.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(subject: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Warn,
            subject: subject.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(subject: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Fail,
            subject: subject.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<4}  {}: {}", self.verdict, self.subject, self.detail)?;
        if let Some(fix) = &self.fix {
            write!(f, " -> fix: {fix}")?;
        }
        Ok(())
    }
}

/// A gateway URL that names no host and port the doctor can connect to.
#[derive(Debug, thiserror::Error)]
pub enum GatewayAddressError {
    #[error("`{0}` does not start with http:// or https://")]
    Scheme(String),
    #[error("`{0}` names no host")]
    NoHost(String),
    #[error("`{0}` has a port that is not a number from 1 to 65535")]
    Port(String),
}

/// Runs every check, printing each line to stdout as it is decided. Exit code 1 when any check FAILs.
pub fn main(explicit: Option<&Path>) -> ExitCode {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    run(explicit, &mut |finding| {
        failed |= finding.verdict == Verdict::Fail;
        let _ = writeln!(out, "{finding}");
        let _ = out.flush();
    });
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs every check and hands each finding to `report`, in a fixed order.
pub fn run(explicit: Option<&Path>, report: &mut dyn FnMut(&Finding)) {
    let Some(config) = check_config(explicit, report) else {
        report(&Finding::warn(
            "other checks",
            "skipped: they need a config that loads",
            "fix the config problems above, then run doctor again",
        ));
        return;
    };
    check_mappings(&config, report);
    check_keys(&config, report);
    report(&check_trust_store(&config));
    for finding in check_revocation_lists(&config) {
        report(&finding);
    }
    report(&check_gost());
    for finding in check_datasources(&config) {
        report(&finding);
    }
    report(&check_data_dir(&config.data_dir));
    report(&check_disk(&config.data_dir));
    report(&check_gateway(
        config.gateway_url.as_deref(),
        &config.gateway_tls,
    ));
}

// ---- config and mappings ----------------------------------------------------------------------

fn check_config(explicit: Option<&Path>, report: &mut dyn FnMut(&Finding)) -> Option<Config> {
    let fix = "correct the file at the line shown (`smev-adapter check` lists the same problems)";
    let path = match Config::locate(explicit) {
        Ok(p) => p,
        Err(problems) => {
            for p in problems.0 {
                report(&Finding::fail(
                    "config",
                    p.to_string(),
                    "pass --config PATH",
                ));
            }
            return None;
        }
    };
    match Config::load(&path) {
        Ok(config) => {
            report(&Finding::ok(
                "config",
                format!("{} loads and is valid", path.display()),
            ));
            Some(config)
        }
        Err(problems) => {
            for p in problems.0 {
                report(&Finding::fail("config", p.to_string(), fix));
            }
            None
        }
    }
}

fn check_mappings(config: &Config, report: &mut dyn FnMut(&Finding)) {
    let subject = "mappings";
    let dir = config.mappings_dir.display();
    // As `check` does: a sample datasource is built when its file is missing.
    if let Err(e) = crate::node::build_missing_sample_databases(config) {
        report(&Finding::fail(
            subject,
            format!("cannot build a sample database: {e}"),
            "check the datasource's create_from_samples folder",
        ));
        return;
    }
    let datasources = match Datasources::open(&config.datasources) {
        Ok(d) => d,
        Err(e) => {
            report(&Finding::fail(
                subject,
                format!("{dir} not checked: {e}"),
                "make the datasource reachable (see its line below)",
            ));
            return;
        }
    };
    match MappingSet::load(&config.mappings_dir, &datasources) {
        Ok(set) if set.is_empty() => report(&Finding::warn(
            subject,
            format!("{dir} holds no mappings: every request will be rejected"),
            format!("add a mapping file to {dir}"),
        )),
        Ok(set) => report(&Finding::ok(
            subject,
            format!("{} mapping(s) in {dir} are valid", set.len()),
        )),
        Err(problems) => {
            for p in problems.0 {
                report(&Finding::fail(
                    subject,
                    p.to_string(),
                    "correct the mapping at the line shown, then `smev-adapter check`",
                ));
            }
        }
    }
}

// ---- keys -------------------------------------------------------------------------------------

fn check_keys(config: &Config, report: &mut dyn FnMut(&Finding)) {
    let keys = &config.keys;
    if keys.private_key.is_none() && keys.certificate.is_none() {
        report(&Finding::warn(
            "keys",
            "none configured: the node's answers are not signed",
            "set [keys] private_key and certificate in the config once signing is available",
        ));
        return;
    }
    let key = match &keys.private_key {
        Some(path) => {
            let (finding, key) = check_private_key(path);
            report(&finding);
            key
        }
        None => {
            report(&Finding::fail(
                "keys.private_key",
                "not set, but keys.certificate is",
                "set [keys] private_key to the certificate's private key file",
            ));
            None
        }
    };
    let cert = match &keys.certificate {
        Some(path) => {
            let (finding, cert) = check_certificate(path);
            report(&finding);
            cert
        }
        None => {
            report(&Finding::fail(
                "keys.certificate",
                "not set, but keys.private_key is",
                "set [keys] certificate to the private key's certificate file",
            ));
            None
        }
    };
    if let (Some(key), Some(cert)) = (key, cert) {
        let matches = cert.public_key().is_ok_and(|public| key.public_eq(&public));
        report(&if matches {
            Finding::ok("keys", "the private key matches the certificate")
        } else {
            Finding::fail(
                "keys",
                "the private key does not belong to the certificate",
                "configure the certificate issued for this private key",
            )
        });
    }
}

fn check_private_key(path: &Path) -> (Finding, Option<PKey<Private>>) {
    let subject = "keys.private_key";
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return (
                Finding::fail(
                    subject,
                    format!("cannot read {shown}: {e}"),
                    format!(
                        "check the path; the file must be readable by the node's user (chown smev-adapter {shown})"
                    ),
                ),
                None,
            );
        }
    };
    if let Some(mode) = mode_of(path)
        && mode & 0o077 != 0
    {
        return (
            Finding::fail(
                subject,
                format!("{shown} is accessible by group or others (mode {mode:04o})"),
                format!("chmod 600 {shown}"),
            ),
            None,
        );
    }
    let key = PKey::private_key_from_pem(&bytes).or_else(|_| PKey::private_key_from_der(&bytes));
    match key {
        Ok(key) => (
            Finding::ok(
                subject,
                format!(
                    "{shown} is readable, private to its owner, a {}",
                    key_kind(&key)
                ),
            ),
            Some(key),
        ),
        Err(e) => (
            Finding::fail(
                subject,
                format!("{shown} is not an unencrypted PEM or DER private key: {e}"),
                "convert it: openssl pkey -in KEY -out KEY.pem (unencrypted), chmod 600",
            ),
            None,
        ),
    }
}

fn key_kind(key: &PKey<Private>) -> String {
    use openssl::pkey::Id;
    let name = match key.id() {
        Id::RSA => "RSA",
        Id::EC => "EC",
        Id::ED25519 => "Ed25519",
        _ => "key",
    };
    format!("{name} key of {} bits", key.bits())
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

fn check_certificate(path: &Path) -> (Finding, Option<X509>) {
    let subject = "keys.certificate";
    let shown = path.display();
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) => {
            return (
                Finding::fail(
                    subject,
                    format!("cannot read {shown}: {e}"),
                    "check the path and that the node's user can read the file",
                ),
                None,
            );
        }
    };
    let cert = match X509::from_pem(&bytes).or_else(|_| X509::from_der(&bytes)) {
        Ok(c) => c,
        Err(e) => {
            return (
                Finding::fail(
                    subject,
                    format!("{shown} is not a PEM or DER X.509 certificate: {e}"),
                    "configure the certificate file (PEM: -----BEGIN CERTIFICATE-----)",
                ),
                None,
            );
        }
    };
    let finding = certificate_validity(subject, &shown.to_string(), &cert);
    (finding, Some(cert))
}

/// Whole days (rounded down) and seconds from now until `time`; negative when it is past.
fn seconds_until(time: &openssl::asn1::Asn1TimeRef) -> Option<i64> {
    let now = Asn1Time::days_from_now(0).ok()?;
    let diff = now.diff(time).ok()?;
    Some(i64::from(diff.days) * 86_400 + i64::from(diff.secs))
}

fn certificate_validity(subject: &str, shown: &str, cert: &X509) -> Finding {
    let renew = "renew the certificate with your CA and replace the file (and its key)";
    let (Some(to_start), Some(to_end)) = (
        seconds_until(cert.not_before()),
        seconds_until(cert.not_after()),
    ) else {
        return Finding::fail(
            subject,
            format!("{shown}: cannot read its validity dates"),
            renew,
        );
    };
    if to_start > 0 {
        return Finding::fail(
            subject,
            format!("{shown} is not valid before {}", cert.not_before()),
            "check the system clock, or wait until the certificate becomes valid",
        );
    }
    if to_end <= 0 {
        return Finding::fail(
            subject,
            format!("{shown} expired on {}", cert.not_after()),
            renew,
        );
    }
    let days = to_end / 86_400;
    if days < i64::from(CERT_WARN_DAYS) {
        return Finding::warn(
            subject,
            format!(
                "{shown} expires on {} (in {days} day{})",
                cert.not_after(),
                if days == 1 { "" } else { "s" }
            ),
            renew,
        );
    }
    Finding::ok(
        subject,
        format!("{shown} is valid until {} ({days} days)", cert.not_after()),
    )
}

// ---- trust store and GOST ---------------------------------------------------------------------

fn check_trust_store(config: &Config) -> Finding {
    if config.trust.ca.is_empty() {
        return Finding::warn(
            "trust store",
            "trust.ca is empty: `serve` refuses to start, since every request's signature must be verified",
            "set trust.ca to the CA certificate files whose signatures this node accepts",
        );
    }
    let shown = config
        .trust
        .ca
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    match crate::dsig::TrustStore::from_files(&config.trust.ca, crate::dsig::Crypto::load()) {
        Ok(_) => Finding::ok("trust store", format!("{shown} load as trust anchors")),
        Err(e) => Finding::fail(
            "trust store",
            format!("{shown}: {e}"),
            "point trust.ca at readable PEM or DER certificates",
        ),
    }
}

/// Each `trust.crl` file: loads, is signed by a trust anchor, and is not out of date.
fn check_revocation_lists(config: &Config) -> Vec<Finding> {
    if config.trust.crl.is_empty() {
        return Vec::new();
    }
    let mut anchors = Vec::new();
    for path in &config.trust.ca {
        // A broken trust.ca is reported by the trust store check.
        anchors.extend(crate::dsig::load_certificates(path).unwrap_or_default());
    }
    match crate::revocation::Revocations::load(&config.trust.crl, &anchors) {
        Err(e) => vec![Finding::fail(
            "revocation list",
            e.to_string(),
            "point trust.crl at CRLs issued by the CAs in trust.ca (PEM or DER)",
        )],
        Ok(lists) => lists
            .describe()
            .into_iter()
            .map(|(path, verdict)| match verdict {
                Ok(summary) => Finding::ok("revocation list", format!("{path}: {summary}")),
                Err(stale) => Finding::warn(
                    "revocation list",
                    format!("{path}: {stale}"),
                    "install the CA's current CRL; until then revocations after it are not seen",
                ),
            })
            .collect(),
    }
}

// The ENGINE API is not in openssl-sys; libcrypto (linked through openssl-sys) still exports it.
unsafe extern "C" {
    fn ENGINE_by_id(id: *const std::os::raw::c_char) -> *mut std::ffi::c_void;
    fn ENGINE_free(e: *mut std::ffi::c_void) -> std::os::raw::c_int;
}

/// Whether OpenSSL can load its `gost` engine (from OPENSSL_ENGINES or the built-in engines directory).
pub fn gost_engine_loads() -> bool {
    openssl_sys::init();
    // SAFETY: ENGINE_by_id takes a NUL-terminated id and returns an owned reference or NULL;
    // a non-NULL reference is released exactly once with ENGINE_free.
    let loaded = unsafe {
        let engine = ENGINE_by_id(c"gost".as_ptr());
        if engine.is_null() {
            false
        } else {
            ENGINE_free(engine);
            true
        }
    };
    // A failed lookup leaves errors on this thread's OpenSSL error queue; clear them.
    let _ = openssl::error::ErrorStack::get();
    loaded
}

fn check_gost() -> Finding {
    if gost_engine_loads() {
        Finding::ok(
            "GOST",
            format!(
                "OpenSSL's gost engine loads ({})",
                openssl::version::version()
            ),
        )
    } else {
        Finding::warn(
            "GOST",
            "GOST not available: OpenSSL cannot load its gost engine",
            "install libengine-gost-openssl (apt-get install libengine-gost-openssl)",
        )
    }
}

// ---- datasources ------------------------------------------------------------------------------

fn check_datasources(config: &Config) -> Vec<Finding> {
    if config.datasources.is_empty() {
        return vec![Finding::warn(
            "datasources",
            "none configured: no mapping can answer",
            "add a [datasources.NAME] table to the config",
        )];
    }
    config
        .datasources
        .iter()
        .map(|(name, ds)| {
            let subject = format!("datasource {name}");
            let (shown, probe) = match ds {
                DatasourceConfig::Sqlite(sqlite) => {
                    let shown = format!("SQLite {}", sqlite.path.display());
                    // Reading the schema proves the file is a database; `SELECT 1` alone does not read it.
                    let probe = SqlitePool::open(name, sqlite).and_then(|pool| {
                        pool.ping()?;
                        pool.describe("SELECT count(*) FROM sqlite_master")
                            .map(|_| ())
                    });
                    (shown, probe)
                }
                DatasourceConfig::Postgres(pg) => {
                    let shown = format!("PostgreSQL datasource {name}");
                    let probe = crate::datasource::postgres::PgPool::open(name, pg)
                        .and_then(|pool| pool.ping());
                    (shown, probe)
                }
            };
            match probe {
                Ok(()) => Finding::ok(subject, format!("{shown} opens and answers")),
                Err(e) => Finding::fail(
                    subject,
                    e.to_string(),
                    format!("check that {shown} is reachable and the node's user can read it"),
                ),
            }
        })
        .collect()
}

// ---- data_dir and disk -------------------------------------------------------------------------------------

/// Whether this process may create files in `dir` (write and search permission), as the kernel decides.
#[cfg(unix)]
fn writable(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: access reads the NUL-terminated path and nothing else.
    unsafe { libc::access(c_path.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

#[cfg(not(unix))]
fn writable(_dir: &Path) -> bool {
    true
}

fn check_data_dir(data_dir: &Path) -> Finding {
    let subject = "data_dir";
    let shown = data_dir.display();
    let owner_fix = format!(
        "chown smev-adapter:smev-adapter {shown} && chmod 750 {shown} (the node runs as smev-adapter), or run doctor as the node's user"
    );
    if data_dir.is_dir() {
        return if writable(data_dir) {
            Finding::ok(subject, format!("{shown} is writable by this user"))
        } else {
            Finding::fail(
                subject,
                format!("{shown} is not writable by this user: the node cannot keep its store"),
                owner_fix,
            )
        };
    }
    if data_dir.exists() {
        return Finding::fail(
            subject,
            format!("{shown} exists but is not a directory"),
            "point storage.data_dir at a directory",
        );
    }
    match data_dir.parent() {
        Some(parent) if parent.is_dir() && writable(parent) => Finding::ok(
            subject,
            format!("{shown} does not exist yet; the node creates it on first start"),
        ),
        _ => Finding::fail(
            subject,
            format!("{shown} does not exist and this user cannot create it"),
            format!("install -d -o smev-adapter -g smev-adapter -m 750 {shown}"),
        ),
    }
}

/// The verdict for `free` bytes available in data_dir.
pub fn disk_verdict(free: u64) -> Verdict {
    if free < DISK_FAIL_BELOW {
        Verdict::Fail
    } else if free < DISK_WARN_BELOW {
        Verdict::Warn
    } else {
        Verdict::Ok
    }
}

fn check_disk(data_dir: &Path) -> Finding {
    let subject = "disk";
    // data_dir may not exist before the first start: measure the nearest existing folder above it.
    let mut probe: PathBuf = data_dir.to_path_buf();
    while !probe.exists() {
        match probe.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => probe = parent.to_path_buf(),
            _ => {
                probe = PathBuf::from(".");
                break;
            }
        }
    }
    let free = match free_bytes(&probe) {
        Ok(f) => f,
        Err(e) => {
            return Finding::fail(
                subject,
                format!("cannot measure free space at {}: {e}", probe.display()),
                "check that data_dir is on a mounted, readable file system",
            );
        }
    };
    let not_yet = if probe == data_dir {
        String::new()
    } else {
        format!(
            " (data_dir does not exist yet; measured at {})",
            probe.display()
        )
    };
    let detail = format!(
        "{} free in data_dir {}{not_yet}",
        human_bytes(free),
        data_dir.display()
    );
    let fix = format!(
        "free space on the file system of {}, or move storage.data_dir (at least {} needed, {} advised)",
        data_dir.display(),
        human_bytes(DISK_FAIL_BELOW),
        human_bytes(DISK_WARN_BELOW)
    );
    match disk_verdict(free) {
        Verdict::Ok => Finding::ok(subject, detail),
        Verdict::Warn => Finding::warn(subject, detail, fix),
        Verdict::Fail => Finding::fail(subject, detail, fix),
    }
}

#[cfg(unix)]
fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs writes into the zeroed struct we own and reads the NUL-terminated path.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(not(unix))]
fn free_bytes(_path: &Path) -> std::io::Result<u64> {
    Err(std::io::Error::other("not supported on this platform"))
}

fn human_bytes(n: u64) -> String {
    const GIB: u64 = 1024 * 1024 * 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= GIB {
        format!("{:.1} GiB", n as f64 / GIB as f64)
    } else {
        format!("{} MiB", n / MIB)
    }
}

// ---- gateway ----------------------------------------------------------------------------------

/// Host and port of an http(s) URL (port defaulting to 80 or 443).
pub fn gateway_address(url: &str) -> Result<(String, u16), GatewayAddressError> {
    let (rest, default_port) = if let Some(r) = url.strip_prefix("https://") {
        (r, 443)
    } else if let Some(r) = url.strip_prefix("http://") {
        (r, 80)
    } else {
        return Err(GatewayAddressError::Scheme(url.to_string()));
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| GatewayAddressError::NoHost(url.to_string()))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(GatewayAddressError::NoHost(url.to_string()));
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(GatewayAddressError::Port(url.to_string())),
        },
    };
    Ok((host.to_string(), port))
}

/// A TLS handshake as the node makes it to the gateway (roots, host name, client certificate): the version, or why not.
fn tls_handshake(
    stream: TcpStream,
    host: &str,
    tls: &crate::config::GatewayTls,
) -> Result<String, String> {
    use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVersion};
    let _ = stream.set_read_timeout(Some(GATEWAY_TIMEOUT));
    let _ = stream.set_write_timeout(Some(GATEWAY_TIMEOUT));
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(|e| e.to_string())?;
    match &tls.ca_file {
        Some(ca) => b
            .set_ca_file(ca)
            .map_err(|e| format!("gateway.ca_file: {e}"))?,
        None => b.set_default_verify_paths().map_err(|e| e.to_string())?,
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        b.set_certificate_chain_file(cert)
            .map_err(|e| format!("gateway.client_cert: {e}"))?;
        b.set_private_key_file(key, SslFiletype::PEM)
            .map_err(|e| format!("gateway.client_key: {e}"))?;
    }
    let stream = b.build().connect(host, stream).map_err(|e| e.to_string())?;
    Ok(stream.ssl().version_str().to_string())
}

fn check_gateway(url: Option<&str>, tls: &crate::config::GatewayTls) -> Finding {
    let subject = "gateway";
    let Some(url) = url else {
        return Finding::ok(
            subject,
            "gateway.url is not set: answers are collected by the gateway (pull); nothing to reach",
        );
    };
    let (host, port) = match gateway_address(url) {
        Ok(a) => a,
        Err(e) => return Finding::fail(subject, e.to_string(), "correct gateway.url"),
    };
    let fix = format!(
        "check gateway.url, DNS, the firewall between this host and {host}:{port}, and that the gateway is up"
    );
    let addrs: Vec<_> = match (host.as_str(), port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            return Finding::fail(subject, format!("cannot resolve {host}: {e}"), fix);
        }
    };
    let mut last_error = None;
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, GATEWAY_TIMEOUT) {
            Ok(stream) if url.starts_with("https://") => {
                return match tls_handshake(stream, &host, tls) {
                    Ok(version) => Finding::ok(
                        subject,
                        format!(
                            "{url}: {host}:{port} ({addr}) completes a verified TLS handshake ({version})"
                        ),
                    ),
                    Err(e) => Finding::fail(
                        subject,
                        format!("{url}: the TLS handshake with {host}:{port} fails: {e}"),
                        "check gateway.ca_file (the gateway's CA), the gateway's host name, and gateway.client_cert/client_key if it requires mTLS",
                    ),
                };
            }
            Ok(_) => {
                return Finding::ok(
                    subject,
                    format!("{url}: {host}:{port} ({addr}) accepts TCP connections"),
                );
            }
            Err(e) => last_error = Some(format!("{addr}: {e}")),
        }
    }
    Finding::fail(
        subject,
        format!(
            "{url}: cannot connect to {host}:{port} within {}s ({})",
            GATEWAY_TIMEOUT.as_secs(),
            last_error.unwrap_or_else(|| "no address".into())
        ),
        fix,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_verdict_fails_under_100_mib_and_warns_under_1_gib() {
        assert_eq!(disk_verdict(0), Verdict::Fail);
        assert_eq!(disk_verdict(DISK_FAIL_BELOW - 1), Verdict::Fail);
        assert_eq!(disk_verdict(DISK_FAIL_BELOW), Verdict::Warn);
        assert_eq!(disk_verdict(DISK_WARN_BELOW - 1), Verdict::Warn);
        assert_eq!(disk_verdict(DISK_WARN_BELOW), Verdict::Ok);
    }

    #[test]
    fn gateway_address_takes_host_and_port_with_scheme_defaults() {
        let a = |u: &str| gateway_address(u).ok();
        assert_eq!(a("http://gw.example/ws"), Some(("gw.example".into(), 80)));
        assert_eq!(a("https://gw.example/ws"), Some(("gw.example".into(), 443)));
        assert_eq!(
            a("http://127.0.0.1:7576/ws"),
            Some(("127.0.0.1".into(), 7576))
        );
        assert_eq!(a("https://u:p@[::1]:8443/x"), Some(("::1".into(), 8443)));
        assert!(matches!(
            gateway_address("ftp://x/"),
            Err(GatewayAddressError::Scheme(_))
        ));
        assert!(matches!(
            gateway_address("http://:80/"),
            Err(GatewayAddressError::NoHost(_))
        ));
        assert!(matches!(
            gateway_address("http://h:0/"),
            Err(GatewayAddressError::Port(_))
        ));
    }

    #[test]
    fn finding_line_names_verdict_subject_detail_and_fix() {
        let f = Finding::fail("keys.private_key", "mode 0644", "chmod 600 /k");
        assert_eq!(
            f.to_string(),
            "FAIL  keys.private_key: mode 0644 -> fix: chmod 600 /k"
        );
        assert_eq!(
            Finding::ok("disk", "9 GiB").to_string(),
            "OK    disk: 9 GiB"
        );
    }
}
