//! Triton's model repository extension over HTTP: `POST /v2/repository/index`,
//! `POST /v2/repository/models/NAME/load` (optional `parameters.config`) and
//! `POST /v2/repository/models/NAME/unload`.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use quiver_core::Error;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{self, ApiError};
use crate::extract::ApiPath;

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

#[derive(Deserialize, Default)]
struct ControlRequest {
    #[serde(default)]
    parameters: serde_json::Map<String, Value>,
}

/// An optional JSON body: empty means the defaults.
fn optional_json<T: for<'de> Deserialize<'de> + Default>(
    body: Result<Bytes, BytesRejection>,
) -> Result<T, ApiError> {
    let body = error::body(body)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    // serde_json stops at its recursion limit: deep nesting is an error, not a crash.
    serde_json::from_slice(&body)
        .map_err(|e| ApiError(Error::invalid(format!("malformed request body: {e}"))))
}

pub(super) async fn index(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: IndexRequest = optional_json(body)?;
    let rows: Vec<Value> = state
        .models
        .index(request.ready)
        .iter()
        .map(|row| {
            let mut entry = json!({ "name": row.name, "state": row.triton_state() });
            if let Some(version) = row.version {
                entry["version"] = json!(version.to_string());
            }
            let reason = row.reason_text();
            if !reason.is_empty() {
                entry["reason"] = json!(reason);
            }
            // Beyond Triton's fields (clients ignore it): what kind of load failure.
            if let Some(kind) = row.error_kind {
                entry["error_kind"] = json!(kind);
            }
            entry
        })
        .collect();
    Ok(axum::Json(rows).into_response())
}

pub(super) async fn load(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ControlRequest = optional_json(body)?;
    let config = match request.parameters.get("config") {
        None => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(_) => {
            return Err(ApiError(Error::invalid(
                "parameters.config must be a string holding a JSON object",
            )));
        }
    };
    let models = state.models.clone();
    off_runtime(move || models.api_load(&name, config.as_deref())).await?;
    Ok(axum::Json(json!({})).into_response())
}

pub(super) async fn unload(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let _: ControlRequest = optional_json(body)?;
    let models = state.models.clone();
    off_runtime(move || models.api_unload(&name)).await?;
    Ok(axum::Json(json!({})).into_response())
}

/// Runs a load or unload on a blocking thread: it waits for a load of the same model to finish.
async fn off_runtime(
    work: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Result<(), Error> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::internal(e.to_string()))?
}
