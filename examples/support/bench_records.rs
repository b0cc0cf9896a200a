//! The records of the examples that time the append path like `trailkeep bench`: 264-byte
//! JSON values and 32-byte keys, appended in batches of 1,000.

use trailkeep::{HeaderList, RecordFields, Topic};

/// `n` JSON values of 264 bytes.
pub fn values(n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let mut v = format!(
                "{{\"gen_ai.operation.name\":\"chat\",\"gen_ai.request.model\":\"claude-sonnet-4\",\"i\":{i},\
                 \"trace\":\"{:032x}\",\"usage\":{{\"in\":{},\"out\":{}}},\"tool\":\"web_search\",\"status\":\"ok\"",
                i * 7919,
                i % 977,
                i % 313
            )
            .into_bytes();
            v.resize(263, b' ');
            v.push(b'}');
            v
        })
        .collect()
}

/// `n` 32-byte keys, five records a key.
pub fn keys(n: usize) -> Vec<[u8; 32]> {
    (0..n)
        .map(|i| {
            let mut k = [b'0'; 32];
            k[..8].copy_from_slice(&(i as u64 / 5).to_le_bytes());
            k
        })
        .collect()
}

/// Appends `n` records in batches of 1,000 (one `append_fields` call each): record `j`
/// has `values[j % len]`, `keys[j % len]` and an event time.
pub fn append_batches(topic: &Topic, values: &[Vec<u8>], keys: &[[u8; 32]], n: usize) -> trailkeep::Result<()> {
    let mut buf = Vec::with_capacity(1000);
    let mut i = 0;
    while i < n {
        let end = (i + 1000).min(n);
        buf.clear();
        buf.extend((i..end).map(|j| RecordFields {
            event_time_us: Some(1_735_689_600_000_000 + j as i64 * 1000),
            key: Some(&keys[j % keys.len()][..]),
            headers: HeaderList::Owned(&[]),
            value: &values[j % values.len()],
        }));
        topic.append_fields(&buf)?;
        i = end;
    }
    Ok(())
}
