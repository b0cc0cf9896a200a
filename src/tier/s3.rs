//! S3-compatible object storage through the `object_store` crate, behind the synchronous
//! [`ObjectStore`] trait: a private single-threaded tokio runtime runs each call.

use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, ObjectStore as _, PutOptions, PutPayload, RetryConfig, UpdateVersion, WriteMultipart,
};

use crate::tier::object::{ObjError, ObjResult, ObjectInfo, ObjectStore, PutMode};

/// Files above this size are uploaded in parts of this size.
const PART_BYTES: usize = 8 << 20;

/// Where and how to reach an S3-compatible bucket.
#[derive(Clone, Debug, Default)]
pub struct S3Config {
    /// Endpoint URL, e.g. `http://127.0.0.1:9000`; None for AWS itself.
    pub endpoint: Option<String>,
    /// Bucket name.
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`), may be empty.
    pub prefix: String,
    /// Region. Default `us-east-1`.
    pub region: Option<String>,
    /// Access key; None reads `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// Secret key; None reads `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// Session token; None reads `AWS_SESSION_TOKEN` (optional).
    pub session_token: Option<String>,
    /// Timeout of one request. Default 30 s.
    pub request_timeout: Option<Duration>,
}

/// An S3 bucket (prefix) as an [`ObjectStore`].
pub struct S3Store {
    store: Arc<dyn object_store::ObjectStore>,
    runtime: tokio::runtime::Runtime,
    bucket: String,
    prefix: String,
    endpoint: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("url", &self.describe())
            .finish_non_exhaustive()
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl S3Store {
    /// Builds the client. Does not contact the server (see [`S3Store::check`]).
    ///
    /// # Errors
    /// [`ObjError::Config`] for missing credentials, a bad endpoint, or plain http to a
    /// host that is not loopback.
    pub fn new(config: &S3Config) -> ObjResult<S3Store> {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let key = config.access_key_id.clone().or_else(|| env("AWS_ACCESS_KEY_ID"));
        let secret = config
            .secret_access_key
            .clone()
            .or_else(|| env("AWS_SECRET_ACCESS_KEY"));
        let (Some(key), Some(secret)) = (key, secret) else {
            return Err(ObjError::Config(format!(
                "no credentials for bucket {:?}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
                config.bucket
            )));
        };
        if config.bucket.is_empty() {
            return Err(ObjError::Config("the bucket name is empty".into()));
        }
        let region = config
            .region
            .clone()
            .or_else(|| env("AWS_REGION"))
            .unwrap_or_else(|| "us-east-1".into());
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(region)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_retry(RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            });
        if let Some(token) = config.session_token.clone().or_else(|| env("AWS_SESSION_TOKEN")) {
            builder = builder.with_token(token);
        }
        let mut options = ClientOptions::new()
            .with_timeout(config.request_timeout.unwrap_or(Duration::from_secs(30)))
            .with_connect_timeout(Duration::from_secs(5));
        let endpoint = match &config.endpoint {
            Some(endpoint) => {
                let url = url::Url::parse(endpoint)
                    .map_err(|e| ObjError::Config(format!("endpoint {endpoint:?} is not a URL: {e}")))?;
                match url.scheme() {
                    "https" => {}
                    "http" if url.host_str().is_some_and(is_loopback) => options = options.with_allow_http(true),
                    "http" => {
                        return Err(ObjError::Config(format!(
                            "endpoint {endpoint}: plain http is allowed only for loopback hosts; use https"
                        )))
                    }
                    other => {
                        return Err(ObjError::Config(format!(
                            "endpoint {endpoint}: unsupported scheme {other:?}"
                        )))
                    }
                }
                builder = builder.with_endpoint(endpoint).with_virtual_hosted_style_request(false);
                endpoint.clone()
            }
            None => "AWS S3".into(),
        };
        let store = builder
            .with_client_options(options)
            .build()
            .map_err(|e| ObjError::Config(format!("bucket {:?}: {e}", config.bucket)))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ObjError::Other(format!("starting the S3 client runtime: {e}")))?;
        Ok(S3Store {
            store: Arc::new(store),
            runtime,
            bucket: config.bucket.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
            endpoint,
        })
    }

    /// Lists one key to check that the bucket exists and the credentials are accepted.
    ///
    /// # Errors
    /// [`ObjError::Config`] naming the bucket and endpoint.
    pub fn check(&self) -> ObjResult<()> {
        let prefix = self.full("");
        let store = Arc::clone(&self.store);
        self.runtime
            .block_on(async move {
                let path = ObjPath::from(prefix.as_str());
                let mut stream = store.list(Some(&path));
                stream.try_next().await.map(|_| ())
            })
            .map_err(|e| self.classify(e, ""))
    }

    fn full(&self, key: &str) -> String {
        match (self.prefix.is_empty(), key.is_empty()) {
            (true, _) => key.to_owned(),
            (false, true) => self.prefix.clone(),
            (false, false) => format!("{}/{key}", self.prefix),
        }
    }

    fn classify(&self, e: object_store::Error, key: &str) -> ObjError {
        let text = format!("{e}");
        let place = format!("s3://{}/{} at {}", self.bucket, self.full(key), self.endpoint);
        match e {
            object_store::Error::NotFound { .. } if text.contains("NoSuchBucket") => {
                ObjError::Config(format!("bucket {:?} does not exist ({place})", self.bucket))
            }
            object_store::Error::NotFound { .. } => ObjError::NotFound,
            object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. } => {
                ObjError::Precondition
            }
            object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. } => {
                ObjError::Config(format!("access denied ({place}): check the credentials: {text}"))
            }
            _ if text.contains("NoSuchBucket") => {
                ObjError::Config(format!("bucket {:?} does not exist ({place})", self.bucket))
            }
            _ if [
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AccessDenied",
                "403 Forbidden",
            ]
            .iter()
            .any(|s| text.contains(s)) =>
            {
                ObjError::Config(format!("access denied ({place}): check the credentials: {text}"))
            }
            _ => ObjError::Other(format!("{text} (endpoint {})", self.endpoint)),
        }
    }
}

impl ObjectStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn put(&self, key: &str, data: &[u8], mode: PutMode) -> ObjResult<String> {
        let path = ObjPath::from(self.full(key));
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::IfAbsent => object_store::PutMode::Create,
            PutMode::IfMatch(etag) => object_store::PutMode::Update(UpdateVersion {
                e_tag: Some(etag),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let payload = PutPayload::from(bytes::Bytes::copy_from_slice(data));
        let store = Arc::clone(&self.store);
        let result = self
            .runtime
            .block_on(async move { store.put_opts(&path, payload, opts).await });
        let put = result.map_err(|e| self.classify(e, key))?;
        Ok(put.e_tag.unwrap_or_default())
    }

    fn get(&self, key: &str) -> ObjResult<Option<(Vec<u8>, String)>> {
        let path = ObjPath::from(self.full(key));
        let store = Arc::clone(&self.store);
        let result = self.runtime.block_on(async move {
            let got = store.get(&path).await?;
            let etag = got.meta.e_tag.clone().unwrap_or_default();
            Ok::<_, object_store::Error>((got.bytes().await?.to_vec(), etag))
        });
        match result.map_err(|e| self.classify(e, key)) {
            Ok(v) => Ok(Some(v)),
            Err(ObjError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> ObjResult<Vec<u8>> {
        let path = ObjPath::from(self.full(key));
        let store = Arc::clone(&self.store);
        let result = self
            .runtime
            .block_on(async move { store.get_range(&path, range).await });
        Ok(result.map_err(|e| self.classify(e, key))?.to_vec())
    }

    fn head(&self, key: &str) -> ObjResult<Option<ObjectInfo>> {
        let path = ObjPath::from(self.full(key));
        let store = Arc::clone(&self.store);
        match self.runtime.block_on(async move { store.head(&path).await }) {
            Ok(meta) => Ok(Some(ObjectInfo {
                key: key.to_owned(),
                size: meta.size,
                etag: meta.e_tag.unwrap_or_default(),
            })),
            Err(e) => match self.classify(e, key) {
                ObjError::NotFound => Ok(None),
                other => Err(other),
            },
        }
    }

    fn list(&self, prefix: &str) -> ObjResult<Vec<ObjectInfo>> {
        let full = self.full(prefix);
        // object_store lists by path segments: list the directory, filter by the prefix.
        let dir = full.rsplit_once('/').map_or(String::new(), |(d, _)| d.to_owned());
        let store = Arc::clone(&self.store);
        let result = self.runtime.block_on(async move {
            let path = ObjPath::from(dir.as_str());
            store.list(Some(&path)).try_collect::<Vec<_>>().await
        });
        let strip = if self.prefix.is_empty() {
            0
        } else {
            self.prefix.len() + 1
        };
        let mut out: Vec<ObjectInfo> = result
            .map_err(|e| self.classify(e, prefix))?
            .into_iter()
            .filter(|m| m.location.as_ref().starts_with(&full))
            .map(|m| ObjectInfo {
                key: m.location.as_ref()[strip.min(m.location.as_ref().len())..].to_owned(),
                size: m.size,
                etag: m.e_tag.unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> ObjResult<()> {
        let path = ObjPath::from(self.full(key));
        let store = Arc::clone(&self.store);
        match self.runtime.block_on(async move { store.delete(&path).await }) {
            Ok(()) => Ok(()),
            Err(e) => match self.classify(e, key) {
                ObjError::NotFound => Ok(()),
                other => Err(other),
            },
        }
    }

    fn put_file(&self, key: &str, path: &Path) -> ObjResult<()> {
        let mut file =
            std::fs::File::open(path).map_err(|e| ObjError::Other(format!("opening {}: {e}", path.display())))?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len <= 2 * PART_BYTES as u64 {
            let mut data = Vec::with_capacity(len as usize);
            file.read_to_end(&mut data)
                .map_err(|e| ObjError::Other(format!("reading {}: {e}", path.display())))?;
            return self.put(key, &data, PutMode::Overwrite).map(|_| ());
        }
        // Multipart: memory stays at a few parts whatever the segment size.
        let location = ObjPath::from(self.full(key));
        let store = Arc::clone(&self.store);
        let result = self.runtime.block_on(async move {
            let upload = store.put_multipart(&location).await?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            loop {
                let mut buf = Vec::with_capacity(PART_BYTES);
                let read = (&mut file).take(PART_BYTES as u64).read_to_end(&mut buf);
                match read {
                    Ok(0) => break,
                    Ok(_) => {
                        writer.wait_for_capacity(2).await?;
                        writer.put(bytes::Bytes::from(buf));
                    }
                    Err(e) => {
                        let _ = writer.abort().await;
                        return Err(object_store::Error::Generic {
                            store: "S3",
                            source: Box::new(e),
                        });
                    }
                }
            }
            writer.finish().await.map(|_| ())
        });
        result.map_err(|e| self.classify(e, key))
    }
}
