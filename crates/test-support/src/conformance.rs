//! One conformance suite for every engine: what any engine behind the [`Engine`] trait must get
//! right, run by each engine crate's tests against its own engine.
//!
//! - every element type, exactly ([`dtypes`]): an engine may refuse a type at load time, never
//!   mangle it;
//! - dynamic and fixed dimensions, several inputs and outputs, string tensors ([`fixtures`]);
//! - byte strings ([`byte_strings`]): NUL, bytes that are not UTF-8, long elements — exact, or
//!   refused as the client's mistake naming the input where the engine cannot hold them;
//! - known engine gaps ([`gaps`]): `ZipMap`, a tree ensemble classifier, a data-dependent `If`.
//!   An engine either answers them correctly or refuses them at load time with a message that
//!   names the way out (`onnxruntime`) — never a wrong answer;
//! - the shared real models against `expected.json` ([`real_models`]).
//!
//! Tolerances: fixtures and element types are exact. Real models: the top-1 class must equal
//! the reference and its probability be within [`PROBABILITY_TOLERANCE`] (the reference was
//! computed with Pillow's resize, this suite uses the `image` crate's); MiniLM embeddings within
//! [`EMBEDDING_TOLERANCE`] of the reference, element by element and in cosine similarity.
//! Between two engines on the same input, outputs agree within [`close`].

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use quiver_engine_api::{Engine, EngineError, EngineOptions, Tensor, TensorData, f16};

/// The directory of the conformance models (written by `fixtures/make_fixtures.py`).
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/conformance")
}

/// A conformance model's file.
pub fn model(name: &str) -> PathBuf {
    models_dir().join(format!("{name}.onnx"))
}

/// Largest difference allowed between a class probability and the reference.
pub const PROBABILITY_TOLERANCE: f32 = 0.05;
/// Largest difference allowed between an embedding (or cosine) and the reference.
pub const EMBEDDING_TOLERANCE: f32 = 1e-3;

/// Whether two engines' outputs agree: `|a - b| <= 1e-3 + 1e-3 * |b|` for floats, equality for
/// everything else.
pub fn close(a: &Tensor, b: &Tensor) -> Result<(), String> {
    if a.shape() != b.shape() {
        return Err(format!("shapes differ: {:?} vs {:?}", a.shape(), b.shape()));
    }
    let worst = match (a.data(), b.data()) {
        (TensorData::F32(x), TensorData::F32(y)) => worst_diff(
            x.iter().map(|&v| f64::from(v)),
            y.iter().map(|&v| f64::from(v)),
        ),
        (TensorData::F64(x), TensorData::F64(y)) => {
            worst_diff(x.iter().copied(), y.iter().copied())
        }
        (TensorData::F16(x), TensorData::F16(y)) => worst_diff(
            x.iter().map(|v| f64::from(v.to_f32())),
            y.iter().map(|v| f64::from(v.to_f32())),
        ),
        (x, y) if x == y => None,
        _ => return Err("values differ".into()),
    };
    match worst {
        Some((i, x, y)) => Err(format!("element {i}: {x} vs {y}")),
        None => Ok(()),
    }
}

fn worst_diff(
    a: impl Iterator<Item = f64>,
    b: impl Iterator<Item = f64>,
) -> Option<(usize, f64, f64)> {
    a.zip(b)
        .enumerate()
        // NaN on either side counts as a difference.
        .find(|&(_, (x, y))| (x - y).abs().is_nan() || (x - y).abs() > 1e-3 + 1e-3 * y.abs())
        .map(|(i, (x, y))| (i, x, y))
}

/// The element types of the `identity_*` models, with the values sent through each: the edges
/// of each type's range, so a wrong width, sign or byte order shows.
pub fn dtype_cases() -> Vec<(&'static str, Tensor)> {
    let t = |data| Tensor::new(vec![2, 2], data).expect("4 values for [2, 2]");
    vec![
        ("bool", t(TensorData::Bool(vec![true, false, false, true]))),
        ("uint8", t(TensorData::U8(vec![0, 1, 128, 255]))),
        ("uint16", t(TensorData::U16(vec![0, 1, 32768, 65535]))),
        ("uint32", t(TensorData::U32(vec![0, 1, 1 << 31, u32::MAX]))),
        ("uint64", t(TensorData::U64(vec![0, 1, 1 << 63, u64::MAX]))),
        ("int8", t(TensorData::I8(vec![i8::MIN, -1, 1, i8::MAX]))),
        ("int16", t(TensorData::I16(vec![i16::MIN, -1, 1, i16::MAX]))),
        ("int32", t(TensorData::I32(vec![i32::MIN, -1, 1, i32::MAX]))),
        ("int64", t(TensorData::I64(vec![i64::MIN, -1, 1, i64::MAX]))),
        (
            "float16",
            t(TensorData::F16(
                [f16::MIN, f16::from_f32(-0.5), f16::MIN_POSITIVE, f16::MAX].to_vec(),
            )),
        ),
        (
            "float32",
            t(TensorData::F32(vec![
                f32::MIN,
                -1.5,
                f32::MIN_POSITIVE,
                f32::MAX,
            ])),
        ),
        (
            "float64",
            t(TensorData::F64(vec![f64::MIN, -1.5, 5e-324, f64::MAX])),
        ),
        (
            "string",
            t(TensorData::String(vec![
                Vec::new(),
                b"a".to_vec(),
                "h\u{e9}llo".into(),
                "\u{732b}".into(),
            ])),
        ),
    ]
}

/// Sends every element type through its identity model. Returns the types the engine serves;
/// fails on a type it loads but gets wrong, or refuses with anything but `Unsupported`.
pub fn dtypes(engine: &dyn Engine) -> anyhow::Result<Vec<&'static str>> {
    let mut served = Vec::new();
    for (name, input) in dtype_cases() {
        let path = model(&format!("identity_{name}"));
        let session = match engine.load(&path, &EngineOptions::default()) {
            Ok(session) => session,
            Err(EngineError::Unsupported(why)) => {
                eprintln!("{}: {name} not supported: {why}", engine.name());
                continue;
            }
            Err(e) => bail!("identity_{name}: {e}"),
        };
        let spec = &session.signature().inputs[0];
        ensure!(
            spec.dtype.kserve_name() == input.dtype().kserve_name() && spec.shape == [-1, 2],
            "identity_{name}: signature says {:?} {:?}",
            spec.dtype,
            spec.shape
        );
        let out = session
            .run(vec![input.clone()])
            .with_context(|| format!("identity_{name}"))?;
        ensure!(
            out.len() == 1 && out[0] == input,
            "identity_{name}: sent {input:?}, got {out:?}"
        );
        served.push(name);
    }
    Ok(served)
}

fn load(engine: &dyn Engine, path: &Path) -> anyhow::Result<Box<dyn quiver_engine_api::Session>> {
    engine
        .load(path, &EngineOptions::default())
        .with_context(|| format!("{} loading {}", engine.name(), path.display()))
}

fn tensor(shape: &[usize], data: TensorData) -> Tensor {
    Tensor::new(shape.to_vec(), data).expect("shape and data agree")
}

/// Dynamic and fixed dimensions, several inputs and outputs, strings, zero rows: exact answers.
pub fn fixtures(engine: &dyn Engine) -> anyhow::Result<()> {
    let s = load(engine, &crate::fixture_model("half_plus_two"))?;
    for rows in [1, 3] {
        let x: Vec<f32> = (0..rows * 3).map(|i| i as f32 - 2.0).collect();
        let want: Vec<f32> = x.iter().map(|v| 0.5 * v + 2.0).collect();
        let out = s.run(vec![tensor(&[rows, 3], TensorData::F32(x))])?;
        ensure!(
            out[0] == tensor(&[rows, 3], TensorData::F32(want)),
            "half_plus_two, {rows} rows: {out:?}"
        );
    }

    let s = load(engine, &model("fixed_shape"))?;
    ensure!(
        s.signature().inputs[0].shape == [2, 3],
        "fixed_shape: signature {:?}",
        s.signature().inputs[0].shape
    );
    let out = s.run(vec![tensor(
        &[2, 3],
        TensorData::F32(vec![1.0, 2.0, 3.0, -1.0, 0.0, 0.5]),
    )])?;
    ensure!(
        out[0]
            == tensor(
                &[2, 3],
                TensorData::F32(vec![2.0, 4.0, 6.0, -2.0, 0.0, 1.0])
            ),
        "fixed_shape: {out:?}"
    );

    let s = load(engine, &crate::fixture_model("multi_io"))?;
    let out = s.run(vec![
        tensor(&[2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.5])),
        tensor(&[2], TensorData::I32(vec![-3, 4])),
    ])?;
    ensure!(
        out == [
            tensor(&[2], TensorData::F32(vec![3.0, 7.5])),
            tensor(&[2], TensorData::I32(vec![-6, 8])),
            tensor(&[2], TensorData::Bool(vec![false, true])),
        ],
        "multi_io: {out:?}"
    );

    // 'a' and 'b' share the dimension 'batch': sizes that disagree are the client's mistake.
    match s.run(vec![
        tensor(&[2, 2], TensorData::F32(vec![0.0; 4])),
        tensor(&[3], TensorData::I32(vec![0; 3])),
    ]) {
        Err(EngineError::InvalidInput(m)) if m.contains("disagree on dimension") => {}
        other => {
            bail!("multi_io with 2 and 3 rows: expected 'disagree on dimension', got {other:?}")
        }
    }

    let s = load(engine, &crate::fixture_model("int_affine"))?;
    let out = s.run(vec![tensor(&[1, 2], TensorData::I64(vec![5, -7]))])?;
    ensure!(
        out[0] == tensor(&[1, 2], TensorData::I64(vec![14, -22])),
        "int_affine: {out:?}"
    );

    let s = load(engine, &crate::fixture_model("echo_bytes"))?;
    let text = TensorData::String(vec![b"hello".to_vec(), Vec::new(), "\u{e9}t\u{e9}".into()]);
    let out = s.run(vec![tensor(&[3], text.clone())])?;
    ensure!(out[0] == tensor(&[3], text), "echo_bytes: {out:?}");

    let s = load(engine, &crate::fixture_model("dense"))?;
    let out = s.run(vec![tensor(&[0, 64], TensorData::F32(Vec::new()))]);
    match out {
        Ok(out) => ensure!(out[0].shape() == [0, 10], "dense, 0 rows: {out:?}"),
        // Refusing an empty batch is fine; crashing or a wrong shape is not.
        Err(e) => eprintln!("{}: dense with 0 rows refused: {e}", engine.name()),
    }
    Ok(())
}

/// Byte strings that trip up engines holding strings as C strings or as text: empty, NUL inside,
/// at the end and alone, bytes that are not UTF-8 (invalid bytes, a lone continuation byte, an
/// overlong NUL, an encoded surrogate), multi-byte UTF-8, and long elements of both kinds.
pub fn byte_string_cases() -> Vec<(&'static str, Vec<u8>)> {
    let every_byte: Vec<u8> = (0..=255u8).cycle().take(1 << 20).collect();
    vec![
        ("empty", Vec::new()),
        ("nul inside", b"a\0b".to_vec()),
        ("nul at the end", b"ab\0".to_vec()),
        ("nul alone", b"\0".to_vec()),
        ("not utf-8", b"\xff\xfe".to_vec()),
        ("lone continuation byte", b"a\x80b".to_vec()),
        ("overlong nul", b"\xc0\x80".to_vec()),
        ("encoded surrogate", b"\xed\xa0\x80".to_vec()),
        ("multi-byte utf-8", "h\u{e9}llo \u{732b} \u{1f600}".into()),
        ("long utf-8", "\u{732b}\0a".repeat(100_000).into_bytes()),
        ("long, every byte", every_byte),
    ]
}

fn refused_naming(result: Result<Vec<Tensor>, EngineError>, input: &str) -> anyhow::Result<()> {
    match result {
        Err(EngineError::InvalidInput(m)) if m.contains(&format!("'{input}'")) => Ok(()),
        Err(EngineError::InvalidInput(m)) => bail!("refused without naming input '{input}': {m}"),
        other => bail!("expected InvalidInput naming '{input}', got {other:?}"),
    }
}

/// Sends every [`byte_string_cases`] element through `echo_bytes` (alone, then all at once) and
/// `identity_string` (two per row). Each comes back byte for byte, or is refused as the client's
/// mistake (`InvalidInput` naming the input) — never mangled, never an engine failure. Returns the
/// cases refused.
pub fn byte_strings(engine: &dyn Engine) -> anyhow::Result<Vec<&'static str>> {
    let echo = load(engine, &crate::fixture_model("echo_bytes"))?;
    let mut refused = Vec::new();
    for (case, bytes) in byte_string_cases() {
        let input = tensor(&[1], TensorData::String(vec![bytes]));
        match echo.run(vec![input.clone()]) {
            Ok(out) => ensure!(
                out == [input],
                "echo_bytes, {case}: the answer differs from what was sent"
            ),
            result @ Err(_) => {
                refused_naming(result, "text").with_context(|| format!("echo_bytes, {case}"))?;
                refused.push(case);
            }
        }
    }

    // All at once, in one tensor: served whole when no element was refused alone, else refused.
    let served: Vec<Vec<u8>> = byte_string_cases()
        .into_iter()
        .filter(|(case, _)| !refused.contains(case))
        .map(|(_, b)| b)
        .collect();
    let input = tensor(&[served.len()], TensorData::String(served.clone()));
    let out = echo
        .run(vec![input.clone()])
        .context("echo_bytes, the served cases together")?;
    ensure!(
        out == [input],
        "echo_bytes, the served cases together: answer differs"
    );
    if !refused.is_empty() {
        let every: Vec<Vec<u8>> = byte_string_cases().into_iter().map(|(_, b)| b).collect();
        refused_naming(
            echo.run(vec![tensor(&[every.len()], TensorData::String(every))]),
            "text",
        )
        .context("echo_bytes, served and refused cases together")?;
    }

    // No elements at all: an empty answer, or a refusal — never a crash.
    let empty = tensor(&[0], TensorData::String(Vec::new()));
    match echo.run(vec![empty.clone()]) {
        Ok(out) => ensure!(out == [empty], "echo_bytes, no elements: {out:?}"),
        Err(e) => eprintln!(
            "{}: echo_bytes with no elements refused: {e}",
            engine.name()
        ),
    }

    // Two a row through a model of another shape (each served case beside the next one): every
    // element keeps its own bytes and place.
    let identity = load(engine, &model("identity_string"))?;
    let pairs: Vec<Vec<u8>> = served
        .iter()
        .zip(served.iter().cycle().skip(1))
        .flat_map(|(a, b)| [a.clone(), b.clone()])
        .collect();
    let input = tensor(&[served.len(), 2], TensorData::String(pairs));
    let out = identity
        .run(vec![input.clone()])
        .context("identity_string")?;
    ensure!(out == [input], "identity_string: the answer differs");
    Ok(refused)
}

/// What an engine did with a model it may not support.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GapOutcome {
    /// Loaded, and every answer was right.
    Served,
    /// Refused at load time, with this message (which names the way out).
    Refused(String),
}

/// The models of known engine gaps: each either answers correctly or is refused at load time
/// with a message naming `onnxruntime`. Returns what happened to each.
pub fn gaps(engine: &dyn Engine) -> anyhow::Result<Vec<(&'static str, GapOutcome)>> {
    let mut outcomes = Vec::new();
    for name in ["zipmap_classifier", "tree_classifier", "data_dependent_if"] {
        let session = match engine.load(&model(name), &EngineOptions::default()) {
            Ok(session) => session,
            Err(e @ (EngineError::Unsupported(_) | EngineError::Load(_))) => {
                let message = e.to_string();
                ensure!(
                    message.contains("onnxruntime"),
                    "{name}: refused without saying what to do: {message}"
                );
                outcomes.push((name, GapOutcome::Refused(message)));
                continue;
            }
            Err(e) => bail!("{name}: {e}"),
        };
        let f32s = |shape: &[usize], v: &[f32]| tensor(shape, TensorData::F32(v.to_vec()));
        match name {
            "zipmap_classifier" => {
                // The sequence-of-maps output cannot travel in any protocol: only `label` is served.
                let names: Vec<&str> = session
                    .signature()
                    .outputs
                    .iter()
                    .map(|o| o.name.as_str())
                    .collect();
                ensure!(names == ["label"], "{name}: outputs {names:?}");
                let out = session.run(vec![f32s(&[2, 2], &[1.0, 0.0, 0.0, 1.0])])?;
                ensure!(
                    out == [tensor(&[2], TensorData::I64(vec![10, 20]))],
                    "{name}: {out:?}"
                );
            }
            "tree_classifier" => {
                let out = session.run(vec![f32s(&[2, 1], &[0.2, 0.9])])?;
                ensure!(
                    out[0] == tensor(&[2], TensorData::I64(vec![7, 3])),
                    "{name}: labels {out:?}"
                );
                ensure!(
                    out[1] == f32s(&[2, 3], &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]),
                    "{name}: scores {out:?}"
                );
            }
            _ => {
                for (x, y) in [([1.0, 2.0], [2.0, 4.0]), ([-1.0, -2.0], [1.0, 2.0])] {
                    let out = session.run(vec![f32s(&[1, 2], &x)])?;
                    ensure!(out[0] == f32s(&[1, 2], &y), "{name}: {x:?} gave {out:?}");
                }
            }
        }
        outcomes.push((name, GapOutcome::Served));
    }
    Ok(outcomes)
}

/// An image as the reference prepared it for `plain_resize224`: RGB, resized to 224×224 with a
/// bicubic filter (Pillow's default), scaled to [0, 1], normalised per channel, NCHW.
pub fn image_input(path: &Path, mean: [f32; 3], std: [f32; 3]) -> anyhow::Result<Tensor> {
    let img = image::open(path)
        .with_context(|| format!("opening {}", path.display()))?
        .to_rgb8();
    let img = image::imageops::resize(&img, 224, 224, image::imageops::FilterType::CatmullRom);
    let plane = 224 * 224;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, pixel) in img.pixels().enumerate() {
        for c in 0..3 {
            data[c * plane + i] = (f32::from(pixel[c]) / 255.0 - mean[c]) / std[c];
        }
    }
    Ok(tensor(&[1, 3, 224, 224], TensorData::F32(data)))
}

/// Token ids of the three reference sentences of `expected.json`, from the model's own
/// `tokenizer.json` (computed once with Hugging Face `tokenizers`, no padding).
pub const MINILM_TOKENS: [&[i64]; 3] = [
    &[101, 1037, 2158, 2003, 5983, 2833, 1012, 102],
    &[
        101, 1037, 2158, 2003, 5983, 1037, 3538, 1997, 7852, 1012, 102,
    ],
    &[101, 1996, 2047, 3185, 2003, 12476, 1012, 102],
];

/// MiniLM's inputs for one tokenised sentence: ids, attention mask, token types.
pub fn minilm_inputs(ids: &[i64]) -> Vec<Tensor> {
    let n = ids.len();
    vec![
        tensor(&[1, n], TensorData::I64(ids.to_vec())),
        tensor(&[1, n], TensorData::I64(vec![1; n])),
        tensor(&[1, n], TensorData::I64(vec![0; n])),
    ]
}

/// Every real-model input this suite uses: `(model, label, inputs)`.
pub fn real_inputs(shared: &Path) -> anyhow::Result<Vec<(&'static str, String, Vec<Tensor>)>> {
    let mut cases = Vec::new();
    for (model, mean, std) in [
        ("mobilenet_v2", [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
        ("efficientnet_lite0", [0.498; 3], [0.502; 3]),
    ] {
        for image in ["chelsea.png", "coffee.png"] {
            let input = image_input(&shared.join("images").join(image), mean, std)?;
            cases.push((model, image.to_owned(), vec![input]));
        }
    }
    for (i, ids) in MINILM_TOKENS.iter().enumerate() {
        cases.push((
            "all_minilm_l6_v2",
            format!("sentence {i}"),
            minilm_inputs(ids),
        ));
    }
    Ok(cases)
}

/// The shared real models give the answers of `expected.json`, or are refused at load time
/// with a message naming the way out. Returns what happened to each model.
pub fn real_models(
    engine: &dyn Engine,
    shared: &Path,
) -> anyhow::Result<Vec<(&'static str, GapOutcome)>> {
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared.join("expected.json")).context("reading expected.json")?,
    )?;
    let mut embeddings: Vec<Vec<f32>> = Vec::new();
    let mut sessions = std::collections::BTreeMap::new();
    let mut outcomes: Vec<(&'static str, GapOutcome)> = Vec::new();
    for (model, label, inputs) in real_inputs(shared)? {
        if !sessions.contains_key(model) && !outcomes.iter().any(|(m, _)| *m == model) {
            let path = shared.join(model).join("1/model.onnx");
            match engine.load(&path, &EngineOptions::default()) {
                Ok(session) => {
                    sessions.insert(model, session);
                    outcomes.push((model, GapOutcome::Served));
                }
                Err(e @ EngineError::Unsupported(_)) if e.to_string().contains("onnxruntime") => {
                    outcomes.push((model, GapOutcome::Refused(e.to_string())));
                }
                Err(e) => bail!("{} loading {model}: {e}", engine.name()),
            }
        }
        let Some(session) = sessions.get(model) else {
            continue;
        };
        let out = session.run(inputs.clone())?;
        let TensorData::F32(values) = out[0].data() else {
            bail!("{model}: output is not FP32");
        };
        if model == "all_minilm_l6_v2" {
            embeddings.push(mean_pool_normalise(values, out[0].shape()));
            continue;
        }
        let reference = &expected["images"][model][&label]["plain_resize224"][0];
        let probs = softmax(values);
        let (best, p) = probs
            .iter()
            .copied()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .context("no logits")?;
        let want = reference["index"]
            .as_u64()
            .context("expected.json: index")? as usize;
        let want_p = reference["probability"].as_f64().context("probability")? as f32;
        ensure!(
            best == want && (p - want_p).abs() <= PROBABILITY_TOLERANCE,
            "{model} on {label}: class {best} p={p:.4}, expected {want} p={want_p:.4}"
        );
    }
    let text = &expected["text"]["all_minilm_l6_v2"];
    for (i, embedding) in embeddings.iter().enumerate() {
        for (j, want) in text["embedding_first8"][i]
            .as_array()
            .context("embedding_first8")?
            .iter()
            .enumerate()
        {
            let want = want.as_f64().context("a number")? as f32;
            ensure!(
                (embedding[j] - want).abs() <= EMBEDDING_TOLERANCE,
                "MiniLM sentence {i}, element {j}: {} vs {want}",
                embedding[j]
            );
        }
        for (k, other) in embeddings.iter().enumerate() {
            let cosine: f32 = embedding.iter().zip(other).map(|(a, b)| a * b).sum();
            let want = text["cosine"][i][k].as_f64().context("cosine")? as f32;
            ensure!(
                (cosine - want).abs() <= EMBEDDING_TOLERANCE,
                "MiniLM cosine({i}, {k}) = {cosine}, expected {want}"
            );
        }
    }
    Ok(outcomes)
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.iter().map(|v| v / sum).collect()
}

/// Mean over the tokens (all real: no padding), then L2 normalisation.
fn mean_pool_normalise(hidden: &[f32], shape: &[usize]) -> Vec<f32> {
    let (tokens, width) = (shape[1], shape[2]);
    let mut mean = vec![0.0f32; width];
    for token in hidden.chunks(width).take(tokens) {
        for (m, v) in mean.iter_mut().zip(token) {
            *m += v / tokens as f32;
        }
    }
    let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
    mean.iter().map(|v| v / norm).collect()
}
