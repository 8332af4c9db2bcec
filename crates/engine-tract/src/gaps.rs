//! Known gaps of tract: operators it refuses or, worse, runs with wrong answers. Each is found
//! in the ONNX graph (sub-graphs included) before tract sees it, and reported as a load error
//! that says what to do, so a model never serves a wrong answer quietly.

use quiver_engine_api::EngineError;
use tract_onnx::pb::{GraphProto, ModelProto};

/// Operators refused outright, with the reason and the way out.
const REFUSED: &[(&str, &str)] = &[
    (
        "ZipMap",
        "tract has no ZipMap (its output is a sequence of maps, not a tensor); re-export the \
         model without it (skl2onnx: options={id(model): {'zipmap': False}}) or serve it with \
         engine = \"onnxruntime\"",
    ),
    (
        "TreeEnsembleClassifier",
        "tract's TreeEnsembleClassifier can return wrong class labels; serve this model with \
         engine = \"onnxruntime\"",
    ),
];

/// Control-flow operators tract runs only in simple cases (e.g. an `If` whose condition folds to
/// a constant); when loading fails on a model that has one, the error says so.
const CONTROL_FLOW: &[&str] = &["If", "Loop", "Scan"];

/// Refuses a model that uses an operator of [`REFUSED`].
pub fn check(model: &ModelProto) -> Result<(), EngineError> {
    let ops = op_types(model);
    for (op, why) in REFUSED {
        if ops.iter().any(|o| o == op) {
            return Err(EngineError::Unsupported(format!("operator {op}: {why}")));
        }
    }
    Ok(())
}

/// Says what to do about a model tract could not load: a valid ONNX file that tract cannot
/// analyse (control flow it cannot fold, shapes it cannot express with symbols, such as the
/// square of the sequence length in some attention blocks) is a tract gap, and ONNX Runtime
/// runs it.
pub fn explain(model: &ModelProto, error: EngineError) -> EngineError {
    let ops = op_types(model);
    match CONTROL_FLOW.iter().find(|op| ops.iter().any(|o| o == *op)) {
        Some(op) => EngineError::Unsupported(format!(
            "tract cannot run this model's {op} (data-dependent control flow); serve it with \
             engine = \"onnxruntime\" ({error})"
        )),
        None => EngineError::Unsupported(format!(
            "tract cannot run this model ({error}); serve it with engine = \"onnxruntime\""
        )),
    }
}

/// Every operator type of the model, sub-graphs included.
fn op_types(model: &ModelProto) -> Vec<String> {
    let mut ops = Vec::new();
    if let Some(graph) = &model.graph {
        collect(graph, &mut ops, 0);
    }
    ops
}

/// Sub-graphs nest; a hostile file could nest them without end, so stop at a depth no real
/// model reaches.
const MAX_DEPTH: usize = 64;

fn collect(graph: &GraphProto, ops: &mut Vec<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for node in &graph.node {
        if !ops.contains(&node.op_type) {
            ops.push(node.op_type.clone());
        }
        for attribute in &node.attribute {
            for sub in attribute.g.iter().chain(&attribute.graphs) {
                collect(sub, ops, depth + 1);
            }
        }
    }
}
