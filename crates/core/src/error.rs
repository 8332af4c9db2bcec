//! The one error type every front end maps to its protocol's status codes.

use std::fmt;

/// What went wrong, closed so that every front end maps each kind exhaustively.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed or does not fit the model.
    InvalidInput,
    /// The request is larger than the server accepts (`--max-body-bytes`).
    TooLarge,
    /// The resource exists but does not take the request's method (HTTP's `GET`, `POST`…).
    MethodNotAllowed,
    /// The request's body is in a format the resource does not take (its content type).
    UnsupportedMediaType,
    /// No such model, version or route.
    NotFound,
    /// The model exists but is not ready to serve.
    NotReady,
    /// Too much work queued: try again later.
    Overloaded,
    /// The request's deadline passed before it finished.
    Timeout,
    /// The client sent its request too slowly (a body slower than the server's body deadline).
    RequestTimeout,
    /// The server cannot serve right now (shutting down, engine missing).
    Unavailable,
    /// The operation is not supported.
    Unimplemented,
    /// The request carries no valid token (`--auth-tokens-file`).
    Unauthenticated,
    /// The request's token lacks the scope the operation needs.
    PermissionDenied,
    /// A fault inside the server.
    Internal,
}

impl ErrorKind {
    /// Stable snake_case name, used in logs and in the `outcome` label of metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid_input",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::UnsupportedMediaType => "unsupported_media_type",
            ErrorKind::NotFound => "not_found",
            ErrorKind::NotReady => "not_ready",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Timeout => "timeout",
            ErrorKind::RequestTimeout => "request_timeout",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Unimplemented => "unimplemented",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission_denied",
            ErrorKind::Internal => "internal",
        }
    }
}

/// An error with a message meant for the client: it says what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The kind, which decides the status code.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    /// [`ErrorKind::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, message)
    }

    /// [`ErrorKind::NotFound`].
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// [`ErrorKind::Internal`].
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
