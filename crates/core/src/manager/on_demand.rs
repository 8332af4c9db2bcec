//! The memory budget at work: making room for a version by unloading the least recently used
//! ones, and loading an unloaded version again when a request wants it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::budget::{self, NoRoom, Resident};
use super::retire::Dropped;
use super::table::{Failure, Found};
use super::{Load, ModelManager, SyncMode, UNLOAD_WAIT, VersionSelector, VersionState};
use crate::load_error::LoadError;
use crate::version::LoadedVersion;
use crate::{Error, ErrorKind};

impl ModelManager {
    /// The version `selector` picks, loading it first when it was unloaded while idle; the
    /// wait is bounded by `deadline` and the manager's `on_demand_wait`.
    pub async fn acquire(
        self: &Arc<Self>,
        name: &str,
        selector: &VersionSelector,
        deadline: Option<Instant>,
    ) -> Result<Arc<LoadedVersion>, Error> {
        let version = match self.lookup(name, selector)? {
            Found::Loaded(loaded) => return Ok(loaded),
            Found::Idle(version) => version,
        };
        let started = Instant::now();
        let bound = started + self.options.on_demand_wait;
        let until = deadline.map_or(bound, |d| d.min(bound));
        let manager = Arc::clone(self);
        let model = name.to_owned();
        let waking = tokio::task::spawn_blocking(move || manager.wake(&model, version));
        // A request already past its deadline leaves the load to the next one.
        let woken = if until <= started {
            drop(waking);
            Err(())
        } else {
            tokio::time::timeout_at(until.into(), waking)
                .await
                .map_err(|_| ())
        };
        quiver_telemetry::lifecycle::record_on_demand_wait(name, started.elapsed());
        match woken {
            Err(_) => Err(Error::new(
                ErrorKind::Timeout,
                format!(
                    "version {version} of model '{name}' is still loading on demand after {:.1} s; \
                     try again shortly",
                    started.elapsed().as_secs_f64()
                ),
            )),
            Ok(Err(e)) => Err(Error::internal(format!(
                "loading version {version} of model '{name}' on demand failed: {e}"
            ))),
            // The version as it went in: it serves this request even if another load has
            // taken it out again since (it is dropped once the request lets go).
            Ok(Ok((_, Some(loaded)))) => Ok(loaded),
            Ok(Ok((woken, None))) => match self.lookup(name, &VersionSelector::Specific(version)) {
                Ok(Found::Loaded(loaded)) => Ok(loaded),
                // Still idle: no room (pinned versions hold it) or unloaded again at once.
                Ok(Found::Idle(_)) => Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "version {version} of model '{name}' cannot be loaded now: {}",
                        self.idle_reason(name, version)
                    ),
                )),
                // It failed to load (its files changed while it was idle, say): not the
                // client's doing, whatever kind the load's own error has.
                Err(gone) => Err(woken
                    .err()
                    .map_or(gone, |e| Error::new(ErrorKind::Unavailable, e.message))),
            },
        }
    }

    /// Loads an idle version again (blocking); requests that wait for the same version share
    /// one load. The version comes back with the result when this call loaded it (a request
    /// that shared another's load looks it up instead).
    fn wake(&self, name: &str, version: u64) -> (Result<(), Error>, Option<Arc<LoadedVersion>>) {
        let sources = match self.sources() {
            Ok(sources) => sources,
            Err(e) => return (Err(Error::new(ErrorKind::Unavailable, e.to_string())), None),
        };
        let Some(source) = sources.iter().find(|s| s.name == name) else {
            let gone = format!("model '{name}' is no longer in the model repository");
            return (Err(Error::not_found(gone)), None);
        };
        let mode = SyncMode {
            wake: Some(version),
            ..SyncMode::default()
        };
        let was_idle = self.state_of(name, version) == Some(VersionState::Idle);
        let result = self.sync(source, mode, None);
        let loaded = self
            .woken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(name.to_owned(), version));
        let available = self.state_of(name, version) == Some(VersionState::Available);
        if was_idle && (loaded.is_some() || available) {
            tracing::info!(model = %name, version, "loaded on demand");
            quiver_telemetry::lifecycle::record_load_on_demand(name);
        }
        (result, loaded)
    }

    fn state_of(&self, name: &str, version: u64) -> Option<VersionState> {
        self.read()
            .get(name)?
            .versions
            .get(&version)
            .map(super::table::VersionRecord::current_state)
    }

    fn idle_reason(&self, name: &str, version: u64) -> String {
        self.read()
            .get(name)
            .and_then(|r| r.versions.get(&version))
            .and_then(|r| r.error.as_ref().map(ToString::to_string))
            .unwrap_or_else(|| "it was unloaded again before it could serve".into())
    }

    /// Admits `load` under the budget: `Ok(true)` once there is room for it; `Ok(false)` when
    /// deferring leaves it idle; an error (recorded on the version) when nothing may go to make
    /// room — a version that could load on demand stays idle, to try again later.
    pub(super) fn admit(
        &self,
        name: &str,
        load: &Load<'_>,
        pinned: bool,
    ) -> Result<bool, LoadError> {
        let number = load.version.version;
        match self.make_room(name, load, pinned) {
            Ok(true) => Ok(true),
            Ok(false) => {
                tracing::info!(model = %name, version = number,
                    "not loaded now: the memory budget is full; the first request loads it");
                self.update(name, number, |r| {
                    if r.loaded.is_none() {
                        r.state = VersionState::Idle;
                        r.fingerprint = load.fingerprint;
                    }
                });
                Ok(false)
            }
            Err(no_room) => {
                let error = LoadError::Resources(no_room.why);
                tracing::error!(model = %name, version = number, error = %error,
                    "model version not loaded");
                self.update(name, number, |r| {
                    if r.loaded.is_none() && (load.defer || r.state == VersionState::Idle) {
                        r.state = VersionState::Idle;
                        r.error = Some(Failure {
                            error: error.clone(),
                            reload: false,
                        });
                    } else {
                        r.fail(error.clone());
                    }
                });
                Err(error)
            }
        }
    }

    /// Makes room for `load` under the budget: `Ok(false)` when deferring and room would take
    /// unloading others. Versions unloaded for it are waited for (their in-flight requests
    /// finish first), within a bound.
    pub(super) fn make_room(
        &self,
        name: &str,
        load: &Load<'_>,
        pinned: bool,
    ) -> Result<bool, NoRoom> {
        let number = load.version.version;
        let incoming = {
            let models = self.read();
            models
                .get(name)
                .and_then(|r| r.versions.get(&number))
                .map_or(0, |r| r.bytes)
        };
        let incoming = match load.config.config.lifecycle.memory_bytes {
            Some(declared) => declared,
            None if incoming > 0 => incoming,
            None => super::file_bytes(load.version),
        };
        let residents = self.residents(name, number);
        let victims = budget::victims(&self.options.budget, &residents, incoming)?;
        if victims.is_empty() {
            return Ok(true);
        }
        if load.defer && !pinned {
            return Ok(false);
        }
        let deadline = Instant::now() + UNLOAD_WAIT;
        let dropped: Vec<Dropped> = victims
            .iter()
            .filter_map(|(model, version)| self.evict(model, *version))
            .collect();
        for dropped in dropped {
            dropped.wait_timeout(deadline.saturating_duration_since(Instant::now()));
        }
        Ok(true)
    }

    /// After `name` version `number` loaded and was measured: unloads others if its estimate
    /// took the loaded versions over the budget (without waiting for them).
    pub(super) fn enforce(&self, name: &str, number: u64) {
        let (bytes, residents) = {
            let models = self.read();
            let bytes = models
                .get(name)
                .and_then(|r| r.versions.get(&number))
                .map_or(0, |r| r.bytes);
            drop(models);
            (bytes, self.residents(name, number))
        };
        match budget::victims(&self.options.budget, &residents, bytes) {
            Ok(victims) => {
                for (model, version) in victims {
                    self.evict(&model, version);
                }
            }
            Err(no_room) => tracing::warn!(model = %name, version = number,
                "loaded over the memory budget: {}", no_room.why),
        }
    }

    /// Every loaded version but `name` version `except`, as the budget sees it.
    fn residents(&self, name: &str, except: u64) -> Vec<Resident> {
        let models = self.read();
        let mut residents = Vec::new();
        for (model, record) in models.iter() {
            for (&version, v) in &record.versions {
                let Some(loaded) = &v.loaded else { continue };
                if model == name && version == except {
                    continue;
                }
                residents.push(Resident {
                    model: model.clone(),
                    version,
                    bytes: v.bytes,
                    last_used: v.last_used.load(Ordering::Relaxed),
                    // The table holds one reference; requests hold the others.
                    busy: Arc::strong_count(loaded) > 1,
                    pinned: v.pinned,
                });
            }
        }
        residents
    }

    /// Unloads a version to keep within the budget: it leaves routing at once, shows as idle,
    /// and is dropped once its in-flight requests end; its next request loads it again.
    fn evict(&self, name: &str, version: u64) -> Option<Dropped> {
        let dropped = self.take_out(name, version, VersionState::Idle)?;
        tracing::info!(model = %name, version, "unloading while idle to keep within the memory budget");
        quiver_telemetry::lifecycle::record_eviction(name);
        quiver_telemetry::lifecycle::set_memory(name, version, 0);
        Some(dropped)
    }
}
