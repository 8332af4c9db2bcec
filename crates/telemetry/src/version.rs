//! The metric handles of one model version, registered once when it loads so that the request
//! path records into them without building label sets or looking anything up.

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::labels::{Protocol, Stage};
use crate::names;

/// What a successful request through one protocol records.
#[derive(Debug)]
pub(crate) struct OkHandles {
    pub(crate) requests: Counter,
    pub(crate) duration: Histogram,
    pub(crate) request_size: Histogram,
    pub(crate) response_size: Histogram,
}

/// Every metric of one model version.
#[derive(Debug)]
pub struct VersionMetrics {
    model: String,
    version: String,
    pub(crate) ok: [OkHandles; 5],
    pub(crate) stages: [Histogram; 5],
    queue_depth: Gauge,
    inflight: Gauge,
    batch_size: Histogram,
    rejected: Counter,
}

impl VersionMetrics {
    /// Registers the metrics of `model` version `version`.
    pub fn new(model: &str, version: u64) -> Self {
        let model = model.to_owned();
        let version = version.to_string();
        let ok = Protocol::ALL.map(|protocol| {
            let labels = [
                (names::MODEL, model.clone()),
                (names::VERSION, version.clone()),
                (names::PROTOCOL, protocol.as_str().to_owned()),
            ];
            let mut with_outcome = labels.to_vec();
            with_outcome.push((names::OUTCOME, names::OK.to_owned()));
            OkHandles {
                requests: counter!(names::REQUESTS_TOTAL, &with_outcome),
                duration: histogram!(names::REQUEST_DURATION, &with_outcome),
                request_size: histogram!(names::REQUEST_SIZE, &labels),
                response_size: histogram!(names::RESPONSE_SIZE, &labels),
            }
        });
        let stages = Stage::ALL.map(|stage| {
            histogram!(names::STAGE_DURATION,
                names::MODEL => model.clone(), names::VERSION => version.clone(),
                names::STAGE => stage.as_str())
        });
        let labels = [
            (names::MODEL, model.clone()),
            (names::VERSION, version.clone()),
        ];
        Self {
            ok,
            stages,
            queue_depth: gauge!(names::QUEUE_DEPTH, &labels),
            inflight: gauge!(names::INFLIGHT, &labels),
            batch_size: histogram!(names::BATCH_SIZE, &labels),
            rejected: counter!(names::REJECTED_TOTAL, &labels),
            model,
            version,
        }
    }

    /// Model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Version number, as its label shows it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Sets the queue depth.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as f64);
    }

    /// Records one engine call of `requests` requests.
    pub fn record_batch(&self, requests: usize) {
        self.batch_size.record(requests as f64);
    }

    /// Counts a request refused because the queue was full.
    pub fn record_rejected(&self) {
        self.rejected.increment(1);
    }

    /// Counts a request in flight until the guard drops.
    pub fn inflight(&self) -> InflightGuard<'_> {
        self.inflight.increment(1.0);
        InflightGuard(&self.inflight)
    }
}

/// Keeps a request counted in `quiver_inflight_requests` while it lives.
#[derive(Debug)]
pub struct InflightGuard<'a>(&'a Gauge);

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}
