//! Where the tamper-evidence thread's time goes: scan, leaf hashing, tree appends.
use std::ops::ControlFlow;
use std::time::Instant;
use trailkeep::{audit, Durability, NewRecord, Offset, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(false))?;
    let batch: Vec<NewRecord> = (0..1000).map(|_| NewRecord::new(vec![b'x'; 256])).collect();
    for _ in 0..1000 {
        topic.append_batch(&batch)?;
    }
    let t = Instant::now();
    let mut n = 0u64;
    topic.scan(Offset(0), |_| {
        n += 1;
        ControlFlow::Continue(())
    })?;
    println!("scan only: {:?}", t.elapsed());
    let t = Instant::now();
    let mut leaves = Vec::with_capacity(1_000_000);
    topic.scan(Offset(0), |r| {
        leaves.push(trailkeep::topic::record_leaf(&r).unwrap());
        ControlFlow::Continue(())
    })?;
    println!("scan + leaf hash: {:?}", t.elapsed());
    let tdir = tempfile::tempdir().unwrap();
    let mut tree = audit::TreeFile::open(tdir.path()).unwrap();
    let t = Instant::now();
    for chunk in leaves.chunks(65536) {
        tree.append_leaves(chunk).unwrap();
    }
    println!("tree append 1M leaves: {:?}", t.elapsed());
    let t = Instant::now();
    tree.sync().unwrap();
    println!("tree sync: {:?}", t.elapsed());
    let t = Instant::now();
    let v = vec![7u8; 330];
    let mut h = [0u8; 32];
    for i in 0..1_000_000u32 {
        let mut b = v.clone();
        b[0] = i as u8;
        h = audit::leaf_hash(&b);
    }
    println!("1M sha256 of 330 B: {:?} {}", t.elapsed(), h[0]);
    Ok(())
}
