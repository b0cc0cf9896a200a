//! RFC 9162 §2.1.3 inclusion and §2.1.4 consistency proofs: generation over
//! any [`NodeSource`], verification, and the `c2sp.org/tlog-proof@v1` bundle.
//!
//! Generation walks the RFC's recursive definitions iteratively; every
//! subtree the recursion names starts at a multiple of its own padded size,
//! so its hash is a fold of perfect subtrees that the source stores. The
//! verifiers are the RFC's algorithms step by step (see LESSONS 13: no
//! custom proof shapes).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::audit::checkpoint::Checkpoint;
use crate::audit::merkle::{fold_peaks, node_hash, Frontier, Hash, TREE_HEIGHT_MAX, TREE_SIZE_MAX};
use crate::audit::note::{decode_hash, parse_decimal, NoteVerifier, NOTE_BYTES_MAX};
use crate::audit::{AuditError, Result};

/// Most hashes any proof may carry: a tree of [`TREE_SIZE_MAX`] leaves needs
/// at most `TREE_HEIGHT_MAX` for inclusion and one more for consistency.
pub const PROOF_HASHES_MAX: usize = TREE_HEIGHT_MAX + 1;

/// First line of a proof bundle.
pub const BUNDLE_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Most bytes of a proof bundle: the checkpoint plus a full proof.
pub const BUNDLE_BYTES_MAX: usize = NOTE_BYTES_MAX + 8 * 1024;

/// Stored hashes of complete subtrees, which is all proof generation needs.
pub trait NodeSource {
    /// Number of leaves stored.
    fn size(&self) -> u64;

    /// Hash of the perfect subtree of `2^level` leaves starting at leaf
    /// `index << level`; that subtree must lie within `size()`.
    ///
    /// # Errors
    /// Out-of-range positions or storage failures.
    fn node(&self, level: u32, index: u64) -> Result<Hash>;
}

/// Largest power of two strictly below `n`; `n` must be at least 2.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// MTH(D[start:end]) where `start` is a multiple of the range's padded size,
/// as every range in the RFC recursion is.
fn range_root(src: &impl NodeSource, start: u64, end: u64) -> Result<Hash> {
    let mut peaks = Vec::with_capacity(TREE_HEIGHT_MAX + 1);
    let mut cursor = start;
    let width = end - start;
    for level in (0..=TREE_HEIGHT_MAX as u32).rev() {
        if width & (1 << level) != 0 {
            peaks.push(src.node(level, cursor >> level)?);
            cursor += 1 << level;
        }
    }
    Ok(fold_peaks(&peaks))
}

/// Root of the first `size` leaves of `src`.
///
/// # Errors
/// [`AuditError::SizeOutOfRange`] if `size` exceeds `src.size()`.
pub fn root_at(src: &impl NodeSource, size: u64) -> Result<Hash> {
    check_size(src, size)?;
    range_root(src, 0, size)
}

fn check_size(src: &impl NodeSource, size: u64) -> Result<()> {
    if size > src.size() {
        return Err(AuditError::SizeOutOfRange {
            size,
            reason: format!("only {} leaves are stored", src.size()),
        });
    }
    Ok(())
}

/// RFC 9162 §2.1.3.1 PATH(index, D\[0:size\]), leaf sibling first.
///
/// # Errors
/// [`AuditError::IndexOutOfRange`] unless `index < size`;
/// [`AuditError::SizeOutOfRange`] if `size` exceeds `src.size()`.
pub fn inclusion_proof(src: &impl NodeSource, index: u64, size: u64) -> Result<Vec<Hash>> {
    check_size(src, size)?;
    if index >= size {
        return Err(AuditError::IndexOutOfRange { index, size });
    }
    let (mut m, mut start, mut n) = (index, 0, size);
    let mut path = Vec::new();
    // Each step keeps the half holding leaf m and records the other half;
    // the RFC appends the top sibling last, hence the final reverse.
    while n > 1 {
        let k = split_point(n);
        if m < k {
            path.push(range_root(src, start + k, start + n)?);
            n = k;
        } else {
            path.push(range_root(src, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// RFC 9162 §2.1.4.1 PROOF(old_size, D\[0:new_size\]); empty when
/// `old_size` is 0 or equals `new_size`.
///
/// # Errors
/// [`AuditError::SizeOutOfRange`] unless `old_size <= new_size <= src.size()`.
pub fn consistency_proof(src: &impl NodeSource, old_size: u64, new_size: u64) -> Result<Vec<Hash>> {
    check_size(src, new_size)?;
    check_order(old_size, new_size)?;
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let (mut m, mut start, mut n) = (old_size, 0, new_size);
    // `complete` is the RFC's b: true while the old tree is a whole subtree
    // on the left edge of the new one.
    let mut complete = true;
    let mut proof = Vec::new();
    while m != n {
        let k = split_point(n);
        if m <= k {
            proof.push(range_root(src, start + k, start + n)?);
            n = k;
        } else {
            proof.push(range_root(src, start, start + k)?);
            m -= k;
            start += k;
            n -= k;
            complete = false;
        }
    }
    if !complete {
        proof.push(range_root(src, start, start + m)?);
    }
    proof.reverse();
    Ok(proof)
}

fn check_order(old_size: u64, new_size: u64) -> Result<()> {
    if old_size > new_size {
        return Err(AuditError::SizeOutOfRange {
            size: old_size,
            reason: format!("old size is above new size {new_size}"),
        });
    }
    Ok(())
}

fn mismatch(kind: &'static str, reason: &'static str) -> AuditError {
    AuditError::ProofMismatch { kind, reason }
}

fn check_proof_len(kind: &'static str, proof: &[Hash]) -> Result<()> {
    if proof.len() > PROOF_HASHES_MAX {
        return Err(AuditError::ProofLength {
            kind,
            expected: PROOF_HASHES_MAX,
            got: proof.len(),
        });
    }
    Ok(())
}

/// RFC 9162 §2.1.3.2: checks that `leaf` sits at `index` in the tree of
/// `size` leaves whose root is `root`.
///
/// # Errors
/// [`AuditError::IndexOutOfRange`], [`AuditError::ProofLength`] or
/// [`AuditError::ProofMismatch`].
pub fn verify_inclusion(leaf: &Hash, index: u64, size: u64, proof: &[Hash], root: &Hash) -> Result<()> {
    const KIND: &str = "inclusion";
    if index >= size {
        return Err(AuditError::IndexOutOfRange { index, size });
    }
    check_proof_len(KIND, proof)?;
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(mismatch(KIND, "proof is longer than the path to the root"));
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(mismatch(KIND, "proof is shorter than the path to the root"));
    }
    if r != *root {
        return Err(mismatch(KIND, "computed root differs from the expected root"));
    }
    Ok(())
}

/// RFC 9162 §2.1.4.2: checks that the tree of `old_size` leaves with
/// `old_root` is a prefix of the tree of `new_size` leaves with `new_root`.
///
/// Equal sizes need an empty proof and equal roots; old size 0 needs an
/// empty proof and the empty-tree root.
///
/// # Errors
/// [`AuditError::SizeOutOfRange`], [`AuditError::ProofLength`] or
/// [`AuditError::ProofMismatch`].
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<()> {
    const KIND: &str = "consistency";
    check_order(old_size, new_size)?;
    check_proof_len(KIND, proof)?;
    if old_size == 0 || old_size == new_size {
        return verify_trivial_consistency(old_size, old_root, new_root, proof);
    }
    let Some((first, rest)) = proof.split_first() else {
        return Err(mismatch(KIND, "proof is empty"));
    };
    // Step 2: when the old tree is a perfect subtree its root is the first
    // node of the path; it is prepended instead of being sent.
    let (seed, path) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in path {
        if snode == 0 {
            return Err(mismatch(KIND, "proof is longer than the path to the root"));
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(mismatch(KIND, "proof is shorter than the path to the root"));
    }
    if fr != *old_root {
        return Err(mismatch(KIND, "computed old root differs from the old root"));
    }
    if sr != *new_root {
        return Err(mismatch(KIND, "computed new root differs from the new root"));
    }
    Ok(())
}

fn verify_trivial_consistency(old_size: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) -> Result<()> {
    const KIND: &str = "consistency";
    if !proof.is_empty() {
        return Err(AuditError::ProofLength {
            kind: KIND,
            expected: 0,
            got: proof.len(),
        });
    }
    if old_size == 0 && *old_root != crate::audit::merkle::empty_root() {
        return Err(mismatch(KIND, "old root of an empty tree is not the empty-tree root"));
    }
    if old_size != 0 && old_root != new_root {
        return Err(mismatch(KIND, "roots of equal-size trees differ"));
    }
    Ok(())
}

/// A whole tree in memory: for tests, small tools, and rebuilding from a log.
#[derive(Clone, Debug, Default)]
pub struct MemoryTree {
    frontier: Frontier,
    /// `levels[k][j]`: root of the perfect subtree of `2^k` leaves at `j << k`.
    levels: Vec<Vec<Hash>>,
}

impl MemoryTree {
    /// The empty tree.
    pub fn new() -> MemoryTree {
        MemoryTree::default()
    }

    /// Appends one leaf hash.
    ///
    /// # Errors
    /// [`AuditError::TreeFull`] at [`TREE_SIZE_MAX`] leaves.
    pub fn push(&mut self, leaf: Hash) -> Result<()> {
        let levels = &mut self.levels;
        if levels.is_empty() {
            levels.push(Vec::new());
        }
        self.frontier.push_with(leaf, |level, hash| {
            if levels.len() <= level as usize {
                levels.push(Vec::new());
            }
            levels[level as usize].push(*hash);
        })?;
        levels[0].push(leaf);
        Ok(())
    }

    /// Root of the whole tree.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }
}

impl NodeSource for MemoryTree {
    fn size(&self) -> u64 {
        self.frontier.size()
    }

    fn node(&self, level: u32, index: u64) -> Result<Hash> {
        self.levels
            .get(level as usize)
            .and_then(|l| l.get(usize::try_from(index).ok()?))
            .copied()
            .ok_or(AuditError::IndexOutOfRange {
                index: index.saturating_mul(1 << level.min(63)),
                size: self.size(),
            })
    }
}

const _: () = assert!(TREE_SIZE_MAX <= 1 << 63);

/// A `c2sp.org/tlog-proof@v1` proof: a leaf index, its inclusion proof, and
/// the signed checkpoint of the tree it was proven against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofBundle {
    /// Opaque, unauthenticated application data (the optional `extra` line).
    pub extra: Option<Vec<u8>>,
    /// Zero-based leaf index (the record's offset).
    pub index: u64,
    /// Inclusion proof, leaf sibling first.
    pub proof: Vec<Hash>,
    /// Signed checkpoint text, verbatim.
    pub checkpoint: String,
}

impl ProofBundle {
    /// The bundle text.
    pub fn encode(&self) -> String {
        let mut out = format!("{BUNDLE_HEADER}\n");
        if let Some(extra) = &self.extra {
            out.push_str(&format!("extra {}\n", BASE64.encode(extra)));
        }
        out.push_str(&format!("index {}\n", self.index));
        for hash in &self.proof {
            out.push_str(&BASE64.encode(hash));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Parses a bundle; the checkpoint is kept as text, not yet verified.
    ///
    /// # Errors
    /// [`AuditError::Text`] naming the offending line.
    pub fn parse(text: &str) -> Result<ProofBundle> {
        if text.len() > BUNDLE_BYTES_MAX {
            return Err(bundle_error(0, format!("bundle exceeds {BUNDLE_BYTES_MAX} bytes")));
        }
        let mut lines = text.split_inclusive('\n').enumerate();
        let mut next = |what: &str| -> Result<(usize, &str)> {
            let (i, line) = lines.next().ok_or_else(|| bundle_error(0, format!("missing {what}")))?;
            let line = line
                .strip_suffix('\n')
                .ok_or_else(|| bundle_error(i + 1, "line does not end in a newline".into()))?;
            Ok((i + 1, line))
        };
        let (_, header) = next("header line")?;
        if header != BUNDLE_HEADER {
            return Err(bundle_error(1, format!("first line is not {BUNDLE_HEADER}")));
        }
        let (mut line_no, mut line) = next("index line")?;
        let mut extra = None;
        if let Some(encoded) = line.strip_prefix("extra ") {
            let bytes = BASE64
                .decode(encoded)
                .map_err(|e| bundle_error(line_no, format!("bad base64 in extra: {e}")))?;
            extra = Some(bytes);
            (line_no, line) = next("index line")?;
        }
        let index = line
            .strip_prefix("index ")
            .and_then(parse_decimal)
            .ok_or_else(|| bundle_error(line_no, "expected `index N` with a canonical decimal".into()))?;
        let mut proof = Vec::new();
        loop {
            let (line_no, line) = next("blank line before the checkpoint")?;
            if line.is_empty() {
                break;
            }
            if proof.len() == PROOF_HASHES_MAX {
                return Err(bundle_error(
                    line_no,
                    format!("more than {PROOF_HASHES_MAX} proof hashes"),
                ));
            }
            let hash = decode_hash(line)
                .ok_or_else(|| bundle_error(line_no, "proof line is not a base64 sha-256 hash".into()))?;
            proof.push(hash);
        }
        let consumed: usize = text
            .split_inclusive('\n')
            .take(proof.len() + 3 + usize::from(extra.is_some()))
            .map(str::len)
            .sum();
        let checkpoint = text[consumed..].to_string();
        if checkpoint.is_empty() {
            return Err(bundle_error(0, "missing checkpoint".into()));
        }
        Ok(ProofBundle {
            extra,
            index,
            proof,
            checkpoint,
        })
    }

    /// Verifies the checkpoint's signature, then that `leaf` is included at
    /// `index` in the checkpointed tree. Returns the checkpoint.
    ///
    /// # Errors
    /// Any checkpoint or inclusion verification error.
    pub fn verify(&self, leaf: &Hash, verifier: &NoteVerifier) -> Result<Checkpoint> {
        let checkpoint = Checkpoint::parse_and_verify(&self.checkpoint, verifier)?;
        verify_inclusion(leaf, self.index, checkpoint.size, &self.proof, &checkpoint.root)?;
        Ok(checkpoint)
    }
}

fn bundle_error(line: usize, reason: String) -> AuditError {
    AuditError::Text {
        what: "proof bundle",
        line,
        reason,
    }
}

#[cfg(test)]
#[path = "proof_tests.rs"]
mod tests;
