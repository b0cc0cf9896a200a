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

/// The end of the whole, valid batches at the start of the segment log at `path` (the
/// engine's own walk, `segment::scan_batches`). Not the file's size: under
/// `Durability::Always` the active segment goes on past its last batch with zeros written
/// ahead (FORMAT.md, "Segment").
pub fn batches_end(path: &Path) -> u64 {
    let bytes = std::fs::read(path).unwrap();
    trailkeep::segment::scan_batches(&bytes, segment_base(path), path, true)
        .unwrap()
        .valid_bytes
}

/// The base offset a segment log's name gives.
fn segment_base(path: &Path) -> trailkeep::Offset {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap();
    trailkeep::segment::parse_file_name(name, "log").unwrap()
}

/// The segment logs in a topic's directory (files named `<20 digits>.log`), oldest first;
/// the newest is the active one.
pub fn segment_logs(topic_dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(topic_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| trailkeep::segment::parse_file_name(n, "log").is_some())
        })
        .collect();
    logs.sort();
    logs
}

/// Base offsets of the segments in a topic's directory, oldest first.
pub fn segment_bases(topic_dir: &Path) -> Vec<u64> {
    segment_logs(topic_dir).iter().map(|p| segment_base(p).0).collect()
}

/// Every segment below this base offset is durably sealed, as the topic's `sealed.offset`
/// says (0 when it is absent: nothing sealed yet).
pub fn sealed_through(topic_dir: &Path) -> u64 {
    match std::fs::read(topic_dir.join("sealed.offset")) {
        Ok(bytes) => u64::from_le_bytes(bytes[..8].try_into().unwrap()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => panic!("reading {}: {e}", topic_dir.join("sealed.offset").display()),
    }
}
