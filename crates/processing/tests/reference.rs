//! Pre-processing against reference numbers computed once with Pillow and numpy
//! (`tests/data/make_reference.py`; method and tolerance in `tests/data/reference.md`).

#![allow(clippy::unwrap_used, clippy::wildcard_enum_match_arm)] // a test

use std::path::{Path, PathBuf};

use quiver_engine_api::{DataType, Tensor, TensorData, TensorSpec};
use quiver_processing::ImageStep;
use quiver_repository::processing::{ColorOrder, ImageConfig, Layout, ResizeFilter, ResizeMode};
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn spec(dtype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: "input".into(),
        dtype,
        shape: shape.to_vec(),
    }
}

/// A step that resizes like the reference and leaves pixel values as they are, NHWC `uint8`, so
/// its output is directly comparable with the `.rgb` files.
fn resize_only(resize: ResizeMode, filter: ResizeFilter) -> ImageStep {
    let config = ImageConfig {
        resize: Some(resize),
        shorter_side: Some(256),
        filter: Some(filter),
        ..ImageConfig::default()
    };
    ImageStep::build("input", &config, &spec(DataType::U8, &[-1, 224, 224, 3])).unwrap()
}

fn assert_close_to_pillow(ours: &[u8], reference: &str) {
    let pillow = std::fs::read(data(reference)).unwrap();
    assert_eq!(ours.len(), pillow.len(), "{reference}");
    let diffs: Vec<u32> = ours
        .iter()
        .zip(&pillow)
        .map(|(a, b)| u32::from(a.abs_diff(*b)))
        .collect();
    let mean = diffs.iter().sum::<u32>() as f64 / diffs.len() as f64;
    let within = diffs.iter().filter(|&&d| d <= 3).count() as f64 / diffs.len() as f64;
    assert!(
        mean <= 1.0 && within >= 0.99,
        "{reference}: mean absolute difference {mean:.3}, {:.2}% within 3",
        within * 100.0
    );
}

#[test]
fn resize_and_crop_match_pillow() {
    let Some(shared) = quiver_test_support::shared_models() else {
        return;
    };
    let cases = [
        (
            "chelsea.png",
            "chelsea",
            ResizeMode::ShorterSide,
            ResizeFilter::Bilinear,
            "crop224",
        ),
        (
            "coffee.png",
            "coffee",
            ResizeMode::ShorterSide,
            ResizeFilter::Bilinear,
            "crop224",
        ),
        (
            "grace_hopper.jpg",
            "grace_hopper",
            ResizeMode::ShorterSide,
            ResizeFilter::Bilinear,
            "crop224",
        ),
        (
            "chelsea.png",
            "chelsea",
            ResizeMode::Stretch,
            ResizeFilter::Bilinear,
            "stretch224",
        ),
        (
            "coffee.png",
            "coffee",
            ResizeMode::Stretch,
            ResizeFilter::Bilinear,
            "stretch224",
        ),
        (
            "grace_hopper.jpg",
            "grace_hopper",
            ResizeMode::Stretch,
            ResizeFilter::Bilinear,
            "stretch224",
        ),
        (
            "chelsea.png",
            "chelsea",
            ResizeMode::ShorterSide,
            ResizeFilter::Bicubic,
            "crop224_bicubic",
        ),
    ];
    for (file, stem, resize, filter, suffix) in cases {
        let bytes = std::fs::read(shared.join("images").join(file)).unwrap();
        let tensor = resize_only(resize, filter).from_encoded(&[bytes]).unwrap();
        assert_eq!(tensor.shape(), [1, 224, 224, 3]);
        let TensorData::U8(ours) = tensor.data() else {
            panic!("expected UINT8");
        };
        assert_close_to_pillow(ours, &format!("{stem}_{suffix}.rgb"));
    }
}

#[test]
fn the_wrong_filter_is_told_apart() {
    let Some(shared) = quiver_test_support::shared_models() else {
        return;
    };
    // The tolerance means something: nearest neighbour fails it.
    let bytes = std::fs::read(shared.join("images/chelsea.png")).unwrap();
    let tensor = resize_only(ResizeMode::ShorterSide, ResizeFilter::Nearest)
        .from_encoded(&[bytes])
        .unwrap();
    let TensorData::U8(ours) = tensor.data() else {
        panic!("expected UINT8");
    };
    let result = std::panic::catch_unwind(|| assert_close_to_pillow(ours, "chelsea_crop224.rgb"));
    assert!(result.is_err());
}

fn reference() -> Value {
    serde_json::from_str(&std::fs::read_to_string(data("normalise.json")).unwrap()).unwrap()
}

fn flat(value: &Value) -> Vec<f64> {
    match value {
        Value::Array(items) => items.iter().flat_map(flat).collect(),
        Value::Number(n) => vec![n.as_f64().unwrap()],
        other => panic!("not a number: {other}"),
    }
}

/// The 2×3 reference image as raw pixels `[1, 2, 3, 3]` (NHWC, 0..255).
fn pixels(reference: &Value) -> Tensor {
    let values: Vec<u8> = flat(&reference["pixels_hwc"])
        .iter()
        .map(|&v| v as u8)
        .collect();
    Tensor::new(vec![1, 2, 3, 3], TensorData::U8(values)).unwrap()
}

fn normalised(config: ImageConfig, layout: Layout, expected: &str) {
    let reference = reference();
    let shape: &[i64] = match layout {
        Layout::Nchw => &[-1, 3, 2, 3],
        Layout::Nhwc => &[-1, 2, 3, 3],
    };
    let config = ImageConfig {
        layout: Some(layout),
        pixels: Some(Layout::Nhwc),
        ..config
    };
    let step = ImageStep::build("input", &config, &spec(DataType::F32, shape)).unwrap();
    let input = pixels(&reference);
    assert!(step.takes_pixels(&input));
    let tensor = step.from_pixels(&input).unwrap();
    let TensorData::F32(ours) = tensor.data() else {
        panic!("expected FP32");
    };
    let want = flat(&reference[expected]);
    assert_eq!(ours.len(), want.len(), "{expected}");
    for (i, (a, b)) in ours.iter().zip(&want).enumerate() {
        assert!(
            (f64::from(*a) - b).abs() < 1e-5,
            "{expected}[{i}]: {a} vs {b}"
        );
    }
}

fn range_config() -> ImageConfig {
    ImageConfig {
        pixel_range: Some([0.0, 255.0]),
        range: Some([-1.0, 1.0]),
        ..ImageConfig::default()
    }
}

fn meanstd_config(color: ColorOrder, mean: [f64; 3], std: [f64; 3]) -> ImageConfig {
    ImageConfig {
        color: Some(color),
        range: Some([0.0, 1.0]),
        mean: Some(mean.to_vec()),
        std: Some(std.to_vec()),
        ..ImageConfig::default()
    }
}

#[test]
fn range_form_in_both_layouts() {
    normalised(range_config(), Layout::Nchw, "range_nchw");
    normalised(range_config(), Layout::Nhwc, "range_nhwc");
}

#[test]
fn mean_std_form_in_both_layouts() {
    let rgb = || {
        meanstd_config(
            ColorOrder::Rgb,
            [0.485, 0.456, 0.406],
            [0.229, 0.224, 0.225],
        )
    };
    normalised(rgb(), Layout::Nchw, "meanstd_nchw");
    normalised(rgb(), Layout::Nhwc, "meanstd_nhwc");
}

#[test]
fn bgr_reverses_the_channels_before_normalising() {
    let bgr = || {
        meanstd_config(
            ColorOrder::Bgr,
            [0.406, 0.456, 0.485],
            [0.225, 0.224, 0.229],
        )
    };
    normalised(bgr(), Layout::Nchw, "bgr_meanstd_nchw");
    normalised(bgr(), Layout::Nhwc, "bgr_meanstd_nhwc");
}

#[test]
fn grey_is_pillows_luma() {
    let reference = reference();
    let rgb: Vec<u8> = flat(&reference["pixels_hwc"])
        .iter()
        .map(|&v| v as u8)
        .collect();
    let mut png = Vec::new();
    image::RgbImage::from_raw(3, 2, rgb)
        .unwrap()
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let config = ImageConfig {
        color: Some(ColorOrder::Grey),
        resize: Some(ResizeMode::Stretch),
        layout: Some(Layout::Nchw),
        ..ImageConfig::default()
    };
    let step = ImageStep::build("input", &config, &spec(DataType::U8, &[-1, 1, 2, 3])).unwrap();
    let tensor = step.from_encoded(&[png]).unwrap();
    assert_eq!(tensor.shape(), [1, 1, 2, 3]);
    let want: Vec<u8> = flat(&reference["grey"]).iter().map(|&v| v as u8).collect();
    assert_eq!(tensor.data(), &TensorData::U8(want));
}
