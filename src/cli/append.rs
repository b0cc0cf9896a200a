//! `trailkeep append`: one record per input line, appended in batches of what is
//! already buffered, so a slow pipe gets each record appended as it arrives and a bulk
//! file gets large batches.

use std::io::{BufRead, BufReader, IsTerminal, Read};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::{io_err, open_store, parse_time_us, CliError, DurabilityArg};
use crate::{NewRecord, Store, Topic};

/// Most records appended by one batch call.
const CLI_BATCH_RECORDS_MAX: usize = 1000;

/// Arguments of `append`.
#[derive(clap::Args, Debug)]
pub struct AppendArgs {
    /// Topic to append to (created with the first valid record).
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

/// What `--events` makes records with: the store's subject keys and the redaction and
/// encryption settings (no topic: it is created only once a first record is valid).
struct EventEncoding {
    keys: crate::events::KeyStore,
    config: crate::trail::TrailConfig,
}

struct LineParser<'a> {
    args: &'a AppendArgs,
    source_name: String,
    events: Option<EventEncoding>,
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
        if let Some(events) = &self.events {
            let bad = |reason: String| CliError::BadLine {
                source_name: self.source_name.clone(),
                line: line_no,
                reason,
            };
            let text = std::str::from_utf8(line).map_err(|_| bad("not UTF-8".into()))?;
            let event = crate::events::Event::from_json_line(text).map_err(|e| bad(e.to_string()))?;
            let record = crate::trail::event_record(&events.keys, &events.config, &event);
            return record.map_err(|e| bad(e.to_string()));
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

/// Where valid records go: the topic, opened when it exists and created at the first
/// batch otherwise, so that input failing on its first line (or holding none) leaves no
/// empty topic behind; and stdout, for `--print-offsets`.
struct Sink<'a> {
    store: &'a Store,
    name: &'a str,
    topic: Option<Topic>,
    print_offsets: bool,
    total: u64,
}

impl Sink<'_> {
    fn append(&mut self, batch: &[NewRecord]) -> Result<(), CliError> {
        let topic = match self.topic.take() {
            Some(topic) => topic,
            None => self.store.topic_or_create(self.name)?,
        };
        let topic = self.topic.insert(topic);
        let appended = topic.append_batch(batch)?;
        self.total += appended.count;
        if self.print_offsets {
            let mut text = String::with_capacity(batch.len() * 8);
            for offset in appended.offsets() {
                text.push_str(&offset.0.to_string());
                text.push('\n');
            }
            crate::cli::print_text(&text)?;
        }
        Ok(())
    }
}

/// Runs `append`.
///
/// # Errors
/// The first bad line (everything before it is appended and durable), or engine errors.
pub fn run(dir: &Path, args: AppendArgs) -> Result<(), CliError> {
    let store = open_store(dir, args.durability.to_durability())?;
    let topic = match store.topic(&args.topic) {
        Ok(topic) => Some(topic),
        Err(crate::Error::NoSuchTopic(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let (input, size, source_name): (Box<dyn Read>, Option<u64>, String) = match &args.file {
        Some(path) => {
            let file = std::fs::File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
            let size = file.metadata().ok().map(|m| m.len());
            (Box::new(file), size, path.display().to_string())
        }
        None => (Box::new(std::io::stdin()), None, "stdin".to_owned()),
    };
    let events = if args.events {
        let keys = crate::events::KeyStore::open(store.dir().join(crate::trail::SUBJECT_KEYS_DIR))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let config = crate::cli::trail_config(&store, &args.personal, &args.redact)?;
        Some(EventEncoding { keys, config })
    } else {
        None
    };
    let parser = LineParser {
        args: &args,
        source_name,
        events,
    };
    let mut sink = Sink {
        store: &store,
        name: &args.topic,
        topic,
        print_offsets: args.print_offsets,
        total: 0,
    };
    let progress = super::progress::bytes_bar(size);
    let mut reader = BufReader::with_capacity(1 << 20, input);
    let appended = append_lines(&mut reader, &parser, &progress, &mut sink);
    progress.finish_and_clear();
    let total = sink.total;
    // Closed (synced) before a bad line is reported: the lines before it are durable.
    let closed = store.close();
    appended?;
    closed?;
    if std::io::stderr().is_terminal() {
        note!("appended {total} records to {}", args.topic);
    }
    Ok(())
}

/// UTF-8's byte order mark, which editors on Windows put before the first line.
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// A line without its ending (`\n` or `\r\n`) and, on line 1, without a byte order mark:
/// files saved on Windows append the same records as their unix twins. A `\r` elsewhere
/// is part of the record.
fn line_text(line_no: u64, line: &[u8]) -> &[u8] {
    let line = line
        .strip_suffix(b"\r\n")
        .or_else(|| line.strip_suffix(b"\n"))
        .unwrap_or(line);
    match line_no {
        1 => line.strip_prefix(UTF8_BOM).unwrap_or(line),
        _ => line,
    }
}

/// Longest input line read into memory, its line end included: twice the record limit (an `--events` line may
/// lose redacted fields on its way to a record). A longer line is skipped through to its
/// end without being kept, and refused.
const LINE_BYTES_MAX: usize = 2 * crate::record::RECORD_BYTES_MAX;

/// Reads one line (with its `\n`) into `line`, keeping at most `max` bytes: returns the
/// bytes consumed (0 at the end of input) and whether the line was longer than `max`
/// (then `line` holds only its first `max` bytes, and the rest was read and dropped).
fn read_line_bounded(reader: &mut impl BufRead, line: &mut Vec<u8>, max: usize) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, consumed > max));
        }
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = max.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        reader.consume(n);
        consumed += n;
        if done {
            return Ok((consumed, consumed > max));
        }
    }
}

/// Appends the input's lines in batches of what is already buffered, up to the first
/// bad line.
fn append_lines(
    reader: &mut BufReader<Box<dyn Read>>,
    parser: &LineParser<'_>,
    progress: &indicatif::ProgressBar,
    sink: &mut Sink<'_>,
) -> Result<(), CliError> {
    let mut line_no = 0u64;
    let mut line = Vec::new();
    let mut batch = Vec::with_capacity(CLI_BATCH_RECORDS_MAX);
    loop {
        batch.clear();
        let mut bad = None;
        let mut eof = false;
        loop {
            line.clear();
            let (n, too_long) = read_line_bounded(reader, &mut line, LINE_BYTES_MAX)
                .map_err(io_err(format!("reading {}", parser.source_name)))?;
            if n == 0 {
                eof = true;
                break;
            }
            progress.inc(n as u64);
            line_no += 1;
            if too_long {
                bad = Some(CliError::BadLine {
                    source_name: parser.source_name.clone(),
                    line: line_no,
                    reason: format!("the line is {n} bytes, over the longest line read ({LINE_BYTES_MAX} bytes: twice the record limit)"),
                });
                break;
            }
            match parser.parse(line_no, line_text(line_no, &line)) {
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
            sink.append(&batch)?;
        }
        if let Some(e) = bad {
            return Err(e);
        }
        if eof {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_longer_than_the_bound_are_read_through_not_kept() {
        let input = [b"short\n".as_slice(), &[b'x'; 100], b"\nlast"].concat();
        let mut reader = std::io::BufReader::with_capacity(16, input.as_slice());
        let mut line = Vec::new();
        assert_eq!(read_line_bounded(&mut reader, &mut line, 10).unwrap(), (6, false));
        assert_eq!(line, b"short\n");
        line.clear();
        assert_eq!(read_line_bounded(&mut reader, &mut line, 10).unwrap(), (101, true));
        assert_eq!(line, [b'x'; 10]);
        line.clear();
        assert_eq!(read_line_bounded(&mut reader, &mut line, 10).unwrap(), (4, false));
        assert_eq!(line, b"last");
        line.clear();
        assert_eq!(read_line_bounded(&mut reader, &mut line, 10).unwrap(), (0, false));
        // The bound counts the line's end: 10 bytes fit, and 9 with their newline.
        let mut reader = std::io::BufReader::new([b'y'; 10].as_slice());
        assert_eq!(read_line_bounded(&mut reader, &mut line, 10).unwrap(), (10, false));
        let mut reader = std::io::BufReader::new(b"yyyyyyyyyy\n".as_slice());
        assert_eq!(read_line_bounded(&mut reader, &mut line, 10).unwrap(), (11, true));
    }

    #[test]
    fn line_endings_and_the_byte_order_mark() {
        assert_eq!(line_text(1, b"\xef\xbb\xbfa\r\n"), b"a");
        assert_eq!(line_text(2, b"\xef\xbb\xbfa\r\n"), b"\xef\xbb\xbfa");
        assert_eq!(line_text(3, b"\r\n"), b"");
        assert_eq!(line_text(3, b"a\rb\n"), b"a\rb");
        assert_eq!(line_text(3, b"no newline"), b"no newline");
        // A lone \r at the end of the input is not a line ending.
        assert_eq!(line_text(3, b"cut\r"), b"cut\r");
        assert_eq!(line_text(3, b"a\r\r\n"), b"a\r");
    }
}
