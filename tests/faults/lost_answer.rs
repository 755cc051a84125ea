//! A subscription's answer under faults: the answer lost with the socket, and a refusal
//! while the broker is down. `Client::subscribe` promises an answer
//! (`Event::Subscribed` or `Event::Error`), and an `unavailable` refusal says
//! "subscribe again", which must then be possible.
//!
//! Found by the large-scale runs (RELIABILITY.md): a short heartbeat on a saturated
//! machine cut sessions while a thousand clients subscribed (`pause.rs`), and store
//! reads timing out during a storm of two thousand refused resubscriptions (`storm.rs`).

use std::time::Duration;

use switchyard_client::{Client, ClientOptions, Event};
use switchyard_protocol::ErrorCode;
use switchyard_testkit::proxy::Proxy;
use switchyard_testkit::Stack;
use tokio::sync::mpsc::Receiver;
use tokio::time::{sleep, timeout, Instant};

use crate::load::{BACKOFF_MAX, BACKOFF_MIN};

const ROOM: &str = "answers";
const WAIT: Duration = Duration::from_secs(5);
const SESSION_TTL: Duration = Duration::from_secs(1);

/// The next event that `pick` takes, skipping others; `None` after `wait`.
async fn next<T>(
    events: &mut Receiver<Event>,
    wait: Duration,
    mut pick: impl FnMut(&Event) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(event)) => {
                if let Some(found) = pick(&event) {
                    return Some(found);
                }
            }
            Ok(None) | Err(_) => return None,
        }
    }
}

fn connected(event: &Event) -> Option<bool> {
    match event {
        Event::Connected { resumed, .. } => Some(*resumed),
        _ => None,
    }
}

/// The server takes a `sub` and the connection dies before its answer reaches the
/// client (the proxy holds the server's bytes, then cuts). The client resumes its
/// session and sends the `sub` again; the server, which holds it, answers
/// `already_subscribed`. The client must still tell its user `subscribed`, and keep
/// the subscription's point across a later fresh reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_answered_as_the_socket_died_is_confirmed_and_keeps_its_point() {
    let stack = Stack::start_with(|o| o.worker.session_ttl = SESSION_TTL).await;
    let proxy = Proxy::start(stack.dev.addr).await;
    let token = stack.token("u", &[ROOM], &[]);
    let mut connect = stack.options("/ws", &token);
    connect.url = stack.url_via(proxy.addr, "/ws");
    let mut options = ClientOptions::new(connect);
    options.backoff_min = BACKOFF_MIN;
    options.backoff_max = BACKOFF_MAX;
    let (client, mut events) = Client::start(options);
    assert_eq!(next(&mut events, WAIT, connected).await, Some(false));

    // The server takes the `sub` (its room exists on the worker); its answer is held.
    proxy.hold_replies();
    client.subscribe(ROOM).await.expect("subscribe command");
    let worker = &stack.dev.workers[0];
    let deadline = Instant::now() + WAIT;
    while worker.rooms() == 0 {
        assert!(Instant::now() < deadline, "the worker never took the sub");
        sleep(Duration::from_millis(10)).await;
    }
    proxy.cut();
    proxy.pass_replies();
    assert_eq!(
        next(&mut events, WAIT, connected).await,
        Some(true),
        "the session resumes"
    );
    let answer = next(&mut events, WAIT, |e| match e {
        Event::Subscribed { seq, .. } => Some(Ok(*seq)),
        Event::Error { code, .. } => Some(Err(format!("{code:?}"))),
        _ => None,
    })
    .await;

    // Away longer than the session lives, while the room gets messages: the fresh
    // session must resubscribe from the subscription point, not live-only.
    proxy.hold();
    sleep(SESSION_TTL * 2).await;
    let api = stack.api();
    for k in 0..3 {
        let res = api
            .post(
                "/api/v1/publish",
                &serde_json::json!({"room": ROOM, "data": k}),
            )
            .await;
        assert_eq!(res.status, 200, "{}", String::from_utf8_lossy(&res.body));
    }
    proxy.release();
    assert_eq!(next(&mut events, WAIT, connected).await, Some(false));
    let mut got = Vec::new();
    while let Some(seq) = next(&mut events, Duration::from_secs(2), |e| match e {
        Event::Message { seq, .. } => Some(*seq),
        _ => None,
    })
    .await
    {
        got.push(seq);
    }
    let _ = timeout(WAIT, client.close()).await;
    assert!(
        matches!(answer, Some(Ok(_))),
        "no answer to the sub after the resume: {answer:?}"
    );
    assert_eq!(
        got.len(),
        3,
        "messages published while away after the subscription point: got {got:?}"
    );
}

/// The server refuses a `sub` with `unavailable` ("subscribe again") while the broker is
/// down; the client sends it again after a backoff, and once the broker is back the
/// subscription is made without the user asking twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_refused_as_unavailable_is_made_again_when_the_broker_is_back() {
    let stack = Stack::start().await;
    let token = stack.token("u", &[ROOM], &[ROOM]);
    let mut options = ClientOptions::new(stack.options("/ws", &token));
    options.backoff_min = BACKOFF_MIN;
    options.backoff_max = BACKOFF_MAX;
    let (client, mut events) = Client::start(options);
    assert_eq!(next(&mut events, WAIT, connected).await, Some(false));
    let memory = stack.dev.memory.as_ref().expect("the memory engine");

    memory.set_down(true);
    client.subscribe(ROOM).await.expect("subscribe command");
    let refused = next(&mut events, WAIT, |e| match e {
        Event::Error { code, room, .. } => Some(format!("{code:?} in {room:?}")),
        Event::Subscribed { .. } => Some("subscribed".into()),
        _ => None,
    })
    .await;
    assert_eq!(refused.as_deref(), Some("Unavailable in Some(\"answers\")"));

    // Retries while the broker is still down are refused the same way.
    sleep(BACKOFF_MAX * 2).await;
    memory.set_down(false);
    let answer = next(&mut events, WAIT, |e| match e {
        Event::Subscribed { .. } => Some(Ok(())),
        Event::Error {
            code: ErrorCode::Unavailable,
            ..
        } => None,
        Event::Error { code, .. } => Some(Err(format!("{code:?}"))),
        _ => None,
    })
    .await;
    let _ = timeout(WAIT, client.close()).await;
    assert_eq!(
        answer,
        Some(Ok(())),
        "subscribing again after `unavailable` got no answer"
    );
}
