//! Per-segment sparse indexes: offset -> byte position, and append time -> offset.
//!
//! Both are derived from the log. Entries are encoded and decoded here (pure); the
//! segment module reads and writes the files and confirms every entry against the log
//! before trusting it (an index entry the log does not confirm is never used).

pub mod keys;

use crate::Offset;

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

/// One time index entry: the batch starting with `relative_offset` has append time `timestamp_us`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeEntry {
    /// Append time of that batch (all its records share it).
    pub timestamp_us: u64,
    /// Offset of the batch's first record, minus the segment's base offset.
    pub relative_offset: u32,
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

impl TimeEntry {
    /// The entry's encoding.
    pub fn to_bytes(self) -> [u8; TIME_ENTRY_BYTES] {
        let mut b = [0; TIME_ENTRY_BYTES];
        b[..8].copy_from_slice(&self.timestamp_us.to_le_bytes());
        b[8..].copy_from_slice(&self.relative_offset.to_le_bytes());
        b
    }
}

/// Decodes offset index bytes. Returns the entries that form a valid prefix: strictly
/// increasing relative offsets and positions, positions below `log_bytes`. A trailing
/// partial entry or the first out-of-order entry ends the prefix; `complete` says
/// whether every byte was used.
pub fn decode_offset_entries(bytes: &[u8], log_bytes: u64) -> (Vec<OffsetEntry>, bool) {
    let count = bytes.len() / OFFSET_ENTRY_BYTES;
    let mut entries = Vec::with_capacity(count);
    for chunk in bytes.chunks_exact(OFFSET_ENTRY_BYTES) {
        let entry = OffsetEntry {
            relative_offset: crate::segment::batch::read_u32(chunk, 0),
            position: crate::segment::batch::read_u32(chunk, 4),
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
    let complete = entries.len() * OFFSET_ENTRY_BYTES == bytes.len();
    (entries, complete)
}

/// Decodes time index bytes: a valid prefix with non-decreasing timestamps and strictly
/// increasing relative offsets; `complete` as for [`decode_offset_entries`].
pub fn decode_time_entries(bytes: &[u8]) -> (Vec<TimeEntry>, bool) {
    let mut entries = Vec::with_capacity(bytes.len() / TIME_ENTRY_BYTES);
    for chunk in bytes.chunks_exact(TIME_ENTRY_BYTES) {
        let entry = TimeEntry {
            timestamp_us: crate::segment::batch::read_u64(chunk, 0),
            relative_offset: crate::segment::batch::read_u32(chunk, 8),
        };
        let ordered = entries.last().is_none_or(|last: &TimeEntry| {
            entry.timestamp_us > last.timestamp_us && entry.relative_offset > last.relative_offset
        });
        if !ordered {
            return (entries, false);
        }
        entries.push(entry);
    }
    let complete = entries.len() * TIME_ENTRY_BYTES == bytes.len();
    (entries, complete)
}

/// The in-memory sparse indexes of one segment.
#[derive(Clone, Debug, Default)]
pub struct SegmentIndex {
    /// Offset entries, strictly increasing.
    pub offsets: Vec<OffsetEntry>,
    /// Time entries, strictly increasing in both fields.
    pub times: Vec<TimeEntry>,
    /// Byte position of each time entry's batch (one binary search per seek by time).
    time_positions: Vec<u32>,
    /// Log bytes covered when the last offset entry was added.
    last_entry_position: Option<u64>,
}

impl SegmentIndex {
    /// Builds from decoded entries.
    pub fn from_entries(offsets: Vec<OffsetEntry>, times: Vec<TimeEntry>) -> Self {
        let last_entry_position = offsets.last().map(|e| u64::from(e.position));
        // Time entries are written with offset entries; one without its offset entry
        // (a damaged file) starts its scan at the offset entry before it.
        let time_positions = times
            .iter()
            .map(|t| {
                let idx = offsets.partition_point(|e| e.relative_offset <= t.relative_offset);
                idx.checked_sub(1).map_or(0, |i| offsets[i].position)
            })
            .collect();
        SegmentIndex {
            offsets,
            times,
            time_positions,
            last_entry_position,
        }
    }

    /// Considers the batch at `position` starting at `relative_offset` with append time
    /// `timestamp_us`; returns the entries added (to be written to the index files).
    pub fn observe_batch(
        &mut self,
        relative_offset: u32,
        position: u32,
        timestamp_us: u64,
    ) -> (Option<OffsetEntry>, Option<TimeEntry>) {
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
        let advances = self.times.last().is_none_or(|t| timestamp_us > t.timestamp_us);
        let time_entry = advances.then(|| {
            let entry = TimeEntry {
                timestamp_us,
                relative_offset,
            };
            self.times.push(entry);
            self.time_positions.push(position);
            entry
        });
        (Some(offset_entry), time_entry)
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
        if self
            .times
            .last()
            .is_none_or(|t| t.timestamp_us < timestamp_us && t.relative_offset < relative_offset)
        {
            self.times.push(TimeEntry {
                timestamp_us,
                relative_offset,
            });
            self.time_positions.push(position);
        }
    }

    /// The last offset entry at or before `relative_offset` (where a scan should start).
    pub fn floor_offset(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let idx = self.offsets.partition_point(|e| e.relative_offset <= relative_offset);
        idx.checked_sub(1).map(|i| self.offsets[i])
    }

    /// The relative offset of the last time entry strictly before `timestamp_us`: the
    /// first record with a timestamp >= `timestamp_us` is at or after it.
    pub fn floor_time(&self, timestamp_us: u64) -> Option<u32> {
        let idx = self.times.partition_point(|e| e.timestamp_us < timestamp_us);
        idx.checked_sub(1).map(|i| self.times[i].relative_offset)
    }

    /// Like [`SegmentIndex::floor_time`]: that entry, with the byte position of its batch.
    pub fn floor_time_position(&self, timestamp_us: u64) -> Option<(TimeEntry, u32)> {
        let idx = partition_by_time(&self.times, timestamp_us);
        idx.checked_sub(1).map(|i| (self.times[i], self.time_positions[i]))
    }

    /// Memory held, for accounting.
    pub fn heap_bytes(&self) -> usize {
        self.offsets.capacity() * OFFSET_ENTRY_BYTES + self.times.capacity() * (TIME_ENTRY_BYTES + 4)
    }
}

/// Index of the first time entry with a timestamp >= `timestamp_us` (like
/// `partition_point`). Append times grow roughly linearly, so a few interpolation steps
/// narrow the range before a binary search finishes it: a seek touches a handful of
/// cache lines of a large index instead of one per halving.
fn partition_by_time(times: &[TimeEntry], timestamp_us: u64) -> usize {
    let (mut lo, mut hi) = (0usize, times.len());
    for _ in 0..4 {
        if hi - lo <= 16 {
            break;
        }
        let (first, last) = (times[lo].timestamp_us, times[hi - 1].timestamp_us);
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
        if times[guess].timestamp_us < timestamp_us {
            lo = guess + 1;
            // The answer is near the guess: try a short step before going back to guessing.
            let probe = (guess + 8).min(hi);
            if probe < hi && times[probe - 1].timestamp_us >= timestamp_us {
                hi = probe;
            }
        } else {
            hi = guess + 1;
            let probe = guess.saturating_sub(8).max(lo);
            if probe > lo && times[probe].timestamp_us < timestamp_us {
                lo = probe + 1;
            }
        }
    }
    lo + times[lo..hi].partition_point(|e| e.timestamp_us < timestamp_us)
}

/// Converts an absolute offset to one relative to `base`, if it fits.
pub fn relative(base: Offset, offset: Offset) -> Option<u32> {
    offset.0.checked_sub(base.0).and_then(|d| u32::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_filled_tail_is_not_trusted() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(
            &OffsetEntry {
                relative_offset: 0,
                position: 0,
            }
            .to_bytes(),
        );
        bytes.extend_from_slice(
            &OffsetEntry {
                relative_offset: 10,
                position: 5000,
            }
            .to_bytes(),
        );
        bytes.extend_from_slice(&[0u8; 64]);
        let (entries, complete) = decode_offset_entries(&bytes, 10_000);
        assert_eq!(entries.len(), 2);
        assert!(!complete);
    }

    #[test]
    fn positions_past_the_log_end_the_prefix() {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(
            &OffsetEntry {
                relative_offset: 0,
                position: 0,
            }
            .to_bytes(),
        );
        bytes.extend_from_slice(
            &OffsetEntry {
                relative_offset: 3,
                position: 9000,
            }
            .to_bytes(),
        );
        let (entries, complete) = decode_offset_entries(&bytes, 8000);
        assert_eq!(entries.len(), 1);
        assert!(!complete);
    }

    #[test]
    fn interpolated_search_agrees_with_partition_point() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for len in [0usize, 1, 2, 17, 100, 1000, 5000] {
            let mut ts = 1_000u64;
            let times: Vec<TimeEntry> = (0..len)
                .map(|i| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    ts += 1 + state % if i % 97 == 0 { 100_000 } else { 50 };
                    TimeEntry {
                        timestamp_us: ts,
                        relative_offset: i as u32,
                    }
                })
                .collect();
            let probes = times
                .iter()
                .flat_map(|t| [t.timestamp_us - 1, t.timestamp_us, t.timestamp_us + 1]);
            for probe in probes.chain([0, u64::MAX]) {
                let want = times.partition_point(|e| e.timestamp_us < probe);
                assert_eq!(partition_by_time(&times, probe), want, "len {len}, probe {probe}");
            }
        }
    }

    #[test]
    fn sparse_entries_every_interval() {
        let mut index = SegmentIndex::default();
        let mut added = 0;
        for i in 0..100u32 {
            let (o, _) = index.observe_batch(i, i * 1000, u64::from(i));
            added += usize::from(o.is_some());
        }
        assert_eq!(added, index.offsets.len());
        assert_eq!(index.offsets.len(), 20);
        assert_eq!(index.floor_offset(9).unwrap().relative_offset, 5);
        assert_eq!(index.floor_time(11), Some(10));
        assert_eq!(index.floor_time(0), None);
    }
}
