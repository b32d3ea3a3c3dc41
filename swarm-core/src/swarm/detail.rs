//! What the tracker's REST layer shows of one file (`/api/files/{id}`, and a cluster node's
//! answer to another node's query): its manifest, who holds each chunk and its replication
//! health, read from the swarm as it is. The single tracker and the cluster build it here, from
//! the sans-IO core, so both answer alike.

use super::Swarm;
use crate::api::{FileDetail, Health};
use crate::wire::ServerMsg;
use crate::FileId;

/// A count as the API carries it (saturating).
fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Swarm {
    /// A file of this swarm with its holders and replication health (`None`: not known here).
    pub fn file_detail(&self, id: &FileId) -> Option<FileDetail> {
        let (Some(rec), Some(ServerMsg::Located { meta, manifest, peers, holders, .. })) =
            (self.file(id), self.locate(0, id))
        else {
            return None;
        };
        let r = self.config.replication;
        let copies: Vec<usize> = manifest.chunks.iter().map(|c| self.verified_count(c)).collect();
        let claimed: Vec<usize> = manifest.chunks.iter().map(|c| self.holder_count(c)).collect();
        let staying: Vec<usize> = manifest.chunks.iter().map(|c| self.staying_copies(c)).collect();
        Some(FileDetail {
            id: *id,
            name: meta.name,
            mime: meta.mime,
            published_at_ms: rec.published_at_ms,
            manifest,
            peers,
            holders,
            holders_offset: 0,
            health: Health {
                replication: count(r),
                min_copies: count(copies.iter().min().copied().unwrap_or(0)),
                max_copies: count(copies.iter().max().copied().unwrap_or(0)),
                min_claimed: count(claimed.iter().min().copied().unwrap_or(0)),
                max_claimed: count(claimed.iter().max().copied().unwrap_or(0)),
                under_replicated: count(staying.iter().filter(|n| **n < r).count()),
                lost: count(copies.iter().filter(|n| **n == 0).count()),
                status: self.replication_status(rec),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::swarm::testkit::{manifest, peer, publish, trusting_swarm};
    use crate::wire::{ClientMsg, PeerKind};
    use crate::FileId;

    #[test]
    fn a_file_s_detail_names_its_holders_and_counts_its_copies() {
        let mut s = trusting_swarm();
        let (a, b) = (peer(1), peer(2));
        s.join(a.clone(), PeerKind::Native, 0);
        s.join(b.clone(), PeerKind::Native, 0);
        let m = manifest(&[b"aaaa", b"bbbb"]);
        publish(&mut s, &a, &m, 0);
        s.handle(&b, ClientMsg::Have { chunks: vec![m.chunks[0]], full: false }, 1);
        let d = s.file_detail(&m.file_id()).expect("known");
        assert_eq!((d.id, d.manifest.chunks.len()), (m.file_id(), 2));
        let holders = |i: usize| d.holders[i].iter().map(|p| d.peers[*p as usize].clone()).collect::<Vec<_>>();
        assert_eq!(holders(0).len(), 2, "a and b hold the first chunk: {:?}", d.holders);
        assert_eq!(holders(1), vec![a.clone()], "only a the second");
        assert_eq!((d.health.min_claimed, d.health.max_claimed), (1, 2));
        assert_eq!(d.health.replication, s.config.replication as u32);
        assert!(s.file_detail(&FileId([9; 32])).is_none(), "an unknown file has none");
    }
}
