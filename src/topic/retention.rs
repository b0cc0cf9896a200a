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
    /// Consumer groups that lost records they had not consumed (hard cap only).
    pub lost: Vec<GroupLoss>,
}

/// Records a consumer group had not consumed when the hard size cap deleted them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupLoss {
    /// The group.
    pub group: String,
    /// First offset lost.
    pub from: Offset,
    /// Offset after the last one lost.
    pub to: Offset,
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
        if config.retention_bytes.is_none()
            && config.retention_age_ms.is_none()
            && config.retention_hard_bytes.is_none()
        {
            return Ok(report);
        }
        let groups = if config.retention_until_consumed || config.retention_hard_bytes.is_some() {
            self.groups()?
        } else {
            Vec::new()
        };
        let consumed_floor = groups.iter().map(|g| g.committed).min();
        let sealed = shared.segments.read().sealed.clone();
        let mut total = shared.visible.lock().tail_bytes;
        let mut sizes = Vec::with_capacity(sealed.len());
        for s in &sealed {
            // Tiering hook: an evicted segment counts with its size in the bucket.
            let len = crate::tier::segment_bytes(&s.path, s.base);
            sizes.push(len);
            total += len;
        }
        let tail_base = shared.segments.read().tail.base;
        // With tamper evidence, a segment is deleted only once the Merkle tree holds its
        // leaves durably (the tree thread may lag behind the appends); otherwise their
        // hashes would be lost and the tree could never be completed. A tree already
        // missing leaves before the segment cannot be helped by waiting.
        let tree_synced = config
            .tamper_evidence
            .then(|| shared.tree_synced.load(std::sync::atomic::Ordering::SeqCst));
        for (i, (segment, bytes)) in sealed.iter().zip(sizes).enumerate() {
            let segment_end = sealed.get(i + 1).map_or(tail_base, |s| s.base);
            if tree_synced.is_some_and(|t| t < segment_end.0 && t >= segment.base.0) {
                break;
            }
            let hard = config.retention_hard_bytes.is_some_and(|max| total > max);
            let unconsumed = config.retention_until_consumed && consumed_floor.is_some_and(|f| f < segment_end);
            let by_size = config.retention_bytes.is_some_and(|max| total > max);
            let by_age = match config.retention_age_ms {
                Some(age_ms) => {
                    let summary = shared.summary(segment)?;
                    summary.last_timestamp_us < now_us().saturating_sub(age_ms * 1000)
                }
                None => false,
            };
            if !hard && (unconsumed || (!by_size && !by_age)) {
                break;
            }
            // A segment is deleted only once sealed (its seal thread may still be running).
            if segment.base >= shared.sealing.through() {
                shared.seal_pending()?;
            }
            for g in groups.iter().filter(|g| g.committed < segment_end) {
                let loss = GroupLoss {
                    group: g.name.clone(),
                    from: g.committed.max(segment.base),
                    to: segment_end,
                };
                tracing::warn!(topic = %shared.name, group = %loss.group, from = loss.from.0, to = loss.to.0, "hard size cap deleted records a group had not consumed");
                report.lost.push(loss);
            }
            {
                let mut segments = shared.segments.write();
                if segments.sealed.first().map(|s| s.base) != Some(segment.base) {
                    break;
                }
                segments.sealed.remove(0);
            }
            // Tiering hook: past total retention the bucket's copy goes too (marked here,
            // deleted by the uploader).
            crate::tier::on_retention_delete(&shared.dir, segment.base)?;
            // Record the new start first: a segment missing below it is retention's doing,
            // one missing above it is damage that `verify` reports.
            crate::segment::write_start_offset(&shared.dir, segment_end)?;
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
