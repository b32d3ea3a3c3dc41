//! NAT benchmark, on the small internet of `e2e::netns` (needs root): what the path a peer
//! finds is worth.
//!
//! One topology, one tracker (`--replication 2`), two sources on `Lan1A` holding a big file
//! (`--mib`) and a small one (`--small-mib`), both at R = 2 before any getter starts. Then:
//! - throughput: a getter on `Lan1B` with default flags (direct, host candidates) and one
//!   started with `--relay-only` (every byte through the tracker relay) get the big file, one
//!   after the other, from the same two sources; MB/s side by side, with the bytes the tracker
//!   relayed during each run (the proof of the path);
//! - time to first chunk (`first_chunk_seconds` of `get --json`, from the request to the first
//!   verified chunk) of the small file, for a fresh getter on `Lan1B` (host path), `Lan2`
//!   (across two NATs: reflexive path) and `Lan3` (port-randomising NAT: relay), `--rounds`
//!   times each, with the path each getter reports in `status --json`.
//!
//! Each getter is stopped before the next starts, so every run draws from the two sources
//! only. Exits non-zero when a getter writes other bytes than were put; makes no timing
//! assertion.
//!
//! Usage: `cargo build --release --bins && PP_BIN_DIR=target/release \
//!   cargo run --release -p e2e --bin nat-bench -- [--mib 256] [--small-mib 8] [--rounds 3]
//!   [--relay-limit MIB_PER_SEC]` (the tracker's relay limit per sending peer; its default,
//! 8 MiB/s, when not given).

use anyhow::{bail, ensure, Context};
use e2e::{Host, NativePeer, Topology, Tracker};
use serde_json::Value;
use std::time::{Duration, Instant};

const MIB: usize = 1 << 20;

struct Args {
    mib: usize,
    small_mib: usize,
    rounds: usize,
    relay_limit: Option<u64>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args { mib: 256, small_mib: 8, rounds: 3, relay_limit: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--mib" => a.mib = value()?.parse()?,
            "--small-mib" => a.small_mib = value()?.parse()?,
            "--rounds" => a.rounds = value()?.parse()?,
            "--relay-limit" => a.relay_limit = Some(value()?.parse()?),
            "-h" | "--help" => {
                println!("nat-bench [--mib 256] [--small-mib 8] [--rounds 3] [--relay-limit MIB_PER_SEC]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    ensure!(a.mib > 0 && a.small_mib > 0 && a.rounds > 0, "sizes and rounds must be positive");
    Ok(a)
}

/// What one `get` showed.
struct Run {
    /// `get --json` and `status --json` of the getter afterwards.
    get: Value,
    status: Value,
    /// Bytes the tracker relayed during the `get`.
    relayed: u64,
}

impl Run {
    fn secs(&self, key: &str) -> f64 {
        self.get[key].as_f64().unwrap_or(f64::NAN)
    }
    /// The paths of the getter's fetch links, deduplicated (`-` when it has none).
    fn paths(&self) -> String {
        let links = self.status["links"].as_array().cloned().unwrap_or_default();
        let mut paths: Vec<&str> =
            links.iter().filter(|l| l["role"] == "fetch").filter_map(|l| l["path"].as_str()).collect();
        paths.sort_unstable();
        paths.dedup();
        if paths.is_empty() {
            "-".into()
        } else {
            paths.join("+")
        }
    }
    /// Bytes received per path, e.g. `direct_host 268435456`.
    fn by_path(&self) -> String {
        let m = self.status["bytes_received_by_path"].as_object().cloned().unwrap_or_default();
        let v: Vec<String> = m
            .iter()
            .filter(|(_, n)| n.as_u64().unwrap_or(0) > 0)
            .map(|(p, n)| format!("{p} {}", mb(n.as_u64().unwrap_or(0))))
            .collect();
        if v.is_empty() {
            "-".into()
        } else {
            v.join(", ")
        }
    }
}

struct Bench {
    net: Topology,
    tracker: Tracker,
    tmp: tempfile::TempDir,
    /// Getters started so far (for unique names and data dirs).
    getters: usize,
}

impl Bench {
    fn relay_bytes(&self) -> anyhow::Result<u64> {
        self.tracker.get_json("/api/stats")?["relay_bytes"].as_u64().context("no relay_bytes in /api/stats")
    }

    fn peers(&self) -> anyhow::Result<u64> {
        self.tracker.get_json("/api/stats")?["peers"].as_u64().context("no peers in /api/stats")
    }

    /// Starts a fresh getter on `h`, gets file `id` (which must equal `want`), stops the getter
    /// and waits until the tracker has forgotten it.
    fn get(&mut self, h: Host, id: &str, want: &[u8], extra: &[&str]) -> anyhow::Result<Run> {
        self.getters += 1;
        let n = self.getters;
        let dir = self.tmp.path().join(format!("getter{n}"));
        let prefix = self.net.exec_prefix(h);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let peers_before = self.peers()?;
        let mut c =
            NativePeer::start_with(&format!("bench-nat-getter{n}"), &self.tracker.ws_url(), &dir, extra, &prefix)?;
        let relay_before = self.relay_bytes()?;
        let out = self.tmp.path().join(format!("got{n}.bin"));
        let get = c.cli_json(&["get", id, "-o", &out.to_string_lossy()])?;
        let relayed = self.relay_bytes()? - relay_before;
        let status = c.cli_json(&["status"])?;
        let same = std::fs::read(&out)? == want;
        c.proc.kill();
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_dir_all(&dir);
        if !same {
            bail!("the getter on {} wrote other bytes than were put (file {id})", self.net.describe(h));
        }
        let t = Instant::now();
        while self.peers()? > peers_before {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("the tracker still lists the stopped getter after 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(Run { get, status, relayed })
    }
}

fn mb(bytes: u64) -> String {
    if bytes >= 1_000_000 {
        format!("{:.1} MB", bytes as f64 / 1e6)
    } else if bytes >= 1_000 {
        format!("{:.1} kB", bytes as f64 / 1e3)
    } else {
        format!("{bytes} B")
    }
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let net = Topology::build()?;
    let mut flags = vec!["--replication".to_string(), "2".to_string()];
    if let Some(l) = args.relay_limit {
        flags.extend(["--relay-bytes-per-sec".to_string(), (l * MIB as u64).to_string()]);
    }
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let tracker = Tracker::start_in("bench-nat-tracker", &net, None, &flags)?;
    let tmp = tempfile::tempdir()?;
    let a = NativePeer::start_in("bench-nat-a", &net, Host::Lan1A, &tracker, &tmp.path().join("a"))?;
    let _b = NativePeer::start_in("bench-nat-b", &net, Host::Lan1A, &tracker, &tmp.path().join("b"))?;

    let t = Instant::now();
    let (big_id, big) = a.put_random(tmp.path(), "big.bin", args.mib * MIB, 42)?;
    let (small_id, small) = a.put_random(tmp.path(), "small.bin", args.small_mib * MIB, 43)?;
    let _ = std::fs::remove_file(tmp.path().join("big.bin"));
    let _ = std::fs::remove_file(tmp.path().join("small.bin"));
    tracker.wait_copies(&big_id, 2, Duration::from_secs(600))?;
    tracker.wait_copies(&small_id, 2, Duration::from_secs(600))?;
    eprintln!(
        "{} MiB + {} MiB put and at R = 2 on lan1a in {:.1} s",
        args.mib,
        args.small_mib,
        t.elapsed().as_secs_f64()
    );

    let mut bench = Bench { net, tracker, tmp, getters: 0 };

    // Throughput: the same getter host, the same two sources, direct then relay only.
    let direct = bench.get(Host::Lan1B, &big_id, &big, &[])?;
    let relay = bench.get(Host::Lan1B, &big_id, &big, &["--relay-only"])?;
    drop(big);

    // Time to first chunk on each path, a fresh getter each round.
    let places = [(Host::Lan1B, "same LAN"), (Host::Lan2, "across two NATs"), (Host::Lan3, "port-randomising NAT")];
    let mut firsts = Vec::new();
    for (h, what) in places {
        let mut runs = Vec::new();
        for _ in 0..args.rounds {
            runs.push(bench.get(h, &small_id, &small, &[])?);
        }
        firsts.push((h, what, runs));
    }

    let size = (args.mib * MIB) as u64;
    let rate = |r: &Run| size as f64 / r.secs("fetch_seconds") / 1e6;
    let share = |r: &Run| format!("{} ({:.1}%)", mb(r.relayed), 100.0 * r.relayed as f64 / size as f64);
    let limit = args.relay_limit.map_or("8 (default)".to_string(), |l| l.to_string());
    println!();
    println!("NAT benchmark: {} MiB from 2 sources on lan1a (R = 2) to a getter on lan1b", args.mib);
    let row = |label: &str, a: &str, b: &str| println!("  {label:<28}{a:<26}{b}");
    row("", "default flags", "--relay-only");
    row("path (status --json)", &direct.paths(), &relay.paths());
    row("bytes received by path", &direct.by_path(), &relay.by_path());
    let secs = |r: &Run| format!("{:.2} s", r.secs("fetch_seconds"));
    row("fetch time", &secs(&direct), &secs(&relay));
    let rates = |r: &Run| format!("{:.1} MB/s", rate(r));
    row("rate", &rates(&direct), &rates(&relay));
    row("relayed by the tracker", &share(&direct), &share(&relay));
    println!("  {:<28}{:.2}x", "direct / relay", rate(&direct) / rate(&relay));
    println!("  (tracker relay limit: {limit} MiB/s per sending peer)");
    println!();
    println!(
        "Time to first chunk: {} MiB file from the same 2 sources, a fresh getter each round, {} round(s)",
        args.small_mib, args.rounds
    );
    println!("  {:<7}{:<22}{:<18}{:<28}{:<10}relayed / run", "getter", "network", "path", "first chunk (s)", "median");
    for (h, what, runs) in &firsts {
        let v: Vec<f64> = runs.iter().map(|r| r.secs("first_chunk_seconds")).collect();
        let each: Vec<String> = v.iter().map(|s| format!("{s:.3}")).collect();
        let mut paths: Vec<String> = runs.iter().map(Run::paths).collect();
        paths.dedup();
        let relayed: Vec<String> = runs.iter().map(|r| mb(r.relayed)).collect();
        let name = format!("{h:?}").to_lowercase();
        println!(
            "  {:<7}{:<22}{:<18}{:<28}{:<10}{}",
            name,
            what,
            paths.join(","),
            each.join(" "),
            format!("{:.3}", median(&v)),
            relayed.join(" ")
        );
    }
    Ok(())
}
