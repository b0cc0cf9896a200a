//! Proves proof generation equals the RFC 6962/9162 recursive definitions
//! (written here naively over a `Vec` of leaves), that every generated proof
//! verifies, and that altered leaves, indexes, sizes, roots and proof hashes
//! are rejected. Randomized cases are proptest's, which prints the seed.

use proptest::prelude::*;

use super::*;
use crate::audit::merkle::{empty_root, leaf_hash, node_hash};
use crate::audit::note::NoteSigner;

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash(&i.to_le_bytes())).collect()
}

fn tree_of(leaves: &[Hash]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for leaf in leaves {
        tree.push(*leaf).unwrap();
    }
    tree
}

fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The RFC 6962 §2.1 definitions, written recursively over ranges of one
/// leaf list; MTH results are memoized only to keep debug builds quick.
struct Naive {
    d: Vec<Hash>,
    memo: std::cell::RefCell<std::collections::HashMap<(usize, usize), Hash>>,
}

impl Naive {
    fn new(d: &[Hash]) -> Naive {
        Naive {
            d: d.to_vec(),
            memo: Default::default(),
        }
    }

    /// MTH(D[a:b]).
    fn mth(&self, a: usize, b: usize) -> Hash {
        if let Some(h) = self.memo.borrow().get(&(a, b)) {
            return *h;
        }
        let h = match b - a {
            0 => empty_root(),
            1 => self.d[a],
            n => node_hash(&self.mth(a, a + k_of(n)), &self.mth(a + k_of(n), b)),
        };
        self.memo.borrow_mut().insert((a, b), h);
        h
    }

    /// PATH(m, D[a:b]) (RFC 6962 §2.1.1).
    fn path(&self, m: usize, a: usize, b: usize) -> Vec<Hash> {
        let n = b - a;
        if n <= 1 {
            return Vec::new();
        }
        let k = k_of(n);
        let (mut p, sibling) = if m < k {
            (self.path(m, a, a + k), self.mth(a + k, b))
        } else {
            (self.path(m - k, a + k, b), self.mth(a, a + k))
        };
        p.push(sibling);
        p
    }

    /// SUBPROOF(m, D[a:b], flag) (RFC 6962 §2.1.2).
    fn subproof(&self, m: usize, a: usize, b: usize, flag: bool) -> Vec<Hash> {
        let n = b - a;
        if m == n {
            return if flag { Vec::new() } else { vec![self.mth(a, b)] };
        }
        let k = k_of(n);
        let (mut p, sibling) = if m <= k {
            (self.subproof(m, a, a + k, flag), self.mth(a + k, b))
        } else {
            (self.subproof(m - k, a + k, b, false), self.mth(a, a + k))
        };
        p.push(sibling);
        p
    }

    /// PROOF(m, D[0:n]); empty for the trivial cases this module defines.
    fn proof(&self, m: usize, n: usize) -> Vec<Hash> {
        if m == 0 || m == n {
            return Vec::new();
        }
        self.subproof(m, 0, n, true)
    }
}

fn check_size(naive: &Naive, tree: &MemoryTree, n: usize) {
    let root = naive.mth(0, n);
    assert_eq!(root_at(tree, n as u64).unwrap(), root, "root at {n}");
    for m in 0..n {
        let proof = inclusion_proof(tree, m as u64, n as u64).unwrap();
        assert_eq!(proof, naive.path(m, 0, n), "inclusion {m} in {n}");
        verify_inclusion(&naive.d[m], m as u64, n as u64, &proof, &root).unwrap();
    }
    for m in 0..=n {
        let proof = consistency_proof(tree, m as u64, n as u64).unwrap();
        assert_eq!(proof, naive.proof(m, n), "consistency {m} to {n}");
        verify_consistency(m as u64, n as u64, &naive.mth(0, m), &root, &proof).unwrap();
    }
}

#[test]
fn matches_rfc_definitions_for_every_size_up_to_300() {
    let all = leaves(300);
    let tree = tree_of(&all);
    let naive = Naive::new(&all);
    for n in 0..=300 {
        check_size(&naive, &tree, n);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn matches_rfc_definitions_for_random_larger_trees(n in 301usize..5000, picks in proptest::collection::vec(any::<prop::sample::Index>(), 8)) {
        let all = leaves(n as u64);
        let tree = tree_of(&all);
        let naive = Naive::new(&all);
        let root = naive.mth(0, n);
        prop_assert_eq!(tree.root(), root);
        for pick in picks {
            let m = pick.index(n);
            let proof = inclusion_proof(&tree, m as u64, n as u64).unwrap();
            prop_assert_eq!(&proof, &naive.path(m, 0, n));
            verify_inclusion(&all[m], m as u64, n as u64, &proof, &root).unwrap();
            let old = m + 1;
            let proof = consistency_proof(&tree, old as u64, n as u64).unwrap();
            prop_assert_eq!(&proof, &naive.proof(old, n));
            verify_consistency(old as u64, n as u64, &naive.mth(0, old), &root, &proof).unwrap();
        }
    }

    #[test]
    fn verifiers_never_panic_on_garbage(index: u64, size: u64, old: u64, proof in proptest::collection::vec(any::<[u8; 32]>(), 0..70)) {
        let h = [0u8; 32];
        let _ = verify_inclusion(&h, index, size, &proof, &h);
        let _ = verify_consistency(old, size, &h, &h, &proof);
    }

    #[test]
    fn bundle_parse_never_panics(text in "(c2sp.org/tlog-proof@v1\n)?(extra [A-Za-z0-9+/=]{0,8}\n)?(index [0-9]{1,3}\n)?([A-Za-z0-9+/=\n]{0,90})(\n[a-z\n0-9]{0,20})?") {
        let _ = ProofBundle::parse(&text);
    }
}

#[test]
fn inclusion_rejects_alterations() {
    let all = leaves(37);
    let tree = tree_of(&all);
    let root = tree.root();
    let proof = inclusion_proof(&tree, 20, 37).unwrap();
    verify_inclusion(&all[20], 20, 37, &proof, &root).unwrap();
    #[track_caller]
    fn mismatch(r: Result<()>) {
        match r {
            Err(AuditError::ProofMismatch { .. } | AuditError::IndexOutOfRange { .. }) => {}
            other => panic!("expected a proof mismatch, got {other:?}"),
        }
    }
    mismatch(verify_inclusion(&all[21], 20, 37, &proof, &root));
    mismatch(verify_inclusion(&all[20], 21, 37, &proof, &root));
    // A size is only meaningful with its own root (the checkpoint signs the
    // pair); the RFC algorithm binds the size through the path's shape, so
    // a neighbouring size with the *same* root may legitimately pass.
    let bigger = tree_of(&leaves(38));
    mismatch(verify_inclusion(&all[20], 20, 36, &proof, &root_at(&tree, 36).unwrap()));
    mismatch(verify_inclusion(&all[20], 20, 38, &proof, &bigger.root()));
    mismatch(verify_inclusion(&all[20], 20, 17, &proof, &root));
    mismatch(verify_inclusion(&all[20], 37, 37, &proof, &root));
    mismatch(verify_inclusion(&all[20], 20, 37, &proof, &all[0]));
    mismatch(verify_inclusion(&all[20], 20, 37, &proof[1..], &root));
    let mut longer = proof.clone();
    longer.push(all[0]);
    mismatch(verify_inclusion(&all[20], 20, 37, &longer, &root));
    for i in 0..proof.len() {
        let mut altered = proof.clone();
        altered[i][0] ^= 1;
        mismatch(verify_inclusion(&all[20], 20, 37, &altered, &root));
    }
}

#[test]
fn consistency_rejects_alterations() {
    let all = leaves(50);
    let tree = tree_of(&all);
    let (old_root, new_root) = (root_at(&tree, 13).unwrap(), tree.root());
    let proof = consistency_proof(&tree, 13, 50).unwrap();
    verify_consistency(13, 50, &old_root, &new_root, &proof).unwrap();
    #[track_caller]
    fn bad(r: Result<()>) {
        assert!(r.is_err(), "accepted");
    }
    bad(verify_consistency(12, 50, &old_root, &new_root, &proof));
    let bigger = tree_of(&leaves(51));
    bad(verify_consistency(
        13,
        49,
        &old_root,
        &root_at(&tree, 49).unwrap(),
        &proof,
    ));
    bad(verify_consistency(13, 51, &old_root, &bigger.root(), &proof));
    bad(verify_consistency(13, 20, &old_root, &new_root, &proof));
    bad(verify_consistency(
        14,
        50,
        &root_at(&tree, 14).unwrap(),
        &new_root,
        &proof,
    ));
    bad(verify_consistency(50, 13, &new_root, &old_root, &proof));
    bad(verify_consistency(13, 50, &new_root, &new_root, &proof));
    bad(verify_consistency(13, 50, &old_root, &old_root, &proof));
    bad(verify_consistency(13, 50, &old_root, &new_root, &[]));
    bad(verify_consistency(13, 50, &old_root, &new_root, &proof[1..]));
    for i in 0..proof.len() {
        let mut altered = proof.clone();
        altered[i][31] ^= 0x80;
        bad(verify_consistency(13, 50, &old_root, &new_root, &altered));
    }
    // Trivial cases are strict too.
    bad(verify_consistency(0, 50, &old_root, &new_root, &[]));
    bad(verify_consistency(0, 50, &empty_root(), &new_root, &proof));
    verify_consistency(0, 50, &empty_root(), &new_root, &[]).unwrap();
    bad(verify_consistency(50, 50, &old_root, &new_root, &[]));
    verify_consistency(50, 50, &new_root, &new_root, &[]).unwrap();
}

#[test]
fn generation_rejects_out_of_range() {
    let tree = tree_of(&leaves(10));
    assert!(matches!(
        inclusion_proof(&tree, 10, 10),
        Err(AuditError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        inclusion_proof(&tree, 0, 11),
        Err(AuditError::SizeOutOfRange { .. })
    ));
    assert!(matches!(
        inclusion_proof(&tree, 0, 0),
        Err(AuditError::IndexOutOfRange { .. })
    ));
    assert!(matches!(
        consistency_proof(&tree, 5, 11),
        Err(AuditError::SizeOutOfRange { .. })
    ));
    assert!(matches!(
        consistency_proof(&tree, 6, 5),
        Err(AuditError::SizeOutOfRange { .. })
    ));
}

fn signed_bundle(index: u64, extra: Option<Vec<u8>>) -> (ProofBundle, Vec<Hash>, NoteSigner) {
    let all = leaves(21);
    let tree = tree_of(&all);
    let signer = NoteSigner::from_seed("example.com/log", [3; 32]).unwrap();
    let checkpoint = Checkpoint {
        origin: "example.com/log".into(),
        size: 21,
        root: tree.root(),
    };
    let bundle = ProofBundle {
        extra,
        index,
        proof: inclusion_proof(&tree, index, 21).unwrap(),
        checkpoint: checkpoint.sign(&signer).unwrap(),
    };
    (bundle, all, signer)
}

#[test]
fn bundle_round_trips_and_verifies() {
    for extra in [None, Some(b"context".to_vec())] {
        let (bundle, all, signer) = signed_bundle(7, extra);
        let text = bundle.encode();
        assert!(text.starts_with("c2sp.org/tlog-proof@v1\n"));
        let parsed = ProofBundle::parse(&text).unwrap();
        assert_eq!(parsed, bundle);
        let checkpoint = parsed.verify(&all[7], &signer.verifier()).unwrap();
        assert_eq!(checkpoint.size, 21);
        assert!(parsed.verify(&all[8], &signer.verifier()).is_err());
    }
}

#[test]
fn bundle_rejects_malformed_text() {
    let (bundle, _, _) = signed_bundle(3, None);
    let text = bundle.encode();
    let bad = [
        text.replacen("c2sp.org/tlog-proof@v1", "c2sp.org/tlog-proof@v2", 1),
        text.replacen("index 3", "index 03", 1),
        text.replacen("index 3", "index three", 1),
        text.replacen("index 3\n", "", 1),
        text.replacen("=\n", "\n", 1),
        text.split("\n\n").next().unwrap().to_string(),
        format!("{}\n\n", text.split("\n\n").next().unwrap()),
    ];
    for t in bad {
        match ProofBundle::parse(&t) {
            Err(AuditError::Text { .. }) => {}
            other => panic!("{t:?}: expected a text error, got {other:?}"),
        }
    }
}
