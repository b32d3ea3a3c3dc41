//! The name index behind [`Swarm::search`](super::Swarm::search): a search looks at the files
//! its query can match, not at every file under the tracker's lock.
//!
//! Ranks, best first (lower is better), then newest, then name, then id:
//! 0. the whole name equals the query (case-insensitive),
//! 1. the name starts with it,
//! 2. a word of the name starts with it (words split at every character that is not
//!    alphanumeric),
//! 3. the name contains it elsewhere, **for queries of 3 characters or more** (shorter ones
//!    match at word starts only: a one-letter "substring" matches nearly every name and told
//!    the user nothing).
//!
//! Where each rank's candidates come from (every entry keeps its lower-cased name):
//! - ranks 0 and 1: [`NameIndex::by_name`], a sorted map of whole names: one range;
//! - rank 2: [`NameIndex::by_word`], a sorted map of words: one range;
//! - rank 3: [`NameIndex::by_gram`], the files holding each trigram of characters: the
//!   shortest list among the query's trigrams, each candidate then checked with `contains`;
//! - the empty query: [`NameIndex::by_age`], newest first, walked only until `limit` files
//!   that are available now were found.
//!
//! Measured (`swarm-core/tests/search_bench.rs`, release, 100,000 public files): the scan it
//! replaces took 25–44 ms under the tracker's lock per query; its figures beside this
//! index's are printed by that benchmark, which also checks both give the same answers.
//! The work a search did ([`Found::examined`]: candidates looked at) is what the tracker
//! charges the asker. Private files are never indexed.

use crate::content::FileId;
use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

/// How hits are ordered: rank, newest first, name, id.
type RankKey<'a> = (u8, Reverse<u64>, &'a str, &'a FileId);

/// Shortest query matched inside words (rank 3).
pub const MIN_SUBSTRING_CHARS: usize = 3;

/// One indexed file.
#[derive(Debug)]
struct Entry {
    id: FileId,
    name: Box<str>,
    lower: Box<str>,
    published_at_ms: u64,
}

/// What a search found, best first, and the work it took.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Matching files in rank order (not yet filtered for availability).
    pub ranked: Vec<FileId>,
    /// Index entries looked at (the cost the asker is charged for).
    pub examined: usize,
}

/// Public file names, by whole name, word, trigram and age.
#[derive(Debug, Default)]
pub struct NameIndex {
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    slot_of: HashMap<FileId, u32>,
    by_name: BTreeMap<Box<str>, Vec<u32>>,
    by_word: BTreeMap<Box<str>, Vec<u32>>,
    by_gram: HashMap<u64, Vec<u32>>,
    by_age: BTreeMap<Reverse<u64>, Vec<u32>>,
}

/// The words of a lower-cased name, each once.
fn words(lower: &str) -> Vec<&str> {
    let mut w: Vec<&str> = lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
    w.sort_unstable();
    w.dedup();
    w
}

/// The character trigrams of `s`, each once, packed three 21-bit code points to a `u64`.
fn grams(s: &str) -> Vec<u64> {
    let chars: Vec<char> = s.chars().collect();
    let mut g: Vec<u64> = chars.windows(3).map(|w| (w[0] as u64) << 42 | (w[1] as u64) << 21 | w[2] as u64).collect();
    g.sort_unstable();
    g.dedup();
    g
}

fn add<K: Ord>(map: &mut BTreeMap<K, Vec<u32>>, key: K, slot: u32) {
    map.entry(key).or_default().push(slot);
}

fn take<K: Ord + std::borrow::Borrow<Q>, Q: Ord + ?Sized>(map: &mut BTreeMap<K, Vec<u32>>, key: &Q, slot: u32) {
    if let Some(list) = map.get_mut(key) {
        if let Some(i) = list.iter().position(|s| *s == slot) {
            list.swap_remove(i);
        }
        if list.is_empty() {
            map.remove(key);
        }
    }
}

/// Lower is better; `None`: no match (see the module doc for the ranks).
pub fn match_rank(lower_name: &str, q: &str) -> Option<u8> {
    if q.is_empty() || lower_name == q {
        Some(0)
    } else if lower_name.starts_with(q) {
        Some(1)
    } else if lower_name.split(|c: char| !c.is_alphanumeric()).any(|w| w.starts_with(q)) {
        Some(2)
    } else if q.chars().count() >= MIN_SUBSTRING_CHARS && lower_name.contains(q) {
        Some(3)
    } else {
        None
    }
}

impl NameIndex {
    /// Indexed files.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Adds (or replaces) a file's name.
    pub fn insert(&mut self, id: FileId, name: &str, published_at_ms: u64) {
        self.remove(&id);
        let lower: Box<str> = name.to_lowercase().into();
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.entries.push(None);
                (self.entries.len() - 1) as u32
            }
        };
        add(&mut self.by_name, lower.clone(), slot);
        for w in words(&lower) {
            add(&mut self.by_word, w.into(), slot);
        }
        for g in grams(&lower) {
            self.by_gram.entry(g).or_default().push(slot);
        }
        add(&mut self.by_age, Reverse(published_at_ms), slot);
        self.slot_of.insert(id, slot);
        self.entries[slot as usize] = Some(Entry { id, name: name.into(), lower, published_at_ms });
    }

    /// Forgets a file's name (nothing if it was not indexed).
    pub fn remove(&mut self, id: &FileId) {
        let Some(slot) = self.slot_of.remove(id) else { return };
        let Some(e) = self.entries[slot as usize].take() else { return };
        take(&mut self.by_name, &*e.lower, slot);
        for w in words(&e.lower) {
            take(&mut self.by_word, w, slot);
        }
        for g in grams(&e.lower) {
            if let Some(list) = self.by_gram.get_mut(&g) {
                if let Some(i) = list.iter().position(|s| *s == slot) {
                    list.swap_remove(i);
                }
                if list.is_empty() {
                    self.by_gram.remove(&g);
                }
            }
        }
        take(&mut self.by_age, &Reverse(e.published_at_ms), slot);
        self.free.push(slot);
    }

    fn entry(&self, slot: u32) -> &Entry {
        self.entries[slot as usize].as_ref().expect("an indexed slot holds an entry")
    }

    /// Files matching `query`, best first, until `want` of them pass `keep` (the caller's
    /// "available now"); the ones that fail `keep` are left out.
    pub fn search(&self, query: &str, want: usize, keep: impl FnMut(&FileId) -> bool) -> Found {
        let q = query.trim().to_lowercase();
        if q.is_empty() {
            return self.newest(want, keep);
        }
        let mut slots: Vec<u32> = Vec::new();
        let prefixed = |map: &BTreeMap<Box<str>, Vec<u32>>, out: &mut Vec<u32>| {
            let from: &str = &q;
            for (_, list) in
                map.range::<str, _>((Bound::Included(from), Bound::Unbounded)).take_while(|(k, _)| k.starts_with(from))
            {
                out.extend_from_slice(list);
            }
        };
        prefixed(&self.by_name, &mut slots);
        prefixed(&self.by_word, &mut slots);
        if q.chars().count() >= MIN_SUBSTRING_CHARS {
            let rarest =
                grams(&q).iter().map(|g| self.by_gram.get(g).map_or(&[][..], |l| &l[..])).min_by_key(|l| l.len());
            slots.extend_from_slice(rarest.unwrap_or(&[]));
        }
        slots.sort_unstable();
        slots.dedup();
        let examined = slots.len();
        let hits: Vec<(RankKey, &FileId)> = slots
            .into_iter()
            .filter_map(|s| {
                let e = self.entry(s);
                Some(((match_rank(&e.lower, &q)?, Reverse(e.published_at_ms), &*e.name, &e.id), &e.id))
            })
            .collect();
        Found { ranked: best(hits, want, keep), examined }
    }
}

/// The first `want` of `hits` in order that pass `keep`. Sorting every hit of a broad query
/// (25,000 of them) took most of its time: the best `2 × want + 16` are selected first
/// (linear) and only they are sorted; the rest are sorted only if too few of those pass.
fn best<K: Ord>(mut hits: Vec<(K, &FileId)>, want: usize, mut keep: impl FnMut(&FileId) -> bool) -> Vec<FileId> {
    let first = want.saturating_mul(2).saturating_add(16);
    let mut out = Vec::new();
    if hits.len() > first {
        hits.select_nth_unstable(first);
        let rest = hits.split_off(first);
        hits.sort_unstable();
        out.extend(hits.iter().map(|h| *h.1).filter(|id| keep(id)).take(want));
        if out.len() == want {
            return out;
        }
        hits = rest;
    }
    hits.sort_unstable();
    out.extend(hits.into_iter().map(|h| *h.1).filter(|id| keep(id)).take(want - out.len()));
    out
}

impl NameIndex {
    /// The newest files that pass `keep`, newest first (then by name, then id).
    fn newest(&self, want: usize, mut keep: impl FnMut(&FileId) -> bool) -> Found {
        let mut found = Found::default();
        for list in self.by_age.values() {
            if found.ranked.len() >= want {
                break;
            }
            let mut same_age: Vec<(&str, &FileId)> =
                list.iter().map(|s| self.entry(*s)).map(|e| (&*e.name, &e.id)).collect();
            same_age.sort_unstable();
            for (_, id) in same_age {
                if found.ranked.len() >= want {
                    break;
                }
                found.examined += 1;
                if keep(id) {
                    found.ranked.push(*id);
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: usize) -> FileId {
        FileId(crate::content::ChunkId::of(&n.to_le_bytes()).0)
    }

    /// What the index must answer: every file ranked by [`match_rank`], then sorted.
    fn reference(
        files: &[(FileId, String, u64)],
        query: &str,
        want: usize,
        keep: &dyn Fn(&FileId) -> bool,
    ) -> Vec<FileId> {
        let q = query.trim().to_lowercase();
        let mut hits: Vec<(u8, Reverse<u64>, &str, &FileId)> = files
            .iter()
            .filter_map(|(id, name, at)| Some((match_rank(&name.to_lowercase(), &q)?, Reverse(*at), name.as_str(), id)))
            .collect();
        hits.sort();
        hits.into_iter().map(|h| *h.3).filter(|id| keep(id)).take(want).collect()
    }

    #[test]
    fn ranks_whole_name_prefix_word_then_substring() {
        let mut ix = NameIndex::default();
        for (n, name) in ["my cat.png", "cat", "catalog.pdf", "bobcat.jpg", "dog.png"].iter().enumerate() {
            ix.insert(id(n), name, 0);
        }
        let found = ix.search("CAT", 10, |_| true);
        assert_eq!(found.ranked, vec![id(1), id(2), id(0), id(3)]);
        assert_eq!(found.examined, 4, "dog.png is never looked at");
        assert!(ix.search("ca", 10, |_| true).ranked.iter().all(|f| *f != id(3)), "2 letters: word starts only");
        assert_eq!(ix.search("zebra", 10, |_| true), Found::default());
    }

    #[test]
    fn the_empty_query_walks_newest_first_only_as_far_as_it_needs() {
        let mut ix = NameIndex::default();
        for n in 0..1000 {
            ix.insert(id(n), &format!("file {n}"), n as u64);
        }
        let found = ix.search("", 3, |f| *f != id(998));
        assert_eq!(found.ranked, vec![id(999), id(997), id(996)]);
        assert_eq!(found.examined, 4);
    }

    #[test]
    fn removed_and_replaced_names_are_not_found() {
        let mut ix = NameIndex::default();
        ix.insert(id(1), "holiday.jpg", 5);
        ix.insert(id(1), "report.pdf", 6);
        assert!(ix.search("holiday", 10, |_| true).ranked.is_empty());
        assert_eq!(ix.search("port", 10, |_| true).ranked, vec![id(1)]);
        ix.remove(&id(1));
        assert!(ix.is_empty());
        assert!(ix.search("", 10, |_| true).ranked.is_empty());
        assert!(ix.by_name.is_empty() && ix.by_word.is_empty() && ix.by_gram.is_empty() && ix.by_age.is_empty());
    }

    fn name() -> impl Strategy<Value = String> {
        // Few letters, separators and a non-ASCII letter: queries hit often and at every rank.
        proptest::string::string_regex("[abcAB .ä_-]{0,12}").unwrap()
    }

    proptest! {
        #[test]
        fn answers_as_a_scan_of_every_name_would(
            names in proptest::collection::vec((name(), 0u64..4), 0..40),
            removed in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
            query in proptest::string::string_regex("[abcAB .ä_-]{0,4}").unwrap(),
            want in 0usize..12,
            hidden in any::<u64>(),
        ) {
            let mut ix = NameIndex::default();
            let mut files: Vec<(FileId, String, u64)> =
                names.into_iter().enumerate().map(|(n, (name, at))| (id(n), name, at)).collect();
            for (id, name, at) in &files {
                ix.insert(*id, name, *at);
            }
            for r in removed {
                if files.is_empty() { break; }
                let (id, _, _) = files.remove(r.index(files.len()));
                ix.remove(&id);
            }
            // "Available" is some fixed subset of the files.
            let keep = |f: &FileId| (u64::from(f.0[0]) ^ hidden) % 3 != 0;
            prop_assert_eq!(ix.search(&query, want, keep).ranked, reference(&files, &query, want, &keep));
            prop_assert_eq!(ix.len(), files.len());
        }
    }
}
