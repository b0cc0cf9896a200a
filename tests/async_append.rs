//! `Topic::append_async` / `append_batch_async`: appends from async tasks are durable when
//! their futures complete (the topic's committer thread syncs for them), mix with
//! appending threads, survive a dropped future and a close, and fail cleanly when an
//! fdatasync fails. Crash tests with SIGKILL are in tests/crash.rs.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use trailkeep::{Durability, Error, NewRecord, Offset, Store, Topic, TopicConfig};

const TOPIC: &str = "t";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap()
}

fn durable_store(dir: &std::path::Path) -> Store {
    store_with(dir, Durability::Always)
}

fn store_with(dir: &std::path::Path, durability: Durability) -> Store {
    Store::builder(dir).durability(durability).open().unwrap()
}

fn value(task: usize, seq: usize) -> Vec<u8> {
    format!("task {task} record {seq} {}", "v".repeat((task * 7 + seq) % 50)).into_bytes()
}

/// Every offset in `acked` holds the value it was acknowledged with, read from a fresh
/// store instance (what is on disk), and nothing else is there.
fn assert_on_disk(dir: &std::path::Path, acked: &[(Offset, Vec<u8>)]) {
    let store = Store::open(dir).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    assert_eq!(topic.end_offset().0, acked.len() as u64, "records on disk");
    for (offset, value) in acked {
        assert_eq!(&topic.read(*offset).unwrap().value, value, "offset {offset}");
    }
}

/// `tasks` tasks append `per_task` records each with `append_async`; every future
/// returns a distinct offset holding its value.
async fn run_tasks(topic: &Topic, tasks: usize, per_task: usize) -> Vec<(Offset, Vec<u8>)> {
    let handles: Vec<_> = (0..tasks)
        .map(|task| {
            let topic = topic.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for seq in 0..per_task {
                    let v = value(task, seq);
                    let offset = topic.append_async(&NewRecord::new(v.clone())).await.unwrap();
                    // Durable and visible when the future completes.
                    assert!(topic.end_offset() > offset, "offset {offset} not visible on return");
                    acked.push((offset, v));
                }
                acked
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

#[test]
fn sixty_four_async_tasks_on_two_threads_append_durably() {
    let dir = tempfile::tempdir().unwrap();
    let store = durable_store(dir.path());
    let topic = store.create_topic(TOPIC, TopicConfig::default()).unwrap();
    let acked = runtime().block_on(run_tasks(&topic, 64, 50));
    let offsets: HashSet<Offset> = acked.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets.len(), 64 * 50, "an offset was given twice");
    // Read back before close through another instance: on disk, not only in memory.
    assert_on_disk(dir.path(), &acked);
    store.close().unwrap();
    assert_on_disk(dir.path(), &acked);
}

#[test]
fn async_tasks_and_threads_append_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let store = durable_store(dir.path());
    let topic = store
        .create_topic(TOPIC, TopicConfig::default().segment_bytes(64 << 10))
        .unwrap();
    let threads: Vec<_> = (100..108)
        .map(|task| {
            let topic = topic.clone();
            std::thread::spawn(move || {
                (0..100)
                    .map(|seq| {
                        let v = value(task, seq);
                        (topic.append(&NewRecord::new(v.clone())).unwrap(), v)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut acked = runtime().block_on(run_tasks(&topic, 16, 100));
    for t in threads {
        acked.extend(t.join().unwrap());
    }
    acked.sort();
    assert!(topic.stats().unwrap().segments > 2, "the appends were to roll segments");
    assert_on_disk(dir.path(), &acked);
    store.close().unwrap();
}

#[test]
fn batches_and_buffered_topics() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    {
        let store = durable_store(dir.path());
        let topic = store.create_topic(TOPIC, TopicConfig::default()).unwrap();
        let records: Vec<NewRecord> = (0..10).map(|i| NewRecord::new(value(0, i))).collect();
        let appended = rt.block_on(topic.append_batch_async(&records)).unwrap();
        assert_eq!((appended.first, appended.count), (Offset(0), 10));
        let empty = rt.block_on(topic.append_batch_async(&[])).unwrap();
        assert_eq!((empty.first, empty.count), (Offset(10), 0));
        let acked: Vec<_> = (0..10).map(|i| (Offset(i), value(0, i as usize))).collect();
        assert_on_disk(dir.path(), &acked);
        store.close().unwrap();
    }
    // Under Buffered the future completes at once, the record visible (not synced).
    let store = store_with(dir.path(), Durability::Buffered);
    let topic = store.topic(TOPIC).unwrap();
    let offset = rt
        .block_on(topic.append_async(&NewRecord::new(b"buffered".to_vec())))
        .unwrap();
    assert_eq!(offset, Offset(10));
    assert_eq!(topic.read(offset).unwrap().value, b"buffered");
    store.close().unwrap();
}

#[test]
fn a_dropped_future_and_a_close_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    let store = durable_store(dir.path());
    let topic = store.create_topic(TOPIC, TopicConfig::default()).unwrap();
    // A future given up on before its sync: the record was written and stays.
    let record = NewRecord::new(b"given up".to_vec());
    let gave_up = rt.block_on(async { tokio::time::timeout(Duration::ZERO, topic.append_async(&record)).await });
    // (tokio polls the append first, which writes the record and waits for its sync.)
    assert!(gave_up.is_err(), "a sync finished within a zero timeout");
    let next = rt
        .block_on(topic.append_async(&NewRecord::new(b"next".to_vec())))
        .unwrap();
    assert_eq!(next, Offset(1), "the dropped append kept its offset");
    topic.close().unwrap();
    // After a close (which stops the committer) an async append starts a new one.
    let again = rt
        .block_on(topic.append_async(&NewRecord::new(b"again".to_vec())))
        .unwrap();
    assert_eq!(again, Offset(2));
    let acked = [
        (Offset(0), b"given up".to_vec()),
        (Offset(1), b"next".to_vec()),
        (Offset(2), b"again".to_vec()),
    ];
    assert_on_disk(dir.path(), &acked);
    store.close().unwrap();
    assert_on_disk(dir.path(), &acked);
}

/// Child of `a_failed_sync_fails_the_waiting_futures` (does nothing unless
/// `TRAILKEEP_ASYNC_POISON_CHILD` names a directory): runs with the third fdatasync
/// failing, and checks what the futures return.
#[test]
fn async_poison_child() {
    let Ok(dir) = std::env::var("TRAILKEEP_ASYNC_POISON_CHILD") else {
        return;
    };
    let store = Store::builder(&dir).durability(Durability::Always).open().unwrap();
    let topic = store
        .create_topic(TOPIC, TopicConfig::default().tamper_evidence(false))
        .unwrap();
    let results = runtime().block_on(async {
        let handles: Vec<_> = (0..8)
            .map(|task| {
                let topic = topic.clone();
                tokio::spawn(async move {
                    let mut results = Vec::new();
                    for seq in 0..20 {
                        let v = value(task, seq);
                        let r = topic.append_async(&NewRecord::new(v.clone())).await;
                        let failed = r.is_err();
                        results.push(r.map(|o| (o, v)));
                        if failed {
                            break;
                        }
                    }
                    results
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.unwrap());
        }
        all
    });
    let failures: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert_eq!(failures.len(), 8, "every task ends with an error: {failures:?}");
    for e in &failures {
        let Error::Poisoned { cause, .. } = e else {
            panic!("unexpected error {e}")
        };
        assert!(cause.contains("fdatasync"), "unexpected error {e}");
    }
    let mut acked: Vec<(Offset, Vec<u8>)> = results.into_iter().filter_map(Result::ok).collect();
    acked.sort();
    drop((topic, store));
    // After the failed sync, a new instance recovers every acknowledged record.
    let store = Store::open(&dir).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    topic.recover().unwrap();
    for (offset, v) in &acked {
        assert_eq!(&topic.read(*offset).unwrap().value, v, "offset {offset}");
    }
    println!("POISON-CHILD-OK {} acknowledged", acked.len());
}

#[cfg(feature = "failpoints")]
#[test]
fn a_failed_sync_fails_the_waiting_futures() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "async_poison_child", "--nocapture", "--test-threads=1"])
        .env("TRAILKEEP_ASYNC_POISON_CHILD", dir.path())
        .env("TRAILKEEP_FAILPOINT_ERROR", "wal.sync:3")
        .env_remove("TRAILKEEP_FAILPOINT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("POISON-CHILD-OK"),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
