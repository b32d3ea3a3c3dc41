//! A native peer's stable identity: a random secret kept in its data directory. The peer id
//! the tracker knows is derived from it, so it survives restarts.

use anyhow::Context;
use std::path::Path;

pub fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("identity");
    if let Ok(s) = std::fs::read_to_string(&path) {
        let s = s.trim().to_string();
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(s);
        }
        anyhow::bail!("{} is damaged: expected 64 hex digits", path.display());
    }
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let tmp = data_dir.join("identity.tmp");
    std::fs::write(&tmp, &secret)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, &path)?;
    Ok(secret)
}
