//! Crash tests with real processes killed by SIGKILL: after every crash the store reopens,
//! every acknowledged record is there byte for byte, offsets are dense from the start
//! offset, nothing reads as corrupt, and the topic takes appends again.
//!
//! (a) The `trailkeep append --durability always --print-offsets` CLI, fed through a pipe by
//!     a thread, is killed at a random moment; each printed offset is an acknowledgement of
//!     the line fed in that position. `CRASH_ROUNDS` sets the number of rounds (20).
//! (b) Named crash points (feature `failpoints`, `TRAILKEEP_FAILPOINT=<name>:<n>`): this
//!     test binary re-runs itself as the appending child (test `failpoint_child`, which does
//!     nothing unless `TRAILKEEP_CRASH_CHILD` is set), with tiny segments and retention so
//!     that it rolls and deletes, and dies at the n-th time it reaches the point.
//! (c) Group commit: a child (test `threaded_child`) runs 16 threads of durable
//!     single-record appends and is killed at a random moment; each thread's printed
//!     acknowledgements must be there, and every record there must be one a thread wrote.
//!     The same with 16 async tasks on a 2-thread runtime (`async_child`, `append_async`).
//!     `CRASH_ROUNDS` sets the number of kills of each (6).
//!
//! (d) `IntervalMs`: a child that appends once and idles reaches a sync's crash point
//!     through the background syncer alone.
//!
//! Random choices come from one seed, printed at the start; `CRASH_SEED=<n>` replays it.
#![cfg(feature = "failpoints")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use trailkeep::{Durability, NewRecord, Offset, Record, Store, Topic, TopicConfig};

#[path = "support/files.rs"]
mod files;

const TOPIC: &str = "trail";
const CHILD_ENV: &str = "TRAILKEEP_CRASH_CHILD";

/// xorshift64*: small, seedable, good enough to pick sizes and moments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn seed(test: &str) -> u64 {
    let seed = match std::env::var("CRASH_SEED") {
        Ok(s) => s.parse().expect("CRASH_SEED must be a number"),
        Err(_) => {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        }
    };
    eprintln!("{test}: CRASH_SEED={seed}");
    seed
}

/// The value appended at `offset` by the failpoint child: a pure function of the offset,
/// so a record re-appended after a torn tail was cut must be the same bytes.
fn child_value(offset: u64) -> Vec<u8> {
    let pad = (offset * 7919 % 300) as usize;
    let mut v = format!("{{\"offset\":{offset},\"pad\":\"").into_bytes();
    v.extend((0..pad).map(|i| b'a' + ((offset as usize + i) % 26) as u8));
    v.extend_from_slice(b"\"}");
    v
}

fn child_config() -> TopicConfig {
    let config = TopicConfig::default().segment_bytes(4096);
    if std::env::var_os("CHILD_NO_RETENTION").is_some() {
        return config;
    }
    config.retention_bytes(12_000)
}

/// Opens the store read-only first (a reader's view must already be consistent), then takes
/// the append lock; checks density, values and the recovery report. Returns the topic.
fn verify(dir: &Path, acked: &[u64], value_of: &dyn Fn(u64) -> Option<Vec<u8>>, label: &str) -> (Store, Topic) {
    let store = Store::builder(dir).durability(Durability::Always).open().unwrap();
    let topic = match store.topic(TOPIC) {
        // Killed before the topic's settings were in place: nothing can have been acknowledged.
        Err(trailkeep::Error::NoSuchTopic(_)) if acked.is_empty() => store.create_topic(TOPIC, child_config()).unwrap(),
        other => other.unwrap_or_else(|e| panic!("{label}: opening the topic: {e}")),
    };
    let reader_end = topic.end_offset();
    let report = topic
        .recover()
        .unwrap_or_else(|e| panic!("{label}: recovery failed: {e}"));
    let start = topic.start_offset();
    let end = topic.end_offset();
    assert_eq!(report.end_offset, end, "{label}: {report:?}");
    assert!(
        reader_end <= end,
        "{label}: a reader saw {reader_end}, recovery kept {end}"
    );
    let active_len = std::fs::metadata(&report.segment).unwrap().len();
    assert_eq!(report.kept_bytes, active_len, "{label}: {report:?}");
    if let Some(&max) = acked.iter().max() {
        assert!(
            end.0 > max,
            "{label}: acknowledged offset {max} lost, end is {end} ({report:?})"
        );
    }
    let records: Vec<Record> = topic
        .iter(start)
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{label}: reading everything: {e}"));
    assert_eq!(
        records.len() as u64,
        end.0 - start.0,
        "{label}: records missing in [{start}, {end})"
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset.0, start.0 + i as u64, "{label}: offsets not dense");
        if let Some(want) = value_of(r.offset.0) {
            assert!(r.value == want, "{label}: offset {} holds other bytes", r.offset);
        }
    }
    for &o in acked.iter().filter(|&&o| o >= start.0) {
        let r = topic
            .read(Offset(o))
            .unwrap_or_else(|e| panic!("{label}: acknowledged {o}: {e}"));
        assert_eq!(Some(r.value), value_of(o), "{label}: acknowledged {o}");
    }
    (store, topic)
}

// ---------------------------------------------------------------- (b) failpoints

/// The appending child. Does nothing in a normal test run.
#[test]
fn failpoint_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let mut rng = Rng(std::env::var("CHILD_SEED").unwrap().parse().unwrap());
    let calls: u64 = std::env::var("CHILD_CALLS").unwrap().parse().unwrap();
    // Buffered: rolled segments are sealed on a background thread (a process kill keeps
    // what was written, so every acknowledged record must survive it too).
    let durability = if std::env::var_os("CHILD_BUFFERED").is_some() {
        Durability::Buffered
    } else {
        Durability::Always
    };
    let store = Store::builder(&dir).durability(durability).open().unwrap();
    let topic = match store.topic(TOPIC) {
        Ok(t) => t,
        Err(_) => store.create_topic(TOPIC, child_config()).unwrap(),
    };
    let out = std::io::stdout();
    for _ in 0..calls {
        let next = topic.end_offset().0;
        let count = if rng.below(3) == 0 { 1 + rng.below(6) } else { 1 };
        let batch: Vec<NewRecord> = (next..next + count).map(|o| NewRecord::new(child_value(o))).collect();
        let appended = topic.append_batch(&batch).unwrap();
        assert_eq!(appended.first, Offset(next));
        let mut out = out.lock();
        for o in appended.offsets() {
            writeln!(out, "ACK {o}").unwrap();
        }
        out.flush().unwrap();
    }
    store.close().unwrap();
}

/// Runs the child; returns the acknowledged offsets and whether it was killed.
fn run_child(dir: &Path, failpoint: Option<&str>, seed: u64, calls: u64) -> (Vec<u64>, bool) {
    run_child_with(dir, failpoint, seed, calls, &[])
}

/// As [`run_child`], with `env` set in the child (`CHILD_BUFFERED`, `CHILD_NO_RETENTION`).
fn run_child_with(dir: &Path, failpoint: Option<&str>, seed: u64, calls: u64, env: &[&str]) -> (Vec<u64>, bool) {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    for name in env {
        cmd.env(name, "1");
    }
    cmd.args(["--exact", "failpoint_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .env("CHILD_SEED", seed.to_string())
        .env("CHILD_CALLS", calls.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    match failpoint {
        Some(f) => cmd.env("TRAILKEEP_FAILPOINT", f),
        None => cmd.env_remove("TRAILKEEP_FAILPOINT"),
    };
    let output = cmd.output().unwrap();
    let acked = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("ACK ")?.parse().ok())
        .collect();
    let killed = output.status.signal() == Some(libc::SIGKILL);
    if !killed {
        assert!(
            output.status.success(),
            "child failed ({:?}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    (acked, killed)
}

#[test]
fn killed_at_every_crash_point_the_store_recovers_with_every_acknowledged_record() {
    let seed = seed("failpoints");
    let mut rng = Rng(seed);
    let points: &[(&str, &[u64])] = &[
        ("wal.after_sync", &[1, 4, 57]),
        ("roll.after_sync", &[1, 2, 6]),
        ("roll.after_index", &[1, 3]),
        ("roll.after_create", &[1, 5]),
        ("retention.after_delete", &[1, 2, 4]),
        // 1: the store marker, 2: topic.json, then index files at each roll.
        ("write_atomic.after_rename", &[1, 2, 3, 8]),
    ];
    for &(point, ns) in points {
        for &n in ns {
            let label = format!("{point}:{n} (CRASH_SEED={seed})");
            let dir = tempfile::tempdir().unwrap();
            let mut acked = Vec::new();
            // A first child may run to completion so that the crash hits a store with history.
            if rng.below(2) == 0 && !point.starts_with("write_atomic") {
                let (a, killed) = run_child(dir.path(), None, rng.next(), 20);
                assert!(!killed, "{label}: the child without a failpoint was killed");
                acked.extend(a);
            }
            let spec = format!("{point}:{n}");
            let (a, killed) = run_child(dir.path(), Some(&spec), rng.next(), 150);
            assert!(killed, "{label}: the child never reached the crash point");
            acked.extend(a);
            let value_of = |o| Some(child_value(o));
            let (store, topic) = verify(dir.path(), &acked, &value_of, &label);
            // The store takes appends again, in this process...
            let end = topic.end_offset().0;
            for o in end..end + 25 {
                assert_eq!(
                    topic.append(&NewRecord::new(child_value(o))).unwrap(),
                    Offset(o),
                    "{label}"
                );
                acked.push(o);
            }
            store.close().unwrap();
            // ...and in a child that runs to completion, rolling and deleting again.
            let (a, killed) = run_child(dir.path(), None, rng.next(), 60);
            assert!(!killed, "{label}: second child killed");
            acked.extend(a);
            let (store, _) = verify(dir.path(), &acked, &value_of, &format!("{label}, after a clean run"));
            store.close().unwrap();
        }
    }
}

#[test]
fn killed_during_a_background_seal_the_store_recovers_with_every_acknowledged_record() {
    let seed = seed("background-seal");
    let mut rng = Rng(seed);
    for (point, ns) in [
        ("roll.after_create", &[1u64, 3][..]),
        ("roll.after_sync", &[1, 4]),
        ("roll.after_index", &[2, 5]),
    ] {
        for &n in ns {
            let label = format!("buffered {point}:{n} (CRASH_SEED={seed})");
            let dir = tempfile::tempdir().unwrap();
            let (acked, killed) = run_child_with(
                dir.path(),
                Some(&format!("{point}:{n}")),
                rng.next(),
                150,
                &["CHILD_BUFFERED"],
            );
            assert!(killed, "{label}: the child never reached the crash point");
            let value_of = |o| Some(child_value(o));
            let (store, topic) = verify(dir.path(), &acked, &value_of, &label);
            let report = topic.last_recovery().unwrap();
            assert!(report.dropped_segments.is_empty(), "{label}: {report:?}");
            store.close().unwrap();
        }
    }
}

#[test]
fn killed_while_seals_wait_for_a_pause_the_store_recovers_and_seals_them() {
    // Buffered, no retention (which would seal before deleting): the child appends without
    // pausing, so background seals wait, and it is killed inside its 6th or 9th roll. Every
    // rolled segment at or above `sealed.offset` is then unsealed; recovery must read them
    // in full, seal them, and keep every acknowledged record.
    let seed = seed("deferred-seals");
    let mut rng = Rng(seed);
    for n in [6u64, 9] {
        let label = format!("buffered, deferred seals, roll.after_create:{n} (CRASH_SEED={seed})");
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("roll.after_create:{n}");
        let (acked, killed) = run_child_with(
            dir.path(),
            Some(&spec),
            rng.next(),
            400,
            &["CHILD_BUFFERED", "CHILD_NO_RETENTION"],
        );
        assert!(killed, "{label}: the child never reached the crash point");
        let topic_dir = dir.path().join("topics").join(TOPIC);
        let bases = files::segment_bases(&topic_dir);
        let through = files::sealed_through(&topic_dir);
        let newest = *bases.last().unwrap();
        let unsealed = bases.iter().filter(|&&b| b >= through && b != newest).count();
        // The segment whose roll was cut short is unsealed at least; how many before it
        // also are depends on whether the child ever paused.
        assert!(
            unsealed >= 1,
            "{label}: no unsealed segment ({bases:?}, sealed through {through})"
        );
        let value_of = |o| Some(child_value(o));
        let (store, topic) = verify(dir.path(), &acked, &value_of, &format!("{label}, {unsealed} unsealed"));
        let report = topic.last_recovery().unwrap();
        assert!(report.dropped_segments.is_empty(), "{label}: {report:?}");
        let active = *files::segment_bases(&topic_dir).last().unwrap();
        assert_eq!(
            files::sealed_through(&topic_dir),
            active,
            "{label}: recovery left segments unsealed"
        );
        store.close().unwrap();
    }
}

// ---------------------------------------------------------------- (a) the CLI

fn cli() -> Command {
    Command::new(env!("CARGO_BIN_EXE_trailkeep"))
}

#[test]
fn cli_appender_killed_at_random_moments_loses_no_acknowledged_record() {
    let seed = seed("cli");
    let mut rng = Rng(seed);
    let rounds: u64 = std::env::var("CRASH_ROUNDS").map_or(20, |s| s.parse().expect("CRASH_ROUNDS"));
    let dir = tempfile::tempdir().unwrap();
    let status = cli()
        .arg("--dir")
        .arg(dir.path())
        .args(["topics", "create", TOPIC, "--segment-bytes", "4096"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "topics create failed");
    // Every line ever written at each offset: lines fed but not acknowledged may or may
    // not be there, but what is there at an offset must be the line fed in that place.
    let mut lines_at: Vec<Vec<u8>> = Vec::new();
    let mut acked: Vec<u64> = Vec::new();
    let mut end = 0u64;
    for round in 0..rounds {
        let label = format!("round {round} (CRASH_SEED={seed})");
        let mut child = cli()
            .arg("--dir")
            .arg(dir.path())
            .args(["append", TOPIC, "--durability", "always", "--print-offsets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines: Vec<Vec<u8>> = (0..400)
            .map(|i| {
                let pad = "p".repeat(rng.below(250) as usize);
                format!("{{\"round\":{round},\"i\":{i},\"pad\":\"{pad}\"}}").into_bytes()
            })
            .collect();
        let mut stdin = child.stdin.take().unwrap();
        let feed = lines.clone();
        let pause_every = 1 + rng.below(20);
        let feeder = std::thread::spawn(move || {
            for (i, line) in feed.iter().enumerate() {
                let mut bytes = line.clone();
                bytes.push(b'\n');
                if stdin.write_all(&bytes).and_then(|()| stdin.flush()).is_err() {
                    return; // the child is gone
                }
                if (i as u64).is_multiple_of(pause_every) {
                    std::thread::sleep(Duration::from_micros(300));
                }
            }
            // Keep the pipe open: the child must be killed, not reach the end of input.
            std::thread::sleep(Duration::from_secs(30));
        });
        let kill_after = rng.below(120);
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut round_acks = Vec::new();
        let mut line = String::new();
        while (round_acks.len() as u64) < kill_after {
            line.clear();
            if stdout.read_line(&mut line).unwrap() == 0 {
                break;
            }
            round_acks.push(line.trim().parse::<u64>().expect("an offset per line"));
        }
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "{label}: kill failed");
        // Offsets printed before the kill landed are acknowledgements too.
        loop {
            line.clear();
            match stdout.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if line.ends_with('\n') => round_acks.push(line.trim().parse().unwrap()),
                Ok(_) => break,
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{label}: the appender ended on its own"
        );
        drop(feeder); // detached: it ends when its write fails or after its sleep
        for (k, &o) in round_acks.iter().enumerate() {
            assert_eq!(
                o,
                end + k as u64,
                "{label}: acknowledged offsets are not dense from {end}"
            );
        }
        lines_at.truncate(end as usize);
        lines_at.extend(lines);
        acked.extend(&round_acks);
        let value_of = |o: u64| lines_at.get(o as usize).cloned();
        let (store, topic) = verify(dir.path(), &acked, &value_of, &label);
        end = topic.end_offset().0;
        assert!(end <= lines_at.len() as u64, "{label}: more records than lines fed");
        store.close().unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    let stats = topic.stats().unwrap();
    eprintln!("cli: {rounds} kills, {} acknowledged records, {stats:?}", acked.len());
    assert!(stats.segments > 2, "no segment roll happened");
    assert!(acked.len() as u64 > rounds, "too few acknowledgements to mean anything");
}

// ------------------------------------------------- (c) many appenders, one group commit

const THREADED_ENV: &str = "TRAILKEEP_CRASH_THREADED";
const WRITERS: u64 = 16;

/// What writer `w` appends as its `seq`-th record: the parent checks acknowledged ones
/// byte for byte, and that every record there is one a writer could have appended.
fn writer_value(w: u64, seq: u64) -> Vec<u8> {
    let pad = ((w * 31 + seq * 7) % 200) as usize;
    format!("w{w}-{seq}-{}", "q".repeat(pad)).into_bytes()
}

/// The durable store and topic the appending children of (c) append to.
fn appending_child_topic(dir: &str) -> (Store, Topic) {
    let store = Store::builder(dir).durability(Durability::Always).open().unwrap();
    let topic = match store.topic(TOPIC) {
        Ok(t) => t,
        // Segments of ~4,000 records: a few rolls over the rounds, but most kills land
        // between them (a roll writes out everything buffered).
        Err(_) => store
            .create_topic(
                TOPIC,
                TopicConfig::default().segment_bytes(1 << 20).retention_bytes(3 << 20),
            )
            .unwrap(),
    };
    (store, topic)
}

/// The appending child of (c): `WRITERS` threads, one durable single-record append per
/// call, until it is killed. Does nothing in a normal test run.
#[test]
fn threaded_child() {
    let Ok(dir) = std::env::var(THREADED_ENV) else { return };
    let (_store, topic) = appending_child_topic(&dir);
    let out = std::sync::Mutex::new(std::io::stdout());
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (topic, out) = (&topic, &out);
            s.spawn(move || {
                // Bounded so that a child nobody kills still ends (the parent then fails).
                for seq in 0..200_000 {
                    let o = topic.append(&NewRecord::new(writer_value(w, seq))).unwrap();
                    let mut out = out.lock().unwrap();
                    writeln!(out, "ACK {o} {w} {seq}").unwrap();
                    out.flush().unwrap();
                }
            });
        }
    });
}

/// Parses "ACK offset writer seq".
fn threaded_ack(line: &str) -> Option<(u64, Vec<u8>)> {
    let mut parts = line.strip_prefix("ACK ")?.split(' ');
    let offset = parts.next()?.parse().ok()?;
    let w = parts.next()?.parse().ok()?;
    let seq = parts.next()?.trim().parse().ok()?;
    Some((offset, writer_value(w, seq)))
}

#[test]
fn many_durable_appenders_killed_at_random_moments_lose_no_acknowledged_record() {
    kill_appenders("threaded", "threaded_child", THREADED_ENV);
}

/// The appending child of the async variant of (c): `WRITERS` tasks on a 2-thread tokio
/// runtime, one `append_async` per record, until it is killed. Does nothing in a normal
/// test run.
#[test]
fn async_child() {
    let Ok(dir) = std::env::var(ASYNC_ENV) else { return };
    let (_store, topic) = appending_child_topic(&dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout()));
    runtime.block_on(async {
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (topic, out) = (topic.clone(), out.clone());
                tokio::spawn(async move {
                    for seq in 0..200_000 {
                        let o = topic.append_async(&NewRecord::new(writer_value(w, seq))).await.unwrap();
                        let mut out = out.lock().unwrap();
                        writeln!(out, "ACK {o} {w} {seq}").unwrap();
                        out.flush().unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

const ASYNC_ENV: &str = "TRAILKEEP_CRASH_ASYNC";

#[test]
fn many_async_appenders_killed_at_random_moments_lose_no_acknowledged_record() {
    kill_appenders("async", "async_child", ASYNC_ENV);
}

/// Runs the appending child test `child` (which appends while `env` names the store)
/// `CRASH_ROUNDS` times (6), killing it at a random moment each time; after each kill
/// every acknowledged record is there, byte for byte, and nothing a writer did not append.
fn kill_appenders(name: &str, child: &str, env: &str) {
    let rounds: u64 = std::env::var("CRASH_ROUNDS").map_or(6, |s| s.parse().expect("CRASH_ROUNDS"));
    let seed = seed(name);
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked_values = std::collections::HashMap::new();
    for round in 0..rounds {
        let label = format!("{name} round {round} (CRASH_SEED={seed})");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child, "--nocapture", "--test-threads=1"])
            .env(env, dir.path())
            .env_remove("TRAILKEEP_FAILPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Read without pause, so that no writer waits on a full pipe at the kill (an
        // acknowledgement held back there would hide a record acknowledged too early).
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            loop {
                line.clear();
                match stdout.read_line(&mut line) {
                    // A line cut by the kill (no newline) is no acknowledgement.
                    Ok(_) if line.ends_with('\n') => {}
                    _ => return,
                }
                if let Some(ack) = threaded_ack(&line) {
                    if tx.send(ack).is_err() {
                        return;
                    }
                }
            }
        });
        let kill_after = 20 + rng.below(1500);
        let mut round_acks = Vec::new();
        while (round_acks.len() as u64) < kill_after {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(ack) => round_acks.push(ack),
                Err(e) => panic!("{label}: the child stopped acknowledging ({e})"),
            }
        }
        std::thread::sleep(Duration::from_micros(rng.below(2000)));
        let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(rc, 0, "{label}: kill failed");
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "{label}: the child ended on its own"
        );
        reader.join().unwrap();
        round_acks.extend(rx.try_iter());
        for (o, value) in round_acks {
            // Recovery may cut unacknowledged records and their offsets be used again,
            // but an acknowledged offset never is.
            let before = acked_values.insert(o, value);
            assert!(before.is_none(), "{label}: offset {o} acknowledged twice");
        }
        let mut acked: Vec<u64> = acked_values.keys().copied().collect();
        acked.sort_unstable();
        let (store, topic) = verify(dir.path(), &acked, &|o| acked_values.get(&o).cloned(), &label);
        // Every record there, acknowledged or not, is one some writer appended.
        for r in topic.iter(topic.start_offset()) {
            let r = r.unwrap();
            let text = String::from_utf8(r.value.clone()).unwrap();
            let mut parts = text.splitn(3, '-');
            let w: u64 = parts.next().and_then(|p| p.strip_prefix('w')?.parse().ok()).unwrap();
            let seq: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap();
            assert_eq!(
                r.value,
                writer_value(w, seq),
                "{label}: offset {} holds other bytes",
                r.offset
            );
        }
        store.close().unwrap();
    }
}

/// The child of `interval_durability_syncs_without_being_asked` (does nothing unless
/// `TRAILKEEP_INTERVAL_CHILD` names a directory): one append under `IntervalMs(50)`, with
/// tamper evidence off (its checkpoints sync the log too), then 20 s of nothing.
#[test]
fn interval_child() {
    let Ok(dir) = std::env::var("TRAILKEEP_INTERVAL_CHILD") else {
        return;
    };
    let store = Store::builder(&dir)
        .durability(Durability::IntervalMs(50))
        .open()
        .unwrap();
    let topic = store
        .create_topic("t", TopicConfig::default().tamper_evidence(false))
        .unwrap();
    topic.append(&NewRecord::new(b"interval".to_vec())).unwrap();
    std::thread::sleep(Duration::from_secs(20));
}

/// Under `IntervalMs` a background thread syncs the log with no call asking for it: a
/// child that appends once and then idles reaches the sync's crash point on its own and
/// is killed there, and its record is in the topic afterwards.
#[test]
fn interval_durability_syncs_without_being_asked() {
    let dir = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "interval_child", "--nocapture", "--test-threads=1"])
        .env("TRAILKEEP_INTERVAL_CHILD", dir.path())
        .env("TRAILKEEP_FAILPOINT", "wal.after_sync")
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(
        output.status.signal(),
        Some(9),
        "killed at the sync's crash point, not after its 20 s idle: {:?} after {took:?}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(took < Duration::from_secs(15), "the sync came only after {took:?}");
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("t").unwrap();
    let records: Vec<Record> = topic.iter(Offset(0)).collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].value, b"interval");
}
