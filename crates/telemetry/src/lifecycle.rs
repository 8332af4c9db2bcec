//! Metrics of model loading and version states.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::names;

/// Every lifecycle state a version can be in, as the `state` label shows it.
pub const STATES: &[&str] = &[
    "start",
    "loading",
    "available",
    "unloading",
    "end",
    "failed",
];

/// Sets `quiver_model_version_state`: 1 for `state`, 0 for every other state, so that a query
/// for one state needs no `absent()`.
pub fn set_state(model: &str, version: u64, state: &str) {
    let version = version.to_string();
    for &each in STATES {
        gauge!(names::VERSION_STATE,
            names::MODEL => model.to_owned(), names::VERSION => version.clone(), names::STATE => each)
        .set(if each == state { 1.0 } else { 0.0 });
    }
}

/// Makes `quiver_model_load_failures_total` exist (at 0) for a model, so that alerts on its
/// increase see the first failure.
pub fn register_model(model: &str) {
    counter!(names::LOAD_FAILURES_TOTAL, names::MODEL => model.to_owned()).absolute(0);
}

/// Records one load of `model` version `version` that took `took`, and counts it if it failed
/// (`failure`: the kind of error, e.g. `corrupt_model`).
pub fn record_load(model: &str, version: u64, took: Duration, failure: Option<&'static str>) {
    histogram!(names::LOAD_DURATION,
        names::MODEL => model.to_owned(), names::VERSION => version.to_string())
    .record(took.as_secs_f64());
    if let Some(reason) = failure {
        counter!(names::LOAD_FAILURES_TOTAL, names::MODEL => model.to_owned()).increment(1);
        counter!(names::LOAD_ERRORS_TOTAL, names::MODEL => model.to_owned(), names::REASON => reason)
            .increment(1);
    }
}
