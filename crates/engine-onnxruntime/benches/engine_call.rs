//! One engine call, in process: Quiver's ONNX Runtime engine (and tract, for the table) on the
//! shared `mobilenet_v2` and `all_minilm_l6_v2` at batch 1 and 8, two intra-op threads — the
//! same model, inputs and thread count as `bench/ort_python.py` gives Python's
//! `onnxruntime` `session.run`. `bench/engine_call.sh` runs both and prints them side by side.
//!
//! Needs ONNX Runtime's library (`QUIVER_ONNXRUNTIME_LIB`, or `scripts/fetch-onnxruntime.sh`'s
//! place) and the shared models (`QUIVER_SHARED_MODELS`).
//!
//! `cargo bench -p quiver-engine-onnxruntime --bench engine_call`

#![allow(missing_docs, clippy::unwrap_used)] // a benchmark harness

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use quiver_engine_api::{Engine, EngineOptions, Session, Tensor, TensorData};
use quiver_engine_onnxruntime::{OnnxRuntimeEngine, SharedPool};
use quiver_engine_tract::TractEngine;
use quiver_test_support::{onnxruntime_library, shared_models};

/// Threads for every engine here, as for Python's session (`intra_op_num_threads = 2`).
const THREADS: usize = 2;
/// MiniLM's sequence length: 128, as its tokenizer.json pads to, unless `QUIVER_BENCH_SEQ` says
/// otherwise (`bench/batching.sh` compares the server with the engine at the length its
/// sentences pad to).
fn seq() -> usize {
    std::env::var("QUIVER_BENCH_SEQ")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(128)
}

/// Deterministic inputs: pseudo-random pixels, or token ids with a full attention mask.
fn inputs(model: &str, batch: usize) -> Vec<Tensor> {
    if model == "mobilenet_v2" {
        let n = batch * 3 * 224 * 224;
        let data = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        return vec![Tensor::new(vec![batch, 3, 224, 224], TensorData::F32(data)).unwrap()];
    }
    let seq = seq();
    let n = batch * seq;
    let ids = (0..n).map(|i| 1000 + ((i * 7919) % 20000) as i64).collect();
    vec![
        Tensor::new(vec![batch, seq], TensorData::I64(ids)).unwrap(),
        Tensor::new(vec![batch, seq], TensorData::I64(vec![1; n])).unwrap(),
        Tensor::new(vec![batch, seq], TensorData::I64(vec![0; n])).unwrap(),
    ]
}

fn bench_engine(
    c: &mut Criterion,
    label: &str,
    engine: &dyn Engine,
    options: &EngineOptions,
    models: &[&str],
) {
    let Some(shared) = shared_models() else {
        return;
    };
    for model in models {
        let session: Box<dyn Session> = engine
            .load(&shared.join(model).join("1/model.onnx"), options)
            .unwrap();
        for batch in [1, 8] {
            let input = inputs(model, batch);
            // The engine consumes its inputs; cloning them is setup, not measured (Python's
            // session.run borrows its numpy arrays).
            c.bench_function(&format!("{label}/{model}/b{batch}"), |b| {
                b.iter_batched(
                    || input.clone(),
                    |input| session.run(input).unwrap(),
                    BatchSize::LargeInput,
                );
            });
        }
    }
}

/// The request-path fixture (64→256→10, `bench/request_path.sh`'s model) at batch 1 on one
/// intra-op thread, as the server runs it there: for a model this small the call's fixed cost is
/// all there is, which is what a request at concurrency 1 pays.
fn bench_dense(c: &mut Criterion, engine: &dyn Engine) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../test-support/fixtures/models/dense/1/model.onnx");
    let options = EngineOptions {
        intra_op_threads: Some(1),
        ..EngineOptions::default()
    };
    let session = engine.load(&path, &options).unwrap();
    let data = (0..64).map(|i| i as f32 / 64.0).collect();
    let input = vec![Tensor::new(vec![1, 64], TensorData::F32(data)).unwrap()];
    c.bench_function("onnxruntime/dense/b1", |b| {
        b.iter_batched(
            || input.clone(),
            |input| session.run(input).unwrap(),
            BatchSize::SmallInput,
        );
    });
}

fn engines(c: &mut Criterion) {
    if let Some(library) = onnxruntime_library() {
        let found = quiver_engine_onnxruntime::library::find(Some(&library)).unwrap();
        let pool = SharedPool {
            intra_op_threads: THREADS,
            inter_op_threads: 1,
            // As Python's onnxruntime (the comparison) runs: back-to-back calls, spinning on;
            // QUIVER_ONNXRUNTIME_SPINNING=false runs as the server does by default.
            spinning: !matches!(
                std::env::var("QUIVER_ONNXRUNTIME_SPINNING").as_deref(),
                Ok("false")
            ),
        };
        let ort = OnnxRuntimeEngine::init(&found.path, pool).unwrap();
        let models = ["mobilenet_v2", "all_minilm_l6_v2"];
        bench_engine(c, "onnxruntime", &ort, &EngineOptions::default(), &models);
        // The same with a pool of the model's own, as Python's session has.
        let own_pool = EngineOptions {
            intra_op_threads: Some(THREADS),
            ..EngineOptions::default()
        };
        bench_engine(c, "onnxruntime-own-pool", &ort, &own_pool, &models);
        bench_dense(c, &ort);
    }
    // tract cannot load MiniLM (see the conformance suite).
    let tract = TractEngine::new(THREADS);
    bench_engine(
        c,
        "tract",
        &tract,
        &EngineOptions::default(),
        &["mobilenet_v2"],
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = engines
}
criterion_main!(benches);
