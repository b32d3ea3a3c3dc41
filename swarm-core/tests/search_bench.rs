//! Cost of a search in the tracker's swarm core, which runs under the tracker's lock, and what
//! its name index costs in memory: 100,000 public files, every one available. Baseline, in the
//! same run: the scan the index replaced (every name lower-cased, ranked and sorted at each
//! search), kept here as the reference the index's answers must equal. Prints both times per
//! query, the entries the index looked at, and the resident bytes per file of the index and
//! of the swarm's whole record of a file. Run with `cargo test --release -p swarm-core --test search_bench -- --ignored --nocapture`
//! (debug builds are several times slower); `PP_BENCH_FILES` changes the size.

use std::cmp::Reverse;
use std::time::{Duration, Instant};
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::search::{match_rank, NameIndex};
use swarm_core::swarm::{FileRecord, Swarm};
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, ClientMsg, FileId, Manifest, PeerId, PeerKind};

/// Resident bytes of this process (Linux `/proc/self/statm`; 0 elsewhere): allocations
/// made after it grows are counted as they touch pages, which is close for 100,000 entries.
fn resident() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()).unwrap_or(0) * 4096
}

/// The search before the index: lower-case and rank every name, sort every hit.
fn scan(s: &Swarm, query: &str, limit: usize) -> Vec<FileId> {
    let q = query.trim().to_lowercase();
    let mut hits: Vec<(u8, Reverse<u64>, &str, &FileId, &FileRecord)> = s
        .files()
        .filter(|(_, rec)| !rec.meta.is_private())
        .filter_map(|(id, rec)| {
            Some((
                match_rank(&rec.meta.name.to_lowercase(), &q)?,
                Reverse(rec.published_at_ms),
                &*rec.meta.name,
                id,
                rec,
            ))
        })
        .collect();
    hits.sort_by(|a, b| (a.0, a.1, a.2, a.3).cmp(&(b.0, b.1, b.2, b.3)));
    hits.into_iter().filter(|h| s.is_available(h.4)).take(limit).map(|h| *h.3).collect()
}

fn timed<T>(f: impl Fn() -> T) -> (T, Duration) {
    let best = (0..5)
        .map(|_| {
            let t = Instant::now();
            let _ = f();
            t.elapsed()
        })
        .min()
        .unwrap();
    (f(), best)
}

fn name(i: u32) -> String {
    match i % 4 {
        0 => format!("Holiday Photo {i}.JPG"),
        1 => format!("report-{i}.pdf"),
        2 => format!("song {i} (live).mp3"),
        _ => format!("video_{}.mkv", i % 977),
    }
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn search_cost_against_a_scan_of_every_name() {
    let files: u32 = std::env::var("PP_BENCH_FILES").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let mut config = RepairConfig::default();
    config.trust.verify = false; // every claim counts: every file is available
    let mut s = Swarm::with_config(config);
    let holder = PeerId::from_secret("search-bench");
    s.join(holder.clone(), PeerKind::Native, 0);
    let records: Vec<FileRecord> = (0..files)
        .map(|i| FileRecord {
            manifest: Manifest { size: 4, chunk_size: 4, chunks: vec![ChunkId::of(&i.to_le_bytes())] },
            meta: FileMeta::public(name(i), "application/octet-stream"),
            published_at_ms: u64::from(i % 5_000),
            owner: None,
        })
        .collect();
    let chunks: Vec<ChunkId> = records.iter().map(|r| r.manifest.chunks[0]).collect();
    // Memory per file: the swarm's whole record of a file, then the name index alone.
    let before = resident();
    let names: Vec<(FileId, String, u64)> =
        records.iter().map(|r| (r.manifest.file_id(), r.meta.name.clone(), r.published_at_ms)).collect();
    for r in records {
        s.restore_file(r);
    }
    let swarm_bytes = resident() - before;
    let before = resident();
    let mut index = NameIndex::default();
    for (id, name, at) in &names {
        index.insert(*id, name, *at);
    }
    let index_bytes = resident() - before;
    drop((index, names));
    eprintln!(
        "resident bytes per file: {} bytes in the swarm, of which the name index {} (names of {} bytes on average)",
        swarm_bytes / files as usize,
        index_bytes / files as usize,
        (0..files).map(|i| name(i).len()).sum::<usize>() / files as usize
    );
    for batch in chunks.chunks(10_000) {
        s.handle(&holder, ClientMsg::Have { chunks: batch.to_vec(), full: false }, 0);
    }
    for (query, limit) in
        [("", 50), ("holiday", 50), ("photo 99", 50), ("video_12", 20), ("ive).m", 50), ("zzz", 50), ("s", 100)]
    {
        let ((ours, examined), t_ours) = timed(|| {
            let (found, examined) = s.search_counted(query, limit as u32);
            (found.into_iter().map(|f| f.id).collect::<Vec<_>>(), examined)
        });
        let (before, t_before) = timed(|| scan(&s, query, limit));
        eprintln!(
            "search {query:?} over {files} files: {:.3} ms ({examined} entries looked at), scan {:.2} ms ({} results)",
            t_ours.as_secs_f64() * 1e3,
            t_before.as_secs_f64() * 1e3,
            ours.len()
        );
        assert_eq!(ours, before, "query {query:?}: the index answers other than the scan");
        if query != "zzz" {
            assert!(!ours.is_empty(), "query {query:?} found nothing: the bench measures no work");
        }
    }
}
