//! The OpenAI-compatible `POST /v1/embeddings` (what OpenAI's and TEI's clients call), for
//! models whose config has a text input and a pooled output (`docs/processing.md`).
//!
//! Errors take OpenAI's shape, `{"error": {"message", "type", "code"}}`, which its clients read.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use quiver_core::serve::{self, Decoded, Encoded, Stages, Target};
use quiver_core::{
    Error, ErrorKind, Inference, LoadedVersion, NamedTensor, Tensor, TensorData, VersionSelector,
};
use quiver_telemetry::{Protocol, RequestRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::{self, status_of};
use crate::metrics::body_len;
use crate::{AppState, respond};

/// The route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/embeddings", post(embeddings))
        .method_not_allowed_fallback(method_not_allowed)
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

/// A request's parts that matter once it has been read.
struct Embed {
    model: String,
    texts: Vec<String>,
    base64: bool,
    dimensions: Option<usize>,
}

/// What the answer needs of the request.
struct Plan {
    output: String,
    rows: usize,
    base64: bool,
    dimensions: Option<usize>,
}

async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let record = RequestRecord::start(Protocol::OpenaiRest, body_len(&body));
    let (model, texts, base64, dimensions) = match read(&state, body) {
        Ok(r) => (Ok(r.model), r.texts, r.base64, r.dimensions),
        Err(e) => (Err(e), Vec::new(), false, None),
    };
    let keys = crate::sticky::HeaderKeys(&headers);
    let target = match &model {
        Ok(model) => Ok(Target::latest(model).with_keys(&keys)),
        Err(e) => Err(e.clone()),
    };
    let result = serve::infer(
        &state.models,
        target,
        record,
        |loaded| {
            let Some((input, output)) = loaded.pipeline().and_then(|p| p.embedding()) else {
                return Err(Error::invalid(format!(
                    "model '{}' does not make text embeddings: its config.toml needs an [inputs.NAME.text] section and an output with pool = \"mean\" or \"cls\"",
                    loaded.name()
                )));
            };
            let rows = texts.len();
            let tensor = Tensor::new(
                vec![rows],
                TensorData::String(texts.into_iter().map(String::into_bytes).collect()),
            )
            .map_err(Error::internal)?;
            Ok(Decoded {
                inputs: vec![NamedTensor::new(input, tensor)],
                deadline: crate::deadline::from_headers(&headers)?,
                plan: Plan {
                    output: output.to_owned(),
                    rows,
                    base64,
                    dimensions,
                },
            })
        },
        encode,
    )
    .await;
    match result {
        Ok(response) => response,
        Err(error) => openai_error(error),
    }
}

/// Reads the body: its model (or the only one that makes embeddings), texts and options.
fn read(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Embed, Error> {
    let body = error::body(body)?;
    let request: EmbeddingsRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::invalid(format!("invalid request: {e}")))?;
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(Error::invalid(format!(
                "encoding_format '{other}' is not one of float, base64"
            )));
        }
    };
    let texts = match request.input {
        Input::One(text) => vec![text],
        Input::Many(texts) => texts,
    };
    if texts.is_empty() {
        return Err(Error::invalid(
            "input is empty; send a string or a list of strings",
        ));
    }
    let model = match request.model {
        Some(name) => name,
        None => only_embedding_model(state)?,
    };
    Ok(Embed {
        model,
        texts,
        base64,
        dimensions: request.dimensions,
    })
}

fn encode(
    loaded: &LoadedVersion,
    inference: Inference,
    plan: Plan,
    _: &mut Stages<'_>,
) -> Result<Encoded<Response>, Error> {
    let name = loaded.name();
    let embedding = inference
        .outputs
        .iter()
        .find(|o| o.name == plan.output)
        .ok_or_else(|| Error::internal("no embedding output"))?;
    let TensorData::F32(values) = embedding.tensor.data() else {
        return Err(Error::internal("the embedding output is not FP32"));
    };
    let dim = values.len() / plan.rows.max(1);
    if let Some(wanted) = plan.dimensions
        && wanted != dim
    {
        return Err(Error::invalid(format!(
            "model '{name}' makes {dim}-dimensional embeddings; dimensions = {wanted} cannot be served"
        )));
    }
    let data: Vec<Value> = values
        .chunks_exact(dim.max(1))
        .enumerate()
        .map(|(index, row)| {
            let embedding = if plan.base64 {
                let bytes: Vec<u8> = row.iter().flat_map(|v| v.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(row)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    respond::json_value(&json!({
        "object": "list",
        "data": data,
        "model": name,
        "usage": {"prompt_tokens": inference.tokens, "total_tokens": inference.tokens},
    }))
}

/// Without `model`: the one loaded model that makes embeddings (as TEI serves one model).
fn only_embedding_model(state: &AppState) -> Result<String, Error> {
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
        [] => Err(Error::not_found("no loaded model makes text embeddings")),
        _ => Err(Error::invalid(format!(
            "say which model: 'model' is one of '{}'",
            found.join("', '")
        ))),
    }
}

/// An error in OpenAI's shape, which its clients read.
fn openai_error(error: Error) -> Response {
    let status = status_of(error.kind);
    let kind = if status.is_client_error() {
        "invalid_request_error"
    } else {
        "server_error"
    };
    if status.is_server_error() {
        tracing::error!(status = status.as_u16(), message = %error.message, "request failed");
    }
    (
        status,
        axum::Json(json!({
            "error": {"message": error.message, "type": kind, "param": null, "code": error.kind.as_str()}
        })),
    )
        .into_response()
}

/// A route that exists, asked with a method it does not take, answered in OpenAI's shape.
async fn method_not_allowed(method: Method) -> Response {
    openai_error(Error::new(
        ErrorKind::MethodNotAllowed,
        format!("{method} is not allowed on /v1/embeddings; use POST"),
    ))
}
