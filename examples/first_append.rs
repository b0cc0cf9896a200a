//! Time of a temporary store and its first append (for profiling start-up).
use std::time::Instant;
fn main() -> trailkeep::Result<()> {
    let t = Instant::now();
    let store = trailkeep::Store::temporary()?;
    let a = t.elapsed();
    let topic = store.topic_or_create("t")?;
    let b = t.elapsed();
    topic.append(&trailkeep::NewRecord::new(b"x".to_vec()))?;
    let c = t.elapsed();
    drop(store);
    println!(
        "temporary {a:?}, topic {b:?}, first append {c:?}, drop {:?}",
        t.elapsed()
    );
    Ok(())
}
