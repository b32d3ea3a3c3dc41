//! What tracker nodes of one cluster say to each other over NATS core subjects (JSON; every
//! message names the node that sent it, so a stale one can be told apart):
//!
//! | subject | who listens | carries |
//! |---|---|---|
//! | `{prefix}.beat` | every node | [`NodeMsg::Beat`] (alone, and read by a task of its own: never behind other traffic) |
//! | `{prefix}.all` | every node | [`NodeMsg::Joined`], [`NodeMsg::Left`], [`NodeMsg::Took`], peer messages every node applies ([`NodeMsg::FromPeer`]) |
//! | `{prefix}.n.{tag}` | node `tag` | [`NodeMsg::FromPeer`] for the shard owner (requests, its part of claims) or order issuer, [`NodeMsg::ToPeer`], [`NodeMsg::Roster`], [`NodeMsg::RosterPlease`] |
//! | `{prefix}.r.{tag}` | node `tag` | a relay frame for one of its peers: 16 bytes of recipient id, then the frame as the recipient gets it |
//! | `{prefix}.q` | every node | [`Query`] (request/reply): search and file details across shards |
//!
//! The number of subjects grows with nodes, never with peers or files.

use serde::{Deserialize, Serialize};
use swarm_core::api::FileDetail;
use swarm_core::wire::FileSummary;
use swarm_core::{ClientMsg, FileId, PeerId, ServerMsg};

/// Longest node message accepted (a `have` of a large store, re-sent, stays well below).
pub const MAX_NODE_MSG: usize = 4 << 20;

pub use crate::core::nodes::RosterPeer;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum NodeMsg {
    /// "I am alive" (every second): the node's public `/ws` URL and how many peers it holds.
    Beat { node: u16, url: String, peers: u32 },
    /// A peer connected to `node`.
    Joined { node: u16, peer: RosterPeer },
    /// A peer's connection to `node` ended.
    Left { node: u16, peer: PeerId },
    /// The peers connected to `node` (to a node that just appeared), in batches.
    Roster { node: u16, peers: Vec<RosterPeer> },
    /// `node` asks for the receiver's roster (its count of the receiver's peers stayed off the
    /// count the receiver's heartbeats tell: a roster or `joined` was lost).
    RosterPlease { node: u16 },
    /// A message from `peer` (connected to `node`) for the node(s) that keep what it is about.
    FromPeer { node: u16, peer: PeerId, msg: ClientMsg },
    /// A message from `node` for `peer`, connected to the receiving node.
    ToPeer { node: u16, peer: PeerId, msg: ServerMsg },
    /// `node` keeps `shards` from now on (it took them over): claims of their chunks go there;
    /// with `reannounce`, every node's peers re-announce (the shards have files whose claims
    /// may have died with their last node).
    Took {
        node: u16,
        shards: Vec<u16>,
        #[serde(default)]
        reannounce: bool,
        /// The lease's revision (the bucket's sequence: later takes have higher ones), so a
        /// `took` that arrives late is told from a newer one (0: not said).
        #[serde(default)]
        revision: u64,
    },
}

/// A question every node answers about the shards it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub enum Query {
    Search { query: String, limit: u32 },
    Detail { file: FileId },
}

/// A node's answer to a [`Query`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "a", rename_all = "snake_case")]
pub enum Answer {
    Files {
        files: Vec<FileSummary>,
    },
    Detail {
        detail: Box<FileDetail>,
    },
    /// Not a file of this node's shards.
    NotMine,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("node message of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("malformed node message: {0}")]
    Json(#[from] serde_json::Error),
}

pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    serde_json::to_vec(msg).expect("node messages always serialize")
}

pub fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() > MAX_NODE_MSG {
        return Err(DecodeError::TooLarge(bytes.len()));
    }
    Ok(serde_json::from_slice(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use swarm_core::wire::{ErrorCode, PeerKind, Signal};
    use swarm_core::ChunkId;

    fn peer() -> impl Strategy<Value = PeerId> {
        "[a-z0-9]{1,12}".prop_map(|s| PeerId::from_secret(&s))
    }
    fn kind() -> impl Strategy<Value = PeerKind> {
        prop_oneof![Just(PeerKind::Native), Just(PeerKind::Browser)]
    }
    fn roster_peer() -> impl Strategy<Value = RosterPeer> {
        (peer(), kind(), proptest::option::of((any::<u64>(), any::<u64>())))
            .prop_map(|(peer, kind, storage)| RosterPeer { peer, kind, storage })
    }
    fn client_msg() -> impl Strategy<Value = ClientMsg> {
        prop_oneof![
            (prop::collection::vec(any::<[u8; 32]>(), 0..5), any::<bool>())
                .prop_map(|(c, full)| ClientMsg::Have { chunks: c.into_iter().map(ChunkId).collect(), full }),
            (any::<u64>(), any::<u64>()).prop_map(|(used, capacity)| ClientMsg::Storage { used, capacity }),
            (any::<u32>(), any::<[u8; 32]>()).prop_map(|(req, f)| ClientMsg::Locate { req, file: FileId(f) }),
            any::<u64>().prop_map(|order| ClientMsg::OrderDone { order }),
        ]
    }
    fn server_msg() -> impl Strategy<Value = ServerMsg> {
        prop_oneof![
            Just(ServerMsg::Reannounce),
            (any::<u32>(), ".{0,20}").prop_map(|(req, m)| ServerMsg::error(Some(req), ErrorCode::Unavailable, m)),
            (peer(), any::<u64>()).prop_map(|(from, conn)| ServerMsg::Signal { from, conn, signal: Signal::Gone }),
        ]
    }
    fn node_msg() -> impl Strategy<Value = NodeMsg> {
        prop_oneof![
            (any::<u16>(), "ws://[a-z0-9.:]{1,20}/ws", any::<u32>()).prop_map(|(node, url, peers)| NodeMsg::Beat {
                node,
                url,
                peers
            }),
            (any::<u16>(), roster_peer()).prop_map(|(node, peer)| NodeMsg::Joined { node, peer }),
            (any::<u16>(), peer()).prop_map(|(node, peer)| NodeMsg::Left { node, peer }),
            (any::<u16>(), prop::collection::vec(roster_peer(), 0..4))
                .prop_map(|(node, peers)| NodeMsg::Roster { node, peers }),
            any::<u16>().prop_map(|node| NodeMsg::RosterPlease { node }),
            (any::<u16>(), peer(), client_msg()).prop_map(|(node, peer, msg)| NodeMsg::FromPeer { node, peer, msg }),
            (any::<u16>(), peer(), server_msg()).prop_map(|(node, peer, msg)| NodeMsg::ToPeer { node, peer, msg }),
            (any::<u16>(), prop::collection::vec(any::<u16>(), 0..4), any::<bool>(), any::<u64>())
                .prop_map(|(node, shards, reannounce, revision)| NodeMsg::Took { node, shards, reannounce, revision }),
        ]
    }

    proptest! {
        #[test]
        fn every_node_message_round_trips(msg in node_msg()) {
            prop_assert_eq!(decode::<NodeMsg>(&encode(&msg)).unwrap(), msg);
        }

        #[test]
        fn queries_round_trip(q in ".{0,30}", limit in any::<u32>(), f in any::<[u8; 32]>()) {
            for query in [Query::Search { query: q.clone(), limit }, Query::Detail { file: FileId(f) }] {
                prop_assert_eq!(decode::<Query>(&encode(&query)).unwrap(), query);
            }
        }

        #[test]
        fn garbage_is_an_error_not_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode::<NodeMsg>(&bytes);
        }
    }

    #[test]
    fn oversized_messages_are_refused_before_parsing() {
        let big = vec![b' '; MAX_NODE_MSG + 1];
        assert!(matches!(decode::<NodeMsg>(&big), Err(DecodeError::TooLarge(_))));
    }
}
