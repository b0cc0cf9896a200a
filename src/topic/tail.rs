//! The tail (active) segment as readers see it, and refreshing the read view from disk
//! when another process is the appender.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

use crate::error::IoContext;
use crate::index::{self, SegmentIndex};
use crate::segment::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::segment::{self, SealedSegment, LOG_EXT};
use crate::topic::{Segments, Topic, Visible};
use crate::{Offset, Result};

/// The newest segment of a topic: read with `pread`, never mapped (it still grows, and a
/// recovering appender may truncate it).
pub(crate) struct TailSegment {
    pub base: Offset,
    pub path: PathBuf,
    pub file: File,
    /// Sparse index: maintained by the appender in its process; loaded from the index
    /// file (and confirmed entry by entry before use) in reader processes.
    pub index: RwLock<SegmentIndex>,
    /// Where a reader last found zeros after the last batch, with nothing valid after
    /// them up to the end of the file (see [`extend_visible`]).
    zeros: Mutex<Option<ZerosSeen>>,
}

/// Zeros after the last batch of a tail, as a reader last read them whole.
#[derive(Clone, Copy)]
struct ZerosSeen {
    /// File position of the first zero (the end of the last batch).
    at: u64,
    /// The file's length then.
    len: u64,
    when: Instant,
}

/// How long a reader trusts that the zeros after the tail's last batch hide no valid
/// batch (damage in the middle of the log) before it reads them whole again.
const ZEROS_RECHECK: Duration = Duration::from_secs(1);

/// Bytes a reader reads after the tail's last batch when zeros it checked lately follow
/// it (see [`extend_visible`]).
const TAIL_WINDOW_BYTES: u64 = 64 << 10;

impl TailSegment {
    pub fn open(dir: &Path, base: Offset) -> Result<TailSegment> {
        let path = dir.join(segment::file_name(base, LOG_EXT));
        let file = File::open(&path).context(|| format!("opening segment {}", path.display()))?;
        Ok(TailSegment {
            base,
            path,
            file,
            index: RwLock::new(SegmentIndex::default()),
            zeros: Mutex::new(None),
        })
    }

    /// Reads `[from, to)` of the tail.
    pub fn read_range(&self, from: u64, to: u64) -> Result<Vec<u8>> {
        segment::read_exact_at(&self.file, &self.path, from, (to - from) as usize)
    }

    /// The zeros a reader last read whole from `at` to `len`, if the file still has that
    /// length and that was within [`ZEROS_RECHECK`].
    fn recent_zeros(&self, at: u64, len: u64) -> Option<ZerosSeen> {
        let seen = *self.zeros.lock();
        seen.filter(|z| z.at == at && z.len == len && z.when.elapsed() < ZEROS_RECHECK)
    }

    /// True when the first bytes at `at` (up to a batch header's worth before `len`) are
    /// zeros: no batch was written there since.
    fn zeros_at(&self, at: u64, len: u64) -> bool {
        let probe = (len - at).min(BATCH_HEADER_BYTES as u64) as usize;
        segment::read_up_to_at(&self.file, &self.path, at, probe).is_ok_and(|b| b.len() == probe && all_zeros(&b))
    }

    /// The index entry to start a scan for `offset` from, confirmed against the log.
    pub fn start_position(&self, relative: u32, limit: u64) -> u64 {
        let Some(entry) = self.index.read().floor_offset(relative) else {
            return 0;
        };
        let pos = u64::from(entry.position);
        if pos + BATCH_HEADER_BYTES as u64 > limit {
            return 0;
        }
        let confirmed = self
            .read_range(pos, pos + BATCH_HEADER_BYTES as u64)
            .ok()
            .is_some_and(|head| {
                batch::read_u32(&head, 0) == batch::BATCH_MAGIC
                    && batch::read_u64(&head, 16) == self.base.0 + u64::from(entry.relative_offset)
            });
        if confirmed {
            pos
        } else {
            0
        }
    }
}

impl TailSegment {
    /// Makes the time index exact when this reader observed batches only from a byte
    /// position on (it opened the tail mid-way): walks the batch headers before that
    /// position once, with the header check and offset continuity. True when it did.
    ///
    /// # Errors
    /// I/O errors; [`crate::Error::Corrupt`] when the headers before that position do
    /// not tile it.
    pub fn complete_time_index(&self) -> Result<bool> {
        let Some(from) = self.index.read().observed_from() else {
            return Ok(false);
        };
        let prefix = self.observe_prefix(u64::from(from))?;
        self.index.write().complete_with_prefix(prefix);
        Ok(true)
    }

    /// The exact index of the batches in `[0, end)`, from their headers.
    fn observe_prefix(&self, end: u64) -> Result<SegmentIndex> {
        let mut index = SegmentIndex::default();
        let (mut pos, mut expected) = (0u64, self.base);
        let (mut window, mut window_start) = (Vec::new(), 0u64);
        let mut last_timestamp_us = 0;
        while pos < end {
            let header_end = pos + BATCH_HEADER_BYTES as u64;
            if header_end > end {
                return Err(segment::corrupt(
                    &self.path,
                    pos,
                    "batch header runs past the indexed part",
                ));
            }
            if header_end > window_start + window.len() as u64 {
                window = self.read_range(pos, (pos + PREFIX_WINDOW_BYTES).min(end))?;
                window_start = pos;
            }
            let header = BatchHeader::decode_header_only(&window[(pos - window_start) as usize..])
                .map_err(|e| segment::corrupt_at(&self.path, pos, e))?;
            if header.base_offset != expected || header.timestamp_us < last_timestamp_us {
                return Err(segment::corrupt(
                    &self.path,
                    pos,
                    format!(
                        "batch at offset {} does not continue offset {expected} in order",
                        header.base_offset
                    ),
                ));
            }
            let relative = index::relative(self.base, header.base_offset)
                .ok_or_else(|| segment::corrupt(&self.path, pos, "offset too far from the segment base"))?;
            // `end` is a u32 position, so `pos` is one too.
            index.observe_batch(relative, pos as u32, header.timestamp_us);
            last_timestamp_us = header.timestamp_us;
            expected = header.end_offset();
            pos += u64::from(header.batch_bytes);
        }
        if pos != end {
            return Err(segment::corrupt(
                &self.path,
                end,
                "batches do not end where the index resumes",
            ));
        }
        Ok(index)
    }
}

/// Bytes read at once while completing a reader's time index of the tail.
const PREFIX_WINDOW_BYTES: u64 = 1 << 20;

/// Builds the read view of a topic from its directory: sealed segments (not loaded) and
/// the tail, scanned for its valid end.
pub(crate) fn load_read_view(dir: &Path) -> Result<(Segments, Visible)> {
    let bases = segment::list_segments(dir)?;
    let tail_base = bases.last().copied().unwrap_or(Offset(0));
    let sealed = bases[..bases.len().saturating_sub(1)]
        .iter()
        .map(|&b| Arc::new(SealedSegment::new(dir, b)))
        .collect();
    if bases.is_empty() {
        // A topic created by another process that has not written yet: nothing to see.
        let tail = Arc::new(TailSegment {
            base: tail_base,
            path: dir.join(segment::file_name(tail_base, LOG_EXT)),
            file: File::open(dir).context(|| format!("opening {}", dir.display()))?,
            index: RwLock::new(SegmentIndex::default()),
            zeros: Mutex::new(None),
        });
        let visible = Visible {
            tail_base,
            end: tail_base,
            tail_bytes: 0,
        };
        return Ok((Segments { sealed, tail }, visible));
    }
    let tail = Arc::new(TailSegment::open(dir, tail_base)?);
    let log_len = tail
        .file
        .metadata()
        .context(|| format!("reading size of {}", tail.path.display()))?
        .len();
    // A tail its appender closed has a trusted exact index: no walk, now or at a seek.
    if let Some((index, last)) = segment::load_tail(&tail.path, tail_base, &tail.file, log_len) {
        *tail.index.write() = index;
        let mut visible = Visible {
            tail_base,
            end: last.end_offset(),
            tail_bytes: log_len,
        };
        extend_visible(&tail, &mut visible)?;
        return Ok((Segments { sealed, tail }, visible));
    }
    let index_bytes = std::fs::read(tail.path.with_extension(segment::INDEX_EXT)).unwrap_or_default();
    // The offset index file gives where to start reading (its last entry, confirmed by the
    // log); the time index is built from the batches this reader walks, from there on
    // (the file's time entries are never trusted: see `complete_time_index`).
    let (offsets, _) = index::decode_offset_entries(&index_bytes, log_len);
    let last = offsets.last().copied();
    *tail.index.write() = SegmentIndex::from_entries(offsets, Vec::new());
    let mut visible = Visible {
        tail_base,
        end: tail_base,
        tail_bytes: 0,
    };
    let start = last.map_or(0, |entry| tail.start_position(entry.relative_offset, log_len));
    if let (Some(entry), true) = (last, start > 0) {
        visible.tail_bytes = start;
        visible.end = Offset(tail_base.0 + u64::from(entry.relative_offset));
    }
    {
        let mut index = tail.index.write();
        let offsets = if start > 0 {
            std::mem::take(&mut index.offsets)
        } else {
            Vec::new()
        };
        // Positions are u32 (a segment is below 4 GiB), and `start` lies inside the file.
        *index = SegmentIndex::observing_from(offsets, u32::try_from(start).unwrap_or(0));
    }
    extend_visible(&tail, &mut visible)?;
    // Its appender closed it at a size the framed index vouches for (written after the
    // log's sync): batches ending before that are damage, not a batch being written, and
    // a reader would otherwise see a shorter log without a word.
    if let Some(closed) = crate::wal::clean_close_size(&index_bytes, tail_base).filter(|&c| visible.tail_bytes < c) {
        return Err(segment::corrupt(
            &tail.path,
            visible.tail_bytes,
            format!(
                "no valid batch here, but the segment was closed cleanly at {closed} bytes \
                 (its file has {log_len}): records acknowledged before the close are damaged or cut off"
            ),
        ));
    }
    Ok((Segments { sealed, tail }, visible))
}

/// Walks complete, checksummed batches of the tail past `visible` and extends it.
/// Stops quietly at the first incomplete or bad batch when nothing valid follows (the
/// appender may be writing it); fails with `Corrupt` when a valid batch follows.
///
/// An appender under `Always` writes zeros ahead of its batches (up to 1 MiB): they are
/// read whole at most once per [`ZEROS_RECHECK`]; in between, a reader probes the first
/// bytes after the last batch, and when batches were written there, reads a window of
/// [`TAIL_WINDOW_BYTES`] (the appender writes its batches one after another, into zeros
/// a reader saw): a follower polling every millisecond reads what is new, not the zeros.
pub(crate) fn extend_visible(tail: &TailSegment, visible: &mut Visible) -> Result<bool> {
    let meta = tail
        .file
        .metadata()
        .context(|| format!("reading size of {}", tail.path.display()))?;
    if !meta.is_file() {
        // The placeholder tail of a topic that had no segment yet (see load_read_view).
        return Ok(false);
    }
    let len = meta.len();
    let from = visible.tail_bytes;
    if len <= from {
        return Ok(false);
    }
    if let Some(seen) = tail.recent_zeros(from, len) {
        if tail.zeros_at(from, len) {
            return Ok(false);
        }
        let window = (len - from).min(TAIL_WINDOW_BYTES) as usize;
        let bytes = segment::read_up_to_at(&tail.file, &tail.path, from, window)?;
        let pos = walk_batches(tail, visible, &bytes)?;
        visible.tail_bytes += pos as u64;
        if pos < bytes.len() && all_zeros(&bytes[pos..]) {
            *tail.zeros.lock() = Some(ZerosSeen {
                at: visible.tail_bytes,
                ..seen
            });
            return Ok(pos > 0);
        }
    }
    // The appender's seal may cut the file meanwhile (the zeros written ahead).
    let start = visible.tail_bytes;
    let bytes = segment::read_up_to_at(&tail.file, &tail.path, start, len.saturating_sub(start) as usize)?;
    let pos = walk_batches(tail, visible, &bytes)?;
    visible.tail_bytes += pos as u64;
    let zeros = pos < bytes.len() && all_zeros(&bytes[pos..]);
    *tail.zeros.lock() = zeros.then(|| ZerosSeen {
        at: visible.tail_bytes,
        len,
        when: Instant::now(),
    });
    Ok(visible.tail_bytes > from)
}

fn all_zeros(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| b == 0)
}

/// Walks the batches in `bytes` (read from the tail at `visible.tail_bytes`) that continue
/// `visible.end`, indexing each and advancing `visible.end`; returns how many bytes they
/// take. Fails with `Corrupt` when bad bytes have a valid batch after them.
fn walk_batches(tail: &TailSegment, visible: &mut Visible, bytes: &[u8]) -> Result<usize> {
    let mut pos = 0usize;
    let mut scratch = Vec::new();
    let mut index = tail.index.write();
    while pos < bytes.len() {
        let bad = match batch::decode_batch(&bytes[pos..], &mut scratch) {
            Ok((header, _)) if header.base_offset == visible.end => {
                // The index covers every batch walked, before it becomes visible.
                let at = visible.tail_bytes + pos as u64;
                if let (Some(relative), Ok(position)) =
                    (index::relative(tail.base, header.base_offset), u32::try_from(at))
                {
                    index.observe_new_batch(relative, position, header.timestamp_us);
                }
                pos += header.batch_bytes as usize;
                visible.end = header.end_offset();
                continue;
            }
            Ok(_) => batch::DecodeError {
                byte_pos: 16,
                reason: "batch does not continue the offsets".into(),
                truncated: false,
            },
            Err(e) => e,
        };
        // A batch being written shows up cut short with nothing after it; bad bytes (or a
        // batch "cut short" by a damaged length field) with a complete, valid batch after
        // them are damage in the middle of the log, which readers report too.
        if let Some(later) = crate::wal::find_valid_batch_after(&bytes[pos..], visible.end) {
            let at = visible.tail_bytes + pos as u64;
            return Err(segment::corrupt(
                &tail.path,
                at + if bad.truncated { 4 } else { bad.byte_pos },
                format!(
                    "{}; a valid batch follows at byte {}, so this is not a batch being written",
                    bad.reason,
                    at + later as u64
                ),
            ));
        }
        break;
    }
    Ok(pos)
}

impl Topic {
    /// Catches up with appends made by another process: new batches in the tail, new
    /// segments, segments deleted by retention. A no-op in the appending process.
    /// Returns true when new records became visible.
    ///
    /// # Errors
    /// I/O errors while listing or reading the topic's files.
    pub fn refresh(&self) -> Result<bool> {
        if self.is_writer() {
            return Ok(false);
        }
        let shared = &self.shared;
        let tail = Arc::clone(&shared.segments.read().tail);
        let mut visible = *shared.visible.lock();
        let mut grew = if visible.tail_base == tail.base {
            extend_visible(&tail, &mut visible)?
        } else {
            false
        };
        // Listing the directory costs more than a follower polling every few ms should
        // pay: relist only when the segment a roll would create exists (its base is the
        // visible end), the oldest segment is gone (retention), the view has no real tail
        // yet, or a second has passed.
        let placeholder_view = tail.file.metadata().is_ok_and(|m| !m.is_file());
        let rolled = visible.end != tail.base
            && shared
                .dir
                .join(segment::file_name(visible.end, segment::LOG_EXT))
                .exists();
        let first_gone = shared.segments.read().sealed.first().is_some_and(|s| !s.path.exists());
        let stale = shared.last_relist.lock().elapsed() >= std::time::Duration::from_secs(1);
        if !(rolled || first_gone || stale || placeholder_view) {
            let mut current = shared.visible.lock();
            if visible.end > current.end {
                *current = visible;
                shared.appended.notify_all();
            }
            return Ok(grew);
        }
        *shared.last_relist.lock() = std::time::Instant::now();
        let bases = segment::list_segments(&shared.dir)?;
        let newest = bases.last().copied().unwrap_or(tail.base);
        // A view opened before the topic had any segment holds a placeholder tail (the
        // directory): once a segment exists, the tail must be opened for real.
        let placeholder = !bases.is_empty() && tail.file.metadata().is_ok_and(|m| !m.is_file());
        if placeholder || newest != tail.base || bases.first().copied() != Some(shared.segments.read().start()) {
            grew |= self.reload_segments(&bases, &mut visible, placeholder)?;
        }
        let mut current = shared.visible.lock();
        if visible.end > current.end || visible.tail_base != current.tail_base {
            *current = visible;
            shared.appended.notify_all();
        }
        Ok(grew)
    }

    /// Rebuilds the segment list from `bases`, keeping already-loaded segments.
    fn reload_segments(&self, bases: &[Offset], visible: &mut Visible, placeholder: bool) -> Result<bool> {
        let shared = &self.shared;
        let Some(&newest) = bases.last() else { return Ok(false) };
        let mut segments = shared.segments.write();
        let mut known: Vec<Arc<SealedSegment>> = std::mem::take(&mut segments.sealed);
        let old_tail = Arc::clone(&segments.tail);
        if !placeholder {
            known.push(Arc::new(SealedSegment::new(&shared.dir, old_tail.base)));
        }
        let sealed: Vec<_> = bases[..bases.len() - 1]
            .iter()
            .map(|&b| match known.iter().find(|s| s.base == b) {
                Some(s) => Arc::clone(s),
                None => Arc::new(SealedSegment::new(&shared.dir, b)),
            })
            .collect();
        if placeholder || newest != old_tail.base {
            segments.tail = Arc::new(TailSegment::open(&shared.dir, newest)?);
            // Everything before the new tail is sealed and complete.
            *visible = Visible {
                tail_base: newest,
                end: newest,
                tail_bytes: 0,
            };
            extend_visible(&segments.tail, visible)?;
        }
        segments.sealed = sealed;
        Ok(newest != old_tail.base || (placeholder && visible.end > newest))
    }
}

/// Walks the batches in `bytes` (which start at file position `at` and run to the end of
/// a sealed segment) and returns the position and header of the first batch for which
/// `stop` holds. Every header walked passes its header check, and the batches must tile
/// the window: a damaged length or timestamp would otherwise send the walk astray.
pub(crate) fn walk_headers(
    bytes: &[u8],
    at: u64,
    path: &Path,
    mut stop: impl FnMut(&BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>> {
    let mut pos = 0usize;
    while pos < bytes.len() {
        let header = BatchHeader::decode(&bytes[pos..]).map_err(|e| {
            let e = if e.truncated {
                batch::DecodeError {
                    byte_pos: 4,
                    reason: format!("{} at the end of a sealed segment", e.reason),
                    truncated: true,
                }
            } else {
                e
            };
            segment::corrupt_at(path, at + pos as u64, e)
        })?;
        // The header check vouches for length, offsets and time; the batch CRC is checked
        // when records are read, so seeking stays cheap on large batches.
        if stop(&header) {
            return Ok(Some((at + pos as u64, header)));
        }
        pos += header.batch_bytes as usize;
    }
    Ok(None)
}
