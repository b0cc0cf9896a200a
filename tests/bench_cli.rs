//! `trailkeep bench --quick` through the real binary: it exits 0 and prints the complete
//! table — every workload, a ratio column, a target beside the targeted rows, and the
//! SQLite and JSON-lines baselines. Nothing is asserted about speed.
//!
//! How: runs the binary (`CARGO_BIN_EXE_trailkeep`) with `--work-dir` set to a temporary
//! directory and checks the printed table, then that the directory was cleaned up.

use std::process::Command;

const WORKLOADS: [&str; 13] = [
    "buffered append, batches of 1,000",
    "durable append, 1 writer",
    "durable append, 64 writers",
    "full replay, checksums verified",
    "seek by time, throughput",
    "seek by time, p99 latency",
    "tamper evidence on vs off",
    "bytes on disk, no compression",
    "bytes on disk, trailkeep zstd",
    "open a topic of",
    "append-to-consumer latency",
    "peak memory, append+replay",
    "memory flat as the store grows",
];

#[test]
fn quick_bench_prints_the_complete_table() {
    let work = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .args(["bench", "--quick", "--work-dir"])
        .arg(work.path())
        .env_remove("TRAILKEEP_DIR")
        .env_remove("TRAILKEEP_FAILPOINT")
        .env_remove("TRAILKEEP_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench --quick failed ({}):\n{stderr}\n{stdout}",
        out.status
    );
    // Progress goes to stderr only on a terminal; here stderr is a pipe.
    assert!(stderr.trim().is_empty(), "unexpected stderr: {stderr}");

    // The disk is looked at before and after the workloads.
    for look in [
        "  at the start: 4 KiB append + fdatasync p50 ",
        "  at the end:   4 KiB append + fdatasync p50 ",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(look) && l.contains("written + fdatasync at")),
            "no {look:?} line in:\n{stdout}"
        );
    }
    let header = stdout
        .lines()
        .find(|l| l.starts_with("workload"))
        .unwrap_or_else(|| panic!("no table header in:\n{stdout}"));
    for column in ["median", "ratio", "target", "met"] {
        assert!(header.contains(column), "no {column} column in {header:?}");
    }
    for workload in WORKLOADS {
        assert!(
            stdout.lines().any(|l| l.starts_with(workload)),
            "no {workload:?} row in:\n{stdout}"
        );
    }
    for system in [
        "SQLite WAL, synchronous=OFF",
        "SQLite WAL, synchronous=NORMAL",
        "synchronous=FULL",
        "JSON lines, buffered writer",
        "JSON lines, fdatasync every 1,000",
        "JSON lines, read + serde_json parse",
    ] {
        assert!(stdout.contains(system), "no {system:?} line in:\n{stdout}");
    }
    // Ratios are printed as e.g. "3.25x", and the targets of PRODUCT.md stand beside them.
    let ratios = stdout
        .split_whitespace()
        .filter(|w| w.strip_suffix('x').is_some_and(|n| n.parse::<f64>().is_ok()))
        .count();
    assert!(ratios >= 10, "too few ratios ({ratios}) in:\n{stdout}");
    for target in [">= 4x", ">= 1x", ">= 30x", ">= 3x", ">= 5x", "< 100 ms"] {
        assert!(stdout.contains(target), "no target {target:?} in:\n{stdout}");
    }
    assert!(
        stdout
            .lines()
            .filter(|l| l.ends_with(" yes") || l.ends_with(" NO"))
            .count()
            >= 6,
        "targets without a met column in:\n{stdout}"
    );

    let left: Vec<_> = std::fs::read_dir(work.path()).unwrap().collect();
    assert!(left.is_empty(), "bench left files behind: {left:?}");
}
