//! Buffered append + close of bench-like records (264-byte JSON values, a 32-byte key, an
//! event time; batches of 1,000), tamper evidence on and off alternating in one run;
//! prints each run and the medians with close counted (what `trailkeep bench` compares).
//! Used to compare builds side by side (copy the binary of each, run them in turns).
//! On Linux each run also splits the appender's time: on a CPU, waiting for one, blocked
//! (`/proc/thread-self/schedstat`).
//!
//! Before each run a scratch file of 1 KiB a record is written and deleted, as
//! `trailkeep bench` does (see `settle_and_warm` in src/bench/mod.rs: on these VMs
//! page-cache writes into memory not used lately are several times slower).
//!
//! `cargo run --release --example tamper_timing [records] [reps] [on|off]`
use std::time::Instant;
use trailkeep::{Durability, Store, TopicConfig};

#[path = "support/bench_records.rs"]
mod bench_records;
#[path = "support/thread_time.rs"]
mod thread_time;

fn main() -> trailkeep::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let reps: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(3);
    let only: Option<bool> = std::env::args().nth(3).map(|a| a == "on");
    let values = bench_records::values(n);
    let keys = bench_records::keys(n);
    let mut res: Vec<(bool, f64, f64)> = Vec::new();
    for rep in 0..reps {
        for te in [true, false] {
            if only.is_some_and(|o| o != te) {
                continue;
            }
            warm_page_cache(n << 10);
            let dir = tempfile::tempdir_in("/tmp").unwrap();
            let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
            let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(te))?;
            // The append lock, recovery and tamper evidence's files, outside the timing
            // (as `trailkeep bench` does).
            topic.recover()?;
            let sched = thread_time::schedstat();
            let t = Instant::now();
            bench_records::append_batches(&topic, &values, &keys, n)?;
            let a = t.elapsed().as_secs_f64();
            let split = sched.zip(thread_time::schedstat()).map(|((c0, q0), (c1, q1))| {
                let (cpu, queued) = ((c1 - c0).as_secs_f64(), (q1 - q0).as_secs_f64());
                format!(
                    " [on a CPU {:.1} ms, waiting for one {:.1} ms, blocked {:.1} ms]",
                    cpu * 1e3,
                    queued * 1e3,
                    (a - cpu - queued).max(0.0) * 1e3
                )
            });
            drop(topic);
            store.close()?;
            let c = t.elapsed().as_secs_f64();
            println!(
                "rep {rep} te={te}: append {:.2} M/s{}, +close {:.2} M/s",
                n as f64 / a / 1e6,
                split.unwrap_or_default(),
                n as f64 / c / 1e6
            );
            res.push((te, a, c));
        }
    }
    let med = |te: bool, f: &dyn Fn(&(bool, f64, f64)) -> f64| {
        let mut v: Vec<f64> = res.iter().filter(|r| r.0 == te).map(f).collect();
        v.sort_by(|a, b| a.partial_cmp(b).unwrap());
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let (on, off) = (med(true, &|r| r.2), med(false, &|r| r.2));
    println!(
        "median close-inclusive: on {:.1} ms, off {:.1} ms, ratio {:.2}",
        on * 1e3,
        off * 1e3,
        off / on
    );
    Ok(())
}

/// Writes `bytes` to a scratch file and deletes it (never written back).
fn warm_page_cache(bytes: usize) {
    let mut file = tempfile::tempfile_in("/tmp").unwrap();
    let chunk = vec![1u8; 1 << 20];
    for _ in 0..bytes.div_ceil(chunk.len()) {
        std::io::Write::write_all(&mut file, &chunk).unwrap();
    }
}
