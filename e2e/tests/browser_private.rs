//! Private files end to end, as a user meets them: a tab uploads with the "private" switch on;
//! a native peer (`pp-peer get <link>`) and a second tab (opening the link) get the same bytes
//! and the real name, and the second tab streams it (plaintext ranges through the service
//! worker, as its player reads); a native holder without the key keeps ciphertext only (checked on the
//! bytes at rest in its store); the name is nowhere in the tracker's index file or API, and the
//! file is in no search or listing. Real tracker, real `pp-peer`, headless Chromium, IndexedDB.
//! Both tabs' views pass the page's accessibility check (`e2e/src/axe.rs`).
//!
//! `bench_private_upload_in_the_tab` (ignored) prints the tab's upload time for a private file
//! against a public one of the same size, in the same run.

use e2e::axe::check_accessibility;
use e2e::{random_file, Browser, NativePeer, Tracker};
use fantoccini::Locator;
use std::path::Path;
use std::time::{Duration, Instant};

const MARKER: &str = "TOP SECRET rendezvous";

/// A text file whose every line names [`MARKER`], so that any plaintext at rest shows.
fn secret_file(dir: &Path, name: &str, len: usize) -> anyhow::Result<(std::path::PathBuf, Vec<u8>)> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{MARKER} at dawn, gate {i}\n"));
        i += 1;
    }
    s.truncate(len);
    let path = dir.join(name);
    std::fs::write(&path, s.as_bytes())?;
    Ok((path, s.into_bytes()))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every file under `dir` with its bytes.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else if let Ok(b) = std::fs::read(e.path()) {
            out.push((e.path(), b));
        }
    }
    out
}

async fn open_app(tracker: &Tracker, name: &str, path: &str) -> anyhow::Result<Browser> {
    let browser = Browser::start(name).await?;
    browser.client.goto(&format!("{}{path}", tracker.http_url())).await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    Ok(browser)
}

/// Uploads through the file input, the private switch set as asked; returns the file id and
/// the share link's fragment (`#/file/…`).
async fn upload(browser: &Browser, path: &Path, private: bool) -> anyhow::Result<(String, String)> {
    let c = &browser.client;
    let switch = c.find(Locator::Css("#upload-private")).await?;
    if switch.prop("checked").await?.as_deref() != Some(if private { "true" } else { "false" }) {
        switch.click().await?;
    }
    let before = c.find_all(Locator::Css(".upload-item.published")).await?.len();
    c.find(Locator::Css("#upload-input")).await?.send_keys(&path.to_string_lossy()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while c.find_all(Locator::Css(".upload-item.published")).await?.len() <= before {
        anyhow::ensure!(Instant::now() < deadline, "the upload was never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = browser.wait_attr("#upload-result", "data-file-id", Duration::from_secs(5)).await?;
    let href = browser.wait_attr("#upload-result a.share", "href", Duration::from_secs(5)).await?;
    let fragment = href[href.find('#').unwrap_or(0)..].to_string();
    Ok((id, fragment))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_upload_opens_only_through_its_link() -> anyhow::Result<()> {
    let web = e2e::web_dir();
    assert!(web.join("index.html").is_file(), "build the web app first (scripts/test.sh does): {}", web.display());
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("private-tracker", None)?;
    let holder = NativePeer::start("private-holder", &tracker, &tmp.path().join("holder"))?;
    let up = open_app(&tracker, "private-up", "/").await?;

    let name = "rendezvous-plan-k4.txt";
    let (path, bytes) = secret_file(tmp.path(), name, 700_000)?;
    let (id, fragment) = upload(&up, &path, true).await?;
    assert!(fragment.starts_with(&format!("#/file/{id}?key=")), "the share link carries the key: {fragment}");
    up.screenshot("private-1-uploaded").await?;
    check_accessibility(&up, "private upload").await?;

    // The native holder takes its copy without the key: ciphertext only at rest.
    tracker.wait_copies(&id, 2, Duration::from_secs(60))?;
    let at_rest = files_under(&holder.data_dir);
    assert!(at_rest.iter().any(|(p, _)| p.starts_with(holder.data_dir.join("chunks"))), "the holder keeps chunks");
    for (p, b) in &at_rest {
        assert!(!contains(b, MARKER.as_bytes()), "plaintext at rest in {}", p.display());
        assert!(!contains(b, name.as_bytes()), "the name at rest in {}", p.display());
    }
    // Nothing of the name in the tracker's index file or API; the file is in no listing.
    for (p, b) in files_under(&tracker.data_dir) {
        assert!(!contains(&b, name.as_bytes()), "the name is in the tracker's {}", p.display());
    }
    let detail = tracker.get_text(&format!("/api/files/{id}"))?;
    assert!(!detail.contains(name) && detail.contains(r#""name":"""#), "{detail}");
    for q in ["/api/files", "/api/search?q=", "/api/search?q=rendezvous"] {
        let text = tracker.get_text(q)?;
        assert!(!text.contains(&id) && !text.contains(name), "{q} lists the private file: {text}");
    }

    // A native peer opens the link: real name, real bytes.
    let link = format!("{}/{fragment}", tracker.http_url());
    let out = tmp.path().join("native-got.txt");
    let got = holder.cli_json(&["get", &link, "-o", &out.to_string_lossy()])?;
    assert_eq!(got["name"], name);
    assert!(std::fs::read(&out)? == bytes, "the native peer decrypted the tab's bytes");

    // A second tab opens the link: the real name on the page, the real bytes behind it.
    let down = open_app(&tracker, "private-down", &format!("/{fragment}")).await?;
    down.wait_text("#download-status", Duration::from_secs(90), |t| t.contains("done")).await?;
    down.screenshot("private-2-opened").await?;
    check_accessibility(&down, "private file opened").await?;
    let save = down.client.find(Locator::Css("#download-link")).await?;
    assert_eq!(save.attr("download").await?.as_deref(), Some(name), "the page shows the real name");
    let href = down.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    assert!(down.fetch_bytes(&href).await? == bytes, "the second tab decrypted the bytes");

    // The page streams it too (the player's path): plaintext ranges, decrypted chunk by chunk,
    // across a chunk boundary (a private chunk holds 262,128 plaintext bytes).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while down.client.execute("return !!navigator.serviceWorker?.controller;", vec![]).await? != true {
        anyhow::ensure!(std::time::Instant::now() < deadline, "no service worker controls the page");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let plain_chunk = swarm_core::envelope::PLAIN_CHUNK;
    let (a, b) = (plain_chunk - 500, plain_chunk + 499);
    let script = format!(
        "const done = arguments[0]; fetch('/stream/{id}', {{ headers: {{ Range: 'bytes={a}-{b}' }} }})\
         .then(async r => done([r.status, r.headers.get('content-range'), Array.from(new Uint8Array(await r.arrayBuffer()))]))\
         .catch(e => done(String(e)));"
    );
    let v = down.client.execute_async(&script, vec![]).await?;
    assert_eq!(v[0], 206, "{v}");
    assert_eq!(v[1], format!("bytes {a}-{b}/{}", bytes.len()), "plaintext offsets and size");
    let got: Vec<u8> = v[2].as_array().expect("bytes").iter().map(|x| x.as_u64().unwrap_or(256) as u8).collect();
    assert!(got == bytes[a..=b], "the stream served other bytes than the file's plaintext");

    // The bare id opens nothing (in a tab that never had the link): the page says it is private.
    let c = &up.client;
    c.find(Locator::Css("#download-id")).await?.send_keys(&id).await?;
    c.find(Locator::Css("#download-button")).await?.click().await?;
    up.wait_text("#download-status", Duration::from_secs(30), |t| t.contains("private")).await?;
    Ok(())
}

/// `cargo test --release -p e2e --test browser_private -- --ignored --nocapture bench_private`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run on purpose, prints figures"]
async fn bench_private_upload_in_the_tab() -> anyhow::Result<()> {
    const SIZE: usize = 32 * 1024 * 1024;
    let tmp = tempfile::tempdir()?;
    let tracker = Tracker::start("private-bench-tracker", None)?;
    let tab = open_app(&tracker, "private-bench", "/").await?;
    for (round, private) in [(0, false), (1, true), (2, false), (3, true)] {
        let (path, _) = random_file(tmp.path(), &format!("bench-{round}.bin"), SIZE, round)?;
        let t0 = Instant::now();
        upload(&tab, &path, private).await?;
        let secs = t0.elapsed().as_secs_f64();
        let kind = if private { "private" } else { "public " };
        println!("tab upload {kind} {} MiB: {secs:.2} s, {:.1} MB/s", SIZE >> 20, SIZE as f64 / secs / 1e6);
    }
    Ok(())
}
