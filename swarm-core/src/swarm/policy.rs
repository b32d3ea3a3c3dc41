//! What the tracker admits before the swarm sees a message: the format of a peer's secret
//! (checked at `hello`) and the publish limits per identity (chunks per manifest, files per
//! peer). Plain functions over plain numbers, no I/O, so the tracker's websocket driver and
//! the simulation apply the same rules; each refusal is a typed error whose text is the
//! message the peer is sent and whose [`ErrorCode`] says which rule it broke.

use crate::wire::ErrorCode;
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
    #[error("manifest has {chunks} chunks; this tracker takes at most {max}")]
    TooManyChunks { chunks: usize, max: usize },
    #[error("this peer has published {published} files, the most this tracker takes from one peer")]
    TooManyFiles { published: u32 },
}

impl PublishRefusal {
    /// The error code the peer is sent.
    pub fn code(&self) -> ErrorCode {
        match self {
            PublishRefusal::TooManyChunks { .. } => ErrorCode::BadManifest,
            PublishRefusal::TooManyFiles { .. } => ErrorCode::LimitReached,
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
        assert_eq!(too_big.code(), ErrorCode::BadManifest);
        assert_eq!(too_big.to_string(), "manifest has 11 chunks; this tracker takes at most 10");
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
