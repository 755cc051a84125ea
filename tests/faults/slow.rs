//! Slow consumers (PROTOCOL §4): while a room gets a steady load, some of its clients
//! stop reading for a while. Their event buffers fill, then their sockets, then the
//! worker's queue for them: the worker drops the queued copies and feeds them from the
//! store at their own pace. Once they read again they must have everything, in order
//! (or, past the retained history, a 4008 and a resubscription with `recovered: false`,
//! which the checker accounts for).
//!
//! An in-process stack on NATS (workers `s1`, `s2`): its workers' counters show that
//! the slow path ran (`slow_consumer_drops`), which a process mesh cannot.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_testkit::{NatsServer, Stack};
use tokio::time::{sleep, Instant};

use crate::load::{InProcess, Load, LoadOptions};
use crate::scale::Scale;
use crate::{report, Row, CATCH_UP};

const PHASE: Duration = Duration::from_secs(30);
/// Events a client buffers before it stops reading its socket.
const EVENTS_CAPACITY: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_get_everything_once_they_read_again() {
    let scale = Scale::get();
    let rounds = scale.pick(2, 4);
    // Each pause lasts at least `pause`; it goes on (up to `longest`) until the
    // workers have dropped queued copies for as many clients as stopped reading: on a
    // busy machine the room's rate, and so the time to fill the buffers, varies.
    let pause = scale.pick(Duration::from_secs(6), Duration::from_secs(15));
    let longest = Duration::from_secs(30);
    // A quarter of the clients stops reading each round.
    let share = 4;

    let nats = NatsServer::start().await;
    let stack = Stack::start_nats(&nats.url(), "s", |o| {
        o.workers = 2;
        o.worker.outbox_capacity = 64;
    })
    .await;
    let endpoint = InProcess {
        stack: &stack,
        via: None,
    };
    let mut options = LoadOptions::new(&endpoint, "feed");
    // Few clients, large messages: a client and its socket buffer megabytes, and the
    // pause must outlast them for the worker's queue to overflow.
    options.clients = scale.pick(24, 100);
    options.publishers = 2;
    options.interval = scale.pick(Duration::from_millis(40), Duration::from_millis(80));
    options.payload = 32 * 1024;
    options.events_capacity = EVENTS_CAPACITY;
    let options = options.publishing_for((pause + PHASE) * rounds as u32);
    let (clients, publishers) = (options.clients, options.publishers);
    let mut load = Load::start(&endpoint, options).await;
    load.wait_more_acked(20, PHASE).await;
    let began = Instant::now();

    let drops = || -> u64 {
        stack
            .dev
            .workers
            .iter()
            .map(|w| w.stats().slow_consumer_drops.load(Ordering::Relaxed))
            .sum()
    };
    let readers: Vec<usize> = (publishers..clients).collect();
    let mut paused = 0;
    let mut lengths = Vec::new();
    for round in 0..rounds {
        let slow: Vec<usize> = readers
            .iter()
            .copied()
            .filter(|i| i % share == round % share)
            .collect();
        paused += slow.len();
        let (from, drops_before) = (Instant::now(), drops());
        load.pause_reading(&slow, longest);
        sleep(pause).await;
        while drops() < drops_before + slow.len() as u64 && from.elapsed() < longest {
            sleep(Duration::from_millis(100)).await;
        }
        load.resume_reading(&slow);
        lengths.push(from.elapsed().as_secs());
        load.wait_more_acked(20, PHASE).await;
    }
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP * 2).await;
    let sum = |counter: fn(&switchyard_worker::stats::Stats) -> u64| -> u64 {
        stack.dev.workers.iter().map(|w| counter(w.stats())).sum()
    };
    let drops = drops();
    let catch_ups = sum(|s| s.catch_ups.load(Ordering::Relaxed));
    let replayed = sum(|s| s.replayed.load(Ordering::Relaxed));
    let closes = sum(|s| s.slow_consumer_closes.load(Ordering::Relaxed));
    let lost = load.disconnects_since(began);
    let not_recovered: usize = (0..load.len()).map(|i| load.log(i).not_recovered).sum();
    report(
        "slow consumers",
        &verdict,
        &format!(
            "{rounds} rounds, {paused} client pauses of {lengths:?} s; worker counters: {drops} queued copies dropped, {catch_ups} catch-ups from the store ({replayed} messages), {closes} closed 4008; {} sessions lost {lost:?}; {not_recovered} not recovered; caught up {:?} after the last publish; {published:?}",
            lost.len(),
            stopped.elapsed()
        ),
    );
    Row {
        scenario: "slow consumers: a quarter of the clients stop reading",
        test: "slow::",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!(
            "{paused} reader pauses of {lengths:?} s; {catch_ups} catch-ups from the store, {closes} × 4008"
        ),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert!(
        drops > 0 && catch_ups > 0,
        "no worker queue filled ({drops} drops, {catch_ups} catch-ups): the test proves nothing"
    );
    load.close().await;
}
