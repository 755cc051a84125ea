//! Load for a fault scenario: reconnecting clients subscribed to one room through a
//! gateway (a [`Mesh`]'s, or an in-process [`Stack`]'s, possibly through a proxy),
//! placed round-robin on chosen workers (sticky paths), some of them also publishing at
//! a steady bounded rate. Everything they see goes to a [`Recorder`]; connections, close
//! codes and catch-up times go to each client's [`ClientLog`]. A client can be told to
//! stop reading for a while ([`Load::pause_reading`]): a slow consumer.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_client::client::DEFAULT_EVENTS_CAPACITY;
use switchyard_client::{Client, ClientError, ClientOptions, ConnectOptions, Event};
use switchyard_protocol::error::ErrorCode;
use switchyard_testkit::checker::{Recorder, Verdict};
use switchyard_testkit::mesh::Mesh;
use switchyard_testkit::Stack;
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::scale::Scale;

/// Reconnect backoff of test clients: the protocol's 0.5 s..30 s, shortened so that a
/// scenario recovers in seconds (the schedule's shape is the client's own).
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one publish may wait for its ack before the publisher moves on.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);
/// How long every client has to be subscribed at the start, plus [`SUBSCRIBE_PER_CLIENT`]
/// per client.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(15);
const SUBSCRIBE_PER_CLIENT: Duration = Duration::from_millis(30);
const POLL: Duration = Duration::from_millis(20);

/// Where the load's clients connect.
pub(crate) trait Endpoint {
    /// The workers clients can be placed on (sticky paths `/ws/<id>/...`).
    fn worker_ids(&self) -> Vec<String>;
    /// A token for `user` with these scope patterns.
    fn token(&self, user: &str, sub: &[&str], publish: &[&str]) -> String;
    /// Options for `path`; `direct` bypasses any proxy in between.
    fn options(&self, path: &str, token: &str, direct: bool) -> ConnectOptions;
}

impl Endpoint for Mesh {
    fn worker_ids(&self) -> Vec<String> {
        Mesh::worker_ids(self)
    }

    fn token(&self, user: &str, sub: &[&str], publish: &[&str]) -> String {
        Mesh::token(self, user, sub, publish)
    }

    fn options(&self, path: &str, token: &str, _direct: bool) -> ConnectOptions {
        self.connect_options(path, token)
    }
}

/// An in-process stack (its gateway hands connections to its workers in-process),
/// reached directly or `via` a proxy.
pub(crate) struct InProcess<'a> {
    pub(crate) stack: &'a Stack,
    pub(crate) via: Option<SocketAddr>,
}

impl Endpoint for InProcess<'_> {
    fn worker_ids(&self) -> Vec<String> {
        self.stack
            .dev
            .workers
            .iter()
            .map(|w| w.id().to_string())
            .collect()
    }

    fn token(&self, user: &str, sub: &[&str], publish: &[&str]) -> String {
        self.stack.token(user, sub, publish)
    }

    fn options(&self, path: &str, token: &str, direct: bool) -> ConnectOptions {
        let mut options = self.stack.options(path, token);
        if let (Some(via), false) = (self.via, direct) {
            options.url = self.stack.url_via(via, path);
        }
        options
    }
}

#[derive(Debug, Clone)]
pub(crate) struct LoadOptions {
    pub(crate) room: String,
    /// Clients, all subscribed; client `i` is user `u<i>`.
    pub(crate) clients: usize,
    /// The first `publishers` clients also publish.
    pub(crate) publishers: usize,
    /// Workers to place clients on, round-robin (client `i` on `place[i % len]`).
    pub(crate) place: Vec<String>,
    /// Time between two publishes of one publisher.
    pub(crate) interval: Duration,
    /// Publishes per publisher at most.
    pub(crate) max_per_publisher: usize,
    /// After a refused publish, wait this long before the next one (a client backing
    /// off while the broker is `unavailable`); `None`: keep the steady rate.
    pub(crate) pause_after_refusal: Option<Duration>,
    /// Bytes of padding in each published message.
    pub(crate) payload: usize,
    /// Events each client buffers before it stops reading its socket (small for slow
    /// consumers: their socket then backs up soon after they stop reading).
    pub(crate) events_capacity: usize,
    /// Publishers connect around any proxy (they keep publishing while it is cut).
    pub(crate) direct_publishers: bool,
}

impl LoadOptions {
    pub(crate) fn new(endpoint: &impl Endpoint, room: &str) -> LoadOptions {
        LoadOptions {
            room: room.to_string(),
            clients: Scale::get().pick(12, 300),
            publishers: 2,
            place: endpoint.worker_ids(),
            interval: Duration::from_millis(40),
            max_per_publisher: 400,
            pause_after_refusal: None,
            payload: 0,
            events_capacity: DEFAULT_EVENTS_CAPACITY,
            direct_publishers: false,
        }
    }

    /// Enough publishes per publisher for `run` at the steady rate, twice over: the
    /// cap bounds a run whose stop never comes.
    pub(crate) fn publishing_for(mut self, run: Duration) -> LoadOptions {
        self.max_per_publisher = (2 * run.as_millis() / self.interval.as_millis().max(1))
            .try_into()
            .unwrap_or(usize::MAX);
        self
    }
}

/// What one client went through.
#[derive(Debug, Default)]
pub(crate) struct ClientLog {
    /// The worker of the current session; `None` while disconnected.
    pub(crate) worker: Option<String>,
    /// (when, worker, resumed) per `welcome`.
    pub(crate) connects: Vec<(Instant, String, bool)>,
    /// (when, close code) per lost session.
    pub(crate) disconnects: Vec<(Instant, Option<u16>)>,
    pub(crate) subscribed: usize,
    /// `subscribed` answers with `recovered: false`.
    pub(crate) not_recovered: usize,
    /// Messages per `from`.
    pub(crate) from: BTreeMap<String, usize>,
    pub(crate) errors: Vec<String>,
    /// Subscriptions refused as `unavailable` (and made again).
    pub(crate) refusals: usize,
    /// The client stopped for good (it should not).
    pub(crate) closed: Option<Option<u16>>,
    /// The highest seq delivered.
    pub(crate) max_seq: Option<u64>,
    /// Since the last `welcome`: when it came and the last seq acked then, until a
    /// delivery reaches that seq.
    pending_catch_up: Option<(Instant, u64)>,
    /// Per `welcome` that had something to catch up on: when it came, and how long the
    /// client took from it to deliver the last seq acked at that moment.
    pub(crate) catch_ups: Vec<(Instant, Duration)>,
    /// The reader does not take events before this instant.
    paused_until: Option<Instant>,
    /// Times the reader paused.
    pub(crate) pauses: usize,
}

/// What the publishers did.
#[derive(Debug, Default, Clone)]
pub(crate) struct PublishStats {
    pub(crate) acked: usize,
    /// Publishes refused, by error (an `unavailable` while NATS is away).
    pub(crate) refused: BTreeMap<String, usize>,
    /// Publishes not acknowledged within [`PUBLISH_WAIT`].
    pub(crate) timed_out: usize,
    /// From the first publish to the stop.
    pub(crate) elapsed: Duration,
}

impl PublishStats {
    /// Acknowledged messages per second.
    pub(crate) fn rate(&self) -> f64 {
        self.acked as f64 / self.elapsed.as_secs_f64().max(0.001)
    }
}

pub(crate) struct Load {
    pub(crate) recorder: Recorder,
    pub(crate) began: Instant,
    clients: Vec<Client>,
    logs: Vec<Arc<Mutex<ClientLog>>>,
    stop: CancellationToken,
    publishers: Vec<JoinHandle<PublishStats>>,
    readers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients, waits until each is subscribed, then starts publishing.
    pub(crate) async fn start(endpoint: &impl Endpoint, options: LoadOptions) -> Load {
        let recorder = Recorder::new();
        let mut load = Load {
            recorder: recorder.clone(),
            began: Instant::now(),
            clients: Vec::new(),
            logs: Vec::new(),
            stop: CancellationToken::new(),
            publishers: Vec::new(),
            readers: Vec::new(),
        };
        for i in 0..options.clients {
            let user = format!("u{i}");
            let token = endpoint.token(&user, &[&options.room], &[&options.room]);
            let worker = &options.place[i % options.place.len()];
            let direct = options.direct_publishers && i < options.publishers;
            let mut client_options =
                ClientOptions::new(endpoint.options(&format!("/ws/{worker}/c{i}"), &token, direct));
            client_options.backoff_min = BACKOFF_MIN;
            client_options.backoff_max = BACKOFF_MAX;
            client_options.events_capacity = options.events_capacity;
            let (client, events) = Client::start(client_options);
            let log = Arc::new(Mutex::new(ClientLog::default()));
            load.readers.push(tokio::spawn(read(
                client.clone(),
                user,
                options.room.clone(),
                events,
                recorder.clone(),
                log.clone(),
            )));
            client
                .subscribe(&options.room)
                .await
                .expect("subscribe command");
            load.clients.push(client);
            load.logs.push(log);
        }
        let wait = SUBSCRIBE_WAIT + SUBSCRIBE_PER_CLIENT * options.clients as u32;
        load.wait_until("every client subscribed", wait, |l| {
            (0..l.logs.len()).all(|i| l.log(i).subscribed > 0)
        })
        .await;
        for i in 0..options.publishers.min(options.clients) {
            load.publishers.push(tokio::spawn(publish(
                load.clients[i].clone(),
                format!("u{i}"),
                options.clone(),
                recorder.clone(),
                load.stop.clone(),
            )));
        }
        load
    }

    pub(crate) fn log(&self, client: usize) -> MutexGuard<'_, ClientLog> {
        lock(&self.logs[client])
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// The clients whose current session is on `worker`.
    pub(crate) fn clients_on(&self, worker: &str) -> Vec<usize> {
        (0..self.len())
            .filter(|&i| self.log(i).worker.as_deref() == Some(worker))
            .collect()
    }

    /// How many clients each worker holds now.
    pub(crate) fn placement(&self) -> BTreeMap<String, usize> {
        let mut placement = BTreeMap::new();
        for i in 0..self.len() {
            let worker = self.log(i).worker.clone().unwrap_or_else(|| "-".into());
            *placement.entry(worker).or_default() += 1;
        }
        placement
    }

    /// Lost sessions (with close code) over every client since `since`.
    pub(crate) fn disconnects_since(&self, since: Instant) -> Vec<(usize, Option<u16>)> {
        (0..self.len())
            .flat_map(|i| {
                self.log(i)
                    .disconnects
                    .iter()
                    .filter(|(at, _)| *at >= since)
                    .map(|(_, code)| (i, *code))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Sessions begun (`welcome`s) over every client since `since`.
    pub(crate) fn connects_since(&self, since: Instant) -> usize {
        (0..self.len())
            .map(|i| {
                self.log(i)
                    .connects
                    .iter()
                    .filter(|(at, _, _)| *at >= since)
                    .count()
            })
            .sum()
    }

    /// Waits until each of `clients` has a session on a worker other than `from`,
    /// begun after `since`; returns how long the slowest took from `since`.
    pub(crate) async fn wait_moved(
        &self,
        clients: &[usize],
        from: &str,
        since: Instant,
    ) -> Duration {
        self.wait_until(
            &format!("clients {clients:?} moved off {from}"),
            Duration::from_secs(20),
            |l| {
                clients.iter().all(|&i| {
                    let log = l.log(i);
                    log.worker.as_deref().is_some_and(|w| w != from)
                        && log.connects.last().is_some_and(|(at, _, _)| *at >= since)
                })
            },
        )
        .await;
        clients
            .iter()
            .filter_map(|&i| {
                self.log(i)
                    .connects
                    .iter()
                    .find(|(at, w, _)| *at >= since && w != from)
                    .map(|(at, _, _)| at.duration_since(since))
            })
            .max()
            .unwrap_or_default()
    }

    /// Waits until each of `clients` has a session begun after `since`; returns how
    /// long the slowest took from `since`.
    pub(crate) async fn wait_reconnected(
        &self,
        clients: &[usize],
        since: Instant,
        wait: Duration,
    ) -> Duration {
        self.wait_until(
            &format!("{} clients reconnected", clients.len()),
            wait,
            |l| {
                clients.iter().all(|&i| {
                    let log = l.log(i);
                    log.worker.is_some()
                        && log.connects.last().is_some_and(|(at, _, _)| *at >= since)
                })
            },
        )
        .await;
        since.elapsed()
    }

    /// Waits until `n` publishes in all were acknowledged.
    pub(crate) async fn wait_acked(&self, n: usize, wait: Duration) {
        self.wait_until(&format!("{n} publishes acked"), wait, |l| {
            l.recorder.acked_count() >= n
        })
        .await;
    }

    /// Waits until `n` more publishes than now were acknowledged.
    pub(crate) async fn wait_more_acked(&self, n: usize, wait: Duration) {
        let acked = self.recorder.acked_count();
        self.wait_acked(acked + n, wait).await;
    }

    /// Polls `done` every few ms; panics with `what` and the clients' state after `wait`.
    pub(crate) async fn wait_until(
        &self,
        what: &str,
        wait: Duration,
        done: impl Fn(&Load) -> bool,
    ) {
        let deadline = Instant::now() + wait;
        while !done(self) {
            if let Some(i) = (0..self.len()).find(|&i| self.log(i).closed.is_some()) {
                panic!(
                    "while waiting for {what}: client u{i} stopped for good; clients on {:?}; {} acked; the clients:\n{}",
                    self.placement(),
                    self.recorder.acked_count(),
                    self.describe()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "not done within {wait:?}: {what}; clients on {:?}; {} acked; the clients:\n{}",
                    self.placement(),
                    self.recorder.acked_count(),
                    self.describe()
                );
            }
            sleep(POLL).await;
        }
    }

    /// One line per client (the first [`DESCRIBED`] with trouble, else the first
    /// ones): its worker, sessions, lost sessions and errors.
    pub(crate) fn describe(&self) -> String {
        const DESCRIBED: usize = 40;
        let began = self.began;
        let troubled = |i: &usize| {
            let log = self.log(*i);
            log.closed.is_some()
                || !log.errors.is_empty()
                || log.refusals > 0
                || log.subscribed == 0
                || log.worker.is_none()
        };
        let mut picked: Vec<usize> = (0..self.len()).filter(troubled).collect();
        if picked.is_empty() {
            picked = (0..self.len()).collect();
        }
        let more = picked.len().saturating_sub(DESCRIBED);
        let mut lines: Vec<String> = picked
            .into_iter()
            .take(DESCRIBED)
            .map(|i| {
                let log = self.log(i);
                let at = |t: &Instant| format!("{:.2}s", t.duration_since(began).as_secs_f64());
                let connects: Vec<String> = log
                    .connects
                    .iter()
                    .map(|(t, w, resumed)| format!("{}@{}{}", w, at(t), if *resumed { "(resumed)" } else { "" }))
                    .collect();
                let disconnects: Vec<String> = log
                    .disconnects
                    .iter()
                    .map(|(t, code)| format!("{code:?}@{}", at(t)))
                    .collect();
                format!(
                    "  u{i}: on {:?}; connects {connects:?}; disconnects {disconnects:?}; subscribed {}; max seq {:?}; subscriptions refused {}; errors {:?}; closed {:?}",
                    log.worker, log.subscribed, log.max_seq, log.refusals, log.errors, log.closed
                )
            })
            .collect();
        if more > 0 {
            lines.push(format!("  ... and {more} more"));
        }
        lines.join("\n")
    }

    /// The reader of each of `clients` stops taking events for `pause` (from its next
    /// event on): the client's event buffer fills, then it stops reading its socket,
    /// and the server sees a slow consumer.
    pub(crate) fn pause_reading(&self, clients: &[usize], pause: Duration) {
        let until = Instant::now() + pause;
        for &i in clients {
            self.log(i).paused_until = Some(until);
        }
    }

    /// Lifts the pauses of [`pause_reading`](Self::pause_reading) before their end.
    pub(crate) fn resume_reading(&self, clients: &[usize]) {
        for &i in clients {
            self.log(i).paused_until = None;
        }
    }

    /// Times from a `welcome` at or after `since` to the delivery of the last seq acked
    /// when it came, over every client, sorted.
    pub(crate) fn catch_up_times(&self, since: Instant) -> Vec<Duration> {
        let mut times: Vec<Duration> = (0..self.len())
            .flat_map(|i| {
                self.log(i)
                    .catch_ups
                    .iter()
                    .filter(|(at, _)| *at >= since)
                    .map(|(_, took)| *took)
                    .collect::<Vec<_>>()
            })
            .collect();
        times.sort();
        times
    }

    /// Stops the publishers and returns what they did.
    pub(crate) async fn stop_publishing(&mut self) -> PublishStats {
        self.stop.cancel();
        let mut total = PublishStats::default();
        for publisher in self.publishers.drain(..) {
            let stats = publisher.await.expect("publisher task");
            total.acked += stats.acked;
            total.timed_out += stats.timed_out;
            total.elapsed = total.elapsed.max(stats.elapsed);
            for (error, n) in stats.refused {
                *total.refused.entry(error).or_default() += n;
            }
        }
        total
    }

    /// Waits (bounded) until every client has every acked message it is owed, then
    /// checks the history: the returned verdict is the last one.
    pub(crate) async fn caught_up(&self, wait: Duration) -> Verdict {
        self.recorder.wait_caught_up(wait).await
    }

    /// Panics when a client stopped for good or reported an error frame.
    pub(crate) fn assert_clients_healthy(&self) {
        for i in 0..self.len() {
            let log = self.log(i);
            assert_eq!(log.closed, None, "client u{i} stopped: {log:?}");
            assert!(
                log.errors.is_empty(),
                "client u{i} got errors: {:?}",
                log.errors
            );
        }
    }

    /// Closes every client.
    pub(crate) async fn close(mut self) {
        self.stop.cancel();
        for client in &self.clients {
            let _ = timeout(Duration::from_secs(5), client.close()).await;
        }
        for reader in self.readers.drain(..) {
            reader.abort();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.cancel();
        for task in &self.readers {
            task.abort();
        }
        for task in &self.publishers {
            task.abort();
        }
    }
}

fn lock(log: &Mutex<ClientLog>) -> MutexGuard<'_, ClientLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads one client's events into the recorder and its log until the client ends.
/// A subscription refused as `unavailable` is made again, as its message asks.
async fn read(
    client: Client,
    name: String,
    room: String,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    recorder: Recorder,
    log: Arc<Mutex<ClientLog>>,
) {
    loop {
        if lock(&log).paused_until.is_some() {
            lock(&log).pauses += 1;
            // Until the pause ends or is lifted (`resume_reading`).
            loop {
                let until = lock(&log).paused_until;
                match until {
                    Some(until) if until > Instant::now() => {
                        sleep_until(until.min(Instant::now() + POLL)).await
                    }
                    _ => break,
                }
            }
            lock(&log).paused_until = None;
        }
        let Some(event) = events.recv().await else {
            return;
        };
        match event {
            Event::Connected {
                resumed, worker, ..
            } => {
                let now = Instant::now();
                let target = recorder.last_acked(&room);
                let mut log = lock(&log);
                log.worker = Some(worker.clone());
                log.connects.push((now, worker, resumed));
                log.pending_catch_up = None;
                if let Some(target) = target {
                    if log.max_seq.is_some_and(|max| max >= target) {
                        log.catch_ups.push((now, Duration::ZERO));
                    } else {
                        log.pending_catch_up = Some((now, target));
                    }
                }
            }
            Event::Disconnected { code, .. } => {
                let mut log = lock(&log);
                log.worker = None;
                log.disconnects.push((Instant::now(), code));
            }
            Event::Subscribed {
                room,
                seq,
                recovered,
                ..
            } => {
                recorder.subscribed(&name, &room, seq, recovered);
                let mut log = lock(&log);
                log.subscribed += 1;
                if !recovered {
                    log.not_recovered += 1;
                }
            }
            Event::Message {
                room,
                seq: Some(seq),
                from,
                ..
            } => {
                recorder.delivered(&name, &room, seq);
                let mut log = lock(&log);
                *log.from.entry(from).or_default() += 1;
                log.max_seq = Some(log.max_seq.map_or(seq, |max| max.max(seq)));
                if let Some((at, target)) = log.pending_catch_up {
                    if seq >= target {
                        log.catch_ups.push((at, at.elapsed()));
                        log.pending_catch_up = None;
                    }
                }
            }
            Event::Error {
                code: ErrorCode::Unavailable,
                room: Some(room),
                ..
            } => {
                lock(&log).refusals += 1;
                let client = client.clone();
                tokio::spawn(async move { client.subscribe(&room).await });
            }
            Event::Error {
                code,
                message,
                room,
                ..
            } => lock(&log)
                .errors
                .push(format!("{code:?} in {room:?}: {message}")),
            Event::Closed { code } => lock(&log).closed = Some(code),
            _ => {}
        }
    }
}

/// Publishes `{"p": <user>, "k": <n>, "pad": ...}` every `interval` until stopped or
/// the cap.
async fn publish(
    client: Client,
    user: String,
    options: LoadOptions,
    recorder: Recorder,
    stop: CancellationToken,
) -> PublishStats {
    let mut stats = PublishStats::default();
    let began = Instant::now();
    let pad = "x".repeat(options.payload);
    let mut tick = tokio::time::interval(options.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for k in 0..options.max_per_publisher {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let data = serde_json::json!({"p": user, "k": k, "pad": pad});
        let answer = tokio::select! {
            _ = stop.cancelled() => break,
            answer = timeout(PUBLISH_WAIT, client.publish(&options.room, &data)) => answer,
        };
        let refusal = match answer {
            Ok(Ok(seq)) => {
                recorder.acked(&options.room, &format!("{user}-{k}"), seq);
                stats.acked += 1;
                continue;
            }
            Ok(Err(ClientError::Server { code, .. })) => format!("{code:?}"),
            Ok(Err(err)) => err.to_string(),
            Err(_) => {
                stats.timed_out += 1;
                continue;
            }
        };
        *stats.refused.entry(refusal).or_default() += 1;
        if let Some(pause) = options.pause_after_refusal {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = sleep(pause) => {}
            }
        }
    }
    stats.elapsed = began.elapsed();
    stats
}
