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
    "unloaded_idle",
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

/// Makes the memory budget's metrics of a model exist (counters at 0), when a budget is set.
pub fn register_budget(model: &str) {
    counter!(names::EVICTIONS_TOTAL, names::MODEL => model.to_owned()).absolute(0);
    counter!(names::LOADS_ON_DEMAND_TOTAL, names::MODEL => model.to_owned()).absolute(0);
    // Registered now so that a dashboard sees the series before the first wait.
    let _ = histogram!(names::ON_DEMAND_WAIT, names::MODEL => model.to_owned());
}

/// Counts a version of `model` unloaded to keep within the memory budget.
pub fn record_eviction(model: &str) {
    counter!(names::EVICTIONS_TOTAL, names::MODEL => model.to_owned()).increment(1);
}

/// Counts a version of `model` loaded again on a request's demand.
pub fn record_load_on_demand(model: &str) {
    counter!(names::LOADS_ON_DEMAND_TOTAL, names::MODEL => model.to_owned()).increment(1);
}

/// Records how long a request waited for a version of `model` to load on demand.
pub fn record_on_demand_wait(model: &str, waited: Duration) {
    histogram!(names::ON_DEMAND_WAIT, names::MODEL => model.to_owned())
        .record(waited.as_secs_f64());
}

/// Sets a version's estimated memory (0 once it is unloaded).
pub fn set_memory(model: &str, version: u64, bytes: u64) {
    let bytes = bytes as f64;
    gauge!(names::MEMORY_BYTES, names::MODEL => model.to_owned(), names::VERSION => version.to_string())
        .set(bytes);
}
