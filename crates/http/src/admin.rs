//! The admin API over HTTP: `/admin/models/{name}/traffic` (GET, PUT, DELETE),
//! `/admin/models/{name}/labels/{label}` (PUT, DELETE), `/admin/models/{name}/history`,
//! `/admin/audit` and `/admin/metadata`. The work is `quiver_core::admin::Admin`'s; the
//! store is blocking, so each call runs off the async runtime.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::request::Parts;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use quiver_core::admin::{self, Admin};
use quiver_core::{Error, ErrorKind};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{self, ApiError};
use crate::extract::ApiPath;

/// Who made a change, for the audit log: the token's name (with `--auth-tokens-file`), put on
/// the request by the auth layer.
#[derive(Debug, Clone)]
pub struct Actor(pub Arc<str>);

/// The admin routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/admin/models/{name}/traffic",
            get(get_traffic).put(put_traffic).delete(delete_traffic),
        )
        .route(
            "/admin/models/{name}/labels/{label}",
            axum::routing::put(put_label).delete(delete_label),
        )
        .route("/admin/models/{name}/history", get(history))
        .route("/admin/audit", get(audit))
        .route("/admin/metadata", get(metadata))
}

fn admin(state: &AppState) -> Result<Arc<Admin>, ApiError> {
    state.admin.clone().ok_or_else(|| {
        ApiError(Error::new(
            ErrorKind::Unavailable,
            "the admin API needs a metadata store (--metadata-store)",
        ))
    })
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError(Error::internal(e.to_string())))?
        .map_err(ApiError)
}

fn actor(parts: &Parts) -> String {
    if let Some(Actor(name)) = parts.extensions.get::<Actor>() {
        return name.to_string();
    }
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_owned(), |info| info.0.ip().to_string())
}

async fn get_traffic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let view = blocking(move || admin.traffic(&name)).await?;
    Ok(axum::Json(admin::traffic_json(&view)).into_response())
}

async fn put_traffic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let body = error::body(body)?;
    let policy = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::invalid(format!(
            "traffic policy for model '{name}': {e}"
        )))
    })?;
    let actor = actor(&parts);
    let view = blocking(move || admin.set_traffic(&name, policy, &actor)).await?;
    Ok(axum::Json(admin::traffic_json(&view)).into_response())
}

async fn delete_traffic(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let actor = actor(&parts);
    let view = blocking(move || admin.delete_traffic(&name, &actor)).await?;
    Ok(axum::Json(admin::traffic_json(&view)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelBody {
    version: u64,
}

async fn put_label(
    State(state): State<AppState>,
    ApiPath((name, label)): ApiPath<(String, String)>,
    parts: Parts,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let body = error::body(body)?;
    let LabelBody { version } = serde_json::from_slice(&body).map_err(|e| {
        ApiError(Error::invalid(format!(
            "label '{label}' of model '{name}': expected {{\"version\": N}}: {e}"
        )))
    })?;
    let actor = actor(&parts);
    let model = name.clone();
    let labels = blocking(move || admin.set_label(&name, &label, Some(version), &actor)).await?;
    Ok(axum::Json(json!({ "model": model, "labels": labels })).into_response())
}

async fn delete_label(
    State(state): State<AppState>,
    ApiPath((name, label)): ApiPath<(String, String)>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let actor = actor(&parts);
    let model = name.clone();
    let labels = blocking(move || admin.set_label(&name, &label, None, &actor)).await?;
    Ok(axum::Json(json!({ "model": model, "labels": labels })).into_response())
}

/// The most entries or events one call returns.
const MAX_LIMIT: usize = 10_000;

#[derive(Deserialize)]
struct AuditQuery {
    since: Option<i64>,
    limit: Option<usize>,
    model: Option<String>,
}

async fn audit(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let Query(query) = query.map_err(|e| ApiError(Error::invalid(e.body_text())))?;
    let limit = query.limit.unwrap_or(1000).min(MAX_LIMIT);
    let entries =
        blocking(move || admin.audit(query.since.unwrap_or(0), limit, query.model.as_deref()))
            .await?;
    let entries: Vec<Value> = entries.iter().map(admin::audit_json).collect();
    Ok(axum::Json(json!({ "entries": entries })).into_response())
}

#[derive(Deserialize)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    let Query(query) = query.map_err(|e| ApiError(Error::invalid(e.body_text())))?;
    let limit = query.limit.unwrap_or(1000).min(MAX_LIMIT);
    let events = blocking(move || admin.history(Some(&name), limit)).await?;
    let events: Vec<Value> = events.iter().map(admin::event_json).collect();
    Ok(axum::Json(json!({ "events": events })).into_response())
}

async fn metadata(State(state): State<AppState>) -> Result<Response, ApiError> {
    let admin = admin(&state)?;
    Ok(axum::Json(admin::status_json(&admin.status())).into_response())
}
