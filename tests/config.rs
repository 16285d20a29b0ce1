//! adapter.toml: defaults, environment overrides, and located errors for each kind of mistake.

mod common;

use std::path::Path;
use std::time::Duration;

use smev_adapter::config::{Config, ENV_DATA_DIR, ENV_LISTEN};

fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, String> {
    Config::parse(&common::repo().join("adapter.toml"), text, env).map_err(|p| p.to_string())
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// The smallest valid config: a mnemonic, and plain HTTP chosen explicitly.
const MINIMAL: &str = "[node]\nmnemonic = \"A\"\n[server]\nplain_http = true\n";

#[test]
fn plain_http_must_be_chosen_explicitly() {
    let err = parse("[node]\nmnemonic = \"A\"\n", &no_env).unwrap_err();
    assert!(
        err.contains("needs [server.tls]") && err.contains("plain_http = true"),
        "{err}"
    );
    let err = parse(
        "[node]\nmnemonic = \"A\"\n[server]\nplain_http = false\n",
        &no_env,
    )
    .unwrap_err();
    assert!(err.contains("needs [server.tls]"), "{err}");
    let c = parse(MINIMAL, &no_env).expect("valid");
    assert!(c.tls.is_none());
}

#[test]
fn plain_http_next_to_tls_is_a_contradiction_reported_at_its_line() {
    let cert = common::repo().join("samples/pki/ca.crt");
    let text = format!(
        "[node]\nmnemonic = \"A\"\n[server]\nplain_http = true\n[server.tls]\ncert = \"{c}\"\nkey = \"{c}\"\n",
        c = cert.display()
    );
    let err = parse(&text, &no_env).unwrap_err();
    assert!(
        err.contains("adapter.toml:4:") && err.contains("contradicts [server.tls]"),
        "{err}"
    );
}

#[test]
fn the_bundled_config_loads_with_documented_defaults() {
    let text = std::fs::read_to_string(common::repo().join("adapter.toml")).expect("adapter.toml");
    let c = parse(&text, &no_env).expect("valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:7575");
    assert_eq!(c.endpoint_path, "/ws");
    assert_eq!(c.limits.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(c.node.mnemonic, "SAMPLE_AGENCY");
    assert!(c.data_dir.ends_with("data"));
}

#[test]
fn a_minimal_config_gets_defaults() {
    let c = parse(MINIMAL, &no_env).expect("valid");
    assert_eq!(c.listen.to_string(), "127.0.0.1:7575");
    assert_eq!(c.endpoint_path, "/ws");
    assert_eq!(c.limits.max_body_bytes, 10 * 1024 * 1024);
    assert_eq!(c.limits.max_concurrent, 256);
    assert_eq!(c.limits.request_timeout, Duration::from_secs(30));
}

#[test]
fn environment_overrides_listen_and_data_dir() {
    let env = |name: &str| match name {
        ENV_LISTEN => Some("0.0.0.0:9000".to_string()),
        ENV_DATA_DIR => Some("/var/lib/x".to_string()),
        _ => None,
    };
    let c = parse(
        "[node]\nmnemonic = \"A\"\n[server]\nlisten = \"127.0.0.1:1\"\nplain_http = true\n",
        &env,
    )
    .expect("valid");
    assert_eq!(c.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(c.data_dir, Path::new("/var/lib/x"));
    let bad = |name: &str| (name == ENV_LISTEN).then(|| "nowhere".to_string());
    let err = parse("[node]\nmnemonic = \"A\"\n", &bad).unwrap_err();
    assert!(err.contains("SMEV_ADAPTER_LISTEN=`nowhere`"), "{err}");
}

#[test]
fn every_bad_value_is_reported_at_its_line() {
    let text = "[node]\nmnemonic = \"A B\"\n[server]\npath = \"ws\"\n[limits]\nmax_body = \"ten\"\nrequest_timeout = \"5 minutes\"\n[gateway]\nurl = \"ftp://x\"\n";
    let err = parse(text, &no_env).unwrap_err();
    for (line, needle) in [
        (2, "node.mnemonic"),
        (4, "server.path"),
        (6, "limits.max_body"),
        (7, "limits.request_timeout"),
        (9, "gateway.url"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("adapter.toml:{line}:")) && l.contains(needle)),
            "line {line} {needle}:\n{err}"
        );
    }
}

#[test]
fn unknown_keys_and_wrong_types_name_key_and_line() {
    let err = parse(
        "[node]\nmnemonic = \"A\"\n[limits]\nmax_concurent = 5\n[nodes]\nx = 1\n",
        &no_env,
    )
    .unwrap_err();
    assert!(
        err.contains("adapter.toml:4:1: unknown key `limits.max_concurent`"),
        "{err}"
    );
    assert!(
        err.contains("adapter.toml:5:2: unknown key `nodes`"),
        "{err}"
    );
    let err = parse(
        "[node]\nmnemonic = \"A\"\n[limits]\nmax_concurrent = \"many\"\n",
        &no_env,
    )
    .unwrap_err();
    assert!(err.contains("adapter.toml:4:"), "{err}");
    let err = parse("[node]\n", &no_env).unwrap_err();
    assert!(err.contains("mnemonic"), "{err}");
    let err = parse(
        "[datasources.x]\nkind = \"oracle\"\n[node]\nmnemonic = \"A\"\n",
        &no_env,
    )
    .unwrap_err();
    assert!(err.contains("oracle"), "{err}");
}

#[test]
fn postgres_datasources_get_defaults_and_each_bad_value_is_reported_at_its_line() {
    use smev_adapter::config::{DatasourceConfig, PgTls};
    let good = "[node]\nmnemonic = \"A\"\n[server]\nplain_http = true\n[datasources.registry]\nkind = \"postgres\"\nurl = \"postgresql://app@db.local:5433/registry\"\n";
    let c = parse(good, &no_env).expect("valid");
    match c.datasources.get("registry") {
        Some(DatasourceConfig::Postgres(pg)) => {
            assert_eq!(pg.pool_size, 8);
            assert_eq!(pg.connect_timeout, Duration::from_secs(5));
            assert_eq!(pg.tls, PgTls::Off);
        }
        other => panic!("{other:?}"),
    }
    let bad = "[node]\nmnemonic = \"A\"\n[datasources.registry]\nkind = \"postgres\"\nurl = \"postgresql://app@db:notaport/registry\"\nconnect_timeout = \"soon\"\npool_size = 0\nca_file = \"/nonexistent/ca.pem\"\n";
    let err = parse(bad, &no_env).unwrap_err();
    for (line, needle) in [
        (5, "is not a PostgreSQL connection URL"),
        (6, "`soon` is not a duration"),
        (7, "pool_size must be at least 1"),
        (8, "does not exist"),
        (8, "only used with tls = true"),
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(&format!("adapter.toml:{line}:")) && l.contains(needle)),
            "line {line} {needle}:\n{err}"
        );
    }
}

#[test]
fn sizes_and_durations_accept_the_documented_units() {
    use smev_adapter::config::{parse_duration, parse_size};
    assert_eq!(parse_size("10MiB"), Some(10 * 1024 * 1024));
    assert_eq!(parse_size("512KiB"), Some(512 * 1024));
    assert_eq!(parse_size("100"), Some(100));
    assert_eq!(parse_size("lots"), None);
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("2d"), Some(Duration::from_secs(2 * 86_400)));
    assert_eq!(parse_duration("5"), None);
}

#[test]
fn the_sample_database_has_thousands_of_people_with_cyrillic_names_and_the_fixed_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("agency.db");
    smev_adapter::samples::build_database(&common::repo().join("samples"), &db).expect("builds");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT count(*) FROM person"), 5006);
    assert_eq!(
        count("SELECT count(*) FROM passport"),
        count("SELECT count(DISTINCT series || number) FROM passport")
    );
    assert!(
        count("SELECT count(*) FROM passport") > 4900,
        "passports for nearly everyone"
    );
    assert_eq!(
        count("SELECT count(*) FROM registration r JOIN person p ON p.id = r.person_id"),
        5006
    );
    assert_eq!(
        count("SELECT count(DISTINCT snils) FROM person"),
        count("SELECT count(snils) FROM person"),
        "SNILS numbers are unique"
    );
    assert!(
        count("SELECT count(*) FROM income") >= 15_000,
        "three months of income for every generated person"
    );
    assert_eq!(count("SELECT count(*) FROM kinship WHERE person_id = 1"), 3);
    let cyrillic = count("SELECT count(*) FROM person WHERE last_name GLOB '*[А-Яа-яЁё]*'");
    assert_eq!(cyrillic, 5006, "every last name is Cyrillic");
    let fixed: String = conn.query_row("SELECT last_name FROM person p JOIN passport pp ON pp.person_id = p.id WHERE series = '4510' AND number = '123456'", [], |r| r.get(0)).expect("fixed person");
    assert_eq!(fixed, "Иванов");
    // Deterministic: building again gives the same data.
    let again = dir.path().join("again.db");
    smev_adapter::samples::build_database(&common::repo().join("samples"), &again).expect("builds");
    let digest = |path: &std::path::Path| -> String {
        let c = rusqlite::Connection::open(path).expect("open");
        c.query_row("SELECT group_concat(last_name || first_name || series || number, ',') FROM person p JOIN passport pp ON pp.person_id = p.id", [], |r| r.get(0)).expect("digest")
    };
    assert_eq!(digest(&db), digest(&again));
}
