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
    let text = config_text(dir.path(), "").replacen(
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
