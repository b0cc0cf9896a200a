//! Tamper evidence of a topic: the Merkle tree kept beside the log by a background
//! thread, signed checkpoints, verification and proofs.
//!
//! The tree is derived data. A thread in the appending process follows the visible end,
//! hashes each record's canonical leaf (see FORMAT.md, "Merkle tree") and appends the
//! leaves to the topic's `merkle.tree`; appenders never wait for it. Before a checkpoint
//! is signed, the log is synced up to the checkpoint's size and the tree file is synced,
//! so a signed checkpoint never covers a record that could still be lost.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::audit::{
    self, Checkpoint, CheckpointLogWriter, Hash, LeafBatch, NoteSigner, NoteVerifier, SyncTicket, TreeFile,
};
use crate::error::IoContext;
use crate::record::{HeaderList, RecordRef};
use crate::topic::{Topic, TopicShared};
use crate::{Error, Offset, Result};

/// Directory of a topic's tree files.
pub const MERKLE_DIR: &str = "merkle";
/// File of a topic's signed checkpoints.
pub const CHECKPOINTS_FILE: &str = "checkpoints.log";
/// Records from which a catch-up hashes on two threads.
const PARALLEL_LEAVES_MIN: u64 = 8192;
/// Leaves per chunk of a two-thread catch-up (128 KiB of hashes; at most four chunks are
/// in flight).
const CATCH_UP_CHUNK_LEAVES: usize = 4096;
/// Leaves hashed per pass of the tree thread. A pass holds its leaves, their new
/// interior nodes and the tree file bytes (~128 bytes a leaf) in memory: 16 Ki leaves keep
/// that near 2 MiB however far the tree lags (64 Ki made the memory peak grow with it).
const LEAVES_PER_PASS: usize = 16_384;

/// Least time between two checkpoints the tree thread signs on its own.
pub const CHECKPOINT_SPACING_MIN: Duration = Duration::from_millis(250);
/// The longest a due checkpoint waits for the appends to pause (see `checkpoint_due`).
const CHECKPOINT_DEFER_MAX: Duration = Duration::from_secs(1);
/// How long the caught-up tree thread waits for new records; shorter while a due
/// checkpoint waits for the appends to pause, so it is signed soon after they do.
const TREE_IDLE_WAIT: Duration = Duration::from_millis(200);

/// The tree and checkpoint state of one topic, in the appending process.
pub(crate) struct Evidence {
    pub tree: TreeFile,
    pub signer: Arc<NoteSigner>,
    pub origin: String,
    pub last_checkpoint: Option<(u64, Instant)>,
    /// `checkpoints.log`, whose torn final frame this writer cuts before appending.
    pub checkpoints: CheckpointLogWriter,
    pub checkpoint_tail_base: Offset,
    /// The tail segment when the tree was last synced (by a checkpoint or after a seal).
    pub tree_sync_tail_base: Offset,
    /// The visible end as the tree thread last saw it, and when it saw it change.
    pub end_seen: (Offset, Instant),
    /// Since when a due checkpoint has waited for the appends to pause.
    pub deferred_since: Option<Instant>,
    pub broken: Option<String>,
}

/// The background thread's handle.
pub(crate) struct EvidenceThread {
    pub stop: Arc<AtomicBool>,
    pub handle: std::thread::JoinHandle<()>,
}

/// An error of topic `topic`'s tree or checkpoint files: an I/O failure stays an I/O error
/// (a full disk is not tampering), and so does a tree file that refuses work after one
/// ([`Error::Poisoned`]); anything else is a tamper-evidence error.
pub(crate) fn audit_err(topic: &str, e: audit::AuditError) -> Error {
    match e {
        audit::AuditError::Io { path, source } => Error::Io {
            context: format!("tamper evidence file {}", path.display()),
            source,
        },
        audit::AuditError::Poisoned { path } => Error::Poisoned {
            topic: topic.to_owned(),
            cause: format!("a write or sync of {} failed earlier", path.display()),
        },
        other => Error::Tamper {
            topic: topic.to_owned(),
            offset: None,
            reason: other.to_string(),
        },
    }
}

fn tamper(topic: &str, offset: Option<Offset>, reason: impl Into<String>) -> Error {
    Error::Tamper {
        topic: topic.to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// The leaf hash of a record.
///
/// # Errors
/// A field longer than the leaf encoding allows (cannot happen under the record limits).
pub fn record_leaf(record: &RecordRef<'_>) -> Result<Hash> {
    leaf_record(record).leaf_hash().map_err(|e| audit_err("", e))
}

/// A record as the leaf encoding sees it; headers are read where they are stored.
fn leaf_record<'a>(record: &RecordRef<'a>) -> audit::LeafRecord<'a, HeaderList<'a>> {
    audit::LeafRecord {
        offset: record.offset.0,
        timestamp_us: record.timestamp_us,
        event_time_us: record.fields.event_time_us,
        key: record.fields.key,
        headers: record.fields.headers,
        value: record.fields.value,
    }
}

impl<'a> audit::LeafHeaders<'a> for HeaderList<'a> {
    fn leaf_headers(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
        self.iter().map(|(name, value)| (name.as_bytes(), value))
    }
}

impl Topic {
    /// Opens the tree at writer start: trims leaves the log no longer holds and checks
    /// the tree still reaches the first record held.
    pub(crate) fn open_evidence(&self, signer: Arc<NoteSigner>, origin: String) -> Result<Evidence> {
        let dir = self.dir().join(MERKLE_DIR);
        if !dir.exists() {
            std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
            crate::fsutil::sync_dir(self.dir())?;
        }
        let mut tree = TreeFile::open(&dir).map_err(|e| audit_err(self.name(), e))?;
        let end = self.end_offset().0;
        if tree.size() > end {
            tracing::warn!(
                topic = self.name(),
                tree = tree.size(),
                log = end,
                "trimming tree leaves the log no longer holds"
            );
            tree.truncate(end).map_err(|e| audit_err(self.name(), e))?;
        }
        let broken = (tree.size() < self.start_offset().0).then(|| {
            format!(
                "the Merkle tree holds {} leaves but records before offset {} were deleted; their hashes are lost",
                tree.size(),
                self.start_offset()
            )
        });
        let checkpoints_path = self.dir().join(CHECKPOINTS_FILE);
        let mut checkpoints = CheckpointLogWriter::new(&checkpoints_path);
        let last = checkpoints
            .repair()
            .map_err(|e| checkpoints_err(self.name(), &checkpoints_path, e))?
            .texts
            .pop();
        let last_checkpoint = last
            .and_then(|text| Checkpoint::parse_and_verify(&text, &signer.verifier()).ok())
            .map(|cp| (cp.size, Instant::now()));
        // A signed checkpoint past the log's end means acknowledged, signed records are
        // gone (a power loss under a non-durable mode, or a truncation): say so now.
        let broken = broken.or_else(|| {
            last_checkpoint.filter(|(size, _)| *size > end).map(|(size, _)| {
                format!("a signed checkpoint covers {size} records but the log ends at {end}: signed records were lost")
            })
        });
        let checkpoint_tail_base = self.shared.visible.lock().tail_base;
        Ok(Evidence {
            tree,
            signer,
            origin,
            last_checkpoint,
            checkpoints,
            checkpoint_tail_base,
            tree_sync_tail_base: checkpoint_tail_base,
            end_seen: (Offset(0), Instant::now()),
            deferred_since: None,
            broken,
        })
    }

    /// Hashes every record the tree lacks up to the visible end as it is now (the
    /// caller is waiting: close, `checkpoint()`, `verify`, proofs). Records appended
    /// meanwhile are left for later: hashing to a moving end could chase a fast appender
    /// for as long as it appends. Large catch-ups run on two threads as a pipeline: a
    /// helper hashes two chunks of leaves in three while this thread hashes the third
    /// and appends every chunk's leaves to the tree in order (the interior nodes and
    /// the file writes are about a third of the work, and only this thread can do them).
    pub(crate) fn hash_visible(&self, evidence: &mut Evidence) -> Result<()> {
        if let Some(reason) = &evidence.broken {
            return Err(tamper(self.name(), None, reason.clone()));
        }
        let from = evidence.tree.size();
        let end = self.end_offset().0;
        if end.saturating_sub(from) < PARALLEL_LEAVES_MIN {
            while self.hash_pass(evidence, end)? > 0 {}
            return Ok(());
        }
        let chunks: Vec<(u64, u64)> = (from..end)
            .step_by(CATCH_UP_CHUNK_LEAVES)
            .map(|a| (a, (a + CATCH_UP_CHUNK_LEAVES as u64).min(end)))
            .collect();
        let helper_takes = |i: usize| i % 3 != 2;
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Vec<Hash>>>(2);
            let chunks = &chunks;
            let helper = s.spawn(move || {
                let mine = chunks.iter().enumerate().filter(|&(i, _)| helper_takes(i));
                for &(a, b) in mine.map(|(_, chunk)| chunk) {
                    let leaves = self.leaves(a, b);
                    let failed = leaves.is_err();
                    // The receiver is gone when this thread's chunk failed.
                    if tx.send(leaves).is_err() || failed {
                        return;
                    }
                }
            });
            let appended = (|| {
                for (i, &(a, b)) in chunks.iter().enumerate() {
                    let leaves = if helper_takes(i) {
                        rx.recv()
                            .map_err(|_| tamper(self.name(), None, "a hashing thread stopped"))??
                    } else {
                        self.leaves(a, b)?
                    };
                    evidence
                        .tree
                        .append_leaves(&leaves)
                        .map_err(|e| audit_err(self.name(), e))?;
                }
                Ok(())
            })();
            drop(rx);
            let joined = helper
                .join()
                .map_err(|_| tamper(self.name(), None, "a hashing thread panicked"));
            appended.and(joined)
        })
    }

    /// Hashes up to one pass of the records in `[tree size, limit)` that are visible
    /// (on this thread: the background thread runs beside the appender, and on two
    /// cores a second hashing thread would take the appender's core); returns how many.
    fn hash_pass(&self, evidence: &mut Evidence, limit: u64) -> Result<u64> {
        if let Some(reason) = &evidence.broken {
            return Err(tamper(self.name(), None, reason.clone()));
        }
        let from = evidence.tree.size();
        let end = self.end_offset().0.min(limit);
        if from >= end {
            return Ok(0);
        }
        let end = end.min(from + LEAVES_PER_PASS as u64);
        let leaves = self.leaves(from, end)?;
        evidence
            .tree
            .append_leaves(&leaves)
            .map_err(|e| audit_err(self.name(), e))?;
        Ok(leaves.len() as u64)
    }

    /// The leaf hashes of records `[from, end)`: leaf bytes are gathered in a reused
    /// buffer and hashed many at a time (multi-buffer SHA-256).
    fn leaves(&self, from: u64, end: u64) -> Result<Vec<Hash>> {
        let mut leaves = Vec::with_capacity((end - from) as usize);
        self.for_each_leaf_batch(from, end, |_, batch| {
            batch.hash_into(&mut leaves);
            Ok(())
        })?;
        Ok(leaves)
    }

    /// Reads records `[from, end)` and hands their leaf bytes to `each` in batches, with
    /// the offset of the batch's first record; `each` must empty the batch.
    pub(crate) fn for_each_leaf_batch(
        &self,
        from: u64,
        end: u64,
        mut each: impl FnMut(u64, &mut LeafBatch) -> Result<()>,
    ) -> Result<()> {
        let mut batch = LeafBatch::new();
        let mut batch_start = from;
        let mut failure = None;
        self.scan(Offset(from), |record| {
            if record.offset.0 >= end {
                return ControlFlow::Break(());
            }
            let pushed = batch.push(&leaf_record(&record)).map_err(|e| audit_err(self.name(), e));
            let flushed = pushed.and_then(|()| {
                if batch.is_full() || record.offset.0 + 1 >= end {
                    each(batch_start, &mut batch)?;
                    debug_assert!(batch.is_empty(), "each must hash the batch");
                    batch_start = record.offset.0 + 1;
                }
                Ok(())
            });
            match flushed {
                Ok(()) if record.offset.0 + 1 < end => ControlFlow::Continue(()),
                Ok(()) => ControlFlow::Break(()),
                Err(e) => {
                    failure = Some(e);
                    ControlFlow::Break(())
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if !batch.is_empty() {
            each(batch_start, &mut batch)?;
        }
        Ok(())
    }

    /// Syncs log and tree, and signs a checkpoint of the tree as it is (callers that
    /// promise "everything appended" call [`Topic::hash_visible`] first); returns its
    /// text.
    pub(crate) fn checkpoint_now(&self, evidence: &mut Evidence) -> Result<String> {
        let ticket = evidence.tree.begin_sync().map_err(|e| audit_err(self.name(), e))?;
        let syncs = self.sync_for_checkpoint(&ticket);
        let (size, root) = self.record_synced(evidence, ticket, syncs)?;
        let tail_base = self.shared.visible.lock().tail_base;
        self.sign_checkpoint(evidence, size, root, tail_base)
    }

    /// Signs a checkpoint of the tree as it is, hashing new records while the log and
    /// the tree sync for it (the tree thread's own checkpoints: under a bulk load the
    /// syncs take 5–25 ms, more when a segment must be sealed first, and the tree
    /// thread, not the appender, is the one behind). Leaves hashed meanwhile are not
    /// covered by this checkpoint.
    fn checkpoint_hashing_meanwhile(&self, evidence: &mut Evidence) -> Result<()> {
        // The tail as the syncs start: a segment sealed meanwhile may hold leaves hashed
        // meanwhile, which this checkpoint does not make durable, so it must still count
        // as a change (for `checkpoint_due` and `sync_tree_after_seal`).
        let tail_base = self.shared.visible.lock().tail_base;
        let ticket = evidence.tree.begin_sync().map_err(|e| audit_err(self.name(), e))?;
        let synced = AtomicBool::new(false);
        let (hashed, syncs) = self.beside(
            "checkpoint sync",
            || {
                let syncs = self.sync_for_checkpoint(&ticket);
                synced.store(true, Ordering::Release);
                Ok(syncs)
            },
            || {
                // Until the syncs are done, or nothing visible is left to hash.
                while !synced.load(Ordering::Acquire) {
                    if self.hash_pass(evidence, u64::MAX)? == 0 {
                        break;
                    }
                }
                Ok(())
            },
        );
        let (size, root) = self.record_synced(evidence, ticket, syncs?)?;
        hashed?;
        self.sign_checkpoint(evidence, size, root, tail_base).map(|_| ())
    }

    /// Syncs the log up to `ticket`'s size and the tree side by side (the device overlaps
    /// them). The order between them does not matter: a tree synced past a log that then
    /// loses records is trimmed at open. Returns the log's and the tree's results.
    fn sync_for_checkpoint(&self, ticket: &SyncTicket) -> (Result<()>, Result<std::io::Result<()>>) {
        self.beside(
            "tree sync",
            || Ok(ticket.wait()),
            || self.sync_through(Offset(ticket.size)),
        )
    }

    /// Records the tree's sync (`merkle.meta`, and `tree_synced` for retention); then,
    /// if the log synced too, returns the size and root a checkpoint may sign.
    fn record_synced(
        &self,
        evidence: &mut Evidence,
        ticket: SyncTicket,
        (log, tree): (Result<()>, Result<std::io::Result<()>>),
    ) -> Result<(u64, Hash)> {
        let (size, root) = (ticket.size, ticket.root);
        evidence
            .tree
            .finish_sync(ticket, tree?)
            .map_err(|e| audit_err(self.name(), e))?;
        self.shared.tree_synced.store(size, Ordering::SeqCst);
        log?;
        Ok((size, root))
    }

    /// Signs and stores a checkpoint of `size` leaves with `root` (durable in the log
    /// and the tree), made when the tail segment began at `tail_base`; returns its text.
    fn sign_checkpoint(&self, evidence: &mut Evidence, size: u64, root: Hash, tail_base: Offset) -> Result<String> {
        let checkpoint = Checkpoint {
            origin: evidence.origin.clone(),
            size,
            root,
        };
        let text = checkpoint
            .sign(&evidence.signer)
            .map_err(|e| audit_err(self.name(), e))?;
        evidence
            .checkpoints
            .append(&text)
            .map_err(|e| checkpoints_err(self.name(), &self.dir().join(CHECKPOINTS_FILE), e))?;
        evidence.last_checkpoint = Some((size, Instant::now()));
        evidence.checkpoint_tail_base = tail_base;
        evidence.tree_sync_tail_base = tail_base;
        Ok(text)
    }

    /// After a seal, on a topic with retention, makes the tree durable (without a
    /// checkpoint, which may have to wait for [`CHECKPOINT_SPACING_MIN`]) so that
    /// retention may delete segments whose leaves it holds (see `tree_synced`). Without
    /// retention nothing waits for it, and the sync would stall hashing: it queues
    /// behind the sealed segment's own writeback (~50 ms for 128 MiB here).
    fn sync_tree_after_seal(&self, evidence: &mut Evidence) -> Result<()> {
        let tail_base = self.shared.visible.lock().tail_base;
        if tail_base == evidence.tree_sync_tail_base || !self.shared.config.has_retention() {
            return Ok(());
        }
        self.sync_tree(evidence)?;
        evidence.tree_sync_tail_base = tail_base;
        Ok(())
    }

    /// Runs `there` on a second thread while `here` runs on this one (a sync beside other
    /// work); returns both results, `here`'s first. A panic of the second thread is a
    /// tamper-evidence error naming `what`.
    fn beside<H, T: Send>(
        &self,
        what: &str,
        there: impl FnOnce() -> Result<T> + Send,
        here: impl FnOnce() -> Result<H>,
    ) -> (Result<H>, Result<T>) {
        std::thread::scope(|s| {
            let thread = s.spawn(there);
            let here = here();
            let there = thread
                .join()
                .unwrap_or_else(|_| Err(tamper(self.name(), None, format!("the {what} thread panicked"))));
            (here, there)
        })
    }

    /// Makes the tree durable; retention may then delete the segments holding its leaves
    /// (see retention.rs).
    fn sync_tree(&self, evidence: &mut Evidence) -> Result<()> {
        evidence.tree.sync().map_err(|e| audit_err(self.name(), e))?;
        self.shared.tree_synced.store(evidence.tree.size(), Ordering::SeqCst);
        Ok(())
    }

    fn checkpoint_due(&self, evidence: &mut Evidence) -> bool {
        let config = &self.shared.config;
        let size = evidence.tree.size();
        // No checkpoint yet counts as one long ago (not `Instant::now() - 1h`, which
        // underflows on a machine up for less than an hour).
        let (last_size, last_time) = match evidence.last_checkpoint {
            Some((size, time)) => (size, Some(time)),
            None => (0, None),
        };
        if size == last_size {
            return false;
        }
        // A checkpoint syncs the log and the tree: under a bulk load, one every
        // `checkpoint_every_records` would be many a second, each an fdatasync in the
        // appender's way. Spaced out, the records signed late are only those of the last
        // moment (close and `checkpoint()` still sign at once).
        if last_time.is_some_and(|t| t.elapsed() < CHECKPOINT_SPACING_MIN) {
            return false;
        }
        // The tree is below the last checkpoint when the log lost signed records (open_evidence
        // trims it to the log): `verify` reports that; here it must not underflow.
        let visible = *self.shared.visible.lock();
        let due = size.saturating_sub(last_size) >= config.checkpoint_every_records
            || last_time.is_none_or(|t| t.elapsed() >= Duration::from_millis(config.checkpoint_every_ms))
            || visible.tail_base != evidence.checkpoint_tail_base;
        if !due {
            return false;
        }
        // A checkpoint's log sync during a burst of appends takes CPU time and disk
        // interrupts from the appender (~7% of a bulk append's speed here, as the
        // background seal's did): a due checkpoint waits for the appends to pause (no
        // new record for `APPENDS_QUIET`), up to `CHECKPOINT_DEFER_MAX`.
        let now = Instant::now();
        if visible.end != evidence.end_seen.0 {
            evidence.end_seen = (visible.end, now);
        }
        let appending = now.duration_since(evidence.end_seen.1) < super::seal::APPENDS_QUIET;
        let waited = now.duration_since(*evidence.deferred_since.get_or_insert(now));
        if appending && waited < CHECKPOINT_DEFER_MAX {
            return false;
        }
        evidence.deferred_since = None;
        true
    }

    /// Starts the tree thread for this topic.
    pub(crate) fn start_evidence_thread(&self) -> Result<EvidenceThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let weak = Arc::downgrade(&self.shared);
        let flag = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name(format!("trailkeep-tree-{}", self.name()))
            .spawn(move || evidence_loop(weak, flag))
            .context(|| format!("starting the tree thread of topic {:?}", self.name()))?;
        Ok(EvidenceThread { stop, handle })
    }

    /// Stops the tree thread and signs a final checkpoint if the tree grew.
    pub(crate) fn stop_evidence(&self) -> Result<()> {
        let thread = self.shared.evidence_thread.lock().take();
        if let Some(thread) = thread {
            thread.stop.store(true, Ordering::SeqCst);
            self.shared.appended.notify_all();
            if thread.handle.join().is_err() {
                tracing::error!(topic = self.name(), "the tree thread panicked");
            }
        }
        let mut slot = self.shared.evidence.lock();
        let Some(evidence) = slot.as_mut() else { return Ok(()) };
        if evidence.broken.is_none() {
            // The log syncs while the tree catches up: one waits on the disk, the other
            // on the CPU (the checkpoint below then finds the log durable).
            let end = self.end_offset();
            let (hashed, synced) = self.beside("log sync", || self.sync_through(end), || self.hash_visible(evidence));
            synced?;
            hashed?;
            if evidence.last_checkpoint.map(|c| c.0) != Some(evidence.tree.size()) {
                self.checkpoint_now(evidence)?;
            }
        }
        *slot = None;
        Ok(())
    }
}

fn evidence_loop(weak: Weak<TopicShared>, stop: Arc<AtomicBool>) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        let topic = Topic { shared };
        // Lock order: evidence before visible, as in `hash_pass`.
        let (size, deferred) = topic
            .shared
            .evidence
            .lock()
            .as_ref()
            .map_or((0, false), |e| (e.tree.size(), e.deferred_since.is_some()));
        {
            let mut visible = topic.shared.visible.lock();
            if visible.end.0 <= size && !stop.load(Ordering::SeqCst) {
                let wait = if deferred {
                    super::seal::APPENDS_QUIET
                } else {
                    TREE_IDLE_WAIT
                };
                topic.shared.appended.wait_for(&mut visible, wait);
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let mut slot = topic.shared.evidence.lock();
        let Some(evidence) = slot.as_mut() else { return };
        let result = topic.hash_pass(evidence, u64::MAX).and_then(|_| {
            if topic.checkpoint_due(evidence) {
                topic.checkpoint_hashing_meanwhile(evidence)
            } else {
                topic.sync_tree_after_seal(evidence)
            }
        });
        if let Err(e) = result {
            tracing::error!(topic = topic.name(), error = %e, "tamper evidence stopped");
            evidence.broken.get_or_insert_with(|| e.to_string());
            return;
        }
    }
}

/// An error of `checkpoints.log`: damage names the file and byte (as damage in a segment
/// does); an I/O failure stays an I/O error.
fn checkpoints_err(topic: &str, path: &Path, e: audit::AuditError) -> Error {
    match e {
        audit::AuditError::Corrupt { path, byte, reason } => Error::Corrupt {
            file: path,
            byte_pos: byte,
            reason,
        },
        audit::AuditError::Io { source, .. } => Error::Io {
            context: format!("tamper evidence file {}", path.display()),
            source,
        },
        other => audit_err(topic, other),
    }
}

/// Every complete checkpoint in the file, oldest first (a torn final frame is ignored;
/// see `audit::checkpoint_log` for what counts as torn).
pub(crate) fn read_checkpoints(topic: &str, path: &Path) -> Result<Vec<String>> {
    let decoded = audit::checkpoint_log::read(path).map_err(|e| checkpoints_err(topic, path, e))?;
    Ok(decoded.texts)
}

/// The store's checkpoint signing key: loaded, or created (mode 0600) on first use.
pub(crate) struct Keys {
    pub path: PathBuf,
    pub name: String,
    signer: Mutex<Option<Arc<NoteSigner>>>,
}

impl Keys {
    pub fn new(path: PathBuf, name: String) -> Keys {
        Keys {
            path,
            name,
            signer: Mutex::new(None),
        }
    }

    pub fn signer(&self) -> Result<Arc<NoteSigner>> {
        let mut slot = self.signer.lock();
        if let Some(s) = slot.as_ref() {
            return Ok(Arc::clone(s));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).context(|| format!("creating {}", dir.display()))?;
        }
        let file = audit::SigningKeyFile::load_or_create(&self.path, &self.name).map_err(|e| match e {
            audit::AuditError::Io { path, source } => Error::Io {
                context: format!("signing key {}", path.display()),
                source,
            },
            other => Error::Corrupt {
                file: self.path.clone(),
                byte_pos: 0,
                reason: other.to_string(),
            },
        })?;
        let signer = Arc::new(file.into_signer());
        *slot = Some(Arc::clone(&signer));
        Ok(signer)
    }

    pub fn verifier(&self) -> Result<NoteVerifier> {
        Ok(self.signer()?.verifier())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree file that refuses work after a failed write (a full disk) is the topic's
    /// poisoned state, not tamper evidence; errors name the topic (they used to carry an
    /// empty topic name).
    #[test]
    fn audit_errors_name_the_topic_and_a_poisoned_tree_is_not_tampering() {
        let path = PathBuf::from("/store/topics/t/merkle/merkle.tree");
        match audit_err("t", audit::AuditError::Poisoned { path: path.clone() }) {
            Error::Poisoned { topic, cause } => {
                assert_eq!(topic, "t");
                assert!(cause.contains("merkle.tree"), "{cause}");
            }
            other => panic!("expected Poisoned, got {other:?}"),
        }
        let corrupt = audit::AuditError::Corrupt {
            path,
            byte: 8,
            reason: "bad".into(),
        };
        match audit_err("t", corrupt) {
            Error::Tamper { topic, reason, .. } => {
                assert_eq!(topic, "t");
                assert!(reason.contains("byte 8"), "{reason}");
            }
            other => panic!("expected Tamper, got {other:?}"),
        }
    }
}
