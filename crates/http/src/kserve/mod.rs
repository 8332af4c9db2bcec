//! KServe V2 / Open Inference Protocol over HTTP, with Triton's binary tensor data and model
//! configuration extensions: `/v2/health/*`, `/v2`, `/v2/models/NAME[/versions/V][/ready|/config|/infer]`.

pub mod codec;
mod image;
mod repository;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::borrow::Cow;

use quiver_core::serve::{self, Decoded, Encoded, Stages, Target, check_outputs_unique};
use quiver_core::{Error, ErrorKind, Inference, LoadedVersion, TensorSpec, VersionState};
use serde_json::{Value, json};

use crate::error::{self, ApiError};
use crate::extract::{ApiPath, number_header};
use crate::metrics::body_len;
use crate::{AppState, respond};
use codec::{RequestedOutput, ResponseOutput, decode_infer, encode_infer};
use quiver_telemetry::{Protocol, RequestRecord};

/// Triton's header giving the length of the JSON part of a body with binary data.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

/// Extensions this server implements, as `GET /v2` lists them.
pub const EXTENSIONS: &[&str] = &[
    "binary_tensor_data",
    "model_configuration",
    "model_repository",
];

/// The KServe V2 routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(model_metadata_version),
        )
        .route("/v2/models/{name}/ready", get(model_ready))
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(model_ready_version),
        )
        .route("/v2/models/{name}/config", get(model_config))
        .route(
            "/v2/models/{name}/versions/{version}/config",
            get(model_config_version),
        )
        .route("/v2/models/{name}/infer", post(infer))
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(infer_version),
        )
        .route("/v2/models/{name}/infer/image", post(image::infer_image))
        .route(
            "/v2/models/{name}/versions/{version}/infer/image",
            post(image::infer_image_version),
        )
        .route("/v2/repository/index", post(repository::index))
        .route("/v2/repository/models/{name}/load", post(repository::load))
        .route(
            "/v2/repository/models/{name}/unload",
            post(repository::unload),
        )
}

async fn server_metadata() -> Response {
    axum::Json(json!({
        "name": "quiver",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
    .into_response()
}

async fn live() -> StatusCode {
    StatusCode::OK
}

/// Ready once the start-up models are loaded, until shutdown begins. With `?verbose` (as
/// Kubernetes' own `/readyz?verbose`), the answer also lists each check as text: whether the
/// models are in, and whether the metadata store answers (a lost store does not make the
/// server unready: it serves its last known policies, and says so here).
async fn ready(State(state): State<AppState>, uri: axum::http::Uri) -> Result<Response, ApiError> {
    let verbose = uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    });
    if verbose {
        let ready = state.models.is_ready();
        let mut text = String::from(if ready {
            "[+] models: the start-up models are loaded\n"
        } else {
            "[-] models: loading, or shutting down\n"
        });
        if let Some(admin) = &state.admin {
            let status = admin.status();
            text += &match status.error {
                None => format!("[+] metadata-store: {} answers\n", status.location),
                Some(error) => format!(
                    "[!] metadata-store: {} cannot be reached ({error}); serving the last known policies and labels (revision {})\n",
                    status.location, status.revision
                ),
            };
        }
        text += if ready { "ready\n" } else { "not ready\n" };
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Ok((code, text).into_response());
    }
    if state.models.is_ready() {
        Ok(StatusCode::OK.into_response())
    } else {
        Err(ApiError(Error::new(
            ErrorKind::NotReady,
            "not ready: the start-up models are loading, or the server is shutting down",
        )))
    }
}

/// The loaded version a path names, without loading one that is idle (readiness).
fn resolve(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<LoadedVersion>, ApiError> {
    let target = Target::parse(name, version)?;
    Ok(state.models.get(target.model, &target.version)?)
}

/// The version a path names, loaded on demand if it was unloaded while idle (metadata and
/// config, which clients read before their first request).
async fn acquire(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Arc<LoadedVersion>, ApiError> {
    let target = Target::parse(name, version)?;
    Ok(state
        .models
        .acquire(target.model, &target.version, None)
        .await?)
}

async fn model_metadata(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    metadata(&state, &name, None).await
}

async fn model_metadata_version(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    metadata(&state, &name, Some(&version)).await
}

fn tensor_metadata(spec: &TensorSpec) -> Value {
    json!({ "name": spec.name, "datatype": spec.dtype.kserve_name(), "shape": spec.shape })
}

async fn metadata(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> Result<Response, ApiError> {
    let loaded = acquire(state, name, version).await?;
    let versions: Vec<String> = state
        .models
        .status(name, None)?
        .iter()
        .filter(|v| v.state == VersionState::Available)
        .map(|v| v.version.to_string())
        .collect();
    let signature = loaded.signature();
    Ok(axum::Json(json!({
        "name": loaded.name(),
        "versions": versions,
        "platform": loaded.platform(),
        "inputs": signature.inputs.iter().map(tensor_metadata).collect::<Vec<_>>(),
        "outputs": signature.outputs.iter().map(tensor_metadata).collect::<Vec<_>>(),
    }))
    .into_response())
}

async fn model_ready(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    resolve(&state, &name, None).map(|_| StatusCode::OK)
}

async fn model_ready_version(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    resolve(&state, &name, Some(&version)).map(|_| StatusCode::OK)
}

async fn model_config(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Result<Response, ApiError> {
    let loaded = acquire(&state, &name, None).await?;
    Ok(axum::Json(config_json(&loaded)).into_response())
}

async fn model_config_version(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
) -> Result<Response, ApiError> {
    let loaded = acquire(&state, &name, Some(&version)).await?;
    Ok(axum::Json(config_json(&loaded)).into_response())
}

/// The model's configuration in Triton's JSON form (what `perf_analyzer` and Triton clients read).
/// A batching model reports its `max_batch_size` and dims without the batch dimension, as Triton
/// does; otherwise `max_batch_size` is 0 and dims are the full shape.
pub fn config_json(loaded: &LoadedVersion) -> Value {
    let policy = loaded.batch_policy();
    let batching = policy.max_batch_size > 0;
    let tensor = |spec: &TensorSpec| {
        let dims = if batching {
            &spec.shape[1..]
        } else {
            &spec.shape[..]
        };
        json!({ "name": spec.name, "data_type": spec.dtype.triton_config_name(), "dims": dims })
    };
    let signature = loaded.signature();
    let mut config = json!({
        "name": loaded.name(),
        "platform": loaded.platform(),
        "backend": loaded.engine(),
        "max_batch_size": policy.max_batch_size,
        "input": signature.inputs.iter().map(tensor).collect::<Vec<_>>(),
        "output": signature.outputs.iter().map(tensor).collect::<Vec<_>>(),
        "version_policy": { "latest": { "num_versions": 1 } },
        "instance_group": [{ "name": loaded.name(), "kind": "KIND_CPU", "count": loaded.instances() }],
    });
    if batching {
        config["dynamic_batching"] = json!({
            "preferred_batch_size": policy.preferred_batch_sizes,
            "max_queue_delay_microseconds": u64::try_from(policy.max_queue_delay.as_micros()).unwrap_or(u64::MAX),
        });
    }
    config
}

async fn infer(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    run_infer(&state, Target::parse(&name, None), &headers, body).await
}

async fn infer_version(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    run_infer(&state, Target::parse(&name, Some(&version)), &headers, body).await
}

/// What the answer needs of a V2 request.
struct Plan {
    id: Option<String>,
    outputs: Vec<RequestedOutput>,
    binary_output: bool,
}

async fn run_infer(
    state: &AppState,
    target: Result<Target<'_>, Error>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let record = RequestRecord::start(Protocol::KserveRest, body_len(&body));
    // A malformed timeout header is reported by `decode`; here it only bounds a load on demand.
    let header_deadline = crate::deadline::from_headers(headers).ok().flatten();
    // A second handle on the body (no copy), for a sticky key among the V2 parameters.
    let peek = body.as_ref().ok().cloned();
    let keys = crate::sticky::V2Keys {
        headers,
        body: peek.as_deref(),
    };
    let result = serve::infer(
        &state.models,
        target.map(|t| t.until(header_deadline).with_keys(&keys)),
        record,
        |_| decode(headers, body),
        encode,
    )
    .await;
    respond::response(result)
}

fn decode(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Decoded<Plan>, Error> {
    let body = error::body(body)?;
    let (json, binary) = split_body(headers, &body)?;
    let request = decode_infer(json, binary)?;
    check_outputs_unique(request.outputs.iter().map(|o| o.name.as_str()))?;
    let deadline = crate::deadline::earliest(
        crate::deadline::from_headers(headers)?,
        request
            .timeout_us
            .and_then(|us| crate::deadline::after(std::time::Duration::from_micros(us))),
    );
    Ok(Decoded {
        inputs: request.inputs,
        deadline,
        plan: Plan {
            id: request.id,
            outputs: request.outputs,
            binary_output: request.binary_output,
        },
    })
}

fn encode(
    loaded: &LoadedVersion,
    inference: Inference,
    plan: Plan,
    stages: &mut Stages<'_>,
) -> Result<Encoded<Response>, Error> {
    let selected = select_outputs(loaded, &inference, &plan.outputs, plan.binary_output)?;
    stages.postprocessed();
    let (mut json, binary) = encode_infer(
        loaded.name(),
        loaded.version(),
        plan.id.as_deref(),
        &selected,
    );
    if binary.is_empty() && selected.iter().all(|o| !o.binary) {
        return Ok(respond::cache_header(respond::json(json), inference.cache));
    }
    let json_len = json.len();
    json.extend_from_slice(&binary);
    let bytes = json.len();
    let mut response = ([(header::CONTENT_TYPE, "application/octet-stream")], json).into_response();
    response
        .headers_mut()
        .insert(HEADER_LENGTH, HeaderValue::from(json_len));
    Ok(respond::cache_header(
        Encoded::new(response, bytes),
        inference.cache,
    ))
}

/// Splits a body into its JSON header and binary data by `Inference-Header-Content-Length`.
fn split_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), Error> {
    let Some(length) = number_header::<usize>(
        headers,
        HEADER_LENGTH,
        "Inference-Header-Content-Length must be a non-negative integer",
    )?
    else {
        return Ok((body, &[]));
    };
    if length > body.len() {
        return Err(Error::invalid(format!(
            "Inference-Header-Content-Length is {length} but the body has only {} bytes",
            body.len()
        )));
    }
    Ok(body.split_at(length))
}

/// The outputs a request asked for, in its order (all, in the model's order, when it named none).
pub fn select_outputs<'a>(
    loaded: &LoadedVersion,
    inference: &'a Inference,
    requested: &[codec::RequestedOutput],
    binary_default: bool,
) -> Result<Vec<ResponseOutput<'a>>, Error> {
    if requested.is_empty() {
        return Ok(inference
            .outputs
            .iter()
            .map(|output| ResponseOutput {
                output: Cow::Borrowed(output),
                binary: binary_default,
            })
            .collect());
    }
    requested
        .iter()
        .map(|want| {
            let output =
                loaded.select_output(inference, &want.name, want.raw, want.classification)?;
            Ok(ResponseOutput {
                output,
                binary: want.binary.unwrap_or(binary_default),
            })
        })
        .collect()
}
