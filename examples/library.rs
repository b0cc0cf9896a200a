//! The library example from README.md (kept compiling here).
#![allow(unused_imports)]
use std::time::Duration;
use trailkeep::{ConsumerConfig, NewRecord, Offset, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let store = Store::open(std::env::temp_dir().join("trailkeep-readme-example"))?; // or Store::temporary() in tests
    let trail = store.topic_or_create("agent-trail")?; // or store.create_topic(name, TopicConfig::default()...)
    let offset = trail.append(
        &NewRecord::new(r#"{"gen_ai.operation.name":"execute_tool","gen_ai.tool.name":"search"}"#)
            .with_key("trace-42")
            .with_event_time_us(1_700_000_000_000_000),
    )?; // returns once fsync'd
    assert_eq!(trail.read(offset)?.key.as_deref(), Some(&b"trace-42"[..]));

    // Replay from a time: the first record appended at or after it.
    if let Some(from) = trail.seek_time(1_700_000_000_000_000)? {
        for record in trail.iter(from) {
            let record = record?;
            println!("{} {}", record.offset, String::from_utf8_lossy(&record.value));
        }
    }

    // A consumer group: resumes where it committed, waits for new appends at the head.
    let mut scanner = trail.consumer("policy-scanner", ConsumerConfig::default())?;
    let batch = scanner.poll(100, Duration::from_millis(200))?;
    scanner.commit()?;
    println!("scanned {} records, lag {}", batch.len(), scanner.lag());
    Ok(())
}
