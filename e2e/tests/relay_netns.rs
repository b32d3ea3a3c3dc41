//! Hostile networks: two peers in network namespaces of their own that can reach the
//! tracker but not each other (no route between them: every UDP datagram between them is
//! dropped), so no WebRTC data channel can open. They still exchange chunks, through the
//! tracker's data relay. Needs root and iproute2 (scripts/setup.sh installs it; CI runs as
//! root); it fails, rather than skips, where namespaces cannot be made.

use anyhow::{bail, Context};
use e2e::{random_file, NativePeer, Proc};
use std::process::Command;
use std::time::Duration;

/// Three namespaces: the tracker's, and A's and B's, each linked to the tracker's only.
struct Net {
    tag: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip").args(args).output().context("cannot run `ip` (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Net {
    fn create() -> anyhow::Result<Self> {
        let tag = format!("{}", std::process::id() % 100_000);
        let net = Net { tag: tag.clone() };
        for ns in [net.ns("t"), net.ns("a"), net.ns("b")] {
            ip(&["netns", "add", &ns])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        for (side, subnet) in [("a", 1), ("b", 2)] {
            let (peer_if, trk_if) = (format!("pp{side}{tag}"), format!("pt{side}{tag}"));
            ip(&["link", "add", &peer_if, "type", "veth", "peer", "name", &trk_if])?;
            ip(&["link", "set", &peer_if, "netns", &net.ns(side)])?;
            ip(&["link", "set", &trk_if, "netns", &net.ns("t")])?;
            ip(&["-n", &net.ns(side), "addr", "add", &format!("10.77.{subnet}.2/24"), "dev", &peer_if])?;
            ip(&["-n", &net.ns(side), "link", "set", &peer_if, "up"])?;
            ip(&["-n", &net.ns("t"), "addr", "add", &format!("10.77.{subnet}.1/24"), "dev", &trk_if])?;
            ip(&["-n", &net.ns("t"), "link", "set", &trk_if, "up"])?;
        }
        Ok(net)
    }

    fn ns(&self, side: &str) -> String {
        format!("pp{side}{}", self.tag)
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for side in ["t", "a", "b"] {
            let _ = ip(&["netns", "del", &self.ns(side)]);
        }
    }
}

#[test]
fn peers_that_cannot_reach_each_other_exchange_chunks_through_the_relay() -> anyhow::Result<()> {
    let net = Net::create().context("cannot create network namespaces (this test needs root)")?;
    let tmp = tempfile::tempdir()?;
    let port = 18_000 + (std::process::id() % 1000) as u16;
    let log = std::fs::File::create(e2e::artifacts_dir().join("relay-tracker.log"))?;
    let tracker = Command::new("ip")
        .args(["netns", "exec", &net.ns("t")])
        .arg(e2e::bin("pp-tracker"))
        .args(["--listen", &format!("0.0.0.0:{port}"), "--replication", "2", "--data-dir"])
        .arg(tmp.path().join("tracker"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let _tracker = Proc { child: tracker, name: "tracker".into() };
    std::thread::sleep(Duration::from_millis(500));
    let start = |side: &str, subnet: u8| {
        let url = format!("ws://10.77.{subnet}.1:{port}/ws");
        let rtc_ip = format!("10.77.{subnet}.2");
        let ns = net.ns(side);
        NativePeer::start_with(
            &format!("relay-{side}"),
            &url,
            &tmp.path().join(side),
            &["--rtc-ip", &rtc_ip, "--rtc-timeout", "3"],
            &["ip", "netns", "exec", &ns],
        )
    };
    let a = start("a", 1)?;
    let b = start("b", 2)?;

    let (path, bytes) = random_file(tmp.path(), "through-relay.bin", 1024 * 1024 + 17, 11)?;
    let put = a.cli_json(&["put", &path.to_string_lossy()])?;
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    let out = tmp.path().join("got.bin");
    b.cli_json(&["get", &id, "-o", &out.to_string_lossy()])?;
    assert!(std::fs::read(&out)? == bytes, "B wrote the bytes A put");

    let status = b.cli_json(&["status"])?;
    let relayed = status["relay_bytes_received"].as_u64().unwrap_or(0);
    assert!(relayed >= bytes.len() as u64, "B received the chunks through the relay: {status}");
    assert_eq!(status["data_channel_bytes_received"], 0, "no data channel could carry them: {status}");
    let a_status = a.cli_json(&["status"])?;
    assert!(a_status["relay_bytes_sent"].as_u64().unwrap_or(0) >= bytes.len() as u64, "{a_status}");
    Ok(())
}
