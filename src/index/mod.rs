//! Per-segment sparse indexes: offset -> byte position, and append time -> offset.
//!
//! Both are derived from the log. Entries are encoded and decoded here (pure); the
//! segment module reads and writes the files and confirms every entry against the log
//! before trusting it (an index entry the log does not confirm is never used).

pub mod file;
pub mod keys;
mod time;

use crate::segment::batch::read_u32;
use crate::Offset;
use file::IndexKind;
use time::{around, time_entry_at, RawTimes};
pub use time::{decode_time_entries, TimeEntry, TimeEntryBytes, TimeLookup};

/// Bytes of log between two index entries (an entry is added at the first batch past this).
pub const INDEX_INTERVAL_BYTES: u64 = 4096;
/// Size of one offset index entry: u32 relative offset + u32 byte position.
pub const OFFSET_ENTRY_BYTES: usize = 8;
/// Size of one time index entry: u64 timestamp + u32 relative offset.
pub const TIME_ENTRY_BYTES: usize = 12;
/// Largest segment file: positions and relative offsets are u32.
pub const SEGMENT_BYTES_MAX: u64 = u32::MAX as u64;

/// One offset index entry: the batch starting with `relative_offset` begins at `position`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetEntry {
    /// Offset of the batch's first record, minus the segment's base offset.
    pub relative_offset: u32,
    /// Byte position of the batch in the segment file.
    pub position: u32,
}

impl OffsetEntry {
    /// The entry's encoding.
    pub fn to_bytes(self) -> [u8; OFFSET_ENTRY_BYTES] {
        let mut b = [0; OFFSET_ENTRY_BYTES];
        b[..4].copy_from_slice(&self.relative_offset.to_le_bytes());
        b[4..].copy_from_slice(&self.position.to_le_bytes());
        b
    }
}

/// Decodes offset index bytes, framed (see [`file`](mod@file)) or legacy. Returns the entries that
/// form a valid prefix: strictly increasing relative offsets and positions, the first
/// (0, 0), positions below `log_bytes`. A trailing partial entry or the first out-of-order
/// entry ends the prefix; `complete` says whether every entry was used. A framed file
/// whose header or checksum does not check gives no entries.
pub fn decode_offset_entries(bytes: &[u8], log_bytes: u64) -> (Vec<OffsetEntry>, bool) {
    let entries_bytes = match file::parse(IndexKind::Offset, bytes) {
        file::Parsed::Legacy(b) | file::Parsed::Framed(_, b) => b,
        file::Parsed::Bad(_) => return (Vec::new(), false),
    };
    let count = entries_bytes.len() / OFFSET_ENTRY_BYTES;
    let mut entries = Vec::with_capacity(count);
    for chunk in entries_bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
        let entry = OffsetEntry {
            relative_offset: read_u32(chunk, 0),
            position: read_u32(chunk, 4),
        };
        let ordered = entries.last().is_none_or(|last: &OffsetEntry| {
            entry.relative_offset > last.relative_offset && entry.position > last.position
        });
        let first_ok = !entries.is_empty() || (entry.relative_offset == 0 && entry.position == 0);
        if !ordered || !first_ok || u64::from(entry.position) >= log_bytes {
            return (entries, false);
        }
        entries.push(entry);
    }
    let complete = entries.len() * OFFSET_ENTRY_BYTES == entries_bytes.len();
    (entries, complete)
}

/// How far the time entries of an index can be trusted to be complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Exactness {
    /// Every batch whose append time is greater than the previous batch's has an entry
    /// (built by observing every batch, or a trusted file flagged exact).
    Full,
    /// Entries were observed only from the batch at byte `from` on (a reader's view of a
    /// tail segment opened mid-way): the first of them may not be the first batch with
    /// its time (the batch before it was not seen), so only an answer with an entry
    /// before it is trusted.
    Observed { from: u32 },
    /// Sparse hints (older files): confirm against the log and walk.
    Hints,
}

/// The in-memory indexes of one segment: the sparse offset index, and the time index
/// (exact when built by observing every batch or loaded from a trusted file).
#[derive(Clone, Debug)]
pub struct SegmentIndex {
    /// Offset entries, strictly increasing.
    pub offsets: Vec<OffsetEntry>,
    /// Time entries held in memory, strictly increasing in both fields (empty when the
    /// entries are searched in a trusted file's bytes).
    pub times: Vec<TimeEntry>,
    /// A trusted time index file's entries, searched in place.
    file_times: Option<TimeEntryBytes>,
    exactness: Exactness,
    /// Log bytes covered when the last offset entry was added.
    last_entry_position: Option<u64>,
    /// Append time of the last batch observed.
    last_batch_timestamp_us: Option<u64>,
    /// Relative offset of the last batch observed.
    last_observed_relative: Option<u32>,
    /// Append time of the last time entry handed out for the active segment's index file
    /// (which stays sparse: a time entry only with an offset entry).
    file_time_last_us: Option<u64>,
}

impl Default for SegmentIndex {
    /// The index of an empty segment: exact, since it observes every batch from the first.
    fn default() -> Self {
        SegmentIndex {
            offsets: Vec::new(),
            times: Vec::new(),
            file_times: None,
            exactness: Exactness::Full,
            last_entry_position: None,
            last_batch_timestamp_us: None,
            last_observed_relative: None,
            file_time_last_us: None,
        }
    }
}

impl SegmentIndex {
    /// Builds from decoded entries of files that are only hints (legacy or the active
    /// segment's): time lookups walk from the entry they give.
    pub fn from_entries(offsets: Vec<OffsetEntry>, times: Vec<TimeEntry>) -> Self {
        SegmentIndex {
            last_entry_position: offsets.last().map(|e| u64::from(e.position)),
            last_batch_timestamp_us: times.last().map(|t| t.timestamp_us),
            last_observed_relative: None,
            file_time_last_us: times.last().map(|t| t.timestamp_us),
            offsets,
            times,
            file_times: None,
            exactness: Exactness::Hints,
        }
    }

    /// Builds from a trusted pair of files (checksums and the log's first and last batch
    /// confirmed by the caller). An exact time index is searched in place; one that is not
    /// is decoded and used as hints.
    pub fn from_trusted(offsets: Vec<OffsetEntry>, times: TimeEntryBytes, exact: bool) -> Self {
        if !exact {
            let (entries, _) = decode_time_entries(times.entries());
            return SegmentIndex::from_entries(offsets, entries);
        }
        let count = times.count;
        let last = (count > 0).then(|| time_entry_at(times.entries(), count - 1).timestamp_us);
        SegmentIndex {
            last_entry_position: offsets.last().map(|e| u64::from(e.position)),
            last_batch_timestamp_us: last,
            last_observed_relative: None,
            file_time_last_us: last,
            offsets,
            times: Vec::new(),
            file_times: Some(times),
            exactness: Exactness::Full,
        }
    }

    /// An exact index of a whole log as it was (a trusted framed pair the appender wrote
    /// when it closed the active segment), to be extended by observing later batches.
    pub fn exact_prefix(
        offsets: Vec<OffsetEntry>,
        times: Vec<TimeEntry>,
        last_relative: u32,
        last_timestamp_us: u64,
    ) -> Self {
        let mut index = SegmentIndex::from_entries(offsets, times);
        index.exactness = Exactness::Full;
        index.last_observed_relative = Some(last_relative);
        index.last_batch_timestamp_us = Some(last_timestamp_us);
        index
    }

    /// A reader's index of a tail segment whose batches it observes from byte `from` on:
    /// `offsets` are hints from the file (the last one at `from`); time entries come only
    /// from batches observed here.
    pub fn observing_from(offsets: Vec<OffsetEntry>, from: u32) -> Self {
        let mut index = SegmentIndex::from_entries(offsets, Vec::new());
        index.exactness = if from == 0 {
            Exactness::Full
        } else {
            Exactness::Observed { from }
        };
        index
    }

    /// True when every batch that advances the append time has a time entry.
    pub fn is_time_exact(&self) -> bool {
        self.exactness == Exactness::Full
    }

    /// For an index observed from byte `from` > 0: that position (the batches before it
    /// must be observed to complete it, see [`SegmentIndex::complete_with_prefix`]).
    pub fn observed_from(&self) -> Option<u32> {
        match self.exactness {
            Exactness::Observed { from } => Some(from),
            _ => None,
        }
    }

    /// Considers the batch at `position` starting at `relative_offset` with append time
    /// `timestamp_us`. Every batch that advances the append time gets a time entry; an
    /// offset entry is added every [`INDEX_INTERVAL_BYTES`]. Returns the entries for the
    /// active segment's (sparse) index files: an offset entry when one is due, with a time
    /// entry when the time advanced since the last one written.
    pub fn observe_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        timestamp_us: u64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
        self.forget_from(relative_offset);
        self.last_observed_relative = Some(relative_offset);
        let last_time = self.times.last().map(|t| t.timestamp_us);
        let advances = self.last_batch_timestamp_us.is_none_or(|last| timestamp_us > last)
            && last_time.is_none_or(|last| timestamp_us > last);
        if advances && self.file_times.is_none() {
            self.times.push(TimeEntry {
                timestamp_us,
                relative_offset,
            });
        }
        self.last_batch_timestamp_us = Some(
            self.last_batch_timestamp_us
                .map_or(timestamp_us, |t| t.max(timestamp_us)),
        );
        let due = match self.last_entry_position {
            None => true,
            Some(last) => u64::from(position) >= last + INDEX_INTERVAL_BYTES,
        };
        if !due {
            return (None, None);
        }
        let offset_entry = OffsetEntry {
            relative_offset,
            position,
        };
        self.offsets.push(offset_entry);
        self.last_entry_position = Some(u64::from(position));
        let file_time = self.file_time_last_us.is_none_or(|t| timestamp_us > t).then(|| {
            self.file_time_last_us = Some(timestamp_us);
            TimeEntry {
                timestamp_us,
                relative_offset,
            }
        });
        (Some(offset_entry), file_time)
    }

    /// Like [`SegmentIndex::observe_batch`] for a reader following a log: a batch at or
    /// before the last one observed was seen already and is ignored.
    pub fn observe_new_batch(&mut self, relative_offset: u32, position: u32, timestamp_us: u64) {
        if self.last_observed_relative.is_none_or(|last| relative_offset > last) {
            self.observe_batch(relative_offset, position, timestamp_us);
        }
    }

    /// A batch at or before the last one observed: the writer is re-encoding after a
    /// call that failed before reaching the file. Entries from that point on are dropped;
    /// the time of the batch before is no longer known, so the time index falls back to
    /// hints (correct, slower) for the rest of the segment.
    fn forget_from(&mut self, relative_offset: u32) {
        if self.last_observed_relative.is_none_or(|last| relative_offset > last) {
            return;
        }
        self.offsets.retain(|e| e.relative_offset < relative_offset);
        self.times.retain(|t| t.relative_offset < relative_offset);
        self.last_entry_position = self.offsets.last().map(|e| u64::from(e.position));
        self.last_batch_timestamp_us = self.times.last().map(|t| t.timestamp_us);
        self.file_time_last_us = self.last_batch_timestamp_us;
        self.exactness = Exactness::Hints;
    }

    /// Adds entries for the segment's last batch if it has none, so that a sealed
    /// segment's index always names its final batch (the loader checks that it ends the file).
    pub fn force_final_entry(&mut self, relative_offset: u32, position: u32, timestamp_us: u64) {
        if self.offsets.last().is_none_or(|e| e.relative_offset < relative_offset) {
            self.offsets.push(OffsetEntry {
                relative_offset,
                position,
            });
            self.last_entry_position = Some(u64::from(position));
        }
        // An exact index has an entry for the first batch with the last time already.
        if self.file_times.is_none()
            && self
                .times
                .last()
                .is_none_or(|t| t.timestamp_us < timestamp_us && t.relative_offset < relative_offset)
        {
            self.times.push(TimeEntry {
                timestamp_us,
                relative_offset,
            });
        }
    }

    /// Completes an index observed from byte `from` (see [`SegmentIndex::observing_from`])
    /// with `prefix`, the exact index of the batches before `from` (observed from byte 0).
    /// Afterwards the time index is exact.
    pub fn complete_with_prefix(&mut self, prefix: SegmentIndex) {
        let Exactness::Observed { from } = self.exactness else {
            return;
        };
        debug_assert!(prefix.is_time_exact());
        let mut offsets = prefix.offsets;
        offsets.extend(self.offsets.iter().filter(|e| e.position >= from));
        let prefix_last_us = prefix.last_batch_timestamp_us;
        let mut times = prefix.times;
        // The first entry observed here was added without knowing the batch before it: it
        // belongs only if its time is greater than that batch's.
        let keep_first = self
            .times
            .first()
            .is_some_and(|t| prefix_last_us.is_none_or(|last| t.timestamp_us > last));
        let skip = usize::from(!keep_first && !self.times.is_empty());
        times.extend_from_slice(&self.times[skip..]);
        self.offsets = offsets;
        self.times = times;
        self.last_entry_position = self.offsets.last().map(|e| u64::from(e.position));
        if self.last_batch_timestamp_us.is_none() {
            self.last_batch_timestamp_us = prefix_last_us;
        }
        self.exactness = Exactness::Full;
    }

    /// The last offset entry at or before `relative_offset` (where a scan should start).
    pub fn floor_offset(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let idx = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        idx.checked_sub(1).map(|i| self.offsets[i])
    }

    /// The relative offset of the last time entry strictly before `timestamp_us`: the
    /// first record with a timestamp >= `timestamp_us` is at or after it.
    pub fn floor_time(&self, timestamp_us: u64) -> Option<u32> {
        self.search_time(timestamp_us).1.map(|e| e.relative_offset)
    }

    /// The first time entry.
    pub fn first_time_entry(&self) -> Option<TimeEntry> {
        match &self.file_times {
            Some(bytes) => (bytes.count > 0).then(|| time_entry_at(bytes.entries(), 0)),
            None => self.times.first().copied(),
        }
    }

    /// The last time entry.
    pub fn last_time_entry(&self) -> Option<TimeEntry> {
        match &self.file_times {
            Some(bytes) => bytes.count.checked_sub(1).map(|i| time_entry_at(bytes.entries(), i)),
            None => self.times.last().copied(),
        }
    }

    /// Seek by time within this segment; see [`TimeLookup`].
    pub fn lookup_time(&self, timestamp_us: u64) -> TimeLookup {
        let (i, before, at) = self.search_time(timestamp_us);
        let trusted = match self.exactness {
            Exactness::Full => true,
            Exactness::Observed { .. } => i > 0,
            Exactness::Hints => false,
        };
        match (trusted, at) {
            (true, Some(e)) => TimeLookup::Found(e.relative_offset),
            (true, None) => TimeLookup::NotHere,
            (false, _) => TimeLookup::Walk(before),
        }
    }

    /// Index of the first time entry >= `timestamp_us`, the entry before it and that entry.
    fn search_time(&self, timestamp_us: u64) -> (usize, Option<TimeEntry>, Option<TimeEntry>) {
        match &self.file_times {
            Some(bytes) => around(&RawTimes(bytes.entries()), timestamp_us),
            None => around(self.times.as_slice(), timestamp_us),
        }
    }

    /// The two index files of a sealed segment with base `base` whose log is `log_bytes`
    /// long: framed (see [`file`](mod@file)), the time index flagged exact when it is.
    pub fn encode_files(&self, base: Offset, log_bytes: u64) -> (Vec<u8>, Vec<u8>) {
        let mut offsets = Vec::with_capacity(self.offsets.len() * OFFSET_ENTRY_BYTES);
        for e in &self.offsets {
            offsets.extend_from_slice(&e.to_bytes());
        }
        let (times, time_count) = match &self.file_times {
            Some(bytes) => (bytes.entries().to_vec(), bytes.count),
            None => {
                let mut times = Vec::with_capacity(self.times.len() * TIME_ENTRY_BYTES);
                for e in &self.times {
                    times.extend_from_slice(&e.to_bytes());
                }
                (times, self.times.len())
            }
        };
        let header = |flags, entry_count: usize| file::IndexHeader {
            flags,
            base_offset: base.0,
            log_bytes,
            // Entries are per batch, and a segment holds at most 2^32 records.
            entry_count: u32::try_from(entry_count).unwrap_or(u32::MAX),
        };
        let exact = if self.is_time_exact() { file::FLAG_TIME_EXACT } else { 0 };
        (
            file::encode(IndexKind::Offset, header(0, self.offsets.len()), &offsets),
            file::encode(IndexKind::Time, header(exact, time_count), &times),
        )
    }

    /// Memory held on the heap, for accounting (a trusted file's entries are mapped).
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * std::mem::size_of::<OffsetEntry>()
            + self.times.capacity() * std::mem::size_of::<TimeEntry>()
    }
}

/// Converts an absolute offset to one relative to `base`, if it fits.
pub fn relative(base: Offset, offset: Offset) -> Option<u32> {
    offset.0.checked_sub(base.0).and_then(|d| u32::try_from(d).ok())
}

#[cfg(test)]
mod tests;
