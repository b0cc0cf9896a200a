//! Background sealing under `Durability::Buffered`: however fast segments roll, at most
//! one seal thread runs per topic, and every rolled segment ends up sealed. Also the
//! `IntervalMs` syncer thread: close stops it (nothing else here uses `IntervalMs`). (When seals
//! happen is tests/seal_timing.rs: a test binary of its own, since this one counts the
//! process's seal threads.)
//!
//! How: a topic with 4 KiB segments gets tens of thousands of single-record appends (a
//! roll every few dozen records) while this test samples the process's threads by name
//! in /proc/self/task. A roll used to start a thread each time; while the first kept
//! sealing, the others queued on its lock and piled up into the thousands (and then the
//! process ran out of memory for thread stacks).

use std::time::{Duration, Instant};

use trailkeep::{Durability, NewRecord, Offset, Store, TopicConfig};

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

#[test]
fn fast_rolls_keep_one_seal_thread_and_seal_everything() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::Buffered)
        .open()
        .unwrap();
    let topic = store
        .create_topic("t", TopicConfig::default().segment_bytes(4096).tamper_evidence(false))
        .unwrap();
    let mut most = 0;
    for i in 0..40_000u64 {
        let record = NewRecord::new(format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(60)));
        assert_eq!(topic.append(&record).unwrap(), Offset(i));
        if i % 500 == 0 {
            most = most.max(threads_named("trailkeep-seal"));
        }
    }
    assert!(most <= 1, "{most} seal threads at once");
    store.close().unwrap();
    let segments = std::fs::read_dir(dir.path().join("topics").join("t"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "log"))
        .count();
    assert!(segments > 500, "only {segments} segments rolled");
    // Every rolled segment was sealed: `sealed.offset` names the active (last) segment.
    let bytes = std::fs::read(dir.path().join("topics").join("t").join("sealed.offset")).unwrap();
    let through = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.end_offset(), Offset(40_000));
    assert!(through > 39_000 && through < 40_000, "sealed through {through}");
}

/// Close stops and joins the interval syncer, also when the append lock is taken again
/// in between (no second syncer beside the first).
#[test]
fn close_stops_the_interval_syncer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path())
        .durability(Durability::IntervalMs(10_000))
        .open()
        .unwrap();
    let topic = store
        .create_topic("t", TopicConfig::default().tamper_evidence(false))
        .unwrap();
    for round in 0..3 {
        topic.append(&NewRecord::new(b"x".to_vec())).unwrap();
        // A new thread names itself once it runs.
        let named = Instant::now() + Duration::from_secs(5);
        while threads_named("trailkeep-sync") == 0 && Instant::now() < named {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            threads_named("trailkeep-sync"),
            1,
            "round {round}: one syncer while appending"
        );
        topic.close().unwrap();
        // Joined; the kernel may list an exiting thread a moment longer, while one left
        // running would sleep out its 10 s interval.
        let gone = Instant::now() + Duration::from_secs(2);
        while threads_named("trailkeep-sync") > 0 && Instant::now() < gone {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(
            threads_named("trailkeep-sync"),
            0,
            "round {round}: no syncer after close"
        );
    }
    store.close().unwrap();
}
