//! Tamper evidence through the `trailkeep` binary: `verify [T] [--checkpoint FILE] [--key
//! VKEY]`, `checkpoint T [--latest] [--vkey]`, `prove T OFFSET`, `prove T --consistency OLD`.
//!
//! What it proves: `verify` prints OK for an intact store and exits 1 naming the offset and
//! file of a record whose value was changed (batch CRC fixed); `checkpoint --vkey` prints a
//! key that verifies every stored checkpoint and `--latest` the newest; `verify --checkpoint`
//! accepts the store's own checkpoint (key given as text or file) and exits 1 after a
//! rollback or with another key; `prove` output verifies with the library's verifier from the
//! bundle, the record and the vkey alone, and `prove --consistency` against an older
//! checkpoint; an offset not held exits 1; a `trailkeep append` killed with SIGKILL leaves a
//! store that verifies, with the tree caught up to every acknowledged record; on a store
//! its user cannot write (read-only modes, and `nobody` when the tests run as root),
//! `verify`, `prove` and `checkpoint --latest` work and change no byte, and signing or
//! appending names the lock file it could not open.
//!
//! How: stores are built with the library (or by the CLI appender), closed, then the binary
//! (`CARGO_BIN_EXE_trailkeep`) runs against them; exit codes, stdout and stderr are checked.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use trailkeep::audit::{self, Checkpoint, NoteSigner, NoteVerifier};
use trailkeep::{verify_record_inclusion, Durability, NewRecord, Offset, Store, TopicConfig};

#[path = "support/files.rs"]
mod files;

const T: &str = "t";

fn tk(dir: &Path, args: &[&str]) -> Output {
    with_args(Command::new(env!("CARGO_BIN_EXE_trailkeep")), dir, args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// `cmd` (the binary, or a wrapper running it) with the store and `args`, free of the
/// environment variables that would change what the binary does.
fn with_args(mut cmd: Command, dir: &Path, args: &[&str]) -> Command {
    cmd.arg("--dir")
        .arg(dir)
        .args(args)
        .env_remove("TRAILKEEP_DIR")
        .env_remove("TRAILKEEP_FAILPOINT")
        .env_remove("TRAILKEEP_LOG");
    cmd
}

#[track_caller]
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = tk(dir, args);
    assert!(
        out.status.success(),
        "trailkeep {args:?} failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs a command that must fail with exit code 1; returns its stderr.
#[track_caller]
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = tk(dir, args);
    assert_eq!(
        out.status.code(),
        Some(1),
        "trailkeep {args:?} should exit 1; stdout: {}; stderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn record(i: u64) -> NewRecord {
    let r = NewRecord::new(format!(
        "{{\"event\":{i},\"detail\":\"{}\"}}",
        "x".repeat((i % 50) as usize)
    ));
    if i.is_multiple_of(2) {
        r.with_key(format!("k{i}")).with_header("h", vec![i as u8])
    } else {
        r
    }
}

fn append(dir: &Path, range: std::ops::Range<u64>) {
    let store = Store::builder(dir).durability(Durability::Buffered).open().unwrap();
    let topic = match store.topic(T) {
        Ok(t) => t,
        Err(_) => store
            .create_topic(T, TopicConfig::default().segment_bytes(4096))
            .unwrap(),
    };
    for i in range {
        assert_eq!(topic.append(&record(i)).unwrap(), Offset(i));
    }
    store.close().unwrap();
}

fn topic_dir(root: &Path) -> PathBuf {
    root.join("topics").join(T)
}

fn u32_at(b: &[u8], p: usize) -> u32 {
    u32::from_le_bytes(b[p..p + 4].try_into().unwrap())
}

/// Flips a byte in the value of the single-record batch holding `offset` in the first
/// segment and fixes the batch CRC-32 (over bytes [12, batch_bytes)). The record has no key, headers or event time (odd i).
fn tamper_value(root: &Path, offset: u64) -> String {
    let name = format!("{:020}.log", 0);
    let path = topic_dir(root).join(&name);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut pos = 0;
    loop {
        let len = u32_at(&bytes, pos + 4) as usize;
        let base = u64::from_le_bytes(bytes[pos + 16..pos + 24].try_into().unwrap());
        if base == offset {
            // header 40, body_len 4, flags 1 (0: no key, no time), header_count 1, value.
            assert_eq!(bytes[pos + 44], 0, "pick an offset without key or event time");
            bytes[pos + 50] ^= 0x04;
            // The header is unchanged, so its 16-bit header check still holds.
            let crc = crc32fast::hash(&bytes[pos + 12..pos + len]);
            bytes[pos + 8..pos + 12].copy_from_slice(&crc.to_le_bytes());
            std::fs::write(&path, &bytes).unwrap();
            return name;
        }
        pos += len;
    }
}

#[test]
fn verify_reports_ok_then_names_the_offset_and_file_of_a_changed_record() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0..120);
    let out = ok(dir.path(), &["verify", T]);
    assert!(out.starts_with("ok t: 120 records from offset 0"), "{out}");
    assert!(out.contains("tree size 120"), "{out}");
    assert!(ok(dir.path(), &["verify"]).starts_with("ok t:"));
    let file = tamper_value(dir.path(), 7);
    let err = fails(dir.path(), &["verify", T]);
    assert!(err.contains("at offset 7"), "{err}");
    assert!(err.contains(&file), "{err}");
    let err = fails(dir.path(), &["verify"]);
    assert!(err.contains("at offset 7"), "{err}");
    // Reading it is fine: only tamper evidence catches it.
    ok(dir.path(), &["read", T, "--from-offset", "7", "--limit", "1"]);
}

#[test]
fn vkey_verifies_stored_checkpoints_and_external_checkpoints_catch_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let saved = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    append(dir.path(), 0..40);
    let old_cp = ok(dir.path(), &["checkpoint", T]);
    files::copy_dir(&topic_dir(dir.path()), saved.path());
    append(dir.path(), 40..90);
    let vkey = ok(dir.path(), &["checkpoint", T, "--vkey"]).trim().to_owned();
    let v = NoteVerifier::parse(&vkey).unwrap();
    let latest = ok(dir.path(), &["checkpoint", T, "--latest"]);
    assert_eq!(Checkpoint::parse_and_verify(&latest, &v).unwrap().size, 90);
    // Every stored checkpoint verifies with the printed key.
    let bytes = std::fs::read(topic_dir(dir.path()).join("checkpoints.log")).unwrap();
    let (mut pos, mut n) = (0, 0);
    while pos < bytes.len() {
        let len = u32_at(&bytes, pos) as usize;
        let text = std::str::from_utf8(&bytes[pos + 8..pos + 8 + len]).unwrap();
        Checkpoint::parse_and_verify(text, &v).unwrap_or_else(|e| panic!("stored #{n}: {e}"));
        pos += 8 + len;
        n += 1;
    }
    assert!(n >= 2, "{n} stored checkpoints");
    let new_cp = ok(dir.path(), &["checkpoint", T]);
    let cp_file = outside.path().join("kept.checkpoint");
    let cp_file = cp_file.to_str().unwrap().to_owned();
    std::fs::write(&cp_file, &new_cp).unwrap();
    let key_file = outside.path().join("kept.vkey");
    std::fs::write(&key_file, format!("{vkey}\n")).unwrap();
    let out = ok(dir.path(), &["verify", T, "--checkpoint", &cp_file, "--key", &vkey]);
    assert!(out.contains("external checkpoint of size 90 ok"), "{out}");
    ok(
        dir.path(),
        &[
            "verify",
            T,
            "--checkpoint",
            &cp_file,
            "--key",
            key_file.to_str().unwrap(),
        ],
    );
    ok(dir.path(), &["verify", T, "--checkpoint", &cp_file]);
    let other = NoteSigner::generate(v.name()).unwrap().verifier().to_vkey();
    fails(dir.path(), &["verify", T, "--checkpoint", &cp_file, "--key", &other]);
    // A forged signature.
    let cut = new_cp.rfind(' ').unwrap();
    let mut sig = base64::engine::general_purpose::STANDARD
        .decode(new_cp[cut + 1..].trim_end())
        .unwrap();
    sig[40] ^= 1;
    let forged = format!(
        "{} {}\n",
        &new_cp[..cut],
        base64::engine::general_purpose::STANDARD.encode(sig)
    );
    let forged_file = outside.path().join("forged.checkpoint");
    std::fs::write(&forged_file, forged).unwrap();
    fails(
        dir.path(),
        &["verify", T, "--checkpoint", forged_file.to_str().unwrap()],
    );

    // Roll the topic back to the copy taken at 40 records.
    std::fs::remove_dir_all(topic_dir(dir.path())).unwrap();
    files::copy_dir(saved.path(), &topic_dir(dir.path()));
    let out = ok(dir.path(), &["verify", T]);
    assert!(out.contains("tree size 40"), "{out}");
    let old_file = outside.path().join("old.checkpoint");
    std::fs::write(&old_file, &old_cp).unwrap();
    ok(dir.path(), &["verify", T, "--checkpoint", old_file.to_str().unwrap()]);
    let err = fails(dir.path(), &["verify", T, "--checkpoint", &cp_file, "--key", &vkey]);
    assert!(err.contains("records were removed"), "{err}");
}

#[test]
fn prove_output_verifies_with_the_bundle_record_and_vkey_alone() {
    let dir = tempfile::tempdir().unwrap();
    append(dir.path(), 0..40);
    let old = ok(dir.path(), &["checkpoint", T]);
    append(dir.path(), 40..130);
    let vkey = ok(dir.path(), &["checkpoint", T, "--vkey"]).trim().to_owned();
    let v = NoteVerifier::parse(&vkey).unwrap();
    let records: Vec<_> = {
        let store = Store::open(dir.path()).unwrap();
        let topic = store.topic(T).unwrap();
        topic.iter(Offset(0)).map(|r| r.unwrap()).collect()
    };
    for o in [0u64, 1, 39, 64, 100, 129] {
        let bundle = ok(dir.path(), &["prove", T, &o.to_string()]);
        assert!(bundle.starts_with("c2sp.org/tlog-proof@v1\n"), "{bundle}");
        let cp = verify_record_inclusion(&records[o as usize], &bundle, &vkey).unwrap();
        assert_eq!(cp.size, 130);
        let mut changed = records[o as usize].clone();
        changed.value.push(b'!');
        assert!(verify_record_inclusion(&changed, &bundle, &vkey).is_err());
        assert!(verify_record_inclusion(&records[(o as usize + 1) % 130], &bundle, &vkey).is_err());
    }
    let old = Checkpoint::parse_and_verify(&old, &v).unwrap();
    assert_eq!(old.size, 40);
    let text = ok(dir.path(), &["prove", T, "--consistency", "40"]);
    let (head, cp) = text.split_once("\n\n").unwrap();
    let mut lines = head.lines();
    assert_eq!(lines.next(), Some("trailkeep.consistency-proof@v1"));
    assert_eq!(lines.next(), Some("old 40"));
    let proof: Vec<audit::Hash> = lines
        .map(|l| {
            base64::engine::general_purpose::STANDARD
                .decode(l)
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    let new = Checkpoint::parse_and_verify(cp, &v).unwrap();
    assert_eq!(new.size, 130);
    audit::verify_consistency(40, 130, &old.root, &new.root, &proof).unwrap();
    let mut bad = old.root;
    bad[0] ^= 1;
    assert!(audit::verify_consistency(40, 130, &bad, &new.root, &proof).is_err());
    fails(dir.path(), &["prove", T, "130"]);
    fails(dir.path(), &["prove", T, "--consistency", "131"]);
}

#[test]
fn appender_killed_with_sigkill_leaves_a_store_that_verifies_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    ok(dir.path(), &["topics", "create", T, "--segment-bytes", "4096"]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trailkeep"))
        .arg("--dir")
        .arg(dir.path())
        .args(["append", T, "--durability", "always", "--print-offsets"])
        .env_remove("TRAILKEEP_DIR")
        .env_remove("TRAILKEEP_FAILPOINT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut acks = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = 0u64;
    // Feed in bursts; wait for each burst's acknowledgements.
    for burst in 0..30u64 {
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&format!(
                "{{\"burst\":{burst},\"i\":{i},\"pad\":\"{}\"}}\n",
                "p".repeat(i)
            ));
        }
        stdin.write_all(text.as_bytes()).unwrap();
        stdin.flush().unwrap();
        while acked < (burst + 1) * 20 {
            let line = acks.next().unwrap().unwrap();
            assert_eq!(line.trim().parse::<u64>().unwrap(), acked);
            acked += 1;
        }
    }
    // More lines in flight, then SIGKILL.
    stdin.write_all("{\"late\":1}\n".repeat(500).as_bytes()).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    let out = ok(dir.path(), &["verify", T]);
    let store = Store::open(dir.path()).unwrap();
    let end = store.topic(T).unwrap().end_offset().0;
    drop(store);
    assert!(end >= acked, "end {end} < acknowledged {acked}");
    assert!(out.contains(&format!("tree size {end}")), "{out}");
    let latest = ok(dir.path(), &["checkpoint", T, "--latest"]);
    let vkey = ok(dir.path(), &["checkpoint", T, "--vkey"]);
    let v = NoteVerifier::parse(vkey.trim()).unwrap();
    assert_eq!(Checkpoint::parse_and_verify(&latest, &v).unwrap().size, end);
    // The store takes appends again and still verifies.
    append(dir.path(), end..end + 5);
    let out = ok(dir.path(), &["verify", T]);
    assert!(out.contains(&format!("tree size {}", end + 5)), "{out}");
}

/// `verify --checkpoint FILE` without a topic applies the checkpoint to the topic its
/// origin names. A checkpoint that cannot apply used to be passed over and every topic
/// reported ok (exit 0): a malformed file, one signed by another store, one naming a topic
/// this store does not have. Each is now an error naming the file; a checkpoint this store
/// signed for a topic that is gone is tamper evidence (the topic was removed).
#[test]
fn a_checkpoint_that_cannot_apply_is_an_error_not_passed_over() {
    let (dir, other, outside) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    append(dir.path(), 0..20);
    append(other.path(), 0..20);
    let write = |name: &str, text: &str| {
        let path = outside.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ours = write("ours", &ok(dir.path(), &["checkpoint", T]));
    let out = ok(dir.path(), &["verify", "--checkpoint", &ours]);
    assert!(out.contains("external checkpoint of size 20 ok"), "{out}");

    let garbage = write("garbage", "not a checkpoint\n");
    for args in [
        vec!["verify", "--checkpoint", &garbage],
        vec!["verify", T, "--checkpoint", &garbage],
    ] {
        let err = fails(dir.path(), &args);
        assert!(
            err.contains(&format!("--checkpoint {garbage}: malformed signed note")),
            "{err}"
        );
        assert!(!err.contains("tamper") && !err.contains("line 0"), "{err}");
    }
    // Another store's checkpoint: its signature is not this store's key.
    let theirs = write("theirs", &ok(other.path(), &["checkpoint", T]));
    let err = fails(dir.path(), &["verify", "--checkpoint", &theirs]);
    assert!(err.contains("no signature from key"), "{err}");
    // With that store's key: the checkpoint of another log, whichever topic is named.
    let their_key = ok(other.path(), &["checkpoint", T, "--vkey"]).trim().to_owned();
    for args in [
        vec!["verify", "--checkpoint", &theirs, "--key", &their_key],
        vec!["verify", T, "--checkpoint", &theirs, "--key", &their_key],
    ] {
        let err = fails(dir.path(), &args);
        assert!(err.contains("cannot be checked against topic \"t\""), "{err}");
        assert!(!err.contains("tamper"), "{err}");
    }
    // Another store's checkpoint of a topic this store lacks.
    let store = Store::open(other.path()).unwrap();
    let elsewhere = store.create_topic("elsewhere", TopicConfig::default()).unwrap();
    elsewhere.append(&record(0)).unwrap();
    let elsewhere_cp = write("elsewhere", &elsewhere.checkpoint().unwrap());
    store.close().unwrap();
    let err = fails(
        dir.path(),
        &["verify", "--checkpoint", &elsewhere_cp, "--key", &their_key],
    );
    assert!(err.contains("not of a topic of this store"), "{err}");

    // This store's checkpoint of a topic that was deleted: tamper evidence.
    std::fs::remove_dir_all(topic_dir(dir.path())).unwrap();
    let err = fails(dir.path(), &["verify", "--checkpoint", &ours]);
    assert!(err.contains("tamper evidence of topic \"t\""), "{err}");
    assert!(err.contains("the store has no such topic: it was removed"), "{err}");
}

/// `verify` and `prove` while another process appends (here: this test process, through
/// the library) used to fail with "locked"; verify now checks the tree as that process
/// last synced it, reports the newer records it left unchecked, changes nothing, and still
/// catches a changed record the tree covers; prove answers from a stored checkpoint.
#[test]
fn verify_and_prove_beside_a_running_appender_use_the_synced_tree() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // No checkpoint of the tree thread's own during the test: the tree stays synced at 120.
    let config = TopicConfig::default()
        .checkpoint_every_ms(600_000)
        .checkpoint_every_records(1 << 20);
    let topic = store.create_topic(T, config).unwrap();
    for i in 0..120 {
        assert_eq!(topic.append(&record(i)).unwrap(), Offset(i));
    }
    let cp = topic.checkpoint().unwrap(); // syncs the tree at 120 leaves
    let out = ok(dir.path(), &["verify", T]);
    assert!(out.starts_with("ok t: 120 records from offset 0"), "{out}");
    assert!(out.contains("tree size 120") && !out.contains("not checked"), "{out}");

    for i in 120..150 {
        topic.append(&record(i)).unwrap();
    }
    let out = ok(dir.path(), &["verify", T]);
    assert!(out.starts_with("ok t: 120 records from offset 0"), "{out}");
    assert!(
        out.contains("tree size 120") && out.contains("not checked: 30 newer record(s)"),
        "{out}"
    );
    let kept = dir.path().join("kept.checkpoint");
    std::fs::write(&kept, &cp).unwrap();
    let out = ok(dir.path(), &["verify", T, "--checkpoint", kept.to_str().unwrap()]);
    assert!(out.contains("external checkpoint of size 120 ok"), "{out}");

    // An inclusion proof against the stored checkpoint the synced tree covers; an offset
    // no stored checkpoint covers needs a new one, which only the appender can sign.
    let bundle = ok(dir.path(), &["prove", T, "7"]);
    let vkey = topic.verifier_key().unwrap();
    let cp7 = verify_record_inclusion(&topic.read(Offset(7)).unwrap(), &bundle, &vkey).unwrap();
    assert_eq!(cp7.size, 120);
    let err = fails(dir.path(), &["prove", T, "145"]);
    assert!(err.contains("locked"), "{err}");
    // Signing needs the lock too; the stored checkpoint is there to print.
    let err = fails(dir.path(), &["checkpoint", T]);
    assert!(err.contains("locked") && err.contains("--latest"), "{err}");
    assert_eq!(ok(dir.path(), &["checkpoint", T, "--latest"]), cp);

    let file = tamper_value(dir.path(), 7);
    let err = fails(dir.path(), &["verify", T]);
    assert!(err.contains("at offset 7") && err.contains(&file), "{err}");
    // The appender was not disturbed.
    assert_eq!(topic.append(&record(151)).unwrap(), Offset(150));
    drop(topic);
    drop(store);
}

/// Every file under `root` with its length, modification time and contents.
fn snapshot(root: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if meta.is_dir() {
                dirs.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, meta.len(), meta.modified().unwrap(), bytes));
            }
        }
    }
    out.sort();
    out
}

/// Sets the mode of every directory (`dirs`) and file (`files`) under `root`, root included.
fn chmod_tree(root: &Path, dirs: u32, files: u32) {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(root).unwrap();
    let mode = if meta.is_dir() { dirs } else { files };
    if meta.is_dir() {
        for entry in std::fs::read_dir(root).unwrap() {
            chmod_tree(&entry.unwrap().path(), dirs, files);
        }
    }
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs the binary as a user who cannot write the store, with `input` on stdin: `nobody`
/// through `setpriv` when the tests run as root (root writes whatever the modes say), else
/// the test's own user.
fn tk_reader(dir: &Path, args: &[&str], input: &str) -> Output {
    let uid = Command::new("id").arg("-u").output().unwrap();
    let cmd = if String::from_utf8_lossy(&uid.stdout).trim() == "0" {
        // A copy beside the store: the build directory may be closed to other users.
        let bin = dir.parent().unwrap().join("trailkeep");
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(bin);
        cmd
    } else {
        Command::new(env!("CARGO_BIN_EXE_trailkeep"))
    };
    let mut child = with_args(cmd, dir, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running as root, this test needs setpriv (util-linux) to drop to nobody");
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn verify_and_prove_on_a_store_that_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    append(&root, 0..300);
    let cp = ok(&root, &["checkpoint", T]);
    std::fs::copy(env!("CARGO_BIN_EXE_trailkeep"), dir.path().join("trailkeep")).unwrap();
    let (vkey, record7) = {
        let store = Store::open(&root).unwrap();
        let topic = store.topic(T).unwrap();
        (topic.verifier_key().unwrap(), topic.read(Offset(7)).unwrap())
    };
    // Read-only for the reader: no file or directory may be created, opened for writing or
    // locked (the append lock is taken by opening its file for writing).
    chmod_tree(dir.path(), 0o555, 0o444);
    chmod_tree(&dir.path().join("trailkeep"), 0o555, 0o555);
    let before = snapshot(&root);

    let out = tk_reader(&root, &["verify", T], "");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("ok t: 300 records from offset 0"), "{stdout}");
    assert!(
        stdout.contains("tree size 300") && !stdout.contains("not checked"),
        "{stdout}"
    );

    let out = tk_reader(&root, &["prove", T, "7"], "");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bundle = String::from_utf8(out.stdout).unwrap();
    let proved = verify_record_inclusion(&record7, &bundle, &vkey).unwrap();
    assert_eq!(proved.size, 300);

    let out = tk_reader(&root, &["checkpoint", T, "--latest"], "");
    assert_eq!(String::from_utf8_lossy(&out.stdout), cp);
    // What needs the append lock says which file it could not open.
    for args in [&["checkpoint", T][..], &["append", T][..]] {
        let out = tk_reader(&root, args, "{\"event\":300}\n");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("append.lock") && stderr.contains("denied"),
            "{args:?}: {stderr}"
        );
        // Signing also points at the stored checkpoint a reader can print.
        assert_eq!(
            stderr.contains("--latest"),
            args[0] == "checkpoint",
            "{args:?}: {stderr}"
        );
    }
    assert!(snapshot(&root) == before, "a reader changed the store");
    chmod_tree(dir.path(), 0o755, 0o644);
}
