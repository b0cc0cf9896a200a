//! `trailkeep read`: print records from an offset or a time, optionally following.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Duration;

use crate::cli::format::record_json;
use crate::cli::{open_existing_store, parse_time_us, stdout_err, CliError};
use crate::{Offset, Record};

/// How long a follower sleeps between looks at another process's appends.
const FOLLOW_POLL_MS: u64 = 5;

/// Output formats of `read`.
#[derive(Clone, Copy, Debug, Default, clap::ValueEnum)]
pub enum FormatArg {
    /// One JSON object per record: offset, timestamp, key, value, ...
    #[default]
    Jsonl,
    /// The value bytes exactly, one record per line.
    Raw,
}

/// Arguments of `read`.
#[derive(clap::Args, Debug)]
pub struct ReadArgs {
    /// Topic to read.
    pub topic: String,
    /// Start at this offset [default: the first held]
    #[arg(long, conflicts_with = "from_time")]
    pub from_offset: Option<u64>,
    /// Start at the first record appended at or after this time (RFC 3339 or epoch ms).
    #[arg(long)]
    pub from_time: Option<String>,
    /// Stop after this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Keep waiting for new records (until interrupted).
    #[arg(long)]
    pub follow: bool,
    /// Resume from this consumer group's cursor and commit what was printed.
    #[arg(long, conflicts_with_all = ["from_offset", "from_time"])]
    pub group: Option<String>,
    /// Print the events of this trace (AI event topics), decrypted where keys remain.
    #[arg(long, conflicts_with_all = ["from_offset", "from_time", "group", "follow"])]
    pub trace: Option<String>,
    /// Print the events of this conversation.
    #[arg(long, conflicts_with_all = ["from_offset", "from_time", "group", "follow", "trace"])]
    pub conversation: Option<String>,
    /// Print the events about this data subject.
    #[arg(long, conflicts_with_all = ["from_offset", "from_time", "group", "follow", "trace", "conversation"])]
    pub subject: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: FormatArg,
}

fn write_record(out: &mut impl Write, record: &Record, format: FormatArg) -> std::io::Result<()> {
    match format {
        FormatArg::Jsonl => {
            serde_json::to_writer(&mut *out, &record_json(record))?;
            out.write_all(b"\n")
        }
        FormatArg::Raw => {
            out.write_all(&record.value)?;
            out.write_all(b"\n")
        }
    }
}

/// Runs `read`.
///
/// # Errors
/// Engine errors (e.g. an offset that is not held, corrupt data), output errors
/// ([`CliError::StdoutClosed`] for a closed pipe).
pub fn run(dir: &Path, args: ReadArgs) -> Result<(), CliError> {
    let store = open_existing_store(dir)?;
    let topic = store.topic(&args.topic)?;
    topic.refresh()?;
    if args.trace.is_some() || args.conversation.is_some() || args.subject.is_some() {
        return read_events(&store, &args);
    }
    if let Some(group) = &args.group {
        return read_group(&topic, group, &args);
    }
    let from_us = match &args.from_time {
        Some(time) => Some(parse_time_us(time).map_err(CliError::Usage)?),
        None => None,
    };
    let start = match (args.from_offset, from_us) {
        (Some(offset), _) => Offset(offset),
        (None, Some(t)) => topic.seek_time(t)?.unwrap_or_else(|| topic.end_offset()),
        (None, None) => topic.start_offset(),
    };
    if start < topic.start_offset() || start > topic.end_offset() {
        return Err(topic.out_of_range(start).into());
    }
    print_from(&topic, start, from_us, &args)
}

/// Prints records from `start`; with `--follow`, waits for more at the end. Records
/// before `from_us` are skipped until the first at or after it: a time past the last
/// record starts at the end, and what is appended before that time is not printed.
fn print_from(topic: &crate::Topic, start: Offset, mut from_us: Option<u64>, args: &ReadArgs) -> Result<(), CliError> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let limit = args.limit.unwrap_or(u64::MAX);
    // A replay into a file or pipe shows its progress on a terminal's stderr.
    let bar = if args.follow || std::io::IsTerminal::is_terminal(&std::io::stdout()) {
        indicatif::ProgressBar::hidden()
    } else {
        let todo = (topic.end_offset().0 - start.0).min(limit);
        super::progress::records_bar(todo, format!("reading {}", topic.name()))
    };
    let mut printed = 0u64;
    let mut records = topic.iter(start);
    while printed < limit {
        match records.next() {
            Some(record) => {
                let record = record?;
                if from_us.is_some_and(|t| record.timestamp_us < t) {
                    continue;
                }
                from_us = None;
                write_record(&mut out, &record, args.format).map_err(stdout_err)?;
                printed += 1;
                if printed.is_multiple_of(PROGRESS_EVERY) {
                    bar.set_position(printed);
                }
            }
            None if args.follow => {
                out.flush().map_err(stdout_err)?;
                while !topic.refresh()? {
                    std::thread::sleep(Duration::from_millis(FOLLOW_POLL_MS));
                }
            }
            None => break,
        }
    }
    bar.finish_and_clear();
    out.flush().map_err(stdout_err)
}

/// Records printed between two updates of the progress bar.
const PROGRESS_EVERY: u64 = 4096;

/// Reads as consumer group `group`: prints, flushes, then commits what was printed.
fn read_group(topic: &crate::Topic, group: &str, args: &ReadArgs) -> Result<(), CliError> {
    let mut consumer = topic.consumer(group, crate::ConsumerConfig::default())?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut remaining = args.limit.unwrap_or(u64::MAX);
    let wait = if args.follow {
        Duration::from_millis(500)
    } else {
        Duration::ZERO
    };
    while remaining > 0 {
        let max = remaining.min(1000) as usize;
        let records = consumer.poll(max, wait)?;
        if records.is_empty() && !args.follow {
            break;
        }
        for record in &records {
            write_record(&mut out, record, args.format).map_err(stdout_err)?;
        }
        out.flush().map_err(stdout_err)?;
        consumer.commit()?;
        remaining -= records.len() as u64;
    }
    Ok(())
}

/// Prints the events of one trace, conversation or subject as JSON lines.
fn read_events(store: &crate::Store, args: &ReadArgs) -> Result<(), CliError> {
    use crate::cli::trail_err;
    let trail =
        crate::trail::Trail::open(store, &args.topic, crate::trail::TrailConfig::default()).map_err(trail_err)?;
    let events = match (&args.trace, &args.conversation, &args.subject) {
        (Some(t), _, _) => trail.trace(t, 0, u64::MAX),
        (_, Some(c), _) => trail.conversation(c, 0, u64::MAX),
        (_, _, Some(s)) => trail.subject(s, 0, u64::MAX),
        _ => Ok(Vec::new()),
    }
    .map_err(trail_err)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for event in events.iter().take(args.limit.unwrap_or(u64::MAX) as usize) {
        let json = event.to_json().map_err(|e| CliError::Usage(e.to_string()))?;
        writeln!(out, "{json}").map_err(stdout_err)?;
    }
    out.flush().map_err(stdout_err)
}
