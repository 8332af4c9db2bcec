//! The admin API's work, shared by its HTTP routes and its gRPC service: traffic policies and
//! labels set through the API, kept in the metadata store (so that they survive a restart and
//! reach every replica sharing the store), the audit log of those changes, and the load
//! history.
//!
//! A change is written to the store first and applied here once it is in: a change the store
//! did not take is refused, never applied on one replica only. Changes made elsewhere (another
//! replica) arrive through a watcher thread: announced by the store (PostgreSQL's
//! LISTEN/NOTIFY) or found by polling its revision. When the store cannot be reached the last
//! known state keeps serving, and the status says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use quiver_metadata::{AuditEntry, HistoryWriter, LoadEvent, MetadataStore, Snapshot};
use quiver_repository::TrafficPolicy;

use crate::traffic::PolicySource;
use crate::{Error, ErrorKind, ModelManager};

/// A model's traffic as the admin API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TrafficView {
    /// The model.
    pub model: String,
    /// Where the policy in force came from (`None`: no policy).
    pub source: Option<PolicySource>,
    /// The policy in force.
    pub policy: Option<TrafficPolicy>,
}

/// Whether the metadata store answers, as `/admin/metadata` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreStatus {
    /// `sqlite` or `postgres`.
    pub kind: &'static str,
    /// Where it is (no password).
    pub location: String,
    /// Whether it answered last time it was asked.
    pub healthy: bool,
    /// Why not, when it did not.
    pub error: Option<String>,
    /// The revision of the state in force here.
    pub revision: i64,
}

/// The admin API over a model manager and a metadata store.
#[derive(Debug)]
pub struct Admin {
    models: Arc<ModelManager>,
    store: Arc<dyn MetadataStore>,
    /// The revision applied, and whether the store answered (held only to read or set them,
    /// never across a call to the store: a status call never waits on the store).
    state: Mutex<Health>,
    /// Held while a change is written and applied, and while another's change is read and
    /// applied, so the two never cross (an older state is never applied over a newer one).
    io: Mutex<()>,
}

#[derive(Debug)]
struct Health {
    revision: i64,
    error: Option<String>,
}

impl Admin {
    /// Reads the store's state and puts it in force (policies and API labels), has the load
    /// history written to the store as `replica`, and starts watching the store for changes
    /// made elsewhere, checking at least every `poll`. An unreachable store is an error: the
    /// server must not start on a state it cannot read.
    pub fn start(
        models: Arc<ModelManager>,
        store: Arc<dyn MetadataStore>,
        replica: &str,
        poll: Duration,
    ) -> Result<Arc<Self>, String> {
        let snapshot = store
            .snapshot()
            .map_err(|e| format!("cannot read the metadata store {}: {e}", store.location()))?;
        let admin = Arc::new(Self {
            models,
            store,
            state: Mutex::new(Health {
                revision: 0,
                error: None,
            }),
            io: Mutex::new(()),
        });
        admin.apply(&snapshot);
        admin.state().revision = snapshot.revision;
        quiver_telemetry::traffic::set_metadata_store_up(true);
        let writer = HistoryWriter::spawn(Arc::clone(&admin.store));
        let replica = replica.to_owned();
        admin
            .models
            .set_history(Arc::new(move |model, version, event, reason| {
                writer.send(LoadEvent {
                    at_ms: now_ms(),
                    replica: replica.clone(),
                    model: model.to_owned(),
                    version,
                    event: event.to_owned(),
                    reason: reason.map(str::to_owned),
                });
            }));
        let watcher = Arc::downgrade(&admin);
        std::thread::Builder::new()
            .name("quiver-metadata".into())
            .spawn(move || {
                loop {
                    let Some(admin) = watcher.upgrade() else {
                        return;
                    };
                    let store = Arc::clone(&admin.store);
                    drop(admin);
                    store.wait_for_change(poll);
                    let Some(admin) = watcher.upgrade() else {
                        return;
                    };
                    admin.sync();
                }
            })
            .map_err(|e| format!("cannot start the metadata store watcher: {e}"))?;
        tracing::info!(store = %admin.store.location(), kind = admin.store.kind(),
            revision = snapshot.revision, policies = snapshot.policies.len(), "metadata store open");
        Ok(admin)
    }

    /// Reads the store's revision and, when it moved, its state; puts it in force.
    pub fn sync(&self) {
        let _io = self.io();
        let applied = self.state().revision;
        let read = self.store.revision().and_then(|revision| {
            if revision == applied {
                Ok(None)
            } else {
                self.store.snapshot().map(Some)
            }
        });
        match read {
            Ok(snapshot) => {
                if let Some(snapshot) = &snapshot {
                    tracing::info!(
                        revision = snapshot.revision,
                        "metadata changed elsewhere: applying"
                    );
                    self.apply(snapshot);
                }
                let mut health = self.state();
                if let Some(snapshot) = snapshot {
                    health.revision = snapshot.revision;
                }
                if let Some(error) = health.error.take() {
                    tracing::info!(store = %self.store.location(), "metadata store reachable again (it was: {error})");
                    quiver_telemetry::traffic::set_metadata_store_up(true);
                }
            }
            Err(e) => {
                quiver_telemetry::traffic::record_metadata_error("sync");
                let message = e.to_string();
                let mut health = self.state();
                if health.error.is_none() {
                    tracing::warn!(store = %self.store.location(), error = %message,
                        "metadata store unreachable: serving the last known policies and labels");
                    quiver_telemetry::traffic::set_metadata_store_up(false);
                }
                health.error = Some(message);
            }
        }
    }

    fn apply(&self, snapshot: &Snapshot) {
        let mut policies = BTreeMap::new();
        for (model, value) in &snapshot.policies {
            match serde_json::from_value::<TrafficPolicy>(value.clone()) {
                Ok(policy) => {
                    policies.insert(model.clone(), policy);
                }
                Err(e) => tracing::error!(model = %model, error = %e,
                    "the metadata store holds a traffic policy this server cannot read: ignored"),
            }
        }
        self.models.replace_api_traffic(policies);
        self.models.replace_api_labels(snapshot.labels.clone());
    }

    fn io(&self) -> std::sync::MutexGuard<'_, ()> {
        self.io.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Health> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The store's status.
    pub fn status(&self) -> StoreStatus {
        let health = self.state();
        StoreStatus {
            kind: self.store.kind(),
            location: self.store.location(),
            healthy: health.error.is_none(),
            error: health.error.clone(),
            revision: health.revision,
        }
    }

    /// The traffic of `model`.
    pub fn traffic(&self, model: &str) -> Result<TrafficView, Error> {
        let found = self.models.traffic(model)?;
        Ok(TrafficView {
            model: model.to_owned(),
            source: found.as_ref().map(|(source, _)| *source),
            policy: found.map(|(_, policy)| policy),
        })
    }

    /// Sets the API's policy of `model` (checked against its versions and labels), on behalf
    /// of `actor`.
    pub fn set_traffic(
        &self,
        model: &str,
        policy: TrafficPolicy,
        actor: &str,
    ) -> Result<TrafficView, Error> {
        self.models.check_policy(model, &policy)?;
        let value = serde_json::to_value(&policy)
            .map_err(|e| Error::internal(format!("cannot encode the policy: {e}")))?;
        let io = self.io();
        let entry = self
            .store
            .set_policy(model, Some(&value), actor)
            .map_err(|e| self.write_failed(&e))?;
        self.models.set_api_traffic(model, Some(policy));
        self.advance(entry.as_ref());
        drop(io);
        tracing::info!(model = %model, actor = %actor, policy = %value, "traffic policy set");
        self.traffic(model)
    }

    /// Removes the API's policy of `model` (its config file's, if any, is in force again).
    pub fn delete_traffic(&self, model: &str, actor: &str) -> Result<TrafficView, Error> {
        self.models.traffic(model)?;
        let io = self.io();
        let entry = self
            .store
            .set_policy(model, None, actor)
            .map_err(|e| self.write_failed(&e))?;
        self.models.set_api_traffic(model, None);
        self.advance(entry.as_ref());
        drop(io);
        tracing::info!(model = %model, actor = %actor, "traffic policy removed");
        self.traffic(model)
    }

    /// Sets (`Some`) or removes an API label of `model`; the labels in force come back.
    pub fn set_label(
        &self,
        model: &str,
        label: &str,
        version: Option<u64>,
        actor: &str,
    ) -> Result<BTreeMap<String, u64>, Error> {
        match version {
            Some(version) => self.models.check_label(model, label, version)?,
            None => {
                self.models.labels(model)?;
                if !self.models.api_labels(model).contains_key(label) {
                    return Err(Error::not_found(format!(
                        "model '{model}' has no label '{label}' set through the API"
                    )));
                }
            }
        }
        let io = self.io();
        let entry = self
            .store
            .set_label(model, label, version, actor)
            .map_err(|e| self.write_failed(&e))?;
        self.models.set_api_label(model, label, version);
        self.advance(entry.as_ref());
        drop(io);
        tracing::info!(model = %model, actor = %actor, label = %label, version = ?version, "label set");
        self.models.labels(model)
    }

    /// Audit entries after `since`, oldest first.
    pub fn audit(
        &self,
        since: i64,
        limit: usize,
        model: Option<&str>,
    ) -> Result<Vec<AuditEntry>, Error> {
        self.store
            .audit(since, limit, model)
            .map_err(|e| unavailable(&self.store, &e, false))
    }

    /// The load history, newest first.
    pub fn history(&self, model: Option<&str>, limit: usize) -> Result<Vec<LoadEvent>, Error> {
        self.store
            .load_history(model, limit)
            .map_err(|e| unavailable(&self.store, &e, false))
    }

    /// A write went in: the state here is that revision now (when this was the only change
    /// since the last one applied; otherwise the watcher reads the rest).
    fn advance(&self, entry: Option<&AuditEntry>) {
        let mut health = self.state();
        if let Some(entry) = entry
            && entry.seq == health.revision + 1
        {
            health.revision = entry.seq;
        }
    }

    fn write_failed(&self, error: &quiver_metadata::MetadataError) -> Error {
        quiver_telemetry::traffic::record_metadata_error("write");
        let mut health = self.state();
        if error.is_unreachable() && health.error.is_none() {
            quiver_telemetry::traffic::set_metadata_store_up(false);
            health.error = Some(error.to_string());
        }
        unavailable(&self.store, error, true)
    }
}

fn unavailable(
    store: &Arc<dyn MetadataStore>,
    error: &quiver_metadata::MetadataError,
    write: bool,
) -> Error {
    let what = if write {
        "did not take the change (nothing was changed)"
    } else {
        "cannot be read"
    };
    Error::new(
        ErrorKind::Unavailable,
        format!("the metadata store ({}) {what}: {error}", store.location()),
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A time in milliseconds since the Unix epoch, as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// An audit entry as the admin API shows it.
pub fn audit_json(entry: &AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": entry.seq,
        "time": rfc3339(entry.at_ms),
        "actor": entry.actor,
        "model": entry.model,
        "action": entry.action,
        "before": entry.before,
        "after": entry.after,
    })
}

/// A load event as the admin API shows it.
pub fn event_json(event: &LoadEvent) -> serde_json::Value {
    serde_json::json!({
        "time": rfc3339(event.at_ms),
        "replica": event.replica,
        "model": event.model,
        "version": event.version,
        "event": event.event,
        "reason": event.reason,
    })
}

/// A model's traffic as the admin API shows it.
pub fn traffic_json(view: &TrafficView) -> serde_json::Value {
    serde_json::json!({
        "model": view.model,
        "source": view.source.map(PolicySource::as_str),
        "policy": view.policy,
    })
}

/// The store's status as the admin API shows it.
pub fn status_json(status: &StoreStatus) -> serde_json::Value {
    serde_json::json!({
        "kind": status.kind,
        "location": status.location,
        "healthy": status.healthy,
        "error": status.error,
        "revision": status.revision,
    })
}
