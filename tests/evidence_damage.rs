//! Damage to a topic's tamper-evidence files: `checkpoints.log` and `merkle.tree`.
//!
//! What it proves:
//! - a torn final frame of `checkpoints.log` (a crash while a checkpoint was written) is
//!   ignored by `verify` and cut off by the next writer, so later checkpoints are appended
//!   to whole frames and every later `verify` and append succeeds; zeros or a cut frame at
//!   the end are such a torn frame too;
//! - damage a crash cannot leave (a flipped length bit, garbage or a bad whole frame at the
//!   end, a zero length, a flipped text byte of the last frame) makes `verify` and the
//!   appending writer fail with `Error::Corrupt` naming `checkpoints.log` and the frame's
//!   byte, and nothing is cut;
//! - an inclusion proof that would use a damaged interior node of `merkle.tree` is refused
//!   (checked against the signed root before it is handed out);
//!
//! How: each test builds a store in a temporary directory through the library (closing it
//! signs a checkpoint), edits the files on disk as a crash or a damaged disk would, reopens
//! and checks the exact outcome.

use std::path::{Path, PathBuf};

use trailkeep::{Durability, Error, NewRecord, Store, TopicConfig, VerifyReport};

#[path = "support/files.rs"]
mod files;

const T: &str = "t";

fn open(dir: &Path) -> Store {
    Store::builder(dir).durability(Durability::Buffered).open().unwrap()
}

fn checkpoints_path(root: &Path) -> PathBuf {
    root.join("topics").join(T).join("checkpoints.log")
}

/// Appends `n` records to `t` (created if missing) in one session, then closes the store,
/// which signs a checkpoint.
fn append_session(root: &Path, n: u64) {
    let store = open(root);
    let topic = match store.topic(T) {
        Ok(t) => t,
        Err(_) => store.create_topic(T, TopicConfig::default()).unwrap(),
    };
    let first = topic.end_offset().0;
    for i in first..first + n {
        topic
            .append(&NewRecord::new(format!("{{\"n\":{i}}}").into_bytes()))
            .unwrap();
    }
    store.close().unwrap();
}

fn verify(root: &Path) -> trailkeep::Result<VerifyReport> {
    let store = open(root);
    let result = store.topic(T).and_then(|t| t.verify(None, &mut |_| {}));
    let _ = store.close();
    result
}

/// A store whose `checkpoints.log` holds three checkpoints (of 10, 20 and 30 records).
fn three_checkpoints() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..3 {
        append_session(dir.path(), 10);
    }
    let report = verify(dir.path()).unwrap();
    assert_eq!((report.records, report.checkpoints), (30, 3));
    dir
}

fn cut_end(path: &Path, bytes: u64) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len - bytes).unwrap();
}

#[test]
fn a_torn_final_checkpoint_frame_is_cut_by_the_next_writer() {
    for torn in [1, 7, 60] {
        let dir = three_checkpoints();
        let path = checkpoints_path(dir.path());
        cut_end(&path, torn);
        let report = verify(dir.path()).unwrap_or_else(|e| panic!("torn {torn}: verify before an append: {e}"));
        assert_eq!(report.checkpoints, 2, "torn {torn}");
        for round in 0..2 {
            append_session(dir.path(), 1);
            let report = verify(dir.path())
                .unwrap_or_else(|e| panic!("torn {torn}, round {round}: verify after an append: {e}"));
            assert_eq!(report.records, 31 + round, "torn {torn}");
        }
        // Every frame is whole: the torn bytes were cut, not buried behind the new frames.
        let bytes = std::fs::read(&path).unwrap();
        let mut pos = 0;
        let mut frames = 0;
        while pos < bytes.len() {
            let len = u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
            let crc = u32::from_le_bytes(bytes[pos + 4..pos + 8].try_into().unwrap());
            assert_eq!(
                crc32fast::hash(&bytes[pos + 8..pos + 8 + len]),
                crc,
                "torn {torn}: frame at {pos}"
            );
            pos += 8 + len;
            frames += 1;
        }
        let report = verify(dir.path()).unwrap();
        assert_eq!(
            frames, report.checkpoints,
            "torn {torn}: frames on disk and checkpoints verified"
        );
    }
}

/// `verify` on a copy of `template` whose `checkpoints.log` was changed by `damage`: the
/// exact error, and the appending writer (reopen, append, close) fails too instead of
/// writing behind the damage.
fn damaged_checkpoints(template: &Path, what: &str, byte: u64, damage: impl Fn(&mut Vec<u8>)) {
    let work = tempfile::tempdir().unwrap();
    files::copy_dir(template, work.path());
    let path = checkpoints_path(work.path());
    let mut bytes = std::fs::read(&path).unwrap();
    damage(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let expect_corrupt = |result: &dyn std::fmt::Debug, err: Option<&Error>, who: &str| match err {
        Some(Error::Corrupt { file, byte_pos, .. }) => {
            assert_eq!(file, &path, "{what}, {who}: {result:?}");
            assert_eq!(*byte_pos, byte, "{what}, {who}: {result:?}");
        }
        _ => panic!("{what}, {who}: expected a corrupt checkpoints.log at byte {byte}, got {result:?}"),
    };
    let result = verify(work.path());
    expect_corrupt(&result, result.as_ref().err(), "verify");
    let store = open(work.path());
    let appended = store
        .topic(T)
        .and_then(|t| t.append(&NewRecord::new(b"after".to_vec())));
    expect_corrupt(&appended, appended.as_ref().err(), "the writer");
    let _ = store.close();
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "{what}: the file was changed");
}

/// Where each frame of a whole checkpoints file starts.
fn frame_starts(bytes: &[u8]) -> Vec<u64> {
    let mut starts = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        starts.push(pos as u64);
        pos += 8 + u32::from_le_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
    }
    starts
}

#[test]
fn damage_that_a_crash_cannot_leave_is_corruption_not_a_torn_tail() {
    let template = three_checkpoints();
    let bytes = std::fs::read(checkpoints_path(template.path())).unwrap();
    let first = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as u64;
    let end = bytes.len() as u64;
    let t = template.path();
    damaged_checkpoints(t, "bit 4 of the first length byte 1 flipped", 0, |b| b[1] ^= 0x10);
    damaged_checkpoints(t, "bit 0 of the first length byte 0 flipped", 0, |b| b[0] ^= 0x01);
    damaged_checkpoints(t, "top length byte of the second frame set", first, |b| {
        b[first as usize + 3] = 0x40
    });
    damaged_checkpoints(t, "second frame's length zeroed", first, |b| {
        b[first as usize..first as usize + 4].copy_from_slice(&[0; 4])
    });
    damaged_checkpoints(t, "text garbage appended", end, |b| {
        b.extend_from_slice(b"garbage at the end\n")
    });
    damaged_checkpoints(t, "a short length appended, then binary", end, |b| {
        b.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
    });
    damaged_checkpoints(t, "a whole frame with a bad crc appended", end, |b| {
        b.extend_from_slice(&[3, 0, 0, 0, 9, 9, 9, 9, b'a', b'b', b'c']);
    });
    let last = frame_starts(&bytes).pop().unwrap();
    damaged_checkpoints(t, "a text byte of the last frame flipped", last, |b| {
        let n = b.len();
        b[n - 20] ^= 0x01;
    });
}

/// A change to a file's bytes.
type Damage = Box<dyn Fn(&mut Vec<u8>)>;

#[test]
fn zeros_and_cut_frames_at_the_end_are_a_torn_tail() {
    let template = three_checkpoints();
    let path = checkpoints_path(template.path());
    let bytes = std::fs::read(&path).unwrap();
    let cases: [(&str, Damage); 3] = [
        ("zeros appended", Box::new(|b| b.extend_from_slice(&[0; 300]))),
        (
            "last frame's text zeroed from its middle",
            Box::new(|b| {
                let n = b.len();
                b[n - 40..].fill(0);
            }),
        ),
        (
            "a frame header and half a note appended",
            Box::new(|b| {
                let text = b"trailkeep/0123/t\n12\n";
                b.extend_from_slice(&300u32.to_le_bytes());
                b.extend_from_slice(&[7, 7, 7, 7]);
                b.extend_from_slice(text);
            }),
        ),
    ];
    for (what, damage) in cases {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(template.path(), work.path());
        let path = checkpoints_path(work.path());
        let mut damaged = bytes.clone();
        damage(&mut damaged);
        std::fs::write(&path, &damaged).unwrap();
        let report = verify(work.path()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(report.checkpoints >= 2, "{what}: {report:?}");
        append_session(work.path(), 1);
        verify(work.path()).unwrap_or_else(|e| panic!("{what}: after an append: {e}"));
    }
}

/// Post-order position of the root of the perfect subtree of `2^level` leaves that ends
/// with leaf `last_leaf` (FORMAT.md, "Tree file"): `E(last_leaf) + level`.
fn node_position(level: u32, last_leaf: u64) -> u64 {
    2 * last_leaf - u64::from(last_leaf.count_ones()) + u64::from(level)
}

/// A damaged interior node of the tree file (not a peak, so opening the tree does not
/// notice it): `verify` names it, and `prove` checks each proof against the signed root
/// before handing it out, so the proofs that use the node are refused and the others
/// still given.
#[test]
fn a_damaged_tree_node_fails_verify_and_the_proofs_through_it() {
    let dir = tempfile::tempdir().unwrap();
    append_session(dir.path(), 300);
    // The node over leaves 76..80 (level 2): inside the subtree of leaves 0..256, and the
    // sibling on the inclusion paths of leaves 72..76.
    let position = node_position(2, 79);
    assert_eq!(position, 155);
    let path = dir.path().join("topics").join(T).join("merkle").join("merkle.tree");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[16 + 32 * position as usize + 8] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();

    match verify(dir.path()) {
        Err(Error::Tamper { reason, .. }) => assert!(
            reason.contains("merkle.tree") && reason.contains("node hash 155 (level 2, leaves 76..80)"),
            "{reason}"
        ),
        other => panic!("verify: expected a tamper error naming node 155, got {other:?}"),
    }
    let store = open(dir.path());
    let topic = store.topic(T).unwrap();
    for offset in 72..76 {
        match topic.prove(trailkeep::Offset(offset)) {
            Err(Error::Tamper { reason, .. }) => assert!(reason.contains("tree file is damaged"), "{reason}"),
            other => panic!("prove {offset}: expected a tamper error, got {other:?}"),
        }
    }
    for offset in [0, 71, 76, 200, 299] {
        topic.prove(trailkeep::Offset(offset)).unwrap();
    }
    let _ = store.close();
}
