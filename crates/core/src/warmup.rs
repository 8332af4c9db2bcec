//! Warm-up: requests run on every engine instance of a version before it takes traffic, so the
//! first real request does not pay for lazy allocation, kernel selection and page faults.
//!
//! Samples live in the version directory as `warmup/*.json`, run in file-name order, each a
//! KServe V2 JSON request body with flat `data`:
//!
//! ```json
//! {"inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "data": [0.5, ...]}]}
//! ```
//!
//! Without samples (and `warmup = "auto"`), one request is synthesised from the signature:
//! zeros (empty strings) with every dynamic dimension set to 1.

use std::path::Path;

use quiver_engine_api::{DataType, ModelSignature, Session, Tensor, TensorData, raw};
use quiver_repository::Warmup;
use serde::Deserialize;

/// The directory of warm-up samples inside a version directory.
pub const WARMUP_DIR: &str = "warmup";

/// Largest warm-up tensor accepted, in elements: a sample is the operator's file, but a typo in
/// a shape must not make the server allocate without bound.
const MAX_ELEMENTS: usize = 1 << 26;

#[derive(Deserialize)]
struct Sample {
    inputs: Vec<SampleInput>,
}

#[derive(Deserialize)]
struct SampleInput {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    data: Vec<serde_json::Value>,
}

/// The warm-up requests for a version: its samples, or one synthesised request, per `mode`.
/// Each request's inputs are in signature order.
pub fn requests(
    mode: Warmup,
    version_dir: &Path,
    signature: &ModelSignature,
) -> Result<Vec<Vec<Tensor>>, String> {
    if mode == Warmup::None {
        return Ok(Vec::new());
    }
    let samples = read_samples(&version_dir.join(WARMUP_DIR), signature)?;
    if !samples.is_empty() || mode == Warmup::Samples {
        return Ok(samples);
    }
    Ok(vec![synthesise(signature)?])
}

/// Runs every request on `session`.
pub fn run(session: &dyn Session, requests: &[Vec<Tensor>]) -> Result<(), String> {
    for (i, inputs) in requests.iter().enumerate() {
        session
            .run(inputs.clone())
            .map_err(|e| format!("warm-up request {} failed: {e}", i + 1))?;
    }
    Ok(())
}

fn read_samples(dir: &Path, signature: &ModelSignature) -> Result<Vec<Vec<Tensor>>, String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", dir.display())),
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            parse_sample(&text, signature).map_err(|e| format!("{}: {e}", path.display()))
        })
        .collect()
}

/// One sample file's inputs, in signature order.
fn parse_sample(text: &str, signature: &ModelSignature) -> Result<Vec<Tensor>, String> {
    let sample: Sample = serde_json::from_str(text).map_err(|e| e.to_string())?;
    signature
        .inputs
        .iter()
        .map(|spec| {
            let input = sample
                .inputs
                .iter()
                .find(|i| i.name == spec.name)
                .ok_or_else(|| format!("no input '{}'", spec.name))?;
            let dtype = DataType::from_kserve_name(&input.datatype)
                .ok_or_else(|| format!("'{}' is not a datatype", input.datatype))?;
            if dtype != spec.dtype {
                return Err(format!(
                    "input '{}' is {}, the model takes {}",
                    spec.name,
                    input.datatype,
                    spec.dtype.kserve_name()
                ));
            }
            let data = tensor_data(dtype, &input.data)
                .map_err(|e| format!("input '{}': {e}", spec.name))?;
            Tensor::new(input.shape.clone(), data)
                .map_err(|e| format!("input '{}': {e}", spec.name))
        })
        .collect()
}

fn tensor_data(dtype: DataType, values: &[serde_json::Value]) -> Result<TensorData, String> {
    if dtype == DataType::String {
        return values
            .iter()
            .map(|v| {
                v.as_str()
                    .map(|s| s.as_bytes().to_vec())
                    .ok_or_else(|| format!("{v} is not a string"))
            })
            .collect::<Result<_, _>>()
            .map(TensorData::String);
    }
    let mut data = TensorData::with_capacity(dtype, values.len());
    for v in values {
        let element = if dtype == DataType::Bool {
            let b = v.as_bool().ok_or_else(|| format!("{v} is not a boolean"))?;
            TensorData::Bool(vec![b])
        } else {
            let x = v.as_f64().ok_or_else(|| format!("{v} is not a number"))?;
            number(dtype, x)
        };
        data.append(element)?;
    }
    Ok(data)
}

/// One element of a numeric type from a JSON number (`as` saturates, which is what a warm-up
/// value needs: any value of the type will do).
fn number(dtype: DataType, x: f64) -> TensorData {
    match dtype {
        DataType::U8 => TensorData::U8(vec![x as u8]),
        DataType::U16 => TensorData::U16(vec![x as u16]),
        DataType::U32 => TensorData::U32(vec![x as u32]),
        DataType::U64 => TensorData::U64(vec![x as u64]),
        DataType::I8 => TensorData::I8(vec![x as i8]),
        DataType::I16 => TensorData::I16(vec![x as i16]),
        DataType::I32 => TensorData::I32(vec![x as i32]),
        DataType::I64 => TensorData::I64(vec![x as i64]),
        DataType::F16 => TensorData::F16(vec![quiver_engine_api::f16::from_f64(x)]),
        DataType::F64 => TensorData::F64(vec![x]),
        DataType::Bool | DataType::F32 | DataType::String => TensorData::F32(vec![x as f32]),
    }
}

/// Zeros for every input, dynamic dimensions set to 1.
fn synthesise(signature: &ModelSignature) -> Result<Vec<Tensor>, String> {
    signature
        .inputs
        .iter()
        .map(|spec| {
            let shape: Vec<usize> = spec
                .shape
                .iter()
                .map(|&d| usize::try_from(d).unwrap_or(1).max(1))
                .collect();
            let count = quiver_engine_api::element_count(&shape)
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| format!("input '{}' is too large to synthesise", spec.name))?;
            let data = match spec.dtype.size_of() {
                Some(size) => raw::decode(spec.dtype, &vec![0; count * size], count)?,
                None => TensorData::String(vec![Vec::new(); count]),
            };
            Tensor::new(shape, data)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::TensorSpec;

    fn signature() -> ModelSignature {
        ModelSignature {
            inputs: vec![
                TensorSpec {
                    name: "x".into(),
                    dtype: DataType::F32,
                    shape: vec![-1, 3],
                },
                TensorSpec {
                    name: "ids".into(),
                    dtype: DataType::I64,
                    shape: vec![-1, -1],
                },
            ],
            outputs: vec![],
        }
    }

    #[test]
    fn synthesises_zeros_with_dynamic_dims_of_one() {
        let dir = tempfile::tempdir().unwrap();
        let synthesised = requests(Warmup::Auto, dir.path(), &signature()).unwrap();
        assert_eq!(synthesised.len(), 1);
        assert_eq!(synthesised[0][0].shape(), &[1, 3]);
        assert_eq!(synthesised[0][0].data(), &TensorData::F32(vec![0.0; 3]));
        assert_eq!(synthesised[0][1].data(), &TensorData::I64(vec![0]));
        assert!(
            requests(Warmup::Samples, dir.path(), &signature())
                .unwrap()
                .is_empty()
        );
        assert!(
            requests(Warmup::None, dir.path(), &signature())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn reads_samples_in_name_order_and_names_mistakes() {
        let dir = tempfile::tempdir().unwrap();
        let warmup = dir.path().join(WARMUP_DIR);
        std::fs::create_dir(&warmup).unwrap();
        std::fs::write(
            warmup.join("b.json"),
            r#"{"inputs": [{"name": "ids", "shape": [1, 2], "datatype": "INT64", "data": [7, 8]},
                {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
        )
        .unwrap();
        std::fs::write(
            warmup.join("a.json"),
            r#"{"inputs": [{"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]},
                {"name": "ids", "shape": [2, 1], "datatype": "INT64", "data": [1, 2]}]}"#,
        )
        .unwrap();
        let samples = requests(Warmup::Auto, dir.path(), &signature()).unwrap();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0][0].shape(), &[2, 3]);
        assert_eq!(samples[1][1].data(), &TensorData::I64(vec![7, 8]));

        std::fs::write(
            warmup.join("c.json"),
            r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2]}]}"#,
        )
        .unwrap();
        let e = requests(Warmup::Auto, dir.path(), &signature()).unwrap_err();
        assert!(e.contains("c.json"), "{e}");
        std::fs::write(
            warmup.join("c.json"),
            r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT8", "data": [1, 2, 3]}]}"#,
        )
        .unwrap();
        let e = requests(Warmup::Auto, dir.path(), &signature()).unwrap_err();
        assert!(e.contains("INT8"), "{e}");
    }
}
