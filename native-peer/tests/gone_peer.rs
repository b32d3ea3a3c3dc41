//! A fetch from a peer the tracker does not know ends at once: the tracker answers the offer
//! with `Signal::Gone`, and the node neither waits for its WebRTC timeout nor falls back to
//! the relay (a download whose source died after the locate moves on in milliseconds).

mod common;

use native_peer::node::{Node, NodeConfig};
use std::time::{Duration, Instant};
use swarm_core::{ChunkId, PeerId};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_to_a_departed_peer_fails_at_once() {
    let tracker = common::Tracker::start(2);
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        tracker_url: tracker.ws_url(),
        more_trackers: Vec::new(),
        tracker_ca: None,
        rtc_ip: Some("127.0.0.1".parse().unwrap()),
        max_storage: 1 << 30,
        upload_limit: None,
        rtc_timeout: Duration::from_secs(20),
        relay_only: false,
        connect_attempts: 3,
        corrupt_serve: false,
        no_nonces: false,
        join_token: None,
        migrate_identity: true,
    };
    let node = Node::start(config, dir.path()).await.expect("node joins the tracker");
    let nobody = PeerId::from_secret("a peer that left");
    let chunk = ChunkId::of(b"a chunk nobody serves");
    let started = Instant::now();
    let err = match node.fetch_chunk_bytes(chunk, 21, vec![nobody.clone()]).await {
        Ok(_) => panic!("fetched from a peer that is not there"),
        Err(e) => format!("{e:#}"),
    };
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "gave up after {took:?}, not at once (WebRTC timeout 20 s)");
    assert!(err.contains("not held by any reachable peer"), "{err}");
    // Tried again right away, the peer is left alone instead of costing another attempt.
    let started = Instant::now();
    let again = node.fetch_chunk_bytes(chunk, 21, vec![nobody]).await.err().map(|e| format!("{e:#}"));
    assert!(again.is_some_and(|e| e.contains("reachable")));
    assert!(started.elapsed() < Duration::from_millis(500), "the second try waited {:?}", started.elapsed());
}
