//! The real binary: `check` reports every problem with file:line, `serve` honours the environment
//! overrides and stops cleanly on SIGTERM, `version` and `--help` say something useful.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
}

#[test]
fn check_reports_three_different_mistakes_each_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).expect("mappings dir");
    let good = std::fs::read_to_string(repo().join("mappings/registration.toml")).expect("mapping");
    // Mistake 3: the mapping names a datasource the config does not define.
    std::fs::write(
        mappings.join("registration.toml"),
        good.replace("datasource = \"agency\"", "datasource = \"agencyy\""),
    )
    .expect("write");
    let mut config = config_text(dir.path(), "");
    config = config.replace("[mappings]\ndir = ", "[mappings]\ndir = \"mappings\"\n#");
    // Mistake 1: an unknown key. Mistake 2: a listen address that is not one.
    config = config.replace(
        "mnemonic = \"TEST_NODE\"",
        "mnemonic = \"TEST_NODE\"\nmnemnoic = \"typo\"",
    );
    config = config.replace("listen = \"127.0.0.1:0\"", "listen = \"localhost-7575\"");
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, &config).expect("write config");

    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let p = path.display().to_string();
    let m = mappings.join("registration.toml").display().to_string();
    let unknown_line = config
        .lines()
        .position(|l| l.starts_with("mnemnoic"))
        .expect("line")
        + 1;
    let listen_line = config
        .lines()
        .position(|l| l.starts_with("listen"))
        .expect("line")
        + 1;
    let ds_line = good
        .lines()
        .position(|l| l.starts_with("datasource"))
        .expect("line")
        + 1;
    assert!(
        stdout.contains(&format!(
            "{p}:{unknown_line}:1: unknown key `node.mnemnoic`"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{p}:{listen_line}:"))
            && stdout.contains("`localhost-7575` is not an address"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{m}:{ds_line}:"))
            && stdout.contains("unknown datasource `agencyy`"),
        "{stdout}"
    );
    assert!(stdout.contains("3 problems found"), "{stdout}");
}

#[test]
fn check_passes_on_the_bundled_sample_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, config_text(dir.path(), "")).expect("write");
    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_reports_sql_the_datasource_cannot_prepare_and_missing_columns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mappings = dir.path().join("mappings");
    std::fs::create_dir(&mappings).expect("mappings dir");
    let good = std::fs::read_to_string(repo().join("mappings/registration.toml")).expect("mapping");
    std::fs::write(
        mappings.join("a.toml"),
        good.replace("FROM passport pp", "FROM pasport pp"),
    )
    .expect("write");
    let other = good.replace("RegistrationRequest", "OtherRequest").replace(
        "{ column = \"registered_on\"",
        "{ column = \"registred_on\"",
    );
    std::fs::write(mappings.join("b.toml"), other).expect("write");
    let config = config_text(dir.path(), "")
        .replace("[mappings]\ndir = ", "[mappings]\ndir = \"mappings\"\n#");
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, config).expect("write");
    let out = bin()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("a.toml:") && stdout.contains("no such table: pasport"),
        "{stdout}"
    );
    assert!(
        stdout.contains("b.toml:") && stdout.contains("column `registred_on` is not returned"),
        "{stdout}"
    );
}

#[test]
fn serve_uses_the_environment_overrides_and_stops_with_exit_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("adapter.toml");
    std::fs::write(
        &path,
        config_text(dir.path(), "").replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\""),
    )
    .expect("write");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe port");
        l.local_addr().expect("addr").port()
    };
    let data_dir = dir.path().join("elsewhere");
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .env("SMEV_ADAPTER_LISTEN", format!("127.0.0.1:{port}"))
        .env("SMEV_ADAPTER_DATA_DIR", &data_dir)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    while Instant::now() < deadline {
        let Some(Ok(line)) = lines.next() else { break };
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving") {
            break;
        }
    }
    assert!(
        log.contains(&format!("127.0.0.1:{port}/ws")),
        "listens on the SMEV_ADAPTER_LISTEN address:\n{log}"
    );
    assert!(
        data_dir.is_dir(),
        "SMEV_ADAPTER_DATA_DIR is used as data_dir"
    );

    let body = sample("happy.xml");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    use std::io::Write;
    let head = format!(
        "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).expect("head");
    stream.write_all(body.as_bytes()).expect("body");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains("Иванов"),
        "{response}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "serve did not stop within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        exit.success(),
        "exit status {exit:?}; log:\n{}",
        rest.join("\n")
    );
    assert!(
        rest.iter().any(|l| l.contains("SIGTERM received")),
        "{rest:?}"
    );
}

#[test]
fn serve_refuses_an_invalid_config_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("adapter.toml");
    std::fs::write(
        &path,
        "[node]\nmnemonic = \"X\"\n[limits]\nrequest_timeout = \"soon\"\n",
    )
    .expect("write");
    let out = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{}:4:", path.display()))
            && stderr.contains("`soon` is not a duration"),
        "{stderr}"
    );
}

#[test]
fn version_and_help_are_useful() {
    let out = bin().arg("version").output().expect("version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("smev-adapter {}", env!("CARGO_PKG_VERSION"))
    );
    let help = bin().args(["serve", "--help"]).output().expect("help");
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--config",
        "--listen",
        "SMEV_ADAPTER_LISTEN",
        "SMEV_ADAPTER_DATA_DIR",
        "SIGTERM",
    ] {
        assert!(
            text.contains(needle),
            "serve --help mentions {needle}:\n{text}"
        );
    }
    let help = bin().args(["check", "--help"]).output().expect("help");
    assert!(String::from_utf8_lossy(&help.stdout).contains("file:line"));
}

#[test]
fn a_missing_config_file_is_named() {
    let out = bin()
        .args(["check", "--config", "/nonexistent/adapter.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("/nonexistent/adapter.toml: cannot read"),
        "{stdout}"
    );
}

#[test]
fn logs_are_json_lines_off_a_terminal_carry_the_message_id_and_no_payload_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, config_text(dir.path(), "")).expect("write");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut child = bin()
        .args(["serve", "--config"])
        .arg(&path)
        .env("SMEV_ADAPTER_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("SMEV_ADAPTER_LOG_FORMAT")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut all);
        all
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "serve did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    for name in ["unknown-request.xml", "invalid-parameter.xml"] {
        let body = sample(name);
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        use std::io::Write;
        let head = format!(
            "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).expect("head");
        stream.write_all(body.as_bytes()).expect("body");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let log = reader.join().expect("reader");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let about = |id: &str| lines.iter().filter(|l| l["message_id"] == id).count();
    assert!(
        about("6f1c2e13-b1a2-11ef-8a3c-0242ac120002") >= 1,
        "the unknown request's line has its MessageID:\n{log}"
    );
    assert!(
        about("6f1c2e15-b1a2-11ef-8a3c-0242ac120002") >= 1,
        "the invalid request's line has its MessageID:\n{log}"
    );
    assert!(
        lines
            .iter()
            .all(|l| l["level"].is_string() && l["message"].is_string()),
        "{log}"
    );
    for value in ["45AB", "7707083893", "123456"] {
        assert!(
            !log.contains(value),
            "payload value {value} must not be logged at INFO:\n{log}"
        );
    }
}

#[test]
fn mapping_test_prints_parameters_sql_rows_and_the_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, config_text(dir.path(), "")).expect("write");
    let run = |args: &[&str]| {
        let out = bin()
            .args(["mapping", "test", "--config"])
            .arg(&path)
            .args(args)
            .output()
            .expect("run mapping test");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let family = repo().join("samples/requests/family.xml");
    let family = family.to_str().expect("utf8 path");
    let (code, stdout) = run(&[family]);
    assert_eq!(code, Some(0), "{stdout}");
    let expected =
        std::fs::read_to_string(repo().join("samples/responses/family.xml")).expect("expected");
    for needle in [
        "mapping: family (",
        "allowed senders: AGENCY_B, MFC_01, SFR",
        "deadline: 600s",
        ":series = \"4510\"",
        ":number = \"123456\"",
        ":born_after = 1900-01-01",
        "SQL:",
        "LEFT JOIN kinship k",
        "rows: 3",
        "Иванова | Елена | Петровна | 1982-08-21",
        "response:",
        expected.trim_end(),
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // --mapping picks a mapping by name; this payload lacks what registration needs.
    let (code, stdout) = run(&[family, "--mapping", "registration"]);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("r:Series is missing") && stdout.contains("InvalidContent"),
        "{stdout}"
    );
    let no_data = repo().join("samples/requests/no-data.xml");
    let (code, stdout) = run(&[no_data.to_str().expect("utf8 path")]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("rows: 0") && stdout.contains("answer: RequestRejected NO_DATA"),
        "{stdout}"
    );
}
