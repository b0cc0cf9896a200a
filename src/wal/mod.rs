//! The write path: framing appends into batches, writing them to the active segment,
//! group commit, durability modes, and recovery of the active segment after a crash.
//!
//! **Invariant:** only this module calls fsync on segment data; `segment` never does.

mod recovery;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::sync::atomic::Ordering;

use parking_lot::Mutex;

pub use recovery::RecoveryReport;
pub(crate) use recovery::{find_valid_batch_after, recover_active};

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
    /// Appends return once written to the OS; syncs happen only at segment roll and close.
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
            .append(true)
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

    /// Reserves disk blocks past the end of the file (`fallocate` with `KEEP_SIZE`: the
    /// file's size, which readers go by, does not change) so that appends up to `end`
    /// write into allocated blocks: page-cache writes run ~1.5x faster here than when
    /// every page must be allocated on the way. A failure only costs that speed.
    fn reserve(&mut self, end: u64) {
        if end <= self.reserved {
            return;
        }
        let len = (end - self.reserved).max(PREALLOCATE_BYTES);
        match rustix::fs::fallocate(&*self.log, rustix::fs::FallocateFlags::KEEP_SIZE, self.reserved, len) {
            Ok(()) => self.reserved += len,
            Err(e) => {
                tracing::debug!(segment = %self.path.display(), error = %e, "preallocation failed");
                // Don't try again for every append.
                self.reserved = end.max(self.reserved) + PREALLOCATE_BYTES;
            }
        }
    }
}

/// Index entries gathered before they are written to the active segment's index files.
const INDEX_WRITE_BYTES: usize = 4096;

/// Blocks reserved ahead of the active segment's writer at a time.
pub const PREALLOCATE_BYTES: u64 = 8 << 20;

/// Frees blocks reserved past the end of a segment file (after its last write).
///
/// # Errors
/// I/O errors.
pub(crate) fn release_reserved(log: &File, path: &Path) -> Result<()> {
    let len = log
        .metadata()
        .context(|| format!("reading size of {}", path.display()))?
        .len();
    log.set_len(len)
        .context(|| format!("releasing preallocated blocks of {}", path.display()))
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
    /// for every waiting appender); otherwise each append writes at once.
    pub deferred: bool,
    pub payload: Vec<u8>,
    pub index_buf: Vec<u8>,
    pub time_buf: Vec<u8>,
    /// Relative offset, position and append time of the last batch written.
    pub last_batch: Option<(u32, u32, u64)>,
    /// The lock file, held (flock) for as long as this value lives.
    pub _lock: File,
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
        self.active.reserve(self.active.bytes + self.buf.len() as u64);
        let path = &self.active.path;
        (&*self.active.log)
            .write_all(&self.buf)
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

/// Shared group-commit coordinator of one topic: how far the log is durable, whether a
/// sync is running, whether one failed.
///
/// Waiters are woken one by one, and only when their records are durable (or to lead the
/// next sync): with 64 appenders on 2 cores, waking every waiter after each sync so that
/// most of them could go back to sleep cost more than the fdatasync itself.
#[derive(Default)]
pub(crate) struct GroupCommit {
    synced: std::sync::atomic::AtomicU64,
    poisoned_flag: std::sync::atomic::AtomicBool,
    poisoned: Mutex<Option<String>>,
    waits: Mutex<Waits>,
}

/// Who waits for which offset to be durable, and whether a leader is syncing.
#[derive(Default)]
struct Waits {
    /// Leaders syncing now (at most [`SYNC_LEADERS_MAX`]).
    leaders: usize,
    /// The highest offset a running or finished sync covers (known once its leader has
    /// flushed): a waiter below it needs no sync of its own.
    covering: u64,
    waiters: Vec<Waiter>,
}

/// Syncs that may run at once. fdatasyncs of one file overlap on this machine's disk
/// (two threads: 1.5-2x the syncs per second of one), so while one sync runs, appenders
/// it does not cover start the next instead of waiting for it to end.
const SYNC_LEADERS_MAX: usize = 2;

struct Waiter {
    target: u64,
    thread: std::thread::Thread,
}

/// What a sync leader needs, taken under the writer lock and used outside it.
pub(crate) struct SyncTarget {
    pub log: Arc<File>,
    pub path: PathBuf,
    pub end: Offset,
    pub base: Offset,
    pub bytes: u64,
}

impl GroupCommit {
    /// Returns once offsets below `target` are durable. One caller at a time becomes the
    /// leader and fdatasyncs for everyone who wrote before it started; the others sleep
    /// until a sync covers them, or until they are asked to lead the next one.
    /// `snapshot` is called by the leader to flush and learn what to sync; `publish`
    /// after success.
    pub fn wait_durable(
        &self,
        topic: &str,
        target: Offset,
        snapshot: impl Fn() -> Result<Option<SyncTarget>>,
        publish: impl Fn(&SyncTarget),
    ) -> Result<()> {
        let me = std::thread::current();
        loop {
            if self.poisoned_flag.load(Ordering::Acquire) {
                let cause = self.poisoned.lock().clone().unwrap_or_default();
                return Err(Error::Poisoned {
                    topic: topic.to_owned(),
                    cause,
                });
            }
            if self.synced.load(Ordering::Acquire) >= target.0 {
                return Ok(());
            }
            let lead = {
                let mut waits = self.waits.lock();
                if self.synced.load(Ordering::Acquire) >= target.0 || self.poisoned_flag.load(Ordering::Acquire) {
                    continue;
                }
                waits.waiters.retain(|w| w.thread.id() != me.id());
                let covered = waits.leaders > 0 && waits.covering >= target.0;
                if covered || waits.leaders >= SYNC_LEADERS_MAX {
                    waits.waiters.push(Waiter {
                        target: target.0,
                        thread: me.clone(),
                    });
                    false
                } else {
                    waits.leaders += 1;
                    true
                }
            };
            if lead {
                let led = self.lead(topic, target, &snapshot, &publish);
                self.finish_round();
                led?;
            } else {
                // Woken when a sync covers `target`, to lead, or spuriously: all re-checked.
                std::thread::park();
            }
        }
    }

    /// Ends a leader's round: wakes the waiters it made durable, and one of the others
    /// (the oldest) to lead the next sync.
    fn finish_round(&self) {
        let synced = self.synced.load(Ordering::Acquire);
        let poisoned = self.poisoned_flag.load(Ordering::Acquire);
        let mut woken = Vec::new();
        {
            let mut waits = self.waits.lock();
            waits.leaders -= 1;
            let (leaders, covering) = (waits.leaders, waits.covering);
            let mut next_leader = None;
            waits.waiters.retain(|w| {
                if poisoned || w.target <= synced {
                    woken.push(w.thread.clone());
                    false
                } else if next_leader.is_none() && !(leaders > 0 && w.target <= covering) {
                    next_leader = Some(w.thread.clone());
                    false
                } else {
                    true
                }
            });
            woken.extend(next_leader);
        }
        for thread in woken {
            thread.unpark();
        }
    }

    /// Wakes the waiters whose offsets are below `synced` (all of them once poisoned).
    fn wake_covered(&self) {
        let synced = self.synced.load(Ordering::Acquire);
        let poisoned = self.poisoned_flag.load(Ordering::Acquire);
        let mut woken = Vec::new();
        self.waits.lock().waiters.retain(|w| {
            let wake = poisoned || w.target <= synced;
            if wake {
                woken.push(w.thread.clone());
            }
            !wake
        });
        for thread in woken {
            thread.unpark();
        }
    }

    /// One sync as leader: flush, fdatasync, publish. It does not wait for appenders that
    /// are about to write: with many appenders the syncs pipeline (those who write during
    /// one sync are covered by the next), and a wait only lengthened every round (measured:
    /// 64 writers, 75 k/s with a 200 µs wait, 89 k/s without).
    fn lead(
        &self,
        topic: &str,
        target: Offset,
        snapshot: &impl Fn() -> Result<Option<SyncTarget>>,
        publish: &impl Fn(&SyncTarget),
    ) -> Result<()> {
        let work = match snapshot() {
            Ok(Some(work)) => {
                let mut waits = self.waits.lock();
                waits.covering = waits.covering.max(work.end.0);
                work
            }
            Ok(None) => {
                // The writer was closed meanwhile; closing synced (or poisoned) everything.
                if self.synced.load(Ordering::Acquire) < target.0 && !self.poisoned_flag.load(Ordering::Acquire) {
                    return Err(Error::Closed);
                }
                return Ok(());
            }
            Err(e) => {
                self.poison(format!("a write failed: {e}"));
                return Err(e);
            }
        };
        let result = if crate::failpoint::fails("wal.sync") {
            Err(std::io::Error::other("injected fdatasync failure (failpoint wal.sync)"))
        } else {
            work.log.sync_data()
        };
        crate::failpoint::hit("wal.after_sync");
        match result {
            Ok(()) => {
                self.synced.fetch_max(work.end.0, Ordering::AcqRel);
                publish(&work);
                Ok(())
            }
            Err(e) => {
                let cause = format!("fdatasync of {} failed: {e}", work.path.display());
                tracing::error!(topic, %cause, "poisoning topic");
                self.poison(cause.clone());
                Err(Error::Poisoned {
                    topic: topic.to_owned(),
                    cause,
                })
            }
        }
    }

    /// Marks everything below `end` durable (after a roll or close synced it).
    pub fn mark_synced(&self, end: Offset) {
        self.synced.fetch_max(end.0, Ordering::AcqRel);
        self.wake_covered();
    }

    /// Refuses further writes.
    pub fn poison(&self, cause: String) {
        self.poisoned.lock().get_or_insert(cause);
        self.poisoned_flag.store(true, Ordering::Release);
        self.wake_covered();
    }

    /// The poison cause, if any.
    pub fn poisoned(&self) -> Option<String> {
        if !self.poisoned_flag.load(Ordering::Acquire) {
            return None;
        }
        self.poisoned.lock().clone()
    }
}
