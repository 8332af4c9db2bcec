//! Per-image pre-processing as the example mobilenet_v2 config declares it: decode a JPEG,
//! resize the shorter side to 256 (bilinear), crop 224, normalise with ImageNet's mean and std,
//! lay out NCHW f32. On a 1.9 MP (1600×1200) JPEG and on the 0.14 MP chelsea.png; and the raw
//! pixels of TF Serving's classic client (NHWC 0..255, already 224×224) into the same tensor.
//!
//! `cargo bench -p quiver-processing --bench preprocess` (needs ../shared/models).

#![allow(missing_docs, clippy::unwrap_used)] // a benchmark harness

use criterion::{Criterion, criterion_group, criterion_main};
use quiver_engine_api::{DataType, Tensor, TensorData, TensorSpec};
use quiver_processing::ImageStep;
use quiver_repository::processing::{ImageConfig, Layout, ResizeMode};

fn mobilenet_step() -> ImageStep {
    let config = ImageConfig {
        resize: Some(ResizeMode::ShorterSide),
        shorter_side: Some(256),
        range: Some([0.0, 1.0]),
        mean: Some(vec![0.485, 0.456, 0.406]),
        std: Some(vec![0.229, 0.224, 0.225]),
        pixels: Some(Layout::Nhwc),
        ..ImageConfig::default()
    };
    let spec = TensorSpec {
        name: "input".into(),
        dtype: DataType::F32,
        shape: vec![-1, 3, 224, 224],
    };
    ImageStep::build("input", &config, &spec).unwrap()
}

fn bench(c: &mut Criterion) {
    let Some(shared) = quiver_test_support::shared_models() else {
        return;
    };
    let png = std::fs::read(shared.join("images/chelsea.png")).unwrap();
    let big = image::load_from_memory(&png).unwrap().resize_exact(
        1600,
        1200,
        image::imageops::FilterType::Triangle,
    );
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 90)
        .encode_image(&big)
        .unwrap();
    let step = mobilenet_step();
    let mut group = c.benchmark_group("preprocess");
    group.sample_size(30);
    group.bench_function("jpeg_1600x1200_to_nchw_f32", |b| {
        b.iter(|| step.from_encoded(std::slice::from_ref(&jpeg)).unwrap())
    });
    group.bench_function("png_451x300_to_nchw_f32", |b| {
        b.iter(|| step.from_encoded(std::slice::from_ref(&png)).unwrap())
    });
    let pixels = Tensor::new(
        vec![1, 224, 224, 3],
        TensorData::F32((0..224 * 224 * 3).map(|i| (i % 256) as f32).collect()),
    )
    .unwrap();
    group.bench_function("pixels_nhwc_224_to_nchw_f32", |b| {
        b.iter(|| step.from_pixels(&pixels).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
