//! Copies of chunks no file uses any more ("orphans"): the swarm tells their holders to let
//! them go, so a deleted file leaves every disk, not only the index.
//!
//! A file's removal trims the copies the swarm knows of ([`super::lifecycle`]). Two kinds of
//! copy escape that trim:
//! - **A copy in flight.** A replication order for the file's chunk was running when the
//!   file went: the target stores the chunk and announces it a moment later. The removal
//!   *voids* such orders: the target's announcement of that chunk (within
//!   [`VOID_MS`]) is answered with a trim at once, unless a file uses the chunk again.
//! - **A copy the swarm never heard of.** A peer offline when the file went comes back and
//!   announces it; a download of the file finished after it went.
//!   [`Swarm::trim_orphans`], called now and then by the tracker, trims a claim of a chunk
//!   no file uses once the chunk has been an orphan for the grace time *and* its holder
//!   announced nothing for that long. The second rule spares a publisher whose upload is
//!   still storing and announcing chunks: its `publish` comes after its last `have`.
//!
//! A peer keeps a trimmed chunk its user still wants (a pinned download) and announces it
//! again; such a claim is remembered and not trimmed a second time, so no trim/announce loop
//! runs. A tracker node of a cluster passes which chunks some file of the cluster uses
//! (its chunk index), since its own swarm knows only the files it keeps.

use super::{send, Output, Swarm};
use crate::content::ChunkId;
use crate::wire::{PeerId, ServerMsg};
use std::collections::{BTreeMap, HashSet};

/// How long after a file's removal the target of one of its voided orders is trimmed at
/// once when it announces the chunk (a little over an order's default timeout).
pub const VOID_MS: u64 = 30_000;

impl Swarm {
    /// A file's chunk left the index while `order` (for that chunk) ran: its target's
    /// announcement of the chunk will be trimmed (see the module docs).
    pub(super) fn void_order(&mut self, target: &PeerId, chunk: ChunkId) {
        self.voided.insert((target.clone(), chunk), self.now_ms + VOID_MS);
    }

    /// Whether `from`'s claim of `chunk` is the late result of a voided order (and no file
    /// uses the chunk again): the caller trims it instead of keeping it.
    pub(super) fn is_voided(&mut self, from: &PeerId, chunk: &ChunkId) -> bool {
        if self.voided.is_empty() || self.chunk_sizes.contains_key(chunk) {
            return false;
        }
        match self.voided.remove(&(from.clone(), *chunk)) {
            Some(until) => until >= self.now_ms,
            None => false,
        }
    }

    /// Forgets voided orders older than [`VOID_MS`].
    pub(super) fn expire_voided(&mut self, now_ms: u64) {
        if !self.voided.is_empty() {
            self.voided.retain(|_, until| *until >= now_ms);
        }
    }

    /// Trims claims of chunks no file uses: those orphaned for `grace_ms` or longer whose
    /// holder announced nothing for `grace_ms`. `in_use` tells of chunks some file uses
    /// that this swarm does not keep (a cluster's other nodes' files); a single tracker
    /// passes `|_| false`. Call it a few times per `grace_ms`; it costs a pass over the
    /// chunks claimed.
    pub fn trim_orphans(&mut self, now_ms: u64, grace_ms: u64, in_use: impl Fn(&ChunkId) -> bool) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        self.expire_voided(now_ms);
        let orphans: HashSet<ChunkId> = self.loose_claims().map(|(c, _)| *c).filter(|c| !in_use(c)).collect();
        let mut since = std::mem::take(&mut self.orphan_since);
        since.retain(|c, _| orphans.contains(c));
        let mut trims: BTreeMap<PeerId, Vec<ChunkId>> = BTreeMap::new();
        for c in &orphans {
            let first = *since.entry(*c).or_insert(now_ms);
            if now_ms.saturating_sub(first) < grace_ms {
                continue;
            }
            let holders: Vec<PeerId> = self.holders.get(c).into_iter().flatten().cloned().collect();
            let cap = self.config.claims.max_loose;
            for h in holders {
                let Some(p) = self.peers.get_mut(&h) else { continue };
                if p.orphans_trimmed.len() >= cap {
                    // Bounded like its loose claims: the oldest memory of kept orphans goes.
                    p.orphans_trimmed.clear();
                }
                if now_ms.saturating_sub(p.last_have_ms) < grace_ms || !p.orphans_trimmed.insert(*c) {
                    continue;
                }
                trims.entry(h.clone()).or_default().push(*c);
                self.drop_claim(&h, c);
            }
        }
        since.retain(|c, _| self.holders.contains_key(c));
        self.orphan_since = since;
        let mut out = Vec::new();
        for (peer, mut chunks) in trims {
            chunks.sort();
            self.repair_stats.orphans_trimmed += chunks.len() as u64;
            out.push(send(&peer, ServerMsg::Trim { chunks }));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::repair::RepairConfig;
    use crate::swarm::testkit::{manifest, peer, publish, trims};
    use crate::wire::{ClientMsg, FileMeta, PeerKind};

    const GRACE: u64 = 60_000;

    /// Repair alone: every claim counts at once.
    fn swarm(peers: u8) -> Swarm {
        let mut c = RepairConfig { replication: 3, ..Default::default() };
        c.trust.verify = false;
        let mut s = Swarm::with_config(c);
        for n in 0..peers {
            s.join(peer(n), PeerKind::Native, 0);
        }
        s
    }
    fn have(s: &mut Swarm, p: &PeerId, chunks: &[ChunkId], now: u64) -> Vec<Output> {
        s.handle(p, ClientMsg::Have { chunks: chunks.to_vec(), full: false }, now)
    }

    #[test]
    fn a_copy_an_order_made_after_its_file_went_is_trimmed_at_once() {
        let mut s = swarm(3);
        let m = manifest(&[b"aaaa", b"bbbb"]);
        publish(&mut s, &peer(0), &m, 0);
        s.tick(0);
        let (target, chunk) = s.orders().map(|(_, o)| (o.target.clone(), o.chunk)).next().expect("orders placed");
        // The owner deletes the file while the order runs.
        s.handle(&peer(0), ClientMsg::Unpublish { req: 2, file: m.file_id() }, 100);
        assert_eq!(s.orders().count(), 0);
        // The copy lands a moment later: the target is told to let it go, and it is not counted.
        let out = have(&mut s, &target, &[chunk], 500);
        assert_eq!(trims(&out).get(&target), Some(&vec![chunk]));
        assert_eq!(s.holder_count(&chunk), 0);
        assert_eq!(s.repair_stats.orphans_trimmed, 1);
        // Only the order's target, only once: another peer's claim of it waits for the sweep.
        let other = (0..3).map(peer).find(|p| *p != target).unwrap();
        assert!(trims(&have(&mut s, &other, &[chunk], 600)).is_empty());
        assert!(trims(&have(&mut s, &target, &[chunk], 700)).is_empty());
    }

    #[test]
    fn a_voided_order_is_forgotten_after_a_while_and_when_the_chunk_is_published_again() {
        let mut s = swarm(3);
        let m = manifest(&[b"aaaa"]);
        publish(&mut s, &peer(0), &m, 0);
        s.tick(0);
        let targets: Vec<(PeerId, ChunkId)> = s.orders().map(|(_, o)| (o.target.clone(), o.chunk)).collect();
        assert_eq!(targets.len(), 2);
        s.handle(&peer(0), ClientMsg::Unpublish { req: 2, file: m.file_id() }, 100);
        // Published again (the same bytes): a copy made for the old file counts for the new one.
        publish(&mut s, &peer(0), &m, 200);
        let (t0, c) = targets[0].clone();
        assert!(trims(&have(&mut s, &t0, &[c], 300)).is_empty());
        assert_eq!(s.holder_count(&c), 2);
        // Removed again: the other old order's target, long after, is not trimmed at once.
        s.handle(&peer(0), ClientMsg::Unpublish { req: 3, file: m.file_id() }, 400);
        s.tick(400 + VOID_MS + 1);
        let (t1, c) = targets[1].clone();
        assert!(trims(&have(&mut s, &t1, &[c], 400 + VOID_MS + 2)).is_empty());
    }

    #[test]
    fn orphans_go_after_the_grace_but_an_uploader_still_announcing_keeps_them() {
        let mut s = swarm(3);
        let (back, uploader) = (peer(1), peer(2));
        let gone = manifest(&[b"gone"]);
        let upload = manifest(&[b"up-1", b"up-2"]);
        // A peer that was offline when its file went announces its copy.
        have(&mut s, &back, &gone.chunks, 1_000);
        // A publisher stores and announces its upload's chunks one by one.
        have(&mut s, &uploader, &upload.chunks[..1], 1_000);
        assert!(s.trim_orphans(1_000, GRACE, |_| false).is_empty(), "orphans are noted first");
        assert!(s.trim_orphans(GRACE, GRACE, |_| false).is_empty(), "not yet: the grace counts from the sweep");
        have(&mut s, &uploader, &upload.chunks[1..], GRACE);
        let out = s.trim_orphans(1_000 + GRACE, GRACE, |_| false);
        assert_eq!(trims(&out), BTreeMap::from([(back.clone(), gone.chunks.clone())]), "the uploader announced lately");
        assert_eq!(s.holder_count(&gone.chunks[0]), 0);
        // The publish comes: its chunks are a file's now, never orphans.
        let meta = FileMeta::public("u.bin", "x");
        s.handle(&uploader, ClientMsg::Publish { req: 1, manifest: upload.clone(), meta }, GRACE + 10);
        assert!(trims(&s.trim_orphans(10 * GRACE, GRACE, |_| false)).is_empty());
        assert_eq!(s.holder_count(&upload.chunks[0]), 1);
    }

    #[test]
    fn a_kept_orphan_is_trimmed_once_and_chunks_in_use_elsewhere_never() {
        let mut s = swarm(2);
        let p = peer(1);
        let [mine, theirs] = [[1u8; 32], [2u8; 32]].map(ChunkId);
        have(&mut s, &p, &[mine, theirs], 0);
        let in_use = |c: &ChunkId| *c == theirs; // another tracker node keeps its file
        s.trim_orphans(0, GRACE, in_use);
        let out = s.trim_orphans(GRACE, GRACE, in_use);
        assert_eq!(trims(&out), BTreeMap::from([(p.clone(), vec![mine])]));
        assert_eq!(s.holder_count(&theirs), 1);
        // The peer's user keeps it (a pinned download): it says so again, and is left alone.
        have(&mut s, &p, &[mine], GRACE + 1);
        s.trim_orphans(3 * GRACE, GRACE, in_use);
        assert!(trims(&s.trim_orphans(5 * GRACE, GRACE, in_use)).is_empty());
        assert_eq!(s.holder_count(&mine), 1);
    }
}
