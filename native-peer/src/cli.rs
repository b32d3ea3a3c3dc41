//! Errors that map to distinct exit codes, so scripts can tell them apart.

use std::path::PathBuf;

/// No such file in the swarm (exit code 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotFound(pub String);

/// The output path exists and `--force` was not given (exit code 4).
#[derive(Debug, thiserror::Error)]
#[error("{} already exists (use --force to overwrite)", .0.display())]
pub struct OutputExists(pub PathBuf);

/// The tracker could not be reached, even after retrying with backoff (exit code 5).
#[derive(Debug, thiserror::Error)]
#[error("cannot reach the tracker at {url} after {attempts} attempt{}: {last}", if *.attempts == 1 { "" } else { "s" })]
pub struct TrackerUnreachable {
    pub url: String,
    pub attempts: u32,
    pub last: String,
}

/// Exit codes of `pp-peer` (documented in `pp-peer --help`).
pub const EXIT_FAILURE: i32 = 1;
/// Bad command line (clap's own code).
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_NOT_FOUND: i32 = 3;
pub const EXIT_OUTPUT_EXISTS: i32 = 4;
pub const EXIT_TRACKER_UNREACHABLE: i32 = 5;
pub const EXIT_NO_ROOM: i32 = 6;

/// The exit code for an error.
pub fn exit_code(e: &anyhow::Error) -> i32 {
    if e.downcast_ref::<NotFound>().is_some() {
        return EXIT_NOT_FOUND;
    }
    if let Some(t) = e.downcast_ref::<crate::tracker_client::TrackerError>() {
        if t.code == swarm_core::wire::ErrorCode::UnknownFile {
            return EXIT_NOT_FOUND;
        }
    }
    if e.downcast_ref::<OutputExists>().is_some() {
        return EXIT_OUTPUT_EXISTS;
    }
    if e.downcast_ref::<TrackerUnreachable>().is_some() {
        return EXIT_TRACKER_UNREACHABLE;
    }
    if let Some(s) = e.downcast_ref::<crate::store::StoreError>() {
        if matches!(s, crate::store::StoreError::NoRoom { .. } | crate::store::StoreError::DiskFull { .. }) {
            return EXIT_NO_ROOM;
        }
    }
    EXIT_FAILURE
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
    use super::safe_file_name;

    #[test]
    fn names_never_become_paths() {
        assert_eq!(safe_file_name("../../etc/passwd", "x"), "_.._etc_passwd");
        assert_eq!(safe_file_name("/abs/path", "x"), "_abs_path");
        assert_eq!(safe_file_name("..", "fallback"), "fallback");
        assert_eq!(safe_file_name("a\nb", "x"), "a_b");
        assert_eq!(safe_file_name("report.pdf", "x"), "report.pdf");
    }
}
