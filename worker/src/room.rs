//! Rooms with local members. A worker holds one live feed per room that has local
//! members: taken with the first member, dropped with the last; [`crate::fanout`] runs
//! it.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use switchyard_broker::{Broker, BrokerError};
use switchyard_protocol::RoomName;
use tokio::sync::{mpsc, Notify, OnceCell};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fanout::FanOut;
use crate::session::outbox::OutItem;
use crate::stats::Stats;
use crate::store::Store;

/// One session's place in a room.
#[derive(Clone)]
pub(crate) struct Member {
    pub(crate) outbox: mpsc::Sender<OutItem>,
    pub(crate) lagged: Arc<AtomicBool>,
    pub(crate) wake: Arc<Notify>,
}

pub(crate) struct LocalRoom {
    pub(crate) members: RwLock<HashMap<Arc<str>, Member>>,
    feed: OnceCell<CancellationToken>,
}

pub(crate) struct Rooms {
    broker: Arc<dyn Broker>,
    store: Store,
    rooms: Mutex<HashMap<RoomName, Arc<LocalRoom>>>,
    tracker: TaskTracker,
    stats: Arc<Stats>,
    /// Messages read from the store per page when filling a gap.
    page: usize,
    skip_gap_fill: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the map leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Rooms {
    pub(crate) fn new(
        broker: Arc<dyn Broker>,
        tracker: TaskTracker,
        stats: Arc<Stats>,
        page: usize,
        skip_gap_fill: bool,
    ) -> Rooms {
        let store = Store::new(broker.clone(), stats.clone());
        Rooms {
            broker,
            store,
            rooms: Mutex::new(HashMap::new()),
            tracker,
            stats,
            page,
            skip_gap_fill,
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
                // Read after the feed is subscribed and before any member takes its
                // subscription point: the room forwards everything after this head.
                let head = self.store.history(room, 0, 0).await?.head;
                let stop = CancellationToken::new();
                let fan_out = FanOut::new(
                    room.clone(),
                    Arc::downgrade(&local),
                    self.store.clone(),
                    self.stats.clone(),
                    self.page,
                    head,
                    self.skip_gap_fill,
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

    /// Rooms with local members (for gauges).
    pub(crate) fn len(&self) -> usize {
        lock(&self.rooms).len()
    }
}
