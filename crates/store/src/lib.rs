//! Model repositories in object stores — S3 (and S3-compatible servers), Google Cloud Storage,
//! Azure Blob Storage, HTTP servers that list (WebDAV) — through `object_store`, mirrored into a
//! local cache the model manager reads as it reads a local repository.
//!
//! One listing per poll tells what changed (object paths, sizes and ETags against each cached
//! version's manifest), so an unchanged repository costs one listing. A version is downloaded
//! into a hidden folder beside its place, checked (sizes; the MD5 an S3 ETag carries), then
//! renamed into place, so a failed or partial download never replaces what serves. A restart
//! with an unchanged store finds every version whole in the cache and downloads nothing.
//!
//! The calls are blocking (the manager syncs on blocking threads); the requests run on the
//! store's own small runtime.

mod cache;
mod download;
mod listing;
mod location;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::Semaphore;
use url::Url;

pub use listing::{ModelListing, RemoteFile, group};
pub use location::{Location, Retries, SCHEMES, display};
/// The object store interface, for [`Store::from_parts`].
pub use object_store;

use cache::{Candidate, MODEL_MANIFEST, Manifest, VERSION_MANIFEST};

/// A model store could not be opened, listed or downloaded from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("model store {store}: {message}")]
pub struct StoreError {
    /// The store, as [`display`] shows its URL.
    pub store: String,
    /// What went wrong.
    pub message: String,
}

impl StoreError {
    pub(crate) fn new(store: &str, message: impl Into<String>) -> Self {
        Self {
            store: store.to_owned(),
            message: message.into(),
        }
    }
}

/// How a store is cached and downloaded from.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The cache's directory (`--model-cache-dir`); each store gets a folder in it.
    pub cache_dir: PathBuf,
    /// The bound on the bytes a store's cached versions take (`--model-cache-max-bytes`);
    /// versions no longer served are removed, least recently used first, to keep within it.
    pub max_cache_bytes: Option<u64>,
    /// Files downloaded at once, across the store.
    pub concurrency: usize,
    /// Retries of one request.
    pub retries: Retries,
    /// Attempts at a whole version before it counts as failed.
    pub attempts: u32,
}

impl StoreOptions {
    /// The defaults, caching in `cache_dir`.
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            max_cache_bytes: None,
            concurrency: 8,
            retries: Retries::default(),
            attempts: 3,
        }
    }
}

/// What [`Store::fetch_version`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// The cache held it whole.
    Cached,
    /// Downloaded now, this many bytes.
    Downloaded(u64),
}

/// What the cache knows of one model's cached versions.
#[derive(Debug, Default)]
struct CachedModel {
    /// Version → (bytes, last used).
    versions: BTreeMap<u64, (u64, u64)>,
    /// The versions the last sync wanted or served.
    in_use: BTreeSet<u64>,
}

/// One object store holding models, and its local cache.
pub struct Store {
    shown: String,
    store: Arc<dyn ObjectStore>,
    root: Path,
    /// This store's folder in the cache.
    dir: PathBuf,
    /// S3 ETags of single-part uploads are the object's MD5.
    etag_is_md5: bool,
    options: StoreOptions,
    limit: Arc<Semaphore>,
    runtime: Option<tokio::runtime::Runtime>,
    known: Mutex<BTreeMap<PathBuf, CachedModel>>,
    last_models: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.shown)
            .field("cache", &self.dir)
            .finish_non_exhaustive()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // A runtime dropped inside another one's task would panic; this one never blocks.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Store {
    /// Opens the store `url` names (its repository: the URL's path), caching under
    /// `options.cache_dir`. Makes no request: a wrong bucket or credentials show at the first
    /// listing, naming the store.
    pub fn open(url: &Url, options: StoreOptions) -> Result<Arc<Store>, StoreError> {
        let (store, root) = location::open(url, options.retries)?;
        let etag_is_md5 = matches!(url.scheme(), "s3" | "s3a");
        Store::from_parts(&display(url), store, root, etag_is_md5, options)
    }

    /// A store over an `ObjectStore` already built (named `name` in logs and metrics), whose
    /// repository is at `root`; `etag_is_md5` when its ETags are the objects' MD5 (S3).
    pub fn from_parts(
        name: &str,
        store: Arc<dyn ObjectStore>,
        root: Path,
        etag_is_md5: bool,
        options: StoreOptions,
    ) -> Result<Arc<Store>, StoreError> {
        let shown = name.to_owned();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("quiver-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::new(&shown, format!("cannot start its runtime: {e}")))?;
        let dir = options.cache_dir.join(cache_folder(&shown));
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::new(
                &shown,
                format!("cannot make the cache folder {}: {e}", dir.display()),
            )
        })?;
        quiver_telemetry::store::register(&shown);
        tracing::info!(store = %shown, cache = %dir.display(), "model store opened");
        Ok(Arc::new(Store {
            etag_is_md5,
            limit: Arc::new(Semaphore::new(options.concurrency.max(1))),
            shown,
            store,
            root,
            dir,
            options,
            runtime: Some(runtime),
            known: Mutex::default(),
            last_models: Mutex::default(),
        }))
    }

    /// The store's URL as logs and metrics show it.
    pub fn name(&self) -> &str {
        &self.shown
    }

    /// The local directory of the model at `key` (its path under the store's repository): what
    /// the manager loads from.
    pub fn model_dir(&self, key: &str) -> PathBuf {
        key.split('/')
            .filter(|part| !part.is_empty() && *part != "." && *part != "..")
            .fold(self.dir.clone(), |dir, part| dir.join(part))
    }

    /// The model names of the last repository listing (no request).
    pub fn last_models(&self) -> Vec<String> {
        self.last_models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Lists the whole repository once, grouped by model. Models no longer in the store leave
    /// the cache.
    pub fn list_repository(&self) -> Result<BTreeMap<String, ModelListing>, StoreError> {
        let models = group(self.list(self.root.clone())?);
        *self
            .last_models
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = models.keys().cloned().collect();
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') && !models.contains_key(&name) && entry.path().is_dir() {
                    tracing::info!(store = %self.shown, model = %name, "model gone from the store: removed from the cache");
                    let _ = std::fs::remove_dir_all(entry.path());
                    self.forget(&entry.path());
                }
            }
        }
        Ok(models)
    }

    /// Lists one model's directory (`key`, a path under the store's repository).
    pub fn list_model(&self, key: &str) -> Result<ModelListing, StoreError> {
        let prefix = key
            .split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |path, part| path.clone().join(part));
        let files = self.list(prefix)?;
        Ok(ModelListing {
            files: files.into_iter().map(|f| (f.path.clone(), f)).collect(),
        })
    }

    fn list(&self, prefix: Path) -> Result<Vec<RemoteFile>, StoreError> {
        let store = Arc::clone(&self.store);
        let listed = self.run(async move {
            let mut files = Vec::new();
            let mut stream = store.list(Some(&prefix));
            while let Some(meta) = stream.try_next().await? {
                let Some(parts) = meta.location.prefix_match(&prefix) else {
                    continue;
                };
                let path = parts
                    .map(|p| p.as_ref().to_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                // What tells a changed object: its ETag, else its version, else its time.
                let etag = meta
                    .e_tag
                    .or(meta.version)
                    .or_else(|| Some(meta.last_modified.to_rfc3339()));
                files.push(RemoteFile {
                    path,
                    size: meta.size,
                    etag,
                });
            }
            Ok::<_, object_store::Error>(files)
        })?;
        quiver_telemetry::store::record_listing(&self.shown, listed.is_ok());
        listed.map_err(|e| StoreError::new(&self.shown, format!("cannot list: {e}")))
    }

    /// Brings the files beside a model's versions (config, labels, tokenizers) in line with
    /// the listing: changed ones downloaded (each renamed into place whole), removed ones
    /// deleted.
    pub fn fetch_model_files(&self, key: &str, listing: &ModelListing) -> Result<(), StoreError> {
        let dir = self.model_dir(key);
        let failed = |e: std::io::Error| {
            StoreError::new(&self.shown, format!("cache {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(failed)?;
        let files = listing.model_files();
        let manifest_path = dir.join(MODEL_MANIFEST);
        let old = Manifest::read(&manifest_path).unwrap_or_default();
        if old.matches(&dir, &files) {
            return Ok(());
        }
        let changed: Vec<RemoteFile> = files
            .iter()
            .filter(|f| {
                !old.files.contains(f)
                    || std::fs::metadata(dir.join(&f.path)).map_or(true, |m| m.len() != f.size)
            })
            .cloned()
            .collect();
        let partial = dir.join(format!(
            "{}files-{}",
            cache::PARTIAL_PREFIX,
            fastrand::u64(..)
        ));
        let result = self.download_all(key, "", &changed, &partial);
        if let Err(e) = result {
            let _ = std::fs::remove_dir_all(&partial);
            return Err(e);
        }
        for file in &changed {
            let dest = dir.join(&file.path);
            if let Some(parent) = dest.parent() {
                std::fs::create_dir_all(parent).map_err(failed)?;
            }
            std::fs::rename(partial.join(&file.path), &dest).map_err(failed)?;
        }
        let _ = std::fs::remove_dir_all(&partial);
        for gone in old
            .files
            .iter()
            .filter(|f| !files.iter().any(|n| n.path == f.path))
        {
            let _ = std::fs::remove_file(dir.join(&gone.path));
        }
        Manifest {
            files,
            last_used: cache::now(),
        }
        .write(&manifest_path)
        .map_err(failed)
    }

    /// Makes version `version` of the model at `key` whole in the cache: nothing to do when
    /// the cached copy matches the listing, else a download into a hidden folder, checked,
    /// then renamed into place (tried `attempts` times with a growing pause). `note` hears
    /// what is happening, for the version's status.
    pub fn fetch_version(
        &self,
        key: &str,
        listing: &ModelListing,
        version: u64,
        note: &dyn Fn(String),
    ) -> Result<Fetched, StoreError> {
        let dir = self.model_dir(key);
        let dest = dir.join(version.to_string());
        let files = listing.version_files(version);
        if let Some(manifest) = Manifest::read(&dest.join(VERSION_MANIFEST))
            && manifest.matches(&dest, &files)
        {
            quiver_telemetry::store::record_cache_hit(&self.shown);
            return Ok(Fetched::Cached);
        }
        let bytes: u64 = files.iter().map(|f| f.size).sum();
        note(format!(
            "downloading {} file(s), {bytes} bytes, from {}",
            files.len(),
            self.shown
        ));
        tracing::info!(store = %self.shown, model = %key, version, files = files.len(), bytes, "downloading model version");
        let started = Instant::now();
        let mut last_error = None;
        for attempt in 0..self.options.attempts.max(1) {
            if attempt > 0 {
                let pause = Duration::from_millis(500 << attempt.min(6));
                tracing::warn!(store = %self.shown, model = %key, version, attempt = attempt + 1,
                    "retrying the download in {pause:?}");
                std::thread::sleep(pause);
            }
            let partial = dir.join(format!(
                "{}{version}-{}",
                cache::PARTIAL_PREFIX,
                fastrand::u64(..)
            ));
            let result = self
                .download_all(key, &version.to_string(), &files, &partial)
                .and_then(|()| {
                    Manifest {
                        files: files.clone(),
                        last_used: cache::now(),
                    }
                    .write(&partial.join(VERSION_MANIFEST))
                    .and_then(|()| cache::install(&partial, &dest))
                    .map_err(|e| StoreError::new(&self.shown, format!("cache: {e}")))
                });
            match result {
                Ok(()) => {
                    let took = started.elapsed();
                    quiver_telemetry::store::record_download(&self.shown, took, true);
                    tracing::info!(store = %self.shown, model = %key, version, bytes,
                        seconds = took.as_secs_f64(), "model version downloaded");
                    return Ok(Fetched::Downloaded(bytes));
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&partial);
                    tracing::warn!(store = %self.shown, model = %key, version, error = %e.message,
                        "model version download failed");
                    last_error = Some(e);
                }
            }
        }
        quiver_telemetry::store::record_download(&self.shown, started.elapsed(), false);
        Err(last_error.unwrap_or_else(|| StoreError::new(&self.shown, "download failed")))
    }

    /// Removes from the model's cache the versions the listing no longer holds, and what
    /// interrupted downloads left.
    pub fn prune(&self, key: &str, listing: &ModelListing) {
        let dir = self.model_dir(key);
        cache::remove_leftovers(&dir);
        let listed = listing.versions();
        for (version, path) in cache::cached_versions(&dir) {
            if !listed.contains(&version) {
                tracing::info!(store = %self.shown, model = %key, version, "version gone from the store: removed from the cache");
                let _ = std::fs::remove_dir_all(path);
            }
        }
    }

    /// Records which of the model's versions are in use (wanted or serving: never removed by
    /// the size bound), then removes unused versions, least recently used first, while the
    /// store's cache is over `--model-cache-max-bytes`.
    pub fn keep(&self, key: &str, in_use: &[u64]) {
        let dir = self.model_dir(key);
        let now = cache::now();
        let mut model = CachedModel {
            in_use: in_use.iter().copied().collect(),
            ..CachedModel::default()
        };
        for (version, path) in cache::cached_versions(&dir) {
            let manifest_path = path.join(VERSION_MANIFEST);
            let Some(mut manifest) = Manifest::read(&manifest_path) else {
                continue;
            };
            // The LRU order needs minutes, not seconds: spare the disk a write every poll.
            if model.in_use.contains(&version) && now.saturating_sub(manifest.last_used) > 60 {
                manifest.last_used = now;
                let _ = manifest.write(&manifest_path);
            }
            model
                .versions
                .insert(version, (manifest.bytes(), manifest.last_used));
        }
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.insert(dir, model);
        let total: u64 = known
            .values()
            .flat_map(|m| m.versions.values())
            .map(|(bytes, _)| bytes)
            .sum();
        let mut left = total;
        if let Some(max) = self.options.max_cache_bytes {
            let unused: Vec<Candidate> = known
                .iter()
                .flat_map(|(dir, m)| {
                    m.versions
                        .iter()
                        .filter(|(v, _)| !m.in_use.contains(v))
                        .map(|(v, &(bytes, last_used))| Candidate {
                            dir: dir.join(v.to_string()),
                            bytes,
                            last_used,
                        })
                })
                .collect();
            for victim in cache::victims(total, max, unused) {
                tracing::info!(store = %self.shown, path = %victim.dir.display(), bytes = victim.bytes,
                    "removed from the model cache to keep within --model-cache-max-bytes");
                let _ = std::fs::remove_dir_all(&victim.dir);
                quiver_telemetry::store::record_eviction(&self.shown);
                left = left.saturating_sub(victim.bytes);
                if let (Some(model_dir), Some(version)) = (
                    victim.dir.parent(),
                    victim
                        .dir
                        .file_name()
                        .and_then(|n| n.to_str())
                        .and_then(|n| n.parse::<u64>().ok()),
                ) && let Some(m) = known.get_mut(model_dir)
                {
                    m.versions.remove(&version);
                }
            }
        }
        quiver_telemetry::store::set_cache_bytes(&self.shown, left);
    }

    fn forget(&self, model_dir: &std::path::Path) {
        let mut known = self.known.lock().unwrap_or_else(PoisonError::into_inner);
        known.retain(|dir, _| !dir.starts_with(model_dir));
    }

    /// Downloads `files` (paths under `key/sub`) into `into`, at most the store's bound at once.
    fn download_all(
        &self,
        key: &str,
        sub: &str,
        files: &[RemoteFile],
        into: &std::path::Path,
    ) -> Result<(), StoreError> {
        let base = key
            .split('/')
            .chain(std::iter::once(sub))
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |path, part| path.clone().join(part));
        let jobs: Vec<download::Job> = files
            .iter()
            .map(|f| download::Job {
                key: f
                    .path
                    .split('/')
                    .fold(base.clone(), |path, part| path.clone().join(part)),
                dest: into.join(&f.path),
                file: f.clone(),
            })
            .collect();
        let context = download::Context {
            store: Arc::clone(&self.store),
            shown: self.shown.clone(),
            limit: Arc::clone(&self.limit),
            check_md5: self.etag_is_md5,
        };
        self.run(download::all(context, jobs))?
            .map_err(|message| StoreError::new(&self.shown, message))
    }

    /// Runs `future` on the store's runtime and waits for it; callable from any thread,
    /// blocking it.
    fn run<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let stopped = || StoreError::new(&self.shown, "the store's runtime has stopped");
        let runtime = self.runtime.as_ref().ok_or_else(stopped)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(future.await);
        });
        rx.recv().map_err(|_| stopped())
    }
}

/// A store's folder in the cache: readable, and unique by a hash of the URL.
fn cache_folder(shown: &str) -> String {
    use md5::{Digest, Md5};
    let readable: String = shown
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let digest = Md5::digest(shown.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let readable = readable.trim_matches('_');
    let readable: String = readable.chars().take(80).collect();
    format!("{readable}-{hash}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_folders_are_readable_and_distinct() {
        assert!(cache_folder("s3://bucket/models").starts_with("s3___bucket_models-"));
        assert_ne!(cache_folder("s3://a/b_c"), cache_folder("s3://a/b/c"));
    }
}
