//! The NAT topology of `e2e::netns` behaves like the internet it stands for; later tests of
//! peers behind NAT rely on each property checked here:
//! - every host reaches the real tracker over TCP, and the tracker sees a LAN host as its
//!   router's public address; native peers started in hosts join the swarm;
//! - private addresses are private: hosts on one LAN reach each other directly, nothing
//!   reaches another LAN's hosts, and no router forwards a port;
//! - routers 1 and 2 keep a UDP flow's public port whatever its destination (hole punching
//!   works), router 3 (`--random-fully`) gives every destination another port;
//! - Chromium inside a LAN host loads the web app from the tracker's public address and the
//!   tab joins the swarm.
//!
//! Needs root, iproute2, iptables and socat (scripts/setup.sh installs them); every test fails,
//! rather than skips, where the topology cannot be made. Run them one at a time
//! (`--test-threads=1`), like the other end-to-end tests.

use anyhow::{bail, ensure, Context};
use e2e::{spawn_until, Browser, Host, NativePeer, Proc, Topology, Tracker};
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

const PROBE: &str = env!("CARGO_BIN_EXE_pp-netprobe");

/// Starts a `pp-netprobe` echo server (`udp-echo` or `tcp-echo`) inside host `h`.
fn echo(net: &Topology, h: Host, kind: &str, ports: &[u16]) -> anyhow::Result<Proc> {
    let mut cmd = net.command(h, PROBE);
    cmd.arg(kind).args(ports.iter().map(u16::to_string));
    let name = format!("nat-{kind}-{h:?}").to_lowercase();
    spawn_until(cmd, &name, "ready").map(|(p, _)| p)
}

/// Runs a `pp-netprobe` probe inside host `h`: `Ok` with the address each destination saw
/// us as, or `Err` with the probe's error when it could not reach one.
fn probe(net: &Topology, h: Host, args: &[String]) -> anyhow::Result<Result<Vec<SocketAddr>, String>> {
    let out = net.command(h, PROBE).args(args).output().context("cannot run pp-netprobe")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Ok(Err(text.trim().to_string()));
    }
    let seen = text
        .lines()
        .map(|l| {
            l.split_whitespace().nth(1).and_then(|a| a.parse().ok()).with_context(|| format!("probe printed {l:?}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Ok(seen))
}

fn tcp_probe(net: &Topology, from: Host, to: Ipv4Addr, port: u16) -> anyhow::Result<Result<SocketAddr, String>> {
    Ok(probe(net, from, &["tcp-probe".into(), SocketAddrV4::new(to, port).to_string(), "2000".into()])?
        .map(|seen| seen[0]))
}

#[test]
fn every_host_reaches_the_tracker_and_appears_as_its_router() -> anyhow::Result<()> {
    let net = Topology::build()?;
    let tracker = Tracker::start_in("nat-tracker", &net, None, &[])?;
    let stats_url = format!("{}/api/stats", tracker.http_url());
    for h in Host::ALL {
        let out = net.command(h, "curl").args(["-sS", "--fail", "--max-time", "10", &stats_url]).output()?;
        ensure!(
            out.status.success(),
            "{} cannot GET {stats_url}: {}",
            net.describe(h),
            String::from_utf8_lossy(&out.stderr)
        );
        let stats: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{stats_url} answered {:?}", String::from_utf8_lossy(&out.stdout)))?;
        ensure!(stats.is_object(), "stats: {stats}");
    }

    // Who the public side sees: a LAN host is its router's WAN address.
    let _echo = echo(&net, Host::Tracker, "tcp-echo", &[7100])?;
    for h in Host::ALL {
        let seen = tcp_probe(&net, h, net.tracker_ip(), 7100)?
            .map_err(|e| anyhow::anyhow!("{} cannot reach the tracker host: {e}", net.describe(h)))?;
        assert_eq!(seen.ip(), net.public_ip(h), "the tracker host sees {} as {seen}", net.describe(h));
    }

    // Native peers with default flags join from behind their NATs, and their commands run in
    // the same namespace.
    let tmp = tempfile::tempdir()?;
    let a = NativePeer::start_in("nat-peer-lan1a", &net, Host::Lan1A, &tracker, &tmp.path().join("a"))?;
    let c = NativePeer::start_in("nat-peer-lan3", &net, Host::Lan3, &tracker, &tmp.path().join("c"))?;
    let peers = tracker.get_json("/api/peers")?;
    for p in [&a, &c] {
        let listed = peers["peers"].as_array().into_iter().flatten().any(|x| x["id"] == p.peer_id.as_str());
        ensure!(listed, "the tracker lists peer {}: {peers}", p.peer_id);
        p.cli_json(&["status"])?;
    }
    Ok(())
}

#[test]
fn private_addresses_are_reachable_only_from_their_own_lan() -> anyhow::Result<()> {
    let net = Topology::build()?;
    let _echoes =
        Host::ALL.into_iter().map(|h| echo(&net, h, "tcp-echo", &[7200])).collect::<anyhow::Result<Vec<_>>>()?;
    for from in Host::ALL {
        for to in Host::ALL.into_iter().filter(|to| *to != from) {
            let got = tcp_probe(&net, from, net.ip(to), 7200)?;
            let (what, from_d, to_d) = ("reach", net.describe(from), net.describe(to));
            match (to, from.lan() == to.lan()) {
                // The tracker's address is public: everyone reaches it, through their NAT.
                (Host::Tracker, _) => {
                    let seen = got.map_err(|e| anyhow::anyhow!("{from_d} cannot {what} {to_d}: {e}"))?;
                    assert_eq!(seen.ip(), net.public_ip(from), "{to_d} sees {from_d} as {seen}");
                }
                // Same LAN: directly, with the host's own address.
                (_, true) => {
                    let seen = got.map_err(|e| anyhow::anyhow!("{from_d} cannot {what} {to_d} on its LAN: {e}"))?;
                    assert_eq!(seen.ip(), net.ip(from), "{to_d} sees {from_d} as {seen}");
                }
                (_, false) => {
                    if let Ok(seen) = got {
                        bail!("{from_d} reached the private address of {to_d} (seen as {seen})");
                    }
                }
            }
        }
    }
    // No router forwards a port: unsolicited connections to a WAN address end at the router.
    for (from, to) in [(Host::Tracker, Host::Lan1A), (Host::Lan2, Host::Lan1A), (Host::Lan1A, Host::Lan3)] {
        if let Ok(seen) = tcp_probe(&net, from, net.public_ip(to), 7200)? {
            bail!(
                "{} reached {}'s public address {} (seen as {seen})",
                net.describe(from),
                net.describe(to),
                net.public_ip(to)
            );
        }
    }
    Ok(())
}

#[test]
fn routers_1_and_2_keep_a_flows_port_for_every_destination_router_3_does_not() -> anyhow::Result<()> {
    let net = Topology::build()?;
    let ports = [7301, 7302, 7303];
    let _echo = echo(&net, Host::Tracker, "udp-echo", &ports)?;
    let mut args = vec!["udp-probe".to_string(), "40000".to_string()];
    args.extend(ports.iter().map(|p| SocketAddrV4::new(net.tracker_ip(), *p).to_string()));
    for h in [Host::Lan1A, Host::Lan2, Host::Lan3] {
        let seen = probe(&net, h, &args)?.map_err(|e| anyhow::anyhow!("{}: {e}", net.describe(h)))?;
        ensure!(seen.len() == ports.len(), "{}: one answer per destination: {seen:?}", net.describe(h));
        for s in &seen {
            assert_eq!(s.ip(), net.public_ip(h), "{} is seen as its router: {seen:?}", net.describe(h));
        }
        let distinct: BTreeSet<u16> = seen.iter().map(SocketAddr::port).collect();
        if h == Host::Lan3 {
            ensure!(distinct.len() > 1, "router 3 (--random-fully) gave every destination one port: {seen:?}");
        } else {
            ensure!(distinct.len() == 1, "{} got a port per destination: {seen:?}", net.describe(h));
        }
        println!("{}: seen as {seen:?}", net.describe(h));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_in_a_lan_host_loads_the_app_from_the_public_tracker_and_joins() -> anyhow::Result<()> {
    let web = e2e::web_dir();
    ensure!(
        web.join("index.html").exists(),
        "no web app in {} (scripts/build-web.sh builds it; PP_WEB_DIR points elsewhere)",
        web.display()
    );
    let net = Topology::build()?;
    let tracker = Tracker::start_in("nat-web-tracker", &net, Some(&web), &[])?;
    let browser = Browser::start_in("nat-lan1a", &net, Host::Lan1A).await?;
    browser.client.goto(&format!("{}/", tracker.http_url())).await?;
    let id = browser.wait_attr("#peer-id", "data-peer-id", Duration::from_secs(30)).await?;
    browser.screenshot("nat-lan1a-app").await?;

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let peers = tracker.get_json("/api/peers")?;
        let me = peers["peers"].as_array().into_iter().flatten().find(|p| p["id"] == id.as_str());
        if let Some(me) = me {
            assert_eq!(me["kind"], "browser", "the tab joined as a browser peer: {me}");
            break;
        }
        ensure!(Instant::now() < deadline, "the tracker never listed the tab's peer {id}: {peers}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The CDP helper reaches chromedriver through the same forward.
    let session = browser.client.session_id().await?.unwrap_or_default();
    let href = e2e::cdp(
        browser.driver_port,
        &session,
        "Runtime.evaluate",
        serde_json::json!({ "expression": "location.href", "returnByValue": true }),
    )?;
    assert_eq!(href["result"]["value"], format!("{}/", tracker.http_url()), "CDP answered {href}");
    Ok(())
}
