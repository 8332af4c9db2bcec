//! The model manager: which versions of which models exist, their state, and routing requests
//! to a loaded version.
//!
//! One job a file: [`table`] (the routing table and its read queries), [`sources`] (where models
//! are found), [`plan`] (what to load, reload and retire, as a pure function), [`loader`]
//! (building a version), [`retire`] (letting a version go once its requests end) and
//! [`fingerprint`]. This file carries a plan out and holds the public lifecycle calls.

mod budget;
mod fingerprint;
mod loader;
mod mirror;
mod on_demand;
mod options;
mod plan;
mod retire;
mod routing;
mod sources;
mod table;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use quiver_repository::{
    self as repository, ModelConfig, RepositoryError, Rollover, VersionPolicy,
};

use crate::engines::Engines;
use crate::load_error::LoadError;
use crate::{Error, ErrorKind};
use plan::{Action, Current, Wanted};
use retire::Dropped;

/// How long an unload waits for its versions' in-flight requests to end before it answers.
const UNLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
pub(crate) use retire::Retirement;
use table::ModelRecord;

pub use budget::Budget;
pub use options::{BatchingDefaults, DEFAULT_MAX_INFLIGHT, ManagerOptions};
pub use sources::{ModelSource, RemoteModel, Sources, Stores};
pub use table::{IndexEntry, VersionSelector, VersionState, VersionStatus};

/// Owns every model version's lifecycle and hands loaded versions to requests.
///
/// Loading happens on the caller's thread (call the blocking methods off the async runtime)
/// and one model at a time per model, while requests keep being served: the routing table is
/// only locked to swap a finished version in or a retired one out. A retired version stops
/// taking requests at once and is dropped (its memory returned) once the requests holding it
/// have finished.
pub struct ModelManager {
    engines: Engines,
    options: ManagerOptions,
    sources: Sources,
    models: RwLock<BTreeMap<String, ModelRecord>>,
    /// One lock per model, held while it is synchronised with its source.
    syncing: Mutex<BTreeMap<String, Arc<Mutex<()>>>>,
    /// Flags of the versions retired and not yet known to be dropped.
    retiring: Mutex<Vec<Dropped>>,
    ready: AtomicBool,
    /// Under a memory budget, held from making room for a version until it is in (or failed),
    /// so two loads never count the same room.
    admission: Mutex<()>,
    /// The clock of `last_used`: a count of uses, so that the order is exact however close
    /// two uses come.
    clock: AtomicU64,
    /// The server-wide bound on requests in flight.
    inflight: crate::inflight::InflightLimit,
    /// Versions just loaded on demand, held for the request that woke them
    /// (`on_demand::wake` takes them out).
    woken: Mutex<BTreeMap<(String, u64), Arc<crate::LoadedVersion>>>,
    /// Every model's traffic policy.
    policies: crate::traffic::Policies,
    /// Labels set through the admin API, by model (they win over the config files' labels).
    api_labels: RwLock<BTreeMap<String, BTreeMap<String, u64>>>,
    /// Told of every version loaded, failed, retired or unloaded (the load history).
    history: RwLock<Option<HistoryHook>>,
}

impl std::fmt::Debug for ModelManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelManager").finish_non_exhaustive()
    }
}

/// What the load history is told: model, version, event (`loaded`, `failed`, `retired`,
/// `unloaded`) and the reason, when there is one.
pub type HistoryHook = Arc<dyn Fn(&str, u64, &'static str, Option<&str>) + Send + Sync>;

/// One version to load, and from what.
struct Load<'a> {
    model_dir: &'a Path,
    version: &'a repository::VersionDir,
    config: &'a repository::LoadedConfig,
    /// Of the files it loads from.
    fingerprint: u64,
    /// Leave it idle if it fits the memory budget only by unloading others.
    defer: bool,
    /// A request is waiting for this version (woken on demand): hand it the version as it
    /// goes in, before another load can take it out again.
    woken: bool,
}

/// The size of a version's model file (0 when it cannot be read: loading will say why).
fn file_bytes(version: &repository::VersionDir) -> u64 {
    std::fs::metadata(&version.model_file).map_or(0, |m| m.len())
}

/// How far a sync goes beyond what the source wants.
#[derive(Debug, Clone, Copy, Default)]
struct SyncMode {
    /// Load the wanted versions again even when unchanged, failed or idle (a load request).
    force: bool,
    /// Load this idle version again (a request wants it).
    wake: Option<u64>,
    /// A version that fits the memory budget only by unloading others stays unloaded (idle)
    /// instead: the start-up and polls of a repository larger than the budget load what fits
    /// and leave the rest to the requests that want it.
    defer: bool,
}

impl ModelManager {
    /// A manager with no models yet that finds them in `sources` and loads them with one of
    /// `engines`.
    pub fn new(engines: Engines, options: ManagerOptions, sources: Sources) -> Self {
        Self {
            engines,
            sources,
            models: RwLock::default(),
            syncing: Mutex::default(),
            retiring: Mutex::default(),
            ready: AtomicBool::new(false),
            admission: Mutex::default(),
            clock: AtomicU64::new(0),
            inflight: crate::inflight::InflightLimit::new(options.max_inflight),
            woken: Mutex::default(),
            policies: crate::traffic::Policies::default(),
            api_labels: RwLock::default(),
            history: RwLock::default(),
            options,
        }
    }

    /// Has the load history told of every version event from now on.
    pub fn set_history(&self, hook: HistoryHook) {
        *self.history.write().unwrap_or_else(PoisonError::into_inner) = Some(hook);
    }

    fn tell_history(&self, name: &str, version: u64, event: &'static str, reason: Option<&str>) {
        let hook = self
            .history
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(hook) = hook {
            hook(name, version, event, reason);
        }
    }

    /// A place under the server-wide bound on requests in flight, or the error to refuse the
    /// request with.
    pub fn admit_request(&self) -> Result<crate::inflight::Admitted<'_>, Error> {
        self.inflight.admit()
    }

    /// The next tick of the budget's least-recently-used order.
    pub(crate) fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::Relaxed)
    }

    fn deferring(&self) -> SyncMode {
        SyncMode {
            defer: self.options.budget.is_set(),
            ..SyncMode::default()
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
        self.sources.list()
    }

    /// Loads every model of the sources per its version policy. A model that fails to load is
    /// recorded as failed and does not stop the others. Blocking.
    pub fn load_all(&self) -> Result<(), RepositoryError> {
        self.load_listed(&self.sources()?);
        Ok(())
    }

    /// [`ModelManager::load_all`] for models the caller has just read from the sources.
    pub fn load_listed(&self, sources: &[ModelSource]) {
        for source in sources {
            if let Err(e) = self.sync(source, self.deferring(), None) {
                tracing::error!(model = %source.name, "{}", e.message);
            }
        }
    }

    /// One poll of the sources: new versions are loaded, removed ones retired, models whose
    /// config or files changed reloaded, and models gone from the sources unloaded. Blocking.
    pub fn poll(&self) -> Result<(), RepositoryError> {
        let sources = self.sources()?;
        for source in &sources {
            let before = self.model_error(&source.name);
            if let Err(e) = self.sync(source, self.deferring(), None) {
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
        let force = SyncMode {
            force: true,
            ..SyncMode::default()
        };
        self.sync(source, force, config)
    }

    /// Stops serving every version of `name`; each finishes its in-flight requests, then is
    /// dropped. Blocking only for the routing change.
    pub fn unload(&self, name: &str) -> Result<(), Error> {
        let lock = self.model_lock(name);
        let syncing = lock.lock().unwrap_or_else(PoisonError::into_inner);
        let versions: Vec<u64> = {
            let models = self.read();
            let record = models
                .get(name)
                .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
            record.versions.keys().copied().collect()
        };
        let mut retiring = Vec::new();
        for version in versions {
            if let Some(dropped) = self.retire(name, version) {
                self.tell_history(name, version, "unloaded", Some("unloaded"));
                retiring.push(dropped);
            }
            self.update(name, version, |r| {
                if matches!(r.state, VersionState::Failed | VersionState::Idle) {
                    r.state = VersionState::End;
                }
            });
        }
        if let Some(record) = self.write().get_mut(name) {
            record.labels.clear();
        }
        drop(syncing);
        // As Triton's unload does, answer once the versions are gone (their in-flight requests
        // finished, their memory returned), so a client that asks right after sees them ended —
        // within a bound: a version whose requests run longer shows UNLOADING until they end.
        let deadline = std::time::Instant::now() + UNLOAD_WAIT;
        for dropped in retiring {
            dropped.wait_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
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
        let config = config
            .map(|text| loader::override_config(name, text))
            .transpose()?;
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
        mode: SyncMode,
        config_override: Option<&repository::LoadedConfig>,
    ) -> Result<(), Error> {
        let name = source.name.as_str();
        let lock = self.model_lock(name);
        let _syncing = lock.lock().unwrap_or_else(PoisonError::into_inner);
        quiver_telemetry::lifecycle::register_model(name);
        if self.options.budget.is_set() {
            quiver_telemetry::lifecycle::register_budget(name);
        }
        self.write().entry(name.to_owned()).or_default();
        if let Some(remote) = &source.remote
            && let Err(e) = remote.store.fetch_model_files(&remote.key, &remote.listing)
        {
            // What serves keeps serving; the next poll tries again.
            let message = e.to_string();
            if let Some(record) = self.write().get_mut(name) {
                record.error = Some(LoadError::Download(message.clone()));
            }
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("model '{name}' cannot be loaded: {message}"),
            ));
        }

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
        let config = &loaded_config.config;
        let mut failures = Vec::new();
        if let Some(remote) = &source.remote {
            failures.extend(self.mirror(name, remote, config));
        }
        let (versions, skipped) = repository::scan_model(&source.dir);
        for skipped in &skipped {
            tracing::debug!(path = %skipped.path.display(), reason = %skipped.reason, "skipped version entry");
        }
        let on_disk: Vec<(u64, u64)> = versions
            .iter()
            .map(|v| (v.version, fingerprint::fingerprint(config, &source.dir, v)))
            .collect();
        let numbers: Vec<u64> = on_disk.iter().map(|(v, _)| *v).collect();
        let wanted = config.version_policy.select(&numbers);
        if on_disk.is_empty() {
            tracing::warn!(model = %name, path = %source.dir.display(), "model has no versions; nothing to serve");
        }
        let current: BTreeMap<u64, Current> = self
            .read()
            .get(name)
            .map(|record| {
                record
                    .versions
                    .iter()
                    .map(|(&version, r)| {
                        let now = Current {
                            state: r.state,
                            fingerprint: r.fingerprint,
                            serving: r.loaded.is_some(),
                        };
                        (version, now)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let actions = plan::plan(
            &current,
            &Wanted {
                on_disk: &on_disk,
                wanted: &wanted,
                force: mode.force,
                wake: mode.wake,
                unload_first: config.lifecycle.rollover == Rollover::UnloadFirst,
            },
        );

        for action in actions {
            match action {
                Action::Unload(version) => {
                    if let Some(dropped) = self.retire(name, version) {
                        dropped.wait();
                    }
                }
                Action::Load {
                    version,
                    fingerprint,
                } => {
                    let Some(dir) = versions.iter().find(|v| v.version == version) else {
                        continue;
                    };
                    let load = Load {
                        model_dir: &source.dir,
                        version: dir,
                        config: &loaded_config,
                        fingerprint,
                        defer: mode.defer,
                        woken: mode.wake == Some(version),
                    };
                    if let Err(reason) = self.load_version(name, &load) {
                        failures.push(format!("version {version}: {reason}"));
                    }
                }
                Action::Retire {
                    version,
                    once_replaced,
                } => {
                    let replaced = || self.serving(name).iter().any(|v| wanted.contains(v));
                    if !once_replaced || replaced() {
                        tracing::info!(model = %name, version, "retiring version");
                        if self.retire(name, version).is_some() {
                            self.tell_history(name, version, "retired", Some("version policy"));
                        }
                    }
                }
            }
        }
        self.update_labels(name, &config.labels);
        self.policies.set_config(name, config.traffic.clone());
        let forgotten: Vec<u64> = {
            let mut models = self.write();
            let Some(record) = models.get_mut(name) else {
                return Ok(());
            };
            record.error = None;
            // An idle version the policy no longer wants is simply gone.
            record
                .versions
                .iter()
                .filter(|(v, r)| r.state == VersionState::Idle && !wanted.contains(v))
                .map(|(&v, _)| v)
                .collect()
        };
        for version in forgotten {
            self.update(name, version, |r| r.state = VersionState::End);
        }
        if let Some(remote) = &source.remote {
            // What the policy wants and what still serves stay in the cache.
            let mut in_use = self.serving(name);
            in_use.extend(&wanted);
            remote.store.keep(&remote.key, &in_use);
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
        let error = LoadError::Config(message.to_owned());
        for version in latest.iter().chain(&self.serving(name)) {
            self.update(name, *version, |r| r.fail(error.clone()));
        }
        if let Some(record) = self.write().get_mut(name) {
            record.error = Some(error);
        }
    }

    /// Loads one version and swaps it in; the one it replaces (a reload) is retired. Under a
    /// memory budget, room is made first (or, deferring, the version is left idle).
    fn load_version(&self, name: &str, load: &Load<'_>) -> Result<(), LoadError> {
        let number = load.version.version;
        let budget = self.options.budget;
        let _admission = budget.is_set().then(|| {
            self.admission
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        });
        let pinned = load.config.config.lifecycle.pinned;
        if budget.is_set() && !self.admit(name, load, pinned)? {
            return Ok(());
        }
        for warning in &load.config.warnings {
            tracing::warn!(model = %name, version = number, "{warning}");
        }
        self.update(name, number, |r| {
            if r.loaded.is_none() {
                r.state = VersionState::Loading;
                r.error = None;
            }
        });
        let started = Instant::now();
        let resident_before = budget.is_set().then(budget::resident_bytes);
        let result = self.build(name, load.model_dir, load.version, load.config);
        quiver_telemetry::lifecycle::record_load(
            name,
            number,
            started.elapsed(),
            result.as_ref().err().map(LoadError::reason),
        );
        match result {
            Ok((loaded, why)) => {
                let declared = load.config.config.lifecycle.memory_bytes;
                let bytes = resident_before.map_or(0, |before| {
                    declared.unwrap_or_else(|| {
                        budget::estimate(before, budget::resident_bytes(), file_bytes(load.version))
                    })
                });
                tracing::info!(model = %name, version = number, engine = loaded.engine(),
                    why = %why, seconds = started.elapsed().as_secs_f64(), "model version available");
                self.tell_history(name, number, "loaded", Some(&why.to_string()));
                let mut old = None;
                let now = self.tick();
                let loaded = Arc::new(loaded);
                if load.woken {
                    self.woken
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert((name.to_owned(), number), Arc::clone(&loaded));
                }
                self.update(name, number, |r| {
                    old = r.loaded.replace(loaded);
                    r.state = VersionState::Available;
                    r.dropped = None;
                    r.error = None;
                    r.fingerprint = load.fingerprint;
                    r.bytes = bytes;
                    r.pinned = pinned;
                    *r.last_used.get_mut() = now;
                });
                if budget.is_set() {
                    quiver_telemetry::lifecycle::set_memory(name, number, bytes);
                    // The estimate may be more than the room made for it.
                    self.enforce(name, number);
                }
                if let Some(old) = old {
                    self.retire_when_idle(name, number, &old, false);
                }
                Ok(())
            }
            Err(error) => {
                tracing::error!(model = %name, version = number, reason = error.reason(),
                    error = %error, "model version failed to load");
                self.tell_history(name, number, "failed", Some(&error.to_string()));
                self.update(name, number, |r| {
                    r.fingerprint = load.fingerprint;
                    r.fail(error.clone());
                });
                Err(error)
            }
        }
    }

    /// Takes a version out of routing; it is dropped once its in-flight requests end, and then
    /// shows as `End`. The returned flag is raised once it has been dropped.
    fn retire(&self, name: &str, version: u64) -> Option<Dropped> {
        self.take_out(name, version, VersionState::Unloading)
    }

    /// Takes a loaded version out of routing, shown as `state` from now on, and has it dropped
    /// once its in-flight requests end (`Unloading`: it leaves; otherwise it stays known, only
    /// its memory goes). `None` when it was not loaded.
    pub(super) fn take_out(
        &self,
        name: &str,
        version: u64,
        state: VersionState,
    ) -> Option<Dropped> {
        let mut taken = None;
        self.update(name, version, |r| {
            if let Some(loaded) = r.loaded.take() {
                r.state = state;
                taken = Some(loaded);
            }
        });
        let loaded = taken?;
        let leaves = state == VersionState::Unloading;
        let dropped = self.retire_when_idle(name, version, &loaded, leaves);
        drop(loaded);
        self.update(name, version, |r| r.dropped = Some(dropped.clone()));
        Some(dropped)
    }

    /// Has `loaded` (already out of the routing table) finish retiring when the last request
    /// holding it lets go; `leaves`: the version leaves, rather than being replaced by a reload
    /// of itself. The caller's reference must be its last use of the version.
    fn retire_when_idle(
        &self,
        name: &str,
        version: u64,
        loaded: &crate::LoadedVersion,
        leaves: bool,
    ) -> Dropped {
        let dropped = Dropped::default();
        loaded.retire_on_drop(Retirement::new(name, version, leaves, dropped.clone()));
        let mut retiring = self.retiring.lock().unwrap_or_else(PoisonError::into_inner);
        retiring.retain(|d| !d.is_raised());
        retiring.push(dropped.clone());
        dropped
    }

    fn update_labels(&self, name: &str, config_labels: &BTreeMap<String, u64>) {
        let mut configured = config_labels.clone();
        // The API's labels win over the config file's.
        configured.extend(self.api_labels(name));
        let configured = &configured;
        let mut models = self.write();
        let Some(record) = models.get_mut(name) else {
            return;
        };
        record.config_labels = config_labels.clone();
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

    fn model_lock(&self, name: &str) -> Arc<Mutex<()>> {
        Arc::clone(
            self.syncing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(name.to_owned())
                .or_default(),
        )
    }
}
