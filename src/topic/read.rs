//! The read path over records: `scan` (borrowed), `iter` and `read` (owned), and
//! `seek_time`; batches come from `BatchCursor` (see `batches.rs`).

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::path::Path;
use std::sync::Arc;

use super::batches::{deleted_as_out_of_range, load_or_deleted, seek_in_tail, walk_sealed, BatchCursor};
use crate::index::{self, TimeLookup};
use crate::record::{Record, RecordRef};
use crate::segment::batch::{BatchHeader, Compression, RecordIter, BATCH_HEADER_BYTES};
use crate::segment::{self, SealedData, SealedSegment};
use crate::topic::{TailSegment, Topic};
use crate::{Offset, Result};

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
    /// [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange) when `from` is not held,
    /// [`Error::Corrupt`](crate::Error::Corrupt) or [`Error::Gap`](crate::Error::Gap) for bad
    /// data, I/O errors.
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
    /// [`Error::OffsetOutOfRange`](crate::Error::OffsetOutOfRange) when the topic does not hold
    /// it; as for [`Topic::scan`].
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
