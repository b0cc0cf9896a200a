//! Consumer groups: durable named positions in a topic, lag, and the consumer that polls
//! from a group's position and waits for new appends at the head.
//!
//! **Invariant:** a cursor is only ever moved by a commit that appends a checksummed entry
//! and syncs it; nothing expires or moves a cursor silently (retention reports every
//! group that lost offsets, and recovery every group it moved back after records a
//! crash lost).

mod consumer;
mod file;

use std::path::PathBuf;

pub use consumer::{CommitMode, Consumer, ConsumerConfig, OutOfRangePolicy, StartAt};
pub use file::{CursorEntry, CURSOR_ENTRY_BYTES, CURSOR_EXT, CURSOR_MAGIC};

use crate::topic::{validate_topic_name, Topic};
use crate::{Error, Offset, Result};

/// Sub-directory of a topic holding cursor files.
pub const GROUPS_DIR: &str = "groups";

/// Where to move a group's cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResetTo {
    /// The first offset held.
    Earliest,
    /// The end: only records appended from now on.
    Latest,
    /// A given offset (must be held, or be the end).
    Offset(Offset),
    /// The first record appended at or after this time (microseconds since the epoch).
    TimeUs(u64),
}

/// A group that recovery moved back: records it had committed past were lost in a crash
/// (a power loss before they were synced), and the offsets will be reused by new records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupRewind {
    /// Group name.
    pub group: String,
    /// The position it had committed.
    pub from: Offset,
    /// The recovered end of the topic, its position now.
    pub to: Offset,
}

/// A group's position and lag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Group name.
    pub name: String,
    /// Committed position: the next offset the group will read.
    pub committed: Offset,
    /// When it was committed (microseconds since the epoch).
    pub committed_at_us: u64,
    /// Records appended but not yet consumed: end offset - committed.
    pub lag: u64,
    /// True when retention deleted records the group had not consumed.
    pub behind_start: bool,
}

impl Topic {
    fn groups_dir(&self) -> PathBuf {
        self.dir().join(GROUPS_DIR)
    }

    pub(crate) fn cursor_path(&self, group: &str) -> Result<PathBuf> {
        validate_topic_name(group).map_err(|_| {
            Error::InvalidConfig(format!(
                "invalid group name {group:?}: use letters, digits, '.', '_' and '-'"
            ))
        })?;
        Ok(self.groups_dir().join(format!("{group}.{CURSOR_EXT}")))
    }

    /// The committed position of `group`, if it has one.
    ///
    /// # Errors
    /// An invalid group name, a cursor file with no valid entry, I/O errors.
    pub fn committed(&self, group: &str) -> Result<Option<Offset>> {
        Ok(file::read_cursor(&self.cursor_path(group)?)?.map(|e| e.offset))
    }

    /// Commits `offset` as `group`'s position (creating the group).
    ///
    /// # Errors
    /// [`Error::Locked`] while a [`Consumer`] of the group is open; I/O errors.
    pub fn commit(&self, group: &str, offset: Offset) -> Result<()> {
        let path = self.ensure_groups_dir(group)?;
        let mut cursor = file::CursorFile::open_locked(self.name(), group, &path)?;
        cursor.commit(offset, crate::topic::now_us())?;
        Ok(())
    }

    pub(crate) fn ensure_groups_dir(&self, group: &str) -> Result<PathBuf> {
        let path = self.cursor_path(group)?;
        let dir = self.groups_dir();
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                context: format!("creating {}", dir.display()),
                source,
            })?;
            crate::fsutil::sync_dir(self.dir())?;
        }
        Ok(path)
    }

    /// Moves `group`'s cursor; returns the new position.
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`] for an offset not held; as for [`Topic::commit`].
    pub fn reset_group(&self, group: &str, to: ResetTo) -> Result<Offset> {
        self.refresh()?;
        let offset = match to {
            ResetTo::Earliest => self.start_offset(),
            ResetTo::Latest => self.end_offset(),
            ResetTo::Offset(o) if o < self.start_offset() || o > self.end_offset() => return Err(self.out_of_range(o)),
            ResetTo::Offset(o) => o,
            ResetTo::TimeUs(t) => self.seek_time(t)?.unwrap_or_else(|| self.end_offset()),
        };
        self.commit(group, offset)?;
        tracing::info!(topic = self.name(), group, offset = offset.0, "group cursor reset");
        Ok(offset)
    }

    /// Deletes `group`.
    ///
    /// # Errors
    /// [`Error::NoSuchGroup`]; [`Error::Locked`] while a consumer of it is open.
    pub fn delete_group(&self, group: &str) -> Result<()> {
        let path = self.cursor_path(group)?;
        if !path.exists() {
            return Err(Error::NoSuchGroup {
                topic: self.name().to_owned(),
                group: group.to_owned(),
            });
        }
        let lock = file::CursorFile::open_locked(self.name(), group, &path)?;
        crate::segment::remove_if_exists(&path)?;
        drop(lock);
        crate::fsutil::sync_dir(&self.groups_dir())
    }

    /// Moves every group committed past `end` back to `end`, after recovery lost the
    /// records from `end` on: new records will take those offsets, and a group left past
    /// them would skip them unseen. Called by the appender before its first append. A
    /// group whose cursor cannot be moved (held by a running consumer, unreadable) is
    /// logged as an error and left as it is.
    pub(crate) fn rewind_groups_past(&self, end: Offset) -> Vec<GroupRewind> {
        let cursors = match self.cursor_files() {
            Ok(cursors) => cursors,
            Err(e) => {
                tracing::error!(topic = self.name(), error = %e, "cannot list the groups to move back");
                return Vec::new();
            }
        };
        let mut rewound = Vec::new();
        for (group, path) in cursors {
            match self.rewind_group(&group, &path, end) {
                Ok(Some(from)) => {
                    tracing::warn!(
                        topic = self.name(),
                        group,
                        from = from.0,
                        to = end.0,
                        "group moved back: records it had committed past were lost in a crash"
                    );
                    rewound.push(GroupRewind { group, from, to: end });
                }
                Ok(None) => {}
                Err(e) => tracing::error!(topic = self.name(), group, error = %e,
                    "group committed past the recovered end could not be moved back"),
            }
        }
        rewound
    }

    /// Commits `end` for `group` (cursor file `path`) if it is committed past it; returns
    /// where it was. The cursor is read before it is locked, so that groups not past the
    /// end are not locked (a running consumer holds its group's lock).
    fn rewind_group(&self, group: &str, path: &std::path::Path, end: Offset) -> Result<Option<Offset>> {
        match file::read_cursor(path)? {
            Some(entry) if entry.offset > end => {
                let mut cursor = file::CursorFile::open_locked(self.name(), group, path)?;
                match cursor.last() {
                    Some(last) if last.offset > end => {
                        cursor.commit(end, crate::topic::now_us())?;
                        Ok(Some(last.offset))
                    }
                    _ => Ok(None),
                }
            }
            _ => Ok(None),
        }
    }

    /// The groups with a cursor file, with its path (unsorted; none without a groups
    /// directory).
    fn cursor_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let dir = self.groups_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(Error::Io {
                    context: format!("listing {}", dir.display()),
                    source,
                })
            }
        };
        Ok(entries
            .flatten()
            .filter_map(|entry| {
                let path = entry.path();
                let name = path.file_name()?.to_str()?.strip_suffix(".cursor")?.to_owned();
                Some((name, path))
            })
            .collect())
    }

    /// Every group with its position and lag, sorted by name.
    ///
    /// # Errors
    /// I/O errors; a cursor file with no valid entry.
    pub fn groups(&self) -> Result<Vec<GroupInfo>> {
        let mut groups = Vec::new();
        let (start, end) = (self.start_offset(), self.end_offset());
        for (name, path) in self.cursor_files()? {
            let Some(cursor) = file::read_cursor(&path)? else {
                continue;
            };
            groups.push(GroupInfo {
                name,
                committed: cursor.offset,
                committed_at_us: cursor.committed_at_us,
                lag: end.0.saturating_sub(cursor.offset.0.max(start.0)),
                behind_start: cursor.offset < start,
            });
        }
        groups.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(groups)
    }
}
