//! Peak memory, measured in a child process per system so that neither the benchmark's
//! own data set nor another system's allocations are counted.
//!
//! The child (`trailkeep bench --mem-probe SYSTEM`) streams events (never holding them
//! all), appends them, replays them, and prints one JSON line: VmHWM (peak resident set,
//! which also counts file pages mapped and touched, e.g. trailkeep's mmap'd segments) and
//! the peak of RssAnon sampled every 2 ms (heap and other private memory).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{fail, BenchResult};

/// The systems a memory probe can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeSystem {
    /// trailkeep, Buffered, batches of 1,000, then a scan.
    Trailkeep,
    /// SQLite WAL synchronous=OFF, 1,000 per transaction, then SELECT all.
    Sqlite,
    /// JSON lines through a buffered writer, then read and parse.
    Jsonl,
}

/// What a probe measured, in KiB.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MemUsage {
    /// VmRSS when the probe started (the binary, libraries, runtime).
    pub start_rss_kib: u64,
    /// VmHWM at the end: the peak resident set.
    pub hwm_kib: u64,
    /// Largest RssAnon seen.
    pub peak_anon_kib: u64,
}

/// A field of /proc/self/status in KiB.
pub(crate) fn status_kib(field: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// Runs in the child: the probe, then prints the usage as JSON on stdout.
pub(crate) fn child(system: ProbeSystem, dir: &Path, records: usize, seed: u64) -> BenchResult<()> {
    let start_rss_kib = status_kib("VmRSS").unwrap_or(0);
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(status_kib("RssAnon").unwrap_or(0)));
    let sampler = {
        let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = status_kib("RssAnon") {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let result = match system {
        ProbeSystem::Trailkeep => super::tk::memory_probe(dir, records, seed),
        ProbeSystem::Sqlite => super::sqlite::memory_probe(dir, records, seed),
        ProbeSystem::Jsonl => super::jsonl::memory_probe(dir, records, seed),
    };
    if let Some(kib) = status_kib("RssAnon") {
        peak.fetch_max(kib, Ordering::Relaxed);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    result?;
    let usage = serde_json::json!({
        "start_rss_kib": start_rss_kib,
        "hwm_kib": status_kib("VmHWM").unwrap_or(0),
        "peak_anon_kib": peak.load(Ordering::Relaxed),
    });
    println!("{usage}");
    Ok(())
}

/// Runs a probe in a child process of this executable and returns what it measured.
pub(crate) fn probe(system: ProbeSystem, dir: &Path, records: usize, seed: u64) -> BenchResult<MemUsage> {
    // /proc/self/exe runs this very binary even when a rebuild has replaced the file since.
    let proc_exe = Path::new("/proc/self/exe");
    let exe = if proc_exe.exists() {
        proc_exe.to_path_buf()
    } else {
        std::env::current_exe().map_err(crate::cli::io_err("finding the trailkeep executable"))?
    };
    let name = match system {
        ProbeSystem::Trailkeep => "trailkeep",
        ProbeSystem::Sqlite => "sqlite",
        ProbeSystem::Jsonl => "jsonl",
    };
    let out = Command::new(exe)
        .arg("bench")
        .arg("--mem-probe")
        .arg(name)
        .arg("--records")
        .arg(records.to_string())
        .arg("--seed")
        .arg(seed.to_string())
        .arg("--work-dir")
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(crate::cli::io_err("running a memory probe"))?;
    if !out.status.success() {
        return Err(fail(format!("the {name} memory probe failed ({})", out.status)));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| fail(format!("the {name} memory probe printed no usage: {e}")))?;
    let get = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    Ok(MemUsage {
        start_rss_kib: get("start_rss_kib"),
        hwm_kib: get("hwm_kib"),
        peak_anon_kib: get("peak_anon_kib"),
    })
}
