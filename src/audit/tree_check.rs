//! [`TreeFile::check_nodes`]: every interior node of the tree file recomputed from the
//! stored leaves and compared with the stored one.

use super::{entries_for, TreeFile, HASH_WIDTH, HEADER_BYTES, TREE_FILE_NAME};
use crate::audit::batch::{extend_frontier, LevelScratch};
use crate::audit::merkle::{Frontier, Hash, HASH_BYTES};
use crate::audit::Result;

/// Leaves per step of [`TreeFile::check_nodes`]: their stored run (about two hashes a
/// leaf, 2 MiB) and its recomputation are held in memory at once.
const CHECK_LEAVES: u64 = 32_768;

/// Buffers reused across the steps of a check.
#[derive(Default)]
struct CheckScratch {
    stored: Vec<u8>,
    computed: Vec<u8>,
    leaves: Vec<Hash>,
    levels: LevelScratch,
}

impl TreeFile {
    /// Recomputes every interior node from the stored leaf hashes (in multi-buffer
    /// batches, reading the file once from start to end) and compares each with the stored
    /// node; then the root with the tree's. Leaves are not checked here: the caller
    /// compares them with the records. `progress` is called with the leaves covered so far.
    ///
    /// # Errors
    /// [`crate::audit::AuditError::Corrupt`] naming the byte, level and leaves of the first
    /// node that does not match; I/O errors.
    pub fn check_nodes(&self, mut progress: impl FnMut(u64)) -> Result<()> {
        let size = self.size();
        let mut frontier = Frontier::new();
        let mut scratch = CheckScratch::default();
        while frontier.size() < size {
            let from = frontier.size();
            let count = (size - from).min(CHECK_LEAVES);
            frontier = self.check_run(&frontier, count, &mut scratch)?;
            progress(frontier.size());
        }
        if frontier.root() != self.root() {
            let at = HEADER_BYTES + entries_for(size) * HASH_WIDTH;
            return Err(self.corrupt(
                at,
                format!("the stored nodes of {size} leaves fold to another root than the tree's"),
            ));
        }
        Ok(())
    }

    /// Checks the post-order run of the `count` leaves after `frontier` (each leaf and the
    /// nodes it completes); returns the frontier after them.
    fn check_run(&self, frontier: &Frontier, count: u64, scratch: &mut CheckScratch) -> Result<Frontier> {
        let from = frontier.size();
        let first = entries_for(from);
        let entries = entries_for(from + count) - first;
        scratch.stored.resize((entries * HASH_WIDTH) as usize, 0);
        self.read_entries(first, &mut scratch.stored)?;
        scratch.leaves.clear();
        for index in from..from + count {
            let at = ((entries_for(index) - first) * HASH_WIDTH) as usize;
            let mut leaf = [0u8; HASH_BYTES];
            leaf.copy_from_slice(&scratch.stored[at..at + HASH_BYTES]);
            scratch.leaves.push(leaf);
        }
        scratch.computed.clear();
        let next = extend_frontier(frontier, &scratch.leaves, &mut scratch.levels, &mut scratch.computed)?;
        debug_assert_eq!(scratch.computed.len(), scratch.stored.len());
        let differs = scratch
            .computed
            .chunks_exact(HASH_BYTES)
            .zip(scratch.stored.chunks_exact(HASH_BYTES))
            .position(|(computed, stored)| computed != stored);
        match differs {
            None => Ok(next),
            Some(i) => Err(self.node_mismatch(from, first + i as u64)),
        }
    }

    /// The error for hash number `position`, an interior node completed by one of the
    /// leaves from `from` on.
    fn node_mismatch(&self, from: u64, position: u64) -> crate::audit::AuditError {
        // The leaf whose run holds `position`: the last leaf stored at or before it.
        let mut leaf = from;
        while entries_for(leaf + 1) <= position {
            leaf += 1;
        }
        let level = position - entries_for(leaf);
        let span = 1u64 << level;
        let first_leaf = leaf + 1 - span;
        self.corrupt(
            HEADER_BYTES + position * HASH_WIDTH,
            format!(
                "node hash {position} (level {level}, leaves {first_leaf}..{}) is not the hash of its \
                 children: {TREE_FILE_NAME} was damaged",
                leaf + 1
            ),
        )
    }
}
