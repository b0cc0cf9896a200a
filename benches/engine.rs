//! Engine benchmarks (criterion). Every record carries a 256-byte JSON-like value.
//!
//! ```text
//! cargo bench --bench engine                 # full run, a few minutes
//! cargo bench --bench engine -- --quick      # smoke run
//! cargo bench --bench engine -- replay/      # one group
//! ```
//!
//! Setup (stores, prebuilt topics, probe lists) happens outside the timed closures; note
//! that criterion runs every group's setup even when a filter skips its benchmarks.
//! Stores live in the default temporary directory, so fsync costs are the real disk's.

use std::hint::black_box;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::{Rng, SeedableRng};
use trailkeep::{Durability, NewRecord, Offset, Store, Topic, TopicConfig};

const VALUE_BYTES: usize = 256;
const REPLAY_RECORDS: u64 = 1_000_000;
const SEEK_PROBES: usize = 10_000;
const OPEN_SEGMENTS: usize = 1_000;
/// Appends in the benches below never hold more than this per topic (retention trims it).
const BENCH_RETENTION_BYTES: u64 = 1 << 30;

/// A JSON-like value of exactly [`VALUE_BYTES`] bytes.
fn json_value(i: u64) -> Vec<u8> {
    let mut v = format!(
        r#"{{"seq":{i},"agent":"planner-7","kind":"tool_call","tool":"web.search","trace":"4bf92f3577b34da6","args":{{"q":"quarterly report"}},"pad":""#
    )
    .into_bytes();
    let close = br#""}"#;
    while v.len() + close.len() < VALUE_BYTES {
        v.push(b'a' + (v.len() % 26) as u8);
    }
    v.extend_from_slice(close);
    assert_eq!(v.len(), VALUE_BYTES);
    v
}

fn records(n: u64) -> Vec<NewRecord> {
    (0..n).map(|i| NewRecord::new(json_value(i))).collect()
}

fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("trailkeep-bench-")
        .tempdir()
        .expect("temp dir")
}

fn open_topic(dir: &Path, durability: Durability, config: TopicConfig) -> (Store, Topic) {
    let store = Store::builder(dir).durability(durability).open().expect("open store");
    let topic = store.create_topic("bench", config).expect("create topic");
    (store, topic)
}

fn append_config() -> TopicConfig {
    TopicConfig::default().retention_bytes(BENCH_RETENTION_BYTES)
}

// ---------------------------------------------------------------------------------------
// append
// ---------------------------------------------------------------------------------------

fn bench_append(c: &mut Criterion) {
    let cases: [(&str, Durability, u64, bool); 5] = [
        ("buffered", Durability::Buffered, 1, false),
        ("buffered", Durability::Buffered, 1000, false),
        ("interval", Durability::IntervalMs(10), 1000, false),
        ("always", Durability::Always, 1, true),
        ("always", Durability::Always, 1000, true),
    ];
    let mut group = c.benchmark_group("append");
    for (mode, durability, batch, fsync_bound) in cases {
        if fsync_bound {
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(3));
        } else {
            group
                .sample_size(20)
                .warm_up_time(Duration::from_secs(1))
                .measurement_time(Duration::from_secs(4));
        }
        group.throughput(Throughput::Elements(batch));
        let dir = temp_dir();
        let (store, topic) = open_topic(dir.path(), durability, append_config());
        let id = BenchmarkId::new(mode, format!("batch{batch}"));
        if batch == 1 {
            let record = NewRecord::new(json_value(0));
            group.bench_function(id, |b| b.iter(|| topic.append(black_box(&record)).expect("append")));
        } else {
            let batch = records(batch);
            group.bench_function(id, |b| {
                b.iter(|| topic.append_batch(black_box(&batch)).expect("append"))
            });
        }
        drop(topic);
        store.close().expect("close");
    }
    group.finish();
}

/// A group of durable single-record appends from many writers: few, short samples (each
/// waits for fdatasyncs), one record an element.
fn durable_writers_group<'a>(
    c: &'a mut Criterion,
    name: &str,
) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group
}

/// N threads each append single records under `Durability::Always`: group commit lets them
/// share fsyncs. One iteration is one record; the time is from release to the last join.
fn bench_append_threads(c: &mut Criterion) {
    let mut group = durable_writers_group(c, "append/always/threads");
    for threads in [1usize, 8, 64] {
        let dir = temp_dir();
        let (store, topic) = open_topic(dir.path(), Durability::Always, append_config());
        let record = NewRecord::new(json_value(0));
        group.bench_function(BenchmarkId::from_parameter(threads), |b| {
            b.iter_custom(|iters| {
                let per_thread = iters.div_ceil(threads as u64);
                let start = Barrier::new(threads + 1);
                std::thread::scope(|s| {
                    let handles: Vec<_> = (0..threads)
                        .map(|t| {
                            let (topic, record, start) = (&topic, &record, &start);
                            // The last thread takes the remainder so the total is `iters`.
                            let n = per_thread.min(iters.saturating_sub(per_thread * t as u64));
                            s.spawn(move || {
                                start.wait();
                                for _ in 0..n {
                                    topic.append(record).expect("append");
                                }
                            })
                        })
                        .collect();
                    start.wait();
                    let began = Instant::now();
                    for h in handles {
                        h.join().expect("appender thread");
                    }
                    began.elapsed()
                })
            });
        });
        drop(topic);
        store.close().expect("close");
    }
    group.finish();
}

/// N async tasks on a tokio runtime of 2 threads each append single records with
/// `append_async` under `Durability::Always` (the topic's committer thread syncs for
/// them): side by side with `append/always/threads`. One iteration is one record.
fn bench_append_tasks(c: &mut Criterion) {
    let mut group = durable_writers_group(c, "append/always/tasks");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    for tasks in [1usize, 8, 64] {
        let dir = temp_dir();
        let (store, topic) = open_topic(dir.path(), Durability::Always, append_config());
        let record = std::sync::Arc::new(NewRecord::new(json_value(0)));
        group.bench_function(BenchmarkId::from_parameter(tasks), |b| {
            b.iter_custom(|iters| {
                let per_task = iters.div_ceil(tasks as u64);
                runtime.block_on(async {
                    let began = Instant::now();
                    let handles: Vec<_> = (0..tasks)
                        .map(|t| {
                            let (topic, record) = (topic.clone(), std::sync::Arc::clone(&record));
                            // The last task takes the remainder so the total is `iters`.
                            let n = per_task.min(iters.saturating_sub(per_task * t as u64));
                            tokio::spawn(async move {
                                for _ in 0..n {
                                    topic.append_async(&record).await.expect("append");
                                }
                            })
                        })
                        .collect();
                    for h in handles {
                        h.await.expect("appender task");
                    }
                    began.elapsed()
                })
            });
        });
        drop(topic);
        store.close().expect("close");
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// replay and seek
// ---------------------------------------------------------------------------------------

struct Prebuilt {
    _dir: tempfile::TempDir,
    _store: Store,
    topic: Topic,
}

/// A 1M-record topic appended in batches of `batch`, reopened read-only, built once.
fn prebuilt(batch: u64) -> &'static Prebuilt {
    static BATCH_1000: OnceLock<Prebuilt> = OnceLock::new();
    static BATCH_1: OnceLock<Prebuilt> = OnceLock::new();
    let cell = if batch == 1 { &BATCH_1 } else { &BATCH_1000 };
    cell.get_or_init(|| {
        let dir = temp_dir();
        {
            let (store, topic) = open_topic(dir.path(), Durability::Buffered, TopicConfig::default());
            if batch == 1 {
                for i in 0..REPLAY_RECORDS {
                    topic.append(&NewRecord::new(json_value(i))).expect("append");
                }
            } else {
                let batch = records(batch);
                for _ in 0..REPLAY_RECORDS / batch.len() as u64 {
                    topic.append_batch(&batch).expect("append");
                }
            }
            drop(topic);
            store.close().expect("close");
        }
        let store = Store::open(dir.path()).expect("reopen");
        let topic = store.topic("bench").expect("topic");
        assert_eq!(topic.end_offset(), Offset(REPLAY_RECORDS));
        Prebuilt {
            _dir: dir,
            _store: store,
            topic,
        }
    })
}

fn bench_replay(c: &mut Criterion) {
    let topic = &prebuilt(1000).topic;
    let mut group = c.benchmark_group("replay");
    group.sample_size(10).measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(REPLAY_RECORDS));
    group.bench_function("scan", |b| {
        b.iter(|| {
            let mut bytes = 0usize;
            let end = topic
                .scan(Offset(0), |r| {
                    bytes += black_box(r.fields.value).len();
                    ControlFlow::Continue(())
                })
                .expect("scan");
            assert_eq!(end, Offset(REPLAY_RECORDS));
            bytes
        })
    });
    group.bench_function("iter", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for r in topic.iter(Offset(0)) {
                black_box(r.expect("iter"));
                n += 1;
            }
            assert_eq!(n, REPLAY_RECORDS);
        })
    });
    group.finish();
}

fn bench_seek_time(c: &mut Criterion) {
    let mut group = c.benchmark_group("seek_time");
    group.sample_size(20).measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Elements(SEEK_PROBES as u64));
    for batch in [1000u64, 1] {
        let topic = &prebuilt(batch).topic;
        let first = topic.read(Offset(0)).expect("first").timestamp_us;
        let last = topic.read(Offset(REPLAY_RECORDS - 1)).expect("last").timestamp_us;
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let probes: Vec<u64> = (0..SEEK_PROBES).map(|_| rng.gen_range(first..=last)).collect();
        group.bench_function(format!("batch{batch}"), |b| {
            b.iter(|| {
                for &ts in &probes {
                    black_box(topic.seek_time(ts).expect("seek_time").expect("a record at or after"));
                }
            })
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------
// open
// ---------------------------------------------------------------------------------------

fn bench_open(c: &mut Criterion) {
    let dir = temp_dir();
    {
        let config = TopicConfig::default().segment_bytes(4096);
        let (store, topic) = open_topic(dir.path(), Durability::Buffered, config);
        // 14 records of 256 bytes nearly fill a 4 KiB segment: every append rolls.
        // (stats() stats every segment file, so it is only asked now and then.)
        let batch = records(14);
        let segments = || topic.stats().expect("stats").segments;
        while segments() + 64 < OPEN_SEGMENTS {
            for _ in 0..32 {
                topic.append_batch(&batch).expect("append");
            }
        }
        while segments() < OPEN_SEGMENTS {
            topic.append_batch(&batch).expect("append");
        }
        drop(topic);
        store.close().expect("close");
    }
    let mut group = c.benchmark_group("open");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(1));
    group.bench_function(format!("{OPEN_SEGMENTS}_segments"), |b| {
        b.iter_with_large_drop(|| {
            let store = Store::open(dir.path()).expect("open");
            let topic = store.topic("bench").expect("topic");
            black_box(topic.end_offset());
            (topic, store)
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_append,
    bench_append_threads,
    bench_append_tasks,
    bench_replay,
    bench_seek_time,
    bench_open
);
criterion_main!(benches);
