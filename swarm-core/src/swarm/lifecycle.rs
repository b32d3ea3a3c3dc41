//! How files leave the index, and which files are listed.
//!
//! - **Unpublish**: the identity that published a file (its [`FileRecord::owner`]) may remove
//!   it (`unpublish`); anyone else is refused with [`ErrorCode::NotOwner`].
//! - **Expiry**: a file that is not available (some chunk has no copy) is left out of search
//!   and listings at once, and leaves the index once it has been unavailable for the
//!   tracker's configured time ([`Swarm::expire_unavailable`]).
//!
//! Either way the file's chunks that no other file uses are forgotten: their replication
//! orders and checks are dropped and every holder is sent a [`ServerMsg::Trim`] for them.
//! Copies that escape that trim (an order's copy in flight, a holder that was offline) are
//! [`super::orphans`]'.
//!
//! What counts as a copy is [`Swarm::available_copies`], the one place to change when
//! holdings are verified rather than claimed.

use super::{send, FileRecord, Output, Swarm};
use crate::content::{ChunkId, FileId};
use crate::wire::{ErrorCode, PeerId, ServerMsg};
use std::collections::{BTreeMap, HashSet};

impl Swarm {
    /// Copies of `chunk` that make it available: verified copies only (a claim nobody has
    /// proved keeps no file listed). Availability (search, listings, expiry) is decided here
    /// only.
    pub fn available_copies(&self, chunk: &ChunkId) -> usize {
        self.verified_count(chunk)
    }

    /// Whether every chunk of the file has a copy (an empty file always is).
    pub fn is_available(&self, rec: &FileRecord) -> bool {
        rec.manifest.chunks.iter().all(|c| self.available_copies(c) > 0)
    }

    /// The files listed (available now and not private), in id order.
    pub fn listed_files(&self) -> impl Iterator<Item = (&FileId, &FileRecord)> {
        self.files.iter().filter(|(_, rec)| !rec.meta.is_private() && self.is_available(rec))
    }

    /// Since when `file` has been unavailable, as last seen by [`Swarm::expire_unavailable`].
    pub fn unavailable_since(&self, file: &FileId) -> Option<u64> {
        self.unheld_since.get(file).copied()
    }

    /// `unpublish` from `from`: only the file's owner may.
    pub(super) fn unpublish(&mut self, from: &PeerId, req: u32, file: &FileId) -> Vec<Output> {
        let Some(rec) = self.files.get(file) else {
            return vec![self.error(from, Some(req), ErrorCode::UnknownFile, format!("no file {file}"))];
        };
        if rec.owner.as_ref() != Some(from) {
            let msg = format!("only the peer that published {file} may unpublish it");
            return vec![self.error(from, Some(req), ErrorCode::NotOwner, msg)];
        }
        let mut out = vec![send(from, ServerMsg::Unpublished { req, file: *file })];
        out.extend(self.remove_files(&[*file]));
        out
    }

    /// Marks files unavailable since now, forgets the mark of available ones, and removes
    /// those unavailable for `ttl_ms` or longer. Call it now and then (the tracker does, a
    /// few times per `ttl_ms`): a file goes between `ttl_ms` and `ttl_ms` plus the period.
    pub fn expire_unavailable(&mut self, now_ms: u64, ttl_ms: u64) -> Vec<Output> {
        self.now_ms = self.now_ms.max(now_ms);
        let seen: Vec<(FileId, bool)> = self.files.iter().map(|(id, rec)| (*id, self.is_available(rec))).collect();
        let mut expired = Vec::new();
        for (id, available) in seen {
            if available {
                self.unheld_since.remove(&id);
            } else {
                let since = *self.unheld_since.entry(id).or_insert(now_ms);
                if now_ms.saturating_sub(since) >= ttl_ms {
                    expired.push(id);
                }
            }
        }
        self.remove_files(&expired)
    }

    /// Forgets files: their index entries and their chunks that no remaining file uses
    /// (orders, checks, and every holder's copy, trimmed).
    pub fn remove_files(&mut self, ids: &[FileId]) -> Vec<Output> {
        self.forget_files(ids, true)
    }

    /// Lets go of files another tracker node now keeps (a cluster's shard moved): their
    /// bookkeeping here goes, as with [`Swarm::remove_files`], but the files stay published
    /// and every copy stays where it is (no trim, no [`Output::FileRemoved`]).
    pub fn evict_files(&mut self, ids: &[FileId]) {
        let out = self.forget_files(ids, false);
        debug_assert!(out.is_empty());
    }

    fn forget_files(&mut self, ids: &[FileId], unpublish: bool) -> Vec<Output> {
        let mut out = Vec::new();
        let mut candidates: HashSet<ChunkId> = HashSet::new();
        for id in ids {
            if let Some(rec) = self.files.remove(id) {
                self.names.remove(id);
                self.manifest_chunks -= rec.manifest.chunks.len();
                self.unheld_since.remove(id);
                candidates.extend(rec.manifest.chunks.iter().copied());
                if unpublish {
                    out.push(Output::FileRemoved(*id));
                }
            }
        }
        if candidates.is_empty() {
            return out;
        }
        for rec in self.files.values() {
            for c in &rec.manifest.chunks {
                candidates.remove(c);
            }
        }
        let mut trims: BTreeMap<PeerId, Vec<ChunkId>> = BTreeMap::new();
        for c in candidates {
            let size = self.chunk_sizes.remove(&c).unwrap_or(0) as u64;
            for order in self.pending.get(&c).cloned().unwrap_or_default() {
                if let Some(o) = self.finish_order(order) {
                    if unpublish {
                        self.void_order(&o.target, o.chunk);
                    }
                }
            }
            self.scarce.remove(&c);
            self.deferred.remove(&c);
            self.trust_forget(&c);
            self.failed_targets.retain(|(chunk, _), _| *chunk != c);
            let holders = self.holders.remove(&c).unwrap_or_default();
            self.claims_total -= holders.len();
            for holder in holders {
                if let Some(p) = self.peers.get_mut(&holder) {
                    p.chunks.remove(&c);
                    p.used = p.used.saturating_sub(size);
                    p.bad_reports.remove(&c);
                }
                if unpublish {
                    trims.entry(holder).or_default().push(c);
                }
            }
        }
        for (peer, mut chunks) in trims {
            chunks.sort();
            self.repair_stats.chunks_trimmed += chunks.len() as u64;
            out.push(send(&peer, ServerMsg::Trim { chunks }));
        }
        self.room_appeared(self.now_ms);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::testkit::{manifest, peer, publish, trims};
    use crate::wire::{ClientMsg, FileMeta, PeerKind};

    fn error_code(out: &[Output]) -> Option<ErrorCode> {
        out.iter().find_map(|o| match o {
            Output::Send { msg: ServerMsg::Error { code, .. }, .. } => Some(*code),
            _ => None,
        })
    }

    #[test]
    fn only_the_owner_unpublishes_and_shared_chunks_stay() {
        let mut s = Swarm::new();
        let (owner, other, holder) = (peer(1), peer(2), peer(3));
        for p in [&owner, &other, &holder] {
            s.join(p.clone(), PeerKind::Native, 0);
        }
        let mine = manifest(&[b"aaaa", b"bbbb"]);
        let theirs = manifest(&[b"bbbb", b"cccc"]);
        publish(&mut s, &owner, &mine, 0);
        publish(&mut s, &other, &theirs, 0);
        s.handle(&holder, ClientMsg::Have { chunks: mine.chunks.clone(), full: false }, 0);
        let id = mine.file_id();

        let out = s.handle(&other, ClientMsg::Unpublish { req: 4, file: id }, 0);
        assert_eq!(error_code(&out), Some(ErrorCode::NotOwner));
        assert!(s.file(&id).is_some(), "a stranger cannot delete it");
        let out = s.handle(&owner, ClientMsg::Unpublish { req: 5, file: FileId([9; 32]) }, 0);
        assert_eq!(error_code(&out), Some(ErrorCode::UnknownFile));

        let out = s.handle(&owner, ClientMsg::Unpublish { req: 6, file: id }, 0);
        assert_eq!(out[0], send(&owner, ServerMsg::Unpublished { req: 6, file: id }));
        assert!(out.contains(&Output::FileRemoved(id)));
        assert!(s.file(&id).is_none());
        assert!(s.search("", 10).iter().all(|f| f.id != id));
        let only_a = vec![mine.chunks[0]];
        let t = trims(&out);
        assert_eq!(t.get(&owner), Some(&only_a), "the shared chunk stays");
        assert_eq!(t.get(&holder), Some(&only_a));
        assert_eq!(t.get(&other), None);
        assert_eq!(s.holder_count(&mine.chunks[0]), 0);
        assert_eq!(s.holder_count(&mine.chunks[1]), 3, "still held for the other file");
        let out = s.handle(&owner, ClientMsg::Unpublish { req: 7, file: id }, 0);
        assert_eq!(error_code(&out), Some(ErrorCode::UnknownFile), "gone");
        // Nothing more is replicated for the forgotten chunk.
        let out = s.tick(10_000);
        assert!(!out.iter().any(
            |o| matches!(o, Output::Send { msg: ServerMsg::Replicate { chunk, .. }, .. } if *chunk == mine.chunks[0])
        ));
    }

    #[test]
    fn an_evicted_file_is_forgotten_here_but_stays_published_and_held() {
        let mut s = Swarm::new();
        let (a, b) = (peer(1), peer(2));
        s.join(a.clone(), PeerKind::Native, 0);
        s.join(b.clone(), PeerKind::Native, 0);
        let m = manifest(&[b"aaaa", b"bbbb"]);
        let kept = manifest(&[b"cccc"]);
        publish(&mut s, &a, &m, 0);
        publish(&mut s, &a, &kept, 0);
        s.handle(&b, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
        s.evict_files(&[m.file_id()]);
        assert!(s.file(&m.file_id()).is_none());
        assert!(s.file(&kept.file_id()).is_some(), "other files stay");
        assert_eq!(s.holder_count(&m.chunks[0]), 0, "its bookkeeping went");
        // Restored again (the shard came back): holders re-announce and count.
        let rec = FileRecord {
            manifest: m.clone(),
            meta: FileMeta::public("f.txt", "text/plain"),
            published_at_ms: 0,
            owner: Some(a.clone()),
        };
        s.restore_file(rec);
        s.handle(&b, ClientMsg::Have { chunks: m.chunks.clone(), full: true }, 10);
        assert_eq!(s.holder_count(&m.chunks[0]), 1);
    }

    #[test]
    fn ids_come_from_the_range_set() {
        let mut s = Swarm::new();
        s.set_id_base(7 << crate::swarm::ID_RANGE_BITS);
        let (a, b, c) = (peer(1), peer(2), peer(3));
        for p in [&a, &b, &c] {
            s.join(p.clone(), PeerKind::Native, 0);
        }
        let m = manifest(&[b"aaaa"]);
        publish(&mut s, &a, &m, 0);
        let mut out = s.tick(10_000);
        out.extend(s.tick(20_000));
        let orders: Vec<u64> = out
            .iter()
            .filter_map(|o| match o {
                Output::Send { msg: ServerMsg::Replicate { order, .. }, .. } => Some(*order),
                _ => None,
            })
            .collect();
        assert!(!orders.is_empty(), "an order went out: {out:?}");
        assert!(orders.iter().all(|o| Swarm::id_range_of(*o) == 7));
    }

    #[test]
    fn unavailable_files_are_hidden_then_expire() {
        let mut s = Swarm::new();
        let (a, b) = (peer(1), peer(2));
        s.join(a.clone(), PeerKind::Native, 0);
        s.join(b.clone(), PeerKind::Native, 0);
        let m = manifest(&[b"aaaa", b"bbbb"]);
        publish(&mut s, &a, &m, 0);
        s.handle(&b, ClientMsg::Have { chunks: vec![m.chunks[0]], full: false }, 0);
        assert_eq!(s.search("", 10).len(), 1);
        assert_eq!(s.listed_files().count(), 1);
        assert!(s.expire_unavailable(0, 1_000).is_empty());
        s.leave(&a, 100);
        assert!(s.search("", 10).is_empty(), "a chunk has no copy: not listed");
        assert_eq!(s.listed_files().count(), 0);
        assert!(s.expire_unavailable(200, 1_000).is_empty());
        assert_eq!(s.unavailable_since(&m.file_id()), Some(200));
        // Back in time: the mark goes.
        s.join(a.clone(), PeerKind::Native, 300);
        s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: true }, 300);
        assert!(s.expire_unavailable(400, 1_000).is_empty());
        assert_eq!(s.unavailable_since(&m.file_id()), None);
        s.leave(&a, 500);
        assert!(s.expire_unavailable(600, 1_000).is_empty());
        assert!(s.expire_unavailable(1_599, 1_000).is_empty());
        let out = s.expire_unavailable(1_600, 1_000);
        assert!(out.contains(&Output::FileRemoved(m.file_id())));
        assert_eq!(trims(&out).get(&b), Some(&vec![m.chunks[0]]), "the copies left are trimmed");
        assert!(s.file(&m.file_id()).is_none());
    }

    #[test]
    fn an_empty_file_is_always_available() {
        let mut s = Swarm::new();
        let a = peer(1);
        s.join(a.clone(), PeerKind::Native, 0);
        let m = manifest(&[]);
        publish(&mut s, &a, &m, 0);
        s.leave(&a, 0);
        assert!(s.expire_unavailable(10_000, 1).is_empty());
        assert_eq!(s.search("", 10).len(), 1);
    }
}
