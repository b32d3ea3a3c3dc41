//! `pp-bench`: transfer benchmark of the native peer, in one run.
//!
//! 1. Raw str0m-to-str0m data-channel rate over loopback: two [`native_peer::rtc::Link`]s in
//!    this process, `--msg-kib` messages, `--raw-mib` pushed one way.
//! 2. Swarm rate: a tracker and 3 `pp-peer run` processes hold a `--file-mib` file; a fourth
//!    peer gets it. Prints MB/s of both and the ratio.
//! 3. Private against public files: a `--private-mib` file put public and then private
//!    (`put --private`: AES-256-GCM before hashing) on one peer, replicated to 3, fetched by a
//!    fresh peer (by id, and by the link with the key: decrypting). Prints ingest and get MB/s
//!    of both, and the ratio.
//! 4. Duplicates: `--dup-mib` files from 3 peers to a fresh one, bytes received beyond the
//!    file, with the old download policy and today's (two files of each size, same run).
//! 5. Peak RSS (VmHWM) of every peer while a `--rss-file-mib` file is put, replicated and
//!    fetched (the peak is reset through /proc/PID/clear_refs before that phase).
//!
//! Build release first (`cargo build --release -p native-peer -p tracker`), then e.g.
//! `target/release/pp-bench` (full) or `target/release/pp-bench --raw-mib 64 --file-mib 128 --rss-file-mib 256`.
//! MB/s are 10^6 bytes per second.

use anyhow::{anyhow, bail, Context};
use clap::Parser;
use native_peer::rtc::{Link, LinkEvent};
use pp_cli::duration::{human, parse_secs, Secs};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Peer Pressure transfer benchmark (raw data channel, swarm, peak RSS)")]
struct Args {
    /// MiB pushed through the raw data channel.
    #[arg(long, default_value_t = 256)]
    raw_mib: u64,
    /// Message size for the raw data-channel test, KiB.
    #[arg(long, default_value_t = 16)]
    msg_kib: usize,
    /// Size of the file moved from 3 peers to a fourth, MiB (0: skip).
    #[arg(long, default_value_t = 1024)]
    file_mib: u64,
    /// Size of the public and the private file compared, MiB (0: skip).
    #[arg(long, default_value_t = 256)]
    private_mib: u64,
    /// Size of the file moved while peak RSS is measured, MiB (0: skip).
    #[arg(long, default_value_t = 2048)]
    rss_file_mib: u64,
    /// Sizes of the files moved from 3 peers to a fresh one to count duplicate bytes, MiB,
    /// comma-separated (empty: skip); each size once with the old download policy
    /// (`PP_BENCH_EAGER_ENDGAME=1`) and once with today's, on two files of that size.
    #[arg(long, default_value = "5,64", value_delimiter = ',')]
    dup_mib: Vec<u64>,
    /// Where the `pp-peer` and `tracker` binaries are (default: beside this one).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Keep the work directory (data dirs and logs).
    #[arg(long)]
    keep: bool,
    /// How long a file may take to reach 3 copies before the run fails (`30m`, `90s`; a bare
    /// number is seconds).
    #[arg(long, default_value_t = Secs::from_secs(1800), value_parser = parse_secs)]
    copies_timeout: Secs,
    /// RUST_LOG for the peers.
    #[arg(long, default_value = "info,str0m=warn")]
    peer_log: String,
}

fn mb_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / secs / 1e6
}

async fn raw_rate(total: u64, msg: usize) -> anyhow::Result<f64> {
    let env = native_peer::rtc::RtcEnv {
        ifaces: vec![native_peer::rtc::net::Iface { ip: "127.0.0.1".parse()?, prefix: 8 }],
        stun_servers: Vec::new(),
    };
    let mut offer = Link::offer(&env)?;
    let Some(LinkEvent::Signal(swarm_core::Signal::Offer { sdp })) = offer.events.recv().await else {
        bail!("no offer")
    };
    let mut answer = Link::answer(&env, &sdp)?;
    let (oh, ah) = (offer.signal_handle(), answer.signal_handle());
    // Pump signalling both ways until both sides are open.
    let (mut o_open, mut a_open) = (false, false);
    while !(o_open && a_open) {
        tokio::select! {
            e = offer.events.recv() => match e.ok_or_else(|| anyhow!("offerer ended"))? {
                LinkEvent::Signal(s) => ah.deliver(s),
                LinkEvent::Open(_) => o_open = true,
                LinkEvent::Closed(r) => bail!("offerer closed: {r}"),
                LinkEvent::Message(_) => {}
            },
            e = answer.events.recv() => match e.ok_or_else(|| anyhow!("answerer ended"))? {
                LinkEvent::Signal(s) => oh.deliver(s),
                LinkEvent::Open(_) => a_open = true,
                LinkEvent::Closed(r) => bail!("answerer closed: {r}"),
                LinkEvent::Message(_) => {}
            },
        }
    }
    let n = total.div_ceil(msg as u64);
    let sender = offer.sender.clone();
    let started = Instant::now();
    let push = tokio::spawn(async move {
        for i in 0..n {
            let mut m = vec![0u8; msg];
            m[..8].copy_from_slice(&i.to_be_bytes());
            sender.send(m).await?;
        }
        anyhow::Ok(())
    });
    let mut got = 0u64;
    while got < n * msg as u64 {
        match answer.events.recv().await.ok_or_else(|| anyhow!("answerer ended"))? {
            LinkEvent::Message(m) => got += m.len() as u64,
            LinkEvent::Closed(r) => bail!("closed during the test: {r}"),
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    push.await??;
    Ok(mb_s(got, secs))
}

struct Proc {
    child: Child,
    name: String,
}
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_ready(mut cmd: Command, log: &Path, ready: &str, name: &str) -> anyhow::Result<(Proc, String)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(std::fs::File::create(log)?).spawn()?;
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let ready = ready.to_string();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            if l.contains(&ready) {
                let _ = tx.send(l);
            }
        }
    });
    let p = Proc { child, name: name.into() };
    let line = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| anyhow!("{name} did not start"))?;
    Ok((p, line))
}

struct Swarm {
    bin: PathBuf,
    work: PathBuf,
    tracker_url: String,
    _tracker: Proc,
    peers: Vec<Proc>,
    log: String,
    /// `--copies-timeout`.
    copies_timeout: Duration,
}

impl Swarm {
    fn start(bin: &Path, work: &Path, log: &str, copies_timeout: Duration) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin.join("pp-tracker"));
        cmd.args(["--listen", "127.0.0.1:0", "--replication", "3", "--msgs-per-sec", "0"])
            .arg("--data-dir")
            .arg(work.join("tracker"))
            .env("RUST_LOG", "warn");
        let (tracker, line) = spawn_ready(cmd, &work.join("tracker.log"), "listening on", "tracker")?;
        let port = line.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok()).context("tracker port")?;
        Ok(Self {
            bin: bin.into(),
            work: work.into(),
            tracker_url: format!("ws://127.0.0.1:{port}/ws"),
            _tracker: tracker,
            peers: vec![],
            log: log.into(),
            copies_timeout,
        })
    }

    fn add_peer(&mut self, name: &str) -> anyhow::Result<()> {
        self.add_peer_env(name, &[])
    }

    fn add_peer_env(&mut self, name: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bin.join("pp-peer"));
        cmd.envs(env.iter().copied());
        cmd.arg("--tracker")
            .arg(&self.tracker_url)
            .arg("--data-dir")
            .arg(self.work.join(name))
            .args(["--max-storage", "40G", "run"])
            .env("RUST_LOG", &self.log);
        let (p, _) = spawn_ready(cmd, &self.work.join(format!("{name}.log")), "running", name)?;
        self.peers.push(p);
        Ok(())
    }

    fn cli(&self, peer: &str, args: &[&str]) -> anyhow::Result<Value> {
        let out = Command::new(self.bin.join("pp-peer"))
            .arg("--tracker")
            .arg(&self.tracker_url)
            .arg("--data-dir")
            .arg(self.work.join(peer))
            .args(["--json", "--quiet"])
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("pp-peer {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }

    fn wait_copies(&self, name: &str, copies: u64) -> anyhow::Result<f64> {
        let started = Instant::now();
        loop {
            let v = self.cli("a", &["search", name])?;
            let min = v["files"]
                .as_array()
                .and_then(|fs| fs.iter().find(|f| f["name"] == name))
                .and_then(|f| f["min_holders"].as_u64())
                .unwrap_or(0);
            if min >= copies {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > self.copies_timeout {
                bail!("{name} did not reach {copies} copies in {}", human(self.copies_timeout));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Puts a file of `mib` MiB on peer a, waits until a, b and c hold all of it, then starts
    /// `downloader` (holding nothing of it) and gets it there.
    /// Returns (put MB/s, replication seconds, fetch MB/s, get wall seconds).
    fn move_file(&mut self, name: &str, mib: u64, downloader: &str) -> anyhow::Result<(f64, f64, f64, f64)> {
        let path = self.work.join(name);
        write_random(&path, mib << 20)?;
        let t = Instant::now();
        let put = self.cli("a", &["put", path.to_str().unwrap()])?;
        let put_secs = t.elapsed().as_secs_f64();
        let id = put["files"][0]["id"].as_str().context("file id")?.to_string();
        let repl = self.wait_copies(name, 3)?;
        self.add_peer(downloader)?;
        let out = self.work.join(format!("{name}.out"));
        let t = Instant::now();
        let got = self.cli(downloader, &["get", &id, "-o", out.to_str().unwrap()])?;
        let wall = t.elapsed().as_secs_f64();
        let fetch_secs = got["fetch_seconds"].as_f64().context("fetch_seconds")?;
        let fetched = got["fetched_bytes"].as_u64().context("fetched_bytes")?;
        eprintln!("  sources: {}", got["chunks_from"]);
        if std::fs::metadata(&out)?.len() != mib << 20 || fetched != mib << 20 {
            bail!("output has the wrong size, or the downloader held some chunks before");
        }
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&path);
        Ok((mb_s(mib << 20, put_secs), repl, mb_s(fetched, fetch_secs), wall))
    }
}

impl Swarm {
    /// Puts a `mib` MiB file on peer a, waits for 3 copies, then a fresh peer `getter` (with
    /// `env`) gets it: returns (bytes its links received beyond the file's size, fetch MB/s).
    fn duplicates(&mut self, name: &str, mib: u64, getter: &str, env: &[(&str, &str)]) -> anyhow::Result<(u64, f64)> {
        let path = self.work.join(name);
        write_random(&path, mib << 20)?;
        let put = self.cli("a", &["put", path.to_str().unwrap()])?;
        let id = put["files"][0]["id"].as_str().context("file id")?.to_string();
        self.wait_copies(name, 3)?;
        self.add_peer_env(getter, env)?;
        let out = self.work.join(format!("{name}.out"));
        let got = self.cli(getter, &["get", &id, "-o", out.to_str().unwrap()])?;
        let fetch = mb_s(
            got["fetched_bytes"].as_u64().context("fetched_bytes")?,
            got["fetch_seconds"].as_f64().context("fetch_seconds")?,
        );
        // Answers already on their way when the download ended still arrive (and count).
        std::thread::sleep(Duration::from_secs(2));
        let status = self.cli(getter, &["status"])?;
        let received: u64 = status["bytes_received_by_path"]
            .as_object()
            .context("bytes_received_by_path")?
            .values()
            .filter_map(Value::as_u64)
            .sum();
        self.peers.pop(); // the getter leaves: it takes no part in the next file
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&path);
        Ok((received.saturating_sub(mib << 20), fetch))
    }

    /// Puts a `mib` MiB file on peer a (private: `put --private`), waits for 3 copies, gets it
    /// on a fresh peer (by the link for a private file) that then leaves. Returns (ingest MB/s,
    /// get MB/s), both wall clock of the command.
    fn private_round(&mut self, name: &str, mib: u64, private: bool) -> anyhow::Result<(f64, f64)> {
        let path = self.work.join(name);
        write_random(&path, mib << 20)?;
        let t = Instant::now();
        let args: Vec<&str> = if private { vec!["put", "--private"] } else { vec!["put"] };
        let put = self.cli("a", &[&args[..], &[path.to_str().unwrap()]].concat())?;
        let put_secs = t.elapsed().as_secs_f64();
        let f = &put["files"][0];
        let id = f["id"].as_str().context("file id")?.to_string();
        let target = if private { f["link"].as_str().context("link")?.to_string() } else { id.clone() };
        self.wait_copies_by_id(&id, 3)?;
        let downloader = format!("get-{name}");
        self.add_peer(&downloader)?;
        let out = self.work.join(format!("{name}.out"));
        let t = Instant::now();
        self.cli(&downloader, &["get", &target, "-o", out.to_str().unwrap()])?;
        let get_secs = t.elapsed().as_secs_f64();
        if std::fs::metadata(&out)?.len() != mib << 20 {
            bail!("{name}: the output has the wrong size");
        }
        self.peers.pop();
        let _ = std::fs::remove_file(&out);
        let _ = std::fs::remove_file(&path);
        Ok((mb_s(mib << 20, put_secs), mb_s(mib << 20, get_secs)))
    }

    /// Waits until every chunk of file `id` has `copies` verified copies (the tracker's API:
    /// a private file is in no search).
    fn wait_copies_by_id(&self, id: &str, copies: u64) -> anyhow::Result<()> {
        let addr = self.tracker_url.trim_start_matches("ws://").trim_end_matches("/ws").to_string();
        let started = Instant::now();
        loop {
            let body = http_get(&addr, &format!("/api/files/{id}")).unwrap_or_default();
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["health"]["min_copies"].as_u64().unwrap_or(0) >= copies {
                return Ok(());
            }
            if started.elapsed() > self.copies_timeout {
                bail!("{id} did not reach {copies} copies in {}", human(self.copies_timeout));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

/// The body of `GET path` from `addr` (HTTP/1.1, `Connection: close`).
fn http_get(addr: &str, path: &str) -> anyhow::Result<String> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    Ok(text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

fn write_random(path: &Path, len: u64) -> anyhow::Result<()> {
    let mut f = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(path)?);
    let mut x: u64 = rand::random::<u64>() | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        for c in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c.copy_from_slice(&x.to_le_bytes()[..c.len()]);
        }
        let n = left.min(buf.len() as u64) as usize;
        f.write_all(&buf[..n])?;
        left -= n as u64;
    }
    f.flush()?;
    Ok(())
}

fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bin = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?.parent().context("bin dir")?.to_path_buf(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let mut raw = None;
    if args.raw_mib > 0 {
        str0m::crypto::from_feature_flags().install_process_default();
        let r = rt.block_on(raw_rate(args.raw_mib << 20, args.msg_kib << 10))?;
        println!("raw str0m data channel (loopback, {} KiB messages, {} MiB): {r:.1} MB/s", args.msg_kib, args.raw_mib);
        raw = Some(r);
    }
    if args.file_mib == 0 && args.rss_file_mib == 0 && args.private_mib == 0 && args.dup_mib.is_empty() {
        return Ok(());
    }
    let work = std::env::temp_dir().join(format!("pp-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    println!("work dir: {}", work.display());
    let result = swarm_phases(&args, &bin, &work, raw);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&work);
    }
    result
}

fn swarm_phases(args: &Args, bin: &Path, work: &Path, raw: Option<f64>) -> anyhow::Result<()> {
    let mut swarm = Swarm::start(bin, work, &args.peer_log, args.copies_timeout.duration())?;
    for p in ["a", "b", "c"] {
        swarm.add_peer(p)?;
    }
    if args.file_mib > 0 {
        let (put, repl, fetch, wall) = swarm.move_file("bench.bin", args.file_mib, "d")?;
        // The downloader leaves, so that it takes no part of the next file.
        swarm.peers.pop();
        println!(
            "swarm: put {} MiB on one peer {put:.1} MB/s; replicated to 3 peers in {repl:.1} s; \
             fetched from 3 peers at {fetch:.1} MB/s (get incl. writing the output: {wall:.1} s)",
            args.file_mib
        );
        if let Some(r) = raw {
            println!("ratio swarm fetch / raw data channel: {:.0}% (target >= 80%)", fetch / r * 100.0);
        }
    }
    for &mib in &args.dup_mib {
        let eager = swarm.duplicates(
            &format!("dup-eager-{mib}.bin"),
            mib,
            &format!("ge{mib}"),
            &[("PP_BENCH_EAGER_ENDGAME", "1")],
        )?;
        let late = swarm.duplicates(&format!("dup-late-{mib}.bin"), mib, &format!("gl{mib}"), &[])?;
        let pct = |d: u64| d as f64 * 100.0 / (mib << 20) as f64;
        println!(
            "duplicates, {mib} MiB from 3 peers: old policy {} bytes ({:.1}%, {:.1} MB/s); now {} bytes ({:.1}%, {:.1} MB/s) (target <= 2%)",
            eager.0, pct(eager.0), eager.1, late.0, pct(late.0), late.1
        );
    }
    if args.private_mib > 0 {
        let public = swarm.private_round("public.bin", args.private_mib, false)?;
        let private = swarm.private_round("private.bin", args.private_mib, true)?;
        for (kind, (put, get)) in [("public ", public), ("private", private)] {
            println!(
                "{kind} {} MiB: ingest (read, {}hash, store) {put:.1} MB/s; get from 3 peers ({}write) {get:.1} MB/s",
                args.private_mib,
                if kind == "private" { "encrypt, " } else { "" },
                if kind == "private" { "decrypt, " } else { "" },
            );
        }
        println!(
            "private / public: ingest {:.0}%, get {:.0}%",
            private.0 / public.0 * 100.0,
            private.1 / public.1 * 100.0
        );
    }
    if args.rss_file_mib > 0 {
        for p in &swarm.peers {
            // "5" resets the peak resident set size (VmHWM) to the current size.
            let _ = std::fs::write(format!("/proc/{}/clear_refs", p.child.id()), "5");
        }
        let (put, repl, fetch, _) = swarm.move_file("rss.bin", args.rss_file_mib, "e")?;
        println!(
            "rss phase: {} MiB put {put:.1} MB/s, replicated in {repl:.1} s, fetched at {fetch:.1} MB/s",
            args.rss_file_mib
        );
        // The downloader started for this phase: its whole life is this phase.
        let mut worst = 0;
        for p in &swarm.peers {
            let kib = vm_hwm_kib(p.child.id()).unwrap_or(0);
            worst = worst.max(kib);
            println!("peak RSS of peer {}: {:.1} MiB", p.name, kib as f64 / 1024.0);
        }
        println!("largest peak RSS: {:.1} MiB (target < 64 MiB)", worst as f64 / 1024.0);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_timeout_takes_units_and_bare_seconds() {
        let t =
            |v: &str| Args::try_parse_from(["pp-bench", "--copies-timeout", v]).map(|a| a.copies_timeout.duration());
        assert_eq!(t("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(t("90").unwrap(), Duration::from_secs(90), "a bare number is seconds");
        assert!(t("soon").is_err());
        let d = Args::try_parse_from(["pp-bench"]).unwrap();
        assert_eq!(d.copies_timeout.duration(), Duration::from_secs(1800), "the 30 minutes it always waited");
    }
}
