//! Segment files: a base offset in the name, batches inside (see FORMAT.md, "Segment").
//!
//! This module reads and validates segment bytes and their index files. It knows nothing
//! about durability policy (the `wal` module owns fsync) or about which segment is active
//! (the `topic` module decides).

pub mod batch;
mod index_files;
mod mmap;
mod record_codec;

use std::fs::{self, File};
use std::ops::{Deref, Range};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use parking_lot::Mutex;

use crate::error::IoContext;
use crate::index::{self, OffsetEntry, SegmentIndex, TimeEntry};
use crate::segment::batch::{BatchHeader, DecodeError};
use crate::{Error, Offset, Result};

/// Extension of segment log files.
pub const LOG_EXT: &str = "log";
/// Extension of offset index files.
pub const INDEX_EXT: &str = "index";
/// Extension of time index files.
pub const TIME_INDEX_EXT: &str = "timeindex";

/// The file name of a segment's log, index or time index: the base offset in 20 digits.
pub fn file_name(base: Offset, ext: &str) -> String {
    format!("{:020}.{ext}", base.0)
}

/// Parses `00000000000000001234.log` into its base offset.
pub fn parse_file_name(name: &str, ext: &str) -> Option<Offset> {
    let stem = name.strip_suffix(ext)?.strip_suffix('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok().map(Offset)
}

/// Base offsets of every segment log in `dir`, sorted.
pub fn list_segments(dir: &Path) -> Result<Vec<Offset>> {
    let mut bases = Vec::new();
    let entries = fs::read_dir(dir).context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.context(|| format!("listing {}", dir.display()))?;
        if let Some(base) = entry.file_name().to_str().and_then(|n| parse_file_name(n, LOG_EXT)) {
            bases.push(base);
        }
    }
    // Tiering hook: segments evicted to object storage still belong to the topic.
    bases.extend(crate::tier::evicted_bases(dir)?);
    bases.sort_unstable();
    bases.dedup();
    // Segments below the recorded start are leftovers of a retention pass interrupted
    // between recording the new start and deleting the files (the appender deletes them).
    // The newest segment always stays: it is the active one.
    let start = read_start_offset(dir)?;
    let keep_from = bases.partition_point(|&b| b < start).min(bases.len().saturating_sub(1));
    bases.drain(..keep_from);
    Ok(bases)
}

/// File recording the first offset a topic holds; only retention moves it forward.
pub const START_FILE: &str = "start.offset";

/// The recorded first offset (0 when no retention ever ran): u64 offset, u32 CRC-32 of it.
///
/// # Errors
/// I/O errors; [`Error::Corrupt`] for a file that is not 12 bytes with a matching CRC.
pub fn read_start_offset(dir: &Path) -> Result<Offset> {
    Ok(read_offset_file(&dir.join(START_FILE))?.unwrap_or(Offset(0)))
}

/// Records `start` as the topic's first offset (atomic replace).
///
/// # Errors
/// I/O errors.
pub fn write_start_offset(dir: &Path, start: Offset) -> Result<()> {
    write_offset_file(&dir.join(START_FILE), start)
}

/// File recording how far sealing is durable: every segment whose base offset is below
/// the recorded offset was synced and has its final index files. Segments at or above it
/// (other than the active one) were sealed in the background and are checked by the next
/// appender's recovery (see FORMAT.md, "Sealing").
pub const SEALED_FILE: &str = "sealed.offset";

/// The recorded sealed-through offset; None for a topic written before the file existed
/// (every non-active segment of such a topic was sealed synchronously).
///
/// # Errors
/// I/O errors; [`Error::Corrupt`] for a file that is not 12 bytes with a matching CRC.
pub fn read_sealed_through(dir: &Path) -> Result<Option<Offset>> {
    read_offset_file(&dir.join(SEALED_FILE))
}

/// Records that every segment below `through` is durably sealed (atomic replace).
///
/// # Errors
/// I/O errors.
pub fn write_sealed_through(dir: &Path, through: Offset) -> Result<()> {
    write_offset_file(&dir.join(SEALED_FILE), through)
}

/// Reads a file of one u64 offset and the u32 CRC-32 of its 8 bytes; None when missing.
fn read_offset_file(path: &Path) -> Result<Option<Offset>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
    };
    if bytes.len() != 12 || crc32fast::hash(&bytes[..8]) != batch::read_u32(&bytes, 8) {
        return Err(corrupt(path, 0, "offset file is not 8 bytes and their CRC-32"));
    }
    Ok(Some(Offset(batch::read_u64(&bytes, 0))))
}

fn write_offset_file(path: &Path, offset: Offset) -> Result<()> {
    let mut bytes = offset.0.to_le_bytes().to_vec();
    bytes.extend_from_slice(&crc32fast::hash(&offset.0.to_le_bytes()).to_le_bytes());
    crate::fsutil::write_atomic(path, &bytes)
}

/// Bytes of one batch: a range of a mapped sealed segment, or a copy read from the active one.
#[derive(Clone)]
pub enum BatchBytes {
    /// Borrowed from a mapping that stays alive as long as this value.
    Mapped(Arc<Mmap>, Range<usize>),
    /// Read with `pread`.
    Owned(Vec<u8>),
}

impl Deref for BatchBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            BatchBytes::Mapped(map, range) => &map[range.clone()],
            BatchBytes::Owned(bytes) => bytes,
        }
    }
}

pub(crate) fn corrupt(file: &Path, byte_pos: u64, reason: impl Into<String>) -> Error {
    Error::Corrupt {
        file: file.to_path_buf(),
        byte_pos,
        reason: reason.into(),
    }
}

pub(crate) fn corrupt_at(file: &Path, batch_pos: u64, err: DecodeError) -> Error {
    corrupt(file, batch_pos + err.byte_pos, err.reason)
}

/// What the loader learned about a sealed segment.
pub struct SealedData {
    /// The mapping (None for an empty file, which cannot be mapped).
    pub map: Option<Arc<Mmap>>,
    /// The confirmed or rebuilt sparse indexes.
    pub index: SegmentIndex,
    /// Offset one past the last record.
    pub end_offset: Offset,
    /// Append time of the first and last batch (0 when empty).
    pub first_timestamp_us: u64,
    /// Append time of the last batch.
    pub last_timestamp_us: u64,
    /// File size.
    pub bytes: u64,
    /// Tiering hook: for a segment read from object storage in ranges, its bytes (then
    /// `map` is None and `as_slice` is empty).
    pub lazy: Option<Arc<dyn LazyBytes>>,
    /// The segment's key index (hash, relative offset), once a query needed it; dropped
    /// with the mapping, so memory stays bounded by the loaded segments.
    pub key_index: std::sync::OnceLock<Arc<Vec<(u64, u32)>>>,
}

/// Tiering hook: the bytes of an evicted segment, fetched by range on demand.
pub trait LazyBytes: Send + Sync {
    /// Bytes `range` of the segment's log (fetched first if needed).
    ///
    /// # Errors
    /// Object store errors naming the key; [`Error::Corrupt`] for a range that does not
    /// match its recorded checksum.
    fn read(&self, range: Range<u64>) -> Result<Vec<u8>>;
}

impl SealedData {
    /// A mapped segment whose first and last batch headers (`first`, `last`) confirm
    /// `index`.
    fn confirmed(map: Arc<Mmap>, index: SegmentIndex, first: &BatchHeader, last: &BatchHeader) -> SealedData {
        SealedData {
            bytes: map.len() as u64,
            map: Some(map),
            index,
            end_offset: last.end_offset(),
            first_timestamp_us: first.timestamp_us,
            last_timestamp_us: last.timestamp_us,
            lazy: None,
            key_index: std::sync::OnceLock::new(),
        }
    }

    /// The numbers kept after the mapping is dropped.
    pub fn summary(&self) -> Summary {
        Summary {
            end_offset: self.end_offset,
            first_timestamp_us: self.first_timestamp_us,
            last_timestamp_us: self.last_timestamp_us,
            bytes: self.bytes,
        }
    }

    /// The mapped bytes.
    pub fn as_slice(&self) -> &[u8] {
        self.map.as_deref().map_or(&[], |m| &m[..])
    }
}

/// The few numbers of a sealed segment kept after its mapping is dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Offset one past the last record.
    pub end_offset: Offset,
    /// Append time of the first batch.
    pub first_timestamp_us: u64,
    /// Append time of the last batch.
    pub last_timestamp_us: u64,
    /// File size.
    pub bytes: u64,
}

/// A sealed segment: never written again, loaded (mapped and indexed) on first use.
pub struct SealedSegment {
    /// Base offset (from the file name).
    pub base: Offset,
    /// Path of the log file.
    pub path: PathBuf,
    loaded: Mutex<Option<Arc<SealedData>>>,
    summary: std::sync::OnceLock<Summary>,
}

impl SealedSegment {
    /// A sealed segment not yet loaded.
    pub fn new(dir: &Path, base: Offset) -> Self {
        SealedSegment {
            base,
            path: dir.join(file_name(base, LOG_EXT)),
            loaded: Mutex::new(None),
            summary: std::sync::OnceLock::new(),
        }
    }

    /// A segment just sealed by this process's appender, loaded at once from its final
    /// in-memory index: readers crossing into it while its seal is pending would
    /// otherwise rebuild the index by walking the whole log (its index files are
    /// written only after the log is synced). The index is confirmed against the log's
    /// first and last batch headers, as index files are; if that fails, the segment is
    /// left to load normally.
    pub fn just_sealed(dir: &Path, base: Offset, log: &File, index: SegmentIndex) -> Self {
        let segment = SealedSegment::new(dir, base);
        match sealed_from_index(log, base, index) {
            Some(data) => {
                let _ = segment.summary.set(data.summary());
                *segment.loaded.lock() = Some(Arc::new(data));
            }
            None => tracing::warn!(segment = %segment.path.display(), "the final index does not match the log"),
        }
        segment
    }

    /// The summary, if the segment was loaded once.
    pub fn summary(&self) -> Option<Summary> {
        self.summary.get().copied()
    }

    /// Maps the file and loads its indexes, confirming them against the log and
    /// rebuilding them when they do not confirm (rewriting the files when `writable`).
    ///
    /// # Errors
    /// I/O errors, or [`Error::Corrupt`] naming the file and byte when the log itself is bad.
    pub fn load(&self, writable: bool) -> Result<Arc<SealedData>> {
        let mut slot = self.loaded.lock();
        if let Some(data) = slot.as_ref() {
            return Ok(Arc::clone(data));
        }
        let data = Arc::new(load_sealed_or_tiered(&self.path, self.base, writable)?);
        let _ = self.summary.set(data.summary());
        *slot = Some(Arc::clone(&data));
        Ok(data)
    }

    /// Drops the mapping and indexes (they are reloaded on next use).
    pub fn unload(&self) {
        *self.loaded.lock() = None;
    }

    /// True when the mapping is held.
    pub fn is_loaded(&self) -> bool {
        self.loaded.lock().is_some()
    }

    /// Deletes the segment's files: the log first, so a crash leaves only orphan indexes.
    pub fn delete_files(&self) -> Result<()> {
        self.unload();
        remove_if_exists(&self.path)?;
        remove_if_exists(&self.path.with_extension(INDEX_EXT))?;
        remove_if_exists(&self.path.with_extension(TIME_INDEX_EXT))?;
        remove_if_exists(&self.path.with_extension(crate::index::keys::KEY_INDEX_EXT))
    }
}

pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context(|| format!("deleting {}", path.display())),
        _ => Ok(()),
    }
}

/// Tiering hook: a sealed segment whose `.log` is gone locally but that the tier manifest
/// lists as in the bucket is fetched into the read cache, and the cached copy is mapped.
fn load_sealed_or_tiered(path: &Path, base: Offset, writable: bool) -> Result<SealedData> {
    match load_sealed(path, base, writable) {
        Err(Error::Io { source, context }) if source.kind() == std::io::ErrorKind::NotFound => {
            match crate::tier::fetch_evicted(path, base)? {
                Some(crate::tier::Fetched::Whole(cached)) => load_sealed(&cached, base, false),
                Some(crate::tier::Fetched::Ranged(data)) => Ok(data),
                None => Err(Error::Io { source, context }),
            }
        }
        other => other,
    }
}

fn load_sealed(path: &Path, base: Offset, writable: bool) -> Result<SealedData> {
    let file = File::open(path).context(|| format!("opening segment {}", path.display()))?;
    let bytes = file
        .metadata()
        .context(|| format!("reading size of {}", path.display()))?
        .len();
    if bytes == 0 {
        return Ok(SealedData {
            map: None,
            index: SegmentIndex::default(),
            end_offset: base,
            first_timestamp_us: 0,
            last_timestamp_us: 0,
            bytes,
            lazy: None,
            key_index: std::sync::OnceLock::new(),
        });
    }
    if bytes > index::SEGMENT_BYTES_MAX {
        return Err(corrupt(path, index::SEGMENT_BYTES_MAX, "segment larger than the limit"));
    }
    let map = Arc::new(mmap::map_sealed(&file).context(|| format!("mapping {}", path.display()))?);
    if let Some(data) = confirm_index_files(path, base, &map) {
        return Ok(data);
    }
    let scan = scan_batches(&map, base, path, true)?;
    if scan.valid_bytes != bytes {
        let err = scan.stopped_by.unwrap_or_else(|| DecodeError {
            byte_pos: 0,
            reason: "bytes after the last batch".into(),
            truncated: true,
        });
        return Err(corrupt_at(path, scan.valid_bytes, err));
    }
    if scan.batches == 0 {
        return Err(corrupt(path, 0, "sealed segment holds no batch"));
    }
    tracing::info!(segment = %path.display(), "rebuilt indexes of sealed segment from the log");
    if writable {
        write_index_files(path, &scan.index)?;
    }
    Ok(SealedData {
        map: Some(map),
        index: scan.index,
        end_offset: scan.end_offset,
        first_timestamp_us: scan.first_timestamp_us,
        last_timestamp_us: scan.last_timestamp_us,
        bytes,
        lazy: None,
        key_index: std::sync::OnceLock::new(),
    })
}

/// The data of a sealed segment whose index is already in memory and trusted (the
/// appender's own, see [`SealedSegment::just_sealed`]); None if the log's ends do not
/// confirm it or the file cannot be mapped.
fn sealed_from_index(log: &File, base: Offset, index: SegmentIndex) -> Option<SealedData> {
    let bytes = log.metadata().ok()?.len();
    if bytes == 0 || bytes > index::SEGMENT_BYTES_MAX || !index.is_time_exact() {
        return None;
    }
    let map = Arc::new(mmap::map_sealed(log).ok()?);
    let header_at = |pos: u64| BatchHeader::decode_header_only(map.get(usize::try_from(pos).ok()?..)?).ok();
    let (first, last) = index_files::confirm_ends(&index.offsets, base, bytes, header_at)?;
    Some(SealedData::confirmed(map, index, &first, &last))
}

/// Uses the index files if they describe this log and the log confirms their first and
/// last entries (see `index_files::load`); None means "rebuild from the log".
fn confirm_index_files(path: &Path, base: Offset, map: &Arc<Mmap>) -> Option<SealedData> {
    let (index, first, last) = index_files::load(path, base, map)?;
    Some(SealedData::confirmed(Arc::clone(map), index, &first, &last))
}

/// The result of walking a segment's batches from the start.
pub struct Scan {
    /// Bytes of valid batches from the start.
    pub valid_bytes: u64,
    /// Number of valid batches.
    pub batches: u64,
    /// Offset after the last valid batch.
    pub end_offset: Offset,
    /// Rebuilt sparse indexes (with a final entry for the last batch).
    pub index: SegmentIndex,
    /// Append time of the first valid batch.
    pub first_timestamp_us: u64,
    /// Append time of the last valid batch.
    pub last_timestamp_us: u64,
    /// Why the walk stopped before the end, if it did.
    pub stopped_by: Option<DecodeError>,
}

/// Walks batches from position 0, checking framing, checksums (when `verify`), records and
/// offset continuity; stops at the first bad batch. Timestamps must not decrease.
pub fn scan_batches(log: &[u8], base: Offset, path: &Path, verify: bool) -> Result<Scan> {
    let mut scan = Scan {
        valid_bytes: 0,
        batches: 0,
        end_offset: base,
        index: SegmentIndex::default(),
        first_timestamp_us: 0,
        last_timestamp_us: 0,
        stopped_by: None,
    };
    let mut scratch = Vec::new();
    let mut last_entry = None;
    while (scan.valid_bytes as usize) < log.len() {
        let pos = scan.valid_bytes as usize;
        let checked = if verify {
            batch::decode_batch(&log[pos..], &mut scratch).map(|(h, _)| h)
        } else {
            BatchHeader::decode(&log[pos..])
        };
        let header = match checked.and_then(|h| check_continuity(&h, &scan)) {
            Ok(h) => h,
            Err(e) => {
                scan.stopped_by = Some(e);
                break;
            }
        };
        let relative = index::relative(base, header.base_offset)
            .ok_or_else(|| corrupt(path, pos as u64, "offset too far from the segment base"))?;
        scan.index.observe_batch(relative, pos as u32, header.timestamp_us);
        last_entry = Some((relative, pos as u32, header.timestamp_us));
        if scan.batches == 0 {
            scan.first_timestamp_us = header.timestamp_us;
        }
        scan.batches += 1;
        scan.last_timestamp_us = header.timestamp_us;
        scan.end_offset = header.end_offset();
        scan.valid_bytes += u64::from(header.batch_bytes);
    }
    if let Some((relative, pos, ts)) = last_entry {
        scan.index.force_final_entry(relative, pos, ts);
    }
    Ok(scan)
}

fn check_continuity(header: &BatchHeader, scan: &Scan) -> std::result::Result<BatchHeader, DecodeError> {
    if header.base_offset != scan.end_offset {
        return Err(DecodeError {
            byte_pos: 16,
            reason: format!(
                "batch starts at offset {}, expected {}",
                header.base_offset, scan.end_offset
            ),
            truncated: false,
        });
    }
    if scan.batches > 0 && header.timestamp_us < scan.last_timestamp_us {
        return Err(DecodeError {
            byte_pos: 32,
            reason: "append time goes backwards".into(),
            truncated: false,
        });
    }
    Ok(*header)
}

pub(crate) use index_files::load_tail;
pub use index_files::write_index_files;

/// Reads `len` bytes at `pos` from a file (the active segment, read with `pread`).
pub fn read_exact_at(file: &File, path: &Path, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; len];
    file.read_exact_at(&mut buf, pos)
        .context(|| format!("reading {len} bytes at byte {pos} of {}", path.display()))?;
    Ok(buf)
}

/// Reads up to `len` bytes at `pos`: fewer when the file ends sooner (a file another
/// process may cut short while it is read, as a seal cuts off the zeros written ahead).
///
/// # Errors
/// I/O errors other than the end of the file.
pub fn read_up_to_at(file: &File, path: &Path, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let mut filled = 0;
    while filled < len {
        match file.read_at(&mut buf[filled..], pos + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(e).context(|| format!("reading {len} bytes at byte {pos} of {}", path.display()));
            }
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Index entries that observe_batch would add, as one log write's worth of file bytes.
pub fn encode_entries(
    offset: Option<OffsetEntry>,
    time: Option<TimeEntry>,
    offsets: &mut Vec<u8>,
    times: &mut Vec<u8>,
) {
    if let Some(e) = offset {
        offsets.extend_from_slice(&e.to_bytes());
    }
    if let Some(e) = time {
        times.extend_from_slice(&e.to_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_reject_strangers() {
        let name = file_name(Offset(1234), LOG_EXT);
        assert_eq!(name, "00000000000000001234.log");
        assert_eq!(parse_file_name(&name, LOG_EXT), Some(Offset(1234)));
        assert_eq!(parse_file_name("00000000000000001234.index", LOG_EXT), None);
        assert_eq!(parse_file_name("1234.log", LOG_EXT), None);
        assert_eq!(parse_file_name("0000000000000000123x.log", LOG_EXT), None);
    }
}
