//! A shadow run: the request's inputs run again on the shadow version after the primary has
//! answered, on a task of its own, and the two answers compared and counted. Nothing of it
//! reaches the client: not its answer, its latency or its errors.

use std::sync::Arc;

use quiver_engine_api::NamedTensor;
use tokio::sync::OwnedSemaphorePermit;

use super::compare::compare;
use crate::LoadedVersion;

/// A shadow run granted a place (see [`super::MAX_SHADOWS_IN_FLIGHT`]), waiting for the
/// primary's answer.
#[derive(Debug)]
pub struct ShadowRun {
    pub(crate) model: String,
    pub(crate) version: Arc<LoadedVersion>,
    pub(crate) tolerance: f64,
    pub(crate) permit: OwnedSemaphorePermit,
}

impl ShadowRun {
    /// Runs `inputs` on the shadow version in the background and compares its outputs with
    /// `primary` (the outputs the client was given).
    pub fn spawn(self, inputs: Vec<NamedTensor>, primary: Vec<NamedTensor>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let number = self.version.version();
            let result = self
                .version
                .infer_timed(inputs, None, quiver_batcher::Company::Unknown)
                .await;
            drop(self.permit);
            match result {
                Ok(inference) => {
                    let comparison = compare(&primary, &inference.outputs, self.tolerance);
                    quiver_telemetry::traffic::record_shadow(&self.model, number, "compared");
                    quiver_telemetry::traffic::record_comparison(
                        &self.model,
                        number,
                        comparison.disagreed,
                        comparison.difference,
                    );
                }
                Err(error) => {
                    tracing::debug!(model = %self.model, version = number, error = %error.message,
                        "shadow run failed (the client was answered by the primary)");
                    quiver_telemetry::traffic::record_shadow(&self.model, number, "error");
                }
            }
        });
    }
}
