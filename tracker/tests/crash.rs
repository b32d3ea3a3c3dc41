//! kill -9 of the real tracker binary in the middle of a stream of publishes: after a
//! restart on the same data dir, every file that got a `published` answer is still there.

mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use std::process::{Child, Command};
use swarm_core::wire::FileMeta;
use swarm_core::{ClientMsg, FileId, ManifestBuilder, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

/// Starts `target/debug/pp-tracker` and returns it with its `host:port`.
fn spawn_tracker(dir: &std::path::Path) -> (Child, String) {
    spawn_listening(
        Command::new(env!("CARGO_BIN_EXE_pp-tracker"))
            .args(["--listen", "127.0.0.1:0", "--msgs-per-sec", "0", "--max-files-per-peer", "1000000", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "warn"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_publish_loses_no_acknowledged_file() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, host) = spawn_tracker(dir.path());
    let mut ws = connect(&format!("ws://{host}/ws")).await;
    hello(&mut ws, &secret(1)).await;
    let (mut tx, mut rx) = ws.split();
    // Publish as fast as possible, without waiting for answers.
    let writer = tokio::spawn(async move {
        for i in 0u32..100_000 {
            let mut mb = ManifestBuilder::new(4);
            mb.push(&i.to_be_bytes());
            let meta = FileMeta::public(format!("file {i}"), "text/plain");
            let msg = ClientMsg::Publish { req: i, manifest: mb.finish(), meta };
            if tx.send(Message::Text(msg.to_json().into())).await.is_err() {
                break;
            }
            if i % 64 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        }
    });
    let mut acked: Vec<FileId> = Vec::new();
    while let Some(Ok(m)) = rx.next().await {
        if let Message::Text(t) = m {
            if let ServerMsg::Published { file, .. } = serde_json::from_str(t.as_str()).unwrap() {
                acked.push(file);
                if acked.len() == 300 {
                    child.kill().unwrap(); // SIGKILL
                    child.wait().unwrap();
                }
            }
        }
    }
    writer.abort();
    assert!(acked.len() >= 300, "got {} answers", acked.len());

    let (mut child, host) = spawn_tracker(dir.path());
    let (status, page) = get_json(&host, "/api/files?limit=1").await;
    assert_eq!(status, 200, "the database opens");
    // Listings leave out files with a chunk nobody holds (no peer has announced any here),
    // but every acknowledged file is in the index, by id.
    assert_eq!(page["total"], 0, "{page}");
    for id in &acked {
        let (status, _) = get_json(&host, &format!("/api/files/{id}")).await;
        assert_eq!(status, 200, "acknowledged file {id} survived the kill");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}
