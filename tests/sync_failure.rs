//! A failed fdatasync poisons the topic: the appender gets a clear error, nothing after
//! the failure is acknowledged, later appends are refused, and after a reopen every
//! acknowledged record is there. The failure is injected (feature `failpoints`,
//! `TRAILKEEP_FAILPOINT_ERROR=wal.sync:N`) into a real `trailkeep append` process.
#![cfg(feature = "failpoints")]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use trailkeep::{Offset, Store};

/// Runs `trailkeep append t <args>` with the injected failure `failpoint` (`name:N`),
/// feeding `lines` (pausing `pause(i)` after line `i`) until the process stops reading;
/// returns its output.
fn append_with_failure(
    dir: &Path,
    args: &[&str],
    failpoint: &str,
    lines: Vec<String>,
    pause: impl Fn(usize) -> Duration + Send + 'static,
) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .arg("--dir")
        .arg(dir)
        .args(["append", "t"])
        .args(args)
        .env("TRAILKEEP_FAILPOINT_ERROR", failpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        for (i, line) in lines.into_iter().enumerate() {
            if writeln!(stdin, "{line}").is_err() {
                break;
            }
            std::thread::sleep(pause(i));
        }
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    out
}

#[test]
fn failed_sync_poisons_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let lines = (0..50).map(|i| format!("{{\"n\":{i}}}")).collect();
    // The second sync fails: the CLI appends what it has read as one batch, and while
    // fdatasync is slow (milliseconds on a throttled disk) 50 lines may take only a few
    // syncs.
    let out = append_with_failure(dir.path(), &["--print-offsets"], "wal.sync:2", lines, |_| {
        Duration::from_millis(2)
    });
    assert!(
        !out.status.success(),
        "the append must fail after the injected sync failure"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refuses writes after a failed sync") || stderr.contains("injected fdatasync failure"),
        "{stderr}"
    );
    let acked: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(!acked.is_empty() && acked.len() < 50, "acknowledged {acked:?}");
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("t").unwrap();
    for &o in &acked {
        let record = topic.read(Offset(o)).unwrap();
        assert_eq!(record.value, format!("{{\"n\":{o}}}").into_bytes());
    }
    // The reopened store accepts appends again.
    topic.append(&trailkeep::NewRecord::new(b"after".to_vec())).unwrap();
}

#[test]
fn a_failed_tree_write_is_an_error_not_a_panic_and_the_tree_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let lines = (0..300).map(|i| format!("{{\"n\":{i}}}")).collect();
    // Pauses long enough for the tree thread to write (and sign its first checkpoint,
    // three fdatasyncs) between bursts even on a slow disk, so that its second write
    // fails in the background and not in close's final catch-up.
    let out = append_with_failure(dir.path(), &[], "tree.write:2", lines, |i| {
        Duration::from_millis(if i % 50 == 0 { 100 } else { 0 })
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The records were appended and synced: the append succeeds, and the tree's failure
    // is logged (the tree is derived data; the next appender rebuilds it from the log).
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("tamper evidence stopped") && stderr.contains("tree.write"),
        "the failure is reported with its cause: {stderr}"
    );
    // Every message names the topic, and a tree that refuses work after the failure is
    // not reported as tamper evidence (it used to be, of topic "").
    assert!(
        !stderr.contains("topic \"\"") && !stderr.contains("tamper evidence of"),
        "{stderr}"
    );
    // Every record is there, and a new appender rebuilds the tree from the log.
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("t").unwrap();
    assert_eq!(topic.end_offset(), Offset(300));
    let report = topic.verify(None, &mut |_| {}).unwrap();
    assert_eq!(report.tree_size, 300);
    store.close().unwrap();
}

/// A background seal (durability `none`, many small segments) whose fdatasync fails
/// poisons the topic: the appending process stops with an error naming the failed seal
/// instead of hanging in a roll that waits for that seal, and the store reopens with
/// every record it holds intact.
#[test]
fn a_failed_background_seal_stops_the_appender_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_trailkeep");
    let created = Command::new(bin)
        .arg("--dir")
        .arg(dir.path())
        .args(["topics", "create", "t", "--segment-bytes", "4096"])
        .output()
        .unwrap();
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let lines = (0..400)
        .map(|i| format!("{{\"n\":{i},\"pad\":\"{}\"}}", "p".repeat(80)))
        .collect();
    // Paced, so that the lines make many small batches and many rolls.
    let out = append_with_failure(dir.path(), &["--durability", "none"], "seal.sync:3", lines, |_| {
        Duration::from_millis(1)
    });
    assert!(
        !out.status.success(),
        "the append must fail after the injected seal failure"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("injected fdatasync failure") || stderr.contains("sealing"),
        "{stderr}"
    );
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic("t").unwrap();
    let end = topic.end_offset().0;
    assert!(end > 0 && end < 400, "the store holds {end} records");
    for o in 0..end {
        let record = topic.read(Offset(o)).unwrap();
        assert!(
            record.value.starts_with(format!("{{\"n\":{o},").as_bytes()),
            "record {o}"
        );
    }
}
