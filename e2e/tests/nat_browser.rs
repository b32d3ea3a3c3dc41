//! The web app across real-looking networks (the NAT topology of `e2e::netns`): Chromium runs
//! inside a LAN host and downloads a file held by two native peers on LAN 1 (host `Lan1A`),
//! everything started with default flags.
//! - on the natives' LAN, the tab's data channels are direct and the relay carries nothing;
//! - (across two endpoint-independent NATs, tabs and natives punching through both ways:
//!   `browser_nat.rs`);
//! - behind a port-randomising NAT no data channel can open: the relay carries the file from
//!   the first chunk on, which arrives well under a second after the lookup.
//!
//! Each test checks the bytes, the path the swarm view shows, the tab's bytes by path and the
//! tracker's relay counter, and prints the time from the lookup to the first chunk. Needs root,
//! like every test of the topology; run them one at a time (`--test-threads=1`).

use anyhow::{ensure, Context};
use e2e::{Browser, Host, NativePeer, Topology, Tracker};
use fantoccini::Locator;
use std::time::{Duration, Instant};

const MIB: usize = 1024 * 1024;

/// What the tab showed after one download.
struct Transfer {
    /// The path of the tab's fetching link to each source, as the swarm view shows it.
    paths: Vec<String>,
    /// The tab's `#path-stats`: bytes received by path.
    direct_host: u64,
    direct_reflexive: u64,
    relay: u64,
    /// Bytes the tracker relayed during the download.
    relayed: u64,
    first_chunk_ms: u64,
    seconds: f64,
    size: u64,
}

fn stat(tracker: &Tracker, key: &str) -> anyhow::Result<u64> {
    tracker.get_json("/api/stats")?[key].as_u64().with_context(|| format!("no {key} in /api/stats"))
}

async fn num_attr(browser: &Browser, css: &str, attr: &str) -> anyhow::Result<u64> {
    Ok(browser.wait_attr(css, attr, Duration::from_secs(5)).await?.parse()?)
}

/// Two natives on `Lan1A` hold a random file of `size` bytes at R = 2; a tab on `getter`
/// downloads it.
async fn transfer(tag: &str, getter: Host, size: usize) -> anyhow::Result<Transfer> {
    let web = e2e::web_dir();
    ensure!(web.join("index.html").exists(), "no web app in {} (scripts/build-web.sh)", web.display());
    let net = Topology::build()?;
    let tracker = Tracker::start_in(&format!("{tag}-tracker"), &net, Some(&web), &["--replication", "2"])?;
    let tmp = tempfile::tempdir()?;
    let a = NativePeer::start_in(&format!("{tag}-a"), &net, Host::Lan1A, &tracker, &tmp.path().join("a"))?;
    let b = NativePeer::start_in(&format!("{tag}-b"), &net, Host::Lan1A, &tracker, &tmp.path().join("b"))?;
    let (id, bytes) = a.put_random(tmp.path(), &format!("{tag}.bin"), size, 9)?;
    tracker.wait_copies(&id, 2, Duration::from_secs(60))?;

    let browser = Browser::start_in(&format!("{tag}-tab"), &net, getter).await?;
    browser.client.goto(&format!("{}/", tracker.http_url())).await?;
    browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    for n in [&a, &b] {
        browser.wait_for(&format!("#swarm-peers tr[data-peer-id='{}']", n.peer_id), Duration::from_secs(10)).await?;
    }
    let relay_before = stat(&tracker, "relay_bytes")?;
    let c = &browser.client;
    c.find(Locator::Css("#download-id")).await?.send_keys(&id).await?;
    let t0 = Instant::now();
    c.find(Locator::Css("#download-button")).await?.click().await?;
    browser.wait_text("#download-status", Duration::from_secs(120), |t| t.contains("done")).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let relayed = stat(&tracker, "relay_bytes")? - relay_before;
    let href = browser.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    ensure!(browser.fetch_bytes(&href).await? == bytes, "the tab assembled other bytes than were put");
    let mut paths = Vec::new();
    for n in [&a, &b] {
        let css = format!("#swarm-peers tr[data-peer-id='{}'] .path[data-fetching='true']", n.peer_id);
        // A source the scheduler never needed has no link; the wait is short.
        if let Ok(p) = browser.wait_attr(&css, "data-path", Duration::from_secs(3)).await {
            paths.push(p);
        }
    }
    // The counters reach the page every 250 ms.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Transfer {
        paths,
        direct_host: num_attr(&browser, "#path-stats", "data-direct-host").await?,
        direct_reflexive: num_attr(&browser, "#path-stats", "data-direct-reflexive").await?,
        relay: num_attr(&browser, "#path-stats", "data-relay").await?,
        relayed,
        first_chunk_ms: num_attr(&browser, "#download-rate", "data-first-chunk-ms").await?,
        seconds,
        size: size as u64,
    };
    browser.screenshot(&format!("{tag}-tab-done")).await?;
    eprintln!(
        "{tag}: first chunk {} ms after the lookup, {:.2} s in all; paths {:?}; tab received \
         host {} / reflexive {} / relay {} bytes; tracker relayed {} of {} bytes",
        t.first_chunk_ms, t.seconds, t.paths, t.direct_host, t.direct_reflexive, t.relay, t.relayed, t.size
    );
    Ok(t)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_on_the_sources_lan_connects_directly() -> anyhow::Result<()> {
    let t = transfer("web-lan", Host::Lan1B, 16 * MIB).await?;
    // Every link is direct and the relay carries nothing. Which of the two direct labels the
    // tab shows is Chromium's word (the candidate types of the pair `getStats()` reports as
    // selected): with its host addresses hidden behind mDNS names, a pair on one LAN is
    // sometimes reported with a reflexive candidate, so the label is not asserted here.
    let direct = |p: &String| p == "direct_host" || p == "direct_reflexive";
    assert!(!t.paths.is_empty() && t.paths.iter().all(direct), "paths {:?}", t.paths);
    assert!(t.relayed < t.size / 20, "the tracker relayed {} of {} bytes", t.relayed, t.size);
    assert!(t.relay < t.size / 20, "the tab received {} bytes through the relay", t.relay);
    assert!(t.direct_host + t.direct_reflexive >= t.size * 19 / 20, "the file came over direct paths");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_behind_a_port_randomising_nat_gets_the_file_through_the_relay_at_once() -> anyhow::Result<()> {
    let t = transfer("web-nat3", Host::Lan3, 4 * MIB).await?;
    assert!(!t.paths.is_empty() && t.paths.iter().all(|p| p == "relay"), "paths {:?}", t.paths);
    assert!(t.relayed >= t.size, "the tracker relayed {} of {} bytes", t.relayed, t.size);
    assert!(t.relay >= t.size, "the tab received {} bytes through the relay", t.relay);
    // The relay starts 300 ms after the link, not after the WebRTC timeout; the bound is
    // loose for a loaded 2-core machine (the figure is printed).
    assert!(t.first_chunk_ms < 2_000, "first chunk {} ms after the lookup", t.first_chunk_ms);
    Ok(())
}
