//! The only module that talks to object storage.
//!
//! A [`Store`] is opened from a URI (`file://`, a plain directory path,
//! `s3://bucket/prefix` or `memory://`) and exposes the five folders of the
//! layout as [`Area`]s. Everything above this module names objects by area and
//! relative key, so the same pipeline runs unchanged on every backend.
//!
//! Writes are all-or-nothing on every backend: `put` is atomic, and a
//! streaming [`StoreWriter`] only makes its object visible on
//! [`StoreWriter::finish`]; dropping or aborting it leaves nothing behind.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use tokio::io::{AsyncRead, AsyncWriteExt};

use crate::config::{LayoutConfig, StorageConfig};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("invalid storage URI {uri:?}: {reason}")]
    InvalidUri { uri: String, reason: String },
    #[error("object not found: {location}")]
    NotFound { location: String },
    #[error("object already exists: {location}")]
    AlreadyExists { location: String },
    #[error("{location} changed since it was read")]
    Changed { location: String },
    #[error("{location}: the {backend:?} backend has no conditional update")]
    NoConditionalUpdate { location: String, backend: Backend },
    #[error("storage operation on {location} failed")]
    Backend {
        location: String,
        #[source]
        source: object_store::Error,
    },
    #[error("local storage folder {path} does not exist; check --store or storage.uri")]
    MissingDir { path: PathBuf },
    #[error("local storage folder {path} could not be created")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {location} failed")]
    Write {
        location: String,
        source: std::io::Error,
    },
}

/// One of the top-level folders of the store layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Area {
    RawData,
    ProcessedData,
    FeatureStore,
    Artifacts,
    ModelRegistry,
}

/// The backend kind of a store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Local,
    S3,
    Memory,
}

/// An object listed under an area.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// Key relative to the area, such as `2026.../manifest.json`.
    pub key: String,
    pub size: u64,
}

/// A handle on the store, cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    backend: Backend,
    /// Key prefix inside the bucket (S3 only), without slashes at either end.
    prefix: String,
    /// The URI as the user would write it, for messages.
    display_root: String,
    layout: LayoutConfig,
}

/// Returns whether `name` follows S3's naming rules for general purpose
/// buckets, checked before any request so that a mistyped URI fails at once.
fn is_bucket_name(name: &str) -> bool {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    (3..=63).contains(&name.len())
        && name.chars().all(allowed)
        && name.starts_with(alphanumeric)
        && name.ends_with(alphanumeric)
}

/// Returns the folder of a local store URI (a plain path or `file:///…`),
/// or `None` for other schemes.
fn local_folder(uri: &str) -> Option<PathBuf> {
    if let Some(rest) = uri.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    (!uri.contains("://") && !uri.is_empty()).then(|| PathBuf::from(uri))
}

impl Store {
    /// Opens an empty store in memory with the default layout, for scratch
    /// work and tests.
    pub fn in_memory() -> Store {
        let config = StorageConfig {
            uri: "memory://".into(),
            s3_virtual_hosted_style: false,
        };
        Store::open(&config, &LayoutConfig::default()).expect("a memory store always opens")
    }

    /// Opens the store that `config.uri` names, like [`Store::open`], but
    /// fails rather than create a local folder, for commands that only read.
    pub fn open_existing(
        config: &StorageConfig,
        layout: &LayoutConfig,
    ) -> Result<Store, StorageError> {
        if let Some(dir) = local_folder(config.uri.trim()) {
            if !dir.is_dir() {
                return Err(StorageError::MissingDir { path: dir });
            }
        }
        Store::open(config, layout)
    }

    /// Opens the store that `config.uri` names.
    pub fn open(config: &StorageConfig, layout: &LayoutConfig) -> Result<Store, StorageError> {
        let uri = config.uri.trim();
        let invalid = |reason: &str| StorageError::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };

        if let Some(rest) = uri.strip_prefix("memory://") {
            if !rest.is_empty() {
                return Err(invalid("memory:// takes no path"));
            }
            return Ok(Store {
                inner: Arc::new(InMemory::new()),
                backend: Backend::Memory,
                prefix: String::new(),
                display_root: "memory://".into(),
                layout: layout.clone(),
            });
        }

        if let Some(rest) = uri.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid(
                    "the bucket name is missing, as in s3://bucket/prefix",
                ));
            }
            if !is_bucket_name(bucket) {
                return Err(invalid(&format!(
                    "{bucket:?} is not a valid bucket name: use 3 to 63 lowercase letters, \
                     digits, dots and hyphens, beginning and ending with a letter or digit"
                )));
            }
            // NOTE: object_store reads credentials from AWS_* variables, web
            // identity and instance metadata, but not from ~/.aws/credentials.
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_virtual_hosted_style_request(config.s3_virtual_hosted_style);
            // `from_env` reads AWS_ENDPOINT_URL; a plain-HTTP endpoint (a local
            // S3-compatible server) must be allowed explicitly.
            let endpoint = std::env::var("AWS_ENDPOINT_URL")
                .or_else(|_| std::env::var("AWS_ENDPOINT"))
                .unwrap_or_default();
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
            if std::env::var_os("AWS_REGION").is_none()
                && std::env::var_os("AWS_DEFAULT_REGION").is_none()
            {
                builder = builder.with_region("us-east-1");
            } else if let Ok(region) = std::env::var("AWS_DEFAULT_REGION") {
                if std::env::var_os("AWS_REGION").is_none() {
                    builder = builder.with_region(region);
                }
            }
            let s3 = builder.build().map_err(|e| invalid(&e.to_string()))?;
            let prefix = prefix.trim_matches('/').to_string();
            return Ok(Store {
                inner: Arc::new(s3),
                backend: Backend::S3,
                display_root: format!("s3://{bucket}/{prefix}")
                    .trim_end_matches('/')
                    .into(),
                prefix,
                layout: layout.clone(),
            });
        }

        let dir = if let Some(rest) = uri.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    "a file:// URI needs an absolute path, as in file:///data/store; write a relative folder without file://",
                ));
            }
            PathBuf::from(rest)
        } else if uri.contains("://") {
            return Err(invalid(
                "supported schemes are file://, s3:// and memory://",
            ));
        } else {
            PathBuf::from(uri)
        };
        std::fs::create_dir_all(&dir).map_err(|source| StorageError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let dir = dir
            .canonicalize()
            .map_err(|source| StorageError::CreateDir {
                path: dir.clone(),
                source,
            })?;
        let local = LocalFileSystem::new_with_prefix(&dir).map_err(|e| invalid(&e.to_string()))?;
        Ok(Store {
            inner: Arc::new(local),
            backend: Backend::Local,
            prefix: String::new(),
            display_root: format!("file://{}", dir.display()),
            layout: layout.clone(),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Returns the store's root URI, as shown to users.
    pub fn root_uri(&self) -> &str {
        &self.display_root
    }

    /// Returns the absolute folder of a local store, or `None` for the
    /// other backends.
    pub fn local_root(&self) -> Option<PathBuf> {
        match self.backend {
            Backend::Local => local_folder(&self.display_root),
            Backend::S3 | Backend::Memory => None,
        }
    }

    fn area_name(&self, area: Area) -> &str {
        match area {
            Area::RawData => &self.layout.raw_data,
            Area::ProcessedData => &self.layout.processed_data,
            Area::FeatureStore => &self.layout.feature_store,
            Area::Artifacts => &self.layout.artifacts,
            Area::ModelRegistry => &self.layout.model_registry,
        }
    }

    fn location(&self, area: Area, key: &str) -> ObjectPath {
        let key = key.trim_matches('/');
        let mut parts = Vec::with_capacity(3);
        if !self.prefix.is_empty() {
            parts.push(self.prefix.as_str());
        }
        parts.push(self.area_name(area));
        if !key.is_empty() {
            parts.push(key);
        }
        ObjectPath::from(parts.join("/"))
    }

    /// Returns the full URI of an object, for messages and command output.
    pub fn uri(&self, area: Area, key: &str) -> String {
        let relative = format!("{}/{}", self.area_name(area), key.trim_matches('/'));
        format!("{}/{}", self.display_root.trim_end_matches('/'), relative)
    }

    fn backend_error(&self, area: Area, key: &str, source: object_store::Error) -> StorageError {
        let location = self.uri(area, key);
        match source {
            object_store::Error::NotFound { .. } => StorageError::NotFound { location },
            object_store::Error::AlreadyExists { .. } => StorageError::AlreadyExists { location },
            object_store::Error::Precondition { .. } => StorageError::Changed { location },
            source => StorageError::Backend { location, source },
        }
    }

    /// Writes an object in one atomic request, replacing any previous version.
    pub async fn put(&self, area: Area, key: &str, data: Bytes) -> Result<(), StorageError> {
        self.inner
            .put(&self.location(area, key), PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| self.backend_error(area, key, e))
    }

    /// Writes an object only if none exists at that key, atomically on every
    /// backend; otherwise fails with [`StorageError::AlreadyExists`].
    pub async fn put_if_absent(
        &self,
        area: Area,
        key: &str,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        self.inner
            .put_opts(&self.location(area, key), PutPayload::from(data), options)
            .await
            .map(|_| ())
            .map_err(|e| self.backend_error(area, key, e))
    }

    /// Returns whether [`Store::put_if_unchanged`] can replace an object
    /// here: true for S3 and memory, false for a local folder.
    pub fn has_conditional_update(&self) -> bool {
        self.backend != Backend::Local
    }

    /// Reads an object with the tag that a later
    /// [`Store::put_if_unchanged`] checks, or `None` when it does not exist.
    pub async fn get_tagged(
        &self,
        area: Area,
        key: &str,
    ) -> Result<Option<(Bytes, ObjectTag)>, StorageError> {
        let result = match self.inner.get(&self.location(area, key)).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.backend_error(area, key, e)),
        };
        let tag = ObjectTag(UpdateVersion {
            e_tag: result.meta.e_tag.clone(),
            version: result.meta.version.clone(),
        });
        let bytes = result
            .bytes()
            .await
            .map_err(|e| self.backend_error(area, key, e))?;
        Ok(Some((bytes, tag)))
    }

    /// Compare-and-swap: writes the object only if it is still the version
    /// that `expected` tags, or, with `None`, only if it does not exist yet.
    /// Fails with [`StorageError::Changed`] or [`StorageError::AlreadyExists`]
    /// when another writer came first. Local folders have no conditional
    /// update and fail with [`StorageError::NoConditionalUpdate`].
    pub async fn put_if_unchanged(
        &self,
        area: Area,
        key: &str,
        data: Bytes,
        expected: Option<&ObjectTag>,
    ) -> Result<(), StorageError> {
        let Some(expected) = expected else {
            return self.put_if_absent(area, key, data).await;
        };
        if !self.has_conditional_update() {
            return Err(StorageError::NoConditionalUpdate {
                location: self.uri(area, key),
                backend: self.backend,
            });
        }
        let options = PutOptions {
            mode: PutMode::Update(expected.0.clone()),
            ..Default::default()
        };
        self.inner
            .put_opts(&self.location(area, key), PutPayload::from(data), options)
            .await
            .map(|_| ())
            .map_err(|e| self.backend_error(area, key, e))
    }

    pub async fn get(&self, area: Area, key: &str) -> Result<Bytes, StorageError> {
        let result = self
            .inner
            .get(&self.location(area, key))
            .await
            .map_err(|e| self.backend_error(area, key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| self.backend_error(area, key, e))
    }

    /// Opens an object as a byte stream, so large objects never sit in memory whole.
    pub async fn reader(
        &self,
        area: Area,
        key: &str,
    ) -> Result<impl AsyncRead + Send + Unpin + 'static, StorageError> {
        let result = self
            .inner
            .get(&self.location(area, key))
            .await
            .map_err(|e| self.backend_error(area, key, e))?;
        let stream = result.into_stream().map_err(std::io::Error::other);
        Ok(tokio_util::io::StreamReader::new(stream))
    }

    /// Opens an object as a blocking [`std::io::Read`] that fetches it in
    /// ranges of `chunk_bytes`, for parsers that run on a blocking thread.
    /// Large ranges keep the number of requests (and thread hand-overs) low.
    ///
    /// Call it from inside `tokio::task::spawn_blocking`: each read blocks on
    /// the runtime whose handle is captured here.
    pub async fn blocking_reader(
        &self,
        area: Area,
        key: &str,
        chunk_bytes: u64,
    ) -> Result<BlockingReader, StorageError> {
        let location = self.location(area, key);
        let meta = self
            .inner
            .head(&location)
            .await
            .map_err(|e| self.backend_error(area, key, e))?;
        Ok(BlockingReader {
            store: Arc::clone(&self.inner),
            location,
            display: self.uri(area, key),
            size: meta.size,
            offset: 0,
            chunk_bytes: chunk_bytes.max(1),
            buffer: Bytes::new(),
            runtime: tokio::runtime::Handle::current(),
        })
    }

    pub async fn exists(&self, area: Area, key: &str) -> Result<bool, StorageError> {
        match self.inner.head(&self.location(area, key)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.backend_error(area, key, e)),
        }
    }

    pub async fn delete(&self, area: Area, key: &str) -> Result<(), StorageError> {
        match self.inner.delete(&self.location(area, key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.backend_error(area, key, e)),
        }
    }

    /// Lists every object under `area/prefix`, sorted by key.
    pub async fn list(&self, area: Area, prefix: &str) -> Result<Vec<ListedObject>, StorageError> {
        let area_root = self.location(area, "");
        let location = self.location(area, prefix);
        let mut objects: Vec<ListedObject> = self
            .inner
            .list(Some(&location))
            .map_ok(|meta| {
                let full = meta.location.as_ref();
                let key = full
                    .strip_prefix(area_root.as_ref())
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_string();
                ListedObject {
                    key,
                    size: meta.size,
                }
            })
            .try_collect()
            .await
            .map_err(|e| self.backend_error(area, prefix, e))?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }

    /// Starts a streaming upload that becomes visible only on [`StoreWriter::finish`].
    pub fn writer(&self, area: Area, key: &str) -> StoreWriter {
        StoreWriter {
            inner: Some(BufWriter::new(
                Arc::clone(&self.inner),
                self.location(area, key),
            )),
            location: self.uri(area, key),
        }
    }
}

/// The version of an object as read, for a compare-and-swap write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectTag(UpdateVersion);

/// A blocking reader over an object, made by [`Store::blocking_reader`].
pub struct BlockingReader {
    store: Arc<dyn ObjectStore>,
    location: ObjectPath,
    display: String,
    size: u64,
    offset: u64,
    chunk_bytes: u64,
    buffer: Bytes,
    runtime: tokio::runtime::Handle,
}

impl std::io::Read for BlockingReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.buffer.is_empty() {
            if self.offset >= self.size {
                return Ok(0);
            }
            let end = (self.offset + self.chunk_bytes).min(self.size);
            let range = self.offset..end;
            self.buffer = self
                .runtime
                .block_on(self.store.get_range(&self.location, range))
                .map_err(|e| std::io::Error::other(format!("reading {}: {e}", self.display)))?;
            self.offset = end;
        }
        let n = out.len().min(self.buffer.len());
        out[..n].copy_from_slice(&self.buffer[..n]);
        bytes::Buf::advance(&mut self.buffer, n);
        Ok(n)
    }
}

/// A streaming upload. Write with [`tokio::io::AsyncWriteExt`], then call
/// [`finish`](StoreWriter::finish); [`abort`](StoreWriter::abort) discards it.
pub struct StoreWriter {
    inner: Option<BufWriter>,
    location: String,
}

impl StoreWriter {
    pub fn location(&self) -> &str {
        &self.location
    }

    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), StorageError> {
        let writer = self
            .inner
            .as_mut()
            .expect("writer used after finish or abort");
        writer
            .write_all(data)
            .await
            .map_err(|source| StorageError::Write {
                location: self.location.clone(),
                source,
            })
    }

    /// Completes the upload, making the object visible.
    pub async fn finish(mut self) -> Result<(), StorageError> {
        let mut writer = self.inner.take().expect("writer finished twice");
        writer
            .shutdown()
            .await
            .map_err(|source| StorageError::Write {
                location: self.location.clone(),
                source,
            })
    }

    /// Discards the upload; no object appears and an earlier object at the
    /// same key is left as it was.
    pub async fn abort(mut self) -> Result<(), StorageError> {
        let Some(mut writer) = self.inner.take() else {
            return Ok(());
        };
        writer
            .abort()
            .await
            .map_err(|source| StorageError::Backend {
                location: self.location.clone(),
                source,
            })
    }
}
