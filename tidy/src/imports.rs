//! The import graph of a crate's files, and the rule that the tracker's has no circle.
//!
//! A file imports another when its code names a path into it: `crate::a::b::Item` or
//! `super::x` (in `use` lines, braces included, and inline). Read simply: the code up to a
//! file's first `#[cfg(test)]` (test modules sit at the end), comments left out, and the
//! longest prefix of a path that is a module of the crate. Not edges:
//! names from the crate root (`lib.rs`: settings such as `crate::Config` that every layer
//! reads), a folder's `mod.rs` naming its own files (the folder's face composes its rooms),
//! and a file naming itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// Module path (`cluster::route`, `` for the root) of each `.rs` file under `src`
/// (relative, `/`-separated).
fn modules(src: &Path) -> BTreeMap<String, String> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).expect("a source folder") {
            let entry = entry.expect("directory entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
            if entry.file_type().expect("file type").is_dir() {
                walk(&entry.path(), &path, out);
            } else if let Some(stem) = name.strip_suffix(".rs") {
                let folder = rel.replace('/', "::");
                let module = match stem {
                    "lib" | "main" | "mod" => folder,
                    _ if folder.is_empty() => stem.to_string(),
                    _ => format!("{folder}::{stem}"),
                };
                out.insert(module, path);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(src, "", &mut out);
    out
}

/// The paths a file's code names (comments and test code left out): every word with `::`,
/// a `use` line's braces spread (`use super::{a, b::C}` gives `super::a` and `super::b::C`).
fn named_paths(text: &str) -> Vec<String> {
    let code = text.split("#[cfg(test)]").next().unwrap_or("");
    let text: String = code.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut out = Vec::new();
    for stmt in text.split(';') {
        let stmt = stmt.trim();
        if let Some(rest) = stmt.strip_prefix("use ").or_else(|| stmt.strip_prefix("pub use ")) {
            if let Some((prefix, group)) = rest.split_once('{') {
                for item in group.trim_end_matches('}').split(',') {
                    let item = item.trim().trim_start_matches('{').trim_end_matches('}').trim();
                    out.push(if item == "self" || item.is_empty() {
                        prefix.trim_end_matches("::").to_string()
                    } else {
                        format!("{prefix}{item}")
                    });
                }
                continue;
            }
        }
        let words = stmt.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
        out.extend(words.filter(|w| w.contains("::")).map(str::to_string));
    }
    out
}

/// The module a path from module `from` leads into (`None`: outside the crate, or the root).
fn target(path: &str, from: &str, mods: &BTreeMap<String, String>) -> Option<String> {
    let mut parts: Vec<&str> = path.split("::").filter(|p| !p.is_empty()).collect();
    let mut base: Vec<&str> = if from.is_empty() { Vec::new() } else { from.split("::").collect() };
    match parts.first() {
        Some(&"crate") => {
            parts.remove(0);
            base.clear();
        }
        Some(&"super") => {
            while parts.first() == Some(&"super") {
                parts.remove(0);
                base.pop();
            }
        }
        _ => return None,
    }
    let mut found = None;
    let mut at = base.join("::");
    for p in parts {
        at = if at.is_empty() { p.to_string() } else { format!("{at}::{p}") };
        if mods.contains_key(&at) {
            found = Some(at.clone());
        } else {
            break;
        }
    }
    found.or_else(|| (!base.is_empty()).then(|| base.join("::")))
}

/// Every import edge between the files of the crate under `src`: file → files it imports.
pub fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules(src);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, file) in &mods {
        let text = fs::read_to_string(src.join(file)).expect("a source file");
        let is_folder = file.ends_with("mod.rs") || module.is_empty();
        let out = edges.entry(file.clone()).or_default();
        for path in named_paths(&text) {
            let Some(to) = target(&path, module, &mods) else { continue };
            let own = is_folder && (module.is_empty() || to.starts_with(&format!("{module}::")));
            if to.is_empty() || to == *module || own {
                continue;
            }
            out.insert(mods[&to].clone());
        }
    }
    edges
}

/// One circle of `edges`, as the files along it (the first repeated at the end), if any.
pub fn a_circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        at: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == at) {
            let mut circle = path[i..].to_vec();
            circle.push(at.to_string());
            return Some(circle);
        }
        if done.contains(at) {
            return None;
        }
        path.push(at.to_string());
        for next in edges.get(at).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(at.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_imports_no_circle() {
        let src = crate::tests::root().join("tracker/src");
        let edges = graph(&src);
        // The reading finds what it should: the layers above use the state below.
        assert!(edges["transport/ws/session.rs"].contains("driver.rs"), "{:?}", edges["transport/ws/session.rs"]);
        assert!(edges["cluster/route.rs"].contains("cluster/local.rs"), "{:?}", edges["cluster/route.rs"]);
        assert!(edges["app.rs"].contains("cluster/mod.rs"), "{:?}", edges["app.rs"]);
        if let Some(circle) = a_circle(&edges) {
            panic!(
                "tracker/src imports in a circle: {} (break it with a trait the lower file owns, or move \
                 what both need below both)",
                circle.join(" -> ")
            );
        }
    }

    /// The core (tracker/src/core/) is the tracker's state as a plain struct: it names nothing of
    /// the layers that drive it (driver, cluster, transports, HTTP), and nothing that waits or
    /// reads a clock. Code up to a file's tests is read, comments left out.
    #[test]
    fn the_tracker_core_imports_nothing_above_it_and_no_io() {
        let src = crate::tests::root().join("tracker/src");
        let edges = graph(&src);
        let mut core_files = 0;
        for (file, to) in edges.iter().filter(|(f, _)| f.starts_with("core/")) {
            core_files += 1;
            for t in to {
                assert!(
                    t.starts_with("core/") || t == "config.rs",
                    "{file} imports {t}: the core names no layer above it"
                );
            }
            let text = fs::read_to_string(src.join(file)).expect("core file");
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
                for io in
                    ["tokio::", "Instant::now", "SystemTime::now", "std::fs", "std::net::Tcp", "std::thread::sleep"]
                {
                    assert!(!line.contains(io), "{file} uses {io}: the core does no I/O and reads no clock ({line})");
                }
            }
        }
        assert!(core_files >= 5, "the core's files were read ({core_files})");
    }

    #[test]
    fn paths_are_read_from_use_lines_and_code() {
        let text = "use super::{local, route::{self, X}};\nuse crate::state::Shared;\nfn f() { crate::a::b(); } // see crate::y::Y\n#[cfg(test)]\nuse crate::z::Z;";
        let paths = named_paths(text);
        for want in ["super::local", "super::route::{self", "crate::state::Shared", "crate::a::b"] {
            assert!(paths.iter().any(|p| p.starts_with(want)), "{want} in {paths:?}");
        }
        assert!(
            !paths.iter().any(|p| p.contains("::z") || p.contains("::y")),
            "comments and test code are not read: {paths:?}"
        );
    }

    #[test]
    fn a_circle_is_found_and_named() {
        let e = |pairs: &[(&str, &str)]| {
            let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
            for (a, b) in pairs {
                m.entry(a.to_string()).or_default().insert(b.to_string());
            }
            m
        };
        assert_eq!(a_circle(&e(&[("a", "b"), ("b", "c"), ("a", "c")])), None);
        assert_eq!(
            a_circle(&e(&[("a", "b"), ("b", "c"), ("c", "b")])),
            Some(vec!["b".to_string(), "c".to_string(), "b".to_string()])
        );
    }
}
