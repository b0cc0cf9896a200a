//! The AI audit event model: what an agent did, in a typed, versioned JSON form, plus the
//! privacy tools that run on an event before it is hashed or written.
//!
//! - [`schema`]: [`Event`] and its kinds (user input, model call and output, tool call and
//!   result, retrieval, policy check, approval, final action, error, system prompt). JSON
//!   keys follow the OpenTelemetry GenAI semantic conventions (`gen_ai.*`); what OTel lacks
//!   lives under `trailkeep.*`. Unknown keys from newer writers survive a round trip.
//! - [`redact`]: per-field [`Redactor`] rules (drop, mask, keyed pseudonym).
//! - [`shred`] and [`keystore`]: per-subject crypto-shredding. Personal fields are
//!   encrypted under a key per data subject; forgetting the subject destroys the key, so
//!   the immutable log keeps ciphertext nobody can read.
//! - [`testing`]: a seeded generator of realistic multi-agent trails and assertion
//!   helpers for unit tests.
//!
//! The write path is: build an [`Event`] → [`Event::to_value`] → [`Redactor::apply`] →
//! [`Shredder::encrypt_fields`] → bytes. The read path is: bytes →
//! [`decrypt_fields`] → [`Event::from_value`].
//!
//! ```
//! use trailkeep::events::testing::TrailGenerator;
//! use trailkeep::events::{decrypt_fields, Event, KeyStore, PseudonymKey, Redactor, Shredder};
//!
//! # fn main() -> Result<(), trailkeep::events::EventError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let keys = KeyStore::open(dir.path())?;
//! let redactor = Redactor::new()
//!     .with_pseudonym_key(PseudonymKey::new("2025-01", [7u8; 32])?)
//!     .pseudonymize("gen_ai.tool.call.arguments.email")?;
//! let shredder = Shredder::new(["gen_ai.input.messages", "gen_ai.output.messages"])?;
//!
//! for event in TrailGenerator::new(1).sessions(2).generate() {
//!     // Write path: typed event -> JSON -> redact -> encrypt personal fields -> bytes.
//!     let mut value = event.to_value()?;
//!     redactor.apply(&mut value);
//!     shredder.encrypt_fields(&mut value, &keys)?;
//!     let line = value.to_string();
//!
//!     // Read path: bytes -> decrypt -> typed event.
//!     let mut value: serde_json::Value = serde_json::from_str(&line).expect("valid json");
//!     decrypt_fields(&mut value, &keys)?;
//!     let back = Event::from_value(value)?;
//!     assert_eq!(back.event_id, event.event_id);
//! }
//! keys.forget("user-0003")?; // user-0003's messages now read as {"trailkeep.erased": true}
//! # Ok(())
//! # }
//! ```
//!
//! **Invariant:** this module depends on nothing else in the crate; it knows JSON and
//! files in its key store directory, never segments, topics or the network.
//! The reference for every field is `docs/events.md`.

mod decode;
mod encode;
mod error;
mod fields;
pub mod keystore;
pub mod redact;
pub mod schema;
pub mod shred;
pub mod testing;
mod time;

pub use error::EventError;
pub use fields::{field_spec, fields, FieldSpec, FieldType};
pub use keystore::{KeyStore, SubjectKey};
pub use redact::{PseudonymKey, RedactAction, Redactor};
pub use schema::{
    Actor, ActorType, Approval, ApprovalDecision, ErrorEvent, Event, EventBody, EventKind, FinalAction, ModelCall,
    ModelOutput, OperationName, PolicyCheck, PolicyDecision, Retrieval, RetrievedDocument, SystemPrompt, ToolCall,
    ToolResult, UserInput, EVENT_JSON_BYTES_MAX, SCHEMA_VERSION,
};
pub use shred::{decrypt_fields, is_encrypted, is_erased, Shredder};
pub use time::{format_rfc3339_us, parse_rfc3339_us, TIME_US_MAX};

/// Result alias for this module.
pub type Result<T, E = EventError> = std::result::Result<T, E>;

/// Splits a dotted field path (`gen_ai.tool.call.arguments.email`) into its segments,
/// rejecting empty paths and empty segments.
pub(crate) fn split_path(path: &str) -> Result<Vec<String>> {
    if path.is_empty() || path.split('.').any(str::is_empty) {
        return Err(EventError::InvalidPath {
            path: path.to_owned(),
            detail: "a path is one or more non-empty segments joined by '.'".into(),
        });
    }
    Ok(path.split('.').map(str::to_owned).collect())
}

/// Canonical JSON text of a value: object keys sorted by byte order, no whitespace,
/// strings escaped as serde_json does, numbers in serde_json's shortest form. Used as the
/// input of pseudonyms and as the plaintext of encrypted fields, so it must not depend on
/// serde_json's `preserve_order` feature.
pub(crate) fn canonical_json(value: &serde_json::Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let value = json!({"b": [{"z": 1, "a": "x"}], "a": null});
        assert_eq!(canonical_json(&value), r#"{"a":null,"b":[{"a":"x","z":1}]}"#);
    }

    #[test]
    fn split_path_rejects_empty_segments() {
        assert!(matches!(split_path(""), Err(EventError::InvalidPath { .. })));
        assert!(matches!(split_path("a..b"), Err(EventError::InvalidPath { .. })));
        assert_eq!(split_path("a.b").unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<EventError>();
        check::<Event>();
        check::<KeyStore>();
        check::<Redactor>();
        check::<Shredder>();
    }
}

#[cfg(test)]
mod schema_tests;
#[cfg(test)]
mod shred_tests;
