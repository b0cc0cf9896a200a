//! A consumer: reads from a group's position, waits for appends at the head, commits.

use std::time::{Duration, Instant};

use crate::cursor::file::CursorFile;
use crate::topic::{Records, Topic};
use crate::{Error, Offset, Record, Result};

/// Longest sleep between looks at another process's appends while waiting at the head.
const POLL_SLEEP_MAX_MS: u64 = 2;

/// When the consumer commits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CommitMode {
    /// Only when [`Consumer::commit`] is called. The default.
    #[default]
    Manual,
    /// Each `poll` first commits what the previous `poll` returned (at-least-once: a crash
    /// re-delivers at most the last poll's records).
    OnNextPoll,
}

/// Where a group without a committed position starts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StartAt {
    /// The first record held. The default.
    #[default]
    Earliest,
    /// Only records appended from now on.
    Latest,
}

/// What to do when the group's position was deleted by retention.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OutOfRangePolicy {
    /// Fail with [`Error::GroupOutOfRange`], carrying the earliest available offset. The default.
    #[default]
    Error,
    /// Jump to the earliest record held, and log the jump.
    ResetToEarliest,
}

/// Consumer settings; each documents its default.
#[derive(Clone, Copy, Debug, Default)]
pub struct ConsumerConfig {
    /// Default [`CommitMode::Manual`].
    pub commit_mode: CommitMode,
    /// Default [`StartAt::Earliest`].
    pub start_at: StartAt,
    /// Default [`OutOfRangePolicy::Error`].
    pub out_of_range: OutOfRangePolicy,
}

/// Reads a topic for a consumer group. Holds the group's lock: one consumer per group.
///
/// The contract is at-least-once: records returned but not committed are returned again
/// after a crash. A consumer that keeps its own state can get effectively-once by storing
/// the offset it has processed *with* that state (in the same transaction or file) and
/// seeking there on start, using the group cursor only as a lag marker.
pub struct Consumer {
    topic: Topic,
    group: String,
    cursor: CursorFile,
    config: ConsumerConfig,
    records: Records,
    position: Offset,
    uncommitted_since_poll: Option<Offset>,
}

impl Topic {
    /// Opens a consumer of `group`.
    ///
    /// # Errors
    /// [`Error::Locked`] when another consumer of the group is open; I/O errors.
    pub fn consumer(&self, group: &str, config: ConsumerConfig) -> Result<Consumer> {
        self.refresh()?;
        let path = self.ensure_groups_dir(group)?;
        let cursor = CursorFile::open_locked(self.name(), group, &path)?;
        if cursor.last().is_none() {
            // Entries but none valid is corruption, not "no position yet": never start over silently.
            crate::cursor::file::read_cursor(&path)?;
        }
        let position = match (cursor.last(), config.start_at) {
            (Some(entry), _) => entry.offset,
            (None, StartAt::Earliest) => self.start_offset(),
            (None, StartAt::Latest) => self.end_offset(),
        };
        Ok(Consumer {
            records: self.iter(position),
            topic: self.clone(),
            group: group.to_owned(),
            cursor,
            config,
            position,
            uncommitted_since_poll: None,
        })
    }
}

impl Consumer {
    /// The next offset `poll` will return.
    pub fn position(&self) -> Offset {
        self.position
    }

    /// The group's committed position.
    pub fn committed(&self) -> Option<Offset> {
        self.cursor.last().map(|e| e.offset)
    }

    /// Records not yet returned: end offset - position.
    pub fn lag(&self) -> u64 {
        self.topic.end_offset().0.saturating_sub(self.position.0)
    }

    /// Moves the position (not the committed cursor).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] for an offset not held.
    pub fn seek(&mut self, offset: Offset) -> Result<()> {
        if offset < self.topic.start_offset() || offset > self.topic.end_offset() {
            return Err(self.topic.out_of_range(offset));
        }
        self.position = offset;
        self.records = self.topic.iter(offset);
        Ok(())
    }

    /// Commits the current position: everything returned so far counts as consumed.
    ///
    /// # Errors
    /// I/O errors (the previous commit then stays).
    pub fn commit(&mut self) -> Result<()> {
        self.commit_offset(self.position)
    }

    /// Commits `offset` as the group's position.
    ///
    /// # Errors
    /// I/O errors.
    pub fn commit_offset(&mut self, offset: Offset) -> Result<()> {
        if self.cursor.last().map(|e| e.offset) != Some(offset) {
            self.cursor.commit(offset, crate::topic::now_us())?;
        }
        self.uncommitted_since_poll = None;
        Ok(())
    }

    /// Returns up to `max_records` from the position; when none is there, waits up to
    /// `timeout` for appends (from this process or another) without spinning.
    ///
    /// # Errors
    /// [`Error::GroupOutOfRange`] when retention deleted the position (unless the policy
    /// resets), corrupt data, I/O errors.
    pub fn poll(&mut self, max_records: usize, timeout: Duration) -> Result<Vec<Record>> {
        if self.config.commit_mode == CommitMode::OnNextPoll {
            if let Some(offset) = self.uncommitted_since_poll {
                self.commit_offset(offset)?;
            }
        }
        self.check_in_range()?;
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut sleep_ms = 1;
        loop {
            self.drain(max_records, &mut out)?;
            if !out.is_empty() || Instant::now() >= deadline {
                break;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            let nap = remaining.min(Duration::from_millis(sleep_ms));
            if !self.topic.wait_for_append(self.position, nap) {
                self.topic.refresh()?;
                sleep_ms = (sleep_ms * 2).min(POLL_SLEEP_MAX_MS);
            }
        }
        if !out.is_empty() {
            self.uncommitted_since_poll = Some(self.position);
        }
        Ok(out)
    }

    fn drain(&mut self, max_records: usize, out: &mut Vec<Record>) -> Result<()> {
        while out.len() < max_records {
            match self.records.next() {
                Some(record) => {
                    let record = record.inspect_err(|_| {
                        // The iterator stops for good after an error; the next poll
                        // starts a fresh one at the position, so a passing problem
                        // (e.g. a segment deleted under it) does not stall the consumer.
                        self.records = self.topic.iter(self.position);
                    })?;
                    self.position = Offset(record.offset.0 + 1);
                    out.push(record);
                }
                None => break,
            }
        }
        Ok(())
    }

    fn check_in_range(&mut self) -> Result<()> {
        let start = self.topic.start_offset();
        if self.position >= start {
            return Ok(());
        }
        match self.config.out_of_range {
            OutOfRangePolicy::Error => Err(Error::GroupOutOfRange {
                topic: self.topic.name().to_owned(),
                group: self.group.clone(),
                position: self.position,
                earliest: start,
            }),
            OutOfRangePolicy::ResetToEarliest => {
                tracing::warn!(
                    topic = self.topic.name(),
                    group = %self.group,
                    from = self.position.0,
                    to = start.0,
                    "group position was deleted by retention; jumping to the earliest record"
                );
                self.seek(start)
            }
        }
    }
}
