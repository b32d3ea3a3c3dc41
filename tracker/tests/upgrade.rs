//! A data dir written by an older tracker keeps working in this one. The fixture
//! `tracker/tests/fixtures/redb4/index.redb` was written by the pp-tracker binary of the last
//! commit on redb 4.4 (before the upgrade to redb 5), driven by `writes_the_redb4_fixture`
//! (in this file at that commit): two owners' files, the chunks' verification state, and a
//! legacy identity that moved to a key. The real tracker binary starts on a copy of it.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use swarm_core::content::ManifestBuilder;
use swarm_core::wire::{ErrorCode, FileMeta};
use swarm_core::{ClientMsg, Manifest, PeerId, PeerKind, ServerMsg};

/// The legacy secret whose identity moved to the key of `secret(3)`.
const LEGACY: &str = "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";

/// The fixture's files: (owner's secret number, manifest, name).
fn fixture_files() -> Vec<(u32, Manifest, &'static str)> {
    let file = |parts: &[&[u8]]| {
        let mut b = ManifestBuilder::new(4);
        for p in parts {
            b.push(p);
        }
        b.finish()
    };
    vec![
        (1, file(&[b"alph"]), "alpha.txt"),
        (1, file(&[b"beta", b"b2"]), "beta.bin"),
        (2, file(&[b"gamm"]), "gamma.txt"),
    ]
}

/// A running `pp-tracker` on `dir`: the process, its `host:port`, its JSON log lines.
struct Tracker {
    child: Child,
    host: String,
    logs: mpsc::Receiver<serde_json::Value>,
}

fn spawn_tracker(bin: &Path, dir: &Path) -> Tracker {
    let mut child = Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--orphan-grace", "0", "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tracker binary runs");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let host = line.trim().rsplit("http://").next().unwrap().to_string();
    let (tx, logs) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(serde_json::from_str(&line).unwrap_or(serde_json::Value::String(line)));
        }
    });
    Tracker { child, host, logs }
}

impl Tracker {
    /// Stops it as systemd would (SIGTERM), so it saves what it batches.
    fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        assert!(self.child.wait().unwrap().success(), "a clean shutdown");
    }
}

async fn publish(ws: &mut Ws, req: u32, m: &Manifest, name: &str) {
    let meta = FileMeta::public(name, "text/plain");
    send(ws, &ClientMsg::Publish { req, manifest: m.clone(), meta }).await;
    loop {
        match recv(ws).await {
            ServerMsg::Published { .. } => return,
            ServerMsg::Replicate { .. } | ServerMsg::Challenge { .. } => {}
            other => panic!("publish {name}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_the_redb4_fixture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redb4");
    let t = spawn_tracker(Path::new(env!("CARGO_BIN_EXE_pp-tracker")), &dir);
    let url = format!("ws://{}/ws", t.host);
    for n in [1, 2] {
        let mut ws = connect(&url).await;
        hello(&mut ws, &secret(n)).await;
        for (i, (owner, m, name)) in fixture_files().iter().enumerate() {
            if *owner == n {
                publish(&mut ws, i as u32, m, name).await;
            }
        }
    }
    let mut moved = connect(&url).await;
    let welcome = hello_answer(&mut moved, &secret(3), PeerKind::Native, None, Some(LEGACY.into())).await;
    assert!(matches!(welcome, ServerMsg::Welcome { .. }), "{welcome:?}");
    t.stop();
}
