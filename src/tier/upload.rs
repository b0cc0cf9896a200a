//! One tiering pass over every topic: resume interrupted steps, upload and verify new
//! sealed segments, mirror the manifest, delete remote copies past total retention, and
//! evict under the local retention. Every step is restartable (see docs/tier-format.md).

use std::fs::{self, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::IoContext;
use crate::failpoint::hit;
use crate::segment::{self, SealedSegment, LOG_EXT};
use crate::tier::manifest::{self, FileEntry, Manifest, SegmentEntry, SegmentState};
use crate::tier::object::ObjectStore;
use crate::tier::{tier_error, StoreTier, STORE_TIER_DIR};
use crate::{Offset, Result};

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Segments uploaded and verified.
    pub uploaded: Vec<(String, Offset)>,
    /// Segments whose local files were deleted.
    pub evicted: Vec<(String, Offset)>,
    /// Segments whose remote objects were deleted (total retention).
    pub deleted_remote: Vec<(String, Offset)>,
    /// Bytes uploaded.
    pub uploaded_bytes: u64,
    /// Bytes of tamper evidence (tree, checkpoints) uploaded.
    pub evidence_bytes: u64,
    /// True when another process was running a pass (background passes skip).
    pub busy: bool,
}

pub(crate) fn run_pass(tier: &StoreTier, wait: bool) -> Result<PassReport> {
    let lock_path = tier.store_dir.join(STORE_TIER_DIR).join("upload.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .context(|| format!("opening {}", lock_path.display()))?;
    let mut report = PassReport::default();
    if wait {
        lock.lock().context(|| format!("locking {}", lock_path.display()))?;
    } else if lock.try_lock().is_err() {
        report.busy = true;
        return Ok(report);
    }
    let topics_dir = tier.store_dir.join(crate::store::TOPICS_DIR);
    let mut first_error = None;
    let mut names: Vec<String> = fs::read_dir(&topics_dir)
        .context(|| format!("listing {}", topics_dir.display()))?
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter(|n| crate::topic::validate_topic_name(n).is_ok())
        .filter(|n| topics_dir.join(n).join(crate::topic::config::CONFIG_FILE).exists())
        .collect();
    names.sort();
    let mut topic_errors = std::collections::BTreeMap::new();
    for name in names {
        if tier.stopping() {
            break;
        }
        if let Err(e) = sync_topic(tier, &topics_dir.join(&name), &name, &mut report) {
            tracing::warn!(topic = %name, error = %e, "tiering pass failed for a topic");
            topic_errors.insert(name, e.to_string());
            first_error.get_or_insert(e);
        }
    }
    tier.status.lock().record(first_error.as_ref(), &report);
    tier.status.lock().topic_errors = topic_errors;
    let _ = tier.status.lock().save(&tier.store_dir);
    first_error.map_or(Ok(report), Err)
}

/// Local `.log` bases, sorted (not `list_segments`: that one includes evicted segments).
fn local_bases(dir: &Path) -> Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)
        .context(|| format!("listing {}", dir.display()))?
        .flatten()
    {
        if let Some(b) = entry
            .file_name()
            .to_str()
            .and_then(|n| segment::parse_file_name(n, LOG_EXT))
        {
            bases.push(b.0);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

fn sync_topic(tier: &StoreTier, dir: &Path, topic: &str, report: &mut PassReport) -> Result<()> {
    let store = tier.remote.as_ref();
    let config_path = dir.join(crate::topic::config::CONFIG_FILE);
    let topic_config: serde_json::Value = fs::read(&config_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(serde_json::Value::Null);
    let bases = local_bases(dir)?;
    // Only segments whose seal is durable (log synced, final index files written); a
    // topic without the marker sealed every segment before starting the next.
    let sealed_through = segment::read_sealed_through(dir)?.map_or(u64::MAX, |o| o.0);
    let sealed = &bases[..bases.len().saturating_sub(1)];
    let sealed = &sealed[..sealed.partition_point(|&b| b < sealed_through)];
    let create = Some((tier.store_id.as_str(), topic_config.clone()));
    let known = manifest::load(dir)?;
    // An intent whose local log vanished (retention ran meanwhile): nothing to keep.
    manifest::update(dir, create.clone(), |m| {
        m.topic_config = topic_config.clone();
        for s in &mut m.segments {
            if s.state == SegmentState::Uploading && !dir.join(&s.files[0].name).exists() {
                s.state = SegmentState::Deleting;
            }
        }
        Ok(())
    })?;
    let mut first_error = None;
    // Once the store closes, the pass stops before its next request; the next pass
    // resumes (uploads are idempotent).
    for &base in sealed {
        if tier.stopping() {
            break;
        }
        let state = known.as_ref().and_then(|m| m.get(base)).map(|s| s.state);
        if state.is_none() || state == Some(SegmentState::Uploading) {
            match upload_segment(tier, dir, topic, base, create.clone()) {
                Ok(Some(bytes)) => {
                    report.uploaded.push((topic.to_owned(), Offset(base)));
                    report.uploaded_bytes += bytes;
                }
                Ok(None) => {}
                // A bad segment must not stop the others; an unreachable store stops
                // the pass at once (each request would only time out again).
                Err(e @ crate::Error::Corrupt { .. }) => {
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
    if tier.stopping() {
        return first_error.map_or(Ok(()), Err);
    }
    // The bucket's manifest must list a segment before its local copy may go.
    let Some(pushed) = manifest::load(dir)? else {
        return first_error.map_or(Ok(()), Err);
    };
    // Tamper evidence after the segments, before the manifest that lists them: a tree
    // copied after this manifest was read covers every segment retention removed from it.
    report.evidence_bytes += crate::tier::evidence::upload(store, &tier.store_id, dir, topic)?;
    manifest::push(store, &pushed)?;
    hit("tier.after_push");
    delete_remote(store, dir, topic, &pushed, report)?;
    evict(tier, dir, topic, &pushed, &bases, report)?;
    first_error.map_or(Ok(()), Err)
}

/// The files of a segment's unit: the log first, then indexes and any sidecar with the
/// same base name (Merkle data, checkpoints), sorted.
fn unit_files(dir: &Path, base: u64) -> Result<Vec<PathBuf>> {
    let log = segment::file_name(Offset(base), LOG_EXT);
    let mut rest = Vec::new();
    for entry in fs::read_dir(dir)
        .context(|| format!("listing {}", dir.display()))?
        .flatten()
    {
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name != log && manifest::valid_file_name(&name, base) && entry.path().is_file() {
            rest.push(name);
        }
    }
    rest.sort();
    Ok(std::iter::once(log).chain(rest).map(|n| dir.join(n)).collect())
}

/// Size and CRC-32 of a file, and the CRC-32 of each [`manifest::CHUNK_BYTES`] chunk.
fn file_entry(path: &Path) -> Result<(FileEntry, Vec<u32>)> {
    let mut file = fs::File::open(path).context(|| format!("opening {}", path.display()))?;
    let mut hasher = crc32fast::Hasher::new();
    let mut chunks = Vec::new();
    let mut buf = vec![0; manifest::CHUNK_BYTES as usize];
    let mut bytes = 0u64;
    loop {
        // Fill a whole chunk (a short read is not the end of the file).
        let mut n = 0;
        while n < buf.len() {
            let got = file
                .read(&mut buf[n..])
                .context(|| format!("reading {}", path.display()))?;
            if got == 0 {
                break;
            }
            n += got;
        }
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        chunks.push(crc32fast::hash(&buf[..n]));
        bytes += n as u64;
        if n < buf.len() {
            break;
        }
    }
    let entry = FileEntry {
        name: path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        bytes,
        crc32: hasher.finalize(),
    };
    Ok((entry, chunks))
}

/// Uploads one segment's unit: intent, puts, verification, `uploaded`. Returns the bytes
/// uploaded, or None when the segment vanished or changed state meanwhile, or the store
/// closes before the unit is uploaded.
fn upload_segment(
    tier: &StoreTier,
    dir: &Path,
    topic: &str,
    base: u64,
    create: Option<(&str, serde_json::Value)>,
) -> Result<Option<u64>> {
    let seg = SealedSegment::new(dir, Offset(base));
    if !seg.path.exists() {
        return Ok(None);
    }
    // Loading confirms the log (and its indexes) before a copy of it is trusted.
    let data = seg.load(false)?;
    let mut files = Vec::new();
    let mut log_chunk_crc32 = Vec::new();
    for (i, path) in unit_files(dir, base)?.iter().enumerate() {
        let (file, chunks) = file_entry(path)?;
        if i == 0 {
            log_chunk_crc32 = chunks;
        }
        files.push(file);
    }
    let entry = SegmentEntry {
        base,
        end_offset: data.end_offset.0,
        first_timestamp_us: data.first_timestamp_us,
        last_timestamp_us: data.last_timestamp_us,
        state: SegmentState::Uploading,
        files,
        uploaded_at_us: None,
        log_chunk_crc32,
    };
    drop(data);
    seg.unload();
    let started = manifest::update(dir, create, |m| {
        match m.get_mut(base) {
            Some(s) if s.state != SegmentState::Uploading => return Ok(false),
            Some(s) => *s = entry.clone(),
            None => m.segments.push(entry.clone()),
        }
        Ok(true)
    })?;
    if started != Some(true) {
        return Ok(None);
    }
    hit("tier.after_intent");
    let store = tier.remote.as_ref();
    for f in &entry.files {
        if tier.stopping() {
            // The store closes; the intent stays, and the next pass uploads the unit again.
            return Ok(None);
        }
        let key = manifest::remote_file_key(topic, base, &f.name);
        store.put_file(&key, &dir.join(&f.name)).map_err(|e| {
            tier_error(
                store,
                &key,
                &format!("uploading segment {base:020} of topic {topic:?}:"),
                e,
            )
        })?;
        hit("tier.after_put");
    }
    for f in &entry.files {
        verify(store, &manifest::remote_file_key(topic, base, &f.name), f)?;
    }
    hit("tier.after_verify");
    manifest::update(dir, None, |m| {
        if let Some(s) = m
            .get_mut(base)
            .filter(|s| s.state == SegmentState::Uploading && s.files == entry.files)
        {
            s.state = SegmentState::Uploaded;
            s.uploaded_at_us = Some(crate::topic::now_us());
        }
        Ok(())
    })?;
    hit("tier.after_uploaded");
    Ok(Some(entry.total_bytes()))
}

/// HEAD for the size, then a streamed read of the object for its CRC-32.
pub(crate) fn verify(store: &dyn ObjectStore, key: &str, f: &FileEntry) -> Result<()> {
    let head = store.head(key).map_err(|e| tier_error(store, key, "verifying", e))?;
    let size = head.map(|h| h.size);
    if size != Some(f.bytes) {
        return Err(crate::tier::cache::remote_corrupt(
            store,
            key,
            format!("uploaded object has size {size:?}, expected {} bytes", f.bytes),
        ));
    }
    let mut hasher = crc32fast::Hasher::new();
    let mut pos = 0;
    while pos < f.bytes {
        let end = (pos + (8 << 20)).min(f.bytes);
        let chunk = store
            .get_range(key, pos..end)
            .map_err(|e| tier_error(store, key, "verifying", e))?;
        hasher.update(&chunk);
        pos = end;
    }
    let crc = hasher.finalize();
    if crc != f.crc32 {
        return Err(crate::tier::cache::remote_corrupt(
            store,
            key,
            format!("uploaded object has CRC-32 {crc:08x}, expected {:08x}", f.crc32),
        ));
    }
    Ok(())
}

/// Deletes the objects of `deleting` segments (the pushed manifest already says so), then
/// drops their entries and mirrors the manifest again.
fn delete_remote(
    store: &dyn ObjectStore,
    dir: &Path,
    topic: &str,
    pushed: &Manifest,
    report: &mut PassReport,
) -> Result<()> {
    let doomed: Vec<u64> = pushed
        .segments
        .iter()
        .filter(|s| s.state == SegmentState::Deleting)
        .map(|s| s.base)
        .collect();
    if doomed.is_empty() {
        return Ok(());
    }
    for &base in &doomed {
        let prefix = format!("topics/{topic}/segments/{base:020}/");
        let objects = store
            .list(&prefix)
            .map_err(|e| tier_error(store, &prefix, "listing", e))?;
        for o in objects {
            store
                .delete(&o.key)
                .map_err(|e| tier_error(store, &o.key, "deleting", e))?;
        }
        // Local leftovers of a segment retention already removed from the engine.
        for path in unit_files(dir, base)? {
            segment::remove_if_exists(&path)?;
        }
        hit("tier.after_remote_delete");
        report.deleted_remote.push((topic.to_owned(), Offset(base)));
    }
    manifest::update(dir, None, |m| {
        m.segments
            .retain(|s| !(s.state == SegmentState::Deleting && doomed.contains(&s.base)));
        Ok(())
    })?;
    if let Some(m) = manifest::load(dir)? {
        manifest::push(store, &m)?;
    }
    Ok(())
}

/// Local retention: evicts `uploaded` segments (as listed in the pushed manifest), oldest
/// first, while local bytes exceed the bound or their newest record is too old. Also
/// finishes evictions a crash interrupted.
fn evict(
    tier: &StoreTier,
    dir: &Path,
    topic: &str,
    pushed: &Manifest,
    bases: &[u64],
    report: &mut PassReport,
) -> Result<()> {
    let active = bases.last().copied();
    for s in pushed.segments.iter().filter(|s| s.state == SegmentState::Evicted) {
        if Some(s.base) != active && dir.join(&s.files[0].name).exists() {
            delete_unit(dir, s)?;
        }
    }
    let (max_bytes, max_age) = (tier.config.local_bytes_max, tier.config.local_age_max_ms);
    if max_bytes.is_none() && max_age.is_none() {
        return Ok(());
    }
    let mut local: u64 = bases
        .iter()
        .map(|&b| fs::metadata(dir.join(segment::file_name(Offset(b), LOG_EXT))).map_or(0, |m| m.len()))
        .sum();
    let now = crate::topic::now_us();
    for s in pushed.segments.iter().filter(|s| s.state == SegmentState::Uploaded) {
        if Some(s.base) == active {
            continue;
        }
        let over_bytes = max_bytes.is_some_and(|m| local > m);
        let over_age = max_age.is_some_and(|age| s.last_timestamp_us < now.saturating_sub(age * 1000));
        if !over_bytes && !over_age {
            break;
        }
        let marked = manifest::update(dir, None, |m| {
            Ok(match m.get_mut(s.base) {
                Some(e) if e.state == SegmentState::Uploaded => {
                    e.state = SegmentState::Evicted;
                    true
                }
                _ => false,
            })
        })?;
        if marked != Some(true) {
            continue;
        }
        hit("tier.after_mark_evicted");
        delete_unit(dir, s)?;
        local = local.saturating_sub(s.log_bytes());
        tracing::info!(
            topic,
            base = s.base,
            bytes = s.log_bytes(),
            "evicted a segment (copy verified in the bucket)"
        );
        report.evicted.push((topic.to_owned(), Offset(s.base)));
    }
    Ok(())
}

fn delete_unit(dir: &Path, s: &SegmentEntry) -> Result<()> {
    // The log first: a crash then leaves only orphan indexes, which the appender removes.
    for f in &s.files {
        segment::remove_if_exists(&dir.join(&f.name))?;
    }
    crate::fsutil::sync_dir(dir)
}
