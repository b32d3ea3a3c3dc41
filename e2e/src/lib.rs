//! Helpers for the end-to-end tests: start the real binaries (tracker, native peers) and a
//! real headless Chromium through chromedriver, and clean them up when a test ends.
//!
//! Binaries come from `PP_BIN_DIR` (default `target/debug`), the built web app from
//! `PP_WEB_DIR` (default `dist/`); `scripts/test.sh` builds both before the tests run.
//!
//! [`netns`] builds a small internet of network namespaces with NAT routers; the tracker, native
//! peers and Chromium start inside it with [`Tracker::start_in`], [`NativePeer::start_in`] and
//! [`Browser::start_in`].
//!
//! [`nats`] starts real JetStream `nats-server`s, alone or as a cluster on loopback, for the
//! tracker cluster tests; [`cluster`] is their harness (NATS servers and tracker nodes);
//! [`nats::NatsCluster::start_in`] and [`Tracker::start_on`] run a cluster's NATS servers and
//! tracker nodes on the public hosts of [`Topology::build_cluster`] instead.
//!
//! [`attacker`] is a lying tracker client for the attack tests; [`axe`] is the page's
//! accessibility check (axe-core and visible labels).

pub mod attacker;
pub mod axe;
pub mod cluster;
pub mod nats;
pub mod netns;
pub use netns::{Host, Topology};

use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where `scripts/setup.sh` installs tools for the tests (NATS, axe-core):
/// `$XDG_DATA_HOME/peer-pressure`, XDG_DATA_HOME defaulting to `~/.local/share`.
pub fn tools_dir() -> Option<PathBuf> {
    let data_home = std::env::var_os("XDG_DATA_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")))?;
    Some(data_home.join("peer-pressure"))
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

pub fn bin(name: &str) -> PathBuf {
    let dir =
        std::env::var_os("PP_BIN_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("target/debug"));
    dir.join(name)
}

pub fn web_dir() -> PathBuf {
    std::env::var_os("PP_WEB_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("dist"))
}

/// Where tests leave screenshots and logs for people to look at.
pub fn artifacts_dir() -> PathBuf {
    let d = workspace_root().join("target/e2e-artifacts");
    std::fs::create_dir_all(&d).expect("artifacts dir");
    d
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// A child process killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawns `cmd`, waits for a stdout line containing `ready`, returns the process and that
/// line. Its stderr goes to `<name>.log` under the artifacts dir.
pub fn spawn_until(mut cmd: Command, name: &str, ready: &str) -> anyhow::Result<(Proc, String)> {
    let log_path = artifacts_dir().join(format!("{name}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = ready.to_string();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if !sent && line.contains(&wanted) {
                let _ = tx.send(line);
                sent = true;
            }
        }
    });
    let mut proc = Proc { child, name: name.into() };
    let line = rx.recv_timeout(Duration::from_secs(30)).map_err(|_| {
        // Its stdout closed early when it died: give it a moment to be reaped.
        let deadline = Instant::now() + Duration::from_secs(1);
        let status = loop {
            match proc.child.try_wait() {
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                other => break other.ok().flatten(),
            }
        };
        let how = match status {
            Some(status) => format!("it exited ({status})"),
            None => format!("it printed no line with {ready:?}"),
        };
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev().collect();
        anyhow!("{name} did not become ready: {how}; {} ends with {:?}", log_path.display(), tail.join("\n"))
    })?;
    Ok((proc, line))
}

/// Spawns `cmd` with stdout and stderr going to a log file under the artifacts dir.
pub fn spawn_logged(mut cmd: Command, name: &str) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(artifacts_dir().join(format!("{name}.log")))?;
    let child = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {name} ({:?})", cmd.get_program()))?;
    Ok(Proc { child, name: name.into() })
}

/// Waits until something accepts TCP connections on `127.0.0.1:port`, while `proc` lives.
pub fn wait_listening(proc: &mut Proc, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = proc.child.try_wait()? {
            bail!(
                "{} exited ({status}) before listening on port {port}; see its log in {}",
                proc.name,
                artifacts_dir().display()
            );
        }
        if Instant::now() > deadline {
            bail!("{} did not listen on port {port} in {timeout:?}", proc.name);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// nginx (Debian's package) as a TLS-terminating reverse proxy in front of a tracker, run in
/// the foreground as one process (`master_process off`) with its config, pid file, logs and
/// temp files in its own directory, so a test kills all of it by killing that process.
pub struct Nginx {
    pub proc: Proc,
    pub port: u16,
    pub dir: PathBuf,
}

impl Nginx {
    /// The config: TLS on `127.0.0.1:port`, `/` proxied to `127.0.0.1:backend` with the
    /// websocket upgrade headers and the client address in `X-Forwarded-For` (a `Forwarded`
    /// header from the client is removed: the tracker would prefer it).
    pub fn config(dir: &Path, port: u16, backend: u16, cert: &Path, key: &Path) -> String {
        let d = dir.display();
        format!(
            r#"master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 512; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        ''      close;
    }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        location / {{
            proxy_pass http://127.0.0.1:{backend};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header Forwarded "";
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"#,
            cert = cert.display(),
            key = key.display(),
        )
    }

    /// Writes the config into `dir` and starts `nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'`
    /// on a free port; returns once it accepts connections.
    pub fn start(name: &str, dir: &Path, backend: u16, cert: &Path, key: &Path) -> anyhow::Result<Self> {
        // Debian puts it in /usr/sbin, which is not on every user's PATH.
        let nginx = std::env::var("NGINX")
            .unwrap_or_else(|_| if Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }.into());
        std::fs::create_dir_all(dir.join("tmp"))?;
        let port = free_port();
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, Self::config(dir, port, backend, cert, key))?;
        let mut cmd = Command::new(&nginx);
        cmd.arg("-p").arg(dir).arg("-e").arg(dir.join("error.log")).arg("-c").arg(&conf).args(["-g", "daemon off;"]);
        let mut proc = spawn_logged(cmd, name).context("is nginx installed? (scripts/setup.sh installs it)")?;
        wait_listening(&mut proc, port, Duration::from_secs(20)).with_context(|| {
            format!("nginx error log: {}", std::fs::read_to_string(dir.join("error.log")).unwrap_or_default())
        })?;
        Ok(Self { proc, port, dir: dir.to_path_buf() })
    }

    pub fn wss_url(&self) -> String {
        format!("wss://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.proc.kill();
        // Keep its logs with the other artifacts.
        for log in ["error.log", "access.log"] {
            let _ = std::fs::copy(self.dir.join(log), artifacts_dir().join(format!("{}-{log}", self.proc.name)));
        }
    }
}

/// A running tracker on a free port, with its data in a temporary directory.
pub struct Tracker {
    pub proc: Proc,
    pub port: u16,
    pub data_dir: PathBuf,
    /// The address peers reach it at: loopback, or its public address in a [`Topology`].
    pub ip: IpAddr,
    /// The network namespace it runs in ([`Tracker::start_in`]), if not the test's own.
    pub netns: Option<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl Tracker {
    pub fn start(name: &str, web: Option<&Path>) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut t = Self::start_with(name, web, tmp.path(), 0, &[])?;
        t._tmp = Some(tmp);
        Ok(t)
    }

    /// Starts a tracker with a given data dir, port (0: any) and extra flags.
    pub fn start_with(
        name: &str,
        web: Option<&Path>,
        data_dir: &Path,
        port: u16,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("pp-tracker"));
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}")).arg("--data-dir").arg(data_dir).args(extra);
        let (proc, port) = spawn_tracker(cmd, name, web)?;
        Ok(Self {
            proc,
            port,
            data_dir: data_dir.to_path_buf(),
            ip: Ipv4Addr::LOCALHOST.into(),
            netns: None,
            _tmp: None,
        })
    }

    /// Starts a tracker in the tracker host of `net`, listening on `0.0.0.0` (a port the
    /// kernel picks), with its data in a temporary directory. Its URLs use the tracker's
    /// public address, which every host of `net` reaches (the test's own namespace does not:
    /// [`Tracker::get_json`] runs `curl` inside the tracker's namespace).
    pub fn start_in(name: &str, net: &Topology, web: Option<&Path>, extra: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_in(name, net, Host::Tracker, "0.0.0.0:0".into(), web, extra)
    }

    /// Starts a tracker in host `h` of `net` (a node of [`Topology::build_cluster`]),
    /// listening on the host's address and `port` (fixed, so that `extra` can name its
    /// `--public-url`; each namespace has ports of its own), with its data in a temporary
    /// directory. Its URLs use the host's address; [`Tracker::get_json`] runs `curl` inside
    /// the host's namespace.
    pub fn start_on(
        name: &str,
        net: &Topology,
        h: Host,
        port: u16,
        web: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        Self::spawn_in(name, net, h, format!("{}:{port}", net.ip(h)), web, extra)
    }

    fn spawn_in(
        name: &str,
        net: &Topology,
        h: Host,
        listen: String,
        web: Option<&Path>,
        extra: &[&str],
    ) -> anyhow::Result<Self> {
        let tmp = tempfile::tempdir()?;
        let mut cmd = net.command(h, bin("pp-tracker"));
        cmd.args(["--listen", &listen, "--data-dir"]).arg(tmp.path()).args(extra);
        let (proc, port) = spawn_tracker(cmd, name, web)?;
        Ok(Self {
            proc,
            port,
            data_dir: tmp.path().to_path_buf(),
            ip: net.ip(h).into(),
            netns: Some(net.ns(h).to_string()),
            _tmp: Some(tmp),
        })
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}:{}/ws", self.ip, self.port)
    }
    pub fn http_url(&self) -> String {
        format!("http://{}:{}", self.ip, self.port)
    }
    /// GET a JSON document from the tracker's API.
    pub fn get_json(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let Some(_) = &self.netns else { return http_get_json(self.port, path) };
        let body = self.get_text(path)?;
        serde_json::from_str(&body).with_context(|| format!("GET {path} answered {body:?}"))
    }

    /// Waits until every chunk of file `id` has at least `n` live copies.
    pub fn wait_copies(&self, id: &str, n: u64, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            let h = &self.get_json(&format!("/api/files/{id}"))?["health"];
            if h["min_copies"].as_u64().unwrap_or(0) >= n {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("file {id} never reached {n} copies in {timeout:?}: {h}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// GET a document from the tracker as text (inside its namespace, if it runs in one).
    pub fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let url = format!("{}{path}", self.http_url());
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => Command::new("curl"),
        };
        let out = cmd.args(["-sS", "--fail", "--max-time", "10", &url]).output().context("cannot run curl")?;
        if !out.status.success() {
            bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Polls the tracker's JSON document `path` until `pred` holds for it; returns it.
pub async fn wait_json(
    tracker: &Tracker,
    path: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = tracker.get_json(path);
        if let Ok(v) = &v {
            if pred(v) {
                return Ok(v.clone());
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting on {path}: {v:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Starts a tracker command (serving `web` if given) and reads its port from the line that
/// says where it listens.
fn spawn_tracker(mut cmd: Command, name: &str, web: Option<&Path>) -> anyhow::Result<(Proc, u16)> {
    if let Some(w) = web {
        cmd.arg("--web-dir").arg(w);
    }
    let (proc, line) = spawn_until(cmd, name, "listening on")?;
    let port =
        line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).ok_or_else(|| anyhow!("no port in {line:?}"))?;
    Ok((proc, port))
}

/// Minimal HTTP/1.0 GET on loopback returning the JSON body.
pub fn http_get_json(port: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    let json = body.split_once("\r\n\r\n").map(|(_, b)| b).ok_or_else(|| anyhow!("no HTTP body"))?;
    Ok(serde_json::from_str(json)?)
}

/// A native peer (`pp-peer run`) with its own data dir.
pub struct NativePeer {
    pub proc: Proc,
    pub data_dir: PathBuf,
    pub tracker: String,
    pub peer_id: String,
    /// What its commands run behind (`ip netns exec NS` for a peer in a namespace), so that
    /// [`NativePeer::cli`] reaches the same network.
    pub prefix: Vec<String>,
}

impl NativePeer {
    pub fn start(name: &str, tracker: &Tracker, data_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(name, &tracker.ws_url(), data_dir, &[], &[])
    }

    /// Starts `[prefix…] pp-peer --tracker URL --data-dir DIR [global…] run`; the prefix can
    /// run it inside a network namespace (`ip netns exec NS`).
    pub fn start_with(
        name: &str,
        tracker_url: &str,
        data_dir: &Path,
        global: &[&str],
        prefix: &[&str],
    ) -> anyhow::Result<Self> {
        let mut cmd = prefixed(prefix, bin("pp-peer"));
        cmd.arg("--tracker").arg(tracker_url).arg("--data-dir").arg(data_dir).args(global).arg("run");
        cmd.env("RUST_LOG", std::env::var("PP_PEER_LOG").unwrap_or_else(|_| "debug,str0m=info".into()));
        let (proc, line) = spawn_until(cmd, name, "running")?;
        let peer_id = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        Ok(Self {
            proc,
            data_dir: data_dir.into(),
            tracker: tracker_url.to_string(),
            peer_id,
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        })
    }

    /// Starts `pp-peer --tracker URL --data-dir DIR run` inside host `h` of `net`, with default
    /// flags otherwise: it finds its own addresses, as on a real machine.
    pub fn start_in(name: &str, net: &Topology, h: Host, tracker: &Tracker, data_dir: &Path) -> anyhow::Result<Self> {
        let prefix = net.exec_prefix(h);
        let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
        Self::start_with(name, &tracker.ws_url(), data_dir, &[], &prefix)
    }

    /// Like [`NativePeer::start`], with extra environment (e.g. `PP_RELAY_ONLY=1`).
    pub fn start_with_env(
        name: &str,
        tracker: &Tracker,
        data_dir: &Path,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut cmd = Command::new(bin("pp-peer"));
        cmd.arg("--tracker").arg(tracker.ws_url()).arg("--data-dir").arg(data_dir).arg("run");
        cmd.env("RUST_LOG", std::env::var("PP_PEER_LOG").unwrap_or_else(|_| "debug,str0m=info".into()));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (proc, line) = spawn_until(cmd, name, "running")?;
        let peer_id = line.split_whitespace().nth(1).unwrap_or_default().to_string();
        Ok(Self { proc, data_dir: data_dir.into(), tracker: tracker.ws_url(), peer_id, prefix: Vec::new() })
    }

    /// Runs `pp-peer --json <args>` against this peer's data dir; returns (exit code, stdout JSON or text).
    pub fn cli(&self, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
        let prefix: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        let out = prefixed(&prefix, bin("pp-peer"))
            .arg("--tracker")
            .arg(&self.tracker)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--json")
            .args(args)
            .output()?;
        Ok((
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ))
    }

    /// Puts a random file of `size` bytes (made from `seed` in `dir`); returns its id and bytes.
    pub fn put_random(&self, dir: &Path, name: &str, size: usize, seed: u64) -> anyhow::Result<(String, Vec<u8>)> {
        let (path, bytes) = random_file(dir, name, size, seed)?;
        let put = self.cli_json(&["put", &path.to_string_lossy()])?;
        let id = put["files"][0]["id"].as_str().context("put printed no id")?.to_string();
        Ok((id, bytes))
    }

    /// Runs a CLI command that must succeed and print JSON.
    pub fn cli_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let (code, out, err) = self.cli(args)?;
        if code != 0 {
            bail!("pp-peer {args:?} exited {code}: {err}");
        }
        serde_json::from_str(&out).with_context(|| format!("pp-peer {args:?} printed {out:?}"))
    }
}

/// `program` run behind `prefix` (e.g. `ip netns exec NS program`), or on its own.
fn prefixed(prefix: &[&str], program: PathBuf) -> Command {
    match prefix {
        [] => Command::new(program),
        [first, rest @ ..] => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
    }
}

/// What the tracker may relay of a `size`-byte transfer on direct paths: requests sent through
/// the relay before a data channel opened are answered through it (relay-then-upgrade), at
/// most one relay pipeline per link that fetches (`swarm_core::peer::config::RELAY_PIPELINE`
/// chunks), plus 5% of the file. (A flat 5% failed in CI: under load the channel through the
/// NATs took longer than the 300 ms grace, and a pipeline of 4 chunks, 1 MiB, per link went
/// through the relay.)
pub fn relay_allowance(size: usize, links: usize) -> u64 {
    use swarm_core::peer::config::RELAY_PIPELINE;
    (links * RELAY_PIPELINE * swarm_core::CHUNK_SIZE as usize + size / 20) as u64
}

/// Random bytes of a given length (not a multiple of the chunk size, to test the short tail).
pub fn random_file(dir: &Path, name: &str, len: usize, seed: u64) -> anyhow::Result<(PathBuf, Vec<u8>)> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let path = dir.join(name);
    std::fs::write(&path, &data)?;
    Ok((path, data))
}

/// Headless Chromium driven through chromedriver (WebDriver).
pub struct Browser {
    pub client: fantoccini::Client,
    /// chromedriver's port on the test's loopback (for [`cdp`] calls); for a browser in a
    /// namespace ([`Browser::start_in`]), the port of the forward into it.
    pub driver_port: u16,
    _driver: Proc,
    /// For [`Browser::start_in`]: the forward from `driver_port` to chromedriver's port on
    /// the namespace's own loopback.
    _forward: Option<Forward>,
    _profile: tempfile::TempDir,
}

fn chromedriver() -> String {
    std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into())
}

/// Starts `cmd` (chromedriver) on `port`, logging to `<name>-chromedriver.log`.
fn spawn_driver(mut cmd: Command, name: &str, port: u16) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(artifacts_dir().join(format!("{name}-chromedriver.log")))?;
    let driver = cmd
        .arg(format!("--port={port}"))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start chromedriver (run scripts/setup.sh)")?;
    Ok(Proc { child: driver, name: "chromedriver".into() })
}

/// Waits until a WebDriver server answers `GET /status` on the test's loopback `port`.
async fn wait_driver(port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = (|| -> std::io::Result<String> {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            // chromedriver refuses HTTP/1.0, and keeps the connection open after answering
            // even when asked to close it: read until the answer says it is ready.
            write!(s, "GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
            let mut answer = Vec::new();
            let mut buf = [0u8; 4096];
            while !String::from_utf8_lossy(&answer).contains("\"ready\":true") {
                match s.read(&mut buf)? {
                    0 => break,
                    n => answer.extend_from_slice(&buf[..n]),
                }
            }
            Ok(String::from_utf8_lossy(&answer).into_owned())
        })();
        let last = match answer {
            Ok(a) if a.contains("\"ready\":true") => return Ok(()),
            Ok(a) => format!("answer {a:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("chromedriver did not answer on 127.0.0.1:{port} (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl Browser {
    pub async fn start(name: &str) -> anyhow::Result<Self> {
        Self::start_with(name, &[], serde_json::Value::Null).await
    }

    /// Like [`Browser::start`], with extra Chromium switches and profile preferences (`prefs`,
    /// e.g. `{"webrtc": {"ip_handling_policy": "disable_non_proxied_udp"}}`: WebRTC may not
    /// use UDP, so no data channel can open, as behind a firewall that drops UDP).
    pub async fn start_with(name: &str, extra_args: &[&str], prefs: serde_json::Value) -> anyhow::Result<Self> {
        let port = free_port();
        let driver = spawn_driver(Command::new(chromedriver()), name, port)?;
        wait_driver(port).await?;
        Self::open_session(driver, None, port, extra_args, prefs).await
    }

    /// Starts Chromium inside host `h` of `net` (chromedriver runs there too, so the browser's
    /// traffic, WebRTC included, leaves from that host), driven from the test's namespace
    /// through a [`Forward`] from a loopback port here to chromedriver's port on the
    /// namespace's own loopback. [`Browser::driver_port`] is the forward, so [`cdp`] works.
    pub async fn start_in(name: &str, net: &Topology, h: Host) -> anyhow::Result<Self> {
        // Ports on the namespace's loopback: nothing but this process's browsers use them.
        static NEXT_INNER: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(9515);
        let inner = NEXT_INNER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let driver = spawn_driver(net.command(h, chromedriver()), name, inner)?;
        let forward = Forward::start(net.ns(h), inner)?;
        let outer = forward.port;
        wait_driver(outer).await.with_context(|| format!("chromedriver in {} through the forward", net.ns(h)))?;
        Self::open_session(driver, Some(forward), outer, &[], serde_json::Value::Null).await
    }

    /// Opens a headless Chromium session on the chromedriver reached at loopback `port`, with
    /// extra switches and profile preferences (see [`Browser::start_with`]).
    async fn open_session(
        driver: Proc,
        forward: Option<Forward>,
        port: u16,
        extra_args: &[&str],
        prefs: serde_json::Value,
    ) -> anyhow::Result<Self> {
        let profile = tempfile::tempdir()?;
        let mut args: Vec<String> = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,1000",
        ]
        .iter()
        .chain(extra_args)
        .map(|a| a.to_string())
        .collect();
        // Extra switches for a debugging run, e.g. `PP_CHROMIUM_ARGS="--enable-logging --v=0
        // --log-file=/tmp/chromium.log"` keeps the page's console (`INFO:CONSOLE` lines).
        args.extend(std::env::var("PP_CHROMIUM_ARGS").unwrap_or_default().split_whitespace().map(String::from));
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": args,
            }
        });
        if !prefs.is_null() {
            caps["goog:chromeOptions"]["prefs"] = prefs;
        }
        let caps = caps.as_object().expect("object").clone().into_iter().collect();
        let client = fantoccini::ClientBuilder::rustls()?
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("cannot open a Chromium session")?;
        Ok(Self { client, driver_port: port, _driver: driver, _forward: forward, _profile: profile })
    }

    /// Kills every Chromium process of this browser with SIGKILL, as a crash would.
    pub fn kill(&self) {
        kill_processes_with_arg(&format!("--user-data-dir={}", self._profile.path().display()));
    }

    /// Saves a screenshot under the artifacts dir.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = artifacts_dir().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Waits until `css` matches an element whose attribute `attr` is non-empty; returns it.
    pub async fn wait_attr(&self, css: &str, attr: &str, timeout: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.client.find(fantoccini::Locator::Css(css)).await {
                if let Ok(Some(v)) = el.attr(attr).await {
                    if !v.is_empty() {
                        return Ok(v);
                    }
                }
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {css}[{attr}]");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Polls a numeric attribute (pages refresh their counters periodically) until it reaches
    /// `at_least` or 15 s pass; returns the last value seen.
    pub async fn num_attr_at_least(&self, css: &str, attr: &str, at_least: u64) -> anyhow::Result<u64> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v: u64 = self.wait_attr(css, attr, Duration::from_secs(5)).await?.parse()?;
            if v >= at_least || Instant::now() > deadline {
                return Ok(v);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the text of `css` satisfies `pred`; returns the text.
    pub async fn wait_text(&self, css: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            if let Ok(el) = self.client.find(fantoccini::Locator::Css(css)).await {
                if let Ok(t) = el.text().await {
                    if pred(&t) {
                        return Ok(t);
                    }
                    last = t;
                }
            }
            if Instant::now() > deadline {
                bail!("timed out waiting on {css}; its text was {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until `css` matches at least one element.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> anyhow::Result<fantoccini::elements::Element> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(el) = self.client.find(fantoccini::Locator::Css(css)).await {
                return Ok(el);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {css}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads the bytes behind a `blob:` (or same-origin) URL from inside the page.
    pub async fn fetch_bytes(&self, url: &str) -> anyhow::Result<Vec<u8>> {
        use base64::Engine;
        let script = r#"
            const [url, done] = arguments;
            fetch(url).then(r => r.arrayBuffer()).then(buf => {
                const bytes = new Uint8Array(buf);
                let s = '';
                for (let i = 0; i < bytes.length; i += 0x8000) {
                    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
                }
                done(btoa(s));
            }).catch(e => done('ERROR:' + e));
        "#;
        let v = self.client.execute_async(script, vec![serde_json::json!(url)]).await?;
        let s = v.as_str().ok_or_else(|| anyhow!("fetch returned {v}"))?;
        if let Some(e) = s.strip_prefix("ERROR:") {
            bail!("page could not read {url}: {e}");
        }
        Ok(base64::engine::general_purpose::STANDARD.decode(s)?)
    }
}

/// The numeric attribute `attr` of the element `css` matches (waiting up to 5 s for it).
pub async fn num(browser: &Browser, css: &str, attr: &str) -> anyhow::Result<u64> {
    let v = browser.wait_attr(css, attr, Duration::from_secs(5)).await?;
    v.parse().with_context(|| format!("{css}[{attr}] is not a number: {v:?}"))
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver dies with its `Proc`; make sure its Chromium does not linger.
        self.kill();
    }
}

/// Forwards a port on the test's loopback to a port on the loopback of a network namespace,
/// with no link between the two networks: a thread of the test process accepts each
/// connection and pipes it through `ip netns exec NS socat STDIO TCP4:127.0.0.1:PORT`. The
/// listener lives in the test process, so nothing is left listening here when the test
/// ends, even by SIGKILL; `Drop` stops it and kills the pipes' `socat`s.
pub struct Forward {
    /// The port on the test's loopback.
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pipes: std::sync::Arc<std::sync::Mutex<Vec<Child>>>,
}

impl Forward {
    pub fn start(ns: &str, inner_port: u16) -> anyhow::Result<Self> {
        use std::sync::{atomic::AtomicBool, atomic::Ordering, Arc, Mutex};
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let pipes: Arc<Mutex<Vec<Child>>> = Arc::new(Mutex::new(Vec::new()));
        let (ns, target) = (ns.to_string(), format!("TCP4:127.0.0.1:{inner_port}"));
        let (stop2, pipes2) = (stop.clone(), pipes.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let child = Command::new("ip")
                    .args(["netns", "exec", &ns, "socat", "STDIO", &target])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .spawn();
                let Ok(mut child) = child else { continue };
                let (Some(mut to_child), Some(mut from_child)) = (child.stdin.take(), child.stdout.take()) else {
                    continue;
                };
                let (Ok(mut up), mut down) = (conn.try_clone(), conn) else { continue };
                let mut pipes = pipes2.lock().expect("pipes");
                pipes.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
                pipes.push(child);
                drop(pipes);
                std::thread::spawn(move || {
                    pipe(&mut up, &mut to_child);
                });
                std::thread::spawn(move || {
                    pipe(&mut from_child, &mut down);
                    let _ = down.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        Ok(Self { port, stop, pipes })
    }
}

/// Copies `from` to `to` until either ends, a chunk at a time as it arrives. (Not
/// `std::io::copy`: between a socket and a child's pipes, answers never reached the client
/// with it here.)
fn pipe(from: &mut impl std::io::Read, to: &mut impl std::io::Write) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return;
                }
            }
        }
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accept loop so it sees `stop`.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        for mut c in self.pipes.lock().map(|mut p| std::mem::take(&mut *p)).unwrap_or_default() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGKILLs every process whose command line contains `arg` (found through /proc).
pub fn kill_processes_with_arg(arg: &str) {
    let Ok(dir) = std::fs::read_dir("/proc") else { return };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        if cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()) {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

/// Runs a Chrome DevTools Protocol command in a chromedriver session
/// (`POST /session/{id}/goog/cdp/execute` through `curl`), e.g. `Runtime.getHeapUsage`.
pub fn cdp(driver_port: u16, session: &str, cmd: &str, params: serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let body = serde_json::json!({ "cmd": cmd, "params": params }).to_string();
    let out = Command::new("curl")
        .args(["-s", "-X", "POST", "-H", "Content-Type: application/json", "-d", &body])
        .arg(format!("http://localhost:{driver_port}/session/{session}/goog/cdp/execute"))
        .output()
        .context("cannot run curl")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("chromedriver answered {:?}", String::from_utf8_lossy(&out.stdout)))?;
    Ok(v["value"].clone())
}
