//! The self-healing promise with real processes: a real tracker, several real native peers
//! (and a real headless Chromium tab), killed with SIGKILL as a crash would, while the
//! tracker's REST API is watched until every chunk is back at R copies.

use anyhow::bail;
use e2e::{random_file, Browser, NativePeer, Tracker};
use serde_json::Value;
use std::path::Path;
use std::time::{Duration, Instant};

const R: u64 = 3;

fn health(tracker: &Tracker, id: &str) -> anyhow::Result<Value> {
    Ok(tracker.get_json(&format!("/api/files/{id}"))?["health"].clone())
}

/// Waits until every chunk of `id` has at least R live copies; returns how long it took.
fn wait_replicated(tracker: &Tracker, id: &str, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    wait_until(tracker.port, id, timeout, |h, _| {
        h["min_copies"].as_u64().unwrap_or(0) >= R && h["under_replicated"] == 0
    })
    .map_err(|e| anyhow::anyhow!("{e}: {:?}", health(tracker, id)))?;
    Ok(start.elapsed())
}

/// The live peers holding chunks of `id`, per the tracker.
fn holders(tracker: &Tracker, id: &str) -> anyhow::Result<Vec<String>> {
    let f = tracker.get_json(&format!("/api/files/{id}"))?;
    Ok(f["peers"].as_array().into_iter().flatten().filter_map(|p| p.as_str().map(String::from)).collect())
}

fn start_peers(tracker: &Tracker, dir: &Path, n: usize, tag: &str) -> anyhow::Result<Vec<NativePeer>> {
    (0..n).map(|i| NativePeer::start(&format!("{tag}-peer{i}"), tracker, &dir.join(format!("peer{i}")))).collect()
}

/// Peer 0 puts a random file of `len` bytes; waits until it is at R copies. Returns its id
/// and bytes.
fn put_replicated(
    tracker: &Tracker,
    peers: &[NativePeer],
    dir: &Path,
    len: usize,
    seed: u64,
) -> anyhow::Result<(String, Vec<u8>)> {
    let (path, bytes) = random_file(dir, &format!("file-{seed}.bin"), len, seed)?;
    let put = peers[0].cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().expect("a file id").to_string();
    wait_replicated(tracker, &id, Duration::from_secs(120))?;
    Ok((id, bytes))
}

/// Waits for a background command; one still running after `timeout` is killed and fails
/// the test (a hang must never block the suite).
fn finish(mut child: std::process::Child, timeout: Duration) -> anyhow::Result<std::process::Output> {
    let start = Instant::now();
    while child.try_wait()?.is_none() {
        if start.elapsed() > timeout {
            let _ = child.kill();
            bail!("command still running after {timeout:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(child.wait_with_output()?)
}

/// Starts `pp-peer get ID -o OUT` through `peer` in the background.
fn spawn_get(peer: &NativePeer, id: &str, out: &Path) -> anyhow::Result<std::process::Child> {
    Ok(std::process::Command::new(e2e::bin("pp-peer"))
        .arg("--data-dir")
        .arg(&peer.data_dir)
        .args(["--json", "get", id, "-o"])
        .arg(out)
        .stdout(std::process::Stdio::piped())
        .spawn()?)
}

#[test]
fn a_killed_peer_s_chunks_are_re_replicated_and_downloads_keep_working() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("heal-kill-tracker", None)?;
    let mut peers = start_peers(&tracker, tmp.path(), 5, "heal-kill")?;
    let (id, bytes) = put_replicated(&tracker, &peers, tmp.path(), 3 * 1024 * 1024 + 99, 7)?;

    // Kill -9 a peer (not the uploader) that holds chunks.
    let held = holders(&tracker, &id)?;
    let victim = (1..peers.len()).find(|i| held.contains(&peers[*i].peer_id)).expect("a holder besides the uploader");
    let victim_id = peers[victim].peer_id.clone();
    peers[victim].proc.kill();
    // Back at R without the dead peer (right after the kill the tracker may not yet have seen
    // its socket close, and would still count its copies).
    let start = Instant::now();
    wait_until(tracker.port, &id, Duration::from_secs(60), |h, f| {
        h["min_copies"].as_u64().unwrap_or(0) >= R
            && h["under_replicated"] == 0
            && !f["peers"].as_array().into_iter().flatten().any(|p| p.as_str() == Some(victim_id.as_str()))
    })
    .map_err(|e| anyhow::anyhow!("{e}: {:?}", health(&tracker, &id)))?;
    let took = start.elapsed();
    assert!(!holders(&tracker, &id)?.contains(&victim_id), "the dead peer is no longer counted");
    println!("back at {R} copies {took:?} after the kill");

    // A newcomer downloads the whole file from the survivors.
    let newcomer = NativePeer::start("heal-kill-newcomer", &tracker, &tmp.path().join("newcomer"))?;
    let out = tmp.path().join("got.bin");
    newcomer.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "identical bytes after the kill");
    Ok(())
}

#[test]
fn a_downloader_that_loses_its_sources_mid_file_still_finishes() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("heal-sources-tracker", None)?;
    let mut peers = start_peers(&tracker, tmp.path(), 5, "heal-sources")?;
    let (id, bytes) = put_replicated(&tracker, &peers, tmp.path(), 24 * 1024 * 1024 + 5, 8)?;

    let downloader = NativePeer::start("heal-sources-downloader", &tracker, &tmp.path().join("dl"))?;
    let out = tmp.path().join("got.bin");
    let get = spawn_get(&downloader, &id, &out)?;
    // Once the download is under way, kill two of the holders (one copy of each chunk survives).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = downloader.cli_json(&["status"])?;
        if status["chunks"].as_u64().unwrap_or(0) >= 4 {
            break;
        }
        assert!(Instant::now() < deadline, "the download never started: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    peers[1].proc.kill();
    peers[2].proc.kill();
    let result = finish(get, Duration::from_secs(150))?;
    assert!(result.status.success(), "get failed: {}", String::from_utf8_lossy(&result.stdout));
    assert!(std::fs::read(&out)? == bytes, "identical bytes although sources died mid-file");
    wait_replicated(&tracker, &id, Duration::from_secs(120))?;
    Ok(())
}

#[test]
fn a_tracker_killed_and_restarted_mid_transfer_loses_nothing() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("tracker");
    let port = e2e::free_port();
    let mut tracker = Tracker::start_with("heal-restart-tracker", None, &data, port, &[])?;
    let peers = start_peers(&tracker, tmp.path(), 4, "heal-restart")?;
    let (id, bytes) = put_replicated(&tracker, &peers, tmp.path(), 16 * 1024 * 1024 + 3, 9)?;

    let downloader = NativePeer::start("heal-restart-downloader", &tracker, &tmp.path().join("dl"))?;
    let out = tmp.path().join("got.bin");
    let get = spawn_get(&downloader, &id, &out)?;
    std::thread::sleep(Duration::from_millis(300));
    tracker.proc.kill();
    std::thread::sleep(Duration::from_millis(500));
    tracker = Tracker::start_with("heal-restart-tracker2", None, &data, port, &[])?;
    let result = finish(get, Duration::from_secs(150))?;
    assert!(result.status.success(), "get failed: {}", String::from_utf8_lossy(&result.stdout));
    assert!(std::fs::read(&out)? == bytes, "identical bytes across a tracker restart");
    // The index survived and the peers re-announced: the file is whole and replicated again.
    wait_replicated(&tracker, &id, Duration::from_secs(60))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_tab_s_chunks_are_re_replicated() -> anyhow::Result<()> {
    let web = e2e::web_dir();
    assert!(web.join("index.html").is_file(), "build the web app first: {}", web.display());
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("heal-tab-tracker", Some(&web))?;
    let _peers = start_peers(&tracker, tmp.path(), 4, "heal-tab")?;
    let browser = Browser::start("heal-tab").await?;
    browser.client.goto(&tracker.http_url()).await?;
    let tab_id = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    let (path, _) = random_file(tmp.path(), "from-tab.bin", 2 * 1024 * 1024 + 1, 10)?;
    browser.client.find(fantoccini::Locator::Css("#upload-input")).await?.send_keys(&path.to_string_lossy()).await?;
    let id = browser.wait_attr("#upload-result", "data-file-id", Duration::from_secs(60)).await?;
    let waited = tokio::task::spawn_blocking({
        let (port, id) = (tracker.port, id.clone());
        move || wait_until(port, &id, Duration::from_secs(60), |h, _| h["min_copies"].as_u64().unwrap_or(0) >= R)
    });
    waited.await??;
    assert!(holders(&tracker, &id)?.contains(&tab_id), "the tab holds its upload");
    browser.screenshot("heal-tab-uploaded").await?;
    // Kill the tab: SIGKILL its Chromium processes.
    browser.kill();
    let port = tracker.port;
    let id2 = id.clone();
    tokio::task::spawn_blocking(move || {
        wait_until(port, &id2, Duration::from_secs(60), |h, f| {
            h["min_copies"].as_u64().unwrap_or(0) >= R
                && !f["peers"].as_array().into_iter().flatten().any(|p| p.as_str() == Some(tab_id.as_str()))
        })
    })
    .await??;
    Ok(())
}

/// Polls `/api/files/{id}` until `ok(health, file)` holds.
fn wait_until(port: u16, id: &str, timeout: Duration, ok: impl Fn(&Value, &Value) -> bool) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        if let Ok(f) = e2e::http_get_json(port, &format!("/api/files/{id}")) {
            if ok(&f["health"], &f) {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            bail!("condition on file {id} not met in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_chunk_with_no_live_holder_is_reported_clearly() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("heal-lost-tracker", None)?;
    // Alone in the swarm: nobody else can take copies of what it puts.
    let mut only = NativePeer::start("heal-lost-only", &tracker, &tmp.path().join("only"))?;
    let (path, _) = random_file(tmp.path(), "lonely.bin", 1024 * 1024, 12)?;
    let put = only.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().expect("a file id").to_string();
    only.proc.kill();
    // The API says so.
    wait_until(tracker.port, &id, Duration::from_secs(30), |h, _| h["lost"] == 4 && h["min_copies"] == 0)?;
    // So does the CLI, promptly, with a clear message and a failing exit code.
    let other = NativePeer::start("heal-lost-other", &tracker, &tmp.path().join("other"))?;
    let started = Instant::now();
    let (code, _, err) = other.cli(&["get", &id, "-o", &tmp.path().join("out.bin").to_string_lossy()])?;
    assert_ne!(code, 0);
    assert!(err.contains("4 of 4 chunks have no live holder"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "reported within seconds, not after a long stall");
    assert!(!tmp.path().join("out.bin").exists(), "no partial output");
    Ok(())
}
