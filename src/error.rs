//! The one error type of the storage engine's public surface.

use std::path::PathBuf;

use crate::record::Offset;

/// Everything the store can report. Messages are lowercase and name the place.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O call failed; `context` says which call on which file.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and to which file.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk that do not decode: names the file and the byte position.
    #[error("corrupt data in {file} at byte {byte_pos}: {reason}")]
    Corrupt {
        /// The file holding the bad bytes.
        file: PathBuf,
        /// The byte position of the first bad byte (or of the batch holding it).
        byte_pos: u64,
        /// What is wrong.
        reason: String,
    },
    /// A record or batch breaks one of the named limits.
    #[error("{what} is {actual} bytes or items, over the limit of {limit}")]
    LimitExceeded {
        /// Which limit.
        what: &'static str,
        /// The offending size.
        actual: u64,
        /// The limit.
        limit: u64,
    },
    /// A topic name that cannot be used.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopicName {
        /// The name given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A configuration value that cannot be used.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The topic does not exist.
    #[error("topic {0:?} does not exist")]
    NoSuchTopic(String),
    /// The topic exists already (on an explicit create).
    #[error("topic {0:?} exists already")]
    TopicExists(String),
    /// Another process (or consumer) holds a lock of the topic: its append lock, or a
    /// consumer group's cursor.
    #[error("topic {topic:?} is locked by {holder} (lock file {lock_file})")]
    Locked {
        /// The topic.
        topic: String,
        /// Who holds it, as written in the lock file.
        holder: String,
        /// The lock file.
        lock_file: PathBuf,
    },
    /// A previous fsync failed; the topic refuses writes until the store is reopened.
    #[error("topic {topic:?} refuses writes after a failed sync ({cause}); reopen the store")]
    Poisoned {
        /// The topic.
        topic: String,
        /// The failure that poisoned it.
        cause: String,
    },
    /// A requested offset is not held by the topic (deleted by retention or not yet written).
    #[error("offset {offset} of topic {topic:?} is out of range: the topic holds [{start}, {end})")]
    OffsetOutOfRange {
        /// The topic.
        topic: String,
        /// The requested offset.
        offset: Offset,
        /// First offset still held.
        start: Offset,
        /// Next offset to be written.
        end: Offset,
    },
    /// A consumer group that does not exist.
    #[error("consumer group {group:?} of topic {topic:?} does not exist")]
    NoSuchGroup {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
    /// A consumer group's position was deleted by retention.
    #[error("group {group:?} of topic {topic:?} is at offset {position}, which retention deleted; the earliest offset held is {earliest}")]
    GroupOutOfRange {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
        /// The group's position.
        position: Offset,
        /// The earliest offset still held.
        earliest: Offset,
    },
    /// Records are missing between two segments (a segment was removed by hand or lost).
    #[error("records {from}..{to} of topic {topic:?} are missing: no segment holds them (next segment {file})")]
    Gap {
        /// The topic.
        topic: String,
        /// First missing offset.
        from: Offset,
        /// First offset present again.
        to: Offset,
        /// The segment after the gap.
        file: PathBuf,
    },
    /// Tamper evidence does not verify: a record, the tree or a checkpoint differs.
    #[error("tamper evidence of topic {topic:?}{}: {reason}", offset.map(|o| format!(" at offset {o}")).unwrap_or_default())]
    Tamper {
        /// The topic.
        topic: String,
        /// The first record that does not match, when one is known.
        offset: Option<Offset>,
        /// What does not match.
        reason: String,
    },
    /// A checkpoint handed in from outside (`Topic::verify`'s external checkpoint) cannot
    /// be checked against the topic: it is malformed, carries no valid signature from the
    /// verifier key, or is the checkpoint of another log. This says nothing about the store.
    #[error("the checkpoint given cannot be checked against topic {topic:?}: {reason}")]
    CheckpointRejected {
        /// The topic.
        topic: String,
        /// Why the checkpoint was not accepted.
        reason: String,
    },
    /// The store was closed or dropped.
    #[error("the store is closed")]
    Closed,
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches a context string to an I/O error.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Error>();
};
