//! The web app as a user drives it, in real headless Chromium against a real tracker and real
//! native peers: upload by the file input, search as you type, download with the chunk map,
//! share links, a reload that re-announces the tab's IndexedDB inventory, a download that
//! resumes when the page opens again (and a paused one that waits for the user), two tabs
//! swapping a file, replication orders taken by the tab, and the tracker relay when WebRTC is refused.
//! Screenshots of each state land in `target/e2e-artifacts/app-*.png`. The page's main views
//! (start, an upload listed, search results and none, a download running and done) pass the
//! accessibility check of `e2e/src/axe.rs` (axe-core: nothing serious or critical; visible
//! labels on every control).
//!
//! `bench_browser_peer` (ignored) prints the figures of the browser peer's benchmark.

use e2e::axe::check_accessibility;
use e2e::{num, random_file, wait_json, Browser, NativePeer, Tracker};
use fantoccini::Locator;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

async fn open_app(tracker: &Tracker, name: &str, path: &str) -> anyhow::Result<(Browser, String)> {
    let browser = Browser::start(name).await?;
    browser.client.goto(&format!("{}{path}", tracker.http_url())).await?;
    let id = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    Ok((browser, id))
}

async fn upload(browser: &Browser, path: &std::path::Path) -> anyhow::Result<String> {
    browser.client.find(Locator::Css("#upload-input")).await?.send_keys(&path.to_string_lossy()).await?;
    browser.wait_attr("#upload-result", "data-file-id", Duration::from_secs(60)).await
}

async fn download_by_id(browser: &Browser, id: &str) -> anyhow::Result<Vec<u8>> {
    let c = &browser.client;
    let input = c.find(Locator::Css("#download-id")).await?;
    input.clear().await?;
    input.send_keys(id).await?;
    c.find(Locator::Css("#download-button")).await?.click().await?;
    saved_bytes(browser).await
}

async fn saved_bytes(browser: &Browser) -> anyhow::Result<Vec<u8>> {
    browser.wait_text("#download-status", Duration::from_secs(60), |t| t.contains("done")).await?;
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    anyhow::ensure!(href.starts_with("blob:"), "the save link is a blob URL: {href}");
    browser.fetch_bytes(&href).await
}

/// Chunks of file `v` (an `/api/files` answer) that `peer` holds.
fn chunks_held_by(v: &serde_json::Value, peer: &str) -> usize {
    let Some(ix) = v["peers"].as_array().and_then(|p| p.iter().position(|x| x == peer)) else { return 0 };
    v["holders"]
        .as_array()
        .map(|h| h.iter().filter(|c| c.as_array().is_some_and(|c| c.iter().any(|i| i == ix))).count())
        .unwrap_or(0)
}

fn chunk_count(v: &serde_json::Value) -> usize {
    v["manifest"]["chunks"].as_array().map(Vec::len).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_is_found_by_search_placed_and_fetched_by_a_native_peer() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-up-tracker", Some(&e2e::web_dir()))?;
    let native = NativePeer::start("app-up-native", &tracker, &tmp.path().join("n1"))?;
    let (browser, me) = open_app(&tracker, "app-up", "/").await?;
    browser.screenshot("app-1-empty").await?;
    check_accessibility(&browser, "start").await?;

    let (path, bytes) = random_file(tmp.path(), "holiday photos <b>2025<i>.bin", 3 * MIB + 4321, 11)?;
    let id = upload(&browser, &path).await?;
    // The placement view shows where the swarm put the chunks.
    browser.wait_for(".placement[data-min-copies]", Duration::from_secs(10)).await?;
    check_accessibility(&browser, "uploaded").await?;

    // Search as you type finds it; the name shows as text, not markup.
    let search = browser.client.find(Locator::Css("#search-input")).await?;
    search.send_keys("holiday").await?;
    let row = browser.wait_for(&format!("#search-results li[data-file-id='{id}']"), Duration::from_secs(10)).await?;
    let text = row.text().await?;
    assert!(text.contains("holiday photos <b>2025<i>.bin"), "name shown literally: {text:?}");
    assert!(
        browser.client.find(Locator::Css("#search-results b, #search-results i")).await.is_err(),
        "no HTML from the swarm"
    );
    check_accessibility(&browser, "search results").await?;
    search.send_keys(" zzz-no-such").await?;
    browser.wait_for("#search-empty", Duration::from_secs(10)).await?;
    check_accessibility(&browser, "search without results").await?;
    search.clear().await?;
    search.send_keys("photos").await?;
    browser.wait_for(&format!("#search-results li[data-file-id='{id}']"), Duration::from_secs(10)).await?;

    // The native peer fetches it from the tab, byte for byte.
    let out = tmp.path().join("got.bin");
    native.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "native peer got the uploaded bytes");
    let v = wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(10), |v| {
        v["peers"].as_array().is_some_and(|p| p.len() >= 2)
    })
    .await?;
    assert_eq!(chunks_held_by(&v, &me), chunk_count(&v), "the tab holds every chunk: {v}");
    tokio::time::sleep(Duration::from_millis(2500)).await; // placement view refreshes
    browser.screenshot("app-2-uploaded-and-searched").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_publishing_tab_deletes_its_file_and_holders_drop_it() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-del-tracker", Some(&e2e::web_dir()))?;
    let native = NativePeer::start("app-del-native", &tracker, &tmp.path().join("n1"))?;
    let (browser, _me) = open_app(&tracker, "app-del", "/").await?;
    let (path, _) = random_file(tmp.path(), "to be deleted.bin", 2 * MIB + 77, 31)?;
    let id = upload(&browser, &path).await?;
    // The native peer takes copies (repair: two peers, R=3).
    let chunks = |v: &serde_json::Value| v["chunks"].as_u64().unwrap_or(0);
    let started = Instant::now();
    while chunks(&native.cli_json(&["status"])?) == 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(30), "the native peer never took copies");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Another identity cannot delete it.
    let (code, _, err) = native.cli(&["rm", &id])?;
    assert_ne!(code, 0, "a peer that did not publish the file deleted it");
    assert!(err.contains("publish") || err.contains("owner"), "{err}");
    // (The API answers a JSON error for unknown files: the manifest is what tells.)
    let detail = |t: &Tracker| t.get_json(&format!("/api/files/{id}")).map(|v| v.get("manifest").is_some());
    assert!(detail(&tracker)?, "the file is still there");

    // The tab that published it can: two clicks, then the swarm forgets it.
    browser.wait_for("#delete-file", Duration::from_secs(10)).await?.click().await?;
    let confirm = browser.wait_for("#delete-confirm", Duration::from_secs(10)).await?;
    check_accessibility(&browser, "delete confirmation").await?;
    confirm.click().await?;
    browser.wait_for("#file-deleted", Duration::from_secs(10)).await?;
    assert!(!detail(&tracker)?, "the tracker still knows the file");
    let started = Instant::now();
    while chunks(&native.cli_json(&["status"])?) > 0 {
        anyhow::ensure!(started.elapsed() < Duration::from_secs(20), "the native peer kept the deleted file's chunks");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    browser.screenshot("app-deleted").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_downloads_from_native_peers_with_a_chunk_map() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-share-tracker", Some(&e2e::web_dir()))?;
    let n1 = NativePeer::start("app-share-n1", &tracker, &tmp.path().join("n1"))?;
    let n2 = NativePeer::start("app-share-n2", &tracker, &tmp.path().join("n2"))?;
    let (path, bytes) = random_file(tmp.path(), "dataset.bin", 6 * MIB + 99, 12)?;
    let put = n1.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    // Let the swarm copy it to the second native peer, so the tab has two sources.
    wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(30), |v| {
        chunks_held_by(v, &n2.peer_id) == chunk_count(v)
    })
    .await?;

    let (browser, _me) = open_app(&tracker, "app-share", &format!("/#/file/{id}")).await?;
    browser.wait_for("li.download-item", Duration::from_secs(30)).await?;
    check_accessibility(&browser, "download running").await?;
    let got = saved_bytes(&browser).await?;
    check_accessibility(&browser, "download done").await?;
    assert!(got == bytes, "the share link downloaded the bytes");
    let cells = num(&browser, "#chunk-map", "data-cells").await?;
    assert_eq!(cells as usize, (6 * MIB + 99).div_ceil(256 * 1024));
    let done = browser.num_attr_at_least("#chunk-map", "data-done", cells).await?;
    assert_eq!(done, cells, "the chunk map shows every chunk here");
    let received = browser.num_attr_at_least("#dc-stats", "data-received", bytes.len() as u64).await?;
    assert!(received >= bytes.len() as u64, "over data channels: {received}");
    browser.screenshot("app-3-downloaded-from-natives").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_reannounces_the_indexeddb_inventory() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-reload-tracker", Some(&e2e::web_dir()))?;
    let (browser, me) = open_app(&tracker, "app-reload", "/").await?;
    let (path, bytes) = random_file(tmp.path(), "kept.bin", 2 * MIB + 7, 13)?;
    let id = upload(&browser, &path).await?;
    let v = wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(10), |v| chunks_held_by(v, &me) > 0)
        .await?;
    let n = chunk_count(&v);

    browser.client.refresh().await?;
    let again = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_eq!(again, me, "the tab keeps its peer id across a reload");
    let stored = browser.num_attr_at_least("#tab-storage", "data-store-bytes", bytes.len() as u64).await?;
    assert!(stored >= bytes.len() as u64, "IndexedDB still holds the chunks: {stored}");
    wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(10), |v| chunks_held_by(v, &me) == n).await?;

    // A native peer that joins now can only get the file from the reloaded tab.
    let native = NativePeer::start("app-reload-native", &tracker, &tmp.path().join("n"))?;
    let out = tmp.path().join("got.bin");
    native.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "served from IndexedDB after the reload");
    browser.screenshot("app-4-after-reload").await?;
    Ok(())
}

/// A file put by a native peer that is then killed: its only holder is gone (it comes back
/// with [`NativePeer::start`] on the same data dir). Returns the file's id and bytes.
async fn put_then_kill_holder(
    tracker: &Tracker,
    dir: &std::path::Path,
    name: &str,
    seed: u64,
) -> anyhow::Result<(String, Vec<u8>)> {
    let mut n1 = NativePeer::start(&format!("{name}-n1"), tracker, dir)?;
    let (path, bytes) = random_file(dir.parent().unwrap(), &format!("{name}.bin"), 3 * MIB + 5, seed)?;
    let put = n1.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    wait_json(tracker, &format!("/api/files/{id}"), Duration::from_secs(30), |v| {
        chunks_held_by(v, &n1.peer_id) == chunk_count(v)
    })
    .await?;
    n1.proc.kill();
    wait_json(tracker, "/api/stats", Duration::from_secs(30), |v| v["peers"] == 0).await?;
    Ok((id, bytes))
}

/// The page opened anew, without a link (a new document: the query differs).
async fn open_again(browser: &Browser, tracker: &Tracker) -> anyhow::Result<()> {
    browser.client.goto(&format!("{}/?again", tracker.http_url())).await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    Ok(())
}

/// A download the tab could not finish (its only holder went away) is started again when the
/// page opens anew, without its link: it finishes once the holder is back, and leaves the
/// tab's list of unfinished downloads then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_download_resumes_when_the_page_opens_again() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-resume-tracker", Some(&e2e::web_dir()))?;
    let dir = tmp.path().join("n1");
    let (id, bytes) = put_then_kill_holder(&tracker, &dir, "app-resume", 21).await?;
    let (browser, _) = open_app(&tracker, "app-resume", &format!("/#/file/{id}")).await?;
    browser.wait_for("li.download-item", Duration::from_secs(30)).await?;

    open_again(&browser, &tracker).await?;
    let item = browser.wait_for("li.download-item", Duration::from_secs(30)).await?;
    let state = item.attr("data-state").await?.unwrap_or_default();
    assert!(state == "locating" || state == "downloading" || state == "failed", "listed again: {state}");
    let _n1 = NativePeer::start("app-resume-n1-back", &tracker, &dir)?;
    let got = saved_bytes(&browser).await?;
    assert!(got == bytes, "the resumed download has the file's bytes");
    let kept = browser.client.execute("return localStorage.getItem('pp-downloads-0');", vec![]).await?;
    assert!(kept.as_str().is_some_and(|k| !k.contains(&id)), "done: no longer on the list ({kept})");
    Ok(())
}

/// A paused download stays paused when the page opens again, even with its holder back, and
/// finishes once the user resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_download_stays_paused_across_a_reload_until_resumed() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-pause-tracker", Some(&e2e::web_dir()))?;
    let dir = tmp.path().join("n1");
    let (id, bytes) = put_then_kill_holder(&tracker, &dir, "app-pause", 22).await?;
    let (browser, _) = open_app(&tracker, "app-pause", &format!("/#/file/{id}")).await?;
    browser.wait_for("li.download-item .download-pause", Duration::from_secs(30)).await?.click().await?;
    browser.wait_for("li.download-item[data-state=paused]", Duration::from_secs(10)).await?;

    open_again(&browser, &tracker).await?;
    browser.wait_for("li.download-item[data-state=paused]", Duration::from_secs(30)).await?;
    let n1 = NativePeer::start("app-pause-n1-back", &tracker, &dir)?;
    wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(30), |v| {
        chunks_held_by(v, &n1.peer_id) == chunk_count(v)
    })
    .await?;
    let state = browser.wait_for("li.download-item", Duration::from_secs(5)).await?.attr("data-state").await?;
    assert_eq!(state.as_deref(), Some("paused"), "the holder is back, and the paused download waits for the user");
    browser.wait_for("li.download-item .download-resume", Duration::from_secs(5)).await?.click().await?;
    let got = saved_bytes(&browser).await?;
    assert!(got == bytes, "resumed by the user: the file's bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_exchange_a_file() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-tabs-tracker", Some(&e2e::web_dir()))?;
    let (a, a_id) = open_app(&tracker, "app-tab-a", "/").await?;
    let (b, b_id) = open_app(&tracker, "app-tab-b", "/").await?;
    assert_ne!(a_id, b_id);
    let (path, bytes) = random_file(tmp.path(), "from-tab-a.bin", 4 * MIB + 5, 14)?;
    let id = upload(&a, &path).await?;
    let got = download_by_id(&b, &id).await?;
    assert!(got == bytes, "tab B got tab A's bytes");
    let sent = a.num_attr_at_least("#dc-stats", "data-sent", bytes.len() as u64).await?;
    assert!(sent >= bytes.len() as u64, "tab A served over data channels: {sent}");
    b.screenshot("app-5-tab-b-downloaded").await?;
    // Tab B is a source now.
    wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(10), |v| {
        chunks_held_by(v, &b_id) == chunk_count(v)
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_takes_replication_orders_and_trades_with_natives() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-orders-tracker", Some(&e2e::web_dir()))?;
    let n1 = NativePeer::start("app-orders-n1", &tracker, &tmp.path().join("n1"))?;
    let (browser, me) = open_app(&tracker, "app-orders", "/").await?;
    // With a replication factor of 3 and only two peers, the tab is ordered to copy chunks.
    let (path, bytes) = random_file(tmp.path(), "native-file.bin", 3 * MIB + 1, 15)?;
    let put = n1.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(30), |v| {
        chunks_held_by(v, &me) == chunk_count(v)
    })
    .await?;
    let stored = browser.num_attr_at_least("#tab-storage", "data-store-bytes", bytes.len() as u64).await?;
    assert!(stored >= bytes.len() as u64, "the tab stored the replicas: {stored}");
    // Those replicas serve a second native peer once the first is gone.
    drop(n1);
    let n2 = NativePeer::start("app-orders-n2", &tracker, &tmp.path().join("n2"))?;
    let out = tmp.path().join("got.bin");
    n2.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "native got the file from the tab's replicas");
    browser.screenshot("app-6-replicas").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_carries_chunks_when_webrtc_is_refused() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("app-relay-tracker", Some(&e2e::web_dir()))?;
    let native =
        NativePeer::start_with_env("app-relay-native", &tracker, &tmp.path().join("n"), &[("PP_RELAY_ONLY", "true")])?;
    let (browser, _me) = open_app(&tracker, "app-relay", "/").await?;
    let (path, bytes) = random_file(tmp.path(), "relayed.bin", MIB + 3, 16)?;
    let put = native.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    let got = download_by_id(&browser, &id).await?;
    assert!(got == bytes, "relayed bytes are intact");
    let stats = tracker.get_json("/api/stats")?;
    assert!(stats["relay_bytes"].as_u64().unwrap_or(0) >= bytes.len() as u64, "went through the relay: {stats}");
    browser.screenshot("app-7-relayed").await?;
    Ok(())
}

/// A bare data channel, native → browser, in plain JavaScript: the page signals through the
/// tracker like any peer, asks a native peer for chunks (8 requests in flight, as the app) and
/// only counts the bytes. The baseline the app's own download rate is measured against.
const RAW_CHANNEL_JS: &str = r#"
const [wsUrl, target, chunks, lens, done] = arguments;
const hex = () => Array.from(crypto.getRandomValues(new Uint8Array(32)), b => b.toString(16).padStart(2, '0')).join('');
const ws = new WebSocket(wsUrl);
const conn = Math.floor(Math.random() * 2 ** 40);
let pc;
const sig = signal => ws.send(JSON.stringify({ type: 'signal', to: target, conn, signal }));
ws.onopen = () => ws.send(JSON.stringify({ type: 'hello', version: 1, kind: 'browser', secret: hex() }));
ws.onmessage = async ev => {
  if (typeof ev.data !== 'string') return;
  const m = JSON.parse(ev.data);
  if (m.type === 'welcome') start();
  else if (m.type === 'signal' && m.conn === conn) {
    const s = m.signal;
    if (s.kind === 'answer') await pc.setRemoteDescription({ type: 'answer', sdp: s.sdp });
    else if (s.kind === 'candidate') { try { await pc.addIceCandidate({ candidate: s.candidate, sdpMid: s.mid ?? '0' }); } catch (e) {} }
    else if (s.kind === 'close') done('ERROR: closed: ' + s.reason);
  }
};
async function start() {
  pc = new RTCPeerConnection();
  pc.onicecandidate = e => { if (e.candidate && e.candidate.candidate) sig({ kind: 'candidate', candidate: e.candidate.candidate, mid: e.candidate.sdpMid }); };
  const dc = pc.createDataChannel('chunks', { ordered: true });
  dc.binaryType = 'arraybuffer';
  dc.onopen = () => run(dc);
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  sig({ kind: 'offer', sdp: offer.sdp });
}
function run(dc) {
  let next = 0, inflight = 0, req = 1, got = 0, bytes = 0;
  const left = new Map();
  const t0 = performance.now();
  const ask = () => {
    while (inflight < 8 && next < chunks.length) {
      const b = new Uint8Array(37);
      b[0] = 1;
      new DataView(b.buffer).setUint32(1, req);
      for (let i = 0; i < 32; i++) b[5 + i] = parseInt(chunks[next].substr(i * 2, 2), 16);
      left.set(req, lens[next]);
      dc.send(b);
      req++; next++; inflight++;
    }
  };
  dc.onmessage = e => {
    const v = new DataView(e.data);
    if (v.getUint8(0) !== 2) { done('ERROR: missing chunk'); return; }
    const r = v.getUint32(1), n = e.data.byteLength - 13;
    bytes += n;
    const l = left.get(r) - n;
    if (l > 0) { left.set(r, l); return; }
    left.delete(r); inflight--; got++;
    if (got === chunks.length) { done(JSON.stringify({ bytes, secs: (performance.now() - t0) / 1000 })); pc.close(); ws.close(); return; }
    ask();
  };
  ask();
}
"#;

/// Samples the page's JS heap (CDP `Runtime.getHeapUsage`) every 100 ms until stopped.
fn heap_sampler(
    browser: &Browser,
    session: String,
) -> (std::sync::Arc<std::sync::atomic::AtomicBool>, std::thread::JoinHandle<u64>) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, flag) = (browser.driver_port, stop.clone());
    let h = std::thread::spawn(move || {
        let mut peak = 0u64;
        while !flag.load(std::sync::atomic::Ordering::Relaxed) {
            match e2e::cdp(port, &session, "Runtime.getHeapUsage", serde_json::json!({})) {
                Ok(v) => peak = peak.max(v["usedSize"].as_f64().unwrap_or(0.0) as u64),
                Err(e) => eprintln!("heap sample failed: {e}"),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        peak
    });
    (stop, h)
}

/// Prints the functions with the most self time in a CDP CPU profile (`PP_BENCH_PROFILE`),
/// each with its heaviest call path.
fn print_profile(profile: &serde_json::Value) {
    use std::collections::HashMap;
    let nodes: Vec<&serde_json::Value> = profile["nodes"].as_array().into_iter().flatten().collect();
    let name_of = |node: &serde_json::Value| {
        let f = &node["callFrame"];
        let file = f["url"].as_str().unwrap_or("").rsplit('/').next().unwrap_or("").to_string();
        match f["functionName"].as_str().unwrap_or("") {
            "" if !file.is_empty() => format!("(anonymous) {file}:{}:{}", f["lineNumber"], f["columnNumber"]),
            n => {
                let n = n.split("::h").next().unwrap_or(n);
                format!("{} {file}", n.chars().take(90).collect::<String>())
            }
        }
    };
    let mut parent: HashMap<u64, u64> = HashMap::new();
    let by_id: HashMap<u64, &serde_json::Value> = nodes.iter().map(|n| (n["id"].as_u64().unwrap_or(0), *n)).collect();
    for n in &nodes {
        for c in n["children"].as_array().into_iter().flatten() {
            parent.insert(c.as_u64().unwrap_or(0), n["id"].as_u64().unwrap_or(0));
        }
    }
    let mut by_fn: HashMap<String, (u64, HashMap<String, u64>)> = HashMap::new();
    let mut total = 0;
    for n in &nodes {
        let hits = n["hitCount"].as_u64().unwrap_or(0);
        total += hits;
        let mut path = Vec::new();
        let mut id = n["id"].as_u64().unwrap_or(0);
        while let (Some(p), true) = (parent.get(&id), path.len() < 4) {
            id = *p;
            path.push(by_id.get(&id).map(|x| name_of(x)).unwrap_or_default());
        }
        let e = by_fn.entry(name_of(n)).or_default();
        e.0 += hits;
        *e.1.entry(path.join(" < ")).or_default() += hits;
    }
    let mut v: Vec<_> = by_fn.into_iter().collect();
    v.sort_by_key(|e| std::cmp::Reverse(e.1 .0));
    println!("--- renderer CPU profile: {total} samples ---");
    for (name, (hits, paths)) in v.into_iter().take(25) {
        let top = paths.into_iter().max_by_key(|p| p.1).map(|p| p.0).unwrap_or_default();
        println!("{:5.1}%  {name}\n          < {top}", hits as f64 * 100.0 / total.max(1) as f64);
    }
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

/// The browser peer's figures in one run:
/// `cargo test --release -p e2e --test browser_app -- --ignored --nocapture bench_browser_peer`
/// (the binaries under test are `target/debug` unless `PP_BIN_DIR` says otherwise; the page is
/// `dist/`, a release build). `PP_BENCH_MIB` (256) and `PP_BENCH_BIG_MIB` (1024) set the sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on purpose, prints figures"]
async fn bench_browser_peer() -> anyhow::Result<()> {
    let env_mib = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let (size, big) = (env_mib("PP_BENCH_MIB", 256) * MIB, env_mib("PP_BENCH_BIG_MIB", 1024) * MIB);
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("bench-tracker", Some(&e2e::web_dir()))?;
    let natives: Vec<NativePeer> = (0..3)
        .map(|i| NativePeer::start(&format!("bench-n{i}"), &tracker, &tmp.path().join(format!("n{i}"))))
        .collect::<anyhow::Result<_>>()?;
    // Both files on three native peers (the replication factor) before any tab joins, so the
    // tracker sends the tab no replication orders during the measurements.
    let mut ids = Vec::new();
    for (name, len, seed) in [("bench.bin", size, 21), ("big.bin", big, 22)] {
        let (path, _) = random_file(tmp.path(), name, len, seed)?;
        let put = natives[0].cli_json(&["put", &path.to_string_lossy()])?;
        let id = put["files"][0]["id"].as_str().unwrap().to_string();
        wait_json(&tracker, &format!("/api/files/{id}"), Duration::from_secs(300), |v| {
            v["health"]["min_copies"].as_u64() >= Some(3)
        })
        .await?;
        ids.push(id);
        std::fs::remove_file(&path)?;
    }
    let detail = tracker.get_json(&format!("/api/files/{}", ids[0]))?;
    let chunks: Vec<String> =
        detail["manifest"]["chunks"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_string()).collect();
    let lens: Vec<usize> = (0..chunks.len()).map(|i| (size - i * 256 * 1024).min(256 * 1024)).collect();

    // 1. Raw channel native → browser.
    let raw_browser = Browser::start("bench-raw").await?;
    let tm = fantoccini::wd::TimeoutConfiguration::new(Some(Duration::from_secs(600)), None, None);
    raw_browser.client.update_timeouts(tm.clone()).await?;
    raw_browser.client.goto(&format!("{}/api/stats", tracker.http_url())).await?;
    let profile = std::env::var_os("PP_BENCH_PROFILE").is_some();
    let raw_session = raw_browser.client.session_id().await?.unwrap_or_default();
    let mut raw = Vec::new();
    for (i, n) in natives[..2].iter().enumerate() {
        if profile && i == 1 {
            e2e::cdp(raw_browser.driver_port, &raw_session, "Profiler.enable", serde_json::json!({}))?;
            e2e::cdp(raw_browser.driver_port, &raw_session, "Profiler.start", serde_json::json!({}))?;
        }
        let v = raw_browser
            .client
            .execute_async(
                RAW_CHANNEL_JS,
                vec![
                    tracker.ws_url().into(),
                    n.peer_id.clone().into(),
                    serde_json::json!(chunks),
                    serde_json::json!(lens),
                ],
            )
            .await?;
        let s = v.as_str().unwrap_or_default().to_string();
        anyhow::ensure!(!s.starts_with("ERROR"), "raw channel: {s}");
        let r: serde_json::Value = serde_json::from_str(&s)?;
        raw.push(mb_s(r["bytes"].as_u64().unwrap(), r["secs"].as_f64().unwrap()));
        if profile && i == 1 {
            let p = e2e::cdp(raw_browser.driver_port, &raw_session, "Profiler.stop", serde_json::json!({}))?;
            println!("(raw channel)");
            print_profile(&p["profile"]);
        }
    }
    drop(raw_browser);
    let raw_rate = raw.iter().sum::<f64>() / raw.len() as f64;

    // 2. The app downloads the file from the native peers into IndexedDB.
    let (app, _) = open_app(&tracker, "bench-app", "/").await?;
    app.client.update_timeouts(tm).await?;
    let session = app.client.session_id().await?.unwrap_or_default();
    let (stop, sampler) = heap_sampler(&app, session.clone());
    let c = &app.client;
    c.find(Locator::Css("#download-id")).await?.send_keys(&ids[0]).await?;
    let metrics = |b: &Browser, s: &str| -> anyhow::Result<std::collections::HashMap<String, f64>> {
        let v = e2e::cdp(b.driver_port, s, "Performance.getMetrics", serde_json::json!({}))?;
        Ok(v["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (m["name"].as_str().unwrap_or("").to_string(), m["value"].as_f64().unwrap_or(0.0)))
            .collect())
    };
    let mut before = Default::default();
    if profile {
        e2e::cdp(app.driver_port, &session, "Performance.enable", serde_json::json!({}))?;
        before = metrics(&app, &session)?;
        e2e::cdp(app.driver_port, &session, "Profiler.enable", serde_json::json!({}))?;
        e2e::cdp(app.driver_port, &session, "Profiler.start", serde_json::json!({}))?;
    }
    let t0 = Instant::now();
    c.find(Locator::Css("#download-button")).await?.click().await?;
    app.wait_text("#download-status", Duration::from_secs(600), |t| t.contains("done")).await?;
    let app_secs = t0.elapsed().as_secs_f64();
    if profile {
        let p = e2e::cdp(app.driver_port, &session, "Profiler.stop", serde_json::json!({}))?;
        print_profile(&p["profile"]);
        let after = metrics(&app, &session)?;
        let d = |k: &str| after.get(k).unwrap_or(&0.0) - before.get(k).unwrap_or(&0.0);
        println!(
            "main thread busy {:.2} s of {app_secs:.2} s: script {:.2} s, style {:.2} s, layout {:.2} s, {} layouts, {} style recalcs",
            d("TaskDuration"),
            d("ScriptDuration"),
            d("RecalcStyleDuration"),
            d("LayoutDuration"),
            d("LayoutCount"),
            d("RecalcStyleCount")
        );
    }
    let app_rate = mb_s(size as u64, app_secs);
    let app_transfer_rate: f64 =
        app.wait_attr("#download-rate", "data-rate", Duration::from_secs(5)).await?.parse::<f64>()? / 1e6;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let heap_256 = sampler.join().unwrap();
    app.screenshot("bench-1-downloaded").await?;

    // 3. Upload ingest: chunk + hash + store in IndexedDB (then publish).
    let (up_path, _) = random_file(tmp.path(), "upload.bin", size, 23)?;
    let t0 = Instant::now();
    let up_id = upload(&app, &up_path).await?;
    let ingest_secs = t0.elapsed().as_secs_f64();
    let ingest_rate = mb_s(size as u64, ingest_secs);
    std::fs::remove_file(&up_path)?;
    let _ = up_id;

    // 4. JS heap while the tab moves a large file in: a fresh tab downloads it.
    let (big_tab, _) = open_app(&tracker, "bench-big", "/").await?;
    let session = big_tab.client.session_id().await?.unwrap_or_default();
    let (stop, sampler) = heap_sampler(&big_tab, session);
    big_tab.client.find(Locator::Css("#download-id")).await?.send_keys(&ids[1]).await?;
    let t0 = Instant::now();
    big_tab.client.find(Locator::Css("#download-button")).await?.click().await?;
    big_tab.wait_text("#download-status", Duration::from_secs(900), |t| t.contains("done")).await?;
    let big_secs = t0.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let heap_big = sampler.join().unwrap();
    big_tab.screenshot("bench-2-big-downloaded").await?;

    // 5. Bundle size.
    let wasm = std::fs::read_dir(e2e::web_dir())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))
        .ok_or_else(|| anyhow::anyhow!("no wasm in dist/"))?;
    let gz =
        std::process::Command::new("sh").arg("-c").arg(format!("gzip -9 -c '{}' | wc -c", wasm.display())).output()?;
    let gz: u64 = String::from_utf8_lossy(&gz.stdout).trim().parse()?;
    let raw_wasm = std::fs::metadata(&wasm)?.len();

    println!("\n=== browser peer benchmark (MB = 10^6 bytes) ===");
    println!(
        "raw data channel native→browser (JS only, {} MiB): {:.1} MB/s  (per native: {:?})",
        size / MIB,
        raw_rate,
        raw.iter().map(|r| format!("{r:.1}")).collect::<Vec<_>>()
    );
    println!("app download from 3 natives into IndexedDB ({} MiB): {:.1} MB/s click→done ({:.1} s), {:.1} MB/s transfer only; {:.0}% of raw", size / MIB, app_rate, app_secs, app_transfer_rate, app_rate / raw_rate * 100.0);
    println!(
        "upload ingest (chunk + SHA-256 + IndexedDB + publish, {} MiB): {:.1} MB/s ({:.1} s)",
        size / MIB,
        ingest_rate,
        ingest_secs
    );
    println!(
        "JS heap peak: {:.1} MiB during the {} MiB download; {:.1} MiB during the {} MiB download ({:.1} MB/s)",
        heap_256 as f64 / MIB as f64,
        size / MIB,
        heap_big as f64 / MIB as f64,
        big / MIB,
        mb_s(big as u64, big_secs)
    );
    println!("wasm bundle: {} bytes, {} bytes gzipped (-9)", raw_wasm, gz);
    Ok(())
}
