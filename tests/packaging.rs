//! What the .deb ships, checked without root: the example database matches its SQL, every asset named in
//! Cargo.toml exists, the unit carries its hardening, and the shipped config passes `check`. No dpkg here.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dump(conn: &rusqlite::Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut schema = conn
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
        .expect("schema");
    let rows = schema
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query");
    out.extend(rows.map(|r| r.expect("row")));
    let mut data = conn
        .prepare("SELECT inn, ogrn, name, registered_on FROM organisation ORDER BY inn")
        .expect("data");
    let rows = data
        .query_map([], |r| {
            Ok(format!(
                "{}|{}|{}|{}",
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?
            ))
        })
        .expect("query");
    out.extend(rows.map(|r| r.expect("row")));
    out
}

#[test]
fn example_db_holds_exactly_what_example_sql_creates() {
    let sql = std::fs::read_to_string(repo().join("packaging/example/example.sql")).expect("sql");
    let fresh = rusqlite::Connection::open_in_memory().expect("memory db");
    fresh.execute_batch(&sql).expect("example.sql runs");
    let shipped = rusqlite::Connection::open_with_flags(
        repo().join("packaging/example/example.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("example.db opens");
    let expected = dump(&fresh);
    assert!(expected.len() > 1, "example.sql creates a table with rows");
    assert_eq!(
        dump(&shipped),
        expected,
        "rebuild it: packaging/build-example-db.sh"
    );
}

#[test]
fn every_deb_asset_source_exists_and_the_config_is_a_conffile_under_etc() {
    let manifest: toml::Table = std::fs::read_to_string(repo().join("Cargo.toml"))
        .expect("Cargo.toml")
        .parse()
        .expect("toml");
    let deb = &manifest["package"]["metadata"]["deb"];
    assert_eq!(
        deb["recommends"].as_str(),
        Some("libengine-gost-openssl"),
        "recommends"
    );
    assert!(
        deb["depends"].as_str().is_some_and(|d| d.contains("$auto")),
        "depends is computed"
    );
    let assets = deb["assets"].as_array().expect("assets");
    let mut dests = Vec::new();
    for asset in assets {
        let asset = asset.as_array().expect("[source, dest, mode]");
        let source = asset[0].as_str().expect("source");
        dests.push(asset[1].as_str().expect("dest").to_string());
        if source.starts_with("target/release/") {
            continue; // built by cargo deb
        }
        let (dir, pattern) = source.rsplit_once('/').unwrap_or((".", source));
        let found = match pattern.strip_prefix('*') {
            Some(suffix) => std::fs::read_dir(repo().join(dir))
                .expect("asset dir")
                .filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().ends_with(suffix)),
            None => repo().join(source).is_file(),
        };
        assert!(found, "asset source {source} matches no file");
    }
    for wanted in [
        "usr/bin/",
        "etc/smev-adapter/adapter.toml",
        "usr/share/smev-adapter/wsdl/",
    ] {
        assert!(
            dests.iter().any(|d| d == wanted),
            "no asset installs to {wanted}"
        );
    }
    for script in ["postinst", "postrm"] {
        let text = std::fs::read_to_string(repo().join("packaging/debian").join(script))
            .expect("maintainer script");
        assert!(
            text.contains("#DEBHELPER#"),
            "{script} keeps the #DEBHELPER# token for the systemd snippets"
        );
    }
}

#[test]
fn unit_runs_the_installed_binary_as_its_own_user_with_the_hardening() {
    let unit =
        std::fs::read_to_string(repo().join("packaging/smev-adapter.service")).expect("unit");
    let lines: Vec<&str> = unit.lines().map(str::trim).collect();
    for wanted in [
        "User=smev-adapter",
        "ExecStart=/usr/bin/smev-adapter serve --config /etc/smev-adapter/adapter.toml",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/smev-adapter",
        "PrivateTmp=yes",
        "ProtectHome=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "CapabilityBoundingSet=",
        "Restart=on-failure",
        "StandardError=journal",
    ] {
        assert!(lines.contains(&wanted), "the unit lacks `{wanted}`");
    }
}

#[test]
fn shipped_config_passes_check_with_its_paths_moved_into_a_temp_dir() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    std::fs::create_dir(d.join("mappings")).expect("mappings");
    std::fs::copy(
        repo().join("packaging/example/organisation.toml"),
        d.join("mappings/organisation.toml"),
    )
    .expect("mapping");
    let text = std::fs::read_to_string(repo().join("packaging/adapter.toml"))
        .expect("config")
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
            &d.join("mappings").display().to_string(),
        )
        .replace(
            "/usr/share/smev-adapter/example/example.db",
            &repo()
                .join("packaging/example/example.db")
                .display()
                .to_string(),
        );
    for line in text.lines() {
        let setting = line.split('#').next().unwrap_or_default();
        assert!(
            !["/etc/", "/usr/", "/var/"]
                .iter()
                .any(|p| setting.contains(p)),
            "a path of the shipped config was not moved: {line}"
        );
    }
    let config = d.join("adapter.toml");
    std::fs::write(&config, text).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .args(["check", "--config"])
        .arg(&config)
        .env_remove("SMEV_ADAPTER_DATA_DIR")
        .env_remove("SMEV_ADAPTER_LISTEN")
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("OK: configuration and mappings are valid"),
        "{stdout}"
    );
}
