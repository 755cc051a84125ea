//! Upgrades per client IP: a token bucket per address in a bounded map.
//!
//! When the map is full, buckets that have refilled (their client went quiet) are
//! forgotten; if every tracked client is still active, a new address is let through
//! untracked rather than refused: the connection cap still bounds the damage, and a
//! flood of fresh addresses cannot lock out the clients already known.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    max_tracked: usize,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: f64, burst: f64) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

impl RateLimiter {
    pub fn new(per_sec: u32, burst: u32, max_tracked: usize) -> RateLimiter {
        RateLimiter {
            rate: f64::from(per_sec.max(1)),
            burst: f64::from(burst.max(1)),
            max_tracked: max_tracked.max(1),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `ip`; `false` means refuse with 429.
    pub fn check(&self, ip: IpAddr, now: Instant) -> bool {
        // A poisoned lock only means another thread panicked mid-update of plain numbers.
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(&ip) {
            bucket.refill(now, self.rate, self.burst);
            if bucket.tokens >= 1.0 {
                bucket.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if buckets.len() >= self.max_tracked {
            let (rate, burst) = (self.rate, self.burst);
            buckets.retain(|_, b| {
                b.refill(now, rate, burst);
                b.tokens < burst
            });
            if buckets.len() >= self.max_tracked {
                return true;
            }
        }
        buckets.insert(
            ip,
            Bucket {
                tokens: self.burst - 1.0,
                at: now,
            },
        );
        true
    }

    pub fn tracked(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[test]
    fn burst_then_refill() {
        let limiter = RateLimiter::new(2, 3, 100);
        let t0 = Instant::now();
        assert!((0..3).all(|_| limiter.check(ip(1), t0)));
        assert!(!limiter.check(ip(1), t0));
        assert!(limiter.check(ip(2), t0), "other addresses are separate");
        assert!(limiter.check(ip(1), t0 + Duration::from_millis(500)));
        assert!(!limiter.check(ip(1), t0 + Duration::from_millis(500)));
    }

    #[test]
    fn map_stays_bounded() {
        let limiter = RateLimiter::new(1, 1, 2);
        let t0 = Instant::now();
        assert!(limiter.check(ip(1), t0));
        assert!(limiter.check(ip(2), t0));
        // Both still active: a third address passes untracked.
        assert!(limiter.check(ip(3), t0));
        assert_eq!(limiter.tracked(), 2);
        // Later, refilled buckets are forgotten to make room.
        assert!(limiter.check(ip(3), t0 + Duration::from_secs(5)));
        assert_eq!(limiter.tracked(), 1);
    }
}
