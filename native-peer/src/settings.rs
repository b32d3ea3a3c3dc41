//! `pp-peer`'s global settings from flags, environment variables and a TOML file, layered the
//! way the tracker's are (`pp_cli::settings`): a flag beats its environment variable, which
//! beats the `--config` file (default: `peer.toml` in the per-user config directory, when it
//! exists), which beats the built-in default. File keys are the long option names
//! (`max-storage = "20GB"`, `data-dir = "/srv/pp"`).
//!
//! The data directory defaults to a per-user one (XDG: `$XDG_DATA_HOME/peer-pressure/peer`,
//! usually `~/.local/share/peer-pressure/peer`), so every command finds the same identity and
//! chunks whatever the current directory is.

use crate::driver::NodeConfig;
use pp_cli::settings::SettingsError;
use pp_cli::size::ByteSize;
use serde::Deserialize;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

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
    /// Tracker websocket URL: ws://HOST:PORT/ws, or wss://HOST/ws through a TLS proxy
    /// [default: ws://127.0.0.1:8080/ws]
    #[arg(long, global = true, env = "PP_TRACKER", value_name = "URL")]
    pub tracker: Option<String>,
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
    /// Seconds a WebRTC data channel has to open before the attempt is given up (requests
    /// travel through the tracker relay from 0.3 s on, and move to the channel when it opens)
    /// [default: 8]
    #[arg(long, global = true, env = "PP_RTC_TIMEOUT", value_name = "SECS")]
    pub rtc_timeout: Option<f64>,
    /// The join token of a private tracker (one started with --join-token).
    #[arg(long, global = true, env = "PP_JOIN_TOKEN", value_name = "TOKEN", hide_env_values = true)]
    pub join_token: Option<String>,
    /// Never use WebRTC: exchange chunks through the tracker relay only.
    #[arg(long, global = true, env = "PP_RELAY_ONLY", num_args = 0..=1, default_missing_value = "true",
          value_name = "BOOL", require_equals = true, value_parser = clap::builder::BoolishValueParser::new())]
    pub relay_only: Option<bool>,
}

pp_cli::merge_options!(PeerSettings {
    config,
    tracker,
    tracker_ca,
    data_dir,
    rtc_ip,
    max_storage,
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

    pub fn tracker(&self) -> &str {
        self.tracker.as_deref().unwrap_or(DEFAULT_TRACKER)
    }

    /// The node's configuration, defaults filled in and values checked.
    pub fn node_config(&self, connect_attempts: u32) -> Result<NodeConfig, SettingsError> {
        let rtc_timeout = self.rtc_timeout.unwrap_or(8.0);
        if !(rtc_timeout.is_finite() && rtc_timeout > 0.0) {
            return Err(SettingsError::Invalid(format!("rtc-timeout must be a positive number, not {rtc_timeout}")));
        }
        let tracker = self.tracker();
        if !(tracker.starts_with("ws://") || tracker.starts_with("wss://")) {
            return Err(SettingsError::Invalid(format!(
                "--tracker must be a ws:// or wss:// URL (like {DEFAULT_TRACKER}), not {tracker:?}"
            )));
        }
        Ok(NodeConfig {
            tracker_url: tracker.to_string(),
            tracker_ca: self.tracker_ca.clone(),
            rtc_ip: self.rtc_ip,
            max_storage: self.max_storage.map_or(DEFAULT_MAX_STORAGE, |b| b.as_u64()),
            rtc_timeout: Duration::from_secs_f64(rtc_timeout),
            relay_only: self.relay_only.unwrap_or(false),
            connect_attempts,
            corrupt_serve: std::env::var_os("PP_TEST_CORRUPT_SERVE").is_some_and(|v| v == "1"),
            no_nonces: std::env::var_os("PP_NO_NONCES").is_some_and(|v| v == "1"),
            join_token: self.join_token.clone(),
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
        assert_eq!(merged.tracker(), "ws://other/ws", "the flag wins");
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
        assert!(PeerSettings { rtc_timeout: Some(0.0), ..Default::default() }.node_config(1).is_err());
        let e = PeerSettings { tracker: Some("http://x".into()), ..Default::default() }.node_config(1).unwrap_err();
        assert!(e.to_string().contains("ws://"), "{e}");
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
