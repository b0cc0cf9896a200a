//! Corruption tests: damaged bytes on disk end in a reported truncation (torn tail of the
//! active segment) or a clear `Err` naming the file and byte (anything else), never a panic,
//! never wrong data, never silent loss in the middle of the log.
//!
//! Each test builds a small store once (a template), then for every damage copies it to a
//! fresh directory, damages the copy (truncation at every byte of the last batch, zeros or
//! garbage appended, bit flips in active and sealed segments, damaged or missing index files,
//! a missing or truncated sealed segment), opens it and compares everything it can read with
//! the records appended to the template.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use trailkeep::{Compression, Durability, Error, NewRecord, Offset, Record, Store, Topic, TopicConfig};

#[path = "support/files.rs"]
mod files;

const TOPIC: &str = "t";

struct Template {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    records: Vec<Record>,
    /// Batches in append order: (segment base, start byte, end byte, first offset, count).
    batches: Vec<(u64, u64, u64, u64, u64)>,
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("{{\"event\":{i},\"pad\":\"").into_bytes();
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..(i * 37 % 180) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(b'a' + (x % 26) as u8);
    }
    v.extend_from_slice(b"\"}");
    v
}

fn new_record(i: u64) -> NewRecord {
    let r = NewRecord::new(value(i)).with_key(format!("k{}", i % 5));
    if i.is_multiple_of(3) {
        r.with_header("trace", format!("{i:x}"))
            .with_event_time_us(i as i64 * 1000)
    } else {
        r
    }
}

fn topic_dir(root: &Path) -> PathBuf {
    root.join("topics").join(TOPIC)
}

fn log_path(root: &Path, base: u64) -> PathBuf {
    topic_dir(root).join(format!("{base:020}.log"))
}

/// Segment logs: (base offset, size), oldest first.
fn logs(root: &Path) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = std::fs::read_dir(topic_dir(root))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            Some((name.strip_suffix(".log")?.parse().ok()?, e.metadata().unwrap().len()))
        })
        .collect();
    v.sort_unstable();
    v
}

/// Appends `n` records (every fourth call a batch of three) and closes the store.
fn build(segment_bytes: u64, compression: Compression, n: u64) -> Template {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let store = Store::builder(&root).durability(Durability::Buffered).open().unwrap();
    let topic = store
        .create_topic(
            TOPIC,
            TopicConfig::default()
                .segment_bytes(segment_bytes)
                .compression(compression),
        )
        .unwrap();
    let mut batches = Vec::new();
    let mut i = 0;
    while i < n {
        let count = if i % 4 == 3 { 3.min(n - i) } else { 1 };
        let before = logs(&root);
        let recs: Vec<NewRecord> = (i..i + count).map(new_record).collect();
        let appended = topic.append_batch(&recs).unwrap();
        assert_eq!(appended.first, Offset(i));
        let after = logs(&root);
        let &(base, end) = after.last().unwrap();
        let start = match before.last() {
            Some(&(b, l)) if b == base => l,
            _ => 0,
        };
        batches.push((base, start, end, i, count));
        i += count;
    }
    let records: Vec<Record> = topic.iter(Offset(0)).collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len() as u64, n);
    store.close().unwrap();
    Template {
        _tmp: tmp,
        root,
        records,
        batches,
    }
}

impl Template {
    /// A fresh copy of the template store.
    fn copy(&self) -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        files::copy_dir(&self.root, tmp.path());
        tmp
    }

    fn segments(&self) -> Vec<(u64, u64)> {
        logs(&self.root)
    }
}

fn open(root: &Path) -> (Store, Topic) {
    let store = Store::builder(root).durability(Durability::Buffered).open().unwrap();
    let topic = store.topic(TOPIC).unwrap();
    (store, topic)
}

fn read_all(topic: &Topic) -> Vec<Record> {
    topic
        .iter(topic.start_offset())
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("reading everything: {e}"))
}

/// Every record readable, individually and by iteration, and seek_time right for every
/// timestamp held (and its neighbours).
fn check_all(topic: &Topic, want: &[Record], label: &str) {
    assert_eq!(topic.end_offset(), Offset(want.len() as u64), "{label}: end offset");
    let got = read_all(topic);
    assert!(got == want, "{label}: iteration differs from what was appended");
    for r in want.iter().step_by(3) {
        assert_eq!(&topic.read(r.offset).unwrap(), r, "{label}: read({})", r.offset);
    }
    let mut probes = vec![0, u64::MAX];
    for r in want {
        probes.extend([r.timestamp_us - 1, r.timestamp_us, r.timestamp_us + 1]);
    }
    probes.sort_unstable();
    probes.dedup();
    for t in probes {
        let expected = want.iter().find(|r| r.timestamp_us >= t).map(|r| r.offset);
        assert_eq!(topic.seek_time(t).unwrap(), expected, "{label}: seek_time({t})");
    }
}

/// Removes a segment's index files, as a crash leaves them for the tail recovery looks
/// at: a framed pair is written only after the log's sync (close, seal) and vouches for
/// its size, so a torn tail never has one.
fn drop_index_files(log: &Path) {
    for ext in ["index", "timeindex"] {
        std::fs::remove_file(log.with_extension(ext)).unwrap();
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap();
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn assert_corrupt_in(err: &Error, file: &Path, range: std::ops::Range<u64>, label: &str) {
    match err {
        Error::Corrupt { file: f, byte_pos, .. } => {
            assert_eq!(f, file, "{label}: error names the wrong file: {err}");
            assert!(
                range.contains(byte_pos),
                "{label}: byte {byte_pos} outside {range:?}: {err}"
            );
        }
        other => panic!("{label}: expected Corrupt in {}, got {other:?}", file.display()),
    }
}

#[test]
fn torn_tail_at_every_byte_of_the_last_batch() {
    for compression in [Compression::None, Compression::Zstd] {
        // The last call appends a batch of three records.
        let t = build(1 << 20, compression, 14);
        let &(base, start, end, first, count) = t.batches.last().unwrap();
        assert_eq!((base, count), (0, 3));
        let path = log_path(&t.root, 0);
        let original = std::fs::read(&path).unwrap();
        assert_eq!(original.len() as u64, end);
        for cut in start..end {
            let label = format!("{compression:?} cut at {cut} of batch [{start}, {end})");
            let copy = t.copy();
            let path = log_path(copy.path(), 0);
            drop_index_files(&path);
            write(&path, &original[..cut as usize]);
            let (store, topic) = open(copy.path());
            // A reader sees the intact records only.
            check_all(&topic, &t.records[..first as usize], &label);
            let report = topic.recover().unwrap();
            assert_eq!(report.segment, path, "{label}");
            assert_eq!(report.kept_bytes, start, "{label}");
            assert_eq!(report.truncated_bytes, cut - start, "{label}");
            let announced = if cut - start >= 28 { count } else { 0 };
            assert_eq!(report.truncated_records, announced, "{label}: {report:?}");
            assert_eq!(report.end_offset, Offset(first), "{label}");
            assert_eq!(
                std::fs::metadata(&path).unwrap().len(),
                start,
                "{label}: file not truncated"
            );
            check_all(&topic, &t.records[..first as usize], &label);
            // Appending continues at the first lost offset.
            assert_eq!(
                topic.append(&NewRecord::new("after")).unwrap(),
                Offset(first),
                "{label}"
            );
            assert_eq!(topic.read(Offset(first)).unwrap().value, b"after", "{label}");
            store.close().unwrap();
            let (_store, topic) = open(copy.path());
            assert_eq!(topic.end_offset(), Offset(first + 1), "{label}: after reopen");
            assert!(
                read_all(&topic)[..first as usize] == t.records[..first as usize],
                "{label}"
            );
        }
    }
}

#[test]
fn zeros_or_garbage_after_the_last_batch_are_truncated_and_reported() {
    let t = build(1 << 20, Compression::None, 20);
    let end = t.segments()[0].1;
    let mut magic_junk = b"TKB1".to_vec();
    magic_junk.extend(noise(100, 3));
    let tails: Vec<(&str, Vec<u8>)> = vec![
        ("1 zero", vec![0]),
        ("39 zeros", vec![0; 39]),
        ("40 zeros", vec![0; 40]),
        ("4096 zeros", vec![0; 4096]),
        ("5 bytes of noise", noise(5, 1)),
        ("3000 bytes of noise", noise(3000, 2)),
        ("magic then noise", magic_junk),
        ("text", b"hello, this is not a batch\n".to_vec()),
    ];
    for (label, tail) in tails {
        let copy = t.copy();
        let path = log_path(copy.path(), 0);
        append_bytes(&path, &tail);
        let (_store, topic) = open(copy.path());
        check_all(&topic, &t.records, label);
        let report = topic.recover().unwrap();
        assert_eq!(report.kept_bytes, end, "{label}");
        assert_eq!(report.truncated_bytes, tail.len() as u64, "{label}: {report:?}");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), end, "{label}");
        assert_eq!(topic.append(&NewRecord::new("next")).unwrap(), Offset(20), "{label}");
        check_all(&topic, &read_all(&topic), label);
        assert!(read_all(&topic)[..20] == t.records[..], "{label}");
    }
}

#[test]
fn bit_flip_in_the_middle_of_the_active_segment_is_an_error_not_a_truncation() {
    for compression in [Compression::None, Compression::Zstd] {
        let t = build(1 << 20, compression, 16);
        // A batch with valid batches after it: every byte of it, one bit each.
        let &(_, start, end, first, count) = &t.batches[t.batches.len() - 3];
        let original = std::fs::read(log_path(&t.root, 0)).unwrap();
        for pos in start..end {
            let label = format!("{compression:?} flip at byte {pos} of batch [{start}, {end})");
            let copy = t.copy();
            let path = log_path(copy.path(), 0);
            let mut bytes = original.clone();
            bytes[pos as usize] ^= 1 << (pos % 8);
            write(&path, &bytes);
            // A reader never gets wrong data, nor a silently shorter log: either opening
            // the topic fails naming the damage, or it sees every record and the damaged
            // batch's records are errors.
            let store = Store::open(copy.path()).unwrap();
            let topic = match store.topic(TOPIC) {
                Err(e) => {
                    assert_corrupt_in(&e, &path, start..end, &label);
                    assert_eq!(
                        std::fs::read(&path).unwrap(),
                        bytes,
                        "{label}: the damaged file was changed"
                    );
                    continue;
                }
                Ok(topic) => topic,
            };
            assert_eq!(
                topic.end_offset(),
                Offset(t.records.len() as u64),
                "{label}: reader end"
            );
            for r in &t.records {
                match topic.read(r.offset) {
                    Ok(got) => assert_eq!(&got, r, "{label}: read({}) returned wrong data", r.offset),
                    Err(e) => assert_corrupt_in(&e, &path, start..end, &label),
                }
            }
            for o in first..first + count {
                let e = topic.read(Offset(o)).expect_err(&label);
                assert_corrupt_in(&e, &path, start..end, &label);
            }
            // The appender refuses to open: the damage is followed by valid batches.
            let err = topic.recover().expect_err(&label);
            assert_corrupt_in(&err, &path, start..end, &label);
            let appended = topic.append(&NewRecord::new("x"));
            let Err(Error::Corrupt { .. }) = &appended else {
                panic!("{label}: append after corruption: expected a corrupt error, got {appended:?}");
            };
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{label}: the damaged file was changed"
            );
        }
    }
}

/// A copy of `t` with one bit flipped at byte `pos` of segment 0 (and, when `crashed`,
/// without the framed index files a clean close leaves): label, copy, log path, its bytes.
fn flip_in_last_batch(t: &Template, pos: u64, crashed: bool) -> (String, tempfile::TempDir, PathBuf, Vec<u8>) {
    let copy = t.copy();
    let path = log_path(copy.path(), 0);
    if crashed {
        drop_index_files(&path);
    }
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[pos as usize] ^= 0x10;
    write(&path, &bytes);
    let label = format!("flip at byte {pos} of the last batch (crashed: {crashed})");
    (label, copy, path, bytes)
}

/// After a crash (no clean close: the active segment has no framed index), damage in the
/// last batch cannot be told from a torn write: it is truncated and reported.
#[test]
fn bit_flip_in_the_last_batch_of_the_active_segment_after_a_crash_is_a_reported_truncation() {
    let t = build(1 << 20, Compression::None, 9);
    let &(_, start, end, first, count) = t.batches.last().unwrap();
    for pos in (start..end).step_by(7) {
        let (label, copy, _, _) = flip_in_last_batch(&t, pos, true);
        let (_store, topic) = open(copy.path());
        let report = topic.recover().unwrap();
        assert_eq!(report.kept_bytes, start, "{label}");
        assert_eq!(report.truncated_bytes, end - start, "{label}");
        assert_eq!(report.end_offset, Offset(first), "{label}: {count} records dropped");
        check_all(&topic, &t.records[..first as usize], &label);
    }
}

/// After a clean close the segment's framed index vouches for its size: damage in the
/// last batch is damage to acknowledged records. The appender refuses to open, naming
/// the byte, and truncates nothing; a reader never gets wrong data.
#[test]
fn bit_flip_in_the_last_batch_after_a_clean_close_is_an_error_not_a_truncation() {
    let t = build(1 << 20, Compression::None, 9);
    let &(_, start, end, first, count) = t.batches.last().unwrap();
    let original = std::fs::read(log_path(&t.root, 0)).unwrap();
    let mut refused = 0;
    for pos in (start..end).step_by(7) {
        let (label, copy, path, bytes) = flip_in_last_batch(&t, pos, false);
        let store = Store::builder(copy.path())
            .durability(Durability::Buffered)
            .open()
            .unwrap();
        // A reader either sees the whole log as closed (the damage surfaces when the
        // damaged batch is read) or, when the damage hides where the batches end, is
        // refused: never a shorter log.
        let topic = match store.topic(TOPIC) {
            Ok(topic) => topic,
            Err(err) => {
                assert_corrupt_in(&err, &path, start..end, &label);
                assert!(err.to_string().contains("closed cleanly"), "{label}: {err}");
                refused += 1;
                continue;
            }
        };
        assert_eq!(topic.end_offset(), Offset(first + count), "{label}: the reader's end");
        for r in &t.records[..first as usize] {
            assert_eq!(&topic.read(r.offset).unwrap(), r, "{label}");
        }
        for o in first..first + count {
            if let Ok(got) = topic.read(Offset(o)) {
                panic!("{label}: read({o}) of the damaged batch returned {got:?}");
            }
        }
        let err = topic.recover().expect_err(&label);
        assert_corrupt_in(&err, &path, start..end, &label);
        assert!(err.to_string().contains("closed cleanly"), "{label}: {err}");
        assert!(topic.append(&NewRecord::new("x")).is_err(), "{label}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{label}: the damaged file was changed"
        );
    }
    assert!(refused > 0, "no flip hid where the batches end");
    // Cut short after a clean close: records acknowledged at close are missing, for a
    // reader and the appender alike.
    let copy = t.copy();
    let path = log_path(copy.path(), 0);
    write(&path, &original[..(end - 1) as usize]);
    let store = Store::builder(copy.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    match store.topic(TOPIC) {
        Err(err) => assert_corrupt_in(&err, &path, start..end, "cut, reader"),
        Ok(topic) => panic!("a reader opened a cut log ending at {}", topic.end_offset()),
    }
    let err = store
        .topic_or_create(TOPIC)
        .map(|t| t.recover())
        .expect_err("cut after a clean close");
    assert_corrupt_in(&err, &path, start..end, "cut");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), end - 1, "nothing truncated");
}

/// Flips one bit at each sampled byte of a sealed segment; every read of the topic either
/// returns the right record or `Corrupt` naming that segment.
#[test]
fn bit_flips_in_a_sealed_segment_give_corrupt_errors_never_wrong_data() {
    for compression in [Compression::None, Compression::Zstd] {
        let t = build(4096, compression, 120);
        let segments = t.segments();
        assert!(segments.len() >= 4, "{segments:?}");
        let (base, len) = segments[1];
        let next_base = segments[2].0;
        let original = std::fs::read(log_path(&t.root, base)).unwrap();
        let batches: Vec<_> = t.batches.iter().filter(|b| b.0 == base).copied().collect();
        let mut positions: Vec<u64> = (0..len).step_by(41).collect();
        // Every header byte of the first and of the last batch.
        positions.extend(0..40);
        let last = batches.last().unwrap();
        positions.extend(last.1..last.1 + 40);
        for pos in positions {
            let label = format!("{compression:?} flip at byte {pos} of sealed segment {base}");
            let copy = t.copy();
            let path = log_path(copy.path(), base);
            let mut bytes = original.clone();
            bytes[pos as usize] ^= 1 << (pos % 8);
            write(&path, &bytes);
            let (_store, topic) = open(copy.path());
            let mut errors = 0;
            for r in &t.records {
                match topic.read(r.offset) {
                    Ok(got) => assert_eq!(&got, r, "{label}: read({}) returned wrong data", r.offset),
                    Err(e) => {
                        assert_corrupt_in(&e, &path, 0..len + 1, &label);
                        assert!(
                            (base..next_base).contains(&r.offset.0),
                            "{label}: read({}) outside the segment failed: {e}",
                            r.offset
                        );
                        errors += 1;
                    }
                }
            }
            assert!(errors > 0, "{label}: no read noticed the flipped bit");
            // Iteration stops with the error instead of skipping the damage.
            let mut iter = topic.iter(Offset(0));
            let mut next = 0;
            let err = loop {
                match iter.next() {
                    Some(Ok(r)) => {
                        assert_eq!(r, t.records[next as usize], "{label}: iter");
                        next += 1;
                    }
                    Some(Err(e)) => break e,
                    None => panic!("{label}: iteration read past the damage without an error"),
                }
            };
            assert_corrupt_in(&err, &path, 0..len + 1, &label);
            assert!(next < next_base, "{label}: iter failed at {next}");
            // seek_time never answers wrong: right offset or an error.
            for r in t.records.iter().step_by(5) {
                match topic.seek_time(r.timestamp_us) {
                    Ok(found) => {
                        let want = t
                            .records
                            .iter()
                            .find(|x| x.timestamp_us >= r.timestamp_us)
                            .map(|x| x.offset);
                        assert_eq!(found, want, "{label}: seek_time({})", r.timestamp_us);
                    }
                    Err(e) => assert_corrupt_in(&e, &path, 0..len + 1, &label),
                }
            }
            // The appender still opens (the damage is not in the active segment) and
            // the data after the damaged segment is intact.
            topic.append(&NewRecord::new("more")).unwrap();
            let tail_start = next_base;
            let got: Vec<Record> = topic.iter(Offset(tail_start)).collect::<Result<_, _>>().unwrap();
            assert!(got[..got.len() - 1] == t.records[tail_start as usize..], "{label}");
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum IndexDamage {
    Deleted,
    Emptied,
    Shortened,
    ZeroFilled,
    ZerosAppended,
    Garbage,
    GarbageAppended,
    /// One bit flipped at each sampled position (in a separate copy each).
    BitFlips,
}

fn damage_variants(original: &[u8], damage: IndexDamage) -> Vec<Option<Vec<u8>>> {
    let n = original.len();
    match damage {
        IndexDamage::Deleted => vec![None],
        IndexDamage::Emptied => vec![Some(Vec::new())],
        IndexDamage::Shortened => vec![
            Some(original[..n / 2].to_vec()),
            Some(original[..n.saturating_sub(3)].to_vec()),
        ],
        IndexDamage::ZeroFilled => vec![Some(vec![0; n])],
        IndexDamage::ZerosAppended => {
            let mut v = original.to_vec();
            v.extend([0; 96]);
            vec![Some(v)]
        }
        IndexDamage::Garbage => vec![Some(noise(n.max(24), 7))],
        IndexDamage::GarbageAppended => {
            let mut v = original.to_vec();
            v.extend(noise(37, 9));
            vec![Some(v)]
        }
        IndexDamage::BitFlips => (0..n * 8)
            .step_by(11)
            .map(|bit| {
                let mut v = original.to_vec();
                v[bit / 8] ^= 1 << (bit % 8);
                Some(v)
            })
            .collect(),
    }
}

/// Damaged index files of a sealed and of the active segment are never trusted: every
/// read and every seek by time stays right, for readers and for the appender.
#[test]
fn damaged_or_missing_index_files_are_rebuilt_and_reads_stay_right() {
    // Segments of 16 KiB hold several sparse index entries each.
    let t = build(16384, Compression::None, 400);
    let segments = t.segments();
    assert!(segments.len() >= 3, "{segments:?}");
    let sealed = segments[1].0;
    let active = segments.last().unwrap().0;
    for (which, base) in [("sealed", sealed), ("active", active)] {
        for ext in ["index", "timeindex"] {
            let index_path = log_path(&t.root, base).with_extension(ext);
            let original = std::fs::read(&index_path).unwrap();
            assert!(
                original.len() > if ext == "index" { 8 } else { 12 },
                "{which} {ext} has a single entry"
            );
            for damage in [
                IndexDamage::Deleted,
                IndexDamage::Emptied,
                IndexDamage::Shortened,
                IndexDamage::ZeroFilled,
                IndexDamage::ZerosAppended,
                IndexDamage::Garbage,
                IndexDamage::GarbageAppended,
                IndexDamage::BitFlips,
            ] {
                for (k, content) in damage_variants(&original, damage).into_iter().enumerate() {
                    let label = format!("{which} segment {base}: {ext} {damage:?} #{k}");
                    let copy = t.copy();
                    let path = log_path(copy.path(), base).with_extension(ext);
                    match &content {
                        None => std::fs::remove_file(&path).unwrap(),
                        Some(bytes) => write(&path, bytes),
                    }
                    let (store, topic) = open(copy.path());
                    check_all(&topic, &t.records, &format!("{label}, reader"));
                    topic.recover().unwrap();
                    check_all(&topic, &t.records, &format!("{label}, appender"));
                    topic.append(&NewRecord::new("x")).unwrap();
                    store.close().unwrap();
                    let (_store, topic) = open(copy.path());
                    let mut want = t.records.clone();
                    want.push(topic.read(Offset(400)).unwrap());
                    assert_eq!(want[400].value, b"x", "{label}");
                    check_all(&topic, &want, &format!("{label}, reopened"));
                }
            }
        }
    }
}

#[test]
fn a_missing_middle_segment_is_a_gap_naming_the_offsets() {
    let t = build(4096, Compression::None, 120);
    let segments = t.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    let missing = segments[1].0;
    let after = segments[2].0;
    for keep_indexes in [false, true] {
        let copy = t.copy();
        std::fs::remove_file(log_path(copy.path(), missing)).unwrap();
        if !keep_indexes {
            for ext in ["index", "timeindex"] {
                std::fs::remove_file(log_path(copy.path(), missing).with_extension(ext)).unwrap();
            }
        }
        let (_store, topic) = open(copy.path());
        assert_eq!(topic.start_offset(), Offset(0));
        for o in missing..after {
            match topic.read(Offset(o)) {
                Err(Error::Gap { from, to, .. }) => {
                    assert_eq!((from, to), (Offset(missing), Offset(after)), "read({o})");
                }
                other => panic!("read({o}) in a missing segment gave {other:?}"),
            }
        }
        let err = topic
            .iter(Offset(0))
            .find_map(Result::err)
            .expect("iteration must stop at the gap");
        let Error::Gap { from, to, .. } = err else {
            panic!("expected Gap, got {err:?}");
        };
        assert_eq!((from, to), (Offset(missing), Offset(after)), "the gap's ends");
        let mut seen = 0;
        let err = topic
            .scan(Offset(0), |_| {
                seen += 1;
                ControlFlow::Continue(())
            })
            .expect_err("scan must stop at the gap");
        assert!(matches!(err, Error::Gap { .. }), "{err:?}");
        assert_eq!(seen, missing, "scan visited records up to the gap");
        // Everything before and after the gap still reads.
        for r in t.records.iter().filter(|r| r.offset.0 < missing || r.offset.0 >= after) {
            assert_eq!(&topic.read(r.offset).unwrap(), r);
        }
        // The appender opens (orphan index files are removed) and appends.
        let report = topic.recover().unwrap();
        assert_eq!(
            report.removed_files.len(),
            if keep_indexes { 2 } else { 0 },
            "{report:?}"
        );
        assert_eq!(topic.append(&NewRecord::new("x")).unwrap(), Offset(120));
    }
}

/// The first segment deleted by hand (no `start.offset` says retention removed it): reads
/// of its offsets fail with `Gap`, not "out of range", and so does `verify` (below a
/// start that retention recorded, reads stay out of range: tests/model.rs).
#[test]
fn a_missing_first_segment_is_a_gap_not_the_start() {
    let t = build(4096, Compression::None, 120);
    let segments = t.segments();
    let (first, second) = (segments[0].0, segments[1].0);
    let copy = t.copy();
    for ext in ["log", "index", "timeindex"] {
        std::fs::remove_file(log_path(copy.path(), first).with_extension(ext)).unwrap();
    }
    let (_store, topic) = open(copy.path());
    assert_eq!(topic.start_offset(), Offset(second));
    let (from, to, file) = topic.missing_head().unwrap().expect("the missing head is reported");
    assert_eq!(
        (from, to, file),
        (Offset(first), Offset(second), log_path(copy.path(), second))
    );
    for o in [first, second - 1] {
        match topic.read(Offset(o)) {
            Err(Error::Gap { from, to, .. }) => assert_eq!((from, to), (Offset(first), Offset(second))),
            other => panic!("read({o}) of the missing first segment gave {other:?}"),
        }
    }
    match topic.iter(Offset(first)).next() {
        Some(Err(Error::Gap { to, .. })) => assert_eq!(to, Offset(second)),
        other => panic!("iter from the missing head gave {other:?}"),
    }
    match topic.verify(None, &mut |_| {}) {
        Err(Error::Gap { from, to, .. }) => assert_eq!((from, to), (Offset(first), Offset(second))),
        other => panic!("verify of a topic missing its head gave {other:?}"),
    }
    assert_eq!(&topic.read(Offset(second)).unwrap(), &t.records[second as usize]);
}

/// `topic.json` deleted from a topic that holds segments: opening, re-creating and
/// listing the topic fail with an error naming the file, instead of "no such topic" (which
/// hid the records) or a new topic.json with default settings over the old log.
#[test]
fn a_missing_topic_json_is_an_error_not_a_new_topic() {
    let t = build(4096, Compression::None, 120);
    let copy = t.copy();
    let config = copy.path().join("topics").join(TOPIC).join("topic.json");
    std::fs::remove_file(&config).unwrap();
    let store = Store::builder(copy.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let attempts = [
        ("topic", store.topic(TOPIC).map(|_| ())),
        ("topic_or_create", store.topic_or_create(TOPIC).map(|_| ())),
        (
            "create_topic",
            store.create_topic(TOPIC, TopicConfig::default()).map(|_| ()),
        ),
    ];
    for (what, result) in attempts {
        match result {
            Err(Error::Io { context, source }) => {
                assert!(
                    context.contains("topic.json") && context.contains(".log"),
                    "{what}: {context}"
                );
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{what}");
            }
            other => panic!("{what} of a topic without topic.json gave {other:?}"),
        }
    }
    assert!(!config.exists(), "no topic.json was written");
    assert_eq!(store.topic_names().unwrap(), [TOPIC], "the topic is still listed");
    // A directory left empty by a crash while creating a topic is no topic yet.
    std::fs::create_dir(copy.path().join("topics").join("fresh")).unwrap();
    match store.topic("fresh") {
        Err(Error::NoSuchTopic(name)) => assert_eq!(name, "fresh"),
        other => panic!("an empty topic directory gave {other:?}"),
    }
    store.create_topic("fresh", TopicConfig::default()).unwrap();
}

/// The newest segment deleted from under the store: `sealed.offset` says it was started,
/// so the appender refuses (it used to reopen the sealed segment before it, move
/// `sealed.offset` back and reuse acknowledged offsets) and changes nothing.
#[test]
fn a_missing_newest_segment_is_an_error_and_nothing_is_rewritten() {
    let t = build(4096, Compression::None, 120);
    let segments = t.segments();
    assert!(segments.len() >= 3, "{segments:?}");
    let copy = t.copy();
    let dir = topic_dir(copy.path());
    let (newest, _) = *segments.last().unwrap();
    for ext in ["log", "index", "timeindex"] {
        let _ = std::fs::remove_file(log_path(copy.path(), newest).with_extension(ext));
    }
    let before: Vec<(PathBuf, Vec<u8>)> = files::segment_logs(&dir)
        .into_iter()
        .chain([dir.join("sealed.offset")])
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    let (_store, topic) = open(copy.path());
    let err = topic.recover().expect_err("newest segment missing");
    assert_corrupt_in(&err, &dir.join("sealed.offset"), 0..1, "missing newest");
    assert!(err.to_string().contains(&format!("offset {newest}")), "{err}");
    assert!(topic.append(&NewRecord::new("x")).is_err());
    for (path, bytes) in before {
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{} changed", path.display());
    }
}

#[test]
fn a_truncated_sealed_segment_is_corrupt_naming_its_file() {
    for compression in [Compression::None, Compression::Zstd] {
        let t = build(4096, compression, 120);
        let segments = t.segments();
        let (base, len) = segments[1];
        let next = segments[2].0;
        let batches: Vec<_> = t.batches.iter().filter(|b| b.0 == base).copied().collect();
        let boundary = batches[batches.len() - 2].2;
        for cut in [len - 1, len - 30, len / 2, 41, 1, boundary] {
            let label = format!("{compression:?} sealed segment {base} cut from {len} to {cut}");
            let copy = t.copy();
            let path = log_path(copy.path(), base);
            let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(cut).unwrap();
            drop(file);
            let (_store, topic) = open(copy.path());
            let mut failed = 0;
            for r in &t.records {
                match topic.read(r.offset) {
                    Ok(got) => assert_eq!(&got, r, "{label}: read({})", r.offset),
                    Err(e) => {
                        assert!((base..next).contains(&r.offset.0), "{label}: read({}): {e}", r.offset);
                        match &e {
                            Error::Corrupt { file, .. } => assert_eq!(file, &path, "{label}"),
                            // A cut at a batch boundary leaves whole batches: the rest is a gap.
                            Error::Gap { from, to, .. } => {
                                assert_eq!(cut, boundary, "{label}: {e}");
                                assert_eq!((*from, *to), (Offset(batches.last().unwrap().3), Offset(next)));
                            }
                            other => panic!("{label}: read({}): {other:?}", r.offset),
                        }
                        failed += 1;
                    }
                }
            }
            assert!(failed > 0, "{label}: nothing noticed the truncation");
            assert!(
                topic.iter(Offset(0)).any(|r| r.is_err()),
                "{label}: iteration did not fail"
            );
        }
    }
}

/// Writes `sealed.offset` as FORMAT.md describes it: u64 LE offset, CRC-32 of those 8 bytes.
fn write_sealed_through(root: &Path, through: u64) {
    let mut bytes = through.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&through.to_le_bytes()).to_le_bytes());
    std::fs::write(topic_dir(root).join("sealed.offset"), bytes).unwrap();
}

#[test]
fn a_torn_segment_whose_seal_was_not_durable_ends_the_log_and_drops_later_segments() {
    // A power loss under Buffered durability after a roll, before the background seal
    // synced the old segment: it may lose its tail while the next segments exist.
    let t = build(4096, Compression::None, 120);
    let segments = t.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    let (base, len) = segments[1];
    let batches: Vec<_> = t.batches.iter().filter(|b| b.0 == base).copied().collect();
    let boundary = batches[batches.len() - 2].2;
    for (cut, zeros) in [
        (len - 1, false),
        (len / 2, true),
        (boundary, false),
        (boundary, true),
        (41, false),
    ] {
        let label = format!("segment {base} cut from {len} to {cut}, zero-filled: {zeros}");
        let copy = t.copy();
        let path = log_path(copy.path(), base);
        drop_index_files(&path);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(cut).unwrap();
        if zeros {
            // Pages the disk never got read back as zeros.
            file.set_len(len).unwrap();
        }
        drop(file);
        write_sealed_through(copy.path(), base);
        // A reader in another process may hold the torn segment mapped (to it, the
        // segment is sealed): recovery must not shrink that file under it (SIGBUS), so
        // a torn tail is replaced by a new file, and the held one keeps its length.
        let held = std::fs::File::open(&path).unwrap();
        let (store, topic) = open(copy.path());
        let report = topic.recover().unwrap();
        let held_len = held.metadata().unwrap().len();
        let expected_held = if zeros { len } else { cut };
        assert_eq!(
            held_len, expected_held,
            "{label}: the file a reader holds was cut in place"
        );
        let dropped: Vec<PathBuf> = segments[2..].iter().map(|&(b, _)| log_path(copy.path(), b)).collect();
        assert_eq!(report.dropped_segments, dropped, "{label}");
        // The log is the longest prefix of whole batches that survived.
        let end = batches
            .iter()
            .take_while(|b| b.2 <= cut)
            .last()
            .map_or(base, |b| b.3 + b.4);
        assert_eq!(report.end_offset, Offset(end), "{label}");
        assert_eq!(topic.end_offset(), Offset(end), "{label}");
        let got: Vec<Record> = topic.iter(Offset(0)).collect::<Result<_, _>>().unwrap();
        assert_eq!(&got[..], &t.records[..end as usize], "{label}");
        for &(b, _) in &segments[2..] {
            assert!(!log_path(copy.path(), b).exists(), "{label}: segment {b} still there");
        }
        // Appends go on from the end, and a reopened store sees the same log.
        assert_eq!(topic.append(&new_record(end)).unwrap(), Offset(end), "{label}");
        store.close().unwrap();
        let (_store, topic) = open(copy.path());
        assert_eq!(topic.end_offset(), Offset(end + 1), "{label}");
        assert_eq!(topic.read(Offset(end)).unwrap().value, value(end), "{label}");
    }
}

#[test]
fn damage_before_a_valid_batch_in_an_unconfirmed_seal_is_corruption_and_nothing_is_deleted() {
    let t = build(4096, Compression::None, 120);
    let segments = t.segments();
    let (base, _) = segments[1];
    let first = t.batches.iter().find(|b| b.0 == base).copied().unwrap();
    let copy = t.copy();
    let path = log_path(copy.path(), base);
    let mut bytes = std::fs::read(&path).unwrap();
    // A flipped byte inside the first batch's records: the batches after it are valid.
    let at = (first.1 + 45) as usize;
    bytes[at] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    write_sealed_through(copy.path(), base);
    let (_store, topic) = open(copy.path());
    match topic.recover() {
        Err(Error::Corrupt { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Corrupt naming {}, got {other:?}", path.display()),
    }
    for &(b, _) in &segments {
        assert!(log_path(copy.path(), b).exists(), "segment {b} was deleted");
    }
}

#[test]
fn a_clean_close_records_every_seal_as_durable() {
    let t = build(4096, Compression::None, 120);
    let segments = t.segments();
    let bytes = std::fs::read(topic_dir(&t.root).join("sealed.offset")).unwrap();
    assert_eq!(bytes.len(), 12);
    assert_eq!(&bytes[8..], &crc32fast::hash(&bytes[..8]).to_le_bytes());
    let through = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(through, segments.last().unwrap().0, "{segments:?}");
    for &(b, _) in &segments[..segments.len() - 1] {
        let index = log_path(&t.root, b).with_extension("index");
        assert!(index.exists(), "{} missing", index.display());
    }
}
