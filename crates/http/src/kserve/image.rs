//! `POST /v2/models/NAME[/versions/V]/infer/image`: the request body is one encoded image
//! (`Content-Type: image/*`), fed to the model's image input; the answer is the V2 JSON
//! response. For clients that have a file and nothing else (curl, a browser upload).

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use quiver_core::serve::{self, Decoded, Target};
use quiver_core::{Error, ErrorKind, LoadedVersion, NamedTensor, Tensor, TensorData};
use quiver_telemetry::{Protocol, RequestRecord};

use super::codec::{ResponseOutput, encode_infer};
use crate::extract::ApiPath;
use crate::metrics::body_len;
use crate::{AppState, error, respond};

/// The route for the latest version.
pub async fn infer_image(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    run(&state, &name, None, &headers, body).await
}

/// The route for one version.
pub async fn infer_image_version(
    State(state): State<AppState>,
    ApiPath((name, version)): ApiPath<(String, String)>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    run(&state, &name, Some(&version), &headers, body).await
}

async fn run(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let record = RequestRecord::start(Protocol::KserveRest, body_len(&body));
    // The body's format is checked first: a JSON request sent here is a wrong route, whatever
    // the model.
    let keys = crate::sticky::HeaderKeys(headers);
    let target = check_content_type(headers, name)
        .and_then(|()| Target::parse(name, version))
        .map(|t| t.with_keys(&keys));
    let result = serve::infer(
        &state.models,
        target,
        record,
        |loaded| {
            let body = error::body(body)?;
            let input = image_input(loaded)?.to_owned();
            let tensor = Tensor::new(vec![1], TensorData::String(vec![body.to_vec()]))
                .map_err(Error::internal)?;
            Ok(Decoded {
                inputs: vec![NamedTensor::new(input, tensor)],
                deadline: crate::deadline::from_headers(headers)?,
                plan: (),
            })
        },
        |loaded, inference, (), _| {
            let outputs: Vec<ResponseOutput<'_>> = inference
                .outputs
                .iter()
                .map(|output| ResponseOutput {
                    output: Cow::Borrowed(output),
                    binary: false,
                })
                .collect();
            let (json, _) = encode_infer(loaded.name(), loaded.version(), None, &outputs);
            Ok(respond::json(json))
        },
    )
    .await;
    respond::response(result)
}

fn check_content_type(headers: &HeaderMap, name: &str) -> Result<(), Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()))
        .unwrap_or_default();
    if content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("image/")
    {
        return Ok(());
    }
    let got = if content_type.is_empty() {
        "none".to_owned()
    } else {
        format!("'{content_type}'")
    };
    Err(Error::new(
        ErrorKind::UnsupportedMediaType,
        format!(
            "this route takes an image as the body, with Content-Type image/* (got {got}); JSON requests go to /v2/models/{name}/infer"
        ),
    ))
}

/// The model's one image input.
fn image_input(loaded: &LoadedVersion) -> Result<&str, Error> {
    let mut inputs = loaded.pipeline().into_iter().flat_map(|p| p.image_inputs());
    match (inputs.next(), inputs.next()) {
        (Some(one), None) => Ok(one),
        (None, _) => Err(Error::invalid(format!(
            "model '{}' takes no images: its config.toml has no [inputs.NAME.image] section",
            loaded.name()
        ))),
        (Some(_), Some(_)) => {
            let all: Vec<&str> = loaded
                .pipeline()
                .into_iter()
                .flat_map(|p| p.image_inputs())
                .collect();
            Err(Error::invalid(format!(
                "model '{}' has several image inputs ('{}'); send a V2 request naming them",
                loaded.name(),
                all.join("', '")
            )))
        }
    }
}
