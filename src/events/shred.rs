//! Crypto-shredding: personal fields are encrypted under a key per data subject, so that
//! forgetting the subject ([`KeyStore::forget`]) erases them from an append-only log
//! without rewriting it.
//!
//! Each personal field's value is replaced by an envelope
//! `{"trailkeep.enc":"v1","subject":"<id>","nonce":"<b64>","ct":"<b64>"}`:
//! ChaCha20-Poly1305 under the subject's key, a random 96-bit nonce, plaintext = the
//! canonical JSON text of the value, and associated data =
//! `"trailkeep.enc.v1" 0x00 <subject> 0x00 <field path>`, so a ciphertext moved to
//! another field or relabelled with another subject fails to decrypt. The field path is
//! the chain of object keys from the event's root joined by `.` (array elements add
//! nothing), which equals the path the rule was written with. The object key
//! `trailkeep.enc` is reserved for envelopes.

use super::decode::json_type;
use super::fields::FieldType;
use super::keystore::{KeyStore, SubjectKey};
use super::redact::{schema_prefix, visit};
use super::{canonical_json, split_path, EventError, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use serde_json::{json, Map, Value};

/// The envelope key holding the format version.
pub const ENVELOPE_KEY: &str = "trailkeep.enc";
/// The only envelope version written and read.
pub const ENVELOPE_VERSION: &str = "v1";
/// The key of the marker that replaces a field whose subject was forgotten.
pub const ERASED_KEY: &str = "trailkeep.erased";
/// Deepest JSON nesting [`decrypt_fields`] walks.
pub const JSON_DEPTH_MAX: usize = 512;

const NONCE_BYTES: usize = 12;
const TAG_BYTES: usize = 16;
const AAD_PREFIX: &[u8] = b"trailkeep.enc.v1\0";

/// Encrypts the personal fields of events for their subject.
#[derive(Clone, Debug)]
pub struct Shredder {
    fields: Vec<(String, Vec<String>)>,
}

impl Shredder {
    /// A shredder for these personal field paths (dotted, resolved as in
    /// [`crate::events::redact`]). Only free-form fields (type any, such as
    /// `gen_ai.input.messages`), paths inside them, and fields unknown to the schema can
    /// be personal: an envelope in an id or enum field would make the event unreadable.
    ///
    /// # Errors
    /// [`EventError::InvalidPath`], or [`EventError::InvalidRule`] for a schema field that
    /// is not free-form.
    pub fn new<I, S>(personal_fields: I) -> Result<Shredder>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut fields = Vec::new();
        for path in personal_fields {
            let path = path.as_ref();
            let segments = split_path(path)?;
            if let Some((spec, _)) = schema_prefix(&segments) {
                if spec.field_type != FieldType::Any {
                    return Err(EventError::InvalidRule {
                        path: path.into(),
                        detail: format!(
                            "{} is not free-form json and cannot be encrypted; pseudonymize it instead",
                            spec.name
                        ),
                    });
                }
            }
            fields.push((path.to_owned(), segments));
        }
        Ok(Shredder { fields })
    }

    /// The personal field paths.
    pub fn fields(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(path, _)| path.as_str())
    }

    /// Encrypts every personal field present in `value` for the subject named by its
    /// `subject.id`, creating the subject's key if needed. Fields already encrypted or
    /// erased are left alone. Returns how many fields were encrypted. On error `value` is
    /// unchanged.
    ///
    /// # Errors
    /// [`EventError::MissingSubject`] when a personal field is present but `subject.id` is
    /// absent or not a string; [`EventError::SubjectForgotten`] and the other key store
    /// errors of [`KeyStore::key_for`].
    pub fn encrypt_fields(&self, value: &mut Value, keys: &KeyStore) -> Result<usize> {
        let mut first_target = None;
        for (path, segments) in &self.fields {
            visit(value, segments, &mut |parent, key| {
                if first_target.is_none() && !is_sealed(&parent[key]) {
                    first_target = Some(path.clone());
                }
            });
        }
        let Some(field) = first_target else {
            return Ok(0);
        };
        let subject = match value.get("subject.id") {
            Some(Value::String(subject)) => subject.clone(),
            _ => return Err(EventError::MissingSubject { field }),
        };
        let key = keys.key_for(&subject)?;
        let mut count = 0;
        for (path, segments) in &self.fields {
            visit(value, segments, &mut |parent, name| {
                if !is_sealed(&parent[name]) {
                    let envelope = seal(&key, &subject, path, &parent[name]);
                    parent.insert(name.to_owned(), envelope);
                    count += 1;
                }
            });
        }
        Ok(count)
    }
}

/// Replaces every encrypted field in `value` with its plaintext, or with
/// `{"trailkeep.erased": true}` when its subject was forgotten. Returns how many envelopes
/// were replaced.
///
/// # Errors
/// [`EventError::Decrypt`] naming subject and field when a ciphertext does not
/// authenticate; [`EventError::InvalidEnvelope`] for a malformed envelope;
/// [`EventError::KeyMissing`] when the subject was never forgotten yet has no key (the
/// wrong key store); key store I/O errors. On error `value` may be partly decrypted.
pub fn decrypt_fields(value: &mut Value, keys: &KeyStore) -> Result<usize> {
    let mut path = Vec::new();
    let mut count = 0;
    walk(value, &mut path, keys, &mut count)?;
    Ok(count)
}

/// Whether `value` is an erased marker.
pub fn is_erased(value: &Value) -> bool {
    value.get(ERASED_KEY) == Some(&Value::Bool(true))
}

/// Whether `value` is an encryption envelope.
pub fn is_encrypted(value: &Value) -> bool {
    value.get(ENVELOPE_KEY).is_some()
}

fn is_sealed(value: &Value) -> bool {
    is_encrypted(value) || is_erased(value)
}

fn aad(subject: &str, path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(AAD_PREFIX.len() + subject.len() + 1 + path.len());
    aad.extend_from_slice(AAD_PREFIX);
    aad.extend_from_slice(subject.as_bytes());
    aad.push(0);
    aad.extend_from_slice(path.as_bytes());
    aad
}

fn seal(key: &SubjectKey, subject: &str, path: &str, plain: &Value) -> Value {
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_bytes()));
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let text = canonical_json(plain);
    let payload = Payload {
        msg: text.as_bytes(),
        aad: &aad(subject, path),
    };
    let ct = cipher
        .encrypt(Nonce::from_slice(&nonce), payload)
        .expect("chacha20poly1305 encrypts any message shorter than 256 GiB");
    json!({
        ENVELOPE_KEY: ENVELOPE_VERSION,
        "subject": subject,
        "nonce": BASE64.encode(nonce),
        "ct": BASE64.encode(ct),
    })
}

fn walk(value: &mut Value, path: &mut Vec<String>, keys: &KeyStore, count: &mut usize) -> Result<()> {
    if path.len() > JSON_DEPTH_MAX {
        return Err(EventError::InvalidEnvelope {
            field: path.join("."),
            detail: format!("json nested deeper than {JSON_DEPTH_MAX} levels"),
        });
    }
    match value {
        Value::Object(map) if map.contains_key(ENVELOPE_KEY) => {
            *value = open(map, &path.join("."), keys)?;
            *count += 1;
        }
        Value::Object(map) => {
            for (key, child) in map.iter_mut() {
                path.push(key.clone());
                walk(child, path, keys, count)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, path, keys, count)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn open(envelope: &Map<String, Value>, field: &str, keys: &KeyStore) -> Result<Value> {
    let invalid = |detail: String| EventError::InvalidEnvelope {
        field: field.to_owned(),
        detail,
    };
    let text = |name: &str| match envelope.get(name) {
        Some(Value::String(s)) => Ok(s.as_str()),
        Some(other) => Err(invalid(format!("{name} is {}, expected a string", json_type(other)))),
        None => Err(invalid(format!("{name} is missing"))),
    };
    let version = text(ENVELOPE_KEY)?;
    if version != ENVELOPE_VERSION {
        return Err(invalid(format!(
            "unknown version {version:?}, expected {ENVELOPE_VERSION}"
        )));
    }
    if envelope.len() != 4 {
        return Err(invalid(
            "expected exactly the keys trailkeep.enc, subject, nonce, ct".into(),
        ));
    }
    let subject = text("subject")?;
    let nonce = BASE64
        .decode(text("nonce")?)
        .ok()
        .filter(|n| n.len() == NONCE_BYTES)
        .ok_or_else(|| invalid(format!("nonce is not {NONCE_BYTES} bytes of base64")))?;
    let ct = BASE64
        .decode(text("ct")?)
        .ok()
        .filter(|ct| ct.len() >= TAG_BYTES)
        .ok_or_else(|| invalid(format!("ct is not base64 of at least {TAG_BYTES} bytes")))?;
    let Some(key) = keys.existing_key(subject)? else {
        if keys.is_forgotten(subject) {
            return Ok(json!({ ERASED_KEY: true }));
        }
        return Err(EventError::KeyMissing {
            subject: subject.into(),
            dir: keys.dir().to_path_buf(),
        });
    };
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key.as_bytes()));
    let payload = Payload {
        msg: &ct,
        aad: &aad(subject, field),
    };
    let plain = cipher
        .decrypt(Nonce::from_slice(&nonce), payload)
        .map_err(|_| EventError::Decrypt {
            subject: subject.into(),
            field: field.into(),
        })?;
    serde_json::from_slice(&plain).map_err(|e| invalid(format!("plaintext is not json: {e}")))
}
