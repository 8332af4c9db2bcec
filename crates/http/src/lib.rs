//! Quiver's HTTP front ends on one listener: the TensorFlow Serving REST API and KServe V2.
//! Handlers only convert between the wire format and the core's types; every decision about models lives in `quiver-core`.

pub mod deadline;
pub mod error;
pub mod json;
pub mod kserve;
pub mod tfserving;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use quiver_core::ModelManager;

use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The models being served.
    pub models: Arc<ModelManager>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
}

/// The router with every HTTP route Quiver serves.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    Router::new()
        .merge(tfserving::routes())
        .merge(kserve::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}
