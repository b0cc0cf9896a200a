//! The per-topic tier manifest (see docs/tier-format.md): which sealed segments are in the
//! bucket, in which state. Local copy: `topics/<t>/tier/manifest.json`, replaced atomically
//! under an flock; remote copy: `<prefix>/topics/<t>/manifest.json`, replaced with a
//! conditional put.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::tier::object::{ObjError, ObjectStore, PutMode};
use crate::tier::tier_error;
use crate::{Error, Offset, Result};

/// The `format` field of every manifest this version writes.
pub const MANIFEST_FORMAT: &str = "trailkeep-tier-manifest-1";
/// Sub-directory of a topic holding its tier state.
pub const TIER_DIR: &str = "tier";
const MANIFEST_FILE: &str = "manifest.json";
const LOCK_FILE: &str = "manifest.lock";
/// Size of the chunks an evicted `.log` is read in (see `log_chunk_crc32`): 1 MiB.
pub const CHUNK_BYTES: u64 = 1 << 20;

/// Where a sealed segment is in the tiering state machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentState {
    /// Intent recorded; objects may be partly written. Local files are the only copy.
    Uploading,
    /// Every object verified (size and CRC-32) in the bucket; local files still present.
    Uploaded,
    /// Local files deleted (or being deleted); reads go through the cache.
    Evicted,
    /// Past total retention: local files gone, remote objects being deleted.
    Deleting,
}

/// One file of a segment's upload unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name in the topic directory, e.g. `00000000000000000000.log`.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// CRC-32 of the content.
    pub crc32: u32,
}

/// One segment in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// Base offset.
    pub base: u64,
    /// Offset after its last record.
    pub end_offset: u64,
    /// Append time of its first batch (µs).
    pub first_timestamp_us: u64,
    /// Append time of its last batch (µs).
    pub last_timestamp_us: u64,
    /// State.
    pub state: SegmentState,
    /// The files of the unit: the `.log` first, then indexes and sidecars.
    pub files: Vec<FileEntry>,
    /// When the upload was verified (µs), once it was.
    #[serde(default)]
    pub uploaded_at_us: Option<u64>,
    /// CRC-32 of each [`CHUNK_BYTES`] chunk of the `.log` (the last may be shorter), so
    /// that reads can fetch and check single chunks. Empty in manifests written before
    /// ranged reads: such segments are fetched whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_chunk_crc32: Vec<u32>,
}

impl SegmentEntry {
    /// Size of the `.log` file.
    pub fn log_bytes(&self) -> u64 {
        self.files.first().map_or(0, |f| f.bytes)
    }
    /// Size of every file of the unit.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
    /// True when the bucket holds a verified copy.
    pub fn in_bucket(&self) -> bool {
        match self.state {
            SegmentState::Uploaded | SegmentState::Evicted => true,
            SegmentState::Uploading | SegmentState::Deleting => false,
        }
    }
}

/// A topic's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// Identifies the store that owns the bucket prefix.
    pub store_id: String,
    /// Topic name.
    pub topic: String,
    /// +1 on every change; the remote copy never gets ahead of the local one.
    pub generation: u64,
    /// The topic's `topic.json`, for restore.
    pub topic_config: serde_json::Value,
    /// Segments, by base offset.
    pub segments: Vec<SegmentEntry>,
}

impl Manifest {
    /// The entry for `base`.
    pub fn get(&self, base: u64) -> Option<&SegmentEntry> {
        self.segments.iter().find(|s| s.base == base)
    }
    /// The entry for `base`, mutable.
    pub fn get_mut(&mut self, base: u64) -> Option<&mut SegmentEntry> {
        self.segments.iter_mut().find(|s| s.base == base)
    }

    /// Parses and checks a manifest; `origin` names it in errors.
    pub fn decode(bytes: &[u8], origin: &Path) -> Result<Manifest> {
        let bad = |reason: String| Error::Corrupt {
            file: origin.to_path_buf(),
            byte_pos: 0,
            reason,
        };
        let m: Manifest =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("tier manifest does not parse: {e}")))?;
        if m.format != MANIFEST_FORMAT {
            return Err(bad(format!("unknown tier manifest format {:?}", m.format)));
        }
        crate::topic::validate_topic_name(&m.topic)?;
        let sorted = m.segments.windows(2).all(|w| w[0].base < w[1].base);
        let sane = m.segments.iter().all(|s| {
            s.end_offset >= s.base
                && s.files
                    .first()
                    .is_some_and(|f| f.name == crate::segment::file_name(Offset(s.base), "log"))
                && s.files.iter().all(|f| valid_file_name(&f.name, s.base))
        });
        if !sorted || !sane {
            return Err(bad(
                "tier manifest lists segments out of order or with bad file names".into()
            ));
        }
        Ok(m)
    }

    /// The JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// A unit file name: the segment's 20-digit base, a dot, an extension of `[a-z0-9_.-]`.
pub fn valid_file_name(name: &str, base: u64) -> bool {
    let stem = format!("{base:020}.");
    name.strip_prefix(&stem).is_some_and(|ext| {
        !ext.is_empty()
            && !ext.ends_with(".tmp")
            && ext
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_.-".contains(&b))
    })
}

/// `topics/<t>/tier/manifest.json`.
pub fn manifest_path(topic_dir: &Path) -> PathBuf {
    topic_dir.join(TIER_DIR).join(MANIFEST_FILE)
}

/// Key of a topic's remote manifest.
pub fn remote_manifest_key(topic: &str) -> String {
    format!("topics/{topic}/manifest.json")
}

/// Key of one file of a segment's unit.
pub fn remote_file_key(topic: &str, base: u64, name: &str) -> String {
    format!("topics/{topic}/segments/{base:020}/{name}")
}

/// The local manifest, or None when the topic was never tiered.
pub fn load(topic_dir: &Path) -> Result<Option<Manifest>> {
    let path = manifest_path(topic_dir);
    match std::fs::read(&path) {
        Ok(bytes) => Manifest::decode(&bytes, &path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(|| format!("reading {}", path.display())),
    }
}

type Cached = (SystemTime, u64, Arc<Manifest>);

/// The local manifest through an in-process cache keyed by (mtime, size): cheap enough
/// for every `list_segments`.
pub fn load_cached(topic_dir: &Path) -> Result<Option<Arc<Manifest>>> {
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Cached>>> = OnceLock::new();
    let path = manifest_path(topic_dir);
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("reading {}", path.display())),
    };
    let stamp = (meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), meta.len());
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    if let Some((t, len, m)) = cache.lock().get(&path) {
        if (*t, *len) == stamp {
            return Ok(Some(Arc::clone(m)));
        }
    }
    let Some(m) = load(topic_dir)? else { return Ok(None) };
    let m = Arc::new(m);
    cache.lock().insert(path, (stamp.0, stamp.1, Arc::clone(&m)));
    Ok(Some(m))
}

/// Read-modify-write of the local manifest under `manifest.lock` (other processes too).
/// With `create` = Some((store_id, topic_config)), a missing manifest starts empty;
/// otherwise a missing manifest makes this return Ok(None) without calling `f`.
/// The file is rewritten (generation + 1) only when `f` changed something.
pub fn update<R>(
    topic_dir: &Path,
    create: Option<(&str, serde_json::Value)>,
    f: impl FnOnce(&mut Manifest) -> Result<R>,
) -> Result<Option<R>> {
    let tier_dir = topic_dir.join(TIER_DIR);
    std::fs::create_dir_all(&tier_dir).context(|| format!("creating {}", tier_dir.display()))?;
    let lock_path = tier_dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .context(|| format!("opening {}", lock_path.display()))?;
    lock.lock().context(|| format!("locking {}", lock_path.display()))?;
    let topic = topic_dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let mut manifest = match (load(topic_dir)?, create) {
        (Some(m), _) => m,
        (None, Some((store_id, topic_config))) => Manifest {
            format: MANIFEST_FORMAT.into(),
            store_id: store_id.to_owned(),
            topic,
            generation: 0,
            topic_config,
            segments: Vec::new(),
        },
        (None, None) => return Ok(None),
    };
    let before = manifest.clone();
    let result = f(&mut manifest)?;
    if manifest != before {
        manifest.segments.sort_by_key(|s| s.base);
        manifest.generation = before.generation + 1;
        crate::fsutil::write_atomic(&manifest_path(topic_dir), &manifest.encode())?;
    }
    Ok(Some(result))
}

/// Mirrors `local` to the bucket with a conditional put. Refuses when the remote copy
/// belongs to another store or is ahead of the local one (two stores on one prefix).
pub fn push(store: &dyn ObjectStore, local: &Manifest) -> Result<()> {
    let key = remote_manifest_key(&local.topic);
    for _ in 0..5 {
        let current = store
            .get(&key)
            .map_err(|e| tier_error(store, &key, "reading the manifest", e))?;
        let mode = match current {
            None => PutMode::IfAbsent,
            Some((bytes, etag)) => {
                let remote = Manifest::decode(&bytes, Path::new(&format!("{}/{key}", store.describe())))?;
                if remote.store_id != local.store_id {
                    return Err(conflict(
                        store,
                        &key,
                        format!(
                            "the prefix belongs to store {} (this store is {}); point this store at another prefix",
                            remote.store_id, local.store_id
                        ),
                    ));
                }
                if remote.generation > local.generation {
                    return Err(conflict(store, &key, format!(
                        "the remote manifest (generation {}) is ahead of the local one ({}): another process or a restored copy writes this prefix",
                        remote.generation, local.generation
                    )));
                }
                if remote.generation == local.generation && remote == *local {
                    return Ok(());
                }
                PutMode::IfMatch(etag)
            }
        };
        match store.put(&key, &local.encode(), mode) {
            Ok(_) => return Ok(()),
            Err(ObjError::Precondition) => continue,
            Err(e) => return Err(tier_error(store, &key, "writing the manifest", e)),
        }
    }
    Err(conflict(
        store,
        &key,
        "the manifest kept changing under this store's conditional puts".into(),
    ))
}

fn conflict(store: &dyn ObjectStore, key: &str, reason: String) -> Error {
    tier_error(store, key, "mirroring the manifest", ObjError::Config(reason))
}
