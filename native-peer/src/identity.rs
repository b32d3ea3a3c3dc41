//! A native peer's stable identity: an Ed25519 key kept in its data directory (the file
//! `identity`), so its peer id (derived from the public key) survives restarts. The key signs
//! each hello for the tracker it dials; the file never leaves this machine.
//!
//! Formats of `identity`:
//! - `ed25519:` and 64 hex digits: the key's seed (what this version writes);
//! - 64 hex digits alone: a *legacy* secret, written by versions before identities were keys
//!   (they sent it in every hello). Its key is derived from it
//!   ([`swarm_core::identity::Keypair::from_secret`]); until the configured tracker confirms
//!   the move of the old id's files ([`Identity::migrated`]), the peer sends the secret once per
//!   session to that tracker (never to a link's tracker), then the file is rewritten as the
//!   derived seed and the old secret is gone.

use anyhow::Context;
use std::path::{Path, PathBuf};
use swarm_core::identity::Keypair;

const SEED_PREFIX: &str = "ed25519:";

/// The identity of a data directory.
#[derive(Debug, Clone)]
pub struct Identity {
    pub keys: Keypair,
    /// The legacy secret, while its owner records have not moved yet.
    pub legacy: Option<String>,
    path: PathBuf,
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Loads the data directory's identity, making one (a fresh key) if it has none.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<Identity> {
    let path = data_dir.join("identity");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim();
        if let Some(seed) = s.strip_prefix(SEED_PREFIX).filter(|h| is_hex64(h)) {
            let mut b = [0u8; 32];
            hex::decode_to_slice(seed, &mut b).expect("checked hex");
            return Ok(Identity { keys: Keypair::from_seed(b), legacy: None, path });
        }
        if is_hex64(s) {
            return Ok(Identity { keys: Keypair::from_secret(s), legacy: Some(s.to_string()), path });
        }
        anyhow::bail!("{} is damaged: expected `ed25519:` and 64 hex digits (or 64 hex digits)", path.display());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let id = Identity { keys: Keypair::from_seed(rand::random()), legacy: None, path };
    id.write()?;
    Ok(id)
}

impl Identity {
    /// The configured tracker moved the legacy id's files: the file keeps only the key now.
    pub fn migrated(&mut self) -> anyhow::Result<()> {
        if self.legacy.take().is_some() {
            self.write()?;
            tracing::info!(peer = %self.keys.peer_id(), "identity migrated to its key; the old secret is gone");
        }
        Ok(())
    }

    fn write(&self) -> anyhow::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let text = format!("{SEED_PREFIX}{}", hex::encode(self.keys.seed()));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_secret_keeps_its_key_across_the_migration() {
        let dir = std::env::temp_dir().join(format!("pp-identity-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let secret = "ab".repeat(32);
        std::fs::write(dir.join("identity"), &secret).unwrap();
        let mut id = load_or_create(&dir).unwrap();
        assert_eq!(id.legacy.as_deref(), Some(secret.as_str()));
        let before = id.keys.peer_id();
        assert_eq!(before, swarm_core::PeerId::from_secret(&secret));
        id.migrated().unwrap();
        let text = std::fs::read_to_string(dir.join("identity")).unwrap();
        assert!(!text.contains(&secret), "the old secret is gone: {text}");
        let again = load_or_create(&dir).unwrap();
        assert_eq!(again.keys.peer_id(), before);
        assert!(again.legacy.is_none());
        std::fs::write(dir.join("identity"), "nope").unwrap();
        assert!(load_or_create(&dir).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
