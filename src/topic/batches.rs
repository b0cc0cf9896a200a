//! Batches of a topic: `BatchCursor`, which walks checked batches from an offset across
//! segment boundaries (sealed, tail, a tail sealed meanwhile), and the header walks that
//! position on a batch within one segment, confirming the index entry they start from.
//!
//! **Invariant:** every batch the cursor hands out has passed its checksum and starts at
//! the offset the previous one ended at; a gap or a mismatch is an `Err`, never skipped.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::IoContext;
use crate::index;
use crate::segment::batch::{self, BatchHeader, BATCH_HEADER_BYTES};
use crate::segment::{self, BatchBytes, SealedData, SealedSegment};
use crate::topic::tail::walk_headers;
use crate::topic::{TailSegment, Topic};
use crate::{Error, Offset, Result};

enum Place {
    Sealed(Arc<SealedSegment>, Arc<SealedData>),
    Tail(Arc<TailSegment>),
}

/// Walks batches from a position; checks each batch's checksum and offset continuity.
pub(crate) struct BatchCursor {
    topic: Topic,
    place: Place,
    pos: u64,
    expected: Offset,
    batch_pos: u64,
    /// A tail batch's buffer handed back by the caller (see [`BatchCursor::recycle`]).
    spare: Vec<u8>,
    /// Tail bytes read ahead of `pos`.
    ahead: ReadAhead,
}

/// Bytes of the tail read at once by a cursor: one `pread` serves the many small batches
/// that follow each other under single-record durable appends (the tree thread, following
/// 64 durable appenders, made two `pread`s per record); larger batches are read whole.
const TAIL_READ_AHEAD_BYTES: u64 = 64 << 10;

/// `[start, start + bytes.len())` of the tail file with base offset `base`, all below
/// the visible end when read (bytes there never change: the file only grows, and
/// recovery replaces it by a new file rather than rewriting it). A cursor reads batches
/// through one; a walk over the tail's headers reads its window through another.
#[derive(Default)]
struct ReadAhead {
    base: Offset,
    start: u64,
    bytes: Vec<u8>,
}

impl ReadAhead {
    fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }

    /// Whether `[pos, pos + len)` of `tail` was read ahead.
    fn holds(&self, tail: &TailSegment, pos: u64, len: u64) -> bool {
        self.base == tail.base && pos >= self.start && pos + len <= self.end()
    }

    /// The bytes read from `pos` on (`pos` must be held).
    fn from(&self, pos: u64) -> &[u8] {
        &self.bytes[(pos - self.start) as usize..]
    }

    /// Reads up to `window` bytes from `pos`, not past `limit`.
    fn fill(&mut self, tail: &TailSegment, pos: u64, limit: u64, window: u64) -> Result<()> {
        let len = limit.saturating_sub(pos).min(window) as usize;
        self.bytes.resize(len, 0);
        self.base = tail.base;
        self.start = pos;
        let read = tail.file.read_exact_at(&mut self.bytes, pos);
        if let Err(e) = read {
            self.bytes.clear();
            return Err(e).context(|| format!("reading {len} bytes at byte {pos} of {}", tail.path.display()));
        }
        Ok(())
    }

    /// Reads the batch at `pos` of `tail`, whose file holds valid bytes up to `limit`,
    /// into `buf` (replacing its contents, reusing its allocation): what is read ahead
    /// is copied, the rest read.
    fn read_batch(&mut self, tail: &TailSegment, pos: u64, limit: u64, buf: &mut Vec<u8>) -> Result<()> {
        let head = BATCH_HEADER_BYTES as u64;
        if limit < pos + head {
            return Err(segment::corrupt(
                &tail.path,
                pos,
                "batch header runs past the written data",
            ));
        }
        if !self.holds(tail, pos, head) {
            self.fill(tail, pos, limit, TAIL_READ_AHEAD_BYTES)?;
        }
        let header =
            BatchHeader::decode_header_only(self.from(pos)).map_err(|e| segment::corrupt_at(&tail.path, pos, e))?;
        let len = u64::from(header.batch_bytes);
        if pos + len > limit {
            return Err(segment::corrupt(&tail.path, pos, "batch runs past the written data"));
        }
        let have = (self.end() - pos).min(len) as usize;
        buf.clear();
        buf.extend_from_slice(&self.from(pos)[..have]);
        if have < len as usize {
            buf.resize(len as usize, 0);
            tail.file
                .read_exact_at(&mut buf[have..], pos + have as u64)
                .context(|| format!("reading {len} bytes at byte {pos} of {}", tail.path.display()))?;
        }
        Ok(())
    }
}

impl BatchCursor {
    /// Positions on the batch holding `offset` (or at the end, when `offset` is the end).
    pub fn seek(topic: &Topic, offset: Offset) -> Result<BatchCursor> {
        let shared = &topic.shared;
        let segments = shared.segments.read();
        let visible = *shared.visible.lock();
        if offset < segments.start() || offset > visible.end {
            drop(segments);
            return Err(topic.out_of_range(offset));
        }
        if offset >= segments.tail.base && segments.tail.base == visible.tail_base {
            let tail = Arc::clone(&segments.tail);
            drop(segments);
            let (pos, expected) = seek_in_tail(&tail, offset, visible.tail_bytes, |h| h.end_offset() > offset)?
                .map_or((visible.tail_bytes, visible.end), |(p, h)| (p, h.base_offset));
            return Ok(BatchCursor {
                topic: topic.clone(),
                place: Place::Tail(tail),
                pos,
                expected,
                batch_pos: pos,
                spare: Vec::new(),
                ahead: ReadAhead::default(),
            });
        }
        let idx = segments.sealed.partition_point(|s| s.base <= offset).saturating_sub(1);
        let Some(seg) = segments.sealed.get(idx).cloned() else {
            drop(segments);
            return Err(topic.out_of_range(offset));
        };
        let next_base = segments.sealed.get(idx + 1).map_or(segments.tail.base, |s| s.base);
        drop(segments);
        let data = load_or_deleted(topic, &seg, offset)?;
        if offset >= data.end_offset {
            return Err(gap(topic, data.end_offset, next_base));
        }
        let relative = index::relative(seg.base, offset).unwrap_or(u32::MAX);
        let entry = data.index.floor_offset(relative);
        let start = entry.map_or(0, |e| u64::from(e.position));
        let expect = entry.map(|e| (Offset(seg.base.0 + u64::from(e.relative_offset)), None));
        let found = walk_sealed(&data, start, expect, &seg.path, |h| h.end_offset() > offset)?;
        let Some((pos, header)) = found else {
            return Err(segment::corrupt(
                &seg.path,
                start,
                format!("no batch holds offset {offset}"),
            ));
        };
        Ok(BatchCursor {
            topic: topic.clone(),
            place: Place::Sealed(seg, data),
            pos,
            expected: header.base_offset,
            batch_pos: pos,
            spare: Vec::new(),
            ahead: ReadAhead::default(),
        })
    }

    /// The file and byte position of the batch returned last (for error messages).
    pub fn location(&self) -> (&Path, u64) {
        let path = match &self.place {
            Place::Sealed(seg, _) => seg.path.as_path(),
            Place::Tail(tail) => tail.path.as_path(),
        };
        (path, self.batch_pos)
    }

    /// The next checked batch, or None at the end of what is visible now.
    pub fn next_batch(&mut self) -> Result<Option<(BatchHeader, BatchBytes)>> {
        loop {
            let step = match &self.place {
                Place::Sealed(seg, data) => {
                    if self.pos >= data.bytes {
                        None
                    } else if let Some(lazy) = &data.lazy {
                        // Tiering hook: an evicted segment read by range.
                        let bytes = read_lazy_batch(lazy.as_ref(), &seg.path, self.pos, data.bytes)?;
                        let header = self.check(&bytes, &seg.path)?;
                        Some((header, BatchBytes::Owned(bytes)))
                    } else {
                        let map = data
                            .map
                            .as_ref()
                            .ok_or_else(|| segment::corrupt(&seg.path, 0, "empty sealed segment"))?;
                        let start = self.pos as usize;
                        let header = self.check(&map[start..], &seg.path)?;
                        let range = start..start + header.batch_bytes as usize;
                        Some((header, BatchBytes::Mapped(Arc::clone(map), range)))
                    }
                }
                Place::Tail(tail) => {
                    let visible = *self.topic.shared.visible.lock();
                    if visible.tail_base != tail.base {
                        None
                    } else if self.pos >= visible.tail_bytes {
                        return Ok(None);
                    } else {
                        let mut bytes = std::mem::take(&mut self.spare);
                        self.ahead.read_batch(tail, self.pos, visible.tail_bytes, &mut bytes)?;
                        let header = self.check(&bytes, &tail.path)?;
                        Some((header, BatchBytes::Owned(bytes)))
                    }
                }
            };
            match step {
                Some((header, bytes)) => {
                    self.batch_pos = self.pos;
                    self.pos += u64::from(header.batch_bytes);
                    self.expected = header.end_offset();
                    return Ok(Some((header, bytes)));
                }
                None => {
                    if !self.advance()? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Takes back a batch's bytes once the caller is done with them: the next tail
    /// batch is read into the same buffer (a reader following the active segment, like
    /// the tree thread, would otherwise allocate and fault in a fresh one per batch).
    pub fn recycle(&mut self, bytes: BatchBytes) {
        if let BatchBytes::Owned(buf) = bytes {
            self.spare = buf;
        }
    }

    fn check(&self, bytes: &[u8], path: &Path) -> Result<BatchHeader> {
        let header = BatchHeader::decode(bytes).map_err(|e| segment::corrupt_at(path, self.pos, e))?;
        batch::check_crc(&header, bytes).map_err(|e| segment::corrupt_at(path, self.pos, e))?;
        if header.base_offset != self.expected {
            return Err(segment::corrupt(
                path,
                self.pos + 16,
                format!(
                    "batch starts at offset {}, expected {}",
                    header.base_offset, self.expected
                ),
            ));
        }
        Ok(header)
    }

    /// Moves to the segment after the current one (or, for a tail that was sealed
    /// meanwhile, to its sealed self). False when there is nothing after.
    fn advance(&mut self) -> Result<bool> {
        let shared = &self.topic.shared;
        let current_base = match &self.place {
            Place::Sealed(seg, _) => seg.base,
            Place::Tail(tail) => {
                let sealed = shared
                    .segments
                    .read()
                    .sealed
                    .iter()
                    .find(|s| s.base == tail.base)
                    .cloned();
                let Some(seg) = sealed else {
                    // Sealed and already deleted by retention: what follows (if still
                    // held) is in a later segment; a fresh seek finds it or says out of range.
                    let topic = self.topic.clone();
                    *self = BatchCursor::seek(&topic, self.expected)?;
                    return Ok(true);
                };
                let data = load_or_deleted(&self.topic, &seg, self.expected)?;
                self.place = Place::Sealed(seg, data);
                return Ok(true);
            }
        };
        let segments = shared.segments.read();
        let next = segments.sealed.iter().find(|s| s.base > current_base).cloned();
        let tail = Arc::clone(&segments.tail);
        drop(segments);
        let (next_base, place) = match next {
            Some(seg) => {
                let data = load_or_deleted(&self.topic, &seg, self.expected)?;
                (seg.base, Place::Sealed(seg, data))
            }
            None if tail.base > current_base => (tail.base, Place::Tail(tail)),
            None => return Ok(false),
        };
        if next_base != self.expected {
            return Err(gap(&self.topic, self.expected, next_base));
        }
        self.place = place;
        self.pos = 0;
        Ok(true)
    }
}

/// Loads a sealed segment; one that retention (in the appending process) deleted since
/// this view was built is reported as out of range, not as an I/O error.
pub(super) fn load_or_deleted(topic: &Topic, seg: &Arc<SealedSegment>, offset: Offset) -> Result<Arc<SealedData>> {
    topic
        .shared
        .load_sealed(seg)
        .map_err(|e| deleted_as_out_of_range(topic, e, offset))
}

pub(super) fn deleted_as_out_of_range(topic: &Topic, e: Error, offset: Offset) -> Error {
    match e {
        Error::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            let start = segment::list_segments(&topic.shared.dir)
                .ok()
                .and_then(|bases| bases.first().copied())
                .unwrap_or(offset);
            Error::OffsetOutOfRange {
                topic: topic.shared.name.clone(),
                offset,
                start,
                end: topic.end_offset(),
            }
        }
        e => e,
    }
}

fn gap(topic: &Topic, from: Offset, to: Offset) -> Error {
    Error::Gap {
        topic: topic.shared.name.clone(),
        from,
        to,
        file: topic.shared.dir.join(segment::file_name(to, segment::LOG_EXT)),
    }
}

/// Bytes read at once while walking the tail's headers (one `pread` covers the usual
/// walk from an index entry: entries are at most `INDEX_INTERVAL_BYTES` apart).
const TAIL_WALK_WINDOW_BYTES: u64 = crate::index::INDEX_INTERVAL_BYTES + 2 * BATCH_HEADER_BYTES as u64;

/// Walks the tail's batch headers from the index entry at or before `offset` until
/// `stop` holds; None when it holds for no visible batch. Headers are trusted through
/// their header check; the index entry only if the header there confirms it.
pub(super) fn seek_in_tail(
    tail: &TailSegment,
    offset: Offset,
    limit: u64,
    mut stop: impl FnMut(&BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>> {
    let relative = index::relative(tail.base, offset).unwrap_or(u32::MAX);
    let entry = tail.index.read().floor_offset(relative);
    let (mut pos, mut unconfirmed) = match entry {
        Some(e) if u64::from(e.position) + BATCH_HEADER_BYTES as u64 <= limit => {
            (u64::from(e.position), Some(tail.base.0 + u64::from(e.relative_offset)))
        }
        _ => (0, None),
    };
    let mut window = ReadAhead::default();
    while pos + BATCH_HEADER_BYTES as u64 <= limit {
        if !window.holds(tail, pos, BATCH_HEADER_BYTES as u64) {
            window.fill(tail, pos, limit, TAIL_WALK_WINDOW_BYTES)?;
        }
        let decoded = BatchHeader::decode_header_only(window.from(pos));
        if let Some(base) = unconfirmed.take() {
            if decoded.as_ref().map_or(true, |h| h.base_offset.0 != base) {
                pos = 0; // The index entry does not match the log: walk from the start.
                continue;
            }
        }
        let header = decoded.map_err(|e| segment::corrupt_at(&tail.path, pos, e))?;
        if pos + u64::from(header.batch_bytes) > limit {
            return Err(segment::corrupt(&tail.path, pos, "batch runs past the written data"));
        }
        if stop(&header) {
            return Ok(Some((pos, header)));
        }
        pos += u64::from(header.batch_bytes);
    }
    Ok(None)
}

/// `walk_headers` over a sealed segment; for one read by range (tiering), header by
/// header so that only the ranges walked are fetched.
///
/// `expect` is what the index entry that gave `start` claims is there (base offset, and
/// append time for a time entry). Index entries are confirmed here, on use, not all at
/// load: an entry the log does not confirm is ignored and the walk starts at byte 0.
pub(super) fn walk_sealed(
    data: &SealedData,
    start: u64,
    expect: Option<(Offset, Option<u64>)>,
    path: &Path,
    mut stop: impl FnMut(&BatchHeader) -> bool,
) -> Result<Option<(u64, BatchHeader)>> {
    let start = match expect {
        Some((base, time)) if start > 0 => {
            let head = match &data.lazy {
                Some(lazy) => lazy
                    .read(start..(start + BATCH_HEADER_BYTES as u64).min(data.bytes))
                    .ok(),
                None => data
                    .as_slice()
                    .get(start as usize..start as usize + BATCH_HEADER_BYTES)
                    .map(<[u8]>::to_vec),
            };
            let confirmed = head
                .and_then(|h| BatchHeader::decode_header_only(&h).ok())
                .is_some_and(|h| h.base_offset == base && time.is_none_or(|t| t == h.timestamp_us));
            if confirmed {
                start
            } else {
                tracing::warn!(segment = %path.display(), byte = start, "index entry not confirmed by the log; walking from the start");
                0
            }
        }
        _ => start,
    };
    let Some(lazy) = &data.lazy else {
        return walk_headers(&data.as_slice()[start as usize..], start, path, stop);
    };
    let mut pos = start;
    while pos < data.bytes {
        let head = lazy.read(pos..(pos + BATCH_HEADER_BYTES as u64).min(data.bytes))?;
        let header = BatchHeader::decode_header_only(&head).map_err(|e| segment::corrupt_at(path, pos, e))?;
        if stop(&header) {
            return Ok(Some((pos, header)));
        }
        if (header.batch_bytes as usize) < BATCH_HEADER_BYTES {
            return Err(segment::corrupt(path, pos, "batch shorter than its header"));
        }
        pos += u64::from(header.batch_bytes);
    }
    Ok(None)
}

/// One whole batch of a segment read by range.
fn read_lazy_batch(lazy: &dyn segment::LazyBytes, path: &Path, pos: u64, limit: u64) -> Result<Vec<u8>> {
    let head = lazy.read(pos..(pos + BATCH_HEADER_BYTES as u64).min(limit))?;
    let header = BatchHeader::decode_header_only(&head).map_err(|e| segment::corrupt_at(path, pos, e))?;
    let end = pos + u64::from(header.batch_bytes);
    if end > limit {
        return Err(segment::corrupt(path, pos, "batch runs past the end of the segment"));
    }
    lazy.read(pos..end)
}
