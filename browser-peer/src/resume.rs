//! The tab's unfinished downloads, kept across reloads and browser restarts: a list of file
//! ids in localStorage, one list per identity slot (`pp-downloads-<slot>`, the slot's chunks
//! live in its own IndexedDB store). A download goes on the list when it starts and leaves it
//! when it is done or the user stops it; one that failed stays, and is tried again. When the
//! page opens, every listed download starts again: the chunks it verified before are in the
//! store and are not fetched again.
//!
//! Private files are not listed: their key came in the link and is not kept in storage.

use swarm_core::FileId;

/// Downloads kept at most (the oldest go first).
pub const MAX_KEPT: usize = 64;

/// The localStorage key of slot `slot`'s list.
pub fn key(slot: u32) -> String {
    format!("pp-downloads-{slot}")
}

/// The list as stored: file ids in hex, comma-separated.
pub fn encode(files: &[FileId]) -> String {
    files.iter().map(|f| f.to_string()).collect::<Vec<_>>().join(",")
}

/// A stored list read back: what is not a file id is skipped, each id once, the newest
/// [`MAX_KEPT`] at most (a list written by hand or by another version never stops the page).
pub fn decode(stored: &str) -> Vec<FileId> {
    let mut files: Vec<FileId> = Vec::new();
    for f in stored.split(',').filter_map(|s| s.trim().parse::<FileId>().ok()) {
        if !files.contains(&f) {
            files.push(f);
        }
    }
    let extra = files.len().saturating_sub(MAX_KEPT);
    files.drain(..extra);
    files
}

/// `files` with `file` added at the end (once), bounded.
pub fn with(files: &[FileId], file: FileId) -> Vec<FileId> {
    let mut out: Vec<FileId> = files.iter().copied().filter(|f| *f != file).collect();
    out.push(file);
    let extra = out.len().saturating_sub(MAX_KEPT);
    out.drain(..extra);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u8) -> FileId {
        FileId([n; 32])
    }

    #[test]
    fn a_list_round_trips_and_garbage_is_skipped() {
        let files = vec![f(1), f(2), f(3)];
        assert_eq!(decode(&encode(&files)), files);
        assert_eq!(decode(""), Vec::<FileId>::new());
        let messy = format!("{},not-an-id,{}, {} ,", f(1), f(2), f(1));
        assert_eq!(decode(&messy), vec![f(1), f(2)], "each id once, the rest skipped");
    }

    #[test]
    fn the_list_keeps_the_newest_and_each_file_once() {
        let mut files = Vec::new();
        for n in 0..(MAX_KEPT as u8 + 5) {
            files = with(&files, f(n));
        }
        assert_eq!(files.len(), MAX_KEPT);
        assert_eq!(files.first(), Some(&f(5)), "the oldest went");
        let again = with(&files, f(5));
        assert_eq!((again.len(), again.last()), (MAX_KEPT, Some(&f(5))), "started again: moved to the end, not twice");
        let long = encode(&(0..100u8).map(f).collect::<Vec<_>>());
        assert_eq!(decode(&long).len(), MAX_KEPT);
    }
}
