//! A tracker can only touch what it placed (`native-peer/src/store.rs`, per-tracker
//! accounting), with real processes: a peer holds replica copies one tracker ordered; run
//! against a second tracker (same data dir), it announces them there too, and that tracker's
//! `trim` of them (they are loose claims to it, trimmed after its orphan grace) deletes nothing.

mod common;

use common::*;

#[test]
fn a_trim_from_a_second_tracker_does_not_delete_the_first_trackers_copies() {
    let _g = serial();
    let root = test_root();
    let first = Tracker::start_with(2, &[]);
    let second = Tracker::start_with(2, &["--orphan-grace", "1"]);
    let owner = Peer::start("owner", &first, root.path(), &[], &[]);
    let mut holder = Peer::start("holder", &first, root.path(), &[], &[]);
    let src = root.path().join("placed.bin");
    std::fs::write(&src, data(600 * 1024, 21)).unwrap();
    let put = owner.cli_json(&["put", src.to_str().unwrap()]);
    assert!(put["files"][0]["id"].is_string(), "{put}");
    wait_replicated(&owner, "placed.bin", 2);
    let held = holder.chunk_files();
    assert!(held > 0, "the first tracker placed copies on the holder");
    holder.kill();

    // The same data dir against the second tracker: it hears of the copies and trims them.
    let holder2 = Peer::start("holder", &second, root.path(), &[], &[]);
    wait_for("the second tracker's trim, refused", || {
        holder2.log_text().contains("copies another tracker placed").then_some(())
    });
    assert_eq!(holder2.chunk_files(), held, "the first tracker's copies stay\n{}", tail(&holder2.log_text(), 20));
    drop(holder);
}
