//! TF Serving REST `:predict` bodies (row `instances` and columnar `inputs`), against a
//! signature with one input of each kind the decoder treats differently.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_engine_api::{DataType, ModelSignature, TensorSpec};
use std::sync::LazyLock;

static SIGNATURE: LazyLock<ModelSignature> = LazyLock::new(|| {
    let spec = |name: &str, dtype, shape: &[i64]| TensorSpec {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
    };
    ModelSignature {
        inputs: vec![
            spec("x", DataType::F32, &[-1, 4]),
            spec("ids", DataType::I64, &[-1, -1]),
            spec("mask", DataType::Bool, &[-1]),
            spec("half", DataType::F16, &[-1, 2]),
            spec("text", DataType::String, &[-1]),
            spec("image", DataType::F32, &[-1, 8, 8, 3]),
        ],
        outputs: vec![spec("y", DataType::F32, &[-1, 10])],
    }
});

fuzz_target!(|body: &[u8]| {
    let _ = quiver_http::tfserving::codec::decode_predict(body, &SIGNATURE, &["image"]);
});
