//! Small helpers the swarm's unit tests share: manifests, peer ids, a publish, the trims sent.

use super::{Output, Swarm};
use crate::content::{ChunkId, Manifest, ManifestBuilder};
use crate::wire::{ClientMsg, FileMeta, PeerId, ServerMsg};
use std::collections::BTreeMap;

/// A manifest of 4-byte chunks.
pub fn manifest(chunks: &[&[u8]]) -> Manifest {
    let mut b = ManifestBuilder::new(4);
    for c in chunks {
        b.push(c);
    }
    b.finish()
}

/// A swarm of the default configuration that counts every claim at once (verification has
/// its own tests in `trust`).
pub fn trusting_swarm() -> Swarm {
    let mut c = super::repair::RepairConfig::default();
    c.trust.verify = false;
    Swarm::with_config(c)
}

/// Peer `n`'s id (always the same for the same `n`).
pub fn peer(n: u8) -> PeerId {
    PeerId::from_secret(&format!("secret-{n}"))
}

/// `p` announces `m`'s chunks and publishes it; the file must be added.
pub fn publish(s: &mut Swarm, p: &PeerId, m: &Manifest, now: u64) {
    s.handle(p, ClientMsg::Have { chunks: m.chunks.clone(), full: false }, now);
    let meta = FileMeta::public("f.txt", "text/plain");
    let out = s.handle(p, ClientMsg::Publish { req: 1, manifest: m.clone(), meta }, now);
    assert!(out.contains(&Output::FileAdded(m.file_id())));
}

/// The trims among `out`, by peer.
pub fn trims(out: &[Output]) -> BTreeMap<PeerId, Vec<ChunkId>> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send { to, msg: ServerMsg::Trim { chunks } } => Some((to.clone(), chunks.clone())),
            _ => None,
        })
        .collect()
}
