//! Which shard(s) each chunk of every published file belongs to, kept by every node of a
//! cluster, so a peer's claims (`have`, `dropped`, `bad_source`: about chunks, not files) can
//! go to the node that keeps the chunk's file ([`super::claims`]).
//!
//! The index follows the cluster's `files` KV bucket ([`follow`]): every node watches it, so
//! a node that was cut off or stopped catches up from the bucket itself, not from messages it
//! may have missed. It holds file ids and chunk ids only (about 80 bytes per chunk), not
//! manifests or names: the durable index stays in KV, each file in full on its shard's node.
//!
//! A chunk shared by files of several shards (the same bytes in two files) is in each shard.

use super::Cluster;
use futures_util::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use swarm_core::{ChunkId, FileId};

/// Chunk → shards, built from file → (shard, chunks).
#[derive(Debug, Default)]
pub struct ChunkIndex {
    files: HashMap<FileId, (u16, Vec<ChunkId>)>,
    /// For each chunk, its shards and how many indexed files of that shard use it.
    chunks: HashMap<ChunkId, Vec<(u16, u32)>>,
}

impl ChunkIndex {
    /// Indexes `file` of `shard` with its chunks (a file indexed already is left as it is:
    /// a file's chunks never change, its id is their hash).
    pub fn insert(&mut self, shard: u16, file: FileId, chunks: &[ChunkId]) {
        if self.files.contains_key(&file) {
            return;
        }
        let mut distinct = chunks.to_vec();
        distinct.sort_unstable();
        distinct.dedup();
        for c in &distinct {
            let shards = self.chunks.entry(*c).or_default();
            match shards.iter_mut().find(|(s, _)| *s == shard) {
                Some((_, n)) => *n += 1,
                None => shards.push((shard, 1)),
            }
        }
        self.files.insert(file, (shard, distinct));
    }

    /// Forgets `file` (unpublished or expired); its chunks that no other indexed file of the
    /// same shard uses leave that shard.
    pub fn remove(&mut self, file: &FileId) {
        let Some((shard, chunks)) = self.files.remove(file) else { return };
        for c in chunks {
            let Some(shards) = self.chunks.get_mut(&c) else { continue };
            if let Some(i) = shards.iter().position(|(s, _)| *s == shard) {
                shards[i].1 -= 1;
                if shards[i].1 == 0 {
                    shards.swap_remove(i);
                }
            }
            if shards.is_empty() {
                self.chunks.remove(&c);
            }
        }
    }

    /// The shards `chunk` is in (none: no indexed file has it).
    pub fn shards_of(&self, chunk: &ChunkId) -> impl Iterator<Item = u16> + '_ {
        self.chunks.get(chunk).into_iter().flatten().map(|(s, _)| *s)
    }

    /// The indexed files of `shard`.
    pub fn files_of(&self, shard: u16) -> HashSet<FileId> {
        self.files.iter().filter(|(_, (s, _))| *s == shard).map(|(f, _)| *f).collect()
    }

    pub fn contains_file(&self, file: &FileId) -> bool {
        self.files.contains_key(file)
    }

    /// Forgets every file not in `keep` (deletions missed while the watch was down).
    pub fn retain_files(&mut self, keep: &HashSet<FileId>) {
        let gone: Vec<FileId> = self.files.keys().filter(|f| !keep.contains(f)).copied().collect();
        for f in gone {
            self.remove(&f);
        }
    }

    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// `s{shard}.{file id hex}` → (shard, file).
pub fn parse_key(key: &str) -> Option<(u16, FileId)> {
    let (shard, hex_id) = key.strip_prefix('s')?.split_once('.')?;
    let id = <[u8; 32]>::try_from(hex::decode(hex_id).ok()?).ok()?;
    Some((shard.parse().ok()?, FileId(id)))
}

/// Keeps the node's [`ChunkIndex`] following the `files` bucket until the process ends: the
/// bucket's current content first, then every change. A watch that ends (NATS lost, the
/// server restarted), or that ran while this node was cut off, starts over from the current
/// content, and files deleted meanwhile are
/// dropped from the index once the replay is current.
pub async fn follow(cluster: Arc<Cluster>) {
    use async_nats::jetstream::kv::Operation;
    let pause = cluster.config.period();
    loop {
        let mut watch = match cluster.store.files.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!("cannot watch the cluster's file index: {e}");
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        let mut replayed: Option<HashSet<FileId>> = Some(HashSet::new());
        loop {
            let entry = tokio::select! {
                e = watch.next() => e,
                // This node was cut off: whatever the watch says, read the bucket anew.
                () = cluster.rewatch_index.notified() => break,
            };
            let entry = match entry {
                Some(Ok(e)) => e,
                Some(Err(e)) => {
                    tracing::warn!("the watch of the cluster's file index failed: {e}");
                    break;
                }
                None => break,
            };
            // Not every key is a file (`cluster.shards` is not).
            if let Some((shard, file)) = parse_key(&entry.key) {
                match entry.operation {
                    Operation::Put => {
                        let held = cluster.machine().holds(shard);
                        if held || !cluster.index().contains_file(&file) {
                            match crate::persistence::index::decode_record(&file.0, &entry.value) {
                                Some(r) => {
                                    cluster.index().insert(shard, file, &r.manifest.chunks);
                                    if held {
                                        adopt(&cluster, shard, r);
                                    }
                                }
                                None => tracing::warn!(shard, "skipping a damaged file record in the cluster index"),
                            }
                        }
                        if let Some(seen) = replayed.as_mut() {
                            seen.insert(file);
                        }
                    }
                    Operation::Delete | Operation::Purge => {
                        cluster.index().remove(&file);
                        if let Some(state) = cluster.state() {
                            if state.core().forget_unindexed_file(&file) {
                                tracing::info!(shard, "a file the cluster's index no longer has left this node");
                            }
                        }
                    }
                }
            }
            if entry.delta == 0 {
                if let Some(seen) = replayed.take() {
                    cluster.index().retain_files(&seen);
                    tracing::info!(files = seen.len(), "the chunk index is current with the cluster's file index");
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

/// A file put in the index for a shard this node holds: kept here if the shard's load did
/// not bring it (a load behind the index), and every node's peers re-announce so its
/// holders are known here. The lease is checked under the core's lock (the order the
/// tracker takes them in): a shard let go after this is let go with the file.
fn adopt(cluster: &Cluster, shard: u16, record: swarm_core::swarm::FileRecord) {
    let Some(state) = cluster.state() else { return };
    let ready_at = {
        let mut core = state.core();
        let held = cluster.machine().held().find(|(s, _)| *s == shard).map(|(_, h)| (h.ready, h.revision));
        match held {
            Some((ready, revision)) if core.adopt_file(shard, record) => ready.then_some(revision),
            _ => return,
        }
    };
    // Still loading: the load's own `took` counts it (see `leases::on_done`).
    let Some(revision) = ready_at else { return };
    tracing::warn!(
        shard,
        "a file of a shard kept here was missing from its load: kept now, its holders asked to re-announce"
    );
    cluster.broadcast(&super::msg::NodeMsg::Took {
        node: cluster.tag,
        shards: vec![shard],
        reannounce: true,
        revision,
    });
    cluster.want_reannounce();
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    fn chunk(n: u8) -> ChunkId {
        ChunkId([n; 32])
    }

    /// What the index should say: recomputed from the live files alone.
    fn model(files: &BTreeMap<u8, (u16, Vec<u8>)>) -> BTreeMap<u8, BTreeSet<u16>> {
        let mut m: BTreeMap<u8, BTreeSet<u16>> = BTreeMap::new();
        for (shard, chunks) in files.values() {
            for c in chunks {
                m.entry(*c).or_default().insert(*shard);
            }
        }
        m
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u8, u16, Vec<u8>),
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..12, 0u16..4, prop::collection::vec(0u8..16, 0..6)).prop_map(|(f, s, c)| Op::Insert(f, s, c)),
            (0u8..12).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// After any sequence of publishes and removals, every chunk maps to exactly the
        /// shards of the live files that use it (shared chunks and repeated chunks too).
        #[test]
        fn the_index_matches_the_live_files(ops in prop::collection::vec(op(), 0..60)) {
            let mut index = ChunkIndex::default();
            let mut live: BTreeMap<u8, (u16, Vec<u8>)> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(f, s, c) => {
                        let chunks: Vec<ChunkId> = c.iter().map(|n| chunk(*n)).collect();
                        index.insert(s, FileId([f; 32]), &chunks);
                        live.entry(f).or_insert((s, c));
                    }
                    Op::Remove(f) => {
                        index.remove(&FileId([f; 32]));
                        live.remove(&f);
                    }
                }
            }
            let want = model(&live);
            for n in 0u8..16 {
                let got: BTreeSet<u16> = index.shards_of(&chunk(n)).collect();
                prop_assert_eq!(&got, &want.get(&n).cloned().unwrap_or_default(), "chunk {}", n);
            }
            prop_assert_eq!(index.chunk_count(), want.len());
            prop_assert_eq!(index.file_count(), live.len());
        }
    }

    #[test]
    fn files_missing_from_a_replay_are_dropped() {
        let mut index = ChunkIndex::default();
        index.insert(1, FileId([1; 32]), &[chunk(1), chunk(2)]);
        index.insert(2, FileId([2; 32]), &[chunk(2)]);
        index.retain_files(&HashSet::from([FileId([2; 32])]));
        assert_eq!(index.shards_of(&chunk(1)).count(), 0);
        assert_eq!(index.shards_of(&chunk(2)).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn keys_parse_back_to_shard_and_file() {
        let key = format!("s17.{}", hex::encode([9u8; 32]));
        assert_eq!(parse_key(&key), Some((17, FileId([9; 32]))));
        assert_eq!(parse_key("s17.zz"), None);
        assert_eq!(parse_key("17.00"), None);
        assert_eq!(parse_key(&format!("sx.{}", hex::encode([9u8; 32]))), None);
    }
}
