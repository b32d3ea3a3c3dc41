//! A legacy identity's one-time migration (see [`swarm_core::identity`]): a peer whose key
//! derives from its old secret proves, in its first `hello` to its configured tracker, that it
//! held that secret (which this tracker knew: it is what old peers sent); the files the old
//! peer id owned move to the new id, in memory and durably in the index, and the index records
//! that the old id moved, so the same secret (leaked to a host an old peer once visited) can
//! never move them again to anyone else.

use super::blocking;
use crate::app::AppState;
use swarm_core::swarm::policy::check_secret;
use swarm_core::swarm::FileRecord;
use swarm_core::wire::ErrorCode;
use swarm_core::PeerId;

/// Why a migration was refused (the peer is welcomed all the same, under its new id).
#[derive(Debug, thiserror::Error)]
pub(super) enum MigrateError {
    #[error("migrate: the old secret must be 32 to 128 hex digits")]
    BadSecret,
    #[error("migrate: the identity {old} moved to another key already")]
    Taken { old: PeerId },
    #[error("migrate: a tracker cluster does not move owner records yet")]
    Cluster,
    #[error("migrate: cannot store the move: {0}")]
    Store(String),
}

impl MigrateError {
    pub(super) fn code(&self) -> ErrorCode {
        match self {
            MigrateError::BadSecret | MigrateError::Taken { .. } => ErrorCode::BadSecret,
            MigrateError::Cluster | MigrateError::Store(_) => ErrorCode::Unavailable,
        }
    }
}

/// Moves the files `PeerId::legacy_from_secret(secret)` owns to `new`; how many moved (0 when
/// none, or when this move was made before).
pub(super) fn migrate(state: &AppState, secret: &str, new: &PeerId) -> Result<u32, MigrateError> {
    check_secret(secret).map_err(|_| MigrateError::BadSecret)?;
    let old = PeerId::legacy_from_secret(secret);
    if &old == new {
        return Ok(0);
    }
    if state.cluster.is_some() {
        return Err(MigrateError::Cluster);
    }
    if let Some(index) = &state.index {
        match index.migrated_to(&old).map_err(|e| MigrateError::Store(e.to_string()))? {
            Some(to) if &to == new => return Ok(0),
            Some(_) => return Err(MigrateError::Taken { old }),
            None => {}
        }
    }
    let moved: Vec<FileRecord> = state.core().migrate_owner(&old, new);
    if let Some(index) = &state.index {
        blocking(|| index.record_migration(&moved, &old, new)).map_err(|e| MigrateError::Store(e.to_string()))?;
    }
    tracing::info!(%old, %new, files = moved.len(), "legacy identity migrated");
    Ok(moved.len() as u32)
}
