//! Errors as HTTP responses: `{"error": "..."}` (the body shape of TF Serving and KServe V2,
//! with `content-type: application/json`) and the status its [`ErrorKind`] maps to. Every error
//! is made from a kind, so its status and its metrics outcome always agree.

use axum::Json;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quiver_core::{Error, ErrorKind};

use crate::json::tensor::DecodeError;

/// A core [`Error`] answered as `{"error": message}` with the status of its kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError(pub Error);

impl ApiError {
    /// The HTTP status of this error's kind.
    pub fn status(&self) -> StatusCode {
        status_of(self.0.kind)
    }
}

/// The HTTP status for each kind of error (TF Serving's mapping of the gRPC codes, and HTTP's
/// own statuses for what only HTTP has); exhaustive, so a new kind cannot be forgotten.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::NotReady | ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl From<DecodeError> for ApiError {
    fn from(e: DecodeError) -> Self {
        Self(e.into())
    }
}

/// A request the JSON decoder refused is the client's mistake.
impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Error::invalid(e.to_string())
    }
}

/// What `Retry-After` says to a request refused because the server or a model was full.
pub const RETRY_AFTER_SECONDS: u32 = 1;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(status = status.as_u16(), message = %self.0.message, "request failed");
        }
        let mut response =
            (status, Json(serde_json::json!({ "error": self.0.message }))).into_response();
        if self.0.kind == ErrorKind::Overloaded {
            // Refused for load: a client that backs off a second is likely to get in.
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, RETRY_AFTER_SECONDS.into());
        }
        response
    }
}

/// The error for a request body that could not be read: [`ErrorKind::TooLarge`] (413) when over
/// `--max-body-bytes`, [`ErrorKind::RequestTimeout`] (408) when it arrived too slowly.
pub fn body_error(rejection: BytesRejection) -> Error {
    // A body slower than its deadline (crate::body_deadline): 408, as nginx answers it.
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
    while let Some(error) = source {
        if let Some(slow) = error.downcast_ref::<crate::body_deadline::BodyTimedOut>() {
            return Error::new(ErrorKind::RequestTimeout, slow.to_string());
        }
        source = error.source();
    }
    if let BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) = rejection {
        return Error::new(
            ErrorKind::TooLarge,
            "the request body is larger than the server's limit (--max-body-bytes)",
        );
    }
    Error::invalid(format!("cannot read the request body: {rejection}"))
}

/// The request body, or the error [`body_error`] makes of a body that could not be read.
pub fn body(body: Result<axum::body::Bytes, BytesRejection>) -> Result<axum::body::Bytes, Error> {
    body.map_err(body_error)
}
