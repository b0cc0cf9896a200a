//! Deterministic AI-audit events (~256 bytes of JSON each) for the benchmark.

use std::io::Write;

/// First event time: 2025-01-01T00:00:00Z in microseconds since the Unix epoch.
pub(crate) const BASE_TIME_US: i64 = 1_735_689_600_000_000;

const OPERATIONS: [&str; 5] = ["chat", "execute_tool", "invoke_agent", "embeddings", "text_completion"];
const MODELS: [&str; 6] = [
    "claude-sonnet-4",
    "gpt-4o-2024-08-06",
    "gemini-2.0-flash",
    "llama-3.1-70b",
    "mistral-large",
    "claude-haiku-3.5",
];
const TOOLS: [&str; 7] = [
    "web_search",
    "read_file",
    "run_sql",
    "send_email",
    "http_get",
    "code_interpreter",
    "calendar.create",
];
const STATUSES: [&str; 4] = ["ok", "ok", "ok", "error"];

/// SplitMix64: small, fast and stable across crate versions, so a seed always gives the
/// same events.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the tiny modulo bias does not matter here.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Produces events one after another; the same seed gives the same sequence.
pub(crate) struct EventGen {
    rng: Rng,
    index: u64,
    trace: [u8; 32],
    spans_left: u64,
}

impl EventGen {
    pub(crate) fn new(seed: u64) -> EventGen {
        EventGen {
            rng: Rng::new(seed),
            index: 0,
            trace: [b'0'; 32],
            spans_left: 0,
        }
    }

    /// Writes the next event's JSON into `value` (cleared first) and its trace id (the
    /// record key) into `key`; returns the event time (µs since the epoch), which grows by
    /// 1 ms per event plus jitter so every event has its own time.
    pub(crate) fn next_event(&mut self, value: &mut Vec<u8>, key: &mut [u8; 32]) -> i64 {
        let rng = &mut self.rng;
        if self.spans_left == 0 {
            hex(rng.next_u64(), &mut self.trace[..16]);
            hex(rng.next_u64(), &mut self.trace[16..]);
            self.spans_left = 1 + rng.below(12);
        }
        self.spans_left -= 1;
        *key = self.trace;
        let time_us = BASE_TIME_US + self.index as i64 * 1000 + rng.below(1000) as i64;
        self.index += 1;
        let mut span = [0u8; 16];
        hex(rng.next_u64(), &mut span);
        let operation = rng.pick(&OPERATIONS);
        let model = rng.pick(&MODELS);
        let tool = rng.pick(&TOOLS);
        let status = rng.pick(&STATUSES);
        let input_tokens = 20 + rng.below(8000);
        let output_tokens = 1 + rng.below(2000);
        value.clear();
        // Writing into a Vec cannot fail.
        let _ = write!(
            value,
            r#"{{"ts":{time_us},"trace_id":"{}","span_id":"{}","gen_ai.operation.name":"{operation}","gen_ai.request.model":"{model}","gen_ai.tool.name":"{tool}","input_tokens":{input_tokens},"output_tokens":{output_tokens},"status":"{status}"}}"#,
            std::str::from_utf8(&self.trace).unwrap_or(""),
            std::str::from_utf8(&span).unwrap_or(""),
        );
        time_us
    }
}

fn hex(mut v: u64, out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = DIGITS[(v & 15) as usize];
        v >>= 4;
    }
}

/// Every event of a run, held contiguously so the timed loops only borrow.
pub(crate) struct Dataset {
    values: Vec<u8>,
    ends: Vec<usize>,
    keys: Vec<[u8; 32]>,
    times: Vec<i64>,
}

impl Dataset {
    pub(crate) fn generate(n: usize, seed: u64) -> Dataset {
        let mut gen = EventGen::new(seed);
        let mut data = Dataset {
            values: Vec::with_capacity(n * 300),
            ends: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
            times: Vec::with_capacity(n),
        };
        let mut value = Vec::with_capacity(512);
        let mut key = [0u8; 32];
        for _ in 0..n {
            let t = gen.next_event(&mut value, &mut key);
            data.values.extend_from_slice(&value);
            data.ends.push(data.values.len());
            data.keys.push(key);
            data.times.push(t);
        }
        data
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn value(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.values[start..self.ends[i]]
    }

    pub(crate) fn key(&self, i: usize) -> &[u8] {
        &self.keys[i]
    }

    /// The key as text (it is lowercase hex).
    pub(crate) fn key_str(&self, i: usize) -> &str {
        std::str::from_utf8(&self.keys[i]).unwrap_or("")
    }

    pub(crate) fn time_us(&self, i: usize) -> i64 {
        self.times[i]
    }

    pub(crate) fn value_bytes(&self) -> usize {
        self.values.len()
    }
}

/// Generates the first `n` events in batches of `batch` without holding them all, calling
/// `each` with `(event time, key, value)` triples (for the memory probes).
pub(crate) fn for_each_streamed_batch(
    n: usize,
    seed: u64,
    batch: usize,
    mut each: impl FnMut(&[(i64, [u8; 32], Vec<u8>)]) -> super::BenchResult<()>,
) -> super::BenchResult<()> {
    let mut gen = EventGen::new(seed);
    let mut buf: Vec<(i64, [u8; 32], Vec<u8>)> = (0..batch).map(|_| (0, [0u8; 32], Vec::with_capacity(512))).collect();
    let mut done = 0;
    while done < n {
        let take = batch.min(n - done);
        for slot in &mut buf[..take] {
            slot.0 = gen.next_event(&mut slot.2, &mut slot.1);
        }
        each(&buf[..take])?;
        done += take;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_deterministic_json_of_about_256_bytes() {
        let a = Dataset::generate(2000, 7);
        let b = Dataset::generate(2000, 7);
        assert_eq!(a.values, b.values);
        let mean = a.value_bytes() / a.len();
        assert!((230..=290).contains(&mean), "mean event size {mean}");
        for i in 0..a.len() {
            let v: serde_json::Value = serde_json::from_slice(a.value(i)).unwrap();
            assert_eq!(v["trace_id"].as_str().unwrap().as_bytes(), a.key(i));
            if i > 0 {
                assert!(a.time_us(i) > a.time_us(i - 1));
            }
        }
    }
}
