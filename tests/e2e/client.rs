//! The reconnecting Rust client against the real stack: resume after a lost socket, and
//! replay from `since` after a drain moves it to another worker, with nothing lost.

use std::collections::BTreeMap;
use std::time::Duration;

use switchyard_client::{Client, ClientOptions, Event};
use switchyard_testkit::{metric_sum, Stack, WAIT};
use tokio::sync::mpsc;

async fn wait_for(
    events: &mut mpsc::Receiver<Event>,
    mut pick: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("event in time")
            .expect("client running");
        if pick(&event) {
            return event;
        }
    }
}

#[tokio::test]
async fn the_client_moves_to_another_worker_on_drain_and_misses_nothing() {
    let stack = Stack::start_with(|o| {
        o.workers = 2;
        o.worker.drain_window = Duration::from_millis(300);
    })
    .await;
    let token = stack.token("alice", &["feed"], &[]);
    let mut options = ClientOptions::new(stack.options("/ws/w1/start", &token));
    options.backoff_min = Duration::from_millis(50);
    let (client, mut events) = Client::start(options);
    wait_for(
        &mut events,
        |e| matches!(e, Event::Connected { worker, .. } if worker == "w1"),
    )
    .await;
    client.subscribe("feed").await.unwrap();
    wait_for(&mut events, |e| matches!(e, Event::Subscribed { .. })).await;

    let api = stack.api();
    let publisher = tokio::spawn(async move {
        let mut seqs = Vec::new();
        for i in 0..200 {
            seqs.push(api.publish("feed", i.into()).await);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seqs
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    stack.dev.workers[0].drain(Duration::from_secs(2)).await;
    let seqs = publisher.await.unwrap();

    let mut got = BTreeMap::new();
    let mut order = Vec::new();
    let mut moved = false;
    while got.len() < seqs.len() {
        match wait_for(&mut events, |e| {
            matches!(e, Event::Message { .. } | Event::Connected { .. })
        })
        .await
        {
            Event::Connected { worker, .. } => moved |= worker == "w2",
            Event::Message { seq: Some(seq), .. } => {
                assert!(got.insert(seq, ()).is_none(), "seq {seq} delivered twice");
                order.push(seq);
            }
            _ => {}
        }
    }
    assert!(moved, "the client reconnected to w2");
    assert_eq!(order, seqs, "every message once, in order, across the move");
}

/// Also its TLS session: the client keeps one TLS config across attempts, so the
/// reconnect takes the ticket the gateway gave it and no certificate is signed again.
#[tokio::test]
async fn the_client_resumes_its_session_after_a_lost_socket() {
    let stack = Stack::start_with(|o| o.admin_listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let proxy = switchyard_testkit::proxy::Proxy::start(stack.dev.addr).await;
    let token = stack.token("alice", &["feed"], &[]);
    let mut connect = stack.options("/ws", &token);
    connect.url = stack.url_via(proxy.addr, "/ws");
    let mut options = ClientOptions::new(connect);
    options.backoff_min = Duration::from_millis(50);
    let (client, mut events) = Client::start(options);
    let first_conn = match wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await {
        Event::Connected { conn, resumed, .. } => {
            assert!(!resumed);
            conn
        }
        _ => unreachable!(),
    };
    client.subscribe("feed").await.unwrap();
    wait_for(&mut events, |e| matches!(e, Event::Subscribed { .. })).await;
    let api = stack.api();
    let publish = |i: i32| api.publish("feed", i.into());
    let mut want = vec![publish(0).await];
    wait_for(&mut events, |e| matches!(e, Event::Message { .. })).await;
    let full_before_the_cut = full_tls_handshakes(&stack.admin_get("/metrics").await.1);
    proxy.cut();
    for i in 1..6 {
        want.push(publish(i).await);
    }
    match wait_for(&mut events, |e| matches!(e, Event::Connected { .. })).await {
        Event::Connected { conn, resumed, .. } => {
            assert!(resumed, "the client took its detached session back");
            assert_eq!(conn, first_conn);
        }
        _ => unreachable!(),
    }
    let mut got = Vec::new();
    while got.len() < 5 {
        if let Event::Message { seq: Some(seq), .. } =
            wait_for(&mut events, |e| matches!(e, Event::Message { .. })).await
        {
            got.push(seq);
        }
    }
    assert_eq!(
        got,
        want[1..],
        "the messages published while the socket was down, once each"
    );
    assert!(client.reconnects() >= 1);
    let (_, metrics) = stack.admin_get("/metrics").await;
    assert_eq!(
        full_tls_handshakes(&metrics),
        full_before_the_cut,
        "the reconnect resumed its TLS session (so did the API's publishes):\n{metrics}"
    );
}

fn full_tls_handshakes(metrics: &str) -> f64 {
    metric_sum(
        metrics,
        "switchyard_gateway_tls_handshakes_total",
        &[("kind", "full")],
    )
}
