//! `trailkeep append`: one record per input line, appended in batches of what is
//! already buffered, so a slow pipe gets each record appended as it arrives and a bulk
//! file gets large batches.

use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{io_err, open_store, parse_time_us, CliError, DurabilityArg};
use crate::NewRecord;

/// Most records appended by one batch call.
const CLI_BATCH_RECORDS_MAX: usize = 1000;

/// Arguments of `append`.
#[derive(clap::Args, Debug)]
pub struct AppendArgs {
    /// Topic to append to (created on first append).
    pub topic: String,
    /// Input file; stdin when absent.
    pub file: Option<PathBuf>,
    /// Take each record's key from this JSON field (input lines must then be JSON objects).
    #[arg(long)]
    pub key_field: Option<String>,
    /// Take each record's event time from this JSON field (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    pub time_field: Option<String>,
    /// Input lines are AI audit events (see docs/events.md): each is validated against the
    /// schema, keyed by its trace id and indexed by conversation, agent and subject.
    #[arg(long, conflicts_with_all = ["key_field", "time_field"])]
    pub events: bool,
    /// With --events: encrypt this field under the event's subject key (repeatable);
    /// `forget <subject>` makes it unreadable for good.
    #[arg(long, requires = "events")]
    pub personal: Vec<String>,
    /// With --events: redact a field before anything is written, as PATH=drop|mask|pseudonym
    /// (repeatable). Pseudonyms are HMAC-SHA256 under the store's key keys/pseudonym.key.
    #[arg(long, requires = "events")]
    pub redact: Vec<String>,
    /// When a record counts as appended.
    #[arg(long, value_enum, default_value_t)]
    pub durability: DurabilityArg,
    /// Print each record's offset on its own line once it is durable.
    #[arg(long)]
    pub print_offsets: bool,
}

struct LineParser<'a> {
    args: &'a AppendArgs,
    source_name: String,
    trail: Option<crate::trail::Trail>,
}

impl LineParser<'_> {
    /// Parses one line and checks it against the record limits here, so a line over a
    /// limit is reported with its number and never fails the batch of good lines before it.
    fn parse(&self, line_no: u64, line: &[u8]) -> Result<NewRecord, CliError> {
        let record = self.parse_fields(line_no, line)?;
        crate::record::check_limits(&record.as_fields()).map_err(|e| CliError::BadLine {
            source_name: self.source_name.clone(),
            line: line_no,
            reason: e.to_string(),
        })?;
        Ok(record)
    }

    fn parse_fields(&self, line_no: u64, line: &[u8]) -> Result<NewRecord, CliError> {
        if let Some(trail) = &self.trail {
            let bad = |reason: String| CliError::BadLine {
                source_name: self.source_name.clone(),
                line: line_no,
                reason,
            };
            let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
            let event = crate::events::Event::from_json_line(text).map_err(|e| bad(e.to_string()))?;
            return trail.to_record(&event).map_err(|e| bad(e.to_string()));
        }
        let mut record = NewRecord::new(line.to_vec());
        if self.args.key_field.is_none() && self.args.time_field.is_none() {
            return Ok(record);
        }
        let bad = |reason: String| CliError::BadLine {
            source_name: self.source_name.clone(),
            line: line_no,
            reason,
        };
        let value: Value = serde_json::from_slice(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let object = value.as_object().ok_or_else(|| bad("not a JSON object".into()))?;
        if let Some(field) = &self.args.key_field {
            record.key = match object.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => Some(s.as_bytes().to_vec()),
                Some(other) => Some(other.to_string().into_bytes()),
            };
        }
        if let Some(field) = &self.args.time_field {
            record.event_time_us = match object.get(field) {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) => {
                    Some(parse_time_us(s).map_err(|e| bad(format!("field {field}: {e}")))? as i64)
                }
                Some(Value::Number(n)) => {
                    let ms = n
                        .as_u64()
                        .ok_or_else(|| bad(format!("field {field}: not epoch milliseconds")))?;
                    let us = parse_time_us(&ms.to_string()).map_err(|e| bad(format!("field {field}: {e}")))?;
                    Some(us as i64)
                }
                Some(_) => return Err(bad(format!("field {field}: not a time"))),
            };
        }
        Ok(record)
    }
}

/// Runs `append`.
///
/// # Errors
/// The first bad line (everything before it is appended and durable), or engine errors.
pub fn run(dir: &Path, args: AppendArgs) -> Result<(), CliError> {
    let store = open_store(dir, args.durability.to_durability())?;
    let topic = store.topic_or_create(&args.topic)?;
    let (input, size, source_name): (Box<dyn Read>, Option<u64>, String) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size, path.display().to_string())
        }
        None => (Box::new(std::io::stdin()), None, "stdin".to_owned()),
    };
    let progress = progress_bar(size);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let trail = if args.events {
        let config = crate::cli::trail_config(&store, &args.personal, &args.redact)?;
        Some(crate::trail::Trail::open(&store, &args.topic, config).map_err(crate::cli::trail_err)?)
    } else {
        None
    };
    let parser = LineParser {
        args: &args,
        source_name,
        trail,
    };
    let stdout = std::io::stdout();
    let mut line_no = 0u64;
    let mut total = 0u64;
    let mut line = Vec::new();
    let mut batch = Vec::with_capacity(CLI_BATCH_RECORDS_MAX);
    loop {
        batch.clear();
        let mut bad = None;
        let mut eof = false;
        loop {
            line.clear();
            let n = reader
                .read_until(b'\n', &mut line)
                .map_err(io_err(format!("reading {}", parser.source_name)))?;
            if n == 0 {
                eof = true;
                break;
            }
            progress.inc(n as u64);
            line_no += 1;
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            match parser.parse(line_no, &line) {
                Ok(record) => batch.push(record),
                Err(e) => {
                    bad = Some(e);
                    break;
                }
            }
            let more_buffered = reader.buffer().contains(&b'\n');
            if batch.len() >= CLI_BATCH_RECORDS_MAX || !more_buffered {
                break;
            }
        }
        if !batch.is_empty() {
            let appended = topic.append_batch(&batch)?;
            total += appended.count;
            if args.print_offsets {
                let mut out = stdout.lock();
                let mut text = String::with_capacity(batch.len() * 8);
                for offset in appended.offsets() {
                    text.push_str(&offset.0.to_string());
                    text.push('\n');
                }
                let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
                written.map_err(crate::cli::stdout_err)?;
            }
        }
        if let Some(e) = bad {
            store.close()?;
            return Err(e);
        }
        if eof {
            break;
        }
    }
    progress.finish_and_clear();
    store.close()?;
    if std::io::stderr().is_terminal() {
        eprintln!("appended {total} records to {}", args.topic);
    }
    Ok(())
}

/// A byte progress bar on a terminal for a file of known size; hidden otherwise.
pub(crate) fn progress_bar(len: Option<u64>) -> indicatif::ProgressBar {
    match len {
        Some(len) if std::io::stderr().is_terminal() => {
            let bar = indicatif::ProgressBar::new(len);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
            {
                bar.set_style(style);
            }
            bar
        }
        _ => indicatif::ProgressBar::hidden(),
    }
}
