//! Tiering: sealed segments are copied to object storage (S3 or a directory) in the
//! background, verified, and evicted locally under a local retention; reads of evicted
//! segments fetch them into a bounded cache. See docs/tiering.md and docs/tier-format.md.
//!
//! **Invariant:** a segment's local files are deleted only after the bucket holds a copy
//! verified by size and CRC-32 *and* the bucket's manifest lists it (pushed with a
//! conditional put); until then the local files are the copy.

pub mod cache;
mod evidence;
mod hooks;
pub mod manifest;
pub mod object;
mod ranged;
mod restore;
pub mod s3;
mod status;
pub(crate) mod upload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::{Deserialize, Serialize};

pub(crate) use hooks::{evicted_bases, evicted_summary, fetch_evicted, on_retention_delete, segment_bytes, Fetched};
pub use object::{LocalDirStore, ObjError, ObjectInfo, ObjectStore, PutMode};
pub use restore::{install_signing_key, restore, RestoreReport};
pub use s3::{S3Config, S3Store};
pub use status::{TierStatus, TopicTierStatus};
pub use upload::PassReport;

use crate::error::IoContext;
use crate::{Error, Result};

/// Directory of the store holding tier settings, status, locks and the read cache.
pub const STORE_TIER_DIR: &str = "tier";
/// Default bound of the read cache: 256 MiB.
pub const CACHE_BYTES_DEFAULT: u64 = 256 << 20;

/// Where the bucket is and how tiering behaves. Every setter documents its default.
#[derive(Clone, Debug)]
pub struct TierConfig {
    url: String,
    custom: Option<Arc<dyn ObjectStore>>,
    /// Endpoint of an S3-compatible service (None: AWS). Persisted.
    pub endpoint: Option<String>,
    /// Region. Default `us-east-1` (or `AWS_REGION`). Persisted.
    pub region: Option<String>,
    /// Access key (default `AWS_ACCESS_KEY_ID`). Never persisted.
    pub access_key_id: Option<String>,
    /// Secret key (default `AWS_SECRET_ACCESS_KEY`). Never persisted.
    pub secret_access_key: Option<String>,
    /// Evict uploaded segments, oldest first, while local segment bytes exceed this. Default none.
    pub local_bytes_max: Option<u64>,
    /// Evict uploaded segments whose newest record is older than this (ms). Default none.
    pub local_age_max_ms: Option<u64>,
    /// Bound of the read cache of evicted segments. Default 256 MiB.
    pub cache_bytes_max: u64,
    /// How often the background thread looks for sealed segments (ms). Default 5,000.
    pub upload_interval_ms: u64,
    /// First retry delay after a failed pass (ms), doubled per failure. Default 1,000.
    pub retry_min_ms: u64,
    /// Longest retry delay (ms). Default 60,000.
    pub retry_max_ms: u64,
    /// Run the background upload thread. Default true.
    pub background: bool,
    /// Timeout of one object store request (ms). Default 30,000.
    pub request_timeout_ms: u64,
}

impl TierConfig {
    /// Tiering to `s3://bucket/prefix` or `file:///path`.
    pub fn url(url: impl Into<String>) -> TierConfig {
        TierConfig {
            url: url.into(),
            custom: None,
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            local_bytes_max: None,
            local_age_max_ms: None,
            cache_bytes_max: CACHE_BYTES_DEFAULT,
            upload_interval_ms: 5000,
            retry_min_ms: 1000,
            retry_max_ms: 60_000,
            background: true,
            request_timeout_ms: 30_000,
        }
    }
    /// Tiering to an object store you built (tests, other backends).
    pub fn with_store(store: Arc<dyn ObjectStore>) -> TierConfig {
        let mut config = TierConfig::url(store.describe());
        config.custom = Some(store);
        config
    }
    /// Sets [`TierConfig::endpoint`].
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }
    /// Sets [`TierConfig::region`].
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some(region.into());
        self
    }
    /// Sets the credentials.
    pub fn credentials(mut self, key: impl Into<String>, secret: impl Into<String>) -> Self {
        self.access_key_id = Some(key.into());
        self.secret_access_key = Some(secret.into());
        self
    }
    /// Sets [`TierConfig::local_bytes_max`].
    pub fn local_bytes_max(mut self, bytes: u64) -> Self {
        self.local_bytes_max = Some(bytes);
        self
    }
    /// Sets [`TierConfig::local_age_max_ms`].
    pub fn local_age_max_ms(mut self, ms: u64) -> Self {
        self.local_age_max_ms = Some(ms);
        self
    }
    /// Sets [`TierConfig::cache_bytes_max`].
    pub fn cache_bytes_max(mut self, bytes: u64) -> Self {
        self.cache_bytes_max = bytes;
        self
    }
    /// Sets [`TierConfig::upload_interval_ms`].
    pub fn upload_interval_ms(mut self, ms: u64) -> Self {
        self.upload_interval_ms = ms.max(1);
        self
    }
    /// Sets [`TierConfig::retry_min_ms`] and [`TierConfig::retry_max_ms`].
    pub fn retry_ms(mut self, min: u64, max: u64) -> Self {
        self.retry_min_ms = min.max(1);
        self.retry_max_ms = max.max(self.retry_min_ms);
        self
    }
    /// Sets [`TierConfig::request_timeout_ms`].
    pub fn request_timeout_ms(mut self, ms: u64) -> Self {
        self.request_timeout_ms = ms;
        self
    }
    /// Sets [`TierConfig::background`].
    pub fn background(mut self, on: bool) -> Self {
        self.background = on;
        self
    }

    /// The URL of the bucket prefix.
    pub fn remote_url(&self) -> &str {
        &self.url
    }

    /// Builds the object store client (no network call).
    ///
    /// # Errors
    /// A URL that is neither `s3://` nor `file://`, missing credentials, plain http to a
    /// host that is not loopback.
    pub fn open_remote(&self) -> Result<Arc<dyn ObjectStore>> {
        if let Some(store) = &self.custom {
            return Ok(Arc::clone(store));
        }
        let bad = |reason: String| Error::InvalidConfig(format!("tier URL {:?}: {reason}", self.url));
        let url = url::Url::parse(&self.url).map_err(|e| bad(e.to_string()))?;
        match url.scheme() {
            "file" => {
                let path = url
                    .to_file_path()
                    .map_err(|()| bad("not an absolute local path".into()))?;
                let store = LocalDirStore::new(path).map_err(|e| bad(e.to_string()))?;
                Ok(Arc::new(store))
            }
            "s3" => {
                let bucket = url
                    .host_str()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| bad("no bucket".into()))?;
                let s3 = S3Config {
                    endpoint: self.endpoint.clone(),
                    bucket: bucket.to_owned(),
                    prefix: url.path().trim_matches('/').to_owned(),
                    region: self.region.clone(),
                    access_key_id: self.access_key_id.clone(),
                    secret_access_key: self.secret_access_key.clone(),
                    session_token: None,
                    request_timeout: Some(Duration::from_millis(self.request_timeout_ms.max(1))),
                };
                Ok(Arc::new(S3Store::new(&s3).map_err(|e| bad(e.to_string()))?))
            }
            other => Err(bad(format!(
                "unsupported scheme {other:?}: use s3://bucket/prefix or file:///path"
            ))),
        }
    }
}

/// What `<store>/tier/config.json` keeps (never credentials).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct PersistedConfig {
    pub store_id: String,
    pub url: String,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub local_bytes_max: Option<u64>,
    pub local_age_max_ms: Option<u64>,
    pub cache_bytes_max: u64,
}

impl PersistedConfig {
    pub fn path(store_dir: &Path) -> PathBuf {
        store_dir.join(STORE_TIER_DIR).join("config.json")
    }
    pub fn load(store_dir: &Path) -> Result<Option<PersistedConfig>> {
        let path = Self::path(store_dir);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| Error::Corrupt {
                file: path,
                byte_pos: 0,
                reason: format!("tier settings do not parse: {e}"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context(|| format!("reading {}", path.display())),
        }
    }
    pub fn save(&self, store_dir: &Path) -> Result<()> {
        let dir = store_dir.join(STORE_TIER_DIR);
        std::fs::create_dir_all(&dir).context(|| format!("creating {}", dir.display()))?;
        let text = serde_json::to_vec_pretty(self).map_err(|e| Error::InvalidConfig(e.to_string()))?;
        crate::fsutil::write_atomic(&Self::path(store_dir), &text)
    }
    pub fn to_config(&self) -> TierConfig {
        TierConfig {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            local_bytes_max: self.local_bytes_max,
            local_age_max_ms: self.local_age_max_ms,
            cache_bytes_max: self.cache_bytes_max,
            ..TierConfig::url(self.url.clone())
        }
    }
}

struct Signal {
    state: Mutex<SignalState>,
    cond: Condvar,
}

#[derive(Default)]
struct SignalState {
    /// A pass is wanted now.
    wake: bool,
    /// The store closes: no more passes.
    stop: bool,
}

/// How often close looks whether the background thread has ended.
const UPLOADER_END_POLL: Duration = Duration::from_millis(1);

/// The tiering side of one open store: the object store, the cache, the status, and
/// the background thread.
pub struct StoreTier {
    pub(crate) store_dir: PathBuf,
    pub(crate) store_id: String,
    pub(crate) remote: Arc<dyn ObjectStore>,
    pub(crate) cache: cache::SegmentCache,
    pub(crate) config: TierConfig,
    pub(crate) status: Mutex<status::RunStatus>,
    signal: Arc<Signal>,
    /// Completes the background seals of the store's open topics (set by the store), so
    /// that an explicit upload sees every rolled segment as sealed.
    pub(crate) seal_hook: OnceLock<Box<dyn Fn() -> Result<()> + Send + Sync>>,
    /// The background thread, until [`StoreTier::stop_background`] joins it.
    uploader: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for StoreTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreTier")
            .field("remote", &self.remote.describe())
            .finish_non_exhaustive()
    }
}

impl StoreTier {
    /// Opens tiering for the store in `store_dir`, persists its settings, registers it for
    /// the read hooks and starts the background thread. A definitive configuration error
    /// (credentials refused, no such bucket) fails here; an unreachable server does not.
    pub(crate) fn start(store_dir: &Path, config: TierConfig) -> Result<Arc<StoreTier>> {
        let remote = config.open_remote()?;
        let store_id = match PersistedConfig::load(store_dir)? {
            Some(p) => p.store_id,
            None => format!("{:016x}", rand::random::<u64>()),
        };
        if let Err(e @ ObjError::Config(_)) = remote.list("topics/") {
            return Err(tier_error(remote.as_ref(), "topics/", "checking the bucket", e));
        }
        PersistedConfig {
            store_id: store_id.clone(),
            url: config.url.clone(),
            endpoint: config.endpoint.clone(),
            region: config.region.clone(),
            local_bytes_max: config.local_bytes_max,
            local_age_max_ms: config.local_age_max_ms,
            cache_bytes_max: config.cache_bytes_max,
        }
        .save(store_dir)?;
        let tier = Self::new(store_dir, store_id, remote, config);
        register(&tier);
        if tier.config.background {
            spawn_uploader(&tier);
        }
        Ok(tier)
    }

    pub(crate) fn new(
        store_dir: &Path,
        store_id: String,
        remote: Arc<dyn ObjectStore>,
        config: TierConfig,
    ) -> Arc<Self> {
        let cache_dir = store_dir.join(STORE_TIER_DIR).join("cache");
        Arc::new(StoreTier {
            store_dir: store_dir.to_path_buf(),
            store_id,
            remote,
            cache: cache::SegmentCache::open(cache_dir, config.cache_bytes_max),
            config,
            status: Mutex::new(status::RunStatus::default()),
            signal: Arc::new(Signal {
                state: Mutex::new(SignalState::default()),
                cond: Condvar::new(),
            }),
            seal_hook: OnceLock::new(),
            uploader: Mutex::new(None),
        })
    }

    /// Wakes the background thread (after a roll, say).
    pub fn wake(&self) {
        self.signal.state.lock().wake = true;
        self.signal.cond.notify_all();
    }

    /// Stops the background thread and waits for it to end (the store closes). A pass
    /// it is running stops before its next segment, and what it did not reach is resumed
    /// by the next pass, whoever runs it. The wait is bounded by `request_timeout_ms`: a
    /// request still running then (a bucket that hangs, retried) is left to end on its
    /// own — uploads are idempotent — and close does not hang on the network.
    pub(crate) fn stop_background(&self) {
        self.signal.stop();
        let Some(handle) = self.uploader.lock().take() else {
            return;
        };
        let deadline = Instant::now() + Duration::from_millis(self.config.request_timeout_ms);
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(UPLOADER_END_POLL);
        }
        if handle.is_finished() {
            crate::topic::join_thread(handle, "tier upload");
        } else {
            tracing::warn!(
                wait_ms = self.config.request_timeout_ms,
                "the tier upload thread is still in a request; close leaves it to end on its own"
            );
        }
    }

    /// True once the store is closing: passes stop early.
    pub(crate) fn stopping(&self) -> bool {
        self.signal.state.lock().stop
    }

    /// Runs one upload / verify / evict / remote-delete pass now, in this thread,
    /// waiting for a pass running elsewhere to finish first.
    ///
    /// # Errors
    /// [`Error::Closed`] after the store was closed; else the first error met (the
    /// other topics were still processed).
    pub fn upload_now(&self) -> Result<PassReport> {
        if self.stopping() {
            return Err(Error::Closed);
        }
        if let Some(seal) = self.seal_hook.get() {
            seal()?;
        }
        upload::run_pass(self, true)
    }

    /// Pending uploads, bytes, evictions, the last error.
    ///
    /// # Errors
    /// I/O errors reading manifests.
    pub fn status(&self) -> Result<TierStatus> {
        status::collect(&self.store_dir, Some(self))
    }
}

impl Drop for StoreTier {
    fn drop(&mut self) {
        self.signal.stop();
    }
}

impl Signal {
    /// Tells the background thread to stop (and passes to stop early).
    fn stop(&self) {
        self.state.lock().stop = true;
        self.cond.notify_all();
    }
}

fn spawn_uploader(tier: &Arc<StoreTier>) {
    let weak = Arc::downgrade(tier);
    let signal = Arc::clone(&tier.signal);
    let spawned = std::thread::Builder::new()
        .name("trailkeep-tier".into())
        .spawn(move || {
            let mut failures = 0u32;
            loop {
                let Some(tier) = weak.upgrade() else { return };
                let delay = if failures == 0 {
                    tier.config.upload_interval_ms
                } else {
                    let shift = (failures - 1).min(16);
                    (tier.config.retry_min_ms << shift).min(tier.config.retry_max_ms)
                };
                drop(tier);
                {
                    let mut state = signal.state.lock();
                    if !state.wake && !state.stop {
                        signal.cond.wait_for(&mut state, Duration::from_millis(delay));
                    }
                    if state.stop {
                        return;
                    }
                    state.wake = false;
                }
                let Some(tier) = weak.upgrade() else { return };
                match upload::run_pass(&tier, false) {
                    Ok(_) => failures = 0,
                    Err(e) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(error = %e, failures, "tier pass failed; retrying with backoff");
                    }
                }
            }
        });
    match spawned {
        Ok(handle) => *tier.uploader.lock() = Some(handle),
        Err(e) => tracing::error!(error = %e, "cannot start the tier upload thread"),
    }
}

type Registry = Mutex<Vec<(PathBuf, Weak<StoreTier>)>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Mutex::new(Vec::new()))
}

fn canonical(dir: &Path) -> PathBuf {
    std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

fn register(tier: &Arc<StoreTier>) {
    let key = canonical(&tier.store_dir);
    let mut reg = registry().lock();
    reg.retain(|(_, w)| w.strong_count() > 0);
    reg.insert(0, (key, Arc::downgrade(tier)));
}

/// The tier of the store in `store_dir`: the registered one, else one opened from the
/// persisted settings for reads only (no background thread; credentials from the
/// environment).
pub(crate) fn tier_for(store_dir: &Path) -> Result<Option<Arc<StoreTier>>> {
    let key = canonical(store_dir);
    if let Some(t) = registry()
        .lock()
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(Some(t));
    }
    let Some(persisted) = PersistedConfig::load(store_dir)? else {
        return Ok(None);
    };
    let config = persisted.to_config().background(false);
    let tier = StoreTier::new(store_dir, persisted.store_id, config.open_remote()?, config);
    register(&tier);
    // Read-only tiers live as long as the process: leak one strong count on purpose.
    std::mem::forget(Arc::clone(&tier));
    Ok(Some(tier))
}

/// An object store failure as an engine error naming the store, the key and the step.
pub(crate) fn tier_error(store: &dyn ObjectStore, key: &str, what: &str, e: ObjError) -> Error {
    Error::Io {
        context: format!("{what} {}/{key}", store.describe().trim_end_matches('/')),
        source: std::io::Error::other(e),
    }
}

impl crate::Store {
    /// The store's tiering, when it was opened with [`crate::StoreConfig::tiering`].
    pub fn tier(&self) -> Option<&Arc<StoreTier>> {
        self.tier_handle()
    }

    /// Tiering status: pending uploads and bytes, evicted segments, the last error. Works
    /// without tiering configured in this process (reads the manifests and the status the
    /// uploading process left).
    ///
    /// # Errors
    /// I/O errors reading manifests.
    pub fn tier_status(&self) -> Result<TierStatus> {
        status::collect(self.dir(), self.tier_handle().map(|t| t.as_ref()))
    }
}
