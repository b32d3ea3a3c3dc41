//! Claims are not copies: a peer's `have` (or `order_done`) is a *claim*; only a *verified*
//! holding counts toward `R` (repair, trimming, placement, health, `locate` order).
//!
//! Verification without the tracker ever touching chunk bytes: challenge nonces. For every
//! chunk the tracker keeps a small pool of (nonce, expected proof) pairs, where
//! `proof = SHA-256(nonce ‖ chunk bytes)`. A claimant is sent an unused nonce
//! ([`ServerMsg::Challenge`]) and must answer the proof ([`ClientMsg::Proofs`]) in time.
//!
//! Where pool entries come from:
//! - **the first publisher** of a chunk (the peer whose `publish` brought the chunk into the
//!   index: its *origin*) sends them right after `publish` ([`ClientMsg::Nonces`]); only the
//!   origin's entries are taken, so a later publisher of the same chunk ids cannot seed a pool;
//! - **agreement**: the tracker draws a fresh nonce and asks two verified holders; the entry
//!   enters the pool only if both proofs agree (*confirmed*);
//! - **trust on first publish**: when the pool is empty and only one verified holder is live
//!   (the origin right after a publish without `Nonces`, e.g. by a browser; or the last
//!   verified holder after the others died), that holder alone answers a fresh nonce. Such
//!   entries are *unconfirmed*, like a publisher's: failing one removes the claim but gives no
//!   strike. Without this, a chunk down to one verified copy and an empty pool could never
//!   count a new replica.
//!
//! The origin's own holding counts as verified. Every other claim is challenged before it
//! counts; with no nonce at hand it waits (counting nothing) while the pool is replenished on
//! demand.
//!
//! Nonces are scarce (only verified holders can make more), so a pool keeps a reserve of
//! [`POOL_RESERVE`] entries for copies that are *needed*: an order's target, or a claim while
//! the chunk has fewer than `R` staying verified copies (then as many claims as copies are
//! missing are checked, the claimants with the fewest strikes and the most verified holdings
//! first). Other claims (a downloader that became a source, beyond `R`) are checked only from
//! entries above the reserve; while there are none they wait, and the pool is refilled for
//! them. (Measured in `tests/simulation.rs` with 30% liars claiming every chunk: challenging
//! every claim from the whole pool let liars use it up while the chunk's verified holders
//! died, and honest copies could then never count again.)
//!
//! Pass: verified. Wrong proof, `None`, or no answer in
//! [`TrustConfig::challenge_timeout_ms`]: the claim is removed, and the peer never gets that
//! chunk counted again in this connection. A *strike* is given for silence and for a wrong
//! answer to a confirmed nonce (a publisher's own entries cannot strike anyone: a publisher
//! lying about its own file must not get honest replicators penalised); after
//! [`TrustConfig::max_strikes`] strikes the identity is *distrusted* for
//! [`TrustConfig::distrust_ms`]: every claim it makes is ignored, it gets no orders and its
//! reports are ignored.
//!
//! Reports (`bad_source`) are checks, not verdicts: a report about a verified holding audits
//! it with a pool nonce; the holding stays counted unless the audit fails. A reporter whose
//! reports are refuted [`TrustConfig::max_report_strikes`] times is no longer heard.
//!
//! Collusion (see `SECURITY.md`): identities are cheap, so several may act together.
//! - Replenishment rounds ask two verified holders picked *at random* (the generator below),
//!   not by a rule a peer can aim at (the lowest ids, the fewest strikes): two colluders
//!   among a chunk's verified holders are both asked, and can plant an agreed false entry,
//!   only as often as chance picks them both.
//! - Reports cannot steer audits onto a chosen holder: a holding that passed an audit is not
//!   audited again on reports for [`AUDIT_COOLDOWN_MS`], a holder faces at most
//!   [`MAX_AUDITS_PER_HOLDER`] report audits per cooldown whoever reports, and the pool entry an
//!   audit uses is drawn at random (a planted entry is not the one every audit takes).
//! - Strikes and report strikes outlive the connection: they are kept by peer id when it
//!   leaves and given back when it returns within [`TrustConfig::distrust_ms`]; at most
//!   [`MAX_REMEMBERED`] identities are remembered (the earliest to expire go first).
//!
//! Bounds: pools hold at most [`TrustConfig::pool_cap`] entries per chunk, a peer has at most
//! [`TrustConfig::max_pending_per_peer`] challenges in flight, challenges go out in batches of
//! [`MAX_CHALLENGE_ITEMS`], at most two replenishment rounds run per chunk, and the memory of
//! recently departed peers' verified holdings lasts one grace period.
//!
//! Persistence: origins and pools outlive a tracker restart. Every change marks the chunk
//! dirty; the driver takes the changes ([`Swarm::take_trust_changes`]) every second and writes
//! them with the file index, and gives them back at start ([`Swarm::restore_trust`]). A crash
//! loses at most that second: a nonce used in it may be used once more after the restart
//! (it was only ever shown to the peer it challenged). Chunks of records written before pools
//! were kept have no origin: their first claimant becomes their origin (*trust on first claim
//! after a restart*), as before.
//!
//! Randomness is a SHA-256 counter generator seeded by the driver
//! ([`TrustConfig::seed`]): the core stays deterministic, nonces stay unpredictable to peers.

use super::{send, Output, Swarm};
use crate::content::ChunkId;
use crate::wire::{ChallengeItem, NonceItem, PeerId, ProofItem, ServerMsg, MAX_CHALLENGE_ITEMS, MAX_NONCE_ITEMS};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeSet, HashMap, HashSet};

/// Pool entries kept for needed copies (see the module doc).
pub const POOL_RESERVE: usize = 2;
/// A holding that passed an audit is not audited again on reports for this long.
pub const AUDIT_COOLDOWN_MS: u64 = 10 * 60_000;
/// Report audits one holder faces per [`AUDIT_COOLDOWN_MS`], whoever reports.
pub const MAX_AUDITS_PER_HOLDER: u32 = 16;
/// Identities whose strikes (or audit history) are remembered after they leave.
pub const MAX_REMEMBERED: usize = 65_536;

/// Verification settings (part of [`super::repair::RepairConfig`]).
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// `false`: every claim counts at once (a closed swarm of trusted peers; tests).
    pub verify: bool,
    /// An unanswered challenge fails after this long.
    pub challenge_timeout_ms: u64,
    /// Strikes before an identity is distrusted.
    pub max_strikes: u32,
    /// How long a distrusted identity is ignored.
    pub distrust_ms: u64,
    /// Refuted reports before a reporter is no longer heard.
    pub max_report_strikes: u32,
    /// Pool entries kept per chunk.
    pub pool_cap: usize,
    /// Challenges in flight per peer.
    pub max_pending_per_peer: usize,
    /// Seed of the nonce generator (the tracker draws it from the OS at start).
    pub seed: [u8; 32],
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            verify: true,
            challenge_timeout_ms: 30_000,
            max_strikes: 8,
            distrust_ms: 3_600_000,
            max_report_strikes: 3,
            pool_cap: 4,
            max_pending_per_peer: 64,
            seed: [7; 32],
        }
    }
}

/// One (nonce, expected proof) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    pub nonce: [u8; 16],
    pub proof: [u8; 32],
    /// Agreed on by two verified holders (not only the publisher's word).
    pub confirmed: bool,
}

/// What the tracker keeps durably about a chunk's verification: its origin and its pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustRecord {
    pub origin: Option<PeerId>,
    pub pool: Vec<PoolEntry>,
}

#[derive(Debug, Clone)]
enum Purpose {
    /// Is this claim true? (`confirmed`: of the pool entry used)
    Claim { expected: [u8; 32], confirmed: bool },
    /// A report said this verified holding is bad.
    Audit { expected: [u8; 32], confirmed: bool, reporter: PeerId },
    /// A replenishment round: the answer becomes a pool entry if every asked holder agrees.
    Round(u64),
}

#[derive(Debug, Clone)]
struct Challenge {
    peer: PeerId,
    chunk: ChunkId,
    deadline_ms: u64,
    purpose: Purpose,
}

#[derive(Debug, Clone)]
struct Round {
    chunk: ChunkId,
    nonce: [u8; 16],
    outstanding: usize,
    answer: Option<[u8; 32]>,
    failed: bool,
    confirmed: bool,
}

/// Counters of the verification machinery (in `/api/stats` as `trust`, and in `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustStats {
    pub challenges_sent: u64,
    pub proofs_passed: u64,
    pub proofs_failed: u64,
    pub challenges_expired: u64,
    pub nonces_from_publishers: u64,
    pub nonces_agreed: u64,
    pub rounds_disagreed: u64,
    pub strikes: u64,
    pub distrusted: u64,
    pub reports_refuted: u64,
    pub reports_upheld: u64,
    pub reports_ignored: u64,
}

/// The verification state of the swarm.
#[derive(Debug, Default)]
pub struct Trust {
    counter: u64,
    pools: HashMap<ChunkId, Vec<PoolEntry>>,
    /// The peer whose publish brought each chunk into the index.
    origins: HashMap<ChunkId, PeerId>,
    challenges: HashMap<u64, Challenge>,
    deadlines: BTreeSet<(u64, u64)>,
    next_id: u64,
    rounds: HashMap<u64, Round>,
    rounds_per_chunk: HashMap<ChunkId, usize>,
    /// Chunks whose pool should grow (someone waits, or it is empty).
    hungry: BTreeSet<ChunkId>,
    /// Peers with claims to challenge.
    ready: BTreeSet<PeerId>,
    /// Verified holdings of peers that just left, kept one grace period (a reconnect costs
    /// no challenges), with when they expire.
    recent: HashMap<PeerId, (u64, HashSet<ChunkId>)>,
    /// Distrusted identities, until when.
    distrusted: HashMap<PeerId, u64>,
    audits: HashSet<(PeerId, ChunkId)>,
    /// Holdings that passed an audit, until when they are not audited again on reports.
    audited: HashMap<(PeerId, ChunkId), u64>,
    /// Report audits per holder in the current window: (window end, count).
    audit_budget: HashMap<PeerId, (u64, u32)>,
    /// Strikes and report strikes of peers that left, until when they are kept.
    remembered: HashMap<PeerId, (u32, u32, u64)>,
    /// Chunks whose origin or pool changed since the driver last took the changes.
    dirty: BTreeSet<ChunkId>,
    pub stats: TrustStats,
}

/// Per-peer verification state (in [`super::PeerState`]).
#[derive(Debug, Default, Clone)]
pub struct PeerTrust {
    /// Claims that count.
    pub verified: HashSet<ChunkId>,
    /// Claims of known chunks to challenge.
    pub(super) unchecked: BTreeSet<ChunkId>,
    /// Claims waiting for a pool nonce.
    pub(super) starved: BTreeSet<ChunkId>,
    /// Claims not needed now, waiting for a pool entry above the reserve.
    pub(super) deferred: BTreeSet<ChunkId>,
    /// Claims with a challenge in flight.
    pub(super) checking: HashSet<ChunkId>,
    /// Challenges in flight.
    pub(super) pending: usize,
    /// Chunks this connection failed a challenge for: claims of them are ignored.
    pub(super) failed: HashSet<ChunkId>,
    pub strikes: u32,
    pub report_strikes: u32,
    pub distrusted: bool,
}

impl PeerTrust {
    /// Whether this peer's claim of `chunk` is being checked (queued, waiting for a nonce or
    /// challenged).
    fn in_check(&self, chunk: &ChunkId) -> bool {
        self.unchecked.contains(chunk) || self.starved.contains(chunk) || self.checking.contains(chunk)
    }

    /// Whether this peer's claim of `chunk` waits for a nonce (needed or not).
    fn waiting(&self, chunk: &ChunkId) -> bool {
        self.starved.contains(chunk) || self.deferred.contains(chunk)
    }
}

impl Trust {
    fn random(&mut self, seed: &[u8; 32]) -> [u8; 16] {
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(seed);
        h.update(self.counter.to_le_bytes());
        let d = h.finalize();
        d[..16].try_into().expect("16 bytes")
    }

    /// A number below `n` (> 0) from the same generator.
    fn below(&mut self, seed: &[u8; 32], n: usize) -> usize {
        let r = self.random(seed);
        (u64::from_le_bytes(r[..8].try_into().expect("8 bytes")) % n as u64) as usize
    }

    /// Shuffles `v` (Fisher–Yates) with the generator.
    fn shuffle<T>(&mut self, seed: &[u8; 32], v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(seed, i + 1);
            v.swap(i, j);
        }
    }
}

/// Keeps `map` at most `cap` entries: the expired ones go, then the eighth that expires first.
fn bound_by_expiry<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, V>, cap: usize, now_ms: u64, until: fn(&V) -> u64) {
    if map.len() <= cap {
        return;
    }
    map.retain(|_, v| until(v) > now_ms);
    if map.len() > cap {
        let mut ends: Vec<u64> = map.values().map(until).collect();
        let k = (map.len() - cap).max(cap / 8).min(ends.len() - 1);
        let (_, cut, _) = ends.select_nth_unstable(k);
        let cut = *cut;
        map.retain(|_, v| until(v) > cut);
    }
}

impl Swarm {
    /// Verification counters.
    pub fn trust_stats(&self) -> &TrustStats {
        &self.trust.stats
    }

    /// Whether `peer`'s holding of `chunk` counts.
    pub fn is_verified(&self, peer: &PeerId, chunk: &ChunkId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.trust.verified.contains(chunk))
    }

    /// Verified live holders of a chunk.
    pub fn verified_holders(&self, chunk: &ChunkId) -> impl Iterator<Item = &PeerId> {
        self.verified.get(chunk).into_iter().flatten()
    }

    pub fn verified_count(&self, chunk: &ChunkId) -> usize {
        self.verified.get(chunk).map_or(0, BTreeSet::len)
    }

    /// Entries in the verification maps, by kind: (chunks with an origin, chunks with a
    /// pool, challenges in flight, identities remembered: left lately or distrusted). Map
    /// lengths only: no walk ([`super::budget`]).
    pub(super) fn trust_sizes(&self) -> (usize, usize, usize, usize) {
        let t = &self.trust;
        (t.origins.len(), t.pools.len(), t.challenges.len(), t.recent.len() + t.distrusted.len())
    }

    /// Pool entries of a chunk (for persistence and tests).
    pub fn pool(&self, chunk: &ChunkId) -> &[PoolEntry] {
        self.trust.pools.get(chunk).map_or(&[], Vec::as_slice)
    }

    /// Ids of challenges and rounds continue from at least `base`.
    pub(super) fn set_next_id(&mut self, base: u64) {
        self.trust.next_id = self.trust.next_id.max(base);
    }

    /// Gives back what the driver kept of a chunk (at start, after its file was restored);
    /// ignored for a chunk no file uses.
    pub fn restore_trust(&mut self, chunk: ChunkId, record: TrustRecord) {
        if !self.chunk_sizes.contains_key(&chunk) {
            return;
        }
        if let Some(origin) = record.origin {
            self.trust.origins.insert(chunk, origin);
        }
        let cap = self.config.trust.pool_cap;
        let pool = self.trust.pools.entry(chunk).or_default();
        pool.extend(record.pool);
        pool.truncate(cap);
        if pool.is_empty() {
            self.trust.pools.remove(&chunk);
        }
    }

    /// The origins and pools that changed since the last call: `None` for a chunk that left
    /// the index (to delete).
    pub fn take_trust_changes(&mut self) -> Vec<(ChunkId, Option<TrustRecord>)> {
        std::mem::take(&mut self.trust.dirty)
            .into_iter()
            .map(|c| {
                let record = self.chunk_sizes.contains_key(&c).then(|| TrustRecord {
                    origin: self.trust.origins.get(&c).cloned(),
                    pool: self.trust.pools.get(&c).cloned().unwrap_or_default(),
                });
                (c, record)
            })
            .collect()
    }

    /// A chunk left the index: its origin, pool and verified holdings go. Called while its
    /// claimants are still listed (only they have checks of it queued).
    pub(super) fn trust_forget(&mut self, chunk: &ChunkId) {
        self.trust.pools.remove(chunk);
        self.trust.origins.remove(chunk);
        self.trust.hungry.remove(chunk);
        self.trust.dirty.insert(*chunk);
        for holder in self.verified.remove(chunk).unwrap_or_default() {
            if let Some(p) = self.peers.get_mut(&holder) {
                p.trust.verified.remove(chunk);
            }
        }
        let claimants: Vec<PeerId> = self.holders(chunk).cloned().collect();
        for id in claimants {
            if let Some(p) = self.peers.get_mut(&id) {
                p.trust.unchecked.remove(chunk);
                p.trust.starved.remove(chunk);
                p.trust.deferred.remove(chunk);
            }
        }
    }

    /// Challenges in flight (all peers).
    pub fn challenges_in_flight(&self) -> usize {
        self.trust.challenges.len()
    }

    pub fn is_distrusted(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.trust.distrusted)
    }

    /// At join: a distrusted identity stays so.
    /// At join: strikes it had when it last left come back.
    pub(super) fn trust_join(&mut self, id: &PeerId, now_ms: u64) {
        self.trust.distrusted.retain(|_, until| *until > now_ms);
        let distrusted = self.trust.distrusted.contains_key(id);
        let kept = self.trust.remembered.remove(id).filter(|(_, _, until)| *until > now_ms);
        if let Some(p) = self.peers.get_mut(id) {
            p.trust.distrusted = distrusted;
            if let Some((strikes, report_strikes, _)) = kept {
                p.trust.strikes = strikes;
                p.trust.report_strikes = report_strikes;
            }
        }
    }

    /// At leave: its challenges end, its verified holdings are remembered for a grace period.
    pub(super) fn trust_leave(&mut self, id: &PeerId, verified: HashSet<ChunkId>, now_ms: u64) {
        let mine: Vec<u64> = self.trust.challenges.iter().filter(|(_, c)| c.peer == *id).map(|(k, _)| *k).collect();
        for cid in mine {
            let c = self.trust.challenges.remove(&cid).expect("present");
            self.trust.deadlines.remove(&(c.deadline_ms, cid));
            match c.purpose {
                Purpose::Round(r) => self.round_answer(r, None, now_ms),
                Purpose::Audit { .. } => {
                    self.trust.audits.remove(&(id.clone(), c.chunk));
                }
                Purpose::Claim { .. } => {}
            }
        }
        self.trust.ready.remove(id);
        if let Some(p) = self.peers.get(id) {
            if p.trust.strikes > 0 || p.trust.report_strikes > 0 {
                let until = now_ms + self.config.trust.distrust_ms;
                self.trust.remembered.insert(id.clone(), (p.trust.strikes, p.trust.report_strikes, until));
                bound_by_expiry(&mut self.trust.remembered, MAX_REMEMBERED, now_ms, |v| v.2);
            }
        }
        if !verified.is_empty() && self.config.grace_ms > 0 {
            self.trust.recent.insert(id.clone(), (now_ms + self.config.grace_ms, verified));
        }
    }

    /// Whether `peer` held `chunk` verified when it last left (within the grace period).
    fn recently_verified(&self, peer: &PeerId, chunk: &ChunkId) -> bool {
        self.trust.recent.get(peer).is_some_and(|(until, set)| *until >= self.now_ms && set.contains(chunk))
    }

    /// A new claim by `peer` of known chunk `chunk`: counts at once (trust off, its origin, a
    /// holding verified before a reconnect or `preverified`), or is queued for a challenge.
    pub(super) fn consider(&mut self, peer: &PeerId, chunk: ChunkId, preverified: bool, check_ms: u64) {
        // A chunk restored from the durable index after a tracker restart has no origin and
        // no pool (they live in memory): its first claimant becomes its origin (trust on
        // first claim after a restart), or no copy of it could ever count again. (Never for a
        // chunk whose origin is known: a liar claiming a lost chunk must not count.)
        if !self.trust.origins.contains_key(&chunk)
            && self.verified_count(&chunk) == 0
            && self.trust.pools.get(&chunk).is_none_or(|p| p.is_empty())
        {
            self.trust.origins.insert(chunk, peer.clone());
            self.trust.dirty.insert(chunk);
        }
        let trusted = !self.config.trust.verify
            || preverified
            || self.trust.origins.get(&chunk) == Some(peer)
            || self.recently_verified(peer, &chunk);
        if trusted {
            self.mark_verified(peer, chunk, check_ms);
        } else {
            self.check_claim(peer, chunk);
        }
    }

    /// Queues `peer`'s claim of `chunk` for a challenge.
    fn check_claim(&mut self, peer: &PeerId, chunk: ChunkId) {
        if let Some(p) = self.peers.get_mut(peer) {
            if !p.trust.verified.contains(&chunk) && !p.trust.in_check(&chunk) {
                p.trust.deferred.remove(&chunk);
                p.trust.unchecked.insert(chunk);
                self.trust.ready.insert(peer.clone());
            }
        }
    }

    /// Claimants of `chunk` being checked.
    fn claims_in_check(&self, chunk: &ChunkId) -> usize {
        self.holders(chunk).filter(|p| self.peers.get(*p).is_some_and(|s| s.trust.in_check(chunk))).count()
    }

    /// Copies of `chunk` still missing that checks under way may not provide.
    fn copies_wanted(&self, chunk: &ChunkId) -> usize {
        self.config.replication.saturating_sub(self.staying_copies(chunk) + self.claims_in_check(chunk))
    }

    /// Whether a claim should be checked now: `peer` was ordered to fetch the chunk, or a
    /// copy is wanted.
    fn claim_needed(&self, peer: &PeerId, chunk: &ChunkId) -> bool {
        let ordered = self.pending.get(chunk).into_iter().flatten().any(|o| self.orders[o].target == *peer);
        ordered || self.copies_wanted(chunk) > 0
    }

    /// Copies of `chunk` may be wanted: waiting claims are checked, as many as are missing,
    /// the best-reputed claimants first.
    pub(super) fn wake_claims(&mut self, chunk: &ChunkId) {
        if !self.config.trust.verify || !self.chunk_sizes.contains_key(chunk) {
            return;
        }
        let want = self.copies_wanted(chunk);
        if want == 0 {
            return;
        }
        let mut waiting: Vec<(u32, std::cmp::Reverse<usize>, PeerId)> = self
            .holders(chunk)
            .filter_map(|id| {
                let p = self.peers.get(id)?;
                let idle =
                    p.chunks.contains(chunk) && !p.leaving && !p.trust.distrusted && !p.trust.verified.contains(chunk);
                (idle && !p.trust.in_check(chunk))
                    .then(|| (p.trust.strikes, std::cmp::Reverse(p.trust.verified.len()), id.clone()))
            })
            .collect();
        waiting.sort();
        for (_, _, id) in waiting.into_iter().take(want) {
            self.check_claim(&id, *chunk);
        }
    }

    /// `peer`'s holding of `chunk` counts from now on.
    fn mark_verified(&mut self, peer: &PeerId, chunk: ChunkId, check_ms: u64) {
        let Some(p) = self.peers.get_mut(peer) else { return };
        if !p.chunks.contains(&chunk) || !p.trust.verified.insert(chunk) {
            return;
        }
        p.trust.unchecked.remove(&chunk);
        p.trust.starved.remove(&chunk);
        p.trust.deferred.remove(&chunk);
        self.verified.entry(chunk).or_default().insert(peer.clone());
        if self.staying_copies(&chunk) < self.config.replication && !self.pending.contains_key(&chunk) {
            self.check_at(chunk, check_ms);
        }
        self.order_fulfilled(peer, &chunk);
        // A new verified holder may make replenishment possible for claimants waiting.
        if self.waiting_count(&chunk) > 0 {
            self.trust.hungry.insert(chunk);
        }
    }

    /// Forgets the verification state of a claim that is going away.
    pub(super) fn unverify(&mut self, peer: &PeerId, chunk: &ChunkId) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.trust.verified.remove(chunk);
            p.trust.unchecked.remove(chunk);
            p.trust.starved.remove(chunk);
            p.trust.deferred.remove(chunk);
            p.trust.checking.remove(chunk);
        }
        if let Some(set) = self.verified.get_mut(chunk) {
            set.remove(peer);
            if set.is_empty() {
                self.verified.remove(chunk);
            }
        }
        self.wake_claims(chunk);
    }

    /// At publish: the chunks this file brings into the index have `origin` as their origin;
    /// claims made before they were known are considered now.
    pub(super) fn trust_publish(&mut self, origin: &PeerId, new_chunks: &[ChunkId], now_ms: u64) {
        for c in new_chunks {
            self.trust.origins.insert(*c, origin.clone());
            self.trust.dirty.insert(*c);
            let claimants: Vec<PeerId> = self.holders(c).cloned().collect();
            for h in claimants {
                self.consider(&h, *c, false, now_ms);
            }
        }
    }

    /// `Nonces` from `from`: kept for chunks whose origin it is, up to the pool cap.
    pub(super) fn on_nonces(&mut self, from: &PeerId, items: Vec<NonceItem>) {
        let cap = self.config.trust.pool_cap;
        let mut fed = BTreeSet::new();
        for it in items.into_iter().take(MAX_NONCE_ITEMS) {
            if self.trust.origins.get(&it.chunk) != Some(from) {
                continue;
            }
            let pool = self.trust.pools.entry(it.chunk).or_default();
            if pool.len() < cap && !pool.iter().any(|e| e.nonce == it.nonce) {
                pool.push(PoolEntry { nonce: it.nonce, proof: it.proof, confirmed: false });
                self.trust.stats.nonces_from_publishers += 1;
                self.trust.dirty.insert(it.chunk);
                fed.insert(it.chunk);
            }
        }
        for c in fed {
            self.pool_fed(&c);
        }
    }

    /// A pool got an entry: claimants waiting for one are challenged.
    fn pool_fed(&mut self, chunk: &ChunkId) {
        let waiting: Vec<PeerId> = self
            .holders(chunk)
            .filter(|p| self.peers.get(*p).is_some_and(|s| s.trust.waiting(chunk)))
            .cloned()
            .collect();
        for w in waiting {
            let p = self.peers.get_mut(&w).expect("live");
            p.trust.starved.remove(chunk);
            p.trust.deferred.remove(chunk);
            p.trust.unchecked.insert(*chunk);
            self.trust.ready.insert(w);
        }
    }

    /// Claimants of `chunk` waiting for a nonce, needed or not.
    fn waiting_count(&self, chunk: &ChunkId) -> usize {
        self.holders(chunk).filter(|p| self.peers.get(*p).is_some_and(|s| s.trust.waiting(chunk))).count()
    }

    /// `bad_source` from `from` about `peer`'s copy of `chunk`: an audit of that holding.
    pub(super) fn on_report(&mut self, from: &PeerId, peer: &PeerId, chunk: ChunkId, now_ms: u64) {
        let max = self.config.trust.max_report_strikes;
        let heard = self.peers.get(from).is_some_and(|p| !p.trust.distrusted && p.trust.report_strikes < max);
        let Some(p) = self.peers.get(peer) else { return };
        if !heard || from == peer || !p.chunks.contains(&chunk) {
            self.trust.stats.reports_ignored += 1;
            return;
        }
        if !self.config.trust.verify {
            // Trust off: the old rule (two distinct reporters withdraw a claim).
            let p = self.peers.get_mut(peer).expect("live");
            let reporters = p.bad_reports.entry(chunk).or_default();
            reporters.insert(from.clone());
            if reporters.len() >= 2 {
                p.bad_reports.remove(&chunk);
                self.drop_claim(peer, &chunk);
                self.check_at(chunk, now_ms);
            }
            return;
        }
        if !p.trust.verified.contains(&chunk) || self.trust.audits.contains(&(peer.clone(), chunk)) {
            return; // counts nothing yet, or already being checked
        }
        // Not steerable: a holding audited lately, or a holder audited often lately, is not
        // audited again on anyone's word.
        let key = (peer.clone(), chunk);
        if self.trust.audited.get(&key).is_some_and(|until| *until > now_ms) {
            self.trust.stats.reports_ignored += 1;
            return;
        }
        let budget = self.trust.audit_budget.get(peer).filter(|(end, _)| *end > now_ms).map_or(0, |(_, n)| *n);
        if budget >= MAX_AUDITS_PER_HOLDER {
            self.trust.stats.reports_ignored += 1;
            return;
        }
        let Some(entry) = self.take_random_entry(&chunk) else {
            self.trust.stats.reports_ignored += 1;
            self.trust.hungry.insert(chunk);
            return;
        };
        self.trust.audits.insert((peer.clone(), chunk));
        let b = self.trust.audit_budget.entry(peer.clone()).or_insert((now_ms + AUDIT_COOLDOWN_MS, 0));
        if b.0 <= now_ms {
            *b = (now_ms + AUDIT_COOLDOWN_MS, 0);
        }
        b.1 += 1;
        bound_by_expiry(&mut self.trust.audit_budget, MAX_REMEMBERED, now_ms, |v| v.0);
        let purpose = Purpose::Audit { expected: entry.proof, confirmed: entry.confirmed, reporter: from.clone() };
        let item = self.new_challenge(peer, chunk, entry.nonce, purpose, now_ms);
        self.trust_out.entry(peer.clone()).or_default().push(item);
    }

    /// Pops a pool entry of `chunk` drawn at random, among the confirmed ones if any.
    fn take_random_entry(&mut self, chunk: &ChunkId) -> Option<PoolEntry> {
        let pool = self.trust.pools.get(chunk)?;
        let picks: Vec<usize> = match pool.iter().any(|e| e.confirmed) {
            true => (0..pool.len()).filter(|&i| pool[i].confirmed).collect(),
            false => (0..pool.len()).collect(),
        };
        let seed = self.config.trust.seed;
        let i = picks[self.trust.below(&seed, picks.len())];
        Some(self.remove_entry(chunk, i))
    }

    /// Pops a pool entry of `chunk`, confirmed ones first.
    fn take_entry(&mut self, chunk: &ChunkId) -> Option<PoolEntry> {
        let pool = self.trust.pools.get(chunk)?;
        let i = pool.iter().position(|e| e.confirmed).or(pool.len().checked_sub(1))?;
        Some(self.remove_entry(chunk, i))
    }

    /// Removes entry `i` of `chunk`'s pool (present), forgets an emptied pool, and asks for a
    /// spare for the next claimant or audit.
    fn remove_entry(&mut self, chunk: &ChunkId, i: usize) -> PoolEntry {
        let pool = self.trust.pools.get_mut(chunk).expect("present");
        let e = pool.swap_remove(i);
        self.trust.dirty.insert(*chunk);
        if pool.is_empty() {
            self.trust.pools.remove(chunk);
        }
        self.trust.hungry.insert(*chunk);
        e
    }

    fn new_challenge(
        &mut self,
        peer: &PeerId,
        chunk: ChunkId,
        nonce: [u8; 16],
        purpose: Purpose,
        now_ms: u64,
    ) -> ChallengeItem {
        self.trust.next_id += 1;
        let id = self.trust.next_id;
        let deadline_ms = now_ms + self.config.trust.challenge_timeout_ms;
        self.trust.challenges.insert(id, Challenge { peer: peer.clone(), chunk, deadline_ms, purpose });
        self.trust.deadlines.insert((deadline_ms, id));
        if let Some(p) = self.peers.get_mut(peer) {
            p.trust.pending += 1;
            if matches!(self.trust.challenges[&id].purpose, Purpose::Claim { .. }) {
                p.trust.checking.insert(chunk);
            }
        }
        self.trust.stats.challenges_sent += 1;
        ChallengeItem { id, chunk, nonce }
    }

    /// `Proofs` from `from`.
    pub(super) fn on_proofs(&mut self, from: &PeerId, items: Vec<ProofItem>, now_ms: u64) {
        for it in items.into_iter().take(4 * MAX_CHALLENGE_ITEMS) {
            if self.trust.challenges.get(&it.id).is_none_or(|c| c.peer != *from) {
                continue; // not this peer's challenge (or answered already)
            }
            let c = self.trust.challenges.remove(&it.id).expect("present");
            self.trust.deadlines.remove(&(c.deadline_ms, it.id));
            self.resolve(c, it.proof, false, now_ms);
        }
    }

    /// Settles a challenge: `proof` is the answer (`None`: not held or no answer; `silent`:
    /// no answer at all).
    fn resolve(&mut self, c: Challenge, proof: Option<[u8; 32]>, silent: bool, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(&c.peer) {
            p.trust.pending = p.trust.pending.saturating_sub(1);
            if matches!(c.purpose, Purpose::Claim { .. }) {
                p.trust.checking.remove(&c.chunk);
            }
            if !p.trust.unchecked.is_empty() {
                self.trust.ready.insert(c.peer.clone());
            }
        }
        match c.purpose {
            Purpose::Claim { expected, confirmed } => {
                if proof == Some(expected) && !silent {
                    self.trust.stats.proofs_passed += 1;
                    self.mark_verified(&c.peer, c.chunk, now_ms);
                } else {
                    self.trust.stats.proofs_failed += 1;
                    self.claim_failed(&c.peer, c.chunk, confirmed || silent, now_ms);
                }
            }
            Purpose::Audit { expected, confirmed, reporter } => {
                self.trust.audits.remove(&(c.peer.clone(), c.chunk));
                if proof == Some(expected) && !silent {
                    self.trust.audited.insert((c.peer.clone(), c.chunk), now_ms + AUDIT_COOLDOWN_MS);
                    bound_by_expiry(&mut self.trust.audited, MAX_REMEMBERED, now_ms, |v| *v);
                    self.trust.stats.proofs_passed += 1;
                    self.trust.stats.reports_refuted += 1;
                    if let Some(r) = self.peers.get_mut(&reporter) {
                        r.trust.report_strikes += 1;
                    }
                } else {
                    self.trust.stats.proofs_failed += 1;
                    self.trust.stats.reports_upheld += 1;
                    self.claim_failed(&c.peer, c.chunk, confirmed || silent, now_ms);
                }
            }
            Purpose::Round(r) => {
                if silent {
                    self.strike(&c.peer, now_ms);
                }
                if proof.is_none() && !silent {
                    // A verified holder says it no longer has the chunk.
                    self.drop_claim(&c.peer, &c.chunk);
                    self.check_at(c.chunk, now_ms);
                }
                self.round_answer(r, proof, now_ms);
            }
        }
    }

    /// A claim did not hold: it is removed (and cannot come back in this connection); orders
    /// for it to this peer fail.
    fn claim_failed(&mut self, peer: &PeerId, chunk: ChunkId, strike: bool, now_ms: u64) {
        if let Some(p) = self.peers.get_mut(peer) {
            p.trust.failed.insert(chunk);
        }
        self.drop_claim(peer, &chunk);
        let orders: Vec<u64> = self
            .pending
            .get(&chunk)
            .into_iter()
            .flatten()
            .filter(|o| self.orders[*o].target == *peer)
            .copied()
            .collect();
        for o in orders {
            self.finish_order(o);
            self.repair_stats.orders_failed += 1;
            self.failed_targets.insert((chunk, peer.clone()), now_ms + self.config.failed_target_ms);
        }
        self.check_at(chunk, now_ms);
        if strike {
            self.strike(peer, now_ms);
        }
    }

    fn strike(&mut self, peer: &PeerId, now_ms: u64) {
        let max = self.config.trust.max_strikes;
        let Some(p) = self.peers.get_mut(peer) else { return };
        p.trust.strikes += 1;
        self.trust.stats.strikes += 1;
        if p.trust.strikes >= max && !p.trust.distrusted {
            p.trust.distrusted = true;
            self.trust.stats.distrusted += 1;
            self.trust.distrusted.insert(peer.clone(), now_ms + self.config.trust.distrust_ms);
            // Bounded: drop the oldest-expiring entries beyond a generous cap.
            if self.trust.distrusted.len() > 100_000 {
                let cut = self.trust.distrusted.values().copied().min().unwrap_or(0);
                self.trust.distrusted.retain(|_, u| *u > cut);
            }
            let claims: Vec<ChunkId> = p.chunks.iter().copied().collect();
            for c in claims {
                self.drop_claim(peer, &c);
                if self.chunk_sizes.contains_key(&c) {
                    self.check_at(c, now_ms);
                }
            }
            let mine: Vec<u64> = self.orders.iter().filter(|(_, o)| o.target == *peer).map(|(k, _)| *k).collect();
            for o in mine {
                if let Some(o) = self.finish_order(o) {
                    self.check_at(o.chunk, now_ms);
                }
            }
        }
    }

    /// One answer of a replenishment round.
    fn round_answer(&mut self, round: u64, proof: Option<[u8; 32]>, _now_ms: u64) {
        let Some(r) = self.trust.rounds.get_mut(&round) else { return };
        r.outstanding -= 1;
        match (proof, r.answer) {
            (None, _) => r.failed = true,
            (Some(p), None) => r.answer = Some(p),
            (Some(p), Some(a)) if p != a => {
                r.failed = true;
                self.trust.stats.rounds_disagreed += 1;
            }
            _ => {}
        }
        if r.outstanding > 0 {
            return;
        }
        let r = self.trust.rounds.remove(&round).expect("present");
        if let Some(n) = self.trust.rounds_per_chunk.get_mut(&r.chunk) {
            *n -= 1;
            if *n == 0 {
                self.trust.rounds_per_chunk.remove(&r.chunk);
            }
        }
        if !self.chunk_sizes.contains_key(&r.chunk) {
            return;
        }
        if r.failed {
            // An asked holder left, dropped the chunk or disagreed: try again with whoever
            // holds it now, or claimants waiting for a nonce would wait for good.
            if self.waiting_count(&r.chunk) > 0 {
                self.trust.hungry.insert(r.chunk);
            }
            return;
        }
        let Some(proof) = r.answer else { return };
        let cap = self.config.trust.pool_cap;
        let pool = self.trust.pools.entry(r.chunk).or_default();
        if pool.len() < cap {
            pool.push(PoolEntry { nonce: r.nonce, proof, confirmed: r.confirmed });
            self.trust.stats.nonces_agreed += 1;
            self.trust.dirty.insert(r.chunk);
        }
        self.pool_fed(&r.chunk);
        if self.waiting_count(&r.chunk) > 0 {
            self.trust.hungry.insert(r.chunk);
        }
    }

    /// Expires late challenges (silence fails) and forgets stale memories.
    pub(super) fn trust_tick(&mut self, now_ms: u64) {
        while let Some(&(deadline, id)) = self.trust.deadlines.first() {
            if deadline > now_ms {
                break;
            }
            self.trust.deadlines.pop_first();
            if let Some(c) = self.trust.challenges.remove(&id) {
                self.trust.stats.challenges_expired += 1;
                self.resolve(c, None, true, now_ms);
            }
        }
        self.trust.recent.retain(|_, (until, _)| *until >= now_ms);
    }

    /// Identities whose strikes are remembered after they left (for tests and `/metrics`).
    pub fn trust_remembered(&self) -> usize {
        self.trust.remembered.len()
    }

    /// The next challenge deadline.
    pub(super) fn trust_deadline(&self) -> Option<u64> {
        self.trust.deadlines.first().map(|(d, _)| *d)
    }

    /// Sends the challenges that can go out now: claims with a pool nonce, replenishment
    /// rounds for chunks short of nonces; batched per peer.
    pub(super) fn flush_challenges(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        if !self.config.trust.verify {
            self.trust_out.clear();
            return;
        }
        let cap = self.config.trust.max_pending_per_peer;
        let ready = std::mem::take(&mut self.trust.ready);
        for peer in ready {
            while let Some(p) = self.peers.get(&peer) {
                if p.trust.pending >= cap || p.trust.distrusted {
                    break;
                }
                let Some(&chunk) = p.trust.unchecked.first() else { break };
                self.peers.get_mut(&peer).expect("live").trust.unchecked.remove(&chunk);
                let pool = self.trust.pools.get(&chunk).map_or(0, Vec::len);
                if pool <= POOL_RESERVE && !self.claim_needed(&peer, &chunk) {
                    // Not needed now: only from entries above the reserve.
                    self.peers.get_mut(&peer).expect("live").trust.deferred.insert(chunk);
                    self.trust.hungry.insert(chunk);
                    continue;
                }
                match self.take_entry(&chunk) {
                    Some(e) => {
                        let purpose = Purpose::Claim { expected: e.proof, confirmed: e.confirmed };
                        let item = self.new_challenge(&peer, chunk, e.nonce, purpose, now_ms);
                        self.trust_out.entry(peer.clone()).or_default().push(item);
                    }
                    None => {
                        self.peers.get_mut(&peer).expect("live").trust.starved.insert(chunk);
                        self.trust.hungry.insert(chunk);
                    }
                }
            }
        }
        let hungry = std::mem::take(&mut self.trust.hungry);
        for chunk in hungry {
            self.replenish(chunk, now_ms);
        }
        for (peer, items) in std::mem::take(&mut self.trust_out) {
            for batch in items.chunks(MAX_CHALLENGE_ITEMS) {
                out.push(send(&peer, ServerMsg::Challenge { items: batch.to_vec() }));
            }
        }
    }

    /// Starts up to two replenishment rounds for `chunk` if its pool is short.
    fn replenish(&mut self, chunk: ChunkId, now_ms: u64) {
        for _ in 0..2 {
            if !self.start_round(chunk, now_ms) {
                return;
            }
        }
    }

    /// The (at most two) verified holders a replenishment round of `chunk` asks: picked at
    /// random (see the module doc); a leaving holder still answers (last, but it must: when it
    /// is the last verified holder, its answer is what lets the copies that replace it count,
    /// and it cannot leave before they do).
    fn round_holders(&mut self, chunk: &ChunkId) -> Vec<PeerId> {
        let max_pending = self.config.trust.max_pending_per_peer;
        let mut asked: Vec<PeerId> = self
            .verified_holders(chunk)
            .filter(|p| self.peers.get(*p).is_some_and(|s| !s.trust.distrusted && s.trust.pending < max_pending))
            .cloned()
            .collect();
        let seed = self.config.trust.seed;
        self.trust.shuffle(&seed, &mut asked);
        asked.sort_by_key(|p| self.peers[p].leaving);
        asked.truncate(2);
        asked
    }

    /// Starts a replenishment round for `chunk` if its pool is short and holders can answer.
    fn start_round(&mut self, chunk: ChunkId, now_ms: u64) -> bool {
        if !self.chunk_sizes.contains_key(&chunk) {
            return false;
        }
        let cap = self.config.trust.pool_cap;
        let have = self.trust.pools.get(&chunk).map_or(0, Vec::len);
        let running = self.trust.rounds_per_chunk.get(&chunk).copied().unwrap_or(0);
        // Wanted: a full pool while claimants wait (so that surplus claims are checked above
        // the reserve), one spare otherwise. (A reserve kept full at rest as well cost more
        // rounds for every chunk and skewed placement: `swarm_heals_under_churn`'s busiest
        // peer went from under 27 chunks to 30.)
        let want = if self.waiting_count(&chunk) > 0 { cap } else { 1 };
        if have + running >= want || running >= 2 {
            return false;
        }
        let asked = self.round_holders(&chunk);
        let confirmed = asked.len() == 2;
        if !confirmed && (have > 0 || running > 0 || asked.len() != 1) {
            // One verified holder answers alone only while the pool is empty (trust on
            // first publish for the origin; the last verified holder after the others died).
            return false;
        }
        let nonce = self.trust.random(&self.config.trust.seed);
        self.trust.next_id += 1;
        let round = self.trust.next_id;
        self.trust
            .rounds
            .insert(round, Round { chunk, nonce, outstanding: asked.len(), answer: None, failed: false, confirmed });
        *self.trust.rounds_per_chunk.entry(chunk).or_default() += 1;
        for p in asked {
            let item = self.new_challenge(&p, chunk, nonce, Purpose::Round(round), now_ms);
            self.trust_out.entry(p).or_default().push(item);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::{Manifest, ManifestBuilder};
    use crate::peer::proof::{nonce_items, proof};
    use crate::swarm::repair::RepairConfig;
    use crate::wire::{ClientMsg, FileMeta, PeerKind};
    use std::collections::HashMap;

    fn peer(n: u8) -> PeerId {
        PeerId::from_secret(&format!("t{n}"))
    }

    /// A file of `n` 4-byte chunks and the chunks' bytes.
    fn file(seed: u8, n: usize) -> (Manifest, HashMap<ChunkId, Vec<u8>>) {
        let mut b = ManifestBuilder::new(4);
        let mut bytes = HashMap::new();
        for i in 0..n {
            let data = vec![seed, i as u8, 7, 9];
            bytes.insert(b.push(&data), data);
        }
        (b.finish(), bytes)
    }

    fn swarm(peers: u8) -> Swarm {
        let mut s = Swarm::with_config(RepairConfig { replication: 3, grace_ms: 3000, ..Default::default() });
        for n in 0..peers {
            s.join(peer(n), PeerKind::Native, 0);
        }
        s
    }

    fn challenges(out: &[Output]) -> Vec<(PeerId, ChallengeItem)> {
        out.iter()
            .flat_map(|o| match o {
                Output::Send { to, msg: ServerMsg::Challenge { items } } => {
                    items.iter().map(|i| (to.clone(), i.clone())).collect()
                }
                _ => vec![],
            })
            .collect()
    }

    /// `by` claims and publishes `m`, with nonces if `nonces`.
    fn publish(s: &mut Swarm, by: &PeerId, m: &Manifest, bytes: &HashMap<ChunkId, Vec<u8>>, nonces: bool) {
        s.handle(by, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        let meta = FileMeta::public("f", "x");
        s.handle(by, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 0);
        if nonces {
            let items = m.chunks.iter().flat_map(|c| nonce_items(*c, &bytes[c], &[[1; 16], [2; 16]])).collect();
            s.handle(by, ClientMsg::Nonces { file: m.file_id(), items }, 0);
        }
    }

    /// Answers every challenge in `out` as honest holders of `holding` would (others are
    /// silent), until no challenge is left; returns the other outputs.
    fn answer_all(
        s: &mut Swarm,
        out: Vec<Output>,
        holding: &HashMap<PeerId, HashSet<ChunkId>>,
        bytes: &HashMap<ChunkId, Vec<u8>>,
        now: u64,
    ) -> Vec<Output> {
        answer_with_liars(s, out, holding, &[], bytes, now)
    }

    /// [`answer_all`], with `liars` answering made-up proofs.
    fn answer_with_liars(
        s: &mut Swarm,
        mut out: Vec<Output>,
        holding: &HashMap<PeerId, HashSet<ChunkId>>,
        liars: &[PeerId],
        bytes: &HashMap<ChunkId, Vec<u8>>,
        now: u64,
    ) -> Vec<Output> {
        let mut rest = Vec::new();
        for _ in 0..100 {
            let ch = challenges(&out);
            rest.extend(
                out.into_iter().filter(|o| !matches!(o, Output::Send { msg: ServerMsg::Challenge { .. }, .. })),
            );
            if ch.is_empty() {
                return rest;
            }
            out = Vec::new();
            for (to, it) in ch {
                if liars.contains(&to) {
                    let bogus = ProofItem { id: it.id, proof: Some([0xee; 32]) };
                    out.extend(s.handle(&to, ClientMsg::Proofs { items: vec![bogus] }, now));
                    continue;
                }
                let Some(held) = holding.get(&to) else { continue };
                let p = held.contains(&it.chunk).then(|| proof(&it.nonce, &bytes[&it.chunk]));
                out.extend(s.handle(&to, ClientMsg::Proofs { items: vec![ProofItem { id: it.id, proof: p }] }, now));
            }
        }
        panic!("challenges never end");
    }

    #[test]
    fn a_claim_counts_only_once_proved() {
        let mut s = swarm(3);
        let (m, bytes) = file(1, 2);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let c = m.chunks[0];
        assert_eq!(s.verified_count(&c), 1, "the origin counts");
        let out = s.handle(&peer(1), ClientMsg::Have { chunks: vec![c], full: false }, 10);
        let ch = challenges(&out);
        assert_eq!(ch.len(), 1);
        assert_eq!((s.holder_count(&c), s.verified_count(&c)), (2, 1), "a claim is not a copy");
        let good = proof(&ch[0].1.nonce, &bytes[&c]);
        s.handle(&peer(1), ClientMsg::Proofs { items: vec![ProofItem { id: ch[0].1.id, proof: Some(good) }] }, 20);
        assert_eq!(s.verified_count(&c), 2);
        assert!(s.is_verified(&peer(1), &c));
        // A proof for someone else's challenge, or twice, changes nothing.
        s.handle(&peer(2), ClientMsg::Proofs { items: vec![ProofItem { id: ch[0].1.id, proof: Some(good) }] }, 21);
        assert!(!s.is_verified(&peer(2), &c));
    }

    #[test]
    fn origins_and_pools_survive_a_restart() {
        let mut s = swarm(3);
        let (m, bytes) = file(9, 2);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let kept: HashMap<ChunkId, TrustRecord> =
            s.take_trust_changes().into_iter().map(|(c, r)| (c, r.expect("in the index"))).collect();
        assert_eq!(kept.len(), 2);
        assert!(kept.values().all(|r| r.origin == Some(peer(0)) && r.pool.len() == 2), "{kept:?}");
        assert!(s.take_trust_changes().is_empty(), "nothing changed since");
        // The tracker restarts: files and trust come back, and a liar claims first.
        let mut s2 = swarm(3);
        s2.restore_file(s.file(&m.file_id()).expect("published").clone());
        for (c, r) in kept.clone() {
            s2.restore_trust(c, r);
        }
        let c = m.chunks[0];
        let out = s2.handle(&peer(2), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        assert!(!s2.is_verified(&peer(2), &c), "the first claimant after a restart is not the origin any more");
        let ch = challenges(&out);
        assert_eq!(ch.len(), 1, "it is challenged with a kept nonce");
        s2.handle(&peer(2), ClientMsg::Proofs { items: vec![ProofItem { id: ch[0].1.id, proof: Some([1; 32]) }] }, 1);
        assert_eq!(s2.holder_count(&c), 0, "its claim is gone");
        // The true origin comes back: it counts at once.
        s2.handle(&peer(0), ClientMsg::Have { chunks: m.chunks.clone(), full: true }, 2);
        assert!(s2.is_verified(&peer(0), &c));
        // Unpublishing forgets the chunks' trust (a deletion for the driver).
        s2.take_trust_changes();
        s2.handle(&peer(0), ClientMsg::Unpublish { req: 2, file: m.file_id() }, 3);
        let gone = s2.take_trust_changes();
        assert_eq!(gone.len(), 2);
        assert!(gone.iter().all(|(_, r)| r.is_none()), "{gone:?}");
        assert!(s2.pool(&c).is_empty());
    }

    #[test]
    fn wrong_missing_or_late_proofs_remove_the_claim() {
        let mut s = swarm(4);
        let (m, bytes) = file(2, 1);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let c = m.chunks[0];
        let ch = challenges(&s.handle(&peer(1), ClientMsg::Have { chunks: vec![c], full: false }, 0));
        s.handle(&peer(1), ClientMsg::Proofs { items: vec![ProofItem { id: ch[0].1.id, proof: Some([0; 32]) }] }, 1);
        assert_eq!(s.holder_count(&c), 1, "a wrong proof removes the claim");
        assert_eq!(s.peers[&peer(1)].trust.strikes, 0, "a publisher's nonce cannot strike anyone");
        // Claimed again in the same connection: ignored.
        assert!(challenges(&s.handle(&peer(1), ClientMsg::Have { chunks: vec![c], full: false }, 2)).is_empty());
        assert_eq!(s.holder_count(&c), 1);
        // Peer 2 answers "not held"; the pool is used up, so the origin is asked for a fresh
        // nonce (trust on first publish).
        let mut holding = HashMap::from([(peer(0), HashSet::from([c])), (peer(2), HashSet::new())]);
        let out = s.handle(&peer(2), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        answer_all(&mut s, out, &holding, &bytes, 1);
        assert!(!s.holders(&c).any(|h| *h == peer(2)), "not held: claim removed");
        assert_eq!(s.pool(&c).len(), 1, "the origin's answer refilled the pool");
        // Silence.
        holding.remove(&peer(2));
        let out = s.handle(&peer(3), ClientMsg::Have { chunks: vec![c], full: false }, 100);
        answer_all(&mut s, out, &holding, &bytes, 100);
        assert_eq!(s.challenges_in_flight(), 1, "peer 3 is challenged and stays silent");
        s.tick(100 + s.config.trust.challenge_timeout_ms);
        assert!(!s.holders(&c).any(|h| *h == peer(3)));
        assert_eq!(s.peers[&peer(3)].trust.strikes, 1, "silence is a strike");
        assert_eq!(s.trust_stats().challenges_expired, 1);
    }

    #[test]
    fn the_first_publisher_seeds_the_pool_and_later_ones_cannot() {
        let mut s = swarm(3);
        let (m, bytes) = file(3, 1);
        let c = m.chunks[0];
        publish(&mut s, &peer(0), &m, &bytes, true);
        assert_eq!(s.pool(&c).len(), 2);
        // Another manifest with the same chunk (another file id): its publisher's nonces are
        // ignored, and its claim is challenged like anyone's.
        let mut b = ManifestBuilder::new(4);
        b.push(&bytes[&c]);
        b.push(b"more");
        let m2 = b.finish();
        let out = s.handle(&peer(1), ClientMsg::Have { chunks: m2.chunks.clone(), full: false }, 0);
        let ch = challenges(&out);
        assert_eq!(ch.len(), 1, "the known chunk is challenged, the chunk of no known file is not");
        assert_eq!(ch[0].1.chunk, c);
        let meta = FileMeta::public("g", "x");
        let out = s.handle(&peer(1), ClientMsg::Publish { req: 2, manifest: m2.clone(), meta }, 0);
        assert!(challenges(&out).is_empty(), "not again at publish");
        let bogus = vec![NonceItem { chunk: c, nonce: [9; 16], proof: [9; 32] }];
        s.handle(&peer(1), ClientMsg::Nonces { file: m2.file_id(), items: bogus }, 0);
        assert!(s.pool(&c).iter().all(|e| e.nonce != [9; 16]));
        assert!(s.is_verified(&peer(1), &m2.chunks[1]), "its own new chunk counts (origin)");
        assert!(!s.is_verified(&peer(1), &c));
    }

    #[test]
    fn without_nonces_the_origin_alone_seeds_then_two_holders_agree() {
        let mut s = swarm(5);
        let (m, bytes) = file(4, 1);
        let c = m.chunks[0];
        publish(&mut s, &peer(0), &m, &bytes, false);
        let mut holding = HashMap::from([(peer(0), HashSet::from([c]))]);
        for n in 1..3 {
            holding.insert(peer(n), HashSet::from([c]));
            let out = s.handle(&peer(n), ClientMsg::Have { chunks: vec![c], full: false }, 0);
            answer_all(&mut s, out, &holding, &bytes, 0);
            assert!(s.is_verified(&peer(n), &c), "peer {n}");
        }
        let st = s.trust_stats();
        assert!(st.nonces_agreed >= 2, "{st:?}");
        assert!(s.pool(&c).iter().any(|e| e.confirmed), "two verified holders agreed on a nonce");
        // At R, a further claim (a downloader that became a source) is checked too, from
        // entries above the reserve (the pool is refilled for it)...
        holding.insert(peer(3), HashSet::from([c]));
        let out = s.handle(&peer(3), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        answer_all(&mut s, out, &holding, &bytes, 0);
        assert!(s.is_verified(&peer(3), &c));
        // ...and the reserve is kept for copies that are needed.
        assert!(s.pool(&c).len() >= POOL_RESERVE, "{:?}", s.pool(&c));
        // Two holders that disagree add nothing.
        let before = s.trust_stats().nonces_agreed;
        let out = s.handle(&peer(4), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        let mut liars = holding.clone();
        liars.insert(peer(4), HashSet::new());
        let rest = answer_all(&mut s, out, &liars, &bytes, 0);
        let _ = rest;
        assert!(!s.is_verified(&peer(4), &c));
        assert!(s.trust_stats().nonces_agreed >= before);
    }

    #[test]
    fn slander_checks_and_keeps_the_copy_and_silences_the_slanderer() {
        let mut s = swarm(6);
        let (m, bytes) = file(5, 1);
        let c = m.chunks[0];
        publish(&mut s, &peer(0), &m, &bytes, true);
        let mut holding = HashMap::from([(peer(0), HashSet::from([c]))]);
        for n in 1..3 {
            holding.insert(peer(n), HashSet::from([c]));
            let out = s.handle(&peer(n), ClientMsg::Have { chunks: vec![c], full: false }, 0);
            answer_all(&mut s, out, &holding, &bytes, 0);
        }
        assert_eq!(s.verified_count(&c), 3);
        // Two slanderers report every holder, again and again.
        for round in 0..10u64 {
            for liar in [peer(4), peer(5)] {
                for h in 0..3 {
                    let out = s.handle(&liar, ClientMsg::BadSource { peer: peer(h), chunk: c }, round);
                    answer_all(&mut s, out, &holding, &bytes, round);
                }
            }
            assert_eq!(s.verified_count(&c), 3, "no report removes a true copy");
        }
        assert_eq!(s.holder_count(&c), 3);
        let st = s.trust_stats();
        // Each holding is audited once; then the cooldown ignores the rest, whoever reports.
        assert_eq!(st.reports_refuted, 3, "{st:?}");
        assert_eq!(st.reports_upheld, 0);
        // A true report (after the cooldown): a holder that lost the chunk fails its audit.
        holding.get_mut(&peer(2)).unwrap().clear();
        let later = AUDIT_COOLDOWN_MS + 20;
        let out = s.handle(&peer(1), ClientMsg::BadSource { peer: peer(2), chunk: c }, later);
        answer_all(&mut s, out, &holding, &bytes, later);
        assert!(!s.holders(&c).any(|h| *h == peer(2)), "a failed audit removes the claim");
    }

    #[test]
    fn fakes_count_nothing_trim_nothing_and_get_no_orders_once_distrusted() {
        let mut s = swarm(6);
        let (m, bytes) = file(6, 20);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let mut holding: HashMap<PeerId, HashSet<ChunkId>> =
            HashMap::from([(peer(0), m.chunks.iter().copied().collect())]);
        // Honest replicas through repair.
        let mut now = 0;
        for _ in 0..20 {
            let out = s.tick(now);
            let mut next = Vec::new();
            for o in out {
                if let Output::Send { to, msg: ServerMsg::Replicate { chunk, order, .. } } = &o {
                    holding.entry(to.clone()).or_default().insert(*chunk);
                    next.extend(s.handle(to, ClientMsg::Have { chunks: vec![*chunk], full: false }, now));
                    next.extend(s.handle(to, ClientMsg::OrderDone { order: *order }, now));
                } else {
                    next.push(o);
                }
            }
            answer_all(&mut s, next, &holding, &bytes, now);
            now += 100;
        }
        assert!(m.chunks.iter().all(|c| s.verified_count(c) == 3));
        // Fakes join, offer huge storage; two claim everything and answer made-up proofs.
        let fakes: Vec<PeerId> = (10..14).map(peer).collect();
        for f in &fakes {
            s.join(f.clone(), PeerKind::Native, now);
            s.handle(f, ClientMsg::Storage { used: 0, capacity: u64::MAX / 2 }, now);
        }
        for f in &fakes[..2] {
            let out = s.handle(f, ClientMsg::Have { chunks: m.chunks.clone(), full: true }, now);
            answer_with_liars(&mut s, out, &holding, &fakes, &bytes, now);
        }
        assert!(m.chunks.iter().all(|c| s.verified_count(c) == 3), "health never counts a fake");
        let rec = s.files().next().unwrap().1.clone();
        assert_eq!(s.min_holders(&rec), 3);
        // An honest holder returns with a full inventory: nothing of its is trimmed.
        let out = s.handle(&peer(0), ClientMsg::Have { chunks: m.chunks.clone(), full: true }, now);
        assert!(!out.iter().any(|o| matches!(o, Output::Send { msg: ServerMsg::Trim { .. }, .. })));
        assert!(m.chunks.iter().all(|c| s.is_verified(&peer(0), c)), "a full inventory keeps verification");
        // An honest holder dies: repair happens, and fakes that take orders are found out.
        s.leave(&peer(1), now);
        holding.remove(&peer(1));
        let mut faked = 0;
        for _ in 0..(s.config.grace_ms / 100 + 1200) {
            let out = s.tick(now);
            let mut next = Vec::new();
            for o in out {
                if let Output::Send { to, msg: ServerMsg::Replicate { chunk, order, .. } } = &o {
                    if fakes.contains(to) {
                        faked += 1;
                        // Says done, fetched nothing; answers nothing.
                        next.extend(s.handle(to, ClientMsg::OrderDone { order: *order }, now));
                        continue;
                    }
                    holding.entry(to.clone()).or_default().insert(*chunk);
                    next.extend(s.handle(to, ClientMsg::Have { chunks: vec![*chunk], full: false }, now));
                }
                next.push(o);
            }
            answer_all(&mut s, next, &holding, &bytes, now);
            now += 100;
        }
        assert!(m.chunks.iter().all(|c| s.verified_count(c) == 3), "repair reached R verified copies");
        for c in &m.chunks {
            assert!(s.verified_holders(c).all(|h| holding.get(h).is_some_and(|set| set.contains(c))));
        }
        assert!(faked > 0, "the fakes' huge storage drew orders at first");
        assert!(s.trust_stats().strikes > 0);
        // Pending challenges stay bounded per peer.
        assert!(s.peers.values().all(|p| p.trust.pending <= s.config.trust.max_pending_per_peer));
    }

    #[test]
    fn a_chunk_with_r_claims_but_fewer_verified_copies_is_repaired() {
        let mut s = swarm(6);
        let (m, bytes) = file(7, 1);
        let c = m.chunks[0];
        publish(&mut s, &peer(0), &m, &bytes, true);
        // Two fakes claim it before repair runs: R claims, one verified copy.
        for n in 1..3 {
            s.handle(&peer(n), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        }
        assert_eq!((s.holder_count(&c), s.verified_count(&c)), (3, 1));
        let orders = s
            .tick(0)
            .into_iter()
            .filter(|o| matches!(o, Output::Send { msg: ServerMsg::Replicate { .. }, .. }))
            .count();
        assert_eq!(orders, 2, "two more verified copies are wanted");
        let Some(ServerMsg::Located { peers, holders, .. }) = s.locate(1, &m.file_id()) else { panic!() };
        assert_eq!(peers[holders[0][0] as usize], peer(0), "verified holders first");
    }

    #[test]
    fn after_a_restart_the_first_claimant_of_a_restored_chunk_is_its_origin() {
        let mut s = swarm(3);
        let (m, bytes) = file(10, 1);
        let c = m.chunks[0];
        s.restore_file(crate::swarm::FileRecord {
            manifest: m.clone(),
            meta: FileMeta::public("r", "x"),
            published_at_ms: 0,
            owner: None,
        });
        s.handle(&peer(0), ClientMsg::Have { chunks: vec![c], full: true }, 0);
        assert!(s.is_verified(&peer(0), &c));
        let holding = HashMap::from([(peer(0), HashSet::from([c])), (peer(1), HashSet::from([c]))]);
        let out = s.handle(&peer(1), ClientMsg::Have { chunks: vec![c], full: true }, 0);
        answer_all(&mut s, out, &holding, &bytes, 0);
        assert!(s.is_verified(&peer(1), &c), "the others prove their copies");
    }

    #[test]
    fn strikes_lead_to_distrust() {
        let mut s = swarm(4);
        s.config.trust.max_strikes = 2;
        s.config.trust.challenge_timeout_ms = 10;
        let (m, bytes) = file(8, 3);
        publish(&mut s, &peer(0), &m, &bytes, true);
        s.handle(&peer(1), ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        s.tick(20);
        assert!(s.is_distrusted(&peer(1)));
        assert_eq!(s.peers[&peer(1)].chunks.len(), 0, "claims dropped");
        s.handle(&peer(1), ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 30);
        assert_eq!(s.peers[&peer(1)].chunks.len(), 0, "and ignored from now on");
        // Across a reconnect too.
        s.join(peer(1), PeerKind::Native, 40);
        assert!(s.is_distrusted(&peer(1)));
    }

    #[test]
    fn challenges_are_batched_and_bounded_per_peer() {
        let mut s = swarm(2);
        let (m, bytes) = file(9, 200);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let out = s.handle(&peer(1), ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        let msgs: Vec<usize> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send { msg: ServerMsg::Challenge { items }, .. } => Some(items.len()),
                _ => None,
            })
            .collect();
        assert_eq!(msgs, vec![MAX_CHALLENGE_ITEMS], "one full batch: the rest wait for answers");
        let holding = HashMap::from([(peer(1), m.chunks.iter().copied().collect::<HashSet<_>>())]);
        answer_all(&mut s, out, &holding, &bytes, 0);
        assert!(m.chunks.iter().all(|c| s.is_verified(&peer(1), c)), "all proved, batch after batch");
    }

    /// `n` verified holders of a one-chunk file (published with nonces by peer 0).
    fn held_by(n: u8, seed: [u8; 32]) -> (Swarm, ChunkId) {
        let mut s = swarm(n);
        s.config.trust.seed = seed;
        let (m, bytes) = file(10, 1);
        let c = m.chunks[0];
        publish(&mut s, &peer(0), &m, &bytes, true);
        let mut holding = HashMap::from([(peer(0), HashSet::from([c]))]);
        for k in 1..n {
            holding.insert(peer(k), HashSet::from([c]));
            let out = s.handle(&peer(k), ClientMsg::Have { chunks: vec![c], full: false }, 0);
            answer_all(&mut s, out, &holding, &bytes, 0);
        }
        assert_eq!(s.verified_count(&c), n as usize);
        (s, c)
    }

    #[test]
    fn rounds_ask_holders_picked_at_random() {
        let (mut s, c) = held_by(8, [3; 32]);
        // The pair a rule would pick (the lowest ids: an attacker can grind ids to sort first).
        let mut ids: Vec<PeerId> = s.verified_holders(&c).cloned().collect();
        ids.sort();
        let first_two: BTreeSet<PeerId> = ids[..2].iter().cloned().collect();
        let mut pairs = HashMap::<BTreeSet<PeerId>, u32>::new();
        let draws = 280;
        for _ in 0..draws {
            let asked = s.round_holders(&c);
            assert_eq!(asked.len(), 2);
            *pairs.entry(asked.into_iter().collect()).or_default() += 1;
        }
        // 28 pairs, each about 10 times.
        assert!(pairs.len() >= 20, "{} distinct pairs", pairs.len());
        let aimed = pairs.get(&first_two).copied().unwrap_or(0);
        assert!(aimed < 30, "the lowest ids were asked together {aimed} times in {draws}");
        // Deterministic for a seed, different for another.
        let picks = |seed: [u8; 32]| {
            let (mut s, c) = held_by(8, seed);
            (0..20).map(|_| s.round_holders(&c)).collect::<Vec<_>>()
        };
        assert_eq!(picks([3; 32]), picks([3; 32]));
        assert_ne!(picks([3; 32]), picks([4; 32]));
    }

    #[test]
    fn reports_cannot_steer_audits_onto_a_holder() {
        let mut s = swarm(30);
        let (m, bytes) = file(11, 40);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let mut holding = HashMap::from([(peer(0), m.chunks.iter().copied().collect::<HashSet<_>>())]);
        holding.insert(peer(1), m.chunks.iter().copied().collect());
        let out = s.handle(&peer(1), ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        answer_all(&mut s, out, &holding, &bytes, 0);
        assert!(m.chunks.iter().all(|c| s.is_verified(&peer(1), c)));
        // Audits settled (each one refuted: holder 1 answers right).
        let audits = |s: &Swarm| (s.trust_stats().reports_refuted + s.trust_stats().reports_upheld) as usize;
        // 25 identities report the honest holder 1, for one chunk, many times.
        let c = m.chunks[0];
        for r in 5..30u8 {
            for t in 0..3 {
                let out = s.handle(&peer(r), ClientMsg::BadSource { peer: peer(1), chunk: c }, 10 + t);
                answer_all(&mut s, out, &holding, &bytes, 10 + t);
            }
        }
        assert_eq!(audits(&s), 1, "one audit for the holding, whoever reports how often");
        // ...and for every chunk it holds: a bounded number of audits per holder.
        for (k, c) in m.chunks.iter().enumerate() {
            let r = peer(5 + (k % 25) as u8);
            let out = s.handle(&r, ClientMsg::BadSource { peer: peer(1), chunk: *c }, 100);
            answer_all(&mut s, out, &holding, &bytes, 100);
        }
        let audited = audits(&s);
        assert!(audited <= MAX_AUDITS_PER_HOLDER as usize, "{audited} audits of one holder");
        assert!(m.chunks.iter().all(|c| s.is_verified(&peer(1), c)), "every copy still counts");
        // After the cooldown a report is heard again.
        let later = 100 + AUDIT_COOLDOWN_MS + 1;
        let out = s.handle(&peer(29), ClientMsg::BadSource { peer: peer(1), chunk: m.chunks[39] }, later);
        answer_all(&mut s, out, &holding, &bytes, later);
        assert_eq!(audits(&s), audited + 1);
    }

    #[test]
    fn strikes_survive_a_reconnect() {
        let mut s = swarm(3);
        s.config.trust.challenge_timeout_ms = 10;
        let (m, bytes) = file(12, 1);
        publish(&mut s, &peer(0), &m, &bytes, true);
        let c = m.chunks[0];
        s.handle(&peer(1), ClientMsg::Have { chunks: vec![c], full: false }, 0);
        s.tick(20);
        assert_eq!(s.peers[&peer(1)].trust.strikes, 1, "silence is a strike");
        s.leave(&peer(1), 30);
        s.join(peer(1), PeerKind::Native, 40);
        assert_eq!(s.peers[&peer(1)].trust.strikes, 1, "the strike outlived the connection");
        // A fresh connection under a fresh identity starts clean; the memory ends with the
        // distrust period.
        assert_eq!(s.peers[&peer(2)].trust.strikes, 0);
        s.leave(&peer(1), 50);
        s.join(peer(1), PeerKind::Native, 50 + s.config.trust.distrust_ms + 1);
        assert_eq!(s.peers[&peer(1)].trust.strikes, 0);
        assert_eq!(s.trust_remembered(), 0);
    }

    #[test]
    fn remembered_identities_are_bounded() {
        let mut m: HashMap<u32, u64> = (0..100).map(|i| (i, 1_000 + i as u64)).collect();
        bound_by_expiry(&mut m, 100, 0, |v| *v);
        assert_eq!(m.len(), 100, "within the cap nothing goes");
        m.insert(100, 5_000);
        bound_by_expiry(&mut m, 100, 0, |v| *v);
        assert!(m.len() <= 100 && m.len() >= 80, "{}", m.len());
        assert!(m.contains_key(&100) && !m.contains_key(&0), "the earliest to expire go first");
        bound_by_expiry(&mut m, 10, 1_050, |v| *v);
        assert!(m.len() <= 10);
        assert!(m.values().all(|v| *v > 1_050));
    }
}
