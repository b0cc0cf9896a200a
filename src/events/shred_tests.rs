//! Proves crypto-shredding end to end: encrypt → decrypt restores the exact JSON; a
//! forgotten subject's fields read as erased, its key file is gone and it never gets a new
//! key; tampering is detected; the key store recovers from every crash point it can see.

use super::shred::{ENVELOPE_KEY, ERASED_KEY};
use super::testing::TrailGenerator;
use super::*;
use serde_json::{json, Value};
use std::fs;

const PERSONAL: [&str; 4] = [
    "gen_ai.input.messages",
    "gen_ai.output.messages",
    "gen_ai.tool.call.arguments.email",
    "trailkeep.approval.reason",
];

fn shredder() -> Shredder {
    Shredder::new(PERSONAL).unwrap()
}

fn value() -> Value {
    json!({
        "subject.id": "user-0001",
        "gen_ai.input.messages": [{"role": "user", "content": "I live at 1 Main St"}],
        "gen_ai.tool.call.arguments": {"email": "a@b.c", "amount": 12},
        "gen_ai.tool.name": "send_email",
    })
}

#[test]
fn encrypt_then_decrypt_restores_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let mut v = value();
    assert_eq!(shredder().encrypt_fields(&mut v, &keys).unwrap(), 2);
    let envelope = &v["gen_ai.input.messages"];
    assert_eq!(envelope[ENVELOPE_KEY], json!("v1"));
    assert_eq!(envelope["subject"], json!("user-0001"));
    assert!(is_encrypted(&v["gen_ai.tool.call.arguments"]["email"]));
    assert_eq!(v["gen_ai.tool.call.arguments"]["amount"], json!(12));
    assert!(!v.to_string().contains("Main St"));
    assert!(!v.to_string().contains("a@b.c"));
    // Encrypting again leaves envelopes alone.
    let sealed = v.clone();
    assert_eq!(shredder().encrypt_fields(&mut v, &keys).unwrap(), 0);
    assert_eq!(v, sealed);
    // A fresh store instance on the same directory reads the same key.
    let reopened = KeyStore::open(dir.path()).unwrap();
    assert_eq!(decrypt_fields(&mut v, &reopened).unwrap(), 2);
    assert_eq!(v, value());
}

#[test]
fn whole_generated_events_survive_encryption() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let shredder = Shredder::new(["gen_ai.input.messages", "gen_ai.tool.call.arguments"]).unwrap();
    for event in TrailGenerator::new(3).sessions(3).generate() {
        let mut v = event.to_value().unwrap();
        shredder.encrypt_fields(&mut v, &keys).unwrap();
        let stored = v.to_string();
        let mut read: Value = serde_json::from_str(&stored).unwrap();
        decrypt_fields(&mut read, &keys).unwrap();
        assert_eq!(Event::from_value(read).unwrap(), event);
    }
}

#[test]
fn forget_erases_fields_deletes_the_key_and_refuses_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let mut v = value();
    shredder().encrypt_fields(&mut v, &keys).unwrap();
    let key_file = keys.key_path("user-0001");
    assert!(key_file.exists());
    keys.forget("user-0001").unwrap();
    assert!(!key_file.exists());
    assert!(keys.is_forgotten("user-0001"));
    assert!(!keys.is_forgotten("user-0002"));
    let mut read = v.clone();
    assert_eq!(decrypt_fields(&mut read, &keys).unwrap(), 2);
    assert_eq!(read["gen_ai.input.messages"], json!({ ERASED_KEY: true }));
    assert!(is_erased(&read["gen_ai.tool.call.arguments"]["email"]));
    assert_eq!(read["gen_ai.tool.name"], json!("send_email"));
    let err = keys.key_for("user-0001").unwrap_err();
    assert_eq!(
        err.to_string(),
        "subject user-0001 was forgotten: refusing to create a new key"
    );
    let mut fresh = value();
    let err = shredder().encrypt_fields(&mut fresh, &keys).unwrap_err();
    assert!(matches!(err, EventError::SubjectForgotten { .. }));
    assert_eq!(fresh, value(), "a failed encryption leaves the value unchanged");
    // The tombstone outlives the process, and holds no subject id in clear.
    let reopened = KeyStore::open(dir.path()).unwrap();
    assert!(reopened.is_forgotten("user-0001"));
    assert!(reopened.key_for("user-0001").is_err());
    let mut read = v.clone();
    decrypt_fields(&mut read, &reopened).unwrap();
    assert!(is_erased(&read["gen_ai.input.messages"]));
    let tombstones = fs::read_to_string(dir.path().join("tombstones")).unwrap();
    assert!(!tombstones.contains("user-0001"));
    keys.forget("user-0001").unwrap(); // twice is fine
}

#[test]
fn tampering_is_detected_naming_subject_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let mut v = value();
    shredder().encrypt_fields(&mut v, &keys).unwrap();
    keys.key_for("user-0002").unwrap();
    // Moved to another field: the path is in the associated data.
    let mut moved = v.clone();
    moved["other.field"] = moved["gen_ai.input.messages"].clone();
    let err = decrypt_fields(&mut moved, &keys).unwrap_err();
    let EventError::Decrypt { field, .. } = &err else {
        panic!("expected a decryption error, got {err}");
    };
    assert_eq!(field, "other.field", "{err}");
    // Relabelled with another subject that has a key.
    let mut relabelled = v.clone();
    relabelled["gen_ai.input.messages"]["subject"] = json!("user-0002");
    let err = decrypt_fields(&mut relabelled, &keys).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decrypt field gen_ai.input.messages for subject user-0002: authentication failed"
    );
    // A flipped ciphertext bit, a bad nonce, an unknown version.
    let mut flipped = v.clone();
    let ct = flipped["gen_ai.input.messages"]["ct"].as_str().unwrap().to_owned();
    let swapped = if ct.starts_with('A') {
        ct.replacen('A', "B", 1)
    } else {
        format!("A{}", &ct[1..])
    };
    flipped["gen_ai.input.messages"]["ct"] = json!(swapped);
    assert!(matches!(
        decrypt_fields(&mut flipped, &keys),
        Err(EventError::Decrypt { .. })
    ));
    let mut bad_nonce = v.clone();
    bad_nonce["gen_ai.input.messages"]["nonce"] = json!("AAAA");
    assert!(matches!(
        decrypt_fields(&mut bad_nonce, &keys),
        Err(EventError::InvalidEnvelope { .. })
    ));
    let mut v2 = v.clone();
    v2["gen_ai.input.messages"][ENVELOPE_KEY] = json!("v9");
    assert!(matches!(
        decrypt_fields(&mut v2, &keys),
        Err(EventError::InvalidEnvelope { .. })
    ));
}

#[test]
fn a_subject_never_seen_by_this_store_is_an_error_not_erased() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let mut v = value();
    shredder().encrypt_fields(&mut v, &keys).unwrap();
    let wrong = KeyStore::open(other.path()).unwrap();
    let err = decrypt_fields(&mut v, &wrong).unwrap_err();
    let EventError::KeyMissing { subject, .. } = &err else {
        panic!("expected a missing key, got {err}");
    };
    assert_eq!(subject, "user-0001", "{err}");
}

#[test]
fn personal_fields_need_a_subject_and_a_free_form_field() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let mut v = value();
    v.as_object_mut().unwrap().remove("subject.id");
    let err = shredder().encrypt_fields(&mut v, &keys).unwrap_err();
    assert_eq!(
        err.to_string(),
        "field gen_ai.input.messages is personal but the event has no string subject.id"
    );
    let mut nothing_personal = json!({"gen_ai.tool.name": "x"});
    assert_eq!(shredder().encrypt_fields(&mut nothing_personal, &keys).unwrap(), 0);
    for path in ["actor.id", "subject.id", "trace_id", "gen_ai.usage.input_tokens"] {
        match Shredder::new([path]) {
            Err(EventError::InvalidRule { .. }) => {}
            other => panic!("{path}: expected an invalid rule, got {other:?}"),
        }
    }
    assert!(Shredder::new(["my.custom.field"]).is_ok());
}

#[test]
fn key_files_are_private_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    let first = keys.key_for("user-0001").unwrap();
    assert_eq!(keys.key_for("user-0001").unwrap(), first);
    assert_ne!(keys.key_for("user-0002").unwrap(), first);
    let path = keys.key_path("user-0001");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let mut bytes = fs::read(&path).unwrap();
    bytes[20] ^= 1;
    fs::write(&path, &bytes).unwrap();
    let reopened = KeyStore::open(dir.path()).unwrap();
    let err = reopened.key_for("user-0001").unwrap_err();
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    fs::write(&path, b"short").unwrap();
    let err = KeyStore::open(dir.path())
        .unwrap()
        .existing_key("user-0001")
        .unwrap_err();
    assert!(matches!(err, EventError::CorruptKeyFile { .. }));
    assert!(matches!(keys.key_for(""), Err(EventError::InvalidSubject { .. })));
}

#[test]
fn open_recovers_from_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    keys.key_for("a").unwrap();
    keys.key_for("b").unwrap();
    keys.forget("c").unwrap();
    let b_path = keys.key_path("b");
    drop(keys);
    // A crash mid-create leaves a temp file.
    let tmp = dir.path().join("deadbeef.key.tmp-0000000000000001");
    fs::write(&tmp, b"partial").unwrap();
    // A crash between the tombstone and the delete: b's tombstone is on disk, its key too.
    let b_hash = b_path.file_stem().unwrap().to_string_lossy().into_owned();
    let tombstones = dir.path().join("tombstones");
    let mut text = fs::read_to_string(&tombstones).unwrap();
    text.push_str(&b_hash);
    text.push('\n');
    // A crash mid-append leaves a torn last line.
    text.push_str("0123");
    fs::write(&tombstones, &text).unwrap();
    let keys = KeyStore::open(dir.path()).unwrap();
    assert!(!tmp.exists());
    assert!(!b_path.exists());
    assert!(keys.is_forgotten("b") && keys.is_forgotten("c") && !keys.is_forgotten("a"));
    assert!(fs::read_to_string(&tombstones)
        .unwrap()
        .ends_with(&format!("{b_hash}\n")));
    keys.forget("d").unwrap();
    assert!(KeyStore::open(dir.path()).unwrap().is_forgotten("d"));
    // Damage before the last line is corruption, reported with its line.
    fs::write(&tombstones, format!("trailkeep-tombstones v1\nnot-hex\n{b_hash}\n")).unwrap();
    let err = KeyStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, EventError::CorruptTombstones { line: 2, .. }), "{err}");
}

#[test]
fn concurrent_key_for_agrees_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let stores: Vec<KeyStore> = (0..4).map(|_| KeyStore::open(dir.path()).unwrap()).collect();
    let keys: Vec<SubjectKey> = std::thread::scope(|scope| {
        let handles: Vec<_> = stores
            .iter()
            .map(|s| scope.spawn(move || s.key_for("shared").unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(keys.windows(2).all(|w| w[0] == w[1]));
}
