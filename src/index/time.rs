//! The time index: `TimeEntry` and its encoding, the prefix-validating decoder, a trusted
//! file's entries searched in place (`TimeEntryBytes`), and the search by time that
//! `SegmentIndex::lookup_time` answers from (interpolation, then binary search).
//!
//! **Invariant:** pure (no I/O); entries held or searched here are strictly increasing in
//! both fields, which the search relies on.

use std::sync::Arc;

use super::file::{self, IndexKind};
use super::TIME_ENTRY_BYTES;
use crate::segment::batch::{read_u32, read_u64};

/// One time index entry: the batch starting with `relative_offset` has append time `timestamp_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Append time of that batch (all its records share it).
    pub timestamp_us: u64,
    /// Offset of the batch's first record, minus the segment's base offset.
    pub relative_offset: u32,
}

impl TimeEntry {
    /// The entry's encoding.
    pub fn to_bytes(self) -> [u8; TIME_ENTRY_BYTES] {
        let mut b = [0; TIME_ENTRY_BYTES];
        b[..8].copy_from_slice(&self.timestamp_us.to_le_bytes());
        b[8..].copy_from_slice(&self.relative_offset.to_le_bytes());
        b
    }
}

/// Decodes time index bytes, framed or legacy: a valid prefix with strictly increasing
/// timestamps and relative offsets; `complete` as for [`decode_offset_entries`](super::decode_offset_entries).
pub fn decode_time_entries(bytes: &[u8]) -> (Vec<TimeEntry>, bool) {
    let entries_bytes = match file::parse(IndexKind::Time, bytes) {
        file::Parsed::Legacy(b) | file::Parsed::Framed(_, b) => b,
        file::Parsed::Bad(_) => return (Vec::new(), false),
    };
    let mut entries = Vec::with_capacity(entries_bytes.len() / TIME_ENTRY_BYTES);
    for chunk in entries_bytes.chunks_exact(TIME_ENTRY_BYTES) {
        let entry = time_entry_at(chunk, 0);
        let ordered = entries.last().is_none_or(|last: &TimeEntry| {
            entry.timestamp_us > last.timestamp_us && entry.relative_offset > last.relative_offset
        });
        if !ordered {
            return (entries, false);
        }
        entries.push(entry);
    }
    let complete = entries.len() * TIME_ENTRY_BYTES == entries_bytes.len();
    (entries, complete)
}

pub(super) fn time_entry_at(bytes: &[u8], i: usize) -> TimeEntry {
    TimeEntry {
        timestamp_us: read_u64(bytes, i * TIME_ENTRY_BYTES),
        relative_offset: read_u32(bytes, i * TIME_ENTRY_BYTES + 8),
    }
}

/// The entries of a trusted time index file, searched in place: a mapping of the file
/// (or its bytes) kept alive with the segment, never decoded into structs, so a large
/// exact index costs page cache rather than heap.
#[derive(Clone)]
pub struct TimeEntryBytes {
    bytes: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    pub(super) count: usize,
}

impl std::fmt::Debug for TimeEntryBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimeEntryBytes").field("count", &self.count).finish()
    }
}

impl TimeEntryBytes {
    /// `count` entries at byte `start` of `bytes`; None when they do not fit, or are not
    /// strictly increasing in both fields (checked once here, so lookups can rely on it).
    pub fn new(bytes: Arc<dyn AsRef<[u8]> + Send + Sync>, start: usize, count: usize) -> Option<TimeEntryBytes> {
        let end = count.checked_mul(TIME_ENTRY_BYTES)?.checked_add(start)?;
        let entries = bytes.as_ref().as_ref().get(start..end)?;
        let mut last: Option<TimeEntry> = None;
        for i in 0..count {
            let e = time_entry_at(entries, i);
            if last.is_some_and(|l| e.timestamp_us <= l.timestamp_us || e.relative_offset <= l.relative_offset) {
                return None;
            }
            last = Some(e);
        }
        Some(TimeEntryBytes { bytes, start, count })
    }

    pub(super) fn entries(&self) -> &[u8] {
        let all = (*self.bytes).as_ref();
        &all[self.start..self.start + self.count * TIME_ENTRY_BYTES]
    }
}

/// Random access to time entries, however they are held.
pub(super) trait TimeColumn {
    fn len(&self) -> usize;
    fn timestamp_us(&self, i: usize) -> u64;
    fn entry(&self, i: usize) -> TimeEntry;
}

impl TimeColumn for [TimeEntry] {
    fn len(&self) -> usize {
        <[TimeEntry]>::len(self)
    }
    fn timestamp_us(&self, i: usize) -> u64 {
        self[i].timestamp_us
    }
    fn entry(&self, i: usize) -> TimeEntry {
        self[i]
    }
}

/// Entry bytes of a time index (whole entries only).
pub(super) struct RawTimes<'a>(pub(super) &'a [u8]);

impl TimeColumn for RawTimes<'_> {
    fn len(&self) -> usize {
        self.0.len() / TIME_ENTRY_BYTES
    }
    fn timestamp_us(&self, i: usize) -> u64 {
        read_u64(self.0, i * TIME_ENTRY_BYTES)
    }
    fn entry(&self, i: usize) -> TimeEntry {
        time_entry_at(self.0, i)
    }
}

/// What the time index says about seek by time T within its segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeLookup {
    /// The batch starting at this relative offset holds the first record with append
    /// time >= T.
    Found(u32),
    /// No batch the index covers has an append time >= T.
    NotHere,
    /// The index cannot say: walk batch headers from this entry (its time is < T; it is
    /// a hint to confirm), or from the start of the segment.
    Walk(Option<TimeEntry>),
}

/// [`partition_by_time`], with the entries on either side of the partition.
pub(super) fn around<C: TimeColumn + ?Sized>(
    times: &C,
    timestamp_us: u64,
) -> (usize, Option<TimeEntry>, Option<TimeEntry>) {
    let i = partition_by_time(times, timestamp_us);
    let before = i.checked_sub(1).map(|j| times.entry(j));
    let at = (i < times.len()).then(|| times.entry(i));
    (i, before, at)
}

/// Index of the first time entry with a timestamp >= `timestamp_us` (like
/// `partition_point`). Append times grow roughly linearly, so a few interpolation steps
/// narrow the range before a binary search finishes it: a seek touches a handful of
/// cache lines of a large index instead of one per halving.
pub(super) fn partition_by_time<C: TimeColumn + ?Sized>(times: &C, timestamp_us: u64) -> usize {
    let (mut lo, mut hi) = (0usize, times.len());
    for _ in 0..4 {
        if hi - lo <= 16 {
            break;
        }
        let (first, last) = (times.timestamp_us(lo), times.timestamp_us(hi - 1));
        if timestamp_us <= first {
            return lo;
        }
        if timestamp_us > last {
            return hi;
        }
        // first < timestamp_us <= last, so the guess lies in (lo, hi - 1].
        let span = u128::from(last - first).max(1);
        let guess = lo + ((u128::from(timestamp_us - first) * (hi - 1 - lo) as u128) / span) as usize;
        let guess = guess.clamp(lo + 1, hi - 1);
        if times.timestamp_us(guess) < timestamp_us {
            lo = guess + 1;
            // The answer is near the guess: try a short step before going back to guessing.
            let probe = (guess + 8).min(hi);
            if probe < hi && times.timestamp_us(probe - 1) >= timestamp_us {
                hi = probe;
            }
        } else {
            hi = guess + 1;
            let probe = guess.saturating_sub(8).max(lo);
            if probe > lo && times.timestamp_us(probe) < timestamp_us {
                lo = probe + 1;
            }
        }
    }
    // Binary search over [lo, hi).
    let mut size = hi - lo;
    while size > 0 {
        let half = size / 2;
        let mid = lo + half;
        if times.timestamp_us(mid) < timestamp_us {
            lo = mid + 1;
            size -= half + 1;
        } else {
            size = half;
        }
    }
    lo
}
