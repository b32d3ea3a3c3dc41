//! The claims phase (`--files N --chunks-per-file K --holdings H`): before the measurements,
//! some load-test peers publish `N` synthetic files of `K` chunks, then every peer announces
//! `H` claims drawn from them; the test reads how many claims each tracker node keeps
//! (`/api/stats` `claims`) and how much its memory grew.
//!
//! - **Files.** A chunk's bytes are 32 bytes derived from a per-run salt, the file and the
//!   chunk's place (`SHA-256(salt ‖ file ‖ chunk)`), so every file id is new in each run and
//!   the manifest is a real one ([`ManifestBuilder`], chunks of [`CHUNK_BYTES`] bytes). File
//!   `f` is published by a peer of node `f mod nodes` (the files go round-robin over the
//!   nodes), as `pp-peer put` does: `have` of its chunks, `publish` (`req` = `f`), and, once
//!   `published`, `nonces` (two per chunk, [`NONCES_PER_CHUNK`]). A publisher answers the
//!   tracker's challenges of its own chunks with true proofs (it is their origin).
//! - **Holdings.** Every peer then sends one `have` with `full: true`: its own files' chunks
//!   and `H` distinct chunks of the published files, picked by a pseudo-random generator
//!   seeded with the peer's index ([`Files::holdings`]): the same picks in every run with the
//!   same published files. These claimants hold no bytes and stay silent when challenged, as
//!   liars would: their claims stand until the tracker's challenge timeout (30 s by default)
//!   removes the challenged ones, so the figures are read as soon as the trackers' counts stop
//!   moving.
//! - Every peer reports no room (`storage` with capacity 0, and `order_failed` "no room" to a
//!   replication order), so repair sends no work their way.

use crate::peer::Ws;
use futures_util::SinkExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Mutex, OnceLock};
use swarm_core::peer::proof::{nonce_items, proof, NONCES_PER_CHUNK};
use swarm_core::wire::{ChallengeItem, ErrorCode, FileMeta, ProofItem, MAX_NONCE_ITEMS};
use swarm_core::{ChunkId, ClientMsg, FileId, Manifest, ManifestBuilder};
use tokio_tungstenite::tungstenite::Message;

/// Bytes in a synthetic chunk (the tracker never sees them; a peer proves it holds them).
pub const CHUNK_BYTES: usize = 32;
/// Seed of the holdings' choice: the same in every run, so runs are comparable.
const HOLDINGS_SEED: u64 = 0x7070_6c6f_6164;

/// Where a file stands.
const PENDING: u8 = 0;
const PUBLISHED: u8 = 1;
const REFUSED: u8 = 2;

/// One synthetic file.
pub struct SynthFile {
    pub manifest: Manifest,
    pub id: FileId,
    pub name: String,
    /// The index of the peer that publishes it.
    pub publisher: usize,
}

/// The synthetic files of a run and what became of them.
pub struct Files {
    pub files: Vec<SynthFile>,
    /// Chunk id → (file index, chunk bytes).
    chunks: HashMap<ChunkId, (u32, [u8; CHUNK_BYTES])>,
    /// Peer index → the files it publishes.
    by_publisher: HashMap<usize, Vec<u32>>,
    status: Vec<AtomicU8>,
    /// Publishes answered (published or refused).
    pub answered: AtomicU64,
    /// Refusals by error code.
    refusals: Mutex<BTreeMap<String, u64>>,
    /// Claims each peer announces beside its own files' chunks.
    pub holdings: usize,
    /// The chunks of the files published, in file order: set once every publish is answered
    /// (or the wait is over), before the holdings are announced.
    published: OnceLock<Vec<ChunkId>>,
    /// The holdings round has started: inventories include the holdings.
    pub holding: AtomicBool,
    /// Peers that sent their full `have` in the holdings round.
    pub announced: AtomicU64,
    /// Challenges answered with a proof (by publishers), and left unanswered (by claimants).
    pub proved: AtomicU64,
    pub unanswered: AtomicU64,
}

/// SplitMix64: a tiny generator whose output never changes between versions of anything.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bytes of chunk `k` of file `f` in the run salted with `salt`.
fn chunk_bytes(salt: &[u8; 16], f: u32, k: u32) -> [u8; CHUNK_BYTES] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"pp-loadtest/chunk");
    h.update(salt);
    h.update(f.to_be_bytes());
    h.update(k.to_be_bytes());
    h.finalize().into()
}

impl Files {
    /// `n` files of `k` chunks; file `f` is published by peer `publisher(f)`.
    pub fn new(n: usize, k: usize, holdings: usize, salt: [u8; 16], publisher: impl Fn(usize) -> usize) -> Self {
        let tag = hex::encode(&salt[..4]);
        let mut chunks = HashMap::with_capacity(n * k);
        let mut by_publisher: HashMap<usize, Vec<u32>> = HashMap::new();
        let files = (0..n)
            .map(|f| {
                let mut b = ManifestBuilder::new(CHUNK_BYTES as u32);
                for c in 0..k {
                    let bytes = chunk_bytes(&salt, f as u32, c as u32);
                    chunks.insert(b.push(&bytes), (f as u32, bytes));
                }
                let manifest = b.finish();
                let publisher = publisher(f);
                by_publisher.entry(publisher).or_default().push(f as u32);
                SynthFile { id: manifest.file_id(), manifest, name: format!("loadtest-{tag}-{f:06}.bin"), publisher }
            })
            .collect();
        Self {
            files,
            chunks,
            by_publisher,
            status: (0..n).map(|_| AtomicU8::new(PENDING)).collect(),
            answered: AtomicU64::new(0),
            refusals: Mutex::new(BTreeMap::new()),
            holdings,
            published: OnceLock::new(),
            holding: AtomicBool::new(false),
            announced: AtomicU64::new(0),
            proved: AtomicU64::new(0),
            unanswered: AtomicU64::new(0),
        }
    }

    /// What peer `me` sends when the publish round starts: `storage` (no room), then for each
    /// of its files `have` of the chunks and `publish`.
    pub fn publish_msgs(&self, me: usize) -> Vec<ClientMsg> {
        let mut out = vec![no_room()];
        for f in self.by_publisher.get(&me).into_iter().flatten() {
            let file = &self.files[*f as usize];
            out.push(ClientMsg::Have { chunks: file.manifest.chunks.clone(), full: false });
            out.push(ClientMsg::Publish {
                req: *f,
                manifest: file.manifest.clone(),
                meta: FileMeta::public(file.name.clone(), "application/octet-stream"),
            });
        }
        out
    }

    /// `published` for request `req`: the file's nonces to send, if it is one of ours.
    pub fn on_published(&self, me: usize, req: u32, file: FileId) -> Vec<ClientMsg> {
        let Some(f) = self.files.get(req as usize).filter(|f| f.publisher == me && f.id == file) else {
            return Vec::new();
        };
        if self.status[req as usize].compare_exchange(PENDING, PUBLISHED, Relaxed, Relaxed).is_ok() {
            self.answered.fetch_add(1, Relaxed);
        }
        let mut items = Vec::with_capacity(f.manifest.chunks.len() * NONCES_PER_CHUNK);
        for c in &f.manifest.chunks {
            let randoms: [[u8; 16]; NONCES_PER_CHUNK] = std::array::from_fn(|_| rand::random());
            items.extend(nonce_items(*c, &self.chunks[c].1, &randoms));
        }
        items.chunks(MAX_NONCE_ITEMS).map(|b| ClientMsg::Nonces { file, items: b.to_vec() }).collect()
    }

    /// An error for request `req` of peer `me`: a refused publish, if it is one of ours.
    pub fn on_error(&self, me: usize, req: u32, code: ErrorCode) {
        let Some(status) =
            self.files.get(req as usize).filter(|f| f.publisher == me).map(|_| &self.status[req as usize])
        else {
            return;
        };
        if status.compare_exchange(PENDING, REFUSED, Relaxed, Relaxed).is_ok() {
            self.answered.fetch_add(1, Relaxed);
            let code = serde_json::to_value(code).ok().and_then(|v| v.as_str().map(str::to_owned));
            *self.refusals.lock().unwrap_or_else(|e| e.into_inner()).entry(code.unwrap_or_default()).or_default() += 1;
        }
    }

    /// Answers to a challenge of peer `me`: true proofs for the chunks of its own files; the
    /// claims it made of other chunks go unanswered (it holds no bytes).
    pub fn prove(&self, me: usize, items: &[ChallengeItem]) -> Vec<ProofItem> {
        let mut out = Vec::new();
        for it in items {
            match self.chunks.get(&it.chunk) {
                Some((f, bytes)) if self.files[*f as usize].publisher == me => {
                    out.push(ProofItem { id: it.id, proof: Some(proof(&it.nonce, bytes)) });
                }
                _ => {
                    self.unanswered.fetch_add(1, Relaxed);
                }
            }
        }
        self.proved.fetch_add(out.len() as u64, Relaxed);
        out
    }

    /// Files published, refused, and the refusals by error code.
    pub fn outcome(&self) -> (usize, usize, BTreeMap<String, u64>) {
        let count = |s| self.status.iter().filter(|x| x.load(Relaxed) == s).count();
        (count(PUBLISHED), count(REFUSED), self.refusals.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// Fixes the chunks holdings are drawn from: those of the files published by now.
    pub fn close_publishing(&self) -> &[ChunkId] {
        self.published.get_or_init(|| {
            self.files
                .iter()
                .zip(&self.status)
                .filter(|(_, s)| s.load(Relaxed) == PUBLISHED)
                .flat_map(|(f, _)| f.manifest.chunks.iter().copied())
                .collect()
        })
    }

    /// The `H` chunks peer `me` claims beside its own (distinct, fewer if fewer were published).
    pub fn holdings(&self, me: usize) -> Vec<ChunkId> {
        let pool = self.published.get().map(Vec::as_slice).unwrap_or_default();
        let want = self.holdings.min(pool.len());
        let mut state = HOLDINGS_SEED ^ (me as u64).wrapping_mul(0x2545_f491_4f6c_dd1d);
        let mut picked = HashSet::with_capacity(want);
        let mut out = Vec::with_capacity(want);
        if want * 2 > pool.len() {
            // Most of the pool: a partial Fisher-Yates shuffle of the indices.
            let mut idx: Vec<usize> = (0..pool.len()).collect();
            for i in 0..want {
                let j = i + (splitmix(&mut state) % (pool.len() - i) as u64) as usize;
                idx.swap(i, j);
                out.push(pool[idx[i]]);
            }
            return out;
        }
        while out.len() < want {
            let i = (splitmix(&mut state) % pool.len() as u64) as usize;
            if picked.insert(i) {
                out.push(pool[i]);
            }
        }
        out
    }

    /// Everything peer `me` claims now: its own files' chunks, and its holdings once the
    /// holdings round has started.
    pub fn inventory(&self, me: usize) -> Vec<ChunkId> {
        let mut seen = HashSet::new();
        let own =
            self.by_publisher.get(&me).into_iter().flatten().flat_map(|f| &self.files[*f as usize].manifest.chunks);
        let mut out: Vec<ChunkId> = own.copied().filter(|c| seen.insert(*c)).collect();
        if self.holding.load(Relaxed) {
            out.extend(self.holdings(me).into_iter().filter(|c| seen.insert(*c)));
        }
        out
    }
}

/// `storage` saying this peer has no room: no replication orders come its way.
pub fn no_room() -> ClientMsg {
    ClientMsg::Storage { used: 0, capacity: 0 }
}

/// Sends `msgs` in order; `false` when the connection is gone.
pub async fn send_all(tx: &mut futures_util::stream::SplitSink<Ws, Message>, msgs: Vec<ClientMsg>) -> bool {
    for m in msgs {
        if tx.send(Message::Text(m.to_json().into())).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(n: usize, k: usize, h: usize) -> Files {
        Files::new(n, k, h, [1; 16], |f| f % 4)
    }

    #[test]
    fn manifests_are_valid_and_files_distinct() {
        let fs = files(5, 64, 8);
        let ids: HashSet<FileId> = fs.files.iter().map(|f| f.id).collect();
        assert_eq!(ids.len(), 5);
        for f in &fs.files {
            f.manifest.validate().unwrap();
            assert_eq!(f.manifest.chunks.len(), 64);
            assert_eq!(f.id, f.manifest.file_id());
        }
        assert_ne!(Files::new(1, 4, 0, [2; 16], |_| 0).files[0].id, files(1, 4, 0).files[0].id, "salted per run");
        assert_eq!(fs.chunks.len(), 5 * 64);
    }

    #[test]
    fn publishers_publish_and_prove_their_files_only() {
        let fs = files(6, 4, 2);
        let msgs = fs.publish_msgs(1); // files 1 and 5
        assert_eq!(msgs.len(), 1 + 2 * 2);
        assert!(matches!(msgs[0], ClientMsg::Storage { capacity: 0, .. }));
        assert!(matches!(&msgs[2], ClientMsg::Publish { req: 1, .. }));
        let nonces = fs.on_published(1, 1, fs.files[1].id);
        let ClientMsg::Nonces { items, .. } = &nonces[0] else { panic!("{nonces:?}") };
        assert_eq!(items.len(), 4 * NONCES_PER_CHUNK);
        assert!(fs.on_published(2, 5, fs.files[5].id).is_empty(), "not peer 2's file");
        fs.on_error(1, 5, ErrorCode::Unavailable);
        fs.on_error(1, 5, ErrorCode::Unavailable);
        let (published, refused, codes) = fs.outcome();
        assert_eq!((published, refused), (1, 1));
        assert_eq!(codes.get("unavailable"), Some(&1));
        let mine = ChallengeItem { id: 7, chunk: fs.files[1].manifest.chunks[0], nonce: [3; 16] };
        let theirs = ChallengeItem { id: 8, chunk: fs.files[2].manifest.chunks[0], nonce: [3; 16] };
        let proofs = fs.prove(1, &[mine, theirs]);
        assert_eq!(proofs.len(), 1);
        let expected = proof(&[3; 16], &fs.chunks[&fs.files[1].manifest.chunks[0]].1);
        assert_eq!(proofs[0], ProofItem { id: 7, proof: Some(expected) });
    }

    #[test]
    fn holdings_are_distinct_deterministic_and_published() {
        let fs = files(4, 16, 10);
        for f in 0..3 {
            fs.on_published(f % 4, f as u32, fs.files[f].id);
        }
        let pool: HashSet<ChunkId> = fs.close_publishing().iter().copied().collect();
        assert_eq!(pool.len(), 3 * 16);
        for me in 0..20 {
            let h = fs.holdings(me);
            assert_eq!(h.len(), 10);
            assert_eq!(h.iter().collect::<HashSet<_>>().len(), 10, "distinct");
            assert!(h.iter().all(|c| pool.contains(c)), "drawn from published files");
            assert_eq!(h, fs.holdings(me), "deterministic");
        }
        assert_ne!(fs.holdings(0), fs.holdings(1));
        let all = files(4, 16, 100);
        all.on_published(0, 0, all.files[0].id);
        all.close_publishing();
        assert_eq!(all.holdings(3).iter().collect::<HashSet<_>>().len(), 16, "capped at the pool");
    }

    #[test]
    fn inventories_hold_own_files_then_holdings() {
        let fs = files(2, 8, 4);
        fs.on_published(0, 0, fs.files[0].id);
        fs.close_publishing();
        assert_eq!(fs.inventory(0), fs.files[0].manifest.chunks, "before the round: own chunks");
        assert!(fs.inventory(2).is_empty());
        fs.holding.store(true, Relaxed);
        let inv = fs.inventory(0);
        assert_eq!(inv.len(), 8, "holdings of its own file add nothing new");
        assert_eq!(fs.inventory(2).len(), 4);
    }
}
