//! TensorFlow Serving's REST API: `/v1/models/NAME[/versions/N][:predict|:classify|:regress|/metadata]`.

pub mod codec;
pub mod examples;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use quiver_core::serve::{self, Decoded, Encoded, Stages};
use quiver_core::{
    Error, ErrorKind, Inference, LoadedVersion, Task, TensorSpec, VersionSelector, VersionStatus,
};
use serde_json::{Value, json};

use crate::error::{self, ApiError};
use crate::extract::ApiPath;
use crate::metrics::body_len;
use crate::{AppState, respond};
use quiver_telemetry::{Protocol, RequestRecord};

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
    ApiPath(rest): ApiPath<String>,
    method: Method,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(route) = parse_route(&rest) else {
        return ApiError(Error::not_found(format!(
            "malformed request path '/v1/models/{rest}'; expected /v1/models/NAME[/versions/N|/labels/L][:predict|:classify|:regress|/metadata]"
        )))
        .into_response();
    };
    let want = match route.target {
        Target::Status | Target::Metadata => Method::GET,
        Target::Predict | Target::Classify | Target::Regress => Method::POST,
    };
    // HEAD is GET without the body, as on every other route.
    if method != want && !(want == Method::GET && method == Method::HEAD) {
        let error = ApiError(Error::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} is not allowed on /v1/models/{rest}; use {want}"),
        ));
        return ([(header::ALLOW, want.as_str())], error).into_response();
    }
    let Route {
        model,
        version,
        target,
    } = route;
    let task = match target {
        Target::Status => return status(&state, &model, &version).into_response(),
        Target::Metadata => {
            return state
                .models
                .acquire(&model, &version, None)
                .await
                .map(|loaded| axum::Json(metadata_json(&loaded)).into_response())
                .map_err(ApiError::from)
                .into_response();
        }
        Target::Predict => None,
        Target::Classify => Some(Task::Classification),
        Target::Regress => Some(Task::Regression),
    };
    let record = RequestRecord::start(Protocol::TfservingRest, body_len(&body));
    let keys = crate::sticky::HeaderKeys(&headers);
    let target = Ok(serve::Target::new(&model, version).with_keys(&keys));
    let result = match task {
        None => {
            serve::infer(
                &state.models,
                target,
                record,
                |loaded| decode_predict(loaded, &headers, body),
                encode_predict,
            )
            .await
        }
        Some(task) => {
            serve::infer(
                &state.models,
                target,
                record,
                |loaded| decode_examples(loaded, task, &headers, body),
                encode_examples,
            )
            .await
        }
    };
    respond::response(result)
}

fn decode_predict(
    loaded: &LoadedVersion,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Decoded<codec::Format>, Error> {
    let body = error::body(body)?;
    let deadline = crate::deadline::from_headers(headers)?;
    let images: Vec<&str> = loaded
        .pipeline()
        .map(|p| p.image_inputs().collect())
        .unwrap_or_default();
    let request = codec::decode_predict(&body, loaded.signature(), &images)?;
    check_signature_name(loaded, request.signature_name.as_deref())?;
    Ok(Decoded {
        inputs: request.inputs,
        deadline,
        plan: request.format,
    })
}

fn encode_predict(
    _: &LoadedVersion,
    inference: Inference,
    format: codec::Format,
    _: &mut Stages<'_>,
) -> Result<Encoded<Response>, Error> {
    codec::encode_predict(format, &inference.outputs)
        .map(|body| respond::cache_header(respond::json(body), inference.cache))
        .map_err(Error::invalid)
}

/// `:classify` and `:regress`.
fn decode_examples(
    loaded: &LoadedVersion,
    task: Task,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Decoded<Task>, Error> {
    let body = error::body(body)?;
    loaded.check_task(task)?;
    let deadline = crate::deadline::from_headers(headers)?;
    let request = examples::decode(&body).map_err(Error::invalid)?;
    check_signature_name(loaded, request.signature_name.as_deref())?;
    Ok(Decoded {
        inputs: loaded.examples_to_inputs(&request.context, &request.examples)?,
        deadline,
        plan: task,
    })
}

fn encode_examples(
    loaded: &LoadedVersion,
    inference: Inference,
    task: Task,
    stages: &mut Stages<'_>,
) -> Result<Encoded<Response>, Error> {
    let body = match task {
        Task::Classification => examples::classification_json(&loaded.classification(&inference)?),
        Task::Regression => examples::regression_json(&loaded.regression(&inference)?),
    };
    stages.postprocessed();
    respond::json_value(&body)
}

fn check_signature_name(loaded: &LoadedVersion, name: Option<&str>) -> Result<(), Error> {
    match name {
        Some(name) if !name.is_empty() && name != DEFAULT_SIGNATURE => {
            Err(Error::invalid(format!(
                "signature '{name}' not found in model '{}'; its only signature is '{DEFAULT_SIGNATURE}'",
                loaded.name()
            )))
        }
        Some(_) | None => Ok(()),
    }
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
    Ok(axum::Json(body).into_response())
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
