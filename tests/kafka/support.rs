//! Shared by tests/serve.rs and tests/mirror.rs: finding the external Kafka tools, running
//! `trailkeep serve` on a free port, running the client script, comparing records.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A tool from `$VAR` (set by scripts/test.sh via scripts/kafka.sh), else `default` under
/// the repository. Missing: a panic under CI, "skipped: ..." otherwise.
pub fn tool(var: &str, default: &str, what: &str) -> Option<PathBuf> {
    let path = std::env::var(var)
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join(default));
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "{what} is required under CI but {} is missing: run scripts/kafka.sh install (or set {var})",
            path.display()
        );
    }
    eprintln!(
        "skipped: no {what} ({} missing; run scripts/kafka.sh install)",
        path.display()
    );
    None
}

pub fn python() -> Option<PathBuf> {
    let python = tool(
        "TRAILKEEP_KAFKA_PYTHON",
        ".venv/bin/python",
        "Kafka clients (kafka-python, confluent-kafka)",
    )?;
    let ok = Command::new(&python)
        .args(["-c", "import kafka, confluent_kafka"])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!(
                "{} cannot import kafka and confluent_kafka: run scripts/kafka.sh install",
                python.display()
            );
        }
        eprintln!("skipped: {} lacks kafka-python / confluent-kafka", python.display());
        return None;
    }
    Some(python)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kafka").join(name)
}

pub fn trailkeep(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_trailkeep"));
    cmd.arg("--dir").arg(dir).env_remove("TRAILKEEP_DIR");
    cmd
}

/// A child killed on drop, and the thread that echoes its log, if any.
pub struct Proc(pub Child, pub Option<std::thread::JoinHandle<()>>);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Proc {
    /// SIGTERM, then wait; the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.0.id() as i32;
        // SAFETY-free: a plain signal to our own child.
        let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                // Every line it logged is echoed before the caller judges the status.
                if let Some(echo) = self.1.take() {
                    let _ = echo.join();
                }
                return status;
            }
            assert!(Instant::now() < deadline, "process {pid} did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// `trailkeep serve` on a free port; returns it and "127.0.0.1:PORT".
pub fn serve(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    let proc = serve_at(dir, &addr, extra);
    (proc, addr)
}

/// `trailkeep serve` listening on `addr` (to restart a server where its clients look).
pub fn serve_at(dir: &Path, addr: &str, extra: &[&str]) -> Proc {
    serve_with(trailkeep(dir), addr, extra)
}

/// `cmd` (a `trailkeep` command naming the store, its environment set) serving on
/// `addr` with the serve options `extra`.
pub fn serve_with(mut cmd: Command, addr: &str, extra: &[&str]) -> Proc {
    let child = cmd
        .args(["serve", "--listen", addr])
        .args(extra)
        .env("TRAILKEEP_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting trailkeep serve");
    let mut proc = Proc(child, None);
    let stderr = proc.0.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let line = lines.next().expect("serve printed nothing").unwrap();
    assert!(
        line.contains(&format!("on {addr}")),
        "unexpected first line of serve: {line}"
    );
    // Keep draining the log so the server never blocks on a full pipe; echo it for failures.
    proc.1 = Some(std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("[serve] {line}");
        }
    }));
    proc
}

/// Runs the client script; panics with its stderr when it fails.
pub fn client(python: &Path, args: &[&str], stdin: &str) -> Vec<Value> {
    let mut child = Command::new(python)
        .arg(script("clients.py"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting python");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let output = wait_output(child, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "clients.py {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    json_lines(&output.stdout)
}

/// Waits for a child (reading its output meanwhile, so a full pipe never blocks it); kills
/// it and panics after `timeout`.
pub fn wait_output(child: Child, timeout: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            let output = rx.recv().unwrap().unwrap();
            panic!(
                "a child timed out after {timeout:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

pub fn json_lines(bytes: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}

/// Reads the next JSON line of a child's stdout.
pub fn next_json(stdout: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad JSON line {line:?}: {e}"))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A record as clients.py prints it.
pub fn as_json(r: &trailkeep::Record) -> Value {
    serde_json::json!({
        "offset": r.offset.0,
        "timestamp": r.timestamp_us / 1000,
        "key": r.key.as_deref().map(hex),
        "value": hex(&r.value),
        "headers": r.headers.iter().map(|(n, v)| serde_json::json!([n, hex(v)])).collect::<Vec<_>>(),
    })
}

/// Records to produce: keys (some absent, some binary), headers (some empty), values of
/// several sizes including empty and non-UTF-8, explicit producer timestamps.
pub fn sample_records(n: usize, seed: u64) -> Vec<Value> {
    (0..n as u64)
        .map(|i| {
            let key = (i % 3 != 2).then(|| hex(format!("key-{seed}-{}", i % 4).as_bytes()));
            let mut value = format!("{{\"seed\":{seed},\"i\":{i},\"text\":\"ünïcode\"}}").into_bytes();
            value.extend(std::iter::repeat_n(b'x', (i as usize * 37) % 300));
            if i % 5 == 4 {
                value = vec![0xff, 0x00, i as u8];
            }
            if i % 7 == 6 {
                value.clear();
            }
            let headers: Vec<Value> = (0..i % 3)
                .map(|h| serde_json::json!([format!("h{h}"), hex(format!("v{i}.{h}").as_bytes())]))
                .chain((i % 4 == 1).then(|| serde_json::json!(["empty", ""])))
                .collect();
            serde_json::json!({
                "key": key,
                "value": hex(&value),
                "headers": headers,
                "timestamp": 1_700_000_000_000i64 + i as i64,
            })
        })
        .collect()
}

pub fn to_stdin(records: &[Value]) -> String {
    records.iter().map(|r| format!("{r}\n")).collect()
}

/// The node_modules holding kafkajs, or `None` (skipped) outside CI.
pub fn kafkajs_modules() -> Option<PathBuf> {
    let modules = tool("TRAILKEEP_NODE_MODULES", ".node/node_modules", "kafkajs")?;
    if !modules.join("kafkajs").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "kafkajs missing in {}",
            modules.display()
        );
        eprintln!("skipped: no kafkajs in {}", modules.display());
        return None;
    }
    Some(modules)
}
