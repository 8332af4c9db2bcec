//! Extractors whose rejections answer in the protocol's error shape (axum's own answer in plain
//! text).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
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
            Err(rejection) => Err(ApiError::bad_request(format!(
                "malformed request path '{}': {}",
                parts.uri.path(),
                rejection.body_text()
            ))),
        }
    }
}
