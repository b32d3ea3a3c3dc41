//! Known answers for private files and identities (natively; the page runs the same in
//! `browser-peer/tests/store_and_js_chunk.rs`): see `swarm-core/tests/vectors/crypto.rs`.

mod vectors {
    pub mod crypto;
}

#[test]
fn private_files_and_identities_match_their_known_answers() {
    vectors::crypto::check_known_answers();
}
