//! Errors as HTTP responses: `{"error": "..."}` with the status code the protocol expects.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quiver_core::{Error, ErrorKind};

use crate::json::tensor::DecodeError;

/// An error answered as `{"error": message}` (the body shape of TF Serving and KServe V2).
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Message for the client.
    pub message: String,
    /// The error kind's stable name (the `outcome` label of metrics).
    pub outcome: &'static str,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            outcome: outcome_of(status),
        }
    }

    /// 400 Bad Request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

/// The HTTP status for each kind of core error (TF Serving's mapping of the gRPC codes).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::NotReady | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The error kind an HTTP status stands for, for errors made here rather than in the core.
fn outcome_of(status: StatusCode) -> &'static str {
    let kind = match status.as_u16() {
        404 => ErrorKind::NotFound,
        429 => ErrorKind::Overloaded,
        501 => ErrorKind::Unimplemented,
        503 => ErrorKind::Unavailable,
        504 => ErrorKind::Timeout,
        400..=499 => ErrorKind::InvalidInput,
        _ => ErrorKind::Internal,
    };
    kind.as_str()
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self {
            status: status_of(e.kind),
            message: e.message,
            outcome: e.kind.as_str(),
        }
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        Self::bad_request(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = self.status.as_u16(), message = %self.message, "request failed");
        }
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// The error for a request body that could not be read (413 when over `--max-body-bytes`).
pub fn body_error(rejection: axum::extract::rejection::BytesRejection) -> ApiError {
    let status = rejection.status();
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is larger than the server's limit (--max-body-bytes)".to_owned()
    } else {
        format!("cannot read the request body: {rejection}")
    };
    ApiError::new(status, message)
}
