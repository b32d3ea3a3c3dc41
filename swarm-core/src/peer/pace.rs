//! The upload limit a user sets (`pp-peer --upload-limit`): a token bucket of bytes, time
//! passed in. Serving ([`super::serve`]) starts a chunk read only while the bucket is not in
//! debt, and spends the chunk's bytes on it; the bucket refills at the rate, up to a burst of
//! one second's worth (at least [`MIN_BURST`]). Reads already started may leave it in debt by
//! at most the chunks they read, so over any stretch of `t` ms what is served is at most
//! `burst + rate * t / 1000` plus the reads in progress at its start.
//!
//! Written by hand (not `governor`): the limiter is a few lines of arithmetic inside a sans-IO
//! core that is driven with virtual time in its tests; a crate made for wall clocks and
//! cells would need a fake clock to do the same.

use crate::content::MAX_CHUNK_SIZE;

/// The least burst a limit allows: one chunk of the largest size, so a chunk is never paced
/// forever however low the rate.
pub const MIN_BURST: u64 = MAX_CHUNK_SIZE as u64;

#[derive(Debug, Clone, PartialEq)]
pub struct Pacer {
    /// Bytes per second.
    rate: u64,
    burst: u64,
    /// May be negative: the debt of reads started while it was not.
    tokens: f64,
    at_ms: u64,
}

impl Pacer {
    /// A full bucket at `rate` bytes per second (at least 1).
    pub fn new(rate: u64, now_ms: u64) -> Self {
        let rate = rate.max(1);
        let burst = rate.max(MIN_BURST);
        Self { rate, burst, tokens: burst as f64, at_ms: now_ms }
    }

    pub fn rate(&self) -> u64 {
        self.rate
    }

    fn refill(&mut self, now_ms: u64) {
        if now_ms > self.at_ms {
            let add = (now_ms - self.at_ms) as f64 * self.rate as f64 / 1000.0;
            self.tokens = (self.tokens + add).min(self.burst as f64);
            self.at_ms = now_ms;
        }
    }

    /// Whether something may start being sent now (the bucket is not in debt).
    pub fn ready(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens >= 0.0
    }

    /// Takes `bytes` (may leave the bucket in debt).
    pub fn spend(&mut self, bytes: u64, now_ms: u64) {
        self.refill(now_ms);
        self.tokens -= bytes as f64;
    }

    /// Gives back `bytes` taken for something not sent.
    pub fn refund(&mut self, bytes: u64, now_ms: u64) {
        self.refill(now_ms);
        self.tokens = (self.tokens + bytes as f64).min(self.burst as f64);
    }

    /// When the bucket is out of debt again (`now_ms` if it is).
    pub fn ready_at(&self, now_ms: u64) -> u64 {
        let debt = -(self.tokens + (now_ms.saturating_sub(self.at_ms)) as f64 * self.rate as f64 / 1000.0);
        if debt <= 0.0 {
            return now_ms;
        }
        now_ms + (debt * 1000.0 / self.rate as f64).ceil() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bucket_in_debt_waits_until_the_rate_paid_it_back() {
        let mut p = Pacer::new(1_000_000, 0);
        assert!(p.ready(0));
        p.spend(MIN_BURST + 500_000, 0);
        assert!(!p.ready(0));
        assert_eq!(p.ready_at(0), 500);
        assert!(!p.ready(499));
        assert!(p.ready(500));
        p.spend(1000, 500);
        p.refund(1000, 500);
        assert!(p.ready(500), "what was not sent is given back");
    }

    proptest! {
        /// However reads are started (each only while the bucket is ready, each of at most a
        /// chunk), what is sent by any time is at most the burst, plus the rate over the
        /// time, plus one chunk of debt.
        #[test]
        fn what_is_sent_never_outruns_the_rate(
            rate in 1_000u64..50_000_000,
            steps in prop::collection::vec((0u64..2_000, 1u64..=MAX_CHUNK_SIZE as u64), 1..200),
        ) {
            let mut p = Pacer::new(rate, 0);
            let (mut now, mut sent) = (0u64, 0u64);
            for (wait, size) in steps {
                now += wait;
                if p.ready(now) {
                    p.spend(size, now);
                    sent += size;
                } else {
                    prop_assert!(p.ready_at(now) > now);
                    let mut later = p.clone();
                    prop_assert!(later.ready(p.ready_at(now)), "ready at the time it says");
                }
                let allowed = p.burst as f64 + rate as f64 * now as f64 / 1000.0 + MAX_CHUNK_SIZE as f64;
                prop_assert!(sent as f64 <= allowed, "{sent} > {allowed}");
            }
        }
    }
}
