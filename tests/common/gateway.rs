//! A fake upstream gateway for tests: records every SendResponse it receives and answers as scripted.
//! It can be "down" (connections refused) and come back on the same port.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One delivery the gateway received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The `To` of the SenderProvidedResponseData: the request's MessageID.
    pub to: String,
    pub body: String,
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Answers to give, in order; when empty, HTTP 200 with a SendResponseResponse.
    script: VecDeque<(u16, String)>,
}

pub struct FakeGateway {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: Option<JoinHandle<()>>,
}

pub const OK_BODY: &str = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><ns:SendResponseResponse xmlns:ns="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/1.3"/></soap:Body></soap:Envelope>"#;

/// A SOAP fault body naming an SMEV fault.
pub fn fault(code: &str, smev: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><soap:Fault><faultcode>soap:{code}</faultcode><faultstring>{smev}</faultstring><detail><f:{smev} xmlns:f="urn://x-artefacts-smev-gov-ru/services/message-exchange/types/faults/1.3"/></detail></soap:Fault></soap:Body></soap:Envelope>"#
    )
}

impl FakeGateway {
    pub async fn start() -> FakeGateway {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind gateway");
        let addr = listener.local_addr().expect("addr");
        let mut g = FakeGateway {
            addr,
            state: Arc::default(),
            task: None,
        };
        g.serve(listener);
        g
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        self.task = Some(tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let body = String::from_utf8_lossy(&body).into_owned();
                            let (status, answer) = {
                                let mut s = state.lock().expect("gateway state");
                                let to = to_of(&body);
                                s.received.push(Received { to, body });
                                s.script.pop_front().unwrap_or((200, OK_BODY.to_string()))
                            };
                            let mut r = Response::new(Full::new(Bytes::from(answer)));
                            *r.status_mut() = hyper::StatusCode::from_u16(status).expect("status");
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        }));
    }

    pub fn url(&self) -> String {
        format!("http://{}/ws", self.addr)
    }

    /// The next answers, in order (status, body).
    pub fn script(&self, answers: impl IntoIterator<Item = (u16, String)>) {
        self.state.lock().expect("state").script.extend(answers);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    /// Stops accepting: connections are refused until [`FakeGateway::up`].
    pub fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Accepts again on the same port.
    pub async fn up(&mut self) {
        let mut last = None;
        for _ in 0..50 {
            match TcpListener::bind(self.addr).await {
                Ok(l) => return self.serve(l),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("cannot rebind the gateway port: {last:?}");
    }

    /// Waits until `n` deliveries arrived (or panics after `secs`).
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Received> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "expected {n} deliveries within {secs} s, got {}",
                got.len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

/// The `To` element's text in a SendResponseRequest.
pub fn to_of(body: &str) -> String {
    let Some(start) = body.find(":To>") else {
        return String::new();
    };
    let rest = &body[start + 4..];
    rest[..rest.find('<').unwrap_or(0)].to_string()
}
