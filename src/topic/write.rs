//! The append path of a topic: taking the append lock, recovery, rolling, closing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::IoContext;
use crate::record::{check_limits, NewRecord, RecordFields};
use crate::segment::{self, SealedSegment};
use crate::topic::seal::PendingSeal;
use crate::topic::{Topic, TopicShared, Visible};
use crate::wal::{self, ActiveFile, Durability, RecoveryReport, SyncTarget, Writer};
use crate::{Error, Offset, Result};

/// Name of the lock file held by the appending process.
pub const LOCK_FILE: &str = "append.lock";

/// The offsets one append call was given: `first .. first + count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// Offset of the first record.
    pub first: Offset,
    /// Number of records.
    pub count: u64,
}

impl Appended {
    /// Every assigned offset, in order.
    pub fn offsets(&self) -> impl Iterator<Item = Offset> {
        (self.first.0..self.first.0 + self.count).map(Offset)
    }
    /// Offset after the last record.
    pub fn end(&self) -> Offset {
        Offset(self.first.0 + self.count)
    }
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

impl Topic {
    /// Appends one record; returns its offset once it is acknowledged (under
    /// [`Durability::Always`], once it is on disk).
    ///
    /// # Errors
    /// [`Error::LimitExceeded`] for a record over a limit (nothing is written),
    /// [`Error::Locked`] when another process appends to this topic, [`Error::Poisoned`]
    /// after a failed sync, I/O errors.
    pub fn append(&self, record: &NewRecord) -> Result<Offset> {
        self.append_fields(&[record.as_fields()]).map(|a| a.first)
    }

    /// Appends records as one unit with one append time; returns their offsets.
    /// Either every record is checked and written or, on a limit error, none is.
    ///
    /// # Errors
    /// As for [`Topic::append`].
    pub fn append_batch(&self, records: &[NewRecord]) -> Result<Appended> {
        let fields: Vec<RecordFields<'_>> = records.iter().map(NewRecord::as_fields).collect();
        self.append_fields(&fields)
    }

    /// Appends borrowed records (no copy of the values before encoding).
    ///
    /// # Errors
    /// As for [`Topic::append`].
    pub fn append_fields(&self, records: &[RecordFields<'_>]) -> Result<Appended> {
        let appended = self.write_fields(records)?;
        if self.shared.durability == Durability::Always && appended.count > 0 {
            self.sync_through(appended.end())?;
        }
        Ok(appended)
    }

    /// Writes records without waiting for a sync: under [`Durability::Always`] they are
    /// neither durable nor visible yet (a sync through `end()` does both); otherwise
    /// they are visible on return.
    pub(crate) fn write_fields(&self, records: &[RecordFields<'_>]) -> Result<Appended> {
        let mut records_bytes = 0;
        for record in records {
            records_bytes += check_limits(record)?;
        }
        let shared = &self.shared;
        let mut guard = shared.writer.lock();
        if guard.is_none() {
            *guard = Some(self.acquire_writer()?);
        }
        if let Some(e) = shared.commit.poison_error(&shared.name) {
            return Err(e);
        }
        let Some(writer) = guard.as_mut() else {
            return Err(Error::Closed);
        };
        if records.is_empty() {
            return Ok(Appended {
                first: writer.next_offset,
                count: 0,
            });
        }
        self.roll_if_due(writer, Writer::encoded_upper_bound(records.len(), records_bytes))?;
        let timestamp_us = now_us().max(writer.last_timestamp_us);
        let tail = Arc::clone(&shared.segments.read().tail);
        let written = writer
            .write_records(records, timestamp_us, shared.config.compression, &tail.index)
            .inspect_err(|e| shared.commit.poison(format!("a write failed: {e}")))?;
        let appended = Appended {
            first: written.first,
            count: written.end.0 - written.first.0,
        };
        let visible = written_visible(writer);
        drop(guard);
        if shared.durability != Durability::Always {
            shared.publish(visible);
        }
        Ok(appended)
    }

    /// Flushes the writer's buffered batches and says what a sync must cover.
    fn current_sync_target(&self) -> Result<Option<SyncTarget>> {
        let mut guard = self.shared.writer.lock();
        let Some(writer) = guard.as_mut() else { return Ok(None) };
        writer.flush()?;
        Ok(Some(sync_target(writer)))
    }

    /// Makes every record below `end` durable (group commit) and publishes what that
    /// made visible.
    pub(crate) fn sync_through(&self, end: Offset) -> Result<()> {
        let shared = &self.shared;
        // Older segments first: a record is durable only if everything before it is.
        shared.seal_pending()?;
        shared.commit.wait_durable(
            &shared.name,
            end,
            || self.current_sync_target(),
            |t| {
                shared.set_visible(Visible {
                    tail_base: t.base,
                    end: t.end,
                    tail_bytes: t.bytes,
                });
            },
            || {
                shared.appended.notify_all();
            },
        )
    }

    /// Takes the append lock and recovers the active segment, returning what recovery
    /// did. Appends do this on their own; call it to learn the report.
    ///
    /// # Errors
    /// [`Error::Locked`] when another process holds the lock; [`Error::Corrupt`] for
    /// corruption that is not a torn tail; I/O errors.
    pub fn recover(&self) -> Result<RecoveryReport> {
        let mut guard = self.shared.writer.lock();
        if guard.is_none() {
            *guard = Some(self.acquire_writer()?);
        }
        Ok(self.shared.last_recovery.lock().clone().unwrap_or_default())
    }

    fn acquire_writer(&self) -> Result<Writer> {
        let shared = &self.shared;
        let lock = lock_topic(&shared.name, &shared.dir)?;
        let recovered = wal::recover_active(&shared.dir)?;
        let bases = segment::list_segments(&shared.dir)?;
        let active = recovered.active;
        shared.sealing.set_through(active.base);
        let sealed: Vec<_> = bases
            .iter()
            .filter(|&&b| b < active.base)
            .map(|&b| Arc::new(SealedSegment::new(&shared.dir, b)))
            .collect();
        let mut last_timestamp_us = recovered.scan.last_timestamp_us;
        if recovered.scan.batches == 0 {
            if let Some(prev) = sealed.last() {
                match prev.load(true) {
                    Ok(data) => last_timestamp_us = data.last_timestamp_us,
                    Err(e) => tracing::error!(topic = %shared.name, error = %e, "cannot read the last sealed segment"),
                }
            }
        }
        let tail = super::TailSegment::open(&shared.dir, active.base)?;
        *tail.index.write() = recovered.scan.index.clone();
        let visible = Visible {
            tail_base: active.base,
            end: recovered.scan.end_offset,
            tail_bytes: active.bytes,
        };
        {
            let mut segments = shared.segments.write();
            segments.sealed = sealed;
            segments.tail = Arc::new(tail);
        }
        *shared.visible.lock() = visible;
        shared.appended.notify_all();
        shared.commit.mark_synced(visible.end);
        let mut report = recovered.report;
        // Records readers saw may be gone: recovery cut some, or the machine restarted
        // since an appender that did not close (its unsynced writes may be lost without
        // a trace: ext4 can keep an older file size that ends at a batch boundary).
        if report.lost_records() || (lock.machine_restarted && !report.closed_cleanly) {
            report.rewound_groups = self.rewind_groups_past(visible.end);
        }
        *shared.last_recovery.lock() = Some(report);
        if shared.config.tamper_evidence {
            let evidence = self.open_evidence(shared.keys.signer()?, shared.origin.clone())?;
            shared
                .tree_synced
                .store(evidence.tree.size(), std::sync::atomic::Ordering::SeqCst);
            *shared.evidence.lock() = Some(evidence);
            *shared.evidence_thread.lock() = Some(self.start_evidence_thread()?);
        }
        // Last, once nothing can fail: the slot is filled only for a writer that exists,
        // and emptied only by that writer's close (both under the writer lock).
        if let Durability::IntervalMs(ms) = shared.durability {
            *shared.interval_syncer.lock() = IntervalSyncer::start(Arc::downgrade(&self.shared), ms);
        }
        Ok(Writer {
            next_offset: visible.end,
            last_timestamp_us,
            active,
            buf: Vec::new(),
            payload: Vec::new(),
            index_buf: Vec::new(),
            time_buf: Vec::new(),
            last_batch: None,
            deferred: shared.durability == Durability::Always,
            segment_bytes: shared.config.segment_bytes,
            _lock: lock,
        })
    }

    fn roll_if_due(&self, writer: &mut Writer, incoming: u64) -> Result<()> {
        let config = &self.shared.config;
        // One call goes into one segment, whose positions are 32-bit: checked before any
        // roll, so that a call too big even for an empty segment changes nothing.
        if incoming > crate::index::SEGMENT_BYTES_MAX {
            return Err(Error::LimitExceeded {
                what: "append call",
                actual: incoming,
                limit: crate::index::SEGMENT_BYTES_MAX,
            });
        }
        let bytes = writer.logical_bytes();
        if bytes == 0 {
            return Ok(());
        }
        let full = bytes + incoming > config.segment_bytes || bytes + incoming > crate::index::SEGMENT_BYTES_MAX;
        let aged = match (config.segment_age_ms, writer.active.first_timestamp_us) {
            (Some(age_ms), Some(first)) => now_us().saturating_sub(first) >= age_ms * 1000,
            _ => false,
        };
        if full || aged {
            self.roll(writer)?;
        }
        Ok(())
    }

    /// Starts a new active segment and seals the old one: at once under
    /// [`Durability::Always`], in the background otherwise (see `seal.rs`). Every step can
    /// be interrupted by a crash and recovered.
    fn roll(&self, writer: &mut Writer) -> Result<()> {
        let shared = &self.shared;
        let path = writer.active.path.clone();
        if let Err(e) = writer.flush() {
            let cause = format!("a write failed: {e}");
            shared.commit.poison(cause.clone());
            return Err(Error::Poisoned {
                topic: shared.name.clone(),
                cause,
            });
        }
        if writer.deferred {
            // Zeros written ahead go before the segment is mapped as sealed.
            crate::wal::release_reserved(&writer.active.log, &path, writer.active.bytes)?;
        }
        let index = self.final_index(writer);
        let new = ActiveFile::create(&shared.dir, writer.next_offset)?;
        crate::failpoint::hit("roll.after_create");
        // The old segment's final index files are written by its seal.
        writer.index_buf.clear();
        writer.time_buf.clear();
        let old = std::mem::replace(&mut writer.active, new);
        let sealed = Arc::new(SealedSegment::just_sealed(
            &shared.dir,
            old.base,
            &old.log,
            index.clone(),
        ));
        shared.sealing.push(PendingSeal {
            next_base: writer.next_offset,
            path,
            log: Arc::clone(&old.log),
            index,
            bytes: old.bytes,
            queued_at: std::time::Instant::now(),
        });
        let new_tail = Arc::new(super::TailSegment::open(&shared.dir, writer.next_offset)?);
        shared.track_loaded(&sealed);
        {
            let mut segments = shared.segments.write();
            segments.sealed.push(sealed);
            segments.tail = new_tail;
        }
        // Background seals that fall behind (segments filled faster than they are synced)
        // make the appender wait for the oldest, so at most a few segments are ever
        // unsealed (see seal.rs, `PENDING_SEALS_MAX`).
        if shared.durability == Durability::Always {
            shared.seal_pending()?;
        } else {
            shared.wait_for_oldest_seal()?;
            super::seal::seal_in_background(shared);
        }
        shared.publish_durable(Visible {
            tail_base: writer.next_offset,
            end: writer.next_offset,
            tail_bytes: 0,
        });
        self.apply_retention_locked()?;
        Ok(())
    }

    /// Makes everything appended durable, releases the append lock. Reads keep working.
    ///
    /// # Errors
    /// The sync's I/O error (the topic is then poisoned).
    pub fn close(&self) -> Result<()> {
        let evidence = self.stop_evidence();
        let mut guard = self.shared.writer.lock();
        let Some(mut writer) = guard.take() else {
            return evidence;
        };
        let path = writer.active.path.clone();
        writer.write_index_entries();
        let sealed = self.shared.seal_pending();
        let result = sealed
            .and_then(|()| writer.flush())
            .and_then(|()| crate::wal::release_reserved(&writer.active.log, &path, writer.active.bytes))
            .and_then(|()| {
                writer
                    .active
                    .log
                    .sync_data()
                    .context(|| format!("syncing {}", path.display()))
            });
        let visible = written_visible(&writer);
        match &result {
            Ok(()) => {
                self.shared.publish_durable(visible);
                self.write_tail_index(&writer);
            }
            Err(e) => {
                self.shared.commit.poison(e.to_string());
                self.shared.publish(visible);
            }
        }
        // This writer's threads, taken before the lock goes: an append right after it
        // may start a new writer with threads of its own.
        let sealers = self.shared.sealing.take_threads();
        let syncer = self.shared.interval_syncer.lock().take();
        let committer = self.shared.committer.lock().take();
        // The append lock file goes with the writer, before the next writer may look.
        drop(writer);
        drop(guard);
        // Everything queued is sealed (or the topic poisoned): the seal thread has
        // nothing left and ends once woken.
        self.shared.sealing.join_threads(sealers);
        if let Some(syncer) = syncer {
            syncer.stop();
        }
        if let Some(committer) = committer {
            committer.stop();
        }
        result.and(evidence)
    }

    /// Leaves the closed active segment with framed, exact index files (as a seal does),
    /// so readers opening it later need not walk it (see `tail::load_read_view`); the
    /// next appender replaces them. Index files are derived data: a failure is logged.
    fn write_tail_index(&self, writer: &Writer) {
        // (`last_batch` is the old segment's until the first append after a roll.)
        let Some((_, position, _)) = writer.last_batch else {
            return;
        };
        if self.shared.segments.read().tail.base != writer.active.base || u64::from(position) >= writer.active.bytes {
            return;
        }
        let index = self.final_index(writer);
        if let Err(e) = segment::write_index_files(&writer.active.path, &index) {
            tracing::warn!(segment = %writer.active.path.display(), error = %e, "writing the closed segment's index failed");
        }
    }

    /// The active segment's index with an entry for its last batch (what its index files
    /// hold once it is sealed or closed).
    fn final_index(&self, writer: &Writer) -> crate::index::SegmentIndex {
        let tail = Arc::clone(&self.shared.segments.read().tail);
        let mut index = tail.index.read().clone();
        if let Some((relative, position, ts)) = writer.last_batch {
            index.force_final_entry(relative, position, ts);
        }
        index
    }

    /// The recovery report of the last time this process took the append lock.
    pub fn last_recovery(&self) -> Option<RecoveryReport> {
        self.shared.last_recovery.lock().clone()
    }
}

/// Everything `writer` has written (its active segment up to its end), as readers see it.
fn written_visible(writer: &Writer) -> Visible {
    Visible {
        tail_base: writer.active.base,
        end: writer.next_offset,
        tail_bytes: writer.active.bytes,
    }
}

pub(crate) fn sync_target(writer: &Writer) -> SyncTarget {
    SyncTarget {
        log: Arc::clone(&writer.active.log),
        path: writer.active.path.clone(),
        end: writer.next_offset,
        base: writer.active.base,
        bytes: writer.active.bytes,
    }
}

impl TopicShared {
    /// Makes `v` visible to readers if it moves forward.
    pub(crate) fn publish(&self, v: Visible) {
        if self.set_visible(v) {
            self.appended.notify_all();
        }
    }

    /// Publishes `v` after a sync made everything below its end durable, then tells the
    /// group commit: in that order, so that an appender told its record is durable can
    /// read it at once.
    pub(crate) fn publish_durable(&self, v: Visible) {
        self.publish(v);
        self.commit.mark_synced(v.end);
    }

    /// Moves the visible end forward to `v` (never back); whether it moved. Readers
    /// waiting for new records are not woken: see [`TopicShared::publish`].
    pub(crate) fn set_visible(&self, v: Visible) -> bool {
        let mut current = self.visible.lock();
        let moved = v.end > current.end
            || v.tail_base > current.tail_base
            || (v.tail_base == current.tail_base && v.tail_bytes > current.tail_bytes);
        if moved {
            *current = v;
        }
        moved
    }
}

/// The topic's append lock: flocks on the topic directory and on `append.lock` (which
/// names the holder), both held for as long as this value lives.
///
/// The directory's lock is the one that excludes: `append.lock` can be deleted while its
/// holder appends, and a second writer would then create and lock a new file of that
/// name; the directory cannot be replaced under a writer that way. `append.lock` is
/// locked too, for tools that look at it.
pub(crate) struct AppendLock {
    _dir: File,
    _file: File,
    /// The previous holder wrote another boot's id into `append.lock`: the machine
    /// restarted since it took the lock (unknown, so false, without a boot id).
    machine_restarted: bool,
}

/// Marks the boot id in `append.lock`'s text.
const BOOT_MARK: &str = ", boot ";

/// This boot's id (Linux), None where the system has none.
fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    Some(id.trim().to_owned()).filter(|id| !id.is_empty())
}

/// Takes the topic's append lock and writes our pid into `append.lock`.
fn lock_topic(topic: &str, dir: &std::path::Path) -> Result<AppendLock> {
    let path = dir.join(LOCK_FILE);
    let dir_file = File::open(dir).context(|| format!("opening topic directory {} to lock it", dir.display()))?;
    match try_lock(topic, &dir_file, dir, &path) {
        Err(Error::Io { context, source }) => {
            // A file system that cannot lock a directory (NFS emulates flock with locks
            // that need a file open for writing): `append.lock` alone excludes.
            tracing::warn!(topic, error = %source, "{context}: relying on {LOCK_FILE} alone");
        }
        other => other?,
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .context(|| format!("opening lock file {}", path.display()))?;
    try_lock(topic, &file, &path, &path)?;
    let previous = std::fs::read_to_string(&path).unwrap_or_default();
    let boot = boot_id();
    let previous_boot = previous
        .split_once(BOOT_MARK)
        .map(|(_, b)| b.trim())
        .filter(|b| !b.is_empty());
    let machine_restarted = previous_boot.is_some_and(|previous| boot.as_deref() != Some(previous));
    let mut me = format!(
        "process {} ({})",
        std::process::id(),
        std::env::args().next().unwrap_or_default()
    );
    if let Some(boot) = &boot {
        me = format!("{me}{BOOT_MARK}{boot}");
    }
    // Synced: after a power loss the next appender must find this boot's id here.
    file.set_len(0)
        .and_then(|()| file.write_all_at(me.as_bytes(), 0))
        .and_then(|()| file.sync_data())
        .context(|| format!("writing lock file {}", path.display()))?;
    Ok(AppendLock {
        _dir: dir_file,
        _file: file,
        machine_restarted,
    })
}

/// flock `file` (at `locked`) for appending; when another process holds it, the error
/// names the holder as written in `lock_file`.
fn try_lock(topic: &str, file: &File, locked: &std::path::Path, lock_file: &std::path::Path) -> Result<()> {
    match crate::fsutil::try_lock_briefly(file) {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => {
            let text = std::fs::read_to_string(lock_file).unwrap_or_default();
            let holder = text.split(BOOT_MARK).next().unwrap_or_default().trim().to_owned();
            let holder = if holder.is_empty() {
                "another process".to_owned()
            } else {
                holder
            };
            Err(Error::Locked {
                topic: topic.to_owned(),
                holder: format!("{holder}, appending"),
                lock_file: lock_file.to_path_buf(),
            })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e).context(|| format!("locking {}", locked.display())),
    }
}

/// The thread that syncs an `IntervalMs` topic's log every interval while this process
/// appends to it. [`Topic::close`] stops and joins it, so a close followed by a new
/// append lock within one interval does not leave two of them syncing.
pub(crate) struct IntervalSyncer {
    stop: Arc<(parking_lot::Mutex<bool>, parking_lot::Condvar)>,
    handle: std::thread::JoinHandle<()>,
}

impl IntervalSyncer {
    fn start(shared: std::sync::Weak<TopicShared>, ms: u64) -> Option<IntervalSyncer> {
        let stop = Arc::new((parking_lot::Mutex::new(false), parking_lot::Condvar::new()));
        let signal = Arc::clone(&stop);
        let spawned = std::thread::Builder::new()
            .name("trailkeep-sync".into())
            .spawn(move || loop {
                {
                    let mut stopped = signal.0.lock();
                    if !*stopped {
                        signal.1.wait_for(&mut stopped, Duration::from_millis(ms));
                    }
                    if *stopped {
                        return;
                    }
                }
                let Some(shared) = shared.upgrade() else { return };
                let topic = Topic { shared };
                if !topic.is_writer() {
                    return;
                }
                if let Err(e) = topic.sync_through(topic.end_offset()) {
                    tracing::error!(topic = %topic.shared.name, error = %e, "interval sync failed");
                    return;
                }
            });
        match spawned {
            Ok(handle) => Some(IntervalSyncer { stop, handle }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the interval sync thread");
                None
            }
        }
    }

    /// Stops the thread and waits for it. Called without the writer lock, which a sync
    /// the thread is running may be waiting for.
    pub(crate) fn stop(self) {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        super::join_thread(self.handle, "interval sync");
    }
}
