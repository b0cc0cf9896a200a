//! Appends from async code. The records are written at once (a memory copy, as for
//! [`Topic::append`]); under [`Durability::Always`] the returned future then completes
//! once they are on disk, without blocking the executor's thread: a committer thread of
//! the topic runs the fdatasyncs for async appenders, through the same group commit as
//! appending threads.
//!
//! The committer gathers: after a sync it starts the next one once as many async
//! appends have arrived as the last one covered, or once about one sync's time has
//! passed. Async appenders woken by a sync are polled again within microseconds (no
//! thread switch each), so each round covers nearly all of them, where appending threads
//! that come back during the next sync must wait for the one after (see `wal::commit`).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::record::{NewRecord, RecordFields};
use crate::topic::write::Appended;
use crate::topic::{Topic, TopicShared};
use crate::wal::Durability;
use crate::{Error, Offset, Result};

/// The longest a committer waits for async appenders to come back before its next sync
/// (it waits at most as long as its last sync took, and never longer than this).
const GATHER_MAX: Duration = Duration::from_micros(500);

/// How often an idle committer checks that its topic still exists.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// Ids of async waiters, unique in this process.
static NEXT_TASK: AtomicU64 = AtomicU64::new(1);

impl Topic {
    /// Appends one record from async code; the future completes with its offset once it
    /// is acknowledged (under [`Durability::Always`], once it is on disk). The record is
    /// written when the future is first polled; dropping the future after that does not
    /// undo the append (the record becomes durable with the next sync). Works on any
    /// executor: the fdatasyncs run on a thread of the topic, never on the caller's. The
    /// write itself runs on the caller's thread: a copy into the writer's buffer, and file
    /// work of a few milliseconds at a segment roll (and, on a topic's first append in
    /// the process, its recovery); wrap the first append in a blocking task where that
    /// matters.
    ///
    /// # Errors
    /// As for [`Topic::append`].
    pub async fn append_async(&self, record: &NewRecord) -> Result<Offset> {
        self.append_batch_async(std::slice::from_ref(record))
            .await
            .map(|a| a.first)
    }

    /// Appends records as one unit from async code (see [`Topic::append_async`] and
    /// [`Topic::append_batch`]).
    ///
    /// # Errors
    /// As for [`Topic::append`].
    pub async fn append_batch_async(&self, records: &[NewRecord]) -> Result<Appended> {
        let appended = {
            let fields: Vec<RecordFields<'_>> = records.iter().map(NewRecord::as_fields).collect();
            self.write_fields(&fields)?
        };
        if appended.count > 0 {
            self.acknowledged(appended.end()).await?;
        }
        Ok(appended)
    }

    /// Completes once the records below `end`, written by [`Topic::write_fields`], are
    /// acknowledged: at once unless the topic is [`Durability::Always`], else once they are
    /// durable (the committer thread syncs).
    pub(crate) async fn acknowledged(&self, end: Offset) -> Result<()> {
        if self.shared.durability == Durability::Always {
            Durable::new(self, end).await?;
        }
        Ok(())
    }

    /// Asks the committer for a sync through `target`, starting it if needed; `false`
    /// when no committer thread could be started.
    fn want_sync(&self, target: Offset) -> bool {
        let mut slot = self.shared.committer.lock();
        if slot.is_none() {
            *slot = Committer::start(Arc::downgrade(&self.shared));
        }
        let Some(committer) = slot.as_ref() else { return false };
        committer.want(target);
        true
    }
}

/// Completes once offsets below `target` are durable (or the topic is poisoned).
struct Durable<'a> {
    topic: &'a Topic,
    target: Offset,
    id: u64,
    registered: bool,
}

impl<'a> Durable<'a> {
    fn new(topic: &'a Topic, target: Offset) -> Self {
        Durable {
            topic,
            target,
            id: NEXT_TASK.fetch_add(1, Ordering::Relaxed),
            registered: false,
        }
    }

    fn outcome(&self) -> Result<()> {
        let commit = &self.topic.shared.commit;
        if commit.synced() >= self.target {
            return Ok(());
        }
        Err(commit.poison_error(&self.topic.shared.name).unwrap_or(Error::Closed))
    }
}

impl Future for Durable<'_> {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = self.get_mut();
        if !this.topic.shared.commit.wait_task(this.target, this.id, cx.waker()) {
            this.registered = false;
            return Poll::Ready(this.outcome());
        }
        if !this.registered {
            this.registered = true;
            if !this.topic.want_sync(this.target) {
                // No committer thread: sync here, blocking (only if threads cannot start).
                this.topic.shared.commit.forget_task(this.id);
                this.registered = false;
                return Poll::Ready(this.topic.sync_through(this.target));
            }
        }
        Poll::Pending
    }
}

impl Drop for Durable<'_> {
    fn drop(&mut self) {
        if self.registered {
            self.topic.shared.commit.forget_task(self.id);
        }
    }
}

/// What async appenders and the committer thread share.
#[derive(Default)]
struct Demand {
    /// The highest offset an async appender waits to be durable.
    wanted: u64,
    /// Async appenders that asked since the committer's last sync began.
    arrived: u64,
    /// Arrivals the committer waits for before its next sync (what its last one covered).
    goal: u64,
    /// The committer is waiting: for `goal` arrivals, or (`eager`) for any.
    waiting: bool,
    eager: bool,
    stop: bool,
}

/// The thread that syncs a topic for its async appenders (see the module docs).
/// [`Topic::close`] stops and joins it; an async append after that starts a new one.
pub(crate) struct Committer {
    state: Arc<(Mutex<Demand>, Condvar)>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Committer {
    fn start(shared: Weak<TopicShared>) -> Option<Committer> {
        let state = Arc::new((Mutex::new(Demand::default()), Condvar::new()));
        let theirs = Arc::clone(&state);
        let spawned = std::thread::Builder::new()
            .name("trailkeep-commit".into())
            .spawn(move || commit_loop(&shared, &theirs));
        match spawned {
            Ok(handle) => Some(Committer {
                state,
                handle: Some(handle),
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the async commit thread");
                None
            }
        }
    }

    /// Records an async appender's demand; wakes the committer when it waits for it.
    fn want(&self, target: Offset) {
        let (lock, wake) = &*self.state;
        let mut demand = lock.lock();
        demand.wanted = demand.wanted.max(target.0);
        demand.arrived += 1;
        if demand.waiting && (demand.eager || demand.arrived >= demand.goal) {
            demand.waiting = false;
            wake.notify_one();
        }
    }

    /// Stops the thread and waits for it. Called without the writer lock, which a sync
    /// the thread is running may be waiting for.
    pub(crate) fn stop(mut self) {
        self.signal_stop();
        if let Some(handle) = self.handle.take() {
            super::join_thread(handle, "async commit");
        }
    }

    fn signal_stop(&self) {
        let (lock, wake) = &*self.state;
        lock.lock().stop = true;
        wake.notify_all();
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        // The topic is gone (or `stop` ran): the thread ends without being joined.
        self.signal_stop();
    }
}

/// The committer's loop: wait for demand, gather, sync through what is wanted.
fn commit_loop(shared: &Weak<TopicShared>, state: &(Mutex<Demand>, Condvar)) {
    let mut gather = GATHER_MAX;
    loop {
        let Some(target) = next_round(shared, state, gather) else {
            return;
        };
        let Some(shared) = shared.upgrade() else { return };
        let topic = Topic { shared };
        let started = Instant::now();
        if let Err(e) = topic.sync_through(Offset(target)) {
            // The waiters were woken with the error (poison) or are covered by close.
            tracing::error!(topic = %topic.shared.name, error = %e, "async commit failed");
            let mut demand = state.0.lock();
            demand.wanted = demand.wanted.min(topic.shared.commit.synced().0);
        }
        gather = started.elapsed().min(GATHER_MAX);
    }
}

/// Waits until an async appender wants a sync and as many have arrived as the last
/// round covered, or, past `gather` from now, until any wants one; the offset to sync
/// through, `None` to stop.
fn next_round(shared: &Weak<TopicShared>, state: &(Mutex<Demand>, Condvar), gather: Duration) -> Option<u64> {
    let (lock, wake) = state;
    let deadline = Instant::now() + gather;
    let mut demand = lock.lock();
    loop {
        if demand.stop {
            return None;
        }
        let synced = shared.upgrade()?.commit.synced().0;
        let now = Instant::now();
        demand.eager = now >= deadline;
        if demand.wanted > synced && (demand.eager || demand.arrived >= demand.goal) {
            break;
        }
        demand.waiting = true;
        let until = if demand.eager { now + IDLE_CHECK } else { deadline };
        wake.wait_until(&mut demand, until);
        demand.waiting = false;
    }
    demand.goal = demand.arrived.max(1);
    demand.arrived = 0;
    Some(demand.wanted)
}
