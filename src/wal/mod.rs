//! The write path: framing appends into batches, writing them to the active segment,
//! group commit, durability modes, and recovery of the active segment after a crash.
//!
//! **Invariant:** only this module calls fsync on segment data; `segment` never does.

mod commit;
mod recovery;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(crate) use commit::{GroupCommit, SyncTarget};
pub use recovery::RecoveryReport;
pub(crate) use recovery::{clean_close_size, find_valid_batch_after, recover_active};

use crate::error::IoContext;
use crate::index::{self, SegmentIndex};
use crate::record::RecordFields;
use crate::segment::batch::{self, Compression, BATCH_PAYLOAD_TARGET_BYTES, BATCH_RECORDS_MAX};
use crate::segment::{self, INDEX_EXT, LOG_EXT, TIME_INDEX_EXT};
use crate::{Error, Offset, Result};

/// When an append is acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// An append returns only after its bytes are fdatasync'd; concurrent appenders share
    /// one sync (group commit). The default.
    #[default]
    Always,
    /// Appends return once written to the OS; a background thread syncs every `n` ms.
    IntervalMs(u64),
    /// Appends return once written to the OS; a rolled segment is synced in the background
    /// once the appends pause (at most ~1 s after its roll), and everything at close.
    Buffered,
}

/// The active segment as the writer holds it.
pub(crate) struct ActiveFile {
    pub base: Offset,
    pub path: PathBuf,
    pub log: Arc<File>,
    pub index_file: File,
    pub time_file: File,
    pub bytes: u64,
    /// Bytes up to which disk blocks are reserved (see [`ActiveFile::reserve`]).
    pub reserved: u64,
    pub first_timestamp_us: Option<u64>,
}

impl ActiveFile {
    /// Creates a new, empty active segment with base `base` in `dir` (fsyncing the directory).
    pub fn create(dir: &Path, base: Offset) -> Result<ActiveFile> {
        let path = dir.join(segment::file_name(base, LOG_EXT));
        let log = OpenOptions::new()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .context(|| format!("creating segment {}", path.display()))?;
        let active = ActiveFile::with_log(path, base, log, 0, true)?;
        crate::fsutil::sync_dir(dir)?;
        Ok(active)
    }

    /// Wraps an existing log file whose valid length is `bytes`; index files are
    /// truncated when `fresh_index`, else appended to.
    pub fn with_log(path: PathBuf, base: Offset, log: File, bytes: u64, fresh_index: bool) -> Result<ActiveFile> {
        let open_index = |ext: &str| {
            let p = path.with_extension(ext);
            // A fresh index replaces the file rather than cutting it in place: a reader may
            // have mapped the framed index the last appender wrote at close.
            if fresh_index {
                segment::remove_if_exists(&p)?;
            }
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&p)
                .context(|| format!("opening index {}", p.display()))
        };
        Ok(ActiveFile {
            index_file: open_index(INDEX_EXT)?,
            time_file: open_index(TIME_INDEX_EXT)?,
            base,
            path,
            log: Arc::new(log),
            bytes,
            reserved: bytes,
            first_timestamp_us: None,
        })
    }

    /// Makes room past the end of the log for appends up to `end`, [`PREALLOCATE_BYTES`]
    /// (with `zeros`: [`ZERO_FILL_BYTES`]) at a time. A failure only costs speed.
    ///
    /// - Without `zeros`, disk blocks are reserved with `fallocate(KEEP_SIZE)`: the file's
    ///   size, which readers go by, does not change, and page-cache writes into allocated
    ///   blocks run ~1.5x faster here than when every page must be allocated on the way.
    /// - With `zeros` (under [`Durability::Always`], where every append is synced), the
    ///   space is written with zeros, so the file already has its size and written blocks
    ///   when records overwrite them: an fdatasync then writes the data only, where a
    ///   growing file (or one with reserved, unwritten blocks) makes every fdatasync write
    ///   the inode too. Measured on this project's machine (ext4, virtual disk), 8 KiB
    ///   writes and an fdatasync each: 147 µs → 90 µs (p50). The zeros after the last
    ///   batch are cut off when the segment is sealed or closed, and by recovery after a
    ///   crash (FORMAT.md, "Segment").
    ///
    /// Nothing is reserved past `limit` (the segment's size bound) beyond what `end` needs:
    /// a topic of small segments does not write a MiB of zeros for each.
    fn reserve(&mut self, end: u64, zeros: bool, limit: u64) {
        if end <= self.reserved {
            return;
        }
        if limit <= self.reserved {
            // Past the bound (a first batch larger than it): the write extends the file.
            self.reserved = end;
            return;
        }
        let ahead = |chunk: u64| (end - self.reserved).max(chunk.min(limit - self.reserved));
        let result = if zeros {
            let len = ahead(ZERO_FILL_BYTES);
            let filled = self.filled_zeros(len);
            filled.map(|()| len)
        } else {
            let len = ahead(PREALLOCATE_BYTES);
            rustix::fs::fallocate(&*self.log, rustix::fs::FallocateFlags::KEEP_SIZE, self.reserved, len)
                .map(|()| len)
                .map_err(std::io::Error::from)
        };
        match result {
            Ok(len) => self.reserved += len,
            Err(e) => {
                tracing::debug!(segment = %self.path.display(), error = %e, "preallocation failed");
                // Don't try again for every append.
                self.reserved = end.max(self.reserved) + PREALLOCATE_BYTES;
            }
        }
    }

    /// Writes `len` zero bytes at `reserved`.
    fn filled_zeros(&self, len: u64) -> std::io::Result<()> {
        const CHUNK: usize = 256 << 10;
        let zeros = vec![0u8; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))];
        let mut at = self.reserved;
        while at < self.reserved + len {
            let n = (self.reserved + len - at).min(zeros.len() as u64) as usize;
            self.log.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        Ok(())
    }
}

/// Index entries gathered before they are written to the active segment's index files.
const INDEX_WRITE_BYTES: usize = 4096;

/// Blocks reserved ahead of the active segment's writer at a time.
pub const PREALLOCATE_BYTES: u64 = 8 << 20;

/// Bytes written with zeros ahead of the active segment's writer at a time under
/// [`Durability::Always`] (see `ActiveFile::reserve`): one larger sync per that many
/// bytes of records.
pub const ZERO_FILL_BYTES: u64 = 1 << 20;

/// Cuts a segment file to `len`, the end of its last batch: frees blocks reserved past
/// the end and drops zeros written ahead (see [`ActiveFile::reserve`]). Called before the
/// fdatasync that seals or closes it, which makes the size durable with the data.
///
/// # Errors
/// I/O errors.
pub(crate) fn release_reserved(log: &File, path: &Path, len: u64) -> Result<()> {
    log.set_len(len)
        .context(|| format!("releasing the space reserved past the end of {}", path.display()))
}

/// State of the one appender of a topic in this process (behind the topic's writer lock).
pub(crate) struct Writer {
    pub active: ActiveFile,
    pub next_offset: Offset,
    pub last_timestamp_us: u64,
    /// Reusable buffers: encoded batches, one batch's payload, index entries.
    pub buf: Vec<u8>,
    /// Under `Durability::Always`, encoded batches stay in `buf` until the group-commit
    /// leader flushes them with one write before its fdatasync (one write and one sync
    /// for every waiting appender), and space ahead is written with zeros
    /// ([`ActiveFile::reserve`]); otherwise each append writes at once.
    pub deferred: bool,
    /// The topic's segment size bound: no space is reserved past it.
    pub segment_bytes: u64,
    pub payload: Vec<u8>,
    pub index_buf: Vec<u8>,
    pub time_buf: Vec<u8>,
    /// Relative offset, position and append time of the last batch written.
    pub last_batch: Option<(u32, u32, u64)>,
    /// The topic's append lock, held for as long as this value lives.
    pub _lock: crate::topic::AppendLock,
}

/// What one append call wrote.
pub(crate) struct Written {
    pub first: Offset,
    pub end: Offset,
}

impl Writer {
    /// Encodes `records` as batches, writes them to the active segment and records index
    /// entries. The caller has checked limits and rolled the segment if needed.
    pub fn write_records(
        &mut self,
        records: &[RecordFields<'_>],
        timestamp_us: u64,
        compression: Compression,
        index: &parking_lot::RwLock<SegmentIndex>,
    ) -> Result<Written> {
        let first = self.next_offset;
        if !self.deferred {
            self.buf.clear();
        }
        let buf_start = self.buf.len();
        let index_marks = (self.index_buf.len(), self.time_buf.len());
        let encoded = self.encode_records(records, timestamp_us, compression, index);
        if let Err(e) = encoded {
            // Nothing of a failed call may reach the file.
            self.buf.truncate(buf_start);
            self.index_buf.truncate(index_marks.0);
            self.time_buf.truncate(index_marks.1);
            self.next_offset = first;
            return Err(e);
        }
        // The active segment's index files are hints for readers in other processes
        // (derived data, rebuilt by recovery, replaced at seal and close): their entries
        // are written a few KiB at a time rather than two small writes per append.
        if self.index_buf.len() + self.time_buf.len() >= INDEX_WRITE_BYTES {
            self.write_index_entries();
        }
        if !self.deferred {
            self.flush()?;
        }
        self.active.first_timestamp_us.get_or_insert(timestamp_us);
        self.last_timestamp_us = timestamp_us;
        Ok(Written {
            first,
            end: self.next_offset,
        })
    }

    /// Appends the index entries gathered so far to the active segment's index files. A
    /// failed write costs a rebuild later, never a record, so it fails nothing.
    pub fn write_index_entries(&mut self) {
        let path = &self.active.path;
        if !self.index_buf.is_empty() {
            if let Err(e) = self.active.index_file.write_all(&self.index_buf) {
                tracing::warn!(segment = %path.display(), error = %e, "offset index write failed");
            }
        }
        if !self.time_buf.is_empty() {
            if let Err(e) = self.active.time_file.write_all(&self.time_buf) {
                tracing::warn!(segment = %path.display(), error = %e, "time index write failed");
            }
        }
        self.index_buf.clear();
        self.time_buf.clear();
    }

    /// Writes the batches waiting in `buf` to the active segment.
    ///
    /// # Errors
    /// The write's I/O error (the caller poisons the topic: the file may hold part of it).
    pub fn flush(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.active.reserve(
            self.active.bytes + self.buf.len() as u64,
            self.deferred,
            self.segment_bytes,
        );
        let path = &self.active.path;
        // Positional: with zeros written ahead, the file's end is not the log's end.
        self.active
            .log
            .write_all_at(&self.buf, self.active.bytes)
            .context(|| format!("appending to {}", path.display()))?;
        self.active.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Bytes of the active segment including batches not yet flushed.
    pub fn logical_bytes(&self) -> u64 {
        self.active.bytes + self.buf.len() as u64
    }

    fn encode_records(
        &mut self,
        records: &[RecordFields<'_>],
        timestamp_us: u64,
        compression: Compression,
        index: &parking_lot::RwLock<SegmentIndex>,
    ) -> Result<()> {
        let mut start = 0;
        let mut index = index.write();
        while start < records.len() {
            let position = self.active.bytes + self.buf.len() as u64;
            let base = Offset(self.next_offset.0);
            // Uncompressed records are encoded in place after the header (one copy);
            // compressed ones go through `payload` first.
            let header_pos = self.buf.len();
            let target = match compression {
                Compression::None => {
                    self.buf.resize(header_pos + batch::BATCH_HEADER_BYTES, 0);
                    &mut self.buf
                }
                Compression::Zstd => {
                    self.payload.clear();
                    &mut self.payload
                }
            };
            let payload_start = target.len();
            let mut end = start;
            while end < records.len()
                && (end == start
                    || (target.len() - payload_start < BATCH_PAYLOAD_TARGET_BYTES && end - start < BATCH_RECORDS_MAX))
            {
                batch::encode_record(target, &records[end]);
                end += 1;
            }
            let count = (end - start) as u32;
            match compression {
                Compression::None => batch::finish_batch(&mut self.buf, header_pos, base, timestamp_us, count),
                Compression::Zstd => {
                    batch::encode_batch(&mut self.buf, base, timestamp_us, count, &self.payload, compression)
                        .context(|| "compressing a batch".to_owned())?;
                }
            }
            let relative = index::relative(self.active.base, base)
                .ok_or_else(|| Error::InvalidConfig("segment holds more than 2^32 records".into()))?;
            let (o, t) = index.observe_batch(relative, position as u32, timestamp_us);
            self.last_batch = Some((relative, position as u32, timestamp_us));
            segment::encode_entries(o, t, &mut self.index_buf, &mut self.time_buf);
            self.next_offset = Offset(self.next_offset.0 + u64::from(count));
            start = end;
        }
        Ok(())
    }

    /// Size a batch of `records` would add, before compression (an upper bound).
    /// `records_bytes` is the sum of their encoded sizes (from the limit check).
    pub fn encoded_upper_bound(record_count: usize, records_bytes: usize) -> u64 {
        let batches = record_count
            .div_ceil(BATCH_RECORDS_MAX)
            .max(records_bytes / BATCH_PAYLOAD_TARGET_BYTES + 1);
        (records_bytes + batches * (batch::BATCH_HEADER_BYTES + 64)) as u64
    }
}
