//! Recovery of the active segment when a process takes over a topic for appending.
//!
//! The log is the only truth: the active segment is walked batch by batch with full
//! checks; a torn tail (a batch cut short, or a tail of zeros, with nothing valid after
//! it) is truncated and reported (zeros alone, which an appender under
//! `Durability::Always` writes ahead of its records, quietly); bad bytes *followed by*
//! valid batches are corruption in the middle of the log and stop the open with an error
//! naming file and byte.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::index::file::{self, IndexKind, Parsed};
use crate::index::SegmentIndex;
use crate::segment::batch::{self, BATCH_HEADER_BYTES, BATCH_MAGIC};
use crate::segment::{self, Scan, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::wal::ActiveFile;
use crate::{Offset, Result};

/// What recovery found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The active segment that was checked.
    pub segment: PathBuf,
    /// Valid bytes kept.
    pub kept_bytes: u64,
    /// Bytes of a torn tail that were truncated (`zero_bytes` included).
    pub truncated_bytes: u64,
    /// Of those, the zeros that ended the file: space an appender under
    /// `Durability::Always` wrote ahead of its records, or blocks a crash left unwritten.
    /// Truncating them loses nothing.
    pub zero_bytes: u64,
    /// Records the torn tail's first batch header announced (0 when unreadable).
    pub truncated_records: u64,
    /// Leftover temporary and orphan index files deleted.
    pub removed_files: Vec<PathBuf>,
    /// Offset after the last valid record.
    pub end_offset: Offset,
    /// Segments deleted because a segment before them, sealed in the background, was
    /// found torn (a power loss before its seal reached the disk; the records after the
    /// tear were never durable). Empty after a clean shutdown or a process crash.
    pub dropped_segments: Vec<PathBuf>,
    /// Consumer groups committed past the recovered end (records they had read were lost),
    /// moved back to it before the first new append.
    pub rewound_groups: Vec<crate::cursor::GroupRewind>,
    /// The last appender closed the active segment cleanly (its framed index vouches for
    /// the log's size): nothing it acknowledged or showed readers can have been lost.
    pub closed_cleanly: bool,
}

impl RecoveryReport {
    /// True when recovery removed records, not just zeros or leftover files: the torn
    /// tail held bytes other than zeros, or whole segments were dropped.
    pub fn lost_records(&self) -> bool {
        self.truncated_bytes > self.zero_bytes || !self.dropped_segments.is_empty()
    }
}

/// The recovered active segment.
pub(crate) struct Recovered {
    pub active: ActiveFile,
    pub scan: Scan,
    pub report: RecoveryReport,
}

/// Recovers the newest segment of `dir` (creating segment 0 when there is none).
/// The caller holds the topic's append lock.
pub(crate) fn recover_active(dir: &Path) -> Result<Recovered> {
    let removed_files = remove_leftovers(dir)?;
    let dropped_segments = confirm_seals(dir)?;
    let bases = segment::list_segments(dir)?;
    newest_segment_present(dir, bases.last().copied())?;
    let Some(&base) = bases.last() else {
        let active = ActiveFile::create(dir, Offset(0))?;
        segment::write_sealed_through(dir, Offset(0))?;
        let report = RecoveryReport {
            segment: active.path.clone(),
            removed_files,
            dropped_segments,
            ..RecoveryReport::default()
        };
        let scan = segment::scan_batches(&[], Offset(0), &active.path, true)?;
        return Ok(Recovered { active, scan, report });
    };
    let path = dir.join(segment::file_name(base, LOG_EXT));
    let bytes = fs::read(&path).context(|| format!("reading active segment {}", path.display()))?;
    let scan = segment::scan_batches(&bytes, base, &path, true)?;
    let mut report = RecoveryReport {
        segment: path.clone(),
        kept_bytes: scan.valid_bytes,
        truncated_bytes: bytes.len() as u64 - scan.valid_bytes,
        removed_files,
        end_offset: scan.end_offset,
        dropped_segments,
        ..RecoveryReport::default()
    };
    let closed = closed_cleanly_at(&path, base);
    if let Some(closed) = closed.filter(|&closed| scan.valid_bytes < closed) {
        return Err(damage_before_clean_close(&path, &scan, bytes.len() as u64, closed));
    }
    report.closed_cleanly = closed == Some(bytes.len() as u64);
    if let Some(err) = &scan.stopped_by {
        let tail = &bytes[scan.valid_bytes as usize..];
        // Also when the batch looks cut short: a torn batch is the last thing in the file,
        // so a valid batch after it means its length field is damaged (byte 4).
        if let Some(later) = find_valid_batch_after(tail, scan.end_offset) {
            let byte_pos = if err.truncated { 4 } else { err.byte_pos };
            return Err(segment::corrupt(
                &path,
                scan.valid_bytes + byte_pos,
                format!(
                    "{}; a valid batch follows at byte {}, so this is not a torn tail",
                    err.reason,
                    scan.valid_bytes + later as u64
                ),
            ));
        }
        report.truncated_records = batch::BatchHeader::decode(tail)
            .map(|h| u64::from(h.record_count))
            .or_else(|_| announced_records(tail))
            .unwrap_or(0);
    }
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .context(|| format!("opening active segment {}", path.display()))?;
    report.zero_bytes = bytes[scan.valid_bytes as usize..]
        .iter()
        .rev()
        .take_while(|&&b| b == 0)
        .count() as u64;
    if report.truncated_bytes > 0 {
        log.set_len(scan.valid_bytes)
            .and_then(|()| log.sync_all())
            .context(|| format!("truncating torn tail of {}", path.display()))?;
    }
    if report.truncated_bytes == report.zero_bytes {
        if report.zero_bytes > 0 {
            tracing::debug!(
                segment = %path.display(),
                zero_bytes = report.zero_bytes,
                "cut the zeros after the last batch"
            );
        }
    } else {
        tracing::warn!(
            segment = %path.display(),
            kept_bytes = report.kept_bytes,
            truncated_bytes = report.truncated_bytes,
            truncated_records = report.truncated_records,
            "truncated a torn tail after an unclean shutdown"
        );
    }
    if segment::read_sealed_through(dir)? != Some(base) {
        segment::write_sealed_through(dir, base)?;
    }
    let mut active = ActiveFile::with_log(path, base, log, scan.valid_bytes, true)?;
    write_index(&mut active, &scan.index)?;
    active.first_timestamp_us = (scan.batches > 0).then_some(scan.first_timestamp_us);
    Ok(Recovered { active, scan, report })
}

/// Checks that the segment `sealed.offset` names as started exists: a roll creates the
/// new segment (and syncs the directory) before any seal moves `sealed.offset` to it, so
/// a newest segment below it means segments were deleted from under the store. Moving
/// `sealed.offset` back and appending would reuse offsets that were acknowledged.
fn newest_segment_present(dir: &Path, newest: Option<Offset>) -> Result<()> {
    let Some(sealed) = segment::read_sealed_through(dir)? else {
        return Ok(());
    };
    if newest.is_some_and(|base| base >= sealed) || (newest.is_none() && sealed == Offset(0)) {
        return Ok(());
    }
    let found = newest.map_or_else(
        || "no segment".to_owned(),
        |b| format!("the newest segment starts at {}", b.0),
    );
    Err(segment::corrupt(
        &dir.join(segment::SEALED_FILE),
        0,
        format!(
            "segments up to offset {} were sealed, so a segment starting there must exist, but {found}: \
             segment files are missing (nothing was changed)",
            sealed.0
        ),
    ))
}

/// The log size a clean close vouched for: the active segment's offset index is framed
/// (written, after the log's sync, when the appender closed; the next appender deletes it
/// before it writes). Bytes below it were durable, so damage there is not a torn tail.
fn closed_cleanly_at(path: &Path, base: Offset) -> Option<u64> {
    clean_close_size(&fs::read(path.with_extension(INDEX_EXT)).ok()?, base)
}

/// [`closed_cleanly_at`] from the offset index's bytes, for a caller that has read them.
pub(crate) fn clean_close_size(index_bytes: &[u8], base: Offset) -> Option<u64> {
    match file::parse(IndexKind::Offset, index_bytes) {
        Parsed::Framed(header, _) if header.base_offset == base.0 => Some(header.log_bytes),
        _ => None,
    }
}

/// The error for a segment closed cleanly at `closed` bytes whose valid batches now end
/// before that: damaged, or cut short.
fn damage_before_clean_close(path: &Path, scan: &Scan, len: u64, closed: u64) -> crate::Error {
    let (at, reason) = match &scan.stopped_by {
        Some(err) if len >= closed => (
            scan.valid_bytes + if err.truncated { 4 } else { err.byte_pos },
            err.reason.clone(),
        ),
        _ => (len.min(scan.valid_bytes), format!("the file ends at byte {len}")),
    };
    segment::corrupt(
        path,
        at,
        format!(
            "{reason}; the segment was closed cleanly at {closed} bytes (its index says so), \
             so this is damage to acknowledged records, not a torn tail; nothing was truncated"
        ),
    )
}

/// Checks the segments sealed in the background whose seal is not recorded as durable
/// (base at or above `sealed.offset`, other than the newest). Each is read whole: a
/// complete one is synced and gets its index files; a torn one (a power loss before its
/// seal reached the disk) becomes the newest segment, and the segments after it, whose
/// records were never durable either, are deleted and returned. Bad bytes followed by a
/// valid batch are corruption, as for the active segment, and nothing is deleted.
fn confirm_seals(dir: &Path) -> Result<Vec<PathBuf>> {
    let Some(through) = segment::read_sealed_through(dir)? else {
        // A topic written before background sealing existed: every roll sealed at once.
        return Ok(Vec::new());
    };
    let bases = segment::list_segments(dir)?;
    for (i, pair) in bases.windows(2).enumerate() {
        let (base, next) = (pair[0], pair[1]);
        if base < through {
            continue;
        }
        let path = dir.join(segment::file_name(base, LOG_EXT));
        let bytes = fs::read(&path).context(|| format!("reading segment {}", path.display()))?;
        let scan = segment::scan_batches(&bytes, base, &path, true)?;
        match &scan.stopped_by {
            None if scan.end_offset == next && scan.batches > 0 => {
                fs::File::open(&path)
                    .and_then(|f| f.sync_data())
                    .context(|| format!("syncing segment {}", path.display()))?;
                segment::write_index_files(&path, &scan.index)?;
                segment::write_sealed_through(dir, next)?;
            }
            None if scan.end_offset > next => {
                return Err(segment::corrupt(
                    &path,
                    scan.valid_bytes,
                    format!(
                        "segment ends at offset {} but the next segment starts at {next}",
                        scan.end_offset
                    ),
                ))
            }
            stopped => {
                // Cut short: at a batch boundary (stopped is None), or inside a batch.
                let tail = &bytes[scan.valid_bytes as usize..];
                if let Some((err, later)) = stopped.as_ref().zip(find_valid_batch_after(tail, scan.end_offset)) {
                    return Err(segment::corrupt(
                        &path,
                        scan.valid_bytes + err.byte_pos,
                        format!(
                            "{}; a valid batch follows at byte {}, so this is not a torn tail",
                            err.reason,
                            scan.valid_bytes + later as u64
                        ),
                    ));
                }
                // The torn segment becomes the active one. Readers in other processes
                // may have it mapped (to them it was sealed), so its torn tail is not
                // cut in place, which would leave their mappings past the end of the
                // file (SIGBUS): its valid prefix replaces it as a new file (atomic
                // replace), and their mappings keep the old one.
                if scan.valid_bytes < bytes.len() as u64 {
                    crate::fsutil::write_atomic(&path, &bytes[..scan.valid_bytes as usize])?;
                }
                let mut dropped = Vec::new();
                for &later in &bases[i + 1..] {
                    let segment = segment::SealedSegment::new(dir, later);
                    segment.delete_files()?;
                    dropped.push(segment.path);
                }
                crate::fsutil::sync_dir(dir)?;
                tracing::warn!(
                    segment = %path.display(),
                    end_offset = scan.end_offset.0,
                    dropped = dropped.len(),
                    "a segment sealed in the background was torn (power loss before its seal was durable); \
                     the segments after it held no durable record and were deleted"
                );
                return Ok(dropped);
            }
        }
    }
    Ok(Vec::new())
}

/// The record count a cut-short header announces, if its magic and count are there.
fn announced_records(tail: &[u8]) -> std::result::Result<u64, ()> {
    if tail.len() >= 28 && batch::read_u32(tail, 0) == BATCH_MAGIC {
        return Ok(u64::from(batch::read_u32(tail, 24)));
    }
    Err(())
}

/// Looks for a complete, checksummed batch after the first bad byte whose offset is at or
/// past `expected`: if one exists, the bad bytes are not a torn tail.
pub(crate) fn find_valid_batch_after(tail: &[u8], expected: Offset) -> Option<usize> {
    if tail.iter().all(|&b| b == 0) {
        return None;
    }
    let magic = BATCH_MAGIC.to_le_bytes();
    let mut scratch = Vec::new();
    let mut from = 1;
    while from + BATCH_HEADER_BYTES <= tail.len() {
        let found = tail[from..].windows(4).position(|w| w == magic)?;
        let at = from + found;
        if let Ok((header, _)) = batch::decode_batch(&tail[at..], &mut scratch) {
            if header.base_offset >= expected {
                return Some(at);
            }
        }
        from = at + 1;
    }
    None
}

/// Writes the rebuilt index of the active segment into its (already truncated) files.
fn write_index(active: &mut ActiveFile, index: &SegmentIndex) -> Result<()> {
    use std::io::Write;
    let mut offsets = Vec::new();
    let mut times = Vec::new();
    for e in &index.offsets {
        offsets.extend_from_slice(&e.to_bytes());
    }
    for e in &index.times {
        times.extend_from_slice(&e.to_bytes());
    }
    let path = active.path.clone();
    active
        .index_file
        .write_all(&offsets)
        .and_then(|()| active.time_file.write_all(&times))
        .context(|| format!("rewriting indexes of {}", path.display()))
}

/// Temp files modified this recently may be in flight (another thread or process creating
/// a topic's settings or replacing a file): recovery leaves them; a crash's leftovers
/// are removed by a later recovery.
const TMP_IN_FLIGHT: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the temp file `path` is old enough to be a crash's leftover (a modification
/// time in the future, or unknown, counts as recent).
fn stale_temp(path: &Path) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age >= TMP_IN_FLIGHT)
}

/// Deletes stale temporary files and index files whose log is gone (a crash during
/// retention).
fn remove_leftovers(dir: &Path) -> Result<Vec<PathBuf>> {
    let start = segment::read_start_offset(dir)?;
    let mut names = Vec::new();
    let entries = fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let path = entry.context(|| format!("listing {}", dir.display()))?.path();
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            names.push((name.to_owned(), path.clone()));
        }
    }
    let newest = names
        .iter()
        .filter_map(|(n, _)| segment::parse_file_name(n, LOG_EXT))
        .max();
    let exts = [LOG_EXT, INDEX_EXT, TIME_INDEX_EXT, crate::index::keys::KEY_INDEX_EXT];
    let mut removed = Vec::new();
    for (name, path) in names {
        let base = exts.iter().find_map(|ext| segment::parse_file_name(&name, ext));
        // Below the recorded start: a retention pass was interrupted before deleting it.
        let below_start = base.is_some_and(|b| b < start && Some(b) != newest);
        // Index files whose log is gone: a retention delete was interrupted.
        let orphan = base.is_some() && !name.ends_with(LOG_EXT) && !path.with_extension(LOG_EXT).exists();
        let leftover_temp = name.ends_with(crate::fsutil::TMP_SUFFIX) && stale_temp(&path);
        if leftover_temp || below_start || orphan {
            segment::remove_if_exists(&path)?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        crate::fsutil::sync_dir(dir)?;
    }
    Ok(removed)
}
