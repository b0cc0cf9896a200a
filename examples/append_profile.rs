//! Buffered batch appends of bench-like records (264-byte JSON values, a 32-byte key, an
//! event time; batches of 1,000) in a loop, for profiling the append path:
//! `perf record -g target/release/examples/append_profile [records] [on|off]`.
//! 100,000 records are made up front and appended again and again, so that the profile
//! is the append path, not the making of the data.
use trailkeep::{Durability, HeaderList, RecordFields, Store, TopicConfig};

fn main() -> trailkeep::Result<()> {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(5_000_000);
    let tamper = std::env::args().nth(2).is_some_and(|a| a == "on");
    const DISTINCT: usize = 100_000;
    let values: Vec<Vec<u8>> = (0..DISTINCT)
        .map(|i| {
            let mut v = format!(
                "{{\"gen_ai.operation.name\":\"chat\",\"i\":{i},\"trace\":\"{:032x}\"",
                i * 7919
            )
            .into_bytes();
            v.resize(263, b' ');
            v.push(b'}');
            v
        })
        .collect();
    let keys: Vec<[u8; 32]> = (0..DISTINCT)
        .map(|i| {
            let mut k = [b'0'; 32];
            k[..8].copy_from_slice(&(i as u64 / 5).to_le_bytes());
            k
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::builder(dir.path()).durability(Durability::Buffered).open()?;
    let topic = store.create_topic("t", TopicConfig::default().tamper_evidence(tamper))?;
    let mut buf = Vec::with_capacity(1000);
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        buf.clear();
        buf.extend((i..end).map(|j| RecordFields {
            event_time_us: Some(1_735_689_600_000_000 + j as i64 * 1000),
            key: Some(&keys[j % DISTINCT][..]),
            headers: HeaderList::Owned(&[]),
            value: &values[j % DISTINCT],
        }));
        topic.append_fields(&buf)?;
        i = end;
    }
    drop(topic);
    store.close()
}
