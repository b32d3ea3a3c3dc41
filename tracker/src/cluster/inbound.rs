//! What this node does with what other nodes send it: peers joining and leaving elsewhere,
//! their announcements, requests for the shards kept here, messages and relay frames for the
//! peers connected here, and questions about the shards kept here.

use super::msg::{self, Answer, NodeMsg, Query};
use super::Cluster;
use super::{local, route};
use crate::core::outbox::Frame;
use crate::driver::{now_ms, Counters, Shared};
use futures_util::StreamExt;
use std::sync::Arc;
use swarm_core::{PeerId, ServerMsg};

/// How long a peer that left another node is not brought back by a late message of its own.
const DEPARTED_MS: u64 = 60_000;

/// Heartbeats in a row with another node's peer count off this node's count of its peers
/// before this node asks for that node's roster.
const ROSTER_AFTER_BEATS: u32 = 5;

enum Inbound {
    Node(async_nats::Message),
    Relay(async_nats::Message),
    Query(async_nats::Message),
}

/// Listens to the cluster until the process ends.
pub async fn run(state: Arc<Shared>, cluster: Arc<Cluster>) {
    let c = &cluster.client;
    let subs = async {
        Ok::<_, async_nats::SubscribeError>((
            c.subscribe(cluster.subject_all()).await?,
            c.subscribe(cluster.subject_node(cluster.tag)).await?,
            c.subscribe(cluster.subject_relay(cluster.tag)).await?,
            c.subscribe(cluster.subject_query()).await?,
        ))
    };
    let (all, mine, relay, query) = match subs.await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot subscribe to the cluster's subjects: {e}");
            return;
        }
    };
    let mut events = futures_util::stream::select_all([
        all.map(Inbound::Node).boxed(),
        mine.map(Inbound::Node).boxed(),
        relay.map(Inbound::Relay).boxed(),
        query.map(Inbound::Query).boxed(),
    ]);
    while let Some(ev) = events.next().await {
        match ev {
            Inbound::Node(m) => {
                match msg::decode::<NodeMsg>(&m.payload) {
                    Ok(nm) => {
                        super::add(&cluster.stats.msgs_in, 1);
                        on_node_msg(&state, &cluster, nm);
                    }
                    Err(e) => tracing::warn!("dropping a node message: {e}"),
                }
                // A forwarded request: "taken" (its answer goes to the peer on its own).
                if let Some(reply) = m.reply {
                    let _ = cluster.client.publish(reply, bytes::Bytes::new()).await;
                }
            }
            Inbound::Relay(m) => on_relay(&state, &cluster, &m.payload),
            Inbound::Query(m) => {
                let (Some(reply), Ok(q)) = (m.reply.clone(), msg::decode::<Query>(&m.payload)) else { continue };
                let answer = answer(&state, q);
                let _ = cluster.client.publish(reply, msg::encode(&answer).into()).await;
            }
        }
    }
}

/// Listens to heartbeats until the process ends (apart from [`run`]: heartbeats are never
/// queued behind announcements).
pub async fn beats(state: Arc<Shared>, cluster: Arc<Cluster>) {
    let mut sub = match cluster.client.subscribe(cluster.subject_beat()).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot subscribe to the cluster's heartbeats: {e}");
            return;
        }
    };
    while let Some(m) = sub.next().await {
        match msg::decode::<NodeMsg>(&m.payload) {
            Ok(nm @ NodeMsg::Beat { .. }) => on_node_msg(&state, &cluster, nm),
            Ok(_) => tracing::warn!("dropping a node message that is not a heartbeat on the heartbeat subject"),
            Err(e) => tracing::warn!("dropping a heartbeat: {e}"),
        }
    }
}

fn on_relay(state: &Shared, cluster: &Cluster, payload: &[u8]) {
    if payload.len() < 16 || payload.len() > 16 + crate::net::relay::MAX_RELAY_FRAME {
        return;
    }
    super::add(&cluster.stats.relay_in, 1);
    let to = PeerId(hex::encode(&payload[..16]));
    let frame = bytes::Bytes::copy_from_slice(&payload[16..]);
    let c = &state.counters;
    if local::deliver_local(state, &to, Frame::Binary(frame)) {
        Counters::add(&c.relay_frames, 1);
        Counters::add(&c.relay_bytes, (payload.len() - 16) as u64);
    } else {
        Counters::add(&c.relay_dropped, 1);
    }
}

/// This node's answer about the shards it keeps.
pub fn answer(state: &Shared, q: Query) -> Answer {
    match q {
        Query::Search { query, limit } => {
            let files = state.core().swarm().search(&query, limit.min(swarm_core::swarm::MAX_SEARCH_RESULTS));
            Answer::Files { files }
        }
        Query::Detail { file } => match state.core().swarm().file_detail(&file) {
            Some(d) => Answer::Detail { detail: Box::new(d) },
            None => Answer::NotMine,
        },
    }
}

fn on_node_msg(state: &Arc<Shared>, cluster: &Arc<Cluster>, m: NodeMsg) {
    let me = cluster.tag;
    match m {
        NodeMsg::Beat { node, .. } if node == me => {
            cluster.machine().handle_beat(cluster.now_ms(), node, String::new(), 0);
            cluster.wake.notify_one();
        }
        NodeMsg::Took { node, shards, reannounce, revision } if node != me => {
            {
                let mut m = cluster.machine();
                let now = cluster.now_ms();
                for shard in shards {
                    // A lease held here that lapsed unnoticed (this node was stopped or cut
                    // off) is let go; a `took` older than what this node knows changes nothing.
                    m.handle_took(now, node, shard, revision);
                }
            }
            cluster.wake.notify_one();
            if reannounce {
                cluster.want_reannounce();
            }
        }
        NodeMsg::Beat { node, url, peers } => {
            let known = state.core().peers_at(node);
            let ask = {
                let mut m = cluster.machine();
                let now = cluster.now_ms();
                let old = m.others(now).find(|(t, _)| *t == node).map(|(_, m)| m.peers);
                m.handle_beat(now, node, url, peers);
                let mut offs = cluster.off_counts.lock().unwrap_or_else(|e| e.into_inner());
                let off = offs.entry(node).or_insert(0);
                *off = match old {
                    Some(old) if old != known && peers != known => *off + 1,
                    _ => 0,
                };
                // Off for this many heartbeats (joins and leaves in flight settle sooner).
                let ask = *off >= ROSTER_AFTER_BEATS;
                if ask {
                    *off = 0;
                }
                ask
            };
            cluster.wake.notify_one();
            if ask {
                tracing::info!(node, known, told = peers, "asking a node for its peers again");
                cluster.send_to(node, &NodeMsg::RosterPlease { node: me });
            }
        }
        NodeMsg::Joined { node, peer } if node != me => {
            // Its inventory follows (it announces everything when welcomed).
            state.core().joined_elsewhere(node, peer, now_ms());
        }
        NodeMsg::Roster { node, peers } if node != me => {
            let fresh: Vec<PeerId> = {
                let mut core = state.core();
                let now = now_ms();
                peers
                    .into_iter()
                    .filter_map(|p| {
                        let id = p.peer.clone();
                        core.joined_elsewhere(node, p, now).then_some(id)
                    })
                    .collect()
            };
            // Known here only now: what they hold is not.
            reannounce(state, cluster, fresh);
        }
        NodeMsg::RosterPlease { node } if node != me => send_roster(state, cluster, node),
        NodeMsg::Left { node, peer } if node != me => {
            state.core().left_elsewhere(node, peer, now_ms());
        }
        NodeMsg::FromPeer { node, peer, msg } if node != me => {
            // Not from `node`'s peer (it is connected elsewhere by now, or left): dropped.
            if !state.core().accept_from_node(node, &peer, now_ms()) {
                return;
            }
            if route::file_of(&msg).is_some() {
                route::handle_owned(state, cluster, peer, msg);
            } else {
                local::handle_here(state, &peer, msg);
            }
        }
        NodeMsg::ToPeer { node, peer, msg } => {
            // The same queueing as for messages from this node's own swarm (a peer too slow
            // for its queue is let go, not silently missing an order or a challenge).
            let closed = state.core().deliver_from_node(node, &peer, msg);
            Counters::add(&state.counters.closed_slow, closed);
        }
        _ => {}
    }
}

/// Asks `peers` to re-announce what they hold, in batches, in a task of its own.
pub fn reannounce(state: &Arc<Shared>, _cluster: &Arc<Cluster>, peers: Vec<PeerId>) {
    if peers.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(async move { local::reannounce_now(&state, peers).await });
}

/// Sends the peers connected here to `node`, in batches.
pub fn send_roster(state: &Shared, cluster: &Cluster, node: u16) {
    let peers = state.core().roster();
    for batch in peers.chunks(1000) {
        cluster.send_to(node, &NodeMsg::Roster { node: cluster.tag, peers: batch.to_vec() });
    }
}

/// Forgets the peers connected to `node`, silent for too long: they are gone until they
/// reconnect (to another node, meanwhile).
pub fn forget_node(state: &Shared, node: u16) {
    let lost = state.core().forget_node(node, now_ms());
    tracing::warn!(node, peers = lost, "a tracker node went silent: its peers are gone until they reconnect");
}

/// Forgets, after [`DEPARTED_MS`], which peers left other nodes.
pub fn forget_departed(state: &Shared) {
    let now = now_ms();
    state.core().forget_departed(now, DEPARTED_MS);
}

/// Tells every peer connected here the cluster's nodes as they are now (a node joined or went
/// silent): peers that joined before a node appeared learn it too.
pub fn tell_nodes(state: &Shared, cluster: &Cluster) {
    let msg = ServerMsg::Trackers { trackers: cluster.urls() };
    let closed = state.core().tell_all(&msg);
    Counters::add(&state.counters.closed_slow, closed);
}
