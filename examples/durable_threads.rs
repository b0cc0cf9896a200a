//! Durable single-record appends from N threads (group commit), for profiling.
//!
//! `durable_threads [threads] [appends per thread] [on|off]`: tamper evidence on or off
//! (both, off first, without the third argument).
use std::time::Instant;
use trailkeep::{NewRecord, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let threads: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let per_thread: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(300);
    for te in std::env::args()
        .nth(3)
        .map(|a| vec![a == "on"])
        .unwrap_or(vec![false, true])
    {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path())?;
        let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(te))?;
        topic.recover()?;
        let t = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let topic = topic.clone();
                std::thread::spawn(move || {
                    let rec = NewRecord::new(vec![b'x'; 256]);
                    for _ in 0..per_thread {
                        topic.append(&rec).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let n = threads * per_thread;
        println!(
            "tamper={te} {threads} threads: {n} durable appends in {:?} = {:.0}/s",
            t.elapsed(),
            n as f64 / t.elapsed().as_secs_f64()
        );
        store.close()?;
    }
    Ok(())
}
