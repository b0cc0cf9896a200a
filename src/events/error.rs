use std::path::PathBuf;

/// Everything that can go wrong in [`crate::events`]: bad event JSON, bad redaction or
/// shredding rules, encryption, and the key store on disk. Every message names the field,
/// subject or file it is about.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    /// The input is not valid JSON.
    #[error("invalid event json: {detail}")]
    InvalidJson {
        /// What is wrong.
        detail: String,
    },

    /// The input is JSON but not a JSON object.
    #[error("invalid event json: expected an object, got {found}")]
    NotAnObject {
        /// The JSON type found.
        found: &'static str,
    },

    /// The input is longer than [`crate::events::EVENT_JSON_BYTES_MAX`].
    #[error("event json is {bytes} bytes, more than the limit of {max} bytes")]
    TooLarge {
        /// Size of the input.
        bytes: usize,
        /// The limit.
        max: usize,
    },

    /// A field required for this kind of event is absent.
    #[error("missing required field {field} for kind {kind}")]
    MissingField {
        /// The missing key.
        field: &'static str,
        /// The event kind (`any` before the kind is known).
        kind: String,
    },

    /// A field is present but its value has the wrong type or form.
    #[error("invalid field {field}: {detail}")]
    InvalidField {
        /// The field (dotted path).
        field: String,
        /// What is wrong.
        detail: String,
    },

    /// The `kind` is not one this reader knows.
    #[error("unknown kind {kind:?} in field kind")]
    UnknownKind {
        /// The kind found.
        kind: String,
    },

    /// The `schema_version` is newer than this reader understands.
    #[error("unsupported schema_version {version}: this reader supports 1 to {supported}")]
    UnsupportedVersion {
        /// The version found.
        version: u64,
        /// The newest version this reader supports.
        supported: u32,
    },

    /// A redaction or shredding field path is malformed.
    #[error("invalid field path {path:?}: {detail}")]
    InvalidPath {
        /// The path as given.
        path: String,
        /// What is wrong.
        detail: String,
    },

    /// A redaction or shredding rule would make events unreadable by the schema.
    #[error("invalid rule for field {path}: {detail}")]
    InvalidRule {
        /// The path as given.
        path: String,
        /// What is wrong.
        detail: String,
    },

    /// A personal field is present but the event names no `subject.id` to encrypt it for.
    #[error("field {field} is personal but the event has no string subject.id")]
    MissingSubject {
        /// The field (dotted path).
        field: String,
    },

    /// A subject id is empty or too long.
    #[error("invalid subject id {subject:?}: {detail}")]
    InvalidSubject {
        /// The subject id.
        subject: String,
        /// What is wrong.
        detail: String,
    },

    /// An encrypted field could not be decrypted: wrong key, or the ciphertext, subject
    /// or field path was changed.
    #[error("cannot decrypt field {field} for subject {subject}: authentication failed")]
    Decrypt {
        /// The subject id.
        subject: String,
        /// The field (dotted path).
        field: String,
    },

    /// An object that claims to be an encrypted field is malformed.
    #[error("invalid encrypted field {field}: {detail}")]
    InvalidEnvelope {
        /// The field (dotted path).
        field: String,
        /// What is wrong.
        detail: String,
    },

    /// The subject has never had a key in this store and was not forgotten either: the
    /// store is probably the wrong directory.
    #[error("no key for subject {subject} in {dir}: wrong key store directory?")]
    KeyMissing {
        /// The subject id.
        subject: String,
        /// The key store directory.
        dir: PathBuf,
    },

    /// The subject was forgotten; its key is gone for good and no new one is made.
    #[error("subject {subject} was forgotten: refusing to create a new key")]
    SubjectForgotten {
        /// The subject id.
        subject: String,
    },

    /// A key file does not have the expected form.
    #[error("corrupt key file {path}: {detail}")]
    CorruptKeyFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },

    /// The tombstone list is damaged in its middle.
    #[error("corrupt tombstone list {path} at line {line}: {detail}")]
    CorruptTombstones {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },

    /// An I/O operation on a key store file failed.
    #[error("cannot {op} {path}: {source}")]
    Io {
        /// The operation that failed.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A trail broke one of its invariants (see [`crate::events::testing::check_trail`]).
    #[error("trace {trace_id}: {detail}")]
    TrailViolation {
        /// The trace.
        trace_id: String,
        /// What is wrong.
        detail: String,
    },
}

impl EventError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EventError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn field(field: impl Into<String>, detail: impl Into<String>) -> Self {
        EventError::InvalidField {
            field: field.into(),
            detail: detail.into(),
        }
    }
}
