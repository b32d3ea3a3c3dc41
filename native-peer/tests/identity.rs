//! Identities are keys (see `swarm-core/src/identity.rs`), with real processes:
//! - a data dir made by the binaries before keys (the fixture `tests/fixtures/legacy-v1`: a
//!   tracker's data dir and a peer's, where that peer had published one small file) still
//!   works with today's: the peer moves its files to its new id on its first session with its
//!   configured tracker, then removes its file with `pp-peer rm` and serves its chunks;
//! - a hostile tracker named in a link learns nothing it can use: relaying the real tracker's
//!   challenge to the peer and the peer's proof back gets it refused (`wrong_origin`), and a
//!   legacy peer never sends it its old secret.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use swarm_core::wire::ErrorCode;
use swarm_core::{PeerId, ServerMsg};
use tokio_tungstenite::tungstenite::Message;

/// The file the legacy peer published, and its bytes.
const LEGACY_FILE: &str = "811c563e70688a164c87700f2ed2eaabeff0a37de2303137b1a5fd4161e4fd4e";
const LEGACY_TEXT: &str = "published by a peer of the version before identities were keys\n";

fn fixture(part: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/legacy-v1").join(part)
}

fn legacy_secret() -> String {
    std::fs::read_to_string(fixture("peer/identity")).unwrap().trim().to_string()
}

fn identity_text(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("identity")).unwrap()
}

#[test]
fn a_data_dir_made_before_keys_still_removes_its_file_and_serves_its_chunks() {
    let _serial = serial();
    let tracker = Tracker::start_from(Some(&fixture("tracker")), 2, &[]);
    let root = test_root();
    copy_dir(&fixture("peer"), &root.path().join("legacy"));
    let secret = legacy_secret();
    let old_id = PeerId::legacy_from_secret(&secret);
    let legacy = Peer::start("legacy", &tracker, root.path(), &[], &[]);
    assert_eq!(legacy.peer_id, PeerId::from_secret(&secret).0, "the id of the key derived from the old secret");
    assert_ne!(legacy.peer_id, old_id.0);
    // The tracker confirmed the move: the data dir keeps only the key now.
    wait_for("the identity file rewritten", || identity_text(&legacy.dir).starts_with("ed25519:").then_some(()));
    assert!(!identity_text(&legacy.dir).contains(&secret), "the old secret is gone from the disk");

    // Its chunks are served: a fresh peer downloads the file.
    let out = root.path().join("got.txt");
    let got =
        cli_in(&tracker.ws_url(), &root.path().join("fresh"), &["get", LEGACY_FILE, "-o", out.to_str().unwrap()], None);
    assert!(got.status.success(), "get: {}", String::from_utf8_lossy(&got.stderr));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), LEGACY_TEXT);

    // Only its owner may delete it, and the legacy peer still is.
    let other = cli_in(&tracker.ws_url(), &root.path().join("fresh"), &["rm", LEGACY_FILE], None);
    assert_eq!(other.status.code(), Some(7), "not_owner: {}", String::from_utf8_lossy(&other.stderr));
    legacy.cli_json(&["rm", LEGACY_FILE]);
    let r = http(tracker.port, "GET", &format!("/api/files/{LEGACY_FILE}"), &[]);
    assert_eq!(r.status, 404, "the file left the index");

    // The key stays the same once the file holds only it.
    let mut legacy = legacy;
    legacy.kill();
    legacy.restart();
    assert_eq!(legacy.peer_id, PeerId::from_secret(&secret).0, "same id after the migration");
}

/// A hostile tracker at `listener`: it relays whatever a victim says to the real tracker at
/// `real` and back (so it gets a fresh challenge of the real tracker signed by the victim);
/// it records every text the victim sent and every message the real tracker answered.
struct Hostile {
    port: u16,
    from_victim: Arc<Mutex<Vec<String>>>,
    from_real: Arc<Mutex<Vec<ServerMsg>>>,
    _rt: tokio::runtime::Runtime,
}

impl Hostile {
    fn start(real: String) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (from_victim, from_real) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
        let (fv, fr) = (from_victim.clone(), from_real.clone());
        rt.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (fv, fr, real) = (fv.clone(), fr.clone(), real.clone());
                tokio::spawn(async move {
                    let Ok(mut victim) = tokio_tungstenite::accept_async(stream).await else { return };
                    let Ok((mut upstream, _)) = tokio_tungstenite::connect_async(&real).await else { return };
                    loop {
                        tokio::select! {
                            m = victim.next() => match m {
                                Some(Ok(Message::Text(t))) => {
                                    fv.lock().unwrap().push(t.to_string());
                                    if upstream.send(Message::Text(t)).await.is_err() { return }
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                            m = upstream.next() => match m {
                                Some(Ok(Message::Text(t))) => {
                                    if let Ok(msg) = serde_json::from_str::<ServerMsg>(t.as_str()) {
                                        fr.lock().unwrap().push(msg);
                                    }
                                    if victim.send(Message::Text(t)).await.is_err() { return }
                                }
                                Some(Ok(_)) => {}
                                _ => return,
                            },
                        }
                    }
                });
            }
        });
        Hostile { port, from_victim, from_real, _rt: rt }
    }
}

#[test]
fn a_hostile_tracker_named_in_a_link_learns_nothing_it_can_use() {
    let _serial = serial();
    let real = Tracker::start_from(Some(&fixture("tracker")), 2, &[]);
    let hostile = Hostile::start(real.ws_url());
    let root = test_root();
    // A legacy data dir that has not migrated yet: its old secret is the prize.
    let dir = root.path().join("victim");
    copy_dir(&fixture("peer"), &dir);
    let secret = legacy_secret();
    // No tracker configured: the link's host is the tracker of this download.
    let link = format!("http://127.0.0.1:{}/#/file/{LEGACY_FILE}", hostile.port);
    let out = std::process::Command::new(pp_peer())
        .arg("--data-dir")
        .arg(&dir)
        .args(["--json", "get", &link, "-o"])
        .arg(root.path().join("x"))
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the relayed session is refused: {stderr}");
    assert!(stderr.contains("wrong_origin") || stderr.contains("WrongOrigin"), "{stderr}");

    let answers = hostile.from_real.lock().unwrap().clone();
    assert!(answers.iter().any(|m| matches!(m, ServerMsg::AuthChallenge { .. })), "it did relay: {answers:?}");
    assert!(
        answers.iter().any(|m| matches!(m, ServerMsg::Error { code: ErrorCode::WrongOrigin, .. })),
        "the real tracker refused the victim's proof: {answers:?}"
    );
    assert!(!answers.iter().any(|m| matches!(m, ServerMsg::Welcome { .. })), "nobody got in: {answers:?}");
    let said = hostile.from_victim.lock().unwrap().join("\n");
    assert!(said.contains("auth_proof"), "{said}");
    assert!(!said.contains(&secret), "a link's tracker never hears the old secret: {said}");
    assert!(!said.contains("migrate"), "{said}");
    assert!(identity_text(&dir).trim() == secret, "not migrated through a link's tracker");
}
