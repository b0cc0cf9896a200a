//! When background seals happen under `Durability::Buffered`: the seal thread waits for
//! the appends to pause, but not for long. A pause seals every rolled segment without a
//! sync or close; under a steady stream that never pauses, at most a few segments stay
//! unsealed. Both read `sealed.offset` and the segment files, as recovery would.

use std::path::{Path, PathBuf};

use trailkeep::{Durability, NewRecord, Store, Topic, TopicConfig};

#[path = "support/files.rs"]
mod files;

/// The directory of topic "t" in the store at `dir`.
fn topic_dir(dir: &Path) -> PathBuf {
    dir.join("topics").join("t")
}

/// Polls `sealed.offset` for up to 10 s until it reaches `at_least`; returns what it read.
fn wait_sealed(dir: &Path, at_least: u64) -> u64 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let through = files::sealed_through(&topic_dir(dir));
        if through >= at_least || std::time::Instant::now() > deadline {
            return through;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A Buffered store with topic "t" of `segment_bytes` segments, tamper evidence off.
fn buffered_topic(dir: &Path, segment_bytes: u64) -> (Store, Topic) {
    let store = Store::builder(dir).durability(Durability::Buffered).open().unwrap();
    let config = TopicConfig::default()
        .segment_bytes(segment_bytes)
        .tamper_evidence(false);
    let topic = store.create_topic("t", config).unwrap();
    (store, topic)
}

#[test]
fn a_pause_in_the_appends_seals_the_rolled_segments_without_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic) = buffered_topic(dir.path(), 64 << 10);
    let record = NewRecord::new(format!("{{\"pad\":\"{}\"}}", "p".repeat(200)));
    for _ in 0..1_000 {
        topic.append(&record).unwrap();
    }
    // About 4 segments rolled; the appends stop here, with no sync and no close.
    let active_base = *files::segment_bases(&topic_dir(dir.path())).last().unwrap();
    assert!(active_base > 0, "no segment rolled");
    let through = wait_sealed(dir.path(), active_base);
    assert_eq!(
        through, active_base,
        "rolled segments not sealed 10 s after the appends stopped"
    );
    store.close().unwrap();
}

#[test]
fn a_steady_stream_keeps_at_most_a_few_segments_unsealed() {
    let dir = tempfile::tempdir().unwrap();
    let (store, topic) = buffered_topic(dir.path(), 16 << 10);
    let record = NewRecord::new(format!("{{\"pad\":\"{}\"}}", "p".repeat(200)));
    // Appends never pause for long (one every 0.2 ms) over ~2 s: the seal thread may not
    // wait for a pause, and rolls must not run ahead of it by more than a few segments.
    let started = std::time::Instant::now();
    let mut worst = 0;
    while started.elapsed() < std::time::Duration::from_secs(2) {
        topic.append(&record).unwrap();
        let through = files::sealed_through(&topic_dir(dir.path()));
        let unsealed = files::segment_bases(&topic_dir(dir.path()))
            .iter()
            .filter(|&&b| b >= through)
            .count();
        worst = worst.max(unsealed);
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let segments = files::segment_bases(&topic_dir(dir.path())).len();
    assert!(segments > 20, "only {segments} segments rolled");
    // The active segment, plus at most 3 rolled ones waiting, plus one queued by the roll
    // that is waiting for the oldest.
    assert!(worst <= 5, "{worst} segments unsealed at once");
    store.close().unwrap();
}
