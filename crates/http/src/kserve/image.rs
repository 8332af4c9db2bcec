//! `POST /v2/models/NAME[/versions/V]/infer/image`: the request body is one encoded image
//! (`Content-Type: image/*`), fed to the model's image input; the answer is the V2 JSON
//! response. For clients that have a file and nothing else (curl, a browser upload).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use quiver_core::{NamedTensor, Tensor, TensorData};
use quiver_telemetry::{Protocol, RequestRecord, Stage};

use super::codec::{ResponseOutput, encode_infer};
use super::resolve;
use crate::AppState;
use crate::error::{ApiError, body_error};
use crate::metrics::{body_len, finish};

/// The route for the latest version.
pub async fn infer_image(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = RequestRecord::start(Protocol::KserveRest, body_len(&body));
    let result = run(&state, &name, None, &headers, body, &mut record).await;
    finish(record, result)
}

/// The route for one version.
pub async fn infer_image_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = RequestRecord::start(Protocol::KserveRest, body_len(&body));
    let result = run(&state, &name, Some(&version), &headers, body, &mut record).await;
    finish(record, result)
}

async fn run(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    record: &mut RequestRecord,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("image/")
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "this route takes an image as the body, with Content-Type image/* (got '{content_type}'); JSON requests go to /v2/models/{name}/infer"
            ),
        ));
    }
    let loaded = resolve(state, name, version)?;
    record.served_by(loaded.metrics());
    let inputs: Vec<&str> = loaded
        .pipeline()
        .map(|p| p.image_inputs().collect())
        .unwrap_or_default();
    let input = match inputs.as_slice() {
        [one] => (*one).to_owned(),
        [] => {
            return Err(ApiError::bad_request(format!(
                "model '{name}' takes no images: its config.toml has no [inputs.NAME.image] section"
            )));
        }
        many => {
            return Err(ApiError::bad_request(format!(
                "model '{name}' has several image inputs ('{}'); send a V2 request naming them",
                many.join("', '")
            )));
        }
    };
    let body = body.map_err(body_error)?;
    let tensor = Tensor::new(vec![1], TensorData::String(vec![body.to_vec()]))
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let deadline = crate::deadline::from_headers(headers)?;
    record.stage_done(Stage::Preprocess);
    let inference = loaded
        .infer_timed(vec![NamedTensor::new(input, tensor)], deadline)
        .await?;
    record.measured(
        inference.preprocess,
        inference.queued,
        inference.compute,
        inference.postprocess,
    );
    let outputs: Vec<ResponseOutput<'_>> = inference
        .outputs
        .iter()
        .map(|output| ResponseOutput {
            output: Cow::Borrowed(output),
            binary: false,
        })
        .collect();
    let (json, _) = encode_infer(loaded.name(), loaded.version(), None, &outputs);
    record.stage_done(Stage::Encode);
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}
