//! A reconnect storm: every subscriber's socket cut at once (a loopback proxy between
//! the clients and the gateway), held away while the room keeps getting messages (the
//! publishers connect around the proxy), then let through all at the same moment. Each
//! client resumes its session and catches up on what it missed.
//!
//! Reported, never asserted (targets belong to the bench): p50/p99 of the time from
//! each client's `welcome` to its delivery of the last seq acked at that moment, and
//! the workers' reads of stored history during the storm against the clients that
//! resumed (DESIGN "Durability": one read serves many clients resuming a room). The
//! stack is in-process on NATS (workers `s1`, `s2`), so its counters are readable;
//! the proxy connects from many loopback addresses, as a real crowd would, so that the
//! gateway's per-IP upgrade limit does not spread the storm out.

use std::sync::atomic::Ordering;
use std::time::Duration;

use switchyard_testkit::proxy::{Proxy, ProxyOptions};
use switchyard_testkit::{NatsServer, Stack};
use tokio::time::{sleep, Instant};

use crate::load::{InProcess, Load, LoadOptions};
use crate::scale::Scale;
use crate::{report, Row, CATCH_UP};

/// How long each step may take at the small scale; the large one has four times as
/// long (thousands of handshakes in one debug-built process).
const PHASE: Duration = Duration::from_secs(30);

/// The `q` quantile (0..=1) of sorted `times`.
fn quantile(times: &[Duration], q: f64) -> Duration {
    if times.is_empty() {
        return Duration::ZERO;
    }
    let at = ((times.len() - 1) as f64 * q).round() as usize;
    times[at]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_storm_of_every_client_loses_nothing() {
    let scale = Scale::get();
    let storms = scale.pick(1, 3);
    // Long enough for more to be missed than a session buffers (its outbox).
    let away = scale.pick(Duration::from_secs(3), Duration::from_secs(5));
    let phase = PHASE * scale.pick(1, 4);

    let nats = NatsServer::start().await;
    let stack = Stack::start_nats(&nats.url(), "s", |o| {
        o.workers = 2;
        // The storm measures catch-up, not history running out: at the large scale the
        // clients are away for longer than the default 1000 messages per room last
        // (falling past the retained history is `slow.rs`'s 4008 case).
        if let Some(nats) = o.nats.as_mut() {
            nats.max_msgs_per_subject = 100_000;
        }
    })
    .await;
    let proxy = Proxy::start_with(
        stack.dev.addr,
        ProxyOptions {
            spread_sources: true,
        },
    )
    .await;
    let endpoint = InProcess {
        stack: &stack,
        via: Some(proxy.addr),
    };
    let mut options = LoadOptions::new(&endpoint, "storm");
    options.clients = scale.pick(300, 1000);
    options.publishers = 2;
    options.interval = Duration::from_millis(10);
    options.direct_publishers = true;
    let options = options.publishing_for((away + phase) * storms as u32);
    let (clients, publishers) = (options.clients, options.publishers);
    let mut load = Load::start(&endpoint, options).await;
    load.wait_more_acked(100, phase).await;
    let began = Instant::now();

    let reads = || -> u64 {
        stack
            .dev
            .workers
            .iter()
            .map(|w| w.stats().store_reads.load(Ordering::Relaxed))
            .sum()
    };
    let resumed_count = || -> u64 {
        stack
            .dev
            .workers
            .iter()
            .map(|w| w.stats().sessions_resumed.load(Ordering::Relaxed))
            .sum()
    };
    let mut times = Vec::new();
    let mut storm_reads = 0;
    let mut resumed = 0;
    let mut steps = Vec::new();
    // The publishers connect around the proxy; every other client goes through it.
    let cut: Vec<usize> = (publishers..clients).collect();
    for _ in 0..storms {
        let (reads_before, resumed_before) = (reads(), resumed_count());
        let missed_from = load.recorder.acked_count();
        proxy.hold();
        sleep(away).await;
        let missed = load.recorder.acked_count() - missed_from;
        let released = Instant::now();
        proxy.release();
        let back = load.wait_reconnected(&cut, released, phase).await;
        // Each subscriber delivered what was acked when its new session began.
        load.wait_until("every subscriber caught up after the storm", phase, |l| {
            cut.iter()
                .all(|&i| l.log(i).catch_ups.iter().any(|(at, _)| *at >= released))
        })
        .await;
        let storm_times = load.catch_up_times(released);
        let storm_read = reads() - reads_before;
        let storm_resumed = resumed_count() - resumed_before;
        steps.push(format!(
            "{} clients away {away:?} missed {missed} messages, reconnected within {back:.1?}; welcome→caught up p50 {:?} p99 {:?} max {:?} ({} measured); {storm_read} store reads for {storm_resumed} resumed sessions",
            cut.len(),
            quantile(&storm_times, 0.5),
            quantile(&storm_times, 0.99),
            storm_times.last().copied().unwrap_or_default(),
            storm_times.len(),
        ));
        times.extend(storm_times);
        storm_reads += storm_read;
        resumed += storm_resumed;
        load.wait_more_acked(100, phase).await;
    }
    let published = load.stop_publishing().await;
    let stopped = Instant::now();
    let verdict = load.caught_up(CATCH_UP).await;
    times.sort();
    let (p50, p99) = (quantile(&times, 0.5), quantile(&times, 0.99));
    report(
        "reconnect storm",
        &verdict,
        &format!(
            "{steps:?}; caught up {:?} after the last publish; {published:?}",
            stopped.elapsed()
        ),
    );
    println!(
        "[faults] reconnect storm: welcome→caught up p50 {p50:?}, p99 {p99:?} over {} reconnects; {storm_reads} store reads for {resumed} resumed sessions",
        times.len()
    );
    Row {
        scenario: "reconnect storm: every subscriber cut at once",
        test: "storm::",
        clients,
        rate: published.rate(),
        duration: published.elapsed,
        faults: format!(
            "{storms} × all {} sockets cut, away {:.0}s; welcome→caught up p50 {} ms, p99 {} ms; {storm_reads} store reads for {resumed} resumed sessions",
            cut.len(),
            away.as_secs_f64(),
            p50.as_millis(),
            p99.as_millis()
        ),
    }
    .print(&verdict);
    verdict.assert_clean();
    load.assert_clients_healthy();
    assert!(
        load.connects_since(began) >= cut.len() * storms,
        "every subscriber reconnected at each storm"
    );
    // DESIGN "Durability": one read serves many readers. A storm of one room costs each
    // worker a few backfills of a few pages (measured: 3 to 14 reads for 298 sessions,
    // 13 for 2994), not a read per resumed client (803 for 298 before it was shared).
    assert!(
        storm_reads <= resumed / 10,
        "{storm_reads} store reads for {resumed} resumed sessions in {storms} storms: catch-up reads are not shared"
    );
    load.close().await;
}
