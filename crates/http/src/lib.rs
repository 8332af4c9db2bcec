//! Quiver's HTTP front ends on one listener: the TensorFlow Serving REST API and KServe V2.
//! Handlers only convert between the wire format and the core's types; every decision about models lives in `quiver-core`.

pub mod access;
pub mod admin;
pub mod auth;
pub mod body_deadline;
pub mod deadline;
pub mod error;
pub mod extract;
pub mod json;
pub mod kserve;
pub mod metrics;
pub mod openai;
pub mod respond;
pub mod sticky;
pub mod tfserving;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::routing::get;
use quiver_core::{Error, ErrorKind, ModelManager};

use crate::error::ApiError;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The models being served.
    pub models: Arc<ModelManager>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// The Prometheus exposition served on `/metrics` (`None`: metrics are off).
    pub metrics: Option<&'static quiver_telemetry::Exporter>,
    /// Whether to log one line per request.
    pub access_log: bool,
    /// The tokens requests must present (`--auth-tokens-file`); `None`: no tokens needed.
    pub auth: Option<Arc<quiver_core::auth::Auth>>,
    /// Requests per second per client (`--rate-limit`); `None`: no limit.
    pub limiter: Option<Arc<quiver_core::rate_limit::RateLimiter>>,
    /// This replica's name, sent as `x-quiver-replica` with every response (`--replica-id`).
    pub replica: Option<axum::http::HeaderValue>,
    /// The admin API's work (traffic policies, labels, audit); `None`: no metadata store.
    pub admin: Option<Arc<quiver_core::admin::Admin>>,
}

/// The router with every HTTP route Quiver serves.
pub fn app(state: AppState) -> Router {
    let limit = state.max_body_bytes;
    let router = Router::new()
        .merge(tfserving::routes())
        .merge(kserve::routes())
        .merge(openai::routes())
        .merge(admin::routes())
        .route("/metrics", get(metrics::exposition))
        .fallback(not_found)
        // After every route: it applies to the routes registered so far.
        .method_not_allowed_fallback(method_not_allowed);
    // Inside the access layer, so that refusals are logged (and counted) like any answer.
    with_auth(router, &state)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::layer,
        ))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// A router with only `/metrics`, for `--metrics-port`.
pub fn metrics_app(state: AppState) -> Router {
    let router = Router::new()
        .route("/metrics", get(metrics::exposition))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    with_auth(router, &state).with_state(state)
}

/// `router` behind the tokens and rate limits, when there are any (without, requests pay
/// nothing for them).
fn with_auth(router: Router<AppState>, state: &AppState) -> Router<AppState> {
    if state.auth.is_some() || state.limiter.is_some() {
        router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::layer,
        ))
    } else {
        router
    }
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    Error::not_found(format!("no route for {method} {}", uri.path())).into()
}

/// A route that exists, asked with a method it does not take (axum adds the `Allow` header).
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    Error::new(
        ErrorKind::MethodNotAllowed,
        format!(
            "{method} is not allowed on {}; the Allow header lists the methods it takes",
            uri.path()
        ),
    )
    .into()
}
