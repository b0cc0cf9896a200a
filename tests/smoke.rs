//! Basic behaviour of the engine through its public API: append, read, iterate across
//! segments, seek by time, reopen, retention.

use std::ops::ControlFlow;

use trailkeep::{Durability, NewRecord, Offset, Store, TopicConfig};

fn value(i: u64) -> Vec<u8> {
    format!("{{\"event\":{i},\"pad\":\"{}\"}}", "x".repeat((i % 50) as usize)).into_bytes()
}

#[test]
fn append_read_iterate_across_segments_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::builder(dir.path())
            .durability(Durability::Buffered)
            .open()
            .unwrap();
        let topic = store
            .create_topic("t", TopicConfig::default().segment_bytes(4096))
            .unwrap();
        for i in 0..500u64 {
            let off = topic
                .append(&NewRecord::new(value(i)).with_key(format!("k{}", i % 7)))
                .unwrap();
            assert_eq!(off, Offset(i));
        }
        let batch: Vec<_> = (500..1500).map(|i| NewRecord::new(value(i))).collect();
        let appended = topic.append_batch(&batch).unwrap();
        assert_eq!(appended.first, Offset(500));
        assert_eq!(appended.count, 1000);
        assert!(topic.stats().unwrap().segments > 3);
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.end_offset(), Offset(1500));
    for i in [0u64, 1, 499, 500, 777, 1499] {
        assert_eq!(topic.read(Offset(i)).unwrap().value, value(i), "offset {i}");
    }
    let all: Vec<_> = topic.iter(Offset(0)).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 1500);
    for (i, r) in all.iter().enumerate() {
        assert_eq!(r.offset, Offset(i as u64));
        assert_eq!(r.value, value(i as u64));
    }
    let mut count = 0;
    topic
        .scan(Offset(100), |r| {
            assert_eq!(r.offset, Offset(100 + count));
            count += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(count, 1400);
    // Timestamps never decrease, and seek_time finds the first at or after.
    let mut last = 0;
    for r in &all {
        assert!(r.timestamp_us >= last);
        last = r.timestamp_us;
    }
    for probe in [0usize, 3, 499, 500, 1000, 1499] {
        let t = all[probe].timestamp_us;
        let want = all.iter().position(|r| r.timestamp_us >= t).unwrap() as u64;
        assert_eq!(topic.seek_time(t).unwrap(), Some(Offset(want)), "probe {probe}");
    }
    assert_eq!(topic.seek_time(last + 1).unwrap(), None);
    // Appending after reopen continues the offsets.
    assert_eq!(topic.append(&NewRecord::new(b"after".to_vec())).unwrap(), Offset(1500));
    assert!(matches!(
        topic.read(Offset(1501)),
        Err(trailkeep::Error::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retention_by_size_deletes_oldest_sealed_segments() {
    let store = Store::temporary().unwrap();
    let topic = store
        .create_topic(
            "t",
            TopicConfig::default().segment_bytes(4096).retention_bytes(16 * 1024),
        )
        .unwrap();
    for i in 0..2000u64 {
        topic.append(&NewRecord::new(value(i))).unwrap();
    }
    // Retention runs at every roll, but with tamper evidence (the default) only below
    // what the Merkle tree holds durably; the tree thread may lag the appends (on a slow
    // disk, by many segments). Once a checkpoint made the tree durable, retention brings
    // the topic within its limit.
    topic.checkpoint().unwrap();
    topic.apply_retention().unwrap();
    let stats = topic.stats().unwrap();
    assert!(stats.bytes <= 16 * 1024 + 4096 + 512, "{stats:?}");
    assert!(stats.start_offset > Offset(0));
    let start = topic.start_offset();
    assert_eq!(topic.read(start).unwrap().value, value(start.0));
    assert!(matches!(
        topic.read(Offset(0)),
        Err(trailkeep::Error::OffsetOutOfRange { .. })
    ));
}

#[test]
fn durable_appends_from_many_threads_get_dense_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic_or_create("t").unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let topic = topic.clone();
            std::thread::spawn(move || {
                (0..50)
                    .map(|i| topic.append(&NewRecord::new(format!("{t}-{i}"))).unwrap())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<_> = threads.into_iter().flat_map(|h| h.join().unwrap()).collect();
    offsets.sort();
    assert_eq!(offsets, (0..400).map(Offset).collect::<Vec<_>>());
}

#[test]
fn zstd_topics_round_trip() {
    let store = Store::temporary().unwrap();
    let topic = store
        .create_topic(
            "z",
            TopicConfig::default()
                .compression(trailkeep::Compression::Zstd)
                .segment_bytes(8192),
        )
        .unwrap();
    let batch: Vec<_> = (0..3000).map(|i| NewRecord::new(value(i))).collect();
    topic.append_batch(&batch).unwrap();
    let all: Vec<_> = topic.iter(Offset(0)).collect::<Result<_, _>>().unwrap();
    assert_eq!(all.len(), 3000);
    assert_eq!(all[2999].value, value(2999));
}

/// The error of an append to topic `t` through `store`, a second store of the same
/// directory (as another process would open it).
fn second_append_fails(store: &Store) -> trailkeep::Error {
    store
        .topic("t")
        .unwrap()
        .append(&NewRecord::new(b"y".to_vec()))
        .unwrap_err()
}

#[test]
fn second_appender_process_lock_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = Store::open(dir.path()).unwrap();
    a.topic_or_create("t")
        .unwrap()
        .append(&NewRecord::new(b"x".to_vec()))
        .unwrap();
    let err = second_append_fails(&b);
    match &err {
        trailkeep::Error::Locked { lock_file, .. } => {
            assert_eq!(
                lock_file,
                &dir.path().join("topics/t").join(trailkeep::topic::LOCK_FILE)
            )
        }
        other => panic!("expected Locked, got {other}"),
    }
    assert!(err.to_string().contains("is locked by process"), "{err}");
}

#[test]
fn deleting_the_lock_file_does_not_admit_a_second_appender() {
    let dir = tempfile::tempdir().unwrap();
    let a = Store::open(dir.path()).unwrap();
    let b = Store::open(dir.path()).unwrap();
    let topic_a = a.topic_or_create("t").unwrap();
    topic_a.append(&NewRecord::new(b"x".to_vec())).unwrap();
    let lock = dir.path().join("topics/t").join(trailkeep::topic::LOCK_FILE);
    std::fs::remove_file(&lock).unwrap();
    let err = second_append_fails(&b);
    match &err {
        trailkeep::Error::Locked { topic, .. } => assert_eq!(topic, "t"),
        other => panic!("a second appender got {other}, not Locked"),
    }
    topic_a.append(&NewRecord::new(b"z".to_vec())).unwrap();
    a.close().unwrap();
    drop(b);
    let values: Vec<Vec<u8>> = Store::open(dir.path())
        .unwrap()
        .topic("t")
        .unwrap()
        .iter(Offset(0))
        .map(|r| r.unwrap().value)
        .collect();
    assert_eq!(values, vec![b"x".to_vec(), b"z".to_vec()]);
}

/// Threads (one store) and stores (as separate processes would) creating the same new
/// topics at once: every `topic_or_create` succeeds, and of the explicit `create_topic`
/// calls exactly one wins while the others get `TopicExists`.
#[test]
fn concurrent_creators_of_one_topic_all_get_it_and_one_wins() {
    const CREATORS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<Store> = (0..CREATORS).map(|_| Store::open(dir.path()).unwrap()).collect();
    for round in 0..20 {
        let name = format!("t{round}");
        let shared = &stores[0];
        std::thread::scope(|s| {
            for _ in 0..CREATORS {
                s.spawn(|| shared.topic_or_create(&name).unwrap());
            }
        });
        let explicit = format!("c{round}");
        let outcomes: Vec<Result<(), trailkeep::Error>> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .enumerate()
                .map(|(i, store)| {
                    let explicit = &explicit;
                    s.spawn(move || {
                        let config = TopicConfig::default().segment_bytes(1 << (16 + i));
                        store.create_topic(explicit, config).map(|_| ())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut won = 0;
        for outcome in outcomes {
            match outcome {
                Ok(()) => won += 1,
                Err(trailkeep::Error::TopicExists(topic)) => assert_eq!(topic, explicit),
                Err(other) => panic!("round {round}: a creator failed with {other}"),
            }
        }
        assert_eq!(won, 1, "round {round}: creators that won");
    }
    let names = stores[0].topic_names().unwrap();
    assert_eq!(names.len(), 40, "{names:?}");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("topics/t0"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
