//! What the swarm's state really takes against what its budget estimates
//! (`swarm-core/src/swarm/budget.rs`: `Swarm::state_bytes`, the figures the tracker admits work
//! by). Four workloads grow one swarm in turn, each measured as the resident bytes this process
//! grew by (the allocator's overhead included, as a tracker's would be) beside the growth of the
//! estimate, per unit: peers joining, files published (with their manifests and the name
//! index), claims of those files' chunks, and loose claims (chunks no file uses). A ratio over 1
//! means the budget undercounts. Run with
//! `cargo test --release -p swarm-core --test state_bytes_bench -- --ignored --nocapture`;
//! `PP_BENCH_SCALE` (default 1) multiplies the sizes.

use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::{FileRecord, Swarm};
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, ClientMsg, Manifest, PeerId, PeerKind};

/// Resident bytes of this process (Linux `/proc/self/statm`).
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()).unwrap_or(0) * 4096
}

/// Runs `grow`, then prints and returns (measured, estimated) bytes per unit.
fn measure(s: &mut Swarm, what: &str, units: usize, constant: u64, grow: impl FnOnce(&mut Swarm)) -> (u64, u64) {
    let (rss, est) = (resident(), s.state_bytes().total());
    grow(s);
    let measured = resident().saturating_sub(rss) / units as u64;
    let estimated = s.state_bytes().total().saturating_sub(est) / units as u64;
    eprintln!(
        "{what:<40} {units:>9} units: {measured:>6} bytes each resident, estimate {estimated:>6} \
         (the constant: {constant}), measured/estimate {:.2}",
        measured as f64 / estimated.max(1) as f64
    );
    (measured, estimated)
}

#[test]
#[ignore = "benchmark: run with --release --ignored --nocapture"]
fn state_bytes_against_resident_memory() {
    use swarm_core::swarm::budget::{CLAIM_BYTES, FILE_BYTES, FILE_CHUNK_BYTES, LOOSE_BYTES, PEER_BYTES};
    let scale: usize = std::env::var("PP_BENCH_SCALE").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let (peers, files, chunks_per_file, claims_per_peer) = (2_000 * scale, 2_000 * scale, 64, 256);
    let mut s = Swarm::with_config(RepairConfig::default());
    let ids: Vec<PeerId> = (0..peers).map(|i| PeerId::from_secret(&format!("bench-{i}"))).collect();
    measure(&mut s, "peers joining", peers, PEER_BYTES, |s| {
        for id in &ids {
            s.join(id.clone(), PeerKind::Native, 0);
        }
    });
    let chunk = |f: usize, c: usize| ChunkId::of(&[f.to_le_bytes(), c.to_le_bytes()].concat());
    let file_cost = FILE_BYTES + chunks_per_file as u64 * FILE_CHUNK_BYTES;
    measure(&mut s, &format!("files of {chunks_per_file} chunks published"), files, file_cost, |s| {
        for f in 0..files {
            let manifest = Manifest {
                size: chunks_per_file as u64,
                chunk_size: 1,
                chunks: (0..chunks_per_file).map(|c| chunk(f, c)).collect(),
            };
            let meta = FileMeta::public(format!("Holiday photo {f}.jpg"), "image/jpeg");
            s.restore_file(FileRecord { manifest, meta, published_at_ms: f as u64, owner: None });
        }
    });
    measure(&mut s, "claims of published chunks", peers * claims_per_peer, CLAIM_BYTES, |s| {
        for (i, id) in ids.iter().enumerate() {
            let chunks = (0..claims_per_peer).map(|k| chunk((i * 7 + k) % files, (i + k) % chunks_per_file)).collect();
            s.handle(id, ClientMsg::Have { chunks, full: false }, 1);
        }
    });
    let loose_per_peer = 64;
    measure(&mut s, "loose claims (no file uses them)", peers * loose_per_peer, CLAIM_BYTES + LOOSE_BYTES, |s| {
        for (i, id) in ids.iter().enumerate() {
            let chunks = (0..loose_per_peer)
                .map(|k| ChunkId::of(&[i.to_le_bytes(), k.to_le_bytes(), [1; 8]].concat()))
                .collect();
            s.handle(id, ClientMsg::Have { chunks, full: false }, 2);
        }
    });
}
