//! Where a message from a peer connected to this node goes in a cluster (see the table in
//! [`super`]), and how the node that keeps a file's shard handles a request about it.

use super::msg::{Answer, NodeMsg, Query};
use super::{local, Cluster};
use crate::core::Step;
use crate::driver::{now_ms, Shared};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use swarm_core::swarm::{Output, Swarm, MAX_SEARCH_RESULTS};
use swarm_core::wire::{ErrorCode, FileSummary, ProofItem};
use swarm_core::{ClientMsg, FileId, PeerId, ServerMsg};

/// How long a search waits for the other nodes' answers.
pub const QUERY_WAIT: Duration = Duration::from_millis(800);

/// Where one message goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Handled by this node's swarm alone.
    Here,
    /// Applied here and by every other node.
    Everywhere,
    /// Claims: each part to the node that keeps its chunks ([`super::claims`]).
    Claims,
    /// To the node keeping shard `shard`.
    Shard(u16),
    /// Answers to orders or challenges: to the nodes that sent them (by id range).
    Issuers(Vec<(u16, ClientMsg)>),
    /// Asked of every node.
    Search,
}

/// The file a request is about, if it is about one.
pub fn file_of(msg: &ClientMsg) -> Option<FileId> {
    match msg {
        ClientMsg::Publish { manifest, .. } => Some(manifest.file_id()),
        ClientMsg::Unpublish { file, .. } | ClientMsg::Locate { file, .. } | ClientMsg::Nonces { file, .. } => {
            Some(*file)
        }
        _ => None,
    }
}

/// The request number of a request (to answer an error to).
fn req_of(msg: &ClientMsg) -> Option<u32> {
    match msg {
        ClientMsg::Publish { req, .. }
        | ClientMsg::Unpublish { req, .. }
        | ClientMsg::Locate { req, .. }
        | ClientMsg::Search { req, .. } => Some(*req),
        _ => None,
    }
}

fn issuer(id: u64) -> u16 {
    Swarm::id_range_of(id) as u16
}

/// Where `msg` goes (pure: a function of the message and the shard count).
pub fn route(msg: ClientMsg, shards: u16) -> (Route, Option<ClientMsg>) {
    if let Some(file) = file_of(&msg) {
        return (Route::Shard(super::shards::shard_of(&file, shards)), Some(msg));
    }
    match msg {
        ClientMsg::Have { .. } | ClientMsg::Dropped { .. } | ClientMsg::BadSource { .. } => (Route::Claims, Some(msg)),
        ClientMsg::Storage { .. } | ClientMsg::Leave => (Route::Everywhere, Some(msg)),
        ClientMsg::OrderDone { order } => (Route::Issuers(vec![(issuer(order), msg)]), None),
        ClientMsg::OrderFailed { order, .. } => (Route::Issuers(vec![(issuer(order), msg)]), None),
        ClientMsg::Proofs { items } => {
            let mut by: BTreeMap<u16, Vec<ProofItem>> = BTreeMap::new();
            for it in items {
                by.entry(issuer(it.id)).or_default().push(it);
            }
            (Route::Issuers(by.into_iter().map(|(n, items)| (n, ClientMsg::Proofs { items })).collect()), None)
        }
        ClientMsg::Search { .. } => (Route::Search, Some(msg)),
        _ => (Route::Here, Some(msg)),
    }
}

fn unavailable(state: &Shared, cluster: &Cluster, to: &PeerId, req: Option<u32>, why: &str) {
    super::add(&cluster.stats.refused_unavailable, 1);
    local::tell(state, to, ServerMsg::error(req, ErrorCode::Unavailable, why.to_string()));
}

/// A message from `from` (connected to this node) in a cluster. Requests about a file the
/// publish limits allowed already.
pub fn from_local_peer(state: &Shared, cluster: &Arc<Cluster>, from: &PeerId, msg: ClientMsg) {
    let (route, msg) = route(msg, cluster.config.shards);
    if matches!(route, Route::Shard(_) | Route::Search) && !cluster.reaches_cluster() {
        if let Some(msg) = &msg {
            let why = "this tracker node lost its link to the cluster: nothing changed; try again or use another node";
            return unavailable(state, cluster, from, req_of(msg), why);
        }
    }
    match (route, msg) {
        (Route::Here, Some(msg)) => local::handle_here(state, from, msg),
        (Route::Everywhere, Some(msg)) => {
            cluster.broadcast(&NodeMsg::FromPeer { node: cluster.tag, peer: from.clone(), msg: msg.clone() });
            local::handle_here(state, from, msg);
        }
        (Route::Claims, Some(msg)) => super::claims::from_local_peer(state, cluster, from, msg),
        (Route::Shard(shard), Some(msg)) => match cluster.owner(shard) {
            Some(owner) if owner == cluster.tag => handle_owned(state, cluster, from.clone(), msg),
            _ => {
                let mut msgs = Vec::with_capacity(2);
                if let ClientMsg::Publish { manifest, .. } = &msg {
                    // The publisher's claims go first: the file has its holder once published.
                    let chunks = super::claims::loose_claims_of(state, from, &manifest.chunks);
                    if !chunks.is_empty() {
                        msgs.push(ClientMsg::Have { chunks, full: false });
                    }
                }
                msgs.push(msg);
                forward(cluster, shard, from.clone(), msgs)
            }
        },
        (Route::Issuers(parts), _) => {
            for (node, msg) in parts {
                if node == cluster.tag {
                    local::handle_here(state, from, msg);
                } else {
                    // An answer for a node that is gone goes nowhere: its orders are re-planned.
                    cluster.send_to(node, &NodeMsg::FromPeer { node: cluster.tag, peer: from.clone(), msg });
                }
            }
        }
        (Route::Search, Some(ClientMsg::Search { req, query, limit })) => {
            let Some(state) = cluster.state() else { return };
            let (cluster, from) = (cluster.clone(), from.clone());
            tokio::spawn(async move {
                let files = search(&cluster, query, limit).await;
                local::tell(&state, &from, ServerMsg::SearchResults { req, files });
            });
        }
        _ => {}
    }
}

/// Hands requests to the node keeping `shard`, in order, as NATS requests: "no responders"
/// means that node is gone, so a request waits for the shard's next owner (about a lease
/// time) instead of vanishing. Only when no owner takes it in twice the lease time does the
/// peer hear `unavailable`.
fn forward(cluster: &Arc<Cluster>, shard: u16, from: PeerId, msgs: Vec<ClientMsg>) {
    let Some(state) = cluster.state() else { return };
    let cluster = cluster.clone();
    tokio::spawn(async move {
        for msg in msgs {
            forward_one(&state, &cluster, shard, &from, msg).await;
        }
    });
}

async fn forward_one(state: &Shared, cluster: &Arc<Cluster>, shard: u16, from: &PeerId, msg: ClientMsg) {
    let period = cluster.config.period();
    // Claims ahead of a request are tried once: they also move on their own once a period.
    let patience = if file_of(&msg).is_some() { cluster.config.lease_ttl * 2 } else { Duration::ZERO };
    let deadline = tokio::time::Instant::now() + patience;
    let payload: bytes::Bytes =
        super::msg::encode(&NodeMsg::FromPeer { node: cluster.tag, peer: from.clone(), msg: msg.clone() }).into();
    loop {
        match cluster.owner(shard) {
            Some(o) if o == cluster.tag && cluster.owns(shard) => {
                return if file_of(&msg).is_some() {
                    handle_owned(state, cluster, from.clone(), msg)
                } else {
                    local::handle_here(state, from, msg)
                };
            }
            Some(o) if o == cluster.tag => {}
            Some(o) => {
                let ask = cluster.client.request(cluster.subject_node(o), payload.clone());
                match tokio::time::timeout(cluster.config.lease_ttl, ask).await {
                    Ok(Ok(_)) => {
                        super::add(&cluster.stats.msgs_out, 1);
                        return;
                    }
                    Ok(Err(e)) => tracing::debug!(shard, node = o, "the shard's node did not take a request: {e}"),
                    Err(_) => tracing::debug!(shard, node = o, "the shard's node did not answer a request"),
                }
            }
            None => {}
        }
        if tokio::time::Instant::now() >= deadline {
            if file_of(&msg).is_some() {
                let why = "no tracker node keeps this file's shard right now (a node died and its shards are moving)";
                unavailable(state, cluster, from, req_of(&msg), why);
            }
            return;
        }
        tokio::time::sleep(period).await;
    }
}

/// Search across every node's shards.
pub async fn search(cluster: &Cluster, query: String, limit: u32) -> Vec<FileSummary> {
    let limit = limit.min(MAX_SEARCH_RESULTS);
    let answers = cluster.ask_all(&Query::Search { query, limit }, QUERY_WAIT).await;
    let mut files: Vec<FileSummary> = answers
        .into_iter()
        .flat_map(|a| match a {
            Answer::Files { files } => files,
            _ => Vec::new(),
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
    files.dedup_by(|a, b| a.id == b.id);
    files.truncate(limit as usize);
    files
}

/// A request about a file of a shard this node should keep (from a peer here or on another
/// node). Refused with `unavailable` unless the lease is fresh; a new file is durable in KV
/// before its publisher hears "published", and a file KV did not take is let go of again.
pub fn handle_owned(state: &Shared, cluster: &Arc<Cluster>, from: PeerId, msg: ClientMsg) {
    let Some(file) = file_of(&msg) else { return };
    let shard = cluster.shard_of(&file);
    if !cluster.owns(shard) {
        let why = "this file's shard is moving between tracker nodes (or this node lost the cluster); nothing changed";
        return unavailable(state, cluster, &from, req_of(&msg), why);
    }
    let Some(Step { out, added, removed, .. }) = state.core().handle_owned(&from, msg, shard, now_ms()) else {
        return;
    };
    if added.is_empty() && removed.is_empty() {
        let slow = state.core().dispatch(out);
        crate::driver::Counters::add(&state.counters.closed_slow, slow);
        return;
    }
    let Some(state) = cluster.state() else { return };
    let cluster = cluster.clone();
    tokio::spawn(async move {
        let mut failed = Vec::new();
        for r in &added {
            if let Err(e) = cluster.store.put_file(shard, r).await {
                tracing::error!("cannot store a published file in the cluster index: {e}");
                failed.push(r.manifest.file_id());
            }
        }
        for f in &removed {
            if let Err(e) = cluster.store.remove_file(shard, f).await {
                tracing::error!("cannot remove a file from the cluster index: {e}");
            }
        }
        let mut out = out;
        if !failed.is_empty() {
            // Not durable: not published. The publisher hears why and may try again.
            state.core().evict_files(&failed);
            for o in out.iter_mut() {
                if let Output::Send { msg: ServerMsg::Published { req, file }, .. } = o {
                    if failed.contains(file) {
                        super::add(&cluster.stats.refused_unavailable, 1);
                        let m = "the cluster index is unreachable: the file was not published; try again";
                        *o = Output::Send {
                            to: from.clone(),
                            msg: ServerMsg::error(Some(*req), ErrorCode::Unavailable, m),
                        };
                    }
                }
            }
        }
        let slow = state.core().dispatch(out);
        crate::driver::Counters::add(&state.counters.closed_slow, slow);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use swarm_core::ChunkId;

    #[test]
    fn requests_go_to_the_shard_owner_answers_to_their_issuer() {
        let f = FileId([7; 32]);
        let shard = super::super::shards::shard_of(&f, 16);
        assert_eq!(route(ClientMsg::Locate { req: 1, file: f }, 16).0, Route::Shard(shard));
        assert_eq!(route(ClientMsg::Have { chunks: vec![ChunkId([1; 32])], full: true }, 16).0, Route::Claims);
        assert_eq!(route(ClientMsg::Storage { used: 1, capacity: 2 }, 16).0, Route::Everywhere);
        assert_eq!(route(ClientMsg::Heartbeat, 16).0, Route::Here);
        let order = (42u64 << swarm_core::swarm::ID_RANGE_BITS) + 5;
        match route(ClientMsg::OrderDone { order }, 16).0 {
            Route::Issuers(p) => assert_eq!(p[0].0, 42),
            r => panic!("{r:?}"),
        }
        let items = vec![
            ProofItem { id: (1u64 << swarm_core::swarm::ID_RANGE_BITS) + 1, proof: None },
            ProofItem { id: (2u64 << swarm_core::swarm::ID_RANGE_BITS) + 1, proof: None },
            ProofItem { id: (1u64 << swarm_core::swarm::ID_RANGE_BITS) + 2, proof: None },
        ];
        match route(ClientMsg::Proofs { items }, 16).0 {
            Route::Issuers(p) => {
                assert_eq!(p.len(), 2, "one message per issuing node");
                assert!(matches!(&p[0].1, ClientMsg::Proofs { items } if items.len() == 2));
            }
            r => panic!("{r:?}"),
        }
    }
}
