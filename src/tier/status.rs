//! Tiering status: computed from the manifests and local files (works in any process),
//! plus the last pass's outcome, which the uploading process saves in
//! `<store>/tier/status.json`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::segment::{self, LOG_EXT};
use crate::tier::manifest::{self, SegmentState};
use crate::tier::upload::PassReport;
use crate::tier::{PersistedConfig, StoreTier, STORE_TIER_DIR};
use crate::{Error, Offset, Result};

/// The outcome of recent passes.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct RunStatus {
    pub last_error: Option<String>,
    pub last_error_at_us: Option<u64>,
    pub last_success_at_us: Option<u64>,
    pub consecutive_failures: u32,
    /// The error of each topic whose last pass failed.
    #[serde(default)]
    pub topic_errors: std::collections::BTreeMap<String, String>,
}

impl RunStatus {
    pub fn record(&mut self, error: Option<&Error>, _report: &PassReport) {
        let now = crate::topic::now_us();
        match error {
            Some(e) => {
                self.last_error = Some(e.to_string());
                self.last_error_at_us = Some(now);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            }
            None => {
                self.last_success_at_us = Some(now);
                self.consecutive_failures = 0;
            }
        }
    }

    pub fn save(&self, store_dir: &Path) -> Result<()> {
        let path = store_dir.join(STORE_TIER_DIR).join("status.json");
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        crate::fsutil::write_atomic(&path, &text)
    }

    fn load(store_dir: &Path) -> RunStatus {
        std::fs::read(store_dir.join(STORE_TIER_DIR).join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }
}

/// Tiering numbers of one topic.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TopicTierStatus {
    /// Topic name.
    pub topic: String,
    /// Sealed segments not yet verified in the bucket (waiting or interrupted).
    pub pending_segments: usize,
    /// Their bytes.
    pub pending_bytes: u64,
    /// Segments in the bucket with a local copy too.
    pub uploaded_segments: usize,
    /// Segments only in the bucket.
    pub evicted_segments: usize,
    /// Bytes in the bucket (every file of every unit).
    pub remote_bytes: u64,
    /// Segments whose remote copy awaits deletion (total retention).
    pub deleting_segments: usize,
    /// Oldest pending segment.
    pub oldest_pending: Option<Offset>,
    /// The error of this topic's last pass, if it failed.
    pub last_error: Option<String>,
}

/// Tiering status of a store.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct TierStatus {
    /// The bucket prefix URL, when configured.
    pub remote: Option<String>,
    /// Per topic.
    pub topics: Vec<TopicTierStatus>,
    /// Sum of pending segments.
    pub pending_segments: usize,
    /// Sum of pending bytes.
    pub pending_bytes: u64,
    /// Sum of evicted segments.
    pub evicted_segments: usize,
    /// Sum of remote bytes.
    pub remote_bytes: u64,
    /// Bytes in the read cache (this process's view).
    pub cache_bytes: u64,
    /// Last error of a pass, if the last pass failed (or earlier ones).
    pub last_error: Option<String>,
    /// When it happened (µs since the epoch).
    pub last_error_at_us: Option<u64>,
    /// When a pass last succeeded.
    pub last_success_at_us: Option<u64>,
    /// Passes failed in a row.
    pub consecutive_failures: u32,
}

pub(crate) fn collect(store_dir: &Path, tier: Option<&StoreTier>) -> Result<TierStatus> {
    let run = match tier {
        Some(t) => t.status.lock().clone(),
        None => RunStatus::load(store_dir),
    };
    let remote = match tier {
        Some(t) => Some(t.remote.describe()),
        None => PersistedConfig::load(store_dir)?.map(|p| p.url),
    };
    let mut status = TierStatus {
        remote,
        cache_bytes: tier.map_or(0, |t| t.cache.bytes()),
        last_error: if run.consecutive_failures > 0 {
            run.last_error.clone()
        } else {
            None
        },
        last_error_at_us: run.last_error_at_us,
        last_success_at_us: run.last_success_at_us,
        consecutive_failures: run.consecutive_failures,
        ..TierStatus::default()
    };
    let topics_dir = store_dir.join(crate::store::TOPICS_DIR);
    let mut names: Vec<String> = std::fs::read_dir(&topics_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| crate::topic::validate_topic_name(n).is_ok())
        .collect();
    names.sort();
    for name in names {
        let dir = topics_dir.join(&name);
        let m = manifest::load(&dir)?;
        let mut t = TopicTierStatus {
            last_error: run.topic_errors.get(&name).cloned(),
            topic: name,
            ..TopicTierStatus::default()
        };
        let mut bases: Vec<(u64, u64)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let base = e
                    .file_name()
                    .to_str()
                    .and_then(|n| segment::parse_file_name(n, LOG_EXT))?;
                Some((base.0, e.metadata().map_or(0, |m| m.len())))
            })
            .collect();
        bases.sort_unstable();
        bases.pop(); // the active segment is never tiered
        for (base, bytes) in bases {
            let state = m.as_ref().and_then(|m| m.get(base)).map(|s| s.state);
            if matches!(state, None | Some(SegmentState::Uploading)) {
                t.pending_segments += 1;
                t.pending_bytes += bytes;
                t.oldest_pending.get_or_insert(Offset(base));
            }
        }
        for s in m.iter().flat_map(|m| m.segments.iter()) {
            match s.state {
                SegmentState::Uploaded => t.uploaded_segments += 1,
                SegmentState::Evicted => t.evicted_segments += 1,
                SegmentState::Deleting => t.deleting_segments += 1,
                SegmentState::Uploading => {}
            }
            if s.in_bucket() {
                t.remote_bytes += s.total_bytes();
            }
        }
        status.pending_segments += t.pending_segments;
        status.pending_bytes += t.pending_bytes;
        status.evicted_segments += t.evicted_segments;
        status.remote_bytes += t.remote_bytes;
        status.topics.push(t);
    }
    Ok(status)
}
