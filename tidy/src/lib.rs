//! Tidy: checks of the code base itself, run as tests (after rust-analyzer's `xtask tidy`).
//! `cargo test -p tidy` runs them, and so does a plain `cargo test`; `scripts/test.sh` runs
//! them first, with `cargo fmt --check` and clippy. The crate has no dependencies, so the
//! checks build and run in seconds. Every failure names the file and the line.
//!
//! The rules, for every file in the repository's folder except `.git/` and what `.gitignore`
//! names (build output such as `target/` and `dist/`):
//!
//! - **Module docs.** Every `.rs` file starts with a module doc: its first non-blank line is a
//!   `//!` line, and that block says something. No exceptions: the crate doc says what a crate
//!   is, a file's own doc what the file is (test helpers like `tests/common/mod.rs` too).
//! - **Paths named in docs stay in the repository.** In Markdown files (all of the text), in
//!   the comments of `.rs` and `.js` files, and in the `#` comments of scripts and `.toml`
//!   files, every word that looks like a relative path (`a/b`) is checked:
//!   - climbing out of the repository (`../…` from the file's folder) fails;
//!   - a path under `shared/` fails: on the project's machines that folder sits beside the
//!     checkout, no clone has it, and what such a doc measured belongs where it is used;
//!   - a path whose first part is a top-level file or folder of the repository (`scripts/…`,
//!     `tracker/src/…`) must exist, up to its first part holding a placeholder (`*`, `{id}`,
//!     `<id>`, `…`), so references follow files that move.
//!
//!   Other words with a slash (URLs, `/usr/bin/…`, `target/…`, `MB/s`, `src/…` relative to a
//!   crate) are not paths into the repository as a whole and are left alone.
//!
//! - **The web app's dependencies are one family each** ([`lockfile`]): one gloo, one
//!   RustCrypto generation, as far as `Cargo.lock` shows what the browser peer reaches.
//! - **The tracker imports no circle.** No file of `tracker/src` reaches itself through the
//!   paths its code names ([`imports`] says how they are read).
//!
//! Lists of enum variants that tests draw from (`ErrorCode::ALL`, `LinkPath::ALL`) are checked
//! against their enums next to them, in swarm-core's `wire` tests.

#[cfg(test)]
mod imports;
#[cfg(test)]
mod lockfile;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fs;
    use std::path::{Path, PathBuf};

    /// The repository's root: the parent of this crate.
    pub(crate) fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tidy/ sits in the repository").to_path_buf()
    }

    /// What `.gitignore` leaves out, read simply: `/name` or `name/` patterns as names, and
    /// `*.ext` as suffixes.
    struct Ignored {
        names: BTreeSet<String>,
        suffixes: Vec<String>,
    }

    impl Ignored {
        fn read(root: &Path) -> Ignored {
            let mut ignored = Ignored { names: BTreeSet::from([".git".to_string()]), suffixes: Vec::new() };
            let text = fs::read_to_string(root.join(".gitignore")).unwrap_or_default();
            for pattern in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
                if let Some(suffix) = pattern.strip_prefix('*') {
                    ignored.suffixes.push(suffix.to_string());
                } else {
                    ignored.names.insert(pattern.trim_matches('/').to_string());
                }
            }
            ignored
        }
        fn skips(&self, name: &str) -> bool {
            self.names.contains(name) || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
        }
    }

    /// Every file of the repository (relative to the root, `/`-separated), sorted.
    fn repo_files(root: &Path, ignored: &Ignored) -> Vec<String> {
        fn walk(dir: &Path, rel: &str, ignored: &Ignored, out: &mut Vec<String>) {
            let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
            for entry in entries {
                let entry = entry.expect("directory entry");
                let name = entry.file_name().to_string_lossy().into_owned();
                if ignored.skips(&name) {
                    continue;
                }
                let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                let kind = entry.file_type().expect("file type");
                if kind.is_dir() {
                    walk(&entry.path(), &rel, ignored, out);
                } else if kind.is_file() {
                    out.push(rel);
                }
            }
        }
        let mut out = Vec::new();
        walk(root, "", ignored, &mut out);
        out.sort();
        out
    }

    fn top_level(root: &Path, ignored: &Ignored) -> BTreeSet<String> {
        fs::read_dir(root)
            .expect("the repository's root")
            .map(|e| e.expect("directory entry").file_name().to_string_lossy().into_owned())
            .filter(|name| !ignored.skips(name))
            .collect()
    }

    fn read(root: &Path, rel: &str) -> String {
        fs::read_to_string(root.join(rel)).unwrap_or_else(|e| panic!("cannot read {rel}: {e}"))
    }

    /// Fails with every problem found, one `file:line: what` per line.
    fn report(problems: Vec<String>, rule: &str) {
        assert!(problems.is_empty(), "{rule}:\n{}\n", problems.join("\n"));
    }

    /// The problem with a `.rs` file's start, if any.
    fn module_doc_problem(rel: &str, text: &str) -> Option<String> {
        let mut lines = text.lines().enumerate().skip_while(|(_, l)| l.trim().is_empty());
        let Some((first, line)) = lines.next() else {
            return Some(format!("{rel}:1: empty file: start it with a `//!` module doc"));
        };
        if !line.starts_with("//!") {
            return Some(format!(
                "{rel}:{}: no module doc: start the file with `//!` lines saying what it is",
                first + 1
            ));
        }
        let block = std::iter::once(line).chain(lines.map(|(_, l)| l).take_while(|l| l.starts_with("//!")));
        let says_something = block.into_iter().any(|l| !l.trim_start_matches("//!").trim().is_empty());
        (!says_something).then(|| format!("{rel}:{}: the module doc is empty", first + 1))
    }

    #[test]
    fn every_rust_file_starts_with_a_module_doc() {
        let root = root();
        let ignored = Ignored::read(&root);
        let problems = repo_files(&root, &ignored)
            .into_iter()
            .filter(|rel| rel.ends_with(".rs"))
            .filter_map(|rel| module_doc_problem(&rel, &read(&root, &rel)))
            .collect();
        report(problems, "every .rs file starts with a module doc (`//!`)");
    }

    /// Which lines of a file are documentation, by the file's kind; `None`: none are checked.
    fn doc_lines(rel: &str, text: &str) -> Option<Vec<(usize, String)>> {
        let numbered = text.lines().enumerate().map(|(i, l)| (i + 1, l.to_string()));
        let comment = |prefix: &'static str| {
            Some(numbered.clone().filter(|(_, l)| l.trim_start().starts_with(prefix)).collect::<Vec<_>>())
        };
        let name = rel.rsplit('/').next().unwrap_or(rel);
        match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("md") => Some(numbered.collect()),
            Some("rs" | "js") => comment("//"),
            Some("sh" | "toml") => comment("#"),
            None if text.starts_with("#!") => comment("#"),
            _ => None,
        }
    }

    /// The words of a line that look like relative paths: runs of path characters holding a
    /// `/`, not starting with one (absolute paths, and URLs once split at their `:`).
    fn path_words(line: &str) -> Vec<&str> {
        let is_path_char = |c: char| c.is_alphanumeric() || "_-./~*{}<>…".contains(c);
        line.split(|c| !is_path_char(c))
            .map(|w| w.trim_end_matches(['.', '…']).trim_end_matches('/'))
            .map(|w| w.strip_prefix("./").unwrap_or(w))
            .filter(|w| w.contains('/') && !w.starts_with(['/', '~']))
            .collect()
    }

    /// Whether `rel` (a path in the repository, maybe with placeholders) names something that
    /// exists: the part before the first placeholder must.
    fn exists(root: &Path, rel: &str) -> bool {
        let is_placeholder = |part: &str| part.contains(['*', '{', '}', '<', '>', '…']) || part == "...";
        let known: Vec<&str> = rel.split('/').take_while(|p| !is_placeholder(p)).collect();
        root.join(known.join("/")).exists()
    }

    /// The problems with the paths named in the documentation lines of file `rel`.
    fn path_problems(root: &Path, top: &BTreeSet<String>, rel: &str, lines: &[(usize, String)]) -> Vec<String> {
        let dir: Vec<&str> = rel.split('/').collect::<Vec<_>>().split_last().map_or(vec![], |(_, d)| d.to_vec());
        let mut problems = Vec::new();
        for (n, line) in lines {
            for word in path_words(line) {
                let mut parts: Vec<&str> = word.split('/').collect();
                let problem = if parts[0] == ".." {
                    // Relative to the file's folder.
                    let mut at = dir.clone();
                    let mut escapes = false;
                    while parts.first() == Some(&"..") {
                        parts.remove(0);
                        escapes |= at.pop().is_none();
                    }
                    let target = at.into_iter().chain(parts).collect::<Vec<_>>().join("/");
                    if escapes {
                        Some("points outside the repository".to_string())
                    } else if !exists(root, &target) {
                        Some(format!("names {target}, which does not exist"))
                    } else {
                        None
                    }
                } else if parts[0] == "shared" {
                    Some("points at shared/, which is outside the repository: state the fact here instead".to_string())
                } else if top.contains(parts[0]) && !exists(root, word) {
                    Some("does not exist in the repository".to_string())
                } else {
                    None
                };
                if let Some(problem) = problem {
                    problems.push(format!("{rel}:{n}: `{word}` {problem}"));
                }
            }
        }
        problems
    }

    #[test]
    fn paths_named_in_docs_stay_in_the_repository() {
        let root = root();
        let ignored = Ignored::read(&root);
        let top = top_level(&root, &ignored);
        let mut problems = Vec::new();
        for rel in repo_files(&root, &ignored) {
            let Ok(text) = fs::read_to_string(root.join(&rel)) else { continue }; // not text
            if let Some(lines) = doc_lines(&rel, &text) {
                problems.extend(path_problems(&root, &top, &rel, &lines));
            }
        }
        report(problems, "paths named in docs and comments must exist in the repository");
    }

    // The checks themselves, on made-up files.

    #[test]
    fn module_docs_are_recognised() {
        assert_eq!(module_doc_problem("a.rs", "//! What this is.\n\nuse x;\n"), None);
        assert_eq!(module_doc_problem("a.rs", "\n//! What.\n"), None);
        assert_eq!(module_doc_problem("a.rs", "//!\n//! What.\n"), None);
        assert_eq!(
            module_doc_problem("a.rs", "\nuse x;\n//! late\n").as_deref(),
            Some("a.rs:2: no module doc: start the file with `//!` lines saying what it is")
        );
        assert_eq!(
            module_doc_problem("a.rs", "/// An item doc.\nfn f() {}\n").map(|p| p.contains(":1: no module doc")),
            Some(true)
        );
        assert_eq!(
            module_doc_problem("a.rs", "//!\n\nfn f() {}\n").as_deref(),
            Some("a.rs:1: the module doc is empty")
        );
        assert_eq!(
            module_doc_problem("a.rs", "").as_deref(),
            Some("a.rs:1: empty file: start it with a `//!` module doc")
        );
    }

    #[test]
    fn path_words_are_found() {
        assert_eq!(path_words("see shared/WEBRTC.md."), ["shared/WEBRTC.md"]);
        assert_eq!(path_words("(`scripts/test.sh`, ./e2e/src/)"), ["scripts/test.sh", "e2e/src"]);
        assert_eq!(path_words("https://example.org/scripts/x and /usr/bin/env"), Vec::<&str>::new());
        assert_eq!(path_words("ws://127.0.0.1:8080/ws at 30 MB/s"), ["8080/ws", "MB/s"]);
        assert_eq!(path_words("[doc](../shared/X.md)"), ["../shared/X.md"]);
    }

    #[test]
    fn paths_outside_or_missing_are_caught() {
        let root = root();
        let top = top_level(&root, &Ignored::read(&root));
        let check = |rel: &str, line: &str| path_problems(&root, &top, rel, &[(7, line.to_string())]);
        let fine = [
            "see scripts/test.sh and tracker/src/transport/ws/mod.rs, swarm-core/src/",
            "files under `target/e2e-artifacts/` at 30 MB/s via https://example.org/a/b",
            "`e2e/tests/*.rs`, `tracker/src/{ws,api}.rs`, `scripts/…`, `swarm-core/src/<module>.rs`",
            "[the scripts](../../scripts/setup.sh)",
        ];
        for line in fine {
            assert_eq!(check("tracker/src/x.rs", line), Vec::<String>::new(), "{line}");
        }
        assert_eq!(
            check("README.md", "as measured in shared/WEBRTC.md."),
            ["README.md:7: `shared/WEBRTC.md` points at shared/, which is outside the repository: state the fact here instead"]
        );
        assert_eq!(
            check("README.md", "see ../shared/X.md"),
            ["README.md:7: `../shared/X.md` points outside the repository"]
        );
        assert_eq!(check("tracker/a.md", "see ../../x"), ["tracker/a.md:7: `../../x` points outside the repository"]);
        assert_eq!(
            check("tracker/a.md", "see ../scripts/gone.sh"),
            ["tracker/a.md:7: `../scripts/gone.sh` names scripts/gone.sh, which does not exist"]
        );
        assert_eq!(
            check("x.rs", "moved to scripts/gone.sh"),
            ["x.rs:7: `scripts/gone.sh` does not exist in the repository"]
        );
    }

    #[test]
    fn doc_lines_depend_on_the_kind_of_file() {
        let lines =
            |rel: &str, text: &str| doc_lines(rel, text).map(|l| l.into_iter().map(|(n, _)| n).collect::<Vec<_>>());
        assert_eq!(lines("a.rs", "//! doc\nlet x = \"a/b\";\n    // c\n"), Some(vec![1, 3]));
        assert_eq!(lines("s.sh", "#!/bin/sh\ncd a/b\n# c\n"), Some(vec![1, 3]));
        assert_eq!(lines(".ci/run", "#!/bin/sh\nx\n"), Some(vec![1]));
        assert_eq!(lines("README.md", "a\nb\n"), Some(vec![1, 2]));
        assert_eq!(lines("static/index.html", "<a href=x/y>"), None);
    }
}
