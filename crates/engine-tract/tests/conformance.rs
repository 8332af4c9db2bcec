//! The engine conformance suite (quiver-test-support) against tract.

#![allow(clippy::unwrap_used)] // a test may panic

use quiver_engine_tract::TractEngine;
use quiver_test_support::conformance::{self, GapOutcome};
use quiver_test_support::shared_models;

#[test]
fn every_dtype_tract_serves_round_trips() {
    let served = conformance::dtypes(&TractEngine::default()).unwrap();
    for must in [
        "bool", "uint8", "int32", "int64", "float16", "float32", "float64", "string",
    ] {
        assert!(
            served.contains(&must),
            "tract should serve {must}: {served:?}"
        );
    }
}

#[test]
fn fixtures() {
    conformance::fixtures(&TractEngine::default()).unwrap();
}

#[test]
fn byte_strings_round_trip_or_are_refused_when_not_utf8() {
    // tract holds strings as Rust `String`s: NUL is fine, bytes that are not UTF-8 cannot be held.
    let refused = conformance::byte_strings(&TractEngine::default()).unwrap();
    let not_utf8: Vec<&str> = conformance::byte_string_cases()
        .into_iter()
        .filter(|(_, b)| std::str::from_utf8(b).is_err())
        .map(|(case, _)| case)
        .collect();
    assert!(not_utf8.len() >= 4, "{not_utf8:?}");
    assert_eq!(refused, not_utf8);
}

#[test]
fn bytes_that_are_not_utf8_are_refused_saying_why_and_what_to_do() {
    use quiver_engine_api::{Engine, EngineError, EngineOptions, Tensor, TensorData};
    let session = TractEngine::default()
        .load(
            &quiver_test_support::fixture_model("echo_bytes"),
            &EngineOptions::default(),
        )
        .unwrap();
    let input = Tensor::new(
        vec![2],
        TensorData::String(vec![b"fine".to_vec(), b"ab\xff".to_vec()]),
    )
    .unwrap();
    match session.run(vec![input]) {
        Err(EngineError::InvalidInput(m)) => {
            for needle in ["'text'", "element 1", "UTF-8", "byte 2", "onnxruntime"] {
                assert!(m.contains(needle), "{m:?} does not say {needle:?}");
            }
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn known_gaps_are_refused_not_answered_wrongly() {
    let outcomes = conformance::gaps(&TractEngine::default()).unwrap();
    for (name, outcome) in &outcomes {
        eprintln!("tract, {name}: {outcome:?}");
    }
    // ZipMap and the tree classifier are refused by name.
    for name in ["zipmap_classifier", "tree_classifier"] {
        let (_, outcome) = outcomes.iter().find(|(n, _)| *n == name).unwrap();
        assert!(
            matches!(outcome, GapOutcome::Refused(m) if m.contains("onnxruntime")),
            "{name}: {outcome:?}"
        );
    }
}

#[test]
fn real_models_match_the_reference() {
    let Some(shared) = shared_models() else {
        return;
    };
    let outcomes = conformance::real_models(&TractEngine::default(), &shared).unwrap();
    for (model, outcome) in &outcomes {
        eprintln!("tract, {model}: {outcome:?}");
    }
    // The image models are served; MiniLM's attention needs the square of the sequence length
    // as a symbol, which tract cannot express: it is refused, pointing to ONNX Runtime.
    let served: Vec<&str> = outcomes
        .iter()
        .filter(|(_, o)| *o == GapOutcome::Served)
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(served, ["mobilenet_v2", "efficientnet_lite0"]);
}
