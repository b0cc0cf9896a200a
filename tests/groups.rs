//! Consumer groups through the public API: commit / committed / reset (all four targets) /
//! delete / list with lag; cursor durability across reopen, a torn last cursor entry and a
//! cursor file with no valid entry; the one-consumer-per-group lock; `poll` returning
//! records, waking on an append from another thread or another `Store` instance, and
//! waiting out its timeout at the head; `OnNextPoll` commits; retention against cursors
//! (`retention_until_consumed` stops at the slowest group, the hard cap deletes anyway and
//! names the losses, `GroupOutOfRange` carries the earliest offset, `ResetToEarliest`
//! jumps); and, with the `failpoints` feature, a `read --group` process killed after a
//! cursor commit (and one killed with SIGKILL while following) resumes with no gap.
//!
//! How: every test works in its own temporary store directory and checks exact offsets and
//! values read back. Nothing here asserts on how fast anything was; the one time check is
//! that a poll with nothing to return waited at least its timeout (a semantic lower bound).

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use trailkeep::{
    CommitMode, ConsumerConfig, Durability, Error, NewRecord, Offset, OutOfRangePolicy, ResetTo, StartAt, Store, Topic,
    TopicConfig,
};

const ENTRY: u64 = trailkeep::cursor::CURSOR_ENTRY_BYTES as u64;

fn value(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "p".repeat(100)).into_bytes()
}

fn append_n(topic: &Topic, from: u64, to: u64) {
    for i in from..to {
        assert_eq!(topic.append(&NewRecord::new(value(i))).unwrap(), Offset(i));
    }
}

fn open(dir: &Path) -> Store {
    Store::builder(dir).durability(Durability::Always).open().unwrap()
}

fn open_buffered(dir: &Path) -> Store {
    Store::builder(dir).durability(Durability::Buffered).open().unwrap()
}

fn cursor_path(dir: &Path, topic: &str, group: &str) -> PathBuf {
    dir.join("topics")
        .join(topic)
        .join("groups")
        .join(format!("{group}.cursor"))
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as u64
}

fn manual() -> ConsumerConfig {
    ConsumerConfig::default()
}

fn offsets(records: &[trailkeep::Record]) -> Vec<u64> {
    records.iter().map(|r| r.offset.0).collect()
}

#[test]
fn commit_committed_list_with_lag_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    append_n(&topic, 0, 10);

    assert_eq!(topic.committed("a").unwrap(), None);
    assert!(topic.groups().unwrap().is_empty());

    let before = now_us();
    topic.commit("b", Offset(10)).unwrap();
    topic.commit("a", Offset(3)).unwrap();
    assert_eq!(topic.committed("a").unwrap(), Some(Offset(3)));
    assert_eq!(topic.committed("b").unwrap(), Some(Offset(10)));

    let groups = topic.groups().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["a", "b"], "sorted by name");
    assert_eq!(
        (groups[0].committed, groups[0].lag, groups[0].behind_start),
        (Offset(3), 7, false)
    );
    assert_eq!(
        (groups[1].committed, groups[1].lag, groups[1].behind_start),
        (Offset(10), 0, false)
    );
    assert!(groups.iter().all(|g| g.committed_at_us >= before));

    // Lag follows new appends.
    append_n(&topic, 10, 15);
    let groups = topic.groups().unwrap();
    assert_eq!((groups[0].lag, groups[1].lag), (12, 5));

    // A later commit replaces the position, backwards too (commit is not a max).
    topic.commit("a", Offset(1)).unwrap();
    assert_eq!(topic.committed("a").unwrap(), Some(Offset(1)));

    topic.delete_group("a").unwrap();
    assert_eq!(topic.committed("a").unwrap(), None);
    let names: Vec<String> = topic.groups().unwrap().into_iter().map(|g| g.name).collect();
    assert_eq!(names, ["b"]);
    assert!(matches!(topic.delete_group("a"), Err(Error::NoSuchGroup { ref group, .. }) if group == "a"));

    // Group names are checked like topic names (no path tricks).
    assert!(matches!(topic.commit("../x", Offset(0)), Err(Error::InvalidConfig(_))));
    assert!(matches!(topic.committed("a/b"), Err(Error::InvalidConfig(_))));
}

#[test]
fn reset_to_earliest_latest_offset_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    append_n(&topic, 0, 5);
    std::thread::sleep(Duration::from_millis(3));
    let middle = now_us();
    std::thread::sleep(Duration::from_millis(3));
    append_n(&topic, 5, 10);
    assert!(topic.read(Offset(4)).unwrap().timestamp_us < middle);
    assert!(topic.read(Offset(5)).unwrap().timestamp_us >= middle);

    assert_eq!(topic.reset_group("g", ResetTo::Latest).unwrap(), Offset(10));
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(10)));
    assert_eq!(topic.reset_group("g", ResetTo::Earliest).unwrap(), Offset(0));
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(0)));
    assert_eq!(topic.reset_group("g", ResetTo::Offset(Offset(7))).unwrap(), Offset(7));
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(7)));
    assert_eq!(topic.reset_group("g", ResetTo::TimeUs(middle)).unwrap(), Offset(5));
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(5)));
    // A time before everything is the first record; after everything is the end.
    assert_eq!(topic.reset_group("g", ResetTo::TimeUs(0)).unwrap(), Offset(0));
    assert_eq!(
        topic.reset_group("g", ResetTo::TimeUs(now_us() + 60_000_000)).unwrap(),
        Offset(10)
    );
    // The end itself is a valid position; past it is not, and the cursor stays.
    assert_eq!(topic.reset_group("g", ResetTo::Offset(Offset(10))).unwrap(), Offset(10));
    let err = topic.reset_group("g", ResetTo::Offset(Offset(11))).unwrap_err();
    let Error::OffsetOutOfRange { offset, start, end, .. } = &err else {
        panic!("expected OffsetOutOfRange, got {err:?}");
    };
    assert_eq!((*offset, *start, *end), (Offset(11), Offset(0), Offset(10)), "{err:?}");
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(10)));

    // A reset group is read from its new position.
    topic.reset_group("g", ResetTo::Offset(Offset(8))).unwrap();
    let mut consumer = topic.consumer("g", manual()).unwrap();
    assert_eq!(offsets(&consumer.poll(100, Duration::ZERO).unwrap()), [8, 9]);
}

#[test]
fn commits_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let topic = store.create_topic("t", TopicConfig::default()).unwrap();
        append_n(&topic, 0, 20);
        let mut consumer = topic.consumer("g", manual()).unwrap();
        assert_eq!(consumer.poll(6, Duration::ZERO).unwrap().len(), 6);
        consumer.commit().unwrap();
        assert_eq!(consumer.committed(), Some(Offset(6)));
        // Returned but not committed: must not survive.
        assert_eq!(consumer.poll(4, Duration::ZERO).unwrap().len(), 4);
        assert_eq!(consumer.position(), Offset(10));
    }
    let store = open(dir.path());
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(6)));
    let mut consumer = topic.consumer("g", manual()).unwrap();
    assert_eq!(consumer.position(), Offset(6));
    assert_eq!(consumer.lag(), 14);
    assert_eq!(offsets(&consumer.poll(3, Duration::ZERO).unwrap()), [6, 7, 8]);
}

#[test]
fn torn_last_cursor_entry_falls_back_to_the_previous_commit_and_later_commits_stick() {
    let dir = tempfile::tempdir().unwrap();
    let path = cursor_path(dir.path(), "t", "g");
    {
        let store = open(dir.path());
        let topic = store.create_topic("t", TopicConfig::default()).unwrap();
        append_n(&topic, 0, 20);
        topic.commit("g", Offset(3)).unwrap();
        topic.commit("g", Offset(7)).unwrap();
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * ENTRY);
    // A crash in the middle of writing the second entry: 20 of its 32 bytes made it.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(ENTRY + 20)
        .unwrap();

    let store = open(dir.path());
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(3)));
    assert_eq!(topic.groups().unwrap()[0].committed, Offset(3));
    {
        let mut consumer = topic.consumer("g", manual()).unwrap();
        assert_eq!(consumer.position(), Offset(3));
        assert_eq!(consumer.poll(9, Duration::ZERO).unwrap().len(), 9);
        consumer.commit().unwrap();
        assert_eq!(consumer.committed(), Some(Offset(12)));
    }
    // The commit made after the torn entry must be the one found after a reopen.
    drop(store);
    let store = open(dir.path());
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(12)));
    topic.commit("g", Offset(15)).unwrap();
    drop(store);
    assert_eq!(
        open(dir.path()).topic("t").unwrap().committed("g").unwrap(),
        Some(Offset(15))
    );
}

#[test]
fn cursor_file_with_no_valid_entry_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = cursor_path(dir.path(), "t", "g");
    {
        let store = open(dir.path());
        let topic = store.create_topic("t", TopicConfig::default()).unwrap();
        append_n(&topic, 0, 5);
        topic.commit("g", Offset(4)).unwrap();
    }
    // Flip a bit in the only entry's offset: the checksum no longer matches.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[9] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let store = open(dir.path());
    let topic = store.topic("t").unwrap();
    let err = topic.committed("g").unwrap_err();
    let Error::Corrupt { file, .. } = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert_eq!(file, &path, "{err:?}");
    assert!(err.to_string().contains("no valid commit entry"), "{err}");
    assert!(matches!(topic.groups(), Err(Error::Corrupt { .. })));
    // A consumer must not silently start over from Earliest (or Latest) either.
    let err = topic
        .consumer("g", manual())
        .err()
        .expect("consumer over a corrupt cursor");
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    // Resetting the group is the way out.
    assert_eq!(topic.reset_group("g", ResetTo::Offset(Offset(2))).unwrap(), Offset(2));
    assert_eq!(topic.committed("g").unwrap(), Some(Offset(2)));
}

#[test]
fn second_consumer_of_a_group_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    append_n(&topic, 0, 3);
    let first = topic.consumer("g", manual()).unwrap();
    assert!(matches!(topic.consumer("g", manual()), Err(Error::Locked { .. })));
    assert!(matches!(topic.commit("g", Offset(1)), Err(Error::Locked { .. })));
    assert!(matches!(
        topic.reset_group("g", ResetTo::Latest),
        Err(Error::Locked { .. })
    ));
    assert!(matches!(topic.delete_group("g"), Err(Error::Locked { .. })));
    // Another Store instance (like another process) is locked out too.
    let other = open(dir.path());
    let other_topic = other.topic("t").unwrap();
    assert!(matches!(other_topic.consumer("g", manual()), Err(Error::Locked { .. })));
    // Other groups are independent.
    let _h = topic.consumer("h", manual()).unwrap();
    drop(first);
    let mut again = other_topic.consumer("g", manual()).unwrap();
    assert_eq!(offsets(&again.poll(10, Duration::ZERO).unwrap()), [0, 1, 2]);
}

#[test]
fn poll_wakes_for_an_append_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    append_n(&topic, 0, 2);
    let mut consumer = topic.consumer("g", manual()).unwrap();
    assert_eq!(offsets(&consumer.poll(10, Duration::from_secs(5)).unwrap()), [0, 1]);

    let appender = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            topic.append(&NewRecord::new("late")).unwrap()
        })
    };
    // Generous timeout: the assertion is on what came back, not on how fast.
    let records = consumer.poll(10, Duration::from_secs(30)).unwrap();
    assert_eq!(appender.join().unwrap(), Offset(2));
    assert_eq!(offsets(&records), [2]);
    assert_eq!(records[0].value, b"late");
    assert_eq!(consumer.position(), Offset(3));
}

#[test]
fn poll_at_the_head_returns_empty_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    append_n(&topic, 0, 3);
    let mut consumer = topic
        .consumer(
            "g",
            ConsumerConfig {
                start_at: StartAt::Latest,
                ..manual()
            },
        )
        .unwrap();
    assert_eq!(consumer.position(), Offset(3));
    let timeout = Duration::from_millis(150);
    let started = Instant::now();
    let records = consumer.poll(10, timeout).unwrap();
    assert!(records.is_empty());
    // It must have waited (a lower bound, not a speed check).
    assert!(started.elapsed() >= timeout, "returned early: {:?}", started.elapsed());
    assert_eq!(consumer.position(), Offset(3));
    assert!(consumer.poll(10, Duration::ZERO).unwrap().is_empty());
}

#[test]
fn on_next_poll_commits_the_previous_poll_and_manual_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic("t", TopicConfig::default()).unwrap();
    append_n(&topic, 0, 10);
    let on_next = ConsumerConfig {
        commit_mode: CommitMode::OnNextPoll,
        ..manual()
    };
    {
        let mut consumer = topic.consumer("auto", on_next).unwrap();
        assert_eq!(offsets(&consumer.poll(3, Duration::ZERO).unwrap()), [0, 1, 2]);
        assert_eq!(consumer.committed(), None);
        assert_eq!(topic.committed("auto").unwrap(), None);
        assert_eq!(offsets(&consumer.poll(3, Duration::ZERO).unwrap()), [3, 4, 5]);
        assert_eq!(consumer.committed(), Some(Offset(3)));
        // An empty poll commits the previous one too, and does not move it further.
        assert_eq!(offsets(&consumer.poll(10, Duration::ZERO).unwrap()), [6, 7, 8, 9]);
        assert_eq!(consumer.committed(), Some(Offset(6)));
        assert!(consumer.poll(10, Duration::ZERO).unwrap().is_empty());
        assert_eq!(consumer.committed(), Some(Offset(10)));
        // "Crash" here: dropped without another poll after the last batch.
    }
    {
        let mut consumer = topic.consumer("auto2", on_next).unwrap();
        assert_eq!(offsets(&consumer.poll(4, Duration::ZERO).unwrap()), [0, 1, 2, 3]);
        assert_eq!(offsets(&consumer.poll(4, Duration::ZERO).unwrap()), [4, 5, 6, 7]);
    }
    // At-least-once: the last poll's records come again, nothing before them.
    let mut consumer = topic.consumer("auto2", on_next).unwrap();
    assert_eq!(offsets(&consumer.poll(10, Duration::ZERO).unwrap()), [4, 5, 6, 7, 8, 9]);
    drop(consumer);

    {
        let mut consumer = topic.consumer("man", manual()).unwrap();
        assert_eq!(consumer.poll(5, Duration::ZERO).unwrap().len(), 5);
        assert_eq!(consumer.poll(5, Duration::ZERO).unwrap().len(), 5);
        assert_eq!(consumer.committed(), None);
        consumer.commit_offset(Offset(2)).unwrap();
    }
    let mut consumer = topic.consumer("man", manual()).unwrap();
    assert_eq!(consumer.position(), Offset(2));
    consumer.seek(Offset(9)).unwrap();
    assert_eq!(offsets(&consumer.poll(5, Duration::ZERO).unwrap()), [9]);
    assert_eq!(consumer.committed(), Some(Offset(2)), "seek moves the position only");
    assert!(matches!(consumer.seek(Offset(11)), Err(Error::OffsetOutOfRange { .. })));
}

/// Appends records of about 170 bytes until the topic has at least `segments` segments.
fn fill_segments(topic: &Topic, segments: usize) -> u64 {
    let mut n = topic.end_offset().0;
    while topic.stats().unwrap().segments < segments {
        append_n(topic, n, n + 1);
        n += 1;
    }
    n
}

#[test]
fn size_retention_stops_at_the_slowest_groups_position() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let config = TopicConfig::default()
        .segment_bytes(4096)
        .retention_bytes(4096)
        .retention_until_consumed(true);
    let topic = store.create_topic("t", config).unwrap();
    topic.commit("slow", Offset(0)).unwrap();
    topic.commit("fast", Offset(0)).unwrap();
    let end = fill_segments(&topic, 6);
    // Retention ran at every roll, but nobody had consumed anything.
    assert_eq!(topic.start_offset(), Offset(0));

    let slow_at = end / 2;
    topic.commit("slow", Offset(slow_at)).unwrap();
    topic.commit("fast", Offset(end)).unwrap();
    let report = topic.apply_retention().unwrap();
    assert!(report.lost.is_empty(), "{:?}", report.lost);
    assert!(!report.deleted_segments.is_empty(), "segments before the slow group go");
    assert!(report.start_offset > Offset(0));
    assert!(
        report.start_offset <= Offset(slow_at),
        "{:?} > {slow_at}",
        report.start_offset
    );
    assert_eq!(topic.start_offset(), report.start_offset);
    // Everything the slow group has yet to read is still there, intact.
    for i in slow_at..end {
        assert_eq!(topic.read(Offset(i)).unwrap().value, value(i));
    }
    let mut slow = topic.consumer("slow", manual()).unwrap();
    assert_eq!(
        slow.poll(usize::MAX, Duration::ZERO).unwrap().len() as u64,
        end - slow_at
    );
    slow.commit().unwrap();
    drop(slow);

    // Once the slow group caught up, size retention proceeds past its old position.
    let report = topic.apply_retention().unwrap();
    assert!(report.start_offset > Offset(slow_at), "{:?}", report.start_offset);
    assert!(report.lost.is_empty());
}

#[test]
fn hard_cap_deletes_unconsumed_records_and_names_the_losses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let hard = 3 * 4096;
    let config = TopicConfig::default()
        .segment_bytes(4096)
        .retention_until_consumed(true)
        .retention_hard_bytes(hard);
    let topic = store.create_topic("t", config).unwrap();
    topic.commit("stuck", Offset(0)).unwrap();
    // Three sealed segments (at most 4096 bytes each, so the rolls delete nothing), then
    // grow the tail until the total is over the cap without another roll.
    let mut end = fill_segments(&topic, 4);
    while topic.stats().unwrap().bytes <= hard {
        append_n(&topic, end, end + 1);
        end += 1;
    }
    assert_eq!(topic.stats().unwrap().segments, 4, "no roll while going over the cap");
    assert_eq!(topic.start_offset(), Offset(0));
    topic.commit("current", Offset(end)).unwrap();

    let report = topic.apply_retention().unwrap();
    let start = report.start_offset;
    assert!(start > Offset(0));
    assert!(topic.stats().unwrap().bytes <= hard);
    assert!(!report.lost.is_empty());
    assert!(report.lost.iter().all(|l| l.group == "stuck"), "{:?}", report.lost);
    assert_eq!(report.lost[0].from, Offset(0));
    for pair in report.lost.windows(2) {
        assert_eq!(pair[0].to, pair[1].from, "losses are contiguous: {:?}", report.lost);
    }
    assert_eq!(report.lost.last().unwrap().to, start);

    let groups = topic.groups().unwrap();
    let stuck = groups.iter().find(|g| g.name == "stuck").unwrap();
    assert!(stuck.behind_start);
    assert_eq!(stuck.lag, end - start.0);
    assert!(!groups.iter().find(|g| g.name == "current").unwrap().behind_start);

    // The default policy refuses, naming the earliest offset held ...
    let mut consumer = topic.consumer("stuck", manual()).unwrap();
    let err = consumer.poll(10, Duration::ZERO).unwrap_err();
    let Error::GroupOutOfRange {
        position,
        earliest,
        group,
        ..
    } = &err
    else {
        panic!("expected GroupOutOfRange, got {err:?}");
    };
    assert_eq!(
        (*position, *earliest, group.as_str()),
        (Offset(0), start, "stuck"),
        "{err:?}"
    );
    assert!(err.to_string().contains(&start.to_string()), "{err}");
    drop(consumer);
    // ... and the cursor is untouched by the refusal.
    assert_eq!(topic.committed("stuck").unwrap(), Some(Offset(0)));

    // ResetToEarliest jumps to the first record held.
    let mut consumer = topic
        .consumer(
            "stuck",
            ConsumerConfig {
                out_of_range: OutOfRangePolicy::ResetToEarliest,
                ..manual()
            },
        )
        .unwrap();
    let records = consumer.poll(2, Duration::ZERO).unwrap();
    assert_eq!(offsets(&records), [start.0, start.0 + 1]);
    assert_eq!(records[0].value, value(start.0));
    consumer.commit().unwrap();
    assert_eq!(topic.committed("stuck").unwrap(), Some(Offset(start.0 + 2)));
}

#[test]
fn follower_in_a_second_store_instance_sees_the_first_ones_appends() {
    let dir = tempfile::tempdir().unwrap();
    let writer_store = open(dir.path());
    let topic = writer_store
        .create_topic("t", TopicConfig::default().segment_bytes(4096))
        .unwrap();
    append_n(&topic, 0, 5);

    let reader_store = open(dir.path());
    let reader_topic = reader_store.topic("t").unwrap();
    assert!(!reader_topic.is_writer());
    let mut consumer = reader_topic.consumer("follow", manual()).unwrap();

    // Enough records to roll segments while the follower is waiting.
    let total = 120u64;
    let appender = {
        let topic = topic.clone();
        std::thread::spawn(move || {
            for i in 5..total {
                append_n(&topic, i, i + 1);
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        })
    };
    let mut seen = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(30);
    while (seen.len() as u64) < total && Instant::now() < give_up {
        for record in consumer.poll(16, Duration::from_secs(1)).unwrap() {
            assert_eq!(record.value, value(record.offset.0));
            seen.push(record.offset.0);
        }
    }
    appender.join().unwrap();
    assert_eq!(seen, (0..total).collect::<Vec<_>>());
    assert!(topic.stats().unwrap().segments > 1);
    consumer.commit().unwrap();
    drop(consumer);
    assert_eq!(topic.committed("follow").unwrap(), Some(Offset(total)));
    assert_eq!(topic.groups().unwrap()[0].lag, 0);
}

// ---- crash tests through the binary (feature `failpoints`) ----

#[cfg(feature = "failpoints")]
fn printed_offsets(stdout: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.ends_with('}')) // a line cut by the kill is not "printed"
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["offset"].as_u64().unwrap()
        })
        .collect()
}

#[cfg(feature = "failpoints")]
fn seeded_store(records: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let topic = store
        .create_topic("t", TopicConfig::default().segment_bytes(64 * 1024))
        .unwrap();
    let batch: Vec<NewRecord> = (0..records).map(|i| NewRecord::new(value(i))).collect();
    topic.append_batch(&batch).unwrap();
    store.close().unwrap();
    dir
}

#[cfg(feature = "failpoints")]
fn read_group_cmd(dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_trailkeep"));
    cmd.arg("--dir").arg(dir).args(["read", "t", "--group", "g"]);
    cmd.env_remove("TRAILKEEP_FAILPOINT");
    cmd
}

#[cfg(feature = "failpoints")]
fn assert_covers_without_gap(first: &[u64], second: &[u64], total: u64) {
    for part in [first, second] {
        for w in part.windows(2) {
            assert_eq!(w[1], w[0] + 1, "each run prints consecutive offsets");
        }
    }
    let union: std::collections::BTreeSet<u64> = first.iter().chain(second).copied().collect();
    let missing: Vec<u64> = (0..total).filter(|o| !union.contains(o)).collect();
    assert!(missing.is_empty(), "gap after a crash: missing {missing:?}");
    assert_eq!(union.len() as u64, total);
}

#[cfg(feature = "failpoints")]
#[test]
fn read_group_killed_after_a_cursor_commit_resumes_without_a_gap() {
    use std::os::unix::process::ExitStatusExt;
    let total = 2600;
    let dir = seeded_store(total);
    // `read --group` polls up to 1000 records, prints them, commits; the failpoint kills
    // it right after its second commit, mid-way through the --limit.
    let killed = read_group_cmd(dir.path())
        .args(["--limit", "2500"])
        .env("TRAILKEEP_FAILPOINT", "cursor.after_commit:2")
        .output()
        .unwrap();
    assert_eq!(killed.status.signal(), Some(libc::SIGKILL), "{killed:?}");
    let first = printed_offsets(&killed.stdout);
    assert!(
        !first.is_empty() && (first.len() as u64) < 2500,
        "printed {}",
        first.len()
    );

    let rest = read_group_cmd(dir.path()).output().unwrap();
    assert!(rest.status.success(), "{}", String::from_utf8_lossy(&rest.stderr));
    let second = printed_offsets(&rest.stdout);
    assert!(!second.is_empty());
    // It resumes at or before the first unprinted offset: duplicates allowed, gaps not.
    assert!(second[0] <= *first.last().unwrap() + 1);
    assert_covers_without_gap(&first, &second, total);
    assert_eq!(*second.last().unwrap(), total - 1);
}

#[cfg(feature = "failpoints")]
#[test]
fn read_group_follower_killed_by_sigkill_resumes_without_a_gap() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let total = 3000;
    let dir = seeded_store(total);
    let mut child = read_group_cmd(dir.path())
        .arg("--follow")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut printed = Vec::new();
    let mut line = Vec::new();
    // Read part of the output, then kill it while it is mid-way.
    for _ in 0..1500 {
        line.clear();
        assert!(out.read_until(b'\n', &mut line).unwrap() > 0, "follower exited early");
        printed.extend_from_slice(&line);
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    out.read_to_end(&mut printed).unwrap();
    let first = printed_offsets(&printed);

    let rest = read_group_cmd(dir.path()).output().unwrap();
    assert!(rest.status.success(), "{}", String::from_utf8_lossy(&rest.stderr));
    let second = printed_offsets(&rest.stdout);
    if first.len() as u64 == total {
        assert!(second.is_empty() || *second.last().unwrap() == total - 1);
    } else {
        assert!(second[0] <= *first.last().unwrap() + 1);
    }
    assert_covers_without_gap(&first, &second, total);
}

/// A store whose topic `t` holds 10 records (5 + 5, the first five closed cleanly at
/// `first_five` log bytes), group `read` committed at 10 and group `ahead` at 20 (past
/// the end on purpose, as Kafka allows), closed cleanly.
fn ten_records_two_groups(dir: &Path) -> u64 {
    let log = dir.join("topics/t/00000000000000000000.log");
    {
        let store = open_buffered(dir);
        let topic = store
            .create_topic("t", TopicConfig::default().tamper_evidence(false))
            .unwrap();
        append_n(&topic, 0, 5);
        store.close().unwrap();
    }
    let first_five = std::fs::metadata(&log).unwrap().len();
    let store = open_buffered(dir);
    let topic = store.topic("t").unwrap();
    append_n(&topic, 5, 10);
    topic.commit("read", Offset(10)).unwrap();
    topic.commit("ahead", Offset(20)).unwrap();
    store.close().unwrap();
    first_five
}

/// What a power loss can leave of that store: the log cut at `len` bytes, no clean-close
/// index, and the lock file of an appender that never closed, written during `boot`.
fn power_loss(dir: &Path, len: u64, boot: &str) {
    let topic_dir = dir.join("topics/t");
    let log = topic_dir.join("00000000000000000000.log");
    OpenOptions::new().write(true).open(&log).unwrap().set_len(len).unwrap();
    for ext in ["index", "timeindex"] {
        std::fs::remove_file(log.with_extension(ext)).unwrap();
    }
    std::fs::write(
        topic_dir.join(trailkeep::topic::LOCK_FILE),
        format!("process 1 (trailkeep), boot {boot}"),
    )
    .unwrap();
}

#[test]
fn groups_past_records_a_power_loss_took_are_moved_back_and_read_the_new_ones() {
    for (cut, boot) in [("at a batch boundary", "an-earlier-boot"), ("mid-batch", "")] {
        let dir = tempfile::tempdir().unwrap();
        let first_five = ten_records_two_groups(dir.path());
        let len = if boot.is_empty() { first_five + 7 } else { first_five };
        power_loss(dir.path(), len, boot);
        let store = open_buffered(dir.path());
        let topic = store.topic("t").unwrap();
        let report = topic.recover().unwrap();
        let rewound: Vec<(String, u64, u64)> = report
            .rewound_groups
            .iter()
            .map(|g| (g.group.clone(), g.from.0, g.to.0))
            .collect();
        let mut want = vec![("ahead".to_owned(), 20, 5), ("read".to_owned(), 10, 5)];
        let mut got = rewound.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "cut {cut}");
        assert_eq!(topic.committed("read").unwrap(), Some(Offset(5)), "cut {cut}");
        append_n(&topic, 5, 8);
        let mut consumer = topic.consumer("read", manual()).unwrap();
        let polled = consumer.poll(100, Duration::ZERO).unwrap();
        assert_eq!(
            offsets(&polled),
            [5, 6, 7],
            "cut {cut}: the new records are not skipped"
        );
    }
}

#[test]
fn groups_past_the_end_stay_after_a_clean_close_or_a_crash_of_this_boot() {
    let dir = tempfile::tempdir().unwrap();
    ten_records_two_groups(dir.path());
    let store = open_buffered(dir.path());
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.recover().unwrap().rewound_groups, Vec::new());
    assert_eq!(topic.committed("ahead").unwrap(), Some(Offset(20)));
    store.close().unwrap();

    // A process crash on this boot loses nothing from the page cache: a clean cut at a
    // batch boundary is not a sign of lost records then.
    let this_boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    let log = dir.path().join("topics/t/00000000000000000000.log");
    power_loss(dir.path(), std::fs::metadata(&log).unwrap().len(), this_boot.trim());
    let store = open_buffered(dir.path());
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.recover().unwrap().rewound_groups, Vec::new());
    assert_eq!(topic.committed("ahead").unwrap(), Some(Offset(20)));
    assert_eq!(topic.committed("read").unwrap(), Some(Offset(10)));
}
