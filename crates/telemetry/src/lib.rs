//! Quiver's telemetry: every metric name, label and bucket layout in one place ([`names`],
//! [`buckets`]), the Prometheus exposition ([`exporter`]), the per-version metric handles the
//! request path records into without looking anything up ([`VersionMetrics`]), the accounting of
//! one request across its stages ([`RequestRecord`]) and request ids ([`request_id`]).
//!
//! Recording goes through the `metrics` facade: with no exporter installed (`--metrics false`)
//! every handle is a no-op, so the request path pays nothing for metrics it does not export.

pub mod buckets;
pub mod connections;
pub mod exporter;
pub mod labels;
pub mod lifecycle;
pub mod names;
pub mod payload_log;
pub mod request;
pub mod request_id;
pub mod store;
pub mod traffic;
pub mod version;

/// Creates the span every request runs in: its id, and fields the request path fills in (model,
/// version, and the time of each stage in microseconds) for logs and exported traces.
#[macro_export]
macro_rules! request_span {
    ($id:expr) => {
        ::tracing::info_span!(
            "request",
            id = %$id,
            replica = $crate::replica(),
            model = ::tracing::field::Empty,
            version = ::tracing::field::Empty,
            token = ::tracing::field::Empty,
            preprocess_us = ::tracing::field::Empty,
            queue_us = ::tracing::field::Empty,
            compute_us = ::tracing::field::Empty,
            postprocess_us = ::tracing::field::Empty,
            encode_us = ::tracing::field::Empty,
        )
    };
}

pub use exporter::Exporter;

static REPLICA: std::sync::OnceLock<Box<str>> = std::sync::OnceLock::new();

static SPAN_STAGES: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

/// Whether requests write their stage times onto their span (on until told otherwise). Only the
/// access log and exported traces read them, and the log layer formats every field recorded on a
/// span whether or not a line is ever written (`perf`: ~3 % of a request's CPU at concurrency 8),
/// so a server with neither turns it off at start-up.
pub fn set_span_stages(on: bool) {
    SPAN_STAGES.store(on, std::sync::atomic::Ordering::Relaxed);
}

pub(crate) fn span_stages() -> bool {
    SPAN_STAGES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Names this replica (`--replica-id`) for every request's span; set once, at start-up.
pub fn set_replica(name: &str) {
    let _ = REPLICA.set(name.into());
}

/// This replica's name, as [`set_replica`] gave it (empty before).
pub fn replica() -> &'static str {
    REPLICA.get().map_or("", |name| name)
}
pub use labels::{Protocol, Stage};
pub use request::RequestRecord;
pub use version::{CacheMetrics, InflightGuard, VersionMetrics};
