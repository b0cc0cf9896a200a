//! The object store seen by the tierer: a small synchronous trait, a local-directory
//! implementation (tests, NFS mounts, a USB disk) and the parsing of `s3://` / `file://` URLs.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// How a put treats an existing object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Fail with [`ObjError::Precondition`] if the key exists.
    IfAbsent,
    /// Fail with [`ObjError::Precondition`] unless the object's ETag is this one.
    IfMatch(String),
}

/// One object as listed or HEAD'ed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the store's prefix.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Entity tag (opaque; used for conditional puts).
    pub etag: String,
}

/// What an object store call can fail with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjError {
    /// No object under that key.
    NotFound,
    /// A conditional put lost: the object exists, or its ETag changed.
    Precondition,
    /// Credentials refused, or the bucket does not exist: retrying will not help.
    Config(String),
    /// Anything else (network, server); retried with backoff.
    Other(String),
}

impl fmt::Display for ObjError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjError::NotFound => write!(f, "object not found"),
            ObjError::Precondition => write!(f, "conditional put failed (the object changed meanwhile)"),
            ObjError::Config(m) | ObjError::Other(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ObjError {}

/// Result of object store calls.
pub type ObjResult<T> = std::result::Result<T, ObjError>;

/// An object store holding keys under one prefix. Every call is synchronous; an
/// implementation may run its own runtime inside.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// A URL-like name for messages, e.g. `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Stores `data` under `key`; returns the new ETag.
    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> ObjResult<String>;
    /// The whole object and its ETag, or None when absent.
    fn get(&self, key: &str) -> ObjResult<Option<(Vec<u8>, String)>>;
    /// Bytes `range` of an object.
    fn get_range(&self, key: &str, range: Range<u64>) -> ObjResult<Vec<u8>>;
    /// Size and ETag, or None when absent.
    fn head(&self, key: &str) -> ObjResult<Option<ObjectInfo>>;
    /// Every object whose key starts with `prefix`, sorted by key.
    fn list(&self, prefix: &str) -> ObjResult<Vec<ObjectInfo>>;
    /// Deletes an object; deleting a missing object succeeds.
    fn delete(&self, key: &str) -> ObjResult<()>;
    /// Uploads a local file. The default reads it into memory and calls `put`.
    fn put_file(&self, key: &str, path: &Path) -> ObjResult<()> {
        let data = fs::read(path).map_err(|e| ObjError::Other(format!("reading {}: {e}", path.display())))?;
        self.put(key, &data, PutMode::Overwrite).map(|_| ())
    }
}

/// An object store in a local directory: `<root>/<key>`. Puts are atomic (temp file and
/// rename); conditional puts are serialised with a lock file in the root.
#[derive(Debug)]
pub struct LocalDirStore {
    root: PathBuf,
}

impl LocalDirStore {
    /// A store rooted at `root` (created if missing).
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn new(root: impl Into<PathBuf>) -> ObjResult<LocalDirStore> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(|e| ObjError::Config(format!("creating {}: {e}", root.display())))?;
        Ok(LocalDirStore { root })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> ObjResult<PathBuf> {
        let bad = key.is_empty()
            || key.starts_with('/')
            || key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
            || key.ends_with(".tmp");
        if bad {
            return Err(ObjError::Other(format!("invalid object key {key:?}")));
        }
        Ok(self.root.join(key))
    }
}

fn etag_of(data: &[u8]) -> String {
    format!("{:08x}-{}", crc32fast::hash(data), data.len())
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> ObjError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ObjError::NotFound
    } else {
        ObjError::Other(format!("{what} {}: {e}", path.display()))
    }
}

impl ObjectStore for LocalDirStore {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> ObjResult<String> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|e| io_err("creating", parent, e))?;
        }
        // Conditional puts compare and swap under an exclusive lock on the root.
        let lock_path = self.root.join(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_err("opening", &lock_path, e))?;
        lock.lock().map_err(|e| io_err("locking", &lock_path, e))?;
        let current = match fs::read(&path) {
            Ok(bytes) => Some(etag_of(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("reading", &path, e)),
        };
        match (&mode, &current) {
            (PutMode::IfAbsent, Some(_)) => return Err(ObjError::Precondition),
            (PutMode::IfMatch(want), Some(have)) if want != have => return Err(ObjError::Precondition),
            (PutMode::IfMatch(_), None) => return Err(ObjError::Precondition),
            _ => {}
        }
        crate::fsutil::write_atomic(&path, data).map_err(|e| ObjError::Other(e.to_string()))?;
        Ok(etag_of(data))
    }

    fn get(&self, key: &str) -> ObjResult<Option<(Vec<u8>, String)>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => {
                let etag = etag_of(&bytes);
                Ok(Some((bytes, etag)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path, e)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> ObjResult<Vec<u8>> {
        let path = self.path(key)?;
        let mut file = File::open(&path).map_err(|e| io_err("opening", &path, e))?;
        let len = range.end.saturating_sub(range.start);
        let mut buf = Vec::with_capacity(len as usize);
        file.seek(SeekFrom::Start(range.start))
            .and_then(|_| file.take(len).read_to_end(&mut buf))
            .map_err(|e| io_err("reading", &path, e))?;
        if buf.len() as u64 != len {
            return Err(ObjError::Other(format!(
                "{} is shorter than byte {}",
                path.display(),
                range.end
            )));
        }
        Ok(buf)
    }

    fn head(&self, key: &str) -> ObjResult<Option<ObjectInfo>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: bytes.len() as u64,
                etag: etag_of(&bytes),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("reading", &path, e)),
        }
    }

    fn list(&self, prefix: &str) -> ObjResult<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("listing", &dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_err("listing", &dir, e))?;
                let path = entry.path();
                let meta = entry.metadata().map_err(|e| io_err("reading", &path, e))?;
                if meta.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let key = rel.to_string_lossy().replace('\\', "/");
                if key == ".lock" || key.ends_with(".tmp") || !key.starts_with(prefix) {
                    continue;
                }
                out.push(ObjectInfo {
                    key,
                    size: meta.len(),
                    etag: String::new(),
                });
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> ObjResult<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io_err("deleting", &path, e)),
            _ => Ok(()),
        }
    }
}
