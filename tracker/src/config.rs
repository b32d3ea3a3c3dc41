//! The tracker's settings as the server takes them ([`Config`], with the limits that keep
//! one peer, or many, from taking it down: [`Limits`]); `crate::settings` fills them from
//! flags, environment and a file.

use crate::net::{client_addr, ice};
use std::path::PathBuf;
use std::time::Duration;

/// Tracker settings (the binary fills them from flags and environment).
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the durable file index lives; `None` keeps the index in memory only.
    pub data_dir: Option<PathBuf>,
    /// Directory holding the built web app (`index.html`, wasm, js); `None` serves no page.
    pub web_dir: Option<PathBuf>,
    /// ICE servers configured by the operator, handed to peers after the tracker's own.
    pub ice_servers: Vec<swarm_core::IceServer>,
    /// The TURN servers' shared secret: TURN entries without credentials get short-lived
    /// ones per peer ([`crate::net::ice`]); `None`: only static credentials, if configured.
    pub turn: Option<ice::TurnSecret>,
    /// UDP port of the tracker's own STUN service ([`crate::serve_with_stun`] sets it).
    pub stun_port: Option<u16>,
    /// A peer that sends nothing for this long is dropped.
    pub idle_timeout: Duration,
    /// Time a new connection has to say hello.
    pub hello_timeout: Duration,
    /// A peer whose socket does not take a batch of frames within this time is dropped.
    pub send_timeout: Duration,
    /// Time for an HTTP request head to arrive whole, and for an idle kept-alive HTTP
    /// connection to send its next request (`crate::http::server`).
    pub header_timeout: Duration,
    /// Replication factor, grace period and repair limits.
    pub repair: swarm_core::swarm::repair::RepairConfig,
    /// What one peer or connection may do.
    pub limits: Limits,
    /// Reverse proxies whose `Forwarded` / `X-Forwarded-For` headers name the client address
    /// (for per-address limits and logs); empty: those headers are ignored.
    pub trusted_proxies: client_addr::TrustedProxies,
    /// Client addresses the per-address identity, publish and file limits do not apply to
    /// (default: loopback, where tests, `scripts/up.sh` and an untrusted local proxy put
    /// every peer). The connections-per-address limit applies to them all the same.
    pub limit_exempt: client_addr::TrustedProxies,
    /// Join tokens of a private swarm: when any is set, `hello` must carry one of them.
    /// Empty: the tracker is open.
    pub join_tokens: Vec<String>,
    /// A file with a chunk nobody holds leaves the index after this long (it is left out of
    /// search and listings at once); `None`: never.
    pub unavailable_ttl: Option<Duration>,
    /// A copy of a chunk no file uses is trimmed once it has been so this long and its
    /// holder announced nothing for this long ([`swarm_core::swarm::orphans`]); `None`: never.
    pub orphan_grace: Option<Duration>,
    /// Join a tracker cluster through NATS ([`crate::cluster`]); `None`: a single tracker.
    pub cluster: Option<ClusterConfig>,
    /// This tracker's websocket URLs as peers reach it (`--public-url`): a `hello` is accepted
    /// when signed for one of their origins, or for the socket address the connection arrived
    /// on ([`swarm_core::identity::origin_accepted`]).
    pub public_urls: Vec<String>,
}

/// Limits that keep one peer (or many) from taking the tracker down. Each refusal comes with
/// an error message that says which limit was hit.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Live peers at once; a hello beyond it is refused with `limit_reached`.
    pub max_peers: usize,
    /// Open connections per client address (0: no limit; an IPv6 /64 counts as one address):
    /// TCP connections at accept ([`crate::net::conns`]), and behind a trusted proxy websockets by the
    /// address the proxy forwarded (see [`crate::net::client_addr`]).
    pub max_conns_per_ip: usize,
    /// Open TCP connections in all, counted at accept (0: no limit).
    pub max_connections: usize,
    /// Largest `signal` a peer may send, in bytes of its JSON text (SDP, candidate).
    pub max_signal_bytes: usize,
    /// Files one peer may add to the index (counted since the tracker started).
    pub max_files_per_peer: u32,
    /// Chunks in one manifest (at most [`swarm_core::content::MAX_CHUNKS`]).
    pub max_manifest_chunks: usize,
    /// Messages per second per connection (token bucket; 0: no limit) ...
    pub msgs_per_sec: u32,
    /// ... and how many may come at once.
    pub msg_burst: u32,
    /// Relay bytes per second per connection (token bucket; 0: no limit) ...
    pub relay_bytes_per_sec: u64,
    /// ... and how many may come at once (at least one full relay frame).
    pub relay_burst_bytes: u64,
    /// Bytes of messages (JSON text) per second per connection (0: no limit), and per client
    /// address (not exempt ones) for all its connections together: past either, the
    /// connection is not read until it may go on (backpressure: what a stranger sends costs
    /// the tracker parsing and lock time, so an unlimited uplink must not buy more of it) ...
    pub msg_bytes_per_sec: u64,
    pub msg_bytes_per_sec_per_ip: u64,
    /// ... and how many bytes may come at once (by default one largest message,
    /// [`swarm_core::wire::MAX_MESSAGE_BYTES`]; a larger message waits for what it is over).
    pub msg_burst_bytes: u64,
    /// What a search costs of the message byte rates per name index entry it looked at (a
    /// precise query looks at a few, the broadest at every name: 0.02–7 ms at 100,000 files,
    /// release build); REST reads are charged per entry they walk at the same price, against a
    /// read budget per address (`tracker/src/http/read_charge.rs`). 0: free.
    pub search_bytes_per_file: u64,
    /// Refused messages in one episode (no quiet second between) before the connection is
    /// closed.
    pub abuse_limit: u32,
    /// Frames queued for one peer before it counts as too slow.
    pub outbox_frames: usize,
    /// Bytes queued for one peer before relay frames to it are dropped.
    pub outbox_bytes: usize,
    /// Distinct identities live at once from one client address (an IPv6 /64 counts as one;
    /// 0: no limit). Not applied to [`Config::limit_exempt`] addresses.
    pub max_identities_per_ip: u32,
    /// New files published per hour from one client address (0: no limit).
    pub max_publishes_per_hour_per_ip: u32,
    /// Files in the index published from one client address (counted since start; 0: no limit).
    pub max_files_per_ip: u32,
    /// Chunks (manifest entries) in the index published from one client address (0: no limit).
    pub max_chunks_per_ip: u64,
    /// The estimated bytes of tracker state ([`swarm_core::swarm::budget`]) near which new work
    /// from the heaviest addresses is refused (0: no budget) ...
    pub state_budget: u64,
    /// ... and one client address's share of it (0: no limit).
    pub state_budget_per_ip: u64,
}

impl Limits {
    /// The per-address limits as [`swarm_core::swarm::policy`] takes them.
    pub fn address(&self) -> swarm_core::swarm::policy::AddressLimits {
        swarm_core::swarm::policy::AddressLimits {
            max_identities: self.max_identities_per_ip,
            max_publishes_per_hour: self.max_publishes_per_hour_per_ip,
            max_files: self.max_files_per_ip,
            max_chunks: self.max_chunks_per_ip,
        }
    }

    /// The state budget as [`swarm_core::swarm::budget`] takes it.
    pub fn budget(&self) -> swarm_core::swarm::budget::StateBudget {
        swarm_core::swarm::budget::StateBudget { total: self.state_budget, per_addr: self.state_budget_per_ip }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_peers: 20_000,
            max_conns_per_ip: 1_000,
            max_connections: 30_000,
            max_signal_bytes: 64 * 1024,
            max_files_per_peer: 10_000,
            max_manifest_chunks: swarm_core::content::MAX_CHUNKS,
            msgs_per_sec: 1000,
            msg_burst: 2000,
            relay_bytes_per_sec: 8 << 20,
            relay_burst_bytes: 1 << 20,
            msg_bytes_per_sec: 1 << 20,
            msg_bytes_per_sec_per_ip: 2 << 20,
            msg_burst_bytes: swarm_core::wire::MAX_MESSAGE_BYTES as u64,
            search_bytes_per_file: 8,
            abuse_limit: 1_000,
            outbox_frames: 1_024,
            outbox_bytes: 2 << 20,
            max_identities_per_ip: 256,
            max_publishes_per_hour_per_ip: 1_000,
            max_files_per_ip: 20_000,
            max_chunks_per_ip: swarm_core::content::MAX_CHUNKS as u64,
            state_budget: 1 << 30,
            state_budget_per_ip: 64 << 20,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: None,
            web_dir: None,
            ice_servers: Vec::new(),
            turn: None,
            stun_port: None,
            idle_timeout: Duration::from_secs(45),
            hello_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            repair: Default::default(),
            limits: Limits::default(),
            trusted_proxies: Default::default(),
            limit_exempt: client_addr::TrustedProxies::loopback(),
            join_tokens: Vec::new(),
            unavailable_ttl: Some(Duration::from_secs(24 * 3600)),
            orphan_grace: Some(Duration::from_secs(120)),
            cluster: None,
            public_urls: Vec::new(),
        }
    }
}

/// How to join a cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://host:port`); the client fails over between them.
    pub servers: Vec<String>,
    /// Prefix of every subject and bucket name: nodes with the same prefix share one swarm.
    pub prefix: String,
    /// This node's `/ws` URL as peers reach it, told to peers in `welcome`.
    pub public_url: String,
    /// Number of shards the files are cut into (fixed for the life of the cluster).
    pub shards: u16,
    /// Copies NATS keeps of each KV bucket (1 for a single NATS server, 3 for a cluster).
    pub replicas: usize,
    /// `replicas` was not set: use as many as the NATS cluster has servers (at most 3).
    pub replicas_auto: bool,
    /// A lease not renewed for this long expires: another node takes the shard.
    pub lease_ttl: Duration,
}

impl ClusterConfig {
    /// Time between lease renewals and heartbeats.
    pub fn period(&self) -> Duration {
        (self.lease_ttl / 5).clamp(Duration::from_millis(100), Duration::from_secs(2))
    }
}
