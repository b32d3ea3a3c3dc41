//! An open swarm that strangers cannot break: identities and publishes per client address,
//! join tokens of a private swarm, unpublish by the owner only, and files nobody holds
//! leaving the index. Raw websocket clients against a real tracker.

mod common;

use common::*;
use std::time::Duration;
use swarm_core::content::ManifestBuilder;
use swarm_core::wire::{ErrorCode, FileMeta};
use swarm_core::{ClientMsg, Manifest, PeerKind, ServerMsg};

/// A tracker whose per-address limits apply to loopback too (the tests' only address).
fn limited(limits: impl FnOnce(&mut tracker::Limits)) -> tracker::Config {
    let mut config = tracker::Config { limit_exempt: Default::default(), ..Default::default() };
    limits(&mut config.limits);
    config
}

fn manifest(seed: u8) -> Manifest {
    let mut b = ManifestBuilder::new(4);
    b.push(&[seed, 1, 2, 3]);
    b.push(&[seed, 4, 5]);
    b.finish()
}

/// The next message that is not a replication order (publishes make the tracker order
/// copies from every peer around).
async fn answer(ws: &mut Ws) -> ServerMsg {
    loop {
        match recv(ws).await {
            // These raw clients hold no bytes: they neither take orders nor prove holdings.
            ServerMsg::Replicate { .. } | ServerMsg::Challenge { .. } => {}
            m => return m,
        }
    }
}

/// Announces the file's chunks and publishes it; returns the answer.
async fn publish(ws: &mut Ws, req: u32, m: &Manifest, name: &str) -> ServerMsg {
    send(ws, &ClientMsg::Have { chunks: m.chunks.clone(), full: false }).await;
    let meta = FileMeta::public(name, "text/plain");
    send(ws, &ClientMsg::Publish { req, manifest: m.clone(), meta }).await;
    answer(ws).await
}

async fn search(ws: &mut Ws, query: &str) -> Vec<swarm_core::wire::FileSummary> {
    send(ws, &ClientMsg::Search { req: 900, query: query.into(), limit: 50 }).await;
    let ServerMsg::SearchResults { files, .. } = answer(ws).await else { panic!("search") };
    files
}

async fn hello_with(ws: &mut Ws, n: u32, token: Option<&str>) -> ServerMsg {
    hello_answer(ws, &secret(n), PeerKind::Native, token.map(Into::into), None).await
}

#[tokio::test]
async fn identities_per_address_are_limited_and_reconnects_do_not_count() {
    let (url, _) = start(limited(|l| l.max_identities_per_ip = 2)).await;
    let (mut a, mut b, mut c) = (connect(&url).await, connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    hello(&mut b, &secret(2)).await;
    let refused = hello_with(&mut c, 3, None).await;
    assert_eq!(error_code(&refused), ErrorCode::LimitReached);
    let ServerMsg::Error { message, .. } = refused else { unreachable!() };
    assert!(message.contains("too many identities from 127.0.0.1"), "{message}");
    assert!(next_frame(&mut c).await.is_none(), "closed after the refusal");
    // The same identity again (a reconnect) is not a new one.
    let mut a2 = connect(&url).await;
    hello(&mut a2, &secret(1)).await;
    // One leaves: room for another.
    drop(b);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut c2 = connect(&url).await;
    hello(&mut c2, &secret(3)).await;
}

#[tokio::test]
async fn loopback_is_exempt_by_default() {
    let mut config = tracker::Config::default();
    config.limits.max_identities_per_ip = 1;
    let (url, _) = start(config).await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    hello(&mut b, &secret(2)).await;
}

#[tokio::test]
async fn publishes_per_hour_and_files_per_address_are_limited() {
    let (url, _) = start(limited(|l| l.max_publishes_per_hour_per_ip = 2)).await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    hello(&mut b, &secret(2)).await;
    assert!(matches!(publish(&mut a, 1, &manifest(1), "one").await, ServerMsg::Published { .. }));
    assert!(matches!(publish(&mut b, 2, &manifest(2), "two").await, ServerMsg::Published { .. }));
    // A third identity from the same address shares the budget.
    let refused = publish(&mut a, 3, &manifest(3), "three").await;
    assert_eq!(error_code(&refused), ErrorCode::RateLimited);
    let ServerMsg::Error { req, message, .. } = refused else { unreachable!() };
    assert_eq!(req, Some(3));
    assert!(message.contains("per hour"), "{message}");
    assert!(matches!(publish(&mut b, 4, &manifest(1), "one").await, ServerMsg::Published { .. }), "known: free");
    assert_eq!(search(&mut b, "").await.len(), 2);

    let (url, _) = start(limited(|l| l.max_files_per_ip = 1)).await;
    let mut a = connect(&url).await;
    hello(&mut a, &secret(1)).await;
    assert!(matches!(publish(&mut a, 1, &manifest(1), "one").await, ServerMsg::Published { .. }));
    assert_eq!(error_code(&publish(&mut a, 2, &manifest(2), "two").await), ErrorCode::LimitReached);
    // Unpublishing frees the slot.
    send(&mut a, &ClientMsg::Unpublish { req: 3, file: manifest(1).file_id() }).await;
    assert!(matches!(answer(&mut a).await, ServerMsg::Unpublished { req: 3, .. }));
    assert!(matches!(answer(&mut a).await, ServerMsg::Trim { .. }), "its own copies go too");
    assert!(matches!(publish(&mut a, 4, &manifest(2), "two").await, ServerMsg::Published { .. }));
}

#[tokio::test]
async fn a_private_tracker_wants_a_join_token() {
    let config = tracker::Config { join_tokens: vec!["open sesame".into(), "second".into()], ..Default::default() };
    let (url, _) = start(config).await;
    let mut none = connect(&url).await;
    let refused = hello_with(&mut none, 1, None).await;
    assert_eq!(error_code(&refused), ErrorCode::BadToken);
    let ServerMsg::Error { message, .. } = refused else { unreachable!() };
    assert!(message.contains("private"), "{message}");
    assert!(next_frame(&mut none).await.is_none(), "closed after the refusal");
    let mut wrong = connect(&url).await;
    assert_eq!(error_code(&hello_with(&mut wrong, 2, Some("open sesam")).await), ErrorCode::BadToken);
    assert!(next_frame(&mut wrong).await.is_none());
    for (n, token) in [(3, "open sesame"), (4, "second")] {
        let mut ok = connect(&url).await;
        assert!(matches!(hello_with(&mut ok, n, Some(token)).await, ServerMsg::Welcome { .. }), "{token}");
    }
    // An open tracker ignores a token.
    let (url, _) = start(tracker::Config::default()).await;
    let mut ws = connect(&url).await;
    assert!(matches!(hello_with(&mut ws, 5, Some("anything")).await, ServerMsg::Welcome { .. }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_owner_unpublishes_and_holders_are_trimmed_durably() {
    let dir = tempfile::tempdir().unwrap();
    let config = tracker::Config { data_dir: Some(dir.path().to_path_buf()), ..Default::default() };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (url, _, server) = start_with(config.clone(), async move {
        let _ = stop_rx.await;
    })
    .await;
    let (mut owner, mut other) = (connect(&url).await, connect(&url).await);
    hello(&mut owner, &secret(1)).await;
    hello(&mut other, &secret(2)).await;
    let m = manifest(7);
    let file = m.file_id();
    assert!(matches!(publish(&mut owner, 1, &m, "mine.txt").await, ServerMsg::Published { .. }));
    // The other peer holds a replica, and even publishes the same file again.
    assert!(matches!(publish(&mut other, 2, &m, "mine.txt").await, ServerMsg::Published { .. }));

    send(&mut other, &ClientMsg::Unpublish { req: 3, file }).await;
    let refused = answer(&mut other).await;
    assert_eq!(error_code(&refused), ErrorCode::NotOwner);
    assert!(matches!(refused, ServerMsg::Error { req: Some(3), .. }));
    assert_eq!(search(&mut other, "mine").await.len(), 1, "still there");

    send(&mut owner, &ClientMsg::Unpublish { req: 4, file }).await;
    assert_eq!(answer(&mut owner).await, ServerMsg::Unpublished { req: 4, file });
    let mut want = m.chunks.clone();
    want.sort();
    assert_eq!(answer(&mut owner).await, ServerMsg::Trim { chunks: want.clone() });
    assert_eq!(answer(&mut other).await, ServerMsg::Trim { chunks: want });
    assert!(search(&mut other, "mine").await.is_empty());
    send(&mut other, &ClientMsg::Locate { req: 5, file }).await;
    assert_eq!(error_code(&answer(&mut other).await), ErrorCode::UnknownFile);

    // Gone from the durable index too.
    drop((owner, other));
    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
    let (url, _) = start(config).await;
    let mut ws = connect(&url).await;
    hello(&mut ws, &secret(3)).await;
    send(&mut ws, &ClientMsg::Locate { req: 1, file }).await;
    assert_eq!(error_code(&answer(&mut ws).await), ErrorCode::UnknownFile, "not restored");
}

#[tokio::test]
async fn a_file_nobody_holds_is_hidden_then_dropped() {
    let config = tracker::Config { unavailable_ttl: Some(Duration::from_millis(600)), ..Default::default() };
    let (url, host) = start(config).await;
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    hello(&mut b, &secret(2)).await;
    let (gone, kept) = (manifest(1), manifest(2));
    assert!(matches!(publish(&mut a, 1, &gone, "gone.txt").await, ServerMsg::Published { .. }));
    assert!(matches!(publish(&mut b, 2, &kept, "kept.txt").await, ServerMsg::Published { .. }));
    assert_eq!(search(&mut b, "").await.len(), 2);
    drop(a);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let names: Vec<String> = search(&mut b, "").await.into_iter().map(|f| f.name).collect();
    assert_eq!(names, ["kept.txt"], "hidden at once");
    let (_, page) = get_json(&host, "/api/files").await;
    assert_eq!(page["total"], 1, "not listed: {page}");
    send(&mut b, &ClientMsg::Locate { req: 3, file: gone.file_id() }).await;
    assert!(matches!(answer(&mut b).await, ServerMsg::Located { .. }), "still in the index for now");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    send(&mut b, &ClientMsg::Locate { req: 4, file: gone.file_id() }).await;
    assert_eq!(error_code(&answer(&mut b).await), ErrorCode::UnknownFile, "dropped after the configured time");
    send(&mut b, &ClientMsg::Locate { req: 5, file: kept.file_id() }).await;
    assert!(matches!(answer(&mut b).await, ServerMsg::Located { .. }), "a held file stays");
}
