//! The checks behind the fuzz targets, shared with `tests/fuzz_regressions.rs` (which
//! includes this file with `#[path]`), so a saved input replays the same code in
//! `cargo test` on stable.
//!
//! Each `check_*` takes one raw fuzz input. Bad bytes must end in an `Err`; the checks
//! panic (assert) only when trailkeep breaks a promise: a panic inside trailkeep, or a
//! result that contradicts what the input says.
//!
//! Inputs start with a small control prefix (flags, counts) read by [`Input`]; whatever
//! follows is the arbitrary data. A short input reads as zeros, so every byte string is a
//! valid input.
//!
//! The checks of the store's own files live in this file; the parsers of what clients and
//! users send have a module each.

mod event_line;
mod server_frame;
mod text_parsers;

pub use event_line::check_event_line;
pub use server_frame::{check_server_frame, produce_frame, request_frame, FUZZ_TOPIC};
pub use text_parsers::{check_text_parsers, signer, SIGNER_NAME};

use std::fs;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use trailkeep::index::file::{IndexKind, Parsed};
use trailkeep::index::{self, OffsetEntry, SegmentIndex, TimeEntry, OFFSET_ENTRY_BYTES, TIME_ENTRY_BYTES};
use trailkeep::segment::batch::{
    self, BatchHeader, Compression, RecordIter, BATCH_BYTES_MAX, BATCH_HEADER_BYTES, BATCH_MAGIC, BATCH_VERSION,
};
use trailkeep::{Durability, NewRecord, Offset, Record, RecordRef, Store, TopicConfig};

/// Reads the control prefix of a fuzz input; reads past the end yield zeros.
pub struct Input<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// Wraps one fuzz input.
    pub fn new(bytes: &'a [u8]) -> Self {
        Input { bytes, pos: 0 }
    }
    /// The next byte, or 0.
    pub fn u8(&mut self) -> u8 {
        let b = self.bytes.get(self.pos).copied().unwrap_or(0);
        self.pos = (self.pos + 1).min(self.bytes.len());
        b
    }
    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        for byte in &mut b {
            *byte = self.u8();
        }
        u64::from_le_bytes(b)
    }
    /// The next `len` bytes (fewer at the end).
    pub fn take(&mut self, len: usize) -> &'a [u8] {
        let end = (self.pos + len).min(self.bytes.len());
        let taken = &self.bytes[self.pos..end];
        self.pos = end;
        taken
    }
    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.pos..];
        self.pos = self.bytes.len();
        rest
    }
}

// ---------------------------------------------------------------------------------------
// Helpers that steer arbitrary bytes past the cheap checks, so the fuzzer reaches the
// record decoder and the read path instead of stopping at magic and CRC.
// ---------------------------------------------------------------------------------------

/// Walks batch headers from position 0 and rewrites each complete batch's CRC.
pub fn fix_crcs(bytes: &mut [u8]) {
    let mut pos = 0usize;
    while pos + BATCH_HEADER_BYTES <= bytes.len() {
        let check = trailkeep::segment::batch::header_check(&bytes[pos..pos + BATCH_HEADER_BYTES]);
        bytes[pos + 14..pos + 16].copy_from_slice(&check.to_le_bytes());
        let Ok(header) = BatchHeader::decode_header_only(&bytes[pos..]) else {
            return;
        };
        let end = pos + header.batch_bytes as usize;
        if end > bytes.len() {
            return;
        }
        let crc = crc32fast::hash(&bytes[pos + 12..end]);
        bytes[pos + 8..pos + 12].copy_from_slice(&crc.to_le_bytes());
        pos = end;
    }
}

/// Makes the first 40 bytes a plausible header for a batch filling all of `bytes`
/// (magic, length, version, reserved bits, payload length), keeping the fuzzer's
/// compression bit, offset, record count and timestamp.
pub fn normalize_header(bytes: &mut Vec<u8>) {
    if bytes.len() < BATCH_HEADER_BYTES {
        bytes.resize(BATCH_HEADER_BYTES, 0);
    }
    bytes.truncate(BATCH_BYTES_MAX);
    let len = bytes.len() as u32;
    bytes[0..4].copy_from_slice(&BATCH_MAGIC.to_le_bytes());
    bytes[4..8].copy_from_slice(&len.to_le_bytes());
    bytes[12] = BATCH_VERSION;
    bytes[13] &= 1;
    let count = u32::from_le_bytes([bytes[24], bytes[25], bytes[26], bytes[27]]);
    let count = count % 64 + 1;
    bytes[24..28].copy_from_slice(&count.to_le_bytes());
    if bytes[13] == 0 {
        bytes[28..32].copy_from_slice(&(len - BATCH_HEADER_BYTES as u32).to_le_bytes());
    }
    let check = trailkeep::segment::batch::header_check(&bytes[..BATCH_HEADER_BYTES]);
    bytes[14..16].copy_from_slice(&check.to_le_bytes());
}

/// One encoded batch of `records` (pure: no store involved).
pub fn encode_records(base: Offset, timestamp_us: u64, records: &[NewRecord], compression: Compression) -> Vec<u8> {
    let mut payload = Vec::new();
    for r in records {
        batch::encode_record(&mut payload, &r.as_fields());
    }
    let mut out = Vec::new();
    batch::encode_batch(
        &mut out,
        base,
        timestamp_us,
        records.len() as u32,
        &payload,
        compression,
    )
    .expect("encoding into memory");
    out
}

/// A JSON-like value for generated records.
pub fn value_for(i: u64, pad: usize) -> Vec<u8> {
    format!(
        "{{\"event\":{i},\"kind\":\"tool_call\",\"pad\":\"{}\"}}",
        "x".repeat(pad)
    )
    .into_bytes()
}

/// Uses every field of a decoded record, so lazy decoding (headers) runs too.
fn touch(record: &RecordRef<'_>) -> Record {
    let owned = record.to_record();
    assert_eq!(record.fields.headers.iter().count(), record.fields.headers.len());
    assert_eq!(owned.headers.len(), record.fields.headers.len());
    assert_eq!(owned.value, record.fields.value);
    owned
}

fn to_new_record(r: &Record) -> NewRecord {
    NewRecord {
        event_time_us: r.event_time_us,
        key: r.key.clone(),
        headers: r.headers.clone(),
        value: r.value.clone(),
    }
}

// ---------------------------------------------------------------------------------------
// batch_decode
// ---------------------------------------------------------------------------------------

/// `batch_decode`: `[mode] [batch bytes...]`. Mode bit 0 fixes the CRC, bit 1 normalizes
/// the header first. Decoding must never panic; an accepted batch re-encodes to the same
/// records (byte for byte when uncompressed).
pub fn check_batch_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let mode = input.u8();
    let mut bytes = input.rest().to_vec();
    if mode & 2 != 0 {
        normalize_header(&mut bytes);
    }
    if mode & 1 != 0 {
        fix_crcs(&mut bytes);
    }
    // The record iterator on an unchecked payload (wrong CRC, wrong lengths) must cope too.
    if let Ok(header) = BatchHeader::decode_header_only(&bytes) {
        for record in RecordIter::new(&header, &bytes[BATCH_HEADER_BYTES..]).flatten() {
            touch(&record);
        }
    }
    let mut scratch = Vec::new();
    let Ok((header, payload)) = batch::decode_batch(&bytes, &mut scratch) else {
        return;
    };
    let payload = payload.to_vec();
    assert_eq!(BatchHeader::decode(&bytes).ok(), Some(header));
    assert!(header.record_count >= 1);
    assert!(header.batch_bytes as usize <= bytes.len());
    let records: Vec<Record> = RecordIter::new(&header, &payload)
        .map(|r| touch(&r.expect("decode_batch accepted every record")))
        .collect();
    assert_eq!(records.len(), header.record_count as usize);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, Offset(header.base_offset.0 + i as u64));
        assert_eq!(r.timestamp_us, header.timestamp_us);
    }
    check_reencode(&bytes, &header, &payload, &records);
}

fn check_reencode(bytes: &[u8], header: &BatchHeader, payload: &[u8], records: &[Record]) {
    // The record encoding is canonical: borrowed and owned fields encode to the payload.
    let mut from_refs = Vec::new();
    for r in RecordIter::new(header, payload) {
        let r = r.expect("checked above");
        assert_eq!(batch::record_encoded_len(&r.fields), encoded_len_of(&r));
        batch::encode_record(&mut from_refs, &r.fields);
    }
    assert_eq!(from_refs, payload, "re-encoding borrowed records changes the payload");
    let owned: Vec<NewRecord> = records.iter().map(to_new_record).collect();
    let mut from_owned = Vec::new();
    for r in &owned {
        batch::encode_record(&mut from_owned, &r.as_fields());
    }
    assert_eq!(from_owned, payload, "re-encoding owned records changes the payload");
    // zstd may not shrink a fuzzer's payload; stay under the batch limit that
    // encode_batch asserts (its caller checks limits).
    if payload.len() + payload.len() / 64 + 4096 > BATCH_BYTES_MAX {
        return;
    }
    let mut out = Vec::new();
    batch::encode_batch(
        &mut out,
        header.base_offset,
        header.timestamp_us,
        header.record_count,
        payload,
        header.compression,
    )
    .expect("encoding into memory");
    if header.compression == Compression::None {
        assert_eq!(
            out,
            &bytes[..header.batch_bytes as usize],
            "uncompressed re-encoding differs"
        );
    }
    let mut scratch = Vec::new();
    let (again, again_payload) = batch::decode_batch(&out, &mut scratch).expect("a re-encoded batch decodes");
    assert_eq!(again.base_offset, header.base_offset);
    assert_eq!(again.record_count, header.record_count);
    assert_eq!(again.timestamp_us, header.timestamp_us);
    assert_eq!(again.compression, header.compression);
    assert_eq!(again.payload_bytes, header.payload_bytes);
    let again: Vec<Record> = RecordIter::new(&again, again_payload)
        .map(|r| r.expect("re-encoded record decodes").to_record())
        .collect();
    assert_eq!(again, records);
}

/// The encoded length of a decoded record, from its own fields (length prefix included).
fn encoded_len_of(r: &RecordRef<'_>) -> usize {
    let f = &r.fields;
    let headers: usize = f.headers.iter().map(|(n, v)| 1 + n.len() + 2 + v.len()).sum();
    4 + 1 + f.event_time_us.map_or(0, |_| 8) + f.key.map_or(0, |k| 2 + k.len()) + 1 + headers + f.value.len()
}

// ---------------------------------------------------------------------------------------
// index_decode
// ---------------------------------------------------------------------------------------

/// `index_decode`: `[log length u64] [index bytes...]`, decoded both as an offset index and
/// as a time index. The result must be the longest valid prefix of the input.
pub fn check_index_decode(data: &[u8]) {
    let mut input = Input::new(data);
    let log_bytes = input.u64();
    let bytes = input.rest();
    let offsets = check_offset_index(bytes, log_bytes);
    let times = check_time_index(bytes);
    let index = SegmentIndex::from_entries(offsets.clone(), times.clone());
    let mut probes = vec![0, 1, u32::MAX, u32::MAX - 1];
    for e in &offsets {
        probes.extend([
            e.relative_offset,
            e.relative_offset.wrapping_sub(1),
            e.relative_offset.wrapping_add(1),
        ]);
    }
    for rel in probes {
        let want = offsets.iter().rev().find(|e| e.relative_offset <= rel).copied();
        assert_eq!(index.floor_offset(rel), want, "floor_offset({rel})");
    }
    let mut time_probes = vec![0, 1, u64::MAX];
    for e in &times {
        time_probes.extend([
            e.timestamp_us,
            e.timestamp_us.wrapping_sub(1),
            e.timestamp_us.wrapping_add(1),
        ]);
    }
    for ts in time_probes {
        let want = times
            .iter()
            .rev()
            .find(|e| e.timestamp_us < ts)
            .map(|e| e.relative_offset);
        assert_eq!(index.floor_time(ts), want, "floor_time({ts})");
    }
}

fn check_offset_index(bytes: &[u8], log_bytes: u64) -> Vec<OffsetEntry> {
    let (entries, complete) = index::decode_offset_entries(bytes, log_bytes);
    let chunks: Vec<&[u8]> = bytes.chunks_exact(OFFSET_ENTRY_BYTES).collect();
    assert!(entries.len() <= chunks.len());
    assert_eq!(complete, entries.len() * OFFSET_ENTRY_BYTES == bytes.len());
    let acceptable = |prev: Option<&OffsetEntry>, e: &OffsetEntry| {
        let ordered = prev.is_none_or(|p| e.relative_offset > p.relative_offset && e.position > p.position);
        let first_ok = prev.is_some() || (e.relative_offset == 0 && e.position == 0);
        ordered && first_ok && u64::from(e.position) < log_bytes
    };
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(&e.to_bytes()[..], chunks[i], "entry {i} is not the input's");
        assert!(
            acceptable(i.checked_sub(1).map(|p| &entries[p]), e),
            "entry {i} breaks the rules: {e:?}"
        );
    }
    // The prefix is the longest: the next whole entry, if any, breaks a rule.
    if let Some(next) = chunks.get(entries.len()) {
        let e = OffsetEntry {
            relative_offset: u32::from_le_bytes(next[..4].try_into().unwrap()),
            position: u32::from_le_bytes(next[4..].try_into().unwrap()),
        };
        assert!(!acceptable(entries.last(), &e), "a valid entry {e:?} was dropped");
    }
    // Re-encoding the prefix decodes to itself, completely.
    let encoded: Vec<u8> = entries.iter().flat_map(|e| e.to_bytes()).collect();
    assert_eq!(
        index::decode_offset_entries(&encoded, log_bytes),
        (entries.clone(), true)
    );
    // A longer log never shortens the prefix.
    assert!(index::decode_offset_entries(bytes, u64::MAX).0.len() >= entries.len());
    entries
}

fn check_time_index(bytes: &[u8]) -> Vec<TimeEntry> {
    let (entries, complete) = index::decode_time_entries(bytes);
    // Bytes that start with the time index magic are a framed file (also plain entries
    // whose first timestamp happens to begin so: FORMAT.md): the header must check,
    // else nothing is used; the entries are the bytes after it.
    let bytes = match index::file::parse(IndexKind::Time, bytes) {
        Parsed::Legacy(body) | Parsed::Framed(_, body) => body,
        Parsed::Bad(_) => {
            assert_eq!((entries.len(), complete), (0, false), "a bad framed file gave entries");
            return entries;
        }
    };
    let chunks: Vec<&[u8]> = bytes.chunks_exact(TIME_ENTRY_BYTES).collect();
    assert!(entries.len() <= chunks.len());
    assert_eq!(complete, entries.len() * TIME_ENTRY_BYTES == bytes.len());
    // SegmentIndex promises both fields strictly increasing.
    let acceptable = |prev: Option<&TimeEntry>, e: &TimeEntry| {
        prev.is_none_or(|p| e.timestamp_us > p.timestamp_us && e.relative_offset > p.relative_offset)
    };
    for (i, e) in entries.iter().enumerate() {
        assert_eq!(&e.to_bytes()[..], chunks[i], "entry {i} is not the input's");
        assert!(
            acceptable(i.checked_sub(1).map(|p| &entries[p]), e),
            "entry {i} breaks the rules: {e:?}"
        );
    }
    if let Some(next) = chunks.get(entries.len()) {
        let e = TimeEntry {
            timestamp_us: u64::from_le_bytes(next[..8].try_into().unwrap()),
            relative_offset: u32::from_le_bytes(next[8..].try_into().unwrap()),
        };
        assert!(!acceptable(entries.last(), &e), "a valid entry {e:?} was dropped");
    }
    let encoded: Vec<u8> = entries.iter().flat_map(|e| e.to_bytes()).collect();
    if !matches!(index::file::parse(IndexKind::Time, &encoded), Parsed::Bad(_)) {
        assert_eq!(index::decode_time_entries(&encoded), (entries.clone(), true));
    }
    entries
}

// ---------------------------------------------------------------------------------------
// Store-level helpers
// ---------------------------------------------------------------------------------------

/// A scratch directory, on tmpfs when there is one (fsync is then free).
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    let builder = {
        let mut b = tempfile::Builder::new();
        b.prefix("trailkeep-fuzz-");
        b
    };
    if shm.is_dir() {
        if let Ok(dir) = builder.tempdir_in(shm) {
            return dir;
        }
    }
    builder.tempdir().expect("creating a scratch directory")
}

const TOPIC: &str = "t";

fn topic_dir(store_dir: &Path) -> PathBuf {
    store_dir.join("topics").join(TOPIC)
}

fn open_store(dir: &Path) -> Option<Store> {
    open_store_with(dir, Durability::Buffered)
}

fn open_store_with(dir: &Path, durability: Durability) -> Option<Store> {
    Store::builder(dir).durability(durability).open().ok()
}

/// Everything readable from the start, by `iter` and by `scan`; checks that both agree and
/// that offsets are dense up to `end_offset`. Err when the topic reports one.
fn read_all(topic: &trailkeep::Topic) -> trailkeep::Result<Vec<Record>> {
    let start = topic.start_offset();
    let end = topic.end_offset();
    let mut records = Vec::new();
    for r in topic.iter(start) {
        records.push(r?);
        assert!(records.len() <= 1 << 20, "iteration does not end");
    }
    let mut scanned = Vec::new();
    let next = topic.scan(start, |r| {
        scanned.push(touch(&r));
        ControlFlow::Continue(())
    })?;
    assert_eq!(scanned, records, "scan and iter disagree");
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.offset, Offset(start.0 + i as u64), "offsets are not dense");
    }
    if let Some(last) = records.last() {
        assert_eq!(next, Offset(last.offset.0 + 1));
    }
    assert_eq!(
        Offset(start.0 + records.len() as u64),
        end,
        "records end before end_offset"
    );
    Ok(records)
}

/// Runs seek_time at each probe; when `records` is the whole topic, checks the answer
/// against a linear search (the first record with a timestamp at or after the probe).
///
/// Forged bytes with valid CRCs can make append time go backwards across a segment
/// boundary (each segment is only checked on its own); seek_time has no single right
/// answer then, so the comparison is skipped.
fn check_seek_time(topic: &trailkeep::Topic, records: &[Record], probes: &[u64]) {
    let monotonic = records.windows(2).all(|w| w[1].timestamp_us >= w[0].timestamp_us);
    for &ts in probes {
        if !monotonic {
            let _ = topic.seek_time(ts);
            continue;
        }
        let Ok(found) = topic.seek_time(ts) else { continue };
        let want = records.iter().find(|r| r.timestamp_us >= ts).map(|r| r.offset);
        assert_eq!(found, want, "seek_time({ts})");
    }
}

fn time_probes(records: &[Record]) -> Vec<u64> {
    let mut probes = vec![0, u64::MAX];
    for r in records.iter().step_by(records.len().div_ceil(8).max(1)) {
        probes.extend([
            r.timestamp_us,
            r.timestamp_us.saturating_sub(1),
            r.timestamp_us.saturating_add(1),
        ]);
    }
    probes
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort();
    logs
}

// ---------------------------------------------------------------------------------------
// recovery
// ---------------------------------------------------------------------------------------

/// `recovery`: `[flags] [batches] [splice position u16] [bytes...]`.
///
/// A topic gets `batches % 6` valid appends through the API (bit 0: zstd, bit 1: 4 KiB
/// segments so some are sealed), then the bytes are appended to the active segment
/// (bit 2: written over it at the splice position instead; bit 3: CRCs fixed; bit 4: the
/// active segment's index files replaced by the bytes too; bit 5: reopened under
/// `Durability::Always`, whose appender writes zeros ahead of its records and writes each
/// record at its position). Reopening and appending must
/// return Ok or Err; after Ok every record reads back with dense offsets, and when the
/// bytes were only appended, every record written before is still there.
pub fn check_recovery(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let batches = input.u8() % 6;
    let splice_at = usize::from(input.u16());
    let garbage = input.rest();
    let compression = if flags & 1 != 0 {
        Compression::Zstd
    } else {
        Compression::None
    };
    let small_segments = flags & 2 != 0;
    let splice = flags & 4 != 0;
    let dir = scratch_dir();
    let written = write_valid_topic(dir.path(), compression, small_segments, batches);
    let tdir = topic_dir(dir.path());
    let logs = log_files(&tdir);
    let active = logs.last().expect("the topic has an active segment").clone();
    let mut log = fs::read(&active).expect("reading the active segment");
    let valid_len = log.len();
    if splice {
        let at = splice_at % (log.len() + 1);
        let end = (at + garbage.len()).max(log.len());
        log.resize(end, 0);
        log[at..at + garbage.len()].copy_from_slice(garbage);
    } else {
        log.extend_from_slice(garbage);
    }
    if flags & 8 != 0 {
        let from = if splice { 0 } else { valid_len };
        fix_crcs(&mut log[from..]);
    }
    fs::write(&active, &log).expect("writing the active segment");
    if flags & 16 != 0 {
        let half = garbage.len() / 2;
        fs::write(active.with_extension("index"), &garbage[..half]).expect("writing index");
        fs::write(active.with_extension("timeindex"), &garbage[half..]).expect("writing time index");
    }
    let durability = if flags & 32 != 0 {
        Durability::Always
    } else {
        Durability::Buffered
    };
    let Some(store) = open_store_with(dir.path(), durability) else {
        return;
    };
    let Ok(topic) = store.topic(TOPIC) else { return };
    // A reader looking before recovery (index files as found) must cope too.
    if let Ok(records) = read_all(&topic) {
        check_seek_time(&topic, &records, &time_probes(&records));
    }
    let appended = match topic.append(&NewRecord::new(b"after recovery".to_vec())) {
        Ok(offset) => offset,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let records = read_all(&topic).expect("after recovery every record reads back");
    let last = records.last().expect("the appended record");
    assert_eq!(last.offset, appended);
    assert_eq!(last.value, b"after recovery");
    assert_eq!(topic.start_offset(), Offset(0));
    if !splice {
        assert!(records.len() > written.len(), "recovery lost acknowledged records");
        for (got, want) in records.iter().zip(&written) {
            assert_eq!(&got.value, want, "record {} changed", got.offset);
        }
    }
    check_seek_time(&topic, &records, &time_probes(&records));
    // What recovery left on disk (truncated log, rebuilt indexes) reopens to the same records.
    let _ = store.close();
    let store = open_store_with(dir.path(), durability).expect("reopening");
    let topic = store.topic(TOPIC).expect("the topic is still there");
    let again = read_all(&topic).expect("reading after reopen");
    assert_eq!(again, records, "reopen shows other records");
    check_seek_time(&topic, &again, &time_probes(&again));
}

/// The batches the recovery target appends before adding the fuzzer's bytes.
pub fn recovery_batches(batches: u8, pad: usize) -> Vec<Vec<NewRecord>> {
    (0..u64::from(batches))
        .map(|b| {
            (0..=b % 3)
                .map(|i| {
                    let r = NewRecord::new(value_for(b * 10 + i, pad));
                    if i == 1 {
                        r.with_key(b"trace-1".to_vec())
                            .with_header("agent", b"a1".to_vec())
                            .with_event_time_us(-1)
                    } else {
                        r
                    }
                })
                .collect()
        })
        .collect()
}

/// Creates topic `t` and appends `batches` batches through the API; returns the values.
fn write_valid_topic(dir: &Path, compression: Compression, small_segments: bool, batches: u8) -> Vec<Vec<u8>> {
    let store = open_store(dir).expect("creating a store");
    let mut config = TopicConfig::default().compression(compression);
    if small_segments {
        config = config.segment_bytes(4096);
    }
    let topic = store.create_topic(TOPIC, config).expect("creating the topic");
    let pad = if small_segments { 900 } else { 20 };
    let mut values = Vec::new();
    for records in recovery_batches(batches, pad) {
        values.extend(records.iter().map(|r| r.value.clone()));
        topic.append_batch(&records).expect("appending valid records");
    }
    // Make sure an active segment file exists even with no batch.
    topic.recover().expect("taking the append lock");
    store.close().expect("closing");
    values
}

// ---------------------------------------------------------------------------------------
// sealed_read
// ---------------------------------------------------------------------------------------

/// `sealed_read`: `[flags] [batches] [active base u16] (bit 2: [n u8] [m u8] [n offset
/// index entries] [m time index entries]) [bytes...]`.
///
/// The bytes become sealed segment 0 (bit 0: instead, `batches % 8` valid batches with the
/// bytes applied as XOR patches `[pos u16][xor u8]...`; bit 1: CRCs fixed; bit 2: index
/// files for it taken from the input; bit 3: zstd; bit 4: the active base is taken from the
/// input instead of the sealed segment's true end). A valid active segment follows.
/// Reading everything returns records or Err; whatever is returned is consistent, and
/// seek_time agrees with a linear search over what iteration returned.
pub fn check_sealed_read(data: &[u8]) {
    let mut input = Input::new(data);
    let flags = input.u8();
    let batches = input.u8() % 8;
    let fuzz_base = u64::from(input.u16());
    let index_files = (flags & 4 != 0).then(|| {
        let (n, m) = (usize::from(input.u8()), usize::from(input.u8()));
        (input.take(n * OFFSET_ENTRY_BYTES), input.take(m * TIME_ENTRY_BYTES))
    });
    let rest = input.rest();
    let compression = if flags & 8 != 0 {
        Compression::Zstd
    } else {
        Compression::None
    };
    let (mut sealed, true_end) = if flags & 1 != 0 {
        patched_segment(batches, compression, rest)
    } else {
        (rest.to_vec(), 0)
    };
    if flags & 2 != 0 {
        fix_crcs(&mut sealed);
    }
    let active_base = if flags & 16 != 0 || true_end == 0 {
        fuzz_base.max(1)
    } else {
        true_end
    };
    let dir = scratch_dir();
    {
        let store = open_store(dir.path()).expect("creating a store");
        store
            .create_topic(TOPIC, TopicConfig::default())
            .expect("creating the topic");
        store.close().expect("closing");
    }
    let tdir = topic_dir(dir.path());
    let sealed_path = tdir.join(trailkeep::segment::file_name(Offset(0), "log"));
    fs::write(&sealed_path, &sealed).expect("writing the sealed segment");
    if let Some((offsets, times)) = index_files {
        fs::write(sealed_path.with_extension("index"), offsets).expect("writing index");
        fs::write(sealed_path.with_extension("timeindex"), times).expect("writing time index");
    }
    let active_records: Vec<NewRecord> = (0..3).map(|i| NewRecord::new(value_for(1000 + i, 8))).collect();
    let active = encode_records(Offset(active_base), 1 << 40, &active_records, Compression::None);
    let active_path = tdir.join(trailkeep::segment::file_name(Offset(active_base), "log"));
    fs::write(&active_path, &active).expect("writing the active segment");

    let Some(store) = open_store(dir.path()) else { return };
    let Ok(topic) = store.topic(TOPIC) else { return };
    let _ = topic.stats();
    let whole = read_all(&topic);
    if let Ok(records) = &whole {
        let tail: Vec<&[u8]> = records.iter().rev().take(3).rev().map(|r| r.value.as_slice()).collect();
        let want: Vec<&[u8]> = active_records.iter().map(|r| r.value.as_slice()).collect();
        assert_eq!(tail, want, "the active segment's records are not last");
        check_seek_time(&topic, records, &time_probes(records));
        for r in records.iter().step_by(records.len().div_ceil(5).max(1)) {
            assert_eq!(&topic.read(r.offset).expect("reading a record iter returned"), r);
        }
    } else {
        // Each entry point on its own: Ok or Err, never a panic.
        for offset in [0, active_base.saturating_sub(1), active_base, active_base + 2] {
            let _ = topic.read(Offset(offset));
        }
        for ts in [0, 1 << 20, 1 << 40, u64::MAX] {
            let _ = topic.seek_time(ts);
        }
    }
    // Appending after a bad sealed segment: Ok or Err; when Ok the new record reads back.
    if let Ok(offset) = topic.append(&NewRecord::new(b"after".to_vec())) {
        assert_eq!(
            topic.read(offset).expect("reading the record just appended").value,
            b"after"
        );
        if let Ok(before) = whole {
            let after = read_all(&topic).expect("it read before the append");
            assert_eq!(&after[..before.len()], &before[..]);
        }
    }
}

/// `batches` valid batches (1 to 3 records each, timestamps increasing) with XOR patches
/// `[pos u16][xor u8]` from `patches` applied; returns the bytes and the true end offset.
pub fn patched_segment(batches: u8, compression: Compression, patches: &[u8]) -> (Vec<u8>, u64) {
    let mut bytes = Vec::new();
    let mut next = 0u64;
    for b in 0..u64::from(batches.max(1)) {
        let records: Vec<NewRecord> = (0..=b % 3)
            .map(|i| {
                let r = NewRecord::new(value_for(b * 10 + i, 30));
                if i == 2 {
                    r.with_key(b"k".to_vec()).with_header("h", b"v".to_vec())
                } else {
                    r
                }
            })
            .collect();
        bytes.extend(encode_records(Offset(next), 1000 + b * 7, &records, compression));
        next += records.len() as u64;
    }
    for patch in patches.chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % bytes.len();
        bytes[pos] ^= patch[2];
    }
    (bytes, next)
}
