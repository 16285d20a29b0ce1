//! The signature tools on the command line: `keys generate`, `sign`, `verify` (exit code 0 only when valid).

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
}

fn repo() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn keys_generate_sign_and_verify_round_trip_and_tampering_fails_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = bin()
        .args(["keys", "generate", "--alg", "ecdsa", "--out"])
        .arg(dir.path())
        .output()
        .expect("keys");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (key, cert) = (dir.path().join("key.pem"), dir.path().join("cert.pem"));
    let signed = bin()
        .arg("sign")
        .arg(repo().join("samples/templates/happy.xml"))
        .arg("--key")
        .arg(&key)
        .arg("--cert")
        .arg(&cert)
        .args(["--id", "SIGNED_BY_CONSUMER"])
        .output()
        .expect("sign");
    assert!(
        signed.status.success(),
        "{}",
        String::from_utf8_lossy(&signed.stderr)
    );
    let signed_path = dir.path().join("signed.xml");
    std::fs::write(&signed_path, &signed.stdout).expect("write");

    let ok = bin()
        .arg("verify")
        .arg(&signed_path)
        .arg("--trusted")
        .arg(&cert)
        .output()
        .expect("verify");
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(ok.status.success(), "{text}");
    assert!(
        text.contains("SIGNED_BY_CONSUMER") && text.contains("OK"),
        "{text}"
    );

    let tampered = String::from_utf8_lossy(&signed.stdout).replace(">123456<", ">654321<");
    std::fs::write(&signed_path, tampered).expect("write");
    let bad = bin()
        .arg("verify")
        .arg(&signed_path)
        .arg("--trusted")
        .arg(&cert)
        .output()
        .expect("verify");
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stdout).contains("FAILED"),
        "{}",
        String::from_utf8_lossy(&bad.stdout)
    );

    let none = bin()
        .arg("verify")
        .arg(repo().join("samples/templates/happy.xml"))
        .output()
        .expect("verify");
    assert_eq!(
        none.status.code(),
        Some(1),
        "an unsigned document is not valid"
    );
    let bad_alg = bin()
        .args(["keys", "generate", "--alg", "dsa", "--out"])
        .arg(dir.path())
        .output()
        .expect("keys");
    assert!(
        !bad_alg.status.success()
            && String::from_utf8_lossy(&bad_alg.stderr)
                .contains("gost2012-256, gost2012-512, rsa or ecdsa")
    );
}
