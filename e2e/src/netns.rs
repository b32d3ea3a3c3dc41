//! A small internet in network namespaces, for tests of peers behind NAT.
//!
//! [`Topology::build`] makes this, every address existing only inside namespaces the test
//! owns (no link to the root namespace or the real network, so no packet can leave):
//!
//! ```text
//!                 public segment 198.51.100.0/24 (bridge `br0` in a namespace of its own)
//!        ┌───────────────┬──────────────────────┬──────────────────────┬─────────────────┐
//!   Tracker .10     router 1 .1            router 2 .2            router 3 .3
//!                   MASQUERADE             MASQUERADE             MASQUERADE --random-fully
//!                   10.201.1.0/24          10.201.2.0/24          10.201.3.0/24
//!                   ├ Lan1A .10            └ Lan2 .10             └ Lan3 .10
//!                   └ Lan1B .11
//! ```
//!
//! - Routers 1 and 2 masquerade with Linux's default port preservation: a flow keeps its
//!   public port whatever its destination (endpoint-independent mapping), so UDP hole
//!   punching works between their LANs (Linux keeps the port only while it is free: two LAN 1
//!   hosts using the same local port to the same destination get different ports). Router 3 uses `--random-fully`: each destination gets
//!   a fresh random port, so hole punching to or from `Lan3` fails (a "symmetric" NAT).
//! - Routers firewall their WAN side as home routers do: only packets of flows opened from
//!   inside get in (to the router or through it); the rest is dropped.
//! - No router forwards ports, and the public segment has no route to any private subnet:
//!   from the tracker only the routers' WAN addresses ([`Topology::public_ip`]) are
//!   reachable, exactly as on the internet. Hosts on one LAN reach each other directly.
//! - Every namespace has `lo` up; hosts have a default route via their router; routers have
//!   `net.ipv4.ip_forward=1` (per namespace). Bridges do not call iptables
//!   (`bridge-nf-call-iptables=0`), so they switch frames like a real switch.
//! - Interfaces are made directly inside their namespaces with fixed names: [`HOST_IF`] in
//!   every host, [`WAN_IF`] and [`LAN_BRIDGE`] in routers (e.g. for `tc` rules).
//!
//! [`Topology::build_cluster`] makes the same internet with three public hosts in place of the
//! tracker, one per node of a tracker cluster (each runs a NATS server and a tracker node):
//! `Node1` .11, `Node2` .12 and `Node3` .13 on the public segment. A host's link can be cut and
//! restored ([`Topology::set_link`]: `ip link set eth0 down/up`, its processes keep running),
//! or the traffic between public hosts dropped while peers still reach them
//! ([`Topology::partition`]: iptables `DROP` rules in each side's `INPUT` chain, so both
//! directions go silent as across a real partition, without a refusal any process could see).
//! Both go with the namespaces: nothing needs undoing after a failed test.
//!
//! Names: namespaces are `ppnet<pid>x<n>-<role>` (process id and a per-process counter), so
//! tests can run one after another, or at once in several processes, without colliding.
//! [`Topology`]'s `Drop` kills whatever still runs inside its namespaces and deletes them,
//! which removes every veth and bridge with them, also when a test fails or panics. `build`
//! first deletes namespaces that earlier runs left behind (those whose process is gone).
//!
//! Processes: [`Topology::command`] runs a program inside a host's namespace (`ip netns
//! exec`); [`crate::Tracker::start_in`], [`crate::NativePeer::start_in`] and
//! [`crate::Browser::start_in`] start the real tracker, a native peer and Chromium there.
//!
//! Needs root, iproute2 and iptables (`scripts/setup.sh` installs them); `build` fails with a
//! clear error rather than skipping where they are missing.

use anyhow::{anyhow, bail, Context};
use std::ffi::OsStr;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A host of the topology: where a process can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host {
    /// On the public segment, with a public address of its own.
    Tracker,
    /// The public hosts of a tracker cluster ([`Topology::build_cluster`]), one per node.
    Node1,
    Node2,
    Node3,
    /// First host of LAN 1 (behind router 1, endpoint-independent mapping).
    Lan1A,
    /// Second host of LAN 1, on the same bridge as [`Host::Lan1A`].
    Lan1B,
    /// The host of LAN 2 (behind router 2, endpoint-independent mapping).
    Lan2,
    /// The host of LAN 3 (behind router 3, `--random-fully`: a fresh port per destination).
    Lan3,
}

impl Host {
    /// The hosts of [`Topology::build`] (the tracker and the LAN hosts).
    pub const ALL: [Host; 5] = [Host::Tracker, Host::Lan1A, Host::Lan1B, Host::Lan2, Host::Lan3];
    /// The hosts behind a NAT router.
    pub const LAN_HOSTS: [Host; 4] = [Host::Lan1A, Host::Lan1B, Host::Lan2, Host::Lan3];
    /// The public hosts of a cluster topology ([`Topology::build_cluster`]).
    pub const NODES: [Host; 3] = [Host::Node1, Host::Node2, Host::Node3];

    fn role(self) -> &'static str {
        match self {
            Host::Tracker => "tracker",
            Host::Node1 => "node1",
            Host::Node2 => "node2",
            Host::Node3 => "node3",
            Host::Lan1A => "lan1a",
            Host::Lan1B => "lan1b",
            Host::Lan2 => "lan2",
            Host::Lan3 => "lan3",
        }
    }

    /// The LAN (1, 2 or 3) the host is on; `None` for the public hosts.
    pub fn lan(self) -> Option<u8> {
        match self {
            Host::Tracker | Host::Node1 | Host::Node2 | Host::Node3 => None,
            Host::Lan1A | Host::Lan1B => Some(1),
            Host::Lan2 => Some(2),
            Host::Lan3 => Some(3),
        }
    }
}

/// The interface of every host (the tracker included): a veth to its segment's bridge.
pub const HOST_IF: &str = "eth0";
/// A router's interface on the public segment.
pub const WAN_IF: &str = "wan";
/// A router's LAN bridge (its LAN address is on it).
pub const LAN_BRIDGE: &str = "lan";
/// The public segment's bridge, in the namespace [`Topology::public_ns`].
pub const PUBLIC_BRIDGE: &str = "br0";

/// Prefix of every namespace this module makes.
const PREFIX: &str = "ppnet";
const PUBLIC_NET: [u8; 3] = [198, 51, 100];
const PREFIX_LEN: u8 = 24;

/// Router `lan` (1..=3): its WAN address on the public segment.
fn router_wan_ip(lan: u8) -> Ipv4Addr {
    Ipv4Addr::new(PUBLIC_NET[0], PUBLIC_NET[1], PUBLIC_NET[2], lan)
}

/// Router `lan` (1..=3): its address on its LAN.
fn router_lan_ip(lan: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 201, lan, 1)
}

fn host_ip(h: Host) -> Ipv4Addr {
    match h {
        Host::Tracker => Ipv4Addr::new(PUBLIC_NET[0], PUBLIC_NET[1], PUBLIC_NET[2], 10),
        Host::Node1 => Ipv4Addr::new(PUBLIC_NET[0], PUBLIC_NET[1], PUBLIC_NET[2], 11),
        Host::Node2 => Ipv4Addr::new(PUBLIC_NET[0], PUBLIC_NET[1], PUBLIC_NET[2], 12),
        Host::Node3 => Ipv4Addr::new(PUBLIC_NET[0], PUBLIC_NET[1], PUBLIC_NET[2], 13),
        Host::Lan1A | Host::Lan2 | Host::Lan3 => Ipv4Addr::new(10, 201, h.lan().expect("lan"), 10),
        Host::Lan1B => Ipv4Addr::new(10, 201, 1, 11),
    }
}

/// The network namespaces of one test; `Drop` removes them all.
pub struct Topology {
    tag: String,
    /// Every namespace made so far (also on a half-built topology), in creation order.
    made: Vec<String>,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Topology {
    /// Builds the whole topology (see the module docs). Fails with a clear error when not
    /// root or when `ip` (iproute2) or `iptables` are missing.
    pub fn build() -> anyhow::Result<Self> {
        Self::build_with(&[Host::Tracker])
    }

    /// Builds the topology with three public hosts, [`Host::NODES`], in place of the tracker
    /// (see the module docs): one per node of a tracker cluster.
    pub fn build_cluster() -> anyhow::Result<Self> {
        Self::build_with(&Host::NODES)
    }

    fn build_with(public_hosts: &[Host]) -> anyhow::Result<Self> {
        preflight()?;
        remove_stale();
        let tag = format!("{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut t = Topology { tag, made: Vec::new() };
        t.wire(public_hosts).with_context(|| format!("cannot build the NAT topology {PREFIX}{}", t.tag))?;
        Ok(t)
    }

    fn wire(&mut self, public_hosts: &[Host]) -> anyhow::Result<()> {
        let public = self.name("pub");
        self.add_ns(&public)?;
        bridge(&public, PUBLIC_BRIDGE)?;

        // The tracker (or the cluster's nodes), straight on the public segment.
        for &h in public_hosts {
            let ns = self.name(h.role());
            self.add_ns(&ns)?;
            attach(&ns, HOST_IF, &public, PUBLIC_BRIDGE, h.role(), host_ip(h))?;
        }

        for lan in 1..=3u8 {
            let router = self.name(&format!("r{lan}"));
            self.add_ns(&router)?;
            attach(&router, WAN_IF, &public, PUBLIC_BRIDGE, &format!("r{lan}"), router_wan_ip(lan))?;
            bridge(&router, LAN_BRIDGE)?;
            ip(&["-n", &router, "addr", "add", &cidr(router_lan_ip(lan)), "dev", LAN_BRIDGE])?;
            sysctl(&router, "net/ipv4/ip_forward", "1")?;
            let mut masq = vec!["-t", "nat", "-A", "POSTROUTING", "-o", WAN_IF, "-j", "MASQUERADE"];
            if lan == 3 {
                masq.push("--random-fully");
            }
            iptables(&router, &masq)?;
            // The firewall of every home router: from the WAN, only what answers a flow from
            // inside gets in. Unsolicited packets are dropped before conntrack confirms an
            // entry for them, so a peer's first hole-punching packet, arriving before this
            // router's own outbound packet to that peer, leaves no state behind that would make
            // the router pick another port for the outbound flow (which breaks the punch).
            for chain in ["INPUT", "FORWARD"] {
                let established =
                    ["-A", chain, "-i", WAN_IF, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"];
                iptables(&router, &established)?;
                iptables(&router, &["-A", chain, "-i", WAN_IF, "-j", "DROP"])?;
            }
            for h in Host::LAN_HOSTS.into_iter().filter(|h| h.lan() == Some(lan)) {
                let ns = self.name(h.role());
                self.add_ns(&ns)?;
                attach(&ns, HOST_IF, &router, LAN_BRIDGE, h.role(), host_ip(h))?;
                ip(&["-n", &ns, "route", "add", "default", "via", &router_lan_ip(lan).to_string()])?;
            }
        }
        Ok(())
    }

    fn name(&self, role: &str) -> String {
        format!("{PREFIX}{}-{role}", self.tag)
    }

    fn add_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns])?;
        self.made.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// The namespace a host's processes run in. Panics for a host this topology lacks (the
    /// nodes in one made by [`Topology::build`], the tracker in one made by
    /// [`Topology::build_cluster`]).
    pub fn ns(&self, h: Host) -> &str {
        // Made in the order public hosts, (router, its hosts)…; look the name up rather than
        // relying on that order.
        let want = self.name(h.role());
        self.made
            .iter()
            .find(|n| **n == want)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("host {h:?} is not part of this topology ({:?})", self.made))
    }

    /// The namespace of the router in front of a LAN host (`None` for the tracker).
    pub fn router_ns(&self, h: Host) -> Option<String> {
        h.lan().map(|lan| self.name(&format!("r{lan}")))
    }

    /// The namespace holding the public segment's bridge ([`PUBLIC_BRIDGE`]).
    pub fn public_ns(&self) -> String {
        self.name("pub")
    }

    /// The host's own address (private for LAN hosts).
    pub fn ip(&self, h: Host) -> Ipv4Addr {
        host_ip(h)
    }

    /// The tracker host's (public) address.
    pub fn tracker_ip(&self) -> Ipv4Addr {
        host_ip(Host::Tracker)
    }

    /// The address a host appears as on the public segment: its router's WAN address, or the
    /// tracker's own.
    pub fn public_ip(&self, h: Host) -> Ipv4Addr {
        match h.lan() {
            Some(lan) => router_wan_ip(lan),
            None => host_ip(h),
        }
    }

    /// The address of a LAN host's router on its LAN (its default gateway).
    pub fn gateway_ip(&self, h: Host) -> Option<Ipv4Addr> {
        h.lan().map(router_lan_ip)
    }

    /// `ip netns exec NS program`: a command that runs `program` inside the host's namespace.
    pub fn command(&self, h: Host, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(h)]).arg(program);
        c
    }

    /// The words that run a program inside the host's namespace (`ip netns exec NS`), as
    /// [`crate::NativePeer::start_with`] takes them.
    pub fn exec_prefix(&self, h: Host) -> Vec<String> {
        vec!["ip".into(), "netns".into(), "exec".into(), self.ns(h).to_string()]
    }

    /// Where each host sits, for messages: `lan1a 10.201.1.10 (public 198.51.100.1)`.
    pub fn describe(&self, h: Host) -> String {
        format!("{} {} (public {})", h.role(), self.ip(h), self.public_ip(h))
    }

    /// Cuts (`up == false`) or restores host `h`'s link to its segment: `ip link set eth0
    /// down/up` in its namespace, as a pulled cable or a dead switch port would. Its processes
    /// keep running and see nothing but silence (a TCP connection stays open until its own
    /// timeouts). On restore, a LAN host gets its default route back (the kernel drops routes
    /// through a link set down).
    pub fn set_link(&self, h: Host, up: bool) -> anyhow::Result<()> {
        let ns = self.ns(h);
        ip(&["-n", ns, "link", "set", HOST_IF, if up { "up" } else { "down" }])?;
        if let (true, Some(gw)) = (up, self.gateway_ip(h)) {
            ip(&["-n", ns, "route", "replace", "default", "via", &gw.to_string()])?;
        }
        Ok(())
    }

    /// Cuts (`cut == true`) or heals a partition between host `h` and `others`: every packet
    /// from one side to the other is dropped on arrival (an iptables `DROP` rule in the
    /// receiving host's `INPUT` chain, both ways), while both sides still reach everyone else
    /// (peers behind the routers, for a cluster node). Nothing is refused: both sides see
    /// silence, as across a real partition. Healing deletes exactly the rules cutting added.
    pub fn partition(&self, h: Host, others: &[Host], cut: bool) -> anyhow::Result<()> {
        let op = if cut { "-I" } else { "-D" };
        for &o in others {
            for (at, from) in [(h, o), (o, h)] {
                let from = self.ip(from).to_string();
                iptables(self.ns(at), &[op, "INPUT", "-s", &from, "-j", "DROP"])?;
            }
        }
        Ok(())
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in self.made.iter().rev() {
            delete_ns(ns);
        }
    }
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology").field("namespaces", &self.made).finish()
    }
}

fn cidr(a: Ipv4Addr) -> String {
    format!("{a}/{PREFIX_LEN}")
}

/// Makes bridge `br` in `ns` (up, not calling iptables on bridged frames).
fn bridge(ns: &str, br: &str) -> anyhow::Result<()> {
    ip(&["-n", ns, "link", "add", br, "type", "bridge"])?;
    ip(&["-n", ns, "link", "set", br, "up"])?;
    // Best effort: the knob only exists where br_netfilter is loaded.
    let _ = sysctl(ns, "net/bridge/bridge-nf-call-iptables", "0");
    Ok(())
}

/// Links `ns` (interface `ifname`, address `addr`) to bridge `br` in `br_ns` (port `port`).
/// Both ends are made in their namespaces directly, never in the root namespace.
fn attach(ns: &str, ifname: &str, br_ns: &str, br: &str, port: &str, addr: Ipv4Addr) -> anyhow::Result<()> {
    ip(&["link", "add", ifname, "netns", ns, "type", "veth", "peer", "name", port, "netns", br_ns])?;
    ip(&["-n", br_ns, "link", "set", port, "master", br])?;
    ip(&["-n", br_ns, "link", "set", port, "up"])?;
    ip(&["-n", ns, "addr", "add", &cidr(addr), "dev", ifname])?;
    ip(&["-n", ns, "link", "set", ifname, "up"])
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {what}"))?;
    if !out.status.success() {
        bail!("{what} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args), &format!("`ip {}`", args.join(" "))).map(drop)
}

fn iptables(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let what = format!("`iptables {}` in {ns}", args.join(" "));
    run(Command::new("ip").args(["netns", "exec", ns, "iptables"]).args(args), &what).map(drop)
}

/// Sets `/proc/sys/<key>` inside `ns` (sysctls under net/ are per namespace).
fn sysctl(ns: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let script = format!("echo {value} > /proc/sys/{key}");
    run(Command::new("ip").args(["netns", "exec", ns, "sh", "-c", &script]), &format!("sysctl {key} in {ns}")).map(drop)
}

fn preflight() -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").context("cannot read /proc/self/status")?;
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .ok_or_else(|| anyhow!("no Uid line in /proc/self/status"))?;
    if euid != "0" {
        bail!("network namespaces need root (running as uid {euid}); run the namespace tests as root");
    }
    for (tool, pkg) in [("ip", "iproute2"), ("iptables", "iptables")] {
        Command::new(tool)
            .arg("-V")
            .output()
            .map_err(|e| anyhow!("`{tool}` is missing ({e}): install {pkg} (scripts/setup.sh does)"))?;
    }
    Ok(())
}

/// Kills every process left inside `ns`, then deletes it (its veths and bridges go with it).
fn delete_ns(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
    let _ = Command::new("ip").args(["netns", "del", ns]).output();
}

/// Deletes the namespaces of earlier runs whose process is gone (a crash, a SIGKILLed test);
/// those of processes still running (another test binary) are left alone.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else { continue };
        let Some(pid) = name.strip_prefix(PREFIX).and_then(|r| r.split('x').next()) else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete_ns(name);
        }
    }
}
