//! The web app's dependencies stay one family each: in `Cargo.lock`, everything the browser
//! peer can reach (its dependencies and theirs, any kind and any target, so a little more than
//! the wasm build) holds one version of each gloo crate (yew's and the app's `gloo` agree) and
//! one generation of the RustCrypto crates (`digest`, `cipher`, `crypto-common`, … and the
//! hashes, MACs and ciphers built on them). Two generations would ship two copies of the same
//! code in the wasm, and mean the page and `pp-peer` could drift apart on private files.
//!
//! The lock file is read simply: `[[package]]` blocks with `name`, `version` and a
//! `dependencies` list whose entries are `"name"` or `"name version"` (plus a source).

use std::collections::{BTreeMap, BTreeSet};

/// Crates of which the browser peer may reach only one version.
pub const ONE_VERSION: &[&str] = &[
    "aead",
    "aes",
    "aes-gcm",
    "block-buffer",
    "cipher",
    "crypto-common",
    "ctr",
    "curve25519-dalek",
    "digest",
    "ed25519",
    "ed25519-dalek",
    "ghash",
    "hmac",
    "inout",
    "pbkdf2",
    "polyval",
    "sha2",
    "universal-hash",
];

/// Packages the walk does not enter: optional dependencies the page never enables (the lock
/// file does not say a dependency is optional). `stun-types`: swarm-core's `stun` feature, for
/// the tracker and the native peer only (it still brings the older sha2/hmac to them).
pub const NOT_IN_THE_PAGE: &[&str] = &["stun-types"];

/// A package of the lock file: name, version and dependencies (`name` or `name version`).
#[derive(Debug, Default)]
pub struct Package {
    pub name: String,
    pub version: String,
    pub deps: Vec<String>,
}

pub fn parse(lock: &str) -> Vec<Package> {
    let mut out: Vec<Package> = Vec::new();
    let mut in_deps = false;
    for line in lock.lines().map(str::trim) {
        let quoted = |l: &str| l.split('"').nth(1).unwrap_or_default().to_string();
        if line == "[[package]]" {
            out.push(Package::default());
            in_deps = false;
        } else if let Some(p) = out.last_mut() {
            if in_deps {
                if line.starts_with(']') {
                    in_deps = false;
                } else {
                    p.deps.push(quoted(line));
                }
            } else if line.starts_with("name = ") {
                p.name = quoted(line);
            } else if line.starts_with("version = ") {
                p.version = quoted(line);
            } else if line.starts_with("dependencies = [") {
                in_deps = true;
            }
        }
    }
    out
}

/// `name version` of every package reachable from `root`.
pub fn reachable(packages: &[Package], root: &str) -> BTreeSet<(String, String)> {
    let mut by_name: BTreeMap<&str, Vec<&Package>> = BTreeMap::new();
    for p in packages {
        by_name.entry(p.name.as_str()).or_default().push(p);
    }
    let find = |dep: &str| -> Option<&Package> {
        let mut words = dep.split_whitespace();
        let name = words.next().filter(|n| !NOT_IN_THE_PAGE.contains(n))?;
        let candidates = by_name.get(name)?;
        match words.next() {
            Some(version) => candidates.iter().find(|p| p.version == version).copied(),
            None => candidates.first().copied(),
        }
    };
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&Package> = find(root).into_iter().collect();
    while let Some(p) = todo.pop() {
        if seen.insert((p.name.clone(), p.version.clone())) {
            todo.extend(p.deps.iter().filter_map(|d| find(d)));
        }
    }
    seen
}

/// Names (of gloo crates and of [`ONE_VERSION`]) reached in more than one version, with them.
pub fn doubled(reached: &BTreeSet<(String, String)>) -> Vec<String> {
    let mut versions: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, version) in reached {
        if name.starts_with("gloo") || ONE_VERSION.contains(&name.as_str()) {
            versions.entry(name).or_default().push(version);
        }
    }
    versions.into_iter().filter(|(_, v)| v.len() > 1).map(|(n, v)| format!("{n} {}", v.join(", "))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_peer_reaches_one_gloo_family_and_one_rustcrypto_generation() {
        let lock = std::fs::read_to_string(crate::tests::root().join("Cargo.lock")).expect("Cargo.lock");
        let reached = reachable(&parse(&lock), "browser-peer");
        assert!(reached.iter().any(|(n, _)| n == "yew"), "the walk found the browser peer's dependencies");
        assert!(reached.iter().any(|(n, _)| n == "digest"), "the walk reached the crypto crates");
        let doubled = doubled(&reached);
        assert!(doubled.is_empty(), "the browser peer reaches two versions of: {doubled:?} (Cargo.lock)");
    }

    #[test]
    fn two_versions_of_a_family_crate_are_found() {
        let lock = r#"
[[package]]
name = "browser-peer"
version = "0.1.0"
dependencies = [
 "gloo 0.8.1",
 "gloo 0.11.0",
 "sha2",
 "serde",
]

[[package]]
name = "gloo"
version = "0.8.1"

[[package]]
name = "gloo"
version = "0.11.0"

[[package]]
name = "sha2"
version = "0.11.3"
dependencies = [
 "digest 0.11.3",
]

[[package]]
name = "digest"
version = "0.11.3"

[[package]]
name = "serde"
version = "1.0.0"
dependencies = [
 "digest 0.10.7 (registry+https://example.invalid)",
]

[[package]]
name = "digest"
version = "0.10.7"
"#;
        assert_eq!(doubled(&reachable(&parse(lock), "browser-peer")), ["digest 0.10.7, 0.11.3", "gloo 0.11.0, 0.8.1"]);
    }
}
