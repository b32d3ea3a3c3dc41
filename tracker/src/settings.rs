//! Tracker settings from flags, environment variables and an optional TOML file.
//!
//! Precedence: a flag beats its environment variable (clap reads both), which beats the
//! `--config` file, which beats the built-in default. Every setting is optional in each
//! source, so [`Merge::merge`] can layer them (`pp_cli::settings`, shared with `pp-peer`); the
//! TOML file uses the flag names (`max-peers = 5000`) and unknown keys are an error, so a typo
//! never goes unnoticed. Byte sizes take units (`relay-bytes-per-sec = "8MiB"`), and so do
//! durations (`idle-timeout = "2m"`, `--header-timeout 500ms`; a bare number is seconds, as
//! before: `pp_cli::duration`).

use crate::config::{Config, Limits};
use crate::net::client_addr::TrustedProxies;
use clap::Parser;
pub use pp_cli::settings::Merge;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_core::swarm::repair::RepairConfig;

use pp_cli::duration::{parse_secs, Secs};
pub use pp_cli::settings::SettingsError;
use pp_cli::size::ByteSize;

fn parse_size(s: &str) -> Result<ByteSize, String> {
    pp_cli::size::parse(s).map(ByteSize::b)
}

/// Tools that print something and exit instead of starting the tracker.
#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum Tool {
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_enum)]
        shell: pp_cli::docs::Shell,
    },
    /// Print the man page (roff): `tracker man | man -l -`.
    Man,
}

/// Peer Pressure tracker: swarm index, WebRTC signalling hub, data relay, REST API, metrics
/// and web app server.
///
/// Every option can also be set by its environment variable or in the TOML file given by
/// `--config` (keys are the long option names, e.g. `max-peers = 5000`). Flags override the
/// environment, which overrides the file, which overrides the defaults shown.
#[derive(Parser, Deserialize, Debug, Default, Clone, PartialEq)]
#[command(name = "pp-tracker", version, about, long_about)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Settings {
    #[command(subcommand)]
    #[serde(skip)]
    pub tool: Option<Tool>,
    /// TOML file with settings.
    #[arg(long, env = "PP_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free port; the chosen address is printed)
    /// [default: 127.0.0.1:8080]
    #[arg(long, env = "PP_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Where the tracker keeps its durable file index [default: $STATE_DIRECTORY under systemd,
    /// else the per-user data directory, e.g. ~/.local/share/peer-pressure/tracker]
    #[arg(long, env = "PP_TRACKER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory of a built web app to serve at `/` instead of the one embedded in this binary (for page development) [default: the embedded app]
    #[arg(long, env = "PP_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
    /// Log format: `text` or `json` [default: text]; the level comes from RUST_LOG (default info)
    #[arg(long, env = "PP_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Copies every chunk is kept on, at least 2 [default: 3]
    #[arg(long, env = "PP_REPLICATION")]
    pub replication: Option<u32>,
    /// How long a departed peer's chunks wait before they are re-replicated [default: 3s]
    #[arg(long, visible_alias = "grace", env = "PP_GRACE_SECS", value_name = "DURATION", value_parser = parse_secs)]
    #[serde(alias = "grace")]
    pub grace_secs: Option<Secs>,
    /// Silence after which a peer counts as gone [default: 45s]
    #[arg(long, env = "PP_IDLE_TIMEOUT", value_name = "DURATION", value_parser = parse_secs)]
    pub idle_timeout: Option<Secs>,
    /// Time a new connection has to say hello [default: 10s]
    #[arg(long, env = "PP_HELLO_TIMEOUT", value_name = "DURATION", value_parser = parse_secs)]
    pub hello_timeout: Option<Secs>,
    /// Time a peer may take to accept queued frames before it is dropped [default: 10s]
    #[arg(long, env = "PP_SEND_TIMEOUT", value_name = "DURATION", value_parser = parse_secs)]
    pub send_timeout: Option<Secs>,
    /// Live peers at once; more are refused with `limit_reached` [default: 20000]
    #[arg(long, env = "PP_MAX_PEERS")]
    pub max_peers: Option<usize>,
    /// Open connections per client address, 0 for no limit [default: 1000]
    #[arg(long, env = "PP_MAX_CONNS_PER_IP")]
    pub max_conns_per_ip: Option<usize>,
    /// Open TCP connections in all, counted at accept (more are answered 503 and closed), 0 for
    /// no limit [default: 30000]
    #[arg(long, env = "PP_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Time for an HTTP request head to arrive whole, and for an idle kept-alive connection
    /// to send its next request, at most 1h [default: 10s]
    #[arg(long, env = "PP_HEADER_TIMEOUT", value_name = "DURATION", value_parser = parse_secs)]
    pub header_timeout: Option<Secs>,
    /// Largest WebRTC `signal` message a peer may send (a size) [default: 64KiB]
    #[arg(long, env = "PP_MAX_SIGNAL_BYTES", value_name = "SIZE", value_parser = parse_size)]
    pub max_signal_bytes: Option<ByteSize>,
    /// Shared secret of the configured TURN servers (the TURN REST API scheme, coturn's
    /// `use-auth-secret`): each peer gets its own credentials that expire after --turn-ttl
    /// [default: none]
    #[arg(long, env = "PP_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// How long the TURN credentials handed to a peer stay valid, 1m to 7days [default: 1h]
    #[arg(long, env = "PP_TURN_TTL", value_name = "DURATION", value_parser = parse_secs)]
    pub turn_ttl: Option<Secs>,
    /// Files one peer may publish (counted since start) [default: 10000]
    #[arg(long, env = "PP_MAX_FILES_PER_PEER")]
    pub max_files_per_peer: Option<u32>,
    /// Chunks in one manifest [default: 262144]
    #[arg(long, env = "PP_MAX_MANIFEST_CHUNKS")]
    pub max_manifest_chunks: Option<usize>,
    /// Messages per second per connection, 0 for no limit [default: 1000]
    #[arg(long, env = "PP_MSGS_PER_SEC")]
    pub msgs_per_sec: Option<u32>,
    /// Messages a connection may send in one burst [default: 2000]
    #[arg(long, env = "PP_MSG_BURST")]
    pub msg_burst: Option<u32>,
    /// Relay bytes per second per connection (a size: 8MiB, 500KB, or bytes), 0 for no limit [default: 8MiB]
    #[arg(long, env = "PP_RELAY_BYTES_PER_SEC", value_name = "SIZE", value_parser = parse_size)]
    pub relay_bytes_per_sec: Option<ByteSize>,
    /// Relay bytes a connection may send in one burst [default: 1MiB]
    #[arg(long, env = "PP_RELAY_BURST_BYTES", value_name = "SIZE", value_parser = parse_size)]
    pub relay_burst_bytes: Option<ByteSize>,
    /// Bytes of messages (JSON text) per second one connection may send, 0 for no limit: past
    /// it the tracker stops reading the connection until it may go on [default: 1MiB]
    #[arg(long, env = "PP_MSG_BYTES_PER_SEC", value_name = "SIZE", value_parser = parse_size)]
    pub msg_bytes_per_sec: Option<ByteSize>,
    /// The same for all connections from one client address together (not limit-exempt ones;
    /// an IPv6 /64 counts as one), 0 for no limit [default: 2MiB]
    #[arg(long, env = "PP_MSG_BYTES_PER_SEC_PER_IP", value_name = "SIZE", value_parser = parse_size)]
    pub msg_bytes_per_sec_per_ip: Option<ByteSize>,
    /// Bytes of messages a connection (and an address) may send at once [default: 8MiB]
    #[arg(long, env = "PP_MSG_BURST_BYTES", value_name = "SIZE", value_parser = parse_size)]
    pub msg_burst_bytes: Option<ByteSize>,
    /// What a search or REST read costs of the byte rates per index entry it walks, 0 for
    /// free [default: 8]
    #[arg(long, env = "PP_SEARCH_BYTES_PER_FILE", value_name = "BYTES")]
    pub search_bytes_per_file: Option<u64>,
    /// Refused messages in a row (no quiet second) before a connection is closed [default: 1000]
    #[arg(long, env = "PP_ABUSE_LIMIT")]
    pub abuse_limit: Option<u32>,
    /// Frames queued for one peer before it counts as too slow [default: 1024]
    #[arg(long, env = "PP_OUTBOX_FRAMES")]
    pub outbox_frames: Option<usize>,
    /// Bytes queued for one peer before relay frames to it are dropped [default: 2MiB]
    #[arg(long, env = "PP_OUTBOX_BYTES", value_name = "SIZE", value_parser = parse_size)]
    pub outbox_bytes: Option<ByteSize>,
    /// UDP address of the tracker's STUN service (peers learn their public address from it),
    /// or `off` [default: the --listen address and port, on UDP]
    #[arg(long, env = "PP_STUN_LISTEN")]
    pub stun_listen: Option<String>,
    /// Another ICE server for peers, e.g. `stun:stun.example.org:3478` or
    /// `turn:turn.example.org:3478?transport=udp` (repeatable; comma-separated in the environment)
    #[arg(long = "ice-server", env = "PP_ICE_SERVERS", value_delimiter = ',')]
    pub ice_server: Option<Vec<String>>,
    /// Static username for the configured TURN servers, handed to every peer as it is and
    /// valid until changed (prefer --turn-secret)
    #[arg(long, env = "PP_TURN_USERNAME")]
    pub turn_username: Option<String>,
    /// Static credential for the configured TURN servers (see --turn-username)
    #[arg(long, env = "PP_TURN_CREDENTIAL", hide_env_values = true)]
    pub turn_credential: Option<String>,
    /// A reverse proxy's address or CIDR block (repeatable; in PP_TRUSTED_PROXY and the file a
    /// list). Connections from it take the client address (for --max-conns-per-ip and logs)
    /// from `Forwarded: for=`, else `X-Forwarded-For`; from anyone else those headers are
    /// ignored [default: none]
    #[arg(long, env = "PP_TRUSTED_PROXY", value_name = "CIDR", value_delimiter = ',')]
    pub trusted_proxy: Option<Vec<String>>,
    /// Identities (distinct peer ids) live at once from one client address; an IPv6 /64 counts
    /// as one address; 0 for no limit [default: 256]
    #[arg(long, env = "PP_MAX_IDENTITIES_PER_IP")]
    pub max_identities_per_ip: Option<u32>,
    /// New files published per hour from one client address (a burst of that many, then
    /// evenly over the hour); 0 for no limit [default: 1000]
    #[arg(long, env = "PP_MAX_PUBLISHES_PER_HOUR_PER_IP")]
    pub max_publishes_per_hour_per_ip: Option<u32>,
    /// Files in the index published from one client address (counted since start); 0 for no
    /// limit [default: 20000]
    #[arg(long, env = "PP_MAX_FILES_PER_IP")]
    pub max_files_per_ip: Option<u32>,
    /// Chunks in the index published from one client address (a 64 GiB file has 262144); 0
    /// for no limit [default: 262144]
    #[arg(long, env = "PP_MAX_CHUNKS_PER_IP")]
    pub max_chunks_per_ip: Option<u64>,
    /// Claims (chunks a peer says it holds) kept for one peer at most; a peer that reports its
    /// storage gets at most twice its capacity over the chunk size [default: 1000000]
    #[arg(long, env = "PP_MAX_CLAIMS_PER_PEER")]
    pub max_claims_per_peer: Option<usize>,
    /// Claims of chunks no file uses kept for one peer at most [default: 4096]
    #[arg(long, env = "PP_MAX_LOOSE_CLAIMS")]
    pub max_loose_claims: Option<usize>,
    /// How long a claim of a chunk no file uses is kept [default: 10m]
    #[arg(long, env = "PP_LOOSE_CLAIM_TTL", value_name = "DURATION", value_parser = parse_secs)]
    pub loose_claim_ttl: Option<Secs>,
    /// Estimated bytes of tracker state near which new work from the heaviest client
    /// addresses is refused with `over_budget`, and at which no new identity or file is
    /// taken; 0 for no budget [default: 1GiB]
    #[arg(long, env = "PP_STATE_BUDGET", value_name = "SIZE", value_parser = parse_size)]
    pub state_budget: Option<ByteSize>,
    /// One client address's share of the state budget; 0 for no limit [default: 64MiB]
    #[arg(long, env = "PP_STATE_BUDGET_PER_IP", value_name = "SIZE", value_parser = parse_size)]
    pub state_budget_per_ip: Option<ByteSize>,
    /// Client addresses (address or CIDR block; repeatable, comma-separated in the
    /// environment) the three per-address limits above do not apply to, or `none`
    /// [default: 127.0.0.0/8 and ::1, where local test swarms run]
    #[arg(long, env = "PP_LIMIT_EXEMPT", value_name = "CIDR", value_delimiter = ',')]
    pub limit_exempt: Option<Vec<String>>,
    /// A join token: when any is given the swarm is private and `hello` must carry one of
    /// them (repeatable; comma-separated in PP_JOIN_TOKEN; a list in the file). Revoke one by
    /// removing it and restarting [default: none, the swarm is open]
    #[arg(long, env = "PP_JOIN_TOKEN", value_name = "TOKEN", value_delimiter = ',', hide_env_values = true)]
    pub join_token: Option<Vec<String>>,
    /// How long a file with a chunk nobody holds stays in the index (it is left out of search
    /// and listings at once); 0 keeps such files for ever [default: 1day]
    #[arg(long, env = "PP_UNAVAILABLE_FILE_TTL", value_name = "DURATION", value_parser = parse_secs)]
    pub unavailable_file_ttl: Option<Secs>,
    /// Time before a copy of a chunk no file uses is trimmed from its holder (a deleted
    /// file's copy made while it was deleted, or held by a peer that was offline); 0 never
    /// trims them [default: 2m]
    #[arg(long, env = "PP_ORPHAN_GRACE", value_name = "DURATION", value_parser = parse_secs)]
    pub orphan_grace: Option<Secs>,
    /// Join a tracker cluster: the NATS servers (with JetStream) its nodes share, e.g.
    /// `nats://10.0.0.1:4222,nats://10.0.0.2:4222` (comma-separated or repeated). The file
    /// index then lives in NATS, not in --data-dir [default: none, a single tracker]
    #[arg(long, env = "PP_CLUSTER", value_name = "NATS_URL", value_delimiter = ',', hide_env_values = true)]
    pub cluster: Option<Vec<String>>,
    /// Name of the cluster: nodes with the same name on the same NATS servers share one swarm
    /// (letters, digits, `_` and `-`) [default: pp]
    #[arg(long, env = "PP_CLUSTER_NAME")]
    pub cluster_name: Option<String>,
    /// This tracker's websocket URL as peers reach it (e.g. wss://tracker.example.org/ws behind
    /// a TLS proxy): peers sign their hello for it, and one signed for another name is refused
    /// (the socket address a connection arrives on is always accepted). In a cluster, also told
    /// to peers so they can fail over to it [default: ws://LISTEN/ws with the port actually bound]
    #[arg(long, env = "PP_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Shards the cluster's files are cut into; every node of a cluster must use the same
    /// number [default: 32]
    #[arg(long, env = "PP_CLUSTER_SHARDS")]
    pub cluster_shards: Option<u16>,
    /// Copies NATS keeps of the cluster's index (at most the number of NATS servers)
    /// [default: the number of servers of the NATS cluster, at most 3]
    #[arg(long, env = "PP_CLUSTER_REPLICAS")]
    pub cluster_replicas: Option<usize>,
    /// How long a node's hold on a shard lasts without renewal: how long its shards wait after
    /// it dies before another node takes them, 500ms to 10m [default: 5s]
    #[arg(long, visible_alias = "cluster-lease", env = "PP_CLUSTER_LEASE_SECS", value_name = "DURATION",
          value_parser = parse_secs)]
    #[serde(alias = "cluster-lease")]
    pub cluster_lease_secs: Option<Secs>,
}

/// Where the STUN service listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StunListen {
    /// The HTTP listener's address and (actual) port, on UDP. If that port is taken on UDP,
    /// the tracker runs without STUN and says so.
    SameAsHttp,
    At(SocketAddr),
    Off,
}

pub use pp_cli::logging::LogFormat;

/// The data directory when none is given: systemd's `$STATE_DIRECTORY` (its first entry; the
/// unit's `StateDirectory=`), else the per-user one (`per_user`, from XDG), never the folder
/// the tracker happens to start in.
pub fn default_data_dir(state_directory: Option<&std::ffi::OsStr>, per_user: Option<PathBuf>) -> Option<PathBuf> {
    let from_systemd = state_directory
        .and_then(|v| v.to_str())
        .and_then(|v| v.split(':').next())
        .filter(|first| !first.is_empty())
        .map(PathBuf::from);
    from_systemd.or(per_user)
}

pp_cli::merge_options!(Settings {
    tool,
    config,
    listen,
    data_dir,
    web_dir,
    log_format,
    replication,
    grace_secs,
    idle_timeout,
    hello_timeout,
    send_timeout,
    max_peers,
    max_conns_per_ip,
    max_connections,
    header_timeout,
    max_signal_bytes,
    turn_secret,
    turn_ttl,
    max_files_per_peer,
    max_manifest_chunks,
    msgs_per_sec,
    msg_burst,
    relay_bytes_per_sec,
    relay_burst_bytes,
    msg_bytes_per_sec,
    msg_bytes_per_sec_per_ip,
    msg_burst_bytes,
    search_bytes_per_file,
    abuse_limit,
    outbox_frames,
    outbox_bytes,
    stun_listen,
    ice_server,
    turn_username,
    turn_credential,
    trusted_proxy,
    max_identities_per_ip,
    max_publishes_per_hour_per_ip,
    max_files_per_ip,
    max_chunks_per_ip,
    max_claims_per_peer,
    max_loose_claims,
    loose_claim_ttl,
    state_budget,
    state_budget_per_ip,
    limit_exempt,
    join_token,
    unavailable_file_ttl,
    orphan_grace,
    cluster,
    cluster_name,
    public_url,
    cluster_shards,
    cluster_replicas,
    cluster_lease_secs,
});

impl Settings {
    /// Reads a TOML settings file.
    pub fn from_file(path: &Path) -> Result<Self, SettingsError> {
        pp_cli::settings::read_toml(path)
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Flags and environment, layered over the `--config` file if one is named.
    pub fn load() -> Result<Self, SettingsError> {
        let cli = Settings::parse();
        let config = cli.config.clone();
        pp_cli::settings::layered(cli, config.as_deref())
    }

    pub fn listen(&self) -> SocketAddr {
        self.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    /// Where the STUN service should listen (checked).
    pub fn stun_listen(&self) -> Result<StunListen, SettingsError> {
        match self.stun_listen.as_deref() {
            None => Ok(StunListen::SameAsHttp),
            Some("off") => Ok(StunListen::Off),
            Some(a) => a.parse().map(StunListen::At).map_err(|_| {
                SettingsError::Invalid(format!("stun-listen must be an address like 0.0.0.0:3478 or `off`, not {a:?}"))
            }),
        }
    }

    /// The cluster to join, checked (`public_url` empty: the caller fills it in once bound).
    fn cluster_config(&self) -> Result<Option<crate::cluster::ClusterConfig>, SettingsError> {
        let servers: Vec<String> =
            self.cluster.iter().flatten().map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
        if servers.is_empty() {
            return Ok(None);
        }
        if let Some(bad) = servers.iter().find(|u| !(u.starts_with("nats://") || u.starts_with("tls://"))) {
            return Err(SettingsError::Invalid(format!("cluster: {bad:?} is not a nats:// URL")));
        }
        let prefix = self.cluster_name.clone().unwrap_or_else(|| "pp".into());
        if prefix.is_empty()
            || prefix.len() > 32
            || !prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(SettingsError::Invalid(format!(
                "cluster-name must be 1 to 32 letters, digits, `_` or `-`, not {prefix:?}"
            )));
        }
        let public_url = self.public_url.clone().unwrap_or_default();
        if !(public_url.is_empty() || public_url.starts_with("ws://") || public_url.starts_with("wss://")) {
            return Err(SettingsError::Invalid(format!(
                "public-url must be a ws:// or wss:// URL, not {public_url:?}"
            )));
        }
        let shards = self.cluster_shards.unwrap_or(32);
        if shards == 0 {
            return Err(SettingsError::Invalid("cluster-shards must be at least 1".into()));
        }
        let replicas = self.cluster_replicas.unwrap_or(servers.len().min(3));
        if !(1..=5).contains(&replicas) {
            return Err(SettingsError::Invalid(format!("cluster-replicas must be 1 to 5, not {replicas}")));
        }
        let lease = self.cluster_lease_secs.map_or(Duration::from_secs(5), Secs::duration);
        if !(Duration::from_millis(500)..=Duration::from_secs(600)).contains(&lease) {
            return Err(SettingsError::Invalid(format!(
                "cluster-lease-secs must be 500ms to 10m, not {}",
                pp_cli::duration::human(lease)
            )));
        }
        Ok(Some(crate::cluster::ClusterConfig {
            servers,
            prefix,
            public_url,
            shards,
            replicas,
            replicas_auto: self.cluster_replicas.is_none(),
            lease_ttl: lease,
        }))
    }

    /// The claim bounds ([`swarm_core::swarm::claims`]), checked.
    fn claim_limits(&self) -> Result<swarm_core::swarm::claims::ClaimLimits, SettingsError> {
        let d = swarm_core::swarm::claims::ClaimLimits::default();
        let ttl = self.loose_claim_ttl.map_or(Duration::from_millis(d.loose_ttl_ms), Secs::duration);
        if ttl.as_millis() == 0 {
            return Err(SettingsError::Invalid(format!(
                "loose-claim-ttl must be at least 1ms, not {}",
                pp_cli::duration::human(ttl)
            )));
        }
        let max_claims = self.max_claims_per_peer.unwrap_or(d.max_claims);
        if max_claims == 0 {
            return Err(SettingsError::Invalid("max-claims-per-peer must be at least 1".into()));
        }
        Ok(swarm_core::swarm::claims::ClaimLimits {
            max_claims,
            max_loose: self.max_loose_claims.unwrap_or(d.max_loose),
            loose_ttl_ms: ttl.as_millis() as u64,
            min_claims: d.min_claims.min(max_claims),
        })
    }

    /// The library's [`Config`], defaults filled in and values checked.
    pub fn to_config(&self) -> Result<Config, SettingsError> {
        let d = Config::default();
        let dl = Limits::default();
        let replication = self.replication.unwrap_or(3);
        if replication < 2 {
            return Err(SettingsError::Invalid(format!("replication must be at least 2, not {replication}")));
        }
        let grace = self.grace_secs.map_or(Duration::from_secs(3), Secs::duration);
        let max_chunks = self.max_manifest_chunks.unwrap_or(dl.max_manifest_chunks);
        if max_chunks > swarm_core::content::MAX_CHUNKS {
            return Err(SettingsError::Invalid(format!(
                "max-manifest-chunks can be at most {}",
                swarm_core::content::MAX_CHUNKS
            )));
        }
        let trusted_proxies = TrustedProxies::parse(self.trusted_proxy.iter().flatten())
            .map_err(|e| SettingsError::Invalid(format!("trusted-proxy: {e}")))?;
        let limit_exempt = match self.limit_exempt.as_deref() {
            None => TrustedProxies::loopback(),
            Some([none]) if none.trim() == "none" => TrustedProxies::default(),
            Some(nets) => TrustedProxies::parse(nets.iter().filter(|n| !n.trim().is_empty()))
                .map_err(|e| SettingsError::Invalid(format!("limit-exempt: {e}")))?,
        };
        let join_tokens: Vec<String> = self.join_token.iter().flatten().map(|t| t.trim().to_string()).collect();
        if join_tokens.iter().any(String::is_empty) {
            return Err(SettingsError::Invalid("join-token must not be empty".into()));
        }
        // (Durations are never negative: the parser refuses them. 0 means never.)
        let ttl = self.unavailable_file_ttl.map_or(Duration::from_secs(86_400), Secs::duration);
        let unavailable_ttl = (!ttl.is_zero()).then_some(ttl);
        let orphan = self.orphan_grace.map_or(Duration::from_secs(120), Secs::duration);
        let orphan_grace = (!orphan.is_zero()).then_some(orphan);
        let claims = self.claim_limits()?;
        let secs = |v: Option<Secs>, d: Duration| v.map_or(d, Secs::duration);
        let header_timeout = secs(self.header_timeout, d.header_timeout);
        if header_timeout.is_zero() || header_timeout > Duration::from_secs(3600) {
            return Err(SettingsError::Invalid(format!(
                "header-timeout must be more than 0 and at most 1h, not {}",
                pp_cli::duration::human(header_timeout)
            )));
        }
        self.stun_listen()?;
        use crate::net::ice::TurnAuth;
        let secret = self.turn_secret.as_deref().map(str::trim);
        let auth = match (secret, self.turn_username.as_deref(), self.turn_credential.as_deref()) {
            (Some(""), _, _) => return Err(SettingsError::Invalid("turn-secret must not be empty".into())),
            (Some(_), None, None) => TurnAuth::Secret,
            (Some(_), _, _) => {
                return Err(SettingsError::Invalid(
                    "give either --turn-secret (short-lived credentials) or --turn-username/--turn-credential \
                     (static ones), not both"
                        .into(),
                ))
            }
            (None, Some(username), Some(credential)) => TurnAuth::Static { username, credential },
            (None, _, _) => TurnAuth::None,
        };
        let ice_servers = self
            .ice_server
            .iter()
            .flatten()
            .map(|url| crate::net::ice::parse_ice_server(url, auth).map_err(|e| SettingsError::Invalid(e.to_string())))
            .collect::<Result<Vec<_>, _>>()?;
        let turn_ttl = secs(self.turn_ttl, Duration::from_secs(3600));
        if !(Duration::from_secs(60)..=Duration::from_secs(7 * 86_400)).contains(&turn_ttl) {
            return Err(SettingsError::Invalid(format!(
                "turn-ttl must be 1m to 7days, not {}",
                pp_cli::duration::human(turn_ttl)
            )));
        }
        let turn = secret.map(|s| crate::net::ice::TurnSecret { secret: s.to_string(), ttl: turn_ttl });
        let cluster = self.cluster_config()?;
        let public_urls: Vec<String> = self.public_url.iter().filter(|u| !u.is_empty()).cloned().collect();
        if let Some(bad) = public_urls.iter().find(|u| !(u.starts_with("ws://") || u.starts_with("wss://"))) {
            return Err(SettingsError::Invalid(format!("public-url must be a ws:// or wss:// URL, not {bad:?}")));
        }
        Ok(Config {
            cluster,
            public_urls,
            data_dir: Some(match &self.data_dir {
                Some(d) => d.clone(),
                None => default_data_dir(
                    std::env::var_os("STATE_DIRECTORY").as_deref(),
                    directories::ProjectDirs::from("", "", "peer-pressure").map(|d| d.data_dir().join("tracker")),
                )
                .ok_or_else(|| {
                    SettingsError::Invalid("no home directory to keep the index in: pass --data-dir".into())
                })?,
            }),
            web_dir: self.web_dir.clone(),
            ice_servers,
            turn,
            stun_port: None,
            idle_timeout: secs(self.idle_timeout, d.idle_timeout),
            hello_timeout: secs(self.hello_timeout, d.hello_timeout),
            send_timeout: secs(self.send_timeout, d.send_timeout),
            header_timeout,
            repair: RepairConfig {
                replication: replication as usize,
                grace_ms: grace.as_millis() as u64,
                claims,
                ..Default::default()
            },
            limits: Limits {
                max_peers: self.max_peers.unwrap_or(dl.max_peers),
                max_conns_per_ip: self.max_conns_per_ip.unwrap_or(dl.max_conns_per_ip),
                max_connections: self.max_connections.unwrap_or(dl.max_connections),
                max_signal_bytes: self.max_signal_bytes.map_or(dl.max_signal_bytes, |b| b.as_u64() as usize).max(1),
                max_files_per_peer: self.max_files_per_peer.unwrap_or(dl.max_files_per_peer),
                max_manifest_chunks: max_chunks,
                msgs_per_sec: self.msgs_per_sec.unwrap_or(dl.msgs_per_sec),
                msg_burst: self.msg_burst.unwrap_or(dl.msg_burst),
                relay_bytes_per_sec: self.relay_bytes_per_sec.map_or(dl.relay_bytes_per_sec, |b| b.as_u64()),
                relay_burst_bytes: self.relay_burst_bytes.map_or(dl.relay_burst_bytes, |b| b.as_u64()),
                msg_bytes_per_sec: self.msg_bytes_per_sec.map_or(dl.msg_bytes_per_sec, |b| b.as_u64()),
                msg_bytes_per_sec_per_ip: self
                    .msg_bytes_per_sec_per_ip
                    .map_or(dl.msg_bytes_per_sec_per_ip, |b| b.as_u64()),
                msg_burst_bytes: self.msg_burst_bytes.map_or(dl.msg_burst_bytes, |b| b.as_u64()).max(1),
                search_bytes_per_file: self.search_bytes_per_file.unwrap_or(dl.search_bytes_per_file),
                abuse_limit: self.abuse_limit.unwrap_or(dl.abuse_limit),
                outbox_frames: self.outbox_frames.unwrap_or(dl.outbox_frames).max(1),
                outbox_bytes: self.outbox_bytes.map_or(dl.outbox_bytes, |b| b.as_u64() as usize).max(1),
                max_identities_per_ip: self.max_identities_per_ip.unwrap_or(dl.max_identities_per_ip),
                max_publishes_per_hour_per_ip: self
                    .max_publishes_per_hour_per_ip
                    .unwrap_or(dl.max_publishes_per_hour_per_ip),
                max_files_per_ip: self.max_files_per_ip.unwrap_or(dl.max_files_per_ip),
                max_chunks_per_ip: self.max_chunks_per_ip.unwrap_or(dl.max_chunks_per_ip),
                state_budget: self.state_budget.map_or(dl.state_budget, |b| b.as_u64()),
                state_budget_per_ip: self.state_budget_per_ip.map_or(dl.state_budget_per_ip, |b| b.as_u64()),
            },
            trusted_proxies,
            limit_exempt,
            join_tokens,
            unavailable_ttl,
            orphan_grace,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_never_shows_the_value_of_a_secret_from_the_environment() {
        use clap::CommandFactory;
        // Any setting that can carry a secret (a token, a credential, a NATS URL with a
        // password in it) must hide its environment value from `--help`.
        let secret = |env: &str| {
            env == "PP_CLUSTER" || ["TOKEN", "CREDENTIAL", "SECRET", "PASSWORD"].iter().any(|w| env.contains(w))
        };
        for arg in Settings::command().get_arguments() {
            let Some(env) = arg.get_env().and_then(|e| e.to_str()) else { continue };
            if secret(env) {
                assert!(arg.is_hide_env_values_set(), "--{} shows ${env} in --help", arg.get_id());
            }
        }
    }

    #[test]
    fn data_dir_defaults_to_systemds_state_directory_else_the_per_user_one() {
        use std::ffi::OsStr;
        let home = Some(PathBuf::from("/home/u/.local/share/peer-pressure/tracker"));
        assert_eq!(
            default_data_dir(Some(OsStr::new("/var/lib/pp-tracker:/var/lib/other")), home.clone()),
            Some(PathBuf::from("/var/lib/pp-tracker"))
        );
        assert_eq!(default_data_dir(None, home.clone()), home);
        assert_eq!(default_data_dir(Some(OsStr::new("")), home.clone()), home);
        assert_eq!(default_data_dir(None, None), None);
    }

    #[test]
    fn cluster_settings_are_checked() {
        assert!(Settings::default().to_config().unwrap().cluster.is_none(), "a single tracker by default");
        let s = Settings::try_parse_from(["tracker", "--cluster", "nats://a:4222,nats://b:4222"]).unwrap();
        let c = s.to_config().unwrap().cluster.unwrap();
        assert_eq!(c.servers, vec!["nats://a:4222", "nats://b:4222"]);
        assert_eq!((c.replicas, c.shards, c.prefix.as_str()), (2, 32, "pp"));
        for bad in [
            vec!["tracker", "--cluster", "http://a"],
            vec!["tracker", "--cluster", "nats://a", "--cluster-name", "a.b"],
            vec!["tracker", "--cluster", "nats://a", "--public-url", "http://x"],
            vec!["tracker", "--cluster", "nats://a", "--cluster-shards", "0"],
            vec!["tracker", "--cluster", "nats://a", "--cluster-lease-secs", "0"],
        ] {
            let s = Settings::try_parse_from(&bad).unwrap();
            assert!(s.to_config().is_err(), "{bad:?} refused");
        }
        let file = Settings::from_toml("cluster = [\"nats://x:1\"]\ncluster-shards = 8\n").unwrap();
        assert_eq!(file.to_config().unwrap().cluster.unwrap().shards, 8);
    }

    #[test]
    fn flags_beat_file_beats_defaults() {
        let file = Settings::from_toml("max-peers = 50\nreplication = 4\nlisten = \"0.0.0.0:9000\"\n").unwrap();
        let cli = Settings::try_parse_from(["tracker", "--max-peers", "7"]).unwrap();
        let merged = cli.merge(file);
        assert_eq!(merged.max_peers, Some(7), "flag wins");
        assert_eq!(merged.replication, Some(4), "file fills in");
        let c = merged.to_config().unwrap();
        assert_eq!(c.limits.max_peers, 7);
        assert_eq!(c.repair.replication, 4);
        assert_eq!(c.limits.msgs_per_sec, Limits::default().msgs_per_sec, "default when unset");
        assert_eq!(merged.listen().port(), 9000);
    }

    #[test]
    fn completions_and_man_are_commands() {
        let s = Settings::try_parse_from(["tracker", "completions", "zsh"]).unwrap();
        assert_eq!(s.tool, Some(Tool::Completions { shell: pp_cli::docs::Shell::Zsh }));
        assert_eq!(Settings::try_parse_from(["tracker", "man"]).unwrap().tool, Some(Tool::Man));
        assert_eq!(Settings::try_parse_from(["tracker", "--max-peers", "3"]).unwrap().tool, None);
        use clap::CommandFactory;
        let mut page = Vec::new();
        pp_cli::docs::man(Settings::command(), None, &mut page).unwrap();
        assert!(String::from_utf8(page).unwrap().contains("relay\\-bytes\\-per\\-sec"));
    }

    #[test]
    fn sizes_take_units() {
        let cli =
            Settings::try_parse_from(["tracker", "--relay-bytes-per-sec", "8MiB", "--outbox-bytes", "2MB"]).unwrap();
        let c = cli.to_config().unwrap();
        assert_eq!(c.limits.relay_bytes_per_sec, 8 << 20);
        assert_eq!(c.limits.outbox_bytes, 2_000_000);
        let file = Settings::from_toml("relay-burst-bytes = \"1GiB\"\nrelay-bytes-per-sec = 4096\n").unwrap();
        let c = Settings::default().merge(file).to_config().unwrap();
        assert_eq!((c.limits.relay_burst_bytes, c.limits.relay_bytes_per_sec), (1 << 30, 4096));
        assert!(Settings::try_parse_from(["tracker", "--relay-burst-bytes", "huge"]).is_err());
    }

    #[test]
    fn bad_files_and_values_are_refused() {
        assert!(Settings::from_toml("max-peer = 5").is_err(), "typo in a key");
        assert!(Settings::from_toml("max-peers = \"many\"").is_err());
        let s = Settings { replication: Some(1), ..Default::default() };
        assert!(s.to_config().is_err());
        let s = Settings { max_manifest_chunks: Some(usize::MAX), ..Default::default() };
        assert!(s.to_config().is_err());
    }

    #[test]
    fn trusted_proxies_from_each_source() {
        let cli =
            Settings::try_parse_from(["tracker", "--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1"]).unwrap();
        let c = cli.to_config().unwrap();
        assert!(c.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(c.trusted_proxies.contains("::1".parse().unwrap()));
        assert!(!c.trusted_proxies.contains("192.0.2.1".parse().unwrap()));
        let listed = Settings::try_parse_from(["tracker", "--trusted-proxy", "10.0.0.0/8, 127.0.0.1/32"]).unwrap();
        assert_eq!(listed.to_config().unwrap().trusted_proxies.nets().len(), 2, "comma-separated, as in the env");
        let file = Settings::from_toml("trusted-proxy = [\"172.16.0.0/12\"]\n").unwrap();
        let merged = Settings::default().merge(file);
        assert!(merged.to_config().unwrap().trusted_proxies.contains("172.20.0.1".parse().unwrap()));
        assert!(Settings::default().to_config().unwrap().trusted_proxies.is_empty(), "none unless configured");
        let bad = Settings::try_parse_from(["tracker", "--trusted-proxy", "10.0.0.0/40"]).unwrap();
        let err = bad.to_config().unwrap_err().to_string();
        assert!(err.contains("trusted-proxy") && err.contains("10.0.0.0/40"), "{err}");
    }

    #[test]
    fn the_orphan_grace_is_its_own_setting() {
        let d = Settings::default().to_config().unwrap();
        assert_eq!(d.orphan_grace, Some(Duration::from_secs(120)));
        assert_eq!(d.repair.grace_ms, 3_000);
        let c = Settings::try_parse_from(["tracker", "--orphan-grace", "7", "--grace-secs", "2"]).unwrap();
        let c = c.to_config().unwrap();
        assert_eq!(c.orphan_grace, Some(Duration::from_secs(7)));
        assert_eq!(c.repair.grace_ms, 2_000, "the repair grace is not the orphan grace");
        let off = Settings::from_toml("orphan-grace = 0\n").unwrap();
        assert_eq!(Settings::default().merge(off).to_config().unwrap().orphan_grace, None, "0: never");
        let bad = Settings::try_parse_from(["tracker", "--orphan-grace=-1"]).unwrap_err().to_string();
        assert!(bad.contains("--orphan-grace") && bad.contains("not a duration"), "{bad}");
    }

    #[test]
    fn durations_take_units_and_bare_numbers_stay_seconds() {
        let c = Settings::try_parse_from([
            "tracker",
            "--idle-timeout",
            "2m",
            "--hello-timeout",
            "1500ms",
            "--header-timeout",
            "0.5",
            "--grace",
            "250ms",
            "--orphan-grace",
            "1h",
            "--turn-ttl",
            "2h",
            "--turn-secret",
            "k",
            "--loose-claim-ttl",
            "30",
        ])
        .unwrap()
        .to_config()
        .unwrap();
        assert_eq!(c.idle_timeout, Duration::from_secs(120));
        assert_eq!(c.hello_timeout, Duration::from_millis(1500));
        assert_eq!(c.header_timeout, Duration::from_millis(500), "a bare number is seconds, fractions too");
        assert_eq!(c.repair.grace_ms, 250, "--grace is --grace-secs with a unit");
        assert_eq!(c.orphan_grace, Some(Duration::from_secs(3600)));
        assert_eq!(c.turn.unwrap().ttl, Duration::from_secs(7200));
        assert_eq!(c.repair.claims.loose_ttl_ms, 30_000);
        let old = Settings::try_parse_from(["tracker", "--grace-secs", "2", "--send-timeout", "7"]).unwrap();
        let c = old.to_config().unwrap();
        assert_eq!((c.repair.grace_ms, c.send_timeout), (2_000, Duration::from_secs(7)), "old spellings");
        // The file takes numbers (seconds) and strings, under either name of a renamed key.
        let file = Settings::from_toml("idle-timeout = \"90s\"\ngrace = \"1m\"\ncluster-lease = 2\n").unwrap();
        assert_eq!(file.idle_timeout, Some(Secs::from_secs(90)));
        assert_eq!((file.grace_secs, file.cluster_lease_secs), (Some(Secs::from_secs(60)), Some(Secs::from_secs(2))));
        let e = Settings::from_toml("send-timeout = \"5x\"\n").unwrap_err().to_string();
        assert!(e.contains("send-timeout") && e.contains("not a duration: \"5x\""), "{e}");
        // A bad value names the flag it was given to.
        let e = Settings::try_parse_from(["tracker", "--idle-timeout", "5x"]).unwrap_err().to_string();
        assert!(e.contains("--idle-timeout") && e.contains("not a duration: \"5x\"") && e.contains("30s"), "{e}");
        let e = Settings::try_parse_from(["tracker", "--header-timeout", "2h"]).unwrap().to_config().unwrap_err();
        assert!(e.to_string().contains("header-timeout must be more than 0 and at most 1h, not 2h"), "{e}");
    }

    #[test]
    fn help_shows_duration_defaults_with_units() {
        use clap::CommandFactory;
        let help = Settings::command().render_long_help().to_string();
        for (flag, default) in [
            ("--idle-timeout <DURATION>", "[default: 45s]"),
            ("--header-timeout <DURATION>", "[default: 10s]"),
            ("--turn-ttl <DURATION>", "[default: 1h]"),
            ("--unavailable-file-ttl <DURATION>", "[default: 1day]"),
            ("--orphan-grace <DURATION>", "[default: 2m]"),
            ("--grace-secs <DURATION>", "[default: 3s]"),
        ] {
            let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing"));
            let next = help[at + 2..].find("\n      --").map_or(help.len(), |n| at + 2 + n);
            assert!(help[at..next].contains(default), "{flag}: {}", &help[at..next]);
        }
        // Each default in the help is the one used.
        let (c, d) = (Settings::default().to_config().unwrap(), Config::default());
        assert_eq!((c.idle_timeout, c.header_timeout), (Duration::from_secs(45), Duration::from_secs(10)));
        assert_eq!((d.idle_timeout, c.unavailable_ttl), (c.idle_timeout, Some(Duration::from_secs(86_400))));
    }

    #[test]
    fn swarm_abuse_settings_from_each_source() {
        let d = Settings::default().to_config().unwrap();
        assert!(d.join_tokens.is_empty(), "open unless tokens are configured");
        assert!(d.limit_exempt.contains("127.0.0.1".parse().unwrap()), "loopback exempt by default");
        assert!(!d.limit_exempt.contains("192.0.2.1".parse().unwrap()));
        assert_eq!(d.unavailable_ttl, Some(Duration::from_secs(86_400)));
        assert_eq!(d.limits.max_identities_per_ip, 256);
        let cli = Settings::try_parse_from([
            "tracker",
            "--join-token",
            "t1",
            "--join-token",
            "t2",
            "--limit-exempt",
            "none",
            "--unavailable-file-ttl",
            "0.5",
            "--max-identities-per-ip",
            "3",
        ])
        .unwrap();
        let c = cli.to_config().unwrap();
        assert_eq!(c.join_tokens, vec!["t1", "t2"]);
        assert!(c.limit_exempt.is_empty());
        assert_eq!(c.unavailable_ttl, Some(Duration::from_millis(500)));
        assert_eq!(c.limits.max_identities_per_ip, 3);
        let file = Settings::from_toml(
            "join-token = [\"secret\"]\nmax-publishes-per-hour-per-ip = 10\nmax-files-per-ip = 5\nunavailable-file-ttl = 0\nlimit-exempt = [\"10.0.0.0/8\"]\n",
        )
        .unwrap();
        let c = Settings::default().merge(file).to_config().unwrap();
        assert_eq!(c.join_tokens, vec!["secret"]);
        assert_eq!((c.limits.max_publishes_per_hour_per_ip, c.limits.max_files_per_ip), (10, 5));
        assert_eq!(c.unavailable_ttl, None, "0: never");
        assert!(c.limit_exempt.contains("10.1.1.1".parse().unwrap()));
        assert!(!c.limit_exempt.contains("127.0.0.1".parse().unwrap()));
        let bad = Settings { join_token: Some(vec![" ".into()]), ..Default::default() };
        assert!(bad.to_config().is_err());
        assert!(Settings::from_toml("unavailable-file-ttl = -1\n").is_err(), "negative");
    }

    #[test]
    fn ice_servers_and_stun_are_checked_at_start() {
        let s = Settings::try_parse_from(["tracker", "--ice-server", "stun:a.example:3478", "--ice-server", "stun:b"])
            .unwrap();
        assert_eq!(s.to_config().unwrap().ice_servers.len(), 2);
        let s = Settings::try_parse_from(["tracker", "--ice-server", "turn:t.example:3478"]).unwrap();
        let e = s.to_config().unwrap_err().to_string();
        assert!(e.contains("--turn-secret") && e.contains("--turn-username"), "{e}");
        let s = Settings::try_parse_from(["tracker", "--ice-server", "turn:t.example", "--turn-secret", "k"]).unwrap();
        let c = s.to_config().unwrap();
        assert_eq!((c.ice_servers[0].username.as_ref(), c.turn.unwrap().ttl), (None, Duration::from_secs(3600)));
        let both = ["tracker", "--turn-secret", "k", "--turn-username", "u", "--turn-credential", "p"];
        assert!(Settings::try_parse_from(both).unwrap().to_config().unwrap_err().to_string().contains("not both"));
        let s = Settings::try_parse_from([
            "tracker",
            "--ice-server",
            "turn:t",
            "--turn-username",
            "u",
            "--turn-credential",
            "p",
        ]);
        assert_eq!(s.unwrap().to_config().unwrap().ice_servers[0].username.as_deref(), Some("u"), "static if explicit");
        let s = Settings::try_parse_from(["tracker", "--stun-listen", "nowhere"]).unwrap();
        assert!(s.to_config().is_err());
        let s = Settings::try_parse_from(["tracker", "--stun-listen", "off"]).unwrap();
        assert_eq!(s.stun_listen().unwrap(), StunListen::Off);
        assert_eq!(Settings::default().stun_listen().unwrap(), StunListen::SameAsHttp);
        let file = Settings::from_toml("ice-server = [\"stun:c.example\"]\nstun-listen = \"0.0.0.0:3478\"\n").unwrap();
        assert_eq!(file.to_config().unwrap().ice_servers[0].urls, ["stun:c.example"]);
    }

    #[test]
    fn help_documents_every_option() {
        use clap::CommandFactory;
        let help = Settings::command().render_long_help().to_string();
        for flag in [
            "--config",
            "--max-peers",
            "--msgs-per-sec",
            "--relay-bytes-per-sec",
            "--max-files-per-peer",
            "--trusted-proxy",
            "--join-token",
            "--max-identities-per-ip",
            "--max-publishes-per-hour-per-ip",
            "--max-files-per-ip",
            "--limit-exempt",
            "--unavailable-file-ttl",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
        assert!(help.contains("PP_MAX_PEERS"), "environment variables are shown");
    }
}
