//! Rooms with local members. A worker holds one live feed per room that has local
//! members: taken with the first member, dropped with the last; [`crate::fanout`] runs
//! it. Each room also keeps a [`Window`] of what it forwarded, so that subscription
//! points, replays and catch-ups are answered without reading the store, and a crowd
//! resuming one room reads the store once between them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use switchyard_broker::{Broker, BrokerError};
use switchyard_protocol::frame::encode_msg;
use switchyard_protocol::RoomName;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fanout::FanOut;
use crate::metrics::Metrics;
use crate::session::outbox::{OutItem, RoomFrame};
use crate::session::queue;
use crate::stats::Stats;
use crate::store::Store;
use crate::window::{Read, Window, BACKFILL_FACTOR};

/// One session's place in a room.
pub(crate) struct Member {
    pub(crate) outbox: queue::Sender<OutItem>,
    /// Set when fan-out had to drop a stored message for this member; the session's
    /// writer takes it ([`Rooms::take_lagged`]) and catches the room up from the store.
    /// Kept here, not shared with the writer: an `Arc` per subscription was 32 bytes.
    pub(crate) lagged: AtomicBool,
}

impl Member {
    pub(crate) fn new(outbox: queue::Sender<OutItem>) -> Member {
        Member {
            outbox,
            lagged: AtomicBool::new(false),
        }
    }
}

pub(crate) struct LocalRoom {
    pub(crate) members: RwLock<HashMap<Arc<str>, Member>>,
    /// What the room forwarded; set when its feed starts.
    pub(crate) window: Mutex<Option<Window>>,
    /// One backfill from the store at a time: the others wait and read the window. It
    /// remembers the last one that could not extend the window, so that a crowd behind
    /// it does not repeat that read one by one.
    backfill: tokio::sync::Mutex<Option<FailedBackfill>>,
    feed: OnceCell<CancellationToken>,
}

/// A backfill from `since` that could not extend the window: readers from at or before
/// `since` do not repeat it until `until`. With `unavailable` the store failed (they
/// retry later, as the store would have told them); without, the backfill was too
/// much to keep or its history is gone (they read the store themselves).
#[derive(Debug, Clone, Copy)]
struct FailedBackfill {
    since: u64,
    until: std::time::Instant,
    unavailable: bool,
}

/// How long a failed backfill is not retried.
const BACKFILL_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// How rooms read the store and keep their windows.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoomSettings {
    /// Messages read from the store per page.
    pub(crate) page: usize,
    /// Frames a room's window keeps.
    pub(crate) window: usize,
    /// How often a room compares its last forwarded seq with the store's head.
    pub(crate) head_check: std::time::Duration,
    /// Fault injection: forward past gaps (chaos tests only).
    pub(crate) skip_gap_fill: bool,
}

pub(crate) struct Rooms {
    worker: Arc<str>,
    broker: Arc<dyn Broker>,
    store: Store,
    rooms: Mutex<HashMap<RoomName, Arc<LocalRoom>>>,
    tracker: TaskTracker,
    stats: Arc<Stats>,
    metrics: Arc<Metrics>,
    settings: RoomSettings,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Rooms {
    pub(crate) fn new(
        worker: Arc<str>,
        broker: Arc<dyn Broker>,
        store: Store,
        tracker: TaskTracker,
        stats: Arc<Stats>,
        metrics: Arc<Metrics>,
        settings: RoomSettings,
    ) -> Rooms {
        Rooms {
            worker,
            broker,
            store,
            rooms: Mutex::new(HashMap::new()),
            tracker,
            stats,
            metrics,
            settings,
        }
    }

    /// Adds a member and returns once the room's live feed is running, so that nothing
    /// published after this returns can miss the member.
    pub(crate) async fn join(
        &self,
        room: &RoomName,
        conn: &Arc<str>,
        member: Member,
    ) -> Result<(), BrokerError> {
        let local = {
            let mut rooms = lock(&self.rooms);
            let local = rooms
                .entry(room.clone())
                .or_insert_with(|| {
                    Arc::new(LocalRoom {
                        members: RwLock::new(HashMap::new()),
                        window: Mutex::new(None),
                        backfill: tokio::sync::Mutex::new(None),
                        feed: OnceCell::new(),
                    })
                })
                .clone();
            local
                .members
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .insert(conn.clone(), member);
            local
        };
        let started = local
            .feed
            .get_or_try_init(|| async {
                let feed = self.broker.live(room).await?;
                // Read after the feed is subscribed and before any member takes its
                // subscription point: the room forwards everything after this head.
                let head = self.store.history(room, 0, 0).await?;
                *lock(&local.window) =
                    Some(Window::new(head.head, head.epoch, self.settings.window));
                let stop = CancellationToken::new();
                let fan_out = FanOut::new(
                    self.worker.clone(),
                    room.clone(),
                    Arc::downgrade(&local),
                    self.store.clone(),
                    self.stats.clone(),
                    self.metrics.clone(),
                    self.settings,
                    head.head,
                );
                self.tracker.spawn(fan_out.run(feed, stop.clone()));
                Ok::<_, BrokerError>(stop)
            })
            .await;
        if let Err(err) = started {
            self.leave(room, conn);
            return Err(err);
        }
        Ok(())
    }

    pub(crate) fn leave(&self, room: &RoomName, conn: &str) {
        let mut rooms = lock(&self.rooms);
        let Some(local) = rooms.get(room) else { return };
        let mut members = local.members.write().unwrap_or_else(|e| e.into_inner());
        members.remove(conn);
        if members.is_empty() {
            drop(members);
            if let Some(local) = rooms.remove(room) {
                if let Some(stop) = local.feed.get() {
                    stop.cancel();
                }
            }
        }
    }

    fn local(&self, room: &RoomName) -> Option<Arc<LocalRoom>> {
        lock(&self.rooms).get(room).cloned()
    }

    /// Whether fan-out dropped a stored message for this member since the last call.
    pub(crate) fn take_lagged(&self, room: &RoomName, conn: &str) -> bool {
        let Some(local) = self.local(room) else {
            return false;
        };
        let members = local.members.read().unwrap_or_else(|e| e.into_inner());
        members
            .get(conn)
            .is_some_and(|member| member.lagged.swap(false, Ordering::AcqRel))
    }

    /// The room's name as this worker already holds it, if the room has members here:
    /// a new member keeps that one rather than a copy of its own (a 48-byte allocation
    /// per subscription held for its whole life).
    pub(crate) fn interned(&self, room: RoomName) -> RoomName {
        match lock(&self.rooms).get_key_value(&room) {
            Some((name, _)) => name.clone(),
            None => room,
        }
    }

    /// The subscription point of a member that has joined: the last seq the room
    /// forwarded, and the store's epoch. Everything after it reaches the member live.
    pub(crate) fn point(&self, room: &RoomName) -> Option<(u64, Arc<str>)> {
        let local = self.local(room)?;
        let window = lock(&local.window);
        window.as_ref().map(|w| (w.last(), w.epoch().clone()))
    }

    /// The frames after `since` from the room's window. When `since` is older than the
    /// window, one reader at a time extends it from the store and the others then read
    /// it. `None` when the window cannot answer (the caller reads the store itself).
    pub(crate) async fn read_since(
        &self,
        room: &RoomName,
        since: u64,
        limit: usize,
    ) -> Result<Option<Read>, BrokerError> {
        let Some(local) = self.local(room) else {
            return Ok(None);
        };
        let try_window = |local: &LocalRoom| -> Result<Option<Read>, ()> {
            let window = lock(&local.window);
            let Some(window) = window.as_ref() else {
                return Err(());
            };
            match window.read(since, limit) {
                Some(read) => Ok(Some(read)),
                None if since > window.last() => Err(()),
                None => Ok(None),
            }
        };
        match try_window(&local) {
            Ok(Some(read)) => return Ok(Some(read)),
            Err(()) => return Ok(None),
            Ok(None) => {}
        }
        let mut one_at_a_time = local.backfill.lock().await;
        match try_window(&local) {
            Ok(Some(read)) => return Ok(Some(read)),
            Err(()) => return Ok(None),
            Ok(None) => {}
        }
        let now = std::time::Instant::now();
        if let Some(failed) = one_at_a_time.filter(|f| since <= f.since && now < f.until) {
            if failed.unavailable {
                return Err(BrokerError::Unavailable(
                    "a backfill of this room from the store just failed: try again shortly".into(),
                ));
            }
            return Ok(None);
        }
        // Messages flowing during the read must not trim the window past where the
        // backfill will join it.
        let Some(base) = lock(&local.window).as_mut().map(|w| {
            w.keep_for_backfill();
            w.base()
        }) else {
            return Ok(None);
        };
        let older = match self.read_store(room, since, base).await {
            Ok(older) => older,
            Err(err) => {
                // The crowd behind this reader would each repeat the failing read.
                *one_at_a_time = Some(FailedBackfill {
                    since,
                    until: now + BACKFILL_RETRY,
                    unavailable: true,
                });
                return Err(err);
            }
        };
        let mut window = lock(&local.window);
        let joined = match (older, window.as_mut()) {
            (Some(older), Some(window)) => window.prepend(since, older),
            _ => false,
        };
        if !joined {
            *one_at_a_time = Some(FailedBackfill {
                since,
                until: now + BACKFILL_RETRY,
                unavailable: false,
            });
            return Ok(None);
        }
        Ok(window.as_ref().and_then(|w| w.read(since, limit)))
    }

    /// Frames of `(since, base]` from the store, when it has all of them and they are
    /// few enough to keep; `None` otherwise.
    async fn read_store(
        &self,
        room: &RoomName,
        since: u64,
        base: u64,
    ) -> Result<Option<Vec<Arc<RoomFrame>>>, BrokerError> {
        let most = self.settings.window * BACKFILL_FACTOR;
        let mut frames = Vec::new();
        let mut cursor = since;
        loop {
            let page = self.store.history(room, cursor, self.settings.page).await?;
            if cursor == since && !page.recovered {
                return Ok(None);
            }
            for msg in &page.messages {
                let Some(seq) = msg.seq.filter(|seq| *seq <= base) else {
                    continue;
                };
                let line = encode_msg(room.as_str(), msg.seq, &msg.from, msg.ts, &msg.data);
                frames.push(Arc::new(RoomFrame {
                    room: room.clone(),
                    seq: Some(seq),
                    prev: Some(cursor),
                    line,
                    ts: msg.ts,
                    trace: None,
                }));
                cursor = seq;
            }
            cursor = cursor.max(page.scanned.min(base));
            if frames.len() > most {
                return Ok(None);
            }
            if cursor >= base || !page.more {
                return Ok(Some(frames));
            }
        }
    }

    /// Rooms with local members (for gauges).
    pub(crate) fn len(&self) -> usize {
        lock(&self.rooms).len()
    }
}
