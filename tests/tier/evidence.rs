//! Tamper evidence (Merkle tree, checkpoints, start offset, store id) travels to the
//! bucket, and a store rebuilt from the bucket alone verifies its stored checkpoints and
//! a checkpoint kept from before the disaster.

use super::*;
use trailkeep::audit::NoteVerifier;

fn manifest_bases(dir: &Path) -> Vec<(u64, u64)> {
    trailkeep::tier::manifest::load(&dir.join("topics").join(TOPIC))
        .unwrap()
        .unwrap()
        .segments
        .iter()
        .filter(|s| s.in_bucket())
        .map(|s| (s.base, s.end_offset))
        .collect()
}

fn start_offset_file(topic_dir: &Path) -> u64 {
    let bytes = std::fs::read(topic_dir.join("start.offset")).unwrap();
    assert_eq!(bytes.len(), 12);
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn evidence_is_uploaded_and_restored_so_verify_passes() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let store = Store::builder(&dir)
        .durability(Durability::Buffered)
        .tiering(local_tier(&bucket))
        .open()
        .unwrap();
    // Retention deletes old segments (once the tree holds their leaves): the restored
    // store starts after offset 0 and its tree still reaches back to 0.
    let topic = store
        .create_topic(TOPIC, topic_config().retention_bytes(40_000))
        .unwrap();
    append(&topic, 0, 400);
    let kept = topic.checkpoint().unwrap(); // saved outside the store before the disaster
    let vkey = topic.verifier_key().unwrap();
    append(&topic, 400, 500);
    topic.checkpoint().unwrap(); // covers the active segment: never reaches the bucket
    let report = store.tier().unwrap().upload_now().unwrap();
    assert!(report.evidence_bytes > 0, "{report:?}");
    let evidence = bucket.join("topics").join(TOPIC).join("evidence");
    assert!(evidence.join("index.json").is_file());
    // Nothing changed: nothing is uploaded again.
    let again = store.tier().unwrap().upload_now().unwrap();
    assert_eq!(again.evidence_bytes, 0);
    let segments = manifest_bases(&dir);
    let (first, end) = (segments[0].0, segments.last().unwrap().1);
    assert!(first > 0, "retention should have deleted the first segments");
    assert!(end < 500 && end > 400, "end {end}");
    let key = tmp.path().join("kept.key");
    std::fs::copy(dir.join("keys").join("checkpoint.key"), &key).unwrap();
    drop(topic);
    store.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap(); // the disaster

    let fresh = tmp.path().join("restored");
    let url = format!("file://{}", bucket.display());
    let report = trailkeep::tier::restore(&fresh, &TierConfig::url(&url), false).unwrap();
    // The tail the last checkpoint covers, past the restored log, is reported lost.
    assert_eq!(report.gaps, vec![(TOPIC.to_owned(), Offset(end), Offset(500))]);
    let (_, restored, dropped) = report.checkpoints[0].clone();
    assert!(restored > 0 && dropped > 0, "{:?}", report.checkpoints);
    let topic_dir = fresh.join("topics").join(TOPIC);
    assert_eq!(start_offset_file(&topic_dir), first);
    assert!(topic_dir.join("checkpoints.unrestored.log").is_file());
    trailkeep::tier::install_signing_key(&fresh, &key).unwrap();

    let store = Store::open(&fresh).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    assert_eq!(topic.start_offset(), Offset(first));
    assert_eq!(topic.verifier_key().unwrap(), vkey, "same store id and key");
    let report = topic.verify(None, &mut |_| {}).unwrap();
    assert!(report.checkpoints > 0, "{report:?}");
    assert_eq!((report.start_offset, report.tree_size), (Offset(first), end));
    let verifier = NoteVerifier::parse(&vkey).unwrap();
    let report = topic.verify(Some((&kept, &verifier)), &mut |_| {}).unwrap();
    assert_eq!(report.external_size, Some(400));
    // The restored store goes on appending and checkpointing.
    append(&topic, end, end + 5);
    topic.checkpoint().unwrap();
    assert!(topic.verify(None, &mut |_| {}).unwrap().checkpoints > restored);
}

#[test]
fn restore_without_the_key_says_so_when_verifying() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let (store, topic) = open(&dir, local_tier(&bucket));
    append(&topic, 0, 200);
    topic.checkpoint().unwrap();
    append(&topic, 200, 260);
    store.tier().unwrap().upload_now().unwrap();
    drop(topic);
    store.close().unwrap();
    let fresh = tmp.path().join("restored");
    let url = format!("file://{}", bucket.display());
    trailkeep::tier::restore(&fresh, &TierConfig::url(&url), false).unwrap();
    let store = Store::open(&fresh).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    // A new key was made: the stored checkpoints do not verify with it.
    let err = topic.verify(None, &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("stored checkpoint"), "{err}");
}
