//! The agent's two jobs: hold connections (subscribe, count, drop and reconnect on
//! command) and churn them (connect, subscribe, close, at a fixed rate).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fastwebsockets::{Frame, OpCode};
use switchyard_protocol::{ClientFrame, RoomName};
use tokio::io::{BufReader, Lines, Stdin};
use tokio::sync::{watch, Semaphore};
use tokio::time::{sleep, timeout, Instant};

use super::reader::{now_ns, Catching, ConnState, Shards, SHARDS};
use super::{emit, Command, Event, Job};
use crate::bench::conn::{self, ConnError, Target, Ws};
use crate::bench::stats::Histogram;
use crate::token::{mint_hs256, TokenRequest};

/// Time allowed for `subscribed` after the upgrade.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest the agent waits for its connections to come up.
const CONNECT_PHASE_LIMIT: Duration = Duration::from_secs(600);
/// Longest a storm's reconnects may take before the agent reports.
const STORM_LIMIT: Duration = Duration::from_secs(120);
/// Reconnect attempts after a storm, with their backoff.
const STORM_RETRIES: u32 = 4;
/// Longest the agent waits for its connections to close at the end.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Most churn connections in flight; past it an attempt is skipped and counted.
const CHURN_IN_FLIGHT: usize = 2_000;

type Stdin_ = Lines<BufReader<Stdin>>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Control {
    Run,
    Drop { reconnect_at_ns: u64 },
    Stop,
}

/// What every connection task shares.
struct Ctx {
    target: Target,
    job: Job,
    shards: Shards,
    connect_gate: Semaphore,
    connected: AtomicU64,
    failed: AtomicU64,
    /// Storms.
    reconnected: AtomicU64,
    storm_failed: AtomicU64,
    retries: AtomicU64,
    storm_done: AtomicU64,
    closed: AtomicU64,
    errors: Mutex<HashMap<String, u64>>,
}

impl Ctx {
    fn error(&self, err: &ConnError) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        *errors.entry(err.kind()).or_default() += 1;
    }

    fn take_errors(&self) -> super::Errors {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        errors.drain().collect()
    }

    fn token(&self, n: u64, ttl: Duration) -> String {
        // Valid user ids and patterns: minting cannot fail.
        mint_hs256(
            self.job.secret.as_bytes(),
            &TokenRequest {
                user: format!("bench{n}"),
                sub: vec![">".into()],
                publish: Vec::new(),
                ttl,
            },
        )
        .expect("bench tokens mint")
    }

    fn source(&self, n: u64) -> Option<std::net::IpAddr> {
        (self.job.per_source > 0)
            .then(|| conn::source_ip(n, self.job.per_source, &self.target.addr))
            .flatten()
    }

    /// Connects connection `n` and subscribes (with `since` when resuming a room).
    async fn open(&self, n: u64, state: &mut ConnState, token: &str) -> Result<Ws, ConnError> {
        let mut ws = conn::connect(&self.target, self.source(n), token, &mut state.tls).await?;
        // The plan's rooms are valid names.
        let room = RoomName::parse(&self.job.rooms.room(n)).expect("bench room names are valid");
        let since = state.epoch.is_some().then_some(state.last_seq);
        let sub = ClientFrame::Sub {
            room,
            since,
            epoch: state.epoch.clone(),
            reference: None,
        }
        .encode();
        ws.write_frame(Frame::text(sub.into()))
            .await
            .map_err(|e| ConnError::Upgrade(std::io::Error::other(e.to_string())))?;
        state.subscribed = false;
        state.refused = false;
        let subscribed = async {
            while !state.subscribed {
                let frame = ws
                    .read_frame()
                    .await
                    .map_err(|e| ConnError::Upgrade(std::io::Error::other(e.to_string())))?;
                match frame.opcode {
                    OpCode::Text => state.on_text(&frame.payload, n, &self.shards),
                    OpCode::Close => return Err(ConnError::Refused(0)),
                    _ => {}
                }
                if state.refused {
                    return Err(ConnError::Refused(0));
                }
            }
            Ok(())
        };
        timeout(SUBSCRIBE_TIMEOUT, subscribed)
            .await
            .map_err(|_| ConnError::Timeout("subscribe"))??;
        Ok(ws)
    }
}

fn ctx(job: Job) -> anyhow::Result<Arc<Ctx>> {
    let target = Target::new(&job.url, job.ca_pem.as_deref())?;
    Ok(Arc::new(Ctx {
        target,
        shards: Shards::new(job.epoch_ns),
        connect_gate: Semaphore::new(job.concurrency.max(1)),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        reconnected: AtomicU64::new(0),
        storm_failed: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        storm_done: AtomicU64::new(0),
        closed: AtomicU64::new(0),
        errors: Mutex::new(HashMap::new()),
        job,
    }))
}

/// Emits a tick every second until the process ends.
fn start_ticker(ctx: Arc<Ctx>, ok: fn(&Ctx) -> (u64, u64)) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        every.tick().await;
        let mut lat = Histogram::new();
        loop {
            every.tick().await;
            let (mut deliveries, mut dups) = (0, 0);
            lat.reset();
            for i in 0..SHARDS as u64 {
                let mut shard = ctx.shards.get(i);
                deliveries += std::mem::take(&mut shard.tick_deliveries);
                dups += std::mem::take(&mut shard.tick_dups);
                lat.merge(&shard.tick_lat);
                shard.tick_lat.reset();
            }
            let (connected, failed) = ok(&ctx);
            emit(&Event::Tick {
                sec: now_ns(ctx.job.epoch_ns) / 1_000_000_000,
                connected,
                failed,
                deliveries,
                dups,
                lat: lat.to_sparse(),
            });
        }
    });
}

fn merged(ctx: &Ctx, pick: fn(&super::reader::Shard) -> &Histogram) -> Histogram {
    let mut h = Histogram::new();
    for i in 0..SHARDS as u64 {
        h.merge(pick(&ctx.shards.get(i)));
    }
    h
}

/// Holds `job.count` connections until told to stop.
pub(super) async fn hold(job: Job, mut stdin: Stdin_) -> anyhow::Result<()> {
    let ctx = ctx(job)?;
    let (control, watch_rx) = watch::channel(Control::Run);
    start_ticker(ctx.clone(), |c| {
        (
            c.connected.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
        )
    });
    let ttl = Duration::from_secs(24 * 3600);
    for n in ctx.job.first..ctx.job.first + ctx.job.count {
        let ctx = ctx.clone();
        let rx = watch_rx.clone();
        tokio::spawn(async move { connection(ctx, n, rx, ttl).await });
    }
    let count = ctx.job.count;
    let up = |c: &Ctx| c.connected.load(Ordering::Relaxed) + c.failed.load(Ordering::Relaxed);
    let started = Instant::now();
    while up(&ctx) < count && started.elapsed() < CONNECT_PHASE_LIMIT {
        sleep(Duration::from_millis(20)).await;
    }
    emit(&Event::Ready {
        connected: ctx.connected.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed),
        connect: merged(&ctx, |s| &s.connect).to_sparse(),
        errors: ctx.take_errors(),
    });
    loop {
        let command = match stdin.next_line().await {
            Ok(Some(line)) => serde_json::from_str::<Command>(&line)?,
            // The bench is gone: stop.
            Ok(None) | Err(_) => Command::Stop,
        };
        match command {
            Command::Drop { reconnect_at_ns } => {
                ctx.storm_done.store(0, Ordering::Relaxed);
                let alive = ctx.connected.load(Ordering::Relaxed);
                let _ = control.send(Control::Drop { reconnect_at_ns });
                let started = Instant::now();
                while ctx.storm_done.load(Ordering::Relaxed) < alive
                    && started.elapsed() < STORM_LIMIT
                {
                    sleep(Duration::from_millis(20)).await;
                }
                // Whatever is still catching up after the limit counts as not caught up.
                let (mut replayed, mut caught_up) = (0, 0);
                for i in 0..SHARDS as u64 {
                    let mut shard = ctx.shards.get(i);
                    replayed += std::mem::take(&mut shard.replayed);
                    caught_up += std::mem::take(&mut shard.caught_up);
                }
                emit(&Event::Stormed {
                    reconnected: ctx.reconnected.swap(0, Ordering::Relaxed),
                    failed: ctx.storm_failed.swap(0, Ordering::Relaxed),
                    retries: ctx.retries.swap(0, Ordering::Relaxed),
                    replayed,
                    caught_up,
                    from_storm: merged(&ctx, |s| &s.from_storm).to_sparse(),
                    from_attempt: merged(&ctx, |s| &s.from_attempt).to_sparse(),
                    errors: ctx.take_errors(),
                });
            }
            Command::Stop => {
                let alive = ctx.connected.load(Ordering::Relaxed);
                let _ = control.send(Control::Stop);
                let started = Instant::now();
                while ctx.closed.load(Ordering::Relaxed) < alive && started.elapsed() < STOP_LIMIT {
                    sleep(Duration::from_millis(20)).await;
                }
                let (mut deliveries, mut dups) = (0, 0);
                for i in 0..SHARDS as u64 {
                    let shard = ctx.shards.get(i);
                    deliveries += shard.deliveries;
                    dups += shard.dups;
                }
                emit(&Event::Done {
                    deliveries,
                    dups,
                    lat: merged(&ctx, |s| &s.lat).to_sparse(),
                    lat_sched: merged(&ctx, |s| &s.lat_sched).to_sparse(),
                });
                return Ok(());
            }
        }
    }
}

/// One held connection: connect and subscribe, read until told otherwise.
async fn connection(ctx: Arc<Ctx>, n: u64, mut control: watch::Receiver<Control>, ttl: Duration) {
    let token = ctx.token(n, ttl);
    let mut state = ConnState::default();
    let opened = {
        let _permit = ctx.connect_gate.acquire().await;
        let started = now_ns(ctx.job.epoch_ns);
        let opened = ctx.open(n, &mut state, &token).await;
        if opened.is_ok() {
            let took = now_ns(ctx.job.epoch_ns).saturating_sub(started);
            ctx.shards.get(n).connect.record(took);
        }
        opened
    };
    let mut ws = match opened {
        Ok(ws) => {
            ctx.connected.fetch_add(1, Ordering::Relaxed);
            ws
        }
        Err(err) => {
            ctx.error(&err);
            ctx.failed.fetch_add(1, Ordering::Relaxed);
            return;
        }
    };
    loop {
        // Racing `read_frame` is safe here only because a control change ends this
        // socket: it is dropped or closed, never read again.
        let frame = tokio::select! {
            biased;
            changed = control.changed() => {
                let order = if changed.is_ok() { *control.borrow_and_update() } else { Control::Stop };
                match order {
                    Control::Run => continue,
                    Control::Stop => {
                        let close = ws.write_frame(Frame::close(1000, b""));
                        let _ = timeout(Duration::from_secs(1), close).await;
                        ctx.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Control::Drop { reconnect_at_ns } => {
                        // Dropped without a close frame: the server detaches the session.
                        drop(ws);
                        match storm_reconnect(&ctx, n, &mut state, &token, reconnect_at_ns).await {
                            Some(new) => { ws = new; continue; }
                            None => {
                                ctx.storm_done.fetch_add(1, Ordering::Relaxed);
                                ctx.closed.fetch_add(1, Ordering::Relaxed);
                                wait_stop(&mut control).await;
                                return;
                            }
                        }
                    }
                }
            }
            frame = ws.read_frame() => frame,
        };
        match frame {
            Ok(frame) if frame.opcode == OpCode::Text => {
                state.on_text(&frame.payload, n, &ctx.shards);
                if state.catching.is_none() && state.subscribed {
                    // Counted once per storm, when caught up.
                    mark_storm_done(&ctx, &mut state);
                }
            }
            Ok(frame) if frame.opcode == OpCode::Close => break,
            Ok(_) => {}
            Err(_) => break,
        }
    }
    // Lost by the server's doing: counted as closed, then wait for the end.
    ctx.closed.fetch_add(1, Ordering::Relaxed);
    wait_stop(&mut control).await;
}

async fn wait_stop(control: &mut watch::Receiver<Control>) {
    while control.changed().await.is_ok() {
        if *control.borrow() == Control::Stop {
            return;
        }
    }
}

/// A storm's reconnect is done once: when its connection caught up (or failed).
fn mark_storm_done(ctx: &Ctx, state: &mut ConnState) {
    if state.storm_pending {
        state.storm_pending = false;
        ctx.storm_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Waits for the storm's moment, reconnects with `since` (retrying with backoff).
async fn storm_reconnect(
    ctx: &Ctx,
    n: u64,
    state: &mut ConnState,
    token: &str,
    reconnect_at_ns: u64,
) -> Option<Ws> {
    let now = now_ns(ctx.job.epoch_ns);
    sleep(Duration::from_nanos(reconnect_at_ns.saturating_sub(now))).await;
    for attempt in 0..=STORM_RETRIES {
        if attempt > 0 {
            ctx.retries.fetch_add(1, Ordering::Relaxed);
            let backoff = Duration::from_millis(500 << (attempt - 1));
            // Spread by connection, as jitter would.
            sleep(backoff.mul_f64(0.5 + (n % 100) as f64 / 200.0)).await;
        }
        let _permit = ctx.connect_gate.acquire().await;
        state.catching = Some(Catching {
            storm_ns: reconnect_at_ns,
            attempt_ns: now_ns(ctx.job.epoch_ns),
            target: None,
        });
        match ctx.open(n, state, token).await {
            Ok(ws) => {
                ctx.reconnected.fetch_add(1, Ordering::Relaxed);
                // Pending until caught up; `on_text` clears `catching` then.
                state.storm_pending = true;
                if state.catching.is_none() {
                    mark_storm_done(ctx, state);
                }
                return Some(ws);
            }
            Err(err) => ctx.error(&err),
        }
    }
    state.catching = None;
    ctx.storm_failed.fetch_add(1, Ordering::Relaxed);
    None
}

/// Churns: `job.churn_rate` connects per second for `job.duration_ms`, each one
/// subscribing, then closing. Reports `churned`, then waits for `stop`.
pub(super) async fn churn(job: Job, mut stdin: Stdin_) -> anyhow::Result<()> {
    let ctx = ctx(job)?;
    start_ticker(ctx.clone(), |c| {
        (
            c.connected.load(Ordering::Relaxed),
            c.failed.load(Ordering::Relaxed),
        )
    });
    let in_flight = Arc::new(Semaphore::new(CHURN_IN_FLIGHT));
    let ttl = Duration::from_secs(3600);
    let interval = Duration::from_secs_f64(1.0 / ctx.job.churn_rate.max(0.001));
    let duration = Duration::from_millis(ctx.job.duration_ms);
    let started = Instant::now();
    let (mut attempts, mut skipped) = (0u64, 0u64);
    let token = ctx.token(ctx.job.first, ttl);
    while started.elapsed() < duration {
        tokio::time::sleep_until(started + interval.mul_f64(attempts as f64)).await;
        let n = ctx.job.first + attempts;
        attempts += 1;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            skipped += 1;
            continue;
        };
        let ctx = ctx.clone();
        let token = token.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut state = ConnState::default();
            let t0 = now_ns(ctx.job.epoch_ns);
            match ctx.open(n, &mut state, &token).await {
                Ok(mut ws) => {
                    ctx.shards
                        .get(n)
                        .connect
                        .record(now_ns(ctx.job.epoch_ns).saturating_sub(t0));
                    ctx.connected.fetch_add(1, Ordering::Relaxed);
                    let close = ws.write_frame(Frame::close(1000, b""));
                    let _ = timeout(Duration::from_secs(1), close).await;
                }
                Err(err) => {
                    ctx.error(&err);
                    ctx.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    // Let the last attempts finish (each is bounded by its phase timeouts).
    let _ = timeout(
        Duration::from_secs(40),
        in_flight.acquire_many(CHURN_IN_FLIGHT as u32),
    )
    .await;
    emit(&Event::Churned {
        attempts,
        ok: ctx.connected.load(Ordering::Relaxed),
        failed: ctx.failed.load(Ordering::Relaxed),
        skipped,
        connect: merged(&ctx, |s| &s.connect).to_sparse(),
        errors: ctx.take_errors(),
    });
    while let Ok(Some(line)) = stdin.next_line().await {
        if matches!(serde_json::from_str(&line), Ok(Command::Stop)) {
            break;
        }
    }
    emit(&Event::Done {
        deliveries: 0,
        dups: 0,
        lat: Default::default(),
        lat_sched: Default::default(),
    });
    Ok(())
}
