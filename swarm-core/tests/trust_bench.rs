//! Cost of verification in the tracker's swarm core: one peer publishes a file of 10,000
//! chunks, another claims all of them. Baseline: plain `have` handling with verification off.
//! With verification: `have` → `challenge` → `proofs` until every claim is verified (the
//! publisher sent `nonces`). Prints messages and tracker CPU per verified chunk (the
//! measured time is the swarm core's alone: proofs are precomputed outside the timer).
//! Run with `--nocapture` to see the figures; debug builds are several times slower.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use swarm_core::peer::proof::{nonce_items, proof};
use swarm_core::swarm::repair::RepairConfig;
use swarm_core::swarm::{Output, Swarm};
use swarm_core::wire::{FileMeta, ProofItem, MAX_NONCE_ITEMS};
use swarm_core::{ChunkId, ClientMsg, ManifestBuilder, PeerId, PeerKind, ServerMsg};

const CHUNKS: usize = 10_000;

fn run(verify: bool) -> (Duration, usize, usize, usize) {
    let mut config = RepairConfig { replication: 2, ..Default::default() };
    config.trust.verify = verify;
    let mut s = Swarm::with_config(config);
    let (a, b) = (PeerId::from_secret("bench-a"), PeerId::from_secret("bench-b"));
    s.join(a.clone(), PeerKind::Native, 0);
    s.join(b.clone(), PeerKind::Native, 0);
    let mut mb = ManifestBuilder::new(8);
    let mut bytes: HashMap<ChunkId, Vec<u8>> = HashMap::new();
    for i in 0..CHUNKS {
        let data = (i as u64).to_le_bytes().to_vec();
        bytes.insert(mb.push(&data), data);
    }
    let m = mb.finish();
    s.handle(&a, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, 0);
    let meta = FileMeta::public("bench", "x");
    s.handle(&a, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, 0);
    if verify {
        let items: Vec<_> = m.chunks.iter().flat_map(|c| nonce_items(*c, &bytes[c], &[[1; 16], [2; 16]])).collect();
        for batch in items.chunks(MAX_NONCE_ITEMS) {
            s.handle(&a, ClientMsg::Nonces { file: m.file_id(), items: batch.to_vec() }, 0);
        }
    }
    let (mut msgs_in, mut msgs_out) = (0, 0);
    let mut spent = Duration::ZERO;
    let mut pending: Vec<Output> = Vec::new();
    for batch in m.chunks.chunks(1000) {
        let t = Instant::now();
        pending.extend(s.handle(&b, ClientMsg::Have { chunks: batch.to_vec(), full: false }, 1));
        spent += t.elapsed();
        msgs_in += 1;
    }
    loop {
        let challenges: Vec<_> = pending
            .drain(..)
            .filter_map(|o| match o {
                Output::Send { to, msg: ServerMsg::Challenge { items } } if to == b => Some(items),
                _ => None,
            })
            .collect();
        if challenges.is_empty() {
            break;
        }
        for items in challenges {
            msgs_out += 1;
            let answers: Vec<ProofItem> =
                items.iter().map(|i| ProofItem { id: i.id, proof: Some(proof(&i.nonce, &bytes[&i.chunk])) }).collect();
            let t = Instant::now();
            pending.extend(s.handle(&b, ClientMsg::Proofs { items: answers }, 2));
            spent += t.elapsed();
            msgs_in += 1;
        }
    }
    let verified = m.chunks.iter().filter(|c| s.is_verified(&b, c)).count();
    (spent, msgs_in, msgs_out, verified)
}

#[test]
fn verification_cost_per_chunk() {
    let (base, base_in, _, base_verified) = run(false);
    let (trust, t_in, t_out, verified) = run(true);
    assert_eq!(base_verified, CHUNKS);
    assert_eq!(verified, CHUNKS, "every honest claim is verified");
    let per = |d: Duration| d.as_nanos() as f64 / CHUNKS as f64 / 1000.0;
    println!(
        "{CHUNKS} chunks claimed: plain have {:.2} µs/chunk ({base_in} messages in); \
         have→challenge→proof {:.2} µs/chunk ({t_in} messages in, {t_out} challenge messages out: \
         {:.4} messages per verified chunk)",
        per(base),
        per(trust),
        (t_in + t_out) as f64 / CHUNKS as f64
    );
}
