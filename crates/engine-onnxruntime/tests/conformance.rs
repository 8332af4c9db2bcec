//! The engine conformance suite (quiver-test-support) against ONNX Runtime, and ONNX Runtime
//! against tract on the same inputs.

#![allow(clippy::unwrap_used)] // a test may panic

use quiver_engine_api::{Engine, EngineError, EngineOptions, Tensor, TensorData};
use quiver_engine_onnxruntime::{OnnxRuntimeEngine, SharedPool};
use quiver_engine_tract::TractEngine;
use quiver_test_support::conformance::{self, GapOutcome};
use quiver_test_support::{fixture_model, onnxruntime_library, shared_models};

/// The engine, or `None` (with a loud message) when the library is absent and not required.
fn engine() -> Option<OnnxRuntimeEngine> {
    let library = onnxruntime_library()?;
    let found = quiver_engine_onnxruntime::library::find(Some(&library)).unwrap();
    Some(OnnxRuntimeEngine::init(&found.path, SharedPool::default()).unwrap())
}

#[test]
fn every_dtype_round_trips() {
    let Some(engine) = engine() else { return };
    let served = conformance::dtypes(&engine).unwrap();
    let all: Vec<&str> = conformance::dtype_cases().iter().map(|(n, _)| *n).collect();
    assert_eq!(served, all, "ONNX Runtime serves every element type");
}

#[test]
fn fixtures() {
    let Some(engine) = engine() else { return };
    conformance::fixtures(&engine).unwrap();
}

#[test]
fn runs_what_tract_cannot() {
    let Some(engine) = engine() else { return };
    let outcomes = conformance::gaps(&engine).unwrap();
    assert!(
        outcomes.iter().all(|(_, o)| *o == GapOutcome::Served),
        "{outcomes:?}"
    );
}

#[test]
fn real_models_match_the_reference() {
    let Some(engine) = engine() else { return };
    let Some(shared) = shared_models() else {
        return;
    };
    let outcomes = conformance::real_models(&engine, &shared).unwrap();
    assert!(
        outcomes.iter().all(|(_, o)| *o == GapOutcome::Served),
        "{outcomes:?}"
    );
}

#[test]
fn agrees_with_tract_on_the_same_inputs() {
    let Some(ort) = engine() else { return };
    let Some(shared) = shared_models() else {
        return;
    };
    let tract = TractEngine::default();
    let mut cases: Vec<(std::path::PathBuf, String, Vec<Tensor>)> = Vec::new();
    for (model, label, inputs) in conformance::real_inputs(&shared).unwrap() {
        cases.push((shared.join(model).join("1/model.onnx"), label, inputs));
    }
    let dense: Vec<f32> = (0..3 * 64)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    cases.push((
        fixture_model("dense"),
        "3 rows".into(),
        vec![Tensor::new(vec![3, 64], TensorData::F32(dense)).unwrap()],
    ));
    let mut compared = 0;
    for (path, label, inputs) in cases {
        let tract_session = match tract.load(&path, &EngineOptions::default()) {
            Ok(s) => s,
            Err(EngineError::Unsupported(why)) => {
                eprintln!("tract refuses {}: {why}", path.display());
                continue;
            }
            Err(e) => panic!("{e}"),
        };
        let ort_session = ort.load(&path, &EngineOptions::default()).unwrap();
        assert_eq!(ort_session.signature(), tract_session.signature());
        let a = ort_session.run(inputs.clone()).unwrap();
        let b = tract_session.run(inputs).unwrap();
        for (x, y) in a.iter().zip(&b) {
            if let Err(e) = conformance::close(x, y) {
                panic!("{} on {label}: {e}", path.display());
            }
        }
        compared += 1;
    }
    assert!(compared >= 5, "compared {compared} cases");
}

#[test]
fn engine_options_are_honoured() {
    let Some(engine) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let saved = dir.path().join("optimized.onnx");
    let options = EngineOptions {
        intra_op_threads: Some(1),
        inter_op_threads: Some(2),
        optimization: quiver_engine_api::OptimizationLevel::Basic,
        optimized_model_path: Some(saved.clone()),
    };
    let s = engine
        .load(&fixture_model("half_plus_two"), &options)
        .unwrap();
    let x = Tensor::new(vec![1, 3], TensorData::F32(vec![0.0, 2.0, 4.0])).unwrap();
    assert_eq!(
        s.run(vec![x]).unwrap()[0].data(),
        &TensorData::F32(vec![2.0, 3.0, 4.0])
    );
    assert!(saved.is_file(), "the optimised model was saved");
    // The saved model is itself a model.
    engine.load(&saved, &EngineOptions::default()).unwrap();
}

#[test]
fn bad_inputs_are_the_clients_fault() {
    let Some(engine) = engine() else { return };
    let s = engine
        .load(&fixture_model("multi_io"), &EngineOptions::default())
        .unwrap();
    let a = Tensor::new(vec![2, 2], TensorData::F32(vec![0.0; 4])).unwrap();
    let b = Tensor::new(vec![3], TensorData::I32(vec![0; 3])).unwrap();
    // 'a' and 'b' share the batch dimension: ONNX Runtime would run them (the outputs are
    // independent), the engine refuses.
    assert!(matches!(
        s.run(vec![a, b]).unwrap_err(),
        EngineError::InvalidInput(_)
    ));
    // One input too few or too many is refused, not run.
    let one = Tensor::new(vec![1, 2], TensorData::F32(vec![0.0; 2])).unwrap();
    assert!(matches!(
        s.run(vec![one]).unwrap_err(),
        EngineError::InvalidInput(m) if m.contains("takes 2 inputs")
    ));
}

#[test]
fn byte_strings_round_trip_exactly() {
    let Some(engine) = engine() else { return };
    // ONNX Runtime's strings take any bytes: NUL and bytes that are not UTF-8 included.
    let refused = conformance::byte_strings(&engine).unwrap();
    assert!(refused.is_empty(), "refused: {refused:?}");
}

#[test]
fn a_broken_file_is_a_load_error() {
    let Some(engine) = engine() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    let e = engine.load(&path, &EngineOptions::default()).err().unwrap();
    assert!(matches!(e, EngineError::Load(_)), "{e:?}");
}

#[test]
fn a_library_that_is_not_there_is_a_clear_error() {
    // Before any successful init in this process this exercises the real loader; after one,
    // init returns the existing engine, so only check the error when it is an error.
    if let Err(e) = OnnxRuntimeEngine::init(
        std::path::Path::new("/nonexistent/libonnxruntime.so"),
        SharedPool::default(),
    ) {
        assert!(e.contains("/nonexistent/libonnxruntime.so"), "{e}");
    }
}
