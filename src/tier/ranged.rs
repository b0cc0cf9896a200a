//! Ranged reads of evicted segments. The first read of an evicted segment fetches its
//! offset and time indexes (small, each checked against the manifest's size and CRC-32)
//! into `<store>/tier/cache/<topic>/<base20>.ranged-<pid>/` and creates an empty sparse
//! `.log` of the segment's size there. The engine then asks for byte ranges (guided by
//! the index: the batch holding an offset lies between two index entries); every
//! [`CHUNK_BYTES`] chunk a range touches is fetched with one ranged get, checked against
//! the manifest's per-chunk CRC-32, written into the sparse file and remembered, so a
//! chunk is downloaded once while the entry stays in the bounded cache.

use std::fs::{self, File, OpenOptions};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::IoContext;
use crate::index::{self, SegmentIndex};
use crate::segment::{self, LazyBytes, SealedData, INDEX_EXT, TIME_INDEX_EXT};
use crate::tier::cache::{self, CacheEntry, CacheKey, Lru, SegmentCache};
use crate::tier::manifest::{self, SegmentEntry, CHUNK_BYTES};
use crate::tier::object::ObjectStore;
use crate::tier::tier_error;
use crate::{Offset, Result};

/// The `.log` of an evicted segment, fetched chunk by chunk.
pub(crate) struct RangedLog {
    remote: Arc<dyn ObjectStore>,
    key: String,
    path: PathBuf,
    file: File,
    bytes: u64,
    chunk_crc32: Vec<u32>,
    have: Mutex<Vec<bool>>,
    lru: Arc<Mutex<Lru>>,
    cache_key: CacheKey,
    fetched: AtomicU64,
}

impl std::fmt::Debug for RangedLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangedLog")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RangedLog {
    fn fetch_chunk(&self, chunk: usize) -> Result<()> {
        let store = self.remote.as_ref();
        let start = chunk as u64 * CHUNK_BYTES;
        let end = (start + CHUNK_BYTES).min(self.bytes);
        let data = store
            .get_range(&self.key, start..end)
            .map_err(|e| tier_error(store, &self.key, "reading a range of", e))?;
        if data.len() as u64 != end - start {
            return Err(cache::remote_corrupt(
                store,
                &self.key,
                format!("bytes {start}..{end}: got {} bytes", data.len()),
            ));
        }
        let crc = crc32fast::hash(&data);
        let want = self.chunk_crc32.get(chunk).copied().unwrap_or_default();
        if crc != want {
            return Err(cache::remote_corrupt(
                store,
                &self.key,
                format!("bytes {start}..{end} have CRC-32 {crc:08x}, the manifest recorded {want:08x}"),
            ));
        }
        self.file
            .write_all_at(&data, start)
            .context(|| format!("writing {}", self.path.display()))?;
        self.fetched.fetch_add(data.len() as u64, Ordering::Relaxed);
        let mut lru = self.lru.lock();
        if let Some(e) = lru.entries.get_mut(&self.cache_key) {
            e.bytes += data.len() as u64;
            lru.total += data.len() as u64;
        }
        lru.touch(&self.cache_key);
        lru.make_room(&self.cache_key);
        Ok(())
    }
}

impl LazyBytes for RangedLog {
    fn read(&self, range: Range<u64>) -> Result<Vec<u8>> {
        if range.start > range.end || range.end > self.bytes {
            return Err(segment::corrupt(
                &self.path,
                range.start,
                format!("range {range:?} is outside the segment's {} bytes", self.bytes),
            ));
        }
        if range.is_empty() {
            return Ok(Vec::new());
        }
        {
            let mut have = self.have.lock();
            let first = (range.start / CHUNK_BYTES) as usize;
            let last = ((range.end - 1) / CHUNK_BYTES) as usize;
            for chunk in first..=last {
                if !have[chunk] {
                    self.fetch_chunk(chunk)?;
                    have[chunk] = true;
                }
            }
        }
        let mut buf = vec![0; (range.end - range.start) as usize];
        self.file
            .read_exact_at(&mut buf, range.start)
            .context(|| format!("reading {}", self.path.display()))?;
        Ok(buf)
    }
}

impl SegmentCache {
    /// An evicted segment ready to be read by range, or None when it must be fetched
    /// whole: its manifest entry predates chunk checksums, a whole copy is cached
    /// already, or its index files do not decode completely.
    ///
    /// # Errors
    /// Object store errors naming the key; [`crate::Error::Corrupt`] for an index object
    /// that does not match the manifest.
    pub(crate) fn ranged(
        &self,
        remote: &Arc<dyn ObjectStore>,
        topic: &str,
        entry: &SegmentEntry,
    ) -> Result<Option<SealedData>> {
        let log_bytes = entry.log_bytes();
        let chunks = log_bytes.div_ceil(CHUNK_BYTES) as usize;
        if log_bytes == 0 || entry.log_chunk_crc32.len() != chunks {
            return Ok(None);
        }
        let _one_at_a_time = self.fetching.lock();
        if self.entry_dir(topic, entry.base).join(&entry.files[0].name).exists() {
            return Ok(None);
        }
        let cache_key: CacheKey = (topic.to_owned(), entry.base, true);
        let existing = self.lru.lock().entries.get(&cache_key).and_then(|e| e.ranged.clone());
        let (log, dir) = match existing {
            Some(log) => {
                let dir = log.path.parent().map(PathBuf::from).unwrap_or_default();
                (log, dir)
            }
            None => {
                let dir = self
                    .entry_dir(topic, entry.base)
                    .with_extension(format!("ranged-{}", std::process::id()));
                let _ = fs::remove_dir_all(&dir);
                fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
                let store = remote.as_ref();
                let mut index_bytes = 0;
                for f in entry.files.iter().skip(1) {
                    let wanted = [INDEX_EXT, TIME_INDEX_EXT];
                    if !wanted.iter().any(|ext| f.name.ends_with(&format!(".{ext}"))) {
                        continue;
                    }
                    let key = manifest::remote_file_key(topic, entry.base, &f.name);
                    cache::download(store, &key, f.bytes, f.crc32, &dir.join(&f.name))?;
                    index_bytes += f.bytes;
                }
                let path = dir.join(&entry.files[0].name);
                let file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .open(&path)
                    .context(|| format!("creating {}", path.display()))?;
                file.set_len(log_bytes)
                    .context(|| format!("sizing {}", path.display()))?;
                let log = Arc::new(RangedLog {
                    remote: Arc::clone(remote),
                    key: manifest::remote_file_key(topic, entry.base, &entry.files[0].name),
                    path,
                    file,
                    bytes: log_bytes,
                    chunk_crc32: entry.log_chunk_crc32.clone(),
                    have: Mutex::new(vec![false; chunks]),
                    lru: Arc::clone(&self.lru),
                    cache_key: cache_key.clone(),
                    fetched: AtomicU64::new(0),
                });
                let mut lru = self.lru.lock();
                lru.total += index_bytes;
                let cached = CacheEntry {
                    bytes: index_bytes,
                    tick: 0,
                    dir: dir.clone(),
                    ranged: Some(Arc::clone(&log)),
                };
                lru.entries.insert(cache_key.clone(), cached);
                (log, dir)
            }
        };
        {
            let mut lru = self.lru.lock();
            lru.touch(&cache_key);
            lru.make_room(&cache_key);
        }
        let log_name = &entry.files[0].name;
        let read = |ext: &str| fs::read(dir.join(log_name).with_extension(ext)).unwrap_or_default();
        let (offsets, offsets_complete) = index::decode_offset_entries(&read(INDEX_EXT), log_bytes);
        let (times, times_complete) = index::decode_time_entries(&read(TIME_INDEX_EXT));
        if !offsets_complete || !times_complete || offsets.is_empty() || times.is_empty() {
            tracing::info!(
                topic,
                base = entry.base,
                "index of an evicted segment unusable; fetching it whole"
            );
            let mut lru = self.lru.lock();
            if let Some(e) = lru.entries.remove(&cache_key) {
                lru.total = lru.total.saturating_sub(e.bytes);
                let _ = fs::remove_dir_all(&e.dir);
            }
            return Ok(None);
        }
        Ok(Some(SealedData {
            map: None,
            index: SegmentIndex::from_entries(offsets, times),
            end_offset: Offset(entry.end_offset),
            first_timestamp_us: entry.first_timestamp_us,
            last_timestamp_us: entry.last_timestamp_us,
            bytes: log_bytes,
            lazy: Some(log),
            key_index: std::sync::OnceLock::new(),
        }))
    }
}
