//! Sealing a rolled segment: fdatasync of its log, its final index files, then the
//! `sealed.offset` marker (see FORMAT.md, "Sealing").
//!
//! Under [`Durability::Always`] a roll seals before it returns (every acknowledged record
//! is on disk already, so the sync is short). Under `Buffered` and `IntervalMs` a
//! background thread seals, so a roll does not make the appender wait for the whole
//! segment's writeback (a 128 MiB fdatasync took ~50 ms here, half the time of a 1 M
//! record bulk append). That thread also waits for the appends to pause (no new record
//! for [`APPENDS_QUIET`]) before it syncs, up to [`SEAL_DEFER_MAX`] after the roll or until
//! more than [`DEFERRED_SEALS_MAX`] seals wait: writeback of the sealed segment during a
//! burst slowed the appender by ~15% here (its disk interrupts and page-cache work share
//! the two CPUs), while the same sync after the burst costs it nothing.
//! What a power loss can do to a segment whose seal had not reached the disk is handled
//! by the next appender's recovery (`wal::recovery::confirm_seals`). Anything that
//! promises durability (a sync, `close`, the interval syncer) first finishes the pending
//! seals, oldest first.

use std::collections::VecDeque;
use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::IoContext;
use crate::index::SegmentIndex;
use crate::topic::TopicShared;
use crate::{segment, Error, Offset, Result};

/// Seals that may wait in the background: a roll that would queue more first waits for
/// the oldest to complete (the appender is then paced by the disk, one segment behind).
const PENDING_SEALS_MAX: usize = 3;
/// Seals the seal thread lets wait for the appends to pause; with more it seals at once.
const DEFERRED_SEALS_MAX: usize = 2;
/// Appends are taken to have paused when no record arrived for this long (also for the
/// tree thread's checkpoints, see evidence.rs).
pub(crate) const APPENDS_QUIET: Duration = Duration::from_millis(10);
/// The longest a background seal waits for the appends to pause.
const SEAL_DEFER_MAX: Duration = Duration::from_secs(1);
/// How long a roll waiting for a background seal sleeps between looks at it.
const SEAL_WAIT_SLICE: Duration = Duration::from_millis(20);

/// A rolled segment whose seal is not yet durable.
pub(crate) struct PendingSeal {
    /// Base offset of the segment after it (the new active segment at the roll).
    pub next_base: Offset,
    pub path: PathBuf,
    pub log: Arc<File>,
    /// The segment's complete index (with its final entry).
    pub index: SegmentIndex,
    /// The end of its last batch.
    pub bytes: u64,
    /// When the roll queued it.
    pub queued_at: Instant,
}

/// The seals waiting, and how far sealing is durable.
#[derive(Default)]
pub(crate) struct Sealing {
    queue: Mutex<VecDeque<PendingSeal>>,
    /// Held while seals are carried out, so they complete in order.
    order: Mutex<()>,
    /// Seals queued and not yet complete.
    pending: AtomicUsize,
    /// A seal thread is running (see [`seal_in_background`]).
    sealer_running: std::sync::atomic::AtomicBool,
    /// Seal threads started and not yet joined (one, or briefly two while one that just
    /// stopped returns): [`Sealing::join_threads`] waits for them at close.
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// Signalled after each seal (rolls waiting for the oldest wait on it).
    sealed: parking_lot::Condvar,
    /// Signalled when more seals wait than the seal thread may defer.
    wake: parking_lot::Condvar,
    /// The lock both condvars wait with.
    sealed_lock: Mutex<()>,
    /// Every segment below this base offset is durably sealed (mirrors `sealed.offset`).
    through: AtomicU64,
}

impl Sealing {
    /// Every segment below this base offset is durably sealed.
    pub fn through(&self) -> Offset {
        Offset(self.through.load(Ordering::Acquire))
    }

    pub fn set_through(&self, through: Offset) {
        self.through.store(through.0, Ordering::Release);
    }

    /// True when no seal is queued or in progress.
    pub fn is_idle(&self) -> bool {
        self.pending() == 0
    }

    /// Seals queued or in progress.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    pub fn push(&self, seal: PendingSeal) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        self.queue.lock().push_back(seal);
    }

    /// The seal threads started so far, for [`Sealing::join_threads`]. A topic's close
    /// takes them under the writer lock, so that one started by a later writer is not
    /// among them.
    pub fn take_threads(&self) -> Vec<std::thread::JoinHandle<()>> {
        std::mem::take(&mut *self.threads.lock())
    }

    /// Wakes the seal thread and waits until `threads` have ended; a topic's close calls it
    /// after sealing everything queued (without the writer lock), so that nothing of the
    /// topic runs on after its close returns (the thread would otherwise linger up to
    /// [`APPENDS_QUIET`] holding it).
    pub fn join_threads(&self, threads: Vec<std::thread::JoinHandle<()>>) {
        {
            let _signal = self.sealed_lock.lock();
            self.wake.notify_all();
        }
        for handle in threads {
            super::join_thread(handle, "seal");
        }
    }

    /// True when the seal thread should seal now rather than wait for the appends to
    /// pause: `quiet` says no record arrived since its last look.
    fn seal_due(&self, quiet: bool) -> bool {
        let oldest = self.queue.lock().front().map(|s| s.queued_at);
        let Some(oldest) = oldest else { return true };
        quiet || self.pending() > DEFERRED_SEALS_MAX || oldest.elapsed() >= SEAL_DEFER_MAX
    }
}

impl TopicShared {
    /// Carries out every queued seal, oldest first; waits for a seal another thread is
    /// carrying out. A failure poisons the topic (its log's durability is unknown).
    pub(crate) fn seal_pending(&self) -> Result<()> {
        if self.sealing.is_idle() {
            return Ok(());
        }
        let _order = self.sealing.order.lock();
        loop {
            let Some(seal) = self.sealing.queue.lock().pop_front() else {
                return Ok(());
            };
            let result = self.seal(&seal);
            self.sealing.pending.fetch_sub(1, Ordering::AcqRel);
            {
                let _signal = self.sealing.sealed_lock.lock();
                self.sealing.sealed.notify_all();
            }
            if let Err(e) = result {
                let cause = format!("sealing {} failed: {e}", seal.path.display());
                self.commit.poison(cause.clone());
                return Err(Error::Poisoned {
                    topic: self.name.clone(),
                    cause,
                });
            }
        }
    }

    /// Waits until at most [`PENDING_SEALS_MAX`] seals are pending (a roll queueing one
    /// too many), sealing them here if no thread is. Fails once the topic is poisoned.
    pub(crate) fn wait_for_oldest_seal(&self) -> Result<()> {
        loop {
            if self.sealing.pending() <= PENDING_SEALS_MAX {
                return Ok(());
            }
            if let Some(cause) = self.commit.poisoned() {
                return Err(Error::Poisoned {
                    topic: self.name.clone(),
                    cause,
                });
            }
            let mut signal = self.sealing.sealed_lock.lock();
            if self.sealing.pending() <= PENDING_SEALS_MAX {
                return Ok(());
            }
            // A seal thread is working if it holds the order lock; if none is (it
            // failed, or could not start), seal here.
            if self.sealing.order.is_locked() {
                self.sealing.sealed.wait_for(&mut signal, SEAL_WAIT_SLICE);
            } else {
                drop(signal);
                return self.seal_pending();
            }
        }
    }

    fn seal(&self, seal: &PendingSeal) -> Result<()> {
        crate::wal::release_reserved(&seal.log, &seal.path, seal.bytes)?;
        crate::failpoint::sync_data("seal.sync", &seal.log)
            .context(|| format!("fdatasync of {}", seal.path.display()))?;
        crate::failpoint::hit("roll.after_sync");
        segment::write_index_files(&seal.path, &seal.index)?;
        crate::failpoint::hit("roll.after_index");
        segment::write_sealed_through(&self.dir, seal.next_base)?;
        self.sealing.set_through(seal.next_base);
        Ok(())
    }
}

/// Seals the queued segments on a short-lived thread (on the caller's if none can start).
/// At most one such thread runs per topic: one that is running takes the new seal in its
/// loop. (Spawning one per roll piled up thousands of threads waiting for the `order`
/// lock while the first kept sealing small segments as fast as they rolled.)
pub(crate) fn seal_in_background(shared: &Arc<TopicShared>) {
    let sealing = &shared.sealing;
    if sealing.sealer_running.swap(true, Ordering::AcqRel) {
        if sealing.pending() > DEFERRED_SEALS_MAX {
            let _signal = sealing.sealed_lock.lock();
            sealing.wake.notify_all();
        }
        return;
    }
    let topic = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new()
        .name("trailkeep-seal".into())
        .spawn(move || run_sealer(&topic));
    match spawned {
        Ok(handle) => {
            let mut threads = sealing.threads.lock();
            threads.retain(|h| !h.is_finished());
            threads.push(handle);
        }
        Err(e) => {
            tracing::warn!(topic = %shared.name, error = %e, "cannot start a seal thread; sealing inline");
            sealing.sealer_running.store(false, Ordering::Release);
            if let Err(e) = shared.seal_pending() {
                tracing::error!(topic = %shared.name, error = %e, "sealing a rolled segment failed");
            }
        }
    }
}

/// The seal thread's body: waits for the appends to pause (see [`Sealing::seal_due`]),
/// drains the queue; a seal queued after the drain but before the thread said it stopped
/// has no thread to take it, so it drains again. Between looks it holds the topic only
/// weakly: a topic dropped meanwhile was closed, and its close sealed everything.
fn run_sealer(weak: &Weak<TopicShared>) {
    let mut seen_end = None;
    loop {
        let Some(topic) = weak.upgrade() else { return };
        let end = topic.visible.lock().end;
        let quiet = seen_end == Some(end);
        seen_end = Some(end);
        {
            let mut signal = topic.sealing.sealed_lock.lock();
            if !topic.sealing.seal_due(quiet) {
                topic.sealing.wake.wait_for(&mut signal, APPENDS_QUIET);
                continue;
            }
        }
        let result = topic.seal_pending();
        topic.sealing.sealer_running.store(false, Ordering::Release);
        if let Err(e) = result {
            tracing::error!(topic = %topic.name, error = %e, "sealing a rolled segment failed");
            return;
        }
        let queued = !topic.sealing.queue.lock().is_empty();
        if !queued || topic.sealing.sealer_running.swap(true, Ordering::AcqRel) {
            return;
        }
        seen_end = None;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::{Durability, NewRecord, Store, TopicConfig};

    /// After a store's close, no seal thread still holds a topic: its rolls' seal thread
    /// was woken and joined, not left to notice the close on its own.
    #[test]
    fn close_ends_the_seal_thread() {
        for round in 0..20 {
            let dir = tempfile::tempdir().unwrap();
            let store = Store::builder(dir.path())
                .durability(Durability::Buffered)
                .open()
                .unwrap();
            let config = TopicConfig::default().segment_bytes(4096).tamper_evidence(false);
            let topic = store.create_topic("t", config).unwrap();
            // One roll: its seal thread waits for the appends to pause when close comes.
            while topic.stats().unwrap().segments < 2 {
                topic.append(&NewRecord::new(vec![b'x'; 400])).unwrap();
            }
            let weak = Arc::downgrade(&topic.shared);
            // Time for the thread to start and wait for the appends to pause.
            std::thread::sleep(std::time::Duration::from_millis(2));
            drop(topic);
            store.close().unwrap();
            assert!(
                weak.upgrade().is_none(),
                "round {round}: a thread still holds the topic after close"
            );
        }
    }
}
