//! The tract engine on the fixture models (exact answers) and the real shared models.

#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)] // a test may panic

use quiver_engine_api::{DataType, Engine, EngineOptions, Session, Tensor, TensorData};
use quiver_engine_tract::TractEngine;
use quiver_test_support::{fixture_model, shared_models};

fn load(path: &std::path::Path) -> Box<dyn Session> {
    TractEngine::default()
        .load(path, &EngineOptions::default())
        .unwrap()
}

fn f32s(t: &Tensor) -> &[f32] {
    match t.data() {
        TensorData::F32(v) => v,
        other => panic!("expected f32, got {:?}", other.dtype()),
    }
}

#[test]
fn signatures_keep_dynamic_dims() {
    let s = load(&fixture_model("multi_io"));
    let sig = s.signature();
    let inputs: Vec<_> = sig
        .inputs
        .iter()
        .map(|s| (s.name.as_str(), s.dtype, s.shape.clone()))
        .collect();
    assert_eq!(
        inputs,
        [
            ("a", DataType::F32, vec![-1, 2]),
            ("b", DataType::I32, vec![-1])
        ]
    );
    let outputs: Vec<_> = sig
        .outputs
        .iter()
        .map(|s| (s.name.as_str(), s.dtype))
        .collect();
    assert_eq!(
        outputs,
        [
            ("sum", DataType::F32),
            ("b_doubled", DataType::I32),
            ("positive", DataType::Bool)
        ]
    );
}

#[test]
fn runs_float_int_and_multi_io_models() {
    let s = load(&fixture_model("half_plus_two"));
    let x = Tensor::new(
        vec![2, 3],
        TensorData::F32(vec![0.0, 1.0, 2.0, -4.0, 10.0, 0.5]),
    )
    .unwrap();
    let out = s.run(vec![x]).unwrap();
    assert_eq!(out[0].shape(), &[2, 3]);
    assert_eq!(f32s(&out[0]), &[2.0, 2.5, 3.0, 0.0, 7.0, 2.25]);

    let s = load(&fixture_model("int_affine"));
    let a = Tensor::new(vec![1, 2], TensorData::I64(vec![5, -7])).unwrap();
    assert_eq!(
        s.run(vec![a]).unwrap()[0].data(),
        &TensorData::I64(vec![14, -22])
    );

    let s = load(&fixture_model("multi_io"));
    let a = Tensor::new(vec![2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.5])).unwrap();
    let b = Tensor::new(vec![2], TensorData::I32(vec![-3, 4])).unwrap();
    let out = s.run(vec![a, b]).unwrap();
    assert_eq!(out[0].data(), &TensorData::F32(vec![3.0, 7.5]));
    assert_eq!(out[1].data(), &TensorData::I32(vec![-6, 8]));
    assert_eq!(out[2].data(), &TensorData::Bool(vec![false, true]));
}

#[test]
fn inputs_must_agree_on_shared_symbols() {
    let s = load(&fixture_model("multi_io"));
    let a = Tensor::new(vec![2, 2], TensorData::F32(vec![0.0; 4])).unwrap();
    let b = Tensor::new(vec![3], TensorData::I32(vec![0; 3])).unwrap();
    let e = s.run(vec![a, b]).unwrap_err().to_string();
    assert!(e.contains("disagree on dimension"), "{e}");
}

#[test]
fn a_broken_file_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.onnx");
    std::fs::write(&path, b"not a model").unwrap();
    let e = TractEngine::default()
        .load(&path, &EngineOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().starts_with("cannot load model"), "{e}");
}

#[test]
fn mobilenet_batches_match_single_items() {
    let Some(models) = shared_models() else {
        return;
    };
    let s = load(&models.join("mobilenet_v2/1/model.onnx"));
    let n = 3 * 224 * 224;
    let data: Vec<f32> = (0..2 * n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let batch = Tensor::new(vec![2, 3, 224, 224], TensorData::F32(data.clone())).unwrap();
    let both = s.run(vec![batch]).unwrap();
    assert_eq!(both[0].shape(), &[2, 1000]);
    for i in 0..2 {
        let one = Tensor::new(
            vec![1, 3, 224, 224],
            TensorData::F32(data[i * n..(i + 1) * n].to_vec()),
        )
        .unwrap();
        let single = s.run(vec![one]).unwrap();
        let want = f32s(&single[0]);
        let got = &f32s(&both[0])[i * 1000..(i + 1) * 1000];
        let diff = want
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-4, "item {i} differs by {diff}");
    }
}
