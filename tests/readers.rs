//! Readers in another store instance: a second `Store` on the same directory (standing in
//! for another process: it takes no lock until it appends) sees, after `refresh()`, exactly
//! what the appending instance appended, including across segment rolls, after retention
//! deleted the segments it had open, when it was opened before the topic had any
//! segment, and while it refreshes beside a writer that rolls. Every record it returns is
//! compared with the appender's own reads.

use std::ops::ControlFlow;

use trailkeep::{Durability, Error, NewRecord, Offset, Record, Store, Topic, TopicConfig};

const TOPIC: &str = "trail";

fn record(i: u64) -> NewRecord {
    let pad = "x".repeat((i * 53 % 400) as usize);
    NewRecord::new(format!("{{\"i\":{i},\"pad\":\"{pad}\"}}"))
        .with_key(format!("trace-{}", i % 3))
        .with_header("n", i.to_le_bytes().to_vec())
}

fn all(topic: &Topic) -> Vec<Record> {
    topic.iter(topic.start_offset()).collect::<Result<_, _>>().unwrap()
}

/// The reader holds exactly what the writer holds.
fn assert_same(reader: &Topic, writer: &Topic, label: &str) {
    assert_eq!(reader.start_offset(), writer.start_offset(), "{label}: start");
    assert_eq!(reader.end_offset(), writer.end_offset(), "{label}: end");
    let want = all(writer);
    let got = all(reader);
    assert!(
        got == want,
        "{label}: reader saw {} records, writer holds {}",
        got.len(),
        want.len()
    );
    if let (Some(first), Some(last)) = (want.first(), want.last()) {
        for r in [first, &want[want.len() / 2], last] {
            assert_eq!(&reader.read(r.offset).unwrap(), r, "{label}: read({})", r.offset);
            assert_eq!(
                reader.seek_time(r.timestamp_us).unwrap().map(|o| o <= r.offset),
                Some(true)
            );
        }
        assert_eq!(reader.seek_time(last.timestamp_us + 1).unwrap(), None, "{label}");
    }
}

/// A store appending under `Always` and a second instance reading, with their topics.
fn always_writer_and_reader(dir: &std::path::Path, config: TopicConfig) -> (Store, Topic, Store, Topic) {
    let writer_store = Store::builder(dir).durability(Durability::Always).open().unwrap();
    let writer = writer_store.create_topic(TOPIC, config).unwrap();
    let reader_store = Store::open(dir).unwrap();
    let reader = reader_store.topic(TOPIC).unwrap();
    (writer_store, writer, reader_store, reader)
}

#[test]
fn a_second_instance_sees_appends_across_rolls_and_retention_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let writer_store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let writer = writer_store
        .create_topic(
            TOPIC,
            TopicConfig::default().segment_bytes(4096).retention_bytes(20_000),
        )
        .unwrap();
    // Opened before the topic has any segment file.
    let early_store = Store::open(dir.path()).unwrap();
    let early = early_store.topic(TOPIC).unwrap();
    assert_eq!(early.end_offset(), Offset(0));
    assert!(!early.refresh().unwrap(), "nothing to see yet");
    let mut late: Option<(Store, Topic)> = None;
    let mut next = 0u64;
    let mut rolls_seen = 0;
    let mut deletions_seen = 0;
    // At least 60 rounds, and more (up to 600) until rolls and deletions were seen: a
    // segment is deleted only once the tree thread has synced its leaves, which on a
    // loaded machine can trail the appends by many rolls.
    for round in 0..600u64 {
        if round >= 60 && rolls_seen > 5 && deletions_seen > 3 {
            break;
        }
        let segments_before = writer.stats().unwrap().segments;
        let start_before = writer.start_offset();
        // 0 to 9 records per round, single and batched appends.
        let n = round * 7 % 10;
        if round % 2 == 0 {
            for _ in 0..n {
                assert_eq!(writer.append(&record(next)).unwrap(), Offset(next));
                next += 1;
            }
        } else {
            let batch: Vec<_> = (next..next + n).map(record).collect();
            assert_eq!(writer.append_batch(&batch).unwrap().first, Offset(next));
            next += n;
        }
        rolls_seen += usize::from(writer.stats().unwrap().segments != segments_before);
        deletions_seen += usize::from(writer.start_offset() != start_before);
        let grew = early.refresh().unwrap();
        assert_eq!(
            grew,
            n > 0,
            "round {round}: refresh reported growth {grew} after {n} appends"
        );
        assert!(!early.refresh().unwrap(), "round {round}: a second refresh found more");
        assert_same(&early, &writer, &format!("round {round}, early reader"));
        assert!(!early.is_writer(), "a reader took the append lock");
        if round == 10 {
            let store = Store::open(dir.path()).unwrap();
            let topic = store.topic(TOPIC).unwrap();
            late = Some((store, topic));
        }
        if let Some((_, late)) = &late {
            late.refresh().unwrap();
            assert_same(late, &writer, &format!("round {round}, late reader"));
        }
    }
    assert!(
        rolls_seen > 5 && deletions_seen > 3,
        "rolls {rolls_seen}, deletions {deletions_seen}"
    );
    // The readers cannot append while the writer holds the lock.
    let refused = early.append(&record(0));
    let Err(Error::Locked { .. }) = refused else {
        panic!("a reader appended while the writer holds the lock: {refused:?}");
    };
    writer_store.close().unwrap();
}

#[test]
fn a_reader_iterator_continues_with_new_records_after_refresh() {
    let dir = tempfile::tempdir().unwrap();
    let writer_store = Store::builder(dir.path())
        .durability(Durability::Always)
        .open()
        .unwrap();
    let writer = writer_store
        .create_topic(TOPIC, TopicConfig::default().segment_bytes(4096))
        .unwrap();
    writer.append(&record(0)).unwrap();
    let reader_store = Store::open(dir.path()).unwrap();
    let reader = reader_store.topic(TOPIC).unwrap();
    let mut iter = reader.iter(Offset(0));
    let mut seen = Vec::new();
    let mut next = 1;
    for round in 0..30 {
        for _ in 0..(round % 4) * 3 {
            writer.append(&record(next)).unwrap();
            next += 1;
        }
        reader.refresh().unwrap();
        for r in iter.by_ref() {
            seen.push(r.unwrap());
        }
        assert_eq!(seen.len() as u64, next, "round {round}: the iterator missed records");
        assert!(seen == all(&writer), "round {round}");
    }
    assert!(writer.stats().unwrap().segments > 3);
}

#[test]
fn a_reader_inside_a_segment_deleted_by_retention_never_returns_wrong_data() {
    let dir = tempfile::tempdir().unwrap();
    let writer_store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let writer = writer_store
        .create_topic(
            TOPIC,
            TopicConfig::default().segment_bytes(4096).retention_bytes(12_000),
        )
        .unwrap();
    for i in 0..40 {
        writer.append(&record(i)).unwrap();
    }
    let expected: Vec<Record> = all(&writer);
    let reader_store = Store::open(dir.path()).unwrap();
    let reader = reader_store.topic(TOPIC).unwrap();
    let start = reader.start_offset();
    let mut iter = reader.iter(start);
    let first = iter.next().unwrap().unwrap();
    assert_eq!(first, expected[0]);
    // Retention deletes the segment the iterator is in, and more.
    for i in 40..200 {
        writer.append(&record(i)).unwrap();
    }
    // Retention waits for the tree thread to hold the segments' leaves durably (tamper
    // evidence is on by default), which may come after the last roll: ask again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while writer.start_offset() <= Offset(40) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
        writer.apply_retention().unwrap();
    }
    assert!(writer.start_offset() > Offset(40), "retention did not run within 10 s");
    // The iterator either goes on with records that are right, or stops with an error
    // saying the offset is no longer held (not an I/O error about a missing file).
    for r in iter.by_ref() {
        match r {
            Ok(r) => {
                if let Some(want) = expected.iter().find(|x| x.offset == r.offset) {
                    assert_eq!(&r, want);
                }
            }
            Err(e) => {
                assert!(matches!(e, Error::OffsetOutOfRange { .. }), "unexpected error {e:?}");
                break;
            }
        }
    }
    reader.refresh().unwrap();
    assert_same(&reader, &writer, "after refresh");
    // Scanning from an offset retention deleted is an error that says what is held.
    let err = reader.scan(Offset(0), |_| ControlFlow::Continue(())).unwrap_err();
    let Error::OffsetOutOfRange { start, .. } = err else {
        panic!("expected OffsetOutOfRange, got {err:?}");
    };
    assert_eq!(start, writer.start_offset(), "the error names the first offset held");
}

#[test]
fn a_reader_sees_a_recovered_topic_after_the_writer_reopens() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::builder(dir.path())
            .durability(Durability::Always)
            .open()
            .unwrap();
        let topic = store
            .create_topic(TOPIC, TopicConfig::default().segment_bytes(4096))
            .unwrap();
        for i in 0..30 {
            topic.append(&record(i)).unwrap();
        }
    }
    let reader_store = Store::open(dir.path()).unwrap();
    let reader = reader_store.topic(TOPIC).unwrap();
    assert_eq!(reader.end_offset(), Offset(30));
    let writer_store = Store::open(dir.path()).unwrap();
    let writer = writer_store.topic(TOPIC).unwrap();
    for i in 30..90 {
        writer.append(&record(i)).unwrap();
    }
    assert!(reader.refresh().unwrap());
    assert_same(&reader, &writer, "after the second writer");
}

/// Tail batches are read through a read-ahead (64 KiB): many small batches per read,
/// batches larger than it, and batches across its end all come back exactly, both for an
/// iterator that follows the appender and for reads started anywhere.
#[test]
fn tail_batches_of_every_size_around_the_read_ahead_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let topic = store.create_topic(TOPIC, TopicConfig::default()).unwrap();
    let value = |i: usize, len: usize| -> Vec<u8> { (0..len).map(|k| (i * 31 + k * 7) as u8).collect() };
    let mut want: Vec<Vec<u8>> = Vec::new();
    let mut follower = topic.iter(Offset(0));
    let mut followed = Vec::new();
    for round in 0..40usize {
        // (records, bytes each): small ones, one larger than the read-ahead, a batch of
        // several large ones, medium ones, one just under the read-ahead.
        let (count, len) = [(50, 100), (1, 70_000), (3, 30_000), (20, 3_000), (1, 65_000)][round % 5];
        let records: Vec<NewRecord> = (0..count)
            .map(|k| NewRecord::new(value(want.len() + k, len + round)))
            .collect();
        if round % 2 == 0 {
            for r in &records {
                topic.append(r).unwrap();
            }
        } else {
            topic.append_batch(&records).unwrap();
        }
        want.extend(records.iter().map(|r| r.value.clone()));
        followed.extend(follower.by_ref().map(|r| r.unwrap().value));
        assert_eq!(followed.len(), want.len(), "round {round}: the follower missed records");
    }
    assert!(followed == want, "the follower read other bytes");
    assert_eq!(topic.stats().unwrap().segments, 1, "everything should be in the tail");
    for start in [0, 1, 49, 50, 51, 52, 123, 500, want.len() - 1] {
        let got: Vec<Vec<u8>> = topic.iter(Offset(start as u64)).map(|r| r.unwrap().value).collect();
        assert!(got == want[start..], "reading from {start}");
    }
}

/// An acknowledged durable append is readable at once by the thread that made it, also
/// when another thread's sync covered it (the sync's leader makes the records visible
/// before it says they are durable) and across rolls.
#[test]
fn a_durable_append_is_readable_as_soon_as_it_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let topic = store
        .create_topic("t", TopicConfig::default().segment_bytes(64 << 10))
        .unwrap();
    std::thread::scope(|s| {
        for w in 0..16u64 {
            let topic = topic.clone();
            s.spawn(move || {
                for i in 0..400u64 {
                    let value = format!("writer {w} record {i}");
                    let at = topic.append(&NewRecord::new(value.clone())).unwrap();
                    let back = topic
                        .read(at)
                        .unwrap_or_else(|e| panic!("writer {w} record {i} at {at:?}: {e}"));
                    assert_eq!(back.value, value.as_bytes(), "writer {w} record {i} at {at:?}");
                }
            });
        }
    });
    assert_eq!(topic.end_offset(), Offset(16 * 400));
}

/// A roll under `Always` cuts the zeros written ahead off the old tail: a reader that took
/// the tail's size just before must read what is there, not fail ("failed to fill whole
/// buffer" before the fix, in 6 of 10 runs).
#[test]
fn a_reader_refreshing_while_the_writer_rolls_never_errs() {
    const RECORDS: u64 = 3_000;
    let dir = tempfile::tempdir().unwrap();
    let (writer_store, writer, _reader_store, reader) =
        always_writer_and_reader(dir.path(), TopicConfig::default().segment_bytes(4096));
    std::thread::scope(|s| {
        let appends = s.spawn(|| {
            for i in 0..RECORDS {
                assert_eq!(writer.append(&record(i)).unwrap(), Offset(i));
            }
        });
        let mut next = 0u64;
        let mut rounds = 0u64;
        while next < RECORDS {
            rounds += 1;
            if rounds.is_multiple_of(3) {
                // Fall behind now and then, so that reads start in segments just rolled.
                std::thread::sleep(std::time::Duration::from_micros(300 * (rounds % 11)));
            }
            reader.refresh().unwrap_or_else(|e| panic!("refresh at {next}: {e}"));
            let end = reader.end_offset();
            for r in reader.iter(Offset(next)) {
                let r = r.unwrap_or_else(|e| panic!("reading from {next} (end {end:?}): {e}"));
                assert_eq!(r.value, record(r.offset.0).value, "record {}", r.offset.0);
                assert_eq!(r.offset, Offset(next));
                next += 1;
            }
        }
        appends.join().unwrap();
    });
    writer_store.close().unwrap();
}

/// Zeros after the tail's last batch (what an appender under `Always` writes ahead) are
/// read whole at most once a second by a polling reader; a valid batch hidden behind them
/// (damage in the middle of the log, the file's length unchanged) is still reported.
#[test]
fn a_valid_batch_behind_zeros_in_the_tail_is_reported_to_a_polling_reader() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("topics").join(TOPIC).join("00000000000000000000.log");
    let lens: Vec<u64> = [0..5, 5..8]
        .into_iter()
        .map(|range| {
            let store = Store::builder(dir.path())
                .durability(Durability::Buffered)
                .open()
                .unwrap();
            let topic = store
                .topic(TOPIC)
                .or_else(|_| store.create_topic(TOPIC, TopicConfig::default()))
                .unwrap();
            for i in range {
                assert_eq!(topic.append(&record(i)).unwrap(), Offset(i));
            }
            store.close().unwrap();
            std::fs::metadata(&seg).unwrap().len()
        })
        .collect();
    let log = std::fs::read(&seg).unwrap();
    let (first, later) = log.split_at(lens[0] as usize);
    const HOLE: usize = 4096;
    let mut zeroed = first.to_vec();
    zeroed.resize(first.len() + HOLE + later.len(), 0);
    for ext in ["index", "timeindex"] {
        let _ = std::fs::remove_file(seg.with_extension(ext));
    }
    std::fs::write(&seg, &zeroed).unwrap();

    let store = Store::open(dir.path()).unwrap();
    let reader = store.topic(TOPIC).unwrap();
    assert_eq!(reader.end_offset(), Offset(5), "the zeros end the tail");
    assert!(!reader.refresh().unwrap());
    // Batches 5..8 land behind the zeros; the file keeps its length.
    let mut damaged = zeroed.clone();
    damaged[first.len() + HOLE..].copy_from_slice(later);
    std::fs::write(&seg, &damaged).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let err = loop {
        match reader.refresh() {
            Err(e) => break e,
            Ok(grew) => assert!(!grew, "records behind the zeros became visible"),
        }
        assert!(std::time::Instant::now() < deadline, "the damage was never reported");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("a valid batch follows"), "{err}");
    assert_eq!(reader.end_offset(), Offset(5));
}

/// Under `Always` a reader that last saw zeros after the tail's last batch reads only a
/// window after it; more new batches than the window holds are still all read.
#[test]
fn a_reader_catches_up_with_more_than_a_window_of_new_batches() {
    let dir = tempfile::tempdir().unwrap();
    let (writer_store, writer, _reader_store, reader) = always_writer_and_reader(dir.path(), TopicConfig::default());
    let mut next = 0u64;
    // Batches of 1, 10, 100 and 1,000 records (~0.2 to ~240 KB) between two refreshes.
    for n in [1u64, 10, 100, 1_000, 1, 1_000, 10] {
        let batch: Vec<_> = (next..next + n).map(record).collect();
        assert_eq!(writer.append_batch(&batch).unwrap().first, Offset(next));
        next += n;
        assert!(reader.refresh().unwrap(), "after {n} more records");
        assert!(!reader.refresh().unwrap(), "a second refresh found more");
        assert_same(&reader, &writer, &format!("after a batch of {n}"));
    }
    writer_store.close().unwrap();
}

/// What a writer process does to its tail, as a reader in another process sees the file.
#[derive(Clone, Debug)]
enum TailOp {
    /// A batch of this many records, values of this many bytes, written after the last.
    Batch(u8, u16),
    /// Zeros written ahead, to this many bytes past the last batch (never shrinking).
    Zeros(u32),
    /// The zeros cut off (a seal or close).
    Cut,
    /// A batch of this many records written in two steps, the reader refreshing between.
    Torn(u8, u16),
}

fn tail_op() -> impl proptest::strategy::Strategy<Value = TailOp> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (1u8..20, 0u16..3000).prop_map(|(n, pad)| TailOp::Batch(n, pad)),
        2 => (1u32..300_000).prop_map(TailOp::Zeros),
        1 => Just(TailOp::Cut),
        2 => (1u8..20, 0u16..3000).prop_map(|(n, pad)| TailOp::Torn(n, pad)),
    ]
}

fn tail_batch(base: u64, n: u8, pad: u16) -> (Vec<u8>, Vec<Vec<u8>>) {
    let values: Vec<Vec<u8>> = (0..u64::from(n))
        .map(|i| format!("{{\"i\":{},\"pad\":\"{}\"}}", base + i, "p".repeat(usize::from(pad))).into_bytes())
        .collect();
    let mut payload = Vec::new();
    for v in &values {
        let record = NewRecord::new(v.clone());
        trailkeep::segment::batch::encode_record(&mut payload, &record.as_fields());
    }
    let mut out = Vec::new();
    trailkeep::segment::batch::encode_batch(
        &mut out,
        Offset(base),
        1_700_000_000_000_000 + base,
        u32::from(n),
        &payload,
        trailkeep::segment::batch::Compression::None,
    )
    .unwrap();
    (out, values)
}

proptest::proptest! {
    // 48 cases unless PROPTEST_CASES says otherwise (README: longer runs).
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(48),
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Model test of a reader's view of a tail another process writes: batches, zeros
    /// written ahead and cut off, batches seen half-written, refreshes after some of the
    /// steps. After every refresh the reader holds exactly the complete batches, never
    /// errs, and reads their records back.
    #[test]
    fn a_reader_sees_exactly_the_complete_batches_of_a_changing_tail(
        ops in proptest::collection::vec((tail_op(), proptest::bool::weighted(0.6)), 1..40)
    ) {
        use std::os::unix::fs::FileExt;
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).unwrap().create_topic(TOPIC, TopicConfig::default()).unwrap();
        let reader_store = Store::open(dir.path()).unwrap();
        let reader = reader_store.topic(TOPIC).unwrap();
        let path = dir.path().join("topics").join(TOPIC).join("00000000000000000000.log");
        let file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path).unwrap();
        let (mut end, mut values): (u64, Vec<Vec<u8>>) = (0, Vec::new());
        let check = |values: &[Vec<u8>], label: &str| {
            reader.refresh().unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(reader.end_offset(), Offset(values.len() as u64), "{label}");
        };
        for (step, (op, refresh)) in ops.iter().enumerate() {
            let label = format!("step {step} {op:?}");
            match *op {
                TailOp::Batch(n, pad) => {
                    let (bytes, new) = tail_batch(values.len() as u64, n, pad);
                    file.write_all_at(&bytes, end).unwrap();
                    end += bytes.len() as u64;
                    values.extend(new);
                }
                TailOp::Zeros(ahead) => {
                    let len = file.metadata().unwrap().len();
                    if end + u64::from(ahead) > len {
                        file.set_len(end + u64::from(ahead)).unwrap();
                    }
                }
                TailOp::Cut => file.set_len(end).unwrap(),
                TailOp::Torn(n, pad) => {
                    let (bytes, new) = tail_batch(values.len() as u64, n, pad);
                    let half = bytes.len() / 2;
                    file.write_all_at(&bytes[..half], end).unwrap();
                    check(&values, &format!("{label}, half written"));
                    file.write_all_at(&bytes[half..], end + half as u64).unwrap();
                    end += bytes.len() as u64;
                    values.extend(new);
                }
            }
            if *refresh {
                check(&values, &label);
            }
        }
        check(&values, "at the end");
        let read: Vec<Vec<u8>> = all(&reader).into_iter().map(|r| r.value).collect();
        proptest::prop_assert_eq!(read, values);
    }
}
