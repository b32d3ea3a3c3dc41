//! Errors that map to distinct exit codes, so scripts can tell them apart, and safe output names.

use crate::store::StoreError;
use crate::tracker_client::{ConnectError, RequestError};
use std::path::PathBuf;
use swarm_core::wire::ErrorCode;

/// Exit codes of `pp-peer` (documented in `pp-peer --help`).
pub const EXIT_FAILURE: i32 = 1;
/// Bad command line (clap's own code).
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NOT_FOUND: i32 = 3;
pub const EXIT_OUTPUT_EXISTS: i32 = 4;
pub const EXIT_TRACKER_UNREACHABLE: i32 = 5;
pub const EXIT_NO_ROOM: i32 = 6;
/// The tracker does not allow it: not the file's owner (`rm`), or a join token it does not
/// accept.
pub const EXIT_NOT_ALLOWED: i32 = 7;

/// The errors a script may want to tell apart: each variant has its exit code
/// ([`PeerError::exit_code`]). Other failures stay `anyhow` errors (exit code 1).
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// No such file in the swarm.
    #[error("{0}")]
    NotFound(String),
    /// Not a share link, id or name that can be looked up.
    #[error(transparent)]
    BadLink(#[from] swarm_core::share::ShareError),
    /// The output path exists and `--force` was not given.
    #[error("{} already exists (use --force to overwrite)", .0.display())]
    OutputExists(PathBuf),
    /// The tracker could not be reached (or refused the hello).
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A request to the tracker failed (an unknown file among others).
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The chunk store failed (no room among others).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A value given is not one this command takes.
    #[error("{0}")]
    BadValue(String),
}

impl PeerError {
    pub fn exit_code(&self) -> i32 {
        match self {
            PeerError::NotFound(_) => EXIT_NOT_FOUND,
            PeerError::OutputExists(_) => EXIT_OUTPUT_EXISTS,
            PeerError::BadLink(_) | PeerError::BadValue(_) => EXIT_USAGE,
            PeerError::Connect(ConnectError::Unreachable { .. }) => EXIT_TRACKER_UNREACHABLE,
            PeerError::Request(r) if r.code() == Some(ErrorCode::UnknownFile) => EXIT_NOT_FOUND,
            PeerError::Request(r) if r.code() == Some(ErrorCode::NotOwner) => EXIT_NOT_ALLOWED,
            PeerError::Connect(ConnectError::Refused(t)) if t.code == ErrorCode::BadToken => EXIT_NOT_ALLOWED,
            PeerError::Store(StoreError::NoRoom { .. } | StoreError::DiskFull { .. }) => EXIT_NO_ROOM,
            PeerError::Connect(_) | PeerError::Request(_) | PeerError::Store(_) => EXIT_FAILURE,
        }
    }
}

/// The exit code for an error: the [`PeerError`] in it (the outermost, whatever context was
/// added around it), or 1.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    e.chain().find_map(|c| c.downcast_ref::<PeerError>()).map_or(EXIT_FAILURE, PeerError::exit_code)
}

/// The name of an exit code, for machine-readable errors (`--json`).
pub fn exit_kind(code: i32) -> &'static str {
    match code {
        EXIT_USAGE => "usage",
        EXIT_NOT_FOUND => "not_found",
        EXIT_OUTPUT_EXISTS => "output_exists",
        EXIT_TRACKER_UNREACHABLE => "tracker_unreachable",
        EXIT_NO_ROOM => "no_room",
        EXIT_NOT_ALLOWED => "not_allowed",
        _ => "failed",
    }
}

/// The error as `--json` prints it on stdout:
/// `{"error": {"kind": "not_found", "exit_code": 3, "message": "…"}}`.
pub fn error_json(e: &anyhow::Error) -> serde_json::Value {
    error_json_of(exit_code(e), &error_text(e))
}

/// [`error_json`] of an exit code and a message (a running peer's answer to a command).
pub fn error_json_of(code: i32, message: &str) -> serde_json::Value {
    serde_json::json!({ "error": { "kind": exit_kind(code), "exit_code": code, "message": message } })
}

/// The error for people: each cause of the chain once. Libraries often repeat their source's
/// text in their own message (`connect: refused` over `refused`); a cause already said by the
/// text before it is left out.
pub fn error_text(e: &anyhow::Error) -> String {
    causes_text(e.chain())
}

/// [`error_text`] of a chain of causes.
pub fn causes_text<'a>(chain: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut text = String::new();
    for cause in chain {
        let c = cause.to_string();
        if c.is_empty() || text.contains(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

/// Turns a name from the swarm into a safe file name in the current directory: no path
/// separators, no parent references, no control characters, no leading dots.
pub fn safe_file_name(name: &str, fallback: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c == '/' || c == '\\' || c.is_control() || c == ':' { '_' } else { c }).collect();
    let cleaned = cleaned.trim().trim_start_matches('.').to_string();
    let cleaned: String = cleaned.chars().take(200).collect();
    if cleaned.is_empty() {
        fallback.to_string()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker_client::TrackerError;

    #[test]
    fn names_never_become_paths() {
        assert_eq!(safe_file_name("../../etc/passwd", "x"), "_.._etc_passwd");
        assert_eq!(safe_file_name("/abs/path", "x"), "_abs_path");
        assert_eq!(safe_file_name("..", "fallback"), "fallback");
        assert_eq!(safe_file_name("a\nb", "x"), "a_b");
        assert_eq!(safe_file_name("report.pdf", "x"), "report.pdf");
    }

    #[test]
    fn each_cause_is_said_once() {
        use anyhow::Context;
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused (os error 111)");
        let e = Err::<(), _>(anyhow::Error::new(io))
            .context("IO error: Connection refused (os error 111)")
            .context(
                "cannot reach the tracker at ws://x/ws after 5 attempts: IO error: Connection refused (os error 111)",
            )
            .unwrap_err();
        let text = error_text(&e);
        assert_eq!(text.matches("Connection refused").count(), 1, "{text}");
        assert!(text.starts_with("cannot reach the tracker"), "{text}");
        let e = Err::<(), _>(anyhow::anyhow!("disk full")).context("cannot write out.bin").unwrap_err();
        assert_eq!(error_text(&e), "cannot write out.bin: disk full");
    }

    #[test]
    fn errors_map_to_exit_codes_through_context() {
        use anyhow::Context;
        let code = |e: PeerError| exit_code(&Err::<(), _>(e).context("while doing a thing").unwrap_err());
        assert_eq!(code(PeerError::NotFound("x".into())), EXIT_NOT_FOUND);
        assert_eq!(code(PeerError::OutputExists("x".into())), EXIT_OUTPUT_EXISTS);
        let tried = vec![crate::tracker_client::Tried { url: "ws://x/ws".into(), cause: "refused".into() }];
        let unreachable = ConnectError::Unreachable { tried, attempts: 3 };
        assert_eq!(code(unreachable.into()), EXIT_TRACKER_UNREACHABLE);
        let tracker = |code| TrackerError { code, message: "m".into() };
        assert_eq!(code(RequestError::from(tracker(ErrorCode::UnknownFile)).into()), EXIT_NOT_FOUND);
        assert_eq!(code(RequestError::from(tracker(ErrorCode::BadName)).into()), EXIT_FAILURE);
        assert_eq!(code(RequestError::from(tracker(ErrorCode::NotOwner)).into()), EXIT_NOT_ALLOWED);
        assert_eq!(code(ConnectError::Refused(tracker(ErrorCode::BadToken)).into()), EXIT_NOT_ALLOWED);
        assert_eq!(code(RequestError::Timeout.into()), EXIT_FAILURE);
        assert_eq!(code(StoreError::NoRoom { need: 2, used: 1, capacity: 2 }.into()), EXIT_NO_ROOM);
        assert_eq!(code(StoreError::DiskFull { path: "d".into() }.into()), EXIT_NO_ROOM);
        assert_eq!(exit_code(&anyhow::anyhow!("anything else")), EXIT_FAILURE);
    }
}
