//! What bearer tokens cost a request in process, without the network's noise: the whole REST
//! app (`quiver_http::app`, as the server builds it) answering V2 model metadata (no engine
//! call, so the check is most of the difference) and one V2 JSON infer on the dense 64→256→10
//! fixture model (tract), with tokens off, and on with the right token among 1 or 100 (every
//! token is compared, in constant time, so the count matters).
//!
//! `cargo bench -p quiver-http --bench auth`

#![allow(missing_docs, clippy::unwrap_used)] // a benchmark harness

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_group, criterion_main};
use quiver_core::auth::Auth;
use quiver_core::{Engines, ManagerOptions, ModelManager, Sources};
use quiver_engine_tract::TractEngine;
use quiver_http::AppState;
use tower::ServiceExt as _;

fn tokens_file(count: usize) -> Arc<Auth> {
    let mut text = String::new();
    for i in 0..count {
        writeln!(text, "token-{i:04}-0123456789abcdef infer client{i}").unwrap();
    }
    let path = std::env::temp_dir().join(format!(
        "quiver-bench-tokens-{}-{count}",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    let auth = Auth::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    auth
}

fn auth(c: &mut Criterion) {
    let models = ModelManager::new(
        Engines::new().with(Arc::new(TractEngine::new(1))),
        ManagerOptions::default(),
        Sources::Repository(quiver_test_support::fixtures_repository()),
    );
    models.load_all().unwrap();
    models.set_ready(true);
    let models = Arc::new(models);
    let values: Vec<String> = (1..=64)
        .map(|i| format!("{:.4}", f64::from(i).sin()))
        .collect();
    let body = format!(
        r#"{{"inputs":[{{"name":"x","shape":[1,64],"datatype":"FP32","data":[{}]}}]}}"#,
        values.join(",")
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("tokens");
    for (label, auth) in [
        ("off", None),
        ("1 token", Some(tokens_file(1))),
        ("100 tokens", Some(tokens_file(100))),
    ] {
        let app = quiver_http::app(AppState {
            models: Arc::clone(&models),
            max_body_bytes: 1 << 20,
            metrics: None,
            access_log: false,
            auth,
            limiter: None,
            replica: None,
            admin: None,
        });
        let call = |request: Request<Body>| {
            let response = runtime.block_on(app.clone().oneshot(request)).unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response
        };
        // The first token of the file: a lookup compares against every one anyway.
        let bearer = "Bearer token-0000-0123456789abcdef";
        group.bench_function(format!("metadata, {label}"), |b| {
            b.iter(|| {
                call(
                    Request::get("/v2/models/dense")
                        .header(header::AUTHORIZATION, bearer)
                        .body(Body::empty())
                        .unwrap(),
                )
            });
        });
        group.bench_function(format!("infer, {label}"), |b| {
            b.iter(|| {
                call(
                    Request::post("/v2/models/dense/infer")
                        .header(header::CONTENT_TYPE, "application/json")
                        .header(header::AUTHORIZATION, bearer)
                        .body(Body::from(body.clone()))
                        .unwrap(),
                )
            });
        });
    }
    group.finish();
}

criterion_group!(benches, auth);
criterion_main!(benches);
