//! `text_parsers`: the text a user hands to `trailkeep verify`-like commands (keys, signed
//! notes, checkpoints, proof bundles) and the proof verifiers with arbitrary numbers.

use trailkeep::audit::{
    consistency_proof, inclusion_proof, leaf_hash, sign_note, verify_consistency, verify_inclusion, verify_note,
    Checkpoint, Hash, MemoryTree, NoteSigner, NoteVerifier, ProofBundle, HASH_BYTES,
};

use super::Input;

/// Name and seed of the fixed key: inputs signed by it get past the signature checks.
pub const SIGNER_NAME: &str = "fuzz.example/log";
const SIGNER_SEED: [u8; 32] = [7; 32];
/// Largest tree built in memory for real proofs.
const TREE_LEAVES_MAX: u64 = 300;
/// Most proof hashes given to the verifiers from raw bytes (above `PROOF_HASHES_MAX`).
const RAW_PROOF_HASHES_MAX: usize = 64;

/// The fixed signer.
pub fn signer() -> NoteSigner {
    NoteSigner::from_seed(SIGNER_NAME, SIGNER_SEED).expect("a valid key name")
}

/// `text_parsers`: `[op] [...]`. op % 8 picks the parser:
/// 0 verifier key, 1 private key, 2 signed note, 3 checkpoint, 4 proof bundle (each on
/// lossy UTF-8 text); 5 a valid bundle from a real tree, patched; 6 `verify_inclusion` and
/// 7 `verify_consistency` with raw numbers and hashes, and with real proofs.
///
/// For ops 2 to 4, op & 8 signs the text first: `[head] \0 [body] \0 [tail]` becomes
/// `head + sign_note(body) + tail`, so parsing after the signature check is reached (the
/// head matters for bundles only). Parsers must not panic; what parses re-encodes to
/// the same text and parses again to the same value.
pub fn check_text_parsers(data: &[u8]) {
    let mut input = Input::new(data);
    let op = input.u8();
    let signed = op & 8 != 0;
    match op % 8 {
        0 => check_verifier_key(&lossy(input.rest())),
        1 => check_private_key(&lossy(input.rest())),
        2 => check_note(&text_for(&lossy(input.rest()), signed, false)),
        3 => check_checkpoint(&text_for(&lossy(input.rest()), signed, false)),
        4 => check_bundle(&text_for(&lossy(input.rest()), signed, true)),
        5 => check_real_bundle(&mut input),
        6 => check_inclusion(&mut input),
        _ => check_consistency(&mut input),
    }
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The raw text, or (signed) `[head] \0 [body] \0 [tail]` with the body signed; without a
/// head part (`with_head` false) the first part is the body.
fn text_for(text: &str, signed: bool, with_head: bool) -> String {
    if !signed {
        return text.to_owned();
    }
    let mut parts = text.splitn(if with_head { 3 } else { 2 }, '\0');
    let head = if with_head { parts.next().unwrap_or("") } else { "" };
    let body = parts.next().unwrap_or("");
    let tail = parts.next().unwrap_or("");
    match sign_note(body, &signer()) {
        Ok(note) => format!("{head}{note}{tail}"),
        Err(_) => format!("{head}{body}{tail}"),
    }
}

fn check_verifier_key(text: &str) {
    let Ok(verifier) = NoteVerifier::parse(text) else {
        return;
    };
    assert_eq!(verifier.to_vkey(), text, "a parsed vkey re-encodes differently");
    assert_eq!(NoteVerifier::parse(&verifier.to_vkey()).ok(), Some(verifier));
}

fn check_private_key(text: &str) {
    let Ok(signer) = NoteSigner::parse(text) else { return };
    assert_eq!(
        signer.to_private_key_text(),
        text,
        "a parsed key re-encodes differently"
    );
    let again = NoteSigner::parse(&signer.to_private_key_text()).expect("a re-encoded key parses");
    assert_eq!(again.verifier(), signer.verifier());
    // The key signs notes its verifier accepts.
    let note = sign_note("text\n", &signer).expect("signing a fixed text");
    assert_eq!(verify_note(&note, &signer.verifier()).ok(), Some("text\n"));
}

fn check_note(text: &str) {
    let verifier = signer().verifier();
    let Ok(body) = verify_note(text, &verifier) else { return };
    assert!(text.starts_with(body), "the verified text is not the note's start");
    assert!(body.ends_with('\n'), "the verified text does not end in a newline");
    // Signing the verified text again gives a note that verifies to the same text.
    let note = sign_note(body, &signer()).expect("a verified text signs");
    assert_eq!(verify_note(&note, &verifier).ok(), Some(body));
}

fn check_checkpoint(text: &str) {
    let verifier = signer().verifier();
    let Ok(checkpoint) = Checkpoint::parse_and_verify(text, &verifier) else {
        return;
    };
    let body = verify_note(text, &verifier).expect("the checkpoint's note verified");
    assert_eq!(checkpoint.body(), body, "a parsed checkpoint re-encodes differently");
    // What parses signs again: parsing refuses the origins `sign` refuses.
    let signed = checkpoint.sign(&signer()).expect("a parsed checkpoint signs");
    assert_eq!(Checkpoint::parse_and_verify(&signed, &verifier).ok(), Some(checkpoint));
}

fn check_bundle(text: &str) {
    let Ok(bundle) = ProofBundle::parse(text) else { return };
    assert_eq!(bundle.encode(), text, "a parsed bundle re-encodes differently");
    assert_eq!(ProofBundle::parse(&bundle.encode()).ok().as_ref(), Some(&bundle));
    let verifier = signer().verifier();
    let leaf = leaf_hash(b"leaf");
    if let Ok(checkpoint) = bundle.verify(&leaf, &verifier) {
        // Verified means: a checkpoint that verifies alone, and the leaf proven in it.
        assert_eq!(
            Checkpoint::parse_and_verify(&bundle.checkpoint, &verifier).ok(),
            Some(checkpoint.clone())
        );
        verify_inclusion(&leaf, bundle.index, checkpoint.size, &bundle.proof, &checkpoint.root)
            .expect("the bundle verified");
    }
}

/// `[leaves u16] [index u16] [patch count] [patches [pos u16][xor u8]...]`: a valid
/// bundle for leaf `index` of a tree of `leaves` leaves, with byte patches applied.
fn check_real_bundle(input: &mut Input<'_>) {
    let (tree, size) = tree_for(input.u16());
    let index = u64::from(input.u16()) % size;
    let proof = inclusion_proof(&tree, index, size).expect("a proof in range");
    let checkpoint = Checkpoint {
        origin: SIGNER_NAME.to_owned(),
        size,
        root: tree.root(),
    };
    let bundle = ProofBundle {
        extra: (index % 2 == 0).then(|| b"extra".to_vec()),
        index,
        proof,
        checkpoint: checkpoint.sign(&signer()).expect("signing a checkpoint"),
    };
    let leaf = leaf_hash(&index.to_le_bytes());
    let verifier = signer().verifier();
    let text = bundle.encode();
    assert_eq!(ProofBundle::parse(&text).ok().as_ref(), Some(&bundle));
    assert_eq!(bundle.verify(&leaf, &verifier).ok(), Some(checkpoint));
    let mut bytes = text.into_bytes();
    let patch_count = usize::from(input.u8() % 16);
    for patch in input.take(patch_count * 3).chunks_exact(3) {
        let pos = usize::from(u16::from_le_bytes([patch[0], patch[1]])) % bytes.len();
        bytes[pos] ^= patch[2];
    }
    check_bundle(&lossy(&bytes));
}

/// A tree of `1 + leaves % TREE_LEAVES_MAX` leaves, leaf `i` hashing `i`.
fn tree_for(leaves: u16) -> (MemoryTree, u64) {
    let size = 1 + u64::from(leaves) % TREE_LEAVES_MAX;
    let mut tree = MemoryTree::new();
    for i in 0..size {
        tree.push(leaf_hash(&i.to_le_bytes())).expect("a small tree");
    }
    (tree, size)
}

/// Up to [`RAW_PROOF_HASHES_MAX`] hashes from the input (zero-padded at the end).
fn raw_hashes(input: &mut Input<'_>) -> Vec<Hash> {
    let count = usize::from(input.u8()) % (RAW_PROOF_HASHES_MAX + 1);
    (0..count).map(|_| raw_hash(input)).collect()
}

fn raw_hash(input: &mut Input<'_>) -> Hash {
    let mut hash = [0u8; HASH_BYTES];
    let bytes = input.take(HASH_BYTES);
    hash[..bytes.len()].copy_from_slice(bytes);
    hash
}

/// Two raw hashes and a raw proof, for the checks' must-not-panic path.
fn raw_proof(input: &mut Input<'_>) -> (Hash, Hash, Vec<Hash>) {
    let (a, b) = (raw_hash(input), raw_hash(input));
    (a, b, raw_hashes(input))
}

/// `[flags] [index u64] [size u64] ...`: flags bit 0 uses a real tree (the numbers taken
/// modulo its size) and checks that its proof verifies and a changed one does not; else
/// raw numbers and hashes, which must not panic.
fn check_inclusion(input: &mut Input<'_>) {
    let flags = input.u8();
    let (index, size) = (input.u64(), input.u64());
    if flags & 1 == 0 {
        let (leaf, root, proof) = raw_proof(input);
        let _ = verify_inclusion(&leaf, index, size, &proof, &root);
        return;
    }
    let (tree, tree_size) = tree_for(size as u16);
    let index = index % tree_size;
    let leaf = leaf_hash(&index.to_le_bytes());
    let root = tree.root();
    let mut proof = inclusion_proof(&tree, index, tree_size).expect("a proof in range");
    verify_inclusion(&leaf, index, tree_size, &proof, &root).expect("a real inclusion proof verifies");
    // Claimed at another index or size, or with a changed hash: refused.
    let other = input.u64();
    if other % tree_size != index {
        assert!(verify_inclusion(&leaf, other % tree_size, tree_size, &proof, &root).is_err());
    }
    assert!(verify_inclusion(&leaf, index, tree_size, &proof, &leaf).is_err() || leaf == root);
    let changed = usize::from(flags >> 1) % proof.len().max(1);
    if let Some(hash) = proof.get_mut(changed) {
        hash[0] ^= 1;
        assert!(verify_inclusion(&leaf, index, tree_size, &proof, &root).is_err());
    }
}

/// `[flags] [old u64] [new u64] ...`: as [`check_inclusion`], for consistency proofs.
fn check_consistency(input: &mut Input<'_>) {
    let flags = input.u8();
    let (old_size, new_size) = (input.u64(), input.u64());
    if flags & 1 == 0 {
        let (old_root, new_root, proof) = raw_proof(input);
        let _ = verify_consistency(old_size, new_size, &old_root, &new_root, &proof);
        return;
    }
    let (new_tree, new_size) = tree_for(new_size as u16);
    let old_size = old_size % (new_size + 1);
    let (old_tree, _) = tree_for((old_size.max(1) - 1) as u16);
    let old_root = if old_size == 0 {
        trailkeep::audit::empty_root()
    } else {
        old_tree.root()
    };
    let new_root = new_tree.root();
    let mut proof = consistency_proof(&new_tree, old_size, new_size).expect("sizes in range");
    verify_consistency(old_size, new_size, &old_root, &new_root, &proof).expect("a real consistency proof verifies");
    let changed = usize::from(flags >> 1) % proof.len().max(1);
    if let Some(hash) = proof.get_mut(changed) {
        hash[0] ^= 1;
        assert!(verify_consistency(old_size, new_size, &old_root, &new_root, &proof).is_err());
    }
    if old_size < new_size {
        assert!(verify_consistency(new_size, old_size, &new_root, &old_root, &proof).is_err());
    }
}
