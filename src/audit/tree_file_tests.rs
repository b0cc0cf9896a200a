//! Proves the tree file agrees with the in-memory tree (roots and proofs,
//! with hashes both flushed and still buffered), survives reopen, drops torn
//! or unsynced tails back to the last synced size, reports damage to synced
//! hashes as corruption, and truncates for crash recovery.

use std::io::Write as _;

use proptest::prelude::*;

use super::*;
use crate::audit::merkle::leaf_hash;
use crate::audit::proof::MemoryTree;

fn leaf(i: u64) -> Hash {
    leaf_hash(&i.to_le_bytes())
}

fn memory(n: u64) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for i in 0..n {
        tree.push(leaf(i)).unwrap();
    }
    tree
}

fn fill(tree: &mut TreeFile, from: u64, to: u64) {
    let batch: Vec<Hash> = (from..to).map(leaf).collect();
    tree.append_leaves(&batch).unwrap();
}

fn append_raw(dir: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new().append(true).open(dir.join(TREE_FILE_NAME)).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn positions_follow_post_order() {
    // leaf0 leaf1 n(0..2) leaf2 leaf3 n(2..4) n(0..4) leaf4
    assert_eq!(node_position(0, 0), 0);
    assert_eq!(node_position(0, 1), 1);
    assert_eq!(node_position(1, 0), 2);
    assert_eq!(node_position(0, 2), 3);
    assert_eq!(node_position(1, 1), 5);
    assert_eq!(node_position(2, 0), 6);
    assert_eq!(node_position(0, 4), 7);
    assert_eq!(entries_for(4), 7);
    assert_eq!(entries_for(5), 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]
    #[test]
    fn agrees_with_memory_tree(batches in proptest::collection::vec(0u64..700, 1..6), sync_after in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = TreeFile::open(dir.path()).unwrap();
        let sync_at = sync_after.index(batches.len());
        let mut size = 0;
        for (i, batch) in batches.iter().enumerate() {
            fill(&mut tree, size, size + batch);
            size += batch;
            if i == sync_at {
                tree.sync().unwrap();
            }
        }
        let mem = memory(size);
        prop_assert_eq!(tree.size(), size);
        prop_assert_eq!(tree.root(), mem.root());
        for probe in [0, size / 3, size / 2, size.saturating_sub(1)] {
            if probe >= size {
                continue;
            }
            prop_assert_eq!(tree.inclusion_proof(probe, size).unwrap(), proof::inclusion_proof(&mem, probe, size).unwrap());
            prop_assert_eq!(tree.consistency_proof(probe + 1, size).unwrap(), proof::consistency_proof(&mem, probe + 1, size).unwrap());
            prop_assert_eq!(tree.root_at(probe).unwrap(), proof::root_at(&mem, probe).unwrap());
            prop_assert_eq!(tree.leaf(probe).unwrap(), leaf(probe));
        }
    }
}

#[test]
fn reopen_keeps_synced_size_and_drops_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 1000);
    tree.sync().unwrap();
    fill(&mut tree, 1000, 1300);
    drop(tree); // flushed by BufWriter's drop, never synced
    let mut tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 1000);
    assert_eq!(tree.root(), memory(1000).root());
    fill(&mut tree, 1000, 1300);
    tree.close().unwrap();
    let tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 1300);
    assert_eq!(tree.root(), memory(1300).root());
}

#[test]
fn never_synced_tree_reopens_empty() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 50);
    drop(tree);
    let tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 0);
    assert_eq!(tree.root(), crate::audit::merkle::empty_root());
}

#[test]
fn torn_and_garbage_tails_are_dropped() {
    for tail in [vec![0xab; 7], vec![0; 32 * 3], vec![0x5a; 32 * 5 + 19]] {
        let dir = tempfile::tempdir().unwrap();
        let mut tree = TreeFile::open(dir.path()).unwrap();
        fill(&mut tree, 0, 77);
        tree.close().unwrap();
        append_raw(dir.path(), &tail);
        let mut tree = TreeFile::open(dir.path()).unwrap();
        assert_eq!(tree.size(), 77);
        fill(&mut tree, 77, 200);
        tree.close().unwrap();
        let tree = TreeFile::open(dir.path()).unwrap();
        assert_eq!(tree.root(), memory(200).root());
    }
}

#[test]
fn torn_header_is_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(TREE_FILE_NAME), b"TKME").unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 3);
    tree.close().unwrap();
    assert_eq!(TreeFile::open(dir.path()).unwrap().size(), 3);
}

#[test]
fn damage_to_synced_data_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 64);
    tree.close().unwrap();
    let path = dir.path().join(TREE_FILE_NAME);
    let file = OpenOptions::new().write(true).open(&path).unwrap();

    // The root of the single perfect subtree of 64 leaves is the last hash.
    let last = HEADER_BYTES + (entries_for(64) - 1) * HASH_WIDTH;
    file.write_all_at(&[0xff], last + 5).unwrap();
    let err = TreeFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains(TREE_FILE_NAME), "{err}");

    file.set_len(last).unwrap();
    let err = TreeFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { .. }), "{err}");

    file.write_all_at(b"X", 0).unwrap();
    let err = TreeFile::open(dir.path()).unwrap_err();
    assert!(matches!(err, AuditError::Corrupt { byte: 0, .. }), "{err}");
}

#[test]
fn torn_meta_slot_falls_back_to_the_previous_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 10);
    tree.sync().unwrap(); // seq 1, slot 1
    fill(&mut tree, 10, 25);
    tree.sync().unwrap(); // seq 2, slot 0
    drop(tree);
    let meta = OpenOptions::new()
        .write(true)
        .open(dir.path().join(META_FILE_NAME))
        .unwrap();
    meta.write_all_at(&[0xee; 20], 10).unwrap();
    let tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 10);
    assert_eq!(tree.root(), memory(10).root());
}

#[test]
fn truncate_cuts_back_and_reports_short_trees() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 1000);
    tree.sync().unwrap();
    assert_eq!(tree.truncate(2000).unwrap(), 1000);
    assert_eq!(tree.truncate(1000).unwrap(), 1000);
    assert_eq!(tree.truncate(700).unwrap(), 700);
    assert_eq!(tree.root(), memory(700).root());
    drop(tree);
    let mut tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 700);
    assert_eq!(tree.root(), memory(700).root());
    fill(&mut tree, 700, 900);
    assert_eq!(tree.truncate(0).unwrap(), 0);
    assert_eq!(tree.root(), crate::audit::merkle::empty_root());
    drop(tree);
    assert_eq!(TreeFile::open(dir.path()).unwrap().size(), 0);
}

#[test]
fn truncate_of_unsynced_leaves_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 300);
    assert_eq!(tree.truncate(123).unwrap(), 123);
    drop(tree);
    let tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 123);
    assert_eq!(tree.root(), memory(123).root());
}

#[test]
fn reads_out_of_range_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 5);
    assert!(matches!(tree.leaf(5), Err(AuditError::IndexOutOfRange { .. })));
    assert!(matches!(tree.node(3, 0), Err(AuditError::IndexOutOfRange { .. })));
    assert!(matches!(
        tree.node(60, u64::MAX),
        Err(AuditError::IndexOutOfRange { .. })
    ));
    assert!(matches!(tree.root_at(6), Err(AuditError::SizeOutOfRange { .. })));
}

#[test]
fn meta_vouching_for_less_than_the_file_holds_wins() {
    // The state a crash inside `truncate` leaves after the meta update but
    // before the file is cut.
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 300);
    tree.close().unwrap();
    let meta = OpenOptions::new()
        .write(true)
        .open(dir.path().join(META_FILE_NAME))
        .unwrap();
    let point = SyncPoint {
        seq: 9,
        size: 100,
        root: memory(100).root(),
    };
    write_sync_point(&meta, &point).unwrap();
    let tree = TreeFile::open(dir.path()).unwrap();
    assert_eq!(tree.size(), 100);
    assert_eq!(tree.root(), memory(100).root());
}

#[test]
fn a_tree_that_kicks_writeback_on_its_own_thread_reopens_whole() {
    let dir = tempfile::tempdir().unwrap();
    // 200,000 leaves: ~12.8 MB of hashes, three writeback kicks of 4 MiB.
    let n = 200_000;
    let mut tree = TreeFile::open(dir.path()).unwrap();
    for from in (0..n).step_by(10_000) {
        fill(&mut tree, from, from + 10_000);
    }
    let kicked = (tree.kicked_entries * HASH_WIDTH) / WRITEBACK_KICK_BYTES;
    assert!(kicked >= 2, "hashes covered by kicks: {} entries", tree.kicked_entries);
    let Some(thread) = tree.kicker.thread() else {
        panic!("the kicks ran without a writeback thread");
    };
    assert_eq!(thread.name(), Some("trailkeep-writeback"));
    tree.sync().unwrap();
    drop(tree);
    let reopened = TreeFile::open(dir.path()).unwrap();
    assert_eq!(reopened.size(), n);
    assert_eq!(reopened.root(), memory(n).root());
}

/// A verifier beside a running appender, or of read-only media: the tree as last synced,
/// nothing changed on disk, every write refused; a missing or empty tree is the empty
/// tree (no panic on a file shorter than its header); a bad header is corruption.
#[test]
fn read_only_open_sees_the_synced_tree_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut tree = TreeFile::open(dir.path()).unwrap();
    fill(&mut tree, 0, 37);
    tree.sync().unwrap();
    fill(&mut tree, 37, 50); // written, not synced: the appender's work in progress
    tree.begin_sync().map(drop).unwrap(); // flushed to the file, meta not advanced
    let len = std::fs::metadata(dir.path().join(TREE_FILE_NAME)).unwrap().len();

    let mut view = TreeFile::open_read_only(dir.path()).unwrap();
    assert_eq!(view.size(), 37);
    assert_eq!(view.root(), memory(37).root());
    assert_eq!(
        view.inclusion_proof(5, 37).unwrap(),
        proof::inclusion_proof(&memory(37), 5, 37).unwrap()
    );
    view.check_nodes(|_| ()).unwrap();
    assert!(view.append_leaves(&[leaf(99)]).is_err());
    assert!(view.truncate(10).is_err());
    assert!(view.sync().is_err());
    drop(view);
    assert_eq!(std::fs::metadata(dir.path().join(TREE_FILE_NAME)).unwrap().len(), len);
    // The appender goes on undisturbed.
    fill(&mut tree, 50, 51);
    tree.sync().unwrap();
    assert_eq!(TreeFile::open_read_only(dir.path()).unwrap().size(), 51);
    drop(tree);

    let empty = tempfile::tempdir().unwrap();
    std::fs::write(empty.path().join(TREE_FILE_NAME), b"").unwrap();
    assert_eq!(TreeFile::open_read_only(empty.path()).unwrap().size(), 0);
    std::fs::write(empty.path().join(TREE_FILE_NAME), vec![7u8; 64]).unwrap();
    let err = TreeFile::open_read_only(empty.path()).unwrap_err();
    assert!(err.to_string().contains("bad magic"), "{err}");
}
