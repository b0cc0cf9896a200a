//! A crash-safe directory of per-subject encryption keys, with a tombstone list.
//!
//! Layout of the directory:
//! - `<sha256(subject) hex>.key`: 44 bytes, `TKKEY v1` magic (8 bytes) + the 32-byte key +
//!   the first 4 bytes of SHA-256(magic + key) as a checksum. Mode 0600.
//! - `tombstones`: the text line `trailkeep-tombstones v1`, then one line per forgotten
//!   subject: the 64 lowercase hex digits of SHA-256(subject).
//! - `*.tmp-*`: a key being written; removed by [`KeyStore::open`].
//!
//! File names and tombstones hold hashes, never the subject id itself, so the store does
//! not keep the personal identifier it exists to forget.
//!
//! Crash safety: a key is written to a fresh temp file, fsynced, then hard-linked to its
//! final name (a link never replaces an existing file, so two writers racing for one
//! subject agree on the first key) and the directory is fsynced. `forget` appends the
//! tombstone and fsyncs it *before* deleting the key, so a crash in between leaves a
//! tombstoned key that the next `open` deletes.

use super::{EventError, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// Length of a subject key.
pub const KEY_BYTES: usize = 32;
/// Longest subject id accepted.
pub const SUBJECT_BYTES_MAX: usize = 1024;

const KEY_MAGIC: &[u8; 8] = b"TKKEY v1";
const KEY_FILE_BYTES: usize = KEY_MAGIC.len() + KEY_BYTES + 4;
const TOMBSTONES_FILE: &str = "tombstones";
const TOMBSTONES_HEADER: &str = "trailkeep-tombstones v1";
const TMP_MARKER: &str = ".tmp-";

type SubjectHash = [u8; 32];

/// A subject's 32-byte ChaCha20-Poly1305 key. `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct SubjectKey([u8; KEY_BYTES]);

impl SubjectKey {
    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_BYTES] {
        &self.0
    }
}

impl std::fmt::Debug for SubjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SubjectKey(..)")
    }
}

#[derive(Default)]
struct Inner {
    cache: HashMap<SubjectHash, SubjectKey>,
    forgotten: HashSet<SubjectHash>,
}

/// Per-subject keys in one directory. Safe to share between threads. Keys are cached in
/// memory after first use; a `KeyStore` in another process sees a `forget` made here only
/// after it is reopened.
pub struct KeyStore {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// Opens (creating if needed) the key store in `dir`. Recovers from a crash: removes
    /// half-written temp files, cuts a torn last tombstone line, and deletes keys whose
    /// tombstone is already written.
    ///
    /// # Errors
    /// [`EventError::Io`] naming the file; [`EventError::CorruptTombstones`] when the
    /// tombstone list is damaged before its last line.
    pub fn open(dir: impl AsRef<Path>) -> Result<KeyStore> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.exists() {
            fs::create_dir_all(&dir).map_err(|e| EventError::io("create directory", &dir, e))?;
            restrict_dir(&dir)?;
        }
        let store = KeyStore {
            dir,
            inner: Mutex::new(Inner::default()),
        };
        store.remove_temp_files()?;
        let forgotten = store.load_tombstones()?;
        let mut deleted_any = false;
        for hash in &forgotten {
            let path = store.path_of(hash);
            match fs::remove_file(&path) {
                Ok(()) => deleted_any = true,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(EventError::io("delete forgotten key", path, e)),
            }
        }
        if deleted_any {
            sync_dir(&store.dir)?;
        }
        store.lock().forgotten = forgotten;
        Ok(store)
    }

    /// The directory of this store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key file of `subject` (whether or not it exists).
    pub fn key_path(&self, subject: &str) -> PathBuf {
        self.path_of(&subject_hash(subject))
    }

    /// The subject's key, created (durably) if it has none yet.
    ///
    /// # Errors
    /// [`EventError::SubjectForgotten`] if the subject was forgotten: it never silently
    /// gets a fresh key. [`EventError::InvalidSubject`], [`EventError::Io`],
    /// [`EventError::CorruptKeyFile`].
    pub fn key_for(&self, subject: &str) -> Result<SubjectKey> {
        check_subject(subject)?;
        let hash = subject_hash(subject);
        let mut inner = self.lock();
        if inner.forgotten.contains(&hash) {
            return Err(EventError::SubjectForgotten {
                subject: subject.into(),
            });
        }
        if let Some(key) = inner.cache.get(&hash) {
            return Ok(key.clone());
        }
        let key = match self.read_key(&hash)? {
            Some(key) => key,
            None => self.create_key(&hash)?,
        };
        inner.cache.insert(hash, key.clone());
        Ok(key)
    }

    /// The subject's key if it has one; never creates a key.
    ///
    /// # Errors
    /// [`EventError::InvalidSubject`], [`EventError::Io`], [`EventError::CorruptKeyFile`].
    pub fn existing_key(&self, subject: &str) -> Result<Option<SubjectKey>> {
        check_subject(subject)?;
        let hash = subject_hash(subject);
        let mut inner = self.lock();
        if inner.forgotten.contains(&hash) {
            return Ok(None);
        }
        if let Some(key) = inner.cache.get(&hash) {
            return Ok(Some(key.clone()));
        }
        let key = self.read_key(&hash)?;
        if let Some(key) = &key {
            inner.cache.insert(hash, key.clone());
        }
        Ok(key)
    }

    /// Forgets the subject: records a tombstone (fsynced), then deletes the key file and
    /// fsyncs the directory. Everything encrypted for the subject becomes unreadable for
    /// good. Forgetting twice, or a subject that never had a key, is fine.
    ///
    /// # Errors
    /// [`EventError::InvalidSubject`], [`EventError::Io`] naming the file.
    pub fn forget(&self, subject: &str) -> Result<()> {
        check_subject(subject)?;
        let hash = subject_hash(subject);
        let mut inner = self.lock();
        if !inner.forgotten.contains(&hash) {
            self.append_tombstone(&hash)?;
            inner.forgotten.insert(hash);
        }
        inner.cache.remove(&hash);
        let path = self.path_of(&hash);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EventError::io("delete key", path, e)),
        }
    }

    /// Whether the subject was forgotten.
    pub fn is_forgotten(&self, subject: &str) -> bool {
        self.lock().forgotten.contains(&subject_hash(subject))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated: each method
        // changes the in-memory sets only after the disk operation succeeded.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn path_of(&self, hash: &SubjectHash) -> PathBuf {
        self.dir.join(format!("{}.key", hex(hash)))
    }

    fn read_key(&self, hash: &SubjectHash) -> Result<Option<SubjectKey>> {
        let path = self.path_of(hash);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(EventError::io("read key", path, e)),
        };
        decode_key(&bytes)
            .map(Some)
            .map_err(|detail| EventError::CorruptKeyFile { path, detail })
    }

    fn create_key(&self, hash: &SubjectHash) -> Result<SubjectKey> {
        let mut key = [0u8; KEY_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut key);
        let final_path = self.path_of(hash);
        let tmp_path = self.dir.join(format!(
            "{}.key{TMP_MARKER}{:016x}",
            hex(hash),
            rand::rngs::OsRng.next_u64()
        ));
        let mut file = create_private(&tmp_path)?;
        file.write_all(&encode_key(&key))
            .and_then(|()| file.sync_all())
            .map_err(|e| EventError::io("write key", &tmp_path, e))?;
        drop(file);
        let linked = fs::hard_link(&tmp_path, &final_path);
        fs::remove_file(&tmp_path).map_err(|e| EventError::io("delete", &tmp_path, e))?;
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                // Another process created the key first; theirs is the key.
                return self.read_key(hash)?.ok_or_else(|| EventError::CorruptKeyFile {
                    path: final_path,
                    detail: "vanished while being read".into(),
                });
            }
            Err(e) => return Err(EventError::io("link key", &final_path, e)),
        }
        sync_dir(&self.dir)?;
        Ok(SubjectKey(key))
    }

    fn remove_temp_files(&self) -> Result<()> {
        let entries = fs::read_dir(&self.dir).map_err(|e| EventError::io("list", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| EventError::io("list", &self.dir, e))?;
            if entry.file_name().to_string_lossy().contains(TMP_MARKER) {
                let path = entry.path();
                fs::remove_file(&path).map_err(|e| EventError::io("delete", path, e))?;
            }
        }
        Ok(())
    }

    fn load_tombstones(&self) -> Result<HashSet<SubjectHash>> {
        let path = self.dir.join(TOMBSTONES_FILE);
        let text = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(EventError::io("read", path, e)),
        };
        // A crash during an append can leave a torn last line; that forget was never
        // acknowledged (its key still exists), so the line is cut off.
        let complete = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < text.len() {
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| EventError::io("open", &path, e))?;
            file.set_len(complete as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| EventError::io("truncate torn tail of", &path, e))?;
        }
        let corrupt = |line: usize, detail: &str| EventError::CorruptTombstones {
            path: path.clone(),
            line,
            detail: detail.into(),
        };
        let text = std::str::from_utf8(&text[..complete]).map_err(|_| corrupt(0, "not utf-8"))?;
        let mut lines = text.lines();
        if complete > 0 && lines.next() != Some(TOMBSTONES_HEADER) {
            return Err(corrupt(1, "missing header line"));
        }
        let mut forgotten = HashSet::new();
        for (i, line) in lines.enumerate() {
            let hash = unhex(line).ok_or_else(|| corrupt(i + 2, "expected 64 hex digits"))?;
            forgotten.insert(hash);
        }
        Ok(forgotten)
    }

    fn append_tombstone(&self, hash: &SubjectHash) -> Result<()> {
        let path = self.dir.join(TOMBSTONES_FILE);
        let (mut file, created) = match OpenOptions::new().append(true).open(&path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == ErrorKind::NotFound => (create_private(&path)?, true),
            Err(e) => return Err(EventError::io("open", path, e)),
        };
        let mut line = String::new();
        let is_empty = file.metadata().map(|m| m.len() == 0).unwrap_or(created);
        if is_empty {
            line.push_str(TOMBSTONES_HEADER);
            line.push('\n');
        }
        line.push_str(&hex(hash));
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| EventError::io("append tombstone to", &path, e))?;
        if created {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

fn check_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.len() > SUBJECT_BYTES_MAX {
        return Err(EventError::InvalidSubject {
            subject: subject.chars().take(64).collect(),
            detail: format!("must be 1 to {SUBJECT_BYTES_MAX} bytes"),
        });
    }
    Ok(())
}

fn subject_hash(subject: &str) -> SubjectHash {
    Sha256::digest(subject.as_bytes()).into()
}

fn encode_key(key: &[u8; KEY_BYTES]) -> Vec<u8> {
    let mut out = Vec::with_capacity(KEY_FILE_BYTES);
    out.extend_from_slice(KEY_MAGIC);
    out.extend_from_slice(key);
    let check = Sha256::digest(&out);
    out.extend_from_slice(&check[..4]);
    out
}

fn decode_key(bytes: &[u8]) -> std::result::Result<SubjectKey, String> {
    if bytes.len() != KEY_FILE_BYTES {
        return Err(format!("{} bytes, expected {KEY_FILE_BYTES}", bytes.len()));
    }
    if &bytes[..KEY_MAGIC.len()] != KEY_MAGIC {
        return Err("bad magic".into());
    }
    let (body, check) = bytes.split_at(KEY_MAGIC.len() + KEY_BYTES);
    if Sha256::digest(body)[..4] != *check {
        return Err("checksum mismatch".into());
    }
    let mut key = [0u8; KEY_BYTES];
    key.copy_from_slice(&body[KEY_MAGIC.len()..]);
    Ok(SubjectKey(key))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<SubjectHash> {
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        if !pair.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

fn create_private(path: &Path) -> Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path).map_err(|e| EventError::io("create", path, e))
}

fn restrict_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| EventError::io("set permissions of", dir, e))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| EventError::io("fsync directory", dir, e))?;
    }
    Ok(())
}
