//! The page as a product, in real headless Chromium against a real tracker and real native
//! peers: several downloads at once with a cancel, the tab's identity across a reload and a
//! close and reopen (and a second tab being another peer), the storage the tab offers reaching
//! the tracker, and absolute share links that open the file in another browser; the exact links
//! `pp-peer put` prints (public, and `--private` with the key in the fragment) open the file
//! in the page with its bytes and its real name. The tab's private key is a non-extractable
//! WebCrypto key the tracker accepts, and a secret of an earlier version migrates to one under
//! the same peer id (and leaves localStorage).
//! Screenshots land in `target/e2e-artifacts/page-*.png`.

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

/// Types `what` (an id or a link) into the download box and submits it.
async fn start_download(browser: &Browser, what: &str) -> anyhow::Result<()> {
    let input = browser.client.find(Locator::Css("#download-id")).await?;
    input.clear().await?;
    input.send_keys(what).await?;
    browser.client.find(Locator::Css("#download-button")).await?.click().await?;
    Ok(())
}

fn item(id: &str) -> String {
    format!("li.download-item[data-file-id='{id}']")
}

/// Waits until the download of `id` is in `state`.
async fn wait_state(browser: &Browser, id: &str, state: &str, timeout: Duration) -> anyhow::Result<()> {
    browser.wait_for(&format!("{}[data-state='{state}']", item(id)), timeout).await.map(|_| ())
}

/// The bytes behind a finished download's save link.
async fn saved(browser: &Browser, id: &str) -> anyhow::Result<Vec<u8>> {
    wait_state(browser, id, "done", Duration::from_secs(90)).await?;
    let href = browser.wait_attr(&format!("{} .download-link", item(id)), "href", Duration::from_secs(5)).await?;
    anyhow::ensure!(href.starts_with("blob:"), "the save link is a blob URL: {href}");
    browser.fetch_bytes(&href).await
}

/// `peer`'s entry in `/api/peers`.
fn peer_entry<'a>(v: &'a serde_json::Value, peer: &str) -> Option<&'a serde_json::Value> {
    v["peers"].as_array()?.iter().find(|p| p["id"] == peer)
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

/// Puts a random file on `native` and waits until the swarm holds `copies` copies of it.
async fn put_on(
    tracker: &Tracker,
    native: &NativePeer,
    dir: &std::path::Path,
    name: &str,
    len: usize,
    seed: u64,
    copies: u64,
) -> anyhow::Result<(String, Vec<u8>)> {
    let (path, bytes) = random_file(dir, name, len, seed)?;
    let put = native.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    wait_json(tracker, &format!("/api/files/{id}"), Duration::from_secs(240), |v| {
        v["health"]["min_copies"].as_u64() >= Some(copies)
    })
    .await?;
    Ok((id, bytes))
}

/// The file the page cancels mid-way.
const BIG: usize = 96 * MIB;

/// Clicks the cancel button of download `arguments[0]` once its chunk map shows a chunk;
/// answers the chunks shown then (-1: it ended first).
const CANCEL_AFTER_FIRST_CHUNK_JS: &str = r#"
const [sel, done] = arguments;
const t = setInterval(() => {
  const map = document.querySelector(sel + ' .chunk-map');
  const button = document.querySelector(sel + ' .download-cancel');
  if (map && Number(map.dataset.done) >= 1 && button) { clearInterval(t); button.click(); done(Number(map.dataset.done)); }
  else if (!button && document.querySelector(sel + ':not([data-state=locating]):not([data-state=downloading])')) { clearInterval(t); done(-1); }
}, 5);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_downloads_run_at_once_and_a_cancel_stops_one() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("page-dl-tracker", Some(&e2e::web_dir()))?;
    let natives: Vec<NativePeer> = (0..3)
        .map(|i| NativePeer::start(&format!("page-dl-n{i}"), &tracker, &tmp.path().join(format!("n{i}"))))
        .collect::<anyhow::Result<_>>()?;
    // Every file at the replication target before the tab joins: the tab gets no orders, so
    // whatever it fetches is its own downloads.
    let (a, a_bytes) = put_on(&tracker, &natives[0], tmp.path(), "a.bin", 5 * MIB + 1, 41, 3).await?;
    let (b, b_bytes) = put_on(&tracker, &natives[1], tmp.path(), "b.bin", 4 * MIB + 2, 42, 3).await?;
    // Big enough that a cancel noticed late still stops it far from the end: on a loaded
    // 2-core machine the page shows its first chunk 25-30 MiB in (three loopback sources
    // at full speed, and 16 requests each still in flight when the cancel comes).
    let (big, _) = put_on(&tracker, &natives[2], tmp.path(), "big.bin", BIG, 43, 3).await?;
    let (browser, _me) = open_app(&tracker, "page-dl", "/").await?;

    // Both started before either is done; both complete with their own bytes.
    start_download(&browser, &a).await?;
    start_download(&browser, &b).await?;
    browser.wait_for(&item(&a), Duration::from_secs(5)).await?;
    browser.wait_for(&item(&b), Duration::from_secs(5)).await?;
    let (got_a, got_b) = (saved(&browser, &a).await?, saved(&browser, &b).await?);
    assert!(got_a == a_bytes, "download A has A's bytes");
    assert!(got_b == b_bytes, "download B has B's bytes");
    // Each kept its own chunk map.
    let cells_a = num(&browser, &format!("{} .chunk-map", item(&a)), "data-done").await?;
    assert_eq!(cells_a as usize, (5 * MIB + 1).div_ceil(256 * 1024));
    browser.screenshot("page-1-two-downloads").await?;

    // The big one: started twice, it is one download; cancelled, it stops.
    start_download(&browser, &big).await?;
    start_download(&browser, &big).await?;
    let items = browser.client.find_all(Locator::Css(&item(&big))).await?;
    assert_eq!(items.len(), 1, "the same file started twice is one download");
    // Cancelled from inside the page as soon as its first chunk shows (a fast download would
    // be over before a WebDriver round trip per poll noticed it).
    let at = browser.client.execute_async(CANCEL_AFTER_FIRST_CHUNK_JS, vec![item(&big).into()]).await?;
    assert!(at.as_i64().is_some_and(|n| n >= 1), "cancelled mid-way: {at}");
    wait_state(&browser, &big, "cancelled", Duration::from_secs(5)).await?;
    // Answers already in flight (queued in the senders' channels) may land just after; then
    // nothing more arrives, and far less than the whole file came.
    let mut received = num(&browser, "#dc-stats", "data-received").await?;
    let settle = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = num(&browser, "#dc-stats", "data-received").await?;
        if now == received || settle.elapsed() > Duration::from_secs(20) {
            break;
        }
        received = now;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let later = num(&browser, "#dc-stats", "data-received").await?;
    assert_eq!(received, later, "no chunk arrives after the cancel");
    let big_came = later - (a_bytes.len() + b_bytes.len()) as u64;
    eprintln!("cancelled with {at} chunks shown; {big_came} bytes of the {BIG}-byte file came in all");
    assert!(big_came < (BIG - BIG / 4) as u64, "the cancelled download stopped early: {big_came} of {BIG} bytes came");
    let text = browser.client.find(Locator::Css(&format!("{} .download-status", item(&big)))).await?.text().await?;
    assert!(text.contains("cancelled"), "{text}");
    assert!(
        browser.client.find(Locator::Css(&format!("{} .download-cancel", item(&big)))).await.is_err(),
        "a cancelled download has no cancel button"
    );
    let done = num(&browser, &format!("{} .chunk-map", item(&big)), "data-done").await?;
    assert!(done < (BIG / (256 * 1024)) as u64, "the cancel came before the end ({done} chunks)");
    // The finished downloads are still listed with their save links.
    assert_eq!(saved(&browser, &a).await?, a_bytes);
    browser.screenshot("page-2-cancelled").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_survives_reload_and_reopen_and_a_second_tab_is_another_peer() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("page-id-tracker", Some(&e2e::web_dir()))?;
    let (browser, me) = open_app(&tracker, "page-id", "/").await?;
    let c = &browser.client;
    let (path, _) = random_file(tmp.path(), "mine.bin", 2 * MIB + 9, 51)?;
    let id = upload(&browser, &path).await?;
    let file = format!("/api/files/{id}");
    let v = wait_json(&tracker, &file, Duration::from_secs(10), |v| chunks_held_by(v, &me) > 0).await?;
    let n = chunk_count(&v);
    assert_eq!(browser.wait_attr("#tab-identity", "data-slot", Duration::from_secs(5)).await?, "0");

    // A reload: the same peer, its chunks still counted.
    c.refresh().await?;
    assert_eq!(browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?, me);
    wait_json(&tracker, &file, Duration::from_secs(10), |v| chunks_held_by(v, &me) == n).await?;

    // A second tab of the same origin, at the same time: another peer, with its own store.
    let first = c.window().await?;
    let second = c.new_window(true).await?;
    c.switch_to_window(second.handle.clone()).await?;
    c.goto(&tracker.http_url()).await?;
    let other = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_ne!(other, me, "two tabs never share an identity");
    assert_eq!(browser.wait_attr("#tab-identity", "data-slot", Duration::from_secs(5)).await?, "1");
    // Its own store: another IndexedDB database (the swarm may already be copying chunks
    // into it, so its size says nothing).
    let names = c
        .execute_async(
            "indexedDB.databases().then(d => arguments[0](d.map(x => x.name)), e => arguments[0]([String(e)]));",
            vec![],
        )
        .await?;
    let names: Vec<&str> = names.as_array().expect("names").iter().filter_map(|n| n.as_str()).collect();
    assert!(
        names.contains(&"peer-pressure") && names.contains(&"peer-pressure-1"),
        "the second tab has its own store: {names:?}"
    );

    // Close the first tab: its peer leaves the swarm; the file's chunks are not served by it.
    c.switch_to_window(first).await?;
    c.close_window().await?;
    c.switch_to_window(second.handle).await?;
    wait_json(&tracker, "/api/peers", Duration::from_secs(20), |v| peer_entry(v, &me).is_none()).await?;

    // Reopen the page in a new tab: the first identity comes back with its chunks.
    let third = c.new_window(true).await?;
    c.switch_to_window(third.handle).await?;
    c.goto(&tracker.http_url()).await?;
    assert_eq!(browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?, me);
    let peers = wait_json(&tracker, "/api/peers", Duration::from_secs(15), |v| {
        peer_entry(v, &me).is_some_and(|p| p["chunks"].as_u64() >= Some(n as u64))
    })
    .await?;
    assert!(peer_entry(&peers, &other).is_some(), "the second tab is still a peer: {peers}");
    wait_json(&tracker, &file, Duration::from_secs(10), |v| chunks_held_by(v, &me) == n).await?;
    browser.screenshot("page-3-identity-back").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storage_offer_is_the_users_choice_and_reaches_the_tracker() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("page-offer-tracker", Some(&e2e::web_dir()))?;
    let native = NativePeer::start("page-offer-n1", &tracker, &tmp.path().join("n1"))?;
    let (browser, me) = open_app(&tracker, "page-offer", "/").await?;
    let capacity = |v: &serde_json::Value| peer_entry(v, &me).and_then(|p| p["storage_capacity"].as_u64());

    // The default: a tenth of the quota, at most 2 GiB, reported as the tab's capacity.
    let offer = num(&browser, "#tab-offer", "data-offer-bytes").await?;
    assert!(offer > 0 && offer <= 2 << 30, "a modest default: {offer}");
    assert_eq!(browser.wait_attr("#tab-offer", "data-chosen", Duration::from_secs(5)).await?, "false");
    wait_json(&tracker, "/api/peers", Duration::from_secs(10), |v| capacity(v) == Some(offer)).await?;

    // The tab keeps replicas for the swarm (two peers, R=3: it is ordered to copy).
    let (path, _) = random_file(tmp.path(), "theirs.bin", 3 * MIB + 1, 61)?;
    let put = native.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    let file = format!("/api/files/{id}");
    let v = wait_json(&tracker, &file, Duration::from_secs(30), |v| {
        chunk_count(v) > 0 && chunks_held_by(v, &me) == chunk_count(v)
    })
    .await?;
    let n = chunk_count(&v);

    // The user offers 1 MiB: the tracker hears it, chunks kept for others above it go, and
    // the page says so.
    let input = browser.client.find(Locator::Css("#offer-input")).await?;
    input.send_keys("1").await?;
    browser.client.find(Locator::Css("#offer-save")).await?.click().await?;
    wait_json(&tracker, "/api/peers", Duration::from_secs(10), |v| capacity(v) == Some(MIB as u64)).await?;
    let dropped = num(&browser, "#offer-trim", "data-dropped-chunks").await?;
    assert!(dropped > 0, "chunks kept for the swarm were dropped");
    // (The page's counters refresh every 250 ms.)
    let started = Instant::now();
    loop {
        let held = num(&browser, "#tab-storage", "data-store-bytes").await?;
        if held <= MIB as u64 {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(5), "the store does not fit the offer: {held}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_json(&tracker, &file, Duration::from_secs(10), |v| chunks_held_by(v, &me) < n).await?;
    browser.screenshot("page-4-offer-lowered").await?;

    // The choice survives a reload.
    browser.client.refresh().await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_eq!(browser.wait_attr("#tab-offer", "data-chosen", Duration::from_secs(10)).await?, "true");
    assert_eq!(num(&browser, "#tab-offer", "data-offer-bytes").await?, MIB as u64);
    wait_json(&tracker, "/api/peers", Duration::from_secs(10), |v| capacity(v) == Some(MIB as u64)).await?;
    let persisted = browser.client.find(Locator::Css("#tab-storage")).await?.attr("data-persisted").await?;
    assert!(persisted.is_some_and(|p| p == "true" || p == "false"), "the page says whether persistence was granted");
    Ok(())
}

/// The page declares itself an app (a web manifest with a name, a start URL, standalone
/// display and an icon) that Chromium reads without errors; the manifest and the icon are
/// served by the tracker with their types.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_an_app_with_a_manifest_chromium_reads() -> anyhow::Result<()> {
    let tracker = Tracker::start("page-manifest-tracker", Some(&e2e::web_dir()))?;
    let (browser, _) = open_app(&tracker, "page-manifest", "/").await?;
    let session = browser.client.session_id().await?.unwrap_or_default();
    let m = e2e::cdp(browser.driver_port, &session, "Page.getAppManifest", serde_json::json!({}))?;
    assert!(m["url"].as_str().is_some_and(|u| u.ends_with("/manifest.webmanifest")), "{m}");
    assert_eq!(m["errors"].as_array().map(Vec::len), Some(0), "Chromium reads it without errors: {m}");
    let data: serde_json::Value = serde_json::from_str(m["data"].as_str().unwrap_or_default())?;
    assert_eq!((data["name"].as_str(), data["display"].as_str()), (Some("Peer Pressure"), Some("standalone")));
    assert_eq!(data["start_url"], "/");
    let icon = data["icons"][0]["src"].as_str().unwrap_or_default().to_string();
    let types: Vec<String> = browser
        .client
        .execute_async(
            "const [paths, done] = arguments;
             Promise.all(paths.map(p => fetch(p).then(r => r.ok ? r.headers.get('content-type') : 'HTTP ' + r.status)))
               .then(done, e => done([String(e)]));",
            vec![serde_json::json!(["/manifest.webmanifest", icon])],
        )
        .await
        .map(|v| serde_json::from_value(v).unwrap_or_default())?;
    assert_eq!(types, ["application/manifest+json", "image/svg+xml"]);
    Ok(())
}

/// The upload limit the user sets holds for everything the tab serves (what it sent never
/// outruns the limit's burst plus the rate since the page opened: a native peer's get and the
/// swarm's copies alike), and is kept across reloads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upload_limit_is_the_users_choice_holds_and_survives_a_reload() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("page-limit-tracker", Some(&e2e::web_dir()))?;
    let t0 = Instant::now();
    let (browser, _me) = open_app(&tracker, "page-limit", "/").await?;
    let limit = || async { browser.client.find(Locator::Css("#tab-upload-limit")).await?.attr("data-limit").await };
    assert_eq!(limit().await?, None, "no limit unless the user sets one");
    browser.client.find(Locator::Css("#upload-limit-input")).await?.send_keys("1").await?;
    browser.client.find(Locator::Css("#upload-limit-save")).await?.click().await?;
    assert_eq!(browser.wait_attr("#tab-upload-limit", "data-limit", Duration::from_secs(5)).await?, MIB.to_string());

    let (path, bytes) = random_file(tmp.path(), "limited.bin", 12 * MIB, 71)?;
    let id = upload(&browser, &path).await?;
    let native = NativePeer::start("page-limit-n1", &tracker, &tmp.path().join("n1"))?;
    let out = tmp.path().join("got.bin");
    native.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "the native peer got the tab's file");
    let sent = browser.num_attr_at_least("#dc-stats", "data-sent", bytes.len() as u64).await?;
    // The burst (one largest chunk, 4 MiB), the rate since the page opened, the chunk read
    // last, and frame headers. Unlimited, 12 MiB leave the tab in about a second.
    let allowed = (4 * MIB as u64) + MIB as u64 * t0.elapsed().as_millis() as u64 / 1000 + (320 << 10);
    assert!(sent <= allowed, "the tab sent {sent} bytes within its 1 MiB/s limit's {allowed}");

    browser.client.refresh().await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_eq!(browser.wait_attr("#tab-upload-limit", "data-limit", Duration::from_secs(10)).await?, MIB.to_string());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_links_are_absolute_copyable_and_open_the_file_elsewhere() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("page-share-tracker", Some(&e2e::web_dir()))?;
    let (browser, _me) = open_app(&tracker, "page-share", "/").await?;
    let (path, bytes) = random_file(tmp.path(), "shared.bin", 2 * MIB + 3, 71)?;
    let id = upload(&browser, &path).await?;
    let link = browser.wait_attr("#upload-result .share-box", "data-share-url", Duration::from_secs(10)).await?;
    assert_eq!(link, format!("{}/#/file/{id}", tracker.http_url()), "an absolute link to this page");

    // Copy: the clipboard holds the link (the test grants the permission a user would).
    let session = browser.client.session_id().await?.unwrap_or_default();
    e2e::cdp(
        browser.driver_port,
        &session,
        "Browser.grantPermissions",
        serde_json::json!({ "origin": tracker.http_url(), "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"] }),
    )?;
    browser.client.find(Locator::Css("#upload-result .copy-link")).await?.click().await?;
    assert_eq!(browser.wait_attr("#upload-result .copy-link", "data-copied", Duration::from_secs(5)).await?, "true");
    let clip = browser
        .client
        .execute_async("navigator.clipboard.readText().then(arguments[0], e => arguments[0]('ERROR ' + e))", vec![])
        .await?;
    assert_eq!(clip.as_str(), Some(link.as_str()), "the clipboard holds the link");

    // Another browser (another peer) opens the link and gets the file.
    let other = Browser::start("page-share-other").await?;
    other.client.goto(&link).await?;
    assert!(saved(&other, &id).await? == bytes, "the link opened the file elsewhere");

    // Pasting the link into the download box works too; a key on a public file's link is
    // refused (the link was tampered with or mixed up).
    let (third, _) = open_app(&tracker, "page-share-paste", "/").await?;
    start_download(&third, &format!("{link}?key={}", "A".repeat(43))).await?;
    let err = third.wait_text("#download-status", Duration::from_secs(20), |t| t.contains("key")).await?;
    assert!(err.contains("this file is public: its link needs no key"), "{err}");
    start_download(&third, &link).await?;
    assert!(saved(&third, &id).await? == bytes, "a pasted link downloads");
    other.screenshot("page-5-opened-link").await?;
    Ok(())
}

/// `pp-peer put PATH [flags]` as a user runs it (text output); returns the share link from the
/// line it prints (`Shared NAME (SIZE): LINK`).
fn put_printed_link(native: &NativePeer, path: &std::path::Path, flags: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new(e2e::bin("pp-peer"))
        .arg("--tracker")
        .arg(&native.tracker)
        .arg("--data-dir")
        .arg(&native.data_dir)
        .arg("put")
        .args(flags)
        .arg(path)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(out.status.success(), "pp-peer put failed: {}", String::from_utf8_lossy(&out.stderr));
    let line = stdout.lines().find(|l| l.starts_with("Shared ")).ok_or_else(|| anyhow::anyhow!("{stdout:?}"))?;
    let link = line.rsplit(": ").next().unwrap_or_default().trim();
    Ok(link.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_printed_by_pp_peer_put_open_in_the_page() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("page-put-tracker", Some(&e2e::web_dir()))?;
    let native = NativePeer::start("page-put-native", &tracker, &tmp.path().join("native"))?;
    let (pub_path, pub_bytes) = random_file(tmp.path(), "holiday-photos.bin", MIB + 17, 81)?;
    let (priv_path, priv_bytes) = random_file(tmp.path(), "tax-return-2026.bin", MIB + 29, 82)?;
    let pub_link = put_printed_link(&native, &pub_path, &[])?;
    let priv_link = put_printed_link(&native, &priv_path, &["--private"])?;
    let web = tracker.http_url();
    assert!(pub_link.starts_with(&format!("{web}/#/file/")), "{pub_link}");
    assert!(priv_link.starts_with(&format!("{web}/#/file/")) && priv_link.contains("?key="), "{priv_link}");
    let id_of = |link: &str| link.split("/file/").nth(1).unwrap_or_default().chars().take(64).collect::<String>();

    for (what, link, name, bytes) in [
        ("public", &pub_link, "holiday-photos.bin", &pub_bytes),
        ("private", &priv_link, "tax-return-2026.bin", &priv_bytes),
    ] {
        let browser = Browser::start(&format!("page-put-{what}")).await?;
        browser.client.goto(link).await?;
        let id = id_of(link);
        let got = saved(&browser, &id).await;
        browser.screenshot(&format!("page-6-put-link-{what}")).await?;
        assert!(got? == *bytes, "the {what} link printed by put opened the file's bytes");
        let save = browser.client.find(Locator::Css(&format!("{} .download-link", item(&id)))).await?;
        assert_eq!(save.attr("download").await?.as_deref(), Some(name), "the {what} file's real name");
        let shown = browser.client.find(Locator::Css(&format!("{} .name", item(&id)))).await?.text().await?;
        assert_eq!(shown, name, "the page shows the {what} file's name");
    }
    Ok(())
}

/// The tab's key record of `slot` as the page sees it: the peer id of its public key, whether
/// the private key refused `exportKey` (and with what), and whether it signs.
async fn key_record(browser: &Browser, slot: u32) -> anyhow::Result<(String, String, bool)> {
    let js = format!(
        r#"const done = arguments[0];
        const open = indexedDB.open("peer-pressure-keys");
        open.onerror = () => done({{ error: String(open.error) }});
        open.onsuccess = () => {{
          const get = open.result.transaction("keys").objectStore("keys").get({slot});
          get.onerror = () => done({{ error: String(get.error) }});
          get.onsuccess = async () => {{
            const rec = get.result;
            if (!rec) return done({{ error: "no key record" }});
            const hex = Array.from(rec.public, b => b.toString(16).padStart(2, "0")).join("");
            let exported = "exported";
            try {{ await crypto.subtle.exportKey("pkcs8", rec.private); }} catch (e) {{ exported = e.name; }}
            let signs = false;
            try {{ signs = (await crypto.subtle.sign("Ed25519", rec.private, new Uint8Array(8))).byteLength === 64; }} catch (e) {{}}
            done({{ public: hex, exported, extractable: rec.private.extractable, signs }});
          }};
        }};"#
    );
    let v = browser.client.execute_async(&js, vec![]).await?;
    anyhow::ensure!(v.get("error").is_none(), "key record of slot {slot}: {v}");
    let mut public = [0u8; 32];
    hex::decode_to_slice(v["public"].as_str().unwrap_or_default(), &mut public)?;
    anyhow::ensure!(v["extractable"] == false, "the private key is marked extractable: {v}");
    let id = swarm_core::PeerId::of_key(&public).0;
    Ok((id, v["exported"].as_str().unwrap_or_default().to_string(), v["signs"] == true))
}

async fn local_secret(browser: &Browser, slot: u32) -> anyhow::Result<serde_json::Value> {
    Ok(browser.client.execute(&format!("return localStorage.getItem('pp-secret-{slot}');"), vec![]).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tabs_key_is_non_extractable_and_a_legacy_secret_migrates_under_its_peer_id() -> anyhow::Result<()> {
    let tracker = Tracker::start("page-key-tracker", Some(&e2e::web_dir()))?;
    let browser = Browser::start("page-key").await?;
    let c = &browser.client;
    // A tab of an earlier version: its secret in localStorage before the app ever loads.
    c.goto(&format!("{}/api/stats", tracker.http_url())).await?;
    let secret = "5e".repeat(32);
    c.execute(&format!("localStorage.setItem('pp-secret-0', '{secret}');"), vec![]).await?;
    let before = swarm_core::PeerId::from_secret(&secret).0;
    c.goto(&tracker.http_url()).await?;
    // The tracker welcomed it (its proof signed with the migrated key): the same peer as before.
    assert_eq!(browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?, before);
    assert_eq!(local_secret(&browser, 0).await?, serde_json::Value::Null, "the secret is gone from localStorage");
    let (id, exported, signs) = key_record(&browser, 0).await?;
    assert_eq!(id, before, "the kept key is the secret's key");
    assert_eq!(exported, "InvalidAccessError", "the private key is not extractable");
    assert!(signs);
    wait_json(&tracker, "/api/peers", Duration::from_secs(10), |v| peer_entry(v, &before).is_some()).await?;

    // A reload: the kept key, the same peer, still no secret.
    c.refresh().await?;
    assert_eq!(browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?, before);
    assert_eq!(local_secret(&browser, 0).await?, serde_json::Value::Null);

    // A new identity (a second tab: slot 1) gets its key from WebCrypto, non-extractable, and joins.
    let second = c.new_window(true).await?;
    c.switch_to_window(second.handle).await?;
    c.goto(&tracker.http_url()).await?;
    let other = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_eq!(browser.wait_attr("#tab-identity", "data-slot", Duration::from_secs(5)).await?, "1");
    let (id, exported, signs) = key_record(&browser, 1).await?;
    assert_eq!(id, other, "the tracker welcomed the peer of the kept key");
    assert_eq!(exported, "InvalidAccessError", "the private key is not extractable");
    assert!(signs);
    assert_eq!(local_secret(&browser, 1).await?, serde_json::Value::Null, "no secret in localStorage");
    wait_json(&tracker, "/api/peers", Duration::from_secs(10), |v| peer_entry(v, &other).is_some()).await?;
    Ok(())
}
