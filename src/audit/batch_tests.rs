//! Proves the batched hashes equal the one-at-a-time ones: multi-buffer leaf and node
//! hashes against `sha2` for random lengths and batch sizes, and a tree grown by
//! random batches against the same tree grown one leaf at a time (frontier, and every
//! stored hash in post-order) and against the RFC 6962 definition.

use super::*;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn sha256(parts: &[&[u8]]) -> Hash {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

/// One leaf at a time: the tree file's post-order bytes and the final frontier.
fn one_at_a_time(start: &Frontier, leaves: &[Hash]) -> (Frontier, Vec<u8>) {
    let mut frontier = start.clone();
    let mut bytes = Vec::new();
    for leaf in leaves {
        bytes.extend_from_slice(leaf);
        frontier
            .push_with(*leaf, |_, node| bytes.extend_from_slice(node))
            .unwrap();
    }
    (frontier, bytes)
}

fn test_leaves(n: usize, seed: u64) -> Vec<Hash> {
    (0..n as u64).map(|i| leaf_hash(&(seed ^ i).to_le_bytes())).collect()
}

/// RFC 6962 MTH straight from the recursive definition.
fn naive_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => crate::audit::empty_root(),
        1 => leaves[0],
        n => {
            let k = 1 << (n - 1).ilog2();
            node_hash(&naive_root(&leaves[..k]), &naive_root(&leaves[k..]))
        }
    }
}

#[test]
fn every_split_of_small_trees_matches_one_at_a_time() {
    let leaves = test_leaves(70, 1);
    for total in 0..leaves.len() {
        for cut in 0..=total {
            let mut scratch = LevelScratch::default();
            let mut bytes = Vec::new();
            let first = extend_frontier(&Frontier::new(), &leaves[..cut], &mut scratch, &mut bytes).unwrap();
            let second = extend_frontier(&first, &leaves[cut..total], &mut scratch, &mut bytes).unwrap();
            let (want, want_bytes) = one_at_a_time(&Frontier::new(), &leaves[..total]);
            assert_eq!(second, want, "size {total}, cut at {cut}");
            assert_eq!(bytes, want_bytes, "size {total}, cut at {cut}");
            assert_eq!(second.root(), naive_root(&leaves[..total]), "size {total}");
        }
    }
}

#[test]
fn leaf_batch_hashes_match_leaf_hash_of_leaf_bytes() {
    let mut batch = LeafBatch::new();
    let headers = vec![("h".to_string(), vec![1u8, 2, 3])];
    let mut want = Vec::new();
    for i in 0..600u64 {
        let value = vec![i as u8; (i as usize * 7) % 500];
        let key = (i % 3 == 0).then_some(&b"key"[..]);
        let event_time = (i % 2 == 0).then_some(-(i as i64));
        let hdrs: &[(String, Vec<u8>)] = if i % 5 == 0 { &headers } else { &[] };
        let record = LeafRecord {
            offset: i,
            timestamp_us: i * 10,
            event_time_us: event_time,
            key,
            headers: hdrs,
            value: &value,
        };
        batch.push(&record).unwrap();
        let bytes = crate::audit::leaf_bytes(i, i * 10, event_time, key, hdrs, &value).unwrap();
        assert_eq!(batch.leaf(batch.len() - 1), &bytes[..]);
        want.push(leaf_hash(&bytes));
        assert_eq!(record.leaf_hash().unwrap(), leaf_hash(&bytes));
    }
    let mut got = Vec::new();
    batch.hash_into(&mut got);
    assert!(batch.is_empty());
    assert_eq!(got, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn leaf_hashes_match_sha2(lengths in prop::collection::vec(0usize..2000, 0..40), seed: u8) {
        let messages: Vec<Vec<u8>> = lengths
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|j| (j as u8).wrapping_mul(31) ^ seed ^ i as u8).collect())
            .collect();
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let mut got = vec![[0u8; 32]; slices.len()];
        leaf_hashes(&slices, &mut got);
        for (message, digest) in messages.iter().zip(&got) {
            prop_assert_eq!(*digest, sha256(&[&[0x00], message]));
        }
    }

    #[test]
    fn many_leaves_of_mixed_block_counts_match_sha2(lengths in prop::collection::vec(200usize..400, 0..600)) {
        let messages: Vec<Vec<u8>> = lengths.iter().map(|&len| vec![len as u8; len]).collect();
        let slices: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let mut got = vec![[0u8; 32]; slices.len()];
        leaf_hashes(&slices, &mut got);
        for (message, digest) in messages.iter().zip(&got) {
            prop_assert_eq!(*digest, leaf_hash(message));
        }
    }

    #[test]
    fn node_hashes_match_sha2(nodes in 0usize..700, seed: u64) {
        let children = test_leaves(2 * nodes, seed);
        let mut got = vec![[0u8; 32]; nodes];
        node_hashes(&children, &mut got);
        for (pair, digest) in children.chunks_exact(2).zip(&got) {
            prop_assert_eq!(*digest, sha256(&[&[0x01], &pair[0], &pair[1]]));
        }
    }

    #[test]
    fn batched_tree_equals_one_at_a_time(
        start in 0usize..3000,
        batches in prop::collection::vec(0usize..1500, 1..6),
        seed: u64,
    ) {
        let total = start + batches.iter().sum::<usize>();
        let leaves = test_leaves(total, seed);
        let (start_frontier, _) = one_at_a_time(&Frontier::new(), &leaves[..start]);
        let mut frontier = start_frontier.clone();
        let mut scratch = LevelScratch::default();
        let mut bytes = Vec::new();
        let mut at = start;
        for len in &batches {
            frontier = extend_frontier(&frontier, &leaves[at..at + len], &mut scratch, &mut bytes).unwrap();
            at += len;
        }
        let (want, want_bytes) = one_at_a_time(&start_frontier, &leaves[start..]);
        prop_assert_eq!(&frontier, &want);
        prop_assert!(bytes == want_bytes, "post-order hashes differ (seed {seed})");
    }
}

#[test]
fn extend_refuses_to_pass_the_size_limit() {
    let peaks = vec![[7u8; 32]; (TREE_SIZE_MAX - 1).count_ones() as usize];
    let frontier = Frontier::from_peaks(TREE_SIZE_MAX - 1, peaks).unwrap();
    let mut bytes = Vec::new();
    let result = extend_frontier(&frontier, &[[1; 32], [2; 32]], &mut LevelScratch::default(), &mut bytes);
    assert!(matches!(result, Err(AuditError::TreeFull { .. })));
    assert!(bytes.is_empty());
    let full = extend_frontier(&frontier, &[[1; 32]], &mut LevelScratch::default(), &mut bytes).unwrap();
    assert_eq!(full.size(), TREE_SIZE_MAX);
    assert_eq!(full.peaks().len(), 1);
}
