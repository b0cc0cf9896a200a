//! The workloads on SQLite (rusqlite, bundled library, WAL).

use std::path::{Path, PathBuf};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};

use super::data::{Dataset, Rng};
use super::{fail, BenchResult};
use crate::cli::CliError;

const INSERT: &str = "INSERT INTO t (ts, key, value) VALUES (?1, ?2, ?3)";

/// `synchronous` settings PRODUCT.md names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sync {
    Off,
    Normal,
    Full,
}

impl Sync {
    fn pragma(self) -> &'static str {
        match self {
            Sync::Off => "OFF",
            Sync::Normal => "NORMAL",
            Sync::Full => "FULL",
        }
    }
}

/// How 64 concurrent writers reach SQLite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SqliteWriters {
    /// One connection shared behind a mutex (no busy waits; the faster option here).
    Shared,
    /// One connection per thread with a busy timeout (SQLite's own locking).
    PerThread,
}

pub(crate) fn sq(e: rusqlite::Error) -> CliError {
    fail(format!("sqlite: {e}"))
}

pub(crate) fn db_path(dir: &Path) -> PathBuf {
    dir.join("bench.db")
}

fn connect(path: &Path, sync: Sync) -> BenchResult<Connection> {
    let conn = Connection::open(path).map_err(sq)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(sq)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(fail(format!("sqlite refused WAL mode (got {mode})")));
    }
    conn.execute_batch(&format!("PRAGMA synchronous={}", sync.pragma()))
        .map_err(sq)?;
    conn.busy_timeout(Duration::from_secs(60)).map_err(sq)?;
    Ok(conn)
}

fn create(path: &Path, sync: Sync) -> BenchResult<Connection> {
    let conn = connect(path, sync)?;
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key TEXT, value BLOB NOT NULL);
         CREATE INDEX t_ts ON t (ts);",
    )
    .map_err(sq)?;
    Ok(conn)
}

/// Inserts the first `n` events, `batch` per transaction. Returns the time until the last
/// commit returned.
pub(crate) fn append_batches(dir: &Path, data: &Dataset, n: usize, batch: usize, sync: Sync) -> BenchResult<Duration> {
    let mut conn = create(&db_path(dir), sync)?;
    let started = Instant::now();
    let mut i = 0;
    while i < n {
        let end = (i + batch).min(n);
        let tx = conn.transaction().map_err(sq)?;
        {
            let mut stmt = tx.prepare_cached(INSERT).map_err(sq)?;
            for j in i..end {
                stmt.execute(params![data.time_us(j), data.key_str(j), data.value(j)])
                    .map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)?;
        i = end;
    }
    let took = started.elapsed();
    conn.close().map_err(|(_, e)| sq(e))?;
    Ok(took)
}

/// Bytes of the database files (after close, which checkpoints the WAL).
pub(crate) fn file_bytes(dir: &Path) -> u64 {
    super::dir_bytes(dir)
}

/// Reads every row, touching the blob. Returns (time, rows).
pub(crate) fn replay(dir: &Path) -> BenchResult<(Duration, u64)> {
    let conn = connect(&db_path(dir), Sync::Normal)?;
    let mut stmt = conn.prepare("SELECT id, ts, key, value FROM t").map_err(sq)?;
    let started = Instant::now();
    let mut rows = stmt.query([]).map_err(sq)?;
    let mut count = 0u64;
    let mut bytes = 0usize;
    while let Some(row) = rows.next().map_err(sq)? {
        let id: i64 = row.get(0).map_err(sq)?;
        let ts: i64 = row.get(1).map_err(sq)?;
        let key = row.get_ref(2).map_err(sq)?.as_str().map_err(|e| sq(e.into()))?;
        let value = row.get_ref(3).map_err(sq)?.as_blob().map_err(|e| sq(e.into()))?;
        bytes += value.len() + usize::from(value.first().copied().unwrap_or(0)) + key.len();
        std::hint::black_box((id, ts));
        count += 1;
    }
    let took = started.elapsed();
    std::hint::black_box(bytes);
    Ok((took, count))
}

/// Random existing event times to seek to (each row has its own).
pub(crate) fn pick_targets(data: &Dataset, count: usize, seed: u64) -> Vec<i64> {
    let mut rng = Rng::new(seed ^ 0x5EEC);
    (0..count)
        .map(|_| data.time_us(rng.below(data.len() as u64) as usize))
        .collect()
}

/// `SELECT id FROM t WHERE ts >= ? ORDER BY ts LIMIT 1` for each target; each duration.
pub(crate) fn seeks(dir: &Path, targets: &[i64]) -> BenchResult<Vec<Duration>> {
    let conn = connect(&db_path(dir), Sync::Normal)?;
    let mut stmt = conn
        .prepare("SELECT id FROM t WHERE ts >= ?1 ORDER BY ts LIMIT 1")
        .map_err(sq)?;
    let mut out = Vec::with_capacity(targets.len());
    for &t in targets {
        let started = Instant::now();
        let id: i64 = stmt.query_row([t], |r| r.get(0)).map_err(sq)?;
        out.push(started.elapsed());
        std::hint::black_box(id);
    }
    Ok(out)
}

/// `writers` threads insert `n` rows in total, one transaction (autocommit) per row.
pub(crate) fn durable(
    dir: &Path,
    data: &Dataset,
    n: usize,
    writers: usize,
    sync: Sync,
    mode: SqliteWriters,
) -> BenchResult<Duration> {
    let path = db_path(dir);
    let conn = create(&path, sync)?;
    let barrier = Barrier::new(writers + 1);
    let row = |i: usize| {
        (
            data.time_us(i % data.len()),
            data.key_str(i % data.len()),
            data.value(i % data.len()),
        )
    };
    let took = match mode {
        SqliteWriters::Shared => {
            let shared = Mutex::new(conn);
            std::thread::scope(|s| -> BenchResult<Duration> {
                let handles: Vec<_> = (0..writers)
                    .map(|w| {
                        let (shared, barrier, row) = (&shared, &barrier, &row);
                        s.spawn(move || -> BenchResult<()> {
                            barrier.wait();
                            for i in (w..n).step_by(writers) {
                                let (ts, key, value) = row(i);
                                let conn = shared.lock().map_err(|_| fail("sqlite mutex poisoned"))?;
                                conn.prepare_cached(INSERT)
                                    .and_then(|mut st| st.execute(params![ts, key, value]))
                                    .map_err(sq)?;
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
            })?
        }
        SqliteWriters::PerThread => {
            drop(conn);
            std::thread::scope(|s| -> BenchResult<Duration> {
                let handles: Vec<_> = (0..writers)
                    .map(|w| {
                        let (path, barrier, row) = (&path, &barrier, &row);
                        s.spawn(move || -> BenchResult<()> {
                            let conn = connect(path, sync);
                            barrier.wait();
                            let conn = conn?;
                            let mut stmt = conn.prepare(INSERT).map_err(sq)?;
                            for i in (w..n).step_by(writers) {
                                let (ts, key, value) = row(i);
                                stmt.execute(params![ts, key, value]).map_err(sq)?;
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
            })?
        }
    };
    let check = connect(&path, sync)?;
    let rows: i64 = check
        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
        .map_err(sq)?;
    if rows != n as i64 {
        return Err(fail(format!("sqlite durable insert: {rows} rows, expected {n}")));
    }
    Ok(took)
}

/// Memory probe: inserts the first `n` events (streamed, 1,000 per transaction,
/// synchronous=OFF) and reads them all back.
pub(crate) fn memory_probe(dir: &Path, n: usize, seed: u64) -> BenchResult<()> {
    let mut conn = create(&db_path(dir), Sync::Off)?;
    super::data::for_each_streamed_batch(n, seed, 1000, |batch| {
        let tx = conn.transaction().map_err(sq)?;
        {
            let mut stmt = tx.prepare_cached(INSERT).map_err(sq)?;
            for (t, k, v) in batch {
                let key = std::str::from_utf8(k).unwrap_or("");
                stmt.execute(params![t, key, v]).map_err(sq)?;
            }
        }
        tx.commit().map_err(sq)
    })?;
    conn.close().map_err(|(_, e)| sq(e))?;
    let (_, rows) = replay(dir)?;
    if rows != n as u64 {
        return Err(fail("memory probe replay count mismatch"));
    }
    Ok(())
}
