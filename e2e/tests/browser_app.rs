//! The web app as a user drives it, in real headless Chromium against a real tracker and real
//! native peers: upload by the file input, search as you type, download with the chunk map,
//! share links, a reload that re-announces the tab's IndexedDB inventory, two tabs swapping a
//! file, replication orders taken by the tab, and the tracker relay when WebRTC is refused.
//! Screenshots of each state land in `target/e2e-artifacts/app-*.png`.
//!
//! `bench_browser_peer` (ignored) prints the figures of the browser peer's benchmark.

use e2e::{random_file, Browser, NativePeer, Tracker};
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

async fn num_attr(browser: &Browser, css: &str, attr: &str) -> anyhow::Result<u64> {
    Ok(browser.wait_attr(css, attr, Duration::from_secs(5)).await?.parse()?)
}

/// Polls the tracker until `pred` holds for `/api/files/{id}`.
async fn wait_file(
    tracker: &Tracker,
    id: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = tracker.get_json(&format!("/api/files/{id}"));
        if let Ok(v) = &v {
            if pred(v) {
                return Ok(v.clone());
            }
        }
        if Instant::now() > deadline {
            anyhow::bail!("timed out waiting on /api/files/{id}: {v:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
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

    let (path, bytes) = random_file(tmp.path(), "holiday photos <b>2025<i>.bin", 3 * MIB + 4321, 11)?;
    let id = upload(&browser, &path).await?;
    // The placement view shows where the swarm put the chunks.
    browser.wait_for(".placement[data-min-copies]", Duration::from_secs(10)).await?;

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
    search.send_keys(" zzz-no-such").await?;
    browser.wait_for("#search-empty", Duration::from_secs(10)).await?;
    search.clear().await?;
    search.send_keys("photos").await?;
    browser.wait_for(&format!("#search-results li[data-file-id='{id}']"), Duration::from_secs(10)).await?;

    // The native peer fetches it from the tab, byte for byte.
    let out = tmp.path().join("got.bin");
    native.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "native peer got the uploaded bytes");
    let v = wait_file(&tracker, &id, Duration::from_secs(10), |v| v["peers"].as_array().is_some_and(|p| p.len() >= 2))
        .await?;
    assert_eq!(chunks_held_by(&v, &me), chunk_count(&v), "the tab holds every chunk: {v}");
    tokio::time::sleep(Duration::from_millis(2500)).await; // placement view refreshes
    browser.screenshot("app-2-uploaded-and-searched").await?;
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
    wait_file(&tracker, &id, Duration::from_secs(30), |v| chunks_held_by(v, &n2.peer_id) == chunk_count(v)).await?;

    let (browser, _me) = open_app(&tracker, "app-share", &format!("/#/file/{id}")).await?;
    let got = saved_bytes(&browser).await?;
    assert!(got == bytes, "the share link downloaded the bytes");
    let cells = num_attr(&browser, "#chunk-map", "data-cells").await?;
    assert_eq!(cells as usize, (6 * MIB + 99).div_ceil(256 * 1024));
    let received = num_attr(&browser, "#dc-stats", "data-received").await?;
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
    let v = wait_file(&tracker, &id, Duration::from_secs(10), |v| chunks_held_by(v, &me) > 0).await?;
    let n = chunk_count(&v);

    browser.client.refresh().await?;
    let again = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_eq!(again, me, "the tab keeps its peer id across a reload");
    let stored = num_attr(&browser, "#tab-storage", "data-store-bytes").await?;
    assert!(stored >= bytes.len() as u64, "IndexedDB still holds the chunks: {stored}");
    wait_file(&tracker, &id, Duration::from_secs(10), |v| chunks_held_by(v, &me) == n).await?;

    // A native peer that joins now can only get the file from the reloaded tab.
    let native = NativePeer::start("app-reload-native", &tracker, &tmp.path().join("n"))?;
    let out = tmp.path().join("got.bin");
    native.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "served from IndexedDB after the reload");
    browser.screenshot("app-4-after-reload").await?;
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
    let sent = num_attr(&a, "#dc-stats", "data-sent").await?;
    assert!(sent >= bytes.len() as u64, "tab A served over data channels: {sent}");
    b.screenshot("app-5-tab-b-downloaded").await?;
    // Tab B is a source now.
    wait_file(&tracker, &id, Duration::from_secs(10), |v| chunks_held_by(v, &b_id) == chunk_count(v)).await?;
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
    wait_file(&tracker, &id, Duration::from_secs(30), |v| chunks_held_by(v, &me) == chunk_count(v)).await?;
    let stored = num_attr(&browser, "#tab-storage", "data-store-bytes").await?;
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
