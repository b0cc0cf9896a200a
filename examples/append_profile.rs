//! Buffered batch appends of bench-like records (264-byte JSON values, a 32-byte key, an
//! event time; batches of 1,000) in a loop, for profiling the append path:
//! `perf record -g target/release/examples/append_profile [records] [on|off]`.
//! 100,000 records are made up front and appended again and again, so that the profile
//! is the append path, not the making of the data.
use trailkeep::{Durability, Store, TopicConfig};

#[path = "support/bench_records.rs"]
mod bench_records;

fn main() -> trailkeep::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let tamper = std::env::args().nth(2).is_some_and(|a| a == "on");
    const DISTINCT: usize = 100_000;
    let values = bench_records::values(DISTINCT);
    let keys = bench_records::keys(DISTINCT);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(tamper))?;
    bench_records::append_batches(&topic, &values, &keys, n)?;
    drop(topic);
    store.close()
}
