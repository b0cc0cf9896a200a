//! Tamper evidence end to end (issue 4): the per-topic RFC 6962 Merkle tree, signed
//! checkpoints, `Topic::verify`, inclusion and consistency proofs.
//!
//! What it proves:
//! - a changed record value / key / append time with its batch CRC fixed, in a sealed and in
//!   the active segment, two records swapped (base offsets and CRCs patched so the log is
//!   well formed), a damaged `merkle.tree` or a damaged stored checkpoint make `verify` fail
//!   with `Error::Tamper` naming the offset (or the checkpoint); a removed sealed segment in
//!   the middle of the log fails with `Gap` or `Tamper`;
//! - a rollback (topic directory restored from an earlier copy, or log and checkpoints
//!   truncated together) passes plain `verify` but fails against a checkpoint kept outside
//!   ("records were removed"); a rewritten history signed with the same key and store id
//!   fails ("rewritten"); a forged signature, a re-signed body, another key, another topic's
//!   checkpoint all fail;
//! - proofs for random offsets verify with `verify_record_inclusion` from the bundle, the
//!   record and the vkey alone, and fail for any altered field and an altered proof hash;
//!   consistency proofs from random old sizes verify against the old checkpoint's root;
//! - roots, inclusion paths and consistency proofs equal a naive recursive RFC 6962
//!   implementation written here (over leaf bytes re-encoded here from FORMAT / audit-format
//!   and compared with `audit::leaf_bytes`) for every size 0..40 and random larger sizes;
//! - with retention deleting old segments, `verify` passes from `start_offset`, later proofs
//!   and an early external checkpoint still verify, and retention racing the tree thread
//!   never deletes records whose leaves the tree does not hold yet;
//! - removing the oldest sealed segment by hand (no retention configured) is not reported OK
//!   (fails today: nothing records the earliest offset that should be held);
//! - a process aborted after appends (no close, tree thread behind): reopening verifies and
//!   the tree catches up; checkpoints are written every N records, every T ms and on seal;
//!   the key file has mode 0600 and the checkpoint names `trailkeep/<store-id>/<topic>`.
//!
//! How: each test builds its own store in a temporary directory through the library, closes
//! it, edits bytes on disk where needed (batch layout from FORMAT.md; the 16-bit header check
//! and the CRC-32 recomputed with `crc32fast`), reopens and checks the exact error. Random choices use a fixed-seed
//! xorshift so failures replay. The crash test re-runs this binary as a child
//! (`crash_child`, which does nothing unless `TRAILKEEP_EVIDENCE_CHILD` is set) that aborts.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use sha2::{Digest, Sha256};
use trailkeep::audit::{self, Checkpoint, Hash, NoteSigner, NoteVerifier, ProofBundle};
use trailkeep::{
    verify_record_inclusion, Durability, Error, NewRecord, Offset, Record, Store, Topic, TopicConfig, VerifyReport,
};

#[path = "support/files.rs"]
mod files;

const T: &str = "t";
const CHILD_ENV: &str = "TRAILKEEP_EVIDENCE_CHILD";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------- helpers

/// xorshift64*: fixed seeds, reproducible choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open(dir: &Path) -> Store {
    Store::builder(dir).durability(Durability::Buffered).open().unwrap()
}

/// Small segments so that a few hundred records span several sealed segments.
fn small() -> TopicConfig {
    TopicConfig::default().segment_bytes(4096)
}

/// Records with every field shape: key absent / empty / set, headers, event times
/// (negative too), values of varying length.
fn new_record(i: u64) -> NewRecord {
    let mut value = format!("{{\"event\":{i},\"pad\":\"").into_bytes();
    value.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, (i * 37 % 90) as usize));
    value.extend_from_slice(b"\"}");
    let mut r = NewRecord::new(value);
    match i % 4 {
        0 => r = r.with_key(format!("trace-{}", i % 7)),
        1 => r = r.with_key(Vec::new()),
        _ => {}
    }
    if i.is_multiple_of(3) {
        r = r.with_header("tool", format!("t{i}")).with_header("empty", Vec::new());
    }
    if i.is_multiple_of(5) {
        r = r.with_event_time_us(if i.is_multiple_of(10) {
            -(i as i64) - 1
        } else {
            i as i64 * 1000
        });
    }
    r
}

/// Appends records `range` one per call (one single-record batch each), each in a later
/// microsecond than the one before, so every batch's append time is above the previous
/// one (the tampering test moves one back by a microsecond; on a fast machine two appends
/// can share one).
fn append_range(topic: &Topic, range: Range<u64>) {
    for i in range {
        let before = micros_now();
        while micros_now() == before {
            std::hint::spin_loop();
        }
        assert_eq!(topic.append(&new_record(i)).unwrap(), Offset(i));
    }
}

fn micros_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

fn read_all(topic: &Topic) -> Vec<Record> {
    topic.iter(topic.start_offset()).map(|r| r.unwrap()).collect()
}

fn topic_dir(root: &Path) -> PathBuf {
    root.join("topics").join(T)
}

/// A store with `n` records in `t`, one batch each, closed.
fn build(config: TopicConfig, n: u64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic(T, config).unwrap();
    append_range(&topic, 0..n);
    store.close().unwrap();
    dir
}

/// Opens the store, verifies `t` (optionally against an external checkpoint), closes.
fn verify_dir(dir: &Path, external: Option<(&str, &NoteVerifier)>) -> trailkeep::Result<VerifyReport> {
    let store = open(dir);
    let result = store.topic(T).and_then(|t| t.verify(external, &mut |_| {}));
    let _ = store.close();
    result
}

fn store_verifier(dir: &Path) -> NoteVerifier {
    let store = open(dir);
    let v = NoteVerifier::parse(&store.verifier_key().unwrap()).unwrap();
    drop(store);
    v
}

/// Segment logs `(base, path)`, oldest first.
fn segments(root: &Path) -> Vec<(u64, PathBuf)> {
    let mut v: Vec<(u64, PathBuf)> = std::fs::read_dir(topic_dir(root))
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().ok()?;
            Some((name.strip_suffix(".log")?.parse().ok()?, e.path()))
        })
        .collect();
    v.sort();
    v
}

fn u16_at(b: &[u8], p: usize) -> u16 {
    u16::from_le_bytes(b[p..p + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes(b[p..p + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], p: usize) -> u64 {
    u64::from_le_bytes(b[p..p + 8].try_into().unwrap())
}

/// One batch of a segment file: byte range, base offset, record count.
#[derive(Clone, Debug)]
struct Batch {
    pos: usize,
    len: usize,
    base: u64,
    count: u32,
}

fn batches(bytes: &[u8]) -> Vec<Batch> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos + 40 <= bytes.len() {
        assert_eq!(u32_at(bytes, pos), 0x3142_4B54, "batch magic at byte {pos}");
        let len = u32_at(bytes, pos + 4) as usize;
        out.push(Batch {
            pos,
            len,
            base: u64_at(bytes, pos + 16),
            count: u32_at(bytes, pos + 24),
        });
        pos += len;
    }
    assert_eq!(pos, bytes.len(), "segment ends inside a batch");
    out
}

/// Recomputes the batch's header check (FORMAT.md: low 16 bits of CRC-32 of the 40 header
/// bytes with bytes 8..12 and 14..16 zeroed) and its CRC-32 over bytes [12, batch_bytes).
fn fix_crc(bytes: &mut [u8], b: &Batch) {
    let mut header = bytes[b.pos..b.pos + 40].to_vec();
    header[8..12].fill(0);
    header[14..16].fill(0);
    let check = (crc32fast::hash(&header) & 0xFFFF) as u16;
    bytes[b.pos + 14..b.pos + 16].copy_from_slice(&check.to_le_bytes());
    let crc = crc32fast::hash(&bytes[b.pos + 12..b.pos + b.len]);
    bytes[b.pos + 8..b.pos + 12].copy_from_slice(&crc.to_le_bytes());
}

/// Key and value byte ranges of the first record of an uncompressed batch.
fn record_parts(bytes: &[u8], b: &Batch) -> (Option<Range<usize>>, Range<usize>) {
    let mut p = b.pos + 40;
    let body_len = u32_at(bytes, p) as usize;
    p += 4;
    let end = p + body_len;
    let flags = bytes[p];
    p += 1;
    if flags & 2 != 0 {
        p += 8;
    }
    let key = if flags & 1 != 0 {
        let kl = u16_at(bytes, p) as usize;
        p += 2;
        p += kl;
        Some(p - kl..p)
    } else {
        None
    };
    let headers = bytes[p];
    p += 1;
    for _ in 0..headers {
        let nl = bytes[p] as usize;
        p += 1 + nl;
        let vl = u16_at(bytes, p) as usize;
        p += 2 + vl;
    }
    (key, p..end)
}

/// The segment file holding `offset`, its bytes and the index of its batch.
fn locate(root: &Path, offset: u64) -> (PathBuf, Vec<u8>, Vec<Batch>, usize) {
    let segs = segments(root);
    let (_, path) = segs.iter().rev().find(|(base, _)| *base <= offset).unwrap().clone();
    let bytes = std::fs::read(&path).unwrap();
    let list = batches(&bytes);
    let i = list
        .iter()
        .position(|b| b.base <= offset && offset < b.base + u64::from(b.count))
        .unwrap();
    (path, bytes, list, i)
}

#[track_caller]
fn assert_tamper_at(result: &trailkeep::Result<VerifyReport>, offset: u64, what: &str) {
    let Err(Error::Tamper { offset: Some(at), .. }) = result else {
        panic!("{what}: expected Error::Tamper at offset {offset}, got {result:?}");
    };
    assert_eq!(*at, Offset(offset), "{what}: the offset the tamper error names");
}

#[track_caller]
fn assert_tamper_reason(result: &trailkeep::Result<VerifyReport>, needle: &str, what: &str) {
    let reason = match result {
        Err(Error::Tamper { reason, .. }) => Some(reason),
        _ => None,
    };
    assert_reason("Tamper", reason, result, needle, what);
}

/// An external checkpoint that cannot apply is [`Error::CheckpointRejected`], not tamper
/// evidence of the store: the store may be intact.
#[track_caller]
fn assert_rejected(result: &trailkeep::Result<VerifyReport>, needle: &str, what: &str) {
    let reason = match result {
        Err(Error::CheckpointRejected { reason, .. }) => Some(reason),
        _ => None,
    };
    assert_reason("CheckpointRejected", reason, result, needle, what);
}

/// `reason` is the reason of the expected error variant `variant`, `None` for any other
/// result; it must contain `needle`.
#[track_caller]
fn assert_reason(
    variant: &str,
    reason: Option<&String>,
    result: &trailkeep::Result<VerifyReport>,
    needle: &str,
    what: &str,
) {
    let Some(reason) = reason else {
        panic!("{what}: expected Error::{variant} saying {needle:?}, got {result:?}");
    };
    assert!(
        reason.contains(needle),
        "{what}: expected {needle:?} in the reason {reason:?}"
    );
}

// ------------------------------------------------ naive RFC 6962, written from the RFC

fn sha(parts: &[&[u8]]) -> Hash {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

fn naive_leaf(bytes: &[u8]) -> Hash {
    sha(&[&[0u8], bytes])
}

fn naive_node(l: &Hash, r: &Hash) -> Hash {
    sha(&[&[1u8], l, r])
}

/// Largest power of two strictly below `n` (n > 1).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

fn mth(d: &[Hash]) -> Hash {
    match d.len() {
        0 => sha(&[]),
        1 => d[0],
        n => {
            let k = split(n);
            naive_node(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}

/// RFC 6962 §2.1.1 PATH(m, D[n]).
fn naive_path(m: usize, d: &[Hash]) -> Vec<Hash> {
    if d.len() <= 1 {
        return Vec::new();
    }
    let k = split(d.len());
    let (mut p, other) = if m < k {
        (naive_path(m, &d[..k]), mth(&d[k..]))
    } else {
        (naive_path(m - k, &d[k..]), mth(&d[..k]))
    };
    p.push(other);
    p
}

/// RFC 6962 §2.1.2 SUBPROOF(m, D[n], b).
fn naive_subproof(m: usize, d: &[Hash], b: bool) -> Vec<Hash> {
    let n = d.len();
    if m == n {
        return if b { Vec::new() } else { vec![mth(d)] };
    }
    let k = split(n);
    let (mut p, other) = if m <= k {
        (naive_subproof(m, &d[..k], b), mth(&d[k..]))
    } else {
        (naive_subproof(m - k, &d[k..], false), mth(&d[..k]))
    };
    p.push(other);
    p
}

fn naive_consistency(m: usize, d: &[Hash]) -> Vec<Hash> {
    if m == 0 || m == d.len() {
        Vec::new()
    } else {
        naive_subproof(m, d, true)
    }
}

/// The leaf bytes of docs/audit-format.md, encoded here independently.
fn naive_leaf_bytes(r: &Record) -> Vec<u8> {
    let mut out = vec![0x01];
    out.extend_from_slice(&r.offset.0.to_le_bytes());
    out.extend_from_slice(&r.timestamp_us.to_le_bytes());
    match r.event_time_us {
        Some(t) => {
            out.push(1);
            out.extend_from_slice(&t.to_le_bytes());
        }
        None => out.push(0),
    }
    match &r.key {
        Some(k) => {
            out.push(1);
            out.extend_from_slice(&(k.len() as u32).to_le_bytes());
            out.extend_from_slice(k);
        }
        None => out.push(0),
    }
    out.extend_from_slice(&(r.headers.len() as u32).to_le_bytes());
    for (name, value) in &r.headers {
        out.extend_from_slice(&(name.len() as u32).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(value);
    }
    out.extend_from_slice(&(r.value.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.value);
    out
}

/// Leaf hashes of records read back, cross-checked three ways.
fn leaves(records: &[Record]) -> Vec<Hash> {
    records
        .iter()
        .map(|r| {
            let bytes = audit::leaf_bytes(
                r.offset.0,
                r.timestamp_us,
                r.event_time_us,
                r.key.as_deref(),
                &r.headers,
                &r.value,
            )
            .unwrap();
            assert_eq!(bytes, naive_leaf_bytes(r), "leaf bytes of offset {}", r.offset);
            let leaf = audit::leaf_hash(&bytes);
            assert_eq!(leaf, naive_leaf(&bytes));
            assert_eq!(
                leaf,
                trailkeep::audit::record_leaf_hash(
                    r.offset.0,
                    r.timestamp_us,
                    r.event_time_us,
                    r.key.as_deref(),
                    &r.headers,
                    &r.value
                )
                .unwrap()
            );
            leaf
        })
        .collect()
}

fn parse_cp(text: &str, v: &NoteVerifier) -> Checkpoint {
    Checkpoint::parse_and_verify(text, v).unwrap_or_else(|e| panic!("checkpoint does not verify: {e}\n{text}"))
}

/// `(old size, hashes, signed checkpoint)` of a `prove_consistency` answer.
fn parse_consistency(text: &str) -> (u64, Vec<Hash>, String) {
    let (head, checkpoint) = text.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("trailkeep.consistency-proof@v1"));
    let old = lines.next().unwrap().strip_prefix("old ").unwrap().parse().unwrap();
    let hashes = lines.map(|l| B64.decode(l).unwrap().try_into().unwrap()).collect();
    (old, hashes, checkpoint.to_owned())
}

/// Flips one bit of the Ed25519 signature (not the key id) in a signed note.
fn forge_signature(text: &str) -> String {
    let cut = text.rfind("\n\n").unwrap() + 2;
    let (body, sig) = text.split_at(cut);
    let space = sig.rfind(' ').unwrap();
    let mut raw = B64.decode(sig[space + 1..].trim_end()).unwrap();
    assert_eq!(raw.len(), 68);
    raw[4 + 20] ^= 0x10;
    format!("{body}{} {}\n", &sig[..space], B64.encode(raw))
}

// ------------------------------------------------------------------ tampering

#[test]
fn changed_value_key_or_time_with_fixed_crc_is_named_by_offset_in_sealed_and_active_segments() {
    let template = build(small(), 150);
    let segs = segments(template.path());
    assert!(segs.len() >= 3, "want several segments, got {}", segs.len());
    let good = verify_dir(template.path(), None).unwrap();
    assert_eq!((good.records, good.tree_size), (150, 150));
    assert_eq!(good.start_offset, Offset(0));
    let active_base = segs.last().unwrap().0;
    let cases: &[(&str, u64)] = &[
        ("value, first sealed segment", 7),
        ("value, second sealed segment", segs[1].0 + 1),
        ("value, first record of a sealed segment", segs[1].0),
        ("key, sealed segment", 8),
        ("time, sealed segment", 9),
        ("value, active segment", active_base + 1),
        ("value, last record", 149),
        ("key, active segment", (active_base..150).find(|i| i % 4 == 0).unwrap()),
        ("time, last record", 149),
    ];
    for &(what, offset) in cases {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(template.path(), work.path());
        let (path, mut bytes, list, i) = locate(work.path(), offset);
        let b = list[i].clone();
        let (key, value) = record_parts(&bytes, &b);
        if what.starts_with("value") {
            bytes[value.start + value.len() / 2] ^= 0x01;
        } else if what.starts_with("key") {
            let key = key.filter(|k| !k.is_empty()).expect("record has a key");
            bytes[key.start] ^= 0x20;
        } else {
            // One microsecond earlier: still not before the previous batch (`append_range`
            // appends each in a later microsecond), so the log stays well formed.
            let ts = u64_at(&bytes, b.pos + 32);
            let prev = if i > 0 { u64_at(&bytes, list[i - 1].pos + 32) } else { 0 };
            assert!(ts > prev, "{what}: timestamps {prev} {ts}");
            bytes[b.pos + 32..b.pos + 40].copy_from_slice(&(ts - 1).to_le_bytes());
        }
        fix_crc(&mut bytes, &b);
        std::fs::write(&path, &bytes).unwrap();
        let result = verify_dir(work.path(), None);
        assert_tamper_at(&result, offset, what);
        let Err(e) = &result else { unreachable!() };
        let file = path.file_name().unwrap().to_str().unwrap();
        assert!(
            e.to_string().contains(file),
            "{what}: message does not name {file}: {e}"
        );
        // Reading the changed record still works (the CRC is right): only the tree notices.
        let store = open(work.path());
        assert_eq!(
            store.topic(T).unwrap().read(Offset(offset)).unwrap().offset,
            Offset(offset)
        );
    }
}

#[test]
fn removed_sealed_segment_in_the_middle_fails_verify_naming_the_missing_offsets() {
    let template = build(small(), 200);
    let segs = segments(template.path());
    assert!(segs.len() >= 4, "want several segments, got {}", segs.len());
    for victim in 1..segs.len() - 1 {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(template.path(), work.path());
        let (base, _) = segs[victim];
        let next = segs[victim + 1].0;
        for ext in ["log", "index", "timeindex"] {
            let _ = std::fs::remove_file(topic_dir(work.path()).join(format!("{base:020}.{ext}")));
        }
        let result = verify_dir(work.path(), None);
        let named = match &result {
            Err(Error::Gap { from, to, .. }) => *from == Offset(base) && *to == Offset(next),
            Err(Error::Tamper { offset: Some(o), .. }) => (base..next).contains(&o.0),
            _ => false,
        };
        assert!(named, "segment {base}..{next} removed: got {result:?}");
    }
}

/// Removing the *oldest* sealed segment by hand on a topic without retention looks like
/// retention. The issue asks that "the state records the earliest offset still held", so
/// this must not verify as OK.
#[test]
fn removed_oldest_sealed_segment_without_retention_is_not_reported_ok() {
    let work = build(small(), 120);
    let segs = segments(work.path());
    let (base, _) = segs[0];
    for ext in ["log", "index", "timeindex"] {
        let _ = std::fs::remove_file(topic_dir(work.path()).join(format!("{base:020}.{ext}")));
    }
    let result = verify_dir(work.path(), None);
    let Err(Error::Gap { .. } | Error::Tamper { .. }) = &result else {
        panic!(
            "records 0..{} deleted by hand, no retention configured: verify said {result:?}",
            segs[1].0
        );
    };
}

#[test]
fn two_records_swapped_with_offsets_and_crcs_patched_are_named() {
    let template = build(small(), 150);
    let segs = segments(template.path());
    let active = segs.last().unwrap().0;
    for (what, first) in [
        ("sealed", 3u64),
        ("sealed, across index entries", segs[1].0 + 10),
        ("active", active + 2),
    ] {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(template.path(), work.path());
        let (path, bytes, list, i) = locate(work.path(), first);
        let (a, b) = (list[i].clone(), list[i + 1].clone());
        assert_eq!((a.count, b.count, b.base), (1, 1, first + 1));
        assert_ne!(a.len, b.len, "pick records of different sizes");
        // b's bytes go first, keeping each position's base offset and timestamp.
        let mut nb = bytes[b.pos..b.pos + b.len].to_vec();
        let mut na = bytes[a.pos..a.pos + a.len].to_vec();
        let (ts_a, ts_b) = (u64_at(&bytes, a.pos + 32), u64_at(&bytes, b.pos + 32));
        nb[16..24].copy_from_slice(&first.to_le_bytes());
        nb[32..40].copy_from_slice(&ts_a.to_le_bytes());
        na[16..24].copy_from_slice(&(first + 1).to_le_bytes());
        na[32..40].copy_from_slice(&ts_b.to_le_bytes());
        let mut out = bytes[..a.pos].to_vec();
        out.extend_from_slice(&nb);
        out.extend_from_slice(&na);
        out.extend_from_slice(&bytes[b.pos + b.len..]);
        let list2 = batches(&out);
        fix_crc(&mut out, &list2[i]);
        fix_crc(&mut out, &list2[i + 1]);
        std::fs::write(&path, &out).unwrap();
        // The log is well formed: it reads back with the swapped values at patched offsets.
        {
            let store = open(work.path());
            let topic = store.topic(T).unwrap();
            let r = topic.read(Offset(first)).unwrap();
            assert_eq!(r.value, new_record(first + 1).value, "{what}: swap did not take");
        }
        let result = verify_dir(work.path(), None);
        assert_tamper_at(&result, first, what);
    }
}

#[test]
fn damaged_tree_file_or_stored_checkpoint_fails_verify() {
    let template = build(small(), 100);
    // A leaf hash in merkle.tree changed (leaf 5 is hash number 2*5 - popcount(5) = 8).
    {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(template.path(), work.path());
        let path = topic_dir(work.path()).join("merkle").join("merkle.tree");
        let mut bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..8], b"TKMERKLE");
        bytes[16 + 32 * 8 + 3] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let result = verify_dir(work.path(), None);
        match &result {
            Err(Error::Tamper { offset, .. }) => {
                assert_eq!(*offset, Some(Offset(5)), "tree file damaged at leaf 5: {result:?}")
            }
            Err(Error::Corrupt { .. }) => {}
            other => panic!("tree file damaged at leaf 5: expected a tamper or corrupt error, got {other:?}"),
        }
    }
    // The root of a stored checkpoint changed and its frame CRC fixed: the signature fails.
    {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(template.path(), work.path());
        let path = topic_dir(work.path()).join("checkpoints.log");
        let mut bytes = std::fs::read(&path).unwrap();
        let len = u32_at(&bytes, 0) as usize;
        let text = String::from_utf8(bytes[8..8 + len].to_vec()).unwrap();
        let root_line = text.lines().nth(2).unwrap();
        let at = 8 + text.find(root_line).unwrap() + 5;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let crc = crc32fast::hash(&bytes[8..8 + len]);
        bytes[4..8].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let result = verify_dir(work.path(), None);
        assert_tamper_reason(&result, "stored checkpoint #1", "stored checkpoint with a changed root");
    }
}

// --------------------------------------------------------- external checkpoints

#[test]
fn rollback_passes_plain_verify_but_fails_against_an_external_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        let topic = store.create_topic(T, small()).unwrap();
        append_range(&topic, 0..60);
        store.close().unwrap();
    }
    files::copy_dir(&topic_dir(dir.path()), saved.path());
    let (early, late) = {
        let store = open(dir.path());
        let topic = store.topic(T).unwrap();
        let early = topic.checkpoint().unwrap();
        append_range(&topic, 60..100);
        let late = topic.checkpoint().unwrap();
        store.close().unwrap();
        (early, late)
    };
    let v = store_verifier(dir.path());
    assert_eq!(parse_cp(&late, &v).size, 100);
    // Before the rollback both external checkpoints verify.
    assert_eq!(
        verify_dir(dir.path(), Some((&early, &v))).unwrap().external_size,
        Some(60)
    );
    assert_eq!(
        verify_dir(dir.path(), Some((&late, &v))).unwrap().external_size,
        Some(100)
    );

    // (a) the whole topic directory restored from the earlier copy.
    let work = tempfile::tempdir().unwrap();
    files::copy_dir(dir.path(), work.path());
    std::fs::remove_dir_all(topic_dir(work.path())).unwrap();
    files::copy_dir(saved.path(), &topic_dir(work.path()));
    let plain = verify_dir(work.path(), None).unwrap();
    assert_eq!(plain.tree_size, 60);
    assert_eq!(
        verify_dir(work.path(), Some((&early, &v))).unwrap().external_size,
        Some(60)
    );
    let result = verify_dir(work.path(), Some((&late, &v)));
    assert_tamper_reason(&result, "records were removed", "restored copy vs later checkpoint");

    // (b) the log cut at a batch boundary and the checkpoints file cut to match; the tree
    // file is left longer (the engine trims it to the log on open).
    let work = tempfile::tempdir().unwrap();
    files::copy_dir(dir.path(), work.path());
    let keep = 80u64;
    for (base, path) in segments(work.path()) {
        let bytes = std::fs::read(&path).unwrap();
        if base >= keep {
            for ext in ["log", "index", "timeindex"] {
                let _ = std::fs::remove_file(topic_dir(work.path()).join(format!("{base:020}.{ext}")));
            }
        } else if let Some(b) = batches(&bytes).iter().find(|b| b.base == keep) {
            std::fs::write(&path, &bytes[..b.pos]).unwrap();
            // The cut segment is now the active one: its indexes are rebuilt by recovery.
            for ext in ["index", "timeindex"] {
                let _ = std::fs::remove_file(topic_dir(work.path()).join(format!("{base:020}.{ext}")));
            }
        }
    }
    let cps = topic_dir(work.path()).join("checkpoints.log");
    let bytes = std::fs::read(&cps).unwrap();
    let (mut pos, mut cut) = (0, 0);
    while pos + 8 <= bytes.len() {
        let len = u32_at(&bytes, pos) as usize;
        let text = std::str::from_utf8(&bytes[pos + 8..pos + 8 + len]).unwrap();
        if parse_cp(text, &v).size <= keep {
            cut = pos + 8 + len;
        }
        pos += 8 + len;
    }
    std::fs::write(&cps, &bytes[..cut]).unwrap();
    // A careful rollback also moves sealed.offset back to the segment it left newest
    // (without that, the open fails: segment files are missing).
    let newest = segments(work.path()).last().unwrap().0;
    let mut sealed = newest.to_le_bytes().to_vec();
    sealed.extend_from_slice(&crc32fast::hash(&newest.to_le_bytes()).to_le_bytes());
    std::fs::write(topic_dir(work.path()).join("sealed.offset"), sealed).unwrap();
    let plain = verify_dir(work.path(), None).unwrap();
    assert_eq!(plain.tree_size, keep);
    let result = verify_dir(work.path(), Some((&late, &v)));
    assert_tamper_reason(
        &result,
        "records were removed",
        "log and checkpoints truncated together",
    );
}

#[test]
fn rewritten_history_with_the_same_key_and_store_id_fails_the_external_checkpoint() {
    let original = build(small(), 100);
    let v = store_verifier(original.path());
    let cp = {
        let store = open(original.path());
        let cp = store.topic(T).unwrap().latest_checkpoint().unwrap().unwrap();
        drop(store);
        cp
    };
    assert_eq!(parse_cp(&cp, &v).size, 100);
    for (what, n, changed) in [
        ("same length", 100u64, 50u64),
        ("longer", 130, 99),
        ("first record", 100, 0),
    ] {
        let forged = tempfile::tempdir().unwrap();
        std::fs::create_dir(forged.path().join("topics")).unwrap();
        files::copy_dir(&original.path().join("keys"), &forged.path().join("keys"));
        std::fs::copy(original.path().join("store.id"), forged.path().join("store.id")).unwrap();
        {
            let store = open(forged.path());
            assert_eq!(store.verifier_key().unwrap(), v.to_vkey());
            let topic = store.create_topic(T, small()).unwrap();
            for i in 0..n {
                let r = if i == changed {
                    NewRecord::new(b"forged".to_vec())
                } else {
                    new_record(i)
                };
                topic.append(&r).unwrap();
            }
            store.close().unwrap();
        }
        // The forger's own store is self-consistent...
        assert_eq!(verify_dir(forged.path(), None).unwrap().tree_size, n);
        // ...but not with what the auditor kept. (Timestamps differ too, so even an
        // identical payload sequence would be caught; the changed record makes sure.)
        let result = verify_dir(forged.path(), Some((&cp, &v)));
        assert_tamper_reason(&result, "rewritten", what);
    }
}

#[test]
fn forged_signatures_other_keys_and_other_origins_fail() {
    let dir = tempfile::tempdir().unwrap();
    let (cp, other_topic_cp, vkey, store_id) = {
        let store = open(dir.path());
        let topic = store.create_topic(T, small()).unwrap();
        append_range(&topic, 0..50);
        let cp = topic.checkpoint().unwrap();
        let other = store.create_topic("other", small()).unwrap();
        append_range(&other, 0..50);
        let other_cp = other.checkpoint().unwrap();
        assert_eq!(topic.verifier_key().unwrap(), store.verifier_key().unwrap());
        let id = store.store_id().unwrap();
        let vkey = store.verifier_key().unwrap();
        store.close().unwrap();
        (cp, other_cp, vkey, id)
    };
    let v = NoteVerifier::parse(&vkey).unwrap();
    let parsed = parse_cp(&cp, &v);
    assert_eq!(parsed.origin, format!("trailkeep/{store_id}/{T}"));
    assert_eq!(cp.lines().next(), Some(parsed.origin.as_str()));
    assert!(verify_dir(dir.path(), Some((&cp, &v))).is_ok());

    let forged = forge_signature(&cp);
    assert!(Checkpoint::parse_and_verify(&forged, &v).is_err());
    let result = verify_dir(dir.path(), Some((&forged, &v)));
    assert_rejected(&result, "signature", "flipped signature bit");

    // The body changed (a bigger size), the old signature kept.
    let bumped = cp.replacen("\n50\n", "\n49\n", 1);
    assert_ne!(bumped, cp);
    let result = verify_dir(dir.path(), Some((&bumped, &v)));
    assert_rejected(&result, "signature", "body changed under the signature");

    // Same key name, another key: signs the true size and root.
    let other = NoteSigner::generate(v.name()).unwrap();
    let resigned = Checkpoint {
        origin: parsed.origin.clone(),
        size: parsed.size,
        root: parsed.root,
    }
    .sign(&other)
    .unwrap();
    let result = verify_dir(dir.path(), Some((&resigned, &v)));
    assert_rejected(&result, "signature", "signed by another key");
    // A stored checkpoint signed by another key is caught by plain verify too.
    {
        let work = tempfile::tempdir().unwrap();
        files::copy_dir(dir.path(), work.path());
        let path = topic_dir(work.path()).join("checkpoints.log");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&(resigned.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(resigned.as_bytes()).to_le_bytes());
        bytes.extend_from_slice(resigned.as_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let result = verify_dir(work.path(), None);
        assert_tamper_reason(&result, "stored checkpoint", "stored checkpoint signed by another key");
    }
    // The genuine checkpoint checked with the wrong key.
    let result = verify_dir(dir.path(), Some((&cp, &other.verifier())));
    assert_rejected(&result, "signature", "verified with another key");
    // A genuine checkpoint of another topic of the same store (same key).
    let result = verify_dir(dir.path(), Some((&other_topic_cp, &v)));
    assert_rejected(&result, "it is the checkpoint of", "checkpoint of topic `other`");
}

// --------------------------------------------------------------------- proofs

#[test]
fn inclusion_proofs_for_random_offsets_verify_and_fail_for_altered_records_and_proofs() {
    let dir = build(small(), 300);
    let store = open(dir.path());
    let topic = store.topic(T).unwrap();
    let vkey = topic.verifier_key().unwrap();
    assert_eq!(vkey, store.verifier_key().unwrap());
    let records = read_all(&topic);
    let leaves = leaves(&records);
    let mut rng = Rng(0x5eed_0004);
    let mut offsets: Vec<u64> = (0..20).map(|_| rng.below(300)).collect();
    offsets.extend([0, 1, 255, 256, 299]);
    for o in offsets {
        let bundle = topic.prove(Offset(o)).unwrap();
        let record = topic.read(Offset(o)).unwrap();
        let cp =
            verify_record_inclusion(&record, &bundle, &vkey).unwrap_or_else(|e| panic!("offset {o}: {e}\n{bundle}"));
        assert!(cp.size > o);
        assert_eq!(cp.root, mth(&leaves[..cp.size as usize]), "offset {o}");
        let parsed = ProofBundle::parse(&bundle).unwrap();
        assert_eq!(parsed.index, o);
        assert_eq!(
            parsed.proof,
            naive_path(o as usize, &leaves[..cp.size as usize]),
            "path of {o}"
        );

        let mut altered: Vec<(&str, Record)> = Vec::new();
        let mut r = record.clone();
        r.value[0] ^= 1;
        altered.push(("value", r));
        let mut r = record.clone();
        r.value.push(b' ');
        altered.push(("value length", r));
        let mut r = record.clone();
        r.key = match &record.key {
            Some(k) if k.is_empty() => None,
            Some(k) => Some(k[1..].to_vec()),
            None => Some(Vec::new()),
        };
        altered.push(("key", r));
        let mut r = record.clone();
        r.timestamp_us += 1;
        altered.push(("timestamp", r));
        let mut r = record.clone();
        r.event_time_us = match record.event_time_us {
            Some(_) => None,
            None => Some(0),
        };
        altered.push(("event time", r));
        let mut r = record.clone();
        r.headers.push(("x".into(), b"y".to_vec()));
        altered.push(("headers", r));
        let mut r = record.clone();
        r.offset = Offset(o ^ 1);
        altered.push(("offset", r));
        for (what, r) in &altered {
            let result = verify_record_inclusion(r, &bundle, &vkey);
            let Err(Error::Tamper { .. }) = &result else {
                panic!("offset {o}, altered {what}: expected a tamper error, got {result:?}");
            };
        }
        // The offset changed in record and bundle alike: the leaf no longer fits the path.
        let mut moved = record.clone();
        moved.offset = Offset(o ^ 1);
        let moved_bundle = bundle.replacen(&format!("\nindex {o}\n"), &format!("\nindex {}\n", o ^ 1), 1);
        assert!(
            verify_record_inclusion(&moved, &moved_bundle, &vkey).is_err(),
            "moved offset {o}"
        );
        // Another record's fields at this offset.
        let mut other = records[((o + 1) % 300) as usize].clone();
        other.offset = Offset(o);
        assert!(
            verify_record_inclusion(&other, &bundle, &vkey).is_err(),
            "other record at {o}"
        );
        // Every proof hash altered in turn (one through the bundle, all against the root).
        for k in 0..parsed.proof.len() {
            let mut p = parsed.clone();
            p.proof[k][7] ^= 0x80;
            if k as u64 == o % parsed.proof.len() as u64 {
                let result = verify_record_inclusion(&record, &p.encode(), &vkey);
                let Err(Error::Tamper { .. }) = &result else {
                    panic!("offset {o}, proof hash {k}: expected a tamper error, got {result:?}");
                };
            }
            let leaf = leaves[o as usize];
            assert!(
                audit::verify_inclusion(&leaf, o, cp.size, &p.proof, &cp.root).is_err(),
                "offset {o}, hash {k}"
            );
        }
        // A hash dropped, and the bundle's checkpoint forged.
        if !parsed.proof.is_empty() {
            let mut p = parsed.clone();
            p.proof.pop();
            assert!(verify_record_inclusion(&record, &p.encode(), &vkey).is_err());
        }
        let mut p = parsed.clone();
        p.checkpoint = forge_signature(&p.checkpoint);
        assert!(verify_record_inclusion(&record, &p.encode(), &vkey).is_err());
        let wrong_key = NoteSigner::generate("trailkeep/x").unwrap().verifier().to_vkey();
        assert!(verify_record_inclusion(&record, &bundle, &wrong_key).is_err());
    }
    assert!(matches!(topic.prove(Offset(300)), Err(Error::OffsetOutOfRange { .. })));
    store.close().unwrap();
}

#[test]
fn consistency_proofs_from_random_old_sizes_verify_against_the_old_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic(T, small()).unwrap();
    let v = NoteVerifier::parse(&topic.verifier_key().unwrap()).unwrap();
    let mut rng = Rng(0xc0_4515_7e47);
    let mut olds: Vec<Checkpoint> = vec![parse_cp(&topic.checkpoint().unwrap(), &v)];
    let mut next = 0;
    while next < 400 {
        let n = 1 + rng.below(40);
        append_range(&topic, next..next + n);
        next += n;
        olds.push(parse_cp(&topic.checkpoint().unwrap(), &v));
    }
    assert_eq!(olds[0].size, 0);
    assert_eq!(olds[0].root, sha(&[]));
    let leaves = leaves(&read_all(&topic));
    for old in &olds {
        let text = topic.prove_consistency(old.size).unwrap();
        let (size, proof, cp_text) = parse_consistency(&text);
        assert_eq!(size, old.size);
        let new = parse_cp(&cp_text, &v);
        assert_eq!(new.size, next);
        assert_eq!(new.root, mth(&leaves));
        assert_eq!(
            proof,
            naive_consistency(old.size as usize, &leaves),
            "proof from {}",
            old.size
        );
        audit::verify_consistency(old.size, new.size, &old.root, &new.root, &proof)
            .unwrap_or_else(|e| panic!("from {}: {e}", old.size));
        if old.size > 0 && old.size < new.size {
            for k in 0..proof.len() {
                let mut p = proof.clone();
                p[k][0] ^= 1;
                assert!(
                    audit::verify_consistency(old.size, new.size, &old.root, &new.root, &p).is_err(),
                    "from {}: altered hash {k} accepted",
                    old.size
                );
            }
            let mut wrong_root = old.root;
            wrong_root[31] ^= 1;
            assert!(audit::verify_consistency(old.size, new.size, &wrong_root, &new.root, &proof).is_err());
            // Another old size with the same proof.
            assert!(audit::verify_consistency(old.size + 1, new.size, &old.root, &new.root, &proof).is_err());
        }
    }
    assert!(topic.prove_consistency(next + 1).is_err());
    store.close().unwrap();
}

#[test]
fn roots_equal_a_naive_rfc6962_root_for_every_size_up_to_40_and_random_larger_sizes() {
    // The example of docs/audit-format.md.
    let example = audit::leaf_bytes(5, 6, None, None, &[], b"").unwrap();
    let mut expected = vec![0x01, 5, 0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    expected.extend_from_slice(&[0; 8]);
    assert_eq!(example, expected);
    assert_eq!(audit::empty_root(), sha(&[]));

    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic(T, small()).unwrap();
    let v = NoteVerifier::parse(&topic.verifier_key().unwrap()).unwrap();
    let check = |topic: &Topic, what: &str, full: bool| {
        let cp = parse_cp(&topic.checkpoint().unwrap(), &v);
        let records = read_all(topic);
        assert_eq!(cp.size, records.len() as u64, "{what}");
        let leaves = leaves(&records);
        assert_eq!(cp.root, mth(&leaves), "{what}: root of size {}", cp.size);
        // `verify` re-checks every stored checkpoint's signature: not at every size.
        if full {
            let report = topic.verify(None, &mut |_| {}).unwrap();
            assert_eq!((report.tree_size, report.root), (cp.size, cp.root), "{what}");
        }
    };
    check(&topic, "empty", true);
    for i in 0..40 {
        append_range(&topic, i..i + 1);
        check(&topic, "one by one", i % 13 == 0);
    }
    let mut rng = Rng(0x600d_0001);
    let mut next = 40;
    for _ in 0..12 {
        let cap = if rng.below(3) == 0 { 600 } else { 70 };
        let n = 1 + rng.below(cap);
        let batch: Vec<NewRecord> = (next..next + n).map(new_record).collect();
        assert_eq!(topic.append_batch(&batch).unwrap().first, Offset(next));
        next += n;
        check(&topic, "random batches", false);
    }
    store.close().unwrap();
    // After reopening, the stored checkpoints all verify and match the naive roots.
    let store = open(dir.path());
    let topic = store.topic(T).unwrap();
    let leaves = leaves(&read_all(&topic));
    let report = topic.verify(None, &mut |_| {}).unwrap();
    assert!(report.checkpoints >= 53, "{report:?}");
    assert_eq!(report.root, mth(&leaves));
}

#[test]
fn retention_keeps_later_proofs_and_an_early_external_checkpoint_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic(T, small().retention_bytes(3 * 4096)).unwrap();
    let v = NoteVerifier::parse(&topic.verifier_key().unwrap()).unwrap();
    let vkey = v.to_vkey();
    append_range(&topic, 0..40);
    let early = topic.checkpoint().unwrap();
    let early_bundle = topic.prove(Offset(35)).unwrap();
    let early_record = topic.read(Offset(35)).unwrap();
    append_range(&topic, 40..400);
    // Retention deletes only segments whose leaves the tree holds durably; the tree thread
    // may lag behind the appends, so let a checkpoint catch it up first.
    topic.checkpoint().unwrap();
    topic.apply_retention().unwrap();
    let start = topic.start_offset().0;
    assert!(start > 40, "retention deleted nothing: start {start}");
    let report = topic.verify(Some((&early, &v)), &mut |_| {}).unwrap();
    assert_eq!(report.start_offset, Offset(start));
    assert_eq!(report.records, 400 - start);
    assert_eq!(report.tree_size, 400);
    assert_eq!(report.external_size, Some(40));
    // A proof made before retention still verifies for a record no longer held.
    verify_record_inclusion(&early_record, &early_bundle, &vkey).unwrap();
    let mut rng = Rng(0x7e7e);
    for _ in 0..20 {
        let o = start + rng.below(400 - start);
        let record = topic.read(Offset(o)).unwrap();
        verify_record_inclusion(&record, &topic.prove(Offset(o)).unwrap(), &vkey).unwrap();
    }
    let (_, proof, cp) = parse_consistency(&topic.prove_consistency(40).unwrap());
    let new = parse_cp(&cp, &v);
    let old = parse_cp(&early, &v);
    audit::verify_consistency(40, new.size, &old.root, &new.root, &proof).unwrap();
    // The tree keeps the hashes of deleted records: a record kept outside can still be proven.
    let bundle = topic.prove(Offset(35)).unwrap();
    verify_record_inclusion(&early_record, &bundle, &vkey).unwrap();
    assert!(matches!(topic.read(Offset(35)), Err(Error::OffsetOutOfRange { .. })));
    store.close().unwrap();
    // And after reopening.
    let report = verify_dir(dir.path(), Some((&early, &v))).unwrap();
    assert_eq!((report.start_offset, report.tree_size), (Offset(start), 400));
}

// ---------------------------------------------------------- crash and triggers

/// The aborting child. Does nothing in a normal test run.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else { return };
    let n: u64 = std::env::var("CHILD_RECORDS").unwrap().parse().unwrap();
    let store = Store::builder(&dir).durability(Durability::Always).open().unwrap();
    let topic = match store.topic(T) {
        Ok(t) => t,
        Err(_) => store.create_topic(T, small().checkpoint_every_records(50)).unwrap(),
    };
    let from = topic.end_offset().0;
    append_range(&topic, from..from + n / 2);
    let batch: Vec<NewRecord> = (from + n / 2..from + n).map(new_record).collect();
    topic.append_batch(&batch).unwrap();
    // No close, no destructors: the tree thread is most likely behind.
    std::process::abort();
}

#[test]
fn aborted_appender_reopens_verified_and_the_tree_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut total = 0;
    for (round, n) in [300u64, 2000, 1].into_iter().enumerate() {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env("CHILD_RECORDS", n.to_string())
            .output()
            .unwrap();
        assert!(!status.status.success(), "round {round}: the child did not abort");
        total += n;
        let store = open(dir.path());
        let topic = store.topic(T).unwrap();
        let v = NoteVerifier::parse(&topic.verifier_key().unwrap()).unwrap();
        let stored_before = topic.latest_checkpoint().unwrap();
        let report = topic.verify(None, &mut |_| {}).unwrap();
        assert_eq!((report.records, report.tree_size), (total, total), "round {round}");
        let leaves = leaves(&read_all(&topic));
        assert_eq!(report.root, mth(&leaves), "round {round}");
        // Checkpoints signed before the crash are consistent with the recovered tree.
        if let Some(text) = stored_before {
            let cp = parse_cp(&text, &v);
            assert!(cp.size <= total);
            assert_eq!(cp.root, mth(&leaves[..cp.size as usize]));
        }
        let cp = parse_cp(&topic.checkpoint().unwrap(), &v);
        assert_eq!(cp.size, total);
        store.close().unwrap();
    }
}

/// Polls for a stored checkpoint of at least `size` records, without asking for one.
fn wait_for_checkpoint(topic: &Topic, v: &NoteVerifier, size: u64, what: &str) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(text) = topic.latest_checkpoint().unwrap() {
            let cp = parse_cp(&text, v);
            if cp.size >= size {
                return cp;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no checkpoint of size >= {size} within 15 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn checkpoints_are_written_every_n_records_every_t_ms_on_seal_and_on_close() {
    let never = 1_000_000_000;
    // Every N records.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store
        .create_topic(
            T,
            TopicConfig::default()
                .checkpoint_every_records(25)
                .checkpoint_every_ms(never),
        )
        .unwrap();
    let v = NoteVerifier::parse(&topic.verifier_key().unwrap()).unwrap();
    // No checkpoint yet counts as one long ago: the first record gets one at once.
    append_range(&topic, 0..1);
    assert_eq!(wait_for_checkpoint(&topic, &v, 1, "first checkpoint").size, 1);
    append_range(&topic, 1..25);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        parse_cp(&topic.latest_checkpoint().unwrap().unwrap(), &v).size,
        1,
        "checkpoint before 25 new records"
    );
    append_range(&topic, 25..30);
    let cp = wait_for_checkpoint(&topic, &v, 26, "every 25 records");
    assert_eq!(cp.root, mth(&leaves(&read_all(&topic))[..cp.size as usize]));
    append_range(&topic, 30..60);
    let cp = wait_for_checkpoint(&topic, &v, cp.size + 25, "every 25 records, again");
    assert_eq!(cp.root, mth(&leaves(&read_all(&topic))[..cp.size as usize]));
    let last = cp.size;
    append_range(&topic, 60..63);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        parse_cp(&topic.latest_checkpoint().unwrap().unwrap(), &v).size,
        last,
        "checkpoint before 25 new records"
    );
    store.close().unwrap();
    let store = open(dir.path());
    let topic = store.topic(T).unwrap();
    assert_eq!(
        parse_cp(&topic.latest_checkpoint().unwrap().unwrap(), &v).size,
        63,
        "on close"
    );
    drop(store);

    // Every T ms.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store
        .create_topic(
            T,
            TopicConfig::default()
                .checkpoint_every_records(never)
                .checkpoint_every_ms(150),
        )
        .unwrap();
    append_range(&topic, 0..1);
    wait_for_checkpoint(&topic, &v_of(&store), 1, "first checkpoint");
    append_range(&topic, 1..3);
    wait_for_checkpoint(&topic, &v_of(&store), 3, "after 150 ms");
    drop(store);

    // On seal.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store
        .create_topic(T, small().checkpoint_every_records(never).checkpoint_every_ms(never))
        .unwrap();
    let v = v_of(&store);
    append_range(&topic, 0..1);
    wait_for_checkpoint(&topic, &v, 1, "first checkpoint");
    append_range(&topic, 1..10);
    std::thread::sleep(Duration::from_millis(300));
    let latest = parse_cp(&topic.latest_checkpoint().unwrap().unwrap(), &v).size;
    assert_eq!(latest, 1, "checkpoint with neither N, T nor a seal due");
    let mut i = 10;
    while segments(dir.path()).len() < 2 {
        append_range(&topic, i..i + 1);
        i += 1;
    }
    let sealed_end = segments(dir.path())[1].0;
    let cp = wait_for_checkpoint(&topic, &v, sealed_end, "on seal");
    assert_eq!(cp.root, mth(&leaves(&read_all(&topic))[..cp.size as usize]));
    drop(store);
}

fn v_of(store: &Store) -> NoteVerifier {
    NoteVerifier::parse(&store.verifier_key().unwrap()).unwrap()
}

#[test]
fn key_file_is_private_and_names_the_store() {
    use std::os::unix::fs::PermissionsExt;
    let dir = build(TopicConfig::default(), 3);
    let key = dir.path().join("keys").join("checkpoint.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode {mode:o}");
    let store = open(dir.path());
    let id = store.store_id().unwrap();
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(text.starts_with(&format!("PRIVATE+KEY+trailkeep/{id}+")), "{text:?}");
    assert!(store.verifier_key().unwrap().starts_with(&format!("trailkeep/{id}+")));
    let elsewhere = tempfile::tempdir().unwrap();
    // A key file created by an explicit path is private too.
    let fresh = elsewhere.path().join("fresh.key");
    let s2 = Store::builder(elsewhere.path().join("s2"))
        .signing_key_file(&fresh)
        .open()
        .unwrap();
    s2.verifier_key().unwrap();
    assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn tamper_evidence_off_writes_no_tree_and_verify_says_so() {
    let dir = build(TopicConfig::default().tamper_evidence(false), 10);
    assert!(!topic_dir(dir.path()).join("merkle").exists());
    assert!(!topic_dir(dir.path()).join("checkpoints.log").exists());
    let result = verify_dir(dir.path(), None);
    assert_tamper_reason(&result, "tamper evidence is off", "evidence off");
}

/// Retention runs at every roll, in the appender, while the tree thread may still be
/// hashing: it must not delete records whose leaves the tree does not hold yet (their hashes
/// would be lost and the topic's tamper evidence broken for good).
#[test]
fn retention_racing_the_tree_thread_never_loses_leaves() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // Every batch is larger than a segment: each append rolls and retention would
        // delete every sealed segment at once.
        let topic = store.create_topic(T, small().retention_bytes(4096)).unwrap();
        let mut next = 0;
        for _ in 0..20 {
            let batch: Vec<NewRecord> = (next..next + 500).map(new_record).collect();
            topic.append_batch(&batch).unwrap();
            next += 500;
        }
        let report = topic.verify(None, &mut |_| {});
        let Ok(report) = report else {
            panic!("round {round}: {report:?}");
        };
        assert_eq!(report.tree_size, next, "round {round}: tree size");
        topic.checkpoint().unwrap();
        topic.apply_retention().unwrap();
        let start = topic.start_offset().0;
        assert!(start > 0, "round {round}: retention deleted nothing");
        store.close().unwrap();
        let report = verify_dir(dir.path(), None).unwrap();
        assert_eq!(
            (report.start_offset.0, report.tree_size),
            (start, next),
            "round {round}"
        );
    }
}

/// `checkpoint()` and `verify()` called while another thread keeps appending cover at
/// least everything appended before the call (they hash up to the end they see, not
/// chasing the appender), their checkpoints verify, and after the appender stops the
/// whole log verifies against the last of them.
#[test]
fn checkpoints_while_another_thread_appends_cover_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store
        .create_topic("t", TopicConfig::default().segment_bytes(64 << 10))
        .unwrap();
    let verifier = NoteVerifier::parse(&store.verifier_key().unwrap()).unwrap();
    append_range(&topic, 0..200);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let appended = std::thread::scope(|s| {
        // Appends until told to stop (at least 2,000, at most 30,000 records: verify
        // takes longer as the log grows, and the appender must not outrun it forever).
        let appender = s.spawn(|| {
            let mut i = 200;
            while (!stop.load(std::sync::atomic::Ordering::SeqCst) || i < 2_000) && i < 30_000 {
                assert_eq!(topic.append(&new_record(i)).unwrap(), Offset(i));
                i += 1;
            }
            i
        });
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let before = topic.end_offset().0;
            let text = topic.checkpoint().unwrap();
            let cp = trailkeep::audit::Checkpoint::parse_and_verify(&text, &verifier).unwrap();
            assert!(
                cp.size >= before,
                "a checkpoint of {} records after {before} were appended",
                cp.size
            );
            sizes.push(cp.size);
            let before = topic.end_offset().0;
            let report = topic.verify(None, &mut |_| {}).unwrap();
            assert!(
                report.tree_size >= before,
                "verify covered {} of {before} records",
                report.tree_size
            );
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(
            sizes.windows(2).all(|w| w[0] <= w[1]),
            "checkpoint sizes went back: {sizes:?}"
        );
        appender.join().unwrap()
    });
    assert_eq!(topic.end_offset(), Offset(appended));
    let last = topic.checkpoint().unwrap();
    let cp = trailkeep::audit::Checkpoint::parse_and_verify(&last, &verifier).unwrap();
    assert_eq!(cp.size, appended);
    store.close().unwrap();
    let report = verify_dir(dir.path(), Some((&last, &verifier))).unwrap();
    assert_eq!(report.tree_size, appended);
}

#[test]
fn checkpoints_signed_while_the_tree_thread_keeps_hashing_cover_exactly_their_size() {
    // Appends arrive all along (1,000 records every millisecond for 2 s) into 4 KiB segments,
    // so a checkpoint's log sync has segments to seal first and takes a while, and the
    // tree thread has new records to hash meanwhile: every checkpoint must still hold
    // the root of exactly its own size. The appends never pause, so a due checkpoint
    // waits the longest it may (1 s) for them to, then is signed anyway.
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let topic = store.create_topic(T, small().checkpoint_every_records(1)).unwrap();
    let v = v_of(&store);
    let started = Instant::now();
    let mut next = 0u64;
    while started.elapsed() < Duration::from_millis(2000) {
        let batch: Vec<NewRecord> = (next..next + 1000).map(new_record).collect();
        topic.append_batch(&batch).unwrap();
        next += 1000;
        std::thread::sleep(Duration::from_millis(1));
    }
    let records = read_all(&topic);
    let all = leaves(&records);
    let cp = wait_for_checkpoint(&topic, &v, 1, "after 2 s of appends");
    assert_eq!(
        cp.root,
        mth(&all[..cp.size as usize]),
        "latest checkpoint at {}",
        cp.size
    );
    store.close().unwrap();
    let report = verify_dir(dir.path(), None).unwrap();
    assert_eq!((report.records, report.tree_size), (next, next));
    // One after 1 s of appends (their syncs take a while here), one once they stop or
    // at close.
    assert!(
        report.checkpoints >= 2,
        "checkpoints signed during 2 s of appends and after: {}",
        report.checkpoints
    );
}
