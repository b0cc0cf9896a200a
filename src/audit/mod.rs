//! Tamper evidence for a topic: an RFC 6962 Merkle tree over the records,
//! signed checkpoints in the C2SP signed-note / tlog-checkpoint format, and
//! RFC 9162 inclusion and consistency proofs.
//!
//! The room's parts, bottom up:
//! - [`merkle`]: hash rules (leaf, node, empty tree), the canonical leaf
//!   encoding of a record, and the in-memory [`Frontier`] (compact range).
//! - [`batch`]: the same hashes many at a time (multi-buffer SHA-256): leaf
//!   batches, and appending a batch of leaves to a tree level by level.
//! - [`tree_file`]: [`TreeFile`], every node hash of the tree kept on disk in
//!   one append-only file, so proofs never rescan the log.
//! - [`proof`]: proof generation over any [`NodeSource`], verification, and
//!   the `c2sp.org/tlog-proof@v1` text bundle.
//! - [`note`]: C2SP signed notes, Ed25519 note keys and their text forms.
//! - [`checkpoint`]: signed tree checkpoints and the signing key file.
//! - [`checkpoint_log`]: a topic's `checkpoints.log` (framing, torn-tail rule, appends).
//!
//! **Invariant:** this module knows nothing about segments, topics or the
//! engine's record type; the engine hands it plain fields and leaf hashes.
//! **Invariant:** the tree file is derived data. Losing its unsynced tail
//! costs only re-feeding leaves from the log, never correctness.

pub mod batch;
pub mod checkpoint;
pub mod checkpoint_log;
pub mod merkle;
pub mod note;
pub mod proof;
pub mod tree_file;

pub use batch::{leaf_hashes, node_hashes, LeafBatch};
pub use checkpoint::{Checkpoint, SigningKeyFile};
pub use checkpoint_log::CheckpointLogWriter;
pub use merkle::{
    empty_root, leaf_bytes, leaf_hash, node_hash, record_leaf_hash, Frontier, Hash, LeafHeaders, LeafRecord,
    HASH_BYTES, TREE_SIZE_MAX,
};
pub use note::{sign_note, verify_note, NoteSigner, NoteVerifier};
pub use proof::{
    consistency_proof, inclusion_proof, verify_consistency, verify_inclusion, MemoryTree, NodeSource, ProofBundle,
};
pub use tree_file::{SyncTicket, TreeFile};

use std::path::PathBuf;

/// Everything that can go wrong in the audit module.
///
/// Messages are lowercase and name the place: a file and byte, a line of a
/// note, or a leaf index.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// An operating-system call on `path` failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Bytes on disk do not have the documented shape.
    #[error("corrupt {path} at byte {byte}: {reason}")]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte position of the damage, or of the first missing byte.
        byte: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or sync failed; retrying proves nothing, reopen.
    #[error("tree file {path} is poisoned by an earlier i/o failure; reopen it")]
    Poisoned {
        /// The tree file.
        path: PathBuf,
    },
    /// A byte string handed to a decoder (not a file) is malformed.
    #[error("malformed {what} at byte {byte}: {reason}")]
    Decode {
        /// The structure being decoded.
        what: &'static str,
        /// Byte position in the input.
        byte: usize,
        /// What is wrong.
        reason: String,
    },
    /// A record field is longer than the leaf encoding's u32 length prefix.
    #[error("record field {field} is {len} bytes, above the leaf limit of {max}")]
    FieldTooLong {
        /// Which field (or "header count").
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: u64,
    },
    /// The tree would exceed [`TREE_SIZE_MAX`] leaves.
    #[error("merkle tree is full at {size} leaves")]
    TreeFull {
        /// Current number of leaves.
        size: u64,
    },
    /// A leaf index is not below the tree size it was asked against.
    #[error("leaf index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// The requested leaf index.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A tree size is larger than what is stored, or sizes are misordered.
    #[error("tree size {size} is out of range: {reason}")]
    SizeOutOfRange {
        /// The offending size.
        size: u64,
        /// Why it is out of range.
        reason: String,
    },
    /// A proof has the wrong number of hashes for its sizes.
    #[error("{kind} proof has {got} hashes, expected {expected}")]
    ProofLength {
        /// "inclusion" or "consistency".
        kind: &'static str,
        /// Expected count (or the maximum).
        expected: usize,
        /// Count received.
        got: usize,
    },
    /// A proof is well formed but does not lead to the claimed root.
    #[error("{kind} proof does not verify: {reason}")]
    ProofMismatch {
        /// "inclusion" or "consistency".
        kind: &'static str,
        /// Which check failed.
        reason: &'static str,
    },
    /// A note, checkpoint or proof bundle text is malformed.
    #[error("malformed {what}{}: {reason}", at_line(*line))]
    Text {
        /// "signed note", "checkpoint" or "proof bundle".
        what: &'static str,
        /// 1-based line number; 0 when the text as a whole is at fault.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A signature line names our key and id but the signature is wrong.
    #[error("signature by key {key} does not verify")]
    BadSignature {
        /// The verifier key (vkey form).
        key: String,
    },
    /// No signature line from the expected key was found.
    #[error("note carries no signature from key {key}")]
    NoSignature {
        /// The verifier key (vkey form).
        key: String,
    },
    /// A key string (vkey or private key) is malformed.
    #[error("malformed key: {reason}")]
    Key {
        /// What is wrong.
        reason: String,
    },
    /// A key file exists but does not hold a usable key.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// " at line N" for [`AuditError::Text`], nothing for line 0 (the text as a whole).
fn at_line(line: usize) -> String {
    if line == 0 {
        String::new()
    } else {
        format!(" at line {line}")
    }
}

/// Result alias for this module.
pub type Result<T, E = AuditError> = std::result::Result<T, E>;

impl AuditError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> AuditError {
        AuditError::Io {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_types_are_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<AuditError>();
        check::<TreeFile>();
        check::<Frontier>();
        check::<Checkpoint>();
        check::<NoteSigner>();
        check::<NoteVerifier>();
        check::<ProofBundle>();
        check::<MemoryTree>();
    }
}
