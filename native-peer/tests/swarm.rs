//! End-to-end tests of the native peer: a real tracker and several real `pp-peer run`
//! processes on loopback, each with its own data dir.

mod common;

use common::*;
use std::time::Duration;

fn put(peer: &Peer, path: &std::path::Path) -> String {
    let v = peer.cli_json(&["put", path.to_str().unwrap()]);
    v["files"][0]["id"].as_str().expect("file id").to_string()
}

/// Put on one peer, get on another: several holders deliver at once, every chunk is verified,
/// and the downloader becomes a source.
#[test]
fn get_fetches_from_several_sources_at_once() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(3);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let _b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let _c = Peer::start("c", &tracker, root.path(), &[], &[]);
    let bytes = data(5 * 1024 * 1024 + 12_345, 1);
    let src = root.path().join("movie.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&a, &src);
    wait_replicated(&a, "movie.bin", 3);

    let d = Peer::start("d", &tracker, root.path(), &[], &[]);
    let out = root.path().join("out.bin");
    let v = d.cli_json(&["get", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), bytes, "downloaded bytes differ");
    let sources = v["chunks_from"].as_object().expect("chunks_from");
    assert!(sources.len() >= 2, "expected several sources to deliver, got {sources:?}");
    assert_eq!(v["fetched_bytes"].as_u64(), Some(bytes.len() as u64));
    // The log names the source and the rate of every chunk.
    assert!(d.log_text().contains("chunk received"), "debug log lacks per-chunk lines");
    // The downloader now holds and announces every chunk: 4 copies.
    wait_replicated(&a, "movie.bin", 4);
    let st = d.status();
    assert!(st["chunks_from"].as_object().unwrap().len() >= 2);
    // Getting by exact name works too, and an existing output is refused without --force.
    let o = d.cli(&["get", "movie.bin", "-o", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", String::from_utf8_lossy(&o.stderr));
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("under --json the error is JSON on stdout");
    assert_eq!(e["error"]["kind"], "output_exists", "{e}");
    let v = d.cli_json(&["get", "movie.bin", "-o", out.to_str().unwrap(), "--force"]);
    assert_eq!(v["fetched_bytes"].as_u64(), Some(0), "everything was already stored");
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    // ls shows the swarm's files and what this peer holds.
    let ls = d.cli_json(&["ls"]);
    assert!(ls["swarm"].as_array().unwrap().iter().any(|f| f["id"] == id.as_str()));
    let local = ls["local"].as_array().unwrap();
    assert!(local.iter().any(|f| f["id"] == id.as_str() && f["chunks_held"] == f["chunks"]), "{ls}");
}

/// kill -9 the downloading peer mid-get; after a restart the download resumes from the chunks
/// it stored and fetches fewer bytes.
#[test]
fn interrupted_download_resumes_after_kill_9() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let _b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let len = 48 * 1024 * 1024 + 7;
    let bytes = data(len, 2);
    let src = root.path().join("big.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&a, &src);
    wait_replicated(&a, "big.bin", 2);
    let total_chunks = len.div_ceil(256 * 1024);

    let mut d = Peer::start("d", &tracker, root.path(), &[], &[]);
    let out = root.path().join("big.out");
    let mut getter = std::process::Command::new(pp_peer())
        .arg("--tracker")
        .arg(&d.tracker)
        .arg("--data-dir")
        .arg(&d.dir)
        .args(["--json", "get", &id, "-o", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill as soon as some chunks are stored, long before all are.
    let stored = wait_for("the first chunks", || {
        let n = d.chunk_files();
        (n >= 4).then_some(n)
    });
    d.kill();
    let _ = getter.wait();
    assert!(stored < total_chunks, "the download finished before the kill ({stored} chunks)");
    assert!(!out.exists(), "no output from an interrupted download");

    d.restart();
    assert_eq!(count_files(&d.dir.join("tmp")), 0, "temporary files are cleaned at start");
    let held = d.chunk_files();
    assert!(held >= stored, "chunks stored before the kill survive ({held} < {stored})");
    let v = d.cli_json(&["get", &id, "-o", out.to_str().unwrap()]);
    let fetched = v["fetched_bytes"].as_u64().unwrap();
    assert!(fetched < len as u64, "resumed download fetched {fetched} of {len} bytes");
    assert!(fetched + (held as u64 - 1) * 256 * 1024 <= len as u64 + 256 * 1024);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    // Every chunk in the store is sound after the crash.
    let scrub = d.cli_json(&["scrub"]);
    assert_eq!(scrub["dropped"].as_array().unwrap().len(), 0, "{scrub}");
    assert_eq!(scrub["checked"].as_u64(), Some(total_chunks as u64));
}

/// A peer that lies (flips a byte in every chunk it serves) is caught: its chunks are refused,
/// the honest holder delivers, and the output is correct.
///
/// The honest holder is away when the download starts, so the liar is the only holder it can
/// ask and certainly is asked (with both there, the download may be done by the honest one
/// before the liar is ever probed: it asks a new source only while there is work for it);
/// the honest one comes back once the downloader has refused a chunk.
#[test]
fn chunks_from_a_lying_peer_are_refused() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let mut honest = Peer::start("honest", &tracker, root.path(), &[], &[]);
    let liar = Peer::start("liar", &tracker, root.path(), &[], &[("PP_TEST_CORRUPT_SERVE", "1")]);
    let bytes = data(2 * 1024 * 1024 + 99, 3);
    let src = root.path().join("doc.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&honest, &src);
    wait_replicated(&honest, "doc.bin", 2);
    assert_eq!(liar.chunk_files(), 9, "the liar holds every chunk");
    honest.kill();

    let d = Peer::start("d", &tracker, root.path(), &[], &[]);
    let out = root.path().join("doc.out");
    let v = std::thread::scope(|s| {
        let get = s.spawn(|| d.cli_json(&["get", &id, "-o", out.to_str().unwrap()]));
        wait_for("the downloader to refuse a chunk from the liar", || {
            (d.status()["bad_chunks_refused"].as_u64()? >= 1).then_some(())
        });
        honest.restart();
        get.join().expect("the get thread")
    });
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let from = v["chunks_from"].as_object().unwrap();
    assert!(!from.contains_key(&liar.peer_id), "nothing was taken from the liar: {from:?}");
    // (at least 9: the tracker, told of the liar, may order this peer to copy a chunk too)
    assert!(from.get(&honest.peer_id).and_then(|n| n.as_u64()).unwrap() >= 9, "{from:?}");
    assert!(d.log_text().contains("refused a bad chunk"));
    // The tracker was told (BadSource).
    let metrics = String::from_utf8(http(tracker.port, "GET", "/metrics", &[]).body).unwrap();
    let reported: u64 = metrics
        .lines()
        .find(|l| l.contains("bad_sources_total") && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last()?.parse().ok())
        .unwrap_or_else(|| panic!("no bad_sources_total in {metrics}"));
    assert!(reported >= 1);
    // Streamed to stdout (`get -o -`, chunks written as they are verified), still only the
    // honest bytes.
    let e = root.path().join("e");
    let o = cli_in(&tracker.ws_url(), &e, &["get", &id, "-o", "-"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout == bytes, "stdout is the file ({} bytes of {})", o.stdout.len(), bytes.len());
}

/// The HTTP gateway streams files it does not hold, with Range, HEAD, 404, 400, 416.
#[test]
fn http_gateway_serves_ranges() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    // The gateway peer keeps nothing (no room): every byte it serves comes from the swarm.
    let gw = Peer::start("gw", &tracker, root.path(), &["--http", "127.0.0.1:0", "--max-storage", "0"], &[]);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let _b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let bytes = data(700_000, 4);
    let src = root.path().join("page.html");
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&a, &src);
    wait_replicated(&a, "page.html", 2);
    let port = gw.http.expect("gateway port");
    let path = format!("/files/{id}");

    let full = http(port, "GET", &path, &[]);
    assert_eq!(full.status, 200);
    assert_eq!(full.body, bytes);
    assert_eq!(full.header("content-length"), Some("700000"));
    assert_eq!(full.header("content-type"), Some("application/octet-stream"), "HTML is never served as HTML");
    assert_eq!(full.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let cd = full.header("content-disposition").unwrap();
    assert!(cd.starts_with("attachment;") && cd.contains("filename*=UTF-8''page.html"), "{cd}");
    assert_eq!(gw.chunk_files(), 0, "the gateway peer stored nothing");

    // A range across a chunk boundary (chunks are 256 KiB).
    let r = http(port, "GET", &path, &[("Range", "bytes=262000-300000")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some("bytes 262000-300000/700000"));
    assert_eq!(r.body, &bytes[262_000..=300_000]);
    let r = http(port, "GET", &path, &[("Range", "bytes=-1000")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &bytes[699_000..]);
    let r = http(port, "GET", &path, &[("Range", "bytes=600000-")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &bytes[600_000..]);
    let r = http(port, "GET", &path, &[("Range", "bytes=700000-")]);
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */700000"));

    let h = http(port, "HEAD", &path, &[]);
    assert_eq!(h.status, 200);
    assert_eq!(h.header("content-length"), Some("700000"));
    assert!(h.body.is_empty());

    assert_eq!(http(port, "GET", &format!("/files/{}", "ab".repeat(32)), &[]).status, 404);
    assert_eq!(http(port, "GET", "/files/not-an-id", &[]).status, 400);
}

/// Bad input gets a clear error and a distinct exit code, and leaves nothing half-written.
#[test]
fn bad_input_is_refused_clearly() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let small = Peer::start("small", &tracker, root.path(), &["--max-storage", "100K"], &[]);
    let code = |o: &std::process::Output| o.status.code();
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // Unknown name or id: exit 3.
    let o = a.cli(&["get", "no such file.txt"]);
    assert_eq!(code(&o), Some(3), "{}", err(&o));
    assert!(err(&o).contains("no file named"), "{}", err(&o));
    let o = a.cli(&["get", &"cd".repeat(32)]);
    assert_eq!(code(&o), Some(3), "{}", err(&o));

    // A name from the swarm never becomes a path outside the current directory.
    let evil = root.path().join("..\\..\\evil.txt");
    std::fs::write(&evil, b"evil").unwrap();
    let id = put(&a, &evil);
    let cwd = root.path().join("cwd");
    std::fs::create_dir_all(&cwd).unwrap();
    let o = cli_in(&small.tracker, &small.dir, &["get", &id], Some(&cwd));
    assert_eq!(code(&o), Some(0), "{}", err(&o));
    let names: Vec<String> =
        std::fs::read_dir(&cwd).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, vec!["_.._evil.txt".to_string()]);
    // Existing output: exit 4, the file untouched; --force overwrites.
    std::fs::write(cwd.join("_.._evil.txt"), b"mine").unwrap();
    let o = cli_in(&small.tracker, &small.dir, &["get", &id], Some(&cwd));
    assert_eq!(code(&o), Some(4), "{}", err(&o));
    assert_eq!(std::fs::read(cwd.join("_.._evil.txt")).unwrap(), b"mine");
    let o = cli_in(&small.tracker, &small.dir, &["get", &id, "--force"], Some(&cwd));
    assert_eq!(code(&o), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read(cwd.join("_.._evil.txt")).unwrap(), b"evil");

    // Over capacity: refused with exit 6, nothing half-written.
    let big = root.path().join("big.bin");
    std::fs::write(&big, data(1024 * 1024, 5)).unwrap();
    let big_id = put(&a, &big);
    let before = small.chunk_files();
    let out = root.path().join("big.out");
    let o = small.cli(&["get", &big_id, "-o", out.to_str().unwrap()]);
    assert_eq!(code(&o), Some(6), "{}", err(&o));
    assert!(err(&o).contains("no room"), "{}", err(&o));
    assert!(!out.exists());
    assert_eq!(small.chunk_files(), before);
    assert_eq!(count_files(&small.dir.join("tmp")), 0);
    assert!(count_files(&root.path().join("cwd")) == 1, "no part files left behind");
    // ... and put refuses a file that does not fit.
    let o = small.cli(&["put", big.to_str().unwrap()]);
    assert_eq!(code(&o), Some(6), "{}", err(&o));

    // A file that does not exist.
    let o = a.cli(&["put", root.path().join("missing").to_str().unwrap()]);
    assert_eq!(code(&o), Some(1));
    assert!(err(&o).contains("cannot open"), "{}", err(&o));

    // Scrub finds a chunk corrupted on disk, drops it and tells the tracker.
    let chunk = walk(&a.dir.join("chunks")).into_iter().next().unwrap();
    std::fs::write(&chunk, b"rot").unwrap();
    let v = a.cli_json(&["scrub"]);
    assert_eq!(v["dropped"].as_array().unwrap().len(), 1, "{v}");
    assert!(!chunk.exists());

    // Tracker down: retries with backoff, says so, then exits 5.
    let dead = format!("ws://127.0.0.1:{}/ws", free_port());
    let lonely = root.path().join("lonely");
    let started = std::time::Instant::now();
    let o = cli_in(&dead, &lonely, &["get", "x"], None);
    assert_eq!(code(&o), Some(5), "{}", err(&o));
    assert!(err(&o).contains("retrying"), "{}", err(&o));
    assert!(err(&o).contains("cannot reach the tracker"), "{}", err(&o));
    assert!(started.elapsed() < Duration::from_secs(30));

    // Every subcommand has help.
    for sub in ["run", "put", "get", "search", "ls", "status", "scrub", "leave"] {
        let o = cli_in(&dead, &lonely, &[sub, "--help"], None);
        assert_eq!(code(&o), Some(0), "{sub} --help");
    }
    let o = cli_in(&dead, &lonely, &["frobnicate"], None);
    assert_eq!(code(&o), Some(2));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// When no data channel can be opened, chunks travel through the tracker relay.
#[test]
fn relay_only_peers_still_exchange_chunks() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &["--relay-only"], &[]);
    let b = Peer::start("b", &tracker, root.path(), &["--relay-only"], &[]);
    let bytes = data(1024 * 1024 + 5, 6);
    let src = root.path().join("relayed.bin");
    std::fs::write(&src, &bytes).unwrap();
    let id = put(&a, &src);
    wait_replicated(&a, "relayed.bin", 2);
    let d = Peer::start("d", &tracker, root.path(), &["--relay-only"], &[]);
    let out = root.path().join("relayed.out");
    let v = d.cli_json(&["get", &id, "-o", out.to_str().unwrap()]);
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert!(!v["chunks_from"].as_object().unwrap().is_empty());
    let st = d.status();
    assert!(st["relay_bytes_received"].as_u64().unwrap() >= bytes.len() as u64, "{st}");
    assert_eq!(st["data_channel_bytes_received"].as_u64(), Some(0), "{st}");
    let _ = b;
}

/// `pp-peer rm`: the publisher removes its file (by name, through its running peer); it
/// leaves search, and every peer holding a copy drops it. Another peer cannot remove it: a
/// clear error and exit code 7.
#[test]
fn only_the_publisher_can_rm_a_file_and_copies_are_trimmed() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(3);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let c = Peer::start("c", &tracker, root.path(), &[], &[]);
    let src = root.path().join("doomed.bin");
    std::fs::write(&src, data(700 * 1024, 7)).unwrap();
    let id = put(&a, &src);
    wait_replicated(&a, "doomed.bin", 3);
    assert!(b.chunk_files() > 0 && c.chunk_files() > 0, "replicas are held");

    let o = b.cli(&["rm", &id]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("only the peer that published"), "{stderr}");
    let e: serde_json::Value = serde_json::from_slice(&o.stdout).expect("under --json the error is JSON on stdout");
    assert_eq!(e["error"]["kind"], "not_allowed", "{e}");
    wait_replicated(&a, "doomed.bin", 3);

    let v = a.cli_json(&["rm", "doomed.bin"]);
    assert_eq!(v["removed"], id.as_str(), "{v}");
    assert_eq!(v["name"], "doomed.bin");
    let found = c.cli_json(&["search", "doomed"]);
    assert!(found["files"].as_array().unwrap().is_empty(), "{found}");
    let trimmed = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        [&a, &b, &c].iter().all(|p| p.chunk_files() == 0)
    });
    assert!(
        trimmed,
        "copies left: a {} b {} c {}\na log:\n{}\nb log:\n{}",
        a.chunk_files(),
        b.chunk_files(),
        c.chunk_files(),
        tail(&a.log_text(), 15),
        tail(&b.log_text(), 15)
    );
    assert!(a.cli_json(&["ls"])["local"].as_array().unwrap().is_empty(), "the publisher forgot its record");
    let o = a.cli(&["rm", &id]);
    assert_eq!(o.status.code(), Some(3), "gone: not found ({})", String::from_utf8_lossy(&o.stderr));
}

/// A peer that was down while its file was removed comes back with its copy: the tracker
/// tells it to let the copy go once no file has used the chunk for the orphan grace.
#[test]
fn a_copy_of_a_removed_file_held_by_a_peer_that_was_away_is_trimmed_on_return() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start_with(3, &["--orphan-grace", "1"]);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let mut c = Peer::start("c", &tracker, root.path(), &[], &[]);
    let src = root.path().join("forgotten.bin");
    std::fs::write(&src, data(600 * 1024, 8)).unwrap();
    let id = put(&a, &src);
    wait_replicated(&a, "forgotten.bin", 3);
    c.kill();
    let v = a.cli_json(&["rm", &id]);
    assert_eq!(v["removed"], id.as_str(), "{v}");
    wait_for("the peers online let their copies go", || (a.chunk_files() + b.chunk_files() == 0).then_some(()));
    assert!(c.chunk_files() > 0, "the peer that was away still has its copy on disk");
    c.restart();
    let trimmed = (0..150).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        c.chunk_files() == 0
    });
    assert!(trimmed, "the returning peer kept {} chunk files\n{}", c.chunk_files(), tail(&c.log_text(), 15));
}

/// A private tracker: a peer without the join token is refused with exit code 7, one with
/// it (flag or PP_JOIN_TOKEN) gets in.
#[test]
fn a_private_tracker_takes_only_peers_with_its_token() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start_with(2, &["--join-token", "letmein"]);
    let dir = root.path().join("p");
    let o = cli_in(&tracker.ws_url(), &dir, &["search", "x"], None);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(7), "{stderr}");
    assert!(stderr.contains("join token"), "{stderr}");
    let o = cli_in(&tracker.ws_url(), &dir, &["--join-token", "nope", "search", "x"], None);
    assert_eq!(o.status.code(), Some(7));
    let o = cli_in(&tracker.ws_url(), &dir, &["--join-token", "letmein", "search", "x"], None);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let peer = Peer::start("q", &tracker, root.path(), &[], &[("PP_JOIN_TOKEN", "letmein")]);
    assert!(peer.status()["peer_id"].is_string());
}

/// A file of more chunks than the tracker keeps loose claims of per peer (its chunks are
/// announced before the publish, when no file uses them yet): the uploader announces them
/// again once published, so every chunk has a holder and is replicated. (Before, only the
/// first `--max-loose-claims` chunks were known held: 4,096 by default, a 1 GiB file.)
#[test]
fn a_file_of_more_chunks_than_the_loose_claims_cap_is_held_whole() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start_with(2, &["--max-loose-claims", "8"]);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let _b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let bytes = data(20 * 256 * 1024 + 99, 7);
    let src = root.path().join("wide.bin");
    std::fs::write(&src, &bytes).unwrap();
    put(&a, &src);
    wait_replicated(&a, "wide.bin", 2);
}
