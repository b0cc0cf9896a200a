//! The workloads on a JSON-lines file: what an application would do without a store.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use super::data::Dataset;
use super::{fail, BenchResult};
use crate::cli::io_err;

pub(crate) fn path(dir: &Path) -> PathBuf {
    dir.join("bench.jsonl")
}

/// Writes the first `n` events as lines through a buffered writer; with `sync_every`,
/// flushes and fdatasyncs after every that many lines. Returns the time until the last
/// line was handed to the OS (and synced, when syncing).
pub(crate) fn append(dir: &Path, data: &Dataset, n: usize, sync_every: Option<usize>) -> BenchResult<Duration> {
    let file = File::create(path(dir)).map_err(io_err("creating the JSON-lines file"))?;
    let started = Instant::now();
    let mut w = BufWriter::with_capacity(1 << 16, file);
    for i in 0..n {
        w.write_all(data.value(i)).map_err(io_err("writing JSON lines"))?;
        w.write_all(b"\n").map_err(io_err("writing JSON lines"))?;
        if let Some(every) = sync_every {
            if (i + 1) % every == 0 || i + 1 == n {
                w.flush().map_err(io_err("writing JSON lines"))?;
                w.get_ref().sync_data().map_err(io_err("syncing JSON lines"))?;
            }
        }
    }
    w.flush().map_err(io_err("writing JSON lines"))?;
    Ok(started.elapsed())
}

/// Reads every line and parses it with serde_json. Returns (time, lines).
pub(crate) fn replay(dir: &Path) -> BenchResult<(Duration, u64)> {
    let file = File::open(path(dir)).map_err(io_err("opening the JSON-lines file"))?;
    let started = Instant::now();
    let mut r = BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::with_capacity(1024);
    let mut count = 0u64;
    loop {
        line.clear();
        if r.read_until(b'\n', &mut line).map_err(io_err("reading JSON lines"))? == 0 {
            break;
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| fail(format!("JSON line {count}: {e}")))?;
        std::hint::black_box(&value);
        count += 1;
    }
    Ok((started.elapsed(), count))
}

/// `writers` threads append `n` lines in total to one shared file, each line written and
/// fdatasync'd before the call returns (per-record durability, no group commit).
pub(crate) fn durable(dir: &Path, data: &Dataset, n: usize, writers: usize) -> BenchResult<Duration> {
    let file = File::create(path(dir)).map_err(io_err("creating the JSON-lines file"))?;
    let shared = Mutex::new(file);
    let barrier = Barrier::new(writers + 1);
    std::thread::scope(|s| -> BenchResult<Duration> {
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (shared, barrier) = (&shared, &barrier);
                s.spawn(move || -> BenchResult<()> {
                    let mut line = Vec::with_capacity(512);
                    barrier.wait();
                    for i in (w..n).step_by(writers) {
                        line.clear();
                        line.extend_from_slice(data.value(i % data.len()));
                        line.push(b'\n');
                        let mut f = shared.lock().map_err(|_| fail("JSON-lines mutex poisoned"))?;
                        f.write_all(&line).map_err(io_err("writing JSON lines"))?;
                        f.sync_data().map_err(io_err("syncing JSON lines"))?;
                    }
                    Ok(())
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        for h in handles {
            h.join().map_err(|_| fail("a writer thread panicked"))??;
        }
        Ok(started.elapsed())
    })
}

/// Memory probe: writes the first `n` events (streamed, no sync) and parses them back.
pub(crate) fn memory_probe(dir: &Path, n: usize, seed: u64) -> BenchResult<()> {
    let file = File::create(path(dir)).map_err(io_err("creating the JSON-lines file"))?;
    let mut w = BufWriter::with_capacity(1 << 16, file);
    super::data::for_each_streamed_batch(n, seed, 1000, |batch| {
        for (_, _, v) in batch {
            w.write_all(v).map_err(io_err("writing JSON lines"))?;
            w.write_all(b"\n").map_err(io_err("writing JSON lines"))?;
        }
        Ok(())
    })?;
    w.flush().map_err(io_err("writing JSON lines"))?;
    drop(w);
    let (_, lines) = replay(dir)?;
    if lines != n as u64 {
        return Err(fail("memory probe replay count mismatch"));
    }
    Ok(())
}
