//! The model manager: which versions of which models exist, their state, and routing requests
//! to a loaded version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use quiver_batcher::BatchPolicy;
use quiver_engine_api::{EngineOptions, OptimizationLevel};
use quiver_engine_api::{ModelSignature, Session};
use quiver_repository::{
    self as repository, BatchingConfig, EngineChoice, EngineOptionsConfig, ModelDir,
    RepositoryError, VersionDir,
};

use crate::Error;
use crate::engines::Engines;
use crate::version::LoadedVersion;

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
        }
    }
}

struct VersionRecord {
    state: VersionState,
    error: Option<String>,
    loaded: Option<Arc<LoadedVersion>>,
}

#[derive(Default)]
struct ModelRecord {
    versions: BTreeMap<u64, VersionRecord>,
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
    Ok(BatchPolicy {
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

/// Owns every model version's lifecycle and hands loaded versions to requests.
pub struct ModelManager {
    engines: Engines,
    options: ManagerOptions,
    models: RwLock<BTreeMap<String, ModelRecord>>,
}

impl ModelManager {
    /// A manager with no models that loads them with one of `engines`.
    pub fn new(engines: Engines, options: ManagerOptions) -> Self {
        Self {
            engines,
            options,
            models: RwLock::default(),
        }
    }

    /// Loads every model of the repository at `root`: the highest version of each (TF Serving's
    /// default `latest` policy). A model that fails to load is recorded as failed and does not
    /// stop the others. Blocking: call it off the async runtime.
    pub fn load_repository(&self, root: &Path) -> Result<(), RepositoryError> {
        let scan = repository::scan(root)?;
        for skipped in &scan.skipped {
            tracing::warn!(path = %skipped.path.display(), reason = %skipped.reason, "skipped repository entry");
        }
        for model in &scan.models {
            self.load_latest(model);
        }
        Ok(())
    }

    fn load_latest(&self, model: &ModelDir) {
        quiver_telemetry::lifecycle::register_model(&model.name);
        let Some(latest) = model.latest() else {
            tracing::warn!(model = %model.name, path = %model.path.display(), "model has no versions; nothing to serve");
            self.write().entry(model.name.clone()).or_default();
            return;
        };
        self.set_state(
            &model.name,
            latest.version,
            VersionState::Loading,
            None,
            None,
        );
        let started = Instant::now();
        let result = self.load_version(model, latest);
        quiver_telemetry::lifecycle::record_load(
            &model.name,
            latest.version,
            started.elapsed(),
            result.is_ok(),
        );
        match result {
            Ok((loaded, reason)) => {
                tracing::info!(model = %model.name, version = latest.version, engine = loaded.engine(),
                    why = %reason, seconds = started.elapsed().as_secs_f64(), "model version available");
                self.set_state(
                    &model.name,
                    latest.version,
                    VersionState::Available,
                    None,
                    Some(Arc::new(loaded)),
                );
            }
            Err(reason) => {
                tracing::error!(model = %model.name, version = latest.version, %reason, "model version failed to load");
                self.set_state(
                    &model.name,
                    latest.version,
                    VersionState::Failed,
                    Some(reason),
                    None,
                );
            }
        }
    }

    /// Reads the model's config, picks its engine and loads one version; on success, also says
    /// why that engine.
    fn load_version(
        &self,
        model: &ModelDir,
        version: &VersionDir,
    ) -> Result<(LoadedVersion, String), String> {
        let config = repository::load_config(&model.path).map_err(|e| e.to_string())?;
        let selection = self
            .engines
            .select(config.engine.unwrap_or(self.options.default_engine))?;
        let options = self.engine_options(&model.name, version.version, &config.engine_options);
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
        let policy = batch_policy(&model.name, &config.batching, defaults, &signature)?;
        let default_timeout = match config.batching.default_timeout_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => defaults.default_timeout,
        };
        let loaded = LoadedVersion::start(
            &model.name,
            version.version,
            selection.engine.name(),
            selection.engine.platform(),
            sessions,
            policy,
            default_timeout,
        )
        .map_err(|e| format!("cannot start the model's threads: {e}"))?;
        Ok((loaded, selection.reason))
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

    fn set_state(
        &self,
        name: &str,
        version: u64,
        state: VersionState,
        error: Option<String>,
        loaded: Option<Arc<LoadedVersion>>,
    ) {
        quiver_telemetry::lifecycle::set_state(name, version, state.as_str());
        let mut models = self.write();
        let record = models.entry(name.to_owned()).or_default();
        record.versions.insert(
            version,
            VersionRecord {
                state,
                error,
                loaded,
            },
        );
    }

    /// The loaded version of `name` that `selector` picks.
    pub fn get(&self, name: &str, selector: &VersionSelector) -> Result<Arc<LoadedVersion>, Error> {
        let models = self.read();
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
        match selector {
            VersionSelector::Latest => record
                .versions
                .values()
                .rev()
                .find_map(|v| v.loaded.clone())
                .ok_or_else(|| {
                    Error::not_found(format!("model '{name}' has no available version"))
                }),
            VersionSelector::Specific(version) => match record.versions.get(version) {
                Some(VersionRecord {
                    loaded: Some(loaded),
                    ..
                }) => Ok(Arc::clone(loaded)),
                Some(v) => Err(Error::not_found(format!(
                    "version {version} of model '{name}' is not available (state {})",
                    v.state.tf_name()
                ))),
                None => Err(Error::not_found(format!(
                    "model '{name}' has no version {version}"
                ))),
            },
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
            state: v.state,
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
