//! The read cache of evicted segments: `<store>/tier/cache/<topic>/<base>/` holds a
//! segment's whole unit, fetched with ranged gets and checked (size and CRC-32) against
//! the manifest before it is renamed into place. Bounded by bytes, least recently used
//! out first; the entry just fetched always stays (one segment larger than the bound is
//! still readable). Segments whose manifest entry has chunk checksums are read by range
//! instead (see `ranged.rs`); their entries share this bound.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::IoContext;
use crate::tier::manifest::SegmentEntry;
use crate::tier::object::ObjectStore;
use crate::tier::ranged::RangedLog;
use crate::tier::{manifest, tier_error};
use crate::{Error, Result};

/// Size of one ranged get.
const RANGE_BYTES: u64 = 8 << 20;

/// One cache entry: a whole unit (`<base20>/`) or a segment read by range
/// (`<base20>.ranged-<pid>/`, see `ranged.rs`).
pub(crate) struct CacheEntry {
    pub bytes: u64,
    pub tick: u64,
    pub dir: PathBuf,
    pub ranged: Option<Arc<RangedLog>>,
}

/// (topic, base, ranged) -> entry.
pub(crate) type CacheKey = (String, u64, bool);

pub(crate) struct Lru {
    pub entries: HashMap<CacheKey, CacheEntry>,
    pub tick: u64,
    pub total: u64,
    pub max_bytes: u64,
}

impl Lru {
    /// Marks `key` used now.
    pub fn touch(&mut self, key: &CacheKey) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(e) = self.entries.get_mut(key) {
            e.tick = tick;
        }
    }

    /// Drops least recently used entries (never `keep`) while over the bound.
    pub fn make_room(&mut self, keep: &CacheKey) {
        while self.total > self.max_bytes {
            let victim = self
                .entries
                .iter()
                .filter(|(k, _)| *k != keep)
                .min_by_key(|(_, v)| v.tick)
                .map(|(k, _)| k.clone());
            let Some(victim) = victim else { break };
            let Some(entry) = self.entries.remove(&victim) else {
                break;
            };
            self.total = self.total.saturating_sub(entry.bytes);
            // A reader that has it mapped or open keeps its mapping (unlink semantics).
            let _ = fs::remove_dir_all(&entry.dir);
        }
    }
}

/// The cache of one store.
pub struct SegmentCache {
    dir: PathBuf,
    pub(crate) lru: Arc<Mutex<Lru>>,
    pub(crate) fetching: Mutex<()>,
}

impl SegmentCache {
    /// Opens the cache in `dir`, counting what earlier runs left there.
    pub fn open(dir: PathBuf, max_bytes: u64) -> SegmentCache {
        let mut lru = Lru {
            entries: HashMap::new(),
            tick: 0,
            total: 0,
            max_bytes,
        };
        for topic in fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = topic.file_name().to_string_lossy().into_owned();
            for seg in fs::read_dir(topic.path()).into_iter().flatten().flatten() {
                let seg_name = seg.file_name().to_string_lossy().into_owned();
                match seg_name.parse::<u64>() {
                    Ok(base) if seg_name.len() == 20 => {
                        let bytes = dir_bytes(&seg.path());
                        lru.total += bytes;
                        let entry = CacheEntry {
                            bytes,
                            tick: 0,
                            dir: seg.path(),
                            ranged: None,
                        };
                        lru.entries.insert((name.clone(), base, false), entry);
                    }
                    // A fetch interrupted by a crash, or the ranged copy of an earlier run
                    // (its chunk map lived in memory).
                    _ => {
                        let _ = fs::remove_dir_all(seg.path());
                    }
                }
            }
        }
        SegmentCache {
            dir,
            lru: Arc::new(Mutex::new(lru)),
            fetching: Mutex::new(()),
        }
    }

    /// Bytes held now.
    pub fn bytes(&self) -> u64 {
        self.lru.lock().total
    }

    pub(crate) fn entry_dir(&self, topic: &str, base: u64) -> PathBuf {
        self.dir.join(topic).join(format!("{base:020}"))
    }

    /// The path of the cached `.log` of `entry`, fetching the unit first if needed.
    ///
    /// # Errors
    /// Object store errors naming the key; [`Error::Corrupt`] when a fetched object does
    /// not match the size or CRC-32 the manifest recorded.
    pub fn get(&self, store: &dyn ObjectStore, topic: &str, entry: &SegmentEntry) -> Result<PathBuf> {
        let _one_at_a_time = self.fetching.lock();
        let dir = self.entry_dir(topic, entry.base);
        let log = dir.join(&entry.files[0].name);
        if !log.exists() {
            self.fetch(store, topic, entry, &dir)?;
        }
        let mut lru = self.lru.lock();
        let key = (topic.to_owned(), entry.base, false);
        if !lru.entries.contains_key(&key) {
            let bytes = entry.total_bytes();
            lru.total += bytes;
            let cached = CacheEntry {
                bytes,
                tick: 0,
                dir,
                ranged: None,
            };
            lru.entries.insert(key.clone(), cached);
        }
        lru.touch(&key);
        lru.make_room(&key);
        Ok(log)
    }

    fn fetch(&self, store: &dyn ObjectStore, topic: &str, entry: &SegmentEntry, dir: &Path) -> Result<()> {
        let tmp = dir.with_extension(format!("tmp-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp).context(|| format!("creating {}", tmp.display()))?;
        for f in &entry.files {
            let key = manifest::remote_file_key(topic, entry.base, &f.name);
            let path = tmp.join(&f.name);
            download(store, &key, f.bytes, f.crc32, &path)?;
        }
        let _ = fs::remove_dir_all(dir);
        fs::rename(&tmp, dir).context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
        tracing::info!(
            topic,
            base = entry.base,
            bytes = entry.total_bytes(),
            "fetched an evicted segment into the cache"
        );
        Ok(())
    }
}

/// Downloads one object with ranged gets into `path`, checking size and CRC-32.
pub(crate) fn download(store: &dyn ObjectStore, key: &str, bytes: u64, crc32: u32, path: &Path) -> Result<()> {
    let mut file = fs::File::create(path).context(|| format!("creating {}", path.display()))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut pos = 0;
    while pos < bytes {
        let end = (pos + RANGE_BYTES).min(bytes);
        let chunk = store
            .get_range(key, pos..end)
            .map_err(|e| tier_error(store, key, "downloading", e))?;
        if chunk.len() as u64 != end - pos {
            return Err(remote_corrupt(
                store,
                key,
                format!("object is shorter than the {bytes} bytes recorded"),
            ));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .context(|| format!("writing {}", path.display()))?;
        pos = end;
    }
    let crc = hasher.finalize();
    if crc != crc32 {
        return Err(remote_corrupt(
            store,
            key,
            format!("CRC-32 {crc:08x}, the manifest recorded {crc32:08x}"),
        ));
    }
    file.sync_data().context(|| format!("syncing {}", path.display()))
}

pub(crate) fn remote_corrupt(store: &dyn ObjectStore, key: &str, reason: String) -> Error {
    Error::Corrupt {
        file: PathBuf::from(format!("{}/{key}", store.describe())),
        byte_pos: 0,
        reason,
    }
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
