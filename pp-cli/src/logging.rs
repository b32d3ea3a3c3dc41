//! The stderr log. Its level comes from `RUST_LOG` when set, else from the program's default
//! raised by `-v` (info) and `-vv` (debug); `-vvv` is trace.
//!
//! Text logs carry colour only when stderr is a terminal (and `NO_COLOR` is unset): a log
//! redirected to a file or read by journald gets plain text. `--log-format json` (both
//! binaries) writes one JSON object a line instead.

use serde::Deserialize;
use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// How the log is written: `--log-format text|json`.
#[derive(clap::ValueEnum, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The filter for `verbose` (the count of `-v` flags) over `default` (used with none).
pub fn filter(verbose: u8, default: &str) -> EnvFilter {
    if let Ok(f) = EnvFilter::try_from_default_env() {
        return f;
    }
    match verbose {
        0 => EnvFilter::new(default),
        1 => EnvFilter::new("info,str0m=warn"),
        2 => EnvFilter::new("debug,str0m=info"),
        _ => EnvFilter::new("trace"),
    }
}

/// Whether text logs get colour: only on a terminal, and never with `NO_COLOR` set
/// (<https://no-color.org>).
pub fn colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the log on stderr, as text or JSON lines.
pub fn init(verbose: u8, default: &str, format: LogFormat) {
    let f = filter(verbose, default);
    let ansi = colour(std::io::stderr().is_terminal(), std::env::var_os("NO_COLOR").as_deref());
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(f).with_ansi(ansi);
    match format {
        LogFormat::Json => fmt.json().init(),
        LogFormat::Text => fmt.init(),
    }
}

#[cfg(test)]
mod tests {
    use super::colour;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(!colour(false, None), "a file or journald gets no escape codes");
        assert!(!colour(true, Some(OsStr::new("1"))));
        assert!(colour(true, Some(OsStr::new(""))), "an empty NO_COLOR does not count");
    }
}
