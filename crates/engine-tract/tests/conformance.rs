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
