//! The `trailkeep` command line: argument parsing and one function per command.
//!
//! **Invariant:** only this module (and `src/bin`) knows about JSON lines, terminals and
//! exit codes; the engine below it deals in records and offsets.

/// `eprintln!` that cannot panic: a message to standard error, dropped when stderr is
/// closed (`trailkeep ... 2>&-`), where `eprintln!` would panic.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod append;
mod demo;
mod evidence;
mod format;
mod groups;
mod mirror;
mod progress;
mod read;
mod serve;
mod tier;

use std::io::Write;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::{Compression, Durability, Store, TopicConfig};

pub use format::{parse_duration_ms, parse_time_us};

/// Errors of the command line: the engine's, plus bad input with its place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// An engine error.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// A bad input line.
    #[error("{source_name} line {line}: {reason}")]
    BadLine {
        /// Input name (file path or "stdin").
        source_name: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A bad argument.
    #[error("{0}")]
    Usage(String),
    /// Reading input or writing output failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Standard output was closed by its reader (`trailkeep read t | head -1`): the
    /// command stops where it was, quietly, with exit status [`EXIT_STDOUT_CLOSED`].
    #[error("standard output was closed")]
    StdoutClosed,
}

/// Exit status once standard output was closed by its reader: 128 + SIGPIPE, what a unix
/// tool killed by that signal reports (`seq 1000000 | head -1`). Not 0: the command did
/// not finish (an `append --print-offsets` stops before the rest of its input).
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// The error of a failed write to standard output: [`CliError::StdoutClosed`] for a
/// closed pipe, so that no command prints an error (or panics, as `println!` does) then.
pub(crate) fn stdout_err(source: std::io::Error) -> CliError {
    if source.kind() == std::io::ErrorKind::BrokenPipe {
        CliError::StdoutClosed
    } else {
        CliError::Io {
            context: "writing to stdout".into(),
            source,
        }
    }
}

/// Writes `text` to standard output and flushes it.
pub(crate) fn print_text(text: &str) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(stdout_err)
}

pub(crate) fn io_err(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
    let context = context.into();
    move |source| CliError::Io { context, source }
}

/// trailkeep: an embedded, append-only, tamper-evident audit log store.
#[derive(Parser, Debug)]
#[command(name = "trailkeep", version, about)]
pub struct Cli {
    /// The store directory
    #[arg(long, global = true, env = "TRAILKEEP_DIR", default_value = "trailkeep-data")]
    pub dir: PathBuf,
    /// True when --dir or TRAILKEEP_DIR was given (demo uses a temporary store otherwise).
    #[arg(skip)]
    pub dir_given: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// List topics, or create one.
    Topics {
        /// `create <topic>`; without it, list topics.
        #[command(subcommand)]
        action: Option<TopicsAction>,
    },
    /// Sizes and offsets of every topic.
    Stats,
    /// Append one record per input line (stdin when FILE is absent).
    ///
    /// Lines end at \n or \r\n; a UTF-8 byte order mark before the first line is skipped.
    /// A line over 8 MiB (twice the record limit) is refused without being read into memory.
    Append(append::AppendArgs),
    /// Print records.
    Read(read::ReadArgs),
    /// List consumer groups of a topic with position and lag, or reset / delete one.
    Groups(groups::GroupsArgs),
    /// Recompute checksums, Merkle leaves and checkpoints; with --checkpoint, check the
    /// store against a checkpoint kept elsewhere.
    Verify(evidence::VerifyArgs),
    /// Sign and print a checkpoint of a topic (or print the latest, or the public key).
    Checkpoint(evidence::CheckpointArgs),
    /// Print an inclusion proof (c2sp.org/tlog-proof@v1) or a consistency proof.
    Prove(evidence::ProveArgs),
    /// Tiering of sealed segments to object storage: status, upload now, restore.
    Tier(tier::TierArgs),
    /// Erase a data subject: destroy its key (its encrypted fields become unreadable) and
    /// append an erasure record; hashes and proofs still verify.
    Forget {
        /// The subject id.
        subject: String,
        /// Topics to record the erasure in [default: every topic]
        #[arg(long)]
        topic: Vec<String>,
    },
    /// Simulated agents, consumer groups with lag, replay from a time, erasure and tamper
    /// detection, on a temporary store (or --dir).
    Demo(demo::DemoArgs),
    /// Measure trailkeep side by side with SQLite and JSON lines on this machine.
    Bench(crate::bench::BenchArgs),
    /// Serve the Kafka wire protocol: existing Kafka clients produce and consume (docs/server.md).
    Serve(serve::ServeArgs),
    /// Forward topics into a Kafka-compatible cluster, at-least-once, resuming from a group.
    Mirror(mirror::MirrorArgs),
}

/// `topics` sub-commands.
#[derive(Subcommand, Debug)]
pub enum TopicsAction {
    /// Create a topic with explicit settings.
    Create {
        /// Topic name: letters, digits, '.', '_' and '-'.
        topic: String,
        /// Seal a segment once it holds this many bytes [default: 128 MiB]
        #[arg(long)]
        segment_bytes: Option<u64>,
        /// Payload compression of new batches.
        #[arg(long, value_enum, default_value_t = CompressionArg::None)]
        compression: CompressionArg,
        /// Delete the oldest sealed segments while the topic holds more bytes than this.
        #[arg(long)]
        retention_bytes: Option<u64>,
        /// Delete sealed segments whose newest record is older than this (e.g. 7d, 12h, 30m).
        #[arg(long)]
        retention_age: Option<String>,
        /// Never let size or age retention delete records a consumer group has not consumed.
        #[arg(long)]
        retention_until_consumed: bool,
        /// Hard cap on bytes that wins over --retention-until-consumed (losses are reported).
        #[arg(long)]
        retention_hard_bytes: Option<u64>,
    },
}

/// `--compression` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CompressionArg {
    /// Stored as is.
    None,
    /// zstd per batch.
    Zstd,
}

/// `--durability` values.
#[derive(Clone, Copy, Debug, ValueEnum, Default)]
pub enum DurabilityArg {
    /// Acknowledged = fdatasync'd (group commit).
    #[default]
    Always,
    /// Synced every 100 ms.
    Interval,
    /// Synced at exit; rolled segments in the background once appends pause (within ~1 s).
    None,
}

impl DurabilityArg {
    fn to_durability(self) -> Durability {
        match self {
            DurabilityArg::Always => Durability::Always,
            DurabilityArg::Interval => Durability::IntervalMs(100),
            DurabilityArg::None => Durability::Buffered,
        }
    }
}

/// Runs the parsed command line.
///
/// # Errors
/// Whatever the command met; the binary prints it and exits non-zero.
pub fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::Topics { action: None } => {
            let store = open_existing_store(&cli.dir)?;
            let mut out = std::io::stdout().lock();
            for name in store.topic_names()? {
                writeln!(out, "{name}").map_err(stdout_err)?;
            }
            Ok(())
        }
        Command::Topics {
            action:
                Some(TopicsAction::Create {
                    topic,
                    segment_bytes,
                    compression,
                    retention_bytes,
                    retention_age,
                    retention_until_consumed,
                    retention_hard_bytes,
                }),
        } => {
            let mut config = TopicConfig::default().retention_until_consumed(retention_until_consumed);
            if let Some(bytes) = retention_hard_bytes {
                config = config.retention_hard_bytes(bytes);
            }
            if let Some(bytes) = segment_bytes {
                config = config.segment_bytes(bytes);
            }
            if let Some(bytes) = retention_bytes {
                config = config.retention_bytes(bytes);
            }
            if let Some(age) = retention_age {
                config = config.retention_age_ms(parse_duration_ms(&age).map_err(CliError::Usage)?);
            }
            config = config.compression(match compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Zstd => Compression::Zstd,
            });
            let store = open_store(&cli.dir, Durability::Always)?;
            store.create_topic(&topic, config)?;
            note!("created topic {topic}");
            Ok(())
        }
        Command::Stats => stats(&cli.dir),
        Command::Append(args) => append::run(&cli.dir, args),
        Command::Read(args) => read::run(&cli.dir, args),
        Command::Groups(args) => groups::run(&cli.dir, args),
        Command::Bench(args) => crate::bench::run(args),
        Command::Forget { subject, topic } => forget(&cli.dir, &subject, topic),
        Command::Demo(args) => demo::run(cli.dir_given.then_some(cli.dir.as_path()), args),
        Command::Verify(args) => evidence::verify(&cli.dir, args),
        Command::Checkpoint(args) => evidence::checkpoint(&cli.dir, args),
        Command::Prove(args) => evidence::prove(&cli.dir, args),
        Command::Tier(args) => tier::run(&cli.dir, args),
        Command::Serve(args) => serve::run(&cli.dir, args),
        Command::Mirror(args) => mirror::run(&cli.dir, args),
    }
}

/// Opens the store in `dir`, creating it if needed: for commands that write records.
pub(crate) fn open_store(dir: &std::path::Path, durability: Durability) -> Result<Store, CliError> {
    Ok(Store::builder(dir).durability(durability).open()?)
}

/// Opens the store in `dir` for a command that reads or maintains one: a mistyped `--dir`
/// is an error naming the path, and nothing is created there.
pub(crate) fn open_existing_store(dir: &std::path::Path) -> Result<Store, CliError> {
    require_store(dir)?;
    Ok(Store::builder(dir).create_if_missing(false).open()?)
}

/// Fails unless `dir` holds a store ([`Store::exists_at`]), saying which commands make one.
pub(crate) fn require_store(dir: &std::path::Path) -> Result<(), CliError> {
    if Store::exists_at(dir) {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "no trailkeep store at {} (append, topics create, demo, serve and tier restore create one)",
        dir.display()
    )))
}

fn stats(dir: &std::path::Path) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<32} {:>12} {:>12} {:>12} {:>9} {:>14}",
        "topic", "start", "end", "records", "segments", "bytes"
    )
    .map_err(stdout_err)?;
    let mut unreadable = Vec::new();
    for name in store.topic_names()? {
        // A damaged topic is reported and skipped: the others are still shown.
        let s = match store.topic(&name).and_then(|topic| topic.stats()) {
            Ok(s) => s,
            Err(e) => {
                note!("error: topic {name}: {e}");
                unreadable.push(name);
                continue;
            }
        };
        writeln!(
            out,
            "{:<32} {:>12} {:>12} {:>12} {:>9} {:>14}",
            s.name,
            s.start_offset,
            s.end_offset,
            s.end_offset.0 - s.start_offset.0,
            s.segments,
            s.bytes
        )
        .map_err(stdout_err)?;
    }
    tier::print_stats(&mut out, &store)?;
    if !unreadable.is_empty() {
        return Err(CliError::Usage(format!(
            "{} topic(s) could not be read (above): {}",
            unreadable.len(),
            unreadable.join(", ")
        )));
    }
    Ok(())
}

fn forget(dir: &std::path::Path, subject: &str, topics: Vec<String>) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let topics = if topics.is_empty() {
        store.topic_names()?
    } else {
        topics
    };
    if topics.is_empty() {
        return Err(CliError::Usage(
            "the store has no topic to record the erasure in".into(),
        ));
    }
    // Every named topic exists before the key is destroyed: an erasure is recorded in
    // topics that are there, never in one a typo would create.
    for name in &topics {
        store.topic(name)?;
    }
    let mut out = std::io::stdout().lock();
    for (i, name) in topics.iter().enumerate() {
        let trail = crate::trail::Trail::open(&store, name, crate::trail::TrailConfig::default()).map_err(trail_err)?;
        let offset = if i == 0 {
            trail.forget(subject)
        } else {
            trail.record_erasure(subject)
        }
        .map_err(trail_err)?;
        writeln!(out, "{name} {offset}").map_err(stdout_err)?;
    }
    note!("forgot subject {subject}: its key is destroyed");
    store.close()?;
    Ok(())
}

pub(crate) fn trail_err(e: crate::trail::TrailError) -> CliError {
    match e {
        crate::trail::TrailError::Store(e) => CliError::Store(e),
        other => CliError::Usage(other.to_string()),
    }
}

/// Builds the redaction and encryption settings of `--personal` / `--redact` flags.
pub(crate) fn trail_config(
    store: &Store,
    personal: &[String],
    redact: &[String],
) -> Result<crate::trail::TrailConfig, CliError> {
    use crate::events::{PseudonymKey, RedactAction, Redactor, Shredder};
    let usage = |e: crate::events::EventError| CliError::Usage(e.to_string());
    let mut config = crate::trail::TrailConfig::default();
    if !personal.is_empty() {
        config.shredder = Some(Shredder::new(personal.iter().map(String::as_str)).map_err(usage)?);
    }
    if !redact.is_empty() {
        let mut redactor = Redactor::new();
        for rule in redact {
            let (path, action) = rule
                .split_once('=')
                .ok_or_else(|| CliError::Usage(format!("--redact {rule}: expected PATH=drop|mask|pseudonym")))?;
            let action = match action {
                "drop" => RedactAction::Drop,
                "mask" => RedactAction::Mask,
                "pseudonym" => {
                    let secret = crate::trail::pseudonym_secret(store).map_err(trail_err)?;
                    redactor = redactor.with_pseudonym_key(PseudonymKey::new("k1", secret).map_err(usage)?);
                    RedactAction::Pseudonymize
                }
                other => {
                    return Err(CliError::Usage(format!(
                        "--redact {path}={other}: expected drop, mask or pseudonym"
                    )))
                }
            };
            redactor = redactor.rule(path, action).map_err(usage)?;
        }
        config.redactor = Some(redactor);
    }
    Ok(config)
}

/// Whether log lines carry ANSI colours: only on a terminal, and not when `NO_COLOR` is
/// set to anything but the empty string (no-color.org). A file or pipe gets plain text.
fn log_colour(stderr_is_terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    stderr_is_terminal && no_color.is_none_or(std::ffi::OsStr::is_empty)
}

/// Parses arguments, runs, prints errors; returns the process exit code.
pub fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRAILKEEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let colour = log_colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let mut cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.dir_given = matches.value_source("dir") != Some(clap::parser::ValueSource::DefaultValue);
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(CliError::StdoutClosed) => std::process::ExitCode::from(EXIT_STDOUT_CLOSED),
        Err(e) => {
            note!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_coloured_only_on_a_terminal_without_no_color() {
        let set = Some(std::ffi::OsStr::new("1"));
        let empty = Some(std::ffi::OsStr::new(""));
        assert!(log_colour(true, None));
        assert!(log_colour(true, empty), "an empty NO_COLOR counts as unset");
        assert!(!log_colour(true, set));
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, set));
    }
}
