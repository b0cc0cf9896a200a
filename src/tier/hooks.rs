//! The few functions the engine calls so that evicted segments stay part of a topic.
//! Each works from the topic directory alone (a store opened without tiering, another
//! process) and costs one `stat` when the topic was never tiered.

use std::path::Path;

use crate::segment::Summary;
use crate::tier::manifest::{self, SegmentState};
use crate::{Error, Offset, Result};

fn store_dir_of(topic_dir: &Path) -> Option<&Path> {
    topic_dir.parent()?.parent()
}

/// Base offsets of segments whose copy is in the bucket (uploaded or evicted): the
/// engine's segment list includes them even when their local files are gone.
pub(crate) fn evicted_bases(topic_dir: &Path) -> Result<Vec<Offset>> {
    let Some(m) = manifest::load_cached(topic_dir)? else {
        return Ok(Vec::new());
    };
    Ok(m.segments
        .iter()
        .filter(|s| s.in_bucket())
        .map(|s| Offset(s.base))
        .collect())
}

/// What [`fetch_evicted`] found for a segment whose `.log` is not local.
pub(crate) enum Fetched {
    /// The whole unit is in the read cache: map this `.log`.
    Whole(std::path::PathBuf),
    /// The segment is read by range (indexes fetched, log bytes on demand).
    Ranged(crate::segment::SealedData),
}

/// Called by `SealedSegment::load` when the `.log` is missing: prepares a ranged read of
/// the segment (or fetches it whole into the read cache); None when the manifest does not
/// list it.
pub(crate) fn fetch_evicted(log_path: &Path, base: Offset) -> Result<Option<Fetched>> {
    let Some(topic_dir) = log_path.parent() else {
        return Ok(None);
    };
    let Some(m) = manifest::load_cached(topic_dir)? else {
        return Ok(None);
    };
    let Some(entry) = m.get(base.0).filter(|s| s.in_bucket()) else {
        return Ok(None);
    };
    let store_dir = store_dir_of(topic_dir).unwrap_or(topic_dir);
    let Some(tier) = crate::tier::tier_for(store_dir)? else {
        return Err(Error::InvalidConfig(format!(
            "segment {} was moved to object storage, but {} has no tier settings (tier/config.json)",
            log_path.display(),
            store_dir.display()
        )));
    };
    if let Some(data) = tier.cache.ranged(&tier.remote, &m.topic, entry)? {
        return Ok(Some(Fetched::Ranged(data)));
    }
    let cached = tier.cache.get(tier.remote.as_ref(), &m.topic, entry)?;
    Ok(Some(Fetched::Whole(cached)))
}

/// The summary of an evicted segment from the manifest (no download).
pub(crate) fn evicted_summary(log_path: &Path, base: Offset) -> Option<Summary> {
    if log_path.exists() {
        return None;
    }
    let m = manifest::load_cached(log_path.parent()?).ok()??;
    let s = m.get(base.0).filter(|s| s.in_bucket())?;
    Some(Summary {
        end_offset: Offset(s.end_offset),
        first_timestamp_us: s.first_timestamp_us,
        last_timestamp_us: s.last_timestamp_us,
        bytes: s.log_bytes(),
    })
}

/// Size of a segment's log wherever it is: local, or recorded in the manifest.
pub(crate) fn segment_bytes(log_path: &Path, base: Offset) -> u64 {
    match std::fs::metadata(log_path) {
        Ok(m) => m.len(),
        Err(_) => evicted_summary(log_path, base).map_or(0, |s| s.bytes),
    }
}

/// Called by retention before it deletes a segment's local files: marks the segment
/// `deleting` so the uploader deletes its objects and it leaves the segment list.
pub(crate) fn on_retention_delete(topic_dir: &Path, base: Offset) -> Result<()> {
    if !manifest::manifest_path(topic_dir).exists() {
        return Ok(());
    }
    manifest::update(topic_dir, None, |m| {
        if let Some(s) = m.get_mut(base.0) {
            s.state = SegmentState::Deleting;
        }
        Ok(())
    })?;
    Ok(())
}
