//! FORMAT.md is precise enough for an independent reader: `tests/format/verify_store.py`,
//! written from FORMAT.md and docs/audit-format.md alone (Python, standard library, plus
//! `cryptography` for signatures when present), checks stores this build writes — every
//! batch and checksum, the index files, the Merkle tree against the records, the signed
//! checkpoints, the cursors — and finds a flipped byte. Python is the test venv's
//! (`$TRAILKEEP_KAFKA_PYTHON`, as the Kafka tests); without it the test fails under CI
//! and prints "skipped: ..." otherwise.

#[path = "kafka/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use trailkeep::{Compression, NewRecord, Offset, Store, TopicConfig};

fn verifier() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/format/verify_store.py")
}

fn verify(python: &Path, store: &Path) -> Output {
    Command::new(python)
        .arg(verifier())
        .arg(store)
        .output()
        .expect("running verify_store.py")
}

fn text(output: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Topics of small segments with keys, headers and event times, a zstd topic, a topic
/// without tamper evidence, a consumer group and an explicit checkpoint.
fn library_store(dir: &Path) {
    let store = Store::open(dir).unwrap();
    let plain = store
        .create_topic("trail", TopicConfig::default().segment_bytes(16 * 1024))
        .unwrap();
    let zstd = store
        .create_topic(
            "packed",
            TopicConfig::default()
                .compression(Compression::Zstd)
                .segment_bytes(8 * 1024),
        )
        .unwrap();
    let bare = store
        .create_topic("bare", TopicConfig::default().tamper_evidence(false))
        .unwrap();
    for chunk in 0..30u64 {
        let records: Vec<NewRecord> = (chunk * 20..chunk * 20 + 20)
            .map(|i| {
                let mut r = NewRecord::new(format!(
                    "{{\"step\":{i},\"text\":\"{}\"}}",
                    "ä".repeat((i % 40) as usize)
                ));
                if i % 3 != 0 {
                    r = r.with_key(format!("trace-{}", i % 7)).with_header("seq", i.to_string());
                }
                if i % 4 == 0 {
                    r = r.with_event_time_us(1_700_000_000_000_000 + i as i64);
                }
                r
            })
            .collect();
        plain.append_batch(&records).unwrap();
        zstd.append_batch(&records).unwrap();
        bare.append_batch(&records[..5]).unwrap();
    }
    plain.checkpoint().unwrap();
    let mut consumer = plain.consumer("reader", Default::default()).unwrap();
    consumer.commit_offset(Offset(123)).unwrap();
    drop(consumer);
    store.close().unwrap();
}

#[test]
fn an_independent_reader_of_format_md_accepts_our_stores_and_finds_a_flipped_byte() {
    let Some(python) = support::python() else { return };
    let dir = tempfile::tempdir().unwrap();
    library_store(dir.path());
    let out = verify(&python, dir.path());
    assert!(out.status.success(), "library store: {}", text(&out));
    assert!(text(&out).contains("OK: all consistent"), "{}", text(&out));

    let demo = tempfile::tempdir().unwrap();
    let ran = Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .args(["demo", "--dir"])
        .arg(demo.path())
        .env_remove("TRAILKEEP_DIR")
        .output()
        .unwrap();
    assert!(ran.status.success(), "demo: {}", text(&ran));
    let out = verify(&python, demo.path());
    assert!(out.status.success(), "demo store: {}", text(&out));

    // One flipped byte in the payload of the first sealed segment of "trail".
    let segment = dir.path().join("topics/trail/00000000000000000000.log");
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[100] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();
    let out = verify(&python, dir.path());
    assert_eq!(out.status.code(), Some(1), "after a flip: {}", text(&out));
    assert!(
        text(&out).contains("ERROR") && text(&out).contains("00000000000000000000.log"),
        "the error names the segment: {}",
        text(&out)
    );
}
