//! The real binary's `doctor` on temp copies of the shipped config (packaging/adapter.toml): each line's verdict
//! for good and bad keys, certificates, datasources and gateways. Keys and certificates are made here with openssl.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509, X509NameBuilder};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temp installation: the shipped config with its absolute paths moved into `dir`.
struct Install {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Install {
    fn new() -> Install {
        Self::with(|_| String::new())
    }

    /// `prepare` may change files in the dir before the config is written; it returns text to append to it.
    fn with(prepare: impl FnOnce(&Path) -> String) -> Install {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let mappings = d.join("mappings");
        std::fs::create_dir(&mappings).expect("mappings dir");
        std::fs::copy(
            repo().join("packaging/example/organisation.toml"),
            mappings.join("organisation.toml"),
        )
        .expect("copy mapping");
        std::fs::copy(
            repo().join("packaging/example/example.db"),
            d.join("example.db"),
        )
        .expect("copy example.db");
        let extra = prepare(d);
        let shipped =
            std::fs::read_to_string(repo().join("packaging/adapter.toml")).expect("config");
        let text = shipped
            .replace(
                "/usr/share/smev-adapter/wsdl",
                &repo().join("wsdl").display().to_string(),
            )
            .replace(
                "/var/lib/smev-adapter",
                &d.join("data").display().to_string(),
            )
            .replace(
                "/etc/smev-adapter/mappings",
                &mappings.display().to_string(),
            )
            .replace(
                "/usr/share/smev-adapter/example/example.db",
                &d.join("example.db").display().to_string(),
            )
            + "\n"
            + &extra;
        let config = d.join("adapter.toml");
        std::fs::write(&config, text).expect("write config");
        Install { dir, config }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn doctor(&self) -> Outcome {
        let out = Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
            .arg("doctor")
            .arg("--config")
            .arg(&self.config)
            .env_remove("SMEV_ADAPTER_DATA_DIR")
            .env_remove("SMEV_ADAPTER_LISTEN")
            .output()
            .expect("run doctor");
        Outcome {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        }
    }
}

struct Outcome {
    code: Option<i32>,
    stdout: String,
}

impl Outcome {
    /// The line about `subject` (`VERDICT  subject: ...`); panics with the whole output when there is none.
    fn line(&self, subject: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.split_once("  ")
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with(&format!("{subject}:")))
            })
            .unwrap_or_else(|| panic!("no `{subject}` line in:\n{}", self.stdout))
    }

    fn verdict(&self, subject: &str) -> &str {
        self.line(subject)
            .split_whitespace()
            .next()
            .unwrap_or_default()
    }
}

fn new_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    PKey::from_ec_key(EcKey::generate(&group).expect("ec key")).expect("pkey")
}

/// A self-signed certificate for `key`, valid from `not_before` to `not_after` (unix seconds).
fn certificate(key: &PKey<Private>, not_before: i64, not_after: i64) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", "doctor test node")
        .expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::from_unix(not_before).expect("nb"))
        .expect("not before");
    b.set_not_after(&Asn1Time::from_unix(not_after).expect("na"))
        .expect("not after");
    b.sign(key, MessageDigest::sha256()).expect("sign");
    b.build()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

const DAY: i64 = 86_400;

/// Writes node.key (with `key_mode`) and node.crt valid until `not_after` into `dir`; returns the [keys] table.
fn write_keys(dir: &Path, key_mode: u32, not_before: i64, not_after: i64) -> String {
    let key = new_key();
    let cert = certificate(&key, not_before, not_after);
    let key_path = dir.join("node.key");
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().expect("pem")).expect("write key");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(key_mode)).expect("chmod");
    std::fs::write(dir.join("node.crt"), cert.to_pem().expect("pem")).expect("write cert");
    keys_table(dir)
}

fn keys_table(dir: &Path) -> String {
    format!(
        "[keys]\nprivate_key = \"{}\"\ncertificate = \"{}\"\n",
        dir.join("node.key").display(),
        dir.join("node.crt").display()
    )
}

/// An install whose [keys] are written by `write_keys` with these arguments.
fn install_with_keys(key_mode: u32, not_before: i64, not_after: i64) -> Install {
    Install::with(|d| write_keys(d, key_mode, not_before, not_after))
}

#[test]
fn shipped_config_without_keys_passes_with_keys_warned_and_each_check_on_its_line() {
    let install = Install::new();
    let out = install.doctor();
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(out.verdict("config"), "OK", "{}", out.stdout);
    assert_eq!(out.verdict("mappings"), "OK", "{}", out.stdout);
    assert_eq!(out.verdict("keys"), "WARN", "{}", out.stdout);
    assert!(
        out.line("keys").contains("none configured"),
        "{}",
        out.stdout
    );
    assert_eq!(out.verdict("trust store"), "WARN", "{}", out.stdout);
    let gost = out.verdict("GOST");
    assert!(gost == "OK" || gost == "WARN", "{}", out.stdout);
    if gost == "WARN" {
        assert!(out.line("GOST").contains("install libengine-gost-openssl"));
    }
    assert_eq!(out.verdict("datasource example"), "OK", "{}", out.stdout);
    assert_eq!(out.verdict("data_dir"), "OK", "{}", out.stdout);
    assert!(
        out.line("data_dir").contains("does not exist yet"),
        "{}",
        out.stdout
    );
    assert_ne!(out.verdict("disk"), "FAIL", "{}", out.stdout);
    assert!(
        out.line("disk").contains("free in data_dir"),
        "{}",
        out.stdout
    );
    assert_eq!(out.verdict("gateway"), "OK", "{}", out.stdout);
    assert!(!install.path("data").exists(), "doctor created data_dir");
}

#[test]
fn valid_key_and_certificate_are_ok() {
    let install = install_with_keys(0o600, now() - DAY, now() + 365 * DAY);
    let out = install.doctor();
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(out.verdict("keys.private_key"), "OK", "{}", out.stdout);
    assert_eq!(out.verdict("keys.certificate"), "OK", "{}", out.stdout);
    assert_eq!(out.verdict("keys"), "OK", "{}", out.stdout);
    assert!(out.line("keys").contains("matches"), "{}", out.stdout);
}

#[test]
fn private_key_with_mode_0644_fails_naming_the_chmod_fix() {
    let install = install_with_keys(0o644, now() - DAY, now() + 365 * DAY);
    let out = install.doctor();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(out.verdict("keys.private_key"), "FAIL", "{}", out.stdout);
    let line = out.line("keys.private_key");
    assert!(line.contains("mode 0644"), "{line}");
    let fix = format!("chmod 600 {}", install.path("node.key").display());
    assert!(line.contains(&fix), "{line}");
}

#[test]
fn expired_certificate_fails() {
    let install = install_with_keys(0o600, now() - 400 * DAY, now() - DAY);
    let out = install.doctor();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(out.verdict("keys.certificate"), "FAIL", "{}", out.stdout);
    assert!(
        out.line("keys.certificate").contains("expired on"),
        "{}",
        out.stdout
    );
}

#[test]
fn certificate_expiring_in_10_days_warns_but_passes() {
    let install = install_with_keys(0o600, now() - DAY, now() + 10 * DAY);
    let out = install.doctor();
    assert_eq!(out.code, Some(0), "{}", out.stdout);
    assert_eq!(out.verdict("keys.certificate"), "WARN", "{}", out.stdout);
    let line = out.line("keys.certificate");
    assert!(
        line.contains("in 9 days") || line.contains("in 10 days"),
        "{line}"
    );
}

#[test]
fn missing_datasource_fails_naming_its_path() {
    let install = Install::with(|d| {
        std::fs::remove_file(d.join("example.db")).expect("remove db");
        String::new()
    });
    let out = install.doctor();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    // A missing SQLite file makes the config itself invalid, at the datasource's `path` line.
    assert_eq!(out.verdict("config"), "FAIL", "{}", out.stdout);
    let line = out.line("config");
    let db = install.path("example.db").display().to_string();
    assert!(
        line.contains(&db) && line.contains("does not exist"),
        "{line}"
    );
    assert_eq!(out.verdict("other checks"), "WARN", "{}", out.stdout);
}

#[test]
fn datasource_that_is_not_a_database_fails_on_its_own_line() {
    let install = Install::with(|d| {
        std::fs::write(d.join("example.db"), b"not a database at all").expect("write");
        String::new()
    });
    let out = install.doctor();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(out.verdict("config"), "OK", "{}", out.stdout);
    assert_eq!(out.verdict("datasource example"), "FAIL", "{}", out.stdout);
    assert!(
        out.line("datasource example").contains("not a database"),
        "{}",
        out.stdout
    );
}

#[test]
fn unreachable_gateway_fails_and_a_listening_one_is_ok() {
    // A port that was just free and is now closed: the connection is refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let install = Install::with(|_| format!("[gateway]\nurl = \"http://127.0.0.1:{port}/ws\"\n"));
    let out = install.doctor();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(out.verdict("gateway"), "FAIL", "{}", out.stdout);
    assert!(
        out.line("gateway")
            .contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{}",
        out.stdout
    );

    let open = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = open.local_addr().expect("addr").port();
    let install = Install::with(|_| format!("[gateway]\nurl = \"http://127.0.0.1:{port}/ws\"\n"));
    let out = install.doctor();
    assert_eq!(out.verdict("gateway"), "OK", "{}", out.stdout);
    assert_eq!(out.code, Some(0), "{}", out.stdout);
}

#[test]
fn data_dir_the_running_user_cannot_write_fails_with_the_chown_fix() {
    let install = Install::new();
    let data = install.path("data");
    std::fs::create_dir(&data).expect("data dir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_smev-adapter"));
    cmd.arg("doctor").arg("--config").arg(&install.config);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Root may write anywhere: run doctor as `nobody` on a root-owned 0755 data_dir it can read but not write.
        use std::os::unix::process::CommandExt;
        let open = std::fs::Permissions::from_mode(0o755);
        std::fs::set_permissions(install.dir.path(), open.clone()).expect("chmod dir");
        std::fs::set_permissions(&data, open).expect("chmod data");
        cmd.uid(65534).gid(65534);
    } else {
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o555))
            .expect("chmod data");
    }
    let out = cmd.output().expect("run doctor");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.contains("data_dir:"))
        .unwrap_or_else(|| panic!("no data_dir line in:\n{stdout}"));
    assert!(line.starts_with("FAIL"), "{line}");
    assert!(line.contains("not writable"), "{line}");
    assert!(
        line.contains(&format!(
            "chown smev-adapter:smev-adapter {}",
            data.display()
        )),
        "{line}"
    );
}

#[test]
fn revocation_lists_from_a_trusted_ca_are_ok_and_a_foreign_one_fails() {
    let install = Install::with(|d| {
        let pki = smev_adapter::trust::pki_init(&d.join("pki"), "NODE", &["OTHER"]).expect("pki");
        let crl = smev_adapter::revocation::pki_revoke(&d.join("pki"), &["OTHER"]).expect("crl");
        format!(
            "[trust]\nca = [\"{}\"]\ncrl = [\"{}\"]\n",
            pki.ca.display(),
            crl.display()
        )
    });
    let out = install.doctor();
    assert_eq!(out.verdict("revocation list"), "OK", "{}", out.stdout);
    assert!(
        out.line("revocation list").contains("1 revoked"),
        "{}",
        out.stdout
    );

    let foreign = Install::with(|d| {
        let mine = smev_adapter::trust::pki_init(&d.join("mine"), "NODE", &[]).expect("pki");
        smev_adapter::trust::pki_init(&d.join("theirs"), "X", &["Y"]).expect("pki");
        let crl = smev_adapter::revocation::pki_revoke(&d.join("theirs"), &["Y"]).expect("crl");
        format!(
            "[trust]\nca = [\"{}\"]\ncrl = [\"{}\"]\n",
            mine.ca.display(),
            crl.display()
        )
    });
    let out = foreign.doctor();
    assert_eq!(out.code, Some(1), "{}", out.stdout);
    assert_eq!(out.verdict("revocation list"), "FAIL", "{}", out.stdout);
    assert!(
        out.line("revocation list")
            .contains("not signed by any certificate in trust.ca"),
        "{}",
        out.stdout
    );
}
