//! Buffered batch appends in a loop, for profiling the append path.
use trailkeep::{Durability, NewRecord, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(false))?;
    let batch: Vec<NewRecord> = (0..1000).map(|_| NewRecord::new(vec![b'x'; 256])).collect();
    for _ in 0..3000 {
        topic.append_batch(&batch)?;
    }
    store.close()
}
