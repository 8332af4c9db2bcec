//! The routing table: every model's versions with their state, the labels in force, and the
//! read-only queries requests and status calls make of it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::ModelManager;
use super::retire::Dropped;
use crate::Error;
use crate::load_error::LoadError;
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
    /// Unloaded while idle to keep within the memory budget; its next request loads it again.
    Idle,
}

impl VersionState {
    /// Upper-case name as TF Serving shows it; `Failed` is TF Serving's `END` with an error.
    pub fn tf_name(self) -> &'static str {
        match self {
            VersionState::Start => "START",
            VersionState::Loading => "LOADING",
            VersionState::Available => "AVAILABLE",
            VersionState::Unloading => "UNLOADING",
            VersionState::End | VersionState::Failed | VersionState::Idle => "END",
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
            VersionState::Idle => "unloaded_idle",
        }
    }
}

/// Why an idle version is not loaded, as status and index calls show it.
const IDLE_REASON: &str =
    "unloaded while idle to keep within the memory budget; the next request loads it";

/// Status of one model version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionStatus {
    /// Version number.
    pub version: u64,
    /// Lifecycle state.
    pub state: VersionState,
    /// Why loading failed (or a reload did not take), when it did.
    pub error: Option<String>,
    /// The kind of that failure ([`LoadError::reason`]).
    pub error_kind: Option<&'static str>,
}

impl VersionStatus {
    /// The status as TF Serving reports it: a `tensorflow.error.Code` number and name, chosen
    /// by the kind of load failure (`OK` without one).
    pub fn tf_error_code(&self) -> (i32, &'static str) {
        match (&self.error, self.error_kind) {
            (None, _) => (0, "OK"),
            (Some(_), Some("config" | "processing")) => (3, "INVALID_ARGUMENT"),
            (Some(_), Some("resources")) => (8, "RESOURCE_EXHAUSTED"),
            (Some(_), Some("signature")) => (9, "FAILED_PRECONDITION"),
            (Some(_), Some("unsupported")) => (12, "UNIMPLEMENTED"),
            (Some(_), Some("engine_unavailable" | "download")) => (14, "UNAVAILABLE"),
            (Some(_), Some("corrupt_model")) => (15, "DATA_LOSS"),
            (Some(_), _) => (2, "UNKNOWN"),
        }
    }
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
    /// The kind of load failure behind `reason` ([`LoadError::reason`]), when there was one.
    pub error_kind: Option<&'static str>,
}

impl IndexEntry {
    /// The state as Triton's repository index names it.
    pub fn triton_state(&self) -> &'static str {
        match self.state {
            Some(VersionState::Available) => "READY",
            Some(VersionState::Loading) => "LOADING",
            Some(VersionState::Unloading) => "UNLOADING",
            Some(VersionState::Idle) => "UNLOADED_IDLE",
            _ => "UNAVAILABLE",
        }
    }

    /// Why the version is not available, as the index shows it.
    pub fn reason_text(&self) -> String {
        match (&self.reason, self.state) {
            (Some(reason), _) => reason.clone(),
            (None, Some(VersionState::End)) => "unloaded".into(),
            (None, Some(VersionState::Idle)) => IDLE_REASON.into(),
            (None, None) => "no version to load".into(),
            _ => String::new(),
        }
    }
}

/// A load failure recorded on a version: either it never loaded, or a reload did not take and
/// the version loaded before keeps serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) error: LoadError,
    pub(crate) reload: bool,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reload {
            write!(f, "reload failed: {}", self.error)
        } else {
            write!(f, "{}", self.error)
        }
    }
}

pub(crate) struct VersionRecord {
    pub(crate) state: VersionState,
    pub(crate) error: Option<Failure>,
    pub(crate) loaded: Option<Arc<LoadedVersion>>,
    /// Of the config and model file the version was last loaded (or tried) from: a change
    /// means "load it again".
    pub(crate) fingerprint: u64,
    /// Raised once a retired version has been dropped.
    pub(crate) dropped: Option<Dropped>,
    /// Its estimated memory, measured when it last loaded (0: never measured).
    pub(crate) bytes: u64,
    /// When a request last asked for it, in ticks of the manager's clock (kept only
    /// under a memory budget).
    pub(crate) last_used: AtomicU64,
    /// `[lifecycle] pinned`: the memory budget never unloads it.
    pub(crate) pinned: bool,
    /// What is happening to it now, when that is worth showing (a download in progress).
    pub(crate) note: Option<String>,
}

impl VersionRecord {
    /// The state, with a retired version that has been dropped shown as `End`.
    pub(crate) fn current_state(&self) -> VersionState {
        match &self.dropped {
            Some(dropped) if self.state == VersionState::Unloading && dropped.is_raised() => {
                VersionState::End
            }
            _ => self.state,
        }
    }

    /// Records a failure: the loaded version (if any) keeps serving, else the version failed.
    pub(crate) fn fail(&mut self, error: LoadError) {
        let reload = self.loaded.is_some();
        if !reload {
            self.state = VersionState::Failed;
        }
        self.error = Some(Failure { error, reload });
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
            bytes: 0,
            last_used: AtomicU64::new(0),
            pinned: false,
            note: None,
        }
    }
}

#[derive(Default)]
pub(crate) struct ModelRecord {
    pub(crate) versions: BTreeMap<u64, VersionRecord>,
    /// Labels in force (each names an available version unless the options allow otherwise).
    pub(crate) labels: BTreeMap<String, u64>,
    /// The labels its config declares (the API's labels win over them).
    pub(crate) config_labels: BTreeMap<String, u64>,
    /// A problem with the model as a whole (its config cannot be read, say).
    pub(crate) error: Option<LoadError>,
}

impl ModelRecord {
    /// The versions taking requests.
    pub(crate) fn serving(&self) -> Vec<u64> {
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

fn model_not_found(name: &str) -> Error {
    Error::not_found(format!("model '{name}' not found"))
}

/// What a request's selector finds.
pub(crate) enum Found {
    /// A loaded version.
    Loaded(Arc<LoadedVersion>),
    /// A version unloaded while idle, that loads on demand.
    Idle(u64),
}

impl ModelManager {
    /// The loaded version of `name` that `selector` picks. A version unloaded while idle (the
    /// memory budget) is an error here; [`ModelManager::acquire`] loads it.
    pub fn get(&self, name: &str, selector: &VersionSelector) -> Result<Arc<LoadedVersion>, Error> {
        match self.lookup(name, selector)? {
            Found::Loaded(loaded) => Ok(loaded),
            Found::Idle(version) => Err(Error::not_found(format!(
                "version {version} of model '{name}' is not loaded ({IDLE_REASON})"
            ))),
        }
    }

    /// The version `selector` picks: loaded, or idle. The latest is the highest version that is
    /// either.
    pub(crate) fn lookup(&self, name: &str, selector: &VersionSelector) -> Result<Found, Error> {
        let models = self.read();
        let record = models.get(name).ok_or_else(|| model_not_found(name))?;
        let found = |version: u64, v: &VersionRecord| match &v.loaded {
            Some(loaded) => {
                if self.options.budget.is_set() {
                    v.last_used.store(self.tick(), Ordering::Relaxed);
                }
                Some(Found::Loaded(Arc::clone(loaded)))
            }
            None => (v.state == VersionState::Idle).then_some(Found::Idle(version)),
        };
        let Some(version) = record.version_of(name, selector)? else {
            return record
                .versions
                .iter()
                .rev()
                .find_map(|(&version, v)| found(version, v))
                .ok_or_else(|| {
                    Error::not_found(format!("model '{name}' has no available version"))
                });
        };
        match record.versions.get(&version) {
            Some(v) => found(version, v).ok_or_else(|| {
                Error::not_found(format!(
                    "version {version} of model '{name}' is not available (state {})",
                    v.current_state().tf_name()
                ))
            }),
            None => Err(Error::not_found(format!(
                "model '{name}' has no version {version}"
            ))),
        }
    }

    /// Status of every version of `name`, or of one version.
    pub fn status(&self, name: &str, version: Option<u64>) -> Result<Vec<VersionStatus>, Error> {
        let models = self.read();
        let record = models.get(name).ok_or_else(|| model_not_found(name))?;
        let status = |(&version, v): (&u64, &VersionRecord)| VersionStatus {
            version,
            state: v.current_state(),
            error: v.error.as_ref().map(ToString::to_string),
            error_kind: v.error.as_ref().map(|f| f.error.reason()),
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
            let record = models.get(name).ok_or_else(|| model_not_found(name))?;
            record.version_of(name, selector)?
        };
        self.status(name, version)
    }

    /// The labels in force for `name`.
    pub fn labels(&self, name: &str) -> Result<BTreeMap<String, u64>, Error> {
        self.read()
            .get(name)
            .map(|r| r.labels.clone())
            .ok_or_else(|| model_not_found(name))
    }

    /// Every model version known, by name then version (Triton's repository index); a model with
    /// no version gets one row of its own. With `ready_only`, only available versions.
    pub fn index(&self, ready_only: bool) -> Vec<IndexEntry> {
        // Models of the sources never loaded (explicit mode) are listed too, as Triton does.
        let unseen: Vec<String> = if ready_only {
            Vec::new()
        } else {
            let known = self.model_names();
            self.sources
                .names_seen()
                .into_iter()
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
                error_kind: None,
            })
            .collect();
        for (name, record) in models.iter() {
            if record.versions.is_empty() && !ready_only {
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: None,
                    state: None,
                    reason: record.error.as_ref().map(ToString::to_string),
                    error_kind: record.error.as_ref().map(LoadError::reason),
                });
            }
            for (&version, v) in &record.versions {
                if ready_only && v.loaded.is_none() {
                    continue;
                }
                let (reason, error_kind) = match (&v.error, &record.error) {
                    (Some(failure), _) => (Some(failure.to_string()), Some(failure.error.reason())),
                    (None, Some(error)) => (Some(error.to_string()), Some(error.reason())),
                    (None, None) => (v.note.clone(), None),
                };
                rows.push(IndexEntry {
                    name: name.clone(),
                    version: Some(version),
                    state: Some(v.current_state()),
                    reason,
                    error_kind,
                });
            }
        }
        rows.sort_by(|a, b| (&a.name, a.version).cmp(&(&b.name, b.version)));
        rows
    }

    /// Names of all known models.
    pub fn model_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    pub(super) fn serving(&self, name: &str) -> Vec<u64> {
        self.read()
            .get(name)
            .map(ModelRecord::serving)
            .unwrap_or_default()
    }

    pub(super) fn model_error(&self, name: &str) -> Option<LoadError> {
        self.read().get(name).and_then(|r| r.error.clone())
    }

    pub(super) fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(super) fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, ModelRecord>> {
        self.models
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes one version's record (creating it), keeping the state metric in step.
    pub(super) fn update(&self, name: &str, version: u64, change: impl FnOnce(&mut VersionRecord)) {
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
}
