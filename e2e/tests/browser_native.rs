//! The walking skeleton, end to end: a real tracker serving the built web app, a real native
//! peer, and headless Chromium driven through WebDriver. A file crosses browser → native and
//! another native → browser, byte for byte, over WebRTC data channels (proven by the peers'
//! data-channel counters and by the tracker carrying only a sliver of the bytes).

use e2e::{random_file, Browser, NativePeer, Tracker};
use fantoccini::Locator;
use std::time::Duration;

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
    Ok(())
}
