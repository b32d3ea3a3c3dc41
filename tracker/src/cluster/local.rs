//! What a cluster node does on its own state alone, whatever the other nodes do: handle a
//! message with its swarm, reach a peer connected here, ask its peers to re-announce. The
//! rest of the cluster layer builds on these; they use nothing of it.

use crate::core::outbox::Frame;
use crate::driver::{now_ms, Shared};
use swarm_core::swarm::Output;
use swarm_core::{ClientMsg, PeerId, ServerMsg};

/// Peers told to re-announce per batch, and the pause between batches (no reannounce storm).
pub const REANNOUNCE_BATCH: usize = 500;
pub const REANNOUNCE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Delivers `msg` to `peer`, wherever in the cluster it is connected.
pub fn tell(state: &Shared, peer: &PeerId, msg: ServerMsg) {
    let slow = state.core().dispatch(vec![Output::Send { to: peer.clone(), msg }]);
    crate::driver::Counters::add(&state.counters.closed_slow, slow);
}

/// Handles `msg` with this node's swarm and delivers what it answers.
pub fn handle_here(state: &Shared, from: &PeerId, msg: ClientMsg) {
    let slow = state.core().handle_here(from, msg, now_ms());
    crate::driver::Counters::add(&state.counters.closed_slow, slow);
}

/// Queues a frame for a peer connected here; `false` if it is not.
pub fn deliver_local(state: &Shared, peer: &PeerId, frame: Frame) -> bool {
    state.core().deliver_frame(peer, frame)
}

/// Asks `peers` to re-announce what they hold, in batches of [`REANNOUNCE_BATCH`] a
/// [`REANNOUNCE_PAUSE`] apart.
pub async fn reannounce_now(state: &Shared, peers: Vec<PeerId>) {
    for (i, batch) in peers.chunks(REANNOUNCE_BATCH).enumerate() {
        if i > 0 {
            tokio::time::sleep(REANNOUNCE_PAUSE).await;
        }
        for p in batch {
            tell(state, p, ServerMsg::Reannounce);
        }
    }
}
