//! Load for a fault scenario: reconnecting clients subscribed to one room through the
//! gateway, placed round-robin on chosen workers (sticky paths), some of them also
//! publishing at a steady bounded rate. Everything they see goes to a [`Recorder`];
//! connections and close codes go to each client's [`ClientLog`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use switchyard_client::{Client, ClientError, ClientOptions, Event};
use switchyard_testkit::checker::{Recorder, Verdict};
use switchyard_testkit::mesh::Mesh;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Reconnect backoff of test clients: the protocol's 0.5 s..30 s, shortened so that a
/// scenario recovers in seconds (the schedule's shape is the client's own).
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long one publish may wait for its ack before the publisher moves on.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

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
}

impl LoadOptions {
    pub(crate) fn new(mesh: &Mesh, room: &str) -> LoadOptions {
        LoadOptions {
            room: room.to_string(),
            clients: 12,
            publishers: 2,
            place: mesh.worker_ids(),
            interval: Duration::from_millis(40),
            max_per_publisher: 400,
            pause_after_refusal: None,
        }
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
    /// Messages per `from`.
    pub(crate) from: BTreeMap<String, usize>,
    pub(crate) errors: Vec<String>,
    /// The client stopped for good (it should not).
    pub(crate) closed: Option<Option<u16>>,
}

/// What the publishers did.
#[derive(Debug, Default, Clone)]
pub(crate) struct PublishStats {
    pub(crate) acked: usize,
    /// Publishes refused, by error (an `unavailable` while NATS is away).
    pub(crate) refused: BTreeMap<String, usize>,
    /// Publishes not acknowledged within [`PUBLISH_WAIT`].
    pub(crate) timed_out: usize,
}

pub(crate) struct Load {
    pub(crate) recorder: Recorder,
    began: Instant,
    clients: Vec<Client>,
    logs: Vec<Arc<Mutex<ClientLog>>>,
    stop: CancellationToken,
    publishers: Vec<JoinHandle<PublishStats>>,
    readers: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients, waits until each is subscribed, then starts publishing.
    pub(crate) async fn start(mesh: &Mesh, options: LoadOptions) -> Load {
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
            let token = mesh.token(&user, &[&options.room], &[&options.room]);
            let worker = &options.place[i % options.place.len()];
            let mut client_options =
                ClientOptions::new(mesh.connect_options(&format!("/ws/{worker}/c{i}"), &token));
            client_options.backoff_min = BACKOFF_MIN;
            client_options.backoff_max = BACKOFF_MAX;
            let (client, events) = Client::start(client_options);
            let log = Arc::new(Mutex::new(ClientLog::default()));
            load.readers.push(tokio::spawn(read(
                user,
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
        load.wait_until("every client subscribed", Duration::from_secs(15), |l| {
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

    /// Waits until `n` publishes in all were acknowledged.
    pub(crate) async fn wait_acked(&self, n: usize, wait: Duration) {
        self.wait_until(&format!("{n} publishes acked"), wait, |l| {
            l.recorder.acked_count() >= n
        })
        .await;
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

    /// One line per client: its worker, sessions, lost sessions and errors.
    pub(crate) fn describe(&self) -> String {
        let began = self.began;
        (0..self.len())
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
                    "  u{i}: on {:?}; connects {connects:?}; disconnects {disconnects:?}; subscribed {}; errors {:?}; closed {:?}",
                    log.worker, log.subscribed, log.errors, log.closed
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Stops the publishers and returns what they did.
    pub(crate) async fn stop_publishing(&mut self) -> PublishStats {
        self.stop.cancel();
        let mut total = PublishStats::default();
        for publisher in self.publishers.drain(..) {
            let stats = publisher.await.expect("publisher task");
            total.acked += stats.acked;
            total.timed_out += stats.timed_out;
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
async fn read(
    name: String,
    mut events: tokio::sync::mpsc::Receiver<Event>,
    recorder: Recorder,
    log: Arc<Mutex<ClientLog>>,
) {
    while let Some(event) = events.recv().await {
        match event {
            Event::Connected {
                resumed, worker, ..
            } => {
                let mut log = lock(&log);
                log.worker = Some(worker.clone());
                log.connects.push((Instant::now(), worker, resumed));
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
                lock(&log).subscribed += 1;
            }
            Event::Message {
                room,
                seq: Some(seq),
                from,
                ..
            } => {
                recorder.delivered(&name, &room, seq);
                *lock(&log).from.entry(from).or_default() += 1;
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

/// Publishes `{"p": <user>, "k": <n>}` every `interval` until stopped or the cap.
async fn publish(
    client: Client,
    user: String,
    options: LoadOptions,
    recorder: Recorder,
    stop: CancellationToken,
) -> PublishStats {
    let mut stats = PublishStats::default();
    let mut tick = tokio::time::interval(options.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for k in 0..options.max_per_publisher {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let data = serde_json::json!({"p": user, "k": k});
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
    stats
}
