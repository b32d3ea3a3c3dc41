//! A data dir written by an older tracker keeps working in this one. The fixture
//! `tracker/tests/fixtures/redb4/index.redb` was written by the pp-tracker binary of the last
//! commit on redb 4.4 (before the upgrade to redb 5), driven by `writes_the_redb4_fixture`
//! (in this file at commit 9099580): two owners' files, the chunks' verification state, and a
//! legacy identity that moved to a key. The real tracker binary starts on a copy of it. An
//! index it cannot read stops it with an error naming the file, which stays as it was.

mod common;
use common::*;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use swarm_core::content::ManifestBuilder;
use swarm_core::wire::{ErrorCode, FileMeta};
use swarm_core::{ClientMsg, Manifest, PeerKind, ServerMsg};

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
    let (mut child, host) = spawn_listening(
        Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json", "--orphan-grace", "0", "--data-dir"])
            .arg(dir)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped()),
    );
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
            ServerMsg::Replicate { .. } | ServerMsg::Challenge { .. } | ServerMsg::Trim { .. } => {}
            other => panic!("publish {name}: {other:?}"),
        }
    }
}

/// The `fields` of the first log line whose message is `message`.
fn logged(t: &Tracker, message: &str) -> serde_json::Value {
    loop {
        let line = t.logs.recv_timeout(std::time::Duration::from_secs(10)).expect("the tracker logs it");
        if line["fields"]["message"] == message {
            return line["fields"].clone();
        }
    }
}

/// A copy of the fixture's data dir (the committed file is never written).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/redb4/index.redb");
    std::fs::copy(fixture, dir.path().join("index.redb")).unwrap();
    dir
}

/// The next message that is not a replication order or a challenge.
async fn answer(ws: &mut Ws) -> ServerMsg {
    loop {
        match recv(ws).await {
            ServerMsg::Replicate { .. } | ServerMsg::Challenge { .. } => {}
            m => return m,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_dir_of_the_redb4_tracker_keeps_its_files_owners_and_moved_identities() {
    let bin = Path::new(env!("CARGO_BIN_EXE_pp-tracker"));
    let dir = fixture_copy();
    let t = spawn_tracker(bin, dir.path());
    assert_eq!(logged(&t, "file index loaded")["files"], 3);
    assert_eq!(logged(&t, "chunk verification state loaded")["chunks"], 4, "every chunk's origin is kept");
    let files = fixture_files();
    for (_, m, name) in &files {
        let (status, detail) = get_json(&t.host, &format!("/api/files/{}", m.file_id())).await;
        assert_eq!(status, 200, "{name}: {detail}");
        assert_eq!(detail["name"], *name);
        assert_eq!(detail["manifest"]["chunks"].as_array().unwrap().len(), m.chunks.len());
    }

    // Owners are kept: only alpha.txt's owner may unpublish it.
    let url = format!("ws://{}/ws", t.host);
    let (mut a, mut b) = (connect(&url).await, connect(&url).await);
    hello(&mut a, &secret(1)).await;
    hello(&mut b, &secret(2)).await;
    let alpha = files[0].1.file_id();
    send(&mut b, &ClientMsg::Unpublish { req: 1, file: alpha }).await;
    assert_eq!(error_code(&answer(&mut b).await), ErrorCode::NotOwner);
    send(&mut a, &ClientMsg::Unpublish { req: 2, file: alpha }).await;
    assert!(matches!(answer(&mut a).await, ServerMsg::Unpublished { req: 2, .. }));

    // The legacy identity that moved to secret(3)'s key stays moved: another key cannot take it.
    let mut other = connect(&url).await;
    let welcome = hello_answer(&mut other, &secret(4), PeerKind::Native, None, Some(LEGACY.into())).await;
    assert!(matches!(welcome, ServerMsg::Welcome { migrated: None, .. }), "{welcome:?}");
    let refused = answer(&mut other).await;
    assert_eq!(error_code(&refused), ErrorCode::BadSecret, "{refused:?}");
    let mut same = connect(&url).await;
    let welcome = hello_answer(&mut same, &secret(3), PeerKind::Native, None, Some(LEGACY.into())).await;
    assert!(matches!(welcome, ServerMsg::Welcome { migrated: Some(0), .. }), "{welcome:?}");

    // This tracker writes the old file too: a new file and the unpublish survive a restart.
    let mut delta = ManifestBuilder::new(4);
    delta.push(b"delt");
    let delta = delta.finish();
    publish(&mut a, 3, &delta, "delta.txt").await;
    drop((a, b, other, same));
    t.stop();
    let t = spawn_tracker(bin, dir.path());
    assert_eq!(logged(&t, "file index loaded")["files"], 3);
    let status = |id: swarm_core::FileId| {
        let host = t.host.clone();
        async move { get_json(&host, &format!("/api/files/{id}")).await.0 }
    };
    assert_eq!(status(delta.file_id()).await, 200);
    assert_eq!(status(alpha).await, 404);
    assert_eq!(status(files[1].1.file_id()).await, 200);
    t.stop();
}

/// An index this tracker cannot read (here: not a redb file at all; likewise one from a redb
/// whose file format it does not know) stops it with an error that names the file, which is
/// left as it was: nothing is silently started empty.
#[test]
fn an_index_it_cannot_read_stops_the_tracker_and_is_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    let junk: Vec<u8> = b"not a redb file\n".iter().copied().cycle().take(8192).collect();
    std::fs::write(&path, &junk).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pp-tracker"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .expect("tracker binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "it must not start on an unreadable index: {stderr}");
    assert!(stderr.contains(&format!("cannot open the file index {}", path.display())), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), junk, "the file is left untouched");
}
