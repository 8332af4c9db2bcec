//! TensorFlow Serving's REST API: `/v1/models/NAME[/versions/N][:predict|:classify|:regress|/metadata]`.

pub mod codec;
pub mod examples;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use quiver_core::{LoadedVersion, Task, TensorSpec, VersionSelector, VersionStatus};
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, body_error};
use crate::metrics::{body_len, finish};
use quiver_telemetry::{Protocol, RequestRecord, Stage};

/// TF Serving's one signature name for models without named signatures.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// The TF Serving routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/models/{*rest}", any(dispatch))
}

/// What a `/v1/models/…` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Status,
    Metadata,
    Predict,
    Classify,
    Regress,
}

#[derive(Debug, PartialEq, Eq)]
struct Route {
    model: String,
    version: VersionSelector,
    target: Target,
}

/// Parses the part of the path after `/v1/models/`.
fn parse_route(rest: &str) -> Option<Route> {
    let (path, verb) = match rest.rsplit_once(':') {
        Some((path, verb)) if !verb.contains('/') => (path, Some(verb)),
        _ => (rest, None),
    };
    let mut segments: Vec<&str> = path.split('/').collect();
    let mut target = Target::Status;
    if verb.is_none() && segments.last() == Some(&"metadata") {
        segments.pop();
        target = Target::Metadata;
    }
    let (model, version) = match segments.as_slice() {
        [model] => (*model, VersionSelector::Latest),
        [model, "versions", v] if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            (*model, VersionSelector::Specific(v.parse().ok()?))
        }
        [model, "labels", label] if quiver_repository::check_label(label).is_ok() => {
            (*model, VersionSelector::Label((*label).to_owned()))
        }
        _ => return None,
    };
    if model.is_empty() {
        return None;
    }
    let target = match verb {
        None => target,
        Some("predict") => Target::Predict,
        Some("classify") => Target::Classify,
        Some("regress") => Target::Regress,
        Some(_) => return None,
    };
    Some(Route {
        model: model.to_owned(),
        version,
        target,
    })
}

async fn dispatch(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = match parse_route(&rest) {
        Some(route) => route,
        None => {
            return ApiError::not_found(format!(
                "malformed request path '/v1/models/{rest}'; expected /v1/models/NAME[/versions/N|/labels/L][:predict|/metadata]"
            ))
            .into_response();
        }
    };
    let want = match route.target {
        Target::Status | Target::Metadata => Method::GET,
        Target::Predict | Target::Classify | Target::Regress => Method::POST,
    };
    if method != want {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed here; use {want}"),
        )
        .into_response();
    }
    let selector = route.version.clone();
    match route.target {
        Target::Status => status(&state, &route.model, &route.version).into_response(),
        Target::Metadata => state
            .models
            .get(&route.model, &selector)
            .map(|loaded| json_response(&metadata_json(&loaded)))
            .map_err(ApiError::from)
            .into_response(),
        Target::Predict | Target::Classify | Target::Regress => {
            let mut record = RequestRecord::start(Protocol::TfservingRest, body_len(&body));
            let result = inference(&state, &route, &selector, &headers, body, &mut record).await;
            finish(record, result)
        }
    }
}

/// `:predict`, `:classify` and `:regress`: the requests that reach a model.
async fn inference(
    state: &AppState,
    route: &Route,
    selector: &VersionSelector,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let loaded = state.models.get(&route.model, selector)?;
    record.served_by(loaded.metrics());
    match route.target {
        Target::Predict => {
            let body = body.map_err(body_error)?;
            let deadline = crate::deadline::from_headers(headers)?;
            predict(&loaded, &body, deadline, record).await
        }
        Target::Classify | Target::Regress | Target::Status | Target::Metadata => {
            let task = if route.target == Target::Classify {
                Task::Classification
            } else {
                Task::Regression
            };
            loaded.check_task(task)?;
            let body = body.map_err(body_error)?;
            let deadline = crate::deadline::from_headers(headers)?;
            classify_or_regress(&loaded, task, &body, deadline, record).await
        }
    }
}

async fn classify_or_regress(
    loaded: &LoadedVersion,
    task: Task,
    body: &[u8],
    deadline: Option<std::time::Instant>,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let request = examples::decode(body).map_err(ApiError::bad_request)?;
    check_signature_name(loaded, request.signature_name.as_deref())?;
    let inputs = loaded.examples_to_inputs(&request.context, &request.examples)?;
    record.stage_done(Stage::Preprocess);
    let inference = loaded.infer_timed(inputs, deadline).await?;
    record.measured(
        inference.preprocess,
        inference.queued,
        inference.compute,
        inference.postprocess,
    );
    let body = match task {
        Task::Classification => examples::classification_json(&loaded.classification(&inference)?),
        Task::Regression => examples::regression_json(&loaded.regression(&inference)?),
    };
    record.stage_done(Stage::Postprocess);
    let response = json_response(&body);
    record.stage_done(Stage::Encode);
    Ok(response)
}

fn check_signature_name(loaded: &LoadedVersion, name: Option<&str>) -> Result<(), ApiError> {
    match name {
        Some(name) if !name.is_empty() && name != DEFAULT_SIGNATURE => {
            Err(ApiError::bad_request(format!(
                "signature '{name}' not found in model '{}'; its only signature is '{DEFAULT_SIGNATURE}'",
                loaded.name()
            )))
        }
        Some(_) | None => Ok(()),
    }
}

async fn predict(
    loaded: &LoadedVersion,
    body: &[u8],
    deadline: Option<std::time::Instant>,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let images: Vec<&str> = loaded
        .pipeline()
        .map(|p| p.image_inputs().collect())
        .unwrap_or_default();
    let request = codec::decode_predict(body, loaded.signature(), &images)?;
    check_signature_name(loaded, request.signature_name.as_deref())?;
    record.stage_done(Stage::Preprocess);
    let inference = loaded.infer_timed(request.inputs, deadline).await?;
    record.measured(
        inference.preprocess,
        inference.queued,
        inference.compute,
        inference.postprocess,
    );
    record.stage_done(Stage::Postprocess);
    let body =
        codec::encode_predict(request.format, &inference.outputs).map_err(ApiError::bad_request)?;
    record.stage_done(Stage::Encode);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

fn status(state: &AppState, model: &str, selector: &VersionSelector) -> Result<Response, ApiError> {
    let versions = state.models.status_of(model, selector)?;
    let labels = state.models.labels(model)?;
    let list: Vec<Value> = versions.iter().map(version_status_json).collect();
    let mut body = json!({ "model_version_status": list });
    // Not in TF Serving's response: the labels in force, for operators (clients ignore it).
    if !labels.is_empty() {
        body["version_labels"] = labels
            .iter()
            .map(|(label, v)| (label.clone(), json!(v.to_string())))
            .collect::<serde_json::Map<_, _>>()
            .into();
    }
    Ok(json_response(&body))
}

fn version_status_json(v: &VersionStatus) -> Value {
    let (_, code) = v.tf_error_code();
    let message = v.error.as_deref().unwrap_or_default();
    json!({
        "version": v.version.to_string(),
        "state": v.state.tf_name(),
        "status": { "error_code": code, "error_message": message },
    })
}

fn tensor_info_json(spec: &TensorSpec) -> Value {
    let dims: Vec<Value> = spec
        .shape
        .iter()
        .map(|d| json!({ "size": d.to_string(), "name": "" }))
        .collect();
    json!({
        "dtype": spec.dtype.tf_name(),
        "tensor_shape": { "dim": dims, "unknown_rank": false },
        "name": spec.name,
    })
}

fn metadata_json(loaded: &LoadedVersion) -> Value {
    let signature = loaded.signature();
    let map = |specs: &[TensorSpec]| -> serde_json::Map<String, Value> {
        specs
            .iter()
            .map(|s| (s.name.clone(), tensor_info_json(s)))
            .collect()
    };
    json!({
        "model_spec": {
            "name": loaded.name(),
            "signature_name": "",
            "version": loaded.version().to_string(),
        },
        "metadata": {
            "signature_def": {
                "signature_def": {
                    DEFAULT_SIGNATURE: {
                        "inputs": map(&signature.inputs),
                        "outputs": map(&signature.outputs),
                        "method_name": "tensorflow/serving/predict",
                    }
                }
            }
        }
    })
}

fn json_response(value: &Value) -> Response {
    axum::Json(value).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(model: &str, version: Option<u64>, target: Target) -> Option<Route> {
        Some(Route {
            model: model.into(),
            version: version.map_or(VersionSelector::Latest, VersionSelector::Specific),
            target,
        })
    }

    #[test]
    fn parses_paths() {
        assert_eq!(parse_route("m"), route("m", None, Target::Status));
        assert_eq!(
            parse_route("m/versions/3"),
            route("m", Some(3), Target::Status)
        );
        assert_eq!(
            parse_route("m/metadata"),
            route("m", None, Target::Metadata)
        );
        assert_eq!(
            parse_route("m/versions/3/metadata"),
            route("m", Some(3), Target::Metadata)
        );
        assert_eq!(parse_route("m:predict"), route("m", None, Target::Predict));
        assert_eq!(
            parse_route("m/versions/2:predict"),
            route("m", Some(2), Target::Predict)
        );
        assert_eq!(
            parse_route("m:classify"),
            route("m", None, Target::Classify)
        );
        assert_eq!(
            parse_route("m/labels/stable:predict"),
            Some(Route {
                model: "m".into(),
                version: VersionSelector::Label("stable".into()),
                target: Target::Predict,
            })
        );
        for bad in [
            "",
            "m/labels/",
            "m/labels/a b",
            "m:explode",
            "m/versions/x:predict",
            "m/versions/",
            "m/other",
            "m/versions/99999999999999999999999",
        ] {
            assert_eq!(parse_route(bad), None, "{bad}");
        }
    }
}
