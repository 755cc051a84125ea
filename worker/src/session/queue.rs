//! A bounded multi-producer, single-consumer queue that holds no slots while empty, with
//! a wake-up beside its items: a sender can ask the receiver to look at something else
//! (the session's outbox wakes its writer for changed terms or a lagged room this way,
//! without a `Notify` of its own, 48 bytes, and the waiter the writer held in it, 64).
//!
//! Why not `tokio::sync::mpsc`: it allocates a block of 32 slots with the channel and
//! keeps the blocks a burst added, so every idle session paid 1.8–3.7 KB for its outbox
//! and 1 KB for the control queue it had then (a heap profile of 2,000 idle connections,
//! BENCHMARKS.md). Here the items live in a `VecDeque` that grows with a burst and is
//! let go of when the queue drains past a few slots. A push or pop takes an uncontended
//! lock held for a few instructions: the only other party is the one consumer.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use tokio::sync::Notify;

/// Slots a drained queue keeps: a socket that is written one message at a time never
/// allocates per message; a larger burst's slots are freed once it is written.
const KEPT_SLOTS: usize = 4;

/// Creates a queue of at most `capacity` items.
pub(crate) fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            receiver_waker: None,
            receiver_gone: false,
            woken: false,
        }),
        capacity,
        senders: AtomicUsize::new(1),
        space: Notify::new(),
    });
    (
        Sender {
            shared: shared.clone(),
        },
        Receiver { shared },
    )
}

struct Shared<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    senders: AtomicUsize,
    /// Signalled when a full queue gets room, for senders that wait.
    space: Notify,
}

struct State<T> {
    items: VecDeque<T>,
    receiver_waker: Option<Waker>,
    receiver_gone: bool,
    /// A wake-up the receiver has not taken yet ([`Sender::wake`]).
    woken: bool,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is plain data, consistent after every statement.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError<T> {
    /// The queue holds `capacity` items.
    Full(T),
    /// The receiver is gone.
    Closed(T),
}

/// The receiver is gone.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("the queue's receiver is gone")]
pub(crate) struct Closed;

pub(crate) struct Sender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::Relaxed);
        Sender {
            shared: self.shared.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last sender: the receiver sees the end once the queue is drained.
            let waker = self.shared.lock().receiver_waker.take();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }
}

impl<T> Sender<T> {
    /// Queues `item` unless the queue is full or its receiver gone; never waits.
    pub(crate) fn try_send(&self, item: T) -> Result<(), TrySendError<T>> {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return Err(TrySendError::Closed(item));
            }
            if state.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full(item));
            }
            state.items.push_back(item);
            state.receiver_waker.take()
        };
        // Woken outside the lock: the receiver's task may run at once on another thread.
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `item`, waiting for room while the queue is full.
    pub(crate) async fn send(&self, mut item: T) -> Result<(), Closed> {
        loop {
            let space = self.shared.space.notified();
            tokio::pin!(space);
            // Registered before the check, so a pop between the two is not missed.
            space.as_mut().enable();
            match self.try_send(item) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Closed(_)) => return Err(Closed),
                Err(TrySendError::Full(back)) => item = back,
            }
            space.await;
        }
    }

    /// Wakes the receiver to look at something besides the items; kept until it does,
    /// however many come before (as a `Notify`'s permit).
    pub(crate) fn wake(&self) {
        let waker = {
            let mut state = self.shared.lock();
            if state.receiver_gone {
                return;
            }
            state.woken = true;
            state.receiver_waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Items queued now.
    pub(crate) fn len(&self) -> usize {
        self.shared.lock().items.len()
    }
}

pub(crate) struct Receiver<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let items = {
            let mut state = self.shared.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.items)
        };
        // Dropped outside the lock; waiting senders learn the queue is closed.
        drop(items);
        self.shared.space.notify_waiters();
    }
}

/// What [`Receiver::poll_next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Next<T> {
    /// A [`Sender::wake`] (or several before the receiver looked).
    Woken,
    /// The next item; `None` once every sender is gone and the queue is drained.
    Item(Option<T>),
}

impl<T> Receiver<T> {
    /// The next item, or `None` once every sender is gone and the queue is drained;
    /// wake-ups are passed over. Cancel-safe: an item is taken only when it is returned.
    #[cfg(test)]
    pub(crate) async fn recv(&mut self) -> Option<T> {
        loop {
            if let Next::Item(item) = std::future::poll_fn(|cx| self.poll_next(cx)).await {
                return item;
            }
        }
    }

    /// A wake-up if one is pending, else the next item: both under one lock, as the
    /// writer asks for both on every wake.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Next<T>> {
        let mut state = self.shared.lock();
        if std::mem::take(&mut state.woken) {
            return Poll::Ready(Next::Woken);
        }
        if let Some(item) = self.pop(&mut state) {
            return Poll::Ready(Next::Item(Some(item)));
        }
        if self.shared.senders.load(Ordering::Acquire) == 0 {
            return Poll::Ready(Next::Item(None));
        }
        match &mut state.receiver_waker {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            slot => *slot = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// The next item if one is queued.
    pub(crate) fn try_recv(&mut self) -> Option<T> {
        let mut state = self.shared.lock();
        self.pop(&mut state)
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.shared.lock().items.is_empty()
    }

    fn pop(&self, state: &mut State<T>) -> Option<T> {
        let was_full = state.items.len() >= self.shared.capacity;
        let item = state.items.pop_front()?;
        if state.items.is_empty() && state.items.capacity() > KEPT_SLOTS {
            state.items = VecDeque::new();
        }
        if was_full {
            self.shared.space.notify_one();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_in_order_and_refuses_past_capacity() {
        let (tx, mut rx) = bounded(2);
        assert_eq!(tx.try_send(1), Ok(()));
        assert_eq!(tx.try_send(2), Ok(()));
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        assert_eq!(tx.len(), 2);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), None);
        assert!(rx.is_empty());
    }

    #[tokio::test]
    async fn a_drained_burst_gives_its_slots_back() {
        let (tx, mut rx) = bounded(1024);
        for i in 0..100 {
            tx.try_send(i).unwrap();
        }
        while rx.try_recv().is_some() {}
        assert_eq!(rx.shared.lock().items.capacity(), 0);
        // One message at a time keeps its few slots: no allocation per message.
        tx.try_send(1).unwrap();
        rx.try_recv();
        assert!(rx.shared.lock().items.capacity() > 0);
    }

    #[tokio::test]
    async fn a_waiting_sender_goes_on_when_room_is_made() {
        let (tx, mut rx) = bounded(1);
        tx.try_send(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(waiting.await.unwrap(), Ok(()));
        assert_eq!(rx.recv().await, Some(2));
    }

    #[tokio::test]
    async fn the_receiver_sees_the_end_after_the_last_sender() {
        let (tx, mut rx) = bounded(4);
        let other = tx.clone();
        tx.try_send(1).unwrap();
        drop(tx);
        let end = tokio::spawn(async move {
            let first = rx.recv().await;
            (first, rx.recv().await)
        });
        tokio::task::yield_now().await;
        drop(other);
        assert_eq!(end.await.unwrap(), (Some(1), None));
    }

    #[tokio::test]
    async fn a_wake_up_is_kept_until_taken_and_several_are_one() {
        let (tx, mut rx) = bounded::<u32>(4);
        let woken = |rx: &mut Receiver<u32>| {
            let mut cx = Context::from_waker(Waker::noop());
            rx.poll_next(&mut cx) == Poll::Ready(Next::Woken)
        };
        assert!(!woken(&mut rx));
        tx.wake();
        tx.clone().wake();
        assert!(woken(&mut rx));
        assert!(!woken(&mut rx), "two wake-ups before a poll are one");
        // A receiver waiting for its wake-up is woken by it, items or not.
        let waiting = tokio::spawn(async move {
            let next = std::future::poll_fn(|cx| rx.poll_next(cx)).await;
            (next, rx)
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        tx.wake();
        let (next, rx) = waiting.await.unwrap();
        assert_eq!(next, Next::Woken);
        assert!(rx.is_empty());
        // A wake-up comes before the items queued with it.
        let (tx, mut rx) = bounded::<u32>(4);
        tx.try_send(1).unwrap();
        tx.wake();
        assert!(woken(&mut rx));
        assert_eq!(rx.try_recv(), Some(1));
    }

    #[tokio::test]
    async fn senders_learn_the_receiver_is_gone() {
        let (tx, rx) = bounded(1);
        tx.try_send(1).unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(2).await }
        });
        tokio::task::yield_now().await;
        drop(rx);
        assert_eq!(waiting.await.unwrap(), Err(Closed));
        assert_eq!(tx.try_send(3), Err(TrySendError::Closed(3)));
    }
}
