//! Known answers for the crypto every side shares: PBKDF2-HMAC-SHA256 passphrase keys,
//! AES-256-GCM sealed metas and chunks of private files, and Ed25519 identities. The expected
//! bytes were computed with independent implementations (Python's `hashlib` and `cryptography`),
//! not with this code, so an upgrade of the RustCrypto or dalek crates that changed a byte
//! (and so stopped old private files from decrypting, or changed peer ids) fails here.
//!
//! One plain function, run natively by `swarm-core/tests/crypto_vectors.rs` and in the browser
//! (wasm32, headless Chromium) by `browser-peer/tests/store_and_js_chunk.rs`.

use swarm_core::envelope::{FileCipher, FileKey, Kdf, PlainMeta, SealedMeta};
use swarm_core::{identity, PeerId};

const PASSPHRASE: &str = "correct horse battery staple";
const ITERATIONS: u32 = 100_000;
const KEY: &str = "49d49c25f597846209f0d92e7770ab64e1c75e94b4ce6c509265ee67175d2a1e";
const SEALED: &str = "0101000186a0000102030405060708090a0b0c0d0e0fe7956089568994e24f34ce55e0b5fbf7b83f4befeff6504d75663a39a876135a3c91317cbd8da2d3077bdccf4b48096f2ea5cef774aa928a950f6ecc333f6f1cd2c66b6394e31511b8e6c332d3950ebae914b296bcb9a9dd";
const CHUNK: &str = "a1fc93ffd6327ed4934cce4e4576043976e8d7af44be985e2069363d884f33d249d157a3199f6e32695dadf673ece97f18be5bad39191c69334740cdbde515204f54c20b4b492c26ad0d2ed9ed28ca36badfce5b2aef1b430b51900d652cccbd1ebdffea7a2e3289e8fe2ea6affb1a7f35730fe806e4fc519627592760b27205fd67c2d375a62e7dabd00234044435df7a551c7fb4b8c07949e23504538254f794cf35021c6a441877e691097136a084db0379280dbf249365c69ddd61bb146c865728faed98f57101547948aa7f1697949af1a31aa452d11552dd59c89741a3fe43646ff6e27f5995c82affb1b9d24fbfd532e89f1e493248337f9b0df9c6cac8fce34c0775dab40e67705b062b50f7732e8ed0613abd0ad059a241c98a81b6434e332ef1ddb50afe23b2f2547eb951e2da4af8b0086ce06380d05a";
const PUBLIC: &str = "ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c";
const SIGNATURE: &str = "9193dc3353706f1d27586ddfe0072f3569eca797576658702ecfd141c313f751d6ceed6ff0bb574b41bb76a3d7be6d8cd729cf28e6b473804a0a2a45e9e9f902";
const PEER_ID: &str = "a1f1bb763f7c56c7c6e93f7bd1045e9e";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("vector is hex")
}

/// The sample plaintext of the chunk vector: 300 bytes, `(i * 7 + i / 251) mod 256`.
fn plain() -> Vec<u8> {
    (0..300usize).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// Panics (with the differing values) unless every known answer matches.
pub fn check_known_answers() {
    let salt: [u8; 16] = std::array::from_fn(|i| i as u8);
    let key = FileKey::from_passphrase(PASSPHRASE, &salt, ITERATIONS).expect("iterations in range");
    assert_eq!(hex::encode(key.0), KEY, "PBKDF2-HMAC-SHA256 key");

    let meta = PlainMeta { name: "holiday <1>.mp4".into(), mime: "video/mp4".into(), size: 300 };
    let sealed = SealedMeta::seal(&key, Kdf::Pbkdf2 { iterations: ITERATIONS, salt }, &meta);
    assert_eq!(hex::encode(&sealed.0), SEALED, "sealed meta");
    assert_eq!(SealedMeta(unhex(SEALED)).open(&key), Ok(meta), "the stored sealed meta opens");

    let cipher = FileCipher::new(&key, 300);
    let mut buf = plain();
    cipher.seal_chunk(0, &mut buf);
    assert_eq!(hex::encode(&buf), CHUNK, "sealed chunk");
    let mut stored = unhex(CHUNK);
    cipher.open_chunk(0, &mut stored).expect("the stored chunk opens");
    assert_eq!(stored, plain(), "the stored chunk's plaintext");

    let keypair = identity::Keypair::from_seed([7; 32]);
    assert_eq!(hex::encode(keypair.public()), PUBLIC, "Ed25519 public key");
    assert_eq!(hex::encode(keypair.sign(b"peer-pressure vector")), SIGNATURE, "Ed25519 signature");
    assert_eq!(keypair.peer_id(), PeerId(PEER_ID.into()), "peer id of the key");
}
