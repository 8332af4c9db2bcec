//! Experiments: each model's traffic policy (a weighted split of the requests that name no
//! version, optionally sticky per key, and a shadow), where it comes from (the admin API, kept
//! in the metadata store, or the model's `config.toml`), and routing a request by it.
//!
//! [`pick`] chooses a variant as a pure function; [`compare`] judges a shadow's answer;
//! [`shadow`] runs one off the answering path. The manager asks [`Policies::get`] on every
//! request that names no version: a lock-free flag says whether any policy exists at all, so
//! a server without experiments pays one atomic load.

mod compare;
mod pick;
pub mod shadow;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use quiver_repository::{TrafficPolicy, VariantTarget};

pub use pick::Reason;
pub(crate) use pick::{Candidate, Draw, pick, stable_hash};

/// The most shadow runs of one model in flight at once; beyond it a shadow run is skipped (and
/// counted), so a slow shadow version can never pile up memory or threads.
pub const MAX_SHADOWS_IN_FLIGHT: usize = 32;

/// Where a request's sticky key is looked up: its headers or gRPC metadata, then (V2) its
/// `parameters`. Asked only when the model's policy has a sticky key.
pub trait StickyKeys: Sync {
    /// The value of `key` in the request, if it carries one.
    fn value(&self, key: &str) -> Option<String>;
}

/// Where the policy in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The admin API (kept in the metadata store).
    Api,
    /// The model's `config.toml`.
    Config,
}

impl PolicySource {
    /// As the admin API shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySource::Api => "api",
            PolicySource::Config => "config",
        }
    }
}

/// A policy in force, with what routing needs precomputed.
#[derive(Debug)]
pub struct Active {
    /// The policy.
    pub policy: TrafficPolicy,
    /// Where it came from.
    pub source: PolicySource,
    /// The model's name and the split, hashed: what a sticky key is hashed with, so that a new
    /// split reshuffles keys and every replica agrees on where each goes.
    pub(crate) identity: u64,
    /// Places for shadow runs in flight.
    pub(crate) shadow_slots: Arc<tokio::sync::Semaphore>,
    /// Whether a variant was last seen unavailable (so that it is logged once, not per request).
    pub(crate) degraded: AtomicBool,
}

impl Active {
    fn new(model: &str, policy: TrafficPolicy, source: PolicySource) -> Self {
        let split = serde_json::to_vec(&policy.split).unwrap_or_default();
        Self {
            identity: stable_hash(&[model.as_bytes(), &split]),
            policy,
            source,
            shadow_slots: Arc::new(tokio::sync::Semaphore::new(MAX_SHADOWS_IN_FLIGHT)),
            degraded: AtomicBool::new(false),
        }
    }
}

/// Every model's policies: declared in config files, set through the API, and the one in force
/// (the API's, else the config's).
#[derive(Debug, Default)]
pub struct Policies {
    any: AtomicBool,
    state: RwLock<State>,
}

#[derive(Debug, Default)]
struct State {
    config: BTreeMap<String, TrafficPolicy>,
    api: BTreeMap<String, TrafficPolicy>,
    active: BTreeMap<String, Arc<Active>>,
}

impl State {
    /// Recomputes the policy in force for `model`, keeping the same `Active` (and its shadow
    /// places) when nothing changed.
    fn refresh(&mut self, model: &str) {
        let wanted = match (self.api.get(model), self.config.get(model)) {
            (Some(policy), _) => Some((policy, PolicySource::Api)),
            (None, Some(policy)) => Some((policy, PolicySource::Config)),
            (None, None) => None,
        };
        match wanted {
            None => {
                self.active.remove(model);
            }
            Some((policy, source)) => {
                let same = self
                    .active
                    .get(model)
                    .is_some_and(|a| &a.policy == policy && a.source == source);
                if !same {
                    let active = Active::new(model, policy.clone(), source);
                    self.active.insert(model.to_owned(), Arc::new(active));
                }
            }
        }
    }
}

impl Policies {
    /// The policy in force for `model`, if any.
    pub fn get(&self, model: &str) -> Option<Arc<Active>> {
        if !self.any.load(Ordering::Acquire) {
            return None;
        }
        self.read().active.get(model).cloned()
    }

    /// Sets (or, `None`, removes) the policy `model`'s config file declares.
    pub fn set_config(&self, model: &str, policy: Option<TrafficPolicy>) {
        let mut state = self.write();
        if state.config.get(model) == policy.as_ref() {
            return;
        }
        match policy {
            Some(policy) => state.config.insert(model.to_owned(), policy),
            None => state.config.remove(model),
        };
        state.refresh(model);
        self.any.store(!state.active.is_empty(), Ordering::Release);
    }

    /// Sets (or removes) the policy the API set for `model`.
    pub fn set_api(&self, model: &str, policy: Option<TrafficPolicy>) {
        let mut state = self.write();
        match policy {
            Some(policy) => state.api.insert(model.to_owned(), policy),
            None => state.api.remove(model),
        };
        state.refresh(model);
        self.any.store(!state.active.is_empty(), Ordering::Release);
    }

    /// Replaces every API-set policy (what the metadata store holds now).
    pub fn replace_api(&self, policies: BTreeMap<String, TrafficPolicy>) {
        let mut state = self.write();
        let models: Vec<String> = state.api.keys().chain(policies.keys()).cloned().collect();
        state.api = policies;
        for model in models {
            state.refresh(&model);
        }
        self.any.store(!state.active.is_empty(), Ordering::Release);
    }

    /// The API-set policy of `model`, if any.
    pub fn api(&self, model: &str) -> Option<TrafficPolicy> {
        self.read().api.get(model).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The version a variant names among `labels` (labels in force).
pub(crate) fn resolve(target: &VariantTarget, labels: &BTreeMap<String, u64>) -> Option<u64> {
    match target {
        VariantTarget::Version(v) => Some(*v),
        VariantTarget::Label(l) => labels.get(l).copied(),
    }
}
