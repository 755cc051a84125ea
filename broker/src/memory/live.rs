//! A room's live feed in the memory engine: a bounded queue per reader.
//!
//! tokio's mpsc queue allocates its slots in blocks of 32 as events wait, so an idle
//! room costs a reader one block (about 800 bytes) and the queue's state instead of a
//! broadcast ring of `live_capacity` slots allocated whole (16 KiB at 256, for every
//! room with a reader).
//! A reader whose queue is full misses the event and reads [`LiveEvent::Lagged`] next.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::{LiveEvent, LiveFeed};

/// The readers of one room's feed. Sent to under a lock, so every reader sees the
/// events in the order they were sent.
#[derive(Default)]
pub(super) struct Readers {
    readers: Vec<Reader>,
}

struct Reader {
    queue: mpsc::Sender<LiveEvent>,
    /// Set when an event did not fit: the reader is told before its next event.
    missed: Arc<AtomicBool>,
}

impl Readers {
    /// A new reader that gets every event sent from now on, `capacity` of them queued
    /// at most.
    pub(super) fn subscribe(&mut self, capacity: usize) -> LiveFeed {
        let (queue, events) = mpsc::channel(capacity.max(1));
        let missed = Arc::new(AtomicBool::new(false));
        self.readers.push(Reader {
            queue,
            missed: missed.clone(),
        });
        // A reader that empties its queue between a miss and the flag hears of it with
        // its next event; a lost message is found before that by the room's head check.
        futures_util::stream::unfold((events, missed), |(mut events, missed)| async move {
            if missed.swap(false, Ordering::AcqRel) {
                return Some((LiveEvent::Lagged, (events, missed)));
            }
            let event = events.recv().await?;
            Some((event, (events, missed)))
        })
        .boxed()
    }

    /// Offers `event` to every reader; readers that are gone are dropped.
    pub(super) fn send(&mut self, event: LiveEvent) {
        self.readers
            .retain(|reader| match reader.queue.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    reader.missed.store(true, Ordering::Release);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
    }

    pub(super) fn any(&self) -> bool {
        self.readers.iter().any(|reader| !reader.queue.is_closed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_protocol::UserId;

    fn join(user: &str) -> LiveEvent {
        LiveEvent::Join {
            user: UserId::parse(user).unwrap(),
        }
    }

    fn name(event: &LiveEvent) -> String {
        match event {
            LiveEvent::Join { user } => format!("join {user}"),
            LiveEvent::Leave { user } => format!("leave {user}"),
            LiveEvent::Msg(msg) => format!("msg {:?}", msg.seq),
            LiveEvent::Lagged => "lagged".into(),
        }
    }

    #[tokio::test]
    async fn every_reader_gets_every_event_in_order() {
        let mut readers = Readers::default();
        let mut a = readers.subscribe(8);
        let mut b = readers.subscribe(8);
        readers.send(join("u1"));
        readers.send(join("u2"));
        for feed in [&mut a, &mut b] {
            assert_eq!(name(&feed.next().await.unwrap()), "join u1");
            assert_eq!(name(&feed.next().await.unwrap()), "join u2");
        }
    }

    #[tokio::test]
    async fn a_full_reader_is_told_it_missed_events_and_the_others_are_not() {
        let mut readers = Readers::default();
        let mut slow = readers.subscribe(2);
        let mut fast = readers.subscribe(8);
        for user in ["u1", "u2", "u3"] {
            readers.send(join(user));
        }
        let mut names = Vec::new();
        for _ in 0..3 {
            names.push(name(&slow.next().await.unwrap()));
        }
        assert_eq!(names, ["lagged", "join u1", "join u2"]);
        for user in ["u1", "u2", "u3"] {
            assert_eq!(name(&fast.next().await.unwrap()), format!("join {user}"));
        }
    }

    #[tokio::test]
    async fn a_reader_that_is_gone_is_dropped() {
        let mut readers = Readers::default();
        let feed = readers.subscribe(8);
        assert!(readers.any());
        drop(feed);
        assert!(!readers.any());
        readers.send(join("u1"));
        assert!(readers.readers.is_empty());
    }
}
