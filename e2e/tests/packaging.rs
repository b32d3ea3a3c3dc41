//! Deploying like a daemon: the systemd units in packaging/systemd/ pass `systemd-analyze
//! verify` (and the tracker's unit its security review), and the Debian package built by
//! scripts/package-deb.sh installs (dpkg, into a root of the test's own) and its tracker starts
//! with its index in systemd's `$STATE_DIRECTORY`, the way the unit runs it. systemd is not
//! PID 1 here, so the units are verified, not started; the binaries they start are.

use anyhow::{bail, Context};
use e2e::{bin, spawn_until, workspace_root};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The unit `name` from packaging/systemd/, written into `dir` with its `ExecStart` binary
/// (`/usr/bin/X`) pointing at the one this test built, as systemd-analyze checks that it exists.
fn unit_with_built_binary(name: &str, dir: &Path) -> anyhow::Result<PathBuf> {
    let text = std::fs::read_to_string(workspace_root().join("packaging/systemd").join(name))?;
    let text = text
        .replace("/usr/bin/pp-tracker", &bin("pp-tracker").display().to_string())
        .replace("/usr/bin/pp-peer", &bin("pp-peer").display().to_string());
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Runs systemd-analyze; fails on a non-zero exit or any complaint on stderr (verify reports
/// unknown or malformed settings there but still exits 0).
fn analyze(args: &[&str], unit: &Path, runtime_dir: &Path) -> anyhow::Result<String> {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .env("XDG_RUNTIME_DIR", runtime_dir)
        .output()
        .context("systemd-analyze (Debian's systemd package; scripts/setup.sh installs it)")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        bail!("systemd-analyze {args:?} {}: {}\n{stderr}", unit.display(), out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn the_systemd_units_verify_and_the_tracker_unit_is_hardened() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let runtime = tmp.path().join("run");
    std::fs::create_dir(&runtime)?;
    std::fs::set_permissions(&runtime, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
    let tracker = unit_with_built_binary("pp-tracker.service", tmp.path())?;
    let peer = unit_with_built_binary("pp-peer.service", tmp.path())?;
    analyze(&["verify", "--man=no"], &tracker, &runtime)?;
    analyze(&["--user", "verify", "--man=no"], &peer, &runtime)?;
    // The exposure score, 0 (locked down) to 10 (unprotected): under 2 is systemd's "OK".
    let review = analyze(&["security", "--offline=yes", "--threshold=20"], &tracker, &runtime)?;
    assert!(review.contains("OK"), "the tracker unit's exposure is not OK:\n{review}");
    Ok(())
}

#[test]
fn the_debian_package_installs_and_its_tracker_keeps_its_index_in_the_state_directory() -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let out = Command::new(workspace_root().join("scripts/package-deb.sh"))
        .arg(bin("pp-tracker").parent().expect("bin dir"))
        .arg(tmp.path().join("out"))
        .env("PP_DEB_COMPRESS", "none")
        .output()?;
    assert!(out.status.success(), "package-deb.sh failed: {}", String::from_utf8_lossy(&out.stderr));
    let deb = PathBuf::from(String::from_utf8(out.stdout)?.trim());
    let info = Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Package").output()?;
    assert_eq!(String::from_utf8_lossy(&info.stdout).trim(), "peer-pressure");

    // dpkg into a root of our own: a database of its own, no maintainer scripts to chroot into.
    let root = tmp.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "")?;
    let st = Command::new("dpkg")
        .arg(format!("--root={}", root.display()))
        .args(["--force-not-root", "--force-script-chrootless", "--force-depends", "--log=/dev/null", "-i"])
        .arg(&deb)
        .output()?;
    assert!(st.status.success(), "dpkg -i: {}", String::from_utf8_lossy(&st.stderr));
    for f in ["usr/bin/pp-tracker", "usr/bin/pp-peer", "lib/systemd/system/pp-tracker.service"] {
        assert!(root.join(f).exists(), "{f} is not installed");
    }
    for f in ["usr/lib/systemd/user/pp-peer.service", "usr/share/doc/peer-pressure/LICENSE-APACHE"] {
        assert!(root.join(f).exists(), "{f} is not installed");
    }

    // Started as the unit starts it: no --data-dir, systemd's STATE_DIRECTORY set.
    let state = tmp.path().join("state");
    std::fs::create_dir(&state)?;
    let mut cmd = Command::new(root.join("usr/bin/pp-tracker"));
    cmd.args(["--listen", "127.0.0.1:0"]).env("STATE_DIRECTORY", &state).current_dir(tmp.path());
    let (mut tracker, line) = spawn_until(cmd, "packaged-tracker", "listening on")?;
    let port: u16 = line.rsplit(':').next().and_then(|p| p.trim().parse().ok()).context("no port")?;
    let ready = e2e::http_get_json(port, "/api/stats");
    tracker.kill();
    ready.context("the installed tracker does not answer /api/stats")?;
    let kept: Vec<_> = std::fs::read_dir(&state)?.collect();
    assert!(!kept.is_empty(), "the tracker kept nothing in $STATE_DIRECTORY");
    assert!(!tmp.path().join(".pp-data").exists(), "the tracker wrote into the folder it started in");
    let peer = Command::new(root.join("usr/bin/pp-peer")).arg("--version").output()?;
    assert!(peer.status.success(), "the installed pp-peer does not run");
    Ok(())
}
