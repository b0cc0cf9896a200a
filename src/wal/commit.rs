//! Group commit: one appender at a time (at most [`SYNC_LEADERS_MAX`] at once) syncs the
//! active segment for every appender waiting, and wakes exactly those a sync made durable.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Waker;

use parking_lot::Mutex;

use crate::{Error, Offset, Result};

/// Shared group-commit coordinator of one topic: how far the log is durable, whether a
/// sync is running, whether one failed.
///
/// Waiters are woken one by one, and only when their records are durable (or to lead the
/// next sync): with 64 appenders on 2 cores, waking every waiter after each sync so that
/// most of them could go back to sleep cost more than the fdatasync itself.
#[derive(Default)]
pub(crate) struct GroupCommit {
    synced: AtomicU64,
    poisoned_flag: std::sync::atomic::AtomicBool,
    poisoned: Mutex<Option<String>>,
    waits: Mutex<Waits>,
    /// `waits.leaders` and `waits.covering`, for waiters that look without the lock.
    leaders_now: AtomicUsize,
    covering_now: AtomicU64,
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
/// (two threads: 1.5-2x the syncs per second of one), and while waiters slept that made
/// two leaders the faster choice; since waiters yield before sleeping
/// ([`GroupCommit::wait_turn`]), one leader at a time is: 64 writers on 2 cores, 200-230 k
/// acknowledged appends/s against 155-170 k with two (each round covers more records).
const SYNC_LEADERS_MAX: usize = 1;

/// Yields a waiter makes before it sleeps (see [`GroupCommit::wait_turn`]), when it
/// waits among at least [`CROWD_MIN`] waiters.
const WAIT_YIELDS: usize = 10;

/// Waiters (this one included) from which a waiter yields before sleeping: fewer
/// appenders than that leave the cores idle anyway, and a yield to a busy thread
/// that is not an appender (a consumer, the tree thread, another program) may keep
/// the waiter off the core for that thread's whole time slice after its sync ended.
const CROWD_MIN: usize = 8;

struct Waiter {
    target: u64,
    wake: Wake,
}

/// How a waiter is woken: a thread (which may lead a sync), or an async task (which
/// never leads: the topic's committer thread syncs for it).
enum Wake {
    Thread(std::thread::Thread),
    Task { id: u64, waker: Waker },
}

impl Wake {
    fn is_thread(&self, id: std::thread::ThreadId) -> bool {
        if let Wake::Thread(thread) = self {
            thread.id() == id
        } else {
            false
        }
    }

    /// The task's id; `None` for a thread (only threads lead syncs).
    fn task_id(&self) -> Option<u64> {
        if let Wake::Task { id, .. } = self {
            Some(*id)
        } else {
            None
        }
    }

    fn wake(self) {
        match self {
            Wake::Thread(thread) => thread.unpark(),
            Wake::Task { waker, .. } => waker.wake(),
        }
    }
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
    /// leader and fdatasyncs for everyone who wrote before it started; the others wait
    /// ([`GroupCommit::wait_turn`]) until a sync covers them, or until they may lead the
    /// next one.
    /// `snapshot` is called by the leader to flush and learn what to sync; `publish`
    /// after success, before the waiters learn they are durable (so that what they
    /// appended is visible when they return); `notify` at the end of the leader's round,
    /// to wake readers of what became visible.
    pub fn wait_durable(
        &self,
        topic: &str,
        target: Offset,
        snapshot: impl Fn() -> Result<Option<SyncTarget>>,
        publish: impl Fn(&SyncTarget),
        notify: impl Fn(),
    ) -> Result<()> {
        let me = std::thread::current();
        loop {
            if let Some(e) = self.poison_error(topic) {
                return Err(e);
            }
            if self.synced.load(Ordering::Acquire) >= target.0 {
                return Ok(());
            }
            // `Some(waiters)` to wait, `None` to lead.
            let wait = {
                let mut waits = self.waits.lock();
                if self.synced.load(Ordering::Acquire) >= target.0 || self.poisoned_flag.load(Ordering::Acquire) {
                    continue;
                }
                waits.waiters.retain(|w| !w.wake.is_thread(me.id()));
                let covered = waits.leaders > 0 && waits.covering >= target.0;
                if covered || waits.leaders >= SYNC_LEADERS_MAX {
                    waits.waiters.push(Waiter {
                        target: target.0,
                        wake: Wake::Thread(me.clone()),
                    });
                    Some(waits.waiters.len())
                } else {
                    waits.leaders += 1;
                    self.leaders_now.store(waits.leaders, Ordering::Release);
                    None
                }
            };
            if let Some(crowd) = wait {
                self.wait_turn(target.0, crowd);
            } else {
                let led = self.lead(topic, target, &snapshot, &publish);
                self.finish_round();
                // After the next leader may start: waking readers (the tree thread, a
                // follower) is no part of the sync (64 writers: ~5% more appends/s).
                notify();
                led?;
            }
        }
    }

    /// Waits until a sync covers `target` or this waiter may lead the next one: among
    /// `crowd` waiters (at least [`CROWD_MIN`]), a few yields first; then sleep until
    /// woken (to lead, covered, or spuriously: the caller re-checks). While appenders
    /// keep coming, a yield hands the core to one about to write instead of idling it,
    /// and a waiter whose sync ends meanwhile returns without sleeping or being woken. Measured: 64 writers on 2 cores, 125 k → 220 k
    /// acknowledged appends/s (a sleeping waiter costs a futex wake-up and, with the
    /// other core idle, an inter-processor interrupt — a VM exit on a virtual machine).
    /// With nobody else runnable a yield returns at once: a lone appender spends a few
    /// µs before sleeping through its ~200 µs fdatasync.
    fn wait_turn(&self, target: u64, crowd: usize) {
        let yields = if crowd >= CROWD_MIN { WAIT_YIELDS } else { 0 };
        for _ in 0..yields {
            std::thread::yield_now();
            if self.synced.load(Ordering::Acquire) >= target
                || self.poisoned_flag.load(Ordering::Acquire)
                || self.may_lead(target)
            {
                return;
            }
        }
        std::thread::park();
    }

    /// Whether a waiter for `target` would lead if it asked now (racy: re-checked under
    /// the lock).
    fn may_lead(&self, target: u64) -> bool {
        let leaders = self.leaders_now.load(Ordering::Acquire);
        leaders < SYNC_LEADERS_MAX && !(leaders > 0 && self.covering_now.load(Ordering::Acquire) >= target)
    }

    /// Ends a leader's round: wakes the waiters it made durable, and one of the others
    /// (the oldest) to lead the next sync.
    fn finish_round(&self) {
        self.wake(true);
    }

    /// Wakes the waiters whose offsets are below `synced` (all of them once poisoned).
    fn wake_covered(&self) {
        self.wake(false);
    }

    /// Unparks the waiters a sync covered; when a leader's round ends, also one waiter no
    /// running sync covers, to lead the next.
    fn wake(&self, round_ended: bool) {
        let synced = self.synced.load(Ordering::Acquire);
        let poisoned = self.poisoned_flag.load(Ordering::Acquire);
        let mut woken = Vec::new();
        {
            let mut waits = self.waits.lock();
            if round_ended {
                waits.leaders -= 1;
                self.leaders_now.store(waits.leaders, Ordering::Release);
            }
            let (leaders, covering) = (waits.leaders, waits.covering);
            let mut leader_wanted = round_ended;
            let taken = waits.waiters.extract_if(.., |w| {
                let covered = poisoned || w.target <= synced;
                let may_lead = leader_wanted && w.wake.task_id().is_none() && !(leaders > 0 && w.target <= covering);
                let leads = !covered && may_lead;
                leader_wanted &= !leads;
                covered || leads
            });
            woken.extend(taken.map(|w| w.wake));
        }
        for wake in woken {
            wake.wake();
        }
    }

    /// Registers async task `id` to be woken once offsets below `target` are durable
    /// (replacing its earlier registration); `false`, registering nothing, when they
    /// already are or the topic is poisoned. The topic's committer thread must be asked
    /// for the sync: a task never leads one.
    pub fn wait_task(&self, target: Offset, id: u64, waker: &Waker) -> bool {
        let mut waits = self.waits.lock();
        if self.synced.load(Ordering::Acquire) >= target.0 || self.poisoned_flag.load(Ordering::Acquire) {
            return false;
        }
        match waits.waiters.iter_mut().find(|w| w.wake.task_id() == Some(id)) {
            Some(w) => {
                w.target = target.0;
                if let Wake::Task { waker: old, .. } = &mut w.wake {
                    old.clone_from(waker);
                }
            }
            None => waits.waiters.push(Waiter {
                target: target.0,
                wake: Wake::Task {
                    id,
                    waker: waker.clone(),
                },
            }),
        }
        true
    }

    /// Drops async task `id`'s registration (its future was dropped).
    pub fn forget_task(&self, id: u64) {
        self.waits.lock().waiters.retain(|w| w.wake.task_id() != Some(id));
    }

    /// Everything below this offset is durable.
    pub fn synced(&self) -> Offset {
        Offset(self.synced.load(Ordering::Acquire))
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
                self.covering_now.store(waits.covering, Ordering::Release);
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
        let result = crate::failpoint::sync_data("wal.sync", &work.log);
        crate::failpoint::hit("wal.after_sync");
        match result {
            Ok(()) => {
                // Visible before durable: a waiter returns as soon as it sees `synced`
                // cover it, and its caller may read what it appended at once.
                publish(&work);
                self.synced.fetch_max(work.end.0, Ordering::AcqRel);
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

    /// Marks everything below `end` durable (after a roll or close synced it). The caller
    /// has made it visible first.
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

    /// The error an appender to `topic` gets once a sync failed, if one did.
    pub fn poison_error(&self, topic: &str) -> Option<Error> {
        self.poisoned().map(|cause| Error::Poisoned {
            topic: topic.to_owned(),
            cause,
        })
    }
}
