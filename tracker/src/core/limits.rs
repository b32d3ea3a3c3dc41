//! Per-connection rate limits: token buckets for messages, message bytes and relay bytes, and
//! the strike count that turns persistent abuse into a closed connection. Plain structs, time
//! passed in.

/// A token bucket: `rate` tokens per second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_ms: f64,
    burst: f64,
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket. A rate of 0 means unlimited.
    pub fn new(rate_per_sec: f64, burst: f64, now_ms: u64) -> Self {
        Self { rate_per_ms: rate_per_sec / 1000.0, burst, tokens: burst, last_ms: now_ms }
    }

    fn refill(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * self.rate_per_ms).min(self.burst);
    }

    /// Milliseconds until `n` tokens are there (0: now; `None`: never, `n` exceeds the burst).
    pub fn wait_ms(&mut self, n: f64, now_ms: u64) -> Option<u64> {
        if self.rate_per_ms <= 0.0 {
            return Some(0);
        }
        if n > self.burst {
            return None;
        }
        self.refill(now_ms);
        Some(((n - self.tokens).max(0.0) / self.rate_per_ms).ceil() as u64)
    }

    /// Takes `n` tokens now, into debt if there are not enough, and says how long the caller
    /// is to wait before it goes on (0: at once): callers that reserve one after another wait
    /// their turn, each for what it took, and the debt is paid back at the rate, so the rate
    /// holds however many callers share the bucket (the debt is bounded by what they can
    /// reserve at once: one message per connection, each waiting before the next).
    pub fn reserve(&mut self, n: f64, now_ms: u64) -> u64 {
        if self.rate_per_ms <= 0.0 {
            return 0;
        }
        self.refill(now_ms);
        self.tokens -= n;
        ((-self.tokens).max(0.0) / self.rate_per_ms).ceil() as u64
    }

    /// Whether more was reserved ([`TokenBucket::reserve`]) than the rate has paid back yet.
    pub fn in_debt(&mut self, now_ms: u64) -> bool {
        self.refill(now_ms);
        self.tokens < 0.0
    }

    /// Takes `n` tokens if there are enough; otherwise takes none.
    pub fn take(&mut self, n: f64, now_ms: u64) -> bool {
        if self.rate_per_ms <= 0.0 {
            return true;
        }
        self.refill(now_ms);
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

/// What to do with a message that arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// Dropped; tell the sender (first refusal of an episode only, so errors never amplify).
    RefuseAndTell,
    /// Dropped silently (the sender was already told).
    Refuse,
    /// The sender keeps going after being told: close the connection.
    Close,
}

/// Counts refusals in an episode of abuse: an episode ends after a quiet second.
#[derive(Debug, Clone, Default)]
pub struct Strikes {
    count: u32,
    last_ms: u64,
}

impl Strikes {
    /// Records one refused message; `limit` refusals in one episode close the connection.
    pub fn refuse(&mut self, limit: u32, now_ms: u64) -> Verdict {
        if now_ms.saturating_sub(self.last_ms) > 1000 {
            self.count = 0;
        }
        self.last_ms = now_ms;
        self.count += 1;
        if self.count > limit {
            Verdict::Close
        } else if self.count == 1 {
            Verdict::RefuseAndTell
        } else {
            Verdict::Refuse
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_says_when_the_tokens_are_there() {
        let mut b = TokenBucket::new(1000.0, 100.0, 0);
        assert_eq!(b.wait_ms(100.0, 0), Some(0));
        assert!(b.take(100.0, 0));
        assert_eq!(b.wait_ms(50.0, 0), Some(50));
        assert_eq!(b.wait_ms(50.0, 50), Some(0));
        assert!(b.take(50.0, 50));
        assert_eq!(b.wait_ms(101.0, 50), None, "more than the burst never fits");
        assert_eq!(TokenBucket::new(0.0, 0.0, 0).wait_ms(1e9, 0), Some(0), "unlimited");
    }

    #[test]
    fn reservations_wait_their_turn() {
        let mut b = TokenBucket::new(1000.0, 100.0, 0);
        assert_eq!(b.reserve(100.0, 0), 0, "a burst goes at once");
        assert_eq!(b.reserve(50.0, 0), 50, "then each waits for what it took");
        assert_eq!(b.reserve(50.0, 0), 100, "behind the one before");
        assert_eq!(b.reserve(0.0, 100), 0, "paid back at the rate");
        // Many sharing one bucket get its rate in all, not each.
        let mut shared = TokenBucket::new(1000.0, 100.0, 0);
        let waits: Vec<u64> = (0..10).map(|_| shared.reserve(100.0, 0)).collect();
        assert_eq!(waits.last(), Some(&900), "1,000 tokens at 1,000/s after a burst of 100: {waits:?}");
        assert_eq!(TokenBucket::new(0.0, 0.0, 0).reserve(1e9, 0), 0, "unlimited");
    }

    #[test]
    fn bucket_allows_burst_then_rate() {
        let mut b = TokenBucket::new(10.0, 5.0, 0);
        assert!((0..5).all(|_| b.take(1.0, 0)));
        assert!(!b.take(1.0, 0));
        assert!(b.take(1.0, 100), "one token per 100 ms");
        assert!(!b.take(1.0, 150));
        assert!(b.take(5.0, 10_000), "refills up to the burst");
        assert!(!b.take(1.0, 10_000));
        let mut unlimited = TokenBucket::new(0.0, 0.0, 0);
        assert!(unlimited.take(1e9, 0));
    }

    #[test]
    fn strikes_tell_once_then_close() {
        let mut s = Strikes::default();
        assert_eq!(s.refuse(3, 10_000), Verdict::RefuseAndTell);
        assert_eq!(s.refuse(3, 10_001), Verdict::Refuse);
        assert_eq!(s.refuse(3, 10_002), Verdict::Refuse);
        assert_eq!(s.refuse(3, 10_003), Verdict::Close);
        let mut s = Strikes::default();
        s.refuse(3, 0);
        s.refuse(3, 1);
        assert_eq!(s.refuse(3, 5_000), Verdict::RefuseAndTell, "a quiet second forgives");
    }
}
