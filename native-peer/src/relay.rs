//! The peer side of the tracker relay: when no data channel opens, chunk-protocol messages
//! travel as [`RelayFrame`]s through the tracker's websocket.

use crate::tracker_client::TrackerClient;
use std::sync::Arc;
use swarm_core::relay::RelayFrame;
use swarm_core::PeerId;

/// Sends chunk-protocol messages to one peer through the relay.
#[derive(Clone)]
pub struct RelaySender {
    pub tracker: Arc<TrackerClient>,
    pub peer: PeerId,
    pub conn: u64,
}

impl RelaySender {
    pub async fn send(&self, payload: Vec<u8>) -> anyhow::Result<()> {
        self.tracker.send_relay(&RelayFrame { peer: self.peer.clone(), conn: self.conn, payload }).await
    }
}
