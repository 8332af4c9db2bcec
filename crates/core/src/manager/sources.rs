//! Where the manager finds models: a repository directory or object store, TF Serving's model
//! config file (whose base paths may be object stores), or a fixed list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use quiver_repository::{self as repository, RepositoryError, VersionPolicy};
use quiver_store::{Location, ModelListing, Store, StoreError, StoreOptions};

/// A model in an object store: where, and what this poll's listing saw of it. The manager
/// mirrors it into [`ModelSource::dir`] (the store's cache) before reading it there.
#[derive(Debug, Clone)]
pub struct RemoteModel {
    /// The store.
    pub store: Arc<Store>,
    /// The model's path under the store's repository.
    pub key: String,
    /// Its objects, as this poll listed them.
    pub listing: Arc<ModelListing>,
}

impl PartialEq for RemoteModel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
            && self.key == other.key
            && self.listing == other.listing
    }
}

impl Eq for RemoteModel {}

/// The object stores a model config file's base paths name, opened once each (by bucket).
#[derive(Debug)]
pub struct Stores {
    options: StoreOptions,
    open: Mutex<BTreeMap<String, Arc<Store>>>,
}

impl Stores {
    /// No store open yet; each will cache as `options` say.
    pub fn new(options: StoreOptions) -> Self {
        Self {
            options,
            open: Mutex::default(),
        }
    }

    /// The store holding `url`'s bucket, and the model's path in it.
    fn model(&self, url: &url::Url) -> Result<(Arc<Store>, String), StoreError> {
        let mut bucket = url.clone();
        bucket.set_path("/");
        let root = quiver_store::display(&bucket);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let store = match open.get(&root) {
            Some(store) => Arc::clone(store),
            None => {
                let store = Store::open(&bucket, self.options.clone())?;
                open.insert(root, Arc::clone(&store));
                store
            }
        };
        Ok((store, url.path().trim_matches('/').to_owned()))
    }
}

fn store_error(e: StoreError) -> RepositoryError {
    RepositoryError::Config {
        message: e.to_string(),
    }
}

/// Where one model's versions live, and what overrides the model's own config (an entry of
/// TF Serving's model config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// Model name.
    pub name: String,
    /// The directory holding `VERSION/model.onnx`.
    pub dir: PathBuf,
    /// Replaces the config's `version_policy` when set.
    pub version_policy: Option<VersionPolicy>,
    /// Replaces the config's `[labels]` when set.
    pub labels: Option<BTreeMap<String, u64>>,
    /// Where the model lives when `dir` is its cached copy of an object store's.
    pub remote: Option<RemoteModel>,
}

impl ModelSource {
    /// A model of a repository: its directory, nothing overridden.
    pub fn in_repository(name: &str, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            version_policy: None,
            labels: None,
            remote: None,
        }
    }
}

/// Where the manager finds models.
#[derive(Debug, Clone)]
pub enum Sources {
    /// Every model directory of a repository (`--model-repository`).
    Repository(PathBuf),
    /// Every model of a repository in an object store (`--model-repository s3://…`), cached.
    Remote(Arc<Store>),
    /// A fixed list of models.
    List(Vec<ModelSource>),
    /// The models a TF Serving model config file lists (`--model-config-file`), read again at
    /// every poll. Base paths that are object store URLs are opened in the stores given.
    ConfigFile(PathBuf, Option<Arc<Stores>>),
}

impl Sources {
    /// Every model the sources hold now.
    pub fn list(&self) -> Result<Vec<ModelSource>, RepositoryError> {
        match self {
            Sources::List(list) => Ok(list.clone()),
            Sources::ConfigFile(path, stores) => {
                let models = repository::read_model_config_file(path).map_err(|e| {
                    RepositoryError::Config {
                        message: e.to_string(),
                    }
                })?;
                let mut sources = Vec::with_capacity(models.len());
                for m in models {
                    for warning in &m.warnings {
                        tracing::debug!(model = %m.name, "{warning}");
                    }
                    let (dir, remote) = match Location::parse(&m.base_path.to_string_lossy())
                        .map_err(store_error)?
                    {
                        Location::Local(dir) => (dir, None),
                        Location::Remote(url) => {
                            let stores = stores.as_ref().ok_or_else(|| RepositoryError::Config {
                                message: format!(
                                    "model '{}': base_path {} is an object store, which needs a model cache",
                                    m.name,
                                    quiver_store::display(&url)
                                ),
                            })?;
                            let (store, key) = stores.model(&url).map_err(store_error)?;
                            let listing = store.list_model(&key).map_err(store_error)?;
                            let remote = RemoteModel {
                                store: Arc::clone(&store),
                                key: key.clone(),
                                listing: Arc::new(listing),
                            };
                            (store.model_dir(&key), Some(remote))
                        }
                    };
                    sources.push(ModelSource {
                        name: m.name,
                        dir,
                        version_policy: m.version_policy,
                        labels: (!m.labels.is_empty()).then_some(m.labels),
                        remote,
                    });
                }
                Ok(sources)
            }
            Sources::Remote(store) => {
                let models = store.list_repository().map_err(store_error)?;
                Ok(models
                    .into_iter()
                    .filter(|(name, _)| match repository::check_model_name(name) {
                        Ok(()) => true,
                        Err(reason) => {
                            tracing::debug!(store = store.name(), model = %name, %reason, "skipped store entry");
                            false
                        }
                    })
                    .map(|(name, listing)| ModelSource {
                        dir: store.model_dir(&name),
                        remote: Some(RemoteModel {
                            store: Arc::clone(store),
                            key: name.clone(),
                            listing: Arc::new(listing),
                        }),
                        name,
                        version_policy: None,
                        labels: None,
                    })
                    .collect())
            }
            Sources::Repository(root) => {
                let scan = repository::scan(root)?;
                for skipped in &scan.skipped {
                    tracing::debug!(path = %skipped.path.display(), reason = %skipped.reason, "skipped repository entry");
                }
                Ok(scan
                    .models
                    .iter()
                    .map(|m| ModelSource::in_repository(&m.name, &m.path))
                    .collect())
            }
        }
    }
}

impl Sources {
    /// The model names the sources held when last looked at, without a request to an object
    /// store (a repository index must not wait for one).
    pub fn names_seen(&self) -> Vec<String> {
        match self {
            Sources::Remote(store) => store.last_models(),
            Sources::ConfigFile(path, _) => repository::read_model_config_file(path)
                .map(|models| models.into_iter().map(|m| m.name).collect())
                .unwrap_or_default(),
            Sources::Repository(_) | Sources::List(_) => self
                .list()
                .map(|sources| sources.into_iter().map(|s| s.name).collect())
                .unwrap_or_default(),
        }
    }
}
