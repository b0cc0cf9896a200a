//! trailkeep: an embedded, append-only, tamper-evident audit log store.
//!
//! A store is a directory of *topics*; a topic is a totally ordered log of records with
//! dense offsets, kept in segment files with sparse offset and time indexes, checksummed,
//! and durable by default (an append returns once its bytes are fsync'd; concurrent
//! appenders share one sync). It is a library you link in, not a server or a cluster.
//!
//! ```
//! # fn main() -> trailkeep::Result<()> {
//! use trailkeep::{NewRecord, Store};
//! let store = Store::temporary()?;
//! let trail = store.topic_or_create("agent-trail")?;
//! trail.append(&NewRecord::new(r#"{"kind":"user_input"}"#))?;
//! trail.append(&NewRecord::new(r#"{"kind":"tool_call"}"#))?;
//! let kinds: Vec<String> = trail
//!     .iter(trail.start_offset())
//!     .map(|r| r.map(|r| String::from_utf8_lossy(&r.value).into_owned()))
//!     .collect::<trailkeep::Result<_>>()?;
//! assert_eq!(kinds.len(), 2);
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod audit;
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod cli;
pub mod cursor;
mod error;
pub mod events;
mod failpoint;
mod fsutil;
pub mod index;
pub mod mirror;
mod record;
pub mod segment;
pub mod server;
mod store;
pub mod tier;
pub mod topic;
pub mod trail;
pub mod wal;

pub use cursor::{CommitMode, Consumer, ConsumerConfig, GroupInfo, OutOfRangePolicy, ResetTo, StartAt};
pub use error::{Error, Result};
pub use record::{
    HeaderList, NewRecord, Offset, Record, RecordFields, RecordRef, HEADER_COUNT_MAX, HEADER_NAME_BYTES_MAX,
    HEADER_VALUE_BYTES_MAX, KEY_BYTES_MAX, RECORD_BYTES_MAX,
};
pub use segment::batch::Compression;
pub use store::{Store, StoreConfig};
pub use topic::{
    verify_record_inclusion, Appended, GroupLoss, RetentionReport, Topic, TopicConfig, TopicStats, VerifyReport,
};
pub use wal::{Durability, RecoveryReport};
