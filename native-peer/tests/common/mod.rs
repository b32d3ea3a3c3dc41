//! Test harness: a real tracker process and real `pp-peer run` processes on loopback, each
//! peer in its own temporary data dir. Every process is killed when its handle drops.
#![allow(dead_code)] // every test binary compiles this module and uses only some of its helpers

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Generous: the machine has 2 cores and may be busy building.
pub const TIMEOUT: Duration = Duration::from_secs(60);

pub fn pp_peer() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pp-peer"))
}

/// The tracker binary beside `pp-peer` (built once if missing).
pub fn tracker_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let path = pp_peer().parent().expect("bin dir").join("pp-tracker");
    BUILD.call_once(|| {
        if !path.exists() {
            let st = Command::new(env!("CARGO")).args(["build", "-p", "tracker"]).status().expect("cargo");
            assert!(st.success(), "cannot build the tracker");
        }
    });
    path
}

/// Tests in one binary run one at a time: each starts several processes, and a 2-core
/// machine runs them more reliably in turn.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd`, waits for stdout lines containing each of `ready` (in any order); returns
/// the process and those lines. Stderr goes to `log`.
fn spawn_until(mut cmd: Command, log: &Path, ready: &[&str]) -> (Proc, Vec<String>) {
    let logf = std::fs::File::create(log).expect("log file");
    let mut child = cmd.stdout(Stdio::piped()).stderr(logf).spawn().expect("spawn");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let proc = Proc { child, log: log.to_owned() };
    let mut found = vec![String::new(); ready.len()];
    let deadline = Instant::now() + TIMEOUT;
    while found.iter().any(String::is_empty) {
        let left = deadline.saturating_duration_since(Instant::now());
        let line =
            rx.recv_timeout(left).unwrap_or_else(|_| panic!("process did not become ready; log:\n{}", proc.log_text()));
        for (i, r) in ready.iter().enumerate() {
            if found[i].is_empty() && line.contains(r) {
                found[i] = line.clone();
            }
        }
    }
    (proc, found)
}

pub struct Tracker {
    pub proc: Proc,
    pub port: u16,
    /// Flags besides `--listen` (kept for [`Tracker::restart`]).
    args: Vec<String>,
    dir: tempfile::TempDir,
}

impl Tracker {
    pub fn start(replication: u32) -> Self {
        Self::start_with(replication, &[])
    }

    /// [`Tracker::start`] with more flags.
    pub fn start_with(replication: u32, extra: &[&str]) -> Self {
        Self::start_from(None, replication, extra)
    }

    /// [`Tracker::start_with`] on a copy of the data dir `from` (a fixture), if given.
    pub fn start_from(from: Option<&Path>, replication: u32, extra: &[&str]) -> Self {
        let dir = test_root();
        if let Some(from) = from {
            copy_dir(from, &dir.path().join("tracker"));
        }
        let mut args: Vec<String> = ["--grace-secs", "1", "--replication", &replication.to_string()]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        args.extend(["--data-dir".into(), dir.path().join("tracker").display().to_string()]);
        let (proc, port) = Self::spawn(&dir, &args, "127.0.0.1:0", "tracker.log");
        Self { proc, port, args, dir }
    }

    fn spawn(dir: &tempfile::TempDir, args: &[String], listen: &str, log: &str) -> (Proc, u16) {
        let mut cmd = Command::new(tracker_bin());
        cmd.args(["--listen", listen]).args(args).env("RUST_LOG", "info");
        let (proc, lines) = spawn_until(cmd, &dir.path().join(log), &["listening on"]);
        let port = lines[0].rsplit(':').next().and_then(|p| p.trim().parse().ok()).expect("port");
        (proc, port)
    }

    /// Kills the tracker (SIGKILL, as a crash would) and starts it again on the same port and
    /// data dir.
    pub fn restart(&mut self) {
        self.proc.kill();
        let (proc, _) = Self::spawn(&self.dir, &self.args, &format!("127.0.0.1:{}", self.port), "tracker-2.log");
        self.proc = proc;
    }
    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

pub struct Peer {
    pub proc: Option<Proc>,
    pub dir: PathBuf,
    pub tracker: String,
    pub peer_id: String,
    pub http: Option<u16>,
    pub name: String,
    extra: Vec<String>,
    env: Vec<(String, String)>,
    starts: usize,
}

impl Peer {
    /// Starts `pp-peer run` with its data dir under `root`.
    pub fn start(name: &str, tracker: &Tracker, root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let mut p = Peer {
            proc: None,
            dir: root.join(name),
            tracker: tracker.ws_url(),
            peer_id: String::new(),
            http: None,
            name: name.into(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            starts: 0,
        };
        p.restart();
        p
    }

    /// (Re)starts the process on the same data dir.
    pub fn restart(&mut self) {
        std::fs::create_dir_all(&self.dir).unwrap();
        let mut cmd = Command::new(pp_peer());
        cmd.arg("--tracker").arg(&self.tracker).arg("--data-dir").arg(&self.dir).arg("run").args(&self.extra);
        cmd.env("RUST_LOG", "debug,str0m=info");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let http = self.extra.iter().any(|a| a == "--http");
        let ready: Vec<&str> = if http { vec!["running", "http gateway on"] } else { vec!["running"] };
        self.starts += 1;
        let log = self.dir.with_extension(format!("{}.log", self.starts));
        let (proc, lines) = spawn_until(cmd, &log, &ready);
        self.peer_id = lines[0].split_whitespace().nth(1).unwrap_or_default().to_string();
        if http {
            let port =
                lines[1].split("127.0.0.1:").nth(1).and_then(|r| r.split('/').next()).and_then(|p| p.parse().ok());
            self.http = port;
        }
        self.proc = Some(proc);
    }

    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    pub fn log_text(&self) -> String {
        self.proc.as_ref().map(|p| p.log_text()).unwrap_or_default()
    }

    /// `pp-peer --json ARGS` on this peer's data dir (through its control socket when it runs).
    pub fn cli(&self, args: &[&str]) -> Output {
        cli_in(&self.tracker, &self.dir, args, None)
    }

    pub fn cli_json(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "pp-peer {args:?} on {} failed ({:?}): {}\npeer log tail:\n{}",
            self.name,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log_text(), 40)
        );
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("stdout of {args:?} is not clean JSON ({e}): {stdout:?}"))
    }

    pub fn status(&self) -> Value {
        self.cli_json(&["status"])
    }

    pub fn chunk_files(&self) -> usize {
        count_files(&self.dir.join("chunks"))
    }
}

/// A temporary directory for one test; kept (and named on stderr) with `PP_TEST_KEEP=1`.
pub fn test_root() -> tempfile::TempDir {
    let mut d = tempfile::tempdir().expect("tempdir");
    if std::env::var_os("PP_TEST_KEEP").is_some() {
        eprintln!("test dir kept: {}", d.path().display());
        d.disable_cleanup(true);
    }
    d
}

/// Copies a directory tree (a fixture into a test's temporary directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

pub fn count_files(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else { return 0 };
    rd.flatten().map(|e| if e.path().is_dir() { count_files(&e.path()) } else { 1 }).sum()
}

/// Runs `pp-peer --json ARGS` with a data dir, optionally in `cwd`.
pub fn cli_in(tracker: &str, dir: &Path, args: &[&str], cwd: Option<&Path>) -> Output {
    let mut cmd = Command::new(pp_peer());
    cmd.arg("--tracker").arg(tracker).arg("--data-dir").arg(dir).arg("--json").args(args);
    cmd.env("RUST_LOG", "info");
    if let Some(c) = cwd {
        cmd.current_dir(c);
    }
    cmd.output().expect("run pp-peer")
}

/// Deterministic pseudo-random bytes.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Polls `f` until it returns `Some`, or panics with `what` after [`TIMEOUT`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until every chunk of `file` has at least `copies` live holders.
pub fn wait_replicated(peer: &Peer, name: &str, copies: u64) {
    wait_for(&format!("{name} on {copies} peers"), || {
        let v = peer.cli_json(&["search", name]);
        let f = v["files"].as_array()?.iter().find(|f| f["name"] == name)?.clone();
        (f["min_holders"].as_u64()? >= copies).then_some(())
    })
}

/// A minimal HTTP/1.1 response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// One HTTP request on loopback (`Connection: close`), like curl would send it.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_string(), v.trim().to_string())).collect();
    HttpResponse { status, headers, body }
}
