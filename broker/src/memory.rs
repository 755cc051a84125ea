//! The memory engine: one process, no dependencies. History is a bounded log per room
//! (`history_size` messages, `history_ttl` age); the live feed is a bounded queue per
//! reader, sent to under the room's lock, so it carries seqs in order. Its epoch is
//! new on every start: a restarted process has lost its history, and says so.

mod dedupe;
mod live;
mod presence;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use rand::RngExt;
use switchyard_protocol::frame::Member;
use switchyard_protocol::{RoomName, UserId};
use tokio::sync::broadcast;

use crate::{
    Broker, BrokerError, Control, ControlFeed, History, LiveEvent, LiveFeed, Message, Publish,
    RegistryEvent, RegistryFeed, Stored, WorkerInfo,
};
use dedupe::Dedupe;
use live::Readers;
use presence::PresenceTable;

pub const DEFAULT_HISTORY_SIZE: usize = 1000;
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(3600);
pub const DEFAULT_DEDUPE_WINDOW: Duration = Duration::from_secs(120);
/// Live events queued for a feed reader before it misses one and reads
/// [`LiveEvent::Lagged`]; it then reads what it missed from the history.
pub const DEFAULT_LIVE_CAPACITY: usize = 256;
/// Largest message stored or sent, as NATS's default `max_payload`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    pub history_size: usize,
    pub history_ttl: Duration,
    pub dedupe_window: Duration,
    pub live_capacity: usize,
    pub max_message_bytes: usize,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: DEFAULT_HISTORY_TTL,
            dedupe_window: DEFAULT_DEDUPE_WINDOW,
            live_capacity: DEFAULT_LIVE_CAPACITY,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
        }
    }
}

pub struct MemoryBroker {
    config: MemoryConfig,
    epoch: Arc<str>,
    next_seq: AtomicU64,
    rooms: Mutex<HashMap<RoomName, Arc<Room>>>,
    dedupe: Mutex<Dedupe>,
    presence: Mutex<PresenceTable>,
    control: broadcast::Sender<Control>,
    revoked: Mutex<HashMap<UserId, u64>>,
    registry: tokio::sync::watch::Sender<HashMap<String, WorkerInfo>>,
    /// Stored messages whose live delivery is still to be dropped (fault tests).
    lose_live: AtomicU64,
    /// An outage switch for fault tests: while set, every call is `Unavailable`.
    down: std::sync::atomic::AtomicBool,
}

struct Room {
    state: Mutex<RoomLog>,
    live: Mutex<Readers>,
}

#[derive(Default)]
struct RoomLog {
    entries: VecDeque<(Instant, Arc<Message>)>,
    /// Latest seq ever stored in the room.
    head: u64,
    /// Highest seq dropped from the log: a reader from before it cannot be recovered.
    evicted_through: u64,
}

impl RoomLog {
    fn evict(&mut self, size: usize, ttl: Duration, now: Instant) {
        while let Some((at, msg)) = self.entries.front() {
            if self.entries.len() <= size && now.duration_since(*at) <= ttl {
                break;
            }
            self.evicted_through = msg.seq.unwrap_or(self.evicted_through);
            self.entries.pop_front();
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn now_secs() -> u64 {
    now_ms() / 1000
}

impl MemoryBroker {
    pub fn new(config: MemoryConfig) -> MemoryBroker {
        let epoch: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(10)
            .map(char::from)
            .collect();
        MemoryBroker {
            dedupe: Mutex::new(Dedupe::new(config.dedupe_window)),
            config,
            epoch: Arc::from(format!("m-{epoch}")),
            next_seq: AtomicU64::new(1),
            rooms: Mutex::new(HashMap::new()),
            presence: Mutex::new(PresenceTable::default()),
            control: broadcast::channel(1024).0,
            revoked: Mutex::new(HashMap::new()),
            registry: tokio::sync::watch::channel(HashMap::new()).0,
            down: std::sync::atomic::AtomicBool::new(false),
            lose_live: AtomicU64::new(0),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Simulates an outage (fault tests): while `down`, every call fails with
    /// [`BrokerError::Unavailable`] and nothing is stored.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Simulates a live feed that loses messages (fault tests): the next `count` stored
    /// messages are stored but not sent live, as when a NATS subscription's interest has
    /// not reached the stream's leader yet.
    pub fn lose_live(&self, count: u64) {
        self.lose_live.store(count, Ordering::SeqCst);
    }

    fn check(&self, data: Option<&[u8]>) -> Result<(), BrokerError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BrokerError::Unavailable("the memory broker is down".into()));
        }
        match data {
            Some(data) if data.len() > self.config.max_message_bytes => {
                Err(BrokerError::Rejected(format!(
                    "message of {} bytes is over the limit of {}",
                    data.len(),
                    self.config.max_message_bytes
                )))
            }
            _ => Ok(()),
        }
    }

    fn room(&self, name: &RoomName) -> Arc<Room> {
        let mut rooms = lock(&self.rooms);
        if let Some(room) = rooms.get(name) {
            return room.clone();
        }
        // Rooms nobody listens to and nothing is retained in are dropped as others come,
        // but never one a caller holds: between taking a room here and storing into it
        // or subscribing to it, it is empty and unheard, and a room dropped then would
        // take that message or that reader with it (a new room would take the next).
        if rooms.len() % 1024 == 1023 {
            rooms.retain(|_, r| {
                // One lock at a time: a store takes the log's, then the feed's.
                Arc::strong_count(r) > 1
                    || !lock(&r.state).entries.is_empty()
                    || lock(&r.live).any()
            });
        }
        let room = Arc::new(Room {
            state: Mutex::new(RoomLog::default()),
            live: Mutex::default(),
        });
        rooms.insert(name.clone(), room.clone());
        room
    }
}

/// A poisoned lock means a panic while holding it; the data is plain and still usable.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryBroker {
    /// Stores a message under its room's lock and sends it to the live feed.
    fn store(&self, msg: Publish) -> Result<Stored, BrokerError> {
        self.check(Some(&msg.data))?;
        let room = self.room(&msg.room);
        let mut log = lock(&room.state);
        // The dedupe check and the store happen under the room lock so that two
        // concurrent retries of one message cannot both store it.
        if let Some(id) = &msg.msg_id {
            if let Some(stored) = lock(&self.dedupe).get(&msg.room, id) {
                return Ok(Stored {
                    duplicate: true,
                    ..stored
                });
            }
        }
        let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
        let ts = now_ms();
        let message = Arc::new(Message {
            room: msg.room.clone(),
            seq: Some(seq),
            prev: Some(log.head),
            from: msg.from,
            ts,
            data: msg.data,
            traceparent: msg.traceparent,
        });
        log.head = seq;
        let now = Instant::now();
        log.entries.push_back((now, message.clone()));
        log.evict(self.config.history_size, self.config.history_ttl, now);
        let stored = Stored {
            seq,
            ts,
            duplicate: false,
        };
        if let Some(id) = msg.msg_id {
            lock(&self.dedupe).insert(&msg.room, id, stored);
        }
        // No receivers is not an error: nobody is listening live.
        let lost = self
            .lose_live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if !lost {
            lock(&room.live).send(LiveEvent::Msg(message));
        }
        Ok(stored)
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    fn engine(&self) -> &'static str {
        "memory"
    }

    async fn publish(&self, mut msg: Publish) -> Result<Stored, BrokerError> {
        let span = crate::store_span("memory", &msg);
        if let Some(tp) = switchyard_telemetry::trace::traceparent(&span) {
            msg.traceparent = Some(tp);
        }
        // No await inside: entering the span for the store is enough.
        let stored = span.in_scope(|| self.store(msg));
        crate::record_stored(&span, &stored);
        stored
    }

    async fn publish_ephemeral(&self, msg: Publish) -> Result<(), BrokerError> {
        self.check(Some(&msg.data))?;
        let room = self.room(&msg.room);
        let message = Arc::new(Message {
            room: msg.room,
            seq: None,
            prev: None,
            from: msg.from,
            ts: now_ms(),
            data: msg.data,
            traceparent: msg.traceparent,
        });
        lock(&room.live).send(LiveEvent::Msg(message));
        Ok(())
    }

    async fn history(
        &self,
        room: &RoomName,
        since: u64,
        limit: usize,
    ) -> Result<History, BrokerError> {
        self.check(None)?;
        let room = self.room(room);
        let mut log = lock(&room.state);
        log.evict(
            self.config.history_size,
            self.config.history_ttl,
            Instant::now(),
        );
        let start = log
            .entries
            .partition_point(|(_, m)| m.seq.unwrap_or(0) <= since);
        let messages: Vec<_> = log
            .entries
            .iter()
            .skip(start)
            .take(limit)
            .map(|(_, m)| m.clone())
            .collect();
        let more = log.entries.len() - start > messages.len();
        let scanned = messages.last().and_then(|m| m.seq).unwrap_or(since);
        Ok(History {
            head: log.head,
            epoch: self.epoch.clone(),
            recovered: since >= log.evicted_through && since <= log.head,
            messages,
            more,
            scanned,
        })
    }

    async fn live(&self, room: &RoomName) -> Result<LiveFeed, BrokerError> {
        self.check(None)?;
        Ok(lock(&self.room(room).live).subscribe(self.config.live_capacity))
    }

    async fn join(
        &self,
        room: &RoomName,
        user: &UserId,
        conn: &Arc<str>,
    ) -> Result<(), BrokerError> {
        if lock(&self.presence).join(room, user, conn) {
            lock(&self.room(room).live).send(LiveEvent::Join { user: user.clone() });
        }
        Ok(())
    }

    async fn leave(&self, room: &RoomName, user: &UserId, conn: &str) -> Result<(), BrokerError> {
        if lock(&self.presence).leave(room, user, conn) {
            lock(&self.room(room).live).send(LiveEvent::Leave { user: user.clone() });
        }
        Ok(())
    }

    async fn presence(&self, room: &RoomName) -> Result<Vec<Member>, BrokerError> {
        Ok(lock(&self.presence).members(room))
    }

    async fn control(&self, event: Control) -> Result<(), BrokerError> {
        let Control::Disconnect { user, until } = &event;
        if let Some(until) = until {
            let mut revoked = lock(&self.revoked);
            revoked.retain(|_, t| *t > now_secs());
            revoked.insert(user.clone(), *until);
        }
        let _ = self.control.send(event);
        Ok(())
    }

    async fn control_feed(&self) -> Result<ControlFeed, BrokerError> {
        let rx = self.control.subscribe();
        Ok(futures_util::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(event) => return Some((event, rx)),
                    // A control event lost to lag is logged; 1024 queued is far past normal.
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "control feed lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed())
    }

    async fn revoked_before(&self, user: &UserId) -> Result<Option<u64>, BrokerError> {
        let now = now_secs();
        Ok(lock(&self.revoked)
            .get(user)
            .copied()
            .filter(|until| *until > now))
    }

    async fn announce(&self, info: WorkerInfo) -> Result<(), BrokerError> {
        self.check(None)?;
        self.registry.send_modify(|workers| {
            workers.insert(info.id.clone(), info);
        });
        Ok(())
    }

    async fn withdraw(&self, id: &str) -> Result<(), BrokerError> {
        self.registry.send_modify(|workers| {
            workers.remove(id);
        });
        Ok(())
    }

    async fn registry(&self) -> Result<RegistryFeed, BrokerError> {
        self.check(None)?;
        // Each change is told as the difference from what this reader saw last.
        let rx = self.registry.subscribe();
        let state = (
            rx,
            HashMap::<String, WorkerInfo>::new(),
            std::collections::VecDeque::new(),
            true,
        );
        Ok(futures_util::stream::unfold(
            state,
            |(mut rx, mut seen, mut queue, mut first)| async move {
                loop {
                    if let Some(event) = queue.pop_front() {
                        return Some((event, (rx, seen, queue, first)));
                    }
                    if !first && rx.changed().await.is_err() {
                        return None;
                    }
                    first = false;
                    let now = rx.borrow_and_update().clone();
                    for (id, info) in &now {
                        if seen.get(id) != Some(info) {
                            queue.push_back(RegistryEvent::Up(info.clone()));
                        }
                    }
                    for id in seen.keys().filter(|id| !now.contains_key(*id)) {
                        queue.push_back(RegistryEvent::Gone(id.clone()));
                    }
                    seen = now;
                }
            },
        )
        .boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).unwrap()
    }

    #[tokio::test]
    async fn a_room_taken_for_a_subscription_is_not_dropped_before_it() {
        let broker = MemoryBroker::new(MemoryConfig::default());
        // As `live` holds it between taking the room and subscribing.
        let taken = broker.room(&room("taken"));
        // Enough other rooms, unheard and empty, for the map to be swept.
        for i in 0..1100 {
            broker.room(&room(&format!("other{i}")));
        }
        assert!(lock(&broker.rooms).len() < 1100, "the map was never swept");
        let mut feed = lock(&taken.live).subscribe(8);
        drop(taken);
        let stored = broker
            .publish(Publish {
                room: room("taken"),
                from: "$server".into(),
                data: "1".into(),
                msg_id: None,
                traceparent: None,
            })
            .await
            .unwrap();
        let event = tokio::time::timeout(Duration::from_secs(1), feed.next())
            .await
            .expect("the message reached the room's reader");
        assert!(matches!(event, Some(LiveEvent::Msg(m)) if m.seq == Some(stored.seq)));
    }
}
