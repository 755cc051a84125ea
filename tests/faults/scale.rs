//! The size of every scenario, chosen by `SWITCHYARD_CHAOS_SCALE`: `small` (the
//! default; what CI runs with `cargo test --test faults`) or `large` (the documented run
//! of RELIABILITY.md). Each scenario names its clients, rates, durations and fault
//! counts at both sizes with [`Scale::pick`].
//!
//! Random choices (which worker dies next) come from [`Rng`], seeded by
//! `SWITCHYARD_CHAOS_SEED` when set, else by the clock; every scenario prints its seed so
//! that a failing run can be repeated.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) const SCALE_VAR: &str = "SWITCHYARD_CHAOS_SCALE";
pub(crate) const SEED_VAR: &str = "SWITCHYARD_CHAOS_SEED";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scale {
    Small,
    Large,
}

impl Scale {
    /// The scale of this run. Panics on a value it does not know, rather than running
    /// another size than the one asked for.
    pub(crate) fn get() -> Scale {
        match std::env::var(SCALE_VAR).as_deref() {
            Err(_) | Ok("") | Ok("small") => Scale::Small,
            Ok("large") => Scale::Large,
            Ok(other) => panic!("{SCALE_VAR}={other:?}: expected \"small\" or \"large\""),
        }
    }

    pub(crate) fn pick<T>(self, small: T, large: T) -> T {
        match self {
            Scale::Small => small,
            Scale::Large => large,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        self.pick("small", "large")
    }

    /// The command that runs `test` (a path such as `storm::`) at this scale.
    pub(crate) fn command(self, test: &str) -> String {
        let var = match self {
            Scale::Small => String::new(),
            Scale::Large => format!("{SCALE_VAR}=large "),
        };
        format!("{var}cargo test --test faults {test} -- --nocapture")
    }
}

/// A small deterministic generator (xorshift64*): enough to pick victims.
#[derive(Debug, Clone)]
pub(crate) struct Rng {
    pub(crate) seed: u64,
    state: u64,
}

impl Rng {
    /// Seeded by `SWITCHYARD_CHAOS_SEED`, else by the clock.
    pub(crate) fn from_env() -> Rng {
        let seed = match std::env::var(SEED_VAR) {
            Ok(text) => text
                .parse()
                .unwrap_or_else(|_| panic!("{SEED_VAR}={text:?} is not a u64")),
            Err(_) => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        };
        Rng::new(seed)
    }

    pub(crate) fn new(seed: u64) -> Rng {
        Rng {
            seed,
            state: seed.max(1),
        }
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_repeats_with_its_seed_and_stays_in_range() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<usize> = (0..50).map(|_| a.below(3)).collect();
        let ys: Vec<usize> = (0..50).map(|_| b.below(3)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|&x| x < 3));
        assert!((0..3).all(|v| xs.contains(&v)), "{xs:?}");
        assert_eq!(Scale::Small.pick(1, 2), 1);
        assert!(Scale::Large
            .command("storm::")
            .starts_with("SWITCHYARD_CHAOS_SCALE=large cargo test"));
    }
}
