//! A topic's settings and the `topic.json` file that keeps them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::index::SEGMENT_BYTES_MAX;
use crate::segment::batch::Compression;
use crate::{Error, Result};

/// Name of the file holding a topic's settings.
pub const CONFIG_FILE: &str = "topic.json";
/// Longest topic name.
pub const TOPIC_NAME_BYTES_MAX: usize = 200;
/// Smallest segment size a topic may ask for.
pub const SEGMENT_BYTES_MIN: u64 = 4096;
/// Default segment size: 128 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 128 << 20;

/// Settings of one topic. Every field documents its default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// A segment is sealed and a new one started once it holds this many bytes.
    /// Default 128 MiB; between 4 KiB and 4 GiB - 1.
    pub segment_bytes: u64,
    /// A segment is also sealed once its first record is this old (milliseconds).
    /// Default: none (size only).
    pub segment_age_ms: Option<u64>,
    /// Payload compression of new batches. Default: none.
    pub compression: Compression,
    /// Retention by size: delete the oldest sealed segments while the topic holds more.
    /// Default: none (keep everything).
    pub retention_bytes: Option<u64>,
    /// Retention by age: delete sealed segments whose newest record is older (milliseconds).
    /// Default: none.
    pub retention_age_ms: Option<u64>,
    /// When true, size and age retention never delete records that a consumer group has
    /// not consumed yet. Default: false.
    #[serde(default)]
    pub retention_until_consumed: bool,
    /// A hard cap on the topic's bytes that wins over `retention_until_consumed`: past it,
    /// the oldest sealed segments are deleted even if unconsumed, and the groups that lost
    /// offsets are reported. Default: none.
    #[serde(default)]
    pub retention_hard_bytes: Option<u64>,
    /// Keep an RFC 6962 Merkle tree over the records and sign checkpoints. Default: true.
    #[serde(default = "default_true")]
    pub tamper_evidence: bool,
    /// Sign a checkpoint after this many new records. Default: 10,000. The tree thread
    /// signs at most one checkpoint per 250 ms on its own (each syncs the log and the
    /// tree), and while appends keep coming a due checkpoint waits for them to pause
    /// (10 ms without a record), up to 1 s: under a bulk load they come less often.
    /// `Topic::checkpoint` and close sign at once.
    #[serde(default = "default_checkpoint_records")]
    pub checkpoint_every_records: u64,
    /// Sign a checkpoint when this long has passed since the last one and records were
    /// added (milliseconds). Default: 10,000. Checkpoints are also signed when a segment is
    /// sealed and when the topic is closed.
    #[serde(default = "default_checkpoint_ms")]
    pub checkpoint_every_ms: u64,
}

fn default_true() -> bool {
    true
}
fn default_checkpoint_records() -> u64 {
    10_000
}
fn default_checkpoint_ms() -> u64 {
    10_000
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            segment_age_ms: None,
            compression: Compression::None,
            retention_bytes: None,
            retention_age_ms: None,
            retention_until_consumed: false,
            retention_hard_bytes: None,
            tamper_evidence: true,
            checkpoint_every_records: default_checkpoint_records(),
            checkpoint_every_ms: default_checkpoint_ms(),
        }
    }
}

impl TopicConfig {
    /// Sets [`TopicConfig::segment_bytes`].
    pub fn segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes;
        self
    }
    /// Sets [`TopicConfig::segment_age_ms`].
    pub fn segment_age_ms(mut self, ms: u64) -> Self {
        self.segment_age_ms = Some(ms);
        self
    }
    /// Sets [`TopicConfig::compression`].
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }
    /// True when any retention rule may delete segments.
    pub(crate) fn has_retention(&self) -> bool {
        self.retention_bytes.is_some() || self.retention_age_ms.is_some() || self.retention_hard_bytes.is_some()
    }

    /// Sets [`TopicConfig::retention_bytes`].
    pub fn retention_bytes(mut self, bytes: u64) -> Self {
        self.retention_bytes = Some(bytes);
        self
    }
    /// Sets [`TopicConfig::retention_age_ms`].
    pub fn retention_age_ms(mut self, ms: u64) -> Self {
        self.retention_age_ms = Some(ms);
        self
    }

    /// Sets [`TopicConfig::retention_until_consumed`].
    pub fn retention_until_consumed(mut self, on: bool) -> Self {
        self.retention_until_consumed = on;
        self
    }
    /// Sets [`TopicConfig::retention_hard_bytes`].
    pub fn retention_hard_bytes(mut self, bytes: u64) -> Self {
        self.retention_hard_bytes = Some(bytes);
        self
    }

    /// Sets [`TopicConfig::tamper_evidence`].
    pub fn tamper_evidence(mut self, on: bool) -> Self {
        self.tamper_evidence = on;
        self
    }
    /// Sets [`TopicConfig::checkpoint_every_records`].
    pub fn checkpoint_every_records(mut self, records: u64) -> Self {
        self.checkpoint_every_records = records;
        self
    }
    /// Sets [`TopicConfig::checkpoint_every_ms`].
    pub fn checkpoint_every_ms(mut self, ms: u64) -> Self {
        self.checkpoint_every_ms = ms;
        self
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad setting.
    pub fn validate(&self) -> Result<()> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(Error::InvalidConfig(format!(
                "segment_bytes {} is outside {SEGMENT_BYTES_MIN}..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        if self.checkpoint_every_records == 0 || self.checkpoint_every_ms == 0 {
            return Err(Error::InvalidConfig("checkpoint intervals must be above zero".into()));
        }
        if self.segment_age_ms == Some(0) || self.retention_age_ms == Some(0) {
            return Err(Error::InvalidConfig("ages must be above zero".into()));
        }
        Ok(())
    }

    pub(crate) fn load(dir: &Path) -> Result<TopicConfig> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).context(|| format!("reading {}", path.display()))?;
        let config: TopicConfig = serde_json::from_str(&text).map_err(|e| Error::Corrupt {
            file: path.clone(),
            byte_pos: 0,
            reason: format!("topic settings do not parse: {e}"),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Writes the settings of a new topic; false when the topic has settings already
    /// (another thread or process created it first), which are then left as they are.
    pub(crate) fn save_new(&self, dir: &Path) -> Result<bool> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        crate::fsutil::create_atomic(&dir.join(CONFIG_FILE), text.as_bytes())
    }
}

/// Checks a topic name: 1 to 200 bytes of `[A-Za-z0-9._-]`, not starting with a dot.
///
/// # Errors
/// [`Error::InvalidTopicName`] saying why.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.len() > TOPIC_NAME_BYTES_MAX {
        Some("it is longer than 200 bytes")
    } else if name.starts_with('.') {
        Some("it starts with a dot")
    } else if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        Some("only letters, digits, '.', '_' and '-' are allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Error::InvalidTopicName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "a b", ".hidden", &"x".repeat(201)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["agent-trail", "a.b_c-1", &"x".repeat(200)] {
            assert!(validate_topic_name(good).is_ok(), "{good:?} refused");
        }
    }
}
