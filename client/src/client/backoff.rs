//! Reconnect delays (PROTOCOL §5): exponential from 0.5 s, doubling to 30 s, with full
//! jitter: each delay is drawn uniformly from `[0, ceiling)`.

use std::time::Duration;

use rand::{Rng, RngExt};
use switchyard_protocol::limits::{RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN};

#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    /// The ceiling of the next delay.
    ceiling: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(RECONNECT_BACKOFF_MIN, RECONNECT_BACKOFF_MAX)
    }
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.max(Duration::from_millis(1));
        let max = max.max(min);
        Backoff {
            min,
            max,
            ceiling: min,
        }
    }

    /// The ceiling the next delay is drawn under.
    pub(crate) fn ceiling(&self) -> Duration {
        self.ceiling
    }

    /// A delay in `[0, ceiling)`; the ceiling then doubles, up to the cap.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let delay = jitter(self.ceiling, rng);
        self.ceiling = (self.ceiling * 2).min(self.max);
        delay
    }

    /// After a successful connection the next failure starts from the bottom again.
    pub(crate) fn reset(&mut self) {
        self.ceiling = self.min;
    }
}

/// A uniform delay in `[0, ceiling)` (zero for a zero ceiling).
pub(crate) fn jitter(ceiling: Duration, rng: &mut impl Rng) -> Duration {
    let nanos = ceiling.as_nanos().min(u64::MAX as u128) as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.random_range(0..nanos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn ceiling_doubles_from_min_to_cap() {
        let mut b = Backoff::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling());
            b.next_delay(&mut rng);
        }
        let ms: Vec<u128> = ceilings.iter().map(Duration::as_millis).collect();
        assert_eq!(
            ms,
            [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn delays_stay_under_their_ceiling_with_full_jitter() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut b = Backoff::default();
        for _ in 0..1000 {
            let ceiling = b.ceiling();
            let delay = b.next_delay(&mut rng);
            assert!(delay < ceiling, "{delay:?} >= {ceiling:?}");
        }
        // Full jitter: draws under the cap cover the whole range, low values included.
        let draws: Vec<Duration> = (0..2000)
            .map(|_| jitter(RECONNECT_BACKOFF_MAX, &mut rng))
            .collect();
        assert!(draws.iter().all(|d| *d < RECONNECT_BACKOFF_MAX));
        assert!(draws.iter().any(|d| *d < Duration::from_secs(3)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(27)));
        let mean = draws.iter().sum::<Duration>() / draws.len() as u32;
        assert!(mean > Duration::from_secs(13) && mean < Duration::from_secs(17));
    }

    #[test]
    fn reset_starts_over() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_delay(&mut rng);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(16));
        b.reset();
        assert_eq!(b.ceiling(), RECONNECT_BACKOFF_MIN);
        assert!(b.next_delay(&mut rng) < RECONNECT_BACKOFF_MIN);
    }

    #[test]
    fn zero_ceiling_is_zero() {
        let mut rng = StdRng::seed_from_u64(0);
        assert_eq!(jitter(Duration::ZERO, &mut rng), Duration::ZERO);
    }
}
