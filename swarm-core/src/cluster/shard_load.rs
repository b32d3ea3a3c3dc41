//! Loading a shard a node has just taken over, sans-IO: the tracker's driver
//! (`tracker/src/cluster/leases.rs`) and the simulation (`swarm-core/tests/cluster_sim.rs`)
//! carry out its reads and feed it their answers and the time.
//!
//! A shard's files come from the cluster's index (a JetStream KV bucket in the tracker). Every
//! node also watches that index, so it knows which files each shard has. JetStream can answer
//! a read from a replica still catching up (after a partition heals, its NATS server is
//! behind for a few seconds): the read succeeds, with an old view. Believed, that load would
//! leave a file acknowledged to its publisher kept by no node (seen once in
//! `e2e/tests/cluster_nat.rs`: every shard loaded `files=0` after a heal). So a load is checked
//! against the files the watch has seen:
//!
//! 1. [`LoadStep::ReadShard`]: read every file of the shard;
//! 2. files the watch has seen that the read lacks: [`LoadStep::ReadFiles`], one by one;
//! 3. still missing (or a read failed): wait [`ShardLoad::pause_ms`] and read the whole shard
//!    again, for at most `patience_ms` from the start;
//! 4. then [`LoadStep::Done`], or [`LoadStep::GiveUp`]: the driver reports the load failed,
//!    the lease machine gives the shard back, and it is taken again later with a fresh read.
//!
//! The check covers a watch that saw the file first; the other order (the load ran before the
//! watch heard of the file) is the driver's: a file the watch reports for a shard the node
//! holds, and that its swarm lacks, is kept then. The simulation removes each in turn and
//! sees acknowledged files lost.

use crate::FileId;
use std::collections::{BTreeSet, HashSet};

/// What the driver does next for a shard being loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadStep {
    /// Read every file of the shard, then call [`ShardLoad::shard_read`].
    ReadShard,
    /// Read these files one by one, then call [`ShardLoad::files_read`] with those found.
    ReadFiles(Vec<FileId>),
    /// Wait until this time (ms), then read the whole shard again ([`LoadStep::ReadShard`]).
    WaitUntil(u64),
    /// Loaded: every file the watch has seen is in (what was read is what to keep).
    Done,
    /// Not loaded within the patience: give the shard back. `missing` files were never read.
    GiveUp { missing: usize },
}

/// One shard's load in progress.
#[derive(Debug, Clone)]
pub struct ShardLoad {
    started_ms: u64,
    patience_ms: u64,
    pause_ms: u64,
    /// The files read so far (by the last whole read and one by one since).
    loaded: BTreeSet<FileId>,
    /// Reads that failed or were behind, for the driver's log.
    behind: u32,
}

impl ShardLoad {
    /// A load starting at `now_ms`, trying for `patience_ms` (a lease time in the tracker:
    /// the shard is unavailable meanwhile). The first step is [`LoadStep::ReadShard`].
    pub fn new(now_ms: u64, patience_ms: u64) -> Self {
        Self {
            started_ms: now_ms,
            patience_ms,
            pause_ms: (patience_ms / 5).max(100),
            loaded: BTreeSet::new(),
            behind: 0,
        }
    }

    /// Time between two whole reads.
    pub fn pause_ms(&self) -> u64 {
        self.pause_ms
    }

    /// How many reads so far failed or were behind the watch.
    pub fn reads_behind(&self) -> u32 {
        self.behind
    }

    /// The answer to [`LoadStep::ReadShard`]: the shard's files, or `None` if the read failed.
    /// `indexed`: the files of this shard the node's watch of the index has seen.
    pub fn shard_read(&mut self, now_ms: u64, read: Option<&[FileId]>, indexed: &HashSet<FileId>) -> LoadStep {
        let Some(files) = read else {
            self.behind += 1;
            return self.again(now_ms, 0);
        };
        self.loaded = files.iter().copied().collect();
        let missing = self.missing(indexed);
        if missing.is_empty() {
            return LoadStep::Done;
        }
        self.behind += 1;
        LoadStep::ReadFiles(missing)
    }

    /// The answer to [`LoadStep::ReadFiles`]: the files that were found.
    pub fn files_read(&mut self, now_ms: u64, found: &[FileId], indexed: &HashSet<FileId>) -> LoadStep {
        self.loaded.extend(found.iter().copied());
        let missing = self.missing(indexed).len();
        if missing == 0 {
            return LoadStep::Done;
        }
        self.again(now_ms, missing)
    }

    fn missing(&self, indexed: &HashSet<FileId>) -> Vec<FileId> {
        let mut m: Vec<FileId> = indexed.iter().filter(|f| !self.loaded.contains(f)).copied().collect();
        m.sort_unstable();
        m
    }

    fn again(&self, now_ms: u64, missing: usize) -> LoadStep {
        let next = now_ms + self.pause_ms;
        if next.saturating_sub(self.started_ms) >= self.patience_ms {
            LoadStep::GiveUp { missing }
        } else {
            LoadStep::WaitUntil(next)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u8) -> FileId {
        FileId([n; 32])
    }

    #[test]
    fn a_read_that_has_every_indexed_file_is_done_at_once() {
        let mut l = ShardLoad::new(0, 3000);
        let indexed: HashSet<FileId> = [f(1), f(2)].into();
        assert_eq!(l.shard_read(5, Some(&[f(1), f(2), f(3)]), &indexed), LoadStep::Done);
        assert_eq!(l.reads_behind(), 0);
    }

    #[test]
    fn a_read_behind_the_watch_reads_the_missing_files_then_the_shard_again_then_gives_up() {
        let mut l = ShardLoad::new(1000, 3000);
        let indexed: HashSet<FileId> = [f(1), f(2), f(3)].into();
        assert_eq!(l.shard_read(1010, Some(&[f(2)]), &indexed), LoadStep::ReadFiles(vec![f(1), f(3)]));
        // One found alone: the other is still missing, so the whole shard is read again later.
        assert_eq!(l.files_read(1020, &[f(3)], &indexed), LoadStep::WaitUntil(1620));
        assert_eq!(l.shard_read(1630, Some(&[f(2), f(3)]), &indexed), LoadStep::ReadFiles(vec![f(1)]));
        assert_eq!(l.files_read(1640, &[f(1)], &indexed), LoadStep::Done);
        // Never caught up: given up once a further pause would pass the patience.
        let mut l = ShardLoad::new(0, 3000);
        let mut now = 0;
        let step = loop {
            match l.shard_read(now, Some(&[]), &indexed) {
                LoadStep::ReadFiles(_) => {}
                other => panic!("{other:?}"),
            }
            match l.files_read(now + 10, &[], &indexed) {
                LoadStep::WaitUntil(t) => now = t,
                other => break other,
            }
        };
        assert_eq!(step, LoadStep::GiveUp { missing: 3 });
        assert!(now < 3000);
    }

    #[test]
    fn a_failed_read_is_tried_again_within_the_patience() {
        let mut l = ShardLoad::new(0, 3000);
        let none = HashSet::new();
        assert_eq!(l.shard_read(10, None, &none), LoadStep::WaitUntil(610));
        assert_eq!(l.shard_read(2500, None, &none), LoadStep::GiveUp { missing: 0 });
    }
}
