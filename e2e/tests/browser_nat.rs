//! Chromium across NATs (the topology of `e2e::netns`), in both directions, a tab on LAN 1
//! (host `Lan1A`) trading with peers behind other routers, everything with default settings:
//! - a tab and native peers on LAN 2 (two endpoint-independent NATs between them): the tab
//!   downloads a file the natives hold, and a native gets a file the tab uploaded, both over
//!   data channels punched with server-reflexive candidates (the tracker's STUN service, named
//!   to the tab in `welcome`);
//! - two tabs, on LAN 1 and LAN 2: one uploads, the other downloads, directly through both
//!   NATs;
//! - a tab and native peers on LAN 3 (a port-randomising NAT, so no data channel can open):
//!   the tracker relay carries the file both ways and the tab still gets it.
//!
//! Each transfer checks the bytes, the path each side shows (the tab's swarm view and its
//! bytes received by path, `pp-peer status --json` for natives) and the tracker's relay
//! counter: on direct paths, at most what relay-then-upgrade sends before a channel opens
//! ([`e2e::relay_allowance`]); the whole file on the relay.
//!
//! Sources hold a file at R = 2 (`--replication 2`) before anyone downloads it, so a
//! downloader's bytes come from its own download and not from a replication order; a file a
//! tab uploads is copied by the tracker's order to a peer on the other LAN, which is the
//! transfer checked. The page is served by the tracker from `PP_WEB_DIR` (default `dist/`) at
//! its public address: not a secure context, as for any plain-http deployment. Needs root;
//! run the tests one at a time (`--test-threads=1`).

use anyhow::{ensure, Context};
use e2e::{random_file, relay_allowance, Browser, Host, NativePeer, Topology, Tracker};
use fantoccini::Locator;
use std::path::Path;
use std::time::Duration;

const MIB: usize = 1024 * 1024;

/// Generous: a loaded 2-core machine runs two Chromiums and the peers.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(240);

/// One topology with a tracker serving the web app.
struct Swarm {
    // Dropped in this order: the tracker, then the namespaces.
    tracker: Tracker,
    net: Topology,
    tmp: tempfile::TempDir,
}

impl Swarm {
    fn start(tag: &str) -> anyhow::Result<Self> {
        let web = e2e::web_dir();
        ensure!(web.join("index.html").exists(), "no web app in {} (scripts/build-web.sh)", web.display());
        let net = Topology::build()?;
        let tracker = Tracker::start_in(&format!("{tag}-tracker"), &net, Some(&web), &["--replication", "2"])?;
        Ok(Self { tracker, net, tmp: tempfile::tempdir()? })
    }

    fn native(&self, name: &str, h: Host) -> anyhow::Result<NativePeer> {
        NativePeer::start_in(name, &self.net, h, &self.tracker, &self.tmp.path().join(name))
    }

    /// Opens the web app in a Chromium on `h`; returns the tab and its peer id.
    async fn tab(&self, name: &str, h: Host) -> anyhow::Result<(Browser, String)> {
        let browser = Browser::start_in(name, &self.net, h).await?;
        browser.client.goto(&format!("{}/", self.tracker.http_url())).await?;
        let id = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(60)).await?;
        Ok((browser, id))
    }

    fn relayed(&self) -> anyhow::Result<u64> {
        self.tracker.get_json("/api/stats")?["relay_bytes"].as_u64().context("no relay_bytes in /api/stats")
    }
}

/// Puts a random file on `src` and waits until it has 2 copies (the natives on one LAN).
async fn put_at_r2(
    s: &Swarm,
    src: &NativePeer,
    name: &str,
    size: usize,
    seed: u64,
) -> anyhow::Result<(String, Vec<u8>)> {
    let (id, bytes) = src.put_random(s.tmp.path(), name, size, seed)?;
    s.tracker.wait_copies(&id, 2, TRANSFER_TIMEOUT)?;
    Ok((id, bytes))
}

/// Waits until the tab's swarm view lists each peer.
async fn sees(tab: &Browser, peers: &[&str]) -> anyhow::Result<()> {
    for p in peers {
        tab.wait_for(&format!("#swarm-peers tr[data-peer-id='{p}']"), Duration::from_secs(30))
            .await
            .with_context(|| format!("the swarm view never listed peer {p}"))?;
    }
    Ok(())
}

/// Uploads a file through the tab's file input; returns its id.
async fn upload(tab: &Browser, path: &Path) -> anyhow::Result<String> {
    tab.client.find(Locator::Css("#upload-input")).await?.send_keys(&path.to_string_lossy()).await?;
    tab.wait_attr("#upload-result", "data-file-id", Duration::from_secs(120)).await
}

/// Downloads file `id` in the tab; returns the bytes it saved and how long after the lookup
/// its first chunk came (ms; none when every chunk was here already).
async fn download(tab: &Browser, id: &str) -> anyhow::Result<(Vec<u8>, Option<u64>)> {
    let c = &tab.client;
    let input = c.find(Locator::Css("#download-id")).await?;
    input.clear().await?;
    input.send_keys(id).await?;
    c.find(Locator::Css("#download-button")).await?.click().await?;
    tab.wait_text("#download-status", TRANSFER_TIMEOUT, |t| t.contains("done")).await?;
    let first = tab.wait_attr("#download-rate", "data-first-chunk-ms", Duration::from_secs(3)).await.ok();
    let first = first.and_then(|ms| ms.parse().ok());
    let href = tab.wait_attr("#download-link", "href", Duration::from_secs(5)).await?;
    ensure!(href.starts_with("blob:"), "the save link is a blob URL: {href}");
    Ok((tab.fetch_bytes(&href).await?, first))
}

/// The tab's bytes received on `path` (`#path-stats`, refreshed every 250 ms), once they
/// reach `at_least` or after a few seconds.
async fn tab_path_bytes(tab: &Browser, path: &str, at_least: u64) -> anyhow::Result<u64> {
    let attr = format!("data-{}", path.replace('_', "-"));
    tab.num_attr_at_least("#path-stats", &attr, at_least).await
}

/// The paths the tab's swarm view shows for its links to `peers` on which it fetches
/// (`fetching`) or serves; a peer without such a link adds nothing.
async fn tab_paths(tab: &Browser, peers: &[&str], fetching: bool) -> anyhow::Result<Vec<String>> {
    let mut paths = Vec::new();
    for p in peers {
        let css = format!("#swarm-peers tr[data-peer-id='{p}'] .path[data-fetching='{fetching}']");
        if let Ok(path) = tab.wait_attr(&css, "data-path", Duration::from_secs(3)).await {
            paths.push(path);
        }
    }
    Ok(paths)
}

/// A time to first chunk for messages.
fn ms(first: Option<u64>) -> String {
    first.map_or("- (every chunk was here already)".into(), |ms| format!("{ms} ms"))
}

/// A native's bytes received on `path` (`status --json`).
fn native_path_bytes(n: &NativePeer, path: &str) -> anyhow::Result<u64> {
    Ok(n.cli_json(&["status"])?["bytes_received_by_path"][path].as_u64().unwrap_or(0))
}

/// Each native gets file `id` (from what it holds, from the tab or from its neighbour); every
/// copy must equal `want`.
fn natives_get(s: &Swarm, natives: &[&NativePeer], id: &str, want: &[u8]) -> anyhow::Result<()> {
    for (i, n) in natives.iter().enumerate() {
        let out = s.tmp.path().join(format!("got-{id:.8}-{i}.bin"));
        n.cli_json(&["get", id, "-o", &out.to_string_lossy(), "--force"])?;
        ensure!(std::fs::read(&out)? == want, "native {} wrote other bytes than the tab uploaded", n.peer_id);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_and_native_peers_behind_another_nat_trade_directly_both_ways() -> anyhow::Result<()> {
    let s = Swarm::start("bnat2")?;
    let n1 = s.native("bnat2-n1", Host::Lan2)?;
    let n2 = s.native("bnat2-n2", Host::Lan2)?;
    let size = 8 * MIB + 123;
    let (id, bytes) = put_at_r2(&s, &n1, "from-native.bin", size, 31).await?;
    let (tab, _me) = s.tab("bnat2-tab", Host::Lan1A).await?;
    sees(&tab, &[&n1.peer_id, &n2.peer_id]).await?;

    // Native (LAN 2) → tab (LAN 1).
    let relay0 = s.relayed()?;
    let (got, first_ms) = download(&tab, &id).await?;
    ensure!(got == bytes, "the tab saved other bytes than the native put");
    let relayed = s.relayed()? - relay0;
    // What the relay may carry before the channels open (relay-then-upgrade) came otherwise.
    let direct_least = size as u64 - relay_allowance(size, 2);
    let reflexive = tab_path_bytes(&tab, "direct_reflexive", direct_least).await?;
    let paths = tab_paths(&tab, &[&n1.peer_id, &n2.peer_id], true).await?;
    tab.screenshot("bnat2-tab-downloaded").await?;
    eprintln!(
        "native → tab: first chunk {} after the lookup; paths {paths:?}; tab got {reflexive} bytes \
         reflexive; tracker relayed {relayed} of {size}",
        ms(first_ms)
    );
    assert!(!paths.is_empty() && paths.iter().all(|p| p == "direct_reflexive"), "the tab's paths: {paths:?}");
    assert!(reflexive >= direct_least, "the tab received {reflexive} of {size} bytes through the NATs");
    // The tab fetches from two natives.
    assert!(relayed <= relay_allowance(size, 2), "the tracker relayed {relayed} of {size} bytes");

    // Tab (LAN 1) → native (LAN 2): the tracker orders a native to copy the upload.
    let size = 6 * MIB + 45;
    let (path, bytes) = random_file(s.tmp.path(), "from-tab.bin", size, 32)?;
    let before: u64 = [&n1, &n2].iter().map(|n| native_path_bytes(n, "direct_reflexive")).sum::<anyhow::Result<_>>()?;
    let relay0 = s.relayed()?;
    let id = upload(&tab, &path).await?;
    s.tracker.wait_copies(&id, 2, TRANSFER_TIMEOUT)?;
    natives_get(&s, &[&n1, &n2], &id, &bytes)?;
    let relayed = s.relayed()? - relay0;
    let after: u64 = [&n1, &n2].iter().map(|n| native_path_bytes(n, "direct_reflexive")).sum::<anyhow::Result<_>>()?;
    let served = tab_paths(&tab, &[&n1.peer_id, &n2.peer_id], false).await?;
    tab.screenshot("bnat2-tab-uploaded").await?;
    eprintln!(
        "tab → native: natives got {} bytes reflexive; the tab serves on {served:?}; tracker relayed {relayed} of {size}",
        after - before
    );
    assert!(after - before >= size as u64, "the natives received {} of {size} bytes through the NATs", after - before);
    assert!(served.iter().any(|p| p == "direct_reflexive"), "the tab's serving links: {served:?}");
    // Two natives fetch from the tab.
    assert!(relayed <= relay_allowance(size, 2), "the tracker relayed {relayed} of {size} bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_behind_two_nats_trade_directly() -> anyhow::Result<()> {
    let s = Swarm::start("bnattabs")?;
    let (a, a_id) = s.tab("bnattabs-a", Host::Lan1A).await?;
    let (b, b_id) = s.tab("bnattabs-b", Host::Lan2).await?;
    sees(&a, &[&b_id]).await?;
    sees(&b, &[&a_id]).await?;

    let size = 8 * MIB + 77;
    let (path, bytes) = random_file(s.tmp.path(), "from-tab-a.bin", size, 33)?;
    let relay0 = s.relayed()?;
    let id = upload(&a, &path).await?;
    // Tab B is the only other peer: its download and the tracker's order to copy the file
    // (R = 2) fetch the same chunks from tab A, each once.
    let (got, first_ms) = download(&b, &id).await?;
    ensure!(got == bytes, "tab B saved other bytes than tab A uploaded");
    s.tracker.wait_copies(&id, 2, TRANSFER_TIMEOUT)?;
    let relayed = s.relayed()? - relay0;
    let direct_least = size as u64 - relay_allowance(size, 1);
    let reflexive = tab_path_bytes(&b, "direct_reflexive", direct_least).await?;
    let sent = a.num_attr_at_least("#dc-stats", "data-sent", size as u64).await?;
    let b_paths = tab_paths(&b, &[&a_id], true).await?;
    let a_paths = tab_paths(&a, &[&b_id], false).await?;
    a.screenshot("bnattabs-a").await?;
    b.screenshot("bnattabs-b").await?;
    eprintln!(
        "tab A → tab B: first chunk {} after the lookup; B fetches on {b_paths:?}, A serves on \
         {a_paths:?}; B got {reflexive} bytes reflexive, A sent {sent} over data channels; tracker relayed \
         {relayed} of {size}",
        ms(first_ms)
    );
    assert_eq!(b_paths, ["direct_reflexive"], "tab B's link to tab A");
    assert_eq!(a_paths, ["direct_reflexive"], "tab A's link to tab B");
    assert!(reflexive >= direct_least, "tab B received {reflexive} of {size} bytes through the NATs");
    assert!(sent >= size as u64, "tab A sent {sent} of {size} bytes over data channels");
    // Tab B fetches from tab A (its download and the order share one link).
    assert!(relayed <= relay_allowance(size, 1), "the tracker relayed {relayed} of {size} bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tab_and_native_peers_behind_a_port_randomising_nat_trade_through_the_relay() -> anyhow::Result<()> {
    let s = Swarm::start("bnat3")?;
    let n1 = s.native("bnat3-n1", Host::Lan3)?;
    let n2 = s.native("bnat3-n2", Host::Lan3)?;
    let size = 4 * MIB + 9;
    let (id, bytes) = put_at_r2(&s, &n1, "from-native.bin", size, 34).await?;
    let (tab, _me) = s.tab("bnat3-tab", Host::Lan1A).await?;
    sees(&tab, &[&n1.peer_id, &n2.peer_id]).await?;

    // Native (LAN 3) → tab (LAN 1).
    let relay0 = s.relayed()?;
    let (got, first_ms) = download(&tab, &id).await?;
    ensure!(got == bytes, "the tab saved other bytes than the native put");
    let relayed = s.relayed()? - relay0;
    let on_relay = tab_path_bytes(&tab, "relay", size as u64).await?;
    let paths = tab_paths(&tab, &[&n1.peer_id, &n2.peer_id], true).await?;
    tab.screenshot("bnat3-tab-downloaded").await?;
    eprintln!(
        "native → tab: first chunk {} after the lookup; paths {paths:?}; tab got {on_relay} bytes \
         on the relay; tracker relayed {relayed} of {size}",
        ms(first_ms)
    );
    assert!(!paths.is_empty() && paths.iter().all(|p| p == "relay"), "the tab's paths: {paths:?}");
    assert!(on_relay >= size as u64, "the tab received {on_relay} of {size} bytes through the relay");
    assert!(relayed >= size as u64, "the tracker relayed {relayed} of {size} bytes");

    // Tab (LAN 1) → native (LAN 3).
    let size = 3 * MIB + 1;
    let (path, bytes) = random_file(s.tmp.path(), "from-tab.bin", size, 35)?;
    let before: u64 = [&n1, &n2].iter().map(|n| native_path_bytes(n, "relay")).sum::<anyhow::Result<_>>()?;
    let relay0 = s.relayed()?;
    let id = upload(&tab, &path).await?;
    s.tracker.wait_copies(&id, 2, TRANSFER_TIMEOUT)?;
    natives_get(&s, &[&n1, &n2], &id, &bytes)?;
    let relayed = s.relayed()? - relay0;
    let after: u64 = [&n1, &n2].iter().map(|n| native_path_bytes(n, "relay")).sum::<anyhow::Result<_>>()?;
    eprintln!("tab → native: natives got {} bytes on the relay; tracker relayed {relayed} of {size}", after - before);
    assert!(after - before >= size as u64, "the natives received {} of {size} bytes through the relay", after - before);
    assert!(relayed >= size as u64, "the tracker relayed {relayed} of {size} bytes");
    Ok(())
}
