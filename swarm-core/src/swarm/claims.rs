//! What one peer's claims may cost the tracker: every claim is an entry in the swarm's maps,
//! so the number a peer can make is bounded ([`ClaimLimits`]):
//!
//! - **All claims** of a peer: at most what it can hold, its declared capacity (or what it
//!   stores, if more) over the chunk size, twice over for files of small chunks, and never
//!   more than [`ClaimLimits::max_claims`] (a peer that has not reported its storage gets that
//!   hard cap).
//! - **Loose claims**, of chunks no file uses: at most [`ClaimLimits::max_loose`] per peer (an
//!   uploader announces its chunks just before its `publish`: beyond the cap it must announce
//!   them again once published), and each is forgotten [`ClaimLimits::loose_ttl_ms`] after it was made,
//!   whatever the peer keeps sending ([`Swarm::expire_loose`]). Forgotten, not trimmed: the
//!   peer keeps its copy, the tracker only stops keeping the claim.
//!
//! A claim over a cap is dropped, counted in [`ClaimStats`], and the peer is told once per
//! message with [`ErrorCode::LimitReached`](crate::wire::ErrorCode::LimitReached).

use super::{PeerState, Swarm};
use crate::content::{ChunkId, CHUNK_SIZE};
use crate::wire::PeerId;

/// Bounds on what one peer may claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimLimits {
    /// Claims one peer may have at once, whatever it says it holds (1,000,000 chunks of
    /// 256 KiB is about 244 GiB).
    pub max_claims: usize,
    /// Claims of chunks no file uses one peer may have at once.
    pub max_loose: usize,
    /// How long a claim of a chunk no file uses is kept.
    pub loose_ttl_ms: u64,
    /// Claims a peer that reports its storage may always make (a peer with a tiny store still
    /// holds its own small files' chunks).
    pub min_claims: usize,
}

impl Default for ClaimLimits {
    fn default() -> Self {
        Self { max_claims: 1_000_000, max_loose: 4_096, loose_ttl_ms: 600_000, min_claims: 16_384 }
    }
}

impl ClaimLimits {
    /// Claims a peer may have: by its storage report (`used`, `capacity`), if any.
    pub fn cap(&self, report: Option<(u64, u64)>) -> usize {
        let Some((used, capacity)) = report else { return self.max_claims };
        let chunks = used.max(capacity) / CHUNK_SIZE as u64;
        let by_room = usize::try_from(chunks.saturating_mul(2)).unwrap_or(usize::MAX);
        by_room.max(self.min_claims).min(self.max_claims)
    }
}

/// Claims refused or forgotten by the bounds (API, metrics).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimStats {
    /// Claims dropped: the peer had as many as it may.
    pub over_cap: u64,
    /// Claims of chunks no file uses dropped: the peer had as many loose claims as it may.
    pub loose_over_cap: u64,
    /// Loose claims forgotten for age.
    pub loose_expired: u64,
}

/// Why a claim was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refused {
    /// The peer has its full share of claims.
    Claims(usize),
    /// The peer has its full share of loose claims.
    Loose(usize),
}

impl Refused {
    /// The error text the peer is sent.
    pub(super) fn message(&self, dropped: usize) -> String {
        match self {
            Refused::Claims(max) => format!(
                "{dropped} claims dropped: this peer has {max} claims, the most this tracker keeps for it \
                 (its storage over the chunk size, at most --max-claims-per-peer)"
            ),
            Refused::Loose(max) => format!(
                "{dropped} claims of chunks no file uses dropped: this peer has {max} such claims, the most \
                 this tracker keeps (--max-loose-claims); announce them again once their file is published"
            ),
        }
    }
}

impl Swarm {
    /// Whether `p` may make one more claim of `chunk` (`known`: a file uses it).
    pub(super) fn claim_allowed(&self, p: &PeerState, known: bool) -> Result<(), Refused> {
        let l = &self.config.claims;
        let cap = l.cap(p.last_report);
        if p.chunks.len() >= cap {
            return Err(Refused::Claims(cap));
        }
        if !known && p.loose.len() >= l.max_loose {
            return Err(Refused::Loose(l.max_loose));
        }
        Ok(())
    }

    /// Counts a refused claim.
    pub(super) fn count_refused(&mut self, r: Refused) {
        match r {
            Refused::Claims(_) => self.claim_stats.over_cap += 1,
            Refused::Loose(_) => self.claim_stats.loose_over_cap += 1,
        }
    }

    /// `chunk` is a file's now: no claim of it is loose any more.
    pub(super) fn unloose(&mut self, chunk: &ChunkId) {
        let Some(holders) = self.holders.get(chunk) else { return };
        for h in holders {
            if let Some(p) = self.peers.get_mut(h) {
                if p.loose.remove(chunk).is_some() {
                    self.loose_total -= 1;
                }
            }
        }
    }

    /// Forgets loose claims older than [`ClaimLimits::loose_ttl_ms`] (the holders keep their
    /// copies). Walks only the loose claims (bounded per peer), a few times per TTL.
    pub fn expire_loose(&mut self, now_ms: u64) {
        let ttl = self.config.claims.loose_ttl_ms;
        if now_ms < self.next_loose_sweep_ms {
            return;
        }
        self.next_loose_sweep_ms = now_ms + (ttl / 4).max(1);
        let old: Vec<(PeerId, ChunkId)> = self
            .peers
            .iter()
            .flat_map(|(id, p)| {
                p.loose.iter().filter(|(_, since)| now_ms.saturating_sub(**since) >= ttl).map(|(c, _)| (id.clone(), *c))
            })
            .collect();
        for (peer, chunk) in old {
            if self.drop_claim(&peer, &chunk) {
                self.claim_stats.loose_expired += 1;
            }
        }
    }

    /// Claims kept now, over all live peers (a counter, not a walk).
    pub fn claims_kept(&self) -> usize {
        self.claims_total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::repair::RepairConfig;
    use crate::swarm::testkit::{manifest, peer};
    use crate::swarm::Output;
    use crate::wire::{ClientMsg, ErrorCode, FileMeta, PeerKind, ServerMsg};
    use proptest::prelude::*;

    fn limits(max_claims: usize, max_loose: usize) -> ClaimLimits {
        ClaimLimits { max_claims, max_loose, loose_ttl_ms: 10_000, min_claims: 4 }
    }
    fn swarm(l: ClaimLimits) -> Swarm {
        let mut c = RepairConfig { claims: l, ..Default::default() };
        c.trust.verify = false;
        Swarm::with_config(c)
    }
    fn ids(range: std::ops::Range<u32>) -> Vec<ChunkId> {
        range
            .map(|i| {
                let mut c = [0u8; 32];
                c[..4].copy_from_slice(&i.to_be_bytes());
                ChunkId(c)
            })
            .collect()
    }
    fn errors(out: &[Output]) -> Vec<(ErrorCode, String)> {
        out.iter()
            .filter_map(|o| match o {
                Output::Send { msg: ServerMsg::Error { code, message, .. }, .. } => Some((*code, message.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn loose_claims_are_capped_with_one_error_per_message() {
        let mut s = swarm(limits(100, 10));
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        let out = s.handle(&a, ClientMsg::Have { chunks: ids(0..25), full: false }, 0);
        let errs = errors(&out);
        assert_eq!(errs.len(), 1, "{out:?}");
        assert_eq!(errs[0].0, ErrorCode::LimitReached);
        assert!(errs[0].1.contains("15 claims of chunks no file uses dropped"), "{}", errs[0].1);
        assert_eq!(s.claims_kept(), 10);
        assert_eq!(s.claim_stats.loose_over_cap, 15);
        // A full inventory replaces them: the cap counts what is kept, not what was sent.
        let out = s.handle(&a, ClientMsg::Have { chunks: ids(100..105), full: true }, 1);
        assert!(errors(&out).is_empty());
        assert_eq!(s.claims_kept(), 5);
    }

    #[test]
    fn a_publish_makes_its_chunks_count_and_frees_room_for_loose_claims() {
        let mut s = swarm(limits(100, 2));
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        let m = manifest(&[b"aaaa", b"bbbb", b"cccc", b"dddd"]);
        s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        assert_eq!(s.claims_kept(), 2, "only two loose claims kept");
        let meta = FileMeta::public("f", "x");
        s.handle(&a, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 0);
        assert!(s.peer(&a).unwrap().loose.is_empty(), "none is loose any more");
        s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        assert_eq!(s.claims_kept(), 4, "announced again, they all count");
        // So room for loose claims is back.
        s.handle(&a, ClientMsg::Have { chunks: ids(0..2), full: false }, 0);
        assert_eq!(s.claims_kept(), 6);
    }

    #[test]
    fn claims_are_capped_by_the_storage_reported() {
        let l = ClaimLimits { max_claims: 1_000, max_loose: 1_000, loose_ttl_ms: 10_000, min_claims: 4 };
        assert_eq!(l.cap(None), 1_000, "no report: the hard cap");
        assert_eq!(l.cap(Some((0, 3 * CHUNK_SIZE as u64))), 6);
        assert_eq!(l.cap(Some((5 * CHUNK_SIZE as u64, 0))), 10, "what it stores counts");
        assert_eq!(l.cap(Some((0, 0))), 4, "the floor");
        assert_eq!(l.cap(Some((0, u64::MAX))), 1_000, "a lie meets the hard cap");
        let mut s = swarm(l);
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        s.handle(&a, ClientMsg::Storage { used: 0, capacity: 3 * CHUNK_SIZE as u64 }, 0);
        let out = s.handle(&a, ClientMsg::Have { chunks: ids(0..20), full: false }, 0);
        assert_eq!(s.claims_kept(), 6);
        assert!(errors(&out)[0].1.contains("14 claims dropped"), "{out:?}");
        assert_eq!(s.claim_stats.over_cap, 14);
    }

    #[test]
    fn loose_claims_expire_whatever_the_peer_sends() {
        let mut s = swarm(limits(100, 10));
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        s.handle(&a, ClientMsg::Have { chunks: ids(0..5), full: false }, 0);
        for t in (1_000..10_000).step_by(1_000) {
            // Announcing them again does not make them younger.
            s.handle(&a, ClientMsg::Have { chunks: ids(0..5), full: false }, t);
            s.expire_loose(t);
        }
        assert_eq!(s.claims_kept(), 5);
        s.handle(&a, ClientMsg::Have { chunks: ids(5..7), full: false }, 9_000);
        s.expire_loose(10_000);
        assert_eq!(s.claims_kept(), 2, "the old ones went");
        assert_eq!(s.claim_stats.loose_expired, 5);
        s.tick(20_000);
        assert_eq!(s.claims_kept(), 0, "tick expires them too");
    }

    proptest! {
        /// Whatever a peer sends, its claims stay within the caps, and the counter matches
        /// the claims actually kept.
        #[test]
        fn claims_stay_bounded(msgs in prop::collection::vec((0u32..200, 0u32..60, any::<bool>(), 0u8..4), 1..40)) {
            let mut s = swarm(limits(50, 8));
            let (a, b) = (peer(1), peer(2));
            s.join(a.clone(), PeerKind::Native, 0);
            s.join(b.clone(), PeerKind::Native, 0);
            let m = manifest(&[b"kk01", b"kk02", b"kk03"]);
            let meta = FileMeta::public("f", "x");
            s.handle(&b, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 0);
            for (t, (start, len, full, kind)) in msgs.into_iter().enumerate() {
                let now = t as u64 * 1_000;
                let mut chunks = ids(start..start + len);
                if kind == 0 { chunks.extend(m.chunks.iter().copied()); }
                match kind {
                    3 => { s.handle(&a, ClientMsg::Dropped { chunks }, now); }
                    _ => { s.handle(&a, ClientMsg::Have { chunks, full }, now); }
                }
                s.expire_loose(now);
                let p = s.peer(&a).unwrap();
                prop_assert!(p.chunks.len() <= 50);
                prop_assert!(p.loose.len() <= 8);
                prop_assert!(p.loose.keys().all(|c| p.chunks.contains(c) && !s.chunk_sizes.contains_key(c)));
                let walked: usize = s.holders.values().map(|h| h.len()).sum();
                prop_assert_eq!(s.claims_kept(), walked);
                prop_assert_eq!(s.loose_total, s.peers.values().map(|p| p.loose.len()).sum::<usize>());
            }
        }
    }
}
