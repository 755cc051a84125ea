//! The checker catches a broken build. A worker built to skip gap fill on purpose
//! (`fault_injection.skip_gap_fill`) delivers past the holes of a lossy live feed; the
//! same run that the checker passes with gap fill on must fail with it off, naming the
//! missing messages. Without this, a clean verdict from the other scenarios could mean
//! a checker that sees nothing.
//!
//! The run is deterministic and in-process: the memory engine with a one-slot live feed
//! (any burst overflows it, as a NATS reconnect would), subscribers on the load
//! driver's reconnecting clients, and one publisher that pipelines every publish.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_protocol::frame::ServerFrame;
use switchyard_testkit::checker::Verdict;
use switchyard_testkit::{expect, Stack};

use crate::load::{InProcess, Load, LoadOptions};
use crate::{report, CATCH_UP};

const MESSAGES: usize = 2000;
const SUBSCRIBERS: usize = 4;
const ROOM: &str = "feed";

/// Publishes [`MESSAGES`] at once into a room whose live feed holds one message, with
/// gap fill on or off, and returns the verdict on what the subscribers got and how
/// many gaps the worker filled.
async fn lossy_feed(skip_gap_fill: bool) -> (Verdict, u64) {
    let stack = Stack::start_with(|o| {
        o.memory.live_capacity = 1;
        o.memory.history_size = 10_000;
        o.worker.outbox_capacity = 4096;
        o.worker.publish_rate = 100_000;
        o.worker.publish_burst = 100_000;
        o.worker.fault_injection.skip_gap_fill = skip_gap_fill;
    })
    .await;
    let endpoint = InProcess {
        stack: &stack,
        via: None,
    };
    let mut options = LoadOptions::new(&endpoint, ROOM);
    options.clients = SUBSCRIBERS;
    options.publishers = 0;
    let load = Load::start(&endpoint, options).await;

    let (mut publisher, _) = stack.connect(&stack.token("pub", &[], &[ROOM])).await;
    for i in 0..MESSAGES {
        let frame = format!(r#"{{"op":"pub","room":"{ROOM}","data":{i},"ref":"{i}"}}"#);
        publisher
            .send_text(frame.as_bytes())
            .await
            .expect("pub sent");
    }
    for _ in 0..MESSAGES {
        let (reference, seq) = expect::until(&mut publisher, |f| match f {
            ServerFrame::Ack {
                reference: Some(r),
                seq: Some(seq),
            } => Some((r.to_string(), *seq)),
            ServerFrame::Error { code, .. } => panic!("publish refused: {code:?}"),
            _ => None,
        })
        .await;
        load.recorder.acked(ROOM, &format!("pub-{reference}"), seq);
    }
    // What is missing with gap fill off never comes: a short wait says so as well.
    let wait = if skip_gap_fill {
        Duration::from_secs(3)
    } else {
        CATCH_UP
    };
    let verdict = load.caught_up(wait).await;
    load.assert_clients_healthy();
    let fills = stack.dev.workers[0]
        .stats()
        .room_fills
        .load(Ordering::Relaxed);
    load.close().await;
    (verdict, fills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lossy_feed_with_gap_fill_passes_the_checker() {
    let (verdict, fills) = lossy_feed(false).await;
    report(
        "broken build, control (gap fill on)",
        &verdict,
        &format!("{fills} gaps filled"),
    );
    verdict.assert_clean();
    assert_eq!(verdict.acked, MESSAGES);
    assert_eq!(verdict.deliveries, MESSAGES * SUBSCRIBERS);
    assert!(fills > 0, "the feed never lagged: the test proves nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_fails_a_worker_that_skips_gap_fill() {
    let (verdict, fills) = lossy_feed(true).await;
    report(
        "broken build (skip_gap_fill)",
        &verdict,
        &format!("{fills} gaps filled"),
    );
    println!("[faults] the checker's report on the broken build:\n{verdict}");
    assert!(
        !verdict.is_clean() && verdict.missing > 0,
        "the checker passed a worker that skips gap fill:\n{verdict}"
    );
    assert!(
        verdict
            .violations
            .iter()
            .any(|v| v.contains("never delivered")),
        "the report names the missing messages:\n{verdict}"
    );
    assert_eq!(verdict.acked, MESSAGES);
}
