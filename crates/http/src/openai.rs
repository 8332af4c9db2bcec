//! The OpenAI-compatible `POST /v1/embeddings` (what OpenAI's and TEI's clients call), for
//! models whose config has a text input and a pooled output (`docs/processing.md`).
//!
//! Errors take OpenAI's shape, `{"error": {"message", "type", "code"}}`, which its clients read.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use quiver_core::{NamedTensor, Tensor, TensorData, VersionSelector};
use quiver_telemetry::{Protocol, RequestRecord, Stage};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, body_error};
use crate::metrics::body_len;

/// The route.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/embeddings", post(embeddings))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmbeddingsRequest {
    model: Option<String>,
    input: Input,
    #[serde(default)]
    encoding_format: Option<String>,
    /// Accepted for compatibility; a model's embeddings have the size they have.
    #[serde(default)]
    dimensions: Option<usize>,
    /// Accepted for compatibility (OpenAI uses it for abuse monitoring).
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    One(String),
    Many(Vec<String>),
}

async fn embeddings(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let mut record = RequestRecord::start(Protocol::OpenaiRest, body_len(&body));
    match run(&state, body, &mut record).await {
        Ok(json) => {
            record.finish(Ok(json.len()));
            ([(header::CONTENT_TYPE, "application/json")], json).into_response()
        }
        Err(error) => {
            record.finish(Err(error.outcome));
            openai_error(error)
        }
    }
}

async fn run(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    record: &mut RequestRecord,
) -> Result<Vec<u8>, ApiError> {
    let body = body.map_err(body_error)?;
    let request: EmbeddingsRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid request: {e}")))?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "encoding_format '{other}' is not one of float, base64"
            )));
        }
    };
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if texts.is_empty() {
        return Err(ApiError::bad_request(
            "input is empty; send a string or a list of strings",
        ));
    }
    let name = match request.model {
        Some(name) => name,
        None => only_embedding_model(state)?,
    };
    let loaded = state.models.get(&name, &VersionSelector::Latest)?;
    record.served_by(loaded.metrics());
    let Some((input, output)) = loaded.pipeline().and_then(|p| p.embedding()) else {
        return Err(ApiError::bad_request(format!(
            "model '{name}' does not make text embeddings: its config.toml needs an [inputs.NAME.text] section and an output with pool = \"mean\" or \"cls\""
        )));
    };
    let (input, output) = (input.to_owned(), output.to_owned());
    let n = texts.len();
    let tensor = Tensor::new(
        vec![n],
        TensorData::String(texts.into_iter().map(String::into_bytes).collect()),
    )
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    record.stage_done(Stage::Preprocess);
    let inference = loaded
        .infer_timed(vec![NamedTensor::new(input, tensor)], None)
        .await?;
    record.measured(
        inference.preprocess,
        inference.queued,
        inference.compute,
        inference.postprocess,
    );
    let embedding = inference
        .outputs
        .iter()
        .find(|o| o.name == output)
        .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no embedding output"))?;
    let TensorData::F32(values) = embedding.tensor.data() else {
        return Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the embedding output is not FP32",
        ));
    };
    let dim = values.len() / n.max(1);
    if let Some(wanted) = request.dimensions
        && wanted != dim
    {
        return Err(ApiError::bad_request(format!(
            "model '{name}' makes {dim}-dimensional embeddings; dimensions = {wanted} cannot be served"
        )));
    }
    let data: Vec<Value> = values
        .chunks_exact(dim.max(1))
        .enumerate()
        .map(|(index, row)| {
            let embedding = if base64 {
                let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(row)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let response = json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": inference.tokens, "total_tokens": inference.tokens},
    });
    record.stage_done(Stage::Encode);
    serde_json::to_vec(&response)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// Without `model`: the one loaded model that makes embeddings (as TEI serves one model).
fn only_embedding_model(state: &AppState) -> Result<String, ApiError> {
    let found: Vec<String> = state
        .models
        .model_names()
        .into_iter()
        .filter(|name| {
            state
                .models
                .get(name, &VersionSelector::Latest)
                .is_ok_and(|m| m.pipeline().and_then(|p| p.embedding()).is_some())
        })
        .collect();
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(ApiError::not_found("no loaded model makes text embeddings")),
        _ => Err(ApiError::bad_request(format!(
            "say which model: 'model' is one of '{}'",
            found.join("', '")
        ))),
    }
}

fn openai_error(error: ApiError) -> Response {
    let kind = match error.status.as_u16() {
        400..=499 => "invalid_request_error",
        _ => "server_error",
    };
    if error.status.is_server_error() {
        tracing::error!(status = error.status.as_u16(), message = %error.message, "request failed");
    }
    (
        error.status,
        axum::Json(json!({
            "error": {"message": error.message, "type": kind, "param": null, "code": error.outcome}
        })),
    )
        .into_response()
}
