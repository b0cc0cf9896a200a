//! File helpers shared by the test crates that look at a store's files directly.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Copies the directory tree `from` to `to` (the files of a store as they are now: with
/// an appender open, what a crash would leave).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The end of the whole batches at the start of a segment log, by their headers'
/// lengths (FORMAT.md, "Batch": magic "TKB1", then `batch_bytes`). Not the file's size:
/// under `Durability::Always` the active segment goes on past its last batch with zeros
/// written ahead (FORMAT.md, "Segment").
pub fn batches_end(log: &[u8]) -> u64 {
    let mut pos = 0usize;
    while log.len() >= pos + 40 && &log[pos..pos + 4] == b"TKB1" {
        let n = u32::from_le_bytes(log[pos + 4..pos + 8].try_into().unwrap()) as usize;
        if n < 40 || pos + n > log.len() {
            break;
        }
        pos += n;
    }
    pos as u64
}

/// The segment logs in a topic's directory (files named `<20 digits>.log`), oldest first;
/// the newest is the active one.
pub fn segment_logs(topic_dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(topic_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "log")
                && p.file_stem()
                    .and_then(|s| s.to_str())
                    .is_some_and(|s| s.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    logs.sort();
    logs
}
