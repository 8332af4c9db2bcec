//! Mirroring a model of an object store into the local cache before its versions load: the
//! versions its policy wants are downloaded (shown `LOADING` with what is happening), those the
//! store no longer holds leave the cache.

use quiver_repository::ModelConfig;

use super::{ModelManager, RemoteModel, VersionState};
use crate::load_error::LoadError;

impl ModelManager {
    /// Makes the versions the policy wants of a model in an object store whole in its cache
    /// (shown `LOADING` with what is happening while one downloads), and removes from the
    /// cache the versions the store no longer holds. A version that cannot be downloaded is
    /// failed (a version serving keeps serving); the others go on.
    pub(super) fn mirror(
        &self,
        name: &str,
        remote: &RemoteModel,
        config: &ModelConfig,
    ) -> Vec<String> {
        let wanted = config.version_policy.select(&remote.listing.versions());
        let mut failures = Vec::new();
        for version in wanted {
            let note = |text: String| {
                self.update(name, version, |r| {
                    if r.loaded.is_none() {
                        r.state = VersionState::Loading;
                    }
                    r.note = Some(text);
                });
            };
            let fetched = remote
                .store
                .fetch_version(&remote.key, &remote.listing, version, &note);
            match fetched {
                Ok(quiver_store::Fetched::Cached) => {}
                Ok(quiver_store::Fetched::Downloaded(_)) => self.update(name, version, |r| {
                    r.note = None;
                    if r.loaded.is_none() && r.state == VersionState::Loading {
                        // Downloaded; the load that follows takes it from here.
                        r.state = VersionState::Start;
                    }
                }),
                Err(e) => {
                    let error = LoadError::Download(e.to_string());
                    tracing::error!(model = %name, version, reason = error.reason(), error = %error,
                        "model version failed to download");
                    quiver_telemetry::lifecycle::record_load(
                        name,
                        version,
                        std::time::Duration::ZERO,
                        Some(error.reason()),
                    );
                    self.update(name, version, |r| {
                        r.note = None;
                        r.fail(error.clone());
                    });
                    failures.push(format!("version {version}: {error}"));
                }
            }
        }
        remote.store.prune(&remote.key, &remote.listing);
        failures
    }
}
