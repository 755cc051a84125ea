//! Monotonic time as milliseconds since the process first asked: 8 bytes where an
//! `Instant` takes 16, and every connection keeps several for as long as it lives.

use std::ops::Add;
use std::sync::LazyLock;
use std::time::Duration;

use tokio::time::Instant;

static ORIGIN: LazyLock<Instant> = LazyLock::new(Instant::now);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Millis(u64);

impl Millis {
    pub(crate) fn now() -> Millis {
        Millis::at(Instant::now())
    }

    /// An instant before the origin (the first use) reads as the origin.
    pub(crate) fn at(instant: Instant) -> Millis {
        Millis(instant.saturating_duration_since(*ORIGIN).as_millis() as u64)
    }

    pub(crate) fn instant(self) -> Instant {
        *ORIGIN + Duration::from_millis(self.0)
    }

    /// How long after `earlier` this is; zero if it is not after.
    pub(crate) fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }

    pub(crate) fn elapsed(self) -> Duration {
        Millis::now().since(self)
    }

    /// For an atomic.
    pub(crate) fn as_u64(self) -> u64 {
        self.0
    }

    pub(crate) fn from_u64(ms: u64) -> Millis {
        Millis(ms)
    }
}

impl Add<Duration> for Millis {
    type Output = Millis;

    fn add(self, d: Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(d.as_millis().try_into().unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_to_the_millisecond_and_orders() {
        // The origin is set by the first use; an instant before it reads as the origin.
        let _ = Millis::now();
        let now = Instant::now();
        let then = Millis::at(now) + Duration::from_millis(1500);
        assert!(then > Millis::at(now));
        assert_eq!(then.since(Millis::at(now)), Duration::from_millis(1500));
        assert_eq!(Millis::at(now).since(then), Duration::ZERO);
        let back = then.instant();
        assert!(back.duration_since(now) <= Duration::from_millis(1500));
        assert!(back.duration_since(now) > Duration::from_millis(1498));
        // An expiry years away does not overflow.
        assert!(then + Duration::from_secs(u64::MAX / 2) > then);
    }
}
