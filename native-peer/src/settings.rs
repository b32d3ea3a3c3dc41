//! `pp-peer`'s global settings from flags, environment variables and a TOML file, layered the
//! way the tracker's are (`pp_cli::settings`): a flag beats its environment variable, which
//! beats the `--config` file (default: `peer.toml` in the per-user config directory, when it
//! exists), which beats the built-in default. File keys are the long option names
//! (`max-storage = "20GB"`, `data-dir = "/srv/pp"`). Durations take units (`--rtc-timeout 3s`,
//! `rtc-timeout = "500ms"`; a bare number is seconds, as before: `pp_cli::duration`).
//!
//! Several trackers (the nodes of a tracker cluster) are given by repeating `--tracker`, by
//! commas (`--tracker ws://a/ws,ws://b/ws`, `PP_TRACKER=ws://a/ws,ws://b/ws`), or in the file
//! as a list or a comma-separated string (`tracker = ["ws://a/ws", "ws://b/ws"]`).
//!
//! The data directory defaults to a per-user one (XDG: `$XDG_DATA_HOME/peer-pressure/peer`,
//! usually `~/.local/share/peer-pressure/peer`), so every command finds the same identity and
//! chunks whatever the current directory is.

use crate::driver::NodeConfig;
use pp_cli::duration::{parse_secs, Secs};
use pp_cli::settings::SettingsError;
use pp_cli::size::ByteSize;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;
use swarm_core::peer::trackers::TrackerList;

/// The default tracker.
pub const DEFAULT_TRACKER: &str = "ws://127.0.0.1:8080/ws";
/// The default bound on stored chunks.
pub const DEFAULT_MAX_STORAGE: u64 = 10 << 30;

fn parse_size(s: &str) -> Result<ByteSize, String> {
    pp_cli::size::parse(s).map(ByteSize::b)
}

/// Settings every command shares (the options before or after the command name).
#[derive(clap::Args, Deserialize, Debug, Default, Clone, PartialEq)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct PeerSettings {
    /// TOML file with settings (keys are the long option names) [default:
    /// peer.toml in the per-user config directory, e.g. ~/.config/peer-pressure/peer.toml,
    /// if it exists]
    #[arg(long, global = true, env = "PP_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Tracker websocket URL: ws://HOST:PORT/ws, or wss://HOST/ws through a TLS proxy.
    /// Several (repeat the flag, or separate them with commas) for a tracker cluster: the
    /// first that answers is used, the others when it goes away [default:
    /// ws://127.0.0.1:8080/ws]
    #[arg(long, global = true, env = "PP_TRACKER", value_name = "URL", value_delimiter = ',')]
    #[serde(deserialize_with = "one_or_many")]
    pub tracker: Option<Vec<String>>,
    /// An extra CA certificate (PEM file) to trust for a wss:// tracker, besides the system's
    /// (for self-hosted deployments with their own CA).
    #[arg(long, global = true, env = "PP_TRACKER_CA", value_name = "FILE")]
    pub tracker_ca: Option<PathBuf>,
    /// Where this peer keeps its identity and chunks [default: the per-user data directory,
    /// e.g. ~/.local/share/peer-pressure/peer]
    #[arg(long, global = true, env = "PP_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The one local address for WebRTC (UDP) host candidates [default: every usable interface
    /// address; loopback only when the tracker is on loopback].
    #[arg(long, global = true, env = "PP_RTC_IP", value_name = "IP")]
    pub rtc_ip: Option<IpAddr>,
    /// Most bytes of chunks this peer keeps: 500MB, 20GB, 20GiB or bytes [default: 10GiB]
    #[arg(long, global = true, env = "PP_MAX_STORAGE", value_name = "SIZE", value_parser = parse_size)]
    pub max_storage: Option<ByteSize>,
    /// Most bytes per second this peer sends, for everything it serves (downloads, copies
    /// for the swarm, the relay): 2MB/s, 500KiB/s, or off [default: off]. A running peer's
    /// limit changes with `pp-peer limit`.
    #[arg(long, global = true, env = "PP_UPLOAD_LIMIT", value_name = "RATE", value_parser = pp_cli::size::rate_arg)]
    pub upload_limit: Option<String>,
    /// Time a WebRTC data channel has to open before the attempt is given up (requests
    /// travel through the tracker relay from 300ms on, and move to the channel when it opens)
    /// [default: 8s]
    #[arg(long, global = true, env = "PP_RTC_TIMEOUT", value_name = "DURATION", value_parser = parse_secs)]
    pub rtc_timeout: Option<Secs>,
    /// The join token of a private tracker (one started with --join-token).
    #[arg(long, global = true, env = "PP_JOIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Never use WebRTC: exchange chunks through the tracker relay only.
    #[arg(long, global = true, env = "PP_RELAY_ONLY", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL", require_equals = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub relay_only: Option<bool>,
}

/// A TOML value that is one string (maybe comma-separated) or a list of strings.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(Some(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => s.split(',').map(str::to_string).collect(),
        OneOrMany::Many(v) => v,
    }))
}

pp_cli::merge_options!(PeerSettings {
    config,
    tracker,
    tracker_ca,
    data_dir,
    rtc_ip,
    max_storage,
    upload_limit,
    rtc_timeout,
    join_token,
    relay_only
});

/// The per-user directories of Peer Pressure (`None` without a home directory).
fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "peer-pressure")
}

impl PeerSettings {
    /// These settings (flags and environment) layered over the config file: the one named,
    /// else the per-user `peer.toml` if it exists.
    pub fn layered(self) -> Result<Self, SettingsError> {
        let default_file = || project_dirs().map(|d| d.config_dir().join("peer.toml")).filter(|p| p.is_file());
        let file = self.config.clone().or_else(default_file);
        pp_cli::settings::layered(self, file.as_deref())
    }

    /// The data directory: the one given, else the per-user one.
    pub fn data_dir(&self) -> Result<PathBuf, SettingsError> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        project_dirs().map(|d| d.data_dir().join("peer")).ok_or_else(|| {
            SettingsError::Invalid("no home directory to keep the peer's data in: pass --data-dir".into())
        })
    }

    /// The trackers to use, in order: each URL checked (`ws://` or `wss://`), duplicates
    /// dropped; the default one if none is given.
    pub fn trackers(&self) -> Result<Vec<String>, SettingsError> {
        let Some(given) = &self.tracker else { return Ok(vec![DEFAULT_TRACKER.to_string()]) };
        let urls: Vec<&str> = given.iter().flat_map(|t| t.split(',')).map(str::trim).collect();
        if urls.iter().any(|u| u.is_empty()) {
            return Err(SettingsError::Invalid(format!(
                "--tracker has an empty URL in {:?}: give ws:// or wss:// URLs separated by commas",
                given.join(",")
            )));
        }
        let list = TrackerList::new(urls).map_err(|e| SettingsError::Invalid(format!("--tracker: {e}")))?;
        Ok(list.urls().map(str::to_string).collect())
    }

    /// The node's configuration, defaults filled in and values checked.
    pub fn node_config(&self, connect_attempts: u32) -> Result<NodeConfig, SettingsError> {
        let rtc_timeout = self.rtc_timeout.map_or(Duration::from_secs(8), Secs::duration);
        if rtc_timeout.is_zero() {
            return Err(SettingsError::Invalid("rtc-timeout must be more than 0".into()));
        }
        let mut trackers = self.trackers()?.into_iter();
        Ok(NodeConfig {
            tracker_url: trackers.next().expect("at least one tracker"),
            more_trackers: trackers.collect(),
            tracker_ca: self.tracker_ca.clone(),
            rtc_ip: self.rtc_ip,
            max_storage: self.max_storage.map_or(DEFAULT_MAX_STORAGE, |b| b.as_u64()),
            upload_limit: match &self.upload_limit {
                Some(r) => {
                    pp_cli::size::parse_rate(r).map_err(|e| SettingsError::Invalid(format!("upload-limit: {e}")))?
                }
                None => None,
            },
            rtc_timeout,
            relay_only: self.relay_only.unwrap_or(false),
            connect_attempts,
            corrupt_serve: std::env::var_os("PP_TEST_CORRUPT_SERVE").is_some_and(|v| v == "1"),
            no_nonces: std::env::var_os("PP_NO_NONCES").is_some_and(|v| v == "1"),
            join_token: self.join_token.clone(),
            migrate_identity: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use pp_cli::settings::Merge;

    fn from_toml(text: &str) -> Result<PeerSettings, toml::de::Error> {
        toml::from_str(text)
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        s: PeerSettings,
    }

    fn cli(args: &[&str]) -> PeerSettings {
        Cli::try_parse_from(std::iter::once("pp-peer").chain(args.iter().copied())).unwrap().s
    }

    #[test]
    fn sizes_with_units_and_flags_over_file() {
        assert_eq!(cli(&["--max-storage", "20GB"]).max_storage, Some(ByteSize::b(20_000_000_000)));
        assert_eq!(cli(&["--max-storage", "20GiB"]).max_storage, Some(ByteSize::gib(20)));
        assert_eq!(cli(&["--max-storage", "500MB"]).max_storage, Some(ByteSize::mb(500)));
        assert!(Cli::try_parse_from(["pp-peer", "--max-storage", "lots"]).is_err());
        let file =
            from_toml("max-storage = \"2GiB\"\ntracker = \"ws://t.example/ws\"\nrelay-only = true\nrtc-timeout = 3\n")
                .unwrap();
        let merged = cli(&["--tracker", "ws://other/ws"]).merge(file);
        assert_eq!(merged.trackers().unwrap(), ["ws://other/ws"], "the flag wins");
        let c = merged.node_config(5).unwrap();
        assert_eq!(c.max_storage, 2 << 30, "the file fills in");
        assert!(c.relay_only);
        assert_eq!(c.rtc_timeout, Duration::from_secs(3));
        let d = PeerSettings::default().node_config(5).unwrap();
        assert_eq!((d.max_storage, d.relay_only, d.tracker_url.as_str()), (10 << 30, false, DEFAULT_TRACKER));
        assert_eq!(from_toml("max-storage = 1048576\n").unwrap().max_storage, Some(ByteSize::mib(1)));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(from_toml("max-storag = 5").is_err(), "a typo in a key");
        assert!(from_toml("max-storage = \"much\"").is_err());
        assert!(PeerSettings { rtc_timeout: Some(Secs::from_secs(0)), ..Default::default() }.node_config(1).is_err());
        let e =
            PeerSettings { tracker: Some(vec!["http://x".into()]), ..Default::default() }.node_config(1).unwrap_err();
        assert!(e.to_string().contains("ws://"), "{e}");
    }

    fn trackers(s: PeerSettings) -> Result<Vec<String>, String> {
        s.node_config(1).map(|c| c.tracker_urls().map(str::to_string).collect()).map_err(|e| e.to_string())
    }

    #[test]
    fn several_trackers_from_commas_a_repeated_flag_or_a_file_list() {
        let ab = ["ws://a:1/ws", "wss://b/ws"];
        assert_eq!(trackers(cli(&["--tracker", "ws://a:1/ws,wss://b/ws"])).unwrap(), ab, "comma-separated");
        assert_eq!(trackers(cli(&["--tracker", "ws://a:1/ws", "--tracker", "wss://b/ws"])).unwrap(), ab, "repeated");
        assert_eq!(
            trackers(cli(&["--tracker=ws://a:1/ws", "--tracker", "wss://b/ws,ws://a:1/ws"])).unwrap(),
            ab,
            "a URL given twice is tried once, where it came first"
        );
        let list = from_toml("tracker = [\"ws://a:1/ws\", \"wss://b/ws\"]\n").unwrap();
        assert_eq!(trackers(list).unwrap(), ab, "a list in the file");
        let one = from_toml("tracker = \"ws://a:1/ws, wss://b/ws\"\n").unwrap();
        assert_eq!(trackers(one).unwrap(), ab, "a comma-separated string in the file");
        let c = cli(&["--tracker", "ws://a:1/ws,wss://b/ws"]).node_config(1).unwrap();
        assert_eq!(
            (c.tracker_url.as_str(), &c.more_trackers[..]),
            ("ws://a:1/ws", &["wss://b/ws".to_string()][..]),
            "the first one is the tracker share links name"
        );
        assert_eq!(trackers(PeerSettings::default()).unwrap(), [DEFAULT_TRACKER]);
    }

    #[test]
    fn several_trackers_from_the_environment() {
        // (PP_TRACKER is read by clap: set for this process while one parse runs; no other
        // test reads it.)
        std::env::set_var("PP_TRACKER", "ws://env-a/ws,ws://env-b/ws");
        let parsed = Cli::try_parse_from(["pp-peer"]).map(|c| c.s);
        std::env::remove_var("PP_TRACKER");
        assert_eq!(trackers(parsed.unwrap()).unwrap(), ["ws://env-a/ws", "ws://env-b/ws"]);
    }

    #[test]
    fn a_bad_url_in_a_tracker_list_is_refused_clearly() {
        let e = trackers(cli(&["--tracker", "ws://a/ws,http://b/ws"])).unwrap_err();
        assert!(e.contains("\"http://b/ws\" is not a tracker URL") && e.contains("ws://HOST"), "{e}");
        let e = trackers(cli(&["--tracker", "ws://a/ws,"])).unwrap_err();
        assert!(e.contains("empty URL"), "{e}");
        let e = trackers(from_toml("tracker = [\"ws://a/ws\", \"b:80\"]\n").unwrap()).unwrap_err();
        assert!(e.contains("\"b:80\""), "{e}");
        assert!(from_toml("tracker = 5\n").is_err(), "neither a string nor a list");
    }

    #[test]
    fn the_rtc_timeout_takes_units() {
        let t = |s: PeerSettings| s.node_config(1).unwrap().rtc_timeout;
        assert_eq!(t(cli(&["--rtc-timeout", "500ms"])), Duration::from_millis(500));
        assert_eq!(t(cli(&["--rtc-timeout", "3"])), Duration::from_secs(3), "a bare number is seconds");
        assert_eq!(t(cli(&["--rtc-timeout", "0.25"])), Duration::from_millis(250));
        assert_eq!(t(from_toml("rtc-timeout = \"1m\"\n").unwrap()), Duration::from_secs(60));
        assert_eq!(t(PeerSettings::default()), Duration::from_secs(8));
        let e = Cli::try_parse_from(["pp-peer", "--rtc-timeout", "5x"]).err().unwrap().to_string();
        assert!(e.contains("--rtc-timeout") && e.contains("not a duration: \"5x\""), "{e}");
        let e = from_toml("rtc-timeout = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("rtc-timeout") && e.contains("not a duration"), "{e}");
    }

    #[test]
    fn relay_only_as_a_plain_flag() {
        assert_eq!(cli(&["--relay-only"]).relay_only, Some(true));
        assert_eq!(cli(&[]).relay_only, None);
    }

    #[test]
    fn data_dir_given_wins_else_per_user() {
        let s = PeerSettings { data_dir: Some("/x/y".into()), ..Default::default() };
        assert_eq!(s.data_dir().unwrap(), PathBuf::from("/x/y"));
        if std::env::var_os("HOME").is_some() {
            let d = PeerSettings::default().data_dir().unwrap();
            assert!(d.is_absolute() && d.ends_with("peer-pressure/peer"), "{}", d.display());
        }
    }
}
