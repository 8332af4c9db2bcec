//! Per-request deadlines over HTTP. HTTP has no standard deadline header, so Quiver reads
//! `X-Quiver-Timeout-Ms` on both REST APIs; a KServe V2 request may also carry Triton's
//! `parameters.timeout` (microseconds). A request without either gets its model's
//! `default_timeout_ms`.

use std::time::{Duration, Instant};

pub use quiver_core::deadline::{after, earliest};

use axum::http::HeaderMap;
use quiver_core::Error;

use crate::extract::number_header;

/// The header that carries a request's timeout, in milliseconds.
pub const TIMEOUT_HEADER: &str = "x-quiver-timeout-ms";

/// The deadline a request's headers ask for, if any.
pub fn from_headers(headers: &HeaderMap) -> Result<Option<Instant>, Error> {
    let ms: Option<u64> = number_header(
        headers,
        TIMEOUT_HEADER,
        "X-Quiver-Timeout-Ms must be a whole number of milliseconds",
    )?;
    Ok(ms.and_then(|ms| after(Duration::from_millis(ms))))
}
