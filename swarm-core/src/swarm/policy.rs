//! What the tracker admits before the swarm sees a message: the format of a peer's secret
//! and the join token (checked at `hello`), the publish limits per identity (chunks per
//! manifest, files per peer), and what one client address may do ([`AddressLimits`]:
//! identities at once, publishes per hour, files and chunks in the index; an IPv6 /64 counts
//! as one address, see [`addr_key`]). Plain functions over plain numbers, no I/O, so the tracker's
//! websocket driver and the simulation apply the same rules; each refusal is a typed error
//! whose text is the message the peer is sent and whose [`ErrorCode`] says which rule it broke.

use crate::wire::ErrorCode;
use sha2::{Digest, Sha256};
use std::net::{IpAddr, Ipv6Addr};
use std::ops::RangeInclusive;

/// Length of a valid secret, in hex digits.
pub const SECRET_HEX_DIGITS: RangeInclusive<usize> = 32..=128;

/// Why a `hello`'s secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret must be 32 to 128 hex digits")]
    BadFormat,
}

impl SecretError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadSecret
    }
}

/// Checks a secret's format: 32 to 128 hex digits (the peer id is derived from it).
pub fn check_secret(secret: &str) -> Result<(), SecretError> {
    if SECRET_HEX_DIGITS.contains(&secret.len()) && secret.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(SecretError::BadFormat)
    }
}

/// What one identity may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishLimits {
    /// Chunks in one manifest.
    pub max_manifest_chunks: usize,
    /// Files one peer may add to the index.
    pub max_files_per_peer: u32,
}

/// Why a `publish` was refused before the swarm saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PublishRefusal {
    #[error("manifest has {chunks} chunks; this tracker takes at most {max} in one file (--max-manifest-chunks)")]
    TooManyChunks { chunks: usize, max: usize },
    #[error("this peer has published {published} files, the most this tracker takes from one peer")]
    TooManyFiles { published: u32 },
}

impl PublishRefusal {
    /// The error code the peer is sent.
    pub fn code(&self) -> ErrorCode {
        match self {
            PublishRefusal::TooManyChunks { .. } | PublishRefusal::TooManyFiles { .. } => ErrorCode::LimitReached,
        }
    }
}

impl PublishLimits {
    /// Checks a publish of a manifest with `chunks` chunks by a peer that has added
    /// `published` files so far; `known` says whether the file is already in the index
    /// (publishing a known file adds nothing, so it never counts against the peer).
    pub fn check(&self, chunks: usize, published: u32, known: bool) -> Result<(), PublishRefusal> {
        if chunks > self.max_manifest_chunks {
            return Err(PublishRefusal::TooManyChunks { chunks, max: self.max_manifest_chunks });
        }
        if published >= self.max_files_per_peer && !known {
            return Err(PublishRefusal::TooManyFiles { published });
        }
        Ok(())
    }
}

/// Why a `hello` was refused by a private tracker (one with join tokens configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this tracker is private: hello must carry a join token")]
    Missing,
    #[error("this tracker does not accept that join token")]
    Wrong,
}

impl TokenError {
    pub fn code(&self) -> ErrorCode {
        ErrorCode::BadToken
    }
}

/// Checks the join token a `hello` carried against the tokens the tracker accepts. No tokens
/// accepted: the tracker is open and any hello passes (a token or not). Otherwise the offered
/// token must equal one of them; every accepted token is compared (in constant time, over
/// SHA-256 digests, so neither the length nor the first differing byte shows in the timing).
pub fn check_join_token(accepted: &[String], offered: Option<&str>) -> Result<(), TokenError> {
    if accepted.is_empty() {
        return Ok(());
    }
    let offered = offered.ok_or(TokenError::Missing)?;
    let digest = Sha256::digest(offered.as_bytes());
    let mut found = false;
    for token in accepted {
        found |= constant_time_eq(&Sha256::digest(token.as_bytes()), &digest);
    }
    if found {
        Ok(())
    } else {
        Err(TokenError::Wrong)
    }
}

/// Equality of two byte strings of equal length that takes the same time wherever they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// A client address as the per-address limits count it: an IPv4 address, or the /64 network
/// of an IPv6 address (one subscriber usually gets a whole /64, so counting single IPv6
/// addresses would make the limits free to evade). IPv4-mapped IPv6 counts as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey(IpAddr);

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}"),
            IpAddr::V6(a) => write!(f, "{a}/64"),
        }
    }
}

/// The [`AddrKey`] of a client address.
pub fn addr_key(ip: IpAddr) -> AddrKey {
    match ip.to_canonical() {
        IpAddr::V4(a) => AddrKey(IpAddr::V4(a)),
        IpAddr::V6(a) => {
            let bits = u128::from(a) & !((1u128 << 64) - 1);
            AddrKey(IpAddr::V6(Ipv6Addr::from(bits)))
        }
    }
}

/// What one client address (an [`AddrKey`]) may do; 0 means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimits {
    /// Distinct identities (peer ids) live from the address at once.
    pub max_identities: u32,
    /// New files published from the address per hour (a token bucket that holds an hour's
    /// worth: a burst of that many, then one every `3600 / n` seconds).
    pub max_publishes_per_hour: u32,
    /// Files in the index published from the address.
    pub max_files: u32,
    /// Chunks (manifest entries) in the index published from the address.
    pub max_chunks: u64,
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressRefusal {
    #[error("too many identities from {addr} at once (at most {max})")]
    TooManyIdentities { addr: String, max: u32 },
    #[error(
        "too many files published from {addr} in the last hour (at most {max} per hour); try again in {wait_secs} s"
    )]
    TooManyPublishes { addr: String, max: u32, wait_secs: u64 },
    #[error("{addr} has {max} files in the index, the most this tracker takes from one address")]
    TooManyFiles { addr: String, max: u32 },
    #[error(
        "{addr} has {held} chunks in the index; with this file's {chunks} that is over the most this tracker \
         takes from one address ({max}, --max-chunks-per-ip)"
    )]
    TooManyChunks { addr: String, held: u64, chunks: usize, max: u64 },
}

impl AddressRefusal {
    pub fn code(&self) -> ErrorCode {
        match self {
            AddressRefusal::TooManyPublishes { .. } => ErrorCode::RateLimited,
            AddressRefusal::TooManyIdentities { .. }
            | AddressRefusal::TooManyFiles { .. }
            | AddressRefusal::TooManyChunks { .. } => ErrorCode::LimitReached,
        }
    }
}

const HOUR_MS: u64 = 3_600_000;

/// Publishes an address may still make: a token bucket of `max_publishes_per_hour` tokens
/// that refills over an hour. Starts full.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PublishBudget {
    /// Spent and not yet refilled, in units of 1/`HOUR_MS` publish: refilling `per_hour`
    /// publishes per hour is then exactly `per_hour` units per millisecond (no rounding lost
    /// however often it is asked).
    spent: u64,
    last_ms: u64,
}

impl PublishBudget {
    pub fn new(now_ms: u64) -> Self {
        Self { spent: 0, last_ms: now_ms }
    }

    fn refill(&mut self, per_hour: u32, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        self.spent = self.spent.saturating_sub(elapsed.saturating_mul(per_hour as u64));
    }

    /// Whether nothing is spent (the entry can be forgotten).
    pub fn is_full(&mut self, per_hour: u32, now_ms: u64) -> bool {
        self.refill(per_hour, now_ms);
        self.spent == 0
    }

    /// Spends one publish if the budget has one; otherwise milliseconds until it will.
    pub fn take(&mut self, per_hour: u32, now_ms: u64) -> Result<(), u64> {
        if per_hour == 0 {
            return Ok(());
        }
        self.refill(per_hour, now_ms);
        let cap = per_hour as u64 * HOUR_MS;
        if self.spent + HOUR_MS <= cap {
            self.spent += HOUR_MS;
            Ok(())
        } else {
            Err((self.spent + HOUR_MS - cap).div_ceil(per_hour as u64))
        }
    }
}

impl AddressLimits {
    /// No limits at all (an exempt address).
    pub const NONE: AddressLimits =
        AddressLimits { max_identities: 0, max_publishes_per_hour: 0, max_files: 0, max_chunks: 0 };

    /// A `hello` of an identity from `addr`, which has `live` distinct identities live now;
    /// `already_live`: this identity is one of them (a reconnect), which never counts twice.
    pub fn check_identity(&self, addr: AddrKey, live: usize, already_live: bool) -> Result<(), AddressRefusal> {
        let max = self.max_identities;
        if max > 0 && !already_live && live >= max as usize {
            return Err(AddressRefusal::TooManyIdentities { addr: addr.to_string(), max });
        }
        Ok(())
    }

    /// A publish from `addr` of a file of `chunks` chunks the index does not know yet
    /// (`known`: it does, and a republish adds nothing and costs nothing): the address has
    /// `held` = (files, chunks) in the index and `budget` left. Spends from the budget only
    /// when the publish is admitted.
    pub fn check_publish(
        &self,
        addr: AddrKey,
        held: (u32, u64),
        chunks: usize,
        known: bool,
        budget: &mut PublishBudget,
        now_ms: u64,
    ) -> Result<(), AddressRefusal> {
        if known {
            return Ok(());
        }
        let (files, held_chunks) = held;
        if self.max_files > 0 && files >= self.max_files {
            return Err(AddressRefusal::TooManyFiles { addr: addr.to_string(), max: self.max_files });
        }
        if self.max_chunks > 0 && held_chunks.saturating_add(chunks as u64) > self.max_chunks {
            let (addr, max) = (addr.to_string(), self.max_chunks);
            return Err(AddressRefusal::TooManyChunks { addr, held: held_chunks, chunks, max });
        }
        budget.take(self.max_publishes_per_hour, now_ms).map_err(|wait| AddressRefusal::TooManyPublishes {
            addr: addr.to_string(),
            max: self.max_publishes_per_hour,
            wait_secs: wait.div_ceil(1000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn join_tokens() {
        let none: Vec<String> = vec![];
        assert_eq!(check_join_token(&none, None), Ok(()), "an open tracker takes anyone");
        assert_eq!(check_join_token(&none, Some("x")), Ok(()));
        let tokens = vec!["alpha-token".to_string(), "beta".to_string()];
        assert_eq!(check_join_token(&tokens, Some("alpha-token")), Ok(()));
        assert_eq!(check_join_token(&tokens, Some("beta")), Ok(()));
        assert_eq!(check_join_token(&tokens, None), Err(TokenError::Missing));
        assert_eq!(check_join_token(&tokens, Some("alpha")), Err(TokenError::Wrong));
        assert_eq!(check_join_token(&tokens, Some("")), Err(TokenError::Wrong));
        assert_eq!(TokenError::Wrong.code(), ErrorCode::BadToken);
        assert!(!constant_time_eq(b"ab", b"abc"));
    }

    #[test]
    fn addresses_are_counted_per_ipv4_and_per_ipv6_64() {
        let k = |s: &str| addr_key(s.parse().unwrap());
        assert_eq!(k("2001:db8:1:2:aaaa::1"), k("2001:db8:1:2:ffff::9"), "one /64");
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        assert_eq!(k("::ffff:192.0.2.7"), k("192.0.2.7"), "mapped IPv4 is IPv4");
        assert_ne!(k("192.0.2.7"), k("192.0.2.8"));
        assert_eq!(k("2001:db8:1:2::1").to_string(), "2001:db8:1:2::/64");
    }

    #[test]
    fn identities_per_address() {
        let a = addr_key("192.0.2.1".parse().unwrap());
        let l = AddressLimits { max_identities: 2, ..AddressLimits::NONE };
        assert!(l.check_identity(a, 1, false).is_ok());
        let e = l.check_identity(a, 2, false).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitReached);
        assert_eq!(e.to_string(), "too many identities from 192.0.2.1 at once (at most 2)");
        assert!(l.check_identity(a, 2, true).is_ok(), "a reconnect is not a new identity");
        assert!(AddressLimits::NONE.check_identity(a, 1_000_000, false).is_ok());
    }

    #[test]
    fn publishes_per_hour_and_files_per_address() {
        let a = addr_key("192.0.2.1".parse().unwrap());
        let l = AddressLimits { max_publishes_per_hour: 3, max_files: 10, ..AddressLimits::NONE };
        let mut b = PublishBudget::new(0);
        for _ in 0..3 {
            assert!(l.check_publish(a, (0, 0), 1, false, &mut b, 0).is_ok());
        }
        let e = l.check_publish(a, (0, 0), 1, false, &mut b, 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::RateLimited);
        assert!(matches!(e, AddressRefusal::TooManyPublishes { wait_secs: 1200, .. }), "{e}");
        assert!(l.check_publish(a, (0, 0), 1, true, &mut b, 0).is_ok(), "a known file costs nothing");
        assert!(l.check_publish(a, (0, 0), 1, false, &mut b, 1_199_000).is_err());
        assert!(l.check_publish(a, (0, 0), 1, false, &mut b, 1_200_000).is_ok(), "one more every 20 minutes");
        assert!(b.is_full(3, 1_200_000 + HOUR_MS));
        let e = l.check_publish(a, (10, 0), 1, false, &mut PublishBudget::new(0), 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitReached);
        let unlimited = AddressLimits::NONE;
        let mut b = PublishBudget::new(0);
        assert!((0..10_000).all(|_| unlimited.check_publish(a, (u32::MAX, u64::MAX), 1, false, &mut b, 0).is_ok()));
    }

    #[test]
    fn chunks_per_address() {
        let a = addr_key("192.0.2.1".parse().unwrap());
        let l = AddressLimits { max_chunks: 100, ..AddressLimits::NONE };
        let mut b = PublishBudget::new(0);
        assert!(l.check_publish(a, (1, 60), 40, false, &mut b, 0).is_ok(), "up to the limit");
        let e = l.check_publish(a, (1, 60), 41, false, &mut b, 0).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitReached);
        assert!(e.to_string().contains("--max-chunks-per-ip"), "{e}");
        assert!(l.check_publish(a, (1, 1_000), 41, true, &mut b, 0).is_ok(), "a known file costs nothing");
        let e = PublishLimits { max_manifest_chunks: 3, max_files_per_peer: 9 }.check(4, 0, false).unwrap_err();
        assert_eq!(e.code(), ErrorCode::LimitReached);
        assert!(e.to_string().contains("--max-manifest-chunks"), "{e}");
    }

    #[test]
    fn secrets_are_32_to_128_hex_digits() {
        assert_eq!(check_secret(&"a".repeat(32)), Ok(()));
        assert_eq!(check_secret(&"F0".repeat(64)), Ok(()));
        assert_eq!(check_secret(&"a".repeat(31)), Err(SecretError::BadFormat));
        assert_eq!(check_secret(&"a".repeat(129)), Err(SecretError::BadFormat));
        assert_eq!(check_secret(&format!("{}g", "a".repeat(40))), Err(SecretError::BadFormat));
        assert_eq!(check_secret("short"), Err(SecretError::BadFormat));
        assert_eq!(SecretError::BadFormat.code(), ErrorCode::BadSecret);
    }

    #[test]
    fn publish_limits() {
        let l = PublishLimits { max_manifest_chunks: 10, max_files_per_peer: 2 };
        assert_eq!(l.check(10, 0, false), Ok(()));
        let too_big = l.check(11, 0, true).unwrap_err();
        assert_eq!(too_big, PublishRefusal::TooManyChunks { chunks: 11, max: 10 });
        assert_eq!(too_big.code(), ErrorCode::LimitReached);
        assert_eq!(
            too_big.to_string(),
            "manifest has 11 chunks; this tracker takes at most 10 in one file (--max-manifest-chunks)"
        );
        assert_eq!(l.check(1, 1, false), Ok(()));
        let too_many = l.check(1, 2, false).unwrap_err();
        assert_eq!(too_many.code(), ErrorCode::LimitReached);
        assert_eq!(l.check(1, 2, true), Ok(()), "republishing a known file adds nothing");
    }

    proptest! {
        #[test]
        fn a_secret_passes_exactly_when_it_is_hex_of_the_right_length(s in "[0-9a-fA-Fg-z]{0,140}") {
            let ok = (32..=128).contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit());
            prop_assert_eq!(check_secret(&s).is_ok(), ok);
        }

        #[test]
        fn an_hour_admits_the_burst_plus_the_hours_refill_and_no_more(per_hour in 1u32..500, steps in prop::collection::vec(0u64..600_000, 1..200)) {
            // Whatever the spacing of attempts, publishes admitted within any time span are at
            // most the burst plus what refills in that span.
            let mut b = PublishBudget::new(0);
            let mut now = 0;
            let mut admitted = 0u64;
            for dt in steps {
                now += dt;
                if b.take(per_hour, now).is_ok() {
                    admitted += 1;
                }
            }
            let bound = per_hour as u64 + (now as u128 * per_hour as u128 / HOUR_MS as u128) as u64;
            prop_assert!(admitted <= bound, "{admitted} > {bound}");
        }

        #[test]
        fn a_refused_publish_is_admitted_after_the_wait_it_names(per_hour in 1u32..500, t in 0u64..10_000_000) {
            let mut b = PublishBudget::new(0);
            while b.take(per_hour, t).is_ok() {}
            let wait = b.take(per_hour, t).unwrap_err();
            prop_assert!(b.take(per_hour, t + wait).is_ok());
        }

        #[test]
        fn ipv6_addresses_in_one_64_share_a_key(hi in any::<u64>(), lo1 in any::<u64>(), lo2 in any::<u64>()) {
            let a = Ipv6Addr::from(((hi as u128) << 64) | lo1 as u128);
            let b = Ipv6Addr::from(((hi as u128) << 64) | lo2 as u128);
            prop_assume!(a.to_ipv4_mapped().is_none());
            prop_assert_eq!(addr_key(a.into()), addr_key(b.into()));
        }

        #[test]
        fn only_an_accepted_token_passes(tokens in prop::collection::vec("[a-z0-9]{0,12}", 1..4), offered in "[a-z0-9]{0,12}") {
            prop_assert_eq!(check_join_token(&tokens, Some(&offered)).is_ok(), tokens.contains(&offered));
        }

        #[test]
        fn publish_check_is_monotone(chunks in 0usize..100, published in 0u32..100, known: bool,
                                     max_chunks in 0usize..100, max_files in 0u32..100) {
            let l = PublishLimits { max_manifest_chunks: max_chunks, max_files_per_peer: max_files };
            if l.check(chunks, published, known).is_ok() {
                // Fewer chunks or fewer files published never turn an accepted publish down.
                prop_assert!(l.check(chunks / 2, published / 2, known).is_ok());
            }
        }
    }
}
