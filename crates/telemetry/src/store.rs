//! Metrics of model stores: listings, downloads and the local cache.

use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::names;

/// Makes a store's counters exist (at 0), so that a rate or an alert sees the first event and a
/// test can read "no download happened".
pub fn register(store: &str) {
    for outcome in [names::OK, "error"] {
        counter!(names::STORE_LISTINGS_TOTAL, names::STORE => store.to_owned(), names::OUTCOME => outcome)
            .absolute(0);
        counter!(names::STORE_DOWNLOADS_TOTAL, names::STORE => store.to_owned(), names::OUTCOME => outcome)
            .absolute(0);
    }
    counter!(names::STORE_DOWNLOAD_BYTES_TOTAL, names::STORE => store.to_owned()).absolute(0);
    counter!(names::STORE_CACHE_HITS_TOTAL, names::STORE => store.to_owned()).absolute(0);
    counter!(names::STORE_CACHE_EVICTIONS_TOTAL, names::STORE => store.to_owned()).absolute(0);
}

/// Counts one listing of `store`.
pub fn record_listing(store: &str, ok: bool) {
    let outcome = if ok { names::OK } else { "error" };
    counter!(names::STORE_LISTINGS_TOTAL, names::STORE => store.to_owned(), names::OUTCOME => outcome)
        .increment(1);
}

/// Counts `bytes` more downloaded from `store`.
pub fn record_bytes(store: &str, bytes: u64) {
    counter!(names::STORE_DOWNLOAD_BYTES_TOTAL, names::STORE => store.to_owned()).increment(bytes);
}

/// Counts one version download from `store` that took `took`.
pub fn record_download(store: &str, took: Duration, ok: bool) {
    let outcome = if ok { names::OK } else { "error" };
    counter!(names::STORE_DOWNLOADS_TOTAL, names::STORE => store.to_owned(), names::OUTCOME => outcome)
        .increment(1);
    if ok {
        histogram!(names::STORE_DOWNLOAD_DURATION, names::STORE => store.to_owned())
            .record(took.as_secs_f64());
    }
}

/// Counts a version found whole in the cache.
pub fn record_cache_hit(store: &str) {
    counter!(names::STORE_CACHE_HITS_TOTAL, names::STORE => store.to_owned()).increment(1);
}

/// Sets the bytes `store`'s versions take in the cache.
pub fn set_cache_bytes(store: &str, bytes: u64) {
    gauge!(names::STORE_CACHE_BYTES, names::STORE => store.to_owned()).set(bytes as f64);
}

/// Counts a version removed from the cache to keep it within its bound.
pub fn record_eviction(store: &str) {
    counter!(names::STORE_CACHE_EVICTIONS_TOTAL, names::STORE => store.to_owned()).increment(1);
}
