//! Verification and proofs over a topic's Merkle tree and checkpoints.

use base64::Engine;

use crate::audit::{self, Checkpoint, Hash, NoteVerifier, ProofBundle};
use crate::topic::evidence::{read_checkpoints, CHECKPOINTS_FILE};
use crate::topic::Topic;
use crate::{Error, Offset, Record, Result};

/// First line of a consistency proof bundle.
pub const CONSISTENCY_HEADER: &str = "trailkeep.consistency-proof@v1";

/// What `verify` checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Topic name.
    pub topic: String,
    /// Records recomputed (checksums, leaves) from the first held offset.
    pub records: u64,
    /// First offset held.
    pub start_offset: Offset,
    /// Leaves in the tree (= end offset).
    pub tree_size: u64,
    /// Root of the whole tree.
    pub root: Hash,
    /// Stored checkpoints whose signature and root were checked.
    pub checkpoints: usize,
    /// The external checkpoint's size, when one was given.
    pub external_size: Option<u64>,
    /// Records past the tree, not checked: verified without the append lock (another
    /// process appends, or the store is read-only), the tree as last synced covers the
    /// records up to `tree_size` only. 0 when verify held the lock (it hashes every record).
    pub unhashed: u64,
    /// Stored checkpoints signed after the tree was read (another process appends):
    /// not checked.
    pub newer_checkpoints: usize,
}

fn tamper(topic: &Topic, offset: Option<Offset>, reason: impl Into<String>) -> Error {
    Error::Tamper {
        topic: topic.name().to_owned(),
        offset,
        reason: reason.into(),
    }
}

/// Verify or prove asked of a topic that keeps no tree.
fn evidence_off(topic: &Topic) -> Error {
    tamper(
        topic,
        None,
        "tamper evidence is off for this topic (tamper_evidence = false)",
    )
}

fn audit_err(topic: &Topic, e: audit::AuditError) -> Error {
    super::evidence::audit_err(topic.name(), e)
}

/// Why `verify` runs without the topic's append lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unlocked {
    /// Another process appends: the tree and checkpoints may grow while they are read.
    Live,
    /// The store cannot be written (read-only media or permissions): nothing changes.
    ReadOnly,
}

/// Whether an error opening the lock file means the store cannot be written at all.
pub(crate) fn read_only_media(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::ReadOnlyFilesystem || e.kind() == std::io::ErrorKind::PermissionDenied
}

impl Topic {
    fn with_evidence<T>(&self, f: impl FnOnce(&mut crate::topic::evidence::Evidence) -> Result<T>) -> Result<T> {
        self.recover()?;
        let mut slot = self.shared.evidence.lock();
        let evidence = slot.as_mut().ok_or_else(|| evidence_off(self))?;
        self.hash_visible(evidence)?;
        #[cfg(test)]
        tests::AFTER_HASH.with_borrow_mut(|hook| hook.as_mut().map(|h| h()));
        f(evidence)
    }

    /// Recomputes everything: every batch checksum, every record's leaf against the
    /// tree, every stored checkpoint's signature and root, and, when given, an external
    /// checkpoint (which the store must contain: a smaller store is a rollback). Covers
    /// the records visible when called; records appended meanwhile are left to the next
    /// call.
    /// Verify takes the topic's append lock and first hashes what the tree lacks. While
    /// another process holds the lock (it appends), or when the store cannot be written
    /// (read-only media), it reads the tree as last synced instead and changes nothing:
    /// the records and stored checkpoints past that tree are reported as not checked
    /// ([`VerifyReport::unhashed`], [`VerifyReport::newer_checkpoints`]).
    /// `progress` is called with the number of records checked so far.
    ///
    /// # Errors
    /// [`Error::Tamper`] naming the offset or checkpoint that does not match,
    /// [`Error::Corrupt`] / [`Error::Gap`] naming file and byte,
    /// [`Error::CheckpointRejected`] for an external checkpoint that cannot apply.
    pub fn verify(
        &self,
        external: Option<(&str, &NoteVerifier)>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport> {
        let Some((unlocked, _)) = self.lock_or_why_not()? else {
            return self.with_evidence(|evidence| self.verify_tree(&evidence.tree, external, None, progress));
        };
        let tree = self.synced_tree()?;
        self.verify_tree(&tree, external, Some(unlocked), progress)
    }

    /// Takes the append lock (recovering the topic) and returns `None`; or, when another
    /// process holds it or the store cannot be written, why not and the error that said so.
    fn lock_or_why_not(&self) -> Result<Option<(Unlocked, Error)>> {
        match self.recover() {
            Ok(_) => Ok(None),
            Err(e @ Error::Locked { .. }) => Ok(Some((Unlocked::Live, e))),
            Err(Error::Io { source, context }) if read_only_media(&source) => {
                Ok(Some((Unlocked::ReadOnly, Error::Io { source, context })))
            }
            Err(e) => Err(e),
        }
    }

    /// The tree as last synced, read-only, and the log refreshed after it: another
    /// process's tree only hashes records it has made visible, so the log read after it
    /// reaches at least as far.
    fn synced_tree(&self) -> Result<audit::TreeFile> {
        if !self.config().tamper_evidence {
            return Err(evidence_off(self));
        }
        let tree = audit::TreeFile::open_read_only(self.dir().join(crate::topic::evidence::MERKLE_DIR))
            .map_err(|e| audit_err(self, e))?;
        self.refresh()?;
        Ok(tree)
    }

    /// `verify` over `tree`: the whole tree when verify holds the append lock (`unlocked`
    /// is `None`, and the tree covers every visible record), else the tree as synced.
    fn verify_tree(
        &self,
        tree: &audit::TreeFile,
        external: Option<(&str, &NoteVerifier)>,
        unlocked: Option<Unlocked>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport> {
        let own = self.shared.keys.verifier()?;
        let origin = self.shared.origin.clone();
        let start = self.start_offset();
        let log_end = self.end_offset();
        if let Some((from, to, file)) = self.missing_head()? {
            return Err(Error::Gap {
                topic: self.name().to_owned(),
                from,
                to,
                file,
            });
        }
        // The tree holds every record visible when this call began (without the lock: at
        // most the records visible now); an appender may have added more since (checked
        // by a later call), never fewer.
        if tree.size() > log_end.0 || tree.size() < start.0 {
            return Err(tamper(
                self,
                None,
                format!(
                    "the tree holds {} leaves, the log holds [{start}, {log_end})",
                    tree.size()
                ),
            ));
        }
        let end = Offset(tree.size());
        let records = self.check_leaves(tree, start, end, progress)?;
        // The leaves match the records; every interior node must be the hash of its
        // children (proofs are built from them).
        tree.check_nodes(|_| ()).map_err(|e| audit_err(self, e))?;
        let stored = read_checkpoints(self.name(), &self.dir().join(CHECKPOINTS_FILE))?;
        let mut newer_checkpoints = 0;
        for (i, text) in stored.iter().enumerate() {
            let checked = parse_checkpoint(text, &own, &origin).and_then(|cp| {
                if cp.size > tree.size() && unlocked == Some(Unlocked::Live) {
                    newer_checkpoints += 1;
                    return Ok(());
                }
                check_against_tree(tree, &cp)
            });
            checked.map_err(|e| {
                tamper(
                    self,
                    None,
                    format!("stored checkpoint #{} of {}: {e}", i + 1, CHECKPOINTS_FILE),
                )
            })?;
        }
        let external_size = match external {
            Some((text, verifier)) => {
                let cp = parse_checkpoint(text, verifier, &origin).map_err(|reason| Error::CheckpointRejected {
                    topic: self.name().to_owned(),
                    reason,
                })?;
                check_against_tree(tree, &cp).map_err(|e| tamper(self, None, format!("external checkpoint: {e}")))?;
                Some(cp.size)
            }
            None => None,
        };
        Ok(VerifyReport {
            topic: self.name().to_owned(),
            records,
            start_offset: start,
            tree_size: tree.size(),
            root: tree.root(),
            checkpoints: stored.len() - newer_checkpoints,
            external_size,
            unhashed: log_end.0.saturating_sub(tree.size()),
            newer_checkpoints,
        })
    }

    /// Recomputes every record's checksum and leaf in [`start`, `end`) and compares the
    /// leaves with the tree's; returns the records checked.
    fn check_leaves(
        &self,
        tree: &audit::TreeFile,
        start: Offset,
        end: Offset,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let mut records = 0u64;
        let mut mismatch = None;
        let mut computed = Vec::with_capacity(audit::batch::LEAF_BATCH_RECORDS);
        let mut stored = Vec::with_capacity(audit::batch::LEAF_BATCH_RECORDS);
        let checked = self.for_each_leaf_batch(start.0, end.0, |first, batch| {
            computed.clear();
            batch.hash_into(&mut computed);
            stored.resize(computed.len(), [0u8; audit::HASH_BYTES]);
            tree.leaves_into(first, &mut stored).map_err(|e| audit_err(self, e))?;
            if let Some(i) = computed.iter().zip(&stored).position(|(leaf, stored)| leaf != stored) {
                let offset = Offset(first + i as u64);
                mismatch = Some(offset);
                return Err(tamper(self, Some(offset), "leaf mismatch"));
            }
            let before = records;
            records += computed.len() as u64;
            if before / 65_536 != records / 65_536 {
                progress(records);
            }
            Ok(())
        });
        if let Some(offset) = mismatch {
            let file = self.segment_file_of(offset);
            return Err(tamper(
                self,
                Some(offset),
                format!("record {offset} (in {}) does not match its leaf in the Merkle tree: it was changed after it was written", file.display()),
            ));
        }
        checked?;
        progress(records);
        if records != end.0 - start.0 {
            return Err(tamper(
                self,
                None,
                format!("read {records} records, expected {}", end.0 - start.0),
            ));
        }
        Ok(records)
    }

    fn segment_file_of(&self, offset: Offset) -> std::path::PathBuf {
        let segments = self.shared.segments.read();
        let base = if offset >= segments.tail.base {
            segments.tail.base
        } else {
            segments
                .sealed
                .iter()
                .rev()
                .find(|s| s.base <= offset)
                .map_or(segments.tail.base, |s| s.base)
        };
        self.dir()
            .join(crate::segment::file_name(base, crate::segment::LOG_EXT))
    }

    /// Signs a checkpoint of everything appended so far and returns its text.
    ///
    /// # Errors
    /// As for [`Topic::verify`].
    pub fn checkpoint(&self) -> Result<String> {
        self.with_evidence(|evidence| self.checkpoint_now(evidence))
    }

    /// The newest stored checkpoint, if any.
    ///
    /// # Errors
    /// I/O errors, a corrupt checkpoints file.
    pub fn latest_checkpoint(&self) -> Result<Option<String>> {
        Ok(read_checkpoints(self.name(), &self.dir().join(CHECKPOINTS_FILE))?.pop())
    }

    /// The public key that verifies this store's checkpoints, in vkey form.
    ///
    /// # Errors
    /// I/O errors loading or creating the key.
    pub fn verifier_key(&self) -> Result<String> {
        Ok(self.shared.keys.verifier()?.to_vkey())
    }

    /// An inclusion proof of the record at `offset` as a `c2sp.org/tlog-proof@v1` bundle,
    /// against the newest checkpoint (a new one is signed if none covers the offset).
    ///
    /// # Errors
    /// [`Error::OffsetOutOfRange`]; as for [`Topic::verify`].
    pub fn prove(&self, offset: Offset) -> Result<String> {
        if offset >= self.end_offset() {
            return Err(self.out_of_range(offset));
        }
        let verifier = &self.shared.keys.verifier()?;
        let stored = || -> Result<Option<(String, Checkpoint)>> {
            let latest = read_checkpoints(self.name(), &self.dir().join(CHECKPOINTS_FILE))?.pop();
            Ok(latest.and_then(|t| Checkpoint::parse_and_verify(&t, verifier).ok().map(|c| (t, c))))
        };
        if let Some((_, why)) = self.lock_or_why_not()? {
            // Another process appends (or the store is read-only): prove against the newest
            // stored checkpoint the synced tree covers; signing a new one needs the lock.
            let tree = self.synced_tree()?;
            let all = read_checkpoints(self.name(), &self.dir().join(CHECKPOINTS_FILE))?;
            let covering = all.into_iter().rev().find_map(|t| {
                let c = Checkpoint::parse_and_verify(&t, verifier).ok()?;
                (c.size > offset.0 && c.size <= tree.size()).then_some((t, c))
            });
            return match covering {
                Some((text, cp)) => self.inclusion_bundle(&tree, offset, text, &cp),
                None => Err(why),
            };
        }
        self.with_evidence(|evidence| {
            let (text, cp) = match stored()? {
                Some((t, c)) if c.size > offset.0 => (t, c),
                _ => {
                    let t = self.checkpoint_now(evidence)?;
                    let c = Checkpoint::parse_and_verify(&t, verifier).map_err(|e| audit_err(self, e))?;
                    (t, c)
                }
            };
            self.inclusion_bundle(&evidence.tree, offset, text, &cp)
        })
    }

    /// The inclusion proof of `offset` in `tree` at the checkpoint's size, as a bundle.
    fn inclusion_bundle(
        &self,
        tree: &audit::TreeFile,
        offset: Offset,
        text: String,
        cp: &Checkpoint,
    ) -> Result<String> {
        let proof = tree
            .inclusion_proof(offset.0, cp.size)
            .map_err(|e| audit_err(self, e))?;
        // The proof is built from the tree file's stored nodes: one that does not lead
        // from the stored leaf to the signed root (a damaged node) is never handed out.
        // (`verify` checks the leaves against the records.)
        let mut leaf = [[0u8; audit::HASH_BYTES]];
        tree.leaves_into(offset.0, &mut leaf).map_err(|e| audit_err(self, e))?;
        audit::verify_inclusion(&leaf[0], offset.0, cp.size, &proof, &cp.root).map_err(|e| {
            tamper(
                self,
                Some(offset),
                format!("the proof built from the tree file does not verify ({e}): the tree file is damaged; run trailkeep verify"),
            )
        })?;
        Ok(ProofBundle {
            extra: None,
            index: offset.0,
            proof,
            checkpoint: text,
        }
        .encode())
    }

    /// A consistency proof from tree size `old_size` to a fresh checkpoint: header line,
    /// `old <size>`, one base64 hash per line, a blank line, the signed checkpoint.
    ///
    /// # Errors
    /// As for [`Topic::verify`].
    pub fn prove_consistency(&self, old_size: u64) -> Result<String> {
        self.with_evidence(|evidence| {
            let text = self.checkpoint_now(evidence)?;
            let size = evidence.tree.size();
            if old_size > size {
                return Err(tamper(
                    self,
                    None,
                    format!("old size {old_size} is larger than the tree ({size})"),
                ));
            }
            let proof = evidence
                .tree
                .consistency_proof(old_size, size)
                .map_err(|e| audit_err(self, e))?;
            let mut out = format!("{CONSISTENCY_HEADER}\nold {old_size}\n");
            for hash in proof {
                out.push_str(&base64::engine::general_purpose::STANDARD.encode(hash));
                out.push('\n');
            }
            out.push('\n');
            out.push_str(&text);
            Ok(out)
        })
    }
}

/// Parses a signed checkpoint, checks its signature by `verifier` and that it is the
/// checkpoint of `origin`; the message says what is wrong.
fn parse_checkpoint(text: &str, verifier: &NoteVerifier, origin: &str) -> std::result::Result<Checkpoint, String> {
    let cp = Checkpoint::parse_and_verify(text, verifier).map_err(|e| e.to_string())?;
    if cp.origin != origin {
        return Err(format!(
            "it is the checkpoint of {:?}, not of this topic ({origin:?})",
            cp.origin
        ));
    }
    Ok(cp)
}

/// Checks that the tree contains the checkpoint's tree: the message says what differs.
fn check_against_tree(tree: &audit::TreeFile, cp: &Checkpoint) -> std::result::Result<(), String> {
    if cp.size > tree.size() {
        return Err(format!(
            "it covers {} records but the store holds {}: records were removed (truncation or rollback)",
            cp.size,
            tree.size()
        ));
    }
    let root = tree.root_at(cp.size).map_err(|e| e.to_string())?;
    if root != cp.root {
        return Err(format!(
            "the tree's root at size {} differs from the signed root: the log was rewritten",
            cp.size
        ));
    }
    let proof = tree
        .consistency_proof(cp.size, tree.size())
        .map_err(|e| e.to_string())?;
    audit::verify_consistency(cp.size, tree.size(), &cp.root, &tree.root(), &proof).map_err(|e| e.to_string())
}

/// Checks, with nothing but the public key, that `record` is included in the log whose
/// signed checkpoint the `bundle` (from [`Topic::prove`]) carries. Returns the checkpoint.
///
/// # Errors
/// [`Error::Tamper`] saying what does not verify.
pub fn verify_record_inclusion(record: &Record, bundle: &str, vkey: &str) -> Result<Checkpoint> {
    let fail = |reason: String| Error::Tamper {
        topic: String::new(),
        offset: Some(record.offset),
        reason,
    };
    let verifier = NoteVerifier::parse(vkey).map_err(|e| fail(format!("bad verifier key: {e}")))?;
    let bundle = ProofBundle::parse(bundle).map_err(|e| fail(e.to_string()))?;
    if bundle.index != record.offset.0 {
        return Err(fail(format!(
            "the proof is for offset {}, the record is {}",
            bundle.index, record.offset
        )));
    }
    let leaf = audit::record_leaf_hash(
        record.offset.0,
        record.timestamp_us,
        record.event_time_us,
        record.key.as_deref(),
        &record.headers,
        &record.value,
    )
    .map_err(|e| fail(e.to_string()))?;
    bundle.verify(&leaf, &verifier).map_err(|e| fail(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use crate::{NewRecord, Offset, Store, TopicConfig};

    thread_local! {
        /// Runs between catching the tree up and checking it (this thread only).
        pub(super) static AFTER_HASH: RefCell<Option<Box<dyn FnMut()>>> = RefCell::new(None);
    }

    /// An append between the tree's catch-up and the check is no tampering: `verify`
    /// covers the records visible when it was called (it once compared the tree with the
    /// log end read again, and failed whenever an appender ran beside it).
    #[test]
    fn verify_covers_what_was_visible_when_an_append_lands_during_it() {
        let store = Store::temporary().unwrap();
        let topic = store.create_topic("t", TopicConfig::default()).unwrap();
        for i in 0..10u32 {
            topic.append(&NewRecord::new(i.to_le_bytes().to_vec())).unwrap();
        }
        let appender = topic.clone();
        AFTER_HASH.with_borrow_mut(|hook| {
            *hook = Some(Box::new(move || {
                appender.append(&NewRecord::new(b"during verify".to_vec())).unwrap();
            }))
        });
        let report = topic.verify(None, &mut |_| {});
        AFTER_HASH.with_borrow_mut(|hook| *hook = None);
        let report = report.unwrap();
        assert_eq!((report.records, report.tree_size), (10, 10));
        assert_eq!(topic.end_offset(), Offset(11));
        let report = topic.verify(None, &mut |_| {}).unwrap();
        assert_eq!((report.records, report.tree_size), (11, 11));
        store.close().unwrap();
    }
}
