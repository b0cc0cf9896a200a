//! Under `Durability::Always` the appender writes zeros ahead of the active segment's
//! records (FORMAT.md, "Segment"), so that its fdatasyncs overwrite written blocks of a
//! file whose size does not change. Readers never take the zeros for records or damage,
//! seal and close cut them off, and recovery after a crash cuts them quietly, losing
//! nothing acknowledged.

use std::path::{Path, PathBuf};

use trailkeep::{NewRecord, Offset, Store, Topic, TopicConfig};

#[path = "support/files.rs"]
mod files;

const TOPIC: &str = "zeros";

fn value(i: u64) -> Vec<u8> {
    format!("record {i}; ").repeat((i % 7 + 1) as usize).into_bytes()
}

fn values(topic: &Topic) -> Vec<Vec<u8>> {
    topic
        .iter(topic.start_offset())
        .map(|r| r.map(|r| r.value.to_vec()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reading everything: {e}"))
}

fn expected(n: u64) -> Vec<Vec<u8>> {
    (0..n).map(value).collect()
}

fn append(topic: &Topic, range: std::ops::Range<u64>) {
    for i in range {
        topic.append(&NewRecord::new(value(i))).unwrap();
    }
}

/// The topic's segment logs, oldest first.
fn logs(root: &Path) -> Vec<PathBuf> {
    files::segment_logs(&root.join("topics").join(TOPIC))
}

/// (end of the batches, file size) of a segment log.
fn ends(log: &Path) -> (usize, usize) {
    let len = std::fs::metadata(log).unwrap().len();
    (files::batches_end(log) as usize, len as usize)
}

/// A store in `dir` (durability `Always`, the default) with the topic, after `n` appends.
fn always_topic(dir: &Path, config: TopicConfig, n: u64) -> (Store, Topic) {
    let store = Store::open(dir).unwrap();
    let topic = store.create_topic(TOPIC, config).unwrap();
    append(&topic, 0..n);
    (store, topic)
}

#[test]
fn an_always_appender_writes_zeros_ahead_and_readers_see_only_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic) = always_topic(dir.path(), TopicConfig::default(), 50);
    let active = logs(dir.path()).pop().unwrap();
    let bytes = std::fs::read(&active).unwrap();
    let end = files::batches_end(&active) as usize;
    assert!(end > 50 * 40, "50 batches end at byte {end}");
    assert!(
        bytes.len() >= 1 << 20,
        "no zeros written ahead: the file has {} bytes",
        bytes.len()
    );
    assert!(
        bytes[end..].iter().all(|&b| b == 0),
        "bytes after the last batch are not zeros"
    );

    // A second instance reads the files as a reader in another process does.
    let reader_store = Store::open(dir.path()).unwrap();
    let reader = reader_store.topic(TOPIC).unwrap();
    assert_eq!(values(&reader), expected(50));
    append(&topic, 50..60);
    reader.refresh().unwrap();
    assert_eq!(reader.end_offset(), Offset(60));
    assert_eq!(values(&reader), expected(60));

    drop(topic);
    store.close().unwrap();
    let (end, len) = ends(&active);
    assert_eq!(len, end, "close left {} bytes after the last batch", len - end);
    reader.refresh().unwrap();
    assert_eq!(values(&reader), expected(60));
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(values(&store.topic(TOPIC).unwrap()), expected(60));
}

#[test]
fn sealed_segments_of_an_always_appender_end_with_their_last_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic) = always_topic(dir.path(), TopicConfig::default().segment_bytes(4096), 300);
    let files = logs(dir.path());
    assert!(files.len() > 5, "300 records made only {} segments", files.len());
    for log in &files[..files.len() - 1] {
        let (end, len) = ends(log);
        assert_eq!(len, end, "sealed segment {} goes on past its last batch", log.display());
    }
    let (end, len) = ends(files.last().unwrap());
    assert!(len > end, "the active segment has no zeros ahead ({len} bytes)");
    assert!(len <= 4096, "zeros written past the segment size bound: {len} bytes");

    let reader_store = Store::open(dir.path()).unwrap();
    let reader = reader_store.topic(TOPIC).unwrap();
    assert_eq!(values(&reader), expected(300));
    drop(topic);
    store.close().unwrap();
    for log in logs(dir.path()) {
        let (end, len) = ends(&log);
        assert_eq!(len, end, "{} goes on past its last batch after close", log.display());
    }
    reader.refresh().unwrap();
    assert_eq!(values(&reader), expected(300));
}

#[test]
fn after_a_crash_recovery_cuts_the_zeros_quietly_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic) = always_topic(dir.path(), TopicConfig::default(), 30);
    // The files as a crash leaves them: every acknowledged record synced, zeros after.
    let crashed = tempfile::tempdir().unwrap();
    files::copy_dir(dir.path(), crashed.path());
    let torn = tempfile::tempdir().unwrap();
    files::copy_dir(dir.path(), torn.path());
    drop(topic);
    store.close().unwrap();

    let active = logs(crashed.path()).pop().unwrap();
    let (end, len) = ends(&active);
    assert!(len > end, "no zeros after the last batch to recover from");
    let store = Store::open(crashed.path()).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    let report = topic.recover().unwrap();
    assert_eq!(report.kept_bytes, end as u64, "{report:?}");
    assert_eq!(report.truncated_bytes, (len - end) as u64, "{report:?}");
    assert_eq!(report.zero_bytes, report.truncated_bytes, "{report:?}");
    assert_eq!(report.truncated_records, 0, "{report:?}");
    assert_eq!(values(&topic), expected(30));
    assert_eq!(topic.append(&NewRecord::new(value(30))).unwrap(), Offset(30));
    assert_eq!(values(&topic), expected(31));
    drop(topic);
    store.close().unwrap();

    // A batch torn while it was written over the zeros: its bytes are a torn tail, the
    // zeros after it are counted apart.
    let active = logs(torn.path()).pop().unwrap();
    let garbage = b"TKB1 a batch cut short by the crash";
    let file = std::fs::OpenOptions::new().write(true).open(&active).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, garbage, end as u64).unwrap();
    drop(file);
    let store = Store::open(torn.path()).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    let report = topic.recover().unwrap();
    assert_eq!(report.kept_bytes, end as u64, "{report:?}");
    assert_eq!(report.truncated_bytes, (len - end) as u64, "{report:?}");
    assert_eq!(report.zero_bytes, (len - end - garbage.len()) as u64, "{report:?}");
    assert_eq!(values(&topic), expected(30));
    assert_eq!(std::fs::metadata(&active).unwrap().len(), end as u64);
}
