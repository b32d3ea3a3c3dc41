//! The passphrase prompt on a real terminal (a pseudo-terminal made by util-linux `script`):
//! `put --passphrase` asks twice and refuses two different answers before anything is shared,
//! and a Ctrl-C at the prompt ends the command with the terminal's echo back on.

mod common;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A shell line run on a pseudo-terminal, its output gathered as it comes.
struct Terminal {
    child: std::process::Child,
    output: Arc<Mutex<String>>,
}

impl Terminal {
    fn run(line: &str) -> Terminal {
        let mut child = Command::new("script")
            .args(["-qec", line, "/dev/null"])
            .env_remove("PP_PASSPHRASE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux script");
        let mut out = child.stdout.take().unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let sink = output.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Terminal { child, output }
    }

    /// Waits until the output holds `text` `times` times.
    fn wait_for(&self, text: &str, times: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.output.lock().unwrap().matches(text).count() < times {
            assert!(Instant::now() < deadline, "no {text:?} on the terminal: {:?}", self.output.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_keys(&mut self, keys: &str) {
        self.child.stdin.as_mut().unwrap().write_all(keys.as_bytes()).unwrap();
        self.child.stdin.as_mut().unwrap().flush().unwrap();
    }

    /// Everything the terminal showed, once the shell line ended.
    fn finish(mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the terminal did not end: {:?}", self.output.lock().unwrap());
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(100));
        let out = self.output.lock().unwrap().clone();
        out
    }
}

/// The shell line: the command, then its exit status and whether the terminal echoes.
fn line(data: &std::path::Path, file: &std::path::Path) -> String {
    format!(
        "{} --data-dir {} put --passphrase {}; echo EXIT=$?; stty -a | tr ' ' '\\n' | grep -x -e echo -e -echo",
        common::pp_peer().display(),
        data.display(),
        file.display()
    )
}

#[test]
fn put_asks_for_the_passphrase_twice_and_refuses_two_different_ones() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("secret.txt");
    std::fs::write(&file, b"not to be shared with a typo").unwrap();
    let mut term = Terminal::run(&line(&tmp.path().join("peer"), &file));
    term.wait_for("passphrase for the private files: ", 1);
    term.type_keys("correct horse\r");
    term.wait_for("the same passphrase again: ", 1);
    term.type_keys("correct hose\r");
    let out = term.finish();
    assert!(out.contains("the two passphrases differ"), "{out}");
    assert!(!out.contains("correct h"), "the passphrase was echoed: {out}");
    assert!(out.contains("EXIT=1"), "{out}");
    assert!(out.lines().any(|l| l.trim() == "echo"), "the terminal was left without echo: {out}");
}

#[test]
fn ctrl_c_at_the_prompt_leaves_the_terminal_echoing() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("secret.txt");
    std::fs::write(&file, b"x").unwrap();
    let mut term = Terminal::run(&line(&tmp.path().join("peer"), &file));
    term.wait_for("passphrase for the private files: ", 1);
    term.type_keys("half typ");
    term.type_keys("\x03");
    let out = term.finish();
    assert!(out.contains("EXIT=130"), "Ctrl-C ends the command as an interrupt: {out}");
    assert!(out.lines().any(|l| l.trim() == "echo"), "the terminal was left without echo: {out}");
    assert!(!out.contains("half typ"), "{out}");
}
