//! The read path: positioning on an offset or a time, walking batches across segment
//! boundaries, and handing out records (borrowed for `scan`, owned for `iter`).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use crate::index::{self, TimeLookup};
use crate::record::{Record, RecordRef};
use crate::segment::batch::{self, BatchHeader, Compression, RecordIter, BATCH_HEADER_BYTES};
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
                        segment::read_batch_into(&tail.file, &tail.path, self.pos, visible.tail_bytes, &mut bytes)?;
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
fn load_or_deleted(topic: &Topic, seg: &Arc<SealedSegment>, offset: Offset) -> Result<Arc<SealedData>> {
    topic
        .shared
        .load_sealed(seg)
        .map_err(|e| deleted_as_out_of_range(topic, e, offset))
}

fn deleted_as_out_of_range(topic: &Topic, e: Error, offset: Offset) -> Error {
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
fn seek_in_tail(
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
    let (mut window, mut window_start) = (Vec::new(), 0u64);
    while pos + BATCH_HEADER_BYTES as u64 <= limit {
        if pos < window_start || pos + BATCH_HEADER_BYTES as u64 > window_start + window.len() as u64 {
            window = tail.read_range(pos, (pos + TAIL_WALK_WINDOW_BYTES).min(limit))?;
            window_start = pos;
        }
        let decoded = BatchHeader::decode_header_only(&window[(pos - window_start) as usize..]);
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

/// The records of a checked batch, decompressed into `scratch` when needed.
fn payload<'a>(header: &BatchHeader, bytes: &'a [u8], scratch: &'a mut Vec<u8>, at: (&Path, u64)) -> Result<&'a [u8]> {
    let stored = &bytes[BATCH_HEADER_BYTES..header.batch_bytes as usize];
    match header.compression {
        Compression::None => Ok(stored),
        Compression::Zstd => {
            *scratch = zstd::bulk::decompress(stored, header.payload_bytes as usize).map_err(|e| {
                segment::corrupt(
                    at.0,
                    at.1 + BATCH_HEADER_BYTES as u64,
                    format!("zstd payload does not decompress: {e}"),
                )
            })?;
            Ok(scratch.as_slice())
        }
    }
}

impl Topic {
    /// Calls `visit` for each record from `from` on, borrowed from the segment (no copy),
    /// until `visit` breaks or the visible end is reached. Every batch's checksum is
    /// verified. Returns the offset after the last record visited.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] when `from` is not held, [`Error::Corrupt`] or
    /// [`Error::Gap`] for bad data, I/O errors.
    pub fn scan(&self, from: Offset, mut visit: impl FnMut(RecordRef<'_>) -> ControlFlow<()>) -> Result<Offset> {
        let mut cursor = BatchCursor::seek(self, from)?;
        let mut scratch = Vec::new();
        let mut next = from;
        while let Some((header, bytes)) = cursor.next_batch()? {
            let at = cursor.location();
            let payload = payload(&header, &bytes, &mut scratch, at)?;
            for record in RecordIter::new(&header, payload) {
                let record = record.map_err(|e| segment::corrupt(at.0, at.1, format!("record: {}", e.reason)))?;
                if record.offset < from {
                    continue;
                }
                next = Offset(record.offset.0 + 1);
                if visit(record).is_break() {
                    return Ok(next);
                }
            }
            cursor.recycle(bytes);
        }
        Ok(next)
    }

    /// The record at `offset`.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] when the topic does not hold it; as for [`Topic::scan`].
    pub fn read(&self, offset: Offset) -> Result<Record> {
        let mut found = None;
        self.scan(offset, |r| {
            found = Some(r.to_record());
            ControlFlow::Break(())
        })?;
        found.ok_or_else(|| self.out_of_range(offset))
    }

    /// An iterator of owned records from `from`. At the visible end it returns `None`;
    /// calling `next` again later yields what was appended since.
    pub fn iter(&self, from: Offset) -> Records {
        Records {
            topic: self.clone(),
            cursor: None,
            next: from,
            pending: VecDeque::new(),
            failed: false,
        }
    }

    /// The first offset whose append time is `>= timestamp_us` (Kafka's ListOffsets by
    /// time), or None when every record is older.
    ///
    /// The segment is chosen by the cached summaries (last append time of each sealed
    /// segment); inside it, an exact time index gives the answer without reading the log
    /// (its first entry at or after the time is the first such batch). Indexes that are
    /// only hints are confirmed against the log and batch headers are walked.
    ///
    /// # Errors
    /// As for [`Topic::scan`].
    pub fn seek_time(&self, timestamp_us: u64) -> Result<Option<Offset>> {
        loop {
            let found = match self.segment_for_time(timestamp_us)? {
                ForTime::Sealed(seg) => Some(self.seek_time_sealed(&seg, timestamp_us)?),
                ForTime::Tail(tail) => self.seek_time_tail(&tail, timestamp_us)?,
            };
            // None: the tail was sealed meanwhile; choose again.
            if let Some(found) = found {
                return Ok(found);
            }
        }
    }

    /// The first sealed segment whose last append time is >= `timestamp_us`, else the tail.
    /// Uses only cached summaries under the segment list's lock (no clone of the list);
    /// when one it needs is missing, loads it outside the lock.
    fn segment_for_time(&self, timestamp_us: u64) -> Result<ForTime> {
        let shared = &self.shared;
        {
            let segments = shared.segments.read();
            let sealed = &segments.sealed;
            let (mut lo, mut hi) = (0, sealed.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let Some(summary) = sealed[mid].summary() else { break };
                if summary.last_timestamp_us >= timestamp_us {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            if lo == hi {
                return Ok(match sealed.get(lo) {
                    Some(seg) => ForTime::Sealed(Arc::clone(seg)),
                    None => ForTime::Tail(Arc::clone(&segments.tail)),
                });
            }
        }
        let (sealed, tail) = {
            let segments = shared.segments.read();
            (segments.sealed.clone(), Arc::clone(&segments.tail))
        };
        let (mut lo, mut hi) = (0, sealed.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let summary = shared
                .summary(&sealed[mid])
                .map_err(|e| deleted_as_out_of_range(self, e, sealed[mid].base))?;
            if summary.last_timestamp_us >= timestamp_us {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(match sealed.get(lo) {
            Some(seg) => ForTime::Sealed(Arc::clone(seg)),
            None => ForTime::Tail(tail),
        })
    }

    fn seek_time_sealed(&self, seg: &Arc<SealedSegment>, timestamp_us: u64) -> Result<Option<Offset>> {
        let data = load_or_deleted(self, seg, seg.base)?;
        let hint = match data.index.lookup_time(timestamp_us) {
            TimeLookup::Found(relative) => return Ok(Some(Offset(seg.base.0 + u64::from(relative)))),
            TimeLookup::Walk(hint) => hint,
            // The summary said a batch at or after the time is here: walk to be sure.
            TimeLookup::NotHere => None,
        };
        let start = match hint {
            Some(t) => confirm_time_hint(&data, seg, t)?,
            None => 0,
        };
        let found = walk_sealed(&data, start, None, &seg.path, |h| h.timestamp_us >= timestamp_us)?;
        Ok(found.map(|(_, h)| h.base_offset))
    }

    /// Seek by time in the tail; None when the tail was sealed since it was chosen.
    fn seek_time_tail(&self, tail: &Arc<TailSegment>, timestamp_us: u64) -> Result<Option<Option<Offset>>> {
        let visible = *self.shared.visible.lock();
        if visible.tail_base != tail.base {
            return Ok(None);
        }
        let mut lookup = tail.index.read().lookup_time(timestamp_us);
        if matches!(lookup, TimeLookup::Walk(_)) && tail.complete_time_index()? {
            lookup = tail.index.read().lookup_time(timestamp_us);
        }
        // The index may run ahead of what is visible (the appender indexes a batch before
        // it is durable): an answer past the visible end means no visible record is as new.
        let found = match lookup {
            TimeLookup::Found(relative) => Some(Offset(tail.base.0 + u64::from(relative))).filter(|&o| o < visible.end),
            TimeLookup::NotHere => None,
            TimeLookup::Walk(hint) => {
                let from = Offset(tail.base.0 + u64::from(hint.map_or(0, |t| t.relative_offset)));
                let walked = seek_in_tail(tail, from, visible.tail_bytes, |h| h.timestamp_us >= timestamp_us)?;
                walked.map(|(_, h)| h.base_offset)
            }
        };
        Ok(Some(found))
    }
}

/// The byte position of the batch a time entry that is only a hint names, if the log
/// confirms it (that batch exists, found from the offset index, and has the entry's
/// append time); else 0, so the walk starts at the beginning.
fn confirm_time_hint(data: &SealedData, seg: &SealedSegment, hint: index::TimeEntry) -> Result<u64> {
    let base = Offset(seg.base.0 + u64::from(hint.relative_offset));
    let entry = data.index.floor_offset(hint.relative_offset);
    let from = entry.map_or(0, |e| u64::from(e.position));
    let expect = entry.map(|e| (Offset(seg.base.0 + u64::from(e.relative_offset)), None));
    let at = walk_sealed(data, from, expect, &seg.path, |h| h.base_offset >= base)?;
    match at {
        Some((pos, h)) if h.base_offset == base && h.timestamp_us == hint.timestamp_us => Ok(pos),
        _ => {
            tracing::warn!(segment = %seg.path.display(), "time index entry not confirmed by the log; walking from the start");
            Ok(0)
        }
    }
}

/// Where seek by time looks.
enum ForTime {
    Sealed(Arc<SealedSegment>),
    Tail(Arc<TailSegment>),
}

/// `walk_headers` over a sealed segment; for one read by range (tiering), header by
/// header so that only the ranges walked are fetched.
///
/// `expect` is what the index entry that gave `start` claims is there (base offset, and
/// append time for a time entry). Index entries are confirmed here, on use, not all at
/// load: an entry the log does not confirm is ignored and the walk starts at byte 0.
fn walk_sealed(
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

/// Owned records from an offset on; see [`Topic::iter`].
pub struct Records {
    topic: Topic,
    cursor: Option<BatchCursor>,
    next: Offset,
    pending: VecDeque<Record>,
    failed: bool,
}

impl Records {
    /// The offset of the next record this iterator will return.
    pub fn next_offset(&self) -> Offset {
        self.pending.front().map_or(self.next, |r| r.offset)
    }

    fn fill(&mut self) -> Result<()> {
        if self.cursor.is_none() {
            if self.next >= self.topic.end_offset() {
                return Ok(());
            }
            self.cursor = Some(BatchCursor::seek(&self.topic, self.next)?);
        }
        let Some(cursor) = self.cursor.as_mut() else {
            return Ok(());
        };
        let Some((header, bytes)) = cursor.next_batch()? else {
            return Ok(());
        };
        let at = cursor.location();
        let mut scratch = Vec::new();
        let payload = payload(&header, &bytes, &mut scratch, at)?;
        for record in RecordIter::new(&header, payload) {
            let record = record.map_err(|e| segment::corrupt(at.0, at.1, format!("record: {}", e.reason)))?;
            if record.offset >= self.next {
                self.pending.push_back(record.to_record());
            }
        }
        if let Some(last) = self.pending.back() {
            self.next = Offset(last.offset.0 + 1);
        }
        Ok(())
    }
}

impl Iterator for Records {
    type Item = Result<Record>;

    fn next(&mut self) -> Option<Result<Record>> {
        if self.pending.is_empty() && !self.failed {
            if let Err(e) = self.fill() {
                self.failed = true;
                return Some(Err(e));
            }
        }
        self.pending.pop_front().map(Ok)
    }
}
