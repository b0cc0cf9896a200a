//! C2SP tlog-checkpoints carried in signed notes, and the signing key file.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;

use crate::audit::merkle::Hash;
use crate::audit::note::{decode_hash, parse_decimal, sign_note, verify_note, NoteSigner, NoteVerifier};
use crate::audit::{AuditError, Result};

/// Most bytes of a signing key file.
pub const KEY_FILE_BYTES_MAX: u64 = 4096;

/// A tree head: which log, how many leaves, and the RFC 6962 root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity, conventionally the signing key's name.
    pub origin: String,
    /// Number of leaves.
    pub size: u64,
    /// Root hash at `size`.
    pub root: Hash,
}

fn checkpoint_error(line: usize, reason: impl Into<String>) -> AuditError {
    AuditError::Text {
        what: "checkpoint",
        line,
        reason: reason.into(),
    }
}

impl Checkpoint {
    /// Refuses an origin that is empty or holds a control character (a newline would forge
    /// extra lines; DEL and U+0080..=U+009F are refused alike, when signing and parsing).
    fn check_origin(origin: &str) -> Result<()> {
        if origin.is_empty() {
            return Err(checkpoint_error(1, "origin is empty"));
        }
        if origin.chars().any(char::is_control) {
            return Err(checkpoint_error(1, "origin contains a control character"));
        }
        Ok(())
    }

    /// The note text: origin, decimal size, base64 root, each ending in `\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, BASE64.encode(self.root))
    }

    /// The signed note text of this checkpoint.
    ///
    /// # Errors
    /// [`AuditError::Text`] if the origin is empty or holds a control
    /// character (a newline would forge extra lines).
    pub fn sign(&self, signer: &NoteSigner) -> Result<String> {
        Checkpoint::check_origin(&self.origin)?;
        sign_note(&self.body(), signer)
    }

    /// Verifies the note's signature by `verifier`, then parses the body
    /// strictly: exactly three lines, an origin without control characters
    /// (as [`Checkpoint::sign`] demands), canonical decimal size, canonical
    /// base64 32-byte root. Extension lines are rejected: trailkeep never
    /// writes them and the spec advises against them.
    ///
    /// The caller still compares `origin` with the log it expects.
    ///
    /// # Errors
    /// Note errors ([`AuditError::Text`], [`AuditError::BadSignature`],
    /// [`AuditError::NoSignature`]) or [`AuditError::Text`] for the body.
    pub fn parse_and_verify(text: &str, verifier: &NoteVerifier) -> Result<Checkpoint> {
        let body = verify_note(text, verifier)?;
        let lines: Vec<&str> = body.split_terminator('\n').collect();
        match lines.len() {
            0..=2 => {
                return Err(checkpoint_error(
                    lines.len() + 1,
                    "missing line: need origin, size and root",
                ))
            }
            3 => {}
            _ => return Err(checkpoint_error(4, "extension lines are not accepted")),
        }
        let origin = lines[0];
        Checkpoint::check_origin(origin)?;
        let size =
            parse_decimal(lines[1]).ok_or_else(|| checkpoint_error(2, "tree size is not a canonical decimal"))?;
        let root =
            decode_hash(lines[2]).ok_or_else(|| checkpoint_error(3, "root is not a canonical base64 sha-256 hash"))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
        })
    }
}

/// The log's signing key on disk: one line, `PRIVATE+KEY+...`, mode 0600.
#[derive(Debug)]
pub struct SigningKeyFile {
    path: PathBuf,
    signer: NoteSigner,
}

impl SigningKeyFile {
    /// Loads the key at `path`, or creates one named `key_name` there if the
    /// file does not exist. Creation is atomic: a crash leaves either no key
    /// file or a complete one.
    ///
    /// # Errors
    /// [`AuditError::KeyFile`] if the file is malformed or names another
    /// key; [`AuditError::Io`] on file-system failures.
    pub fn load_or_create(path: impl AsRef<Path>, key_name: &str) -> Result<SigningKeyFile> {
        let path = path.as_ref();
        match fs::symlink_metadata(path) {
            Ok(_) => {
                let file = SigningKeyFile::load(path)?;
                if file.signer.name() != key_name {
                    return Err(key_file_error(
                        path,
                        format!("holds key {:?}, expected {key_name:?}", file.signer.name()),
                    ));
                }
                Ok(file)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SigningKeyFile::create(path, key_name),
            Err(e) => Err(AuditError::io(path, e)),
        }
    }

    /// Loads an existing key file.
    ///
    /// # Errors
    /// [`AuditError::KeyFile`] if the file is too large or malformed;
    /// [`AuditError::Io`] if it cannot be read.
    pub fn load(path: impl AsRef<Path>) -> Result<SigningKeyFile> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| AuditError::io(path, e))?;
        let meta = file.metadata().map_err(|e| AuditError::io(path, e))?;
        if meta.len() > KEY_FILE_BYTES_MAX {
            return Err(key_file_error(
                path,
                format!("is {} bytes, above {KEY_FILE_BYTES_MAX}", meta.len()),
            ));
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "signing key file is readable by group or others; chmod 600 it");
        }
        let mut text = String::new();
        file.take(KEY_FILE_BYTES_MAX)
            .read_to_string(&mut text)
            .map_err(|e| key_file_error(path, format!("is not utf-8 text: {e}")))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let signer = NoteSigner::parse(line).map_err(|e| key_file_error(path, e.to_string()))?;
        Ok(SigningKeyFile {
            path: path.to_path_buf(),
            signer,
        })
    }

    fn create(path: &Path, key_name: &str) -> Result<SigningKeyFile> {
        let signer = NoteSigner::generate(key_name)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| key_file_error(path, "has no file name".into()))?;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let temp = dir.join(format!(
            ".{}.tmp-{}-{n}",
            file_name.to_string_lossy(),
            std::process::id()
        ));
        write_private(&temp, &signer.to_private_key_text())?;
        // A hard link, not a rename: when another process created the key meanwhile, its
        // key stays (checkpoints it signed must keep verifying) and is the one used.
        let linked = fs::hard_link(&temp, path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return SigningKeyFile::load_or_create(path, key_name);
            }
            Err(e) => return Err(AuditError::io(path, e)),
        }
        // The rename is durable only once the directory entry is.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| AuditError::io(dir, e))?;
        tracing::info!(path = %path.display(), key = %signer.verifier().to_vkey(), "created signing key");
        Ok(SigningKeyFile {
            path: path.to_path_buf(),
            signer,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key.
    pub fn signer(&self) -> &NoteSigner {
        &self.signer
    }

    /// The key, consuming the handle.
    pub fn into_signer(self) -> NoteSigner {
        self.signer
    }
}

/// Writes `text` and a newline to a new file created with mode 0600 (never
/// briefly wider), then fsyncs it.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| AuditError::io(path, e))?;
    let written = file
        .write_all(text.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all());
    written.map_err(|e| {
        let _ = fs::remove_file(path);
        AuditError::io(path, e)
    })
}

fn key_file_error(path: &Path, reason: String) -> AuditError {
    AuditError::KeyFile {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::merkle::leaf_hash;

    fn sample() -> (NoteSigner, Checkpoint) {
        let signer = NoteSigner::from_seed("example.com/log", [7; 32]).unwrap();
        let checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: 12345,
            root: leaf_hash(b"root"),
        };
        (signer, checkpoint)
    }

    #[test]
    fn round_trip() {
        let (signer, cp) = sample();
        let text = cp.sign(&signer).unwrap();
        assert!(text.starts_with("example.com/log\n12345\n"));
        assert!(text.contains("\n\n\u{2014} example.com/log "));
        assert_eq!(Checkpoint::parse_and_verify(&text, &signer.verifier()).unwrap(), cp);
    }

    #[test]
    fn an_origin_sign_refuses_does_not_parse_either() {
        let (signer, cp) = sample();
        for origin in ["log\u{7f}", "log\u{85}x", "log\u{9f}"] {
            let odd = Checkpoint {
                origin: origin.into(),
                ..cp.clone()
            };
            assert!(odd.sign(&signer).is_err(), "{origin:?}");
            // The same body signed as a plain note (the note rules let these through).
            let text = sign_note(&odd.body(), &signer).unwrap();
            let err = Checkpoint::parse_and_verify(&text, &signer.verifier()).unwrap_err();
            assert!(err.to_string().contains("control character"), "{origin:?}: {err}");
        }
    }

    #[test]
    fn altered_size_fails() {
        let (signer, cp) = sample();
        let text = cp.sign(&signer).unwrap().replace("\n12345\n", "\n12346\n");
        let err = Checkpoint::parse_and_verify(&text, &signer.verifier()).unwrap_err();
        assert!(matches!(err, AuditError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn forged_signature_fails() {
        let (signer, cp) = sample();
        let text = cp.sign(&signer).unwrap();
        let (head, sig) = text.rsplit_once(' ').unwrap();
        let mut blob = BASE64.decode(sig.trim_end()).unwrap();
        blob[10] ^= 1;
        let forged = format!("{head} {}\n", BASE64.encode(blob));
        let err = Checkpoint::parse_and_verify(&forged, &signer.verifier()).unwrap_err();
        assert!(matches!(err, AuditError::BadSignature { .. }), "{err}");
    }

    #[test]
    fn wrong_key_or_key_id_is_no_signature() {
        let (signer, cp) = sample();
        let text = cp.sign(&signer).unwrap();
        let other = NoteSigner::from_seed("example.com/log", [8; 32]).unwrap();
        let err = Checkpoint::parse_and_verify(&text, &other.verifier()).unwrap_err();
        assert!(matches!(err, AuditError::NoSignature { .. }), "{err}");

        let (head, sig) = text.rsplit_once(' ').unwrap();
        let mut blob = BASE64.decode(sig.trim_end()).unwrap();
        blob[0] ^= 1;
        let wrong_id = format!("{head} {}\n", BASE64.encode(blob));
        let err = Checkpoint::parse_and_verify(&wrong_id, &signer.verifier()).unwrap_err();
        assert!(matches!(err, AuditError::NoSignature { .. }), "{err}");
    }

    /// Signs arbitrary body text, so the body checks run after a valid signature.
    fn signed_body(body: &str) -> (NoteVerifier, String) {
        let (signer, _) = sample();
        (signer.verifier(), sign_note(body, &signer).unwrap())
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let root = BASE64.encode([1u8; 32]);
        let cases = [
            "log\n12\n".to_string(),
            format!("log\n12\n{root}\next\n"),
            format!("log\n012\n{root}\n"),
            format!("log\n+12\n{root}\n"),
            format!("log\n18446744073709551616\n{root}\n"),
            format!("log\n12\n{}\n", BASE64.encode([1u8; 31])),
            format!("log\n12\n{}\n", &root[..root.len() - 1]),
            format!("\n12\n{root}\n"),
        ];
        for body in cases {
            let (verifier, text) = signed_body(&body);
            let err = Checkpoint::parse_and_verify(&text, &verifier).unwrap_err();
            let AuditError::Text { what, .. } = &err else {
                panic!("{body:?}: expected a text error, got {err}");
            };
            assert_eq!(*what, "checkpoint", "{body:?}: {err}");
        }
    }

    #[test]
    fn unknown_signatures_are_ignored() {
        let (signer, cp) = sample();
        let witness = NoteSigner::from_seed("witness.example", [9; 32]).unwrap();
        let mut text = cp.sign(&signer).unwrap();
        let other = sign_note(&cp.body(), &witness).unwrap();
        text.push_str(other.rsplit_once("\n\n").unwrap().1);
        assert_eq!(Checkpoint::parse_and_verify(&text, &signer.verifier()).unwrap(), cp);
        assert_eq!(Checkpoint::parse_and_verify(&text, &witness.verifier()).unwrap(), cp);
    }

    #[test]
    fn origin_with_newline_is_refused() {
        let (signer, mut cp) = sample();
        cp.origin = "log\n99".into();
        assert!(matches!(cp.sign(&signer), Err(AuditError::Text { .. })));
    }

    #[test]
    fn key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        // Concurrent first uses (threads here, processes alike) agree on one key.
        let keys: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| SigningKeyFile::load_or_create(&path, "example.com/log").unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().signer().to_private_key_text())
                .collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]), "two first uses made different keys");
        let created = SigningKeyFile::load_or_create(&path, "example.com/log").unwrap();
        assert_eq!(created.signer().to_private_key_text(), keys[0]);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let loaded = SigningKeyFile::load_or_create(&path, "example.com/log").unwrap();
        assert_eq!(created.signer().verifier(), loaded.signer().verifier());
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "temp file left behind");
        let err = SigningKeyFile::load_or_create(&path, "other").unwrap_err();
        assert!(matches!(err, AuditError::KeyFile { .. }), "{err}");
    }

    #[test]
    fn malformed_key_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.key");
        fs::write(&path, "PRIVATE+KEY+log+00000000+AAAA\n").unwrap();
        let err = SigningKeyFile::load(&path).unwrap_err();
        assert!(matches!(err, AuditError::KeyFile { .. }), "{err}");
        assert!(err.to_string().contains("bad.key"), "{err}");
        fs::write(&path, [0xff, 0xfe]).unwrap();
        assert!(matches!(SigningKeyFile::load(&path), Err(AuditError::KeyFile { .. })));
    }
}
