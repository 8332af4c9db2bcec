//! Protocol routing in-process: `quiver_http::app` over the fixture models, called with
//! `tower::ServiceExt::oneshot` (no socket). Every error, including what the router itself
//! refuses, answers `{"error": "…"}` with `content-type: application/json` and its status.

#![allow(clippy::unwrap_used)] // a test may panic

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use quiver_core::{Engines, ManagerOptions, ModelManager, Sources};
use quiver_engine_tract::TractEngine;
use quiver_http::AppState;
use serde_json::{Value, json};
use tower::ServiceExt as _;

/// Bodies over this many bytes are refused.
const LIMIT: usize = 4096;

/// The fixture models, loaded once for every test of this binary.
fn models() -> Arc<ModelManager> {
    static MODELS: OnceLock<Arc<ModelManager>> = OnceLock::new();
    Arc::clone(MODELS.get_or_init(|| {
        let models = ModelManager::new(
            Engines::new().with(Arc::new(TractEngine::new(1))),
            ManagerOptions::default(),
            Sources::Repository(quiver_test_support::fixtures_repository()),
        );
        models.load_all().expect("the fixture repository loads");
        models.set_ready(true);
        Arc::new(models)
    }))
}

fn app() -> Router {
    quiver_http::app(AppState {
        models: models(),
        max_body_bytes: LIMIT,
        metrics: None,
        access_log: false,
        auth: None,
        limiter: None,
        replica: None,
        admin: None,
    })
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn call(method: &str, uri: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Answer {
    let mut request = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app()
        .oneshot(request.body(body.into()).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    }
}

async fn post_json(uri: &str, body: &Value) -> Answer {
    call(
        "POST",
        uri,
        &[("content-type", "application/json")],
        body.to_string(),
    )
    .await
}

/// Checks that `answer` is the protocol's error with `status`; returns its message.
fn error_of(answer: &Answer, status: StatusCode, what: &str) -> String {
    let text = String::from_utf8_lossy(&answer.body);
    assert_eq!(answer.status, status, "{what}: {text}");
    assert_eq!(
        answer
            .headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"application/json"[..]),
        "{what}: content type of {text}"
    );
    let body: Value = serde_json::from_slice(&answer.body)
        .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
    let object = body.as_object().expect("an object");
    assert_eq!(object.len(), 1, "{what}: {body}");
    let message = object["error"].as_str().expect("a string error").to_owned();
    assert!(!message.is_empty(), "{what}");
    message
}

fn v2_half_plus_two() -> Value {
    json!({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
}

fn multi_io(outputs: &[&str]) -> Value {
    json!({
        "inputs": [
            {"name": "a", "shape": [1, 2], "datatype": "FP32", "data": [1.5, 2.0]},
            {"name": "b", "shape": [1], "datatype": "INT32", "data": [3]},
        ],
        "outputs": outputs.iter().map(|name| json!({"name": name})).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn the_routes_answer() {
    let answer = post_json("/v2/models/half_plus_two/infer", &v2_half_plus_two()).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["outputs"][0]["data"], json!([2.5, 3.0, 3.5]));
    let answer = post_json(
        "/v1/models/half_plus_two:predict",
        &json!({"instances": [[1.0, 2.0, 3.0]]}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let answer = post_json(
        "/v2/models/multi_io/infer",
        &multi_io(&["sum", "b_doubled"]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    let names: Vec<&str> = body["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["sum", "b_doubled"]);
}

#[tokio::test]
async fn unknown_paths_are_404() {
    for (method, uri) in [
        ("GET", "/no/such/route"),
        ("POST", "/v2/models/half_plus_two/explode"),
        ("GET", "/v2/models/half_plus_two/versions/1/nothing"),
        ("GET", "/v1/models/half_plus_two/other"),
        ("POST", "/v1/models/half_plus_two:explode"),
        ("GET", "/v1"),
        ("GET", "/"),
    ] {
        error_of(
            &call(method, uri, &[], Body::empty()).await,
            StatusCode::NOT_FOUND,
            &format!("{method} {uri}"),
        );
    }
    let message = error_of(
        &post_json("/v2/models/nope/infer", &v2_half_plus_two()).await,
        StatusCode::NOT_FOUND,
        "unknown model",
    );
    assert!(message.contains("nope"), "{message}");
}

#[tokio::test]
async fn methods_a_route_does_not_take_are_405() {
    let routes = [
        ("/v2/models/half_plus_two/infer", "POST"),
        ("/v2/models/half_plus_two/versions/1/infer", "POST"),
        ("/v2/models/half_plus_two/infer/image", "POST"),
        ("/v2/health/live", "GET"),
        ("/v2/health/ready", "GET"),
        ("/v2", "GET"),
        ("/v2/models/half_plus_two", "GET"),
        ("/v2/models/half_plus_two/ready", "GET"),
        ("/v2/models/half_plus_two/config", "GET"),
        ("/v2/repository/index", "POST"),
        ("/v1/models/half_plus_two", "GET"),
        ("/v1/models/half_plus_two/metadata", "GET"),
        ("/v1/models/half_plus_two:predict", "POST"),
        ("/v1/models/half_plus_two/versions/1:regress", "POST"),
        ("/metrics", "GET"),
    ];
    for (uri, allowed) in routes {
        for method in ["TRACE", "PUT", "DELETE", "PATCH"] {
            let answer = call(method, uri, &[], Body::empty()).await;
            let message = error_of(
                &answer,
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("{method} {uri}"),
            );
            assert!(message.contains(method), "{message}");
            let allow = answer
                .headers
                .get(header::ALLOW)
                .map(|v| v.to_str().unwrap());
            assert!(
                allow.is_some_and(|a| a.contains(allowed)),
                "{method} {uri}: Allow {allow:?}"
            );
        }
    }
    let wrong_way = [
        ("GET", "/v2/models/half_plus_two/infer"),
        ("POST", "/v2/health/live"),
        ("GET", "/v1/models/half_plus_two:predict"),
        ("POST", "/v1/models/half_plus_two"),
    ];
    for (method, uri) in wrong_way {
        error_of(
            &call(method, uri, &[], Body::empty()).await,
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("{method} {uri}"),
        );
    }
}

#[tokio::test]
async fn openai_errors_keep_openai_shape() {
    let answer = call("PUT", "/v1/embeddings", &[], Body::empty()).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let answer = call("POST", "/v1/embeddings", &[], vec![b' '; LIMIT + 1]).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(body["error"]["code"], "too_large", "{body}");
    let answer = call("POST", "/v1/embeddings", &[], "{not json").await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_image_route_wants_an_image_content_type() {
    for headers in [
        &[][..],
        &[("content-type", "application/json")],
        &[("content-type", "text/plain")],
    ] {
        let message = error_of(
            &call(
                "POST",
                "/v2/models/half_plus_two/infer/image",
                headers,
                "{}",
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("{headers:?}"),
        );
        assert!(message.contains("image/*"), "{message}");
    }
    // The right content type for a model without an image input: a plain 400.
    error_of(
        &call(
            "POST",
            "/v2/models/half_plus_two/infer/image",
            &[("content-type", "image/png")],
            "png",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "a model without images",
    );
}

#[tokio::test]
async fn malformed_json_is_400() {
    for uri in [
        "/v2/models/half_plus_two/infer",
        "/v1/models/half_plus_two:predict",
        "/v2/repository/index",
    ] {
        for body in ["{not json", "[1, 2", "\"text\"", "{\"a\": tru}"] {
            error_of(
                &call("POST", uri, &[("content-type", "application/json")], body).await,
                StatusCode::BAD_REQUEST,
                &format!("{uri} {body:?}"),
            );
        }
    }
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let big = format!("{{\"instances\": [{}]}}", vec!["1.0"; LIMIT].join(", "));
    for uri in [
        "/v2/models/half_plus_two/infer",
        "/v2/models/half_plus_two/versions/1/infer",
        "/v1/models/half_plus_two:predict",
        "/v2/repository/index",
    ] {
        let message = error_of(
            &call(
                "POST",
                uri,
                &[("content-type", "application/json")],
                big.clone(),
            )
            .await,
            StatusCode::PAYLOAD_TOO_LARGE,
            uri,
        );
        assert!(message.contains("--max-body-bytes"), "{message}");
    }
    error_of(
        &call(
            "POST",
            "/v2/models/half_plus_two/infer/image",
            &[("content-type", "image/png")],
            vec![0u8; LIMIT + 1],
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "image route",
    );
}

#[tokio::test]
async fn paths_that_do_not_decode_are_400() {
    for (method, uri) in [
        ("POST", "/v2/models/%FF/infer"),
        ("GET", "/v2/models/%FF"),
        ("GET", "/v2/models/half_plus_two/versions/%FF/ready"),
        ("POST", "/v2/repository/models/%FF/load"),
        ("POST", "/v1/models/%FF:predict"),
        ("GET", "/v1/models/%FF"),
    ] {
        error_of(
            &call(method, uri, &[], Body::empty()).await,
            StatusCode::BAD_REQUEST,
            &format!("{method} {uri}"),
        );
    }
}

#[tokio::test]
async fn an_output_requested_twice_is_400_naming_it() {
    for outputs in [&["sum", "sum"][..], &["sum", "b_doubled", "sum"]] {
        let message = error_of(
            &post_json("/v2/models/multi_io/infer", &multi_io(outputs)).await,
            StatusCode::BAD_REQUEST,
            &format!("{outputs:?}"),
        );
        assert!(message.contains("'sum'"), "{message}");
    }
}

#[tokio::test]
async fn deadlines_that_pass_before_the_model_runs_are_504() {
    let mut timed = v2_half_plus_two();
    timed["parameters"] = json!({"timeout": 0});
    let message = error_of(
        &post_json("/v2/models/half_plus_two/infer", &timed).await,
        StatusCode::GATEWAY_TIMEOUT,
        "V2 parameters.timeout",
    );
    assert!(message.contains("deadline"), "{message}");
    let header = [
        ("content-type", "application/json"),
        ("x-quiver-timeout-ms", "0"),
    ];
    for (uri, body) in [
        ("/v2/models/half_plus_two/infer", v2_half_plus_two()),
        (
            "/v1/models/half_plus_two:predict",
            json!({"instances": [[1.0, 2.0, 3.0]]}),
        ),
    ] {
        error_of(
            &call("POST", uri, &header, body.to_string()).await,
            StatusCode::GATEWAY_TIMEOUT,
            uri,
        );
    }
    // A generous deadline is met.
    let mut generous = v2_half_plus_two();
    generous["parameters"] = json!({"timeout": 60_000_000});
    let answer = post_json("/v2/models/half_plus_two/infer", &generous).await;
    assert_eq!(answer.status, StatusCode::OK);
    error_of(
        &call(
            "POST",
            "/v2/models/half_plus_two/infer",
            &[("x-quiver-timeout-ms", "soon")],
            v2_half_plus_two().to_string(),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "a malformed timeout header",
    );
}

#[tokio::test]
async fn a_server_not_ready_says_why_in_json() {
    let starting = ModelManager::new(
        Engines::new().with(Arc::new(TractEngine::new(1))),
        ManagerOptions::default(),
        Sources::Repository(quiver_test_support::fixtures_repository()),
    );
    let app = quiver_http::app(AppState {
        models: Arc::new(starting),
        max_body_bytes: LIMIT,
        metrics: None,
        access_log: false,
        auth: None,
        limiter: None,
        replica: None,
        admin: None,
    });
    let request = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    let live = app
        .clone()
        .oneshot(request("/v2/health/live"))
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    let response = app.oneshot(request("/v2/health/ready")).await.unwrap();
    let (parts, body) = response.into_parts();
    let answer = Answer {
        status: parts.status,
        headers: parts.headers,
        body: axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    };
    error_of(&answer, StatusCode::SERVICE_UNAVAILABLE, "not ready");
}
