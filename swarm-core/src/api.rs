//! The tracker's REST API (JSON over HTTP GET), its answers as types: the tracker serializes
//! them, the web app and the tests deserialize them. Field names are the wire format: renaming
//! one breaks every client.
//!
//! | endpoint | answer |
//! |---|---|
//! | `/api/files?offset=n&limit=n` | [`FilesPage`] |
//! | `/api/files/{id}` | [`FileDetail`] |
//! | `/api/search?q=text&limit=n` | [`SearchAnswer`] |
//! | `/api/peers` | [`PeersAnswer`] |
//! | `/api/stats` | [`Stats`] |
//! | any, on a bad request (400) or unknown id (404) | [`ApiError`] |

use crate::wire::FileSummary;
use crate::{FileId, LinkPath, Manifest, PeerId, PeerKind};
use serde::{Deserialize, Serialize};

/// `/api/files`: one page of the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesPage {
    /// Files in the index (all pages).
    pub total: u64,
    pub offset: u64,
    /// The page size used (the one asked for, capped).
    pub limit: u64,
    pub files: Vec<FileSummary>,
}

/// `/api/files/{id}`: a file with the holders of each chunk and its replication health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDetail {
    pub id: FileId,
    pub name: String,
    pub mime: String,
    pub published_at_ms: u64,
    pub manifest: Manifest,
    /// The live peers holding any chunk of this file.
    pub peers: Vec<PeerId>,
    /// Per chunk (in file order) from chunk `holders_offset` on: indices into `peers` of its
    /// holders. A page of at most [`MAX_HOLDERS_PAGE`] chunks (`?offset=&limit=`); the file has
    /// `manifest.chunks.len()` in all.
    pub holders: Vec<Vec<u32>>,
    /// The chunk `holders` starts at (absent in answers from older trackers: 0).
    #[serde(default)]
    pub holders_offset: u32,
    pub health: Health,
}

/// Chunks whose holders one `/api/files/{id}` answer lists at most (1 GiB of 256 KiB chunks:
/// every file up to that size in one answer).
pub const MAX_HOLDERS_PAGE: usize = 4096;

impl FileDetail {
    /// Keeps the holders of chunks `offset..offset + limit` only (at most [`MAX_HOLDERS_PAGE`]).
    pub fn page_holders(mut self, offset: usize, limit: usize) -> Self {
        let end = offset.saturating_add(limit.min(MAX_HOLDERS_PAGE)).min(self.holders.len());
        let start = offset.min(end);
        self.holders = self.holders.drain(start..end).collect();
        self.holders_offset = start as u32;
        self
    }
}

/// How well a file's chunks are replicated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    /// Copies the tracker keeps of every chunk.
    pub replication: u32,
    /// Fewest verified live copies of any chunk (0: some chunk is unavailable right now).
    /// Only verified copies count (see `SECURITY.md`).
    pub min_copies: u32,
    pub max_copies: u32,
    /// Fewest and most live *claims* of any chunk (verified or not; absent in answers from
    /// older trackers: 0).
    #[serde(default)]
    pub min_claimed: u32,
    #[serde(default)]
    pub max_claimed: u32,
    /// Chunks with fewer than `replication` copies on peers that are staying (lost ones included).
    pub under_replicated: u32,
    /// Chunks with no verified live copy.
    pub lost: u32,
    /// Whether the file is at `replication`, and if not, why (absent in answers from older
    /// trackers: `ok`).
    #[serde(default)]
    pub status: ReplicationStatus,
}

/// How a file's replication stands: the most telling state of any of its chunks, in this
/// order (later ones win).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicationStatus {
    /// Every chunk has `replication` copies on peers that stay.
    #[default]
    Ok,
    /// Some chunk is short, and orders to copy it are in flight or on their way.
    Repairing,
    /// Some chunk is short, and the live peers that do not hold it have no room.
    NoRoom,
    /// Some chunk is short because fewer than `replication` live peers could hold it: it has
    /// a copy on every one of them, and reaches `replication` as peers join.
    NotEnoughPeers,
    /// Some chunk has no live copy.
    Lost,
}

/// `/api/search`: the files whose names match, best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchAnswer {
    pub query: String,
    /// Copies the tracker keeps of every chunk (the health bars' target).
    pub replication: u32,
    pub files: Vec<FileSummary>,
}

/// `/api/peers?offset=&limit=`: a page of the live peers, ordered by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersAnswer {
    /// Live peers in all.
    pub total: u64,
    /// Where this page starts in the order by id.
    #[serde(default)]
    pub offset: u64,
    /// The page's size as asked (bounded by the tracker).
    #[serde(default)]
    pub limit: u64,
    pub peers: Vec<PeerInfo>,
}

/// One entry of `/api/peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub id: PeerId,
    pub kind: PeerKind,
    pub joined_at_ms: u64,
    pub uptime_secs: u64,
    /// Chunks it holds.
    pub chunks: u64,
    /// Bytes stored.
    pub storage_used: u64,
    /// Bytes it offers the swarm (`None`: it never said).
    pub storage_capacity: Option<u64>,
    /// Bytes it can still take (the tracker's default capacity when it never said).
    pub storage_free: u64,
    /// Replication orders in flight to it.
    pub orders_in_flight: u64,
    /// Asked to leave: its chunks are being handed to others.
    pub leaving: bool,
}

/// The body of every error answer (400, 404).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `/api/stats`: every figure the tracker exposes (also served as Prometheus text by `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub uptime_secs: u64,
    /// Connections that completed the hello.
    pub peers: u64,
    pub peers_native: u64,
    pub peers_browser: u64,
    pub files: u64,
    pub chunks: u64,
    /// Claims kept: (peer, chunk) pairs of live peers, verified or not (in a cluster, only
    /// those this node keeps).
    #[serde(default)]
    pub claims: u64,
    pub replication: u64,
    pub under_replicated: u64,
    pub lost: u64,
    pub orders_in_flight: u64,
    pub orders_issued: u64,
    pub orders_done: u64,
    pub orders_failed: u64,
    pub orders_expired: u64,
    pub chunks_trimmed: u64,
    /// Copies of chunks no file uses that holders were told to let go.
    #[serde(default)]
    pub orphans_trimmed: u64,
    pub signals_relayed: u64,
    pub errors_sent: u64,
    pub bad_sources_reported: u64,
    pub ws_connections_total: u64,
    pub ws_messages_in: u64,
    pub ws_messages_out: u64,
    pub ws_bytes_in: u64,
    pub ws_bytes_out: u64,
    pub relay_frames: u64,
    pub relay_bytes: u64,
    pub relay_dropped: u64,
    pub relay_refused: u64,
    pub rate_limited: u64,
    /// Messages whose connection was not read for a while first: past its message byte rate,
    /// or its address's.
    #[serde(default)]
    pub read_pauses: u64,
    pub closed_abuse: u64,
    pub closed_slow: u64,
    pub limit_refusals: u64,
    pub stun_requests: u64,
    pub stun_answers: u64,
    pub stun_ignored: u64,
    pub stun_rate_limited: u64,
    /// Peers' own reports of their links, summed: open links and bytes received, by path.
    pub reported_links: Vec<(LinkPath, u64)>,
    pub reported_bytes: Vec<(LinkPath, u64)>,
    /// Claims checked and their outcomes, strikes, reports (see `SECURITY.md`).
    #[serde(default)]
    pub trust: crate::swarm::trust::TrustStats,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::tests::{file_id, kind, manifest, path, peer_id, summary};
    use proptest::prelude::*;
    use serde::de::DeserializeOwned;
    use serde_json::{json, Value};

    fn round_trips<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) -> Result<(), TestCaseError> {
        let text = serde_json::to_string(v).unwrap();
        prop_assert_eq!(&serde_json::from_str::<T>(&text).unwrap(), v);
        Ok(())
    }

    fn health() -> impl Strategy<Value = Health> {
        let status = prop_oneof![
            Just(ReplicationStatus::Ok),
            Just(ReplicationStatus::Repairing),
            Just(ReplicationStatus::NoRoom),
            Just(ReplicationStatus::NotEnoughPeers),
            Just(ReplicationStatus::Lost),
        ];
        (any::<[u32; 7]>(), status).prop_map(
            |([replication, min_copies, max_copies, min_claimed, max_claimed, under_replicated, lost], status)| {
                Health { replication, min_copies, max_copies, min_claimed, max_claimed, under_replicated, lost, status }
            },
        )
    }

    fn file_detail() -> impl Strategy<Value = FileDetail> {
        (
            file_id(),
            (any::<String>(), any::<String>(), any::<u64>()),
            manifest(),
            prop::collection::vec(peer_id(), 0..4),
            prop::collection::vec(prop::collection::vec(any::<u32>(), 0..4), 0..4),
            health(),
        )
            .prop_map(|(id, (name, mime, published_at_ms), manifest, peers, holders, health)| FileDetail {
                id,
                name,
                mime,
                published_at_ms,
                manifest,
                peers,
                holders,
                holders_offset: 0,
                health,
            })
    }

    fn peer_info() -> impl Strategy<Value = PeerInfo> {
        (peer_id(), kind(), any::<[u64; 7]>(), any::<Option<u64>>(), any::<bool>()).prop_map(
            |(
                id,
                kind,
                [joined_at_ms, uptime_secs, chunks, storage_used, storage_free, orders_in_flight, _],
                storage_capacity,
                leaving,
            )| {
                PeerInfo {
                    id,
                    kind,
                    joined_at_ms,
                    uptime_secs,
                    chunks,
                    storage_used,
                    storage_capacity,
                    storage_free,
                    orders_in_flight,
                    leaving,
                }
            },
        )
    }

    fn stats() -> impl Strategy<Value = Stats> {
        let paths = || prop::collection::vec((path(), any::<u64>()), 0..4);
        let counts = (prop::collection::vec(any::<u64>(), 38), prop::collection::vec(any::<u64>(), 14));
        (counts, paths(), paths()).prop_map(|((n, t), reported_links, reported_bytes)| Stats {
            uptime_secs: n[0],
            peers: n[1],
            peers_native: n[2],
            peers_browser: n[3],
            files: n[4],
            chunks: n[5],
            claims: n[35],
            replication: n[6],
            under_replicated: n[7],
            lost: n[8],
            orders_in_flight: n[9],
            orders_issued: n[10],
            orders_done: n[11],
            orders_failed: n[12],
            orders_expired: n[13],
            chunks_trimmed: n[14],
            orphans_trimmed: n[36],
            signals_relayed: n[15],
            errors_sent: n[16],
            bad_sources_reported: n[17],
            ws_connections_total: n[18],
            ws_messages_in: n[19],
            ws_messages_out: n[20],
            ws_bytes_in: n[21],
            ws_bytes_out: n[22],
            relay_frames: n[23],
            relay_bytes: n[24],
            relay_dropped: n[25],
            relay_refused: n[26],
            rate_limited: n[27],
            read_pauses: n[37],
            closed_abuse: n[28],
            closed_slow: n[29],
            limit_refusals: n[30],
            stun_requests: n[31],
            stun_answers: n[32],
            stun_ignored: n[33],
            stun_rate_limited: n[34],
            reported_links,
            reported_bytes,
            trust: crate::swarm::trust::TrustStats {
                challenges_sent: t[0],
                proofs_passed: t[1],
                proofs_failed: t[2],
                challenges_expired: t[3],
                nonces_from_publishers: t[4],
                nonces_agreed: t[5],
                rounds_disagreed: t[6],
                strikes: t[7],
                distrusted: t[8],
                reports_refuted: t[9],
                reports_upheld: t[10],
                reports_ignored: t[11],
            },
        })
    }

    proptest! {
        #[test]
        fn files_pages_round_trip(total in any::<u64>(), offset in any::<u64>(), limit in any::<u64>(),
                                  files in prop::collection::vec(summary(), 0..4)) {
            round_trips(&FilesPage { total, offset, limit, files })?;
        }

        #[test]
        fn file_details_round_trip(d in file_detail()) {
            round_trips(&d)?;
        }

        #[test]
        fn search_answers_round_trip(query in any::<String>(), replication in any::<u32>(),
                                     files in prop::collection::vec(summary(), 0..4)) {
            round_trips(&SearchAnswer { query, replication, files })?;
        }

        #[test]
        fn peers_answers_round_trip(peers in prop::collection::vec(peer_info(), 0..4), offset in any::<u64>(), limit in any::<u64>()) {
            round_trips(&PeersAnswer { total: peers.len() as u64, offset, limit, peers })?;
        }

        #[test]
        fn stats_round_trip(s in stats()) {
            round_trips(&s)?;
        }

        #[test]
        fn errors_round_trip(error in any::<String>()) {
            round_trips(&ApiError { error })?;
        }
    }

    fn keys(v: &Value) -> Vec<&str> {
        let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        k.sort_unstable();
        k
    }

    /// The JSON shapes the e2e tests, the web app and scripts read: field names and nesting.
    #[test]
    fn field_names_are_pinned() {
        let id = FileId([0xab; 32]);
        let summary =
            FileSummary { id, name: "a".into(), mime: "text/plain".into(), size: 4, chunks: 1, min_holders: 1 };
        let page =
            serde_json::to_value(FilesPage { total: 1, offset: 0, limit: 50, files: vec![summary.clone()] }).unwrap();
        assert_eq!(keys(&page), ["files", "limit", "offset", "total"]);
        assert_eq!(keys(&page["files"][0]), ["chunks", "id", "mime", "min_holders", "name", "size"]);
        assert_eq!(page["files"][0]["id"], "ab".repeat(32));

        let peer = PeerId::from_secret("s");
        let health = Health {
            replication: 3,
            min_copies: 1,
            max_copies: 2,
            min_claimed: 1,
            max_claimed: 4,
            under_replicated: 1,
            lost: 0,
            status: ReplicationStatus::NotEnoughPeers,
        };
        let detail = FileDetail {
            id,
            name: "a".into(),
            mime: "text/plain".into(),
            published_at_ms: 7,
            manifest: Manifest { size: 4, chunk_size: 4, chunks: vec![] },
            peers: vec![peer.clone()],
            holders: vec![vec![0]],
            holders_offset: 0,
            health,
        };
        let d = serde_json::to_value(&detail).unwrap();
        let want =
            ["health", "holders", "holders_offset", "id", "manifest", "mime", "name", "peers", "published_at_ms"];
        assert_eq!(keys(&d), want);
        assert_eq!(
            d["health"],
            json!({"replication": 3, "min_copies": 1, "max_copies": 2, "min_claimed": 1, "max_claimed": 4,
                   "under_replicated": 1, "lost": 0, "status": "not_enough_peers"})
        );
        assert_eq!(d["holders"], json!([[0]]));
        assert_eq!(d["peers"][0], peer.to_string());

        let s = serde_json::to_value(SearchAnswer { query: "a".into(), replication: 3, files: vec![summary] }).unwrap();
        assert_eq!(keys(&s), ["files", "query", "replication"]);

        let info = PeerInfo {
            id: peer,
            kind: PeerKind::Native,
            joined_at_ms: 1,
            uptime_secs: 2,
            chunks: 3,
            storage_used: 4,
            storage_capacity: None,
            storage_free: 5,
            orders_in_flight: 0,
            leaving: false,
        };
        let p = serde_json::to_value(PeersAnswer { total: 1, offset: 0, limit: 100, peers: vec![info] }).unwrap();
        assert_eq!(keys(&p), ["limit", "offset", "peers", "total"]);
        assert_eq!(
            keys(&p["peers"][0]),
            [
                "chunks",
                "id",
                "joined_at_ms",
                "kind",
                "leaving",
                "orders_in_flight",
                "storage_capacity",
                "storage_free",
                "storage_used",
                "uptime_secs"
            ]
        );
        assert_eq!(p["peers"][0]["kind"], "native");
        assert_eq!(p["peers"][0]["storage_capacity"], Value::Null, "sent as null, not left out");

        assert_eq!(serde_json::to_value(ApiError { error: "no".into() }).unwrap(), json!({"error": "no"}));
    }

    #[test]
    fn stats_field_names_are_pinned() {
        let s = Stats {
            reported_links: vec![(LinkPath::ALL[0], 2)],
            ..serde_json::from_value(json!({
                "uptime_secs": 0, "peers": 0, "peers_native": 0, "peers_browser": 0, "files": 0, "chunks": 0,
                "replication": 3, "under_replicated": 0, "lost": 0, "orders_in_flight": 0, "orders_issued": 0,
                "orders_done": 0, "orders_failed": 0, "orders_expired": 0, "chunks_trimmed": 0,
                "signals_relayed": 0, "errors_sent": 0, "bad_sources_reported": 0, "ws_connections_total": 0,
                "ws_messages_in": 0, "ws_messages_out": 0, "ws_bytes_in": 0, "ws_bytes_out": 0,
                "relay_frames": 0, "relay_bytes": 0, "relay_dropped": 0, "relay_refused": 0, "rate_limited": 0,
                "closed_abuse": 0, "closed_slow": 0, "limit_refusals": 0, "stun_requests": 0, "stun_answers": 0,
                "stun_ignored": 0, "stun_rate_limited": 0, "reported_links": [], "reported_bytes": []
            }))
            .unwrap()
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 41);
        assert_eq!(v["trust"]["proofs_failed"], 0, "an older tracker's stats read with zero trust counters");
        assert_eq!(v["read_pauses"], 0, "and with no read pauses");
        assert_eq!(v["orphans_trimmed"], 0, "and with no orphans trimmed");
        assert_eq!(v["reported_links"], json!([[LinkPath::ALL[0].as_str(), 2]]));
    }
}
