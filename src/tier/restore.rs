//! Disaster recovery: rebuilds a store in an empty directory from the bucket alone.
//! Every segment the bucket's manifests list as verified becomes an evicted segment (or,
//! with `download`, a local one again); the topic's settings come from the manifest; an
//! empty active segment starts where the last restored segment ends.

use std::path::Path;

use crate::error::IoContext;
use crate::segment::{self, LOG_EXT};
use crate::tier::manifest::{self, Manifest, SegmentState};
use crate::tier::{cache, evidence, tier_error, PersistedConfig, TierConfig};
use crate::{Error, Offset, Result};

/// What a restore rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Per topic: name, segments restored, the offset after the last restored record.
    pub topics: Vec<(String, usize, Offset)>,
    /// Bytes downloaded (with `download`).
    pub downloaded_bytes: u64,
    /// Offset ranges no restored segment holds (segments that never reached the bucket):
    /// between restored segments, and past the last one up to the largest size a stored
    /// checkpoint states (the tail known to be lost; records after the last checkpoint
    /// leave no trace in the bucket).
    pub gaps: Vec<(String, Offset, Offset)>,
    /// Per topic with tamper evidence in the bucket: name, stored checkpoints restored,
    /// checkpoints set aside in `checkpoints.unrestored.log` because they cover records
    /// past the restored log's end (records that never reached the bucket).
    pub checkpoints: Vec<(String, usize, usize)>,
}

/// Parses an uploaded `start.offset` (u64 offset, u32 CRC-32 of it, little-endian).
fn parse_start(bytes: &[u8]) -> Option<u64> {
    let offset: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let crc: [u8; 4] = bytes.get(8..12)?.try_into().ok()?;
    (bytes.len() == 12 && crc32fast::hash(&offset) == u32::from_le_bytes(crc)).then(|| u64::from_le_bytes(offset))
}

/// Installs a kept signing key as `<store>/keys/checkpoint.key` (mode 0600), so that the
/// restored store verifies its stored checkpoints and signs new ones with the old key.
/// The key is never uploaded: keep a copy of it (or at least of the verifier key) apart.
///
/// # Errors
/// I/O errors; [`Error::InvalidConfig`] when a key is installed already.
pub fn install_signing_key(store_dir: &Path, key_file: &Path) -> Result<()> {
    let dir = store_dir.join(crate::store::KEYS_DIR);
    let target = dir.join(crate::store::SIGNING_KEY_FILE);
    if target.exists() {
        return Err(Error::InvalidConfig(format!("{} exists already", target.display())));
    }
    let key = std::fs::read(key_file).context(|| format!("reading {}", key_file.display()))?;
    std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
    crate::fsutil::write_atomic(&target, &key)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
        .context(|| format!("setting the mode of {}", target.display()))
}

/// Restores the bucket prefix of `config` into `store_dir`, which must be empty or absent.
/// With `download`, every segment is fetched and verified now; otherwise segments stay in
/// the bucket and are fetched on first read.
///
/// # Errors
/// [`Error::InvalidConfig`] for a non-empty directory or an empty bucket prefix; object
/// store errors naming the key; [`Error::Corrupt`] for a manifest or object that does not
/// match.
pub fn restore(store_dir: &Path, config: &TierConfig, download: bool) -> Result<RestoreReport> {
    let occupied = std::fs::read_dir(store_dir)
        .map(|mut d| d.next().is_some())
        .unwrap_or(false);
    if occupied {
        return Err(Error::InvalidConfig(format!(
            "restore needs an empty directory; {} is not empty",
            store_dir.display()
        )));
    }
    let remote = config.open_remote()?;
    let store = remote.as_ref();
    let listed = store
        .list("topics/")
        .map_err(|e| tier_error(store, "topics/", "listing", e))?;
    let keys: Vec<String> = listed
        .into_iter()
        .map(|o| o.key)
        .filter(|k| {
            let parts: Vec<&str> = k.split('/').collect();
            parts.len() == 3 && parts[2] == "manifest.json"
        })
        .collect();
    if keys.is_empty() {
        return Err(Error::InvalidConfig(format!(
            "{} holds no topic manifest (nothing to restore)",
            store.describe()
        )));
    }
    let mut manifests = Vec::new();
    for key in &keys {
        let Some((bytes, _)) = store.get(key).map_err(|e| tier_error(store, key, "reading", e))? else {
            continue;
        };
        manifests.push(Manifest::decode(
            &bytes,
            Path::new(&format!("{}/{key}", store.describe())),
        )?);
    }
    let store_id = manifests.first().map(|m| m.store_id.clone()).unwrap_or_default();
    crate::Store::open(store_dir)?;
    let mut report = RestoreReport::default();
    let mut store_ids: Vec<String> = Vec::new();
    for remote_m in manifests {
        let dir = store_dir.join(crate::store::TOPICS_DIR).join(&remote_m.topic);
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let topic_config = if remote_m.topic_config.is_null() {
            serde_json::to_value(crate::TopicConfig::default()).unwrap_or_default()
        } else {
            remote_m.topic_config.clone()
        };
        let text = serde_json::to_vec_pretty(&topic_config).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        crate::fsutil::write_atomic(&dir.join(crate::topic::config::CONFIG_FILE), &text)?;
        let mut local = remote_m.clone();
        local.segments.retain(|s| s.in_bucket());
        let evidence = evidence::fetch(store, &local.topic)?;
        let file = |name: &str| {
            evidence
                .iter()
                .flatten()
                .find(|(n, _)| n == name)
                .map(|(_, b)| b.as_slice())
        };
        // Segments below the uploaded start offset were being deleted by retention.
        let uploaded_start = file(segment::START_FILE).and_then(parse_start);
        if let Some(start) = uploaded_start.filter(|&u| local.segments.iter().any(|s| s.base >= u)) {
            for s in local.segments.iter_mut().filter(|s| s.base < start) {
                s.state = SegmentState::Deleting;
            }
        }
        for s in local.segments.iter_mut().filter(|s| s.in_bucket()) {
            if download {
                for f in &s.files {
                    let key = manifest::remote_file_key(&local.topic, s.base, &f.name);
                    cache::download(store, &key, f.bytes, f.crc32, &dir.join(&f.name))?;
                    report.downloaded_bytes += f.bytes;
                }
                s.state = SegmentState::Uploaded;
            } else {
                s.state = SegmentState::Evicted;
            }
        }
        if local != remote_m {
            local.generation += 1;
        }
        let kept: Vec<&manifest::SegmentEntry> = local.segments.iter().filter(|s| s.in_bucket()).collect();
        let mut expected = kept.first().map_or(0, |s| s.base);
        for s in &kept {
            if s.base != expected {
                report
                    .gaps
                    .push((local.topic.clone(), Offset(expected), Offset(s.base)));
            }
            expected = s.end_offset;
        }
        std::fs::create_dir_all(dir.join(manifest::TIER_DIR)).context(|| format!("creating {}", dir.display()))?;
        crate::fsutil::write_atomic(&manifest::manifest_path(&dir), &local.encode())?;
        if let (Some(first), Some(last)) = (kept.first(), kept.last()) {
            // The first offset held is the first restored segment's base.
            segment::write_start_offset(&dir, Offset(first.base))?;
            // The active segment: empty, where the restored log ends.
            let path = dir.join(segment::file_name(Offset(last.end_offset), LOG_EXT));
            std::fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
            crate::fsutil::sync_dir(&dir)?;
        }
        if let Some(files) = &evidence {
            let installed = evidence::install(&dir, files, expected)?;
            if installed.checkpointed > expected {
                // The lost tail: records a stored checkpoint covers past the restored log.
                report
                    .gaps
                    .push((local.topic.clone(), Offset(expected), Offset(installed.checkpointed)));
            }
            report
                .checkpoints
                .push((local.topic.clone(), installed.checkpoints, installed.dropped));
            if let Some(id) = file(crate::store::STORE_ID_FILE) {
                store_ids.push(String::from_utf8_lossy(id).trim().to_owned());
            }
        }
        report.topics.push((local.topic.clone(), kept.len(), Offset(expected)));
    }
    // Checkpoint origins name the store id: the restored store keeps the old one.
    if let Some(id) = store_ids.first() {
        if store_ids.iter().any(|other| other != id) {
            return Err(Error::InvalidConfig(format!(
                "the topics in {} come from different stores ({}); restore one store per prefix",
                store.describe(),
                store_ids.join(", ")
            )));
        }
        let valid = id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            return Err(cache::remote_corrupt(
                store,
                "topics/",
                format!("uploaded store id {id:?} is not 16 hex digits"),
            ));
        }
        crate::fsutil::write_atomic(
            &store_dir.join(crate::store::STORE_ID_FILE),
            format!("{id}\n").as_bytes(),
        )?;
    }
    PersistedConfig {
        store_id,
        url: config.remote_url().to_owned(),
        endpoint: config.endpoint.clone(),
        region: config.region.clone(),
        local_bytes_max: config.local_bytes_max,
        local_age_max_ms: config.local_age_max_ms,
        cache_bytes_max: config.cache_bytes_max,
    }
    .save(store_dir)?;
    Ok(report)
}
