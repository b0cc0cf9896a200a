//! The store: a directory of topics, a registry of open topics, and the settings builder.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::IoContext;
use crate::topic::{validate_topic_name, Topic, TopicConfig};
use crate::wal::Durability;
use crate::{Error, Result};

/// Sub-directory holding one directory per topic.
pub const TOPICS_DIR: &str = "topics";
/// Marker file naming the store format version.
pub const STORE_MARKER: &str = "trailkeep.store";
/// File holding the store's identity.
pub const STORE_ID_FILE: &str = "store.id";
/// Directory of the store's keys.
pub const KEYS_DIR: &str = "keys";
/// The checkpoint signing key (mode 0600), unless a key file is configured.
pub const SIGNING_KEY_FILE: &str = "checkpoint.key";
const STORE_MARKER_TEXT: &str = "trailkeep store format 1\n";

/// Settings of a store. Every setter documents its default.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    dir: PathBuf,
    durability: Durability,
    default_topic: TopicConfig,
    create: bool,
    signing_key_file: Option<PathBuf>,
    tiering: Option<crate::tier::TierConfig>,
}

impl StoreConfig {
    /// Settings for the store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            dir: dir.into(),
            durability: Durability::Always,
            default_topic: TopicConfig::default(),
            create: true,
            signing_key_file: None,
            tiering: None,
        }
    }

    /// When appends are acknowledged. Default: [`Durability::Always`].
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Settings for topics created on first append. Default: [`TopicConfig::default`].
    pub fn default_topic_config(mut self, config: TopicConfig) -> Self {
        self.default_topic = config;
        self
    }

    /// The checkpoint signing key file (created with mode 0600 if missing). Default:
    /// `<store>/keys/checkpoint.key`.
    pub fn signing_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.signing_key_file = Some(path.into());
        self
    }

    /// Whether to create a store when `dir` holds none (missing or empty). Default: true;
    /// with false, opening such a directory fails and creates nothing.
    pub fn create_if_missing(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Copies sealed segments to object storage and evicts local copies under a local
    /// retention (see `docs/tiering.md`). Default: off.
    pub fn tiering(mut self, tier: crate::tier::TierConfig) -> Self {
        self.tiering = Some(tier);
        self
    }

    /// Opens the store.
    ///
    /// # Errors
    /// As for [`Store::open`].
    pub fn open(self) -> Result<Store> {
        Store::open_with(self, None)
    }
}

struct StoreInner {
    config: StoreConfig,
    keys: Mutex<Option<Arc<crate::topic::evidence::Keys>>>,
    topics: Mutex<HashMap<String, Topic>>,
    tier: Option<Arc<crate::tier::StoreTier>>,
    _temp: Option<tempfile::TempDir>,
}

/// An open store. Cheap to clone; clones share open topics.
///
/// ```
/// # fn main() -> trailkeep::Result<()> {
/// use trailkeep::{NewRecord, Offset, Store};
/// let store = Store::temporary()?;
/// let trail = store.topic_or_create("agent-trail")?;
/// let offset = trail.append(&NewRecord::new(r#"{"kind":"tool_call"}"#).with_key("trace-1"))?;
/// assert_eq!(offset, Offset(0));
/// assert_eq!(trail.read(offset)?.key.as_deref(), Some(&b"trace-1"[..]));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.inner.config.dir)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `dir` with default settings. Opening takes
    /// no lock: a topic's append lock is taken by the first append to it.
    ///
    /// # Errors
    /// I/O errors, or [`Error::Corrupt`] when `dir` holds something that is not a store.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store> {
        StoreConfig::new(dir.as_ref()).open()
    }

    /// Settings builder for the store in `dir`.
    pub fn builder(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig::new(dir)
    }

    /// A store in a new temporary directory, deleted when the last clone is dropped.
    /// Durability is [`Durability::Buffered`]: a test store need not survive power loss.
    ///
    /// # Errors
    /// I/O errors creating the directory.
    pub fn temporary() -> Result<Store> {
        let temp = tempfile::Builder::new()
            .prefix("trailkeep-")
            .tempdir()
            .context(|| "creating a temporary directory".to_owned())?;
        crate::fsutil::register_volatile(temp.path());
        let config = StoreConfig::new(temp.path()).durability(Durability::Buffered);
        Store::open_with(config, Some(temp))
    }

    /// True when `dir` holds a store: its marker file, or the `topics` directory of a
    /// store written before the marker existed (opening it adds the marker).
    pub fn exists_at(dir: &Path) -> bool {
        dir.join(STORE_MARKER).exists() || dir.join(TOPICS_DIR).is_dir()
    }

    fn open_with(config: StoreConfig, temp: Option<tempfile::TempDir>) -> Result<Store> {
        let dir = &config.dir;
        let marker = dir.join(STORE_MARKER);
        match std::fs::read_to_string(&marker) {
            Ok(text) if text == STORE_MARKER_TEXT => {}
            Ok(_) => {
                return Err(Error::Corrupt {
                    file: marker,
                    byte_pos: 0,
                    reason: "not a trailkeep store marker of a known version".into(),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let occupied = std::fs::read_dir(dir).map(|mut d| d.next().is_some()).unwrap_or(false);
                if occupied && !dir.join(TOPICS_DIR).is_dir() {
                    return Err(Error::InvalidConfig(format!(
                        "{} is not empty and is not a trailkeep store",
                        dir.display()
                    )));
                }
                if !config.create && !Store::exists_at(dir) {
                    return Err(Error::InvalidConfig(format!(
                        "no trailkeep store at {} (nothing was created there)",
                        dir.display()
                    )));
                }
                std::fs::create_dir_all(dir.join(TOPICS_DIR))
                    .context(|| format!("creating store {}", dir.display()))?;
                crate::fsutil::sync_dir(dir)?;
                crate::fsutil::write_atomic(&marker, STORE_MARKER_TEXT.as_bytes())?;
            }
            Err(e) => return Err(e).context(|| format!("reading {}", marker.display())),
        }
        // Tiering hook: starts the uploader (and fails on a refused bucket or credentials).
        let tier = match &config.tiering {
            Some(tier) => Some(crate::tier::StoreTier::start(dir, tier.clone())?),
            None => None,
        };
        let inner = Arc::new(StoreInner {
            config,
            tier,
            keys: Mutex::new(None),
            topics: Mutex::new(HashMap::new()),
            _temp: temp,
        });
        if let Some(tier) = &inner.tier {
            let weak = Arc::downgrade(&inner);
            let _ = tier.seal_hook.set(Box::new(move || {
                let Some(inner) = weak.upgrade() else { return Ok(()) };
                let topics: Vec<Topic> = inner.topics.lock().values().cloned().collect();
                topics.iter().try_for_each(|t| t.shared.seal_pending())
            }));
        }
        Ok(Store { inner })
    }

    /// The store's identity: 16 hex digits made once, kept in `store.id`. It names the
    /// signing key (`trailkeep/<id>`) and every checkpoint's origin (`trailkeep/<id>/<topic>`).
    ///
    /// # Errors
    /// I/O errors reading or creating the file.
    pub fn store_id(&self) -> Result<String> {
        let path = self.dir().join(STORE_ID_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) if text.trim().len() == 16 && text.trim().bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(text.trim().to_owned())
            }
            Ok(_) => Err(Error::Corrupt {
                file: path,
                byte_pos: 0,
                reason: "store id is not 16 hex digits".into(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = format!("{:016x}", rand::random::<u64>());
                crate::fsutil::write_atomic(&path, format!("{id}\n").as_bytes())?;
                Ok(id)
            }
            Err(e) => Err(e).context(|| format!("reading {}", path.display())),
        }
    }

    fn keys(&self) -> Result<Arc<crate::topic::evidence::Keys>> {
        let mut slot = self.inner.keys.lock();
        if let Some(keys) = slot.as_ref() {
            return Ok(Arc::clone(keys));
        }
        let path = match &self.inner.config.signing_key_file {
            Some(p) => p.clone(),
            None => self.dir().join(KEYS_DIR).join(SIGNING_KEY_FILE),
        };
        let keys = Arc::new(crate::topic::evidence::Keys::new(
            path,
            format!("trailkeep/{}", self.store_id()?),
        ));
        *slot = Some(Arc::clone(&keys));
        Ok(keys)
    }

    /// The public key verifying this store's checkpoints, in vkey form.
    ///
    /// # Errors
    /// I/O errors loading or creating the key.
    pub fn verifier_key(&self) -> Result<String> {
        Ok(self.keys()?.verifier()?.to_vkey())
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.inner.config.dir
    }

    /// Tiering hook: the store's tiering, if configured (see `crate::tier`).
    pub(crate) fn tier_handle(&self) -> Option<&Arc<crate::tier::StoreTier>> {
        self.inner.tier.as_ref()
    }

    fn topic_dir(&self, name: &str) -> PathBuf {
        self.inner.config.dir.join(TOPICS_DIR).join(name)
    }

    /// Creates a topic with explicit settings.
    ///
    /// # Errors
    /// [`Error::TopicExists`], [`Error::InvalidTopicName`], [`Error::InvalidConfig`], I/O errors.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<Topic> {
        validate_topic_name(name)?;
        config.validate()?;
        let dir = self.topic_dir(name);
        if dir.join(crate::topic::config::CONFIG_FILE).exists() {
            return Err(Error::TopicExists(name.to_owned()));
        }
        if let Some(err) = config_lost(&dir) {
            return Err(err);
        }
        std::fs::create_dir_all(&dir).context(|| format!("creating topic directory {}", dir.display()))?;
        crate::fsutil::sync_dir(&self.inner.config.dir.join(TOPICS_DIR))?;
        if !config.save_new(&dir)? {
            return Err(Error::TopicExists(name.to_owned()));
        }
        self.topic(name)
    }

    /// Opens an existing topic.
    ///
    /// # Errors
    /// [`Error::NoSuchTopic`], [`Error::InvalidTopicName`], I/O errors.
    pub fn topic(&self, name: &str) -> Result<Topic> {
        validate_topic_name(name)?;
        let mut topics = self.inner.topics.lock();
        if let Some(topic) = topics.get(name) {
            return Ok(topic.clone());
        }
        let dir = self.topic_dir(name);
        if !dir.join(crate::topic::config::CONFIG_FILE).exists() {
            return Err(config_lost(&dir).unwrap_or_else(|| Error::NoSuchTopic(name.to_owned())));
        }
        let config = TopicConfig::load(&dir)?;
        let origin = format!("trailkeep/{}/{name}", self.store_id()?);
        let topic = Topic::open(
            dir,
            name.to_owned(),
            config,
            self.inner.config.durability,
            self.keys()?,
            origin,
        )?;
        topics.insert(name.to_owned(), topic.clone());
        Ok(topic)
    }

    /// Opens a topic, creating it with the store's default topic settings if needed.
    ///
    /// # Errors
    /// As for [`Store::create_topic`] and [`Store::topic`].
    pub fn topic_or_create(&self, name: &str) -> Result<Topic> {
        match self.topic(name) {
            Err(Error::NoSuchTopic(_)) => match self.create_topic(name, self.inner.config.default_topic.clone()) {
                Err(Error::TopicExists(_)) => self.topic(name),
                other => other,
            },
            other => other,
        }
    }

    /// Names of every topic, sorted: directories with a `topic.json`, and those that lost
    /// it but hold segments (opening one fails with an [`Error::Io`] saying so).
    ///
    /// # Errors
    /// I/O errors listing the directory.
    pub fn topic_names(&self) -> Result<Vec<String>> {
        let dir = self.inner.config.dir.join(TOPICS_DIR);
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).context(|| format!("listing {}", dir.display()))? {
            let entry = entry.context(|| format!("listing {}", dir.display()))?;
            if let Some(name) = entry.file_name().to_str() {
                let path = entry.path();
                let is_topic = path.join(crate::topic::config::CONFIG_FILE).exists() || config_lost(&path).is_some();
                if validate_topic_name(name).is_ok() && is_topic {
                    names.push(name.to_owned());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Syncs and releases every topic this process appends to, and stops tiering's
    /// background thread (waiting for an upload in flight to complete).
    ///
    /// # Errors
    /// The first sync error; every topic is still closed.
    pub fn close(self) -> Result<()> {
        let topics: Vec<Topic> = self.inner.topics.lock().values().cloned().collect();
        let mut first_error = None;
        for topic in topics {
            if let Err(e) = topic.close() {
                first_error.get_or_insert(e);
            }
        }
        if let Some(tier) = &self.inner.tier {
            tier.stop_background();
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for StoreInner {
    fn drop(&mut self) {
        for topic in self.topics.get_mut().values() {
            if let Err(e) = topic.close() {
                tracing::error!(topic = topic.name(), error = %e, "closing topic on drop failed");
            }
        }
        if let Some(tier) = &self.tier {
            tier.stop_background();
        }
        if let Some(temp) = &self._temp {
            crate::fsutil::forget_volatile(temp.path());
        }
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
};

/// The error for a topic directory that holds segments but no `topic.json` (deleted or
/// lost by hand): opening it as a new topic would write default settings over a log
/// written with others, and listing or reading it as absent would hide its records.
/// None when the directory is absent or holds no segment (a crash while creating the
/// topic leaves it empty).
fn config_lost(dir: &std::path::Path) -> Option<Error> {
    let segment = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name())
        .find(|n| {
            n.to_str()
                .and_then(|n| crate::segment::parse_file_name(n, crate::segment::LOG_EXT))
                .is_some()
        })?;
    Some(Error::Io {
        context: format!(
            "the topic directory {} holds segments ({}) but not its settings file {}: restore the file \
             (its fields are in FORMAT.md) rather than re-create the topic",
            dir.display(),
            segment.to_string_lossy(),
            crate::topic::config::CONFIG_FILE
        ),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
    })
}
