//! TLS on the SOAP listener: HTTPS with TLS 1.2+, plain HTTP refused on a TLS port, and mTLS that requires a
//! client certificate chaining to the configured CA.

mod common;

use common::*;
use http_body_util::{BodyExt, Full};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod};

/// A node serving HTTPS with the test PKI's TEST_NODE certificate; `mtls` requires client certificates.
async fn tls_node(mtls: bool) -> TestNode {
    let pki = test_pki();
    let (_, key, cert) = pki
        .parties
        .iter()
        .find(|p| p.0 == "TEST_NODE")
        .expect("TEST_NODE")
        .clone();
    let client_ca = if mtls {
        format!("client_ca = \"{}\"\n", pki.ca.display())
    } else {
        String::new()
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config_text(dir.path(), "")
        .replacen("plain_http = true\n", "", 1)
        .replacen(
            "[limits]",
            &format!(
                "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n{client_ca}\n[limits]",
                cert.display(),
                key.display()
            ),
            1,
        );
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, &text).expect("write");
    TestNode::start_with_config(dir, &path).await
}

/// POSTs over TLS, trusting the test CA; optionally presenting `client` (mnemonic) as a client certificate.
async fn post_tls(
    node: &TestNode,
    client: Option<&str>,
    body: String,
) -> Result<(u16, String), String> {
    let pki = test_pki();
    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
    b.set_ca_file(&pki.ca).map_err(|e| e.to_string())?;
    if let Some(name) = client {
        let (_, key, cert) = pki
            .parties
            .iter()
            .find(|p| p.0 == name)
            .expect("client party")
            .clone();
        b.set_certificate_file(&cert, SslFiletype::PEM)
            .map_err(|e| e.to_string())?;
        b.set_private_key_file(&key, SslFiletype::PEM)
            .map_err(|e| e.to_string())?;
    }
    // The test certificates name parties, not hosts: the chain is verified, the host name is not.
    let ssl = b
        .build()
        .configure()
        .map_err(|e| e.to_string())?
        .verify_hostname(false)
        .into_ssl("localhost")
        .map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(node.addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| e.to_string())?;
    std::pin::Pin::new(&mut tls)
        .connect()
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/ws")
        .header("host", "node")
        .header("content-type", "text/xml; charset=utf-8")
        .body(Full::new(bytes::Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
}

async fn wait_listening(node: &TestNode) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(node.addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn https_serves_soap_and_a_plain_http_client_gets_nothing() {
    let node = tls_node(false).await;
    wait_listening(&node).await;
    let (status, body) = post_tls(
        &node,
        None,
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await
    .expect("https");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("<r:LastName>Иванов</r:LastName>"), "{body}");

    let plain = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        let stream = tokio::net::TcpStream::connect(node.addr).await.ok()?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::post("/ws")
            .header("host", "node")
            .body(Full::new(bytes::Bytes::from_static(b"<x/>")))
            .ok()?;
        sender.send_request(req).await.ok()
    })
    .await
    .ok()
    .flatten();
    assert!(
        plain.is_none(),
        "a plain HTTP request must not be answered on a TLS port"
    );
}

#[tokio::test]
async fn mtls_refuses_a_client_without_a_certificate_and_serves_one_with_a_trusted_certificate() {
    let node = tls_node(true).await;
    wait_listening(&node).await;
    let without = post_tls(
        &node,
        None,
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await;
    assert!(
        without.is_err(),
        "no client certificate: refused, got {without:?}"
    );
    let (status, body) = post_tls(
        &node,
        Some("AGENCY_B"),
        registration_request("1.3", &new_message_id(), "4510", "123456"),
    )
    .await
    .expect("a client certificate from the CA is accepted");
    assert_eq!(status, 200, "{body}");
}

/// A certificate for 127.0.0.1 (subjectAltName IP) issued by the test CA, written next to its key.
fn localhost_certificate(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    use openssl::x509::extension::SubjectAlternativeName;
    let pki = test_pki();
    let ca = openssl::x509::X509::from_pem(&std::fs::read(&pki.ca).expect("ca")).expect("ca");
    let ca_key_path = pki.ca.parent().expect("pki dir").join("ca.key");
    let ca_key =
        openssl::pkey::PKey::private_key_from_pem(&std::fs::read(ca_key_path).expect("ca key"))
            .expect("ca key");
    let group =
        openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("group");
    let key = openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("ec"))
        .expect("key");
    let mut name = openssl::x509::X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, "gateway.test")
        .expect("cn");
    let name = name.build();
    let mut b = openssl::x509::X509::builder().expect("builder");
    b.set_version(2).expect("v3");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(ca.subject_name()).expect("issuer");
    let (nb, na) = (
        openssl::asn1::Asn1Time::days_from_now(0).expect("t"),
        openssl::asn1::Asn1Time::days_from_now(2).expect("t"),
    );
    b.set_not_before(&nb).expect("nb");
    b.set_not_after(&na).expect("na");
    b.set_pubkey(&key).expect("pub");
    let san = SubjectAlternativeName::new()
        .ip("127.0.0.1")
        .build(&b.x509v3_context(Some(&ca), None))
        .expect("san");
    b.append_extension(san).expect("san");
    b.sign(&ca_key, openssl::hash::MessageDigest::sha256())
        .expect("sign");
    let (cert_path, key_path) = (dir.join("gw.crt"), dir.join("gw.key"));
    std::fs::write(&cert_path, b.build().to_pem().expect("pem")).expect("write cert");
    std::fs::write(&key_path, key.private_key_to_pem_pkcs8().expect("pem")).expect("write key");
    (cert_path, key_path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_pushed_to_an_https_gateway_with_the_nodes_client_certificate() {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVerifyMode};
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = localhost_certificate(dir.path());
    let pki = test_pki();
    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("acceptor");
    acceptor.set_certificate_chain_file(&cert).expect("cert");
    acceptor
        .set_private_key_file(&key, SslFiletype::PEM)
        .expect("key");
    acceptor.set_ca_file(&pki.ca).expect("client ca");
    acceptor.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    let acceptor = std::sync::Arc::new(acceptor.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                let Ok(ssl) = openssl::ssl::Ssl::new(acceptor.context()) else {
                    return;
                };
                let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, tcp) else {
                    return;
                };
                if std::pin::Pin::new(&mut tls).accept().await.is_err() {
                    return;
                }
                let client = tls
                    .ssl()
                    .peer_certificate()
                    .and_then(|c| {
                        c.subject_name()
                            .entries()
                            .next()
                            .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
                    })
                    .unwrap_or_default();
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (tx, client) = (tx.clone(), client.clone());
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let _ = tx.send((client, String::from_utf8_lossy(&body).into_owned()));
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                bytes::Bytes::from_static(common::gateway::OK_BODY.as_bytes()),
                            )))
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    let (_, client_key, client_cert) = pki
        .parties
        .iter()
        .find(|p| p.0 == "AGENCY_C")
        .expect("AGENCY_C")
        .clone();
    let extra = format!(
        "[gateway]\nurl = \"https://127.0.0.1:{port}/ws\"\nca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"\n\n[delivery]\npoll_interval = \"50ms\"\n",
        pki.ca.display(),
        client_cert.display(),
        client_key.display()
    );
    let node = TestNode::start_with("reply = \"async\"", "", &extra).await;
    let id = new_message_id();
    assert_eq!(
        post_soap(
            node.addr,
            registration_request("1.3", &id, "4510", "123456")
        )
        .await
        .status,
        200
    );
    let (client, body) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("delivered over HTTPS in time")
        .expect("a delivery");
    assert_eq!(
        client, "AGENCY_C",
        "the node presented its client certificate"
    );
    assert!(
        body.contains(&id) && body.contains("<r:LastName>Иванов</r:LastName>"),
        "{body}"
    );
}

/// `doctor`'s gateway line for a config pointing at `url` with the test CA.
fn doctor_gateway_line(url: &str) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        "{}\n[gateway]\nurl = \"{url}\"\nca_file = \"{}\"\n",
        config_text(dir.path(), ""),
        test_pki().ca.display()
    );
    let path = dir.path().join("adapter.toml");
    std::fs::write(&path, text).expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_smev-adapter"))
        .args(["doctor", "--config"])
        .arg(&path)
        .output()
        .expect("doctor");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    stdout
        .lines()
        .find(|l| l.contains(" gateway:"))
        .unwrap_or_else(|| panic!("no gateway line:\n{stdout}"))
        .to_string()
}

#[test]
fn doctor_checks_the_tls_handshake_with_an_https_gateway() {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = localhost_certificate(dir.path());
    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("acceptor");
    acceptor.set_certificate_chain_file(&cert).expect("cert");
    acceptor
        .set_private_key_file(&key, SslFiletype::PEM)
        .expect("key");
    let acceptor = acceptor.build();
    let tls_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let tls_port = tls_listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in tls_listener.incoming().flatten() {
            let _ = acceptor.accept(stream);
        }
    });
    let plain_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let plain_port = plain_listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        // Accepts and closes: TCP works, TLS cannot.
        for stream in plain_listener.incoming().flatten() {
            drop(stream);
        }
    });
    let good = doctor_gateway_line(&format!("https://127.0.0.1:{tls_port}/ws"));
    assert!(
        good.starts_with("OK") && good.contains("verified TLS handshake"),
        "{good}"
    );
    let bad = doctor_gateway_line(&format!("https://127.0.0.1:{plain_port}/ws"));
    assert!(
        bad.starts_with("FAIL") && bad.contains("TLS handshake"),
        "{bad}"
    );
}
