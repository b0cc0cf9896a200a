//! Many RFC 6962 hashes at once: leaves and interior nodes in multi-buffer batches.
//!
//! Leaves are independent of each other, and so are the new interior nodes of one
//! level when a batch of leaves is appended, so they are hashed several messages per
//! SIMD register (`tape-sha256`: 2×16 AVX-512 lanes on Zen 5, 16 on other AVX-512
//! CPUs, 4 interleaved SHA-NI streams where that is faster) instead of one SHA-NI
//! stream at a time. Where the CPU offers no wide kernel, the `sha2` crate hashes one
//! message at a time, as before. The digests are plain SHA-256: every byte that goes
//! into a hash and every hash that comes out is what [`leaf_hash`] and [`node_hash`]
//! give one at a time (tests compare them).
//!
//! [`LeafBatch`] gathers the canonical leaf bytes of many records in one reused buffer
//! (no allocation per record), and [`extend_frontier`] appends a batch of leaf hashes to
//! a tree level by level while producing the tree file's post-order byte stream.

use std::ops::Range;

use crate::audit::merkle::{
    leaf_hash, node_hash, Frontier, Hash, LeafHeaders, LeafRecord, HASH_BYTES, TREE_HEIGHT_MAX, TREE_SIZE_MAX,
};
use crate::audit::{AuditError, Result};

/// Messages handed to the multi-buffer kernel per call: enough for many full lane
/// groups, few enough that the slice table lives on the stack.
const MESSAGES_PER_CALL: usize = 256;
/// Records a [`LeafBatch`] should gather before it is hashed (see [`LeafBatch::is_full`]).
pub const LEAF_BATCH_RECORDS: usize = 256;
/// Leaf bytes a [`LeafBatch`] should gather before it is hashed: the buffer stays in L2.
pub const LEAF_BATCH_BYTES: usize = 256 * 1024;

const LEAF_PREFIX: [u8; 1] = [0x00];
const NODE_PREFIX: [u8; 1] = [0x01];

/// SHA-256 block size; messages are sorted by how many blocks they take.
const BLOCK_BYTES: usize = 64;

/// True when the wide kernels pay off; without SIMD lanes `tape-sha256` falls back to
/// a portable one-lane kernel that is slower than `sha2`'s.
fn lanes_available() -> bool {
    tape_sha256::lane_width() > 1
}

/// `out[i] = leaf_hash(leaves[i])`.
///
/// # Panics
/// If `leaves` and `out` differ in length (a caller bug).
pub fn leaf_hashes(leaves: &[&[u8]], out: &mut [Hash]) {
    assert_eq!(leaves.len(), out.len(), "one digest per leaf");
    if !lanes_available() {
        for (leaf, digest) in leaves.iter().zip(out.iter_mut()) {
            *digest = leaf_hash(leaf);
        }
        return;
    }
    for (chunk, digests) in leaves.chunks(MESSAGES_PER_CALL).zip(out.chunks_mut(MESSAGES_PER_CALL)) {
        hash_prefixed_sorted(&LEAF_PREFIX, chunk, digests);
    }
}

/// `out[i] = node_hash(children[2i], children[2i + 1])`: one level of interior nodes
/// whose children lie next to each other.
///
/// # Panics
/// If `children.len() != 2 * out.len()` (a caller bug).
pub fn node_hashes(children: &[Hash], out: &mut [Hash]) {
    assert_eq!(children.len(), 2 * out.len(), "two children per node");
    if !lanes_available() {
        for (pair, digest) in children.chunks_exact(2).zip(out.iter_mut()) {
            *digest = node_hash(&pair[0], &pair[1]);
        }
        return;
    }
    let bytes = children.as_flattened();
    let mut bodies: [&[u8]; MESSAGES_PER_CALL] = [&[]; MESSAGES_PER_CALL];
    for (pairs, digests) in bytes
        .chunks(2 * HASH_BYTES * MESSAGES_PER_CALL)
        .zip(out.chunks_mut(MESSAGES_PER_CALL))
    {
        let n = digests.len();
        for (body, pair) in bodies.iter_mut().zip(pairs.chunks_exact(2 * HASH_BYTES)) {
            *body = pair;
        }
        // All node messages have one length, so no sorting is needed.
        tape_sha256::hash_many_prefixed(&NODE_PREFIX, &bodies[..n], digests);
    }
}

/// Hashes `prefix || message` for up to [`MESSAGES_PER_CALL`] messages, in order of
/// their block count: the kernels run lanes in lockstep, so a lane group whose
/// messages all take the same number of blocks wastes no compressions (and on Zen 5
/// can use the interlaced two-wave kernel, which needs that).
fn hash_prefixed_sorted(prefix: &[u8], messages: &[&[u8]], out: &mut [Hash]) {
    debug_assert!(messages.len() <= MESSAGES_PER_CALL);
    let n = messages.len();
    let blocks = |m: &[u8]| (prefix.len() + m.len() + 1 + 8).div_ceil(BLOCK_BYTES);
    let first = messages.first().map_or(0, |m| blocks(m));
    if messages.iter().all(|m| blocks(m) == first) {
        tape_sha256::hash_many_prefixed(prefix, messages, out);
        return;
    }
    let mut order = [0u16; MESSAGES_PER_CALL];
    for (slot, i) in order.iter_mut().zip(0u16..) {
        *slot = i;
    }
    let order = &mut order[..n];
    order.sort_unstable_by_key(|&i| blocks(messages[usize::from(i)]));
    let mut sorted: [&[u8]; MESSAGES_PER_CALL] = [&[]; MESSAGES_PER_CALL];
    for (slot, &i) in sorted.iter_mut().zip(order.iter()) {
        *slot = messages[usize::from(i)];
    }
    let mut digests = [[0u8; HASH_BYTES]; MESSAGES_PER_CALL];
    tape_sha256::hash_many_prefixed(prefix, &sorted[..n], &mut digests[..n]);
    for (&i, digest) in order.iter().zip(digests.iter()) {
        out[usize::from(i)] = *digest;
    }
}

/// The canonical leaf bytes of many records, back to back in one reused buffer.
#[derive(Debug, Default)]
pub struct LeafBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl LeafBatch {
    /// An empty batch.
    pub fn new() -> LeafBatch {
        LeafBatch {
            bytes: Vec::with_capacity(LEAF_BATCH_BYTES + 4096),
            ends: Vec::with_capacity(LEAF_BATCH_RECORDS),
        }
    }

    /// Adds one record's leaf bytes.
    ///
    /// # Errors
    /// [`AuditError::FieldTooLong`] if a field exceeds the leaf encoding's limit
    /// (the batch is unchanged then).
    pub fn push<'a>(&mut self, record: &LeafRecord<'a, impl LeafHeaders<'a>>) -> Result<()> {
        record.encode_to(&mut self.bytes)?;
        self.ends.push(self.bytes.len());
        Ok(())
    }

    /// Records in the batch.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// True when the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// True once the batch holds enough to hash efficiently (and should be hashed
    /// before it grows out of the cache).
    pub fn is_full(&self) -> bool {
        self.ends.len() >= LEAF_BATCH_RECORDS || self.bytes.len() >= LEAF_BATCH_BYTES
    }

    /// Leaf bytes of record `i` of the batch.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn leaf(&self, i: usize) -> &[u8] {
        &self.bytes[self.span(i)]
    }

    fn span(&self, i: usize) -> Range<usize> {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        start..self.ends[i]
    }

    /// Appends the leaf hash of every record, in order, to `out`, and empties the batch.
    pub fn hash_into(&mut self, out: &mut Vec<Hash>) {
        let from = out.len();
        out.resize(from + self.len(), [0; HASH_BYTES]);
        let mut leaves: [&[u8]; MESSAGES_PER_CALL] = [&[]; MESSAGES_PER_CALL];
        let mut start = 0;
        while start < self.len() {
            let end = (start + MESSAGES_PER_CALL).min(self.len());
            for (slot, i) in leaves.iter_mut().zip(start..end) {
                *slot = self.leaf(i);
            }
            leaf_hashes(&leaves[..end - start], &mut out[from + start..from + end]);
            start = end;
        }
        self.bytes.clear();
        self.ends.clear();
    }
}

/// Reused per-level buffers of [`extend_frontier`].
#[derive(Debug, Default)]
pub struct LevelScratch {
    levels: Vec<Vec<Hash>>,
}

/// Appends `leaves` to the tree whose frontier is `frontier`, hashing each level's new
/// interior nodes in one multi-buffer batch. Appends every new hash to `post_order` in
/// the tree file's order (each leaf hash, then the roots of the perfect subtrees it
/// completes, lowest first: what [`Frontier::push`] one leaf at a time gives) and
/// returns the new frontier.
///
/// # Errors
/// [`AuditError::TreeFull`] if the tree would exceed [`TREE_SIZE_MAX`] leaves
/// (nothing is appended then).
pub fn extend_frontier(
    frontier: &Frontier,
    leaves: &[Hash],
    scratch: &mut LevelScratch,
    post_order: &mut Vec<u8>,
) -> Result<Frontier> {
    let size = frontier.size();
    let count = leaves.len() as u64;
    if count > TREE_SIZE_MAX - size {
        return Err(AuditError::TreeFull { size });
    }
    let new_size = size + count;
    // The old peak at `level`, when bit `level` of `size` is set; peaks are largest first.
    let old_peak = |level: u32| frontier.peaks()[(size >> (level + 1)).count_ones() as usize];
    // Level l holds the new nodes of indices (size >> l).. at that level: node (l, j)
    // covers leaves [j·2^l, (j+1)·2^l), and the nodes completed before this batch are
    // exactly the first size >> l. Its right child (l-1, 2j+1) is always new; its left
    // child is new too unless it is the old peak at level l-1 (when size >> (l-1) is odd).
    let mut height = 0u32;
    for level in 1..=TREE_HEIGHT_MAX as u32 {
        let first_below = size >> (level - 1);
        let end_below = new_size >> (level - 1);
        // New nodes at `level` are those whose right child (odd index) is new below.
        let first_right = first_below | 1;
        if first_right >= end_below {
            break;
        }
        let nodes = (end_below - first_right).div_ceil(2) as usize;
        let index = level as usize - 1;
        if scratch.levels.len() <= index {
            scratch.levels.push(Vec::new());
        }
        let (lower, upper) = scratch.levels.split_at_mut(index);
        let below: &[Hash] = if level == 1 { leaves } else { &lower[index - 1] };
        let current = &mut upper[0];
        current.clear();
        current.resize(nodes, [0; HASH_BYTES]);
        if first_below & 1 == 1 {
            current[0] = node_hash(&old_peak(level - 1), &below[0]);
            node_hashes(&below[1..2 * nodes - 1], &mut current[1..]);
        } else {
            node_hashes(&below[..2 * nodes], current);
        }
        height = level;
    }
    let node = |level: u32, index: u64| -> Hash {
        let first = size >> level;
        if index < first {
            return old_peak(level);
        }
        let at = (index - first) as usize;
        if level == 0 {
            leaves[at]
        } else {
            scratch.levels[level as usize - 1][at]
        }
    };
    let new_nodes: usize = scratch.levels.iter().take(height as usize).map(Vec::len).sum();
    post_order.reserve((leaves.len() + new_nodes) * HASH_BYTES);
    for (leaf, i) in leaves.iter().zip(size..) {
        post_order.extend_from_slice(leaf);
        for level in 1..=(i + 1).trailing_zeros() {
            post_order.extend_from_slice(&node(level, ((i + 1) >> level) - 1));
        }
    }
    // A peak of the new tree that is not new was a peak of the old one (its parent is
    // not complete now, so it was not complete before either).
    let peaks = (0..=new_size.checked_ilog2().unwrap_or(0))
        .rev()
        .filter(|level| new_size & (1 << level) != 0)
        .map(|level| node(level, (new_size >> level) - 1))
        .collect();
    Frontier::from_peaks(new_size, peaks)
}

#[cfg(test)]
#[path = "batch_tests.rs"]
mod tests;
