//! Buffered appends with key and event time, tamper evidence off (for profiling).
use std::time::Instant;
use trailkeep::{Durability, NewRecord, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let t = Instant::now();
    let store = Store::temporary()?;
    println!("temporary: {:?}", t.elapsed());
    let t = Instant::now();
    let topic = store.topic_or_create("t")?;
    topic.append(&NewRecord::new(b"x".to_vec()))?;
    println!("first topic + append: {:?}", t.elapsed());
    let value = vec![b'x'; 256];
    for te in [false] {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
        let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(te))?;
        let batch: Vec<NewRecord> = (0..1000)
            .map(|i| {
                NewRecord::new(value.clone())
                    .with_key(format!("{:032x}", i * 7919))
                    .with_event_time_us(1_700_000_000_000_000 + i as i64)
            })
            .collect();
        let t = Instant::now();
        for _ in 0..1000 {
            topic.append_batch(&batch)?;
        }
        let append = t.elapsed();
        store.close()?;
        println!(
            "tamper_evidence={te}: 1M appends {:?} ({:.2} M rec/s), incl close {:?}",
            append,
            1.0 / append.as_secs_f64(),
            t.elapsed()
        );
        let store = Store::open(dir.path())?;
        let topic = store.topic("t")?;
        let t = Instant::now();
        let mut n = 0u64;
        topic.scan(trailkeep::Offset(0), |_| {
            n += 1;
            std::ops::ControlFlow::Continue(())
        })?;
        println!(
            "scan {n}: {:?} ({:.2} M rec/s)",
            t.elapsed(),
            n as f64 / t.elapsed().as_secs_f64() / 1e6
        );
    }
    Ok(())
}
