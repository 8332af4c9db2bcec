//! The metric handles of one model version, so that the request path records into them without
//! building label sets or looking anything up. Counters and gauges are registered when the
//! version loads (at 0, so rates see the first event); histograms when first observed — an
//! empty histogram is still exported with a line per bucket, and pre-registering every
//! protocol's and stage's made an idle version cost ~39 KB of `/metrics` (now about 1 KB, so a
//! server with a thousand idle models stays scrapable).

use std::sync::OnceLock;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::labels::{Protocol, Stage};
use crate::names;

/// What a successful request through one protocol records.
#[derive(Debug)]
pub(crate) struct OkHandles {
    pub(crate) requests: Counter,
    histograms: OnceLock<OkHistograms>,
    labels: [(&'static str, String); 3],
}

/// A successful request's histograms, registered by the protocol's first one.
#[derive(Debug)]
pub(crate) struct OkHistograms {
    pub(crate) duration: Histogram,
    pub(crate) request_size: Histogram,
    pub(crate) response_size: Histogram,
}

impl OkHandles {
    fn new(model: &str, version: &str, protocol: Protocol) -> Self {
        let labels = [
            (names::MODEL, model.to_owned()),
            (names::VERSION, version.to_owned()),
            (names::PROTOCOL, protocol.as_str().to_owned()),
        ];
        Self {
            requests: counter!(names::REQUESTS_TOTAL, &Self::with_ok(&labels)),
            histograms: OnceLock::new(),
            labels,
        }
    }

    fn with_ok(labels: &[(&'static str, String); 3]) -> Vec<(&'static str, String)> {
        let mut with_outcome = labels.to_vec();
        with_outcome.push((names::OUTCOME, names::OK.to_owned()));
        with_outcome
    }

    pub(crate) fn histograms(&self) -> &OkHistograms {
        self.histograms.get_or_init(|| OkHistograms {
            duration: histogram!(names::REQUEST_DURATION, &Self::with_ok(&self.labels)),
            request_size: histogram!(names::REQUEST_SIZE, &self.labels),
            response_size: histogram!(names::RESPONSE_SIZE, &self.labels),
        })
    }
}

/// Every metric of one model version.
#[derive(Debug)]
pub struct VersionMetrics {
    model: String,
    version: String,
    number: u64,
    ok: [OkHandles; 5],
    stages: [OnceLock<Histogram>; 5],
    batch_size: OnceLock<Histogram>,
    queue_depth: Gauge,
    inflight: Gauge,
    rejected: Counter,
}

impl VersionMetrics {
    /// Registers the counters and gauges of `model` version `version`; its histograms register
    /// when first observed.
    pub fn new(model: &str, version: u64) -> Self {
        let number = version;
        let version = version.to_string();
        let labels = [
            (names::MODEL, model.to_owned()),
            (names::VERSION, version.clone()),
        ];
        Self {
            number,
            ok: Protocol::ALL.map(|protocol| OkHandles::new(model, &version, protocol)),
            stages: Default::default(),
            batch_size: OnceLock::new(),
            queue_depth: gauge!(names::QUEUE_DEPTH, &labels),
            inflight: gauge!(names::INFLIGHT, &labels),
            rejected: counter!(names::REJECTED_TOTAL, &labels),
            model: model.to_owned(),
            version,
        }
    }

    /// A successful request's handles for `protocol`.
    pub(crate) fn ok(&self, protocol: Protocol) -> &OkHandles {
        &self.ok[protocol.index()]
    }

    /// The histogram of `stage`, registered by the first request that went through it.
    pub(crate) fn stage(&self, stage: Stage) -> &Histogram {
        self.stages[stage.index()].get_or_init(|| {
            histogram!(names::STAGE_DURATION,
                names::MODEL => self.model.clone(), names::VERSION => self.version.clone(),
                names::STAGE => stage.as_str())
        })
    }

    /// Model name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// Version number, as its label shows it.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Version number.
    pub fn version_number(&self) -> u64 {
        self.number
    }

    /// Sets the queue depth.
    pub fn set_queue_depth(&self, depth: usize) {
        self.queue_depth.set(depth as f64);
    }

    /// Records one engine call of `requests` requests.
    pub fn record_batch(&self, requests: usize) {
        self.batch_size
            .get_or_init(|| {
                histogram!(names::BATCH_SIZE,
                    names::MODEL => self.model.clone(), names::VERSION => self.version.clone())
            })
            .record(requests as f64);
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

/// The hit and miss counters of a version's response cache, registered (at 0) with the cache.
#[derive(Debug, Clone)]
pub struct CacheMetrics {
    /// Requests answered from the cache.
    pub hits: Counter,
    /// Requests the cache did not hold.
    pub misses: Counter,
}

impl CacheMetrics {
    /// Registers the counters of `model` version `version`'s cache.
    pub fn new(model: &str, version: u64) -> Self {
        let counter = |result: &'static str| {
            counter!(names::CACHE_REQUESTS_TOTAL,
                names::MODEL => model.to_owned(), names::VERSION => version.to_string(),
                names::RESULT => result)
        };
        Self {
            hits: counter("hit"),
            misses: counter("miss"),
        }
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
