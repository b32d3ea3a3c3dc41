//! How the processes start and stop under a service manager: SIGTERM stops the tracker and
//! `pp-peer run` cleanly (exit code 0, the peer's departure seen by the tracker at once, no
//! half-written output, no stale control socket), and both answer `/healthz` and `/readyz`.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// `pp-peer get ID -o TARGET` through `peer`'s control socket, left running.
fn spawn_get(peer: &Peer, id: &str, target: &std::path::Path) -> std::process::Child {
    std::process::Command::new(pp_peer())
        .arg("--data-dir")
        .arg(&peer.dir)
        .args(["--json", "get", id, "-o"])
        .arg(target)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn sigterm(pid: u32) {
    let st = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().expect("kill");
    assert!(st.success());
}

/// Waits for the process to exit; returns its exit code.
fn exit_code(proc: &mut Proc) -> Option<i32> {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(st) = proc.child.try_wait().unwrap() {
            return st.code();
        }
        assert!(Instant::now() < deadline, "the process did not stop; log:\n{}", tail(&proc.log_text(), 30));
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn live_peers(tracker: &Tracker) -> usize {
    let r = http(tracker.port, "GET", "/api/peers", &[]);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    v["peers"].as_array().map_or(0, Vec::len)
}

#[test]
fn sigterm_stops_peer_and_tracker_cleanly() {
    let _s = serial();
    // A slow relay, so that a download is still running when the peer is told to stop.
    let mut tracker = Tracker::start_with(2, &["--relay-bytes-per-sec", "256KiB", "--relay-burst-bytes", "256KiB"]);
    let root = test_root();
    let a = Peer::start("a", &tracker, root.path(), &["--relay-only"], &[]);
    let mut b = Peer::start("b", &tracker, root.path(), &["--relay-only", "--http", "127.0.0.1:0"], &[]);
    let gw = b.http.expect("gateway port");
    assert_eq!(http(gw, "GET", "/healthz", &[]).status, 200);
    assert_eq!(http(gw, "GET", "/readyz", &[]).status, 200, "joined the tracker");
    assert_eq!(http(tracker.port, "GET", "/healthz", &[]).status, 200);
    assert_eq!(http(tracker.port, "GET", "/readyz", &[]).status, 200);

    let src = root.path().join("big.bin");
    std::fs::write(&src, data(6 << 20, 3)).unwrap();
    let v = a.cli_json(&["put", src.to_str().unwrap()]);
    let id = v["files"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(live_peers(&tracker), 2);

    // A download through b's control socket, interrupted by SIGTERM once chunks arrive.
    let out = root.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("big.bin");
    let mut get = spawn_get(&b, &id, &target);
    wait_for("b to store some chunks", || (count_files(&b.dir.join("chunks")) > 0).then_some(()));
    let mut proc = b.proc.take().unwrap();
    sigterm(proc.pid());
    assert_eq!(exit_code(&mut proc), Some(0), "pp-peer run exits 0 on SIGTERM; log:\n{}", tail(&proc.log_text(), 20));
    let _ = get.wait();
    assert!(!target.exists(), "no output under the final name");
    let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(leftovers.is_empty(), "no half-written files: {leftovers:?}");
    assert!(!b.dir.join("control.sock").exists(), "the control socket is gone");
    // The tracker saw b go at once (the idle timeout is 45 s).
    wait_for("the tracker to see b leave", || (live_peers(&tracker) == 1).then_some(()));

    sigterm(tracker.proc.pid());
    assert_eq!(exit_code(&mut tracker.proc), Some(0), "tracker exits 0 on SIGTERM");
    assert!(tracker.proc.log_text().contains("SIGTERM"), "{}", tracker.proc.log_text());
}

/// A peer killed in the middle of a get (a crash: no clean stop) carries on with it when
/// started again with `run --resume`: the file is written whole, from the chunks kept and the
/// rest fetched, and the get leaves the list of unfinished ones.
#[test]
fn a_crashed_peer_carries_on_with_its_get_when_run_with_resume() {
    let _s = serial();
    // A slow relay, so that the download is still running when the peer dies.
    let tracker = Tracker::start_with(2, &["--relay-bytes-per-sec", "256KiB", "--relay-burst-bytes", "256KiB"]);
    let root = test_root();
    let a = Peer::start("a", &tracker, root.path(), &["--relay-only"], &[]);
    let mut b = Peer::start("b", &tracker, root.path(), &["--relay-only", "--resume"], &[]);
    let bytes = data(3 << 20, 7);
    let src = root.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = a.cli_json(&["put", src.to_str().unwrap()])["files"][0]["id"].as_str().unwrap().to_string();

    let target = root.path().join("got.bin");
    let mut get = spawn_get(&b, &id, &target);
    wait_for("b to store some chunks", || (count_files(&b.dir.join("chunks")) > 0).then_some(()));
    let listed = std::fs::read_to_string(b.dir.join("pending-gets.json")).expect("the get is listed as unfinished");
    assert!(listed.contains(&id), "{listed}");
    b.kill();
    let _ = get.wait();
    assert!(!target.exists(), "not written before the crash");

    b.restart();
    wait_for("the resumed get to write the file", || target.exists().then_some(()));
    assert!(std::fs::read(&target).unwrap() == bytes, "the file, whole");
    wait_for("the get to leave the list", || (!b.dir.join("pending-gets.json").exists()).then_some(()));
    assert!(b.log_text().contains("unfinished get done"), "{}", tail(&b.log_text(), 20));
}
