//! `GET /metrics`: the Prometheus exposition, and the accounting of inference requests.

use axum::body::HttpBody as _;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use quiver_telemetry::RequestRecord;

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
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are turned off (--metrics false)",
        )
        .into_response(),
    }
}

/// Records how an inference request ended and turns the result into its response.
pub fn finish(record: RequestRecord, result: Result<Response, ApiError>) -> Response {
    match result {
        Ok(response) => {
            let bytes = response.body().size_hint().exact().unwrap_or(0);
            record.finish(Ok(usize::try_from(bytes).unwrap_or(usize::MAX)));
            response
        }
        Err(error) => {
            record.finish(Err(error.outcome));
            error.into_response()
        }
    }
}

/// The size of a request body for the record (0 when it could not be read).
pub fn body_len<E>(body: &Result<axum::body::Bytes, E>) -> usize {
    body.as_ref().map_or(0, axum::body::Bytes::len)
}
