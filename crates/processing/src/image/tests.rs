//! Unit tests of the image steps.

use super::*;

fn spec(shape: &[i64]) -> TensorSpec {
    TensorSpec {
        name: "input".into(),
        dtype: DataType::F32,
        shape: shape.to_vec(),
    }
}

fn step() -> ImageStep {
    ImageStep::build("input", &ImageConfig::default(), &spec(&[-1, 3, 8, 8])).unwrap()
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    image::RgbImage::new(width, height)
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

fn invalid(result: Result<Tensor, ProcessError>) -> String {
    match result {
        Err(ProcessError::Invalid(m)) => m,
        other => panic!("expected an invalid-input error, got {other:?}"),
    }
}

#[test]
fn layout_and_size_come_from_the_model() {
    let s = step();
    assert_eq!(
        (s.layout, s.channels, s.height, s.width),
        (Layout::Nchw, 3, 8, 8)
    );
    let s = ImageStep::build("input", &ImageConfig::default(), &spec(&[-1, 5, 7, 1])).unwrap();
    assert_eq!(
        (s.layout, s.channels, s.height, s.width),
        (Layout::Nhwc, 1, 5, 7)
    );
    let t = s.from_encoded(&[png(20, 10)]).unwrap();
    assert_eq!(t.shape(), [1, 5, 7, 1]);
}

#[test]
fn mistakes_name_the_key() {
    let build = |config: ImageConfig, shape: &[i64]| {
        ImageStep::build("input", &config, &spec(shape)).unwrap_err()
    };
    let e = build(
        ImageConfig {
            mean: Some(vec![0.1, 0.2]),
            ..ImageConfig::default()
        },
        &[-1, 3, 8, 8],
    );
    assert_eq!(
        e,
        "inputs.input.image.mean: 2 values, the model input has 3 channel(s)"
    );
    let e = build(ImageConfig::default(), &[-1, 3, -1, -1]);
    assert!(e.starts_with("inputs.input.image.size: "), "{e}");
    let e = build(ImageConfig::default(), &[-1, 8, 8]);
    assert!(
        e.starts_with("inputs.input.image: the model input has shape [-1,8,8]"),
        "{e}"
    );
    let e = build(
        ImageConfig {
            color: Some(ColorOrder::Grey),
            ..ImageConfig::default()
        },
        &[-1, 3, 8, 8],
    );
    assert!(e.starts_with("inputs.input.image.color: "), "{e}");
    let e = build(
        ImageConfig {
            std: Some(vec![0.0]),
            ..ImageConfig::default()
        },
        &[-1, 3, 8, 8],
    );
    assert!(e.starts_with("inputs.input.image.std: "), "{e}");
}

#[test]
fn bad_images_are_clean_errors() {
    let s = step();
    assert!(invalid(s.from_encoded(&[b"not an image".to_vec()])).contains("not an image"));
    assert!(invalid(s.from_encoded(&[Vec::new()])).contains("empty"));
    let mut truncated = png(64, 64);
    truncated.truncate(40);
    assert!(invalid(s.from_encoded(&[truncated])).contains("cannot"));
    // The second image of a batch is named.
    let e = invalid(s.from_encoded(&[png(8, 8), b"junk".to_vec()]));
    assert!(e.starts_with("input 'input', image 1: "), "{e}");
}

#[test]
fn decompression_bombs_are_refused_before_decoding() {
    // A PNG whose header declares 100000 x 100000 pixels (40 GB decoded) and holds almost
    // nothing: refused from the header.
    let mut bomb = png(1, 1);
    // IHDR's width and height follow the 8-byte signature, the length and the type.
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32(&bomb[12..29]);
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    let e = invalid(step().from_encoded(&[bomb]));
    assert!(e.contains("100000"), "{e}");
}

/// PNG's chunk checksum (CRC-32/ISO-HDLC), so the forged header is otherwise valid.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn base64_text_is_an_image_too() {
    let text = base64::engine::general_purpose::STANDARD.encode(png(8, 8));
    let t = step().from_encoded(&[text.into_bytes()]).unwrap();
    assert_eq!(t.shape(), [1, 3, 8, 8]);
}

#[test]
fn raw_pixels_of_another_size_are_resized() {
    let config = ImageConfig {
        pixels: Some(Layout::Nhwc),
        resize: Some(ResizeMode::Stretch),
        ..ImageConfig::default()
    };
    let s = ImageStep::build("input", &config, &spec(&[-1, 3, 8, 8])).unwrap();
    let pixels = Tensor::new(
        vec![2, 16, 16, 3],
        TensorData::F32(vec![200.0; 2 * 16 * 16 * 3]),
    )
    .unwrap();
    assert!(s.takes_pixels(&pixels));
    let t = s.from_pixels(&pixels).unwrap();
    assert_eq!(t.shape(), [2, 3, 8, 8]);
    assert_eq!(t.data(), &TensorData::F32(vec![200.0; 2 * 3 * 8 * 8]));
    // The model's own layout is not pixels.
    let own = Tensor::new(vec![1, 3, 8, 8], TensorData::F32(vec![0.0; 192])).unwrap();
    assert!(!s.takes_pixels(&own));
}
