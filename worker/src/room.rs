//! Rooms with local members, and the fan-out of each room's live feed to them.
//!
//! A worker holds one live feed per room that has local members: taken with the first
//! member, dropped with the last. Each message is encoded once into a [`RoomFrame`] and
//! the same `Arc` is offered to every member's outbox with `try_send`. A full outbox
//! never blocks the room: the member is marked lagged and catches up from the store at
//! its own pace (PROTOCOL §4).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use futures_util::StreamExt;
use switchyard_broker::{Broker, BrokerError, LiveEvent, LiveFeed};
use switchyard_protocol::frame::{encode_msg, ServerFrame};
use switchyard_protocol::RoomName;
use tokio::sync::{mpsc, Notify, OnceCell};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, trace};

use crate::session::outbox::{OutItem, RoomFrame};
use crate::stats::Stats;

/// One session's place in a room.
#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) outbox: mpsc::Sender<OutItem>,
    pub(crate) lagged: Arc<AtomicBool>,
    pub(crate) wake: Arc<Notify>,
}

struct LocalRoom {
    members: RwLock<HashMap<Arc<str>, Member>>,
    feed: OnceCell<CancellationToken>,
}

pub(crate) struct Rooms {
    broker: Arc<dyn Broker>,
    rooms: Mutex<HashMap<RoomName, Arc<LocalRoom>>>,
    tracker: TaskTracker,
    stats: Arc<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the map leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Rooms {
    pub(crate) fn new(broker: Arc<dyn Broker>, tracker: TaskTracker, stats: Arc<Stats>) -> Rooms {
        Rooms {
            broker,
            rooms: Mutex::new(HashMap::new()),
            tracker,
            stats,
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
                let stop = CancellationToken::new();
                self.tracker.spawn(fan_out(
                    room.clone(),
                    Arc::downgrade(&local),
                    feed,
                    stop.clone(),
                    self.stats.clone(),
                ));
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

    /// Rooms with local members (for gauges).
    pub(crate) fn len(&self) -> usize {
        lock(&self.rooms).len()
    }
}

async fn fan_out(
    room: RoomName,
    local: std::sync::Weak<LocalRoom>,
    mut feed: LiveFeed,
    stop: CancellationToken,
    stats: Arc<Stats>,
) {
    debug!(room = %room, "live feed started");
    loop {
        let event = tokio::select! {
            _ = stop.cancelled() => break,
            event = feed.next() => match event {
                Some(event) => event,
                None => break,
            },
        };
        let Some(local) = local.upgrade() else { break };
        let members = local.members.read().unwrap_or_else(|e| e.into_inner());
        match event {
            LiveEvent::Msg(msg) => {
                let frame = Arc::new(RoomFrame {
                    room: room.clone(),
                    seq: msg.seq,
                    prev: msg.prev,
                    line: encode_msg(room.as_str(), msg.seq, &msg.from, msg.ts, &msg.data),
                });
                trace!(room = %room, seq = ?msg.seq, members = members.len(), "fan-out");
                for member in members.values() {
                    match member.outbox.try_send(OutItem::Msg(frame.clone())) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) if frame.seq.is_some() => {
                            stats.slow_consumer_drops.fetch_add(1, Ordering::Relaxed);
                            member.lagged.store(true, Ordering::Release);
                            member.wake.notify_one();
                        }
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            stats.ephemeral_drops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => {}
                    }
                }
            }
            LiveEvent::Join { user, .. } => {
                let line = ServerFrame::Join {
                    room: room.as_str().into(),
                    user: user.as_str().into(),
                }
                .encode();
                offer_event(&room, &members, line);
            }
            LiveEvent::Leave { user, .. } => {
                let line = ServerFrame::Leave {
                    room: room.as_str().into(),
                    user: user.as_str().into(),
                }
                .encode();
                offer_event(&room, &members, line);
            }
            LiveEvent::Lagged => {
                // The feed itself lost events: every member checks the room against the store.
                for member in members.values() {
                    member.lagged.store(true, Ordering::Release);
                    member.wake.notify_one();
                }
            }
        }
    }
    debug!(room = %room, "live feed stopped");
}

/// Presence events are not stored: a full outbox loses them, as it loses ephemerals.
fn offer_event(room: &RoomName, members: &HashMap<Arc<str>, Member>, line: bytes::Bytes) {
    for member in members.values() {
        let _ = member.outbox.try_send(OutItem::RoomEvent {
            room: room.clone(),
            line: line.clone(),
        });
    }
}
