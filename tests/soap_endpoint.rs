//! The SOAP endpoint end to end over real HTTP: answers, every fault, limits, concurrency, shutdown.
//! Each test starts its own node on an ephemeral port with its own data directory.

mod common;

use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn fault_detail<'a>(doc: &'a roxmltree::Document<'_>) -> roxmltree::Node<'a, 'a> {
    let detail = doc
        .descendants()
        .find(|n| n.has_tag_name("detail"))
        .expect("fault has a detail");
    detail
        .children()
        .find(|n| n.is_element())
        .expect("detail holds an SMEV fault element")
}

fn faultcode(doc: &roxmltree::Document<'_>) -> String {
    let code = doc
        .descendants()
        .find(|n| n.tag_name().name() == "faultcode" && n.tag_name().namespace().is_none());
    code.and_then(|n| n.text()).unwrap_or_default().to_string()
}

#[tokio::test]
async fn happy_path_answers_with_the_registration_from_the_sample_database() {
    let node = TestNode::start().await;
    let request = sample("happy.xml");
    let answer = post_soap(node.addr, request).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/xml; charset=utf-8")
    );
    let doc = answer.doc();
    let data = doc
        .descendants()
        .find(|n| n.has_tag_name((TYPES_13, "SenderProvidedResponseData")))
        .expect("SendResponseRequest/SenderProvidedResponseData in types 1.3");
    assert_eq!(
        data.parent().map(|p| p.tag_name().name()),
        Some("SendResponseRequest")
    );
    assert_eq!(
        text_of(&doc, TYPES_13, "To"),
        Some("6f1c2e10-b1a2-11ef-8a3c-0242ac120002")
    );
    let own_id = text_of(&doc, TYPES_13, "MessageID").expect("MessageID");
    assert!(
        smev_adapter::soap::MessageId::parse(own_id).is_ok(),
        "reply MessageID {own_id} is a lowercase v1 UUID"
    );
    assert_ne!(own_id, "6f1c2e10-b1a2-11ef-8a3c-0242ac120002");
    let response = doc
        .descendants()
        .find(|n| n.has_tag_name((REG_NS, "RegistrationResponse")))
        .expect("RegistrationResponse");
    let fields: Vec<(&str, &str)> = response
        .children()
        .filter(|n| n.is_element())
        .map(|n| (n.tag_name().name(), n.text().unwrap_or("")))
        .collect();
    assert_eq!(
        fields,
        vec![
            ("LastName", "Иванов"),
            ("FirstName", "Иван"),
            ("MiddleName", "Иванович"),
            ("BirthDate", "1980-05-14"),
            (
                "Address",
                "119021, г. Москва, Москва, ул. Льва Толстого, д. 16, кв. 12"
            ),
            ("RegisteredOn", "2006-03-10"),
        ]
    );
}

#[tokio::test]
async fn each_types_version_is_answered_in_the_same_version() {
    let node = TestNode::start().await;
    for version in ["1.1", "1.2", "1.3"] {
        let id = new_message_id();
        let answer = post_soap(
            node.addr,
            registration_request(version, &id, "4012", "654321"),
        )
        .await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        let ns = format!("urn://x-artefacts-smev-gov-ru/services/message-exchange/types/{version}");
        let doc = answer.doc();
        assert_eq!(
            text_of(&doc, &ns, "To"),
            Some(id.as_str()),
            "version {version}: {}",
            answer.body
        );
        assert_eq!(text_of(&doc, REG_NS, "LastName"), Some("Петрова"));
    }
}

#[tokio::test]
async fn no_current_registration_is_rejected_with_no_data() {
    let node = TestNode::start().await;
    let answer = post_soap(node.addr, sample("no-data.xml")).await;
    assert_eq!(answer.status, 200);
    let ns = "urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.2";
    assert_eq!(
        text_of(&answer.doc(), ns, "RejectionReasonCode"),
        Some("NO_DATA"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn unknown_request_type_is_rejected_with_unknown_request_description() {
    let node = TestNode::start().await;
    let answer = post_soap(node.addr, sample("unknown-request.xml")).await;
    assert_eq!(answer.status, 200);
    let doc = answer.doc();
    assert_eq!(
        text_of(&doc, TYPES_13, "RejectionReasonCode"),
        Some("UNKNOWN_REQUEST_DESCRIPTION")
    );
    let description = text_of(&doc, TYPES_13, "RejectionReasonDescription").unwrap_or_default();
    assert!(
        description.contains("{urn://example.gov/tax/1.0}TaxDebtRequest"),
        "{description}"
    );
}

#[tokio::test]
async fn a_message_id_that_is_not_lowercase_v1_gets_invalid_message_id_format() {
    let node = TestNode::start().await;
    let cases = [
        sample("bad-message-id.xml"),
        registration_request(
            "1.3",
            "6f1c2e10-b1a2-41ef-8a3c-0242ac120002",
            "4510",
            "123456",
        ),
        registration_request("1.3", "not-a-uuid", "4510", "123456"),
    ];
    for request in cases {
        let answer = post_soap(node.addr, request).await;
        assert_eq!(answer.status, 500);
        let doc = answer.doc();
        assert_eq!(faultcode(&doc), "soap:Client");
        assert!(
            fault_detail(&doc).has_tag_name((FAULTS_13, "InvalidMessageIdFormat")),
            "{}",
            answer.body
        );
    }
}

#[tokio::test]
async fn xml_that_is_not_well_formed_gets_invalid_content_with_the_position() {
    let node = TestNode::start().await;
    let request = sample("not-well-formed.xml");
    let answer = post_soap(node.addr, request.clone()).await;
    assert_eq!(answer.status, 500);
    let doc = answer.doc();
    let detail = fault_detail(&doc);
    assert!(
        detail.has_tag_name((FAULTS_13, "InvalidContent")),
        "{}",
        answer.body
    );
    let error = detail
        .children()
        .find(|n| n.has_tag_name((FAULTS_13, "ValidationError")))
        .expect("ValidationError");
    // The broken tag is `</ns:SenderProvidedRequestData` with no `>`; the parser stops at the next `<`.
    let broken_at = request
        .find("</ns:SenderProvidedRequestData\n")
        .expect("broken tag")
        + "</ns:SenderProvidedRequestData\n".len();
    let expected = request[..broken_at].chars().count() + 1 + "      ".len();
    assert_eq!(
        error.attribute("errorPosition"),
        Some(expected.to_string().as_str()),
        "{}",
        answer.body
    );
    assert!(
        error.text().unwrap_or("").contains("line 13, column 7"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_parameter_that_breaks_its_pattern_gets_invalid_content_pointing_at_the_element() {
    let node = TestNode::start().await;
    let request = sample("invalid-parameter.xml");
    let answer = post_soap(node.addr, request.clone()).await;
    assert_eq!(answer.status, 500);
    let doc = answer.doc();
    let error = doc
        .descendants()
        .find(|n| n.has_tag_name((FAULTS_13, "ValidationError")))
        .expect("ValidationError");
    let at = request.find("<r:Series>").expect("series element");
    assert_eq!(
        error.attribute("errorPosition"),
        Some((request[..at].chars().count() + 1).to_string().as_str())
    );
    assert!(
        error
            .text()
            .unwrap_or("")
            .contains("`45AB` does not match ^[0-9]{4}$"),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_malformed_envelope_gets_poor_soap_envelope_format() {
    let node = TestNode::start().await;
    let cases = [
        sample("malformed-envelope.xml"),
        "<a/>".to_string(),
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header/></soap:Envelope>"#.to_string(),
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><x:Other xmlns:x="urn:x"/></soap:Body></soap:Envelope>"#.to_string(),
    ];
    for request in cases {
        let answer = post_soap(node.addr, request.clone()).await;
        assert_eq!(answer.status, 500, "{request}");
        let doc = answer.doc();
        let detail = fault_detail(&doc);
        assert!(
            detail.has_tag_name((FAULTS_13, "SignatureVerificationFault")),
            "{}",
            answer.body
        );
        let reason = detail
            .children()
            .find(|n| n.has_tag_name((FAULTS_13, "SignatureVerificationFault")));
        assert_eq!(
            reason.and_then(|n| n.text()),
            Some("PoorSOAPEnvelopeFormat")
        );
    }
}

#[tokio::test]
async fn a_dtd_is_refused_and_never_expanded() {
    let node = TestNode::start().await;
    let answer = post_soap(node.addr, sample("dtd.xml")).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("DTD"), "{}", answer.body);
    assert!(
        !answer.body.contains("root:"),
        "no /etc/passwd content may leak"
    );
    assert!(fault_detail(&answer.doc()).has_tag_name((FAULTS_13, "InvalidContent")));
}

#[tokio::test]
async fn soap_1_2_gets_a_version_mismatch_fault() {
    let node = TestNode::start().await;
    let by_content_type = send(
        node.addr,
        "POST",
        "/ws",
        Some("application/soap+xml; charset=utf-8"),
        sample("soap12.xml").into(),
    )
    .await;
    let by_namespace = post_soap(node.addr, sample("soap12.xml")).await;
    for answer in [by_content_type, by_namespace] {
        assert_eq!(answer.status, 500);
        assert_eq!(
            faultcode(&answer.doc()),
            "soap:VersionMismatch",
            "{}",
            answer.body
        );
        assert!(answer.body.contains("SOAP 1.1"));
    }
}

#[tokio::test]
async fn a_body_that_is_not_utf8_gets_a_fault_saying_so() {
    let node = TestNode::start().await;
    // "Иванов" in windows-1251.
    let mut body = sample("happy.xml").replace("4510", "XXXX").into_bytes();
    let at = body.windows(4).position(|w| w == b"XXXX").expect("marker");
    body.splice(at..at + 4, [0xc8, 0xe2, 0xe0, 0xed]);
    let answer = post_soap(node.addr, body).await;
    assert_eq!(answer.status, 500);
    assert!(answer.body.contains("not valid UTF-8"), "{}", answer.body);
    let declared = sample("happy.xml").replace("encoding=\"UTF-8\"", "encoding=\"windows-1251\"");
    let answer = post_soap(node.addr, declared).await;
    assert!(
        answer.body.contains("only UTF-8 is accepted"),
        "{}",
        answer.body
    );
    let charset = send(
        node.addr,
        "POST",
        "/ws",
        Some("text/xml; charset=windows-1251"),
        sample("happy.xml").into(),
    )
    .await;
    assert_eq!(charset.status, 500);
    assert!(charset.body.contains("charset"), "{}", charset.body);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_with_a_fault() {
    let node = TestNode::start_with_limits("max_body = \"4KiB\"").await;
    let padding = " ".repeat(8 * 1024);
    let big = sample("happy.xml").replace("<soap:Header/>", &format!("<soap:Header/>{padding}"));
    let answer = post_soap(node.addr, big.clone()).await;
    assert_eq!(answer.status, 413);
    assert!(fault_detail(&answer.doc()).has_tag_name((FAULTS_13, "InvalidContent")));
    assert!(answer.body.contains("4096 bytes"), "{}", answer.body);

    // Without Content-Length (chunked), the limit is enforced while reading.
    let mut stream = TcpStream::connect(node.addr).await.expect("connect");
    let head = "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";
    stream.write_all(head.as_bytes()).await.expect("head");
    for chunk in big.as_bytes().chunks(1024) {
        let framed = [format!("{:x}\r\n", chunk.len()).as_bytes(), chunk, b"\r\n"].concat();
        if stream.write_all(&framed).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // A request under the limit still works.
    let ok = post_soap(node.addr, sample("happy.xml")).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn overload_gets_503_with_retry_after() {
    let node = TestNode::start_with_limits("max_concurrent = 1").await;
    // Hold the only slot: headers promise a body that has not arrived yet.
    let mut holder = TcpStream::connect(node.addr).await.expect("connect");
    let body = sample("happy.xml");
    let head = format!(
        "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    holder.write_all(head.as_bytes()).await.expect("head");
    holder
        .write_all(&body.as_bytes()[..100])
        .await
        .expect("part");
    tokio::time::sleep(Duration::from_millis(200)).await;

    let answer = post_soap(node.addr, sample("happy.xml")).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(
        answer
            .headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert!(fault_detail(&answer.doc()).has_tag_name((FAULTS_13, "DestinationOverflow")));

    // The held request completes normally, and the slot is free again afterwards.
    holder
        .write_all(&body.as_bytes()[100..])
        .await
        .expect("rest");
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(Duration::from_secs(5), holder.read(&mut buf))
        .await
        .expect("in time")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(holder);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(post_soap(node.addr, sample("happy.xml")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_are_all_answered_correctly() {
    let node = TestNode::start().await;
    let passports = [
        ("4510", "123456", Some("Иванов")),
        ("4012", "654321", Some("Петрова")),
        ("6003", "000111", None),
    ];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let addr = node.addr;
        let (series, number, last_name) = passports[i % passports.len()];
        tasks.push(tokio::spawn(async move {
            let id = new_message_id();
            let answer = post_soap(addr, registration_request("1.3", &id, series, number)).await;
            (id, last_name, answer)
        }));
    }
    for task in tasks {
        let (id, last_name, answer) = task.await.expect("task");
        assert_eq!(answer.status, 200, "{}", answer.body);
        let doc = answer.doc();
        assert_eq!(
            text_of(&doc, TYPES_13, "To"),
            Some(id.as_str()),
            "each answer is to its own request"
        );
        match last_name {
            Some(name) => assert_eq!(text_of(&doc, REG_NS, "LastName"), Some(name)),
            None => assert_eq!(
                text_of(&doc, TYPES_13, "RejectionReasonCode"),
                Some("NO_DATA")
            ),
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_finishes_a_request_in_flight_and_refuses_new_ones() {
    let mut node = TestNode::start().await;
    let body = sample("happy.xml");
    let mut stream = TcpStream::connect(node.addr).await.expect("connect");
    let head = format!(
        "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Type: text/xml; charset=utf-8\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("head");
    stream
        .write_all(&body.as_bytes()[..200])
        .await
        .expect("first part");
    tokio::time::sleep(Duration::from_millis(100)).await;

    node.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        TcpStream::connect(node.addr).await.is_err(),
        "the listener is closed once shutdown begins"
    );

    stream
        .write_all(&body.as_bytes()[200..])
        .await
        .expect("rest of the body");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("in time")
        .expect("read");
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains("<r:LastName>Иванов</r:LastName>"),
        "{response}"
    );
    let served = tokio::time::timeout(Duration::from_secs(5), node.handle)
        .await
        .expect("server stops")
        .expect("join");
    assert!(served.is_ok());
}

#[tokio::test]
async fn the_wsdl_and_its_schemas_are_served() {
    let node = TestNode::start().await;
    let wsdl = send(node.addr, "GET", "/ws?wsdl", None, Vec::new()).await;
    assert_eq!(wsdl.status, 200);
    let doc = wsdl.doc();
    let ops: Vec<&str> = doc
        .descendants()
        .filter(|n| {
            n.has_tag_name(("http://schemas.xmlsoap.org/wsdl/", "operation"))
                && n.parent()
                    .is_some_and(|p| p.tag_name().name() == "portType")
        })
        .filter_map(|n| n.attribute("name"))
        .collect();
    for op in [
        "SendRequest",
        "SendResponse",
        "GetStatus",
        "GetResponse",
        "Ack",
    ] {
        assert!(ops.contains(&op), "WSDL declares {op}: {ops:?}");
    }
    assert!(
        wsdl.body
            .contains(&format!("location=\"http://{}/ws\"", node.addr)),
        "the address is the node's own"
    );
    assert!(
        wsdl.body
            .contains("schemaLocation=\"/ws?xsd=smev-adapter-types-1.3.xsd\"")
    );
    let xsd = send(
        node.addr,
        "GET",
        "/ws?xsd=smev-adapter-types-1.3.xsd",
        None,
        Vec::new(),
    )
    .await;
    assert_eq!(xsd.status, 200);
    assert!(
        xsd.doc()
            .root_element()
            .has_tag_name(("http://www.w3.org/2001/XMLSchema", "schema"))
    );
    assert_eq!(
        send(
            node.addr,
            "GET",
            "/ws?xsd=../adapter.toml",
            None,
            Vec::new()
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn health_and_readiness_report_storage_and_datasources() {
    let node = TestNode::start().await;
    let health = send(node.addr, "GET", "/healthz", None, Vec::new()).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        ready.body.contains("datasource agency: ok"),
        "{}",
        ready.body
    );

    // Storage that cannot be written makes the node not ready, with the reason.
    let data_dir = node.dir.path().join("data");
    std::fs::remove_dir_all(&data_dir).expect("remove data dir");
    std::fs::write(&data_dir, b"not a directory").expect("block data dir");
    let ready = send(node.addr, "GET", "/readyz", None, Vec::new()).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("storage: FAIL"), "{}", ready.body);

    assert_eq!(
        send(node.addr, "GET", "/nope", None, Vec::new())
            .await
            .status,
        404
    );
    assert_eq!(
        send(node.addr, "PUT", "/ws", None, Vec::new()).await.status,
        405
    );
}
