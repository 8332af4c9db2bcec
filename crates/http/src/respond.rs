//! Answers to inference requests: a body with its size (for the response-size metric), and the
//! outcome of [`quiver_core::serve::infer`] as a response.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use quiver_core::Error;
use quiver_core::serve::Encoded;

use crate::error::ApiError;

/// A JSON body as the answer, `content-type: application/json`.
pub fn json(body: Vec<u8>) -> Encoded<Response> {
    let bytes = body.len();
    Encoded::new(
        ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        bytes,
    )
}

/// A JSON value as the answer.
pub fn json_value(value: &serde_json::Value) -> Result<Encoded<Response>, Error> {
    serde_json::to_vec(value)
        .map(json)
        .map_err(|e| Error::internal(format!("cannot encode the answer: {e}")))
}

/// Says whether the answer came from the model's response cache: `x-quiver-cache: hit|miss`
/// (nothing for a model without a cache).
pub fn cache_header(
    mut encoded: Encoded<Response>,
    cache: Option<quiver_core::CacheResult>,
) -> Encoded<Response> {
    if let Some(result) = cache {
        encoded.answer.headers_mut().insert(
            CACHE_HEADER,
            axum::http::HeaderValue::from_static(result.as_str()),
        );
    }
    encoded
}

/// The header [`cache_header`] sets.
pub const CACHE_HEADER: &str = "x-quiver-cache";

/// The answer, or the error in the protocol's shape.
pub fn response(result: Result<Response, Error>) -> Response {
    result.unwrap_or_else(|error| ApiError::from(error).into_response())
}
