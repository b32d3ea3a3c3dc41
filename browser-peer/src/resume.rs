//! The tab's unfinished downloads, kept across reloads and browser restarts: a list of file
//! ids in localStorage, one list per identity slot (`pp-downloads-<slot>`, the slot's chunks
//! live in its own IndexedDB store). A download goes on the list when it starts and leaves it
//! when it is done or the user stops it; one that failed stays, and is tried again; one the
//! user paused stays paused. When the page opens, every listed download that is not paused
//! starts again: the chunks it verified before are in the store and are not fetched again.
//!
//! Private files are not listed: their key came in the link and is not kept in storage.

use swarm_core::FileId;

/// One kept download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kept {
    pub file: FileId,
    /// The user paused it: listed, not started.
    pub paused: bool,
}

impl Kept {
    pub fn running(file: FileId) -> Self {
        Self { file, paused: false }
    }
}

/// Downloads kept at most (the oldest go first).
pub const MAX_KEPT: usize = 64;

/// The localStorage key of slot `slot`'s list.
pub fn key(slot: u32) -> String {
    format!("pp-downloads-{slot}")
}

/// The list as stored: file ids in hex (`:paused` after a paused one), comma-separated.
pub fn encode(kept: &[Kept]) -> String {
    kept.iter()
        .map(|k| if k.paused { format!("{}:paused", k.file) } else { k.file.to_string() })
        .collect::<Vec<_>>()
        .join(",")
}

/// A stored list read back: what is not a file id is skipped, each file once (the last word
/// on it counts), the newest [`MAX_KEPT`] at most (a list written by hand or by another
/// version never stops the page).
pub fn decode(stored: &str) -> Vec<Kept> {
    let mut kept: Vec<Kept> = Vec::new();
    for entry in stored.split(',').map(str::trim) {
        let (id, paused) = match entry.split_once(':') {
            Some((id, "paused")) => (id, true),
            Some(_) => continue,
            None => (entry, false),
        };
        if let Ok(file) = id.parse::<FileId>() {
            kept = with(&kept, Kept { file, paused });
        }
    }
    kept
}

/// `kept` with `k` at the end (its file once), bounded.
pub fn with(kept: &[Kept], k: Kept) -> Vec<Kept> {
    let mut out: Vec<Kept> = kept.iter().copied().filter(|x| x.file != k.file).collect();
    out.push(k);
    let extra = out.len().saturating_sub(MAX_KEPT);
    out.drain(..extra);
    out
}

/// `kept` without `file`.
pub fn without(kept: &[Kept], file: FileId) -> Vec<Kept> {
    kept.iter().copied().filter(|k| k.file != file).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(n: u8) -> FileId {
        FileId([n; 32])
    }

    #[test]
    fn a_list_round_trips_and_garbage_is_skipped() {
        let kept = vec![Kept::running(f(1)), Kept { file: f(2), paused: true }, Kept::running(f(3))];
        assert_eq!(decode(&encode(&kept)), kept);
        assert_eq!(decode(""), Vec::<Kept>::new());
        let messy = format!("{},not-an-id,{}:what,{}:paused, {} ,", f(1), f(2), f(3), f(1));
        assert_eq!(
            decode(&messy),
            vec![Kept { file: f(3), paused: true }, Kept::running(f(1))],
            "each once, the rest skipped"
        );
    }

    #[test]
    fn the_list_keeps_the_newest_and_each_file_once() {
        let mut kept = Vec::new();
        for n in 0..(MAX_KEPT as u8 + 5) {
            kept = with(&kept, Kept::running(f(n)));
        }
        assert_eq!(kept.len(), MAX_KEPT);
        assert_eq!(kept.first().map(|k| k.file), Some(f(5)), "the oldest went");
        let again = with(&kept, Kept { file: f(5), paused: true });
        assert_eq!(again.len(), MAX_KEPT);
        assert_eq!(again.last(), Some(&Kept { file: f(5), paused: true }), "moved to the end, not twice");
        assert_eq!(without(&again, f(5)).len(), MAX_KEPT - 1);
        let long = encode(&(0..100u8).map(|n| Kept::running(f(n))).collect::<Vec<_>>());
        assert_eq!(decode(&long).len(), MAX_KEPT);
    }
}
