//! The model manager: which versions of which models exist, their state, and routing requests
//! to a loaded version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use quiver_batcher::BatchPolicy;
use quiver_engine_api::{EngineOptions, OptimizationLevel};
use quiver_engine_api::{ModelSignature, Session};
use quiver_repository::{
    self as repository, BatchingConfig, EngineChoice, EngineOptionsConfig, ModelConfig,
    RepositoryError, Rollover, VersionDir, VersionPolicy,
};

use crate::engines::Engines;
use crate::version::LoadedVersion;
use crate::{Error, ErrorKind};

/// Lifecycle state of one model version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionState {
    /// Known, not yet loading.
    Start,
    /// The engine is loading it.
    Loading,
    /// Serving.
    Available,
    /// Finishing its in-flight work before it is dropped.
    Unloading,
    /// Unloaded.
    End,
    /// Loading failed; the reason is in [`VersionStatus::error`].
    Failed,
}

impl VersionState {
    /// Upper-case name as TF Serving shows it; `Failed` is TF Serving's `END` with an error.
    pub fn tf_name(self) -> &'static str {
        match self {
            VersionState::Start => "START",
            VersionState::Loading => "LOADING",
            VersionState::Available => "AVAILABLE",
            VersionState::Unloading => "UNLOADING",
            VersionState::End | VersionState::Failed => "END",
        }
    }

    /// Lower-case name, the `state` label of `quiver_model_version_state`.
    pub fn as_str(self) -> &'static str {
        match self {
            VersionState::Start => "start",
            VersionState::Loading => "loading",
            VersionState::Available => "available",
            VersionState::Unloading => "unloading",
            VersionState::End => "end",
            VersionState::Failed => "failed",
        }
    }
}

/// Status of one model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    /// Version number.
    pub version: u64,
    /// Lifecycle state.
    pub state: VersionState,
    /// Why loading failed, when it did.
    pub error: Option<String>,
}

/// Which version of a model a request wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// The highest available version.
    Latest,
    /// Exactly this version.
    Specific(u64),
    /// The version a label (`stable`, `canary`) names.
    Label(String),
}

impl VersionSelector {
    /// A version as KServe V2 writes it: empty for the latest, else a positive integer.
    pub fn parse(text: &str) -> Result<Self, Error> {
        if text.is_empty() {
            return Ok(VersionSelector::Latest);
        }
        match text.parse::<u64>() {
            Ok(v) if v > 0 => Ok(VersionSelector::Specific(v)),
            _ => Err(Error::invalid(format!(
                "version '{text}' is not a positive integer"
            ))),
        }
    }
}

impl std::fmt::Display for VersionSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionSelector::Latest => f.write_str("latest"),
            VersionSelector::Specific(v) => write!(f, "{v}"),
            VersionSelector::Label(l) => write!(f, "label '{l}'"),
        }
    }
}

/// How the manager runs the models it loads.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The engine for models whose config does not name one (`--engine`).
    pub default_engine: EngineChoice,
    /// Graph optimisation for models whose config does not set it.
    pub optimization: OptimizationLevel,
    /// Where to save every model's optimised graph, as `DIR/NAME/VERSION/model.onnx`, unless
    /// its config names a path.
    pub optimized_model_dir: Option<PathBuf>,
    /// Batching for models whose config does not set it.
    pub batching: BatchingDefaults,
    /// Let a label name a version that is not available (TF Serving's
    /// `--allow_version_labels_for_unavailable_models`); otherwise such a label keeps pointing
    /// where it did until the version becomes available.
    pub allow_unavailable_labels: bool,
    /// Whether the repository API may load and unload models (`--model-control-mode explicit`).
    pub model_control_api: bool,
}

/// Server-wide batching settings (`--max-batch-size` and friends); a model's `[batching]`
/// overrides each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchingDefaults {
    /// Most rows in one engine call; 0: no batching.
    pub max_batch_size: usize,
    /// Longest wait for a batch to fill.
    pub max_queue_delay: Duration,
    /// Most requests waiting per version.
    pub max_queue_size: usize,
    /// Deadline of requests that set none.
    pub default_timeout: Option<Duration>,
    /// Engine instances per version.
    pub instances: usize,
}

impl Default for BatchingDefaults {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_queue_delay: Duration::from_micros(500),
            max_queue_size: 1024,
            default_timeout: None,
            instances: 1,
        }
    }
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            default_engine: EngineChoice::Auto,
            optimization: OptimizationLevel::default(),
            optimized_model_dir: None,
            batching: BatchingDefaults::default(),
            allow_unavailable_labels: false,
            model_control_api: false,
        }
    }
}

/// A model's batching: its `[batching]`, then the server's defaults. Batching needs every input
/// and output to have a dynamic first dimension; a model that asks for batching without one
/// fails to load, while the server-wide default just leaves such a model unbatched.
fn batch_policy(
    name: &str,
    config: &BatchingConfig,
    defaults: &BatchingDefaults,
    signature: &ModelSignature,
) -> Result<BatchPolicy, String> {
    let mut max_batch_size = config.max_batch_size.unwrap_or(defaults.max_batch_size);
    if max_batch_size > 0 {
        let fixed = signature
            .inputs
            .iter()
            .chain(&signature.outputs)
            .find(|spec| spec.shape.first() != Some(&-1));
        if let Some(spec) = fixed {
            if config.max_batch_size.is_some() {
                return Err(format!(
                    "batching.max_batch_size = {max_batch_size} needs every input and output to have a dynamic first dimension; '{}' has shape {}",
                    spec.name,
                    crate::shape_text(&spec.shape)
                ));
            }
            tracing::info!(model = name, tensor = %spec.name, "not batching: a tensor has a fixed first dimension");
            max_batch_size = 0;
        }
    }
    let mut pad = Vec::new();
    if let Some(inputs) = &config.pad_inputs {
        pad = vec![None; signature.inputs.len()];
        for (input, &value) in inputs {
            let Some(position) = signature.inputs.iter().position(|s| &s.name == input) else {
                return Err(format!(
                    "batching.pad_inputs: the model has no input '{input}' (it has {})",
                    signature
                        .inputs
                        .iter()
                        .map(|s| format!("'{}'", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if !signature.inputs[position]
                .shape
                .iter()
                .skip(1)
                .any(|&d| d < 0)
            {
                return Err(format!(
                    "batching.pad_inputs: input '{input}' has no variable dimension after the batch dimension (shape {})",
                    crate::shape_text(&signature.inputs[position].shape)
                ));
            }
            pad[position] = Some(value);
        }
    }
    Ok(BatchPolicy {
        pad,
        max_batch_size,
        max_queue_delay: config
            .max_queue_delay_us
            .map_or(defaults.max_queue_delay, Duration::from_micros),
        preferred_batch_sizes: config.preferred_batch_sizes.clone().unwrap_or_default(),
        max_queue_size: config
            .max_queue_size
            .unwrap_or(defaults.max_queue_size)
            .max(1),
    })
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
}

impl ModelSource {
    /// A model of a repository: its directory, nothing overridden.
    pub fn in_repository(name: &str, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            version_policy: None,
            labels: None,
        }
    }
}

/// Where the manager finds models.
#[derive(Debug, Clone)]
pub enum Sources {
    /// Every model directory of a repository (`--model-repository`).
    Repository(PathBuf),
    /// A fixed list of models.
    List(Vec<ModelSource>),
    /// The models a TF Serving model config file lists (`--model-config-file`), read again at
    /// every poll.
    ConfigFile(PathBuf),
}

/// One row of the repository index (Triton's repository extension): a model version, or a
/// model with no version to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// Model name.
    pub name: String,
    /// Version, when the row is about one.
    pub version: Option<u64>,
    /// Lifecycle state; `None` for a model with no version.
    pub state: Option<VersionState>,
    /// Why it is not available, when something went wrong.
    pub reason: Option<String>,
}

impl IndexEntry {
    /// The state as Triton's repository index names it.
    pub fn triton_state(&self) -> &'static str {
        match self.state {
            Some(VersionState::Available) => "READY",
            Some(VersionState::Loading) => "LOADING",
            Some(VersionState::Unloading) => "UNLOADING",
            _ => "UNAVAILABLE",
        }
    }

    /// Why the version is not available, as the index shows it.
    pub fn reason_text(&self) -> String {
        match (&self.reason, self.state) {
            (Some(reason), _) => reason.clone(),
            (None, Some(VersionState::End)) => "unloaded".into(),
            (None, None) => "no version to load".into(),
            _ => String::new(),
        }
    }
}

struct VersionRecord {
    state: VersionState,
    error: Option<String>,
    loaded: Option<Arc<LoadedVersion>>,
    /// Of the config and model file the version was last loaded (or tried) from: a change
    /// means "load it again".
    fingerprint: u64,
    /// Raised once a retired version has been dropped.
    dropped: Option<Dropped>,
}

impl VersionRecord {
    /// The state, with a retired version that has been dropped shown as `End`.
    fn current_state(&self) -> VersionState {
        match &self.dropped {
            Some(dropped) if self.state == VersionState::Unloading && dropped.is_raised() => {
                VersionState::End
            }
            _ => self.state,
        }
    }
}

impl Default for VersionRecord {
    fn default() -> Self {
        Self {
            state: VersionState::Start,
            error: None,
            loaded: None,
            fingerprint: 0,
            dropped: None,
        }
    }
}

#[derive(Default)]
struct ModelRecord {
    versions: BTreeMap<u64, VersionRecord>,
    /// Labels in force (each names an available version unless the options allow otherwise).
    labels: BTreeMap<String, u64>,
    /// A problem with the model as a whole (its config cannot be read, say).
    error: Option<String>,
}

impl ModelRecord {
    /// The versions taking requests.
    fn serving(&self) -> Vec<u64> {
        self.versions
            .iter()
            .filter(|(_, v)| v.loaded.is_some())
            .map(|(&n, _)| n)
            .collect()
    }

    /// The version a selector names: `None` for the latest. An unknown label is an invalid
    /// argument, as TF Serving answers it.
    fn version_of(&self, name: &str, selector: &VersionSelector) -> Result<Option<u64>, Error> {
        match selector {
            VersionSelector::Latest => Ok(None),
            VersionSelector::Specific(version) => Ok(Some(*version)),
            VersionSelector::Label(label) => {
                self.labels.get(label).copied().map(Some).ok_or_else(|| {
                    Error::invalid(format!(
                        "unrecognized servable version label '{label}' of model '{name}'"
                    ))
                })
            }
        }
    }
}

/// Owns every model version's lifecycle and hands loaded versions to requests.
///
/// Loading happens on the caller's thread (call the blocking methods off the async runtime)
/// and one model at a time per model, while requests keep being served: the routing table is
/// only locked to swap a finished version in or a retired one out. A retired version stops
/// taking requests at once and is dropped (its memory returned) on a thread of its own once the
/// requests holding it have finished.
pub struct ModelManager {
    engines: Engines,
    options: ManagerOptions,
    sources: Sources,
    models: RwLock<BTreeMap<String, ModelRecord>>,
    /// One lock per model, held while it is synchronised with its source.
    syncing: Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    retiring: Mutex<Vec<Dropped>>,
    ready: AtomicBool,
}

impl ModelManager {
    /// A manager with no models yet that finds them in `sources` and loads them with one of
    /// `engines`.
    pub fn new(engines: Engines, options: ManagerOptions, sources: Sources) -> Self {
        Self {
            engines,
            options,
            sources,
            models: RwLock::default(),
            syncing: Mutex::default(),
            retiring: Mutex::default(),
            ready: AtomicBool::new(false),
        }
    }

    /// Whether the server is ready: start-up loading is done and it is not shutting down.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Marks the server ready (start-up loading done) or not (shutting down).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Every model the sources hold now.
    pub fn sources(&self) -> Result<Vec<ModelSource>, RepositoryError> {
        match &self.sources {
            Sources::List(list) => Ok(list.clone()),
            Sources::ConfigFile(path) => {
                let models = repository::read_model_config_file(path).map_err(|e| {
                    RepositoryError::Config {
                        message: e.to_string(),
                    }
                })?;
                Ok(models
                    .into_iter()
                    .map(|m| {
                        for warning in &m.warnings {
                            tracing::debug!(model = %m.name, "{warning}");
                        }
                        ModelSource {
                            name: m.name,
                            dir: m.base_path,
                            version_policy: m.version_policy,
                            labels: (!m.labels.is_empty()).then_some(m.labels),
                        }
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

    /// Loads every model of the sources per its version policy. A model that fails to load is
    /// recorded as failed and does not stop the others. Blocking.
    pub fn load_all(&self) -> Result<(), RepositoryError> {
        for source in self.sources()? {
            if let Err(e) = self.sync(&source, false, None) {
                tracing::error!(model = %source.name, "{}", e.message);
            }
        }
        Ok(())
    }

    /// One poll of the sources: new versions are loaded, removed ones retired, models whose
    /// config or files changed reloaded, and models gone from the sources unloaded. Blocking.
    pub fn poll(&self) -> Result<(), RepositoryError> {
        let sources = self.sources()?;
        for source in &sources {
            let before = self.model_error(&source.name);
            if let Err(e) = self.sync(source, false, None) {
                // A broken config is tried again at every poll; say so once, not every time.
                if before.is_some() && before == self.model_error(&source.name) {
                    tracing::debug!(model = %source.name, "{}", e.message);
                } else {
                    tracing::error!(model = %source.name, "{}", e.message);
                }
            }
        }
        let gone: Vec<String> = self
            .read()
            .iter()
            .filter(|(name, record)| {
                !sources.iter().any(|s| &s.name == *name)
                    && record.versions.values().any(|v| v.loaded.is_some())
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            tracing::info!(model = %name, "model removed from the repository: unloading");
            let _ = self.unload(&name);
        }
        Ok(())
    }

    /// Loads (or reloads) the model `name` from the sources, with `config` in place of its own
    /// config file when given. Errors: the model is not in the sources (not found), or a
    /// version failed to load (whatever was serving keeps serving). Blocking.
    pub fn load(&self, name: &str, config: Option<&ModelConfig>) -> Result<(), Error> {
        let config = config.map(|config| repository::LoadedConfig {
            config: config.clone(),
            source: repository::ConfigSource::Default,
            declared: None,
            warnings: Vec::new(),
        });
        self.load_with(name, config.as_ref())
    }

    fn load_with(
        &self,
        name: &str,
        config: Option<&repository::LoadedConfig>,
    ) -> Result<(), Error> {
        let sources = self
            .sources()
            .map_err(|e| Error::new(ErrorKind::Unavailable, e.to_string()))?;
        let source = sources.iter().find(|s| s.name == name).ok_or_else(|| {
            Error::not_found(format!("model '{name}' is not in the model repository"))
        })?;
        self.sync(source, true, config)
    }

    /// Stops serving every version of `name`; each finishes its in-flight requests, then is
    /// dropped. Blocking only for the routing change.
    pub fn unload(&self, name: &str) -> Result<(), Error> {
        let lock = self.model_lock(name);
        let _syncing = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let versions: Vec<u64> = {
            let models = self.read();
            let record = models
                .get(name)
                .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
            record.versions.keys().copied().collect()
        };
        for version in versions {
            self.retire(name, version);
            self.update(name, version, |r| {
                if r.state == VersionState::Failed {
                    r.state = VersionState::End;
                }
            });
        }
        if let Some(record) = self.write().get_mut(name) {
            record.labels.clear();
        }
        tracing::info!(model = %name, "model unloaded");
        Ok(())
    }

    /// The repository API's load: like [`ModelManager::load`], with `config` (Triton's
    /// `parameters.config`: a JSON object, either Triton's model configuration or the keys of
    /// `config.toml`) in place of the model's config file. Refused unless the control mode is
    /// `explicit`. Blocking.
    pub fn api_load(&self, name: &str, config: Option<&str>) -> Result<(), Error> {
        self.check_control()?;
        let config = config.map(|text| override_config(name, text)).transpose()?;
        self.load_with(name, config.as_ref())
    }

    /// The repository API's unload; refused unless the control mode is `explicit`.
    pub fn api_unload(&self, name: &str) -> Result<(), Error> {
        self.check_control()?;
        self.unload(name)
    }

    fn check_control(&self) -> Result<(), Error> {
        if self.options.model_control_api {
            Ok(())
        } else {
            Err(Error::invalid(
                "explicit model load / unload is not allowed: start the server with --model-control-mode explicit",
            ))
        }
    }

    /// Waits until every retired version has been dropped (its memory returned).
    pub fn wait_retired(&self) {
        let pending =
            std::mem::take(&mut *self.retiring.lock().unwrap_or_else(PoisonError::into_inner));
        for dropped in pending {
            dropped.wait();
        }
    }

    /// Brings one model in line with its source: the versions its policy wants are loaded (or
    /// reloaded when their config or file changed; with `force`, also those that failed
    /// before), the others retired, and its labels updated.
    fn sync(
        &self,
        source: &ModelSource,
        force: bool,
        config_override: Option<&repository::LoadedConfig>,
    ) -> Result<(), Error> {
        let name = source.name.as_str();
        let lock = self.model_lock(name);
        let _syncing = lock.lock().unwrap_or_else(PoisonError::into_inner);
        quiver_telemetry::lifecycle::register_model(name);
        self.write().entry(name.to_owned()).or_default();

        let mut loaded_config = match config_override {
            Some(config) => config.clone(),
            None => match repository::load_model_config(&source.dir) {
                Ok(config) => config,
                Err(e) => {
                    let message = e.to_string();
                    self.config_failed(name, &source.dir, &message);
                    return Err(Error::invalid(format!(
                        "model '{name}' cannot be loaded: {message}"
                    )));
                }
            },
        };
        if let Some(policy) = &source.version_policy {
            loaded_config.config.version_policy = policy.clone();
        }
        if let Some(labels) = &source.labels {
            loaded_config.config.labels = labels.clone();
        }
        let loaded_config = loaded_config;
        let config = &loaded_config.config;
        let (versions, skipped) = repository::scan_model(&source.dir);
        for skipped in &skipped {
            tracing::debug!(path = %skipped.path.display(), reason = %skipped.reason, "skipped version entry");
        }
        let on_disk: Vec<u64> = versions.iter().map(|v| v.version).collect();
        let wanted = config.version_policy.select(&on_disk);
        if on_disk.is_empty() {
            tracing::warn!(model = %name, path = %source.dir.display(), "model has no versions; nothing to serve");
        }

        let to_load: Vec<(&VersionDir, u64)> = {
            let models = self.read();
            let record = models.get(name);
            versions
                .iter()
                .filter(|v| wanted.contains(&v.version))
                .map(|v| (v, fingerprint(config, &source.dir, v)))
                .filter(
                    |(v, print)| match record.and_then(|r| r.versions.get(&v.version)) {
                        None => true,
                        Some(r) => match r.state {
                            VersionState::Available => r.fingerprint != *print || force,
                            VersionState::Failed => r.fingerprint != *print || force,
                            VersionState::Loading => false,
                            VersionState::Start | VersionState::Unloading | VersionState::End => {
                                true
                            }
                        },
                    },
                )
                .collect()
        };
        let unwanted: Vec<u64> = self
            .serving(name)
            .into_iter()
            .filter(|v| !wanted.contains(v))
            .collect();

        if config.lifecycle.rollover == Rollover::UnloadFirst && !to_load.is_empty() {
            // Memory-bound hosts: nothing new is loaded while an old version holds memory.
            let replaced: Vec<u64> = to_load.iter().map(|(v, _)| v.version).collect();
            for version in unwanted.iter().chain(&replaced) {
                if let Some(dropped) = self.retire(name, *version) {
                    dropped.wait();
                }
            }
        }

        let mut failures = Vec::new();
        for (version, print) in &to_load {
            if let Err(reason) =
                self.load_version(name, &source.dir, version, &loaded_config, *print)
            {
                failures.push(format!("version {}: {reason}", version.version));
            }
        }

        // The old versions go once a wanted one serves, so a broken new version never leaves
        // the model with nothing; a version whose directory is gone goes regardless.
        let now_serving = self.serving(name);
        let wanted_serves = now_serving.iter().any(|v| wanted.contains(v));
        for version in now_serving {
            if !wanted.contains(&version) && (wanted_serves || !on_disk.contains(&version)) {
                tracing::info!(model = %name, version, "retiring version");
                self.retire(name, version);
            }
        }
        self.update_labels(name, &config.labels);
        if let Some(record) = self.write().get_mut(name) {
            record.error = None;
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "failed to load model '{name}': {}",
                failures.join("; ")
            )))
        }
    }

    /// A model whose config cannot be used: the versions serving keep serving (with the reason
    /// shown), and the version that would be loaded by default shows as failed with it.
    fn config_failed(&self, name: &str, dir: &Path, message: &str) {
        let (versions, _) = repository::scan_model(dir);
        let on_disk: Vec<u64> = versions.iter().map(|v| v.version).collect();
        let latest = VersionPolicy::default().select(&on_disk);
        for version in latest.iter().chain(&self.serving(name)) {
            self.update(name, *version, |r| {
                if r.loaded.is_some() {
                    r.error = Some(format!("reload failed: {message}"));
                } else {
                    r.state = VersionState::Failed;
                    r.error = Some(message.to_owned());
                }
            });
        }
        if let Some(record) = self.write().get_mut(name) {
            record.error = Some(message.to_owned());
        }
    }

    /// Loads one version and swaps it in; the one it replaces (a reload) is retired.
    fn load_version(
        &self,
        name: &str,
        model_dir: &Path,
        version: &VersionDir,
        loaded_config: &repository::LoadedConfig,
        print: u64,
    ) -> Result<(), String> {
        let number = version.version;
        for warning in &loaded_config.warnings {
            tracing::warn!(model = %name, version = number, "{warning}");
        }
        self.update(name, number, |r| {
            if r.loaded.is_none() {
                r.state = VersionState::Loading;
                r.error = None;
            }
        });
        let started = Instant::now();
        let result = self.build(name, model_dir, version, loaded_config);
        quiver_telemetry::lifecycle::record_load(name, number, started.elapsed(), result.is_ok());
        match result {
            Ok((loaded, reason)) => {
                tracing::info!(model = %name, version = number, engine = loaded.engine(),
                    why = %reason, seconds = started.elapsed().as_secs_f64(), "model version available");
                let mut old = None;
                self.update(name, number, |r| {
                    old = r.loaded.replace(Arc::new(loaded));
                    r.state = VersionState::Available;
                    r.dropped = None;
                    r.error = None;
                    r.fingerprint = print;
                });
                if let Some(old) = old {
                    self.drop_when_idle(name, number, old, Dropped::default(), false);
                }
                Ok(())
            }
            Err(reason) => {
                tracing::error!(model = %name, version = number, %reason, "model version failed to load");
                self.update(name, number, |r| {
                    r.fingerprint = print;
                    if r.loaded.is_some() {
                        // A reload failed: the version loaded before keeps serving.
                        r.error = Some(format!("reload failed: {reason}"));
                    } else {
                        r.state = VersionState::Failed;
                        r.error = Some(reason.clone());
                    }
                });
                Err(reason)
            }
        }
    }

    /// Reads the model's config, picks its engine, loads one version on every instance and
    /// warms them up; on success, also says why that engine.
    fn build(
        &self,
        name: &str,
        model_dir: &Path,
        version: &VersionDir,
        loaded_config: &repository::LoadedConfig,
    ) -> Result<(LoadedVersion, String), String> {
        let config = &loaded_config.config;
        let selection = self
            .engines
            .select(config.engine.unwrap_or(self.options.default_engine))?;
        let options = self.engine_options(name, version.version, &config.engine_options);
        let defaults = &self.options.batching;
        let instances = config
            .batching
            .instances
            .unwrap_or(defaults.instances)
            .max(1);
        let mut sessions: Vec<Box<dyn Session>> = Vec::with_capacity(instances);
        for _ in 0..instances {
            sessions.push(
                selection
                    .engine
                    .load(&version.model_file, &options)
                    .map_err(|e| format!("{} engine: {e}", selection.engine.name()))?,
            );
        }
        let signature = sessions
            .first()
            .map(|s| s.signature().clone())
            .unwrap_or_default();
        if let Some(declared) = &loaded_config.declared {
            check_declared(declared, &signature)?;
        }
        let policy = batch_policy(name, &config.batching, defaults, &signature)?;
        let pipeline = quiver_processing::Pipeline::build(
            model_dir,
            &config.inputs,
            &config.outputs,
            &signature,
        )?;
        let version_dir = model_dir.join(version.version.to_string());
        let warmup = crate::warmup::requests(config.lifecycle.warmup, &version_dir, &signature)
            .map_err(|e| format!("warm-up: {e}"))?;
        if !warmup.is_empty() {
            let started = Instant::now();
            for session in &sessions {
                crate::warmup::run(session.as_ref(), &warmup)?;
            }
            tracing::info!(model = %name, version = version.version, requests = warmup.len(),
                seconds = started.elapsed().as_secs_f64(), "warmed up");
        }
        let default_timeout = match config.batching.default_timeout_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => defaults.default_timeout,
        };
        let loaded = LoadedVersion::start(
            name,
            version.version,
            selection.engine.name(),
            selection.engine.platform(),
            sessions,
            policy,
            default_timeout,
        )
        .map_err(|e| format!("cannot start the model's threads: {e}"))?
        .with_pipeline(pipeline);
        Ok((loaded, selection.reason))
    }

    /// Takes a version out of routing; it is dropped once its in-flight requests end, and then
    /// shows as `End`. The returned flag is raised once it has been dropped.
    fn retire(&self, name: &str, version: u64) -> Option<Dropped> {
        let mut taken = None;
        self.update(name, version, |r| {
            if let Some(loaded) = r.loaded.take() {
                r.state = VersionState::Unloading;
                let dropped = Dropped::default();
                r.dropped = Some(dropped.clone());
                taken = Some((loaded, dropped));
            }
        });
        let (loaded, dropped) = taken?;
        self.drop_when_idle(name, version, loaded, dropped.clone(), true);
        Some(dropped)
    }

    /// Drops `loaded` on a thread of its own once no request holds it (nothing can take a new
    /// reference: it is out of the routing table), then raises `dropped`. `retired`: the version
    /// leaves (rather than being replaced by a reload of itself).
    fn drop_when_idle(
        &self,
        name: &str,
        version: u64,
        loaded: Arc<LoadedVersion>,
        dropped: Dropped,
        retired: bool,
    ) {
        let model = name.to_owned();
        let raised = dropped.clone();
        let retire = move || {
            while Arc::strong_count(&loaded) > 1 {
                std::thread::sleep(Duration::from_millis(5));
            }
            drop(loaded);
            crate::memory::release();
            if retired {
                quiver_telemetry::lifecycle::set_state(&model, version, VersionState::End.as_str());
                tracing::info!(model = %model, version, "model version unloaded");
            }
            raised.raise();
        };
        if let Err(e) = std::thread::Builder::new()
            .name(format!("quiver-retire-{name}"))
            .spawn(retire)
        {
            // The closure (and the version) is dropped with the error: requests still holding
            // the version keep it alive until they end.
            tracing::error!(model = %name, version, "cannot start a thread to retire the version: {e}");
            dropped.raise();
        }
        let mut retiring = self.retiring.lock().unwrap_or_else(PoisonError::into_inner);
        retiring.retain(|d| !d.is_raised());
        retiring.push(dropped);
    }

    fn update_labels(&self, name: &str, configured: &BTreeMap<String, u64>) {
        let mut models = self.write();
        let Some(record) = models.get_mut(name) else {
            return;
        };
        let available = record.serving();
        record
            .labels
            .retain(|label, _| configured.contains_key(label));
        for (label, &version) in configured {
            if self.options.allow_unavailable_labels || available.contains(&version) {
                record.labels.insert(label.clone(), version);
            } else if record.labels.get(label) != Some(&version) {
                tracing::warn!(model = %name, %label, version,
                    "label not moved: version {version} is not available (it keeps its old version, if any)");
            }
        }
    }

    /// A model's engine options: its config, then the server-wide settings.
    fn engine_options(
        &self,
        name: &str,
        version: u64,
        config: &EngineOptionsConfig,
    ) -> EngineOptions {
        EngineOptions {
            intra_op_threads: config.intra_op_threads,
            inter_op_threads: config.inter_op_threads,
            optimization: config
                .graph_optimization_level
                .unwrap_or(self.options.optimization),
            optimized_model_path: config.optimized_model_path.clone().or_else(|| {
                let dir = self.options.optimized_model_dir.as_ref()?.join(name).join(version.to_string());
                if let Err(e) = std::fs::create_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), "cannot create the directory for the optimised model: {e}");
                }
                Some(dir.join(repository::MODEL_FILE))
            }),
        }
    }

    /// Changes one version's record (creating it), keeping the state metric in step.
    fn update(&self, name: &str, version: u64, change: impl FnOnce(&mut VersionRecord)) {
        let state = {
            let mut models = self.write();
            let record = models
                .entry(name.to_owned())
                .or_default()
                .versions
                .entry(version)
                .or_default();
            change(record);
            record.state
        };
        quiver_telemetry::lifecycle::set_state(name, version, state.as_str());
    }

    fn model_lock(&self, name: &str) -> Arc<Mutex<()>> {
        Arc::clone(
            self.syncing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default(),
        )
    }

    /// The loaded version of `name` that `selector` picks.
    pub fn get(&self, name: &str, selector: &VersionSelector) -> Result<Arc<LoadedVersion>, Error> {
        let models = self.read();
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
        let Some(version) = record.version_of(name, selector)? else {
            return record
                .versions
                .values()
                .rev()
                .find_map(|v| v.loaded.clone())
                .ok_or_else(|| {
                    Error::not_found(format!("model '{name}' has no available version"))
                });
        };
        match record.versions.get(&version) {
            Some(VersionRecord {
                loaded: Some(loaded),
                ..
            }) => Ok(Arc::clone(loaded)),
            Some(v) => Err(Error::not_found(format!(
                "version {version} of model '{name}' is not available (state {})",
                v.current_state().tf_name()
            ))),
            None => Err(Error::not_found(format!(
                "model '{name}' has no version {version}"
            ))),
        }
    }

    /// Status of every version of `name`, or of one version.
    pub fn status(&self, name: &str, version: Option<u64>) -> Result<Vec<VersionStatus>, Error> {
        let models = self.read();
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
        let status = |(&version, v): (&u64, &VersionRecord)| VersionStatus {
            version,
            state: v.current_state(),
            error: v.error.clone(),
        };
        match version {
            None => Ok(record.versions.iter().rev().map(status).collect()),
            Some(wanted) => record
                .versions
                .get_key_value(&wanted)
                .map(|entry| vec![status(entry)])
                .ok_or_else(|| Error::not_found(format!("model '{name}' has no version {wanted}"))),
        }
    }

    /// Status of the versions `selector` names: every version for the latest (as TF Serving's
    /// status lists them all), else the one it names.
    pub fn status_of(
        &self,
        name: &str,
        selector: &VersionSelector,
    ) -> Result<Vec<VersionStatus>, Error> {
        let version = {
            let models = self.read();
            let record = models
                .get(name)
                .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
            record.version_of(name, selector)?
        };
        self.status(name, version)
    }

    /// The labels in force for `name`.
    pub fn labels(&self, name: &str) -> Result<BTreeMap<String, u64>, Error> {
        self.read()
            .get(name)
            .map(|r| r.labels.clone())
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))
    }

    /// Every model version known, by name then version (Triton's repository index); a model with
    /// no version gets one row of its own. With `ready_only`, only available versions.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        // Models of the sources never loaded (explicit mode) are listed too, as Triton does.
        let unseen: Vec<String> = if ready_only {
            Vec::new()
        } else {
            let known = self.model_names();
            self.sources()
                .unwrap_or_default()
                .into_iter()
                .map(|s| s.name)
                .filter(|name| !known.contains(name))
                .collect()
        };
        let models = self.read();
        let mut rows: Vec<IndexEntry> = unseen
            .into_iter()
            .map(|name| IndexEntry {
                name,
                version: None,
                state: None,
                reason: Some("not loaded".into()),
            })
            .collect();
        for (name, record) in models.iter() {
            if record.versions.is_empty() && !ready_only {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: None,
                    reason: record.error.clone(),
                });
            }
            for (&version, v) in &record.versions {
                if ready_only && v.loaded.is_none() {
                    continue;
                }
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version),
                    state: Some(v.current_state()),
                    reason: v.error.clone().or_else(|| record.error.clone()),
                });
            }
        }
        rows.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        rows
    }

    fn serving(&self, name: &str) -> Vec<u64> {
        self.read()
            .get(name)
            .map(ModelRecord::serving)
            .unwrap_or_default()
    }

    fn model_error(&self, name: &str) -> Option<String> {
        self.read().get(name).and_then(|r| r.error.clone())
    }

    /// Names of all known models.
    pub fn model_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A load's `parameters.config`: Quiver's keys, else Triton's model configuration in JSON.
fn override_config(name: &str, text: &str) -> Result<repository::LoadedConfig, Error> {
    let quiver = match serde_json::from_str::<ModelConfig>(text) {
        Ok(config) => {
            return Ok(repository::LoadedConfig {
                config,
                source: repository::ConfigSource::Default,
                declared: None,
                warnings: Vec::new(),
            });
        }
        Err(e) => e,
    };
    match repository::parse_triton_json(text) {
        Ok(triton) => {
            if let Some(declared) = triton.name.as_deref().filter(|n| *n != name) {
                return Err(Error::invalid(format!(
                    "parameters.config: name \"{declared}\" is not the model's name \"{name}\""
                )));
            }
            // Checked against the model at load, as a config.pbtxt's are.
            Ok(repository::LoadedConfig {
                config: triton.config,
                source: repository::ConfigSource::TritonPbtxt,
                declared: Some(repository::DeclaredSignature {
                    max_batch_size: triton.max_batch_size,
                    inputs: triton.inputs,
                    outputs: triton.outputs,
                }),
                warnings: triton
                    .warnings
                    .into_iter()
                    .map(|w| format!("parameters.config: {w}"))
                    .collect(),
            })
        }
        Err(triton) => Err(Error::invalid(format!(
            "parameters.config is neither Quiver's model config ({quiver}) nor Triton's ({triton})"
        ))),
    }
}

/// Checks that the tensors a Triton config declares are the model's: a config written for
/// another model (or an old version) fails at load instead of at the first request.
fn check_declared(
    declared: &repository::DeclaredSignature,
    signature: &ModelSignature,
) -> Result<(), String> {
    for (kind, tensors, specs) in [
        ("input", &declared.inputs, &signature.inputs),
        ("output", &declared.outputs, &signature.outputs),
    ] {
        for tensor in tensors {
            let Some(spec) = specs.iter().find(|s| s.name == tensor.name) else {
                return Err(format!(
                    "the Triton model config declares {kind} '{}', which the model does not have (it has {})",
                    tensor.name,
                    specs
                        .iter()
                        .map(|s| format!("'{}'", s.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            if tensor.dtype != spec.dtype.kserve_name() {
                return Err(format!(
                    "the Triton model config declares {kind} '{}' as {}, the model has {}",
                    tensor.name,
                    tensor.dtype,
                    spec.dtype.kserve_name()
                ));
            }
        }
    }
    Ok(())
}

/// A flag raised once a retired version has been dropped, that threads can wait for.
#[derive(Clone, Default)]
struct Dropped(Arc<(Mutex<bool>, Condvar)>);

impl Dropped {
    fn raise(&self) {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.0.1.notify_all();
    }

    fn is_raised(&self) -> bool {
        *self.0.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wait(&self) {
        let mut raised = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        while !*raised {
            raised = self
                .0
                .1
                .wait(raised)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What a version is loaded from: its config, and the size and modification time of its model
/// file and of the files its processing reads (a new labels.txt or tokenizer.json reloads it).
fn fingerprint(config: &ModelConfig, model_dir: &Path, version: &VersionDir) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // Labels are routing, not part of what is loaded: moving one must not reload anything.
    let loaded_from = ModelConfig {
        labels: BTreeMap::new(),
        ..config.clone()
    };
    format!("{loaded_from:?}").hash(&mut hasher);
    let files = config.processing_files();
    let files = files.iter().map(|file| model_dir.join(file));
    for file in std::iter::once(version.model_file.clone()).chain(files) {
        if let Ok(meta) = std::fs::metadata(&file) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}
