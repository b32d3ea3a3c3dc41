//! Repair under scarcity against the real tracker: four peers hold a file at R = 3, two of
//! them go away, and the two survivors (with room for everything) are ordered to copy every
//! chunk the other one lacks, so every chunk has two copies; the file's health says it is
//! below R for lack of peers. A fifth peer brings it back to R.

mod common;
use common::*;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use swarm_core::api::{FileDetail, ReplicationStatus};
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, ClientMsg, ManifestBuilder, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

/// Carries out every replication order the peer gets (it has the chunk at once); counts them.
fn serve_orders(mut ws: Ws, orders: Arc<AtomicU64>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(Ok(msg)) = ws.next().await {
            let Message::Text(t) = msg else { continue };
            if let Ok(ServerMsg::Replicate { order, chunk, .. }) = serde_json::from_str(t.as_str()) {
                orders.fetch_add(1, Ordering::Relaxed);
                send(&mut ws, &ClientMsg::Have { chunks: vec![chunk], full: false }).await;
                send(&mut ws, &ClientMsg::OrderDone { order }).await;
            }
        }
    })
}

/// Waits until the tracker has handled everything `ws` sent before.
async fn sync(ws: &mut Ws) {
    send(ws, &ClientMsg::Search { req: 77, query: String::new(), limit: 1 }).await;
    loop {
        if let ServerMsg::SearchResults { req: 77, .. } = recv(ws).await {
            return;
        }
    }
}

/// Polls the file's health until `ok` holds (10 s at most).
async fn wait_health(host: &str, id: &str, what: &str, ok: impl Fn(&FileDetail) -> bool) -> FileDetail {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (status, v) = get_json(host, &format!("/api/files/{id}")).await;
        assert_eq!(status, 200);
        let d: FileDetail = serde_json::from_value(v).unwrap();
        if ok(&d) {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: health is {:?}", d.health);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_below_r_are_ordered_to_copy_every_chunk() {
    let mut config = tracker::Config::default();
    config.repair.grace_ms = 200;
    // Repair alone: these raw clients claim chunks without answering challenges (claims are
    // verified in `trust.rs`).
    config.repair.trust.verify = false;
    let (url, host) = start(config).await;
    let mut peers = Vec::new();
    for n in 0..4 {
        let mut ws = connect(&url).await;
        hello(&mut ws, &secret(n + 1)).await;
        peers.push(ws);
    }
    // 400 chunks; chunk i is on every peer but peer i % 4: the file is at R = 3.
    let mut mb = ManifestBuilder::new(4);
    for i in 0..400u32 {
        mb.push(&i.to_be_bytes());
    }
    let manifest = mb.finish();
    for (n, ws) in peers.iter_mut().enumerate() {
        let mine: Vec<ChunkId> =
            manifest.chunks.iter().enumerate().filter(|(i, _)| i % 4 != n).map(|(_, c)| *c).collect();
        send(ws, &ClientMsg::Have { chunks: mine, full: true }).await;
        sync(ws).await;
    }
    let meta = FileMeta::public("scarce.bin", "application/octet-stream");
    send(&mut peers[0], &ClientMsg::Publish { req: 1, manifest, meta }).await;
    let id = loop {
        if let ServerMsg::Published { file, .. } = recv(&mut peers[0]).await {
            break file.to_string();
        }
    };
    let at_r = wait_health(&host, &id, "published", |d| d.health.min_copies == 3).await;
    assert_eq!(at_r.health.status, ReplicationStatus::Ok);

    // Peers 2 and 3 go away; 0 and 1 stay and carry out their orders.
    let (d, c) = (peers.pop().unwrap(), peers.pop().unwrap());
    drop((c, d));
    let counts: Vec<Arc<AtomicU64>> = (0..2).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let tasks: Vec<_> = peers.drain(..).zip(&counts).map(|(ws, n)| serve_orders(ws, n.clone())).collect();
    let below =
        wait_health(&host, &id, "two survivors", |d| d.health.min_copies == 2 && d.health.max_copies == 2).await;
    assert_eq!(below.health.status, ReplicationStatus::NotEnoughPeers, "below R, and why");
    assert_eq!(below.health.under_replicated, 400);
    let orders: Vec<u64> = counts.iter().map(|n| n.load(Ordering::Relaxed)).collect();
    assert_eq!(orders, vec![100, 100], "each survivor copied what only the other had");

    // A third peer joins: back to R.
    let mut extra = connect(&url).await;
    hello(&mut extra, &secret(9)).await;
    let n_extra = Arc::new(AtomicU64::new(0));
    let t = serve_orders(extra, n_extra.clone());
    let healed = wait_health(&host, &id, "a peer joined", |d| d.health.min_copies == 3).await;
    assert_eq!(healed.health.status, ReplicationStatus::Ok);
    assert_eq!(n_extra.load(Ordering::Relaxed), 400);
    t.abort();
    for t in tasks {
        t.abort();
    }
}
