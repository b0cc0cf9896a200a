//! Reads of evicted segments fetch the index and then only the chunks they need; `stats`
//! and `tier_status` show per-topic pending uploads and the last error.

use super::*;
use std::sync::atomic::AtomicU64;

/// A local-directory store that counts the bytes it hands out.
#[derive(Debug)]
struct Counting {
    inner: LocalDirStore,
    read: Arc<AtomicU64>,
}

impl ObjectStore for Counting {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<String, ObjError> {
        self.inner.put(key, data, mode)
    }
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ObjError> {
        let got = self.inner.get(key)?;
        if let Some((b, _)) = &got {
            self.read.fetch_add(b.len() as u64, Ordering::SeqCst);
        }
        Ok(got)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, ObjError> {
        let got = self.inner.get_range(key, range)?;
        self.read.fetch_add(got.len() as u64, Ordering::SeqCst);
        Ok(got)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjError> {
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjError> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), ObjError> {
        self.inner.delete(key)
    }
}

fn big_value(i: u64) -> Vec<u8> {
    let mut v = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
    v.extend((0..1000).map(|k| b'a' + ((i as usize * 31 + k) % 26) as u8));
    v.extend_from_slice(b"\"}");
    v
}

const SEGMENT: u64 = 8 << 20;

fn open_counting(dir: &Path, bucket: &Path, read: &Arc<AtomicU64>) -> (Store, Topic) {
    let counting = Counting {
        inner: LocalDirStore::new(bucket).unwrap(),
        read: Arc::clone(read),
    };
    let tier = TierConfig::with_store(Arc::new(counting))
        .background(false)
        .local_bytes_max(SEGMENT / 2);
    let store = Store::builder(dir)
        .durability(Durability::Buffered)
        .tiering(tier)
        .open()
        .unwrap();
    let topic = match store.topic(TOPIC) {
        Ok(t) => t,
        Err(_) => store
            .create_topic(TOPIC, TopicConfig::default().segment_bytes(SEGMENT))
            .unwrap(),
    };
    (store, topic)
}

/// Bytes one `read(offset)` of the evicted first segment downloads, in a fresh process view.
fn bytes_for_one_read(dir: &Path, bucket: &Path, offset: u64) -> u64 {
    let _ = std::fs::remove_dir_all(dir.join("tier").join("cache"));
    let read = Arc::new(AtomicU64::new(0));
    let (store, topic) = open_counting(dir, bucket, &read);
    read.store(0, Ordering::SeqCst);
    assert_eq!(topic.read(Offset(offset)).unwrap().value, big_value(offset));
    let n = read.load(Ordering::SeqCst);
    drop(topic);
    store.close().unwrap();
    n
}

#[test]
fn one_read_of_an_evicted_segment_fetches_the_index_and_one_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let read = Arc::new(AtomicU64::new(0));
    let (store, topic) = open_counting(&dir, &bucket, &read);
    let records = SEGMENT / 1000 + 500; // a little more than one 8 MiB segment
    for i in 0..records {
        topic.append(&NewRecord::new(big_value(i))).unwrap();
    }
    let report = store.tier().unwrap().upload_now().unwrap();
    assert_eq!(report.evicted.len(), 1, "{report:?}");
    let m = trailkeep::tier::manifest::load(&dir.join("topics").join(TOPIC))
        .unwrap()
        .unwrap();
    let first = &m.segments[0];
    assert!(first.log_bytes() > 7 << 20, "{}", first.log_bytes());
    assert_eq!(first.log_chunk_crc32.len() as u64, first.log_bytes().div_ceil(1 << 20));
    let index_bytes = first.total_bytes() - first.log_bytes();
    let middle = first.end_offset / 2;
    drop(topic);
    store.close().unwrap();

    let ranged = bytes_for_one_read(&dir, &bucket, middle);
    // Manifests written before chunk checksums: the segment is fetched whole.
    let path = trailkeep::tier::manifest::manifest_path(&dir.join("topics").join(TOPIC));
    let mut old: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for s in old["segments"].as_array_mut().unwrap() {
        s.as_object_mut().unwrap().remove("log_chunk_crc32");
    }
    std::fs::write(&path, serde_json::to_vec_pretty(&old).unwrap()).unwrap();
    let whole = bytes_for_one_read(&dir, &bucket, middle);
    eprintln!(
        "one read(offset) of an evicted {} byte segment: {ranged} bytes ranged, {whole} bytes whole (index files {index_bytes} bytes)",
        first.log_bytes()
    );
    assert!(whole >= first.total_bytes(), "{whole}");
    assert!(ranged <= index_bytes + (2 << 20), "{ranged}");

    // Every record of the evicted segment reads back byte-exact through ranged reads
    // (the chunk checksums are back after a new upload of the manifest).
    std::fs::write(&path, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(dir.join("tier").join("cache"));
    let (store, topic) = open_counting(&dir, &bucket, &read);
    read.store(0, Ordering::SeqCst);
    let mut n = 0;
    for r in topic.iter(Offset(0)) {
        let r = r.unwrap();
        assert_eq!((r.offset, &r.value), (Offset(n), &big_value(n)));
        n += 1;
    }
    assert_eq!(n, records);
    let all = read.load(Ordering::SeqCst);
    assert!(all < first.total_bytes() + (1 << 20), "each chunk once: {all}");
    assert_eq!(topic.seek_time(0).unwrap(), Some(Offset(0)));
    drop(topic);
    store.close().unwrap();
}

#[test]
fn a_corrupt_chunk_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let (store, topic) = open(&dir, local_tier(&bucket));
    append(&topic, 0, 300);
    store.tier().unwrap().upload_now().unwrap();
    drop(topic);
    store.close().unwrap();
    let object = bucket
        .join("topics")
        .join(TOPIC)
        .join("segments")
        .join(format!("{:020}", 0))
        .join(format!("{:020}.log", 0));
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&object, bytes).unwrap();
    let store = Store::open(&dir).unwrap();
    let err = store.topic(TOPIC).unwrap().read(Offset(0)).unwrap_err();
    assert!(err.to_string().contains("CRC-32"), "{err}");
}

#[test]
fn stats_show_pending_uploads_and_the_last_error_per_topic() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let down = Arc::new(AtomicBool::new(true));
    let flaky = Flaky::new(&bucket, &down);
    let tier = TierConfig::with_store(Arc::new(flaky)).background(false);
    let (store, topic) = open(&dir, tier);
    append(&topic, 0, 100);
    assert!(store.tier().unwrap().upload_now().is_err());
    let status = store.tier_status().unwrap();
    let t = &status.topics[0];
    assert!(t.pending_segments > 0 && t.pending_bytes > 0, "{t:?}");
    let error = t.last_error.clone().unwrap();
    assert!(error.contains("injected outage"), "{error}");
    drop(topic);
    store.close().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .arg("--dir")
        .arg(&dir)
        .arg("stats")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("pending bytes") && text.contains("injected outage"),
        "{text}"
    );
    let line = text.lines().filter(|l| l.starts_with(TOPIC)).nth(1).unwrap();
    let pending: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(pending[1], t.pending_segments.to_string(), "{line}");
    assert_eq!(pending[2], t.pending_bytes.to_string(), "{line}");
    // Back up: the error clears.
    down.store(false, Ordering::SeqCst);
    let tier = TierConfig::with_store(Arc::new(LocalDirStore::new(&bucket).unwrap())).background(false);
    let (store, _topic) = open(&dir, tier);
    store.tier().unwrap().upload_now().unwrap();
    let t = &store.tier_status().unwrap().topics[0];
    assert_eq!((t.pending_segments, t.last_error.clone()), (0, None));
}
