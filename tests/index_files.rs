//! Seek by time through the exact time index and the framed index files: `seek_time`
//! equals a plain scan of the log for every append time (and the times just around
//! them), whatever state the indexes are in.
//!
//! A property test appends batches of random sizes (with runs of equal append times:
//! one call split into several batches shares its time), rolls small segments, reopens,
//! and follows the topic from a second store instance opened mid-segment; it checks the
//! appender, the follower, and a fresh reader after deleting or damaging index files.
//! Fixed tests damage the index files of sealed segments one way each (a flipped byte, a
//! cut, a file of another segment, the old headerless format) and check both that seeks
//! stay right and that the appender rewrites what it could not trust.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use trailkeep::{Durability, NewRecord, Offset, Store, Topic, TopicConfig};

#[path = "support/files.rs"]
mod files;

const TOPIC: &str = "t";
/// Framed index files start with these magics (FORMAT.md, "Index file header").
const TIME_MAGIC: &[u8] = b"TKT1";
const OFFSET_MAGIC: &[u8] = b"TKO1";
const HEADER_BYTES: usize = 40;

fn topic_dir(root: &Path) -> PathBuf {
    root.join("topics").join(TOPIC)
}

fn open(root: &Path) -> Store {
    Store::builder(root).durability(Durability::Buffered).open().unwrap()
}

/// (offset, append time) of every record.
fn times(topic: &Topic) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    topic
        .scan(topic.start_offset(), |r| {
            out.push((r.offset.0, r.timestamp_us));
            ControlFlow::Continue(())
        })
        .unwrap();
    out
}

/// Compares `seek_time` with a scan for every append time, the times around them, and
/// the extremes.
fn check_seeks(topic: &Topic, label: &str) -> Result<(), String> {
    let all = times(topic);
    let mut probes: Vec<u64> = all
        .iter()
        .flat_map(|&(_, t)| [t.saturating_sub(1), t, t + 1])
        .chain([0, u64::MAX])
        .collect();
    probes.dedup();
    for probe in probes {
        let want = all.iter().find(|&&(_, t)| t >= probe).map(|&(o, _)| Offset(o));
        let got = topic
            .seek_time(probe)
            .map_err(|e| format!("{label}: seek_time({probe}): {e}"))?;
        if got != want {
            return Err(format!("{label}: seek_time({probe}) = {got:?}, a scan says {want:?}"));
        }
    }
    Ok(())
}

/// Sealed segment logs, oldest first (the newest log is the active one).
fn sealed_logs(root: &Path) -> Vec<PathBuf> {
    let mut logs = files::segment_logs(&topic_dir(root));
    logs.pop();
    logs
}

#[derive(Clone, Debug)]
enum Op {
    /// One append call of this many small records.
    Append(usize),
    /// One call whose records fill two batches that share an append time.
    SplitAppend,
    /// Close and reopen the appending store (the tail index is rebuilt by recovery).
    Reopen,
    /// Open (or reopen) a follower store now, mid-segment.
    Follow,
    /// Check the appender and the follower.
    Check,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (1usize..12).prop_map(Op::Append),
        1 => Just(Op::SplitAppend),
        1 => Just(Op::Reopen),
        2 => Just(Op::Follow),
        2 => Just(Op::Check),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    segment_bytes: u64,
    ops: Vec<Op>,
    /// Per sealed segment at the end: 0 keep, 1 delete both index files, 2 flip a byte of
    /// the time index, 3 cut the time index, 4 strip the headers (old format).
    damage: Vec<u8>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(4096u64), Just(16_384), Just(1 << 20)],
        proptest::collection::vec(op_strategy(), 1..60),
        proptest::collection::vec(0u8..5, 8),
    )
        .prop_map(|(segment_bytes, ops, damage)| Case {
            segment_bytes,
            ops,
            damage,
        })
}

fn record(i: usize, len: usize) -> NewRecord {
    NewRecord::new(vec![b'a' + (i % 26) as u8; len])
}

fn run_case(case: &Case) -> Result<(), String> {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let config = TopicConfig::default().segment_bytes(case.segment_bytes);
    let mut writer = Some(open(root));
    writer.as_ref().unwrap().create_topic(TOPIC, config).unwrap();
    let mut follower: Option<Store> = None;
    let mut n = 0;
    for (step, op) in case.ops.iter().enumerate() {
        let store = writer.as_ref().unwrap();
        let topic = store.topic(TOPIC).unwrap();
        match op {
            Op::Append(count) => {
                let recs: Vec<NewRecord> = (n..n + count).map(|i| record(i, 20 + i % 200)).collect();
                topic.append_batch(&recs).map_err(|e| e.to_string())?;
                n += count;
            }
            Op::SplitAppend => {
                // Batches close past 1 MiB of payload: two records of 600 KB each make two.
                let recs: Vec<NewRecord> = (n..n + 3).map(|i| record(i, 600_000)).collect();
                topic.append_batch(&recs).map_err(|e| e.to_string())?;
                n += 3;
            }
            Op::Reopen => {
                drop(topic);
                writer.take().unwrap().close().map_err(|e| e.to_string())?;
                writer = Some(open(root));
            }
            Op::Follow => follower = Some(open(root)),
            Op::Check => {
                check_seeks(&topic, &format!("appender after step {step}"))?;
                if let Some(f) = &follower {
                    let t = f.topic(TOPIC).unwrap();
                    t.refresh().map_err(|e| e.to_string())?;
                    check_seeks(&t, &format!("follower after step {step}"))?;
                }
            }
        }
    }
    let topic = writer.as_ref().unwrap().topic(TOPIC).unwrap();
    check_seeks(&topic, "appender at the end")?;
    if let Some(f) = &follower {
        let t = f.topic(TOPIC).unwrap();
        t.refresh().map_err(|e| e.to_string())?;
        check_seeks(&t, "follower at the end")?;
    }
    drop((topic, follower));
    writer.take().unwrap().close().map_err(|e| e.to_string())?;
    for (log, &damage) in sealed_logs(root).iter().zip(&case.damage) {
        damage_indexes(log, damage);
    }
    let reader = open(root);
    check_seeks(&reader.topic(TOPIC).unwrap(), "reader of damaged indexes")?;
    drop(reader);
    // The appender rebuilds what it cannot trust as it loads segments.
    let store = open(root);
    let topic = store.topic(TOPIC).unwrap();
    topic.recover().map_err(|e| e.to_string())?;
    check_seeks(&topic, "appender of damaged indexes")?;
    Ok(())
}

fn damage_indexes(log: &Path, damage: u8) {
    let time = log.with_extension("timeindex");
    let offsets = log.with_extension("index");
    match damage {
        1 => {
            std::fs::remove_file(&time).unwrap();
            std::fs::remove_file(&offsets).unwrap();
        }
        2 => {
            let mut bytes = std::fs::read(&time).unwrap();
            let at = bytes.len() / 2 + 3;
            bytes[at] ^= 0x10;
            std::fs::write(&time, bytes).unwrap();
        }
        3 => {
            let bytes = std::fs::read(&time).unwrap();
            std::fs::write(&time, &bytes[..bytes.len() - 5]).unwrap();
        }
        4 => {
            for path in [&time, &offsets] {
                let bytes = std::fs::read(path).unwrap();
                std::fs::write(path, &bytes[HEADER_BYTES..]).unwrap();
            }
        }
        _ => {}
    }
}

#[test]
fn seek_time_matches_a_scan() {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 24;
    }
    let seed = match config.rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap();
            now.as_micros() as u64 ^ u64::from(std::process::id()) << 40
        }
    };
    config.rng_seed = RngSeed::Fixed(seed);
    config.failure_persistence = None;
    eprintln!(
        "index files test: PROPTEST_RNG_SEED={seed} PROPTEST_CASES={}",
        config.cases
    );
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case_strategy(), |case| run_case(&case).map_err(TestCaseError::fail));
    if let Err(e) = result {
        panic!("{e}\nreproduce with PROPTEST_RNG_SEED={seed}");
    }
}

// ---- One damage at a time to the index files of sealed segments.

/// A closed store with several sealed segments (and runs of equal append times).
fn template() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let store = open(tmp.path());
    let topic = store
        .create_topic(TOPIC, TopicConfig::default().segment_bytes(8192))
        .unwrap();
    for i in 0..400 {
        let recs: Vec<NewRecord> = (0..1 + i % 7).map(|j| record(i + j, 30 + (i * 13) % 150)).collect();
        topic.append_batch(&recs).unwrap();
    }
    drop(topic);
    store.close().unwrap();
    let logs = sealed_logs(tmp.path());
    assert!(logs.len() >= 4, "the template needs sealed segments");
    for log in &logs {
        for (ext, magic) in [("timeindex", TIME_MAGIC), ("index", OFFSET_MAGIC)] {
            let bytes = std::fs::read(log.with_extension(ext)).unwrap();
            assert_eq!(&bytes[..4], magic, "sealed {ext} files are framed");
        }
    }
    tmp
}

fn copy_topic(from: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    tmp
}

/// Damages one sealed segment's index files with `damage`, then checks a reader, and an
/// appender (which must leave framed files behind when it rewrote them).
fn check_damage(label: &str, damage: impl Fn(&Path, &[PathBuf])) {
    let template = template();
    let want = times(&open(template.path()).topic(TOPIC).unwrap());
    let copy = copy_topic(template.path());
    let logs = sealed_logs(copy.path());
    damage(&logs[1], &logs);
    let reader = open(copy.path());
    let topic = reader.topic(TOPIC).unwrap();
    assert_eq!(times(&topic), want, "{label}: records");
    check_seeks(&topic, label).unwrap();
    drop((topic, reader));
    let store = open(copy.path());
    let topic = store.topic(TOPIC).unwrap();
    topic.recover().unwrap();
    check_seeks(&topic, &format!("{label}, appender")).unwrap();
    drop(topic);
    store.close().unwrap();
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_bytes_in_index_files() {
    for at in [
        0,
        5,
        9,
        17,
        25,
        29,
        37,
        HEADER_BYTES,
        HEADER_BYTES + 4,
        HEADER_BYTES + 13,
    ] {
        check_damage(&format!("time index byte {at} flipped"), |log, _| {
            flip(&log.with_extension("timeindex"), at);
        });
    }
    for at in [0, 9, 25, HEADER_BYTES + 1, HEADER_BYTES + 12] {
        check_damage(&format!("offset index byte {at} flipped"), |log, _| {
            flip(&log.with_extension("index"), at);
        });
    }
}

#[test]
fn truncated_index_files() {
    for keep in [0, 3, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 11] {
        check_damage(&format!("time index cut to {keep} bytes"), |log, _| {
            let path = log.with_extension("timeindex");
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[..keep]).unwrap();
        });
    }
    check_damage("time index missing its last entry", |log, _| {
        let path = log.with_extension("timeindex");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 12]).unwrap();
    });
    check_damage("offset index cut", |log, _| {
        let path = log.with_extension("index");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    });
}

#[test]
fn index_files_of_another_segment() {
    for ext in ["timeindex", "index"] {
        check_damage(&format!("{ext} of the next segment"), |log, logs| {
            std::fs::copy(logs[2].with_extension(ext), log.with_extension(ext)).unwrap();
        });
    }
    check_damage("both files of the next segment", |log, logs| {
        for ext in ["timeindex", "index"] {
            std::fs::copy(logs[2].with_extension(ext), log.with_extension(ext)).unwrap();
        }
    });
}

#[test]
fn old_format_index_files_are_hints() {
    check_damage("headerless (old format) files", |log, _| {
        for ext in ["timeindex", "index"] {
            let path = log.with_extension(ext);
            let bytes = std::fs::read(&path).unwrap();
            std::fs::write(&path, &bytes[HEADER_BYTES..]).unwrap();
        }
    });
    check_damage("old-format sparse time index", |log, _| {
        // What older versions wrote: a time entry only every few batches.
        let path = log.with_extension("timeindex");
        let bytes = std::fs::read(&path).unwrap();
        let sparse: Vec<u8> = bytes[HEADER_BYTES..]
            .chunks_exact(12)
            .enumerate()
            .filter(|(i, _)| i % 5 == 0)
            .flat_map(|(_, c)| c.to_vec())
            .collect();
        std::fs::write(&path, sparse).unwrap();
        let path = log.with_extension("index");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[HEADER_BYTES..]).unwrap();
    });
}

#[test]
fn an_appender_rewrites_index_files_it_cannot_trust() {
    let template = template();
    let copy = copy_topic(template.path());
    let logs = sealed_logs(copy.path());
    flip(&logs[0].with_extension("timeindex"), HEADER_BYTES + 2);
    std::fs::remove_file(logs[1].with_extension("index")).unwrap();
    let store = open(copy.path());
    let topic = store.topic(TOPIC).unwrap();
    topic.recover().unwrap();
    check_seeks(&topic, "appender").unwrap();
    drop(topic);
    store.close().unwrap();
    for log in &logs[..2] {
        let before = std::fs::read(
            template
                .path()
                .join("topics")
                .join(TOPIC)
                .join(log.file_name().unwrap())
                .with_extension("timeindex"),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(log.with_extension("timeindex")).unwrap(),
            before,
            "{}",
            log.display()
        );
        assert_eq!(&std::fs::read(log.with_extension("index")).unwrap()[..4], OFFSET_MAGIC);
    }
}

/// The active (newest) segment's log.
fn active_log(root: &Path) -> PathBuf {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(topic_dir(root))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .filter(|p| p.file_stem().is_some_and(|s| s.len() == 20))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn a_closed_active_segment_has_framed_indexes_that_readers_trust_and_appenders_replace() {
    let template = template();
    let active = active_log(template.path());
    for (ext, magic) in [("timeindex", TIME_MAGIC), ("index", OFFSET_MAGIC)] {
        let bytes = std::fs::read(active.with_extension(ext)).unwrap();
        assert_eq!(&bytes[..4], magic, "close leaves the active {ext} file framed");
    }
    let want = times(&open(template.path()).topic(TOPIC).unwrap());
    // A reader seeks right (from the framed files) and follows an appender that resumes.
    let reader = open(template.path());
    let followed = reader.topic(TOPIC).unwrap();
    check_seeks(&followed, "reader of a closed tail").unwrap();
    let store = open(template.path());
    let topic = store.topic(TOPIC).unwrap();
    let end = topic.end_offset().0 as usize;
    for i in 0..40 {
        topic.append_batch(&[record(end + i, 40)]).unwrap();
    }
    for (ext, magic) in [("timeindex", TIME_MAGIC), ("index", OFFSET_MAGIC)] {
        let bytes = std::fs::read(active_log(template.path()).with_extension(ext)).unwrap();
        assert_ne!(
            bytes.get(..4),
            Some(magic),
            "the appender replaced the framed {ext} file"
        );
    }
    followed.refresh().unwrap();
    assert_eq!(times(&followed).len(), want.len() + 40);
    check_seeks(&followed, "reader after the appender resumed").unwrap();
    check_seeks(&topic, "appender").unwrap();
    drop(topic);
    store.close().unwrap();
    // A framed file that does not match the log (the log grew, or damage) is not trusted.
    let copy = copy_topic(template.path());
    let active = active_log(copy.path());
    let mut log = std::fs::OpenOptions::new().append(true).open(&active).unwrap();
    std::io::Write::write_all(&mut log, &[0u8; 16]).unwrap();
    drop(log);
    let reader = open(copy.path());
    let topic = reader.topic(TOPIC).unwrap();
    assert_eq!(times(&topic).len(), want.len() + 40, "a torn tail hides nothing valid");
    check_seeks(&topic, "framed tail index not matching the log").unwrap();
    let copy = copy_topic(template.path());
    flip(&active_log(copy.path()).with_extension("timeindex"), HEADER_BYTES + 3);
    let reader = open(copy.path());
    let topic = reader.topic(TOPIC).unwrap();
    check_seeks(&topic, "flipped byte in the closed tail's time index").unwrap();
}

/// A segment the appender has just rolled is mapped at once with the index it built in
/// memory (before its seal writes index files): reads and seeks into it agree with a
/// scan, and with a fresh store that loads the index files the seals wrote.
#[test]
fn just_rolled_segments_read_like_their_index_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let store = open(root);
    let topic = store
        .create_topic(TOPIC, TopicConfig::default().segment_bytes(16_384))
        .unwrap();
    for i in 0..300 {
        topic.append_batch(&[record(i, 100), record(i + 1, 37)]).unwrap();
    }
    assert!(sealed_logs(root).len() >= 3, "the appends rolled several segments");
    let appended = times(&topic);
    assert_eq!(appended.len(), 600);
    check_seeks(&topic, "appender").unwrap();
    for &(offset, _) in appended.iter().step_by(37) {
        let record = topic.read(Offset(offset)).unwrap();
        assert_eq!(record.offset, Offset(offset));
    }
    store.close().unwrap();

    let fresh = open(root);
    let topic = fresh.topic(TOPIC).unwrap();
    assert_eq!(times(&topic), appended, "a fresh store reads the same records");
    check_seeks(&topic, "fresh store").unwrap();
}

/// Segment positions are 32-bit: one append call over 4 GiB is refused whole, whether the
/// active segment is empty or would have to roll first, and nothing changes.
#[test]
fn an_append_call_over_four_gib_is_refused_before_any_roll() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    let record = NewRecord::new(vec![7u8; (4 << 20) - 1024]);
    // 1,100 borrowed 4 MiB values: 4.3 GiB announced, nothing copied.
    let big = record.as_fields();
    let call = vec![big; 1100];
    for label in ["empty segment", "non-empty segment"] {
        let before = (topic.end_offset(), topic.stats().unwrap().segments);
        let e = topic.append_fields(&call).unwrap_err();
        let trailkeep::Error::LimitExceeded { what, .. } = &e else {
            panic!("{label}: not a limit error: {e}")
        };
        assert_eq!(*what, "append call", "{label}: {e}");
        assert_eq!(
            (topic.end_offset(), topic.stats().unwrap().segments),
            before,
            "{label}: something changed"
        );
        topic.append(&NewRecord::new(b"small".to_vec())).unwrap();
    }
    assert_eq!(topic.end_offset(), Offset(2));
}
