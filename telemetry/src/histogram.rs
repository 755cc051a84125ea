//! A histogram over atomics: fixed upper bounds, one counter per bucket, a sum and a
//! count. [`Histogram::observe`] finds the bucket with a short linear scan and does
//! three relaxed `fetch_add`s: no lock and no allocation, so it can sit on the path of
//! every socket write. A scrape reads the buckets one by one, so a snapshot taken while
//! observations land may be off by those few in flight (Prometheus clients accept the
//! same).
//!
//! Each bucket keeps the last exemplar given to it (a trace id, the value, when): four
//! relaxed stores, so a scrape racing a store can pair one observation's trace id with
//! another's value. Exemplars are hints for jumping to a trace; that is good enough.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Most finite bounds a histogram may have.
pub const MAX_BOUNDS: usize = 16;

/// Latency bounds in microseconds: 0.5 ms to 10 s.
pub const LATENCY_BOUNDS_US: &[u64] = &[
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Size bounds (messages, frames): 1 to 10 000.
pub const SIZE_BOUNDS: &[u64] = &[1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000];

/// A W3C trace id (16 bytes), as exemplars carry it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceId(pub [u8; 16]);

impl TraceId {
    fn halves(self) -> (u64, u64) {
        let (hi, lo) = self.0.split_at(8);
        // Both halves are 8 bytes: the conversions cannot fail.
        (
            u64::from_be_bytes(hi.try_into().unwrap_or_default()),
            u64::from_be_bytes(lo.try_into().unwrap_or_default()),
        )
    }

    fn from_halves(hi: u64, lo: u64) -> TraceId {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&hi.to_be_bytes());
        id[8..].copy_from_slice(&lo.to_be_bytes());
        TraceId(id)
    }

    pub fn is_valid(&self) -> bool {
        self.0 != [0; 16]
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

#[derive(Default)]
struct ExemplarSlot {
    hi: AtomicU64,
    lo: AtomicU64,
    value: AtomicU64,
    at_ms: AtomicU64,
}

pub struct Histogram {
    bounds: &'static [u64],
    /// Rendered value = raw value × scale (1e-6 turns microseconds into seconds).
    scale: f64,
    /// Per bucket, not cumulative; the last is `+Inf`.
    counts: [AtomicU64; MAX_BOUNDS + 1],
    exemplars: [ExemplarSlot; MAX_BOUNDS + 1],
    sum: AtomicU64,
    count: AtomicU64,
}

/// An exemplar as a scrape renders it.
#[derive(Debug, Clone, PartialEq)]
pub struct Exemplar {
    pub trace_id: TraceId,
    pub value: f64,
    /// Seconds since the epoch.
    pub timestamp: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub count: u64,
    pub exemplar: Option<Exemplar>,
}

/// A histogram read at scrape time, in rendered units.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub bounds: Vec<f64>,
    /// Not cumulative; one more than `bounds` (`+Inf`).
    pub buckets: Vec<Bucket>,
    pub sum: f64,
    pub count: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl Histogram {
    /// A latency histogram: observations in microseconds, rendered in seconds.
    pub fn new() -> Histogram {
        Histogram::with_bounds(LATENCY_BOUNDS_US, 1e-6)
    }

    /// A histogram of sizes (messages per catch-up and the like).
    pub fn sizes() -> Histogram {
        Histogram::with_bounds(SIZE_BOUNDS, 1.0)
    }

    /// `bounds` ascending, at most [`MAX_BOUNDS`]; rendered value = raw × `scale`.
    pub fn with_bounds(bounds: &'static [u64], scale: f64) -> Histogram {
        assert!(bounds.len() <= MAX_BOUNDS, "too many histogram bounds");
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
        Histogram {
            bounds,
            scale,
            counts: Default::default(),
            exemplars: Default::default(),
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation (in raw units: microseconds for latency).
    #[inline]
    pub fn observe(&self, raw: u64) {
        let i = self.bucket(raw);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(raw, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Records one observation in microseconds, with the trace it belongs to if sampled.
    #[inline]
    pub fn observe_us(&self, us: u64, trace: Option<TraceId>) {
        self.observe_with(us, trace, now_ms)
    }

    /// As [`Histogram::observe_us`], with the clock for the exemplar's time given.
    #[inline]
    pub fn observe_with(&self, raw: u64, trace: Option<TraceId>, now_ms: impl FnOnce() -> u64) {
        let i = self.bucket(raw);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(raw, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        if let Some(trace) = trace.filter(TraceId::is_valid) {
            let (hi, lo) = trace.halves();
            let slot = &self.exemplars[i];
            slot.hi.store(hi, Ordering::Relaxed);
            slot.lo.store(lo, Ordering::Relaxed);
            slot.value.store(raw, Ordering::Relaxed);
            slot.at_ms.store(now_ms(), Ordering::Relaxed);
        }
    }

    #[inline]
    fn bucket(&self, raw: u64) -> usize {
        self.bounds
            .iter()
            .position(|bound| raw <= *bound)
            .unwrap_or(self.bounds.len())
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn snapshot(&self) -> Snapshot {
        let buckets = (0..=self.bounds.len())
            .map(|i| {
                let slot = &self.exemplars[i];
                let trace_id = TraceId::from_halves(
                    slot.hi.load(Ordering::Relaxed),
                    slot.lo.load(Ordering::Relaxed),
                );
                Bucket {
                    count: self.counts[i].load(Ordering::Relaxed),
                    exemplar: trace_id.is_valid().then(|| Exemplar {
                        trace_id,
                        value: slot.value.load(Ordering::Relaxed) as f64 * self.scale,
                        timestamp: slot.at_ms.load(Ordering::Relaxed) as f64 / 1000.0,
                    }),
                }
            })
            .collect();
        Snapshot {
            bounds: self
                .bounds
                .iter()
                .map(|b| *b as f64 * self.scale)
                .map(round_bound)
                .collect(),
            buckets,
            sum: self.sum.load(Ordering::Relaxed) as f64 * self.scale,
            count: self.count.load(Ordering::Relaxed),
        }
    }
}

/// `2500 × 1e-6` is `0.0025000000000000005` in floating point: keep bounds readable.
fn round_bound(value: f64) -> f64 {
    (value * 1e9).round() / 1e9
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let h = Histogram::new();
        h.observe_us(400, None);
        h.observe_us(500, None);
        h.observe_us(501, None);
        h.observe_us(u64::MAX / 4, None);
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.bounds[0], 0.0005);
        assert_eq!(s.bounds[2], 0.0025);
        assert_eq!(s.buckets[0].count, 2);
        assert_eq!(s.buckets[1].count, 1);
        assert_eq!(s.buckets.last().map(|b| b.count), Some(1));
        assert!(s.buckets.iter().all(|b| b.exemplar.is_none()));
    }

    #[test]
    fn exemplars_keep_the_last_trace_of_a_bucket() {
        let h = Histogram::new();
        let id = TraceId([7; 16]);
        h.observe_with(2_000, Some(id), || 1_700_000_000_123);
        h.observe_with(2_100, Some(TraceId::default()), || 1);
        let e = h.snapshot().buckets[2].exemplar.clone().unwrap();
        assert_eq!(e.trace_id, id);
        assert_eq!(e.value, 0.002);
        assert_eq!(e.timestamp, 1_700_000_000.123);
        assert_eq!(id.to_string(), "07".repeat(16));
    }
}
