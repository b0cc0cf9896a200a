//! Durable single-record appends from N async tasks on a 2-thread tokio runtime
//! (`Topic::append_async`), for profiling beside `durable_threads`.
//!
//! `durable_tasks [tasks] [appends per task] [on|off]`: tamper evidence on or off.
use std::time::Instant;
use trailkeep::{NewRecord, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let tasks: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(64);
    let per_task: usize = std::env::args().nth(2).and_then(|a| a.parse().ok()).unwrap_or(300);
    let te = std::env::args().nth(3).is_none_or(|a| a == "on");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path())?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(te))?;
    topic.recover()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let t = Instant::now();
    runtime.block_on(async {
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let topic = topic.clone();
                tokio::spawn(async move {
                    let rec = NewRecord::new(vec![b'x'; 256]);
                    for _ in 0..per_task {
                        topic.append_async(&rec).await.unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.await.unwrap();
        }
    });
    let n = tasks * per_task;
    println!(
        "tamper={te} {tasks} tasks: {n} durable appends in {:?} = {:.0}/s",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );
    assert_eq!(topic.end_offset().0, n as u64);
    store.close()?;
    Ok(())
}
