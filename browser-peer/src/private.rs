//! Private files in the page: the key of an upload, the secret of a link, and decryption of a
//! finished download. The envelope is `swarm_core::envelope` (RustCrypto AES-256-GCM and
//! PBKDF2, the same code as `pp-peer`'s, synchronous: no second WebCrypto path).
//!
//! - Upload ([`Sealer`]): a random key per file (`crypto.getRandomValues`); each chunk is
//!   encrypted before it is hashed, so the swarm stores and verifies ciphertext; the share link
//!   carries the key in its fragment (`#/file/{id}?key=…`), which no server ever sees.
//! - Download: the link's secret is kept for the file ([`Secrets`]); when the tracker locates
//!   the file, [`open`] checks the key against the sealed meta (a wrong key fails before any
//!   chunk is fetched) and gives the real name; [`assemble`] decrypts the stored ciphertext
//!   chunks into the `Blob` the page offers (typed `application/octet-stream`, as for every
//!   download). A `?pass` link asks for the passphrase with the browser's prompt.

use std::collections::HashMap;

use js_sys::{Array, Uint8Array};
use swarm_core::envelope::{FileCipher, FileKey, Kdf, PlainMeta, SealedMeta};
use swarm_core::share::{Secret, ShareLink, Target};
use swarm_core::wire::FileMeta;
use swarm_core::{FileId, Manifest};

use crate::store::ChunkStore;

/// A file id typed or linked, with the secret of a private file's link.
pub fn parse_target(input: &str) -> Result<(FileId, Option<Secret>), String> {
    match Target::parse(input) {
        Ok(Target::Link(ShareLink { file, secret, .. })) => Ok((file, secret)),
        Ok(Target::Name(_)) => Err("not a file id (64 hex digits) or share link".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// The `?key=…` part of a private upload's link (after `#/file/{id}`).
pub fn link_query(key: &FileKey) -> String {
    let link = ShareLink { web: None, file: FileId([0; 32]), secret: Some(Secret::Key(key.0)) };
    link.fragment().split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default()
}

/// Secrets of the links this page opened, by file.
#[derive(Default)]
pub struct Secrets {
    secrets: HashMap<FileId, Secret>,
    /// Opened private files: their cipher and real metadata.
    opened: HashMap<FileId, (FileCipher, PlainMeta)>,
}

impl Secrets {
    pub fn remember(&mut self, file: FileId, secret: Option<Secret>) {
        match secret {
            Some(s) => self.secrets.insert(file, s),
            None => self.secrets.remove(&file),
        };
    }

    /// A located file: `Ok(None)` for a public one, the real metadata of a private one whose
    /// link carried the right key, or why it cannot be opened.
    pub fn open(&mut self, file: FileId, meta: &FileMeta, manifest: &Manifest) -> Result<Option<PlainMeta>, String> {
        let Some(sealed) = &meta.sealed else {
            if self.secrets.remove(&file).is_some() {
                return Err("this file is public: its link needs no key".into());
            }
            return Ok(None);
        };
        let key = match self.secrets.get(&file) {
            None => return Err("this file is private: open it with its share link (…?key=…)".into()),
            Some(Secret::Key(k)) => FileKey(*k),
            Some(Secret::Passphrase) => passphrase_key(sealed)?,
        };
        let (cipher, plain) = FileCipher::open(&key, sealed, manifest).map_err(|e| e.to_string())?;
        self.opened.insert(file, (cipher, plain.clone()));
        Ok(Some(plain))
    }

    /// The cipher of an opened private file (kept for the page session: the player reads it).
    pub fn opened(&self, file: &FileId) -> Option<(FileCipher, PlainMeta)> {
        self.opened.get(file).cloned()
    }
}

/// Asks for the passphrase (the browser's prompt) and derives the key (PBKDF2, about a second).
fn passphrase_key(sealed: &SealedMeta) -> Result<FileKey, String> {
    let Kdf::Pbkdf2 { iterations, salt } = sealed.kdf().map_err(|e| e.to_string())? else {
        return Err("this file was shared with a key, not a passphrase".into());
    };
    let phrase = gloo::utils::window()
        .prompt_with_message("Passphrase for this private file")
        .ok()
        .flatten()
        .filter(|p| !p.is_empty())
        .ok_or("no passphrase given")?;
    FileKey::from_passphrase(&phrase, &salt, iterations).map_err(|e| e.to_string())
}

/// Encrypts an upload's chunks: a random key per file.
pub struct Sealer {
    pub key: FileKey,
    cipher: FileCipher,
    size: u64,
}

impl Sealer {
    pub fn new(size: u64) -> Self {
        let mut key = [0u8; 32];
        let crypto = gloo::utils::window().crypto().expect("crypto.getRandomValues is available");
        crypto.get_random_values_with_u8_array(&mut key).expect("getRandomValues works");
        let key = FileKey(key);
        Self { cipher: FileCipher::new(&key, size), key, size }
    }

    /// Encrypts plaintext chunk `index` in place.
    pub fn seal(&self, index: u64, bytes: &mut Vec<u8>) {
        self.cipher.seal_chunk(index, bytes);
    }

    /// The published metadata: name, type and size sealed, nothing in clear.
    pub fn meta(&self, name: String, mime: String) -> FileMeta {
        FileMeta::private(SealedMeta::seal(&self.key, Kdf::Random, &PlainMeta { name, mime, size: self.size }))
    }
}

/// The decrypted file as a `Blob` behind an object URL (chunks read and decrypted one by one).
pub async fn assemble(store: &dyn ChunkStore, manifest: &Manifest, cipher: &FileCipher) -> Result<String, String> {
    let parts = Array::new();
    for (i, b) in store.get_blobs(&manifest.chunks).await.map_err(|e| e.to_string())?.into_iter().enumerate() {
        let b = b.ok_or("a chunk vanished from the store")?;
        let mut bytes = crate::store::blob_bytes(&b).await.map_err(|e| e.to_string())?;
        cipher.open_chunk(i as u64, &mut bytes).map_err(|e| e.to_string())?;
        parts.push(&Uint8Array::from(&bytes[..]));
    }
    let blob = crate::store::blob_of_parts(&parts).map_err(|e| e.to_string())?;
    web_sys::Url::create_object_url_with_blob(&blob).map_err(|e| crate::rtc::js_error(&e))
}
