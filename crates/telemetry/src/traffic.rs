//! Metrics of experiments: how traffic policies route requests, how shadow runs compare with
//! the answers given, and whether the metadata store that keeps the policies answers.

use metrics::{counter, gauge, histogram};

use crate::names;

/// Counts a request a traffic policy sent to `version` of `model`, for `reason` (split, sticky,
/// fallback).
pub fn record_assignment(model: &str, version: u64, reason: &'static str) {
    counter!(names::TRAFFIC_ASSIGNMENTS_TOTAL, names::MODEL => model.to_owned(),
        names::VERSION => version.to_string(), names::REASON => reason)
    .increment(1);
}

/// Counts a shadow run of `version` of `model` with its `outcome` (compared, error, skipped).
pub fn record_shadow(model: &str, version: u64, outcome: &'static str) {
    counter!(names::SHADOW_REQUESTS_TOTAL, names::MODEL => model.to_owned(),
        names::VERSION => version.to_string(), names::OUTCOME => outcome)
    .increment(1);
}

/// Records a compared shadow run: whether it disagreed, and the largest float difference
/// (`None` without float outputs).
pub fn record_comparison(model: &str, version: u64, disagreed: bool, difference: Option<f64>) {
    let version = version.to_string();
    let disagreements = counter!(names::SHADOW_DISAGREEMENTS_TOTAL,
        names::MODEL => model.to_owned(), names::VERSION => version.clone());
    if disagreed {
        disagreements.increment(1);
    } else {
        // Present from the first comparison, so a rate of disagreements reads 0, not nothing.
        disagreements.increment(0);
    }
    if let Some(difference) = difference {
        histogram!(names::SHADOW_DIFFERENCE, names::MODEL => model.to_owned(),
            names::VERSION => version)
        .record(difference);
    }
}

/// Sets whether the metadata store answers.
pub fn set_metadata_store_up(up: bool) {
    gauge!(names::METADATA_STORE_UP).set(if up { 1.0 } else { 0.0 });
}

/// Counts a failed metadata store `operation` (sync, write, history).
pub fn record_metadata_error(operation: &'static str) {
    counter!(names::METADATA_STORE_ERRORS_TOTAL, names::OPERATION => operation).increment(1);
}
