//! `GET /metrics`: the Prometheus exposition, and the accounting of inference requests.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use quiver_core::Error;

use crate::AppState;
use crate::error::ApiError;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The exposition, or 404 when the server runs with `--metrics false`.
pub async fn exposition(State(state): State<AppState>) -> Response {
    match state.metrics {
        Some(exporter) => {
            ([(header::CONTENT_TYPE, CONTENT_TYPE)], exporter.render()).into_response()
        }
        None => {
            ApiError(Error::not_found("metrics are turned off (--metrics false)")).into_response()
        }
    }
}

/// The size of a request body for the record (0 when it could not be read).
pub fn body_len<E>(body: &Result<axum::body::Bytes, E>) -> usize {
    body.as_ref().map_or(0, axum::body::Bytes::len)
}
