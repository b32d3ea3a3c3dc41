//! Attacks on an open swarm (see `SECURITY.md`), against the real tracker binary and real
//! `pp-peer run` processes: the attacker is a raw websocket client that says whatever it
//! likes (`e2e/src/attacker.rs`, shared with the cluster's attack test
//! `e2e/tests/cluster_liars.rs`). Each test asserts the attack does no harm to honest peers
//! and their files.

mod common;

use common::*;
use e2e::attacker::{Answer, Attacker};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use swarm_core::api::{FileDetail, Health};
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, ClientMsg, ManifestBuilder, PeerId};

const CHUNK: usize = 256 * 1024;
/// Chunks of the file the honest peers hold.
const CHUNKS: usize = 30;

/// An attacker ([`Attacker`]) connected to `url` as the identity of `secret`.
async fn attacker(url: &str, secret: &str, answer: Answer) -> Attacker {
    Attacker::connect(url, secret, answer).await.expect("the attacker connects")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
}

fn put(peer: &Peer, path: &std::path::Path) -> String {
    let v = peer.cli_json(&["put", path.to_str().unwrap()]);
    v["files"][0]["id"].as_str().expect("file id").to_string()
}

fn detail(tracker: &Tracker, id: &str) -> FileDetail {
    let r = http(tracker.port, "GET", &format!("/api/files/{id}"), &[]);
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).expect("file detail")
}

fn health(tracker: &Tracker, id: &str) -> Health {
    detail(tracker, id).health
}

fn api_json(tracker: &Tracker, path: &str) -> serde_json::Value {
    let r = http(tracker.port, "GET", path, &[]);
    assert_eq!(r.status, 200, "{path}: {}", String::from_utf8_lossy(&r.body));
    serde_json::from_slice(&r.body).expect("JSON")
}

/// Polls the file's health until `ok` holds ([`TIMEOUT`] times `factor` at most).
fn wait_health(tracker: &Tracker, id: &str, what: &str, factor: u32, ok: impl Fn(&Health) -> bool) -> Health {
    let deadline = Instant::now() + TIMEOUT * factor;
    loop {
        let h = health(tracker, id);
        if ok(&h) {
            return h;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}: health is {h:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asserts `ok` on every poll of the file's health for `secs` seconds.
fn hold_health(tracker: &Tracker, id: &str, what: &str, secs: u64, ok: impl Fn(&Health) -> bool) {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        let h = health(tracker, id);
        assert!(ok(&h), "{what}: health is {h:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Chunks a peer holds, by its own `status` and by its store directory (they must agree).
fn held(p: &Peer) -> usize {
    let n = p.status()["chunks"].as_u64().expect("status chunks") as usize;
    assert_eq!(n, p.chunk_files(), "{}: status and store disagree", p.name);
    n
}

/// Tracker (R = 3) and three honest peers holding a file of [`CHUNKS`] chunks, verified at R.
struct Swarm {
    root: tempfile::TempDir,
    tracker: Tracker,
    peers: Vec<Peer>,
    id: String,
    bytes: Vec<u8>,
    chunks: Vec<ChunkId>,
}

fn honest_swarm(name: &str, seed: u64) -> Swarm {
    let root = test_root();
    let tracker = Tracker::start(3);
    let peers: Vec<Peer> = ["a", "b", "c"].iter().map(|n| Peer::start(n, &tracker, root.path(), &[], &[])).collect();
    let bytes = data((CHUNKS - 1) * CHUNK + 5_000, seed);
    let src = root.path().join(name);
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&peers[0], &src);
    wait_replicated(&peers[0], name, 3);
    let d = detail(&tracker, &id);
    assert_eq!(d.manifest.chunks.len(), CHUNKS);
    let h = wait_health(&tracker, &id, "the file at R, verified", 1, |h| h.min_copies == 3);
    assert_eq!((h.max_copies, h.lost), (3, 0), "{h:?}");
    for p in &peers {
        assert_eq!(held(p), CHUNKS, "{} holds the whole file", p.name);
    }
    Swarm { root, tracker, peers, id, bytes, chunks: d.manifest.chunks }
}

/// Slander: two fresh identities report every holder of every chunk as a bad source. Each
/// report only starts an audit, which honest holders pass: nothing is lost, nothing dropped.
#[test]
fn slander_does_not_remove_honest_copies() {
    let _g = serial();
    let started = Instant::now();
    let sw = honest_swarm("slandered.bin", 11);
    let rt = runtime();
    let liars: Vec<Attacker> = (0..2)
        .map(|n| rt.block_on(attacker(&sw.tracker.ws_url(), &format!("{:064x}", 0xbad0 + n), Answer::Silent)))
        .collect();
    let reported_before = api_json(&sw.tracker, "/api/stats")["bad_sources_reported"].as_u64().unwrap();
    for liar in &liars {
        for p in &sw.peers {
            for c in &sw.chunks {
                liar.send(ClientMsg::BadSource { peer: PeerId(p.peer_id.clone()), chunk: *c }).unwrap();
            }
        }
    }
    let reports = (liars.len() * sw.peers.len() * CHUNKS) as u64;
    // Every report reached the tracker (the attack was delivered)...
    wait_for("the reports to arrive", || {
        let n = api_json(&sw.tracker, "/api/stats")["bad_sources_reported"].as_u64().unwrap();
        (n >= reported_before + reports).then_some(())
    });
    // ...and for a while after (audits are answered in well under a second), every chunk
    // keeps its three verified copies: no report removed one.
    hold_health(&sw.tracker, &sw.id, "after slander", 8, |h| h.min_copies == 3 && h.lost == 0);
    for p in &sw.peers {
        assert_eq!(held(p), CHUNKS, "{} lost chunks to slander", p.name);
    }
    // The operator sees it: reports refuted by audits, in /api/stats and /metrics.
    let trust = &api_json(&sw.tracker, "/api/stats")["trust"];
    assert!(trust["reports_refuted"].as_u64().unwrap() > 0, "{trust}");
    let metrics = String::from_utf8(http(sw.tracker.port, "GET", "/metrics", &[]).body).unwrap();
    assert!(metrics.contains("pp_trust_reports_total{verdict=\"refuted\"}"), "{metrics}");
    // Without the tracker's orders or trims the liars learned nothing useful either.
    for l in &liars {
        assert_eq!(l.seen.orders.load(Ordering::Relaxed), 0, "a slanderer got replication orders");
    }
    // The file is still fully available to a newcomer, byte for byte.
    let d = Peer::start("d", &sw.tracker, sw.root.path(), &[], &[]);
    let out = sw.root.path().join("slandered.out");
    let v = d.cli_json(&["get", &sw.id, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), sw.bytes, "downloaded bytes differ");
    let from = v["chunks_from"].as_object().expect("chunks_from");
    assert!(from.keys().all(|k| sw.peers.iter().any(|p| &p.peer_id == k)), "sources: {from:?}");
    let h = health(&sw.tracker, &sw.id);
    assert!(h.min_copies >= 3 && h.lost == 0, "{h:?}");
    eprintln!("slander test took {:?}", started.elapsed());
}

/// Fake holdings: attackers claim every chunk and huge storage, then never prove anything
/// (silent, wrong proofs, "not held"). Health never counts them; an honest holder that comes
/// back is not trimmed for their sake; when an honest holder dies, repair does not count a
/// fake `order_done` and brings the file back to R on honest peers.
#[test]
fn fake_holders_are_not_counted() {
    let _g = serial();
    let started = Instant::now();
    let mut sw = honest_swarm("claimed.bin", 12);
    let rt = runtime();
    let url = sw.tracker.ws_url();
    let answers = [Answer::Silent, Answer::Wrong, Answer::NotHeld];
    let fakes: Vec<Attacker> = answers
        .iter()
        .enumerate()
        .map(|(n, a)| rt.block_on(attacker(&url, &format!("{:064x}", 0xfa0 + n), *a)))
        .collect();
    for f in &fakes {
        f.send(ClientMsg::Storage { used: 0, capacity: 1 << 50 }).unwrap();
        f.send(ClientMsg::Have { chunks: sw.chunks.clone(), full: true }).unwrap();
    }
    // The file is at R with verified copies: unverified claims are surplus, and the fakes
    // are told to drop them (nothing is asked of honest peers).
    wait_for("trims to the fakes", || fakes.iter().all(|f| f.seen.trims.load(Ordering::Relaxed) > 0).then_some(()));
    hold_health(&sw.tracker, &sw.id, "fake claims at R", 3, |h| h.min_copies == 3 && h.max_copies == 3);

    // An honest holder crashes: every chunk is down to two verified copies. The fakes claim
    // everything again: now their claims stand (until they fail their challenges)...
    sw.peers[1].kill();
    wait_health(&sw.tracker, &sw.id, "b gone", 1, |h| h.max_copies == 2);
    for f in &fakes {
        f.send(ClientMsg::Have { chunks: sw.chunks.clone(), full: true }).unwrap();
    }
    wait_health(&sw.tracker, &sw.id, "the fake claims", 1, |h| h.min_claimed >= 3);
    wait_for("challenges to the fakes", || {
        fakes.iter().all(|f| f.seen.challenges.load(Ordering::Relaxed) > 0).then_some(())
    });
    // ...but never count as copies.
    hold_health(&sw.tracker, &sw.id, "fake claims below R", 3, |h| h.min_copies == 2 && h.max_copies == 2);
    // The holder comes back on the same data dir and re-sends its full inventory. Its copies
    // are not verified yet, and only two verified ones stand beside them: the fakes' claims
    // must not make them look surplus.
    sw.peers[1].restart();
    wait_health(&sw.tracker, &sw.id, "b verified again", 1, |h| h.min_copies == 3);
    hold_health(&sw.tracker, &sw.id, "b back", 5, |h| h.min_copies == 3 && h.max_copies == 3);
    for p in &sw.peers {
        assert_eq!(held(p), CHUNKS, "{} was trimmed", p.name);
    }

    // A fake replicator: no claims, huge storage, takes every order and says done at once.
    let replicator = rt.block_on(attacker(&url, &format!("{:064x}", 0xfa9), Answer::Wrong));
    replicator.send(ClientMsg::Storage { used: 0, capacity: 1 << 50 }).unwrap();
    // The holder dies for good: every chunk is down to two verified copies again, and the
    // only places with room are attackers. Their `order_done` never counts.
    sw.peers[1].kill();
    wait_health(&sw.tracker, &sw.id, "b gone for good", 1, |h| h.max_copies == 2);
    let all = || fakes.iter().chain([&replicator]);
    wait_for("repair orders to an attacker", || all().any(|f| f.seen.orders.load(Ordering::Relaxed) > 0).then_some(()));
    hold_health(&sw.tracker, &sw.id, "orders done by fakes", 8, |h| {
        h.min_copies == 2 && h.max_copies == 2 && h.lost == 0
    });
    // An honest peer with room joins: repair brings the file back to three verified copies.
    let d = Peer::start("d", &sw.tracker, sw.root.path(), &[], &[]);
    let h = wait_health(&sw.tracker, &sw.id, "repaired on d", 2, |h| h.min_copies == 3);
    assert_eq!((h.max_copies, h.lost), (3, 0), "{h:?}");
    assert_eq!(held(&d), CHUNKS, "d holds the whole file");
    for p in [&sw.peers[0], &sw.peers[2]] {
        assert_eq!(held(p), CHUNKS, "{} was trimmed", p.name);
    }
    let orders: Vec<u64> = all().map(|f| f.seen.orders.load(Ordering::Relaxed)).collect();
    eprintln!("fake holdings test took {:?}; orders taken by attackers: {orders:?}", started.elapsed());
}

/// Who published what outlives a tracker crash: after a restart, an attacker that claims every
/// chunk before the honest holders are back does not become the chunks' origin. It is
/// challenged with the kept nonces, fails, and never counts; the honest holders count again.
#[test]
fn a_restarted_tracker_does_not_trust_the_first_claimant() {
    let _g = serial();
    let mut sw = honest_swarm("kept.bin", 21);
    let rt = runtime();
    // The verification state is written every second: let it be.
    std::thread::sleep(Duration::from_secs(2));
    // The honest peers are paused (as if slow to reconnect) while the tracker crashes and
    // comes back, and an attacker claims everything first.
    let signal = |sig: &str| {
        for p in &sw.peers {
            let pid = p.proc.as_ref().expect("running").pid().to_string();
            assert!(std::process::Command::new("kill").args([sig, &pid]).status().unwrap().success());
        }
    };
    signal("-STOP");
    sw.tracker.restart();
    let fake = rt.block_on(attacker(&sw.tracker.ws_url(), &format!("{:064x}", 0xfb0), Answer::Wrong));
    fake.send(ClientMsg::Storage { used: 0, capacity: 1 << 50 }).unwrap();
    fake.send(ClientMsg::Have { chunks: sw.chunks.clone(), full: true }).unwrap();
    wait_for("challenges to the first claimant", || (fake.seen.challenges.load(Ordering::Relaxed) > 0).then_some(()));
    let h = health(&sw.tracker, &sw.id);
    assert_eq!(h.max_copies, 0, "the first claimant after a restart counted: {h:?}");
    signal("-CONT");
    let h = wait_health(&sw.tracker, &sw.id, "the honest holders verified again", 2, |h| h.min_copies == 3);
    assert_eq!((h.max_copies, h.lost), (3, 0), "{h:?}");
    hold_health(&sw.tracker, &sw.id, "the attacker never counts", 3, |h| h.max_copies == 3);
    for p in &sw.peers {
        assert_eq!(held(p), CHUNKS, "{} was trimmed", p.name);
    }
}

/// Phantom files: identities are free, but files from one address are bounded (loopback is
/// exempt by default, so the tracker runs with `--limit-exempt none`); a published file
/// nobody holds (only unprovable claims) stays out of search and listings.
#[test]
fn phantom_files_are_bounded_per_address_and_unlisted() {
    let _g = serial();
    let rt = runtime();
    for (flag, max) in [("--max-files-per-ip", 5u32), ("--max-publishes-per-hour-per-ip", 4)] {
        let root = test_root();
        let tracker = Tracker::start_with(3, &["--limit-exempt", "none", flag, &max.to_string()]);
        // One honest file from this address first: it is listed and counts toward the limit.
        let a = Peer::start("a", &tracker, root.path(), &[], &[]);
        let src = root.path().join("honest.txt");
        std::fs::write(&src, data(10_000, 13)).unwrap();
        let honest = put(&a, &src);
        let url = tracker.ws_url();
        let sybils: Vec<Attacker> =
            (0..20).map(|n| rt.block_on(attacker(&url, &format!("{:064x}", 0x5b0 + n), Answer::Wrong))).collect();
        // Every identity publishes two files it does not hold.
        let mut manifests = Vec::new();
        for (n, s) in sybils.iter().enumerate() {
            for k in 0..2u8 {
                let mut mb = ManifestBuilder::new(4);
                mb.push(&[n as u8, k, 0xaa, 0x55]);
                let manifest = mb.finish();
                manifests.push(manifest.file_id());
                let meta = FileMeta::public(format!("phantom-{n}-{k}"), "text/plain");
                s.send(ClientMsg::Publish { req: 2 * n as u32 + k as u32, manifest, meta }).unwrap();
            }
        }
        // Refused ones get an error; count the files the tracker took.
        wait_for("every publish answered", || {
            let errors: u64 = sybils.iter().map(|s| s.seen.errors.load(Ordering::Relaxed)).sum();
            (errors > 40 - max as u64).then_some(())
        });
        let known: Vec<&swarm_core::FileId> = manifests
            .iter()
            .filter(|id| http(tracker.port, "GET", &format!("/api/files/{id}"), &[]).status == 200)
            .collect();
        assert_eq!(known.len() as u32, max - 1, "{flag} {max}: the honest file counts, then {} phantoms", max - 1);
        // Other identities (not its publisher) claim a phantom's chunks: unprovable, so still
        // nobody holds it. (A publisher that claims its own file is its origin and trusted:
        // that is trust on first publish, bounded by the per-address limits above.)
        let phantom = detail(&tracker, &known[0].to_string());
        let publisher: usize = phantom.name.split('-').nth(1).and_then(|n| n.parse().ok()).expect("phantom-N-K");
        let claimers: Vec<&Attacker> =
            sybils.iter().enumerate().filter(|(n, _)| *n != publisher).map(|(_, s)| s).take(10).collect();
        for s in &claimers {
            s.send(ClientMsg::Have { chunks: phantom.manifest.chunks.clone(), full: true }).unwrap();
        }
        wait_health(&tracker, &known[0].to_string(), "claims of the phantom", 1, |h| h.max_claimed >= 10);
        let h = health(&tracker, &known[0].to_string());
        assert_eq!((h.min_copies, h.lost), (0, 1), "{h:?}");
        // Search and listings show the honest file only.
        let found = api_json(&tracker, "/api/search?q=phantom");
        assert_eq!(found["files"].as_array().unwrap().len(), 0, "{found}");
        let listed = api_json(&tracker, "/api/files");
        let ids: Vec<&str> = listed["files"].as_array().unwrap().iter().filter_map(|f| f["id"].as_str()).collect();
        assert_eq!(ids, vec![honest.as_str()], "{listed}");
        let v = a.cli_json(&["search", "phantom"]);
        assert_eq!(v["files"].as_array().map(Vec::len), Some(0), "{v}");
        // The honest peer on the same address is now refused too (the limit is per address).
        let src2 = root.path().join("late.txt");
        std::fs::write(&src2, data(10_000, 14)).unwrap();
        let late = a.cli(&["put", src2.to_str().unwrap()]);
        assert!(!late.status.success(), "{flag}: a publish past the limit was accepted");
    }
}

/// A process's resident memory now and at its peak (`VmRSS`, `VmHWM`), in bytes.
fn rss(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {status}"));
        line.split_whitespace().nth(1).and_then(|n| n.parse::<u64>().ok()).expect("kB") * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A request flood: four identities ask one seeder, through the tracker relay, for chunks it
/// holds, about 4,000 requests a second for 15 s, reading every answer. The seeder only reads
/// what its writers can send (the relay drains at the tracker's rate) and answers the rest
/// `busy`: its memory stays bounded (serving holds at most 32 MiB queued), and an honest
/// download from it during the flood completes, byte for byte. (Before pacing, the seeder
/// grew by gigabytes: every request was read and queued for the relay.)
#[test]
fn a_request_flood_through_the_relay_leaves_the_seeder_bounded() {
    use swarm_core::chunk_proto::PeerMsg;
    use swarm_core::relay::RelayFrame;
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let seeder = Peer::start("seeder", &tracker, root.path(), &[], &[]);
    let bytes = data((CHUNKS - 1) * CHUNK + 5_000, 31);
    let src = root.path().join("flooded.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&seeder, &src);
    let chunks = detail(&tracker, &id).manifest.chunks;
    let pid = seeder.proc.as_ref().expect("running").pid();
    let (base, _) = rss(pid);
    let rt = runtime();
    let url = tracker.ws_url();
    let flooders: Vec<Attacker> =
        (0..4).map(|n| rt.block_on(attacker(&url, &format!("{:064x}", 0xf100d + n), Answer::Silent))).collect();
    let to = PeerId(seeder.peer_id.clone());
    let honest = std::sync::Mutex::new(None);
    let (mut peak, mut sent) = (0u64, 0u64);
    std::thread::scope(|scope| {
        let start = Instant::now();
        let mut getter: Option<std::thread::ScopedJoinHandle<'_, ()>> = None;
        let mut tick = 0u64;
        while start.elapsed() < Duration::from_secs(15) || getter.as_ref().is_some_and(|g| !g.is_finished()) {
            // 100 requests per identity every 100 ms, spread over 16 relay routes each.
            for (n, f) in flooders.iter().enumerate() {
                for k in 0..100u64 {
                    let req = (tick * 100 + k) as u32;
                    let chunk = chunks[(req as usize + n) % chunks.len()];
                    let payload = PeerMsg::Request { req, chunk }.encode();
                    f.send_relay(&RelayFrame { peer: to.clone(), conn: k % 16, payload }).unwrap();
                    sent += 1;
                }
            }
            tick += 1;
            if getter.is_none() && start.elapsed() > Duration::from_secs(4) {
                let (root, id, tracker, honest) = (root.path(), &id, &tracker, &honest);
                getter = Some(scope.spawn(move || {
                    let d = Peer::start("honest", tracker, root, &[], &[]);
                    let out = root.join("flooded.out");
                    let started = Instant::now();
                    // The flooders also claim the file's chunks (they accept replication
                    // orders and never answer): the download must get past them to the seeder.
                    let v = d.cli(&["get", id, "-o", out.to_str().unwrap()]);
                    let log: Vec<String> =
                        d.log_text().lines().filter(|l| l.contains("native_peer")).map(str::to_owned).collect();
                    *honest.lock().unwrap() = Some((v, std::fs::read(&out).ok(), started.elapsed(), log.join("\n")));
                }));
            }
            peak = peak.max(rss(pid).0);
            std::thread::sleep(Duration::from_millis(100));
            assert!(start.elapsed() < Duration::from_secs(240), "the honest download never ended");
        }
    });
    let (_, hwm) = rss(pid);
    let answered: u64 = flooders.iter().map(|f| f.seen.relay_bytes.load(Ordering::Relaxed)).sum();
    eprintln!(
        "flood: {sent} requests, {} MiB of answers read; seeder RSS {} MiB before, peak {} MiB (VmHWM {} MiB)",
        answered >> 20,
        base >> 20,
        peak >> 20,
        hwm >> 20
    );
    assert!(answered > 4 << 20, "the flood was not answered at all ({answered} bytes): no attack happened");
    let (out, got, took, honest_log) = honest.into_inner().unwrap().expect("the honest download ran");
    assert!(
        out.status.success(),
        "the honest download failed during the flood: {}\nseeder log tail:\n{}\nthe downloader's log tail:\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&seeder.log_text(), 30),
        tail(&honest_log, 40)
    );
    assert_eq!(got.as_deref(), Some(&bytes[..]), "downloaded bytes differ");
    eprintln!("honest download of {} MiB during the flood took {took:?}", bytes.len() >> 20);
    assert!(hwm < base + (160 << 20), "the seeder grew from {} MiB to {} MiB", base >> 20, hwm >> 20);
}
