//! An AI audit trail on a topic: typed events in, redaction and per-subject encryption
//! before anything is hashed or written, queries by trace, conversation, agent or
//! subject, and erasure of a subject by destroying its key.
//!
//! Each event is stored as one record: value = the event's canonical JSON after
//! redaction and encryption; key = its trace id; event time = the event's time; headers
//! `gen_ai.conversation.id`, `gen_ai.agent.id` and, when the event names a subject,
//! `trailkeep.subject` = hex SHA-256 of the subject id (the id itself may be personal).
//! Erasures are records with the header `trailkeep.system` = `erasure`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use trailkeep::events::testing::TrailGenerator;
//! use trailkeep::trail::{Trail, TrailConfig};
//! let store = trailkeep::Store::temporary()?;
//! let trail = Trail::open(&store, "agent-trail", TrailConfig::default())?;
//! let events = TrailGenerator::new(7).sessions(3).generate();
//! for event in &events {
//!     trail.append(event)?;
//! }
//! let first = events[0].trace_id().to_owned();
//! let trace = trail.trace(&first, 0, u64::MAX)?;
//! assert!(trace.iter().all(|e| e.trace_id() == first));
//! # Ok(()) }
//! ```

use sha2::{Digest, Sha256};

use crate::events::{decrypt_fields, Event, KeyStore, Redactor, Shredder};
use crate::index::keys::IndexKey;
use crate::{Error, NewRecord, Offset, Record, Store, Topic};

/// Header naming the conversation.
pub const CONVERSATION_HEADER: &str = "gen_ai.conversation.id";
/// Header naming the agent.
pub const AGENT_HEADER: &str = "gen_ai.agent.id";
/// Header carrying the hex SHA-256 of the subject id.
pub const SUBJECT_HEADER: &str = "trailkeep.subject";
/// Header marking records that are not events (value `erasure`).
pub const SYSTEM_HEADER: &str = "trailkeep.system";
/// Directory (under the store) of per-subject keys.
pub const SUBJECT_KEYS_DIR: &str = "keys/subjects";

/// Errors of the trail API: the engine's or the event model's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrailError {
    /// Engine error.
    #[error(transparent)]
    Store(#[from] Error),
    /// Event model, redaction or encryption error.
    #[error(transparent)]
    Event(#[from] crate::events::EventError),
    /// A stored record that is not a valid event.
    #[error("record {offset} of topic {topic:?} is not a valid event: {reason}")]
    BadRecord {
        /// Topic.
        topic: String,
        /// Offset.
        offset: Offset,
        /// Why.
        reason: String,
    },
}

/// Result of the trail API.
pub type Result<T, E = TrailError> = std::result::Result<T, E>;

/// What happens to events before they are written. Default: nothing.
#[derive(Default)]
pub struct TrailConfig {
    /// Redaction rules applied first.
    pub redactor: Option<Redactor>,
    /// Fields encrypted under the event's subject key.
    pub shredder: Option<Shredder>,
}

/// A typed event trail on one topic.
pub struct Trail {
    topic: Topic,
    keys: KeyStore,
    config: TrailConfig,
}

/// Hex SHA-256 of a subject id: what the subject header and erasure records carry.
pub fn subject_digest(subject: &str) -> String {
    Sha256::digest(subject.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Trail {
    /// Opens (creating) the trail on `topic` of `store`.
    ///
    /// # Errors
    /// Engine errors; a key store that does not open.
    pub fn open(store: &Store, topic: &str, config: TrailConfig) -> Result<Trail> {
        let topic = store.topic_or_create(topic)?;
        let keys = KeyStore::open(store.dir().join(SUBJECT_KEYS_DIR))?;
        Ok(Trail { topic, keys, config })
    }

    /// The underlying topic.
    pub fn topic(&self) -> &Topic {
        &self.topic
    }

    /// The record an event is stored as (after redaction and encryption).
    ///
    /// # Errors
    /// A subject whose key was destroyed, invalid fields.
    pub fn to_record(&self, event: &Event) -> Result<NewRecord> {
        event_record(&self.keys, &self.config, event)
    }

    /// Appends one event; returns its offset once acknowledged.
    ///
    /// # Errors
    /// As for [`Trail::to_record`] and [`Topic::append`].
    pub fn append(&self, event: &Event) -> Result<Offset> {
        Ok(self.topic.append(&self.to_record(event)?)?)
    }

    /// Appends events as one batch.
    ///
    /// # Errors
    /// As for [`Trail::append`]; nothing is written when one event fails.
    pub fn append_batch(&self, events: &[Event]) -> Result<crate::Appended> {
        let records = events.iter().map(|e| self.to_record(e)).collect::<Result<Vec<_>>>()?;
        Ok(self.topic.append_batch(&records)?)
    }

    /// Decodes a stored record into an event: personal fields decrypted, or marked
    /// `{"trailkeep.erased": true}` when the subject was forgotten. None for system records.
    ///
    /// # Errors
    /// [`TrailError::BadRecord`] for a record that is not an event.
    pub fn decode(&self, record: &Record) -> Result<Option<Event>> {
        if record.headers.iter().any(|(n, _)| n == SYSTEM_HEADER) {
            return Ok(None);
        }
        let bad = |reason: String| TrailError::BadRecord {
            topic: self.topic.name().to_owned(),
            offset: record.offset,
            reason,
        };
        let mut value: serde_json::Value = serde_json::from_slice(&record.value).map_err(|e| bad(e.to_string()))?;
        decrypt_fields(&mut value, &self.keys)?;
        Ok(Some(Event::from_value(value).map_err(|e| bad(e.to_string()))?))
    }

    fn decode_all(&self, records: Vec<Record>) -> Result<Vec<Event>> {
        let mut events = Vec::with_capacity(records.len());
        for record in &records {
            events.extend(self.decode(record)?);
        }
        Ok(events)
    }

    /// Every event of a trace appended within `[from_us, to_us)`, in order.
    ///
    /// # Errors
    /// Engine errors, records that are not events.
    pub fn trace(&self, trace_id: &str, from_us: u64, to_us: u64) -> Result<Vec<Event>> {
        let records = self.topic.find(IndexKey::Key(trace_id.as_bytes()), from_us, to_us)?;
        self.decode_all(records)
    }

    /// Every event of a conversation within the window.
    ///
    /// # Errors
    /// As for [`Trail::trace`].
    pub fn conversation(&self, id: &str, from_us: u64, to_us: u64) -> Result<Vec<Event>> {
        self.decode_all(
            self.topic
                .find(IndexKey::Header(CONVERSATION_HEADER, id.as_bytes()), from_us, to_us)?,
        )
    }

    /// Every event of an agent within the window.
    ///
    /// # Errors
    /// As for [`Trail::trace`].
    pub fn agent(&self, id: &str, from_us: u64, to_us: u64) -> Result<Vec<Event>> {
        self.decode_all(
            self.topic
                .find(IndexKey::Header(AGENT_HEADER, id.as_bytes()), from_us, to_us)?,
        )
    }

    /// Every event about a data subject within the window.
    ///
    /// # Errors
    /// As for [`Trail::trace`].
    pub fn subject(&self, subject: &str, from_us: u64, to_us: u64) -> Result<Vec<Event>> {
        let digest = subject_digest(subject);
        self.decode_all(
            self.topic
                .find(IndexKey::Header(SUBJECT_HEADER, digest.as_bytes()), from_us, to_us)?,
        )
    }

    /// Erases a subject: destroys its key (its encrypted fields become unreadable for
    /// good; hashes and proofs still verify, as they cover the ciphertext) and appends an
    /// erasure record. Returns that record's offset.
    ///
    /// # Errors
    /// Key store errors; engine errors.
    pub fn forget(&self, subject: &str) -> Result<Offset> {
        self.keys.forget(subject)?;
        self.record_erasure(subject)
    }

    /// Appends an erasure record for a subject (already forgotten, e.g. on another topic).
    ///
    /// # Errors
    /// Engine errors.
    pub fn record_erasure(&self, subject: &str) -> Result<Offset> {
        let digest = subject_digest(subject);
        let body = serde_json::json!({
            "trailkeep.system": "erasure",
            "trailkeep.subject": digest,
            "time_us": crate::topic::now_us(),
        });
        let record = NewRecord::new(body.to_string().into_bytes())
            .with_header(SYSTEM_HEADER, b"erasure".to_vec())
            .with_header(SUBJECT_HEADER, digest.into_bytes());
        Ok(self.topic.append(&record)?)
    }

    /// True when the subject's key was destroyed.
    pub fn is_forgotten(&self, subject: &str) -> bool {
        self.keys.is_forgotten(subject)
    }
}

/// The record an event is stored as, as [`Trail::to_record`] makes it, without a topic:
/// `keys` is the store's key store (`<store>/keys/subjects`). `trailkeep append --events`
/// creates its topic only once the first event is valid.
///
/// # Errors
/// A subject whose key was destroyed, invalid fields.
pub fn event_record(keys: &KeyStore, config: &TrailConfig, event: &Event) -> Result<NewRecord> {
    let mut value = event.to_value()?;
    if let Some(redactor) = &config.redactor {
        redactor.apply(&mut value);
    }
    if let Some(shredder) = &config.shredder {
        shredder.encrypt_fields(&mut value, keys)?;
    }
    let canonical = Event::from_value(value)?.to_json()?;
    let mut record = NewRecord::new(canonical.into_bytes())
        .with_key(event.trace_id().as_bytes().to_vec())
        .with_event_time_us(event.time_us())
        .with_header(CONVERSATION_HEADER, event.conversation_id().as_bytes().to_vec())
        .with_header(AGENT_HEADER, event.agent_id().as_bytes().to_vec());
    if let Some(subject) = event.subject_id() {
        record = record.with_header(SUBJECT_HEADER, subject_digest(subject).into_bytes());
    }
    Ok(record)
}

/// The store's pseudonym secret (`keys/pseudonym.key`, 32 random bytes, mode 0600),
/// created on first use.
///
/// # Errors
/// I/O errors; a key file of the wrong size.
pub fn pseudonym_secret(store: &Store) -> Result<[u8; 32]> {
    let path = store.dir().join("keys").join("pseudonym.key");
    let io = |e: std::io::Error| {
        TrailError::Store(Error::Io {
            context: format!("pseudonym key {}", path.display()),
            source: e,
        })
    };
    match std::fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            TrailError::Store(Error::Corrupt {
                file: path.clone(),
                byte_pos: 0,
                reason: "pseudonym key is not 32 bytes".into(),
            })
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            std::fs::create_dir_all(store.dir().join("keys")).map_err(io)?;
            // Written whole before it appears (a crash leaves no short key); when another
            // process created it meanwhile, its key is the one.
            if crate::fsutil::create_atomic_private(&path, &secret).map_err(TrailError::Store)? {
                Ok(secret)
            } else {
                pseudonym_secret(store)
            }
        }
        Err(e) => Err(io(e)),
    }
}
