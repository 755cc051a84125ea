//! PROTOCOL §4: a client that stops reading loses nothing stored. Its outbox fills, fan-out
//! drops its copies and it catches up from the store at its own pace.

use std::sync::atomic::Ordering;

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::{expect, Stack};

use crate::{next_msg, send, subscribe};

#[tokio::test]
async fn a_client_that_stops_reading_gets_every_message_in_order_once_it_reads_again() {
    const MESSAGES: usize = 3000;
    let stack = Stack::start_with(|o| {
        o.worker.outbox_capacity = 8;
        o.worker.publish_rate = 100_000;
        o.worker.publish_burst = 100_000;
        o.memory.history_size = 10_000;
    })
    .await;
    let (mut slow, _) = stack.connect(&stack.token("slow", &["feed"], &[])).await;
    subscribe(&mut slow, "feed").await;
    // One publisher pipelines every publish, then reads the acks: the slow client's
    // socket buffers fill long before it reads.
    let (mut publisher, _) = stack.connect(&stack.token("pub", &[], &["feed"])).await;
    let payload = format!("\"{}\"", "x".repeat(10_000));
    for i in 0..MESSAGES {
        let frame = format!(r#"{{"op":"pub","room":"feed","data":{payload},"ref":"{i}"}}"#);
        send(&publisher, &frame).await;
    }
    let mut seqs = vec![0; MESSAGES];
    for _ in 0..MESSAGES {
        let (index, seq) = expect::until(&mut publisher, |f| match f {
            ServerFrame::Ack {
                reference: Some(r),
                seq: Some(seq),
            } => Some((r.parse::<usize>().expect("numeric ref"), *seq)),
            ServerFrame::Error { code, .. } => panic!("publish refused: {code:?}"),
            _ => None,
        })
        .await;
        seqs[index] = seq;
    }
    let worker = &stack.dev.workers[0];
    assert!(
        worker.stats().slow_consumer_drops.load(Ordering::Relaxed) > 0,
        "the outbox never filled: the test proves nothing"
    );
    let mut got = Vec::with_capacity(MESSAGES);
    while got.len() < MESSAGES {
        let (seq, _, data) = next_msg(&mut slow, "feed").await;
        assert_eq!(data, payload);
        got.push(seq.unwrap());
    }
    assert_eq!(got, seqs, "every message, in order, exactly once");
    assert!(worker.stats().catch_ups.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn a_client_that_falls_behind_retained_history_is_closed_with_4008() {
    let stack = Stack::start_with(|o| {
        o.worker.outbox_capacity = 4;
        o.memory.history_size = 50;
        // A room window larger than the store would keep feeding it: keep it smaller.
        o.worker.room_window = 8;
    })
    .await;
    let (mut slow, _) = stack.connect(&stack.token("slow", &["feed"], &[])).await;
    subscribe(&mut slow, "feed").await;
    let api = stack.api();
    let big = "y".repeat(20_000);
    for _ in 0..400 {
        api.publish("feed", big.clone().into()).await;
    }
    assert_eq!(expect::closed(&mut slow).await, Some(4008));
}

/// The room's live feed itself loses messages (a one-slot broadcast here; a NATS
/// reconnect in a mesh): the room fills the gap from the store once, and every member
/// sees an unbroken, exactly-once sequence.
#[tokio::test]
async fn a_lossy_live_feed_is_filled_once_per_room() {
    const MESSAGES: usize = 2000;
    let stack = Stack::start_with(|o| {
        o.memory.live_capacity = 1;
        o.memory.history_size = 10_000;
        o.worker.outbox_capacity = 4096;
        o.worker.publish_rate = 100_000;
        o.worker.publish_burst = 100_000;
    })
    .await;
    let mut readers = Vec::new();
    for i in 0..3 {
        let (mut conn, _) = stack
            .connect(&stack.token(&format!("r{i}"), &["feed"], &[]))
            .await;
        subscribe(&mut conn, "feed").await;
        readers.push(conn);
    }
    let (mut publisher, _) = stack.connect(&stack.token("pub", &[], &["feed"])).await;
    for i in 0..MESSAGES {
        send(
            &publisher,
            &format!(r#"{{"op":"pub","room":"feed","data":{i},"ref":"{i}"}}"#),
        )
        .await;
    }
    let mut seqs = vec![0; MESSAGES];
    for _ in 0..MESSAGES {
        let (index, seq) = expect::until(&mut publisher, |f| match f {
            ServerFrame::Ack {
                reference: Some(r),
                seq: Some(seq),
            } => Some((r.parse::<usize>().expect("numeric ref"), *seq)),
            _ => None,
        })
        .await;
        seqs[index] = seq;
    }
    for reader in &mut readers {
        let mut got = Vec::with_capacity(MESSAGES);
        while got.len() < MESSAGES {
            got.push(next_msg(reader, "feed").await.0.unwrap());
        }
        assert_eq!(got, seqs, "every message, in order, exactly once");
    }
    let stats = stack.dev.workers[0].stats();
    assert!(
        stats.room_fills.load(Ordering::Relaxed) > 0,
        "the feed never lagged: the test proves nothing"
    );
    assert_eq!(
        stats.catch_ups.load(Ordering::Relaxed),
        0,
        "members did not have to read the store themselves"
    );
}

/// The live feed loses a room's last message (a NATS cluster republishes before a new
/// subscription's interest reached it): no later message will reveal the gap, so the
/// room's own head check must find it.
#[tokio::test]
async fn a_last_message_the_live_feed_lost_is_still_delivered() {
    let stack = Stack::start().await;
    let (mut reader, _) = stack.connect(&stack.token("r", &["feed"], &[])).await;
    subscribe(&mut reader, "feed").await;
    stack.dev.memory.as_ref().unwrap().lose_live(1);
    let api = stack.api();
    let seq = api
        .post(
            "/api/v1/publish",
            &serde_json::json!({"room": "feed", "data": "last"}),
        )
        .await
        .json()["seq"]
        .as_u64()
        .unwrap();
    assert_eq!(
        next_msg(&mut reader, "feed").await,
        (Some(seq), "$server".into(), "\"last\"".into())
    );
    assert!(
        stack.dev.workers[0]
            .stats()
            .room_fills
            .load(Ordering::Relaxed)
            > 0
    );
}

/// A socket that takes nothing for `write_timeout` is given up (its session is kept for
/// a resume): the writer does not wait on it forever.
#[tokio::test]
async fn a_socket_that_takes_nothing_for_the_write_timeout_is_dropped() {
    let stack = Stack::start_with(|o| {
        o.worker.heartbeat = std::time::Duration::from_secs(1);
        o.worker.write_timeout = Some(std::time::Duration::from_secs(1));
        o.memory.history_size = 10_000;
    })
    .await;
    let (mut stuck, _) = stack.connect(&stack.token("stuck", &["feed"], &[])).await;
    subscribe(&mut stuck, "feed").await;
    let worker = &stack.dev.workers[0];
    let timeouts = || worker.stats().write_timeouts.load(Ordering::Relaxed);
    // `stuck` never reads again: once the socket buffers between it and the worker are
    // full, the worker's write waits, and after a second gives the socket up. (Silence
    // alone would also drop it, but only from the heartbeat, which a writer waiting on
    // its socket never reaches: the counter tells the two apart.)
    let api = stack.api();
    let big = "z".repeat(100_000);
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while timeouts() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no write timed out in 30 s: the worker waits on a socket that takes nothing"
        );
        for _ in 0..20 {
            api.publish("feed", big.clone().into()).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The connection's task ends just after counting the timeout.
    let given_up = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while worker.load().conns > 0 {
        assert!(
            tokio::time::Instant::now() < given_up,
            "a write timed out but the worker still holds the socket"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    drop(stuck);
}
