//! Mirroring: forwards a trailkeep topic into partition 0 of a topic on a Kafka-compatible
//! cluster (`trailkeep mirror <topic>... --to host:port`).
//!
//! The position is a durable trailkeep consumer group (default `mirror.<remote topic>`):
//! records are read from the group's cursor, produced with acks=all, and the cursor is
//! committed only after the cluster acknowledged them. A crash or kill between the
//! acknowledgement and the commit re-sends those records: at-least-once, never a gap.
//! While the cluster is unreachable or refuses with a retriable error, the same records
//! are retried with exponential backoff (up to [`BACKOFF_MAX_MS`]) and a log line per
//! attempt; nothing is skipped. Keys, headers and values are kept; a record's Kafka
//! timestamp is its trailkeep append time (milliseconds, CreateTime).
//!
//! **Invariant:** the cursor never moves past a record the remote cluster has not
//! acknowledged.

mod client;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub use client::{Producer, REMOTE_TIMEOUT_MS};

use crate::server::records::encode_batch;
use crate::{CommitMode, ConsumerConfig, Offset, Record, Store};

/// Most records read from the topic per round.
pub const MIRROR_RECORDS_MAX: usize = 1000;
/// Most bytes (keys, headers, values) in one produced batch; a bigger record goes alone.
pub const MIRROR_BATCH_BYTES_MAX: usize = 512 << 10;
/// First wait after a failed produce.
pub const BACKOFF_MIN_MS: u64 = 100;
/// Longest wait between retries.
pub const BACKOFF_MAX_MS: u64 = 5_000;
/// How long a poll at the head waits for new records before looking at the stop flag.
const POLL_WAIT_MS: u64 = 200;

/// Kafka error codes after which retrying the same batch cannot succeed.
const FATAL_CODES: &[i16] = &[
    2,  // CORRUPT_MESSAGE
    10, // MESSAGE_TOO_LARGE
    17, // INVALID_TOPIC_EXCEPTION
    18, // RECORD_LIST_TOO_LARGE
    29, // TOPIC_AUTHORIZATION_FAILED
    87, // INVALID_RECORD
];

/// Errors of mirroring.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MirrorError {
    /// An engine error (reading the topic, committing the cursor).
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// Talking to the remote cluster failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with which address.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The remote cluster answered with a Kafka error code.
    #[error("{what}: Kafka error code {code}")]
    Kafka {
        /// What was asked.
        what: String,
        /// The error code.
        code: i16,
    },
    /// The remote cluster answered something this client cannot use.
    #[error("remote cluster: {0}")]
    Remote(String),
}

impl MirrorError {
    fn is_fatal(&self) -> bool {
        match self {
            MirrorError::Kafka { code, .. } => FATAL_CODES.contains(code),
            MirrorError::Store(_) => true,
            MirrorError::Io { .. } | MirrorError::Remote(_) => false,
        }
    }
}

/// One topic to mirror.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    /// The local topic.
    pub topic: String,
    /// `host:port` of a broker of the remote cluster.
    pub to: String,
    /// The remote topic. Default: the local topic's name.
    pub remote_topic: Option<String>,
    /// The consumer group holding the position. Default `mirror.<remote topic>`.
    pub group: Option<String>,
    /// Create the remote topic (1 partition) when it is missing. Default true.
    pub create_remote_topic: bool,
    /// Stop once everything appended so far is mirrored. Default false: follow forever.
    pub until_caught_up: bool,
}

impl MirrorConfig {
    /// Mirror `topic` to the cluster at `to` with the defaults.
    pub fn new(topic: impl Into<String>, to: impl Into<String>) -> MirrorConfig {
        MirrorConfig {
            topic: topic.into(),
            to: to.into(),
            remote_topic: None,
            group: None,
            create_remote_topic: true,
            until_caught_up: false,
        }
    }

    /// The remote topic's name.
    pub fn remote_topic(&self) -> &str {
        self.remote_topic.as_deref().unwrap_or(&self.topic)
    }

    /// The consumer group's name.
    pub fn group(&self) -> String {
        self.group
            .clone()
            .unwrap_or_else(|| format!("mirror.{}", self.remote_topic()))
    }
}

/// Mirrors until `stop` is set (or, with `until_caught_up`, until the end is reached);
/// returns how many records were acknowledged by the remote cluster.
///
/// # Errors
/// Store errors (including [`crate::Error::Locked`] when another mirror holds the
/// group), and remote errors that retrying cannot fix (a record the cluster refuses).
pub fn run(store: &Store, config: &MirrorConfig, stop: &AtomicBool) -> Result<u64, MirrorError> {
    let topic = store.topic(&config.topic)?;
    let group = config.group();
    let remote = config.remote_topic();
    let consumer_config = ConsumerConfig {
        commit_mode: CommitMode::Manual,
        ..ConsumerConfig::default()
    };
    let mut consumer = topic.consumer(&group, consumer_config)?;
    let mut producer = Producer::new(&config.to, config.create_remote_topic);
    let mut mirrored = 0u64;
    tracing::info!(
        topic = config.topic,
        to = config.to,
        remote,
        group,
        from = consumer.position().0,
        "mirroring"
    );
    while !stop.load(Ordering::Relaxed) {
        let records = consumer.poll(MIRROR_RECORDS_MAX, Duration::from_millis(POLL_WAIT_MS))?;
        if records.is_empty() {
            topic.refresh()?;
            if config.until_caught_up && consumer.position() >= topic.end_offset() {
                break;
            }
            continue;
        }
        for chunk in chunks(&records) {
            let Some(last) = chunk.last() else { continue };
            let batch = encode_batch(chunk, false).map_err(MirrorError::Remote)?;
            if !send_with_retry(&mut producer, remote, batch, stop)? {
                return Ok(mirrored); // stopped while retrying; the cursor stays before this chunk
            }
            consumer.commit_offset(Offset(last.offset.0 + 1))?;
            mirrored += chunk.len() as u64;
            tracing::debug!(topic = config.topic, through = last.offset.0, "mirrored and committed");
        }
    }
    Ok(mirrored)
}

/// Sends one batch until the cluster acknowledges it; false when stopped first.
fn send_with_retry(
    producer: &mut Producer,
    remote: &str,
    batch: bytes::Bytes,
    stop: &AtomicBool,
) -> Result<bool, MirrorError> {
    let mut backoff_ms = BACKOFF_MIN_MS;
    loop {
        match producer.produce(remote, batch.clone()) {
            Ok(_) => return Ok(true),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                tracing::warn!("mirror to {remote:?}: {e}; retrying in {backoff_ms} ms (nothing is skipped)");
                producer.reset();
                if !sleep_unless_stopped(Duration::from_millis(backoff_ms), stop) {
                    return Ok(false);
                }
                backoff_ms = (backoff_ms * 2).min(BACKOFF_MAX_MS);
            }
        }
    }
}

fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) -> bool {
    let deadline = std::time::Instant::now() + duration;
    while std::time::Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20).min(duration));
    }
    !stop.load(Ordering::Relaxed)
}

/// Splits records into batches of at most [`MIRROR_BATCH_BYTES_MAX`] bytes (a record over
/// it goes alone).
fn chunks(records: &[Record]) -> Vec<&[Record]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (i, r) in records.iter().enumerate() {
        let size = r.value.len()
            + r.key.as_ref().map_or(0, Vec::len)
            + r.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>();
        if i > start && bytes + size > MIRROR_BATCH_BYTES_MAX {
            out.push(&records[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < records.len() {
        out.push(&records[start..]);
    }
    out
}

/// Mirrors several topics, one thread each, until `stop` is set or all of them end.
///
/// # Errors
/// The first topic's error; the others are stopped.
pub fn run_all(store: &Store, configs: &[MirrorConfig], stop: Arc<AtomicBool>) -> Result<u64, MirrorError> {
    let results: Vec<Result<u64, MirrorError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = configs
            .iter()
            .map(|config| {
                let stop = Arc::clone(&stop);
                scope.spawn(move || {
                    let result = run(store, config, &stop);
                    if let Err(e) = &result {
                        tracing::error!(topic = config.topic, "mirror stopped: {e}");
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(MirrorError::Remote("a mirror thread panicked".into())))
            })
            .collect()
    });
    let mut total = 0;
    for result in results {
        total += result?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_the_byte_limit_and_keep_order() {
        let record = |i: u64, size: usize| Record {
            offset: Offset(i),
            timestamp_us: 0,
            event_time_us: None,
            key: None,
            headers: Vec::new(),
            value: vec![0; size],
        };
        let records: Vec<Record> = (0..10)
            .map(|i| record(i, MIRROR_BATCH_BYTES_MAX / 3))
            .chain([record(10, MIRROR_BATCH_BYTES_MAX * 2)])
            .collect();
        let split = chunks(&records);
        let flat: Vec<u64> = split.iter().flat_map(|c| c.iter().map(|r| r.offset.0)).collect();
        assert_eq!(flat, (0..11).collect::<Vec<_>>());
        assert!(split
            .iter()
            .all(|c| c.len() == 1 || c.iter().map(|r| r.value.len()).sum::<usize>() <= MIRROR_BATCH_BYTES_MAX));
        assert_eq!(split.last().map(|c| c.len()), Some(1));
    }
}
