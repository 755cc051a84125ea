//! Real-socket tests: a tiny scripted fastwebsockets server on 127.0.0.1:0 (plain and
//! TLS), driven inline by each test, against `Connection` and `Client`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{FragmentCollector, Frame, OpCode, Payload};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use switchyard_client::connection::{ConnectOptions, Connection, Incoming, RawIncoming, TokenVia};
use switchyard_client::{Client, ClientOptions, ConnectError, Event};
use switchyard_protocol::error::ErrorCode;
use switchyard_protocol::ServerFrame;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// One accepted WebSocket, with the upgrade request it came with.
struct ServerConn {
    uri: String,
    headers: HeaderMap,
    ws: FragmentCollector<TokioIo<Upgraded>>,
}

impl ServerConn {
    async fn send(&mut self, text: &str) {
        self.ws
            .write_frame(Frame::text(Payload::Owned(text.as_bytes().to_vec())))
            .await
            .unwrap();
    }

    /// The next text frame from the client, as JSON.
    async fn recv_json(&mut self) -> Value {
        loop {
            let frame = timeout(WAIT, self.ws.read_frame()).await.unwrap().unwrap();
            if frame.opcode == OpCode::Text {
                return serde_json::from_slice(&frame.payload).unwrap();
            }
        }
    }

    async fn close(&mut self, code: u16) {
        self.ws.write_frame(Frame::close(code, b"")).await.unwrap();
    }
}

struct TestServer {
    addr: std::net::SocketAddr,
    conns: mpsc::Receiver<ServerConn>,
}

impl TestServer {
    /// Paths under `/refuse/<status>` are answered with that status and a JSON error;
    /// everything else is upgraded and handed to the test.
    async fn start(tls: Option<Arc<rustls::ServerConfig>>) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, conns) = mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let tx = tx.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(req, tx.clone()));
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(config) => {
                            let Ok(stream) =
                                tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                            else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .with_upgrades()
                                .await;
                        }
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(tcp), service)
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        TestServer { addr, conns }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    async fn accept(&mut self) -> ServerConn {
        timeout(WAIT, self.conns.recv()).await.unwrap().unwrap()
    }
}

async fn handle(
    mut req: Request<Body>,
    tx: mpsc::Sender<ServerConn>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if let Some(status) = req.uri().path().strip_prefix("/refuse/") {
        let status: u16 = status.parse().unwrap();
        let code = match status {
            401 => ErrorCode::InvalidToken,
            503 => ErrorCode::NoWorker,
            _ => ErrorCode::BadRequest,
        };
        let body = switchyard_protocol::error::HttpError::new(code, "refused").to_json();
        return Ok(Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .header("content-type", "application/json")
            .header("retry-after", "3")
            .body(Full::new(Bytes::from(body)))
            .unwrap());
    }
    let uri = req.uri().to_string();
    let headers = req.headers().clone();
    let offered_v1 = headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim() == "switchyard.v1"));
    let (response, upgrade) = fastwebsockets::upgrade::upgrade(&mut req).unwrap();
    tokio::spawn(async move {
        let ws = upgrade.await.unwrap();
        let _ = tx
            .send(ServerConn {
                uri,
                headers,
                ws: FragmentCollector::new(ws),
            })
            .await;
    });
    let (mut parts, _) = response.into_parts();
    if offered_v1 {
        parts
            .headers
            .insert("sec-websocket-protocol", "switchyard.v1".parse().unwrap());
    }
    Ok(Response::from_parts(parts, Full::new(Bytes::new())))
}

fn welcome(conn: &str, resume_token: &str, resumed: bool) -> String {
    format!(
        r#"{{"op":"welcome","conn":"{conn}","worker":"w1","resume":"/ws/w1/{conn}","resume_token":"{resume_token}","heartbeat_ms":25000,"resumed":{resumed},"user":"alice"}}"#
    )
}

fn msg(seq: u64, data: &str) -> String {
    format!(
        r#"{{"op":"msg","room":"lobby","seq":{seq},"from":"bob","ts":1763800000123,"data":{data}}}"#
    )
}

async fn next_event(events: &mut mpsc::Receiver<Event>) -> Event {
    timeout(WAIT, events.recv()).await.unwrap().unwrap()
}

#[tokio::test]
async fn connection_yields_batched_pieces_one_by_one() {
    let mut server = TestServer::start(None).await;
    let opts = ConnectOptions::new(server.url("/ws")).token("jwt", TokenVia::Subprotocol);
    let (conn, mut sconn) = tokio::join!(Connection::connect(&opts), server.accept());
    let mut conn = conn.unwrap();
    assert_eq!(conn.subprotocol(), Some("switchyard.v1"));
    assert_eq!(
        sconn.headers["sec-websocket-protocol"],
        "switchyard.v1, switchyard.auth.jwt"
    );

    sconn.send(&welcome("c1", "rt1", false)).await;
    let data_two = r#"{"b" : [1, 2]}"#;
    sconn
        .send(&format!("{}\n{}\n", msg(1, r#"{"a":1}"#), msg(2, data_two)))
        .await;
    sconn
        .send(r#"{"op":"reconnect","reason":"draining","after_ms":1834}"#)
        .await;
    sconn.close(1012).await;

    match conn.recv_timeout(WAIT).await.unwrap() {
        Incoming::Frame(ServerFrame::Welcome { conn, resumed, .. }) => {
            assert_eq!(conn, "c1");
            assert!(!resumed);
        }
        other => panic!("{other:?}"),
    }
    match conn.recv_timeout(WAIT).await.unwrap() {
        Incoming::Frame(ServerFrame::Msg { seq, data, .. }) => {
            assert_eq!(seq, Some(1));
            assert_eq!(data.get(), r#"{"a":1}"#);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(conn.last_piece(), msg(1, r#"{"a":1}"#).as_bytes());
    // The second piece of the same frame, byte for byte.
    match conn.recv_raw_timeout(WAIT).await.unwrap() {
        RawIncoming::Piece(piece) => assert_eq!(piece, msg(2, data_two).as_bytes()),
        other => panic!("{other:?}"),
    }
    match conn.recv_timeout(WAIT).await.unwrap() {
        Incoming::Frame(ServerFrame::Reconnect { after_ms, .. }) => assert_eq!(after_ms, 1834),
        other => panic!("{other:?}"),
    }
    match conn.recv_timeout(WAIT).await.unwrap() {
        Incoming::Closed { code, .. } => assert_eq!(code, Some(1012)),
        other => panic!("{other:?}"),
    }
    // The client answered the close.
    let echo = timeout(WAIT, sconn.ws.read_frame()).await.unwrap().unwrap();
    assert_eq!(echo.opcode, OpCode::Close);
    assert_eq!(&echo.payload[..2], &1012u16.to_be_bytes());
}

#[tokio::test]
async fn connection_sends_frames_and_closes() {
    let mut server = TestServer::start(None).await;
    let opts = ConnectOptions::new(server.url("/ws?x=1")).token("a.b.c", TokenVia::Query);
    let (conn, mut sconn) = tokio::join!(Connection::connect(&opts), server.accept());
    let mut conn = conn.unwrap();
    assert_eq!(sconn.uri, "/ws?x=1&access_token=a.b.c");
    assert_eq!(conn.subprotocol(), None);
    conn.send_text(b"not json").await.unwrap();
    conn.send_frame(&switchyard_protocol::ClientFrame::Ping {
        reference: Some("6".into()),
    })
    .await
    .unwrap();
    assert_eq!(sconn.ws.read_frame().await.unwrap().payload, b"not json");
    assert_eq!(
        sconn.recv_json().await,
        serde_json::json!({"op":"ping","ref":"6"})
    );
    // Nothing more: a timeout, and the connection still works after it.
    assert!(matches!(
        conn.recv_timeout(Duration::from_millis(50)).await,
        Err(switchyard_client::RecvError::Timeout)
    ));
    let server_side = tokio::spawn(async move {
        let frame = sconn.ws.read_frame().await.unwrap();
        assert_eq!(frame.opcode, OpCode::Close);
        // fastwebsockets echoes it (auto close).
        sconn
    });
    assert_eq!(conn.close(1000).await.unwrap(), Some(1000));
    server_side.await.unwrap();
}

#[tokio::test]
async fn refused_upgrade_carries_status_and_body() {
    let server = TestServer::start(None).await;
    let err = Connection::connect(&ConnectOptions::new(server.url("/refuse/401")))
        .await
        .unwrap_err();
    match &err {
        ConnectError::Http { status, body, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(body.as_ref().unwrap().error, ErrorCode::InvalidToken);
        }
        other => panic!("{other:?}"),
    }
    let err = Connection::connect(&ConnectOptions::new(server.url("/refuse/503")))
        .await
        .unwrap_err();
    assert!(matches!(
        &err,
        ConnectError::Http { status: 503, body: Some(b), .. } if b.error == ErrorCode::NoWorker
    ));
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)));
}

#[tokio::test]
async fn client_resumes_resubscribes_dedupes_and_retries_publish() {
    let mut server = TestServer::start(None).await;
    let opts =
        ClientOptions::new(ConnectOptions::new(server.url("/ws")).token("jwt", TokenVia::Header));
    let (client, mut events) = Client::start(opts);
    client.subscribe("lobby").await.unwrap();

    // First connection: fresh, live-only sub, two messages in one frame.
    let mut s1 = server.accept().await;
    assert_eq!(s1.uri, "/ws");
    assert_eq!(s1.headers["authorization"], "Bearer jwt");
    s1.send(&welcome("c1", "rt/1", false)).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { resumed: false, .. }
    ));
    assert_eq!(
        s1.recv_json().await,
        serde_json::json!({"op":"sub","room":"lobby"})
    );
    s1.send(
        r#"{"op":"subscribed","room":"lobby","seq":0,"epoch":"e1","recovered":true,"replayed":0}"#,
    )
    .await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Subscribed { seq: 0, .. }
    ));
    s1.send(&format!("{}\n{}", msg(1, "1"), msg(2, "2"))).await;
    for want in [1, 2] {
        match next_event(&mut events).await {
            Event::Message { seq, data, .. } => {
                assert_eq!(seq, Some(want));
                assert_eq!(data.get(), want.to_string());
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(client.last_seq("lobby"), Some(2));

    // A publish the server takes but never acknowledges before draining.
    let publisher = {
        let client = client.clone();
        tokio::spawn(async move { client.publish("lobby", &serde_json::json!({"n": 3})).await })
    };
    let first_pub = s1.recv_json().await;
    assert_eq!(first_pub["op"], "pub");
    s1.send(r#"{"op":"reconnect","reason":"draining","after_ms":10}"#)
        .await;
    s1.close(1012).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Disconnected {
            code: Some(1012),
            ..
        }
    ));

    // Second connection: the resume path with the resume token and the same auth; the
    // session is gone, so the client subscribes again from seq 2 and resends the pub.
    let mut s2 = server.accept().await;
    assert_eq!(s2.uri, "/ws/w1/c1?resume_token=rt%2F1");
    assert_eq!(s2.headers["authorization"], "Bearer jwt");
    s2.send(&welcome("c2", "rt2", false)).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { resumed: false, .. }
    ));
    assert_eq!(
        s2.recv_json().await,
        serde_json::json!({"op":"sub","room":"lobby","since":2,"epoch":"e1"})
    );
    let retried = s2.recv_json().await;
    assert_eq!(retried, first_pub, "same frame, same ref");
    s2.send(
        r#"{"op":"subscribed","room":"lobby","seq":3,"epoch":"e1","recovered":true,"replayed":1}"#,
    )
    .await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Subscribed { replayed: 1, .. }
    ));
    // The replay overlaps what was seen: 2 is dropped, 3 delivered once.
    s2.send(&format!(
        "{}\n{}\n{}",
        msg(2, "2"),
        msg(3, "3"),
        msg(3, "3")
    ))
    .await;
    s2.send(&format!(
        r#"{{"op":"ack","ref":{},"seq":3}}"#,
        retried["ref"]
    ))
    .await;
    match next_event(&mut events).await {
        Event::Message { seq, .. } => assert_eq!(seq, Some(3)),
        other => panic!("{other:?}"),
    }
    assert_eq!(timeout(WAIT, publisher).await.unwrap().unwrap(), Ok(3));
    assert_eq!(client.duplicates_dropped(), 2);
    assert_eq!(client.reconnects(), 1);

    // Third connection after a lost socket: resumed, so no new sub.
    drop(s2);
    assert!(matches!(
        next_event(&mut events).await,
        Event::Disconnected { .. }
    ));
    let mut s3 = server.accept().await;
    assert_eq!(s3.uri, "/ws/w1/c2?resume_token=rt2");
    s3.send(&welcome("c2", "rt3", true)).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { resumed: true, .. }
    ));
    let ephemeral = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .publish_ephemeral("lobby", &serde_json::json!("hi"))
                .await
        })
    };
    // The first frame after a resumed welcome is the publish, not a sub.
    let frame = s3.recv_json().await;
    assert_eq!(frame["op"], "pub");
    assert_eq!(frame["ephemeral"], true);
    s3.send(&format!(r#"{{"op":"ack","ref":{}}}"#, frame["ref"]))
        .await;
    assert_eq!(timeout(WAIT, ephemeral).await.unwrap().unwrap(), Ok(()));

    // Closing: 1000 to the server, then the final event.
    let closer = tokio::spawn(async move {
        loop {
            let frame = s3.ws.read_frame().await.unwrap();
            if frame.opcode == OpCode::Close {
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
    });
    client.close().await.unwrap();
    assert_eq!(closer.await.unwrap(), 1000);
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed { code: Some(1000) }
    ));
}

/// A join or leave that reaches the client before the `presence` answer it passed (the
/// server read the members before it) is applied over the answer.
#[tokio::test]
async fn a_presence_answer_takes_the_joins_and_leaves_that_passed_it() {
    let mut server = TestServer::start(None).await;
    let opts =
        ClientOptions::new(ConnectOptions::new(server.url("/ws")).token("jwt", TokenVia::Header));
    let (client, mut events) = Client::start(opts);
    let mut s1 = server.accept().await;
    s1.send(&welcome("c1", "rt/1", false)).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    let asking = {
        let client = client.clone();
        tokio::spawn(async move { client.presence("lobby").await })
    };
    let request = s1.recv_json().await;
    assert_eq!(request["op"], "presence");
    let reference = request["ref"].as_str().unwrap().to_string();
    s1.send(&format!(
        "{}\n{}\n{}\n{}",
        r#"{"op":"join","room":"lobby","user":"bob"}"#,
        r#"{"op":"join","room":"other","user":"dave"}"#,
        r#"{"op":"leave","room":"lobby","user":"carol"}"#,
        serde_json::json!({"op": "presence", "room": "lobby", "ref": reference,
            "members": [{"user": "alice", "conns": 2}, {"user": "carol", "conns": 1}]}),
    ))
    .await;
    let members = asking.await.unwrap().unwrap();
    let listed: Vec<_> = members.iter().map(|m| (m.user.as_str(), m.conns)).collect();
    assert_eq!(listed, [("alice", 2), ("bob", 1)]);
    client.close().await.ok();
}

#[tokio::test]
async fn client_stops_on_policy_close_and_on_fixed_bad_token() {
    let mut server = TestServer::start(None).await;
    let (_client, mut events) =
        Client::start(ClientOptions::new(ConnectOptions::new(server.url("/ws"))));
    let mut s = server.accept().await;
    s.send(&welcome("c1", "rt1", false)).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Connected { .. }
    ));
    s.close(1008).await;
    assert!(matches!(
        next_event(&mut events).await,
        Event::Disconnected {
            code: Some(1008),
            ..
        }
    ));
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed { code: Some(1008) }
    ));

    let (_client, mut events) = Client::start(ClientOptions::new(ConnectOptions::new(
        server.url("/refuse/401"),
    )));
    match next_event(&mut events).await {
        Event::ConnectFailed {
            error: ConnectError::Http { status: 401, .. },
            retry_in: None,
        } => {}
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        next_event(&mut events).await,
        Event::Closed { code: None }
    ));
}

#[tokio::test]
async fn connection_over_tls_trusts_only_the_given_ca() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert_der], key)
    .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut server = TestServer::start(Some(Arc::new(config))).await;
    let url = format!("wss://localhost:{}/ws", server.addr.port());

    let opts = ConnectOptions::new(&url).ca_pem(cert.cert.pem());
    let (conn, mut sconn) = tokio::join!(Connection::connect(&opts), server.accept());
    let mut conn = conn.unwrap();
    sconn.send(&welcome("c1", "rt1", false)).await;
    assert!(matches!(
        conn.recv_timeout(WAIT).await.unwrap(),
        Incoming::Frame(ServerFrame::Welcome { .. })
    ));

    // The public roots do not know this CA.
    let err = Connection::connect(&ConnectOptions::new(&url))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        ConnectError::Io {
            phase: switchyard_client::connection::Phase::Tls,
            ..
        }
    ));
}
