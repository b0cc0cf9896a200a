//! Replays saved fuzz inputs through the same checks as the cargo-fuzz targets, on stable,
//! in `cargo test`: every file under `fuzz/regressions/<target>/` (except `*.md` notes that
//! say what an input found), plus seed inputs built here that reach past the magic and
//! CRC checks.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

use checks::{encode_records, value_for};
use trailkeep::index::{OffsetEntry, TimeEntry};
use trailkeep::{Compression, NewRecord, Offset};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 4] = [
    ("batch_decode", checks::check_batch_decode),
    ("index_decode", checks::check_index_decode),
    ("recovery", checks::check_recovery),
    ("sealed_read", checks::check_sealed_read),
];

#[test]
fn saved_regressions_replay() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join("regressions");
    let mut replayed = 0;
    for (target, check) in TARGETS {
        let dir = root.join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        let inputs = files
            .iter()
            .filter(|f| f.is_file() && f.extension().is_none_or(|e| e != "md"));
        for file in inputs {
            let bytes = std::fs::read(file).unwrap();
            eprintln!("replaying {}", file.display());
            check(&bytes);
            replayed += 1;
        }
    }
    eprintln!("{replayed} saved inputs replayed");
}

fn sample_records() -> Vec<NewRecord> {
    vec![
        NewRecord::new(value_for(1, 10)),
        NewRecord::new(value_for(2, 0))
            .with_key(b"trace-7".to_vec())
            .with_event_time_us(-3)
            .with_header("agent", b"planner".to_vec())
            .with_header("h2", Vec::new()),
        NewRecord::new(Vec::new()),
    ]
}

fn with_prefix(prefix: &[u8], body: &[u8]) -> Vec<u8> {
    let mut input = prefix.to_vec();
    input.extend_from_slice(body);
    input
}

#[test]
fn batch_decode_seeds() {
    for compression in [Compression::None, Compression::Zstd] {
        let batch = encode_records(Offset(42), 1_700_000_000_000_000, &sample_records(), compression);
        for mode in 0..4u8 {
            checks::check_batch_decode(&with_prefix(&[mode], &batch));
            // Every truncation and a sample of bit flips, with and without fixed CRCs.
            for len in (0..batch.len()).step_by(7) {
                checks::check_batch_decode(&with_prefix(&[mode], &batch[..len]));
            }
            for bit in (0..batch.len() * 8).step_by(13) {
                let mut copy = batch.clone();
                copy[bit / 8] ^= 1 << (bit % 8);
                checks::check_batch_decode(&with_prefix(&[mode], &copy));
            }
        }
    }
    for input in [&[][..], &[3], &[3; 40], &[1; 200], &[2, 0xff, 0xff, 0xff, 0xff]] {
        checks::check_batch_decode(input);
    }
}

#[test]
fn index_decode_seeds() {
    let mut offsets = Vec::new();
    for (i, pos) in [(0u32, 0u32), (10, 4100), (25, 8300), (24, 9000), (30, 12_000)] {
        offsets.extend_from_slice(
            &OffsetEntry {
                relative_offset: i,
                position: pos,
            }
            .to_bytes(),
        );
    }
    let mut times = Vec::new();
    for (ts, rel) in [(100u64, 0u32), (100, 3), (200, 10), (300, 9)] {
        times.extend_from_slice(
            &TimeEntry {
                timestamp_us: ts,
                relative_offset: rel,
            }
            .to_bytes(),
        );
    }
    for log_bytes in [0u64, 1, 4100, 8301, 20_000, u64::MAX] {
        for body in [&offsets[..], &offsets[..13], &times[..], &times[..30], &[0u8; 64][..]] {
            checks::check_index_decode(&with_prefix(&log_bytes.to_le_bytes(), body));
        }
    }
    checks::check_index_decode(&[]);
}

#[test]
fn recovery_seeds() {
    let stray = encode_records(Offset(0), 5, &sample_records(), Compression::None);
    let bodies: [&[u8]; 5] = [
        &[],
        &[0; 100],
        &stray,
        &stray[..50],
        b"TKB1garbage garbage garbage garbage garbage",
    ];
    for flags in [0u8, 1, 2, 4, 8, 12, 16, 3 | 8] {
        for body in bodies {
            for batches in [0u8, 1, 5] {
                let mut input = vec![flags, batches];
                input.extend_from_slice(&7u16.to_le_bytes());
                input.extend_from_slice(body);
                checks::check_recovery(&input);
            }
        }
    }
}

#[test]
fn sealed_read_seeds() {
    let sealed = encode_records(Offset(0), 1000, &sample_records(), Compression::None);
    let patches = [5u8, 0, 0xff, 60, 0, 1, 100, 0, 0x80];
    for flags in [0u8, 1, 2, 3, 4, 5, 8 | 1, 16 | 1, 16 | 2] {
        for body in [
            &sealed[..],
            &sealed[..sealed.len() - 1],
            &patches[..],
            &[][..],
            &[0; 48][..],
        ] {
            for base in [0u16, 3, 4] {
                let mut input = vec![flags, 3];
                input.extend_from_slice(&base.to_le_bytes());
                input.extend_from_slice(body);
                checks::check_sealed_read(&input);
            }
        }
    }
}

/// Walks an uncompressed segment's batch headers: (position, relative offset) of each.
fn batch_starts(segment: &[u8]) -> Vec<(u32, u32)> {
    let mut starts = Vec::new();
    let mut pos = 0usize;
    while pos < segment.len() {
        let header = trailkeep::segment::batch::BatchHeader::decode(&segment[pos..]).unwrap();
        starts.push((pos as u32, header.base_offset.0 as u32));
        pos += header.batch_bytes as usize;
    }
    starts
}

fn offset_index(starts: &[(u32, u32)]) -> Vec<u8> {
    starts
        .iter()
        .flat_map(|&(position, relative_offset)| {
            OffsetEntry {
                relative_offset,
                position,
            }
            .to_bytes()
        })
        .collect()
}

/// A sealed segment whose offset index is right but whose time index claims the last batch
/// is older than it is: seek_time must not trust the unconfirmed time entry.
#[test]
fn sealed_read_seed_with_lying_time_index() {
    let (segment, _) = checks::patched_segment(3, Compression::None, &[]);
    let starts = batch_starts(&segment);
    assert_eq!(starts.len(), 3);
    let offsets = offset_index(&starts);
    // True append times are 1000, 1007 and 1014; the second entry says 1001.
    let last_relative = starts[2].1;
    let mut times = Vec::new();
    for (timestamp_us, relative_offset) in [(1000u64, 0u32), (1001, last_relative)] {
        times.extend_from_slice(
            &TimeEntry {
                timestamp_us,
                relative_offset,
            }
            .to_bytes(),
        );
    }
    let mut input = vec![1 | 4, 3, 0, 0, 3, 2];
    input.extend_from_slice(&offsets);
    input.extend_from_slice(&times);
    checks::check_sealed_read(&input);
}

/// The active segment's index files (as a reader process finds them) say the last batch is
/// older than it is: seek_time before recovery must not trust the unconfirmed time entry.
#[test]
fn recovery_seed_with_lying_tail_time_index() {
    let batches: Vec<Vec<u8>> = checks::recovery_batches(3, 20)
        .iter()
        .enumerate()
        .map(|(i, records)| encode_records(Offset(i as u64), 0, records, Compression::None))
        .collect();
    let mut segment = Vec::new();
    let mut starts = Vec::new();
    let mut next = 0u32;
    for (batch, records) in batches.iter().zip(checks::recovery_batches(3, 20)) {
        starts.push((segment.len() as u32, next));
        segment.extend_from_slice(batch);
        next += records.len() as u32;
    }
    let last_relative = starts[2].1;
    // Both halves are 24 bytes: two offset entries plus an out-of-order third, two time entries.
    let mut body = offset_index(&[starts[0], starts[2]]);
    body.extend_from_slice(&[0; 8]);
    for (timestamp_us, relative_offset) in [(1u64, 0u32), (2, last_relative)] {
        body.extend_from_slice(
            &TimeEntry {
                timestamp_us,
                relative_offset,
            }
            .to_bytes(),
        );
    }
    let mut input = vec![16, 3, 0, 0];
    input.extend_from_slice(&body);
    checks::check_recovery(&input);
}
