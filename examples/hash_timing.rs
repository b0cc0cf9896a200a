//! Where the tamper-evidence thread's time goes, one-at-a-time against batched, side by
//! side in one run: reading records back, leaf hashing, tree appends, and the raw
//! SHA-256 rates (sha2 one message at a time vs the multi-buffer batch hasher).
//!
//! `cargo run --release --example hash_timing [records]` (default 1,000,000 records like
//! `trailkeep bench`'s: event time, 32-byte key, 230–300-byte value). Medians of 3.
use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use trailkeep::audit::{self, batch::LevelScratch, Frontier, Hash, LeafBatch};
use trailkeep::{Durability, NewRecord, Offset, Store, TopicConfig};

#[path = "support/thread_time.rs"]
mod thread_time;

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Median of 3 runs of `f`, by CPU time where the platform tells it (else wall time).
fn time(label: &str, n: usize, mut f: impl FnMut()) -> Duration {
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let (t, c) = (Instant::now(), thread_time::schedstat().map(|(cpu, _)| cpu));
        f();
        walls.push(t.elapsed());
        cpus.push(c.zip(thread_time::schedstat().map(|(cpu, _)| cpu)).map(|(a, b)| b - a));
    }
    let wall = median(walls);
    let cpu = cpus.into_iter().collect::<Option<Vec<_>>>().map(median);
    let d = cpu.unwrap_or(wall);
    println!(
        "{label:<48} cpu {:>7.1} ms {:>6.1} ns/item {:>6.2} M/s (wall {:>7.1} ms)",
        d.as_secs_f64() * 1e3,
        d.as_nanos() as f64 / n as f64,
        n as f64 / d.as_secs_f64() / 1e6,
        wall.as_secs_f64() * 1e3,
    );
    d
}

fn main() -> trailkeep::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(1_000_000, |a| a.parse().expect("records"));
    println!(
        "batch backend: {} ({} lanes)",
        tape_sha256::backend(),
        tape_sha256::lane_width()
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(false))?;
    let mut next = 0u64;
    for chunk in 0..n.div_ceil(1000) {
        let batch: Vec<NewRecord> = (0..1000.min(n - chunk * 1000))
            .map(|_| {
                next += 1;
                let len = 230 + (next.wrapping_mul(0x9E37_79B9) % 71) as usize;
                NewRecord::new(vec![b'x'; len])
                    .with_key([b'k'; 32])
                    .with_event_time_us(next as i64)
            })
            .collect();
        topic.append_batch(&batch)?;
    }

    println!("-- reading and leaf hashing, {n} records");
    time("scan only", n, || {
        topic.scan(Offset(0), |_| ControlFlow::Continue(())).unwrap();
    });
    let mut leaves = Vec::with_capacity(n);
    let one = time("scan + leaf hash one at a time (sha2)", n, || {
        leaves.clear();
        topic
            .scan(Offset(0), |r| {
                leaves.push(trailkeep::topic::record_leaf(&r).unwrap());
                ControlFlow::Continue(())
            })
            .unwrap();
    });
    let mut batched = Vec::with_capacity(n);
    let many = time("scan + leaf hash batched (LeafBatch)", n, || {
        batched.clear();
        let mut batch = LeafBatch::new();
        topic
            .scan(Offset(0), |r| {
                let record = audit::LeafRecord {
                    offset: r.offset.0,
                    timestamp_us: r.timestamp_us,
                    event_time_us: r.fields.event_time_us,
                    key: r.fields.key,
                    headers: &[][..],
                    value: r.fields.value,
                };
                batch.push(&record).unwrap();
                if batch.is_full() {
                    batch.hash_into(&mut batched);
                }
                ControlFlow::Continue(())
            })
            .unwrap();
        batch.hash_into(&mut batched);
    });
    assert!(leaves == batched, "batched leaves differ");
    println!("   leaf stage speed-up: {:.2}x", one.as_secs_f64() / many.as_secs_f64());

    println!("-- tree appends of {n} leaves, 65,536 per pass");
    let one = time("nodes one at a time (Frontier::push, sha2)", n, || {
        let mut f = Frontier::new();
        for leaf in &leaves {
            f.push(*leaf).unwrap();
        }
    });
    let mut post_order = Vec::new();
    let many = time("nodes batched by level (extend_frontier)", n, || {
        let mut f = Frontier::new();
        let mut scratch = LevelScratch::default();
        for chunk in leaves.chunks(65_536) {
            post_order.clear();
            f = audit::batch::extend_frontier(&f, chunk, &mut scratch, &mut post_order).unwrap();
        }
    });
    println!("   node stage speed-up: {:.2}x", one.as_secs_f64() / many.as_secs_f64());
    time("TreeFile::append_leaves (batched + file writes)", n, || {
        let tdir = tempfile::tempdir().unwrap();
        let mut tree = audit::TreeFile::open(tdir.path()).unwrap();
        for chunk in leaves.chunks(65_536) {
            tree.append_leaves(chunk).unwrap();
        }
        tree.sync().unwrap();
    });

    println!("-- raw SHA-256, {n} messages");
    for len in [330usize, 64] {
        let data: Vec<Vec<u8>> = (0..n).map(|i| vec![i as u8; len]).collect();
        let mut out: Vec<Hash> = vec![[0; 32]; n];
        let one = time(&format!("{}-byte leaf message, sha2 one at a time", len + 1), n, || {
            for (m, o) in data.iter().zip(out.iter_mut()) {
                *o = audit::leaf_hash(m);
            }
        });
        let slices: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let many = time(&format!("{}-byte leaf message, batched", len + 1), n, || {
            audit::leaf_hashes(&slices, &mut out);
        });
        println!("   speed-up: {:.2}x", one.as_secs_f64() / many.as_secs_f64());
    }
    Ok(())
}
