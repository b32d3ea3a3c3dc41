//! Proofs of holding: the tracker challenges a claim with a nonce ([`ServerMsg::Challenge`]);
//! the peer reads the chunk through the store ([`Output::Read`], the token tagged as a proof,
//! not a serve), answers `SHA-256(nonce ‖ bytes)` ([`ClientMsg::Proofs`], batched), or `None`
//! when the chunk is missing or corrupt. Reads for proofs are bounded ([`MAX_PROOF_READS`] at
//! once; the rest wait in arrival order, [`MAX_PROOF_QUEUE`] at most: the tracker never has
//! more than 64 challenges out per peer).
//!
//! A publisher precomputes answers while it chunks ([`nonce_items`]) and sends them after
//! `publish` ([`ClientMsg::Nonces`]): the tracker's first challenges of the file's replicas.

use super::{ChunkBuf, Inventory, Output, Peer, ReadResult};
use crate::wire::{ChallengeItem, NonceItem, ProofItem, MAX_CHALLENGE_ITEMS, MAX_NONCE_ITEMS};
use crate::{ChunkId, ClientMsg, FileId};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};

/// Store reads for proofs in progress at once.
pub const MAX_PROOF_READS: usize = 4;
/// Challenges waiting for a read slot (beyond: answered `None` at once).
pub const MAX_PROOF_QUEUE: usize = 1024;
/// Challenge answers a publisher computes per chunk.
pub const NONCES_PER_CHUNK: usize = 2;

/// `SHA-256(nonce ‖ bytes)`: the answer to a challenge.
pub fn proof(nonce: &[u8; 16], bytes: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(nonce);
    h.update(bytes);
    h.finalize().into()
}

/// Challenges (with their answers) for the tracker's pool of `chunk`, one per random nonce.
pub fn nonce_items(chunk: ChunkId, bytes: &[u8], randoms: &[[u8; 16]]) -> Vec<NonceItem> {
    randoms.iter().map(|n| NonceItem { chunk, nonce: *n, proof: proof(n, bytes) }).collect()
}

/// What the proof side remembers.
#[derive(Debug, Default)]
pub struct Proving {
    /// Reads in progress: token → (challenge id, nonce, chunk).
    reads: HashMap<u64, (u64, [u8; 16], ChunkId)>,
    waiting: VecDeque<ChallengeItem>,
    batch: Vec<ProofItem>,
    /// Challenges answered (with a proof or `None`).
    pub answered: u64,
}

impl<B: ChunkBuf + Clone> Peer<B> {
    /// A challenge from the tracker.
    pub(super) fn on_challenge(&mut self, items: Vec<ChallengeItem>, inv: &dyn Inventory) {
        for it in items {
            if !inv.has(&it.chunk) {
                self.proved(it.id, None);
            } else if self.proving.reads.len() < MAX_PROOF_READS {
                self.start_proof(it);
            } else if self.proving.waiting.len() < MAX_PROOF_QUEUE {
                self.proving.waiting.push_back(it);
            } else {
                self.proved(it.id, None);
            }
        }
        self.flush_proofs(false);
    }

    fn start_proof(&mut self, it: ChallengeItem) {
        let token = self.serve.new_token();
        self.proving.reads.insert(token, (it.id, it.nonce, it.chunk));
        self.out.push_back(Output::Read { token, chunk: it.chunk });
    }

    /// The store's answer to a read for a proof; `false` if `token` is not one.
    pub(super) fn proof_read(&mut self, token: u64, result: &ReadResult) -> bool {
        let Some((id, nonce, chunk)) = self.proving.reads.remove(&token) else { return false };
        let answer = match result {
            ReadResult::Found(bytes) => Some(proof(&nonce, bytes)),
            ReadResult::Missing => None,
            ReadResult::Corrupt => {
                self.send(ClientMsg::Dropped { chunks: vec![chunk] });
                None
            }
        };
        self.proved(id, answer);
        if let Some(next) = self.proving.waiting.pop_front() {
            self.start_proof(next);
        }
        self.flush_proofs(false);
        true
    }

    fn proved(&mut self, id: u64, proof: Option<[u8; 32]>) {
        self.proving.answered += 1;
        self.proving.batch.push(ProofItem { id, proof });
        if self.proving.batch.len() >= MAX_CHALLENGE_ITEMS {
            self.flush_proofs(true);
        }
    }

    /// Sends the answers batched so far: when full, or when no read is in progress any more.
    fn flush_proofs(&mut self, force: bool) {
        if self.proving.batch.is_empty() || !(force || self.proving.reads.is_empty()) {
            return;
        }
        let items = std::mem::take(&mut self.proving.batch);
        self.send(ClientMsg::Proofs { items });
    }

    /// A new tracker connection: challenges of the old one are void.
    pub(super) fn forget_proofs(&mut self) {
        self.proving.reads.clear();
        self.proving.waiting.clear();
        self.proving.batch.clear();
    }

    /// Sends the challenges a publisher computed for `file` (right after `publish`), in
    /// messages of at most [`MAX_NONCE_ITEMS`] items.
    pub fn publish_nonces(&mut self, file: FileId, items: Vec<NonceItem>) {
        for batch in items.chunks(MAX_NONCE_ITEMS) {
            self.send(ClientMsg::Nonces { file, items: batch.to_vec() });
        }
    }

    /// Whether the store read `token` is for a proof (not to serve a peer).
    pub fn reading_for_proof(&self, token: u64) -> bool {
        self.proving.reads.contains_key(&token)
    }

    /// Challenges answered so far.
    pub fn challenges_answered(&self) -> u64 {
        self.proving.answered
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{PeerKind, ServerMsg};
    use crate::PeerId;
    use std::collections::HashSet;

    struct Store(HashSet<ChunkId>);
    impl Inventory for Store {
        fn has(&self, c: &ChunkId) -> bool {
            self.0.contains(c)
        }
        fn ids(&self) -> Vec<ChunkId> {
            self.0.iter().copied().collect()
        }
        fn used(&self) -> u64 {
            0
        }
        fn capacity(&self) -> u64 {
            1 << 30
        }
    }

    fn connected(inv: &Store) -> Peer<Vec<u8>> {
        let mut p = Peer::new(super::super::PeerConfig::new(PeerKind::Native, [0; 32]));
        p.tracker_connected(inv, 0);
        p.handle_server_msg(ServerMsg::AuthChallenge { nonce: [1; 32] }, inv, 0);
        p.hello_signed([1; 32], [0; 64], inv, 0);
        let welcome = ServerMsg::Welcome {
            version: 2,
            peer_id: PeerId::from_secret("x"),
            migrated: None,
            ice_servers: vec![],
            trackers: vec![],
        };
        p.handle_server_msg(welcome, inv, 0);
        while p.poll_output().is_some() {}
        p
    }

    #[test]
    fn challenges_are_answered_from_the_store_in_a_batch() {
        let held = b"held bytes".to_vec();
        let (a, b, gone) = (ChunkId::of(&held), ChunkId::of(b"corrupt"), ChunkId::of(b"not here"));
        let inv = Store([a, b].into_iter().collect());
        let mut p = connected(&inv);
        let items: Vec<ChallengeItem> = [a, b, gone]
            .iter()
            .enumerate()
            .map(|(i, c)| ChallengeItem { id: i as u64, chunk: *c, nonce: [i as u8; 16] })
            .collect();
        p.handle_server_msg(ServerMsg::Challenge { items }, &inv, 1);
        let mut reads = Vec::new();
        while let Some(o) = p.poll_output() {
            match o {
                Output::Read { token, chunk } => {
                    assert!(p.reading_for_proof(token), "tagged as a proof");
                    reads.push((token, chunk));
                }
                other => panic!("nothing is sent before the reads are done: {other:?}"),
            }
        }
        assert_eq!(reads.len(), 2, "the missing chunk is not read");
        p.chunk_read(reads.iter().find(|r| r.1 == a).unwrap().0, ReadResult::Found(held.clone()));
        assert!(p.poll_output().is_none(), "answers wait for the batch");
        p.chunk_read(reads.iter().find(|r| r.1 == b).unwrap().0, ReadResult::Corrupt);
        let mut sent = Vec::new();
        while let Some(o) = p.poll_output() {
            if let Output::Tracker(m) = o {
                sent.push(m);
            }
        }
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0], ClientMsg::Dropped { chunks: vec![b] }, "a corrupt chunk is reported");
        let ClientMsg::Proofs { items } = &sent[1] else { panic!("{sent:?}") };
        let mut items = items.clone();
        items.sort_by_key(|i| i.id);
        assert_eq!(
            items,
            vec![
                ProofItem { id: 0, proof: Some(proof(&[0; 16], &held)) },
                ProofItem { id: 1, proof: None },
                ProofItem { id: 2, proof: None },
            ]
        );
        assert_eq!(p.challenges_answered(), 3);
    }

    #[test]
    fn proof_reads_are_bounded() {
        let chunks: Vec<ChunkId> = (0..10u8).map(|i| ChunkId::of(&[i])).collect();
        let inv = Store(chunks.iter().copied().collect());
        let mut p = connected(&inv);
        let items =
            chunks.iter().enumerate().map(|(i, c)| ChallengeItem { id: i as u64, chunk: *c, nonce: [0; 16] }).collect();
        p.handle_server_msg(ServerMsg::Challenge { items }, &inv, 1);
        let mut n = 0;
        let mut answered = 0;
        while answered < 10 {
            let mut reads = Vec::new();
            while let Some(o) = p.poll_output() {
                if let Output::Read { token, chunk } = o {
                    reads.push((token, chunk));
                }
            }
            assert!(reads.len() <= MAX_PROOF_READS);
            n += reads.len();
            for (t, c) in reads {
                let i = chunks.iter().position(|x| *x == c).unwrap() as u8;
                p.chunk_read(t, ReadResult::Found(vec![i]));
                answered += 1;
            }
        }
        assert_eq!(n, 10);
    }

    #[test]
    fn publishers_compute_the_same_answers() {
        let bytes = b"chunk".to_vec();
        let c = ChunkId::of(&bytes);
        let items = nonce_items(c, &bytes, &[[1; 16], [2; 16]]);
        assert_eq!(items.len(), 2);
        assert_eq!(items[1].proof, proof(&[2; 16], &bytes));
        assert_ne!(items[0].proof, items[1].proof);
    }
}
