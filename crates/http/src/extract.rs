//! Reading requests: extractors whose rejections answer in the protocol's error shape (axum's own
//! answer in plain text), and numeric headers.

use axum::extract::{FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use quiver_core::Error;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// axum's [`Path`], refusing a path it cannot decode (a parameter that is not UTF-8 once
/// percent-decoded) with `{"error": …}` and 400.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T, S> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(Error::invalid(format!(
                "malformed request path '{}': {}",
                parts.uri.path(),
                rejection.body_text()
            ))
            .into()),
        }
    }
}

/// Header `name` as a number (surrounding spaces allowed); `None` when absent, and an
/// [`quiver_core::ErrorKind::InvalidInput`] error saying `what` it must be when it is not one.
pub fn number_header<T: std::str::FromStr>(
    headers: &HeaderMap,
    name: &str,
    what: &str,
) -> Result<Option<T>, Error> {
    let Some(value) = headers.get(name) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<T>().ok())
        .map(Some)
        .ok_or_else(|| Error::invalid(what))
}
