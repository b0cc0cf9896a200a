//! The workloads on trailkeep.

use std::ops::ControlFlow;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::data::{Dataset, Rng};
use super::{dir_bytes, BenchResult};
use crate::{
    Compression, ConsumerConfig, Durability, HeaderList, NewRecord, Offset, RecordFields, Store, Topic, TopicConfig,
};

pub(crate) const TOPIC: &str = "bench";

fn fields(data: &Dataset, i: usize) -> RecordFields<'_> {
    RecordFields {
        event_time_us: Some(data.time_us(i)),
        key: Some(data.key(i)),
        headers: HeaderList::Owned(&[]),
        value: data.value(i),
    }
}

fn open(dir: &Path, durability: Durability) -> BenchResult<Store> {
    Ok(Store::builder(dir).durability(durability).open()?)
}

/// Takes the topic's append lock before the timed part, as the baselines open their
/// database or file before theirs: the first append would otherwise do it — recovery of
/// the active segment and, with tamper evidence, creating the signing key and the tree
/// file, each with its fsyncs (~10 ms on this machine's disk, against ~110 ms for a
/// million buffered appends).
fn ready_to_append(topic: &Topic) -> BenchResult<()> {
    topic.recover()?;
    Ok(())
}

/// Times of one buffered append run.
pub(crate) struct AppendTimes {
    /// Until the last append returned.
    pub appends: Duration,
    /// Until the store was closed too: the tree thread has hashed every record and signed
    /// its final checkpoint, and the log is synced.
    pub with_close: Duration,
}

/// Appends the first `n` events in batches of `batch` under [`Durability::Buffered`].
pub(crate) fn append_batches(
    dir: &Path,
    data: &Dataset,
    n: usize,
    batch: usize,
    compression: Compression,
    tamper_evidence: bool,
) -> BenchResult<AppendTimes> {
    let store = open(dir, Durability::Buffered)?;
    let config = TopicConfig::default()
        .compression(compression)
        .tamper_evidence(tamper_evidence);
    let topic = store.create_topic(TOPIC, config)?;
    ready_to_append(&topic)?;
    let mut buf: Vec<RecordFields<'_>> = Vec::with_capacity(batch);
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        buf.clear();
        buf.extend((i..end).map(|j| fields(data, j)));
        topic.append_fields(&buf)?;
        i = end;
    }
    let appends = started.elapsed();
    drop(topic);
    store.close()?;
    Ok(AppendTimes {
        appends,
        with_close: started.elapsed(),
    })
}

/// Reads every record with checksum verification (zero-copy scan), touching each value.
/// Returns (time, records seen). The store is opened before timing starts.
pub(crate) fn replay(dir: &Path) -> BenchResult<(Duration, u64)> {
    let store = open(dir, Durability::Buffered)?;
    let topic = store.topic(TOPIC)?;
    let started = Instant::now();
    let mut count = 0u64;
    let mut bytes = 0usize;
    topic.scan(topic.start_offset(), |r| {
        count += 1;
        bytes += r.fields.value.len() + usize::from(r.fields.value.first().copied().unwrap_or(0));
        ControlFlow::Continue(())
    })?;
    let took = started.elapsed();
    std::hint::black_box(bytes);
    Ok((took, count))
}

/// Bytes of the topic's files.
pub(crate) fn topic_bytes(dir: &Path) -> u64 {
    dir_bytes(&dir.join(crate::store::TOPICS_DIR).join(TOPIC))
}

/// A topic for the seek workload: appended in batches of 10 so append times vary.
/// Returns the append time of every record.
pub(crate) fn build_seek_topic(dir: &Path, data: &Dataset) -> BenchResult<Vec<u64>> {
    let store = open(dir, Durability::Buffered)?;
    let topic = store.create_topic(TOPIC, TopicConfig::default())?;
    let mut buf = Vec::with_capacity(10);
    for start in (0..data.len()).step_by(10) {
        buf.clear();
        buf.extend((start..(start + 10).min(data.len())).map(|j| fields(data, j)));
        topic.append_fields(&buf)?;
    }
    let mut times = Vec::with_capacity(data.len());
    topic.scan(Offset(0), |r| {
        times.push(r.timestamp_us);
        ControlFlow::Continue(())
    })?;
    store.close()?;
    Ok(times)
}

/// Seeks to each of `targets` (existing append times); returns each seek's duration.
pub(crate) fn seeks(dir: &Path, targets: &[u64]) -> BenchResult<Vec<Duration>> {
    let store = open(dir, Durability::Buffered)?;
    let topic = store.topic(TOPIC)?;
    let mut out = Vec::with_capacity(targets.len());
    let mut found = 0u64;
    for &t in targets {
        let started = Instant::now();
        let hit = topic.seek_time(t)?;
        out.push(started.elapsed());
        found += u64::from(hit.is_some());
    }
    if found != targets.len() as u64 {
        return Err(super::fail(format!(
            "trailkeep seek_time found {found} of {} existing times",
            targets.len()
        )));
    }
    Ok(out)
}

/// `writers` threads append `n` records in total, one durable (fsync'd, group commit)
/// `append` call per record. Returns the time until the last append returned.
pub(crate) fn durable(dir: &Path, data: &Dataset, n: usize, writers: usize) -> BenchResult<Duration> {
    durable_with(dir, data, n, |topic, records| {
        let barrier = Barrier::new(writers + 1);
        std::thread::scope(|s| -> BenchResult<Duration> {
            let handles: Vec<_> = (0..writers)
                .map(|w| {
                    let (records, barrier) = (&records, &barrier);
                    s.spawn(move || -> crate::Result<()> {
                        barrier.wait();
                        for r in records.iter().skip(w).step_by(writers) {
                            topic.append(r)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            barrier.wait();
            let started = Instant::now();
            for h in handles {
                h.join().map_err(|_| super::fail("a writer thread panicked"))??;
            }
            Ok(started.elapsed())
        })
    })
}

/// As [`durable`], from `writers` async tasks (`append_async`) on a tokio runtime with
/// one thread per core.
pub(crate) fn durable_async(dir: &Path, data: &Dataset, n: usize, writers: usize) -> BenchResult<Duration> {
    durable_with(dir, data, n, |topic, records| {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .build()
            .map_err(|e| super::fail(format!("cannot start a tokio runtime: {e}")))?;
        let records = Arc::new(records);
        runtime.block_on(async {
            let started = Instant::now();
            let tasks: Vec<tokio::task::JoinHandle<crate::Result<()>>> = (0..writers)
                .map(|w| {
                    let (topic, records) = (topic.clone(), Arc::clone(&records));
                    tokio::spawn(async move {
                        for r in records.iter().skip(w).step_by(writers) {
                            topic.append_async(r).await?;
                        }
                        Ok(())
                    })
                })
                .collect();
            for t in tasks {
                t.await.map_err(|_| super::fail("a writer task panicked"))??;
            }
            Ok(started.elapsed())
        })
    })
}

/// Opens a durable store, prepares `n` records, times `run` on them, checks the count.
fn durable_with(
    dir: &Path,
    data: &Dataset,
    n: usize,
    run: impl FnOnce(&Topic, Vec<NewRecord>) -> BenchResult<Duration>,
) -> BenchResult<Duration> {
    let store = open(dir, Durability::Always)?;
    let topic = store.create_topic(TOPIC, TopicConfig::default())?;
    ready_to_append(&topic)?;
    let records: Vec<NewRecord> = (0..n)
        .map(|i| {
            NewRecord::new(data.value(i % data.len()))
                .with_key(data.key(i % data.len()))
                .with_event_time_us(data.time_us(i % data.len()))
        })
        .collect();
    let took = run(&topic, records)?;
    if topic.end_offset() != Offset(n as u64) {
        return Err(super::fail("durable append lost records"));
    }
    store.close()?;
    Ok(took)
}

/// A topic of at least `segments` segments (tiny segment size); returns their count.
pub(crate) fn build_segments(dir: &Path, data: &Dataset, segments: usize) -> BenchResult<usize> {
    let store = open(dir, Durability::Buffered)?;
    let topic = store.create_topic(TOPIC, TopicConfig::default().segment_bytes(4096))?;
    let mut i = 0usize;
    loop {
        let batch: Vec<RecordFields<'_>> = (0..4).map(|k| fields(data, (i + k) % data.len())).collect();
        topic.append_fields(&batch)?;
        i += 4;
        if i.is_multiple_of(400) {
            let have = topic.stats()?.segments;
            if have >= segments {
                store.close()?;
                return Ok(have);
            }
        }
    }
}

/// Opens the store, the topic, reads the end offset and the last record.
pub(crate) fn open_and_read_last(dir: &Path) -> BenchResult<Duration> {
    let started = Instant::now();
    let store = open(dir, Durability::Always)?;
    let topic = store.topic(TOPIC)?;
    let end = topic.end_offset();
    let last = topic.read(Offset(end.0 - 1))?;
    let took = started.elapsed();
    std::hint::black_box(last);
    drop(topic);
    store.close()?;
    Ok(took)
}

/// One thread appends `n` records durably, one by one; an in-process consumer polls.
/// Returns each record's latency from the start of its `append` call to its delivery.
pub(crate) fn consumer_latency(dir: &Path, data: &Dataset, n: usize) -> BenchResult<Vec<Duration>> {
    let store = open(dir, Durability::Always)?;
    let topic = store.create_topic(TOPIC, TopicConfig::default())?;
    ready_to_append(&topic)?;
    let mut consumer = topic.consumer("bench", ConsumerConfig::default())?;
    let epoch = Instant::now();
    let ready = Arc::new(Barrier::new(2));
    let reader = {
        let ready = Arc::clone(&ready);
        std::thread::spawn(move || -> crate::Result<Vec<Duration>> {
            let mut latencies = Vec::with_capacity(n);
            ready.wait();
            while latencies.len() < n {
                for r in consumer.poll(1000, Duration::from_secs(5))? {
                    let now = epoch.elapsed();
                    let sent = r
                        .key
                        .as_deref()
                        .and_then(|k| <[u8; 8]>::try_from(k).ok())
                        .map_or(0, u64::from_le_bytes);
                    latencies.push(now.saturating_sub(Duration::from_nanos(sent)));
                }
            }
            Ok(latencies)
        })
    };
    ready.wait();
    let mut result = Ok(());
    for i in 0..n {
        let sent = epoch.elapsed().as_nanos() as u64;
        let record = NewRecord::new(data.value(i % data.len())).with_key(sent.to_le_bytes().to_vec());
        if let Err(e) = topic.append(&record) {
            result = Err(e);
            break;
        }
    }
    result?;
    let latencies = reader
        .join()
        .map_err(|_| super::fail("the consumer thread panicked"))??;
    store.close()?;
    Ok(latencies)
}

/// Memory probe: appends the first `n` events (streamed, batches of 1,000, buffered) and
/// replays them.
pub(crate) fn memory_probe(dir: &Path, n: usize, seed: u64) -> BenchResult<()> {
    let store = open(dir, Durability::Buffered)?;
    let topic: Topic = store.create_topic(TOPIC, TopicConfig::default())?;
    super::data::for_each_streamed_batch(n, seed, 1000, |batch| {
        let f: Vec<RecordFields<'_>> = batch
            .iter()
            .map(|(t, k, v)| RecordFields {
                event_time_us: Some(*t),
                key: Some(&k[..]),
                headers: HeaderList::Owned(&[]),
                value: v,
            })
            .collect();
        topic.append_fields(&f)?;
        Ok(())
    })?;
    let mut count = 0u64;
    topic.scan(Offset(0), |_| {
        count += 1;
        ControlFlow::Continue(())
    })?;
    drop(topic);
    store.close()?;
    if count != n as u64 {
        return Err(super::fail("memory probe replay count mismatch"));
    }
    Ok(())
}

/// Random existing append times to seek to.
pub(crate) fn pick_targets(times: &[u64], count: usize, seed: u64) -> Vec<u64> {
    let mut rng = Rng::new(seed ^ 0x5EEC);
    (0..count)
        .map(|_| times[rng.below(times.len() as u64) as usize])
        .collect()
}
