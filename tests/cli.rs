//! The `trailkeep` command line end to end, through the real binary: `topics create` (and
//! its refusal of a bad name with exit code 1), `append` from a file and from stdin with
//! `--print-offsets`, `--key-field` / `--time-field`, a bad line reported by number with the
//! lines before it kept, the 4 MiB record limit, `read` in `raw` (exact bytes back) and
//! `jsonl`, `--from-offset` / `--from-time` / `--limit`, an offset not held, `stats`,
//! `topics`, `read --follow` in one process seeing lines another process appends through a
//! slow pipe, `read --group` continuing where the previous run stopped, `groups` list /
//! reset / delete, a second concurrent appender refused with "locked", every printing
//! command ending quietly with status 141 when its stdout reader is gone, and read-only
//! commands refusing a directory without a store.
//!
//! How: each test runs the binary (`CARGO_BIN_EXE_trailkeep`) as child processes against
//! its own temporary store directory and checks exit codes, stderr messages and the
//! records read back. Children that wait on pipes are read through a thread with a generous
//! deadline so a hang fails the test instead of blocking it; no assertion is on speed.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const DEADLINE: Duration = Duration::from_secs(30);

fn tk(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailkeep"));
    cmd.arg("--dir").arg(dir);
    cmd.env_remove("TRAILKEEP_DIR")
        .env_remove("TRAILKEEP_FAILPOINT")
        .env_remove("TRAILKEEP_LOG")
        .env_remove("AWS_REGION");
    cmd
}

/// Runs `trailkeep --dir dir args...` with `stdin` as input.
fn run(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = tk(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let bytes = stdin.to_vec();
    // Written from a thread: a child that fails early must not leave us blocked on a full pipe.
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn ok(dir: &Path, args: &[&str], stdin: &[u8]) -> String {
    let out = run(dir, args, stdin);
    assert!(
        out.status.success(),
        "trailkeep {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1 and an "error: ..." line; returns stderr.
fn fails(dir: &Path, args: &[&str], stdin: &[u8]) -> String {
    let out = run(dir, args, stdin);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "trailkeep {args:?}: {stderr}");
    assert!(stderr.contains("error: "), "trailkeep {args:?}: {stderr}");
    stderr
}

fn jsonl(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn offsets_of(stdout: &str) -> Vec<u64> {
    jsonl(stdout).iter().map(|v| v["offset"].as_u64().unwrap()).collect()
}

fn values_of(stdout: &str) -> Vec<String> {
    jsonl(stdout)
        .iter()
        .map(|v| v["value"].as_str().unwrap().to_owned())
        .collect()
}

fn lines(n: std::ops::Range<u64>) -> String {
    n.map(|i| format!("{{\"i\":{i}}}\n")).collect()
}

/// Lines of a child's stdout, delivered through a channel so reads can time out.
fn line_channel(stdout: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

struct Appender {
    child: Child,
    stdin: Option<ChildStdin>,
    offsets: mpsc::Receiver<String>,
}

impl Appender {
    fn spawn(dir: &Path, topic: &str) -> Appender {
        let mut child = tk(dir)
            .args(["append", topic, "--print-offsets"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take();
        let offsets = line_channel(child.stdout.take().unwrap());
        Appender { child, stdin, offsets }
    }

    /// Writes one line and waits for its offset (printed once it is durable).
    fn append(&mut self, line: &str) -> u64 {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
        let offset = self.offsets.recv_timeout(DEADLINE).expect("appender printed no offset");
        offset.parse().unwrap()
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        assert!(status.success());
    }
}

impl Drop for Appender {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

#[test]
fn topics_create_list_and_stats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for bad in ["bad name", "../escape", "a/b", ""] {
        let stderr = fails(d, &["topics", "create", bad], b"");
        assert!(stderr.contains("invalid topic name"), "{bad:?}: {stderr}");
    }
    ok(
        d,
        &[
            "topics",
            "create",
            "audit",
            "--segment-bytes",
            "4096",
            "--compression",
            "zstd",
        ],
        b"",
    );
    ok(
        d,
        &[
            "topics",
            "create",
            "kept",
            "--retention-bytes",
            "100000",
            "--retention-age",
            "7d",
            "--retention-until-consumed",
            "--retention-hard-bytes",
            "1000000",
        ],
        b"",
    );
    let stderr = fails(d, &["topics", "create", "audit"], b"");
    assert!(stderr.contains("exists"), "{stderr}");
    let stderr = fails(d, &["topics", "create", "x", "--retention-age", "soon"], b"");
    assert!(stderr.contains("soon"), "{stderr}");

    ok(d, &["append", "audit"], lines(0..50).as_bytes());
    ok(d, &["append", "fresh"], b"one\n"); // created on first append
    assert_eq!(ok(d, &["topics"], b""), "audit\nfresh\nkept\n");

    let stats = ok(d, &["stats"], b"");
    let rows: Vec<Vec<&str>> = stats.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(rows[0][..4], ["topic", "start", "end", "records"]);
    let audit = rows.iter().find(|r| r[0] == "audit").unwrap();
    assert_eq!(audit[1..4], ["0", "50", "50"]);
    assert!(audit[4].parse::<u64>().unwrap() >= 1, "{stats}");
    let kept = rows.iter().find(|r| r[0] == "kept").unwrap();
    assert_eq!(kept[1..4], ["0", "0", "0"]);
    // zstd topic reads back the same values.
    assert_eq!(ok(d, &["read", "audit", "--format", "raw"], b""), lines(0..50));
}

#[test]
fn append_from_file_and_stdin_with_printed_offsets_and_exact_raw_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Quotes, backslashes, tabs, non-ASCII, a carriage return inside a line, an empty line,
    // bytes that are not UTF-8: raw output is the input, byte for byte (line endings are
    // \n here; \r\n endings are a test of their own).
    let mut input = Vec::new();
    input.extend_from_slice(b"{\"msg\":\"he said \\\"hi\\\"\",\"path\":\"C:\\\\x\"}\n");
    input.extend_from_slice("tab\there, ünïcödé ✓\n".as_bytes());
    input.extend_from_slice(b"carriage\rreturn\n");
    input.extend_from_slice(b"\n");
    input.extend_from_slice(b"\xff\xfe not utf-8 \x80\n");
    input.extend_from_slice(b"last\n");
    let inputs = tempfile::tempdir().unwrap();
    let file = inputs.path().join("input.jsonl");
    std::fs::write(&file, &input).unwrap();

    let printed = ok(d, &["append", "t", file.to_str().unwrap(), "--print-offsets"], b"");
    assert_eq!(printed, "0\n1\n2\n3\n4\n5\n");
    let printed = ok(d, &["append", "t", "--print-offsets"], &input);
    assert_eq!(printed, "6\n7\n8\n9\n10\n11\n");
    // Without --print-offsets a piped append prints nothing.
    assert_eq!(ok(d, &["append", "t"], b"quiet\n"), "");

    let raw = run(d, &["read", "t", "--format", "raw", "--limit", "12"], b"");
    assert!(raw.status.success());
    assert_eq!(raw.stdout, [input.clone(), input.clone()].concat());

    // jsonl: offsets, RFC 3339 timestamps, null keys; non-UTF-8 values as base64.
    let out = ok(d, &["read", "t"], b"");
    let records = jsonl(&out);
    assert_eq!(records.len(), 13);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["offset"], i as u64);
        assert!(r["timestamp"].as_str().unwrap().ends_with('Z'), "{r}");
        assert!(r["key"].is_null());
    }
    assert_eq!(records[1]["value"], "tab\there, ünïcödé ✓");
    assert_eq!(records[2]["value"], "carriage\rreturn");
    assert_eq!(records[3]["value"], "");
    assert!(records[4]["value"]["base64"].is_string(), "{}", records[4]);
    assert_eq!(records[12]["value"], "quiet");

    // A last line without a newline is still a record.
    assert_eq!(ok(d, &["append", "t", "--print-offsets"], b"a\nno newline"), "13\n14\n");
    assert_eq!(
        ok(d, &["read", "t", "--from-offset", "14", "--format", "raw"], b""),
        "no newline\n"
    );
}

#[test]
fn key_and_time_fields_appear_in_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = concat!(
        "{\"trace\":\"t-1\",\"at\":\"2024-01-02T03:04:05Z\",\"n\":0}\n",
        "{\"trace\":42,\"at\":1700000000123,\"n\":1}\n",
        "{\"n\":2}\n",
    );
    ok(
        d,
        &["append", "t", "--key-field", "trace", "--time-field", "at"],
        input.as_bytes(),
    );
    let records = jsonl(&ok(d, &["read", "t"], b""));
    assert_eq!(records.len(), 3);
    assert_eq!(records[0]["key"], "t-1");
    assert_eq!(records[0]["event_time"], "2024-01-02T03:04:05.000000Z");
    assert_eq!(records[1]["key"], "42");
    assert_eq!(records[1]["event_time_us"], 1_700_000_000_123_000u64);
    assert!(records[2]["key"].is_null());
    assert!(
        records[2].get("event_time").is_none_or(Value::is_null),
        "{}",
        records[2]
    );
    // The value is the whole input line, untouched.
    assert_eq!(records[1]["value"], "{\"trace\":42,\"at\":1700000000123,\"n\":1}");
    // The append time is not the event time.
    assert_ne!(records[0]["timestamp"], records[0]["event_time"]);
}

#[test]
fn bad_line_three_is_named_and_lines_before_it_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = "{\"k\":\"a\"}\n{\"k\":\"b\"}\nnot json at all\n{\"k\":\"d\"}\n";
    let stderr = fails(
        d,
        &["append", "t", "--key-field", "k", "--print-offsets"],
        input.as_bytes(),
    );
    assert!(stderr.contains("stdin line 3: not JSON"), "{stderr}");
    assert_eq!(
        values_of(&ok(d, &["read", "t"], b"")),
        ["{\"k\":\"a\"}", "{\"k\":\"b\"}"]
    );

    // From a file the message names the file.
    let inputs = tempfile::tempdir().unwrap();
    let file = inputs.path().join("events.jsonl");
    std::fs::write(&file, "{\"at\":1}\n{\"at\":2}\n{\"at\":\"yesterday\"}\n").unwrap();
    let stderr = fails(d, &["append", "f", file.to_str().unwrap(), "--time-field", "at"], b"");
    assert!(stderr.contains(&format!("{} line 3", file.display())), "{stderr}");
    assert!(stderr.contains("at"), "{stderr}");
    assert_eq!(offsets_of(&ok(d, &["read", "f"], b"")), [0, 1]);

    // A JSON line that is not an object is bad too.
    let stderr = fails(d, &["append", "t", "--key-field", "k"], b"{\"k\":\"c\"}\n[1,2]\n");
    assert!(stderr.contains("stdin line 2: not a JSON object"), "{stderr}");
    assert_eq!(offsets_of(&ok(d, &["read", "t"], b"")), [0, 1, 2]);
}

/// RFC 3339 ends at year 9999: such a time given to `append` is a bad line; one stored
/// through the library (which takes any time) reads as null beside its exact `_us` value.
#[test]
fn times_after_year_9999_are_refused_by_append_and_read_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (at, line) in [
        ("253402300800000", 2),
        ("18446744073709551615", 2),
        ("\"10000-01-01T00:00:00Z\"", 2),
    ] {
        let input = format!("{{\"at\":1}}\n{{\"at\":{at}}}\n");
        let stderr = fails(d, &["append", "t", "--time-field", "at"], input.as_bytes());
        assert!(stderr.contains(&format!("stdin line {line}")), "{at}: {stderr}");
    }
    assert_eq!(offsets_of(&ok(d, &["read", "t"], b"")), [0, 1, 2]);
    {
        let store = trailkeep::Store::open(d).unwrap();
        let topic = store.topic("t").unwrap();
        topic
            .append(&trailkeep::NewRecord::new("far").with_event_time_us(253_402_300_800_000_000))
            .unwrap();
        store.close().unwrap();
    }
    let records = jsonl(&ok(d, &["read", "t", "--from-offset", "3"], b""));
    assert_eq!(records.len(), 1);
    assert!(records[0]["event_time"].is_null(), "{}", records[0]);
    assert_eq!(records[0]["event_time_us"], 253_402_300_800_000_000u64);
    assert_eq!(records[0]["value"], "far");
}

#[test]
fn lines_over_a_limit_are_named_and_lines_before_them_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A record over 4 MiB.
    let mut input = b"one\ntwo\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 4 << 20));
    input.extend_from_slice(b"\nfour\n");
    let stderr = fails(d, &["append", "big"], &input);
    assert!(stderr.contains("line 3"), "{stderr}");
    assert!(stderr.contains(&(4u64 << 20).to_string()), "names the limit: {stderr}");
    assert_eq!(ok(d, &["read", "big", "--format", "raw"], b""), "one\ntwo\n");

    // A line over twice the record limit (64 MiB here) is refused without being kept
    // whole: the error names the line and its length.
    let mut input = b"a\n".to_vec();
    input.extend(std::iter::repeat_n(b'y', 64 << 20));
    input.extend_from_slice(b"\nb\n");
    let stderr = fails(d, &["append", "huge"], &input);
    assert!(
        stderr.contains("line 2") && stderr.contains(&((64u64 << 20) + 1).to_string()),
        "{stderr}"
    );
    assert_eq!(ok(d, &["read", "huge", "--format", "raw"], b""), "a\n");

    // A key over its limit, in the same pipe read as the good lines before it.
    let long_key = "k".repeat(2000);
    let input = format!("{{\"k\":\"a\"}}\n{{\"k\":\"b\"}}\n{{\"k\":\"{long_key}\"}}\n{{\"k\":\"d\"}}\n");
    let stderr = fails(d, &["append", "keys", "--key-field", "k"], input.as_bytes());
    assert!(stderr.contains("stdin line 3"), "{stderr}");
    assert!(stderr.contains("1024"), "names the key limit: {stderr}");
    let records = jsonl(&ok(d, &["read", "keys"], b""));
    let keys: Vec<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a", "b"]);
}

#[test]
fn read_from_offset_from_time_limit_and_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["append", "t"], lines(0..10).as_bytes());
    std::thread::sleep(Duration::from_millis(20));
    ok(d, &["append", "t"], lines(10..20).as_bytes());

    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--from-offset", "15"], b"")),
        [15, 16, 17, 18, 19]
    );
    assert_eq!(offsets_of(&ok(d, &["read", "t", "--limit", "3"], b"")), [0, 1, 2]);
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--from-offset", "8", "--limit", "4"], b"")),
        [8, 9, 10, 11]
    );
    assert_eq!(
        ok(d, &["read", "t", "--from-offset", "20"], b""),
        "",
        "the end is empty, not an error"
    );
    assert_eq!(ok(d, &["read", "t", "--limit", "0"], b""), "");

    let all = jsonl(&ok(d, &["read", "t"], b""));
    let ts = |i: usize| all[i]["timestamp_us"].as_u64().unwrap();
    assert!(ts(9) < ts(10), "two runs 20 ms apart");
    // RFC 3339 (with microseconds) and epoch milliseconds.
    let rfc = all[10]["timestamp"].as_str().unwrap();
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--from-time", rfc, "--limit", "2"], b"")),
        [10, 11]
    );
    let ms = (ts(10) / 1000).to_string();
    assert!(
        ts(9) < ts(10) / 1000 * 1000,
        "run 1 ended more than a millisecond before run 2"
    );
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--from-time", &ms, "--limit", "1"], b"")),
        [10]
    );
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--from-time", "0", "--limit", "1"], b"")),
        [0]
    );
    assert_eq!(ok(d, &["read", "t", "--from-time", "2999-01-01T00:00:00Z"], b""), "");

    let stderr = fails(d, &["read", "t", "--from-offset", "21"], b"");
    assert!(
        stderr.contains("offset 21") && stderr.contains("out of range"),
        "{stderr}"
    );
    assert!(stderr.contains("[0, 20)"), "says what is held: {stderr}");
    let stderr = fails(d, &["read", "nope"], b"");
    assert!(stderr.contains("\"nope\" does not exist"), "{stderr}");
    let stderr = fails(d, &["read", "t", "--from-time", "last tuesday"], b"");
    assert!(stderr.contains("last tuesday"), "{stderr}");
}

#[test]
fn follow_sees_lines_appended_by_another_process_through_a_slow_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["topics", "create", "live", "--segment-bytes", "4096"], b"");
    let mut follower = tk(d)
        .args(["read", "live", "--follow", "--format", "raw"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(d.join("follower.err")).unwrap())
        .spawn()
        .unwrap();
    let followed = line_channel(follower.stdout.take().unwrap());

    let stalled = |e| -> String {
        let stderr = std::fs::read_to_string(d.join("follower.err")).unwrap_or_default();
        panic!("follower stalled ({e:?}); its stderr: {stderr}")
    };
    let mut appender = Appender::spawn(d, "live");
    // Enough ~100-byte lines to roll a few 4 KiB segments under the follower.
    let sent: Vec<String> = (0..120)
        .map(|i| format!("{{\"line\":{i},\"pad\":\"{}\"}}", "z".repeat(80)))
        .collect();
    let mut seen = Vec::new();
    for (i, line) in sent.iter().enumerate() {
        assert_eq!(appender.append(line), i as u64);
        if i % 10 == 0 {
            // Sometimes wait for the follower to catch up, so it is at the head and waiting.
            while seen.len() <= i {
                seen.push(followed.recv_timeout(DEADLINE).unwrap_or_else(stalled));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    while seen.len() < sent.len() {
        seen.push(followed.recv_timeout(DEADLINE).unwrap_or_else(stalled));
    }
    assert_eq!(seen, sent);
    // Still following: nothing exits by itself.
    assert!(follower.try_wait().unwrap().is_none());
    follower.kill().unwrap();
    follower.wait().unwrap();
    appender.finish();
}

#[test]
fn second_concurrent_appender_is_refused_with_locked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut first = Appender::spawn(d, "t");
    assert_eq!(first.append("from the first"), 0);
    // The first one is alive, with stdin open: it holds the append lock.
    let stderr = fails(d, &["append", "t"], b"from the second\n");
    assert!(stderr.to_lowercase().contains("locked"), "{stderr}");
    // Readers are not locked out.
    assert_eq!(ok(d, &["read", "t", "--format", "raw"], b""), "from the first\n");
    assert_eq!(first.append("first again"), 1);
    first.finish();
    // Once it exits the lock is free.
    assert_eq!(ok(d, &["append", "t", "--print-offsets"], b"third\n"), "2\n");
    assert_eq!(
        ok(d, &["read", "t", "--format", "raw"], b""),
        "from the first\nfirst again\nthird\n"
    );
}

#[test]
fn read_group_continues_where_it_stopped_and_groups_list_reset_delete() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["append", "t"], lines(0..10).as_bytes());
    assert_eq!(ok(d, &["groups", "t"], b"").lines().count(), 1, "header only");

    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--group", "g", "--limit", "4"], b"")),
        [0, 1, 2, 3]
    );
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--group", "g", "--limit", "4"], b"")),
        [4, 5, 6, 7]
    );
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--group", "h", "--limit", "1"], b"")),
        [0]
    );

    let list = ok(d, &["groups", "t"], b"");
    let row = |name: &str| -> Vec<String> {
        list.lines()
            .map(|l| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("no group {name} in {list}"))
    };
    assert_eq!(row("group")[1..4], ["position", "end", "lag"]);
    assert_eq!(row("g")[1..4], ["8", "10", "2"]);
    assert_eq!(row("h")[1..4], ["1", "10", "9"]);

    // The rest, then nothing more (exit 0, empty).
    assert_eq!(offsets_of(&ok(d, &["read", "t", "--group", "g"], b"")), [8, 9]);
    assert_eq!(ok(d, &["read", "t", "--group", "g"], b""), "");
    ok(d, &["append", "t"], lines(10..12).as_bytes());
    assert_eq!(offsets_of(&ok(d, &["read", "t", "--group", "g"], b"")), [10, 11]);

    assert_eq!(ok(d, &["groups", "t", "reset", "g", "--to", "earliest"], b""), "g 0\n");
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--group", "g", "--limit", "2"], b"")),
        [0, 1]
    );
    assert_eq!(
        ok(d, &["groups", "t", "reset", "g", "--to", "offset", "9"], b""),
        "g 9\n"
    );
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--group", "g", "--limit", "1"], b"")),
        [9]
    );
    assert_eq!(ok(d, &["groups", "t", "reset", "g", "--to", "latest"], b""), "g 12\n");
    assert_eq!(ok(d, &["read", "t", "--group", "g"], b""), "");
    assert_eq!(ok(d, &["groups", "t", "reset", "g", "--to", "time", "0"], b""), "g 0\n");
    let stderr = fails(d, &["groups", "t", "reset", "g", "--to", "offset", "13"], b"");
    assert!(stderr.contains("out of range"), "{stderr}");
    let stderr = fails(d, &["groups", "t", "reset", "g", "--to", "sideways"], b"");
    assert!(stderr.contains("sideways"), "{stderr}");

    ok(d, &["groups", "t", "delete", "h"], b"");
    assert!(!ok(d, &["groups", "t"], b"").lines().any(|l| l.starts_with("h ")));
    let stderr = fails(d, &["groups", "t", "delete", "h"], b"");
    assert!(stderr.contains("does not exist"), "{stderr}");
    // A deleted group starts over from the earliest record.
    assert_eq!(
        offsets_of(&ok(d, &["read", "t", "--group", "h", "--limit", "1"], b"")),
        [0]
    );
}

/// Runs `trailkeep --dir dir args...` with standard output a pipe whose reader is already
/// gone (what `trailkeep read t | head -1` meets once `head` exits): every write fails
/// with EPIPE.
fn run_with_stdout_closed(dir: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    tk(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

/// Every command that prints stops quietly with 141 (128 + SIGPIPE, as unix tools do)
/// when its reader went away: no panic message, no error line.
#[test]
fn every_printing_command_stops_quietly_when_stdout_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["demo", "--agents", "1", "--sessions", "2"], b"");
    ok(d, &["append", "t"], lines(0..3000).as_bytes());
    ok(d, &["read", "t", "--group", "g", "--limit", "1"], b"");
    let first = jsonl(&ok(d, &["read", "agent-trail", "--limit", "1"], b""));
    let trace = first[0]["key"].as_str().unwrap().to_owned();
    let bench_dir = d.join("bench-work");
    let commands: Vec<Vec<&str>> = vec![
        vec!["topics"],
        vec!["stats"],
        vec!["read", "t"],
        vec!["read", "t", "--format", "raw"],
        vec!["read", "t", "--follow"],
        vec!["read", "t", "--group", "g"],
        vec!["read", "agent-trail", "--trace", &trace],
        vec!["groups", "t"],
        vec!["groups", "t", "reset", "g", "--to", "earliest"],
        vec!["verify"],
        vec!["checkpoint", "t"],
        vec!["checkpoint", "t", "--latest"],
        vec!["checkpoint", "t", "--vkey"],
        vec!["prove", "t", "5"],
        vec!["prove", "t", "--consistency", "5"],
        vec!["forget", "someone", "--topic", "agent-trail"],
        vec!["tier", "status"],
        vec!["tier", "status", "--json"],
        vec![
            "bench",
            "--quick",
            "--records",
            "200",
            "--durable-records",
            "10",
            "--seeks",
            "10",
            "--segments",
            "2",
            "--work-dir",
            bench_dir.to_str().unwrap(),
        ],
    ];
    let demo: &[&str] = &["demo", "--agents", "1", "--sessions", "2"];
    let runs = commands.iter().map(|args| (d, args.as_slice()));
    for (d, args) in runs.chain([(d.join("second").as_path(), demo)]) {
        let out = run_with_stdout_closed(d, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(141), "trailkeep {args:?}: {stderr}");
        assert_eq!(stderr, "", "trailkeep {args:?}");
    }
    // append with a line to print an offset for: it stops after that (durable) record.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = tk(d)
        .args(["append", "t", "--print-offsets"])
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"one more\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        ok(d, &["read", "t", "--from-offset", "3000", "--format", "raw"], b""),
        "one more\n"
    );
}

/// `stats` over a store with one damaged topic (its topic.json deleted) still shows the
/// others, names the damaged one on stderr, and exits 1.
#[test]
fn stats_shows_every_readable_topic_and_names_the_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for topic in ["a", "b", "c"] {
        ok(d, &["append", topic], b"x\ny\n");
    }
    std::fs::remove_file(d.join("topics/b/topic.json")).unwrap();
    let out = run(d, &["stats"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let rows: Vec<&str> = stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(rows, ["a", "c"], "{stdout}");
    assert!(stderr.contains("topic b:") && stderr.contains("topic.json"), "{stderr}");
    assert!(stderr.contains("1 topic(s) could not be read"), "{stderr}");
}

/// With standard error a pipe whose reader is gone, messages and errors are dropped
/// instead of panicking (`eprintln!` panicked on EPIPE: exit 101): the command's own
/// status stands.
#[test]
fn a_closed_stderr_pipe_does_not_turn_messages_into_panics() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let with_stderr_closed = |args: &[&str], input: &[u8]| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let mut child = tk(d)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(writer)
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait().unwrap().code()
    };
    assert_eq!(with_stderr_closed(&["topics", "create", "t"], b""), Some(0));
    assert_eq!(with_stderr_closed(&["append", "t"], b"a\nb\n"), Some(0));
    assert_eq!(with_stderr_closed(&["read", "nosuch"], b""), Some(1));
    assert_eq!(ok(d, &["read", "t", "--format", "raw"], b""), "a\nb\n");
}

/// Commands that read or maintain a store refuse a `--dir` that holds none (missing, or an
/// empty directory), naming the path, and create nothing there; they used to create an
/// empty store. Commands that write records still create it.
#[test]
fn read_only_commands_refuse_a_directory_without_a_store_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("typo");
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let bucket = format!("file://{}", dir.path().join("bucket").display());
    let commands: [&[&str]; 20] = [
        &["topics"],
        &["stats"],
        &["read", "t"],
        &["read", "t", "--group", "g"],
        &["read", "t", "--trace", "x"],
        &["groups", "t"],
        &["groups", "t", "reset", "g", "--to", "earliest"],
        &["groups", "t", "delete", "g"],
        &["verify"],
        &["verify", "t"],
        &["checkpoint", "t"],
        &["checkpoint", "t", "--latest"],
        &["checkpoint", "t", "--vkey"],
        &["prove", "t", "0"],
        &["prove", "t", "--consistency", "1"],
        &["forget", "someone"],
        &["forget", "someone", "--topic", "t"],
        &["tier", "status"],
        &["tier", "upload", "--now", "--to", &bucket],
        &["mirror", "t", "--to", "127.0.0.1:1", "--until-caught-up"],
    ];
    for d in [&missing, &empty] {
        for args in commands {
            let stderr = fails(d, args, b"");
            assert!(
                stderr.contains(&format!("no trailkeep store at {}", d.display())),
                "trailkeep {args:?}: {stderr}"
            );
        }
    }
    assert!(!missing.exists());
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert!(!dir.path().join("bucket").exists());

    ok(&missing, &["append", "t"], b"x\n");
    assert_eq!(ok(&missing, &["read", "t", "--format", "raw"], b""), "x\n");
    ok(&empty, &["topics", "create", "t"], b"");
    assert_eq!(ok(&empty, &["topics"], b""), "t\n");
}

/// `forget --topic` names topics that must exist: a missing one is refused before the
/// subject's key is destroyed or any erasure is recorded, and no topic is created (it
/// used to create the topic and record the erasure there).
#[test]
fn forget_refuses_a_topic_that_does_not_exist_and_creates_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["append", "t"], b"one\n");
    let stderr = fails(d, &["forget", "someone", "--topic", "nosuch"], b"");
    assert!(stderr.contains("topic \"nosuch\" does not exist"), "{stderr}");
    let stderr = fails(d, &["forget", "someone", "--topic", "t", "--topic", "nosuch"], b"");
    assert!(stderr.contains("topic \"nosuch\" does not exist"), "{stderr}");
    assert_eq!(ok(d, &["topics"], b""), "t\n");
    assert!(!d.join("topics").join("nosuch").exists());
    assert_eq!(
        ok(d, &["read", "t", "--format", "raw"], b""),
        "one\n",
        "no erasure recorded"
    );
    // Every other command naming a topic refuses a missing one too, and creates none.
    for args in [
        &["read", "nosuch"][..],
        &["read", "nosuch", "--group", "g"],
        &["read", "nosuch", "--subject", "someone"],
        &["groups", "nosuch"],
        &["groups", "nosuch", "reset", "g", "--to", "latest"],
        &["groups", "nosuch", "delete", "g"],
        &["verify", "nosuch"],
        &["checkpoint", "nosuch"],
        &["prove", "nosuch", "0"],
    ] {
        let stderr = fails(d, args, b"");
        assert!(stderr.contains("topic \"nosuch\" does not exist"), "{args:?}: {stderr}");
    }
    assert_eq!(ok(d, &["topics"], b""), "t\n");
    // Named properly, the erasure is recorded.
    assert_eq!(ok(d, &["forget", "someone", "--topic", "t"], b""), "t 1\n");
}

/// A topic is created with the first valid record `append` is given: input that fails on
/// its first line (bad JSON, a bad event, a record over the limit) or holds no line leaves
/// no empty topic behind (it used to); a topic that existed stays, and the lines before a
/// bad one stay appended.
#[test]
fn append_failing_on_its_first_line_creates_no_topic() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["append", "kept"], b"one\n");
    let stderr = fails(d, &["append", "json", "--key-field", "k"], b"not json\n{\"k\":1}\n");
    assert!(stderr.contains("stdin line 1: not JSON"), "{stderr}");
    let stderr = fails(d, &["append", "events", "--events"], b"{\"not\": \"an event\"}\n");
    assert!(stderr.contains("stdin line 1"), "{stderr}");
    let mut big = vec![b'x'; (4 << 20) + 1];
    big.push(b'\n');
    let stderr = fails(d, &["append", "big"], &big);
    assert!(stderr.contains("stdin line 1"), "{stderr}");
    assert_eq!(ok(d, &["append", "nothing"], b""), "");
    let stderr = fails(d, &["append", "kept", "--key-field", "k"], b"not json\n");
    assert!(stderr.contains("stdin line 1: not JSON"), "{stderr}");
    assert_eq!(ok(d, &["topics"], b""), "kept\n");
    for name in ["json", "events", "big", "nothing"] {
        assert!(!d.join("topics").join(name).exists(), "{name}");
    }
    assert_eq!(ok(d, &["read", "kept", "--format", "raw"], b""), "one\n");

    // A good first line creates the topic; what came before the bad line stays.
    let stderr = fails(d, &["append", "json", "--key-field", "k"], b"{\"k\":1}\nnot json\n");
    assert!(stderr.contains("stdin line 2: not JSON"), "{stderr}");
    assert_eq!(ok(d, &["topics"], b""), "json\nkept\n");
    assert_eq!(values_of(&ok(d, &["read", "json"], b"")), ["{\"k\":1}"]);
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.unwrap().as_millis() as u64
}

/// `read --follow --from-time T` with T in the future prints only records appended at or
/// after T, waiting for them; it used to print those appended in between as well.
#[test]
fn follow_from_a_future_time_prints_only_records_from_that_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ok(d, &["append", "t"], b"old\n");
    let from_ms = now_ms() + 2000;
    let from = from_ms.to_string();
    let mut follower = tk(d)
        .args(["read", "t", "--follow", "--format", "raw", "--from-time", &from])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let followed = line_channel(follower.stdout.take().unwrap());
    ok(d, &["append", "t"], b"before\n");
    let before = jsonl(&ok(d, &["read", "t", "--from-offset", "1"], b""));
    let before_us = before[0]["timestamp_us"].as_u64().unwrap();
    assert!(
        before_us < from_ms * 1000,
        "setup: 'before' was appended before the time"
    );
    while now_ms() <= from_ms {
        std::thread::sleep(Duration::from_millis(20));
    }
    ok(d, &["append", "t"], b"after\nlater\n");
    let first = followed.recv_timeout(DEADLINE).expect("follower printed nothing");
    let second = followed.recv_timeout(DEADLINE).expect("follower printed one line");
    assert_eq!([first, second], ["after", "later"]);
    follower.kill().unwrap();
    follower.wait().unwrap();
}

/// Log lines into a pipe or file are plain text: no ANSI colour codes, even without
/// NO_COLOR (they used to be coloured wherever stderr went).
#[test]
fn log_lines_into_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = tempfile::tempdir().unwrap();
    let input = inputs.path().join("input");
    std::fs::write(&input, "x\n").unwrap();
    // A new store makes its signing key with the first append, and logs that.
    let out = tk(dir.path())
        .args(["append", "t"])
        .arg(&input)
        .env("TRAILKEEP_LOG", "info")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("INFO"), "a log line to look at: {stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

/// The argument paths of every command and sub-command (`["groups", "x", "reset"]`: a
/// placeholder for each required positional before a sub-command).
fn command_paths(cmd: &clap::Command, prefix: &[String], paths: &mut Vec<Vec<String>>) {
    paths.push(prefix.to_vec());
    let mut path = prefix.to_vec();
    path.extend(
        cmd.get_positionals()
            .filter(|a| a.is_required_set())
            .map(|_| "x".to_owned()),
    );
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        let mut sub_path = path.clone();
        sub_path.push(sub.get_name().to_owned());
        command_paths(sub, &sub_path, paths);
    }
}

/// Every option in `-h` and `--help` of every command names its default and its
/// environment variable once: a doc comment saying "[default: ...]" beside clap's own
/// `[default: ...]` / `[env: ...]` printed it twice (`--dir` did, on every command).
#[test]
fn help_names_each_default_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    command_paths(
        &<trailkeep::cli::Cli as clap::CommandFactory>::command(),
        &[],
        &mut paths,
    );
    assert!(paths.len() > 20, "{paths:?}");
    for path in &paths {
        for flag in ["-h", "--help"] {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push(flag);
            let help = ok(dir.path(), &args, b"");
            // An option's entry starts at a line indented by at most 6 columns; its
            // long description lines are indented further.
            let mut entries: Vec<String> = Vec::new();
            for line in help.lines() {
                let indent = line.len() - line.trim_start().len();
                match entries.last_mut() {
                    Some(entry) if indent > 6 || line.trim().is_empty() => entry.push_str(line),
                    _ => entries.push(line.to_owned()),
                }
            }
            for entry in &entries {
                assert!(entry.matches("[default:").count() <= 1, "{args:?}: {entry}");
                if let Some((_, var)) = entry.split_once("[env: ") {
                    let var = var.split('=').next().unwrap();
                    assert!(!entry.contains(&format!("${var}")), "{args:?}: {entry}");
                }
            }
        }
    }
}

/// `demo --agents 0` (or `--sessions 0`) is refused as a bad argument before anything is
/// created (it used to run, append nothing and fail on an offset out of range), and a
/// second run on the same `--dir` is refused with a message, leaving the first run's
/// trail as it was (it used to fail midway on the subject the first run erased).
#[test]
fn demo_refuses_zero_agents_and_a_second_run_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    for (flag, limit) in [("--agents", "1..=64"), ("--sessions", "1..=1000")] {
        let out = run(&d, &["demo", flag, "0"], b"");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} 0: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(limit), "{flag} 0: {stderr}");
        assert!(!d.exists(), "{flag} 0 created the store");
    }
    ok(&d, &["demo", "--agents", "1", "--sessions", "2"], b"");
    let before = ok(&d, &["read", "agent-trail", "--format", "raw"], b"");
    let stderr = fails(&d, &["demo", "--agents", "1", "--sessions", "2"], b"");
    assert!(stderr.contains("already holds a demo trail"), "{stderr}");
    assert!(stderr.contains(&d.display().to_string()), "{stderr}");
    assert_eq!(ok(&d, &["read", "agent-trail", "--format", "raw"], b""), before);
    ok(&d, &["verify"], b"");
}

/// `append` takes files saved on Windows: a line ending \r\n is a line ending (the \r
/// used to stay in the record, and made a JSON line with `--key-field` keep it too), and
/// a UTF-8 byte order mark before the first line is not part of it (it used to make the
/// first JSON line "not JSON"). A \r inside a line, or a BOM on a later line, stays.
#[test]
fn append_takes_crlf_line_endings_and_a_byte_order_mark() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = b"\xef\xbb\xbf{\"k\":\"a\"}\r\n{\"k\":\"b\"}\r\n{\"k\":\"c\"}\r\n";
    ok(d, &["append", "json", "--key-field", "k"], &input[..]);
    let records = jsonl(&ok(d, &["read", "json"], b""));
    let keys: Vec<&str> = records.iter().map(|r| r["key"].as_str().unwrap()).collect();
    let values: Vec<&str> = records.iter().map(|r| r["value"].as_str().unwrap()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(values, ["{\"k\":\"a\"}", "{\"k\":\"b\"}", "{\"k\":\"c\"}"]);

    let inputs = tempfile::tempdir().unwrap();
    let file = inputs.path().join("windows.txt");
    std::fs::write(
        &file,
        b"\xef\xbb\xbffirst\r\nin\rside\r\n\xef\xbb\xbfsecond bom\r\nlast\r\n",
    )
    .unwrap();
    ok(d, &["append", "raw", file.to_str().unwrap()], b"");
    assert_eq!(
        ok(d, &["read", "raw", "--format", "raw"], b"").as_bytes(),
        "first\nin\rside\n\u{feff}second bom\nlast\n".as_bytes()
    );

    // --events: a BOM and \r\n around an event line.
    let event = concat!(
        r#"{"actor.id":"agent-support-00","actor.type":"agent","event_id":"evt-00000007-3fa2c1","#,
        r#""gen_ai.agent.id":"agent-support-00","gen_ai.conversation.id":"conv-225ec07a9950","#,
        r#""gen_ai.operation.name":"execute_tool","gen_ai.tool.call.arguments":{"order":"A-1"},"#,
        r#""gen_ai.tool.call.id":"call_5b1c","gen_ai.tool.name":"issue_refund","#,
        r#""gen_ai.tool.type":"function","kind":"tool_call","parent_span_id":"eb0354df4a45b34f","#,
        r#""schema_version":1,"span_id":"1f6a8d0c2b3e4f50","subject.id":"user-0002","#,
        r#""time":"2025-01-01T00:00:01.204113Z","trace_id":"1a82e79b05b5faebf5ba4eb728dd632d"}"#
    );
    let out = run(d, &["append", "lf", "--events"], format!("{event}\n").as_bytes());
    assert!(
        out.status.success(),
        "setup: the event is valid: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = format!("\u{feff}{event}\r\n");
    let out = run(d, &["append", "events", "--events"], line.as_bytes());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(offsets_of(&ok(d, &["read", "events"], b"")), [0]);
}

/// `tier upload --now` then `tier restore` into a fresh directory, through the CLI alone:
/// the restored store reads back every uploaded record, verifies with the signing key
/// given apart, says which checkpoints and offsets never reached the bucket, and takes
/// new appends that verify too. A restore into a store, or from an empty prefix, is refused.
#[test]
fn tier_upload_and_restore_through_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let bucket = format!("file://{}", tmp.path().join("bucket").display());
    let padded = |n: std::ops::Range<u64>| -> String {
        n.map(|i| format!("{{\"i\":{i},\"pad\":\"{}\"}}\n", "x".repeat(100)))
            .collect()
    };
    ok(&a, &["topics", "create", "t", "--segment-bytes", "4096"], b"");
    // One append call is one batch here (~13 KiB), and a batch never spans segments: five
    // calls make four sealed segments and an active one.
    for part in 0..5 {
        ok(&a, &["append", "t"], padded(part * 100..part * 100 + 100).as_bytes());
    }
    ok(&a, &["checkpoint", "t"], b"");
    let stderr = fails(&b, &["tier", "restore", "--from", &bucket], b"");
    assert!(stderr.contains("holds no topic manifest"), "{stderr}");
    ok(&a, &["tier", "upload", "--now", "--to", &bucket], b"");
    let stderr = fails(&a, &["tier", "restore", "--from", &bucket], b"");
    assert!(
        stderr.contains(&a.display().to_string()),
        "restore into a store: {stderr}"
    );

    let key = a.join("keys").join("checkpoint.key");
    let out = run(
        &b,
        &[
            "tier",
            "restore",
            "--from",
            &bucket,
            "--signing-key",
            key.to_str().unwrap(),
        ],
        b"",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("restored topic t: 4 segment(s), offsets up to 400"),
        "{stderr}"
    );
    let kept = stderr
        .lines()
        .find_map(|l| {
            l.strip_prefix("restored topic t: ")?
                .strip_suffix(" stored checkpoint(s)")
        })
        .unwrap_or_else(|| panic!("no checkpoint count: {stderr}"));
    // The explicit checkpoint covers the active segment's records, which stay local.
    assert!(
        stderr.contains("checkpoint(s) cover records that never reached the bucket"),
        "{stderr}"
    );
    assert!(
        stderr.contains("topic t: offsets 400..500 never reached the bucket and are missing"),
        "the lost tail: {stderr}"
    );
    assert_eq!(ok(&b, &["read", "t", "--format", "raw"], b""), padded(0..400));
    let verified = ok(&b, &["verify", "t"], b"");
    assert!(verified.contains("400 records from offset 0"), "{verified}");
    assert!(verified.contains(&format!(", {kept} stored checkpoints")), "{verified}");
    ok(&b, &["append", "t"], b"{\"after\":\"restore\"}\n");
    let verified = ok(&b, &["verify", "t"], b"");
    assert!(verified.contains("401 records from offset 0"), "{verified}");
    assert_eq!(
        offsets_of(&ok(&b, &["read", "t", "--from-offset", "400"], b"")),
        vec![400]
    );
}

/// `tier upload` without `--to` takes the saved settings; `--region` overrides the saved
/// region and is saved (it used to be ignored once settings were saved).
#[test]
fn tier_upload_region_overrides_the_saved_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("store");
    let bucket = format!("file://{}", dir.path().join("bucket").display());
    ok(&d, &["append", "t"], b"x\n");
    ok(&d, &["tier", "upload", "--now", "--to", &bucket], b"");
    let saved = || std::fs::read_to_string(d.join("tier").join("config.json")).unwrap();
    assert!(!saved().contains("eu-west-1"), "{}", saved());
    ok(&d, &["tier", "upload", "--now", "--region", "eu-west-1"], b"");
    assert!(saved().contains("\"eu-west-1\""), "{}", saved());
    ok(&d, &["tier", "upload", "--now"], b"");
    assert!(saved().contains("\"eu-west-1\""), "the saved region stays: {}", saved());
}

/// Long operations show progress on a terminal's stderr and stay quiet when piped: a
/// replay into a file and a bulk append from a pipe, run under `script` (a pseudo
/// terminal), draw their bars; the same commands with stderr piped print nothing there.
#[test]
fn progress_shows_on_a_terminal_and_not_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let (d, input) = (dir.path().join("store"), dir.path().join("in.jsonl"));
    let lines: String = (0..100_000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    std::fs::write(&input, &lines).unwrap();
    ok(&d, &["append", "t", input.to_str().unwrap()], b"");
    let bin = env!("CARGO_BIN_EXE_trailkeep");
    let on_terminal = |command: String| -> String {
        let out = Command::new("script")
            .args(["-qec", &command, "/dev/null"])
            .env_remove("TRAILKEEP_DIR")
            .output()
            .expect("`script` (util-linux) runs commands on a pseudo terminal");
        assert!(out.status.success(), "{command}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out_file = dir.path().join("out.jsonl");
    let shown = on_terminal(format!("{bin} --dir {} read t > {}", d.display(), out_file.display()));
    assert!(shown.contains("reading t") && shown.contains("records"), "{shown:?}");
    assert_eq!(std::fs::read_to_string(&out_file).unwrap().lines().count(), 100_000);
    let shown = on_terminal(format!(
        "cat {} | {bin} --dir {} append u",
        input.display(),
        d.display()
    ));
    assert!(shown.contains(" read, "), "{shown:?}");
    assert!(shown.contains("appended 100000 records to u"), "{shown:?}");
    // Piped: the records on stdout, nothing on stderr.
    let out = run(&d, &["read", "t"], b"");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&d, &["append", "v"], lines.as_bytes());
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
}
