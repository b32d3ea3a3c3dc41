//! The envelope of a private file: AES-256-GCM around every chunk and around the file's name,
//! type and size, so that the swarm stores, verifies and repairs ciphertext without the key.
//!
//! Chunks are encrypted *before* they are hashed: chunk ids and the file id cover ciphertext,
//! and every holder (and the tracker's challenges) checks SHA-256 exactly as for a public file.
//! The key travels only in the share link's fragment ([`crate::share`]).
//!
//! ```text
//! file key     32 bytes: random per file (in the link as ?key=…), or PBKDF2-HMAC-SHA256
//!              (passphrase, salt, iterations) for a ?pass link; salt random per file
//! chunk i      AES-256-GCM(key, nonce_i, aad = "pp-chunk-v1", plaintext[i·P .. (i+1)·P]) ‖ tag
//!              P = PLAIN_CHUNK = CHUNK_SIZE − 16, so every ciphertext chunk but the last is
//!              exactly CHUNK_SIZE long and the manifest is an ordinary one (chunk_size CHUNK_SIZE)
//! nonce_i      index u64 | last u8 (1 on the file's last chunk, else 0) | 0 0 0   (12 bytes)
//! sealed meta  version u8 = 1
//!              kdf u8: 0 = random key, 1 = PBKDF2-HMAC-SHA256
//!              [kdf 1: iterations u32 | salt [16]]
//!              key check [16] = SHA-256("pp-key-check-v1" ‖ key)[..16]
//!              AES-256-GCM(key, nonce = 0^8 | 2 | 0 0 0, aad = the bytes above,
//!                          JSON {"name","mime","size"}) ‖ tag
//! ```
//! (integers big-endian)
//!
//! The nonce is derived from the chunk index, so any chunk decrypts on its own (streaming,
//! Range reads) and a chunk moved to another position fails. The last-chunk flag stops a file
//! from being cut short at a chunk boundary unnoticed. The meta nonce's flag byte (2) never
//! occurs in a chunk nonce. Keys are never reused across files (random, or a fresh salt), so a
//! fixed nonce schedule per key is safe.
//!
//! The key check lets a wrong key be told apart from tampered bytes (AES-GCM alone cannot:
//! both fail the tag). It reveals nothing useful: a random key is 256 bits, and a passphrase
//! guess costs a full PBKDF2 run whether checked here or against the tag.
//!
//! PBKDF2-HMAC-SHA256 with [`PBKDF2_ITERATIONS`] = 600 000 (OWASP's 2023 figure for this
//! function): it needs no new hash family (sha2 is already in every build, also in the page),
//! runs in the page without async WebCrypto, and costs about a second there. Argon2 would resist
//! GPUs better but costs memory a tab may not have; a passphrase link is for users who prefer
//! typing a phrase to passing a key, and they should pick a long one. The iteration count is
//! stored in the sealed meta, so a later version can raise it; openers refuse counts outside
//! [`MIN_ITERATIONS`]..=[`MAX_ITERATIONS`] (a hostile blob cannot make a tab spin for minutes).

use crate::content::{Manifest, CHUNK_SIZE};
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Bytes of an AES-GCM tag: what encryption adds to every chunk.
pub const TAG_BYTES: usize = 16;
/// Plaintext bytes per chunk of a private file: its ciphertext chunk is exactly [`CHUNK_SIZE`].
pub const PLAIN_CHUNK: usize = CHUNK_SIZE as usize - TAG_BYTES;
/// Largest sealed meta blob the tracker stores (a name and a type of 255 bytes fit easily).
pub const MAX_SEALED_BYTES: usize = 1024;
/// PBKDF2 iterations for a new passphrase-derived key (see the module doc).
pub const PBKDF2_ITERATIONS: u32 = 600_000;
/// Fewest PBKDF2 iterations an opener accepts.
pub const MIN_ITERATIONS: u32 = 100_000;
/// Most PBKDF2 iterations an opener accepts.
pub const MAX_ITERATIONS: u32 = 10_000_000;

const VERSION: u8 = 1;
const CHUNK_AAD: &[u8] = b"pp-chunk-v1";
const KEY_CHECK_DOMAIN: &[u8] = b"pp-key-check-v1";
const META_FLAG: u8 = 2;

/// Why a private file could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("wrong key: this link's key (or passphrase) does not open this file")]
    WrongKey,
    #[error("tampered: chunk {0} does not decrypt (its bytes or position were changed)")]
    TamperedChunk(u64),
    #[error("tampered: the file's sealed name and type do not decrypt")]
    TamperedMeta,
    #[error("truncated: chunk {index} has {len} bytes, expected {expected}")]
    TruncatedChunk { index: u64, len: usize, expected: String },
    #[error("the sealed name and type are malformed: {0}")]
    BadMeta(&'static str),
    #[error("the file's manifest does not match its sealed size")]
    SizeMismatch,
    #[error("PBKDF2 iterations {0} outside the accepted range")]
    BadIterations(u32),
}

/// A file's 32-byte key. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct FileKey(pub [u8; 32]);

impl fmt::Debug for FileKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileKey(…)")
    }
}

impl FileKey {
    /// Derives a key from a passphrase (PBKDF2-HMAC-SHA256).
    pub fn from_passphrase(passphrase: &str, salt: &[u8; 16], iterations: u32) -> Result<Self, EnvelopeError> {
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(EnvelopeError::BadIterations(iterations));
        }
        let mut key = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(passphrase.as_bytes(), salt, iterations, &mut key);
        Ok(FileKey(key))
    }

    fn check(&self) -> [u8; 16] {
        let d = Sha256::new().chain_update(KEY_CHECK_DOMAIN).chain_update(self.0).finalize();
        d[..16].try_into().expect("16 bytes")
    }
}

/// Where a file's key comes from: stored (in clear) in its sealed meta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kdf {
    /// A random key, carried whole in the link (`?key=…`).
    Random,
    /// PBKDF2-HMAC-SHA256 of a passphrase (`?pass` links).
    Pbkdf2 { iterations: u32, salt: [u8; 16] },
}

/// What the sealed meta hides: the file's real name, type and (plaintext) size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainMeta {
    pub name: String,
    pub mime: String,
    pub size: u64,
}

/// A private file's sealed meta blob (see the module doc); base64url in JSON.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedMeta(pub Vec<u8>);

impl fmt::Debug for SealedMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedMeta({} bytes)", self.0.len())
    }
}

impl Serialize for SealedMeta {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&URL_SAFE_NO_PAD.encode(&self.0))
    }
}
impl<'de> Deserialize<'de> for SealedMeta {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        URL_SAFE_NO_PAD.decode(s.as_bytes()).map(SealedMeta).map_err(serde::de::Error::custom)
    }
}

fn nonce(index: u64, flag: u8) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[8] = flag;
    Nonce::from(n)
}

/// Length of the sealed header (everything before the key check).
fn header_len(kdf: u8) -> usize {
    if kdf == 1 {
        2 + 4 + 16
    } else {
        2
    }
}

impl SealedMeta {
    /// Seals `meta` under `key`, recording how the key was made.
    pub fn seal(key: &FileKey, kdf: Kdf, meta: &PlainMeta) -> Self {
        let mut out = vec![VERSION];
        match kdf {
            Kdf::Random => out.push(0),
            Kdf::Pbkdf2 { iterations, salt } => {
                out.push(1);
                out.extend_from_slice(&iterations.to_be_bytes());
                out.extend_from_slice(&salt);
            }
        }
        out.extend_from_slice(&key.check());
        let aad = out.clone();
        let mut body = serde_json::to_vec(meta).expect("meta serializes");
        cipher(key).encrypt_in_place(&nonce(0, META_FLAG), &aad, &mut body).expect("AES-GCM encrypts");
        out.extend_from_slice(&body);
        SealedMeta(out)
    }

    /// How this file's key is made (a `?pass` link needs the salt and iterations first).
    pub fn kdf(&self) -> Result<Kdf, EnvelopeError> {
        let b = &self.0;
        if b.len() > MAX_SEALED_BYTES {
            return Err(EnvelopeError::BadMeta("longer than allowed"));
        }
        match (b.first(), b.get(1)) {
            (Some(&VERSION), Some(0)) => Ok(Kdf::Random),
            (Some(&VERSION), Some(1)) => {
                let p = b.get(2..22).ok_or(EnvelopeError::BadMeta("too short"))?;
                let iterations = u32::from_be_bytes(p[..4].try_into().expect("4 bytes"));
                Ok(Kdf::Pbkdf2 { iterations, salt: p[4..].try_into().expect("16 bytes") })
            }
            (Some(&VERSION), Some(_)) => Err(EnvelopeError::BadMeta("unknown key derivation")),
            (Some(_), _) => Err(EnvelopeError::BadMeta("unknown version")),
            _ => Err(EnvelopeError::BadMeta("too short")),
        }
    }

    /// Opens the sealed meta: [`EnvelopeError::WrongKey`] if `key` is not this file's key,
    /// [`EnvelopeError::TamperedMeta`] if the blob was altered.
    pub fn open(&self, key: &FileKey) -> Result<PlainMeta, EnvelopeError> {
        self.kdf()?;
        let h = header_len(self.0[1]);
        let check = self.0.get(h..h + 16).ok_or(EnvelopeError::BadMeta("too short"))?;
        if check != key.check() {
            return Err(EnvelopeError::WrongKey);
        }
        let (aad, body) = self.0.split_at(h + 16);
        let mut body = body.to_vec();
        cipher(key).decrypt_in_place(&nonce(0, META_FLAG), aad, &mut body).map_err(|_| EnvelopeError::TamperedMeta)?;
        serde_json::from_slice(&body).map_err(|_| EnvelopeError::BadMeta("not the expected JSON"))
    }
}

fn cipher(key: &FileKey) -> Aes256Gcm {
    Aes256Gcm::new(&Key::<Aes256Gcm>::from(key.0))
}

/// Number of chunks of a private file of `plain_size` bytes.
pub fn chunk_count(plain_size: u64) -> u64 {
    plain_size.div_ceil(PLAIN_CHUNK as u64)
}

/// Size of the ciphertext (the manifest's `size`) of a private file of `plain_size` bytes.
pub fn cipher_size(plain_size: u64) -> u64 {
    plain_size + chunk_count(plain_size) * TAG_BYTES as u64
}

/// Encrypts and decrypts one private file's chunks (the AES key schedule is computed once).
#[derive(Clone)]
pub struct FileCipher {
    aead: Aes256Gcm,
    chunks: u64,
}

impl fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileCipher({} chunks)", self.chunks)
    }
}

impl FileCipher {
    /// A cipher for a file of `plain_size` bytes under `key`.
    pub fn new(key: &FileKey, plain_size: u64) -> Self {
        Self { aead: cipher(key), chunks: chunk_count(plain_size) }
    }

    /// The cipher for a located private file: opens its meta with `key` and checks the
    /// manifest against the sealed size.
    pub fn open(key: &FileKey, sealed: &SealedMeta, manifest: &Manifest) -> Result<(Self, PlainMeta), EnvelopeError> {
        let meta = sealed.open(key)?;
        if manifest.chunk_size != CHUNK_SIZE
            || manifest.size != cipher_size(meta.size)
            || manifest.chunks.len() as u64 != chunk_count(meta.size)
        {
            return Err(EnvelopeError::SizeMismatch);
        }
        Ok((Self::new(key, meta.size), meta))
    }

    /// Number of chunks of the file.
    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    fn nonce(&self, index: u64) -> Nonce<aes_gcm::aead::consts::U12> {
        nonce(index, u8::from(index + 1 == self.chunks))
    }

    /// Encrypts plaintext chunk `index` in place (`buf` grows by [`TAG_BYTES`]). Every chunk
    /// but the last is [`PLAIN_CHUNK`] bytes.
    pub fn seal_chunk(&self, index: u64, buf: &mut Vec<u8>) {
        debug_assert!(buf.len() <= PLAIN_CHUNK && index < self.chunks);
        self.aead.encrypt_in_place(&self.nonce(index), CHUNK_AAD, buf).expect("AES-GCM encrypts");
    }

    /// Decrypts ciphertext chunk `index` in place (`buf` shrinks by [`TAG_BYTES`]).
    pub fn open_chunk(&self, index: u64, buf: &mut Vec<u8>) -> Result<(), EnvelopeError> {
        let last = index + 1 == self.chunks;
        let ok_len = if last {
            (TAG_BYTES + 1..=CHUNK_SIZE as usize).contains(&buf.len())
        } else {
            buf.len() == CHUNK_SIZE as usize
        };
        if index >= self.chunks || !ok_len {
            let expected = if index >= self.chunks {
                format!("no chunk (the file has {})", self.chunks)
            } else if last {
                format!("{}..={CHUNK_SIZE}", TAG_BYTES + 1)
            } else {
                CHUNK_SIZE.to_string()
            };
            return Err(EnvelopeError::TruncatedChunk { index, len: buf.len(), expected });
        }
        self.aead.decrypt_in_place(&self.nonce(index), CHUNK_AAD, buf).map_err(|_| EnvelopeError::TamperedChunk(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::content::ManifestBuilder;

    fn meta(size: u64) -> PlainMeta {
        PlainMeta { name: "holiday <1>.mp4".into(), mime: "video/mp4".into(), size }
    }

    /// Encrypts `plain` chunk by chunk as an uploader does; returns ciphertext chunks and manifest.
    fn encrypt(key: &FileKey, plain: &[u8]) -> (Vec<Vec<u8>>, Manifest) {
        let c = FileCipher::new(key, plain.len() as u64);
        let mut b = ManifestBuilder::new(CHUNK_SIZE);
        let chunks: Vec<Vec<u8>> = plain
            .chunks(PLAIN_CHUNK)
            .enumerate()
            .map(|(i, p)| {
                let mut buf = p.to_vec();
                c.seal_chunk(i as u64, &mut buf);
                b.push(&buf);
                buf
            })
            .collect();
        (chunks, b.finish())
    }

    fn sample(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn round_trip_with_ciphertext_chunks_of_chunk_size() {
        let key = FileKey([3; 32]);
        let plain = sample(2 * PLAIN_CHUNK + 1000);
        let (chunks, manifest) = encrypt(&key, &plain);
        assert!(manifest.validate().is_ok());
        assert_eq!(manifest.chunk_size, CHUNK_SIZE);
        assert_eq!(chunks[0].len(), CHUNK_SIZE as usize);
        assert_eq!(manifest.size, cipher_size(plain.len() as u64));
        let sealed = SealedMeta::seal(&key, Kdf::Random, &meta(plain.len() as u64));
        let (c, m) = FileCipher::open(&key, &sealed, &manifest).unwrap();
        assert_eq!(m, meta(plain.len() as u64));
        let mut out = Vec::new();
        // Random access: any chunk decrypts alone, in any order.
        for i in [2u64, 0, 1] {
            let mut buf = chunks[i as usize].clone();
            c.open_chunk(i, &mut buf).unwrap();
            let start = i as usize * PLAIN_CHUNK;
            assert_eq!(buf, plain[start..(start + PLAIN_CHUNK).min(plain.len())]);
            out.push((i, buf));
        }
        assert!(!chunks.concat().windows(64).any(|w| w == &plain[..64]), "plaintext never appears in ciphertext");
    }

    #[test]
    fn a_wrong_key_is_refused_as_wrong_key() {
        let plain = sample(5000);
        let (_, manifest) = encrypt(&FileKey([1; 32]), &plain);
        let sealed = SealedMeta::seal(&FileKey([1; 32]), Kdf::Random, &meta(5000));
        assert_eq!(sealed.open(&FileKey([2; 32])), Err(EnvelopeError::WrongKey));
        assert_eq!(FileCipher::open(&FileKey([2; 32]), &sealed, &manifest).unwrap_err(), EnvelopeError::WrongKey);
    }

    #[test]
    fn tampered_chunks_and_meta_are_refused() {
        let key = FileKey([4; 32]);
        let plain = sample(PLAIN_CHUNK + 10);
        let (chunks, manifest) = encrypt(&key, &plain);
        let sealed = SealedMeta::seal(&key, Kdf::Random, &meta(plain.len() as u64));
        let (c, _) = FileCipher::open(&key, &sealed, &manifest).unwrap();
        let mut flipped = chunks[0].clone();
        flipped[100] ^= 1;
        assert_eq!(c.open_chunk(0, &mut flipped), Err(EnvelopeError::TamperedChunk(0)));
        // A chunk moved to another position fails too (the nonce is the index).
        let mut moved = chunks[0].clone();
        moved.truncate(chunks[1].len());
        assert_eq!(c.open_chunk(1, &mut moved), Err(EnvelopeError::TamperedChunk(1)));
        let mut bad = sealed.clone();
        let last = bad.0.len() - 1;
        bad.0[last] ^= 0x80;
        assert_eq!(bad.open(&key), Err(EnvelopeError::TamperedMeta));
        // The header is authenticated too: a changed kdf byte is refused, not misread.
        let mut hdr = sealed.clone();
        hdr.0[1] = 9;
        assert!(matches!(hdr.open(&key), Err(EnvelopeError::BadMeta(_))));
    }

    #[test]
    fn truncated_chunks_are_refused() {
        let key = FileKey([5; 32]);
        let plain = sample(PLAIN_CHUNK + 10);
        let (chunks, manifest) = encrypt(&key, &plain);
        let sealed = SealedMeta::seal(&key, Kdf::Random, &meta(plain.len() as u64));
        let (c, _) = FileCipher::open(&key, &sealed, &manifest).unwrap();
        let mut short = chunks[0][..1000].to_vec();
        assert!(matches!(c.open_chunk(0, &mut short), Err(EnvelopeError::TruncatedChunk { index: 0, len: 1000, .. })));
        let mut tag_only = chunks[1][..TAG_BYTES].to_vec();
        assert!(matches!(c.open_chunk(1, &mut tag_only), Err(EnvelopeError::TruncatedChunk { index: 1, .. })));
        let mut cut = chunks[1][..chunks[1].len() - 1].to_vec();
        assert_eq!(c.open_chunk(1, &mut cut), Err(EnvelopeError::TamperedChunk(1)));
        let mut past = chunks[1].clone();
        assert!(matches!(c.open_chunk(2, &mut past), Err(EnvelopeError::TruncatedChunk { index: 2, .. })));
        // A file cut short at a chunk boundary: its new last chunk was sealed as a middle one.
        let short_file = FileCipher::new(&key, PLAIN_CHUNK as u64);
        let mut first = chunks[0].clone();
        assert_eq!(short_file.open_chunk(0, &mut first), Err(EnvelopeError::TamperedChunk(0)));
    }

    #[test]
    fn a_manifest_that_does_not_match_the_sealed_size_is_refused() {
        let key = FileKey([6; 32]);
        let (_, manifest) = encrypt(&key, &sample(3000));
        let sealed = SealedMeta::seal(&key, Kdf::Random, &meta(2999));
        assert_eq!(FileCipher::open(&key, &sealed, &manifest).unwrap_err(), EnvelopeError::SizeMismatch);
    }

    #[test]
    fn passphrase_keys_need_the_right_phrase() {
        let salt = [8; 16];
        let kdf = Kdf::Pbkdf2 { iterations: MIN_ITERATIONS, salt };
        let key = FileKey::from_passphrase("correct horse battery staple", &salt, MIN_ITERATIONS).unwrap();
        let sealed = SealedMeta::seal(&key, kdf, &meta(0));
        assert_eq!(sealed.kdf(), Ok(kdf));
        let again = FileKey::from_passphrase("correct horse battery staple", &salt, MIN_ITERATIONS).unwrap();
        assert_eq!(sealed.open(&again), Ok(meta(0)));
        let wrong = FileKey::from_passphrase("correct horse battery stapler", &salt, MIN_ITERATIONS).unwrap();
        assert_eq!(sealed.open(&wrong), Err(EnvelopeError::WrongKey));
        assert_eq!(FileKey::from_passphrase("x", &salt, 10), Err(EnvelopeError::BadIterations(10)));
        // The same phrase with another file's salt is another key.
        assert_ne!(
            FileKey::from_passphrase("p", &[1; 16], MIN_ITERATIONS),
            FileKey::from_passphrase("p", &[2; 16], MIN_ITERATIONS)
        );
    }

    #[test]
    fn sealed_meta_hides_the_name_and_fits_the_limit() {
        let key = FileKey([9; 32]);
        let m = PlainMeta { name: "n".repeat(255), mime: "m".repeat(255), size: u64::MAX };
        let sealed = SealedMeta::seal(&key, Kdf::Pbkdf2 { iterations: PBKDF2_ITERATIONS, salt: [0; 16] }, &m);
        assert!(sealed.0.len() <= MAX_SEALED_BYTES, "{}", sealed.0.len());
        assert!(!sealed.0.windows(5).any(|w| w == b"nnnnn"));
        let json = serde_json::to_string(&sealed).unwrap();
        assert_eq!(serde_json::from_str::<SealedMeta>(&json).unwrap(), sealed);
        assert!(!format!("{key:?}").contains('9'));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
        #[test]
        fn any_file_round_trips(key in proptest::prelude::any::<[u8; 32]>(), len in 0usize..(2 * PLAIN_CHUNK + 40),
                                name in "\\PC{1,40}") {
            let key = FileKey(key);
            let plain = sample(len);
            let (chunks, manifest) = encrypt(&key, &plain);
            proptest::prop_assert!(manifest.validate().is_ok());
            let m = PlainMeta { name, mime: "x/y".into(), size: len as u64 };
            let sealed = SealedMeta::seal(&key, Kdf::Random, &m);
            let (c, got) = FileCipher::open(&key, &sealed, &manifest).unwrap();
            proptest::prop_assert_eq!(got, m);
            let mut out = Vec::new();
            for (i, mut b) in chunks.into_iter().enumerate() {
                c.open_chunk(i as u64, &mut b).unwrap();
                out.extend_from_slice(&b);
            }
            proptest::prop_assert_eq!(out, plain);
        }
    }

    #[test]
    fn garbage_blobs_are_refused_without_panics() {
        let key = FileKey([1; 32]);
        for blob in [vec![], vec![1], vec![2, 0], vec![1, 1, 0, 0], vec![1, 0, 5], vec![0u8; 2000]] {
            assert!(SealedMeta(blob).open(&key).is_err());
        }
    }
}
