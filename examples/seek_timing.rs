//! 10,000 random seeks by time over 1,000,000 records appended in batches of 10.
use std::time::Instant;
use trailkeep::{Durability, NewRecord, Offset, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(false))?;
    let batch: Vec<NewRecord> = (0..10).map(|_| NewRecord::new(vec![b'x'; 256])).collect();
    for _ in 0..100_000 {
        topic.append_batch(&batch)?;
    }
    let end = topic.end_offset().0;
    let probes: Vec<u64> = (0..10_000u64)
        .map(|i| topic.read(Offset((i * 7_919_993) % end)).map(|r| r.timestamp_us))
        .collect::<trailkeep::Result<_>>()?;
    for round in 0..30 {
        let t = Instant::now();
        let mut found = 0u64;
        for &ts in &probes {
            found += topic.seek_time(ts)?.map_or(0, |o| o.0 & 1);
        }
        let el = t.elapsed();
        println!(
            "round {round}: {:.2} us/seek ({:.0} seeks/s) [{found}]",
            el.as_secs_f64() * 1e6 / 1e4,
            1e4 / el.as_secs_f64()
        );
    }
    Ok(())
}
