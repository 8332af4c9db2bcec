//! Routing a request that names no version by its model's traffic policy, the shadow run that
//! comes with it, and the admin calls that change policies and API-set labels.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use quiver_repository::{TrafficPolicy, VariantTarget};

use super::ModelManager;
use crate::serve::Target;
use crate::traffic::shadow::ShadowRun;
use crate::traffic::{self, Candidate, Draw, PolicySource, Reason};
use crate::{Error, LoadedVersion, VersionSelector};

/// Where a request goes: the version to answer it, and the shadow to run it again on.
struct Routed {
    selector: VersionSelector,
    shadow: Option<ShadowRun>,
}

impl ModelManager {
    /// The version `target` names, as [`ModelManager::acquire`] finds it — except that a
    /// request naming no version follows the model's traffic policy, if it has one, and may
    /// come back with a shadow run to start once it has been answered.
    pub async fn acquire_routed(
        self: &Arc<Self>,
        target: &Target<'_>,
    ) -> Result<(Arc<LoadedVersion>, Option<ShadowRun>), Error> {
        if target.version != VersionSelector::Latest {
            let loaded = self
                .acquire(target.model, &target.version, target.deadline)
                .await?;
            return Ok((loaded, None));
        }
        let Some(active) = self.policies.get(target.model) else {
            let loaded = self
                .acquire(target.model, &target.version, target.deadline)
                .await?;
            return Ok((loaded, None));
        };
        let routed = self.route(target, &active)?;
        let loaded = self
            .acquire(target.model, &routed.selector, target.deadline)
            .await?;
        let shadow = routed
            .shadow
            .filter(|shadow| shadow.version.version() != loaded.version());
        Ok((loaded, shadow))
    }

    fn route(&self, target: &Target<'_>, active: &traffic::Active) -> Result<Routed, Error> {
        let name = target.model;
        let policy = &active.policy;
        let models = self.read();
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
        let takes_requests = |version: u64| {
            record
                .versions
                .get(&version)
                .is_some_and(|v| v.loaded.is_some() || v.state == super::VersionState::Idle)
        };
        let mut selector = VersionSelector::Latest;
        if !policy.split.is_empty() {
            let candidates: Vec<Candidate> = policy
                .split
                .iter()
                .map(|variant| Candidate {
                    version: variant
                        .target()
                        .and_then(|t| traffic::resolve(&t, &record.labels))
                        .filter(|&v| takes_requests(v)),
                    weight: variant.weight,
                })
                .collect();
            let key = policy
                .sticky_key
                .as_deref()
                .and_then(|key| target.keys.value(key));
            let draw = match key {
                Some(value) => Draw::Sticky(traffic::stable_hash(&[
                    &active.identity.to_le_bytes(),
                    value.as_bytes(),
                ])),
                None => Draw::Random(fastrand::u64(..)),
            };
            let degraded = candidates
                .iter()
                .any(|c| c.version.is_none() && c.weight > 0);
            if active.degraded.swap(degraded, Ordering::Relaxed) != degraded {
                if degraded {
                    tracing::warn!(model = %name, "a variant of the traffic split is unavailable: its share goes to the others");
                } else {
                    tracing::info!(model = %name, "every variant of the traffic split is available again");
                }
            }
            match traffic::pick(&candidates, draw) {
                Some((version, reason)) => {
                    quiver_telemetry::traffic::record_assignment(name, version, reason.as_str());
                    selector = VersionSelector::Specific(version);
                }
                None => {
                    // No variant can take it: the latest version answers, as without a policy.
                    if let Some(&version) = record.serving().last() {
                        quiver_telemetry::traffic::record_assignment(
                            name,
                            version,
                            Reason::Fallback.as_str(),
                        );
                    }
                }
            }
        }
        let shadow = policy.shadow.as_ref().and_then(|shadow| {
            if shadow.percent == 0 || fastrand::u32(0..100) >= shadow.percent {
                return None;
            }
            let version = shadow
                .target()
                .and_then(|t| traffic::resolve(&t, &record.labels))?;
            let Some(loaded) = record.versions.get(&version).and_then(|v| v.loaded.clone()) else {
                quiver_telemetry::traffic::record_shadow(name, version, "skipped");
                return None;
            };
            let Ok(permit) = Arc::clone(&active.shadow_slots).try_acquire_owned() else {
                quiver_telemetry::traffic::record_shadow(name, version, "skipped");
                return None;
            };
            Some(ShadowRun {
                model: name.to_owned(),
                version: loaded,
                tolerance: shadow.tolerance(),
                permit,
            })
        });
        Ok(Routed { selector, shadow })
    }

    /// The traffic policy in force for `name` and where it came from (`None`: no policy).
    pub fn traffic(&self, name: &str) -> Result<Option<(PolicySource, TrafficPolicy)>, Error> {
        self.known(name)?;
        Ok(self
            .policies
            .get(name)
            .map(|active| (active.source, active.policy.clone())))
    }

    /// The policy the API set for `name`, if any.
    pub fn api_traffic(&self, name: &str) -> Option<TrafficPolicy> {
        self.policies.api(name)
    }

    /// Refuses a policy for `name` that cannot be used: its shape ([`TrafficPolicy::check`]),
    /// or a version the model does not have, or a label it does not have. The error names the
    /// model.
    pub fn check_policy(&self, name: &str, policy: &TrafficPolicy) -> Result<(), Error> {
        let models = self.read();
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
        policy
            .check()
            .map_err(|e| Error::invalid(format!("traffic policy for model '{name}': {e}")))?;
        for target in policy.targets() {
            let known = match &target {
                VariantTarget::Version(v) => record.versions.contains_key(v),
                VariantTarget::Label(l) => record.labels.contains_key(l),
            };
            if !known {
                return Err(Error::invalid(format!(
                    "traffic policy for model '{name}': the model has no {target}"
                )));
            }
        }
        Ok(())
    }

    /// Puts the policy the API set for `name` in force (or, `None`, takes it out: the config
    /// file's, if any, is in force again). New requests see it at once; those in flight finish
    /// where they started.
    pub fn set_api_traffic(&self, name: &str, policy: Option<TrafficPolicy>) {
        self.policies.set_api(name, policy);
    }

    /// Replaces every API-set policy with those of the metadata store.
    pub fn replace_api_traffic(&self, policies: BTreeMap<String, TrafficPolicy>) {
        self.policies.replace_api(policies);
    }

    /// The labels the API set for `name`.
    pub fn api_labels(&self, name: &str) -> BTreeMap<String, u64> {
        self.api_labels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Refuses an API label for `name` that cannot be set: a bad label, or (unless unavailable
    /// labels are allowed) a version that is not available.
    pub fn check_label(&self, name: &str, label: &str, version: u64) -> Result<(), Error> {
        quiver_repository::check_label(label)
            .map_err(|e| Error::invalid(format!("model '{name}': {e}")))?;
        let models = self.read();
        let record = models
            .get(name)
            .ok_or_else(|| Error::not_found(format!("model '{name}' not found")))?;
        if version == 0 {
            return Err(Error::invalid("versions are positive integers, got 0"));
        }
        if !self.options.allow_unavailable_labels && !record.serving().contains(&version) {
            return Err(Error::invalid(format!(
                "label '{label}' of model '{name}' cannot name version {version}: it is not available"
            )));
        }
        Ok(())
    }

    /// Replaces every API-set label with `labels` (model → label → version) and puts them in
    /// force over the config files' labels.
    pub fn replace_api_labels(&self, labels: BTreeMap<String, BTreeMap<String, u64>>) {
        let models: Vec<String> = {
            let mut api = self
                .api_labels
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let models = api.keys().chain(labels.keys()).cloned().collect();
            *api = labels;
            models
        };
        for model in models {
            let configured = self
                .read()
                .get(&model)
                .map(|r| r.config_labels.clone())
                .unwrap_or_default();
            self.update_labels(&model, &configured);
        }
    }

    /// Sets (or removes) one API label of `name` and puts the labels in force again.
    pub fn set_api_label(&self, name: &str, label: &str, version: Option<u64>) {
        let mut all = self
            .api_labels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let labels = all.entry(name.to_owned()).or_default();
        match version {
            Some(version) => labels.insert(label.to_owned(), version),
            None => labels.remove(label),
        };
        all.retain(|_, labels| !labels.is_empty());
        self.replace_api_labels(all);
    }

    fn known(&self, name: &str) -> Result<(), Error> {
        if self.read().contains_key(name) {
            Ok(())
        } else {
            Err(Error::not_found(format!("model '{name}' not found")))
        }
    }
}
