//! The writers' timers (heartbeat, token notice and expiry), one task per worker.
//!
//! A tokio `Sleep` in every connection's task is 112 bytes held for the connection's
//! whole life, for a timer that fires once a heartbeat. Here a writer's alarm is a clone
//! of its outbox's sender filed under the tick it is due at; the worker's alarm task
//! wakes the writers whose tick came ([`super::queue::Sender::wake`]), and each looks at
//! its own clocks. An alarm is never taken back: one a writer no longer needs (its clock
//! moved, its socket went) wakes it once for nothing, or finds its queue gone. A writer
//! files one at most a heartbeat ahead, so what a closed socket leaves here is gone
//! within a heartbeat.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::millis::Millis;
use super::outbox::OutItem;
use super::queue;

/// An alarm goes off at the first tick at or after its time: never early, at most this
/// late.
const TICK: Duration = Duration::from_millis(10);

#[derive(Default)]
pub(crate) struct Alarms {
    /// Writers to wake, by tick.
    due: Mutex<BTreeMap<u64, Vec<queue::Sender<OutItem>>>>,
    /// An alarm earlier than every other was filed: the task sleeps until then instead.
    earlier: Notify,
}

impl Alarms {
    /// Wakes `writer` at `at` (or up to a tick later).
    pub(crate) fn set(&self, at: Millis, writer: queue::Sender<OutItem>) {
        let tick = at.as_u64().div_ceil(TICK.as_millis() as u64);
        let first = {
            let mut due = lock(&self.due);
            let first = due.first_key_value().is_none_or(|(&t, _)| tick < t);
            due.entry(tick).or_default().push(writer);
            first
        };
        if first {
            self.earlier.notify_one();
        }
    }

    /// Alarms not yet gone off (with those no longer needed).
    #[cfg(test)]
    fn pending(&self) -> usize {
        lock(&self.due).values().map(Vec::len).sum()
    }

    /// Wakes writers as their ticks come, until `stop`.
    pub(crate) async fn run(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let earlier = self.earlier.notified();
            tokio::pin!(earlier);
            // Registered before the look, so an alarm filed between is not missed.
            earlier.as_mut().enable();
            let now = Millis::now().as_u64() / TICK.as_millis() as u64;
            let (ring, next) = {
                let mut due = lock(&self.due);
                let later = due.split_off(&(now + 1));
                let ring = std::mem::replace(&mut *due, later);
                (ring, due.first_key_value().map(|(&t, _)| t))
            };
            // Woken outside the lock: a writer may file its next alarm at once.
            for writer in ring.into_values().flatten() {
                writer.wake();
            }
            let sleep = async {
                match next {
                    Some(tick) => {
                        let at = Millis::from_u64(tick * TICK.as_millis() as u64);
                        tokio::time::sleep_until(at.instant()).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = earlier => {}
                () = sleep => {}
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::task::Poll;

    use super::*;

    /// Whether the receiver's wake-up came within `within`.
    async fn woken(rx: &mut queue::Receiver<OutItem>, within: Duration) -> bool {
        let woken = poll_fn(|cx| match rx.poll_next(cx) {
            Poll::Ready(queue::Next::Woken) => Poll::Ready(()),
            _ => Poll::Pending,
        });
        tokio::time::timeout(within, woken).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn alarms_go_off_in_order_never_early_and_earlier_ones_cut_the_wait() {
        let alarms = Arc::new(Alarms::default());
        let stop = CancellationToken::new();
        tokio::spawn(alarms.clone().run(stop.clone()));
        let (late_tx, mut late) = queue::bounded::<OutItem>(1);
        let (soon_tx, mut soon) = queue::bounded::<OutItem>(1);
        let start = Millis::now();
        alarms.set(start + Duration::from_secs(10), late_tx);
        tokio::task::yield_now().await;
        // Filed after the task went to sleep for the later one.
        alarms.set(start + Duration::from_millis(995), soon_tx);
        assert!(!woken(&mut soon, Duration::from_millis(990)).await);
        assert!(woken(&mut soon, Duration::from_millis(100)).await);
        assert!(Millis::now() >= start + Duration::from_millis(995));
        assert!(Millis::now() <= start + Duration::from_millis(995) + TICK);
        assert!(!woken(&mut late, Duration::from_secs(8)).await);
        assert!(woken(&mut late, Duration::from_secs(2)).await);
        assert_eq!(alarms.pending(), 0);
        stop.cancel();
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_of_a_writer_gone_goes_off_harmlessly() {
        let alarms = Arc::new(Alarms::default());
        let stop = CancellationToken::new();
        let task = tokio::spawn(alarms.clone().run(stop.clone()));
        let (tx, rx) = queue::bounded::<OutItem>(1);
        alarms.set(Millis::now() + Duration::from_secs(1), tx);
        drop(rx);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(alarms.pending(), 0);
        stop.cancel();
        task.await.unwrap();
    }
}
