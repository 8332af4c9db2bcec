//! Decoding a TF Serving `instances` body of one 224×224×3 float image (~1.5 MB of JSON) into a
//! tensor, against `serde_json::from_slice::<serde_json::Value>` on the same body (which only
//! builds a tree and would still have to be walked into a tensor).
//!
//! Also a KServe V2 body of the same values as one flat `data` array, as tritonclient sends it,
//! through `decode_infer`.
//!
//! `cargo bench -p quiver-http --bench json_decode`

#![allow(missing_docs, clippy::unwrap_used)] // a benchmark harness

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use quiver_engine_api::{DataType, ModelSignature, TensorSpec};
use quiver_http::kserve::codec::decode_infer;
use quiver_http::tfserving::codec::decode_predict;

/// One 224×224×3 image as `{"instances": [[[[r, g, b], …]]]}`, each value printed by `value`.
fn image_body(mut value: impl FnMut() -> String) -> Vec<u8> {
    let rows: Vec<String> = (0..224)
        .map(|_| {
            let pixels: Vec<String> = (0..224)
                .map(|_| format!("[{}, {}, {}]", value(), value(), value()))
                .collect();
            format!("[{}]", pixels.join(", "))
        })
        .collect();
    format!("{{\"instances\": [{}]}}", rows.join(", ")).into_bytes()
}

/// Normalised pixel values as a Python client sends them: `np.float32` values turned into
/// Python floats by `tolist()`, printed as the shortest text that reads back as the same f64
/// (up to 17 significant digits, e.g. 0.10000000149011612).
fn normalised_values() -> impl FnMut() -> String {
    let mut state = 0x2545_f491_u32;
    move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let value = f64::from(((f64::from(state) / f64::from(u32::MAX)) * 4.0 - 2.0) as f32);
        format!("{value:?}")
    }
}

/// The same 224×224×3 values as one V2 input with a flat `data` array.
fn kserve_body(mut value: impl FnMut() -> String) -> Vec<u8> {
    let data: Vec<String> = (0..224 * 224 * 3).map(|_| value()).collect();
    format!(
        "{{\"inputs\": [{{\"name\": \"input_1\", \"shape\": [1, 224, 224, 3], \"datatype\": \"FP32\", \"data\": [{}]}}]}}",
        data.join(", ")
    )
    .into_bytes()
}

fn normalised_body() -> Vec<u8> {
    image_body(normalised_values())
}

/// Raw pixels as TF Serving's classic image client sends them:
/// `np.array(image, dtype=np.float32).tolist()`, so values like `128.0`.
fn raw_pixels_body() -> Vec<u8> {
    let mut i = 0u32;
    image_body(move || {
        i = i.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        format!("{:?}", f64::from((i >> 16) % 256))
    })
}

fn bench(c: &mut Criterion) {
    let signature = ModelSignature {
        inputs: vec![TensorSpec {
            name: "input_1".into(),
            dtype: DataType::F32,
            shape: vec![-1, 224, 224, 3],
        }],
        outputs: vec![],
    };
    for (name, body) in [
        ("normalised_floats", normalised_body()),
        ("raw_pixels", raw_pixels_body()),
    ] {
        let mut group = c.benchmark_group(format!("instances_224x224x3_f32/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.sample_size(30);
        group.bench_function("quiver_decode_predict", |b| {
            b.iter(|| decode_predict(std::hint::black_box(&body), &signature, &[]).unwrap())
        });
        group.bench_function("serde_json_value", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde_json::Value>(std::hint::black_box(&body)).unwrap()
            })
        });
        group.finish();
    }
    let body = kserve_body(normalised_values());
    let mut group = c.benchmark_group("kserve_infer_1x224x224x3_f32/normalised_floats");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.sample_size(30);
    group.bench_function("quiver_decode_infer", |b| {
        b.iter(|| decode_infer(std::hint::black_box(&body), &[]).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
