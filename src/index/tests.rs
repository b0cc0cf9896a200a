//! Unit tests of the index decoders, `SegmentIndex` and the search by time.

use std::sync::Arc;

use super::time::partition_by_time;
use super::*;

/// Offset index file bytes for `(relative_offset, position)` entries.
fn offset_entry_bytes(entries: &[(u32, u32)]) -> Vec<u8> {
    entries
        .iter()
        .flat_map(|&(relative_offset, position)| {
            OffsetEntry {
                relative_offset,
                position,
            }
            .to_bytes()
        })
        .collect()
}

#[test]
fn zero_filled_tail_is_not_trusted() {
    let mut bytes = offset_entry_bytes(&[(0, 0), (10, 5000)]);
    bytes.extend_from_slice(&[0u8; 64]);
    let (entries, complete) = decode_offset_entries(&bytes, 10_000);
    assert_eq!(entries.len(), 2);
    assert!(!complete);
}

#[test]
fn positions_past_the_log_end_the_prefix() {
    let bytes = offset_entry_bytes(&[(0, 0), (3, 9000)]);
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
            assert_eq!(
                partition_by_time(times.as_slice(), probe),
                want,
                "len {len}, probe {probe}"
            );
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

/// Batches (relative offset, position, time) with runs of equal times.
fn batches() -> Vec<(u32, u32, u64)> {
    let times = [5u64, 5, 7, 7, 7, 9, 12, 12, 13, 20, 20, 20, 21];
    times
        .iter()
        .enumerate()
        .map(|(i, &t)| (i as u32 * 3, i as u32 * 1500, t))
        .collect()
}

fn naive(batches: &[(u32, u32, u64)], t: u64) -> TimeLookup {
    batches
        .iter()
        .find(|b| b.2 >= t)
        .map_or(TimeLookup::NotHere, |b| TimeLookup::Found(b.0))
}

#[test]
fn an_observed_index_is_exact() {
    let mut index = SegmentIndex::default();
    for &(rel, pos, t) in &batches() {
        index.observe_batch(rel, pos, t);
    }
    for t in 0..25 {
        assert_eq!(index.lookup_time(t), naive(&batches(), t), "t {t}");
    }
}

#[test]
fn an_index_observed_mid_way_trusts_only_answers_after_its_first_entry_then_completes() {
    let all = batches();
    // Opened at the second batch of a run of 7s: its entry claims 7 starts there.
    let split = 3;
    let mut index = SegmentIndex::observing_from(Vec::new(), all[split].1);
    for &(rel, pos, t) in &all[split..] {
        index.observe_new_batch(rel, pos, t);
    }
    for t in 0..25 {
        match index.lookup_time(t) {
            TimeLookup::Walk(_) => assert!(t <= 7, "t {t}"),
            found => assert_eq!(found, naive(&all, t), "t {t}"),
        }
    }
    let mut prefix = SegmentIndex::default();
    for &(rel, pos, t) in &all[..split] {
        prefix.observe_batch(rel, pos, t);
    }
    index.complete_with_prefix(prefix);
    assert!(index.is_time_exact());
    for t in 0..25 {
        assert_eq!(index.lookup_time(t), naive(&all, t), "t {t}");
    }
}

#[test]
fn re_encoding_after_a_failed_call_falls_back_to_hints() {
    let mut index = SegmentIndex::default();
    index.observe_batch(0, 0, 5);
    index.observe_batch(3, 100, 6);
    index.observe_batch(3, 100, 8);
    assert!(!index.is_time_exact());
    assert!(matches!(index.lookup_time(7), TimeLookup::Walk(Some(_))));
}

#[test]
fn trusted_bytes_are_searched_in_place() {
    let mut index = SegmentIndex::default();
    for &(rel, pos, t) in &batches() {
        index.observe_batch(rel, pos, t);
    }
    let (_, time_file) = index.encode_files(Offset(0), 1 << 20);
    let file::Parsed::Framed(header, entries) = file::parse(IndexKind::Time, &time_file) else {
        panic!("not framed");
    };
    assert_eq!(header.flags, file::FLAG_TIME_EXACT);
    let count = entries.len() / TIME_ENTRY_BYTES;
    let bytes = TimeEntryBytes::new(Arc::new(time_file.clone()), file::INDEX_HEADER_BYTES, count).unwrap();
    let trusted = SegmentIndex::from_trusted(index.offsets.clone(), bytes, true);
    for t in 0..25 {
        assert_eq!(trusted.lookup_time(t), naive(&batches(), t), "t {t}");
    }
    // Out of order entries are refused.
    let mut bad = time_file;
    bad.swap(file::INDEX_HEADER_BYTES, file::INDEX_HEADER_BYTES + TIME_ENTRY_BYTES);
    assert!(TimeEntryBytes::new(Arc::new(bad), file::INDEX_HEADER_BYTES, count).is_none());
}
