//! A compact log-linear histogram of nanoseconds: 64 linear sub-buckets per power of
//! two (under 1.6 % error), dense in memory, sparse on the wire so that agents can send
//! theirs over a pipe and the coordinator merges them exactly.

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two, as a power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Enough buckets for any u64.
const BUCKETS: usize = ((64 - SUB_BITS as usize) * SUB as usize) + SUB as usize;

#[derive(Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram::new()
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max", &self.max)
            .finish_non_exhaustive()
    }
}

fn index(v: u64) -> usize {
    if v < 2 * SUB {
        return v as usize;
    }
    let e = 63 - v.leading_zeros();
    let shift = e - SUB_BITS;
    ((shift as u64) * SUB + (v >> shift)) as usize
}

/// The smallest value of bucket `i`, and the width of the bucket.
fn bounds(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < 2 * SUB {
        return (i, 1);
    }
    let shift = i / SUB - 1;
    let m = i % SUB + SUB;
    (m << shift, 1 << shift)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max: 0,
        }
    }

    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max(&self) -> u64 {
        self.max
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    pub fn merge_sparse(&mut self, other: &Sparse) {
        for &(i, n) in &other.buckets {
            if let Some(c) = self.counts.get_mut(i as usize) {
                *c += n;
                self.total += n;
            }
        }
        self.max = self.max.max(other.max);
    }

    /// The value at quantile `q` (0..=1): the middle of its bucket, never above the max.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, width) = bounds(i);
                return (low + width / 2).min(self.max);
            }
        }
        self.max
    }

    /// (value, share of samples at or below it) for each non-empty bucket: a CDF.
    pub fn cdf(&self) -> Vec<(u64, f64)> {
        let mut seen = 0;
        let mut out = Vec::new();
        for (i, &n) in self.counts.iter().enumerate() {
            if n == 0 {
                continue;
            }
            seen += n;
            let (low, width) = bounds(i);
            out.push(((low + width).min(self.max), seen as f64 / self.total as f64));
        }
        out
    }

    pub fn to_sparse(&self) -> Sparse {
        Sparse {
            buckets: self
                .counts
                .iter()
                .enumerate()
                .filter(|(_, n)| **n > 0)
                .map(|(i, n)| (i as u32, *n))
                .collect(),
            max: self.max,
        }
    }

    pub fn reset(&mut self) {
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.total = 0;
        self.max = 0;
    }

    /// p50, p90, p99, p99.9 and max, in milliseconds, as the JSON result shows them.
    pub fn summary_ms(&self) -> serde_json::Value {
        let ms = |ns: u64| (ns as f64 / 1e6 * 1000.0).round() / 1000.0;
        serde_json::json!({
            "count": self.total,
            "p50": ms(self.quantile(0.50)),
            "p90": ms(self.quantile(0.90)),
            "p99": ms(self.quantile(0.99)),
            "p999": ms(self.quantile(0.999)),
            "max": ms(self.max),
        })
    }
}

/// A histogram as it travels: the non-empty buckets only.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Sparse {
    pub buckets: Vec<(u32, u64)>,
    pub max: u64,
}

impl Sparse {
    pub fn to_histogram(&self) -> Histogram {
        let mut h = Histogram::new();
        h.merge_sparse(self);
        h
    }
}

/// Milliseconds with three decimals, for human lines.
pub fn fmt_ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 100.0 {
        format!("{ms:.0}ms")
    } else if ms >= 1.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.0}µs", ns as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_tight() {
        for v in [0u64, 1, 127, 128, 129, 1000, 65_535, 1 << 40, u64::MAX] {
            let (low, width) = bounds(index(v));
            assert!(low <= v && v - low < width, "{v}: {low} {width}");
            assert!(width <= 1 || (width as f64) / (low as f64) < 0.016);
        }
        assert!(index(u64::MAX) < BUCKETS);
        for i in 0..BUCKETS - 1 {
            let (low, width) = bounds(i);
            assert_eq!(low + width, bounds(i + 1).0, "bucket {i}");
        }
    }

    #[test]
    fn quantiles_and_merge() {
        let mut h = Histogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5) as f64;
        assert!((p50 - 5_000_000.0).abs() / 5e6 < 0.02, "{p50}");
        assert_eq!(h.quantile(1.0), 10_000_000);
        let mut merged = Histogram::new();
        merged.merge_sparse(&h.to_sparse());
        merged.merge(&h);
        assert_eq!(merged.count(), 20_000);
        assert_eq!(merged.quantile(0.99), h.quantile(0.99));
    }
}
