//! The accounting of one inference request: which version served it, how long each stage took,
//! and how it ended. Front ends create one per request and finish it with the outcome.

use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics::{counter, histogram};

use crate::labels::{Protocol, Stage};
use crate::names;
use crate::version::VersionMetrics;

/// One request's measurements until [`RequestRecord::finish`] records them.
#[derive(Debug)]
pub struct RequestRecord {
    protocol: Protocol,
    started: Instant,
    mark: Instant,
    request_bytes: usize,
    served_by: Option<Arc<VersionMetrics>>,
    stages: [Option<Duration>; 5],
}

impl RequestRecord {
    /// Starts timing a request of `request_bytes` (its body, or its protobuf message) now.
    pub fn start(protocol: Protocol, request_bytes: usize) -> Self {
        let now = Instant::now();
        Self {
            protocol,
            started: now,
            mark: now,
            request_bytes,
            served_by: None,
            stages: [None; 5],
        }
    }

    /// The version that serves the request; its model and version also go on the request's
    /// span (the fields `model` and `version`, where the span has them) for the access log.
    pub fn served_by(&mut self, metrics: &Arc<VersionMetrics>) {
        record_on_current_span([
            (names::MODEL, Some(&metrics.model() as &dyn tracing::Value)),
            (
                names::VERSION,
                Some(&metrics.version() as &dyn tracing::Value),
            ),
        ]);
        crate::request_id::note_served(metrics.version_number());
        self.served_by = Some(Arc::clone(metrics));
    }

    /// Ends `stage` now: it took the time since the previous stage ended (or the request began),
    /// added to what was measured of it before.
    pub fn stage_done(&mut self, stage: Stage) {
        let now = Instant::now();
        self.add(stage, now.saturating_duration_since(self.mark));
        self.mark = now;
    }

    fn add(&mut self, stage: Stage, took: Duration) {
        let slot = &mut self.stages[stage.index()];
        *slot = Some(slot.unwrap_or_default() + took);
    }

    /// Records the stages measured inside the model call that ended just now: the config's
    /// pre-processing (added to the front end's decoding), the queue's wait, the engine call
    /// and the config's post-processing (to which the front end's own is added).
    pub fn measured(
        &mut self,
        preprocess: Duration,
        queue: Duration,
        compute: Duration,
        postprocess: Duration,
    ) {
        self.add(Stage::Preprocess, preprocess);
        self.stages[Stage::Queue.index()] = Some(queue);
        self.stages[Stage::Compute.index()] = Some(compute);
        self.add(Stage::Postprocess, postprocess);
        self.mark = Instant::now();
    }

    /// Records the request: `Ok(response_bytes)`, or `Err(kind)` with the error kind's stable
    /// snake_case name. Stage times and sizes are recorded for successful requests only, so their
    /// counts are comparable.
    pub fn finish(self, outcome: Result<usize, &'static str>) {
        let elapsed = self.started.elapsed().as_secs_f64();
        // The split also goes on the request's span: into the access line and exported traces.
        // i64: OpenTelemetry has no unsigned integers (a u64 would travel as a string).
        if crate::span_stages() {
            let micros = self
                .stages
                .map(|took| took.map(|took| i64::try_from(took.as_micros()).unwrap_or(i64::MAX)));
            let [a, b, c, d, e] = Stage::ALL.map(Stage::span_field);
            let value = |i: usize| micros[i].as_ref().map(|v| v as &dyn tracing::Value);
            record_on_current_span([
                (a, value(0)),
                (b, value(1)),
                (c, value(2)),
                (d, value(3)),
                (e, value(4)),
            ]);
        }
        match (outcome, &self.served_by) {
            (Ok(response_bytes), Some(version)) => {
                let ok = version.ok(self.protocol);
                ok.requests.increment(1);
                let histograms = ok.histograms();
                histograms.duration.record(elapsed);
                histograms.request_size.record(self.request_bytes as f64);
                histograms.response_size.record(response_bytes as f64);
                for (stage, took) in Stage::ALL.into_iter().zip(self.stages) {
                    if let Some(took) = took {
                        version.stage(stage).record(took.as_secs_f64());
                    }
                }
            }
            (outcome, served_by) => {
                // Failures are rare next to successes: their label sets are built here.
                let (model, version) = served_by
                    .as_deref()
                    .map_or((String::new(), String::new()), |v| {
                        (v.model().to_owned(), v.version().to_owned())
                    });
                let labels = [
                    (names::MODEL, model),
                    (names::VERSION, version),
                    (names::PROTOCOL, self.protocol.as_str().to_owned()),
                    (
                        names::OUTCOME,
                        outcome.err().unwrap_or(names::OK).to_owned(),
                    ),
                ];
                counter!(names::REQUESTS_TOTAL, &labels).increment(1);
                histogram!(names::REQUEST_DURATION, &labels).record(elapsed);
            }
        }
    }
}

/// Records several fields on the current span in one call: each `span.record` makes every layer
/// (the log formatter re-renders the span's fields) do its work again, which on the hot path
/// costs more than the fields are worth. Fields the span does not have are left out.
fn record_on_current_span<const N: usize>(values: [(&str, Option<&dyn tracing::Value>); N]) {
    let span = tracing::Span::current();
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let found = values.map(|(name, value)| (fields.field(name), value));
    let Some(first) = found.iter().find_map(|(field, _)| field.clone()) else {
        return;
    };
    // A field the span lacks is given as absent under one it has, so the array keeps its length.
    let keys = found.map(|(field, value)| match field {
        Some(field) => (field, value),
        None => (first.clone(), None),
    });
    let entries: [(&tracing::field::Field, Option<&dyn tracing::Value>); N] =
        std::array::from_fn(|i| (&keys[i].0, keys[i].1));
    span.record_all(&fields.value_set(&entries));
}
