//! The durable file index: every published file's manifest and metadata in an embedded redb
//! database under the tracker's data dir. redb's transactions are ACID and crash-safe, so a
//! restart (or a kill -9 mid-write) loses no committed file. Chunk locations are not stored:
//! they are soft state that peers re-announce when they reconnect.
//!
//! Beside the files, the verification state of each chunk (its origin and its pool of
//! challenge nonces, [`TrustRecord`]) is kept in a second table, written in batches (see
//! `swarm_core::swarm::trust`): after a restart, whoever claims a chunk first does not become
//! its origin.
//!
//! A third table records legacy identities that moved to a key (old peer id → new peer id,
//! see `tracker/src/transport/ws/migrate.rs`), written in the transaction that moves their files.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::path::Path;
use swarm_core::swarm::trust::TrustRecord;
use swarm_core::swarm::FileRecord;
use swarm_core::wire::FileMeta;
use swarm_core::{ChunkId, FileId, Manifest, PeerId};

const FILES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("files_v1");
/// Chunk id → JSON [`TrustRecord`].
const TRUST: TableDefinition<&[u8], &[u8]> = TableDefinition::new("trust_v1");
/// Legacy peer id → the peer id of the key it moved to.
const MIGRATED: TableDefinition<&str, &str> = TableDefinition::new("migrated_v1");

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// The file cannot be opened as this tracker's index (damaged, written by a redb whose file
    /// format this one does not read, or its tables of another type): it is left as it is.
    #[error("cannot open the file index {path} (the file is left untouched)")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: redb::Error,
    },
    #[error("index database: {0}")]
    Db(#[from] redb::Error),
    #[error("index record is damaged: {0}")]
    Decode(#[from] serde_json::Error),
}

#[derive(Serialize, Deserialize)]
struct Stored {
    manifest: Manifest,
    meta: FileMeta,
    published_at_ms: u64,
    /// Absent in records written before owners were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    owner: Option<PeerId>,
}

/// A file record as stored (here, and in a cluster's KV bucket).
pub(crate) fn encode_record(r: &FileRecord) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Stored {
        manifest: r.manifest.clone(),
        meta: r.meta.clone(),
        published_at_ms: r.published_at_ms,
        owner: r.owner.clone(),
    })
}

/// A stored file record, if it is whole and its manifest matches `id`.
pub(crate) fn decode_record(id: &[u8], bytes: &[u8]) -> Option<FileRecord> {
    match serde_json::from_slice::<Stored>(bytes) {
        Ok(s) if s.manifest.file_id().0.as_slice() == id => {
            Some(FileRecord { manifest: s.manifest, meta: s.meta, published_at_ms: s.published_at_ms, owner: s.owner })
        }
        _ => None,
    }
}

pub struct FileIndex {
    db: Database,
}

impl FileIndex {
    /// Opens (or creates) `dir/index.redb`. Files written by redb 4 open as they are: redb 5
    /// kept the file format (version 3) and the encodings of the types used here (`&[u8]`,
    /// `&str`; only `Option`s of strings, bools and chars changed), see
    /// tracker/tests/upgrade.rs.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let path = dir.join("index.redb");
        let open = || -> Result<Database, redb::Error> {
            std::fs::create_dir_all(dir)?;
            let db = Database::create(&path)?;
            let tx = db.begin_write()?;
            tx.open_table(FILES)?;
            tx.open_table(TRUST)?;
            tx.open_table(MIGRATED)?;
            tx.commit()?;
            Ok(db)
        };
        let db = open().map_err(|source| IndexError::Open { path: path.clone(), source })?;
        Ok(Self { db })
    }

    /// Every file in the index (damaged records are skipped with a warning).
    pub fn load(&self) -> Result<Vec<FileRecord>, IndexError> {
        Ok(self.load_rows()?)
    }

    fn load_rows(&self) -> Result<Vec<FileRecord>, redb::Error> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(FILES)?;
        let mut out = Vec::new();
        for row in table.iter()? {
            let (k, v) = row?;
            match decode_record(k.value(), v.value()) {
                Some(r) => out.push(r),
                None => tracing::warn!("skipping a damaged index record"),
            }
        }
        Ok(out)
    }

    /// Stores files durably (one transaction).
    pub fn insert(&self, records: &[FileRecord]) -> Result<(), IndexError> {
        let rows = records
            .iter()
            .map(|r| Ok((r.manifest.file_id().0, encode_record(r)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        Ok(self.insert_rows(&rows)?)
    }

    fn insert_rows(&self, rows: &[([u8; 32], Vec<u8>)]) -> Result<(), redb::Error> {
        let tx = self.db.begin_write()?;
        {
            let mut table = tx.open_table(FILES)?;
            for (key, value) in rows {
                table.insert(key.as_slice(), value.as_slice())?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes files (one transaction); ids not stored are ignored.
    pub fn remove(&self, ids: &[FileId]) -> Result<(), IndexError> {
        let tx = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut table = tx.open_table(FILES).map_err(redb::Error::from)?;
            for id in ids {
                table.remove(id.0.as_slice()).map_err(redb::Error::from)?;
            }
        }
        tx.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// The peer id a legacy identity moved to, if it did.
    pub fn migrated_to(&self, old: &PeerId) -> Result<Option<PeerId>, IndexError> {
        let tx = self.db.begin_read().map_err(redb::Error::from)?;
        let table = tx.open_table(MIGRATED).map_err(redb::Error::from)?;
        let to = table.get(old.0.as_str()).map_err(redb::Error::from)?;
        Ok(to.map(|v| PeerId(v.value().to_string())))
    }

    /// Stores files whose owner moved from `old` to `new`, and the move (one transaction).
    pub fn record_migration(&self, records: &[FileRecord], old: &PeerId, new: &PeerId) -> Result<(), IndexError> {
        let rows = records
            .iter()
            .map(|r| Ok((r.manifest.file_id().0, encode_record(r)?)))
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let tx = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut table = tx.open_table(FILES).map_err(redb::Error::from)?;
            for (key, value) in &rows {
                table.insert(key.as_slice(), value.as_slice()).map_err(redb::Error::from)?;
            }
            let mut moved = tx.open_table(MIGRATED).map_err(redb::Error::from)?;
            moved.insert(old.0.as_str(), new.0.as_str()).map_err(redb::Error::from)?;
        }
        tx.commit().map_err(redb::Error::from)?;
        Ok(())
    }

    /// Every chunk's kept verification state (damaged records are skipped with a warning).
    pub fn load_trust(&self) -> Result<Vec<(ChunkId, TrustRecord)>, IndexError> {
        let tx = self.db.begin_read().map_err(redb::Error::from)?;
        let table = tx.open_table(TRUST).map_err(redb::Error::from)?;
        let mut out = Vec::new();
        for row in table.iter().map_err(redb::Error::from)? {
            let (k, v) = row.map_err(redb::Error::from)?;
            let key: Result<[u8; 32], _> = k.value().try_into();
            match (key, serde_json::from_slice::<TrustRecord>(v.value())) {
                (Ok(key), Ok(record)) => out.push((ChunkId(key), record)),
                _ => tracing::warn!("skipping a damaged trust record"),
            }
        }
        Ok(out)
    }

    /// Writes verification changes (one transaction): `None` deletes a chunk's record.
    pub fn save_trust(&self, changes: &[(ChunkId, Option<TrustRecord>)]) -> Result<(), IndexError> {
        let tx = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut table = tx.open_table(TRUST).map_err(redb::Error::from)?;
            for (chunk, record) in changes {
                match record {
                    Some(r) => {
                        table
                            .insert(chunk.0.as_slice(), serde_json::to_vec(r)?.as_slice())
                            .map_err(redb::Error::from)?;
                    }
                    None => {
                        table.remove(chunk.0.as_slice()).map_err(redb::Error::from)?;
                    }
                }
            }
        }
        tx.commit().map_err(redb::Error::from)?;
        Ok(())
    }
}
