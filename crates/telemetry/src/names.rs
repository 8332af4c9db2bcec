//! Every metric Quiver exports: names (`quiver_*`, with unit suffixes), their help text, and the
//! label names. docs/metrics.md documents the same list; `describe` is what `# HELP` shows.

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// Inference requests answered (`model`, `version`, `protocol`, `outcome`).
pub const REQUESTS_TOTAL: &str = "quiver_requests_total";
/// Inference request latency, from the full body received to the response ready.
pub const REQUEST_DURATION: &str = "quiver_request_duration_seconds";
/// Time per stage of a successful request (`model`, `version`, `stage`).
pub const STAGE_DURATION: &str = "quiver_stage_duration_seconds";
/// Requests per engine call (`model`, `version`).
pub const BATCH_SIZE: &str = "quiver_batch_size";
/// Requests waiting in a version's queue.
pub const QUEUE_DEPTH: &str = "quiver_queue_depth";
/// Requests inside a version: queued or computing.
pub const INFLIGHT: &str = "quiver_inflight_requests";
/// Requests refused because the queue was full.
pub const REJECTED_TOTAL: &str = "quiver_rejected_requests_total";
/// Time to load a model version (`model`, `version`).
pub const LOAD_DURATION: &str = "quiver_model_load_duration_seconds";
/// Failed loads (`model`).
pub const LOAD_FAILURES_TOTAL: &str = "quiver_model_load_failures_total";
/// Failed loads by what went wrong (`model`, `reason`: the kind of load error).
pub const LOAD_ERRORS_TOTAL: &str = "quiver_model_load_errors_total";
/// 1 for a version's current state, 0 for the others (`model`, `version`, `state`).
pub const VERSION_STATE: &str = "quiver_model_version_state";
/// Request body sizes (`model`, `version`, `protocol`).
pub const REQUEST_SIZE: &str = "quiver_request_size_bytes";
/// Response body sizes (`model`, `version`, `protocol`).
pub const RESPONSE_SIZE: &str = "quiver_response_size_bytes";
/// Always 1; the labels say what is running (`version`).
pub const BUILD_INFO: &str = "quiver_build_info";
/// Counter: requests to a version with a response cache, by result (hit or miss).
pub const CACHE_REQUESTS_TOTAL: &str = "quiver_cache_requests_total";
/// Counter: versions unloaded to keep within the memory budget (`model`).
pub const EVICTIONS_TOTAL: &str = "quiver_model_evictions_total";
/// Counter: versions loaded again because a request asked for them (`model`).
pub const LOADS_ON_DEMAND_TOTAL: &str = "quiver_model_loads_on_demand_total";
/// Histogram: how long requests waited for their version to load on demand (`model`).
pub const ON_DEMAND_WAIT: &str = "quiver_model_on_demand_wait_seconds";
/// Gauge: a loaded version's estimated memory, what the budget counts (`model`, `version`).
pub const MEMORY_BYTES: &str = "quiver_model_memory_bytes";

/// Counter: sampled request/response pairs of a payload log, by outcome (`model`, `version`,
/// `outcome`: written, dropped, failed).
pub const PAYLOAD_LOG_EVENTS_TOTAL: &str = "quiver_payload_log_events_total";

/// Gauge: connections open on a listener (`listener`).
pub const CONNECTIONS_OPEN: &str = "quiver_connections_open";
/// Counter: connections closed at once because `--max-connections` were open (`listener`).
pub const CONNECTIONS_REFUSED_TOTAL: &str = "quiver_connections_refused_total";
/// Counter: connections closed by a timeout (`listener`, `phase`: header, idle, body).
pub const CONNECTIONS_TIMED_OUT_TOTAL: &str = "quiver_connections_timed_out_total";
/// Gauge: inference requests in flight in the whole server (what `--max-inflight-requests`
/// bounds).
pub const SERVER_INFLIGHT: &str = "quiver_server_inflight_requests";
/// Counter: inference requests refused because the server had `--max-inflight-requests` in
/// flight.
pub const SERVER_REJECTED_TOTAL: &str = "quiver_server_rejected_requests_total";

/// Counter: listings of a model store, by outcome (`store`, `outcome`: ok, error).
pub const STORE_LISTINGS_TOTAL: &str = "quiver_store_listings_total";
/// Counter: version downloads from a model store, by outcome (`store`, `outcome`: ok, error).
pub const STORE_DOWNLOADS_TOTAL: &str = "quiver_store_downloads_total";
/// Counter: bytes downloaded from a model store (`store`), counted as they arrive.
pub const STORE_DOWNLOAD_BYTES_TOTAL: &str = "quiver_store_download_bytes_total";
/// Histogram: how long a version's download took (`store`).
pub const STORE_DOWNLOAD_DURATION: &str = "quiver_store_download_duration_seconds";
/// Counter: versions found whole in the local cache, so not downloaded (`store`).
pub const STORE_CACHE_HITS_TOTAL: &str = "quiver_store_cache_hits_total";
/// Gauge: bytes of model versions in the local cache (`store`).
pub const STORE_CACHE_BYTES: &str = "quiver_store_cache_bytes";
/// Counter: versions removed from the local cache to keep it within its bound (`store`).
pub const STORE_CACHE_EVICTIONS_TOTAL: &str = "quiver_store_cache_evictions_total";

/// Counter: requests a model's traffic policy routed, by the version chosen and why (`model`,
/// `version`, `reason`: split, sticky, fallback).
pub const TRAFFIC_ASSIGNMENTS_TOTAL: &str = "quiver_traffic_assignments_total";
/// Counter: shadow runs (`model`, `version` of the shadow, `outcome`: compared, error, skipped).
pub const SHADOW_REQUESTS_TOTAL: &str = "quiver_shadow_requests_total";
/// Counter: shadow answers that disagreed with the primary's (`model`, `version`).
pub const SHADOW_DISAGREEMENTS_TOTAL: &str = "quiver_shadow_disagreements_total";
/// Histogram: the largest absolute difference between a shadow's float outputs and the
/// primary's (`model`, `version`).
pub const SHADOW_DIFFERENCE: &str = "quiver_shadow_difference";
/// Gauge: 1 while the metadata store answers, 0 while it cannot be reached.
pub const METADATA_STORE_UP: &str = "quiver_metadata_store_up";
/// Counter: failed metadata store operations (`operation`: sync, write, history).
pub const METADATA_STORE_ERRORS_TOTAL: &str = "quiver_metadata_store_errors_total";

/// Label: model name (empty when a request named no loaded model; names are bounded by the
/// repository, never taken from a request that failed to resolve).
pub const MODEL: &str = "model";
/// Label: model version number.
pub const VERSION: &str = "version";
/// Label: the front end ([`crate::Protocol`]).
pub const PROTOCOL: &str = "protocol";
/// Label: `ok` or the error kind's stable snake_case name.
pub const OUTCOME: &str = "outcome";
/// Label: the request stage ([`crate::Stage`]).
pub const STAGE: &str = "stage";
/// Label: a version's lifecycle state.
pub const STATE: &str = "state";
/// Label: the kind of a load error.
pub const REASON: &str = "reason";

/// The `outcome` of a request that succeeded.
pub const OK: &str = "ok";
/// Label: which listener a connection came to (`rest`, `grpc`, `metrics`).
pub const LISTENER: &str = "listener";
/// Label: what a connection was doing when its timeout passed (`header`, `idle`, `body`).
pub const PHASE: &str = "phase";
/// Label: this replica's name (`--replica-id`).
pub const REPLICA: &str = "replica";
/// Label: a model store, as its URL shows it (no credentials, query or fragment).
pub const STORE: &str = "store";
/// Label: what a metadata store operation was.
pub const OPERATION: &str = "operation";
/// Label: whether the response cache held the answer (`hit`, `miss`).
pub const RESULT: &str = "result";

/// Gives every metric its help text and unit (shown as `# HELP` in the exposition).
pub fn describe() {
    describe_counter!(
        REQUESTS_TOTAL,
        "Inference requests answered, by model, version, protocol and outcome (ok or the error kind)."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Inference request latency, from the full request received to the response ready."
    );
    describe_histogram!(
        STAGE_DURATION,
        Unit::Seconds,
        "Time a successful request spent in each stage: preprocess, queue, compute, postprocess, encode."
    );
    describe_histogram!(BATCH_SIZE, "Requests per engine call.");
    describe_gauge!(QUEUE_DEPTH, "Requests waiting in the version's queue.");
    describe_gauge!(
        INFLIGHT,
        "Requests inside the version: queued or computing."
    );
    describe_counter!(
        REJECTED_TOTAL,
        "Requests refused at once because the version's queue was full (HTTP 429, RESOURCE_EXHAUSTED)."
    );
    describe_histogram!(
        LOAD_DURATION,
        Unit::Seconds,
        "Time to load a model version, successful or not."
    );
    describe_counter!(LOAD_FAILURES_TOTAL, "Model version loads that failed.");
    describe_counter!(
        LOAD_ERRORS_TOTAL,
        "Model version loads that failed, by the kind of error (reason)."
    );
    describe_gauge!(
        VERSION_STATE,
        "1 for the version's current lifecycle state, 0 for the others."
    );
    describe_histogram!(
        REQUEST_SIZE,
        Unit::Bytes,
        "Size of inference request bodies (protobuf message size for gRPC)."
    );
    describe_histogram!(
        RESPONSE_SIZE,
        Unit::Bytes,
        "Size of inference response bodies (protobuf message size for gRPC)."
    );
    describe_gauge!(BUILD_INFO, "Always 1; labels name the Quiver version.");
    describe_counter!(
        CACHE_REQUESTS_TOTAL,
        "Requests to a version with a response cache, by result: hit (answered from the cache) or miss."
    );
    describe_counter!(
        PAYLOAD_LOG_EVENTS_TOTAL,
        "Sampled request/response pairs of a payload log: written to the sink, dropped (its queue was full) or failed (the sink refused them)."
    );
    describe_counter!(
        EVICTIONS_TOTAL,
        "Model versions unloaded while idle to keep within the memory budget."
    );
    describe_counter!(
        LOADS_ON_DEMAND_TOTAL,
        "Model versions loaded again because a request asked for them after an eviction."
    );
    describe_histogram!(
        ON_DEMAND_WAIT,
        Unit::Seconds,
        "Time requests waited for their model version to load on demand."
    );
    describe_gauge!(
        MEMORY_BYTES,
        Unit::Bytes,
        "Estimated memory of a loaded model version (what the memory budget counts; 0 once unloaded)."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Connections open on the listener.");
    describe_counter!(
        STORE_LISTINGS_TOTAL,
        "Listings of a model store, by outcome."
    );
    describe_counter!(
        STORE_DOWNLOADS_TOTAL,
        "Model version downloads from a model store, by outcome."
    );
    describe_counter!(
        STORE_DOWNLOAD_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes downloaded from a model store."
    );
    describe_histogram!(
        STORE_DOWNLOAD_DURATION,
        Unit::Seconds,
        "How long a model version's download took."
    );
    describe_counter!(
        STORE_CACHE_HITS_TOTAL,
        "Model versions found whole in the local cache, so not downloaded."
    );
    describe_gauge!(
        STORE_CACHE_BYTES,
        Unit::Bytes,
        "Bytes of model versions in the local cache."
    );
    describe_counter!(
        STORE_CACHE_EVICTIONS_TOTAL,
        "Model versions removed from the local cache to keep it within --model-cache-max-bytes."
    );
    describe_counter!(
        TRAFFIC_ASSIGNMENTS_TOTAL,
        "Requests a model's traffic policy routed, by the version chosen and why: split (drawn by weight), sticky (by the sticky key), fallback (the variant drawn was unavailable)."
    );
    describe_counter!(
        SHADOW_REQUESTS_TOTAL,
        "Shadow runs of routed requests, by the shadow version and outcome: compared, error (never seen by the client) or skipped (too many shadow runs in flight)."
    );
    describe_counter!(
        SHADOW_DISAGREEMENTS_TOTAL,
        "Shadow answers that disagreed with the primary's (exact for integers and strings, within the tolerance for floats, top-1 for classifiers)."
    );
    describe_histogram!(
        SHADOW_DIFFERENCE,
        "The largest absolute difference between a shadow's float outputs and the primary's, per compared request."
    );
    describe_gauge!(
        METADATA_STORE_UP,
        "1 while the metadata store answers; 0 while it cannot be reached (the last known policies keep serving)."
    );
    describe_counter!(
        METADATA_STORE_ERRORS_TOTAL,
        "Failed metadata store operations: sync (reading others' changes), write (an admin change), history (a load event)."
    );
    describe_counter!(
        CONNECTIONS_REFUSED_TOTAL,
        "Connections closed at once because --max-connections were already open."
    );
    describe_counter!(
        CONNECTIONS_TIMED_OUT_TOTAL,
        "Connections closed because the client was too slow: sending a request's headers (header), starting the next request (idle) or sending its body (body)."
    );
    describe_gauge!(
        SERVER_INFLIGHT,
        "Inference requests in flight in the whole server (bounded by --max-inflight-requests)."
    );
    describe_counter!(
        SERVER_REJECTED_TOTAL,
        "Inference requests refused at once because --max-inflight-requests were in flight (HTTP 429, RESOURCE_EXHAUSTED)."
    );
}
