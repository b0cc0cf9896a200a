//! A quick look at the disk the benchmark writes to, at its start and at its end, shown
//! in the header: the durable and buffered figures depend on it, and on a shared or
//! virtual disk it can change from one minute to the next.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::report::{self, percentile};
use super::BenchResult;
use crate::cli::io_err;

/// What one look at the disk found.
pub(crate) struct DiskProbe {
    sync_p50: Duration,
    sync_p99: Duration,
    write_bytes: usize,
    write_bytes_per_s: f64,
}

/// How much one look writes: small 4 KiB appends each followed by fdatasync, then one
/// sequential write of `write_mib` MiB and an fdatasync.
pub(crate) struct ProbeSize {
    pub syncs: usize,
    pub write_mib: usize,
}

/// Looks at the disk under `dir` (a file created and removed there).
///
/// # Errors
/// I/O errors.
pub(crate) fn probe(dir: &Path, size: &ProbeSize) -> BenchResult<DiskProbe> {
    let path = dir.join("disk-probe");
    let mut file = File::create(&path).map_err(io_err("creating the disk probe file"))?;
    let block = [0xA5u8; 4096];
    let mut syncs = Vec::with_capacity(size.syncs);
    for _ in 0..size.syncs {
        let started = Instant::now();
        file.write_all(&block).map_err(io_err("writing the disk probe file"))?;
        file.sync_data().map_err(io_err("syncing the disk probe file"))?;
        syncs.push(started.elapsed());
    }
    syncs.sort_unstable();
    let chunk = vec![0x5Au8; 1 << 20];
    let started = Instant::now();
    for _ in 0..size.write_mib {
        file.write_all(&chunk).map_err(io_err("writing the disk probe file"))?;
    }
    file.sync_data().map_err(io_err("syncing the disk probe file"))?;
    let took = started.elapsed();
    drop(file);
    std::fs::remove_file(&path).map_err(io_err("removing the disk probe file"))?;
    let write_bytes = size.write_mib << 20;
    Ok(DiskProbe {
        sync_p50: percentile(&syncs, 50.0),
        sync_p99: percentile(&syncs, 99.0),
        write_bytes,
        write_bytes_per_s: write_bytes as f64 / took.as_secs_f64().max(1e-9),
    })
}

impl DiskProbe {
    pub(crate) fn describe(&self) -> String {
        format!(
            "4 KiB append + fdatasync p50 {} / p99 {}, {} written + fdatasync at {}/s",
            report::seconds(self.sync_p50.as_secs_f64()),
            report::seconds(self.sync_p99.as_secs_f64()),
            report::bytes(self.write_bytes as f64),
            report::bytes(self.write_bytes_per_s),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_measures_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let probe = probe(dir.path(), &ProbeSize { syncs: 5, write_mib: 2 }).unwrap();
        assert!(probe.sync_p50 > Duration::ZERO && probe.sync_p50 <= probe.sync_p99);
        assert!(probe.write_bytes_per_s > 0.0);
        let text = probe.describe();
        assert!(
            text.contains("fdatasync p50") && text.contains("2.0 MiB written"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe file was left"
        );
    }
}
