//! A topic: its segment list, its appender, and what readers may see.
//!
//! **Invariant:** readers in this process see records up to `Visible::end` only; with
//! `Durability::Always` that is the durable end, so nobody reads an unacknowledged record.

mod async_append;
mod batches;
pub mod config;
pub(crate) mod evidence;
mod query;
mod read;
mod retention;
mod seal;
mod tail;
mod verify;
pub(crate) use verify::read_only_media;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex, RwLock};

pub use config::{validate_topic_name, TopicConfig};
pub use evidence::{record_leaf, CHECKPOINTS_FILE, MERKLE_DIR};
pub use read::Records;
pub use retention::{GroupLoss, RetentionReport};
pub(crate) use tail::TailSegment;
pub use verify::{verify_record_inclusion, VerifyReport, CONSISTENCY_HEADER};
pub(crate) use write::{now_us, AppendLock};
pub use write::{Appended, LOCK_FILE};

use crate::segment::{self, SealedSegment};
use crate::wal::{Durability, GroupCommit, Writer};
use crate::{Error, Offset, Result};

/// Most sealed segments of one topic kept mapped at once (memory stays flat as the store grows).
pub const LOADED_SEGMENTS_MAX: usize = 32;

/// The segments of a topic, oldest first, and the active (tail) one.
pub(crate) struct Segments {
    pub sealed: Vec<Arc<SealedSegment>>,
    pub tail: Arc<TailSegment>,
}

impl Segments {
    pub fn start(&self) -> Offset {
        self.sealed.first().map_or(self.tail.base, |s| s.base)
    }
}

/// How far readers may read: the tail segment, the end offset and the tail's valid bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Visible {
    pub tail_base: Offset,
    pub end: Offset,
    pub tail_bytes: u64,
}

pub(crate) struct TopicShared {
    pub name: String,
    pub dir: PathBuf,
    pub config: TopicConfig,
    pub durability: Durability,
    pub segments: RwLock<Segments>,
    pub visible: Mutex<Visible>,
    pub appended: Condvar,
    pub writer: Mutex<Option<Writer>>,
    pub commit: GroupCommit,
    pub loaded: Mutex<std::collections::VecDeque<Arc<SealedSegment>>>,
    pub last_recovery: Mutex<Option<crate::wal::RecoveryReport>>,
    pub keys: Arc<evidence::Keys>,
    pub origin: String,
    pub evidence: Mutex<Option<evidence::Evidence>>,
    pub evidence_thread: Mutex<Option<evidence::EvidenceThread>>,
    /// Leaves durably in the tree file: retention never deletes records above it.
    pub tree_synced: std::sync::atomic::AtomicU64,
    /// In-memory key index of the tail segment, for queries (see `query.rs`).
    pub tail_keys: Mutex<query::TailKeys>,
    /// When a reader last listed the topic's directory (see `Topic::refresh`).
    pub last_relist: Mutex<std::time::Instant>,
    /// Rolled segments whose seal is not yet durable (see `seal.rs`).
    pub sealing: seal::Sealing,
    /// Under `IntervalMs`, the thread syncing the log while this process appends.
    pub interval_syncer: Mutex<Option<write::IntervalSyncer>>,
    /// Under `Always`, the thread syncing for async appenders (see `async_append.rs`).
    pub committer: Mutex<Option<async_append::Committer>>,
}

/// Waits for a background thread (a topic's, the tier's) to end, not when called on
/// that thread itself; a panic in it is logged, as its work is retried or redone elsewhere.
pub(crate) fn join_thread(handle: std::thread::JoinHandle<()>, what: &str) {
    if handle.thread().id() != std::thread::current().id() && handle.join().is_err() {
        tracing::error!("a {what} thread panicked");
    }
}

/// A handle on one topic. Cheap to clone; every clone shares the same state.
#[derive(Clone)]
pub struct Topic {
    pub(crate) shared: Arc<TopicShared>,
}

impl std::fmt::Debug for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

/// Sizes and bounds of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicStats {
    /// Topic name.
    pub name: String,
    /// First offset held.
    pub start_offset: Offset,
    /// Next offset to be written.
    pub end_offset: Offset,
    /// Number of segment files.
    pub segments: usize,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Settings.
    pub config: TopicConfig,
}

impl Topic {
    pub(crate) fn open(
        dir: PathBuf,
        name: String,
        config: TopicConfig,
        durability: Durability,
        keys: Arc<evidence::Keys>,
        origin: String,
    ) -> Result<Topic> {
        let (segments, visible) = tail::load_read_view(&dir)?;
        let shared = Arc::new(TopicShared {
            name,
            dir,
            config,
            durability,
            segments: RwLock::new(segments),
            visible: Mutex::new(visible),
            appended: Condvar::new(),
            writer: Mutex::new(None),
            commit: GroupCommit::default(),
            loaded: Mutex::new(std::collections::VecDeque::new()),
            last_recovery: Mutex::new(None),
            keys,
            origin,
            evidence: Mutex::new(None),
            evidence_thread: Mutex::new(None),
            tree_synced: std::sync::atomic::AtomicU64::new(0),
            tail_keys: Mutex::new(query::TailKeys::default()),
            last_relist: Mutex::new(std::time::Instant::now()),
            sealing: seal::Sealing::default(),
            interval_syncer: Mutex::new(None),
            committer: Mutex::new(None),
        });
        Ok(Topic { shared })
    }

    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The topic's directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// The topic's settings.
    pub fn config(&self) -> &TopicConfig {
        &self.shared.config
    }

    /// First offset still held (older ones were deleted by retention).
    pub fn start_offset(&self) -> Offset {
        self.shared.segments.read().start()
    }

    /// Next offset to be written: one past the last record readers may see.
    ///
    /// In a process that does not append to this topic, call [`Topic::refresh`] first to
    /// see what another process appended.
    pub fn end_offset(&self) -> Offset {
        self.shared.visible.lock().end
    }

    /// Records missing at the head of the topic: `start.offset` (which only retention
    /// moves, before it deletes) says the topic holds offsets from `from`, but its first
    /// segment begins at `to` — segments were removed outside retention. Returns the range
    /// and the first segment present; reads in the range fail with
    /// [`Error::Gap`], and [`Topic::start_offset`] is `to`.
    ///
    /// # Errors
    /// An unreadable or corrupt `start.offset`.
    pub fn missing_head(&self) -> Result<Option<(Offset, Offset, PathBuf)>> {
        let recorded = segment::read_start_offset(&self.shared.dir)?;
        let start = self.start_offset();
        Ok((recorded < start).then(|| {
            let file = self.shared.dir.join(segment::file_name(start, segment::LOG_EXT));
            (recorded, start, file)
        }))
    }

    /// True when this process holds the topic's append lock.
    pub fn is_writer(&self) -> bool {
        self.shared.writer.lock().is_some()
    }

    /// Sizes and bounds.
    ///
    /// # Errors
    /// I/O errors while reading file sizes.
    pub fn stats(&self) -> Result<TopicStats> {
        let segments = self.shared.segments.read();
        let mut bytes = self.shared.visible.lock().tail_bytes;
        for s in &segments.sealed {
            bytes += std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
        }
        Ok(TopicStats {
            name: self.shared.name.clone(),
            start_offset: segments.start(),
            end_offset: self.end_offset(),
            segments: segments.sealed.len() + 1,
            bytes,
            config: self.shared.config.clone(),
        })
    }

    /// Waits up to `timeout` for records at or past `position` to become visible through
    /// this process's own appends; true when they are.
    pub(crate) fn wait_for_append(&self, position: Offset, timeout: std::time::Duration) -> bool {
        let mut visible = self.shared.visible.lock();
        if visible.end > position {
            return true;
        }
        self.shared.appended.wait_for(&mut visible, timeout);
        visible.end > position
    }

    pub(crate) fn out_of_range(&self, offset: Offset) -> Error {
        if let Ok(Some((from, to, file))) = self.missing_head() {
            if (from..to).contains(&offset) {
                return Error::Gap {
                    topic: self.shared.name.clone(),
                    from,
                    to,
                    file,
                };
            }
        }
        Error::OffsetOutOfRange {
            topic: self.shared.name.clone(),
            offset,
            start: self.start_offset(),
            end: self.end_offset(),
        }
    }
}

impl TopicShared {
    /// Counts `segment` among the mapped ones, unloading the least recently loaded
    /// beyond [`LOADED_SEGMENTS_MAX`].
    pub(crate) fn track_loaded(&self, segment: &Arc<SealedSegment>) {
        let mut loaded = self.loaded.lock();
        loaded.push_back(Arc::clone(segment));
        while loaded.len() > LOADED_SEGMENTS_MAX {
            if let Some(old) = loaded.pop_front() {
                old.unload();
            }
        }
    }

    /// Loads a sealed segment, keeping at most [`LOADED_SEGMENTS_MAX`] mapped.
    pub(crate) fn load_sealed(&self, segment: &Arc<SealedSegment>) -> Result<Arc<crate::segment::SealedData>> {
        if !segment.is_loaded() {
            self.track_loaded(segment);
        }
        // Index files are rewritten only by the appender, and not for a segment whose seal
        // is still pending (the sealer writes them once its log is synced).
        let writable = segment.base < self.sealing.through() && self.writer.try_lock().is_some_and(|w| w.is_some());
        segment.load(writable)
    }

    /// A sealed segment's summary, loading it once if needed.
    pub(crate) fn summary(&self, segment: &Arc<SealedSegment>) -> Result<crate::segment::Summary> {
        if let Some(summary) = segment.summary() {
            return Ok(summary);
        }
        // Tiering hook: an evicted segment's summary comes from the manifest (no download).
        if let Some(summary) = crate::tier::evicted_summary(&segment.path, segment.base) {
            return Ok(summary);
        }
        Ok(self.load_sealed(segment)?.summary())
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Topic>();
};
