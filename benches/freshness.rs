//! Freshness: how long from just before a record is appended until a consumer's `poll`
//! returns it. Prints p50 / p90 / p99 / max over `RECORDS` records for:
//!
//! (a) in process: one thread appends one record at a time (`Durability::Always`, then
//!     `Durability::Buffered`), a consumer thread on the same `Store` polls;
//! (b) across processes: a child `trailkeep append --durability none --print-offsets`
//!     fed one line at a time through a pipe, and a consumer in this process on its own
//!     `Store` instance (it sees the child's appends by re-reading the files).
//!
//! Records are sent one at a time and the next one only after the previous one arrived, so
//! each number is the idle-path latency, not queueing behind earlier records. A custom main
//! (harness = false): `cargo bench --bench freshness`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use trailkeep::{ConsumerConfig, Durability, NewRecord, Offset, StartAt, Store, TopicConfig};

const RECORDS: u64 = 2000;
const WARMUP: u64 = 50;
const POLL_TIMEOUT: Duration = Duration::from_secs(10);

fn payload(i: u64) -> String {
    format!(
        "{{\"event\":\"tool_call\",\"seq\":{i},\"pad\":\"{}\"}}",
        "x".repeat(150)
    )
}

struct Summary {
    name: String,
    samples: Vec<Duration>,
}

impl Summary {
    fn print(&mut self) {
        self.samples.sort();
        let n = self.samples.len();
        let pct = |p: f64| self.samples[((n as f64 * p).ceil() as usize).clamp(1, n) - 1];
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        println!(
            "{:<46} n={:<5} p50={:>9.1} us  p90={:>9.1} us  p99={:>9.1} us  max={:>9.1} us",
            self.name,
            n,
            us(pct(0.50)),
            us(pct(0.90)),
            us(pct(0.99)),
            us(self.samples[n - 1])
        );
    }
}

/// (a) Appender thread and consumer thread in one process, one store.
fn in_process(durability: Durability, label: &str) -> Summary {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(durability).open().unwrap();
    let topic = store.create_topic("fresh", TopicConfig::default()).unwrap();
    let (got_tx, got_rx) = mpsc::channel::<(Offset, Instant)>();
    // Opened before the first append, so Latest is offset 0.
    let mut consumer = topic
        .consumer(
            "bench",
            ConsumerConfig {
                start_at: StartAt::Latest,
                ..ConsumerConfig::default()
            },
        )
        .unwrap();
    let consumer = std::thread::spawn(move || {
        let mut received = 0;
        while received < RECORDS + WARMUP {
            for record in consumer.poll(16, POLL_TIMEOUT).unwrap() {
                got_tx.send((record.offset, Instant::now())).unwrap();
                received += 1;
            }
        }
    });
    let mut samples = Vec::with_capacity(RECORDS as usize);
    for i in 0..RECORDS + WARMUP {
        let record = NewRecord::new(payload(i));
        let sent = Instant::now();
        let offset = topic.append(&record).unwrap();
        let (got, at) = got_rx
            .recv_timeout(POLL_TIMEOUT)
            .expect("consumer never got the record");
        assert_eq!(got, offset);
        if i >= WARMUP {
            samples.push(at - sent);
        }
    }
    consumer.join().unwrap();
    Summary {
        name: format!("in-process, {label}"),
        samples,
    }
}

/// (b) A CLI child appends; this process consumes through a second Store instance.
fn across_processes() -> Summary {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.create_topic("fresh", TopicConfig::default()).unwrap();
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .arg("--dir")
        .arg(dir.path())
        .args(["append", "fresh", "--durability", "none", "--print-offsets"])
        .env_remove("TRAILKEEP_FAILPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut offsets = BufReader::new(child.stdout.take().unwrap());

    let reader_store = Store::open(dir.path()).unwrap();
    let topic = reader_store.topic("fresh").unwrap();
    let (got_tx, got_rx) = mpsc::channel::<(Offset, Instant)>();
    let mut consumer = topic.consumer("bench", ConsumerConfig::default()).unwrap();
    let consumer = std::thread::spawn(move || {
        let mut received = 0;
        while received < RECORDS + WARMUP {
            for record in consumer.poll(16, POLL_TIMEOUT).unwrap() {
                got_tx.send((record.offset, Instant::now())).unwrap();
                received += 1;
            }
        }
    });
    let mut samples = Vec::with_capacity(RECORDS as usize);
    let mut line = String::new();
    for i in 0..RECORDS + WARMUP {
        let text = payload(i) + "\n";
        let sent = Instant::now();
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
        let (got, at) = got_rx
            .recv_timeout(POLL_TIMEOUT)
            .expect("consumer never got the record");
        assert_eq!(got, Offset(i));
        // Keep the child's stdout drained (its printed offset must match).
        line.clear();
        offsets.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), i.to_string());
        if i >= WARMUP {
            samples.push(at - sent);
        }
    }
    drop(stdin);
    assert!(child.wait().unwrap().success());
    consumer.join().unwrap();
    Summary {
        name: "across processes, CLI append --durability none".into(),
        samples,
    }
}

fn main() {
    // `cargo bench` passes flags such as --bench; `cargo test --benches` passes none and
    // expects a quick run.
    let quick = !std::env::args().any(|a| a == "--bench");
    if quick {
        println!("freshness: run with `cargo bench --bench freshness` for numbers");
        return;
    }
    println!("append-to-poll latency, {RECORDS} records one at a time (after {WARMUP} warm-up)");
    in_process(Durability::Always, "Durability::Always").print();
    in_process(Durability::Buffered, "Durability::Buffered").print();
    across_processes().print();
}
