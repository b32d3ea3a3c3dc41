//! Private files between native peers: `put --private` (and `--passphrase`), a holder that
//! keeps and repairs only ciphertext, a `get` through the link's key, and clear refusals of a
//! wrong key or passphrase; the HTTP gateway's plaintext reads of a private file with its key
//! (`/files/{id}?key=…`, whole and by range) and its refusals (no key, a wrong one). A real
//! tracker and real `pp-peer` processes on loopback.

mod common;

use common::*;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

const MARKER: &str = "TOP SECRET launch codes";

/// A text file whose every line names [`MARKER`]: any plaintext leak shows.
fn secret_text(len: usize) -> Vec<u8> {
    let mut s = String::new();
    let mut i = 0;
    while s.len() < len {
        s.push_str(&format!("{MARKER} #{i}\n"));
        i += 1;
    }
    s.truncate(len);
    s.into_bytes()
}

fn api(tracker: &Tracker, path: &str) -> (String, Value) {
    let r = http(tracker.port, "GET", path, &[]);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let v = serde_json::from_str(&text).unwrap_or(Value::Null);
    (text, v)
}

/// Every byte under `dir`, file by file.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        if e.path().is_dir() {
            out.extend(files_under(&e.path()));
        } else if let Ok(b) = std::fs::read(e.path()) {
            out.push((e.path(), b));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `pp-peer --json ARGS` on a fresh data dir, with extra environment.
fn cli_env(tracker: &Tracker, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = Command::new(pp_peer());
    cmd.arg("--tracker").arg(tracker.ws_url()).arg("--data-dir").arg(dir).arg("--json").args(args);
    cmd.env("RUST_LOG", "info").env_remove("PP_PASSPHRASE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run pp-peer")
}

fn ok_json(out: std::process::Output) -> Value {
    assert!(out.status.success(), "pp-peer failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON on stdout")
}

#[test]
fn private_files_travel_as_ciphertext_and_open_only_with_their_link() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let b = Peer::start("b", &tracker, root.path(), &[], &[]);
    let name = "launch-codes-q7.txt";
    let bytes = secret_text(700_000);
    let src = root.path().join(name);
    std::fs::write(&src, &bytes).unwrap();

    let put = a.cli_json(&["put", "--private", src.to_str().unwrap()]);
    let f = &put["files"][0];
    let id = f["id"].as_str().unwrap().to_string();
    let link = f["link"].as_str().unwrap().to_string();
    assert!(link.starts_with(&format!("http://127.0.0.1:{}/#/file/{id}?key=", tracker.port)), "{link}");

    // The tracker places a copy on b, which fetches and verifies it without the key.
    wait_for("a second verified copy", || {
        let (_, v) = api(&tracker, &format!("/api/files/{id}"));
        (v["health"]["min_copies"].as_u64()? >= 2).then_some(())
    });
    let at_rest = files_under(&b.dir);
    assert!(at_rest.iter().any(|(p, _)| p.starts_with(b.dir.join("chunks"))), "b holds chunks");
    for (path, content) in &at_rest {
        assert!(!contains(content, MARKER.as_bytes()), "plaintext at rest in {}", path.display());
        assert!(!contains(content, name.as_bytes()), "the name at rest in {}", path.display());
    }
    // The tracker's index and API hold no name, and list nothing of the file.
    let (detail, v) = api(&tracker, &format!("/api/files/{id}"));
    assert_eq!(v["name"], "", "{detail}");
    assert!(!detail.contains(name));
    for path in ["/api/files", "/api/search?q=launch", "/api/search?q="] {
        let (text, _) = api(&tracker, path);
        assert!(!text.contains(&id) && !text.contains(name), "{path} shows the private file: {text}");
    }
    assert!(b.cli_json(&["search", "launch"])["files"].as_array().unwrap().is_empty());

    // A third peer opens the link: the real name, the real bytes.
    let c_dir = root.path().join("c");
    let cwd = root.path().join("c-out");
    std::fs::create_dir_all(&cwd).unwrap();
    let out = cli_in(&tracker.ws_url(), &c_dir, &["get", &link], Some(&cwd));
    let got = ok_json(out);
    assert_eq!(got["name"], name);
    assert_eq!(std::fs::read(cwd.join(name)).unwrap(), bytes, "decrypted bytes differ");

    // The bare id, or a wrong key, is refused clearly.
    let out = cli_in(&tracker.ws_url(), &c_dir, &["get", &id, "-o", cwd.join("x").to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private"), "{}", String::from_utf8_lossy(&out.stderr));
    let key = link.rsplit("key=").next().unwrap();
    let wrong = link.replace(key, &format!("{}{}", if key.starts_with('A') { "B" } else { "A" }, &key[1..]));
    let out = cli_in(&tracker.ws_url(), &c_dir, &["get", &wrong, "-o", cwd.join("y").to_str().unwrap()], None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!cwd.join("y").exists());
}

#[test]
fn passphrase_links_need_the_passphrase() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let bytes = data(300_000, 9);
    let src = root.path().join("diary.bin");
    std::fs::write(&src, &bytes).unwrap();
    let phrase = [("PP_PASSPHRASE", "a long phrase nobody guesses")];
    let put = ok_json(cli_env(&tracker, &a.dir, &["put", "--passphrase", src.to_str().unwrap()], &phrase));
    let link = put["files"][0]["link"].as_str().unwrap().to_string();
    assert!(link.ends_with("?pass"), "{link}");

    let c = root.path().join("c");
    let out = root.path().join("diary-out.bin");
    let o = out.to_str().unwrap();
    let got = ok_json(cli_env(&tracker, &c, &["get", &link, "-o", o], &phrase));
    assert_eq!(got["name"], "diary.bin");
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    let wrong = cli_env(&tracker, &c, &["get", &link, "-o", o, "--force"], &[("PP_PASSPHRASE", "a guess")]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong key"), "{wrong:?}");
    let none = cli_env(&tracker, &c, &["get", &link, "-o", o, "--force"], &[]);
    assert!(String::from_utf8_lossy(&none.stderr).contains("PP_PASSPHRASE"), "{none:?}");
}

/// The part of a share link after `key=`.
fn key_of(link: &str) -> &str {
    link.rsplit("key=").next().unwrap()
}

/// The same key with its first character changed: well-formed, and wrong.
fn wrong_key(key: &str) -> String {
    format!("{}{}", if key.starts_with('A') { "B" } else { "A" }, &key[1..])
}

#[test]
fn gateway_serves_a_private_file_in_plaintext_only_with_its_key() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    // The gateway peer keeps nothing (no room): every chunk it serves comes from the swarm.
    let gw = Peer::start("gw", &tracker, root.path(), &["--http", "127.0.0.1:0", "--max-storage", "0"], &[]);
    let port = gw.http.expect("gateway port");
    let plain_chunk = swarm_core::envelope::PLAIN_CHUNK;
    // Three chunks, the last one short.
    let size = 2 * plain_chunk + 5_000;
    let name = "flight-plan-z3.txt";
    let bytes = secret_text(size);
    let src = root.path().join(name);
    std::fs::write(&src, &bytes).unwrap();
    let put = a.cli_json(&["put", "--private", src.to_str().unwrap()]);
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    let link = put["files"][0]["link"].as_str().unwrap().to_string();
    let key = key_of(&link);
    let path = format!("/files/{id}?key={key}");

    // The whole file: the plaintext, its real name and type, its plaintext length.
    let full = http(port, "GET", &path, &[]);
    assert_eq!(full.status, 200, "{}", String::from_utf8_lossy(&full.body));
    assert!(full.body == bytes, "the gateway served other bytes than the plaintext");
    assert_eq!(full.header("content-length"), Some(size.to_string().as_str()));
    assert_eq!(full.header("content-type"), Some("text/plain"));
    let cd = full.header("content-disposition").unwrap();
    assert!(cd.starts_with("attachment;") && cd.contains(&format!("filename*=UTF-8''{name}")), "{cd}");
    assert_eq!(full.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(full.header("cache-control"), Some("private, no-store"), "no shared cache keeps the plaintext");
    assert_eq!(gw.chunk_files(), 0, "the gateway peer stored nothing");
    let head = http(port, "HEAD", &path, &[]);
    assert_eq!((head.status, head.header("content-length")), (200, Some(size.to_string().as_str())));

    // A range across the first chunk boundary, in plaintext offsets.
    let (s, e) = (plain_chunk - 300, plain_chunk + 299);
    let r = http(port, "GET", &path, &[("Range", &format!("bytes={s}-{e}"))]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes {s}-{e}/{size}").as_str()));
    assert!(r.body == bytes[s..=e], "a range across a chunk boundary");
    // Ranges at the end: the last bytes of the short last chunk, and past the end.
    let r = http(port, "GET", &path, &[("Range", "bytes=-1000")]);
    assert_eq!(r.status, 206);
    assert_eq!(r.header("content-range"), Some(format!("bytes {}-{}/{size}", size - 1000, size - 1).as_str()));
    assert!(r.body == bytes[size - 1000..], "the end of the file");
    let r = http(port, "GET", &path, &[("Range", &format!("bytes={}-", size - 1))]);
    assert_eq!((r.status, r.body.as_slice()), (206, &bytes[size - 1..]));
    let r = http(port, "GET", &path, &[("Range", &format!("bytes={size}-"))]);
    assert_eq!(r.status, 416, "the plaintext size bounds the ranges (the ciphertext is longer)");
    assert_eq!(r.header("content-range"), Some(format!("bytes */{size}").as_str()));

    // Refusals: never ciphertext, always a message that says what to do.
    let refused = |path: &str, status: u16, says: &str| {
        let r = http(port, "GET", path, &[]);
        let text = String::from_utf8_lossy(&r.body).into_owned();
        assert_eq!(r.status, status, "{path}: {text}");
        assert!(text.contains(says), "{path} should say {says:?}: {text}");
        assert!(r.body.len() < 1000 && !contains(&r.body, MARKER.as_bytes()), "{path} served a body: {text}");
    };
    refused(&format!("/files/{id}"), 403, "?key=");
    refused(&format!("/files/{id}?key={}", wrong_key(key)), 403, "wrong key");
    refused(&format!("/files/{id}?key=not-a-key"), 400, "bad key");
    refused(&format!("/files/{id}?pass=guess"), 400, "shared with a key");
    let r = http(port, "HEAD", &format!("/files/{id}"), &[]);
    assert_eq!(r.status, 403, "HEAD without the key is refused too");

    // A public file takes no key.
    let pub_src = root.path().join("open.bin");
    std::fs::write(&pub_src, data(1000, 2)).unwrap();
    let pub_id = a.cli_json(&["put", pub_src.to_str().unwrap()])["files"][0]["id"].as_str().unwrap().to_string();
    refused(&format!("/files/{pub_id}?key={key}"), 400, "public");
    assert_eq!(http(port, "GET", &format!("/files/{pub_id}"), &[]).body, data(1000, 2));
}

#[test]
fn gateway_opens_a_passphrase_file_with_pass() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start(2);
    let a = Peer::start("a", &tracker, root.path(), &[], &[]);
    let gw = Peer::start("gw", &tracker, root.path(), &["--http", "127.0.0.1:0"], &[]);
    let port = gw.http.expect("gateway port");
    let bytes = data(300_000, 11);
    let src = root.path().join("diary.bin");
    std::fs::write(&src, &bytes).unwrap();
    let phrase = [("PP_PASSPHRASE", "a long phrase nobody guesses")];
    let put = ok_json(cli_env(&tracker, &a.dir, &["put", "--passphrase", src.to_str().unwrap()], &phrase));
    let id = put["files"][0]["id"].as_str().unwrap().to_string();

    // The passphrase as a URL query value (`+` and `%20` are spaces).
    let ok = http(port, "GET", &format!("/files/{id}?pass=a+long%20phrase+nobody+guesses"), &[("Range", "bytes=-10")]);
    assert_eq!(ok.status, 206, "{}", String::from_utf8_lossy(&ok.body));
    assert_eq!(ok.body, &bytes[bytes.len() - 10..]);
    assert!(ok.header("content-disposition").unwrap().contains("diary.bin"));
    let wrong = http(port, "GET", &format!("/files/{id}?pass=a+guess"), &[]);
    assert_eq!(wrong.status, 403);
    assert!(String::from_utf8_lossy(&wrong.body).contains("wrong key"));
    let none = http(port, "GET", &format!("/files/{id}"), &[]);
    assert_eq!(none.status, 403);
    assert!(String::from_utf8_lossy(&none.body).contains("?pass="));
}

/// A gateway read of a private file that this peer is downloading (`pp-peer get <link>` through
/// it) moves the download's playhead, as a public read does: the last bytes arrive, decrypted,
/// long before the download (slow, in order, through a rate-limited relay) would reach them.
#[test]
fn gateway_read_of_a_private_file_moves_the_running_downloads_playhead() {
    let _g = serial();
    let root = test_root();
    let tracker = Tracker::start_with(2, &["--relay-bytes-per-sec", "256KiB", "--relay-burst-bytes", "256KiB"]);
    let a = Peer::start("a", &tracker, root.path(), &["--relay-only"], &[]);
    let gw = Peer::start("gw", &tracker, root.path(), &["--relay-only", "--http", "127.0.0.1:0"], &[]);
    let port = gw.http.expect("gateway port");
    // 16 chunks: about 16 s through the relay in order.
    let size = 16 * swarm_core::envelope::PLAIN_CHUNK - 777;
    let bytes = data(size, 21);
    let src = root.path().join("film.bin");
    std::fs::write(&src, &bytes).unwrap();
    let put = a.cli_json(&["put", "--private", src.to_str().unwrap()]);
    let id = put["files"][0]["id"].as_str().unwrap().to_string();
    let link = put["files"][0]["link"].as_str().unwrap().to_string();

    let out = root.path().join("film-out.bin");
    let child = Command::new(pp_peer())
        .arg("--data-dir")
        .arg(&gw.dir)
        .args(["--json", "get", &link, "-o"])
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed if the test fails before it ends.
    let mut get = Proc { child, log: gw.dir.with_extension("get.log") };
    wait_for("the download to store a chunk", || (gw.chunk_files() > 0).then_some(()));
    let r = http(port, "GET", &format!("/files/{id}?key={}", key_of(&link)), &[("Range", "bytes=-1000")]);
    let still_running = get.child.try_wait().unwrap().is_none();
    let stored = gw.chunk_files();
    assert_eq!(r.status, 206);
    assert!(r.body == bytes[size - 1000..], "the last bytes, decrypted");
    assert!(still_running && stored < 16, "the read waited for the whole download ({stored} of 16 chunks stored)");
    let status = wait_for("the download to complete", || get.child.try_wait().unwrap());
    assert!(status.success(), "the download completes after the read");
    assert!(std::fs::read(&out).unwrap() == bytes);
}
