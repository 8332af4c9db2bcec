//! Unit tests of the output steps.

use super::*;

fn logits(rows: usize, values: &[f32]) -> Tensor {
    let classes = values.len() / rows;
    Tensor::new(vec![rows, classes], TensorData::F32(values.to_vec())).unwrap()
}

fn signature() -> ModelSignature {
    ModelSignature {
        inputs: vec![TensorSpec {
            name: "attention_mask".into(),
            dtype: DataType::I64,
            shape: vec![-1, -1],
        }],
        outputs: vec![
            TensorSpec {
                name: "logits".into(),
                dtype: DataType::F32,
                shape: vec![-1, 3],
            },
            TensorSpec {
                name: "tokens".into(),
                dtype: DataType::F32,
                shape: vec![-1, -1, 2],
            },
        ],
    }
}

fn step(output: &str, config: OutputProcessing) -> Result<OutputStep, String> {
    OutputStep::build(output, &config, Path::new("."), &signature())
}

fn strings(t: &NamedTensor) -> Vec<String> {
    let TensorData::String(v) = t.tensor.data() else {
        panic!("not strings: {:?}", t.tensor.dtype());
    };
    v.iter()
        .map(|s| String::from_utf8_lossy(s).into())
        .collect()
}

#[test]
fn softmax_rows_sum_to_one() {
    let mut v = vec![1.0, 2.0, 3.0, 1000.0, 1000.0, 1000.0];
    softmax(&mut v, 3);
    assert!((v[..3].iter().sum::<f32>() - 1.0).abs() < 1e-6);
    assert!((v[2] - 0.665_240_9).abs() < 1e-6);
    assert!(
        v[3..].iter().all(|&p| (p - 1.0 / 3.0).abs() < 1e-6),
        "{v:?}"
    );
}

#[test]
fn top_k_is_best_first_and_honours_the_threshold() {
    let v = [0.1, 0.5, 0.2, 0.2, 0.7, 0.1];
    assert_eq!(
        top_k(&v, 3, 2, None),
        vec![vec![(1, 0.5), (2, 0.2)], vec![(1, 0.7), (0, 0.2)]]
    );
    assert_eq!(
        top_k(&v, 3, 3, Some(0.3)),
        vec![vec![(1, 0.5)], vec![(1, 0.7)]]
    );
}

#[test]
fn top_k_output_is_tritons_classification_form() {
    let mut s = step(
        "logits",
        OutputProcessing {
            top_k: Some(2),
            threshold: Some(0.15),
            ..OutputProcessing::default()
        },
    )
    .unwrap();
    s.labels = Some(vec!["a".into(), "b".into(), "c".into()]);
    let out = s
        .apply(&logits(2, &[0.1, 0.5, 0.2, 0.1, 0.8, 0.1]), &[])
        .unwrap();
    assert_eq!(out.tensor.shape(), [2, 2]);
    assert_eq!(strings(&out), ["0.5:1:b", "0.2:2:c", "0.8:1:b", ""]);
    assert_eq!(s.spec().dtype, DataType::String);
    assert_eq!(s.spec().shape, [-1, 2]);
}

#[test]
fn argmax_gives_the_index_or_the_label() {
    let s = step(
        "logits",
        OutputProcessing {
            argmax: true,
            name: Some("class".into()),
            ..OutputProcessing::default()
        },
    )
    .unwrap();
    let out = s
        .apply(&logits(2, &[0.1, 0.5, 0.2, 0.9, 0.0, 0.1]), &[])
        .unwrap();
    assert_eq!(out.name, "class");
    assert_eq!(out.tensor.data(), &TensorData::I64(vec![1, 0]));
}

#[test]
fn mean_pooling_follows_the_mask_and_normalises() {
    let s = step(
        "tokens",
        OutputProcessing {
            pool: Some(Pooling::Mean),
            normalize: true,
            name: Some("embedding".into()),
            ..OutputProcessing::default()
        },
    )
    .unwrap();
    assert_eq!(s.needs_input(), Some("attention_mask"));
    // Two rows of three tokens of dimension 2; the second row's last token is padding.
    let tokens = Tensor::new(
        vec![2, 3, 2],
        TensorData::F32(vec![
            1.0, 0.0, 3.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.0, 3.0, 100.0, 100.0,
        ]),
    )
    .unwrap();
    let mask = NamedTensor::new(
        "attention_mask",
        Tensor::new(vec![2, 3], TensorData::I64(vec![1, 1, 1, 1, 1, 0])).unwrap(),
    );
    let out = s.apply(&tokens, &[mask]).unwrap();
    assert_eq!(out.tensor.shape(), [2, 2]);
    assert_eq!(
        out.tensor.data(),
        &TensorData::F32(vec![1.0, 0.0, 0.0, 1.0])
    );
}

#[test]
fn mistakes_name_the_key() {
    let e = step("nope", OutputProcessing::default()).unwrap_err();
    assert!(
        e.starts_with("outputs.nope: the model has no output 'nope'"),
        "{e}"
    );
    let e = step(
        "logits",
        OutputProcessing {
            top_k: Some(0),
            ..OutputProcessing::default()
        },
    )
    .unwrap_err();
    assert_eq!(e, "outputs.logits.top_k: must be at least 1");
    let e = step(
        "logits",
        OutputProcessing {
            pool: Some(Pooling::Mean),
            ..OutputProcessing::default()
        },
    )
    .unwrap_err();
    assert!(
        e.starts_with("outputs.logits.pool: pooling takes token outputs"),
        "{e}"
    );
    let e = step(
        "logits",
        OutputProcessing {
            labels: Some("/nonexistent/labels.txt".into()),
            ..OutputProcessing::default()
        },
    )
    .unwrap_err();
    assert!(e.starts_with("outputs.logits.labels: cannot read"), "{e}");
}
