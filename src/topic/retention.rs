//! Retention: deleting whole sealed segments, oldest first, by total size and by age.
//! The active segment is never deleted.

use std::path::PathBuf;

use crate::topic::write::now_us;
use crate::topic::Topic;
use crate::{Offset, Result};

/// What one retention pass deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Segment log files deleted, oldest first.
    pub deleted_segments: Vec<PathBuf>,
    /// Bytes of log deleted.
    pub deleted_bytes: u64,
    /// First offset still held afterwards.
    pub start_offset: Offset,
}

impl Topic {
    /// Applies the topic's retention settings now (it also runs after every roll).
    /// Takes the append lock if this process does not hold it yet.
    ///
    /// # Errors
    /// [`crate::Error::Locked`] when another process appends; I/O errors.
    pub fn apply_retention(&self) -> Result<RetentionReport> {
        self.recover()?;
        let _guard = self.shared.writer.lock();
        self.apply_retention_locked()
    }

    /// Retention with the writer lock already held by the caller.
    pub(crate) fn apply_retention_locked(&self) -> Result<RetentionReport> {
        let shared = &self.shared;
        let config = &shared.config;
        let mut report = RetentionReport {
            start_offset: self.start_offset(),
            ..RetentionReport::default()
        };
        if config.retention_bytes.is_none() && config.retention_age_ms.is_none() {
            return Ok(report);
        }
        let sealed = shared.segments.read().sealed.clone();
        let mut total = shared.visible.lock().tail_bytes;
        let mut sizes = Vec::with_capacity(sealed.len());
        for s in &sealed {
            let len = std::fs::metadata(&s.path).map_or(0, |m| m.len());
            sizes.push(len);
            total += len;
        }
        for (segment, bytes) in sealed.iter().zip(sizes) {
            let by_size = config.retention_bytes.is_some_and(|max| total > max);
            let by_age = match config.retention_age_ms {
                Some(age_ms) => {
                    let summary = shared.summary(segment)?;
                    summary.last_timestamp_us < now_us().saturating_sub(age_ms * 1000)
                }
                None => false,
            };
            if !by_size && !by_age {
                break;
            }
            {
                let mut segments = shared.segments.write();
                if segments.sealed.first().map(|s| s.base) != Some(segment.base) {
                    break;
                }
                segments.sealed.remove(0);
            }
            segment.delete_files()?;
            crate::failpoint::hit("retention.after_delete");
            crate::fsutil::sync_dir(&shared.dir)?;
            tracing::info!(topic = %shared.name, segment = %segment.path.display(), bytes, "retention deleted a segment");
            total -= bytes;
            report.deleted_bytes += bytes;
            report.deleted_segments.push(segment.path.clone());
        }
        report.start_offset = self.start_offset();
        Ok(report)
    }
}
