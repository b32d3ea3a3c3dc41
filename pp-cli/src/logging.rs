//! The stderr log. Its level comes from `RUST_LOG` when set, else from the program's default
//! raised by `-v` (info) and `-vv` (debug); `-vvv` is trace.

use tracing_subscriber::EnvFilter;

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

/// Installs the log on stderr, as text or JSON lines.
pub fn init(verbose: u8, default: &str, json: bool) {
    let f = filter(verbose, default);
    let fmt = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(f);
    if json {
        fmt.json().init();
    } else {
        fmt.init();
    }
}
