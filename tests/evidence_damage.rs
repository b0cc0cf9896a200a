//! Damage to a topic's tamper-evidence files: `checkpoints.log` and `merkle.tree`.
//!
//! What it proves:
//! - a torn final frame of `checkpoints.log` (a crash while a checkpoint was written) is
//!   ignored by `verify` and cut off by the next writer, so later checkpoints are appended
//!   to whole frames and every later `verify` and append succeeds;
//!
//! How: each test builds a store in a temporary directory through the library (closing it
//! signs a checkpoint), edits the files on disk as a crash or a damaged disk would, reopens
//! and checks the exact outcome.

use std::path::{Path, PathBuf};

use trailkeep::{Durability, NewRecord, Store, TopicConfig, VerifyReport};

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
