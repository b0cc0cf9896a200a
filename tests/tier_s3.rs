//! Tiering against a real S3-compatible server: moto (`python -m moto.server`) on
//! 127.0.0.1 on a free port, from the venv `$TRAILKEEP_MOTO_PYTHON` (default
//! `.venv/bin/python`; `scripts/moto.sh install` creates it). Without it the tests fail
//! under CI (`CI` set) and print "skipped: no moto" otherwise.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use trailkeep::tier::TierConfig;
use trailkeep::{Durability, NewRecord, Offset, Store, Topic, TopicConfig};

const TOPIC: &str = "trail";
const BUCKET: &str = "trail-bucket";

fn moto_python() -> Option<PathBuf> {
    // Readers without tiering configured (a restored store, another process) take the
    // credentials from the environment, as the CLI does.
    std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
    std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
    let path = std::env::var("TRAILKEEP_MOTO_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "moto is required under CI but {} is missing: run scripts/moto.sh install (or set TRAILKEEP_MOTO_PYTHON)",
            path.display()
        );
    }
    eprintln!(
        "skipped: no moto ({} missing; run scripts/moto.sh install)",
        path.display()
    );
    None
}

struct Moto {
    child: Child,
    port: u16,
    python: PathBuf,
    auth: bool,
}

impl Moto {
    fn start(python: &Path, port: Option<u16>, auth: bool) -> Moto {
        let port = port.unwrap_or_else(|| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let mut cmd = Command::new(python);
        cmd.args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if auth {
            // After the first request (creating the bucket), every request must carry
            // credentials moto's IAM knows: any key is wrong.
            cmd.env("INITIAL_NO_AUTH_ACTION_COUNT", "1");
        }
        let child = cmd.spawn().expect("starting moto");
        let mut moto = Moto {
            child,
            port,
            python: python.to_path_buf(),
            auth,
        };
        // An accepted connection is not enough: while nothing listens yet, a connect to a
        // local port can pick that same port as its source and connect to itself. Wait
        // for an HTTP answer from our own child.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !moto.answers_http() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto exited ({status}) before serving on port {port}");
            }
            assert!(Instant::now() < deadline, "moto did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    /// True when an HTTP request to the port gets an HTTP reply. It asks moto's own API,
    /// which does not count against `INITIAL_NO_AUTH_ACTION_COUNT`.
    fn answers_http(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!(
            "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        let mut reply = String::new();
        s.write_all(request.as_bytes()).is_ok() && s.read_to_string(&mut reply).is_ok() && reply.starts_with("HTTP/")
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with a plain (unsigned) request: moto accepts it without auth.
    fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "create bucket: {reply}"
        );
    }

    fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    fn restart(mut self) -> Moto {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (python, port, auth) = (self.python.clone(), self.port, self.auth);
        std::mem::forget(self);
        Moto::start(&python, Some(port), auth)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tier(moto: &Moto, prefix: &str) -> TierConfig {
    TierConfig::url(format!("s3://{BUCKET}/{prefix}"))
        .endpoint(moto.endpoint())
        .credentials("testing", "testing")
        .background(false)
        .request_timeout_ms(2000)
        .local_bytes_max(6000)
}

fn value(i: u64) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}", "x".repeat((i * 7919 % 300) as usize)).into_bytes()
}

fn open(dir: &Path, tier: TierConfig) -> (Store, Topic) {
    let store = Store::builder(dir)
        .durability(Durability::Buffered)
        .tiering(tier)
        .open()
        .unwrap();
    let topic = match store.topic(TOPIC) {
        Ok(t) => t,
        Err(_) => store
            .create_topic(TOPIC, TopicConfig::default().segment_bytes(4096))
            .unwrap(),
    };
    (store, topic)
}

fn append(topic: &Topic, from: u64, to: u64) {
    for i in from..to {
        topic.append(&NewRecord::new(value(i))).unwrap();
    }
}

fn check_all(topic: &Topic, end: u64) {
    assert_eq!(topic.end_offset(), Offset(end));
    let mut n = 0;
    for r in topic.iter(Offset(0)) {
        let r = r.unwrap();
        assert_eq!((r.offset, &r.value), (Offset(n), &value(n)));
        n += 1;
    }
    assert_eq!(n, end);
}

fn local_logs(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("topics").join(TOPIC))
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.len() == 24 && n.ends_with(".log") && n[..20].bytes().all(|b| b.is_ascii_digit())
        })
        .count()
}

fn restore_and_check(moto: &Moto, prefix: &str, fresh: &Path, end: u64) {
    let report = trailkeep::tier::restore(fresh, &tier(moto, prefix), false).unwrap();
    // No hole between restored segments; past them, at most the lost tail that an
    // uploaded checkpoint covers (the active segment never reaches the bucket).
    assert!(report.gaps.len() <= 1, "{:?}", report.gaps);
    for (topic, from, to) in &report.gaps {
        assert!(
            topic == TOPIC && *from == Offset(end) && *to > *from,
            "{:?}",
            report.gaps
        );
    }
    let store = Store::open(fresh).unwrap();
    check_all(&store.topic(TOPIC).unwrap(), end);
}

#[test]
fn s3_upload_evict_read_and_restore() {
    let Some(python) = moto_python() else { return };
    let moto = Moto::start(&python, None, false);
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (store, topic) = open(&dir, tier(&moto, "edge-1"));
    append(&topic, 0, 300);
    let before = local_logs(&dir);
    let report = store.tier().unwrap().upload_now().unwrap();
    assert_eq!(report.uploaded.len(), before - 1);
    assert!(!report.evicted.is_empty());
    assert!(local_logs(&dir) < before);
    check_all(&topic, 300);
    let end = trailkeep::tier::manifest::load(&dir.join("topics").join(TOPIC))
        .unwrap()
        .unwrap()
        .segments
        .last()
        .unwrap()
        .end_offset;
    drop(topic);
    drop(store);
    restore_and_check(&moto, "edge-1", &tmp.path().join("restored"), end);
}

#[test]
fn s3_server_down_then_back_and_stopped_mid_upload() {
    let Some(python) = moto_python() else { return };
    let moto = Moto::start(&python, None, false);
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (store, topic) = open(&dir, tier(&moto, "edge-2"));
    // Down: connection refused. Appends and reads go on; nothing is evicted.
    let mut moto = moto;
    moto.signal("-KILL");
    let _ = moto.child.wait();
    append(&topic, 0, 150);
    let logs = local_logs(&dir);
    let err = store.tier().unwrap().upload_now().unwrap_err();
    eprintln!("while down: {err}");
    assert!(err.to_string().contains(BUCKET), "the error names the bucket: {err}");
    assert_eq!(local_logs(&dir), logs);
    let status = store.tier_status().unwrap();
    assert!(status.pending_segments > 0 && status.last_error.is_some());
    let t = &status.topics[0];
    assert!(t.pending_segments > 0 && t.pending_bytes > 0, "{t:?}");
    assert!(t.last_error.as_deref().is_some_and(|e| e.contains(BUCKET)), "{t:?}");
    check_all(&topic, 150);
    // Back up: uploads catch up.
    let moto = moto.restart();
    moto.create_bucket(BUCKET);
    store.tier().unwrap().upload_now().unwrap();
    assert_eq!(store.tier_status().unwrap().pending_segments, 0);
    // Stopped (SIGSTOP) in the middle of a pass, then continued.
    append(&topic, 150, 400);
    let logs = local_logs(&dir);
    let tier_handle = std::sync::Arc::clone(store.tier().unwrap());
    let pass = std::thread::spawn(move || tier_handle.upload_now());
    std::thread::sleep(Duration::from_millis(150));
    moto.signal("-STOP");
    let stopped = pass.join().unwrap();
    eprintln!("stopped mid-upload: {stopped:?}");
    if stopped.is_err() {
        assert_eq!(local_logs(&dir), logs, "nothing is evicted by a pass that failed");
    }
    check_all(&topic, 400);
    moto.signal("-CONT");
    store.tier().unwrap().upload_now().unwrap();
    let status = store.tier_status().unwrap();
    assert_eq!(status.topics[0].last_error, None);
    assert_eq!((status.pending_segments, status.last_error), (0, None));
    check_all(&topic, 400);
    let end = trailkeep::tier::manifest::load(&dir.join("topics").join(TOPIC))
        .unwrap()
        .unwrap()
        .segments
        .last()
        .unwrap()
        .end_offset;
    drop(topic);
    drop(store);
    restore_and_check(&moto, "edge-2", &tmp.path().join("restored"), end);
}

#[test]
fn s3_missing_bucket_and_wrong_credentials_are_clear_errors() {
    let Some(python) = moto_python() else { return };
    let moto = Moto::start(&python, None, false);
    let tmp = tempfile::tempdir().unwrap();
    let err = Store::builder(tmp.path().join("a"))
        .tiering(tier(&moto, "p"))
        .open()
        .unwrap_err();
    assert!(
        err.to_string().contains("does not exist") && err.to_string().contains(BUCKET),
        "{err}"
    );
    let locked = Moto::start(&python, None, true);
    locked.create_bucket(BUCKET);
    let err = Store::builder(tmp.path().join("b"))
        .tiering(tier(&locked, "p"))
        .open()
        .unwrap_err();
    assert!(
        err.to_string().contains("access denied") && err.to_string().contains(BUCKET),
        "{err}"
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn s3_process_killed_mid_upload_then_restarted() {
    const CHILD: &str = "TRAILKEEP_TIER_S3_CHILD";
    if let Ok(spec) = std::env::var(CHILD) {
        let (dir, endpoint) = spec.split_once('|').unwrap();
        let config = TierConfig::url(format!("s3://{BUCKET}/edge-3"))
            .endpoint(endpoint)
            .credentials("testing", "testing")
            .background(false)
            .local_bytes_max(6000);
        let (store, _topic) = open(Path::new(dir), config);
        let _ = store.tier().unwrap().upload_now();
        std::process::exit(3);
    }
    let Some(python) = moto_python() else { return };
    let moto = Moto::start(&python, None, false);
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    {
        let (_store, topic) = open(&dir, tier(&moto, "edge-3").local_bytes_max(u64::MAX));
        append(&topic, 0, 200);
    }
    for point in ["tier.after_put:4", "tier.after_uploaded:2", "tier.after_mark_evicted"] {
        let status = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "s3_process_killed_mid_upload_then_restarted", "--nocapture"])
            .env(CHILD, format!("{}|{}", dir.display(), moto.endpoint()))
            .env("TRAILKEEP_FAILPOINT", point)
            .status()
            .unwrap();
        assert!(
            !status.success() && status.code() != Some(3),
            "{point}: not killed ({status})"
        );
        let (_store, topic) = open(&dir, tier(&moto, "edge-3"));
        check_all(&topic, 200);
    }
    let (store, topic) = open(&dir, tier(&moto, "edge-3"));
    store.tier().unwrap().upload_now().unwrap();
    assert_eq!(store.tier_status().unwrap().pending_segments, 0);
    check_all(&topic, 200);
    let end = trailkeep::tier::manifest::load(&dir.join("topics").join(TOPIC))
        .unwrap()
        .unwrap()
        .segments
        .last()
        .unwrap()
        .end_offset;
    drop(topic);
    drop(store);
    restore_and_check(&moto, "edge-3", &tmp.path().join("restored"), end);
}

#[test]
fn s3_evidence_restore_verifies_and_reads_by_range() {
    let Some(python) = moto_python() else { return };
    let moto = Moto::start(&python, None, false);
    moto.create_bucket(BUCKET);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let (store, topic) = open(&dir, tier(&moto, "edge-5"));
    append(&topic, 0, 300);
    let kept = topic.checkpoint().unwrap();
    let vkey = topic.verifier_key().unwrap();
    append(&topic, 300, 400);
    topic.checkpoint().unwrap();
    let report = store.tier().unwrap().upload_now().unwrap();
    assert!(report.evidence_bytes > 0 && !report.evicted.is_empty(), "{report:?}");
    let key = tmp.path().join("kept.key");
    std::fs::copy(dir.join("keys").join("checkpoint.key"), &key).unwrap();
    drop(topic);
    store.close().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();

    let fresh = tmp.path().join("restored");
    let report = trailkeep::tier::restore(&fresh, &tier(&moto, "edge-5"), false).unwrap();
    assert!(report.checkpoints[0].1 > 0, "{report:?}");
    let end = report.topics[0].2 .0;
    // The last checkpoint covers the active segment, which never reached the bucket.
    assert!(end < 400, "{report:?}");
    assert_eq!(report.gaps, vec![(TOPIC.to_owned(), Offset(end), Offset(400))]);
    assert!(end > 300 && end < 400, "{end}");
    trailkeep::tier::install_signing_key(&fresh, &key).unwrap();
    let store = Store::open(&fresh).unwrap();
    let topic = store.topic(TOPIC).unwrap();
    // Every segment is evicted: verify reads them all by range from the bucket.
    let report = topic.verify(None, &mut |_| {}).unwrap();
    assert!(report.checkpoints > 0 && report.tree_size == end, "{report:?}");
    let verifier = trailkeep::audit::NoteVerifier::parse(&vkey).unwrap();
    let report = topic.verify(Some((&kept, &verifier)), &mut |_| {}).unwrap();
    assert_eq!(report.external_size, Some(300));
    assert_eq!(topic.read(Offset(end / 2)).unwrap().value, value(end / 2));
    check_all(&topic, end);
}
