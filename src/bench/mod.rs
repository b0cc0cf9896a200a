//! `trailkeep bench`: trailkeep side by side with SQLite and a JSON-lines file.
//!
//! Every workload runs on every system in one process, round-robin: in each repetition the
//! systems of a workload run one after another, starting with a different system each
//! time, so that drift of the machine (page cache, thermal, neighbours) hits them alike.
//! Figures are medians over repetitions. Peak memory is measured in child processes (see
//! `mem`). Temporary files live under `--work-dir` (else the system temp dir) and are
//! removed at the end, also on error.

mod data;
mod disk;
mod jsonl;
mod mem;
mod report;
mod sqlite;
mod summary;
mod tk;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::CliError;
use crate::Compression;

pub use mem::ProbeSystem;
pub use sqlite::SqliteWriters;

use data::Dataset;
use report::Samples;
use sqlite::Sync;

/// Arguments of `bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A small, fast run that exercises every workload (for CI; not for judging speed).
    #[arg(long)]
    pub quick: bool,
    /// Records per workload [default: 1,000,000; --quick: 20,000].
    #[arg(long)]
    pub records: Option<usize>,
    /// Repetitions; figures are medians [default: 3; --quick: 1].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Records of the single-writer durable workload; the 64-writer one uses 10 times as
    /// many [default: 2,000; --quick: 100].
    #[arg(long)]
    pub durable_records: Option<usize>,
    /// Seeks by time per repetition [default: 10,000; --quick: 1,000].
    #[arg(long)]
    pub seeks: Option<usize>,
    /// Segments of the topic whose open time is measured [default: 1,000; --quick: 100].
    #[arg(long)]
    pub segments: Option<usize>,
    /// Seed of the generated events.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Directory for temporary files [default: the system temp dir].
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// How SQLite's 64 concurrent writers connect.
    #[arg(long, value_enum, default_value_t = SqliteWriters::Shared)]
    pub sqlite_writers: SqliteWriters,
    /// Internal: run one memory probe and print its usage (used by the benchmark itself).
    #[arg(long, value_enum, hide = true)]
    pub mem_probe: Option<ProbeSystem>,
}

pub(crate) type BenchResult<T> = Result<T, CliError>;

pub(crate) fn fail(msg: impl Into<String>) -> CliError {
    CliError::Usage(msg.into())
}

/// Sizes of one run.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub records: usize,
    pub reps: usize,
    pub durable1: usize,
    pub durable64: usize,
    pub writers: usize,
    pub seeks: usize,
    pub segments: usize,
    pub latency_records: usize,
    pub seed: u64,
    pub sqlite_writers: SqliteWriters,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> BenchResult<Plan> {
        let q = args.quick;
        let durable1 = args.durable_records.unwrap_or(if q { 100 } else { 2000 });
        let plan = Plan {
            records: args.records.unwrap_or(if q { 20_000 } else { 1_000_000 }),
            reps: args.reps.unwrap_or(if q { 1 } else { 3 }),
            durable1,
            durable64: durable1 * 10,
            writers: 64,
            seeks: args.seeks.unwrap_or(if q { 1000 } else { 10_000 }),
            segments: args.segments.unwrap_or(if q { 100 } else { 1000 }),
            latency_records: durable1,
            seed: args.seed,
            sqlite_writers: args.sqlite_writers,
        };
        if plan.records < 100 || plan.reps == 0 || plan.durable1 == 0 || plan.seeks == 0 || plan.segments == 0 {
            return Err(fail(
                "bench needs --records >= 100 and --reps, --durable-records, --seeks, --segments >= 1",
            ));
        }
        Ok(plan)
    }
}

/// Progress on stderr when it is a terminal; silent otherwise.
struct Progress(indicatif::ProgressBar);

impl Progress {
    fn new() -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            Progress(bar)
        } else {
            Progress(indicatif::ProgressBar::hidden())
        }
    }

    fn step(&self, msg: String) {
        self.0.set_message(msg);
    }
}

/// Total size of the files under `dir`.
pub(crate) fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

fn fresh(root: &Path, name: &str) -> BenchResult<PathBuf> {
    let dir = root.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(crate::cli::io_err(format!("removing {}", dir.display())))?;
    }
    std::fs::create_dir_all(&dir).map_err(crate::cli::io_err(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// Writes back every file system's dirty data before a timed run, so that one system's
/// leftover writeback (SQLite with synchronous=OFF leaves its whole database dirty) does
/// not land in the next system's time. Every system starts from the same state.
fn settle() {
    rustix::fs::sync();
}

/// Bytes [`settle_and_warm`] writes per record of the run that follows.
const WARM_BYTES_PER_RECORD: usize = 1024;

/// [`settle`], then writes `bytes` to a scratch file and deletes it (never written back:
/// it goes before any writeback starts), for a run that fills the page cache.
///
/// On this project's machines (virtual machines whose guest hands free memory back to
/// the host: free page reporting), page-cache writes into memory the guest has not used
/// lately are several times slower: 300 MiB files written one after another and kept ran
/// at 4.5–5 GiB/s for the first ~2 GiB, then at 0.4–0.75 GiB/s; deleting each before
/// writing the next held 4.5 GiB/s throughout. Profiles of slow runs show the time in
/// the copy into new page-cache pages (31–40% of the run instead of 5–10%). Which run
/// met such memory was luck, so every buffered-append figure varied by ±20–190% over
/// the repetitions. Writing and deleting a scratch file first leaves just-freed memory
/// for the run's own page cache: the same figures now vary by ±1–6%.
fn settle_and_warm(root: &Path, bytes: usize) {
    settle();
    // An unnamed file: it is gone when dropped. A failure only leaves the run unwarmed.
    if let Ok(mut f) = tempfile::tempfile_in(root) {
        let chunk = vec![1u8; 1 << 20];
        for _ in 0..bytes.div_ceil(chunk.len()) {
            if std::io::Write::write_all(&mut f, &chunk).is_err() {
                break;
            }
        }
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs the benchmark.
///
/// # Errors
/// I/O or engine errors.
pub fn run(args: BenchArgs) -> Result<(), CliError> {
    let work = args.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work).map_err(crate::cli::io_err(format!("creating {}", work.display())))?;
    let root = tempfile::Builder::new()
        .prefix("trailkeep-cli-bench-")
        .tempdir_in(&work)
        .map_err(crate::cli::io_err(format!(
            "creating a temporary directory in {}",
            work.display()
        )))?;
    let plan = Plan::from_args(&args)?;
    if let Some(system) = args.mem_probe {
        return mem::child(system, root.path(), plan.records, plan.seed);
    }
    let result = run_all(&plan, root.path(), &work);
    drop(root);
    result
}

fn run_all(plan: &Plan, root: &Path, work: &Path) -> BenchResult<()> {
    let progress = Progress::new();
    progress.step("looking at the disk".into());
    let disk_size = if plan.records >= 100_000 {
        disk::ProbeSize {
            syncs: 200,
            write_mib: 256,
        }
    } else {
        disk::ProbeSize {
            syncs: 20,
            write_mib: 16,
        }
    };
    settle();
    let disk_at_start = disk::probe(root, &disk_size)?;
    progress.step(format!("generating {} events", plan.records));
    let data = Dataset::generate(plan.records, plan.seed);
    let mut samples = Samples::default();
    let mut extra = summary::Extra::default();

    progress.step("building the seek fixtures".into());
    let seek_tk = fresh(root, "seek-trailkeep")?;
    let times = tk::build_seek_topic(&seek_tk, &data)?;
    let seek_sq = fresh(root, "seek-sqlite")?;
    sqlite::append_batches(&seek_sq, &data, plan.records, 1000, Sync::Off)?;
    progress.step(format!("building a topic of {} segments", plan.segments));
    let segs_dir = fresh(root, "segments")?;
    extra.segments = tk::build_segments(&segs_dir, &data, plan.segments)?;

    for rep in 0..plan.reps {
        let p = |what: &str| progress.step(format!("repetition {}/{}: {what}", rep + 1, plan.reps));
        let n = plan.records;

        p("buffered append");
        const APPEND_SYSTEMS: usize = 7;
        // The runs whose files the replay reads: trailkeep, SQLite off, JSON lines.
        const REPLAYED: [usize; 3] = [0, 3, 5];
        let dirs: Vec<PathBuf> = (0..APPEND_SYSTEMS)
            .map(|k| fresh(root, &format!("append-{k}")))
            .collect::<BenchResult<_>>()?;
        for k in 0..APPEND_SYSTEMS {
            settle_and_warm(root, n * WARM_BYTES_PER_RECORD);
            let system = (k + rep) % APPEND_SYSTEMS;
            let d = &dirs[system];
            let mut trailkeep = |name: &'static str, compression, tamper| -> BenchResult<()> {
                let t = tk::append_batches(d, &data, n, 1000, compression, tamper)?;
                samples.add("append", name, rate(n, t.appends));
                samples.add("append_close", name, rate(n, t.with_close));
                Ok(())
            };
            match system {
                0 => trailkeep("tk", Compression::None, true)?,
                1 => trailkeep("tk_zstd", Compression::Zstd, true)?,
                2 => trailkeep("tk_plain", Compression::None, false)?,
                3 => samples.add(
                    "append",
                    "sq_off",
                    rate(n, sqlite::append_batches(d, &data, n, 1000, Sync::Off)?),
                ),
                4 => samples.add(
                    "append",
                    "sq_normal",
                    rate(n, sqlite::append_batches(d, &data, n, 1000, Sync::Normal)?),
                ),
                5 => samples.add("append", "jl", rate(n, jsonl::append(d, &data, n, None)?)),
                _ => samples.add("append", "jl_sync", rate(n, jsonl::append(d, &data, n, Some(1000))?)),
            }
            match system {
                0 => samples.add("disk", "tk", tk::topic_bytes(d) as f64),
                1 => samples.add("disk", "tk_zstd", tk::topic_bytes(d) as f64),
                2 => samples.add("disk", "tk_plain", tk::topic_bytes(d) as f64),
                3 => samples.add("disk", "sq", sqlite::file_bytes(d) as f64),
                5 => samples.add("disk", "jl", dir_bytes(d) as f64),
                _ => {}
            }
            // Only what the replay reads stays: the next run's page cache then comes
            // from memory just freed (see `settle_and_warm`).
            if !REPLAYED.contains(&system) {
                remove(d);
            }
        }

        p("full replay");
        for k in 0..3 {
            settle();
            match (k + rep) % 3 {
                0 => {
                    let (t, c) = tk::replay(&dirs[0])?;
                    check_count("trailkeep replay", c, n)?;
                    samples.add("replay", "tk", rate(n, t));
                }
                1 => {
                    let (t, c) = sqlite::replay(&dirs[3])?;
                    check_count("SQLite replay", c, n)?;
                    samples.add("replay", "sq", rate(n, t));
                }
                _ => {
                    let (t, c) = jsonl::replay(&dirs[5])?;
                    check_count("JSON-lines replay", c, n)?;
                    samples.add("replay", "jl", rate(n, t));
                }
            }
        }
        for d in &dirs {
            remove(d);
        }

        p("seek by time");
        let seed = plan.seed.wrapping_add(rep as u64);
        let tk_targets = tk::pick_targets(&times, plan.seeks, seed);
        let sq_targets = sqlite::pick_targets(&data, plan.seeks, seed);
        for k in 0..2 {
            let (system, mut d) = if (k + rep) % 2 == 0 {
                ("tk", tk::seeks(&seek_tk, &tk_targets)?)
            } else {
                ("sq", sqlite::seeks(&seek_sq, &sq_targets)?)
            };
            let total: Duration = d.iter().sum();
            samples.add("seek", system, rate(d.len(), total));
            d.sort_unstable();
            samples.add("seek_p99", system, secs(report::percentile(&d, 99.0)));
        }

        for (workload, writers, count) in [
            ("durable1", 1, plan.durable1),
            ("durable64", plan.writers, plan.durable64),
        ] {
            p(&format!("durable append, {writers} writer(s)"));
            // Many writers also as async tasks (`append_async`): a fourth system.
            let systems = if writers > 1 { 4 } else { 3 };
            for k in 0..systems {
                let d = fresh(root, "durable")?;
                settle();
                match (k + rep) % systems {
                    0 => samples.add(workload, "tk", rate(count, tk::durable(&d, &data, count, writers)?)),
                    1 => {
                        let t = sqlite::durable(&d, &data, count, writers, Sync::Full, plan.sqlite_writers)?;
                        samples.add(workload, "sq", rate(count, t));
                    }
                    2 => samples.add(workload, "jl", rate(count, jsonl::durable(&d, &data, count, writers)?)),
                    _ => samples.add(
                        workload,
                        "tk_async",
                        rate(count, tk::durable_async(&d, &data, count, writers)?),
                    ),
                }
                remove(&d);
            }
        }

        p("open a topic of many segments");
        for _ in 0..5 {
            samples.add("open", "tk", secs(tk::open_and_read_last(&segs_dir)?));
        }

        p("append-to-consumer latency");
        let d = fresh(root, "latency")?;
        extra
            .latencies
            .extend(tk::consumer_latency(&d, &data, plan.latency_records)?);
        remove(&d);
    }
    remove(&seek_tk);
    remove(&seek_sq);
    remove(&segs_dir);
    drop(data);

    let small = (plan.records / 10).max(100);
    for (size, records) in [("small", small), ("large", plan.records)] {
        for system in [ProbeSystem::Trailkeep, ProbeSystem::Sqlite, ProbeSystem::Jsonl] {
            progress.step(format!("peak memory: {system:?}, {records} records (child process)"));
            let usage = mem::probe(system, root, records, plan.seed)?;
            extra.memory.push((size, records, system, usage));
        }
    }
    progress.step("looking at the disk again".into());
    settle();
    let disk_at_end = disk::probe(root, &disk_size)?;
    progress.0.finish_and_clear();

    // One write at the end, through the command line's stdout handling: a reader that
    // closed the pipe ends the command quietly (println! would panic).
    let mut text = format!("trailkeep bench — {}\n", report::machine());
    text += &format!("disk under {}\n", work.display());
    text += &format!("  at the start: {}\n", disk_at_start.describe());
    text += &format!("  at the end:   {}\n", disk_at_end.describe());
    text += &format!(
        "{} records of {} bytes on average (AI-audit JSON events, seed {}), {} repetition(s), medians; \
         SQLite {} (bundled); files in {}\n\n",
        plan.records,
        data_mean_bytes(plan),
        plan.seed,
        plan.reps,
        rusqlite::version(),
        work.display()
    );
    text += &report::table(&summary::lines(plan, &samples, &extra));
    text.push('\n');
    for note in summary::notes(plan) {
        text += &format!("{note}\n");
    }
    crate::cli::print_text(&text)
}

fn data_mean_bytes(plan: &Plan) -> usize {
    let sample = Dataset::generate(plan.records.min(10_000), plan.seed);
    sample.value_bytes() / sample.len().max(1)
}

fn check_count(what: &str, got: u64, want: usize) -> BenchResult<()> {
    if got == want as u64 {
        Ok(())
    } else {
        Err(fail(format!("{what} saw {got} records, expected {want}")))
    }
}
