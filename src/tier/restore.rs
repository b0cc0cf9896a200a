//! Disaster recovery: rebuilds a store in an empty directory from the bucket alone.
//! Every segment the bucket's manifests list as verified becomes an evicted segment (or,
//! with `download`, a local one again); the topic's settings come from the manifest; an
//! empty active segment starts where the last restored segment ends.

use std::path::Path;

use crate::error::IoContext;
use crate::segment::{self, LOG_EXT};
use crate::tier::manifest::{self, Manifest, SegmentState};
use crate::tier::{cache, tier_error, PersistedConfig, TierConfig};
use crate::{Error, Offset, Result};

/// What a restore rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Per topic: name, segments restored, the offset after the last restored record.
    pub topics: Vec<(String, usize, Offset)>,
    /// Bytes downloaded (with `download`).
    pub downloaded_bytes: u64,
    /// Offset ranges no restored segment holds (segments that never reached the bucket).
    pub gaps: Vec<(String, Offset, Offset)>,
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
        for s in &mut local.segments {
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
        let mut expected = local.segments.first().map_or(0, |s| s.base);
        for s in &local.segments {
            if s.base != expected {
                report
                    .gaps
                    .push((local.topic.clone(), Offset(expected), Offset(s.base)));
            }
            expected = s.end_offset;
        }
        std::fs::create_dir_all(dir.join(manifest::TIER_DIR)).context(|| format!("creating {}", dir.display()))?;
        crate::fsutil::write_atomic(&manifest::manifest_path(&dir), &local.encode())?;
        if let Some(last) = local.segments.last() {
            // The active segment: empty, where the restored log ends.
            let path = dir.join(segment::file_name(Offset(last.end_offset), LOG_EXT));
            std::fs::File::create(&path).context(|| format!("creating {}", path.display()))?;
            crate::fsutil::sync_dir(&dir)?;
        }
        report
            .topics
            .push((local.topic.clone(), local.segments.len(), Offset(expected)));
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
