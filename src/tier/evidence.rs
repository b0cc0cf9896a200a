//! A topic's tamper evidence in the bucket: `checkpoints.log`, `merkle/merkle.meta`,
//! `merkle/merkle.tree`, `start.offset` and the store's `store.id` (it names every
//! checkpoint's origin). See docs/tier-format.md, "Tamper evidence".
//!
//! Each file is cut into parts of [`PART_BYTES`]; a part's key names its number, size
//! and CRC-32, so an unchanged part is never uploaded twice (the tree and the checkpoint
//! log only grow). `evidence/index.json`, written last, lists the parts of one
//! consistent copy; parts no index lists are deleted after it. The copy is taken in
//! this order: `checkpoints.log`, then `merkle.meta`, then `merkle.tree`; a checkpoint is
//! appended only after the tree and its meta were synced, and the tree only grows, so
//! the copied tree always holds every copied checkpoint's leaves.

use std::collections::HashSet;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::IoContext;
use crate::segment::START_FILE;
use crate::store::STORE_ID_FILE;
use crate::tier::manifest::{self, FileEntry, TIER_DIR};
use crate::tier::object::{ObjError, ObjectStore, PutMode};
use crate::tier::{cache, tier_error};
use crate::topic::evidence::{CHECKPOINTS_FILE, MERKLE_DIR};
use crate::{Error, Result};

/// The `format` field of `evidence/index.json`.
pub const EVIDENCE_FORMAT: &str = "trailkeep-tier-evidence-1";
/// Size of one part object.
pub const PART_BYTES: u64 = 8 << 20;
const TREE: &str = "merkle/merkle.tree";
const META: &str = "merkle/merkle.meta";
/// Copy order: checkpoints before the tree (see the module docs).
const SMALL_FILES: [&str; 4] = [CHECKPOINTS_FILE, META, START_FILE, STORE_ID_FILE];
const LOCAL_COPY: &str = "evidence.json";

/// One part of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Part {
    /// Key under `topics/<t>/evidence/parts/`.
    pub key: String,
    pub bytes: u64,
    pub crc32: u32,
}

/// One evidence file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EvidenceFile {
    /// Path relative to the topic directory (`store.id`: the store directory).
    pub name: String,
    pub bytes: u64,
    pub crc32: u32,
    pub parts: Vec<Part>,
}

/// `topics/<t>/evidence/index.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EvidenceIndex {
    pub format: String,
    pub store_id: String,
    pub taken_at_us: u64,
    pub files: Vec<EvidenceFile>,
}

fn index_key(topic: &str) -> String {
    format!("topics/{topic}/evidence/index.json")
}

fn part_key(topic: &str, key: &str) -> String {
    format!("topics/{topic}/evidence/parts/{key}")
}

fn local_path(topic_dir: &Path, name: &str) -> PathBuf {
    if name == STORE_ID_FILE {
        topic_dir
            .parent()
            .and_then(Path::parent)
            .unwrap_or(topic_dir)
            .join(name)
    } else {
        topic_dir.join(name)
    }
}

fn load_local_copy(topic_dir: &Path) -> Option<EvidenceIndex> {
    let bytes = std::fs::read(topic_dir.join(TIER_DIR).join(LOCAL_COPY)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Reads a whole file into parts: (the file's entry, each part's bytes).
fn cut(name: &str, bytes: &[u8]) -> (EvidenceFile, Vec<Vec<u8>>) {
    let basename = name.rsplit('/').next().unwrap_or(name);
    let mut parts = Vec::new();
    let mut data = Vec::new();
    for (i, chunk) in bytes.chunks(PART_BYTES as usize).enumerate() {
        let crc32 = crc32fast::hash(chunk);
        let len = chunk.len() as u64;
        parts.push(Part {
            key: format!("{basename}.{i:06}-{len}-{crc32:08x}"),
            bytes: len,
            crc32,
        });
        data.push(chunk.to_vec());
    }
    let file = EvidenceFile {
        name: name.to_owned(),
        bytes: bytes.len() as u64,
        crc32: crc32fast::hash(bytes),
        parts,
    };
    (file, data)
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(|| format!("reading {}", path.display())),
    }
}

struct Uploader<'a> {
    store: &'a dyn ObjectStore,
    topic: &'a str,
    remote: HashSet<String>,
    uploaded: u64,
}

impl Uploader<'_> {
    fn put_part(&mut self, part: &Part, data: &[u8]) -> Result<()> {
        if self.remote.contains(&part.key) {
            return Ok(());
        }
        let key = part_key(self.topic, &part.key);
        let store = self.store;
        let what = format!("uploading tamper evidence of topic {:?}:", self.topic);
        store
            .put(&key, data, PutMode::Overwrite)
            .map_err(|e| tier_error(store, &key, &what, e))?;
        let entry = FileEntry {
            name: part.key.clone(),
            bytes: part.bytes,
            crc32: part.crc32,
        };
        crate::tier::upload::verify(store, &key, &entry)?;
        self.remote.insert(part.key.clone());
        self.uploaded += part.bytes;
        Ok(())
    }
}

/// Uploads a consistent copy of the topic's tamper evidence when it changed since the
/// last upload; returns the bytes uploaded. Refuses a prefix another store owns.
pub(crate) fn upload(store: &dyn ObjectStore, store_id: &str, topic_dir: &Path, topic: &str) -> Result<u64> {
    // The small files first, checkpoints before the tree's meta (see the module docs).
    let mut files = Vec::new();
    let mut small = Vec::new();
    for name in SMALL_FILES {
        if let Some(bytes) = read_file(&local_path(topic_dir, name))? {
            let (file, data) = cut(name, &bytes);
            small.push((file.clone(), data));
            files.push(file);
        }
    }
    if !files.iter().any(|f| f.name == CHECKPOINTS_FILE || f.name == META) {
        return Ok(0); // no tamper evidence for this topic
    }
    let last = load_local_copy(topic_dir);
    let unchanged = last.as_ref().is_some_and(|l| {
        let small_last: Vec<&EvidenceFile> = l.files.iter().filter(|f| f.name != TREE).collect();
        small_last.len() == files.len() && small_last.iter().zip(&files).all(|(a, b)| *a == b)
    });
    if unchanged {
        return Ok(0); // the tree changes only with its meta: nothing new is synced
    }
    let manifest_key = manifest::remote_manifest_key(topic);
    if let Some((bytes, _)) = store
        .get(&manifest_key)
        .map_err(|e| tier_error(store, &manifest_key, "reading the manifest", e))?
    {
        let remote = manifest::Manifest::decode(&bytes, Path::new(&format!("{}/{manifest_key}", store.describe())))?;
        if remote.store_id != store_id {
            let reason = format!(
                "the prefix belongs to store {} (this store is {store_id}); point this store at another prefix",
                remote.store_id
            );
            return Err(tier_error(
                store,
                &manifest_key,
                "uploading tamper evidence",
                ObjError::Config(reason),
            ));
        }
    }
    let mut up = Uploader {
        store,
        topic,
        remote: last
            .iter()
            .flat_map(|l| l.files.iter().flat_map(|f| f.parts.iter().map(|p| p.key.clone())))
            .collect(),
        uploaded: 0,
    };
    for (file, data) in &small {
        for (part, bytes) in file.parts.iter().zip(data) {
            up.put_part(part, bytes)?;
        }
    }
    files.push(upload_tree(&mut up, &topic_dir.join(TREE))?);
    files.retain(|f| f.bytes > 0 || f.name != TREE);
    let index = EvidenceIndex {
        format: EVIDENCE_FORMAT.into(),
        store_id: store_id.to_owned(),
        taken_at_us: crate::topic::now_us(),
        files,
    };
    let text = serde_json::to_vec_pretty(&index).map_err(|e| Error::InvalidConfig(e.to_string()))?;
    let key = index_key(topic);
    store
        .put(&key, &text, PutMode::Overwrite)
        .map_err(|e| tier_error(store, &key, "writing the evidence index", e))?;
    crate::failpoint::hit("tier.after_evidence_index");
    let local_dir = topic_dir.join(TIER_DIR);
    std::fs::create_dir_all(&local_dir).context(|| format!("creating {}", local_dir.display()))?;
    crate::fsutil::write_atomic(&local_dir.join(LOCAL_COPY), &text)?;
    // Parts no index lists any more (a crash may leave some: deleted on a later upload).
    let keep: HashSet<&str> = index
        .files
        .iter()
        .flat_map(|f| f.parts.iter().map(|p| p.key.as_str()))
        .collect();
    let prefix = format!("topics/{topic}/evidence/parts/");
    let listed = store
        .list(&prefix)
        .map_err(|e| tier_error(store, &prefix, "listing", e))?;
    for o in listed {
        if !keep.contains(o.key.trim_start_matches(&prefix)) {
            store
                .delete(&o.key)
                .map_err(|e| tier_error(store, &o.key, "deleting", e))?;
        }
    }
    Ok(up.uploaded)
}

/// The tree file, part by part as it is read (it may be large; it only grows, so bytes
/// read later are at least as new as the meta read before).
fn upload_tree(up: &mut Uploader<'_>, path: &Path) -> Result<EvidenceFile> {
    let mut entry = EvidenceFile {
        name: TREE.into(),
        bytes: 0,
        crc32: 0,
        parts: Vec::new(),
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(entry),
        Err(e) => return Err(e).context(|| format!("opening {}", path.display())),
    };
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = Vec::with_capacity(PART_BYTES as usize);
    for i in 0.. {
        buf.clear();
        (&mut file)
            .take(PART_BYTES)
            .read_to_end(&mut buf)
            .context(|| format!("reading {}", path.display()))?;
        if buf.is_empty() {
            break;
        }
        let (cut_entry, _) = cut(TREE, &buf);
        let mut part = cut_entry.parts[0].clone();
        part.key = format!("merkle.tree.{i:06}-{}-{:08x}", part.bytes, part.crc32);
        up.put_part(&part, &buf)?;
        hasher.update(&buf);
        entry.bytes += buf.len() as u64;
        entry.parts.push(part);
        if (buf.len() as u64) < PART_BYTES {
            break;
        }
    }
    entry.crc32 = hasher.finalize();
    Ok(entry)
}

/// A topic's evidence as fetched from the bucket: file name -> bytes.
pub(crate) type Fetched = Vec<(String, Vec<u8>)>;

/// Downloads the evidence copy `index.json` lists, checking every part and file.
pub(crate) fn fetch(store: &dyn ObjectStore, topic: &str) -> Result<Option<Fetched>> {
    let key = index_key(topic);
    let Some((bytes, _)) = store.get(&key).map_err(|e| tier_error(store, &key, "reading", e))? else {
        return Ok(None);
    };
    let bad = |reason: String| cache::remote_corrupt(store, &key, reason);
    let index: EvidenceIndex =
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("evidence index does not parse: {e}")))?;
    if index.format != EVIDENCE_FORMAT {
        return Err(bad(format!("unknown evidence index format {:?}", index.format)));
    }
    let mut out = Vec::new();
    for f in &index.files {
        let known = f.name == TREE || SMALL_FILES.contains(&f.name.as_str());
        if !known {
            return Err(bad(format!("unknown evidence file {:?}", f.name)));
        }
        let mut data = Vec::with_capacity(f.bytes as usize);
        for p in &f.parts {
            let pk = part_key(topic, &p.key);
            let chunk = store
                .get_range(&pk, 0..p.bytes)
                .map_err(|e| tier_error(store, &pk, "downloading", e))?;
            if chunk.len() as u64 != p.bytes || crc32fast::hash(&chunk) != p.crc32 {
                return Err(cache::remote_corrupt(
                    store,
                    &pk,
                    "part does not match its size and CRC-32".into(),
                ));
            }
            data.extend_from_slice(&chunk);
        }
        if data.len() as u64 != f.bytes || crc32fast::hash(&data) != f.crc32 {
            return Err(bad(format!("{} does not match its size and CRC-32", f.name)));
        }
        out.push((f.name.clone(), data));
    }
    Ok(Some(out))
}

/// The size a checkpoint covers (its second line).
fn checkpoint_size(text: &str) -> Option<u64> {
    text.lines().nth(1)?.trim().parse().ok()
}

/// What [`install`] wrote.
pub(crate) struct Installed {
    /// Stored checkpoints restored.
    pub checkpoints: usize,
    /// Checkpoints left out: they cover records past the restored log's end (records
    /// that never reached the bucket). Kept in `checkpoints.unrestored.log`.
    pub dropped: usize,
    /// The largest size a stored checkpoint states (0 without any): the topic held at
    /// least that many records when it was made.
    pub checkpointed: u64,
}

/// Writes fetched evidence into a restored topic whose log ends at `end` (the tree is
/// trimmed to the log on open; checkpoints past `end` are set aside). `start.offset` and
/// `store.id` are the caller's business.
pub(crate) fn install(topic_dir: &Path, files: &Fetched, end: u64) -> Result<Installed> {
    let mut installed = Installed {
        checkpoints: 0,
        dropped: 0,
        checkpointed: 0,
    };
    let merkle = topic_dir.join(MERKLE_DIR);
    std::fs::create_dir_all(&merkle).context(|| format!("creating {}", merkle.display()))?;
    for (name, data) in files {
        match name.as_str() {
            TREE | META => crate::fsutil::write_atomic(&topic_dir.join(name), data)?,
            CHECKPOINTS_FILE => {
                let staged = topic_dir.join(TIER_DIR).join("checkpoints.fetched");
                std::fs::create_dir_all(topic_dir.join(TIER_DIR))
                    .context(|| format!("creating {}", topic_dir.display()))?;
                crate::fsutil::write_atomic(&staged, data)?;
                let topic = topic_dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let all = crate::topic::evidence::read_checkpoints(&topic, &staged)?;
                let _ = std::fs::remove_file(&staged);
                let (mut kept, mut dropped) = (Vec::new(), Vec::new());
                for text in all {
                    // Texts read from a valid file are within the frame's limit.
                    let frame = crate::audit::checkpoint_log::frame(&text)
                        .map_err(|e| crate::segment::corrupt(&staged, 0, e.to_string()))?;
                    let size = checkpoint_size(&text);
                    installed.checkpointed = installed.checkpointed.max(size.unwrap_or(0));
                    if size.is_some_and(|s| s <= end) {
                        installed.checkpoints += 1;
                        kept.extend(frame);
                    } else {
                        installed.dropped += 1;
                        dropped.extend(frame);
                    }
                }
                crate::fsutil::write_atomic(&topic_dir.join(CHECKPOINTS_FILE), &kept)?;
                if !dropped.is_empty() {
                    crate::fsutil::write_atomic(&topic_dir.join("checkpoints.unrestored.log"), &dropped)?;
                }
            }
            _ => {}
        }
    }
    crate::fsutil::sync_dir(&merkle)?;
    crate::fsutil::sync_dir(topic_dir)?;
    Ok(installed)
}
