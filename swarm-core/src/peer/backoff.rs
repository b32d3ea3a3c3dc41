//! Reconnect backoff with full jitter (AWS architecture blog, "Exponential Backoff and
//! Jitter"): each delay is uniform in `[0, min(cap, base·2^n)]`, floored at `base / 2`, so a
//! tracker restart does not bring every peer back in the same instant.
//!
//! Randomness comes in from the driver (a `u64` per call), so the schedule is deterministic in
//! tests and simulation.

use super::config::{RECONNECT_MAX_MS, RECONNECT_MIN_MS};

/// Delays between reconnect attempts.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(RECONNECT_MIN_MS, RECONNECT_MAX_MS)
    }
}

impl Backoff {
    pub fn new(base_ms: u64, cap_ms: u64) -> Self {
        Self { base_ms: base_ms.max(1), cap_ms: cap_ms.max(base_ms.max(1)), attempt: 0 }
    }

    /// The delay before the next attempt, given a random number.
    pub fn next_delay_ms(&mut self, random: u64) -> u64 {
        let ceiling = self.base_ms.saturating_mul(1u64 << self.attempt.min(20)).min(self.cap_ms);
        self.attempt = self.attempt.saturating_add(1);
        let floor = self.base_ms / 2;
        floor + random % (ceiling - floor + 1)
    }

    /// A connection succeeded: start again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_within_floor_and_cap(randoms in proptest::collection::vec(any::<u64>(), 1..40)) {
            let mut b = Backoff::new(500, 10_000);
            for (n, r) in randoms.into_iter().enumerate() {
                let d = b.next_delay_ms(r);
                let ceiling = (500u64 << n.min(20)).min(10_000);
                prop_assert!((250..=ceiling).contains(&d), "attempt {n}: {d} ms");
            }
        }
    }

    #[test]
    fn jitter_spreads_peers_and_reset_starts_over() {
        let mut delays: Vec<u64> = (0..100u64)
            .map(|i| {
                let mut b = Backoff::default();
                (0..5).for_each(|_| {
                    b.next_delay_ms(i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
                });
                b.next_delay_ms(i.wrapping_mul(0xD1B5_4A32_D192_ED03))
            })
            .collect();
        delays.sort_unstable();
        delays.dedup();
        assert!(delays.len() > 50, "100 peers reconnect at {} distinct times", delays.len());
        let mut b = Backoff::default();
        (0..10).for_each(|_| {
            b.next_delay_ms(u64::MAX);
        });
        b.reset();
        assert!(b.next_delay_ms(u64::MAX) <= 500);
    }
}
