//! The walking skeleton, end to end: a real tracker serving the built web app, a real native
//! peer, and headless Chromium driven through WebDriver. A file crosses browser → native and
//! another native → browser, byte for byte, over WebRTC data channels (proven by the peers'
//! data-channel counters and by the tracker carrying only a sliver of the bytes); the swarm
//! view shows the link's path (`direct_host` on loopback) and the bytes received by path.
//!
//! Relay, then upgrade: a tab that cannot open a data channel to its source (a native peer
//! with `--relay-only`, or a tab whose WebRTC may not use UDP) gets its first chunk through the
//! tracker relay within a fraction of a second of the lookup, shows the path `relay` and
//! reports its bytes by path to the tracker; a link that starts on the relay moves to the data
//! channel when it opens.

use e2e::{random_file, Browser, NativePeer, Tracker};
use fantoccini::Locator;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;
const SIZE_UP: usize = 2 * 1024 * 1024 + 12_345;
const SIZE_DOWN: usize = 3 * 1024 * 1024 + 777;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_crosses_browser_and_native_over_webrtc() -> anyhow::Result<()> {
    let web = e2e::web_dir();
    assert!(web.join("index.html").is_file(), "build the web app first (scripts/test.sh does): {}", web.display());
    let tmp = tempfile::tempdir()?;
    // No --web-dir: the tracker serves the web app embedded in its binary.
    let tracker = Tracker::start("skeleton-tracker", None)?;
    let native = NativePeer::start("skeleton-native", &tracker, &tmp.path().join("native"))?;
    let browser = Browser::start("skeleton").await?;
    let c = &browser.client;

    c.goto(&tracker.http_url()).await?;
    let browser_id = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    assert_eq!(browser_id.len(), 32, "the page shows its peer id");
    browser.screenshot("skeleton-1-connected").await?;

    // Browser -> native: upload through the file input, download with the native CLI.
    let (up_path, up_bytes) = random_file(tmp.path(), "from-browser.bin", SIZE_UP, 1)?;
    c.find(Locator::Css("#upload-input")).await?.send_keys(&up_path.to_string_lossy()).await?;
    let up_id = browser.wait_attr("#upload-result", "data-file-id", Duration::from_secs(60)).await?;
    browser.screenshot("skeleton-2-uploaded").await?;
    let out = tmp.path().join("native-got.bin");
    let got = native.cli_json(&["get", &up_id, "-o", &out.to_string_lossy()])?;
    assert_eq!(got["size"], SIZE_UP);
    assert!(std::fs::read(&out)? == up_bytes, "native peer wrote the bytes the page uploaded");
    let status = native.cli_json(&["status"])?;
    let native_dc_in = status["data_channel_bytes_received"].as_u64().unwrap();
    assert!(native_dc_in >= SIZE_UP as u64, "native received the file over its data channel: {status}");

    // Native -> browser: put with the native CLI, download in the page.
    let (down_path, down_bytes) = random_file(tmp.path(), "from-native.bin", SIZE_DOWN, 2)?;
    let put = native.cli_json(&["put", &down_path.to_string_lossy()])?;
    let down_id = put["files"][0]["id"].as_str().unwrap().to_string();
    c.find(Locator::Css("#download-id")).await?.send_keys(&down_id).await?;
    c.find(Locator::Css("#download-button")).await?.click().await?;
    browser.wait_text("#download-status", Duration::from_secs(90), |t| t.contains("done")).await?;
    browser.screenshot("skeleton-3-downloaded").await?;
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    let page_bytes = browser.fetch_bytes(&href).await?;
    assert_eq!(page_bytes.len(), SIZE_DOWN);
    assert!(page_bytes == down_bytes, "the page assembled the bytes the native peer put");

    // Proof of path: the page's data channels carried the file, the tracker did not.
    let received = browser.num_attr_at_least("#dc-stats", "data-received", SIZE_DOWN as u64).await?;
    let sent = browser.num_attr_at_least("#dc-stats", "data-sent", SIZE_UP as u64).await?;
    assert!(received >= SIZE_DOWN as u64, "page received {received} bytes over data channels");
    assert!(sent >= SIZE_UP as u64, "page sent {sent} bytes over data channels");
    let stats = tracker.get_json("/api/stats")?;
    let ws_bytes = stats["ws_bytes_in"].as_u64().unwrap() + stats["ws_bytes_out"].as_u64().unwrap();
    assert!(stats["signals_relayed"].as_u64().unwrap() >= 2, "{stats}");
    assert!(
        ws_bytes < (SIZE_UP + SIZE_DOWN) as u64 / 10,
        "the tracker carried {ws_bytes} bytes: file data must not pass through it ({stats})"
    );
    assert_eq!(stats["relay_bytes"], 0);

    // The swarm view shows the path of the tab's link to the native peer, and the bytes it
    // received by path.
    let row = format!("#swarm-peers tr[data-peer-id='{}']", native.peer_id);
    let path =
        browser.wait_attr(&format!("{row} .path[data-fetching='true']"), "data-path", Duration::from_secs(10)).await?;
    assert_eq!(path, "direct_host", "a loopback data channel is a direct path between host candidates");
    let host = browser.num_attr_at_least("#path-stats", "data-direct-host", SIZE_DOWN as u64).await?;
    assert!(host >= SIZE_DOWN as u64, "the file came over the direct path: {host} bytes");
    assert_eq!(num_attr(&browser, "#path-stats", "data-relay").await?, 0, "nothing through the relay");
    browser.screenshot("skeleton-4-paths").await?;
    Ok(())
}

async fn num_attr(browser: &Browser, css: &str, attr: &str) -> anyhow::Result<u64> {
    Ok(browser.wait_attr(css, attr, Duration::from_secs(5)).await?.parse()?)
}

/// A tracker at R = 2 and two native peers (started with `flags`) holding a random file of
/// `size` bytes at R = 2, so a tab that joins gets no replication orders: every chunk it
/// stores comes from its own download. Returns the file's id and bytes.
struct TwoSources {
    tracker: Tracker,
    natives: [NativePeer; 2],
    id: String,
    bytes: Vec<u8>,
}

impl TwoSources {
    async fn start(name: &str, flags: &[&str], size: usize, tmp: &std::path::Path) -> anyhow::Result<Self> {
        let tracker =
            Tracker::start_with(&format!("{name}-tracker"), None, &tmp.join("tracker"), 0, &["--replication", "2"])?;
        let native = |i: usize| {
            NativePeer::start_with(&format!("{name}-n{i}"), &tracker.ws_url(), &tmp.join(format!("n{i}")), flags, &[])
        };
        let natives = [native(0)?, native(1)?];
        let (path, bytes) = random_file(tmp, &format!("{name}.bin"), size, 3)?;
        let put = natives[0].cli_json(&["put", &path.to_string_lossy()])?;
        let id = put["files"][0]["id"].as_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(60);
        while tracker.get_json(&format!("/api/files/{id}"))?["health"]["min_copies"].as_u64() < Some(2) {
            anyhow::ensure!(Instant::now() < deadline, "the file never reached 2 copies");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { tracker, natives, id, bytes })
    }

    /// The path the swarm view shows for the tab's fetching link to each native it used.
    async fn paths_shown(&self, browser: &Browser) -> Vec<String> {
        let mut paths = Vec::new();
        for n in &self.natives {
            let css = format!("#swarm-peers tr[data-peer-id='{}'] .path[data-fetching='true']", n.peer_id);
            if let Ok(p) = browser.wait_attr(&css, "data-path", Duration::from_secs(3)).await {
                paths.push(p);
            }
        }
        paths
    }
}

/// Downloads the file of `swarm` in a fresh tab (`prefs`: its Chromium profile preferences)
/// and checks the tab got it through the relay: the bytes, the path shown, the counters, the
/// report to the tracker. Returns the time from the lookup to the first chunk as the tab
/// measured it (ms), and from the click to the end.
async fn download_through_relay(
    name: &str,
    swarm: &TwoSources,
    prefs: serde_json::Value,
) -> anyhow::Result<(u64, Duration)> {
    let size = swarm.bytes.len() as u64;
    let browser = Browser::start_with(name, &[], prefs).await?;
    browser.client.goto(&swarm.tracker.http_url()).await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    // The peers list is on the page before the download starts (the rows that show the path).
    for n in &swarm.natives {
        browser.wait_for(&format!("#swarm-peers tr[data-peer-id='{}']", n.peer_id), Duration::from_secs(10)).await?;
    }
    let c = &browser.client;
    c.find(Locator::Css("#download-id")).await?.send_keys(&swarm.id).await?;
    let t0 = Instant::now();
    c.find(Locator::Css("#download-button")).await?.click().await?;
    browser.wait_text("#download-status", Duration::from_secs(60), |t| t.contains("done")).await?;
    let total = t0.elapsed();
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    assert!(browser.fetch_bytes(&href).await? == swarm.bytes, "the relayed bytes are intact");
    let paths = swarm.paths_shown(&browser).await;
    assert!(!paths.is_empty() && paths.iter().all(|p| p == "relay"), "the swarm view shows the relay: {paths:?}");
    let relayed = browser.num_attr_at_least("#path-stats", "data-relay", size).await?;
    assert!(relayed >= size, "the file came through the relay: {relayed} bytes");
    assert_eq!(num_attr(&browser, "#path-stats", "data-direct-host").await?, 0, "nothing over a data channel");
    let first = num_attr(&browser, "#download-rate", "data-first-chunk-ms").await?;
    browser.screenshot(&format!("{name}-relayed")).await?;
    // The tab tells the tracker (ClientMsg::Paths, at most every 5 s): the peers' reported
    // bytes by path in /api/stats include what it received through the relay.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let stats = swarm.tracker.get_json("/api/stats")?;
        let reported = stats["reported_bytes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e[0] == "relay")
            .and_then(|e| e[1].as_u64())
            .unwrap_or(0);
        if reported >= size {
            break;
        }
        assert!(Instant::now() < deadline, "the tracker never heard of the relayed bytes: {stats}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok((first, total))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_peers_serve_a_tab_at_once() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let swarm = TwoSources::start("relay-only", &["--relay-only"], 2 * MIB + 99, tmp.path()).await?;
    let (first, total) = download_through_relay("relay-only", &swarm, serde_json::Value::Null).await?;
    println!("relay-only sources: first chunk {first} ms after the lookup; click to done {:.2} s", total.as_secs_f64());
    assert!(first < 2_000, "the first chunk must not wait for WebRTC: {first} ms");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tab_without_udp_starts_on_the_relay_while_webrtc_tries() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let swarm = TwoSources::start("no-udp", &[], 2 * MIB + 99, tmp.path()).await?;
    // No UDP for WebRTC in this tab: the native peers accept the offer, but no candidate pair
    // can ever work; the relay must not wait for the attempt to time out.
    let no_udp = serde_json::json!({ "webrtc": { "ip_handling_policy": "disable_non_proxied_udp" } });
    let (first, total) = download_through_relay("no-udp", &swarm, no_udp).await?;
    println!(
        "unreachable sources: first chunk {first} ms after the lookup; click to done {:.2} s",
        total.as_secs_f64()
    );
    assert!(first < 2_000, "the first chunk must not wait for WebRTC: {first} ms");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_starts_on_the_relay_and_upgrades_to_the_data_channel() -> anyhow::Result<()> {
    // Large enough that the relay cannot have asked for every chunk before the channels open
    // (16 requests in flight per peer, a few hundred ms to open on a busy machine).
    const SIZE: usize = 24 * MIB + 5;
    let tmp = tempfile::tempdir()?;
    let swarm = TwoSources::start("upgrade", &[], SIZE, tmp.path()).await?;
    // `relay_after=0`: each link sends through the relay from its first request, while its
    // data channel opens; then new requests take the channel.
    let browser = Browser::start("upgrade").await?;
    browser.client.goto(&format!("{}/?relay_after=0", swarm.tracker.http_url())).await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    let c = &browser.client;
    c.find(Locator::Css("#download-id")).await?.send_keys(&swarm.id).await?;
    c.find(Locator::Css("#download-button")).await?.click().await?;
    browser.wait_text("#download-status", Duration::from_secs(90), |t| t.contains("done")).await?;
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    assert!(browser.fetch_bytes(&href).await? == swarm.bytes, "the bytes are intact across the switch");
    let paths = swarm.paths_shown(&browser).await;
    assert!(!paths.is_empty() && paths.iter().all(|p| p == "direct_host"), "the links end on data channels: {paths:?}");
    let relayed = num_attr(&browser, "#path-stats", "data-relay").await?;
    let direct = browser.num_attr_at_least("#path-stats", "data-direct-host", SIZE as u64 - relayed).await?;
    println!("upgrade: {relayed} bytes through the relay, then {direct} over the data channels");
    assert!(relayed > 0, "the first requests went through the relay");
    assert!(direct > 0, "later requests took the data channels");
    assert!(relayed + direct >= SIZE as u64, "every byte came one way or the other");
    let first = num_attr(&browser, "#download-rate", "data-first-chunk-ms").await?;
    println!("upgrade: first chunk {first} ms after the lookup");
    browser.screenshot("upgrade-done").await?;
    Ok(())
}
