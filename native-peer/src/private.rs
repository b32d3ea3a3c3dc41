//! Private files on the native peer: encrypt on `put --private`, decrypt on `get <link>`.
//!
//! The envelope itself is `swarm_core::envelope` (the same code as the web app's). Here: making
//! a file key (random, or from a passphrase with a fresh salt), the share link that carries it
//! (`{web}/#/file/{id}?key=…` or `?pass`), and the download of a link with a secret: the sealed
//! meta is checked against the key *before* any chunk is fetched (a wrong key or passphrase
//! fails at once), then the verified ciphertext chunks are fetched into the store as for any
//! file (so this peer serves and repairs them like any other) and decrypted only into the
//! output file.
//!
//! Passphrases never come from a command-line value (shell history, `ps`): `PP_PASSPHRASE`, or
//! a prompt on the terminal with echo off (asked twice on `put`).

use crate::cli::{safe_file_name, PeerError};
use crate::control::{ProgressLine, ProgressSink};
use crate::node::Node;
use crate::store::StoredFile;
use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use swarm_core::envelope::{FileCipher, FileKey, Kdf, PBKDF2_ITERATIONS};
use swarm_core::share::{web_address, Secret, ShareLink};
use swarm_core::{ClientMsg, ServerMsg};

/// How `put --private` makes the file key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PutSecret {
    /// A random key, carried whole in the link.
    Random,
    /// A key derived from this passphrase (the link says `?pass`).
    Passphrase(String),
}

impl std::fmt::Debug for PutSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PutSecret::Random => "Random",
            PutSecret::Passphrase(_) => "Passphrase(…)",
        })
    }
}

/// The passphrase: `PP_PASSPHRASE`, or asked on the terminal (`what` says what for); with
/// `confirm` (a `put`: a typo would make the file unrecoverable) asked twice, and the two must
/// match. The prompt is `rpassword`'s: it reads the terminal itself (not stdin) with echo off,
/// and puts the terminal back before it passes a Ctrl-C on, so an interrupted prompt never
/// leaves the shell without echo.
pub fn read_passphrase(what: &str, confirm: bool) -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("PP_PASSPHRASE") {
        if p.is_empty() {
            bail!("PP_PASSPHRASE is empty");
        }
        return Ok(p);
    }
    use std::io::IsTerminal;
    if !std::io::stdin().is_terminal() {
        bail!("{what} needs a passphrase: set PP_PASSPHRASE (stdin is not a terminal to ask on)");
    }
    let p = rpassword::prompt_password(format!("passphrase for {what}: ")).context("cannot read the passphrase")?;
    if p.is_empty() {
        bail!("empty passphrase");
    }
    if confirm {
        let again = rpassword::prompt_password("the same passphrase again: ").context("cannot read the passphrase")?;
        if again != p {
            bail!("the two passphrases differ: nothing was shared (a typo would make the file unrecoverable)");
        }
    }
    Ok(p)
}

/// What `put` was asked for (`--private`, `--passphrase`), with the passphrase read.
pub fn put_secret(private: bool, passphrase: bool) -> anyhow::Result<Option<PutSecret>> {
    Ok(match (private, passphrase) {
        (_, true) => Some(PutSecret::Passphrase(read_passphrase("the private files", true)?)),
        (true, false) => Some(PutSecret::Random),
        (false, false) => None,
    })
}

/// The passphrase a `get` of `target` needs (a `?pass` link), if any.
pub fn get_passphrase(target: &str) -> anyhow::Result<Option<String>> {
    match swarm_core::share::Target::parse(target) {
        Ok(swarm_core::share::Target::Link(ShareLink { secret: Some(Secret::Passphrase), .. })) => {
            Ok(Some(read_passphrase("this link", false)?))
        }
        _ => Ok(None),
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    std::array::from_fn(|_| rand::random())
}

/// Encrypts, stores and publishes `path` as a private file; returns its record and share link.
pub async fn put(
    node: &Node,
    path: &Path,
    secret: &PutSecret,
    progress: impl Fn(u64, u64) + Send + 'static,
) -> anyhow::Result<(StoredFile, ShareLink)> {
    let (key, kdf, link_secret) = match secret {
        PutSecret::Random => {
            let key = FileKey(random_bytes());
            (key.clone(), Kdf::Random, Secret::Key(key.0))
        }
        PutSecret::Passphrase(p) => {
            let salt = random_bytes();
            let p = p.clone();
            let key =
                tokio::task::spawn_blocking(move || FileKey::from_passphrase(&p, &salt, PBKDF2_ITERATIONS)).await??;
            (key, Kdf::Pbkdf2 { iterations: PBKDF2_ITERATIONS, salt }, Secret::Passphrase)
        }
    };
    let stored = node.put_sealed(path, Some((key, kdf)), progress).await?;
    let link = ShareLink {
        web: Some(web_address(&node.config.tracker_url)),
        file: stored.manifest.file_id(),
        secret: Some(link_secret),
    };
    Ok((stored, link))
}

/// The key of a located private file, from the link's secret (checked against the sealed meta).
fn file_key(
    link: &ShareLink,
    passphrase: Option<&str>,
    sealed: &swarm_core::envelope::SealedMeta,
) -> anyhow::Result<FileKey> {
    match (&link.secret, sealed.kdf()?) {
        (Some(Secret::Key(k)), _) => Ok(FileKey(*k)),
        (Some(Secret::Passphrase), Kdf::Pbkdf2 { iterations, salt }) => {
            let p = passphrase.ok_or_else(|| anyhow!("this link needs a passphrase (PP_PASSPHRASE)"))?;
            Ok(FileKey::from_passphrase(p, &salt, iterations)?)
        }
        (Some(Secret::Passphrase), Kdf::Random) => bail!("this file was shared with a key, not a passphrase"),
        (None, _) => bail!("this file is private: its link carries the key (…?key=…)"),
    }
}

/// `get` of a link with a secret: locate, check the key, fetch the ciphertext into the store,
/// decrypt into `output` (default: the real name, made safe, in `dir`).
pub async fn get(
    node: &Arc<Node>,
    link: &ShareLink,
    passphrase: Option<String>,
    output: Option<PathBuf>,
    force: bool,
    dir: Option<PathBuf>,
    progress: ProgressSink,
) -> anyhow::Result<Value> {
    let started = std::time::Instant::now();
    let id = link.file;
    let answer = node.request(move |req| ClientMsg::Locate { req, file: id }).await.map_err(PeerError::from)?;
    let ServerMsg::Located { meta, manifest, .. } = answer else { bail!("unexpected answer to locate: {answer:?}") };
    anyhow::ensure!(manifest.file_id() == id, "the tracker answered with another file");
    let sealed = meta.sealed.ok_or_else(|| anyhow!("{} is a public file: its link needs no key", id.short()))?;
    let key = {
        let (link, sealed) = (link.clone(), sealed.clone());
        tokio::task::spawn_blocking(move || file_key(&link, passphrase.as_deref(), &sealed)).await??
    };
    let (cipher, plain) = FileCipher::open(&key, &sealed, &manifest)?;
    let out = output.unwrap_or_else(|| dir.unwrap_or_default().join(safe_file_name(&plain.name, &id.to_hex())));
    crate::download::check_output(&out, force)?;
    let label = format!("get {}", safe_file_name(&plain.name, &id.short()));
    let on_progress: crate::download::Progress = Arc::new(move |done, total, _| {
        progress(ProgressLine { label: label.clone(), done, total });
    });
    if crate::download::is_stdout(&out) {
        let c = cipher.clone();
        let open: crate::download::Open = Box::new(move |i, bytes| Ok(c.open_chunk(i, bytes)?));
        crate::download::fetch_to_stdout(node, id, manifest.chunks.clone(), on_progress, open).await?;
    } else {
        let stored = crate::download::fetch(node, id, on_progress).await?;
        let n2 = node.clone();
        let out2 = out.clone();
        tokio::task::spawn_blocking(move || assemble(&n2, &stored, &cipher, &out2, force)).await??;
    }
    Ok(json!({
        "id": id,
        "name": plain.name,
        "size": plain.size,
        "output": out,
        "seconds": started.elapsed().as_secs_f64(),
        "private": true,
    }))
}

/// Writes the decrypted file from the store's ciphertext chunks to `out` (temporary file, then
/// rename; nothing is left behind on a failure).
pub fn assemble(node: &Node, file: &StoredFile, cipher: &FileCipher, out: &Path, force: bool) -> anyhow::Result<()> {
    use std::io::Write;
    crate::download::check_output(out, force)?;
    anyhow::ensure!(!crate::download::is_stdout(out), "stdout is written while the file is fetched");
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.pp-part", file.manifest.file_id().short()));
    let result = (|| -> anyhow::Result<()> {
        let f = std::fs::File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut f = std::io::BufWriter::new(f);
        for (i, c) in file.manifest.chunks.iter().enumerate() {
            let mut bytes = node.store.get(c)?.ok_or_else(|| anyhow!("chunk {i} vanished from the store"))?;
            cipher.open_chunk(i as u64, &mut bytes)?;
            f.write_all(&bytes)?;
        }
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, out)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
