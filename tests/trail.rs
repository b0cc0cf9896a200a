//! The AI trail end to end: events go in redacted and encrypted, nothing redacted ever
//! reaches a file of the store (every file is scanned for the original bytes), queries by
//! trace / conversation / agent / subject return exactly what a full scan finds, erasure
//! makes a subject's personal fields unreadable while `verify` and proofs still pass, and
//! the generator is deterministic by seed. Also runs `trailkeep demo` and
//! `append --events` through the binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use trailkeep::events::testing::TrailGenerator;
use trailkeep::events::{Event, PseudonymKey, Redactor, Shredder};
use trailkeep::trail::{Trail, TrailConfig};
use trailkeep::{Offset, Store, TopicConfig};

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            all_files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn events(seed: u64, sessions: usize) -> Vec<Event> {
    TrailGenerator::new(seed).sessions(sessions).generate()
}

#[test]
fn redacted_and_encrypted_values_never_reach_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .create_topic("t", TopicConfig::default().segment_bytes(64 * 1024))
        .unwrap();
    let config = TrailConfig {
        redactor: Some(
            Redactor::new()
                .with_pseudonym_key(PseudonymKey::new("k1", [9u8; 32]).unwrap())
                .pseudonymize("gen_ai.tool.call.arguments.email")
                .unwrap(),
        ),
        shredder: Some(Shredder::new(["gen_ai.input.messages"]).unwrap()),
    };
    let trail = Trail::open(&store, "t", config).unwrap();
    let evs = events(11, 20);
    let mut secrets = Vec::new();
    for e in &evs {
        let v = e.to_value().unwrap();
        if let Some(email) = v.pointer("/gen_ai.tool.call.arguments/email").and_then(|x| x.as_str()) {
            secrets.push(email.to_owned());
        }
        if let Some(messages) = v.get("gen_ai.input.messages") {
            // The longest text part of the input messages is a distinctive plaintext.
            let text = messages.to_string();
            if text.len() > 40 {
                secrets.push(text[10..40].to_owned());
            }
        }
        trail.append(e).unwrap();
    }
    assert!(secrets.len() > 20, "the generator should produce emails and messages");
    trail.topic().checkpoint().unwrap();
    store.close().unwrap();
    let mut files = Vec::new();
    all_files(dir.path(), &mut files);
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for secret in &secrets {
            assert!(
                !contains(&bytes, secret.as_bytes()),
                "{secret:?} found in {}",
                file.display()
            );
        }
    }
    // Reading back decrypts the personal fields and keeps the pseudonyms.
    let store = Store::open(dir.path()).unwrap();
    let trail = Trail::open(&store, "t", TrailConfig::default()).unwrap();
    let first = trail.topic().read(Offset(0)).unwrap();
    let event = trail.decode(&first).unwrap().unwrap();
    assert_eq!(event.event_id, evs[0].event_id);
}

#[test]
fn queries_match_a_full_scan() {
    let store = Store::temporary().unwrap();
    store
        .create_topic("t", TopicConfig::default().segment_bytes(32 * 1024))
        .unwrap();
    let trail = Trail::open(&store, "t", TrailConfig::default()).unwrap();
    let evs = events(5, 30);
    for chunk in evs.chunks(7) {
        trail.append_batch(chunk).unwrap();
    }
    assert!(trail.topic().stats().unwrap().segments > 3);
    let mut by_trace: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_conv: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_subject: BTreeMap<String, usize> = BTreeMap::new();
    for e in &evs {
        by_trace
            .entry(e.trace_id().to_owned())
            .or_default()
            .push(e.event_id.clone());
        *by_conv.entry(e.conversation_id().to_owned()).or_default() += 1;
        if let Some(s) = e.subject_id() {
            *by_subject.entry(s.to_owned()).or_default() += 1;
        }
    }
    for (trace, ids) in by_trace.iter().take(25) {
        let got: Vec<String> = trail
            .trace(trace, 0, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        assert_eq!(&got, ids, "trace {trace}");
    }
    for (conv, n) in by_conv.iter().take(10) {
        assert_eq!(
            trail.conversation(conv, 0, u64::MAX).unwrap().len(),
            *n,
            "conversation {conv}"
        );
    }
    for (subject, n) in by_subject.iter().take(10) {
        assert_eq!(
            trail.subject(subject, 0, u64::MAX).unwrap().len(),
            *n,
            "subject {subject}"
        );
    }
    assert!(trail
        .trace("00000000000000000000000000000000", 0, u64::MAX)
        .unwrap()
        .is_empty());
    // A time window excludes records appended before it.
    let last = trail.topic().read(Offset(trail.topic().end_offset().0 - 1)).unwrap();
    let late = trail
        .trace(by_trace.keys().next().unwrap(), last.timestamp_us + 1, u64::MAX)
        .unwrap();
    assert!(late.is_empty());
}

#[test]
fn erasure_keeps_proofs_valid_and_makes_fields_unreadable() {
    let store = Store::temporary().unwrap();
    let trail = Trail::open(
        &store,
        "t",
        TrailConfig {
            shredder: Some(Shredder::new(["gen_ai.input.messages"]).unwrap()),
            ..TrailConfig::default()
        },
    )
    .unwrap();
    let evs = events(3, 10);
    let subject = evs.iter().find_map(|e| e.subject_id().map(str::to_owned)).unwrap();
    for e in &evs {
        trail.append(e).unwrap();
    }
    let before: Vec<String> = trail
        .subject(&subject, 0, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.to_json().unwrap())
        .collect();
    assert!(before
        .iter()
        .any(|j| j.contains("gen_ai.input.messages") && !j.contains("trailkeep.erased")));
    let vkey = trail.topic().verifier_key().unwrap();
    trail.forget(&subject).unwrap();
    assert!(trail.is_forgotten(&subject));
    let after: Vec<String> = trail
        .subject(&subject, 0, u64::MAX)
        .unwrap()
        .iter()
        .map(|e| e.to_json().unwrap())
        .collect();
    assert_eq!(after.len(), before.len());
    assert!(after.iter().any(|j| j.contains("trailkeep.erased")));
    let report = trail.topic().verify(None, &mut |_| {}).unwrap();
    assert_eq!(report.records, evs.len() as u64 + 1);
    let record = trail.topic().read(Offset(0)).unwrap();
    let bundle = trail.topic().prove(Offset(0)).unwrap();
    trailkeep::verify_record_inclusion(&record, &bundle, &vkey).unwrap();
    // A record of another subject still decrypts.
    let other = evs
        .iter()
        .find(|e| e.subject_id().is_some_and(|s| s != subject))
        .unwrap();
    let found = trail.trace(other.trace_id(), 0, u64::MAX).unwrap();
    assert!(found
        .iter()
        .all(|e| !e.to_json().unwrap().contains("trailkeep.erased") || e.subject_id() == Some(&subject)));
}

#[test]
fn generator_is_deterministic_by_seed() {
    let a: Vec<String> = events(42, 5).iter().map(|e| e.to_json().unwrap()).collect();
    let b: Vec<String> = events(42, 5).iter().map(|e| e.to_json().unwrap()).collect();
    let c: Vec<String> = events(43, 5).iter().map(|e| e.to_json().unwrap()).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn cli_append_events_validates_and_read_trace_finds_them() {
    let dir = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_trailkeep");
    let evs = events(8, 3);
    let mut input = String::new();
    for e in evs.iter().take(6) {
        input.push_str(&e.to_json().unwrap());
        input.push('\n');
    }
    input.push_str("{\"kind\":\"tool_call\"}\n");
    let path = dir.path().join("events.jsonl");
    std::fs::write(&path, &input).unwrap();
    let out = Command::new(bin)
        .args(["--dir"])
        .arg(dir.path().join("s"))
        .args(["append", "trail", "--events", "--personal", "gen_ai.input.messages"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 7"), "{stderr}");
    let trace = evs[0].trace_id();
    let out = Command::new(bin)
        .args(["--dir"])
        .arg(dir.path().join("s"))
        .args(["read", "trail", "--trace", trace])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = std::str::from_utf8(&out.stdout).unwrap().lines().collect();
    let want = evs.iter().take(6).filter(|e| e.trace_id() == trace).count();
    assert_eq!(lines.len(), want);
    assert!(lines.iter().all(|l| l.contains(trace)));
}

#[test]
fn demo_runs_end_to_end() {
    let out = Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .args(["demo", "--agents", "2", "--sessions", "5"])
        .env_remove("TRAILKEEP_DIR")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "policy-scanner",
        "evaluator",
        "ok:",
        "verify of the tampered copy fails",
        "checkpoint",
        "erased",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in demo output:\n{stdout}");
    }
}

#[test]
fn the_pseudonym_secret_is_created_whole_once_and_private() {
    use std::os::unix::fs::PermissionsExt;
    let store = Store::temporary().unwrap();
    let keys = store.dir().join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    // A temp file left by a creator killed before its link: ignored.
    std::fs::write(keys.join("pseudonym.key.999.0.tmp"), b"short").unwrap();
    let first = trailkeep::trail::pseudonym_secret(&store).unwrap();
    let path = keys.join("pseudonym.key");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        first,
        "the key on disk is the one returned"
    );
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // A short key file (not made by this build) is refused with where and why.
    std::fs::write(&path, [1u8; 7]).unwrap();
    let e = trailkeep::trail::pseudonym_secret(&store).unwrap_err().to_string();
    assert!(e.contains("pseudonym.key") && e.contains("32 bytes"), "{e}");
}

#[test]
fn concurrent_first_uses_of_the_pseudonym_secret_agree() {
    for _ in 0..20 {
        let store = Store::temporary().unwrap();
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| trailkeep::trail::pseudonym_secret(&store).unwrap()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "two first uses got different keys");
    }
}
