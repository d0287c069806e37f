//! Rate limits with memory that never grows: a fixed table of GCRA cells addressed by a
//! keyed hash of the client (an IP address, a user id). A flood of distinct addresses
//! reuses the same cells instead of allocating; two clients sharing a cell only ever
//! makes the limit stricter for them, and the random hash key keeps anyone from choosing
//! whom they collide with.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::Rate;

/// Cells in a limiter's table: 64 Ki cells of 8 bytes is half a MiB per limiter.
const CELLS: usize = 1 << 16;

/// A rate limiter for one kind of request.
pub struct RateLimiter {
    /// Nanoseconds between permitted requests at the steady rate.
    interval: u64,
    /// How far ahead of now a cell's schedule may run: the burst allowance.
    tolerance: u64,
    /// Per cell, the theoretical arrival time of the next request, in nanoseconds since
    /// `epoch` (the GCRA state).
    cells: Box<[AtomicU64]>,
    hasher: RandomState,
    epoch: Instant,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("interval_ns", &self.interval)
            .field("tolerance_ns", &self.tolerance)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// A limiter allowing `rate.count` requests per `rate.per`, in a burst or spread out.
    pub fn new(rate: Rate) -> RateLimiter {
        let per = rate.per.as_nanos() as u64;
        let interval = (per / u64::from(rate.count)).max(1);
        RateLimiter {
            interval,
            tolerance: per.saturating_sub(interval),
            cells: (0..CELLS).map(|_| AtomicU64::new(0)).collect(),
            hasher: RandomState::new(),
            epoch: Instant::now(),
        }
    }

    /// Counts a request from `key`; `Err` carries how long until one would be allowed.
    pub fn check(&self, key: impl Hash) -> Result<(), Duration> {
        self.check_at(key, self.epoch.elapsed())
    }

    fn check_at(&self, key: impl Hash, since_epoch: Duration) -> Result<(), Duration> {
        let now = since_epoch.as_nanos() as u64;
        let cell = &self.cells[(self.hasher.hash_one(key) as usize) % CELLS];
        let mut current = cell.load(Ordering::Relaxed);
        loop {
            let tat = current.max(now);
            if tat - now > self.tolerance {
                return Err(Duration::from_nanos(tat - now - self.tolerance));
            }
            match cell.compare_exchange_weak(
                current,
                tat + self.interval,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn per_minute(count: u32) -> RateLimiter {
        RateLimiter::new(Rate {
            count,
            per: Duration::from_secs(60),
        })
    }

    #[test]
    fn allows_the_burst_then_refuses_until_a_slot_frees() {
        let limiter = per_minute(3);
        let t0 = Duration::from_secs(1);
        for _ in 0..3 {
            assert!(limiter.check_at("a", t0).is_ok());
        }
        let wait = limiter.check_at("a", t0).unwrap_err();
        assert_eq!(wait, Duration::from_secs(20));
        assert!(
            limiter.check_at("b", t0).is_ok(),
            "other keys are unaffected"
        );
        assert!(limiter.check_at("a", t0 + Duration::from_secs(20)).is_ok());
        assert!(limiter.check_at("a", t0 + Duration::from_secs(20)).is_err());
    }

    #[test]
    fn memory_stays_fixed_under_a_flood_of_keys() {
        let limiter = per_minute(120);
        for i in 0..1_000_000u32 {
            let _ = limiter.check(std::net::Ipv4Addr::from(i));
        }
        assert_eq!(limiter.cells.len(), CELLS);
    }
}
