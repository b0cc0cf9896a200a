//! Replays saved fuzz inputs through the same checks as the cargo-fuzz targets, on stable,
//! in `cargo test`: every file under `fuzz/regressions/<target>/` (except `*.md` notes that
//! say what an input found), plus seed inputs built here that reach past the magic and
//! CRC checks (and, for the parsers of what clients and users send, valid requests, keys,
//! notes, bundles and events). With `TRAILKEEP_FUZZ_SEEDS=<dir>` the seeds of those
//! targets are also written to `<dir>/<target>/`, a starting corpus for `cargo fuzz run`.

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod checks;

use std::path::Path;

use checks::{encode_records, value_for};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, RequestKind};
use trailkeep::index::{OffsetEntry, TimeEntry};
use trailkeep::{Compression, NewRecord, Offset};

type Check = fn(&[u8]);

const TARGETS: [(&str, Check); 7] = [
    ("batch_decode", checks::check_batch_decode),
    ("index_decode", checks::check_index_decode),
    ("recovery", checks::check_recovery),
    ("sealed_read", checks::check_sealed_read),
    ("server_frame", checks::check_server_frame),
    ("text_parsers", checks::check_text_parsers),
    ("event_line", checks::check_event_line),
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

/// Runs `check` on `input`, and writes the input under `$TRAILKEEP_FUZZ_SEEDS/<target>/`
/// when that is set.
fn seed(target: &str, check: Check, input: &[u8]) {
    check(input);
    let Some(dir) = std::env::var_os("TRAILKEEP_FUZZ_SEEDS") else {
        return;
    };
    let dir = Path::new(&dir).join(target);
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("seed-{:08x}", crc32fast::hash(input));
    std::fs::write(dir.join(name), input).unwrap();
}

#[test]
fn server_frame_seeds() {
    let check: Check = checks::check_server_frame;
    let records = sample_records();
    let stored: Vec<trailkeep::Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| trailkeep::Record {
            offset: Offset(i as u64),
            timestamp_us: 1_700_000_000_000_000,
            event_time_us: r.event_time_us,
            key: r.key.clone(),
            headers: r.headers.clone(),
            value: r.value.clone(),
        })
        .collect();
    let batch = trailkeep::server::records::encode_batch(&stored, false).unwrap();
    let api_versions = checks::request_frame(
        ApiKey::ApiVersions,
        3,
        RequestKind::ApiVersions(ApiVersionsRequest::default()),
    );
    // A version the server does not speak (and the encoder does not know): the header's.
    let mut api_versions_9 = api_versions.clone();
    api_versions_9[2..4].copy_from_slice(&9i16.to_be_bytes());
    let frames = [
        api_versions,
        api_versions_9,
        checks::request_frame(ApiKey::Metadata, 9, RequestKind::Metadata(MetadataRequest::default())),
        checks::produce_frame(6, 2, checks::FUZZ_TOPIC, batch.clone()),
        checks::produce_frame(6, 1, checks::FUZZ_TOPIC, batch.clone()),
        checks::produce_frame(0, 2, "bad/topic", batch.clone()),
    ];
    for frame in &frames {
        for mode in [0u8, 8] {
            seed("server_frame", check, &with_prefix(&[mode], frame));
        }
        for len in (0..frame.len()).step_by(5) {
            check(&with_prefix(&[8], &frame[..len]));
        }
    }
    for mode in [1u8, 1 | 4] {
        seed("server_frame", check, &with_prefix(&[mode], &batch));
    }
    // Mode 2 and 3: produce frames built around bytes, or around records of the input.
    seed(
        "server_frame",
        check,
        &with_prefix(&[2 | 4 | 8, 6, 2, 10], &[b"fuzz-topic", &batch[..]].concat()),
    );
    let record = [7u8, 1, 3, b'k', b'a', b'b', b'c', 1, 2, 3, 4];
    for compression in 0..5u8 {
        let built = [&[3 | 4 | 8, 6, 2, compression, 2, 0][..], &record, &record].concat();
        seed("server_frame", check, &built);
    }
    seed(
        "server_frame",
        check,
        &[3 | 4 | 8, 6, 2, 4, 0, 2, 40, 0, 0xff, 9, 0, 1, 1, 2, 3, b'x', b'y'],
    );
}

#[test]
fn text_parsers_seeds() {
    use trailkeep::audit::{Checkpoint, MemoryTree, ProofBundle};
    let check: Check = checks::check_text_parsers;
    let signer = checks::signer();
    seed(
        "text_parsers",
        check,
        &with_prefix(&[0], signer.verifier().to_vkey().as_bytes()),
    );
    seed(
        "text_parsers",
        check,
        &with_prefix(&[1], signer.to_private_key_text().as_bytes()),
    );
    seed("text_parsers", check, &with_prefix(&[2 | 8], b"hello\n\0"));
    let mut tree = MemoryTree::new();
    for i in 0..5u64 {
        tree.push(trailkeep::audit::leaf_hash(&i.to_le_bytes())).unwrap();
    }
    let checkpoint = Checkpoint {
        origin: checks::SIGNER_NAME.to_owned(),
        size: 5,
        root: tree.root(),
    };
    let note = checkpoint.sign(&signer).unwrap();
    seed("text_parsers", check, &with_prefix(&[2], note.as_bytes()));
    seed("text_parsers", check, &with_prefix(&[3], note.as_bytes()));
    seed(
        "text_parsers",
        check,
        &with_prefix(&[3 | 8], checkpoint.body().as_bytes()),
    );
    let bundle = ProofBundle {
        extra: Some(b"x".to_vec()),
        index: 2,
        proof: trailkeep::audit::inclusion_proof(&tree, 2, 5).unwrap(),
        checkpoint: note,
    };
    let text = bundle.encode();
    seed("text_parsers", check, &with_prefix(&[4], text.as_bytes()));
    let head = &text[..text.len() - bundle.checkpoint.len()];
    let signed = format!("{head}\0{}\0", checkpoint.body());
    seed("text_parsers", check, &with_prefix(&[4 | 8], signed.as_bytes()));
    for op in [5u8, 6, 7] {
        for flags in [0u8, 1, 3] {
            let mut input = vec![op, flags];
            input.extend_from_slice(&3u64.to_le_bytes());
            input.extend_from_slice(&9u64.to_le_bytes());
            input.extend_from_slice(&[0xab; 70]);
            seed("text_parsers", check, &input);
        }
    }
    check(&[6, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
}

#[test]
fn event_line_seeds() {
    let check: Check = checks::check_event_line;
    let events = trailkeep::events::testing::TrailGenerator::new(7)
        .sessions(2)
        .generate();
    let mut kinds = std::collections::HashSet::new();
    for event in &events {
        let line = event.to_json().unwrap();
        if kinds.insert(event.kind()) {
            seed("event_line", check, line.as_bytes());
        } else {
            check(line.as_bytes());
        }
    }
    for input in [&b""[..], b"{}", b"[]", b"null", b"{\"schema_version\":1}"] {
        check(input);
    }
}
