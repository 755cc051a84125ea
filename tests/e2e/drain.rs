//! Drain (DESIGN "Shutdown and drain"): every client gets `reconnect` with a spread
//! `after_ms`, then 1012.

use std::time::Duration;

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, Stack};

use crate::subscribe;

#[tokio::test]
async fn every_client_gets_reconnect_then_1012() {
    let stack = Stack::start_with(|o| o.worker.drain_window = Duration::from_millis(2000)).await;
    let mut conns = Vec::new();
    for i in 0..5 {
        let (mut conn, _) = stack
            .connect(&stack.token(&format!("u{i}"), &["r"], &[]))
            .await;
        subscribe(&mut conn, "r").await;
        conns.push(conn);
    }
    let worker = stack.dev.workers[0].clone();
    let draining = tokio::spawn(async move { worker.drain(Duration::from_secs(5)).await });
    for conn in &mut conns {
        let (reason, after_ms) = expect::until(conn, |f| match f {
            ServerFrame::Reconnect { reason, after_ms } => Some((reason.to_string(), *after_ms)),
            _ => None,
        })
        .await;
        assert_eq!(reason, "draining");
        assert!(after_ms < 2000);
        assert_eq!(expect::closed(conn).await, Some(1012));
    }
    draining.await.unwrap();
    assert_eq!(stack.dev.workers[0].sessions(), 0);
    // A draining worker takes nobody new: the gateway has no worker left.
    let token = stack.token("late", &[], &[]);
    let refused = switchyard_client::Connection::connect(&stack.options("/ws", &token)).await;
    assert!(matches!(
        refused,
        Err(switchyard_client::ConnectError::Http { status: 503, .. })
    ));
}

#[tokio::test]
async fn new_connections_avoid_a_draining_worker() {
    let stack = Stack::start_with(|o| o.workers = 2).await;
    stack.dev.workers[0].drain(Duration::from_secs(1)).await;
    let token = stack.token("alice", &[], &[]);
    for _ in 0..5 {
        let (_conn, welcome) = stack.connect(&token).await;
        assert_eq!(welcome.worker, "w2");
    }
    let (_sticky, welcome) = stack.connect_path("/ws/w1/c_x", &token).await;
    assert_eq!(
        welcome.worker, "w2",
        "a sticky path to a draining worker goes elsewhere"
    );
}
