//! Reading and writing a sealed segment's index files (see FORMAT.md, "Offset index",
//! "Time index" and "Index file header").
//!
//! A framed pair whose checksums, header fields and the log's first and last batch agree
//! is trusted as a whole: its exact time index answers seeks without touching the log.
//! Legacy (headerless) files are hints, confirmed on use. Anything else is rebuilt from
//! the log by the caller.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::IoContext;
use crate::index::file::{self, IndexKind, Parsed, FLAG_TIME_EXACT, INDEX_HEADER_BYTES};
use crate::index::{self, SegmentIndex, TimeEntryBytes};
use crate::segment::batch::BatchHeader;
use crate::segment::{mmap, parse_file_name, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::{Offset, Result};

/// Writes both index files of a sealed segment, framed, from scratch (temp file, fsync,
/// rename each). The header records the log's current size, so an index written for a
/// log that later changes is not trusted.
///
/// # Errors
/// I/O errors; [`crate::Error::Corrupt`] when `log_path` is not named like a segment.
pub fn write_index_files(log_path: &Path, index: &SegmentIndex) -> Result<()> {
    let base = log_path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| parse_file_name(n, LOG_EXT))
        .ok_or_else(|| super::corrupt(log_path, 0, "not a segment log file name"))?;
    let log_bytes = fs::metadata(log_path)
        .context(|| format!("reading size of {}", log_path.display()))?
        .len();
    let (offsets, times) = index.encode_files(base, log_bytes);
    crate::fsutil::write_atomic(&log_path.with_extension(INDEX_EXT), &offsets)?;
    crate::fsutil::write_atomic(&log_path.with_extension(TIME_INDEX_EXT), &times)
}

/// A sealed segment's index as its files give it, with the log's first and last batch
/// headers; None when the files are missing, damaged, describe another log, or are not
/// confirmed by the log (the caller rebuilds them from the log).
pub(super) fn load(path: &Path, base: Offset, log: &[u8]) -> Option<(SegmentIndex, BatchHeader, BatchHeader)> {
    let offset_bytes = fs::read(path.with_extension(INDEX_EXT)).ok()?;
    let time_bytes = read_time_file(&path.with_extension(TIME_INDEX_EXT))?;
    let time_slice = (*time_bytes).as_ref();
    let (offsets, offsets_complete) = index::decode_offset_entries(&offset_bytes, log.len() as u64);
    if !offsets_complete {
        return None;
    }
    let (first, last) = confirm_ends(&offsets, base, log.len() as u64, |pos| {
        BatchHeader::decode(log.get(pos as usize..)?).ok()
    })?;
    let framed = match (
        file::parse(IndexKind::Offset, &offset_bytes),
        file::parse(IndexKind::Time, time_slice),
    ) {
        (Parsed::Framed(o, _), Parsed::Framed(t, entries)) => Some((o, t, entries.len())),
        (Parsed::Bad(_), _) | (_, Parsed::Bad(_)) => return None,
        // Legacy, or a pair caught between two renames: hints.
        _ => None,
    };
    let index = match framed {
        Some((o, t, entries_len)) => {
            let describes_log =
                |base_offset: u64, log_bytes: u64| base_offset == base.0 && log_bytes == log.len() as u64;
            if !describes_log(o.base_offset, o.log_bytes) || !describes_log(t.base_offset, t.log_bytes) {
                return None;
            }
            let count = entries_len / index::TIME_ENTRY_BYTES;
            let times = TimeEntryBytes::new(Arc::clone(&time_bytes), INDEX_HEADER_BYTES, count)?;
            let index = SegmentIndex::from_trusted(offsets, times, t.flags & FLAG_TIME_EXACT != 0);
            if !exact_times_confirmed(index.first_time_entry()?, index.last_time_entry()?, &first, &last, base) {
                return None;
            }
            index
        }
        None => {
            let (times, times_complete) = index::decode_time_entries(time_slice);
            let last_time = times.last()?;
            if !times_complete
                || times[0].relative_offset != 0
                || last_time.timestamp_us > last.timestamp_us
                || base.0 + u64::from(last_time.relative_offset) > last.base_offset.0
            {
                return None;
            }
            SegmentIndex::from_entries(offsets, times)
        }
    };
    Some((index, first, last))
}

/// The active segment's index as a trusted framed pair gives it (written when the
/// appender closed the segment, see `Topic::close`), with its last batch header, read
/// with `pread` (the active segment is never mapped). None unless both files are framed,
/// exact, describe this log at its current size and the log confirms their first and
/// last entries: the reader then walks the segment as before.
pub(crate) fn load_tail(path: &Path, base: Offset, log: &File, log_len: u64) -> Option<(SegmentIndex, BatchHeader)> {
    let offset_bytes = fs::read(path.with_extension(INDEX_EXT)).ok()?;
    let time_bytes = fs::read(path.with_extension(TIME_INDEX_EXT)).ok()?;
    let (Parsed::Framed(o, _), Parsed::Framed(t, _)) = (
        file::parse(IndexKind::Offset, &offset_bytes),
        file::parse(IndexKind::Time, &time_bytes),
    ) else {
        return None;
    };
    let describes_log = |base_offset: u64, log_bytes: u64| base_offset == base.0 && log_bytes == log_len;
    if !describes_log(o.base_offset, o.log_bytes) || !describes_log(t.base_offset, t.log_bytes) {
        return None;
    }
    if t.flags & FLAG_TIME_EXACT == 0 {
        return None;
    }
    let (offsets, offsets_complete) = index::decode_offset_entries(&offset_bytes, log_len);
    let (times, times_complete) = index::decode_time_entries(&time_bytes);
    if !offsets_complete || !times_complete {
        return None;
    }
    let (first, last) = confirm_ends(&offsets, base, log_len, |pos| {
        let mut head = [0u8; crate::segment::batch::BATCH_HEADER_BYTES];
        log.read_exact_at(&mut head, pos).ok()?;
        BatchHeader::decode_header_only(&head).ok()
    })?;
    if !exact_times_confirmed(*times.first()?, *times.last()?, &first, &last, base) {
        return None;
    }
    let last_relative = u32::try_from(last.base_offset.0 - base.0).ok()?;
    let index = SegmentIndex::exact_prefix(offsets, times, last_relative, last.timestamp_us);
    Some((index, last))
}

/// What every trusted or hinted pair must agree with, from the log's headers (read by
/// `header_at`): the first batch starts at the base offset, the last offset entry names
/// the batch that ends the log. Returns the first and last batch headers.
pub(super) fn confirm_ends(
    offsets: &[index::OffsetEntry],
    base: Offset,
    log_len: u64,
    header_at: impl Fn(u64) -> Option<BatchHeader>,
) -> Option<(BatchHeader, BatchHeader)> {
    let last_entry = offsets.last()?;
    let last = header_at(u64::from(last_entry.position))?;
    if last.base_offset.0 != base.0 + u64::from(last_entry.relative_offset)
        || u64::from(last_entry.position) + u64::from(last.batch_bytes) != log_len
    {
        return None;
    }
    let first = header_at(0)?;
    (first.base_offset == base).then_some((first, last))
}

/// An exact time index begins with the first batch and ends with the first batch of the
/// last append time.
fn exact_times_confirmed(
    first_time: index::TimeEntry,
    last_time: index::TimeEntry,
    first: &BatchHeader,
    last: &BatchHeader,
    base: Offset,
) -> bool {
    first_time.relative_offset == 0
        && first_time.timestamp_us == first.timestamp_us
        && last_time.timestamp_us == last.timestamp_us
        && base.0 + u64::from(last_time.relative_offset) <= last.base_offset.0
}

/// The time index file's bytes: mapped when it is framed (written once, by an atomic
/// replace, never changed after: see `mmap::map_index`), read otherwise.
fn read_time_file(path: &Path) -> Option<Arc<dyn AsRef<[u8]> + Send + Sync>> {
    let file = File::open(path).ok()?;
    let mut head = [0u8; INDEX_HEADER_BYTES];
    let framed = file.read_exact_at(&mut head, 0).is_ok() && file::header_checks(IndexKind::Time, &head);
    if framed {
        return Some(Arc::new(mmap::map_index(&file).ok()?));
    }
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut &file, &mut bytes).ok()?;
    Some(Arc::new(bytes))
}
