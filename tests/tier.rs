//! Tiering with the local-directory object store: upload, eviction, transparent reads,
//! an object store that fails on demand, crashes (failpoints) mid-upload, total retention
//! deleting remote copies, and restore onto a fresh directory.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use trailkeep::tier::{LocalDirStore, ObjError, ObjectInfo, ObjectStore, PutMode, TierConfig};
use trailkeep::{Durability, NewRecord, Offset, Store, Topic, TopicConfig};

const TOPIC: &str = "trail";

fn value(i: u64) -> Vec<u8> {
    let pad = (i * 7919 % 300) as usize;
    let mut v = format!("{{\"n\":{i},\"pad\":\"").into_bytes();
    v.extend((0..pad).map(|k| b'a' + ((i as usize + k) % 26) as u8));
    v.extend_from_slice(b"\"}");
    v
}

fn topic_config() -> TopicConfig {
    TopicConfig::default().segment_bytes(4096)
}

fn append(topic: &Topic, from: u64, to: u64) {
    for i in from..to {
        let off = topic
            .append(&NewRecord::new(value(i)).with_key(format!("k{i}")))
            .unwrap();
        assert_eq!(off, Offset(i));
    }
}

fn check_all(topic: &Topic, end: u64) {
    assert_eq!(topic.end_offset(), Offset(end));
    let mut n = 0;
    for r in topic.iter(Offset(0)) {
        let r = r.unwrap();
        assert_eq!(r.offset, Offset(n));
        assert_eq!(r.value, value(n), "record {n} differs");
        assert_eq!(r.key.as_deref(), Some(format!("k{n}").as_bytes()));
        n += 1;
    }
    assert_eq!(n, end);
    // Random access into evicted segments too.
    for i in [0, end / 3, end / 2, end - 1] {
        assert_eq!(topic.read(Offset(i)).unwrap().value, value(i));
    }
}

fn local_logs(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir.join("topics").join(TOPIC))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 && n.ends_with(".log") && n[..20].bytes().all(|b| b.is_ascii_digit()))
        .collect();
    v.sort();
    v
}

fn open(dir: &Path, tier: TierConfig) -> (Store, Topic) {
    let store = Store::builder(dir)
        .durability(Durability::Buffered)
        .tiering(tier)
        .open()
        .unwrap();
    let topic = match store.topic(TOPIC) {
        Ok(t) => t,
        Err(_) => store.create_topic(TOPIC, topic_config()).unwrap(),
    };
    (store, topic)
}

fn local_tier(bucket: &Path) -> TierConfig {
    TierConfig::with_store(Arc::new(LocalDirStore::new(bucket).unwrap()))
        .background(false)
        .local_bytes_max(6000)
}

#[test]
fn upload_evict_and_read_back_byte_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let (store, topic) = open(&dir, local_tier(&bucket));
    append(&topic, 0, 300);
    let before = local_logs(&dir).len();
    assert!(before > 5, "expected several segments, got {before}");
    let report = store.tier().unwrap().upload_now().unwrap();
    assert_eq!(report.uploaded.len(), before - 1, "every sealed segment is uploaded");
    assert!(!report.evicted.is_empty(), "local_bytes_max evicts");
    assert!(local_logs(&dir).len() < before);
    let status = store.tier_status().unwrap();
    assert_eq!(status.pending_segments, 0);
    assert!(status.evicted_segments > 0 && status.remote_bytes > 0);
    assert_eq!(status.last_error, None);
    // A second pass is idempotent.
    let again = store.tier().unwrap().upload_now().unwrap();
    assert!(again.uploaded.is_empty() && again.evicted.is_empty());
    check_all(&topic, 300);
    append(&topic, 300, 320);
    drop(topic);
    store.close().unwrap();
    // Another process without tiering configured reads through the saved settings.
    let store = Store::open(&dir).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    check_all(&topic, 320);
    assert_eq!(topic.start_offset(), Offset(0));
    // Time seeks use the manifest's summaries and fetch what they need.
    assert_eq!(topic.seek_time(0).unwrap(), Some(Offset(0)));
}

/// An object store that fails every call while `down` is set, whose first put takes
/// `first_put_delay`, and that counts the puts it started and those running.
#[derive(Debug)]
struct Flaky {
    inner: LocalDirStore,
    down: Arc<AtomicBool>,
    first_put_delay: Duration,
    puts_started: Arc<AtomicUsize>,
    puts_running: Arc<AtomicUsize>,
}

impl Flaky {
    fn new(bucket: &Path, down: &Arc<AtomicBool>) -> Flaky {
        Flaky {
            inner: LocalDirStore::new(bucket).unwrap(),
            down: Arc::clone(down),
            first_put_delay: Duration::ZERO,
            puts_started: Arc::default(),
            puts_running: Arc::default(),
        }
    }

    fn check(&self) -> Result<(), ObjError> {
        if self.down.load(Ordering::SeqCst) {
            Err(ObjError::Other("injected outage: connection refused".into()))
        } else {
            Ok(())
        }
    }
}

impl ObjectStore for Flaky {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> Result<String, ObjError> {
        self.check()?;
        self.puts_running.fetch_add(1, Ordering::SeqCst);
        if self.puts_started.fetch_add(1, Ordering::SeqCst) == 0 {
            std::thread::sleep(self.first_put_delay);
        }
        let put = self.inner.put(key, data, mode);
        self.puts_running.fetch_sub(1, Ordering::SeqCst);
        put
    }
    fn get(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, ObjError> {
        self.check()?;
        self.inner.get(key)
    }
    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, ObjError> {
        self.check()?;
        self.inner.get_range(key, range)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectInfo>, ObjError> {
        self.check()?;
        self.inner.head(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>, ObjError> {
        self.check()?;
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> Result<(), ObjError> {
        self.check()?;
        self.inner.delete(key)
    }
}

#[test]
fn store_down_appends_go_on_nothing_evicted_then_catch_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let down = Arc::new(AtomicBool::new(true));
    let flaky = Flaky::new(&bucket, &down);
    let tier = TierConfig::with_store(Arc::new(flaky))
        .background(false)
        .local_bytes_max(1);
    let (store, topic) = open(&dir, tier);
    append(&topic, 0, 200);
    let logs = local_logs(&dir);
    let err = store.tier().unwrap().upload_now().unwrap_err();
    assert!(err.to_string().contains("injected outage"), "{err}");
    append(&topic, 200, 250);
    assert_eq!(
        local_logs(&dir)[..logs.len()],
        logs[..],
        "nothing evicted while the store is down"
    );
    let status = store.tier_status().unwrap();
    assert!(status.pending_segments >= logs.len() - 1);
    assert!(status.pending_bytes > 0);
    assert!(status.last_error.as_deref().unwrap_or("").contains("injected outage"));
    check_all(&topic, 250);
    down.store(false, Ordering::SeqCst);
    store.tier().unwrap().upload_now().unwrap();
    let status = store.tier_status().unwrap();
    assert_eq!(status.pending_segments, 0);
    assert_eq!(status.last_error, None);
    assert_eq!(
        local_logs(&dir).len(),
        1,
        "only the active segment stays with local_bytes_max = 1"
    );
    check_all(&topic, 250);
}

#[test]
fn background_thread_catches_up_after_an_outage() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let down = Arc::new(AtomicBool::new(true));
    let flaky = Flaky::new(&bucket, &down);
    let tier = TierConfig::with_store(Arc::new(flaky))
        .upload_interval_ms(20)
        .retry_ms(20, 100)
        .local_bytes_max(1);
    let (store, topic) = open(&dir, tier);
    append(&topic, 0, 150);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(store.tier_status().unwrap().consecutive_failures > 0);
    down.store(false, Ordering::SeqCst);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.tier_status().unwrap().pending_segments > 0 || local_logs(&dir).len() > 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "background uploads did not catch up"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    check_all(&topic, 150);
}

/// Waits until the background thread has started a put.
fn wait_for_a_put(started: &AtomicUsize, deadline: std::time::Instant) {
    while started.load(Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no background upload began");
        std::thread::sleep(Duration::from_millis(2));
    }
}

const SLOW_PUT: Duration = Duration::from_millis(300);

#[test]
fn close_waits_for_the_upload_in_flight_and_stops_the_background_thread() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let slow = Flaky {
        first_put_delay: SLOW_PUT,
        ..Flaky::new(&bucket, &Arc::default())
    };
    let (started, running) = (Arc::clone(&slow.puts_started), Arc::clone(&slow.puts_running));
    let tier = TierConfig::with_store(Arc::new(slow)).upload_interval_ms(10);
    let (store, topic) = open(&dir, tier);
    append(&topic, 0, 150);
    assert!(local_logs(&dir).len() > 3, "several sealed segments to upload");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    wait_for_a_put(&started, deadline);
    drop(topic);
    let tier = Arc::clone(store.tier().unwrap());
    store.close().unwrap();
    assert_eq!(running.load(Ordering::SeqCst), 0, "close returned during an upload");
    let err = tier.upload_now().unwrap_err();
    assert!(matches!(err, trailkeep::Error::Closed), "{err}");
    drop(tier);
    let after_close = started.load(Ordering::SeqCst);
    std::thread::sleep(SLOW_PUT);
    assert_eq!(
        started.load(Ordering::SeqCst),
        after_close,
        "the background thread went on uploading after close"
    );
    // What the stopped pass did not reach, the next store's pass uploads.
    let (store, topic) = open(&dir, local_tier(&bucket));
    store.tier().unwrap().upload_now().unwrap();
    assert_eq!(store.tier_status().unwrap().pending_segments, 0);
    check_all(&topic, 150);
}

/// A request that hangs does not hang close: it waits up to `request_timeout_ms`, then
/// leaves the thread to end on its own, which it does after that request, uploading no more.
#[test]
fn close_waits_for_a_hung_upload_only_up_to_the_request_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let hung = Flaky {
        first_put_delay: Duration::from_millis(1_500),
        ..Flaky::new(&bucket, &Arc::default())
    };
    let (started, running) = (Arc::clone(&hung.puts_started), Arc::clone(&hung.puts_running));
    let tier = TierConfig::with_store(Arc::new(hung))
        .upload_interval_ms(10)
        .request_timeout_ms(200);
    let (store, topic) = open(&dir, tier);
    append(&topic, 0, 150);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    wait_for_a_put(&started, deadline);
    drop(topic);
    store.close().unwrap();
    assert_eq!(running.load(Ordering::SeqCst), 1, "close waited for the hung request");
    while running.load(Ordering::SeqCst) > 0 {
        assert!(std::time::Instant::now() < deadline, "the hung request never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = started.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(started.load(Ordering::SeqCst), after, "uploads went on after close");
}

#[test]
fn total_retention_deletes_local_and_remote_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let store = Store::builder(&dir).tiering(local_tier(&bucket)).open().unwrap();
    let topic = store
        .create_topic(TOPIC, topic_config().retention_bytes(20_000))
        .unwrap();
    append(&topic, 0, 100);
    store.tier().unwrap().upload_now().unwrap();
    append(&topic, 100, 400);
    let report = topic.apply_retention().unwrap();
    assert!(!report.deleted_segments.is_empty());
    let pass = store.tier().unwrap().upload_now().unwrap();
    assert!(
        !pass.deleted_remote.is_empty(),
        "remote copies past total retention are deleted"
    );
    let start = topic.start_offset();
    assert!(start > Offset(0));
    let remote: Vec<PathBuf> = walk(&bucket.join("topics").join(TOPIC).join("segments"));
    for p in &remote {
        let base: u64 = p
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(base >= start.0, "{} outlived total retention", p.display());
    }
    for r in topic.iter(start) {
        let r = r.unwrap();
        assert_eq!(r.value, value(r.offset.0));
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn restore_onto_a_fresh_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, bucket) = (tmp.path().join("store"), tmp.path().join("bucket"));
    let (store, topic) = open(&dir, local_tier(&bucket));
    append(&topic, 0, 300);
    store.tier().unwrap().upload_now().unwrap();
    let sealed_end = {
        let s = store.tier_status().unwrap();
        assert_eq!(s.pending_segments, 0);
        trailkeep::tier::manifest::load(&dir.join("topics").join(TOPIC))
            .unwrap()
            .unwrap()
            .segments
            .last()
            .unwrap()
            .end_offset
    };
    drop(topic);
    drop(store);
    let url = format!("file://{}", bucket.display());
    for download in [false, true] {
        let fresh = tmp.path().join(format!("restored-{download}"));
        let report = trailkeep::tier::restore(&fresh, &TierConfig::url(&url), download).unwrap();
        // Nothing between restored segments; past them, the active segment's records
        // are reported lost as far as an uploaded checkpoint covers them.
        for (topic, from, to) in &report.gaps {
            assert_eq!(
                (topic.as_str(), *from),
                (TOPIC, Offset(sealed_end)),
                "{:?}",
                report.gaps
            );
            assert!(*to > *from && to.0 <= 300, "{:?}", report.gaps);
        }
        assert!(report.gaps.len() <= 1, "{:?}", report.gaps);
        assert_eq!(report.topics[0].2, Offset(sealed_end));
        let store = Store::open(&fresh).unwrap();
        let topic = store.topic(TOPIC).unwrap();
        check_all(&topic, sealed_end);
        // The restored store appends where the bucket ends.
        append(&topic, sealed_end, sealed_end + 5);
        check_all(&topic, sealed_end + 5);
    }
    let err = trailkeep::tier::restore(&dir, &TierConfig::url(&url), false).unwrap_err();
    assert!(err.to_string().contains("empty directory"), "{err}");
}

#[test]
fn bad_urls_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    for (url, want) in [
        ("ftp://x/y", "unsupported scheme"),
        ("s3:///prefix", "no bucket"),
        ("not a url", "tier URL"),
    ] {
        let err = Store::builder(tmp.path().join("s"))
            .tiering(TierConfig::url(url).credentials("k", "s"))
            .open()
            .unwrap_err();
        assert!(err.to_string().contains(want), "{url}: {err}");
    }
    let err = Store::builder(tmp.path().join("s"))
        .tiering(
            TierConfig::url("s3://bucket/p")
                .credentials("k", "s")
                .endpoint("http://example.com:9000"),
        )
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[cfg(feature = "failpoints")]
mod crash {
    use super::*;
    use std::process::Command;

    const CHILD_ENV: &str = "TRAILKEEP_TIER_CRASH_CHILD";

    #[test]
    fn tier_crash_child() {
        let Ok(dir) = std::env::var(CHILD_ENV) else { return };
        let dir = PathBuf::from(dir);
        let (store, _topic) = open(&dir.join("store"), local_tier(&dir.join("bucket")));
        let _ = store.tier().unwrap().upload_now();
        std::process::exit(3);
    }

    #[test]
    fn crash_at_every_tier_step_then_restart_is_consistent() {
        let points = [
            "tier.after_intent",
            "tier.after_put:1",
            "tier.after_put:2",
            "tier.after_put:5",
            "tier.after_verify",
            "tier.after_uploaded",
            "tier.after_evidence_index",
            "tier.after_push",
            "tier.after_mark_evicted",
            "write_atomic.after_rename:2",
            "write_atomic.after_rename:4",
        ];
        for point in points {
            let tmp = tempfile::tempdir().unwrap();
            {
                let (_store, topic) = open(
                    &tmp.path().join("store"),
                    local_tier(&tmp.path().join("bucket")).local_bytes_max(u64::MAX),
                );
                append(&topic, 0, 200);
            }
            let status = Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "crash::tier_crash_child", "--nocapture"])
                .env(CHILD_ENV, tmp.path())
                .env("TRAILKEEP_FAILPOINT", point)
                .status()
                .unwrap();
            assert!(
                !status.success() && status.code() != Some(3),
                "{point}: the child was not killed ({status})"
            );
            let (store, topic) = open(&tmp.path().join("store"), local_tier(&tmp.path().join("bucket")));
            check_all(&topic, 200);
            store
                .tier()
                .unwrap()
                .upload_now()
                .unwrap_or_else(|e| panic!("{point}: pass after restart: {e}"));
            let s = store.tier_status().unwrap();
            assert_eq!(s.pending_segments, 0, "{point}");
            assert!(s.evicted_segments > 0, "{point}");
            check_all(&topic, 200);
            drop(topic);
            drop(store);
            let fresh = tmp.path().join("restored");
            let url = format!("file://{}", tmp.path().join("bucket").display());
            trailkeep::tier::restore(&fresh, &TierConfig::url(url), false).unwrap();
            let topic = Store::open(&fresh).unwrap().topic(TOPIC).unwrap();
            assert!(
                topic.end_offset() > Offset(150),
                "{point}: restore holds {}",
                topic.end_offset()
            );
            check_all(&topic, topic.end_offset().0);
        }
    }
}

#[path = "tier/evidence.rs"]
mod evidence;
#[path = "tier/ranged.rs"]
mod ranged;
