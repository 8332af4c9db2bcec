//! Metrics of payload logging (`[payload_log]`).

use metrics::counter;

use crate::names;

/// What became of a sampled request/response pair.
pub const OUTCOMES: &[&str] = &["written", "dropped", "failed"];

/// Makes `quiver_payload_log_events_total` exist (at 0) for every outcome of a version with a
/// payload log, so that a rate of drops is defined before the first drop.
pub fn register(model: &str, version: u64) {
    for &outcome in OUTCOMES {
        counter!(names::PAYLOAD_LOG_EVENTS_TOTAL, names::MODEL => model.to_owned(),
            names::VERSION => version.to_string(), names::OUTCOME => outcome)
        .absolute(0);
    }
}

/// Counts one pair: `written` to the sink, `dropped` (the queue was full) or `failed` (the sink
/// refused it).
pub fn record(model: &str, version: u64, outcome: &'static str) {
    counter!(names::PAYLOAD_LOG_EVENTS_TOTAL, names::MODEL => model.to_owned(),
        names::VERSION => version.to_string(), names::OUTCOME => outcome)
    .increment(1);
}
