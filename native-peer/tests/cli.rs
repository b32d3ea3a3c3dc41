//! `pp-peer` as a user meets it, with real tracker and peer processes: `put` prints a share
//! link that `get` takes (as a URL, an id or a name), one-shot commands are quiet on success,
//! checks that can fail come before any transfer, errors say each cause once, people get
//! text (sizes with units), not JSON, and an upload limit holds and changes while a peer runs.

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Output};

/// `pp-peer ARGS` without `--json`, with no RUST_LOG or PP_* from the test's environment.
fn pp(args: &[&str], cwd: &Path) -> Output {
    let mut cmd = Command::new(pp_peer());
    cmd.args(args).current_dir(cwd).env_remove("RUST_LOG");
    for (k, _) in std::env::vars() {
        if k.starts_with("PP_") {
            cmd.env_remove(k);
        }
    }
    cmd.output().expect("run pp-peer")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed ({:?}): {}", o.status.code(), text(&o.stderr));
    assert_eq!(text(&o.stderr), "", "{what}: nothing on stderr on success");
    text(&o.stdout)
}

#[test]
fn put_prints_a_link_that_get_takes_as_url_id_or_name() {
    let _s = serial();
    let tracker = Tracker::start(2);
    let root = test_root();
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let src = root.path().join("holiday photos.bin");
    let bytes = data(600_000, 11);
    std::fs::write(&src, &bytes).unwrap();
    let a_dir = a.dir.to_str().unwrap();
    let ws = tracker.ws_url();

    // put through the running peer: one line, with the size in units and the link.
    let out = ok(&pp(&["--tracker", &ws, "--data-dir", a_dir, "put", src.to_str().unwrap()], root.path()), "put");
    assert!(out.starts_with("Shared holiday photos.bin (585.9 KiB): http://127.0.0.1:"), "{out}");
    let link = out.split_whitespace().last().unwrap().to_string();
    assert!(link.contains("/#/file/"), "{link}");
    let id = link.rsplit('/').next().unwrap().to_string();
    assert_eq!(id.len(), 64);

    // The link alone is enough: it names the tracker (no --tracker given).
    let b = root.path().join("b");
    let got = ok(&pp(&["--data-dir", b.to_str().unwrap(), "get", &link, "-o", "by-link.bin"], root.path()), "get URL");
    assert!(got.starts_with("Saved ") && got.contains("by-link.bin"), "{got}");
    assert_eq!(std::fs::read(root.path().join("by-link.bin")).unwrap(), bytes);

    let c = root.path().join("c");
    let c_dir = c.to_str().unwrap();
    ok(&pp(&["--tracker", &ws, "--data-dir", c_dir, "get", &id, "-o", "by-id.bin"], root.path()), "get id");
    assert_eq!(std::fs::read(root.path().join("by-id.bin")).unwrap(), bytes);

    let cwd = root.path().join("downloads");
    std::fs::create_dir_all(&cwd).unwrap();
    ok(&pp(&["--tracker", &ws, "--data-dir", c_dir, "get", "holiday photos.bin"], &cwd), "get name");
    assert_eq!(std::fs::read(cwd.join("holiday photos.bin")).unwrap(), bytes);

    // --json keeps the machine-readable shape, with the link.
    let v = a.cli_json(&["put", src.to_str().unwrap()]);
    assert_eq!(v["files"][0]["link"].as_str(), Some(link.as_str()));

    // People get text with units; the quiet one-shot commands say nothing on stderr.
    let status =
        ok(&pp(&["--tracker", &ws, "--data-dir", c_dir, "--max-storage", "20GB", "status"], root.path()), "status");
    assert!(status.contains("Storage") && status.contains("of 18.6 GiB"), "{status}");
    assert!(!status.trim_start().starts_with('{'), "not JSON: {status}");
    let found = ok(&pp(&["--tracker", &ws, "--data-dir", c_dir, "search", "holiday"], root.path()), "search");
    assert!(found.contains("holiday photos.bin") && found.contains("585.9 KiB") && found.contains(&id), "{found}");
    let ls = ok(&pp(&["--tracker", &ws, "--data-dir", c_dir, "ls"], root.path()), "ls");
    assert!(ls.contains("In the swarm") && ls.contains("KiB"), "{ls}");
}

#[test]
fn checks_that_can_fail_come_before_any_transfer() {
    let _s = serial();
    let tracker = Tracker::start(2);
    let root = test_root();
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let src = root.path().join("report.pdf");
    std::fs::write(&src, data(300_000, 5)).unwrap();
    let v = a.cli_json(&["put", src.to_str().unwrap()]);
    let link = v["files"][0]["link"].as_str().unwrap().to_string();
    let ws = tracker.ws_url();

    // The output exists: refused (exit 4) with no chunk fetched, by link and by name.
    let cwd = root.path().join("here");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(cwd.join("report.pdf"), b"mine").unwrap();
    let d = root.path().join("d");
    let d_dir = d.to_str().unwrap();
    for target in [link.as_str(), "report.pdf"] {
        let o = pp(&["--tracker", &ws, "--data-dir", d_dir, "get", target], &cwd);
        assert_eq!(o.status.code(), Some(4), "{target}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains("already exists"), "{}", text(&o.stderr));
        assert_eq!(count_files(&d.join("chunks")), 0, "{target}: nothing was downloaded");
        assert_eq!(std::fs::read(cwd.join("report.pdf")).unwrap(), b"mine");
    }
    let o = pp(&["--tracker", &ws, "--data-dir", d_dir, "get", &link, "-o", "report.pdf"], &cwd);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(count_files(&d.join("chunks")), 0);

    // A bad link or id is a usage error, said at once.
    for bad in ["http://127.0.0.1:1/#/file/xyz", "http://host/nothing-here", &format!("{}?color=red", &link)] {
        let o = pp(&["--data-dir", d_dir, "get", bad], &cwd);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o.stderr));
        assert!(text(&o.stderr).starts_with("error: "), "{}", text(&o.stderr));
    }
    // An id no file has: not found (3); under --json, said as JSON on stdout.
    let o = pp(&["--tracker", &ws, "--data-dir", d_dir, "get", &"ab".repeat(32)], &cwd);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let o = pp(&["--json", "--tracker", &ws, "--data-dir", d_dir, "get", &"ab".repeat(32)], &cwd);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("the error as JSON on stdout");
    assert_eq!((v["error"]["kind"].as_str(), v["error"]["exit_code"].as_i64()), (Some("not_found"), Some(3)), "{v}");
    assert!(!v["error"]["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    assert!(text(&o.stderr).starts_with("error: "), "stderr keeps the line for people: {}", text(&o.stderr));
    // A key on a public file's link: the private-file path says the link is wrong.
    let private = format!("{link}?key={}", "A".repeat(43));
    let o = pp(&["--tracker", &ws, "--data-dir", d_dir, "get", &private], &cwd);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o.stderr).contains("is a public file: its link needs no key"), "{}", text(&o.stderr));
}

#[test]
fn an_unreachable_tracker_is_said_once() {
    let root = test_root();
    let dir = root.path().join("p");
    let o = pp(&["--tracker", "ws://127.0.0.1:1/ws", "--data-dir", dir.to_str().unwrap(), "ls"], root.path());
    assert_eq!(o.status.code(), Some(5));
    let j = pp(&["--json", "--tracker", "ws://127.0.0.1:1/ws", "--data-dir", dir.to_str().unwrap(), "ls"], root.path());
    let v: serde_json::Value = serde_json::from_slice(&j.stdout).expect("the error as JSON on stdout");
    assert_eq!(v["error"]["kind"], "tracker_unreachable", "{v}");
    let err = text(&o.stderr);
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: cannot reach the tracker at ws://127.0.0.1:1/ws"), "{err}");
    assert_eq!(err.matches("refused").count(), 1, "the cause once: {err}");
    assert_eq!(err.matches("cannot reach").count(), 1, "{err}");
}

#[test]
fn completions_man_and_sizes() {
    let root = test_root();
    for shell in ["bash", "zsh", "fish"] {
        let out = ok(&pp(&["completions", shell], root.path()), shell);
        assert!(out.contains("max-storage") && out.contains("completions"), "{shell}");
    }
    let man = ok(&pp(&["man"], root.path()), "man");
    assert!(man.contains(".TH pp-peer") && man.contains("max\\-storage"), "{man}");
    let get = ok(&pp(&["man", "get"], root.path()), "man get");
    assert!(get.contains("pp\\-peer\\-get") && get.contains("share link"), "{get}");
    let o = pp(&["--max-storage", "lots", "status"], root.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("20GiB"), "says what a size looks like: {}", text(&o.stderr));
    // Durations: defaults shown with units; a bad one names its flag and what would do.
    let help = ok(&pp(&["run", "--help"], root.path()), "run --help");
    for (flag, default) in
        [("--http-header-timeout <DURATION>", "[default: 10s]"), ("--scrub-every <DURATION>", "[default: 1h]")]
    {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing: {help}"));
        let next = help[at + 2..].find("\n      --").map_or(help.len(), |n| at + 2 + n);
        assert!(help[at..next].contains(default), "{flag}: {}", &help[at..next]);
    }
    assert!(help.contains("--rtc-timeout <DURATION>") && help.contains("[default: 8s]"), "{help}");
    let o = pp(&["--rtc-timeout", "5x", "status"], root.path());
    assert_eq!(o.status.code(), Some(2));
    let err = text(&o.stderr);
    assert!(err.contains("'--rtc-timeout <DURATION>'") && err.contains("not a duration: \"5x\""), "{err}");
    assert!(err.contains("30s, 2m, 500ms"), "says what a duration looks like: {err}");
    let o = Command::new(pp_peer())
        .arg("--data-dir")
        .arg(root.path().join("p"))
        .arg("status")
        .env("PP_RTC_TIMEOUT", "soon")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("'--rtc-timeout <DURATION>'"), "from the environment too: {}", text(&o.stderr));
}

#[test]
fn config_file_under_env_under_flags() {
    let _s = serial();
    let tracker = Tracker::start(2);
    let root = test_root();
    let dir = root.path().join("from-file");
    let conf = root.path().join("peer.toml");
    std::fs::write(
        &conf,
        format!("tracker = {:?}\ndata-dir = {:?}\nmax-storage = \"3GiB\"\n", tracker.ws_url(), dir.to_str().unwrap()),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let v: serde_json::Value =
        serde_json::from_str(&ok(&pp(&["--config", conf, "--json", "status"], root.path()), "status")).unwrap();
    assert_eq!(v["storage_capacity"], 3u64 << 30, "the file's value");
    assert!(dir.join("identity").exists() || dir.read_dir().unwrap().count() > 0, "the file's data dir");
    let mut cmd = Command::new(pp_peer());
    cmd.args(["--config", conf, "--json", "status"]).env("PP_MAX_STORAGE", "2GiB").env_remove("RUST_LOG");
    let v: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    assert_eq!(v["storage_capacity"], 2u64 << 30, "the environment beats the file");
    let mut cmd = Command::new(pp_peer());
    cmd.args(["--config", conf, "--json", "--max-storage", "1GiB", "status"]).env("PP_MAX_STORAGE", "2GiB");
    let v: serde_json::Value = serde_json::from_slice(&cmd.output().unwrap().stdout).unwrap();
    assert_eq!(v["storage_capacity"], 1u64 << 30, "the flag beats both");
    std::fs::write(root.path().join("bad.toml"), "max-storag = 1\n").unwrap();
    let o = pp(&["--config", root.path().join("bad.toml").to_str().unwrap(), "status"], root.path());
    assert!(!o.status.success() && text(&o.stderr).contains("max-storag"), "{}", text(&o.stderr));
}

/// `get -o -`: the file's bytes on stdout and nothing else there (the summary, even under
/// --json, goes to stderr), from a short-lived peer and through a running one, for a public
/// and a private file; the downloader keeps the chunks (it becomes a source); a file that
/// cannot be had writes nothing to stdout and exits non-zero; a reader that stops reading
/// makes the exit code say so.
#[test]
fn get_to_stdout_writes_the_files_bytes_and_nothing_else() {
    let _s = serial();
    let tracker = Tracker::start(2);
    let root = test_root();
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let bytes = data(700_000, 21);
    let src = root.path().join("data.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = a.cli_json(&["put", src.to_str().unwrap()])["files"][0]["id"].as_str().unwrap().to_string();
    let private = a.cli_json(&["put", "--private", src.to_str().unwrap()]);
    let link = private["files"][0]["link"].as_str().unwrap().to_string();
    let private_id = private["files"][0]["id"].as_str().unwrap().to_string();
    let ws = tracker.ws_url();
    // A file named `-` in the working directory is neither read nor written.
    let cwd = root.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::write(cwd.join("-"), b"not this").unwrap();

    // A short-lived peer, as people type it: bytes on stdout, one line for people on stderr.
    let b = root.path().join("b");
    let b_dir = b.to_str().unwrap();
    let o = pp(&["--tracker", &ws, "--data-dir", b_dir, "get", &id, "-o", "-"], &cwd);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout == bytes, "stdout is the file ({} bytes of {})", o.stdout.len(), bytes.len());
    assert!(text(&o.stderr).starts_with("Wrote data.bin to stdout (683.6 KiB in"), "{}", text(&o.stderr));
    assert!(count_files(&b.join("chunks")) >= 3, "the downloader keeps the chunks, to serve them");
    let held = cli_in(&ws, &b, &["ls"], None);
    let v: serde_json::Value = serde_json::from_slice(&held.stdout).unwrap();
    assert_eq!(v["local"][0]["chunks_held"], v["local"][0]["chunks"], "{v}");
    assert_eq!(std::fs::read(cwd.join("-")).unwrap(), b"not this");

    // --json: the summary is JSON on stderr, stdout is still only the file; a private file's
    // link too.
    let c = root.path().join("c");
    for target in [id.as_str(), link.as_str()] {
        let o = pp(&["--json", "--tracker", &ws, "--data-dir", c.to_str().unwrap(), "get", target, "-o", "-"], &cwd);
        assert!(o.status.success(), "{target}: {}", text(&o.stderr));
        assert!(o.stdout == bytes, "{target}: stdout is the file ({} bytes)", o.stdout.len());
        let v: serde_json::Value = serde_json::from_str(text(&o.stderr).trim()).expect("the summary on stderr");
        assert_eq!((v["output"].as_str(), v["size"].as_u64()), (Some("-"), Some(700_000)), "{v}");
    }

    // Through a running peer (its control socket): the same bytes, nothing left in its data dir.
    let d = Peer::start("d", &tracker, root.path(), &[], &[]);
    let o = pp(&["--json", "--data-dir", d.dir.to_str().unwrap(), "get", &link, "-o", "-"], &cwd);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(o.stdout == bytes, "through the running peer ({} bytes)", o.stdout.len());
    let left: Vec<_> = std::fs::read_dir(&d.dir).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains("pp-")), "{left:?}");

    // No such file: exit 3, not a byte on stdout (under --json, the error JSON goes to stderr).
    let e = root.path().join("e");
    for json in [false, true] {
        let mut args = vec!["--tracker", &ws, "--data-dir", e.to_str().unwrap(), "get"];
        let missing = "ab".repeat(32);
        args.extend([missing.as_str(), "-o", "-"]);
        if json {
            args.insert(0, "--json");
        }
        let o = pp(&args, &cwd);
        assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
        assert!(o.stdout.is_empty(), "nothing on stdout: {:?}", text(&o.stdout));
        assert!(!json || text(&o.stderr).contains("\"kind\":\"not_found\""), "{}", text(&o.stderr));
    }

    // A private file by its bare id: refused before a byte of ciphertext reaches stdout.
    let o = pp(&["--tracker", &ws, "--data-dir", e.to_str().unwrap(), "get", &private_id, "-o", "-"], &cwd);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stderr));
    assert!(o.stdout.is_empty(), "no ciphertext on stdout ({} bytes)", o.stdout.len());
    assert!(text(&o.stderr).contains("is a private file: get it with its share link"), "{}", text(&o.stderr));

    // A reader that stops after 100 bytes: the write fails, and the exit code says so.
    let mut cmd = std::process::Command::new(pp_peer());
    cmd.args(["--tracker", &ws, "--data-dir", e.to_str().unwrap(), "get", &id, "-o", "-"]);
    let mut child = cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let mut first = [0u8; 100];
    std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(first[..], bytes[..100]);
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(1), "a broken pipe is a failure: {}", text(&o.stderr));
    assert!(text(&o.stderr).contains("cannot write to stdout"), "{}", text(&o.stderr));
}

/// `--upload-limit` holds for everything a peer serves (the downloader's get and the swarm's
/// own copies alike: what it sent never outruns the limit's burst plus the rate over its
/// life), `status` shows it, and `pp-peer limit` lifts it while the peer runs.
#[test]
fn an_upload_limit_holds_shows_in_status_and_changes_while_the_peer_runs() {
    let _s = serial();
    let tracker = Tracker::start(2);
    let root = test_root();
    let rate = 1u64 << 20;
    let t0 = std::time::Instant::now();
    let a = Peer::start("a", &tracker, root.path(), &["--upload-limit", "1MiB/s"], &[]);
    let b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let bytes = data(12 << 20, 11);
    let src = root.path().join("limited.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = a.cli_json(&["put", src.to_str().unwrap()])["files"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(a.cli_json(&["status"])["upload_limit"], rate);

    let out = root.path().join("got.bin");
    b.cli_json(&["get", &id, "-o", out.to_str().unwrap()]);
    assert!(std::fs::read(&out).unwrap() == bytes);
    let st = a.cli_json(&["status"]);
    let sent = st["data_channel_bytes_sent"].as_u64().unwrap() + st["relay_bytes_sent"].as_u64().unwrap();
    // The burst (one largest chunk, 4 MiB), the rate over a's whole life, the chunk read
    // last, and frame headers. Unlimited, 12 MiB go in well under a second.
    let allowed = (4 << 20) + rate * t0.elapsed().as_millis() as u64 / 1000 + (256 << 10) + (64 << 10);
    assert!(sent >= 12 << 20, "a sent the file: {sent}");
    assert!(sent <= allowed, "a sent {sent} bytes within its 1 MiB/s limit's {allowed}");

    let v = a.cli_json(&["limit", "--no-upload-limit"]);
    assert!(v["upload_limit"].is_null(), "{v}");
    wait_for("the limit to be lifted", || a.cli_json(&["status"])["upload_limit"].is_null().then_some(()));
    let v = a.cli_json(&["limit", "--upload", "2MB/s"]);
    assert_eq!(v["upload_limit"], 2_000_000);
    let refused = a.cli(&["limit", "--upload", "fast"]);
    assert_eq!(refused.status.code(), Some(2), "a rate that is not one is a usage error");
}
