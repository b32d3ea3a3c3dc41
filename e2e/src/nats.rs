//! Real NATS servers for the tracker cluster tests: one JetStream-enabled `nats-server`
//! ([`NatsServer::start`]) or a cluster of them on loopback ([`NatsCluster::start`]), each on
//! free ports with its JetStream store in a temporary directory, killed when dropped. A
//! server of a cluster can be killed and started again on its ports and store
//! ([`NatsServer::kill`], [`NatsServer::restart`]), as a crash and a recovery would.
//!
//! [`NatsCluster::start_in`] starts a cluster across hosts of a [`Topology`] instead: one
//! server per host, inside its network namespace, bound to the host's address on the standard
//! ports ([`CLIENT_PORT`], [`ROUTE_PORT`], [`MONITOR_PORT`]: each namespace has ports of its
//! own), routed to the others' addresses, so the cluster's traffic crosses the topology's
//! links. Its monitoring endpoints are read with `curl` inside the namespace.
//!
//! The binary is found by [`nats_server_bin`]: `PP_NATS_SERVER`, else where
//! `scripts/setup.sh` installs it (`~/.local/share/peer-pressure/nats/bin/nats-server`), else
//! `PATH`. Each server's log is `nats-<name>-<port>.log` in the artifacts dir
//! ([`crate::artifacts_dir`]), `nats-<namespace>-<name>.log` for a server in a namespace.

use crate::{artifacts_dir, wait_listening, Host, Proc, Topology};
use anyhow::{anyhow, bail, Context};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The name of the cluster every [`NatsCluster`] forms (`--cluster_name`).
pub const CLUSTER_NAME: &str = "pp";

/// How long a server may take to accept connections after it starts.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Client port of a server started in a namespace ([`NatsCluster::start_in`]).
pub const CLIENT_PORT: u16 = 4222;
/// Route (cluster) port of a server started in a namespace.
pub const ROUTE_PORT: u16 = 6222;
/// Monitoring port of a server started in a namespace.
pub const MONITOR_PORT: u16 = 8222;

/// The `nats-server` to run: `$PP_NATS_SERVER`, else the one `scripts/setup.sh` installs
/// (`$XDG_DATA_HOME/peer-pressure/nats/bin/nats-server`, XDG_DATA_HOME defaulting to
/// `~/.local/share`), else `nats-server` from `PATH` (which may be missing: starting it then
/// fails with a message that says how to install it).
pub fn nats_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PP_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    if let Some(installed) = crate::tools_dir().map(|d| d.join("nats/bin/nats-server")) {
        if installed.is_file() {
            return installed;
        }
    }
    let on_path = std::env::var_os("PATH")
        .and_then(|path| std::env::split_paths(&path).map(|d| d.join("nats-server")).find(|p| p.is_file()));
    on_path.unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// `n` distinct free loopback ports (all held at once while they are picked).
pub fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    held.iter().map(|l| l.local_addr().expect("addr").port()).collect()
}

/// The `INFO` a NATS server sends first on a new client connection on `127.0.0.1:port`, as
/// JSON (`server_name`, `jetstream`, `cluster`, …).
pub fn server_info(port: u16) -> anyhow::Result<serde_json::Value> {
    let s = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).with_context(|| format!("no INFO from 127.0.0.1:{port}"))?;
    let json = line.strip_prefix("INFO ").ok_or_else(|| anyhow!("127.0.0.1:{port} sent {line:?}, not INFO"))?;
    serde_json::from_str(json.trim_end()).with_context(|| format!("bad INFO from 127.0.0.1:{port}: {line:?}"))
}

/// One `nats-server` with JetStream on, on loopback or inside a namespace of a [`Topology`].
pub struct NatsServer {
    /// Its `-n` name (`server_name` in its `INFO`).
    pub name: String,
    /// The address it listens on: loopback, or its host's address in a [`Topology`].
    pub ip: IpAddr,
    /// The network namespace it runs in ([`NatsCluster::start_in`]), if not the test's own.
    pub netns: Option<String>,
    /// Client port: `nats://{ip}:{port}`.
    pub port: u16,
    /// Monitoring port (`/healthz`, `/varz`, `/routez`, `/jsz`).
    pub monitor_port: u16,
    /// Route port, for a server of a cluster.
    pub cluster_port: Option<u16>,
    /// Its JetStream store (kept across [`NatsServer::restart`]).
    pub store_dir: PathBuf,
    /// Route URLs of the other servers of its cluster.
    routes: Vec<String>,
    proc: Option<Proc>,
    starts: u32,
    _store: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a single JetStream server on free loopback ports and waits until it accepts
    /// connections.
    pub fn start() -> anyhow::Result<NatsServer> {
        let ports = free_ports(2);
        let mut s = Self::new("solo".into(), ports[0], ports[1], None, Vec::new())?;
        s.spawn()?;
        Ok(s)
    }

    fn new(
        name: String,
        port: u16,
        monitor_port: u16,
        cluster_port: Option<u16>,
        routes: Vec<String>,
    ) -> anyhow::Result<Self> {
        let store = tempfile::Builder::new().prefix(&format!("nats-{name}-")).tempdir()?;
        Ok(Self {
            name,
            ip: Ipv4Addr::LOCALHOST.into(),
            netns: None,
            port,
            monitor_port,
            cluster_port,
            store_dir: store.path().to_path_buf(),
            routes,
            proc: None,
            starts: 0,
            _store: store,
        })
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let bin = nats_server_bin();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let ip = self.ip.to_string();
        cmd.args(["-js", "-a", &ip, "-p", &self.port.to_string(), "-m", &self.monitor_port.to_string()])
            .args(["-n", &self.name, "-sd"])
            .arg(&self.store_dir);
        if let Some(cport) = self.cluster_port {
            cmd.args(["--cluster_name", CLUSTER_NAME, "--cluster", &format!("nats://{ip}:{cport}")]);
            if !self.routes.is_empty() {
                cmd.args(["--routes", &self.routes.join(",")]);
            }
        }
        self.starts += 1;
        let log_name = match &self.netns {
            Some(ns) => format!("nats-{ns}-{}", self.name),
            None => format!("nats-{}-{}", self.name, self.port),
        };
        let log_name = if self.starts > 1 { format!("{log_name}-start{}", self.starts) } else { log_name };
        let mut proc = crate::spawn_logged(cmd, &log_name).map_err(|e| {
            anyhow!(
                "{e:#}: is nats-server installed? scripts/setup.sh puts it in ~/.local/share/peer-pressure/nats/bin \
                 (or set PP_NATS_SERVER); tried {}",
                bin.display()
            )
        })?;
        let context = || format!("nats-server {} (log: {}/{log_name}.log)", self.name, artifacts_dir().display());
        if self.netns.is_none() {
            wait_listening(&mut proc, self.port, START_TIMEOUT).with_context(context)?;
            self.proc = Some(proc);
            return server_info(self.port).map(drop);
        }
        // In a namespace: its monitoring port answers once it serves (the client port opens
        // first).
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match self.monitor("/varz") {
                Ok((200, _)) => break,
                last => {
                    if let Some(status) = proc.child.try_wait()? {
                        return Err(anyhow!("it exited ({status})")).with_context(context);
                    }
                    if Instant::now() > deadline {
                        return Err(anyhow!("not serving after {START_TIMEOUT:?}: /varz {last:?}"))
                            .with_context(context);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        self.proc = Some(proc);
        Ok(())
    }

    /// Its client URL, `nats://IP:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.ip, self.port)
    }

    /// GET `path` from its monitoring port (`/healthz`, `/varz`, `/routez`, `/jsz`): status
    /// code and body. Inside its namespace (through `curl`) for a server in a [`Topology`].
    pub fn monitor(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let Some(ns) = &self.netns else { return http_get(self.monitor_port, path) };
        let url = format!("http://{}:{}{path}", self.ip, self.monitor_port);
        let out = Command::new("ip")
            .args(["netns", "exec", ns, "curl", "-sS", "--max-time", "5", "-w", "\\n%{http_code}", &url])
            .output()
            .context("cannot run curl")?;
        if !out.status.success() {
            bail!("GET {url}: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let (body, code) = text.rsplit_once('\n').ok_or_else(|| anyhow!("GET {url}: no status in {text:?}"))?;
        Ok((code.trim().parse().with_context(|| format!("GET {url}: status {code:?}"))?, body.to_string()))
    }

    /// Its process id while it runs (to stop it with SIGSTOP, as a partition would).
    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().map(|p| p.child.id())
    }

    /// Kills it at once (SIGKILL), as a crash would. Its ports and store stay its own.
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill();
        }
    }

    /// Starts it again (after [`NatsServer::kill`]) on the same ports with the same store, and
    /// waits until it accepts connections.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Whether its process runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| matches!(p.child.try_wait(), Ok(None)))
    }

    /// The `INFO` it sends a new client (on loopback only: for a server in a namespace, read
    /// [`NatsServer::monitor`]'s `/varz`).
    pub fn info(&self) -> anyhow::Result<serde_json::Value> {
        anyhow::ensure!(self.netns.is_none(), "nats-server {} runs in a namespace: read its /varz", self.name);
        server_info(self.port)
    }

    /// Waits until its `/healthz` says ok: it accepts clients and its JetStream is current
    /// (in a cluster: the JetStream meta group has a leader this server follows).
    pub fn wait_healthy(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.monitor("/healthz") {
                Ok((200, _)) => return Ok(()),
                Ok((status, body)) => format!("{status} {}", body.trim()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("nats-server {} not healthy after {timeout:?}: /healthz {last}", self.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A cluster of JetStream servers on loopback (`--cluster_name pp`), each routed to all
/// others; killed when dropped.
pub struct NatsCluster {
    pub servers: Vec<NatsServer>,
}

impl NatsCluster {
    /// Starts `n` servers (3 for a JetStream quorum that survives one loss) named `n1`, `n2`, …,
    /// and waits until each accepts connections. JetStream may still be electing its meta
    /// leader: [`NatsCluster::wait_healthy`] waits for that.
    pub fn start(n: usize) -> anyhow::Result<NatsCluster> {
        anyhow::ensure!(n >= 1, "a cluster needs at least one server");
        let ports = free_ports(3 * n);
        let route = |i: usize| format!("nats://127.0.0.1:{}", ports[3 * i + 2]);
        let mut servers = (0..n)
            .map(|i| {
                let routes = (0..n).filter(|&j| j != i).map(route).collect();
                NatsServer::new(format!("n{}", i + 1), ports[3 * i], ports[3 * i + 1], Some(ports[3 * i + 2]), routes)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for s in &mut servers {
            s.spawn()?;
        }
        Ok(NatsCluster { servers })
    }

    /// Starts one server per host of `hosts` in `net` (named `n1`, `n2`, … in their order),
    /// each inside its host's namespace, bound to the host's address on [`CLIENT_PORT`],
    /// [`ROUTE_PORT`] and [`MONITOR_PORT`], routed to the other hosts' addresses; waits until
    /// each serves. JetStream may still be electing its meta leader:
    /// [`NatsCluster::wait_healthy`] waits for that.
    pub fn start_in(net: &Topology, hosts: &[Host]) -> anyhow::Result<NatsCluster> {
        anyhow::ensure!(!hosts.is_empty(), "a cluster needs at least one server");
        let route = |h: Host| format!("nats://{}:{ROUTE_PORT}", net.ip(h));
        let mut servers = hosts
            .iter()
            .enumerate()
            .map(|(i, &h)| {
                let routes = hosts.iter().filter(|&&o| o != h).map(|&o| route(o)).collect();
                let mut s =
                    NatsServer::new(format!("n{}", i + 1), CLIENT_PORT, MONITOR_PORT, Some(ROUTE_PORT), routes)?;
                s.ip = net.ip(h).into();
                s.netns = Some(net.ns(h).to_string());
                Ok(s)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for s in &mut servers {
            s.spawn()?;
        }
        Ok(NatsCluster { servers })
    }

    /// Every server's client URL.
    pub fn urls(&self) -> Vec<String> {
        self.servers.iter().map(NatsServer::url).collect()
    }

    /// Every server's client URL, comma-separated (what a client given several servers takes).
    pub fn url_list(&self) -> String {
        self.urls().join(",")
    }

    /// Server `i` (0-based).
    pub fn server(&mut self, i: usize) -> &mut NatsServer {
        &mut self.servers[i]
    }

    /// Kills server `i` (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        self.servers[i].kill();
    }

    /// Starts server `i` again on its ports and store.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.servers[i].restart()
    }

    /// Waits until every running server is healthy ([`NatsServer::wait_healthy`]).
    pub fn wait_healthy(&mut self, timeout: Duration) -> anyhow::Result<()> {
        for s in self.servers.iter_mut().filter(|s| s.proc.is_some()) {
            s.wait_healthy(timeout)?;
        }
        Ok(())
    }
}

/// A minimal HTTP/1.0 GET on loopback: status code and body.
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status =
        text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or_else(|| anyhow!("no HTTP status"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}
