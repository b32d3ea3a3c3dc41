//! What the two binaries (`pp-tracker`, `pp-peer`) share at their edges, written once:
//!
//! - [`settings`]: settings layered from flags, environment and a TOML file (keys are the
//!   long option names), with [`settings::Merge`] and the [`merge_options!`] macro;
//! - [`size`]: byte sizes with units in (`20GB`, `20GiB`, `500MB`, plain bytes) and out;
//! - [`duration`]: durations with units in (`30s`, `2m`, `500ms`; a bare number keeps the
//!   flag's old unit, seconds) and out;
//! - [`signal`]: the shutdown signals a service manager or a terminal sends (SIGTERM, Ctrl-C);
//! - [`logging`]: the stderr log, its level from `-v` counts unless `RUST_LOG` says otherwise;
//! - [`docs`]: shell completions and a man page generated from the clap definition.

pub mod docs;
pub mod duration;
pub mod logging;
pub mod settings;
pub mod signal;
pub mod size;
