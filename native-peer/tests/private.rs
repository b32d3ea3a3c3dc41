//! Private files between native peers: `put --private` (and `--passphrase`), a holder that
//! keeps and repairs only ciphertext, a `get` through the link's key, and clear refusals of a
//! wrong key or passphrase. A real tracker and real `pp-peer` processes on loopback.

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
