//! Encoded images (PNG, JPEG, WebP, BMP, GIF) through the image pre-processing step: the
//! declared-size check, decoding, colour conversion, resize and normalisation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_engine_api::{DataType, TensorSpec};
use quiver_processing::ImageStep;
use quiver_repository::processing::ImageConfig;
use std::sync::LazyLock;

static STEP: LazyLock<Option<ImageStep>> = LazyLock::new(|| {
    let spec = TensorSpec {
        name: "input".into(),
        dtype: DataType::F32,
        shape: vec![-1, 3, 16, 16],
    };
    // A lower pixel bound than the default keeps each run fast; the check itself is the same.
    let config = ImageConfig {
        max_pixels: Some(1 << 16),
        ..ImageConfig::default()
    };
    ImageStep::build("input", &config, &spec).ok()
});

fuzz_target!(|data: &[u8]| {
    if let Some(step) = STEP.as_ref() {
        let _ = step.from_encoded(&[data.to_vec()]);
    }
});
