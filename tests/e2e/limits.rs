//! Limits and liveness (PROTOCOL §4): rate limits, strikes, frame size, connection cap,
//! token expiry, heartbeats and dead peers.

use std::time::Duration;

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, now, Stack};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{next_error, ping, publish, send};

#[tokio::test]
async fn publishing_past_the_rate_is_rate_limited_without_closing() {
    let stack = Stack::start_with(|o| {
        o.worker.publish_rate = 1;
        o.worker.publish_burst = 2;
    })
    .await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &["r"])).await;
    publish(&mut conn, "r", "1", "a").await;
    publish(&mut conn, "r", "2", "b").await;
    send(&conn, r#"{"op":"pub","room":"r","data":3,"ref":"c"}"#).await;
    assert_eq!(
        next_error(&mut conn).await,
        ("rate_limited".into(), Some("c".into()), Some("r".into()))
    );
    ping(&mut conn, "open").await;
}

#[tokio::test]
async fn repeated_bad_frames_close_with_1008() {
    let stack = Stack::start_with(|o| o.worker.max_strikes = 3).await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &[])).await;
    for _ in 0..4 {
        send(&conn, "garbage").await;
    }
    assert_eq!(expect::closed(&mut conn).await, Some(1008));
}

#[tokio::test]
async fn frames_at_the_limit_pass_and_over_it_close_with_1009() {
    let stack = Stack::start_with(|o| o.worker.max_frame_bytes = 1024).await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &["r"])).await;
    let prefix = r#"{"op":"pub","room":"r","ref":"big","data":""#;
    let at_limit = format!("{prefix}{}\"}}", "x".repeat(1024 - prefix.len() - 2));
    assert_eq!(at_limit.len(), 1024);
    send(&conn, &at_limit).await;
    expect::until(&mut conn, |f| {
        matches!(f, ServerFrame::Ack { .. }).then_some(())
    })
    .await;
    let over = format!("{prefix}{}\"}}", "x".repeat(1025 - prefix.len() - 2));
    send(&conn, &over).await;
    assert_eq!(expect::closed(&mut conn).await, Some(1009));
}

#[tokio::test]
async fn fragmented_messages_count_against_the_frame_limit() {
    use fastwebsockets::{Frame, OpCode, Payload};
    let stack = Stack::start_with(|o| o.worker.max_frame_bytes = 1024).await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &[])).await;
    // A ping split in two fragments, with a control frame between them, is one message.
    let first = Frame::new(
        false,
        OpCode::Text,
        None,
        Payload::Owned(br#"{"op":"pi"#.to_vec()),
    );
    conn.send_raw_frame(first).await.unwrap();
    conn.send_raw_frame(Frame::new(
        true,
        OpCode::Ping,
        None,
        Payload::Owned(b"x".to_vec()),
    ))
    .await
    .unwrap();
    let last = Frame::new(
        true,
        OpCode::Continuation,
        None,
        Payload::Owned(br#"ng","ref":"frag"}"#.to_vec()),
    );
    conn.send_raw_frame(last).await.unwrap();
    expect::until(&mut conn, |f| {
        matches!(f, ServerFrame::Pong { reference: Some(r) } if r == "frag").then_some(())
    })
    .await;
    // Many small fragments adding up past the limit close with 1009.
    conn.send_raw_frame(Frame::new(
        false,
        OpCode::Text,
        None,
        Payload::Owned(vec![b' '; 600]),
    ))
    .await
    .unwrap();
    conn.send_raw_frame(Frame::new(
        false,
        OpCode::Continuation,
        None,
        Payload::Owned(vec![b' '; 600]),
    ))
    .await
    .unwrap();
    assert_eq!(expect::closed(&mut conn).await, Some(1009));
}

#[tokio::test]
async fn a_full_mesh_answers_503_no_worker_with_retry_after() {
    let stack = Stack::start_with(|o| o.worker.max_connections = 1).await;
    let token = stack.token("alice", &[], &[]);
    let (mut first, _) = stack.connect(&token).await;
    let refused = switchyard_client::Connection::connect(&stack.options("/ws", &token)).await;
    let Err(err @ switchyard_client::ConnectError::Http { status: 503, .. }) = refused else {
        panic!("expected 503, got {:?}", refused.map(|_| ()))
    };
    assert!(err.retry_after().is_some());
    ping(&mut first, "first-still-open").await;
}

/// The worker's internal listener: only signed hand-offs, and 1013 past capacity (a
/// gateway's view of the load can be a moment old).
#[tokio::test]
async fn a_worker_refuses_unsigned_hand_offs_and_closes_past_capacity_with_1013() {
    use std::sync::Arc;

    use switchyard_broker::memory::{MemoryBroker, MemoryConfig};
    use switchyard_client::{ConnectError, ConnectOptions, Connection};
    use switchyard_protocol::{Identity, Scope, UserId};
    use switchyard_worker::{Worker, WorkerConfig};

    let config = WorkerConfig {
        max_connections: 1,
        ..WorkerConfig::default()
    };
    let worker = Worker::start(
        config,
        Arc::new(MemoryBroker::new(MemoryConfig::default())),
        None,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    let secret: Arc<[u8]> = Arc::from(&b"internal secret"[..]);
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(switchyard_worker::listener::run(
        worker.clone(),
        listener,
        secret.clone(),
        stop.clone(),
    ));

    let unsigned = Connection::connect(&ConnectOptions::new(&url)).await;
    assert!(
        matches!(unsigned, Err(ConnectError::Http { status: 403, .. })),
        "{:?}",
        unsigned.map(|_| ())
    );
    let identity = Identity {
        user: UserId::parse("alice").unwrap(),
        scope: Scope::default(),
        exp: now() + 60.0,
        iat: None,
        resume_conn: None,
        resume_token: None,
        traceparent: None,
        subprotocol: false,
    };
    let signed = |key: &[u8]| {
        let (payload, sig) = identity.sign(key, (now() * 1000.0) as u64);
        ConnectOptions::new(&url)
            .header("sy-identity", payload)
            .header("sy-identity-sig", sig)
    };
    let forged = Connection::connect(&signed(b"wrong secret")).await;
    assert!(matches!(
        forged,
        Err(ConnectError::Http { status: 403, .. })
    ));
    let mut first = Connection::connect(&signed(&secret)).await.unwrap();
    expect::welcome(&mut first).await;
    let mut second = Connection::connect(&signed(&secret)).await.unwrap();
    assert_eq!(expect::closed(&mut second).await, Some(1013));
    stop.cancel();
}

#[tokio::test]
async fn refresh_required_comes_before_expiry_then_1008() {
    let stack = Stack::start_with(|o| o.worker.leeway = Duration::from_millis(100)).await;
    let token = stack.sign(&serde_json::json!({"sub": "alice", "exp": now() + 2.0}));
    let (mut conn, _) = stack.connect(&token).await;
    let left = expect::until(&mut conn, |f| match f {
        ServerFrame::RefreshRequired { expires_in_ms } => Some(*expires_in_ms),
        _ => None,
    })
    .await;
    assert!(
        left <= 1100,
        "notice at half the token's life, got {left} ms left"
    );
    assert_eq!(expect::closed(&mut conn).await, Some(1008));
}

#[tokio::test]
async fn a_refreshed_token_keeps_the_connection() {
    let stack = Stack::start_with(|o| o.worker.leeway = Duration::from_millis(100)).await;
    let token = stack.sign(&serde_json::json!({"sub": "alice", "exp": now() + 2.0}));
    let (mut conn, _) = stack.connect(&token).await;
    expect::until(&mut conn, |f| {
        matches!(f, ServerFrame::RefreshRequired { .. }).then_some(())
    })
    .await;
    let fresh = stack.token("alice", &[], &[]);
    send(
        &conn,
        &format!(r#"{{"op":"refresh","token":"{fresh}","ref":"r"}}"#),
    )
    .await;
    expect::until(&mut conn, |f| {
        matches!(f, ServerFrame::Refreshed { .. }).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ping(&mut conn, "alive").await;
}

#[tokio::test]
async fn a_silent_peer_is_dropped_after_two_heartbeats_and_its_session_detached() {
    let stack = Stack::start_with(|o| {
        o.worker.heartbeat = Duration::from_millis(200);
        o.worker.session_ttl = Duration::from_millis(1500);
    })
    .await;
    let mut tls = raw_upgrade(&stack, &stack.token("alice", &[], &[])).await;
    // Never answer a ping: the server must give up on us.
    let started = std::time::Instant::now();
    let mut sink = vec![0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), tls.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue,
            Err(_) => panic!("server kept a silent peer for 5 s"),
        }
    }
    assert!(
        started.elapsed() >= Duration::from_millis(350),
        "dropped after {:?}",
        started.elapsed()
    );
    let worker = &stack.dev.workers[0];
    assert_eq!(worker.sessions(), 1, "the session is detached, not ended");
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert_eq!(
        worker.sessions(),
        0,
        "a detached session ends after session_ttl"
    );
}

/// A WebSocket upgrade written by hand over TLS, for tests that speak frames directly.
async fn raw_upgrade(
    stack: &Stack,
    token: &str,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = stack.api().raw_tls().await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Authorization: Bearer {token}\r\n\r\n"
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tls
}

/// Reads server frames until one with `opcode` arrives; its payload.
async fn frame_with_opcode(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    opcode: u8,
) -> Vec<u8> {
    loop {
        let mut head = [0u8; 2];
        tls.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => u64::from(tls.read_u16().await.unwrap()),
            127 => tls.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        tls.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == opcode {
            return payload;
        }
    }
}

/// A client frame (masked, as RFC 6455 requires) with a payload under 64 KiB.
fn masked(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match u16::try_from(payload.len()).expect("a payload under 64 KiB") {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&len.to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn a_client_ping_gets_its_pong_and_a_client_close_its_echo() {
    let stack = Stack::start().await;
    let mut tls = raw_upgrade(&stack, &stack.token("alice", &[], &[])).await;
    tls.write_all(&masked(0x9, b"are you there")).await.unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), frame_with_opcode(&mut tls, 0xA))
        .await
        .expect("no pong within 5 s");
    assert_eq!(pong, b"are you there");
    tls.write_all(&masked(0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    let echo = tokio::time::timeout(Duration::from_secs(5), frame_with_opcode(&mut tls, 0x8))
        .await
        .expect("no close echo within 5 s");
    assert_eq!(echo, 1000u16.to_be_bytes());
}

/// RFC 6455 §5.5.3 lets an endpoint answer only the latest of several pings: a flood
/// of pings gets pongs in the order sent, ending with the last ping's, and the
/// connection keeps serving.
#[tokio::test]
async fn a_flood_of_client_pings_is_answered_up_to_the_latest() {
    let stack = Stack::start().await;
    let mut tls = raw_upgrade(&stack, &stack.token("alice", &[], &[])).await;
    let mut flood = Vec::new();
    for i in 0..200u32 {
        flood.extend(masked(0x9, format!("ping {i:03}").as_bytes()));
    }
    tls.write_all(&flood).await.unwrap();
    let mut last = None;
    while last.as_deref() != Some("ping 199") {
        let pong = tokio::time::timeout(Duration::from_secs(5), frame_with_opcode(&mut tls, 0xA))
            .await
            .expect("no pong of the last ping within 5 s");
        let pong = String::from_utf8(pong).unwrap();
        assert!(
            pong.starts_with("ping ") && last.as_ref().is_none_or(|last| pong > *last),
            "pong {pong:?} after {last:?}"
        );
        last = Some(pong);
    }
    tls.write_all(&masked(0x1, br#"{"op":"ping","ref":"after"}"#))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), frame_with_opcode(&mut tls, 0x1))
        .await
        .expect("no reply within 5 s");
    assert!(String::from_utf8(reply).unwrap().contains("after"));
}

#[tokio::test]
async fn frames_that_arrive_in_pieces_are_read_whole() {
    let stack = Stack::start().await;
    let mut tls = raw_upgrade(&stack, &stack.token("alice", &[], &[])).await;
    // A ping, then a text frame long enough for a 16-bit length (JSON allows the
    // trailing spaces), cut inside the first header, inside the second's extended
    // length and inside both payloads; each piece its own TLS record and read.
    let mut text = br#"{"op":"ping","ref":"in-pieces"}"#.to_vec();
    text.resize(200, b' ');
    let ping = masked(0x9, b"piecemeal");
    let mut bytes = ping.clone();
    bytes.extend(masked(0x1, &text));
    let second = ping.len();
    let cuts = [0, 1, 9, second + 3, second + 40, bytes.len()];
    for piece in cuts.windows(2) {
        tls.write_all(&bytes[piece[0]..piece[1]]).await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let pong = tokio::time::timeout(Duration::from_secs(5), frame_with_opcode(&mut tls, 0xA))
        .await
        .expect("no pong within 5 s");
    assert_eq!(pong, b"piecemeal");
    let reply = tokio::time::timeout(Duration::from_secs(5), frame_with_opcode(&mut tls, 0x1))
        .await
        .expect("no reply within 5 s");
    let reply = String::from_utf8(reply).unwrap();
    assert!(
        reply.contains(r#""op":"pong""#) && reply.contains("in-pieces"),
        "{reply}"
    );
}

#[tokio::test]
async fn a_message_over_the_brokers_limit_is_too_large_and_not_stored() {
    let stack = Stack::start_with(|o| o.memory.max_message_bytes = 100).await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &["r"])).await;
    let big = format!("\"{}\"", "x".repeat(200));
    send(
        &conn,
        &format!(r#"{{"op":"pub","room":"r","data":{big},"ref":"big"}}"#),
    )
    .await;
    assert_eq!(
        next_error(&mut conn).await,
        ("too_large".into(), Some("big".into()), Some("r".into()))
    );
    let api = stack
        .api()
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "r", "data": "y".repeat(200)}),
        )
        .await;
    assert_eq!((api.status, api.error()), (413, "too_large".into()));
    let history = stack.api().get("/api/v1/history/r").await.json();
    assert_eq!(history["messages"], serde_json::json!([]));
    ping(&mut conn, "open").await;
}

#[tokio::test]
async fn a_broker_outage_answers_unavailable_and_stores_nothing() {
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &["r"], &["r"])).await;
    stack.dev.memory.as_ref().unwrap().set_down(true);
    send(&conn, r#"{"op":"pub","room":"r","data":1,"ref":"p"}"#).await;
    assert_eq!(
        next_error(&mut conn).await,
        ("unavailable".into(), Some("p".into()), Some("r".into()))
    );
    send(&conn, r#"{"op":"sub","room":"r","ref":"s"}"#).await;
    assert_eq!(
        next_error(&mut conn).await,
        ("unavailable".into(), Some("s".into()), Some("r".into()))
    );
    let api = stack
        .api()
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "r", "data": 1}),
        )
        .await;
    assert_eq!((api.status, api.error()), (503, "unavailable".into()));
    stack.dev.memory.as_ref().unwrap().set_down(false);
    // The same ref, retried after the outage, is stored once.
    let seq = publish(&mut conn, "r", "1", "p").await;
    assert_eq!(publish(&mut conn, "r", "1", "p").await, seq);
    crate::subscribe(&mut conn, "r").await;
    assert_eq!(
        stack.api().get("/api/v1/history/r").await.json()["messages"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn shutdown_without_drain_closes_with_1001() {
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &[])).await;
    let worker = stack.dev.workers[0].clone();
    tokio::spawn(async move { worker.shutdown(Duration::from_secs(2)).await });
    assert_eq!(expect::closed(&mut conn).await, Some(1001));
}

#[tokio::test]
async fn broken_websocket_framing_closes_with_1002() {
    use fastwebsockets::{Frame, OpCode, Payload};
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &[])).await;
    let orphan = Frame::new(
        true,
        OpCode::Continuation,
        None,
        Payload::Owned(b"{}".to_vec()),
    );
    conn.send_raw_frame(orphan).await.unwrap();
    assert_eq!(expect::closed(&mut conn).await, Some(1002));
}

#[tokio::test]
async fn invalid_utf8_is_a_bad_frame_and_the_connection_stays() {
    use fastwebsockets::{Frame, Payload};
    let stack = Stack::start().await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &[])).await;
    conn.send_raw_frame(Frame::text(Payload::Owned(vec![b'{', 0xff, 0xfe, b'}'])))
        .await
        .unwrap();
    assert_eq!(next_error(&mut conn).await.0, "bad_frame");
    ping(&mut conn, "open").await;
}

#[tokio::test]
async fn unavailable_answers_are_not_strikes() {
    let stack = Stack::start_with(|o| o.worker.max_strikes = 3).await;
    let (mut conn, _) = stack.connect(&stack.token("alice", &[], &["r"])).await;
    stack.dev.memory.as_ref().unwrap().set_down(true);
    for i in 0..10 {
        send(
            &conn,
            &format!(r#"{{"op":"pub","room":"r","data":{i},"ref":"{i}"}}"#),
        )
        .await;
        assert_eq!(next_error(&mut conn).await.0, "unavailable");
    }
    stack.dev.memory.as_ref().unwrap().set_down(false);
    publish(&mut conn, "r", "1", "after").await;
    ping(&mut conn, "still-open").await;
}
