//! TF Serving's REST predict format: request decoding and response encoding.
//!
//! Requests come in the row format (`"instances": [...]`, one entry per batch item) or the
//! columnar format (`"inputs": ...`, whole tensors). Tensor values are decoded straight into
//! typed buffers of the model input's type. Responses mirror the request's format:
//! `"predictions"` (rows) or `"outputs"` (columns); a single output is unwrapped, several are
//! named.

use quiver_core::{ModelSignature, NamedTensor};

use crate::json::reader::{JsonReader, Next};
use crate::json::tensor::{DecodeError, TensorBuilder, at_b64_object, invalid};
use crate::json::writer;

/// The layout of a predict request, which the response mirrors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `instances` → `predictions`.
    Row,
    /// `inputs` → `outputs`.
    Columnar,
}

/// A decoded predict request.
#[derive(Debug)]
pub struct PredictRequest {
    /// Row or columnar.
    pub format: Format,
    /// `signature_name`, when given.
    pub signature_name: Option<String>,
    /// Inputs by name.
    pub inputs: Vec<NamedTensor>,
}

/// Decodes a predict request body for a model with `signature`; the inputs named in `images`
/// also take strings and `{"b64": …}` values (encoded images) besides numbers.
pub fn decode_predict(
    body: &[u8],
    signature: &ModelSignature,
    images: &[&str],
) -> Result<PredictRequest, DecodeError> {
    let mut r = JsonReader::new(body)?;
    if r.peek()? != Next::Object {
        return Err(invalid("the request body must be a JSON object"));
    }
    r.begin_object()?;
    let mut first = true;
    let mut signature_name = None;
    let mut decoded: Option<(Format, Vec<NamedTensor>)> = None;
    while let Some(key) = r.next_key(&mut first)? {
        match key.as_ref() {
            "signature_name" => {
                if r.peek()? != Next::String {
                    return Err(invalid("'signature_name' must be a string"));
                }
                signature_name = Some(r.read_string()?.into_owned());
            }
            "instances" | "inputs" => {
                if decoded.is_some() {
                    return Err(invalid(
                        "give either 'instances' (row format) or 'inputs' (columnar format), once",
                    ));
                }
                decoded = Some(if key == "instances" {
                    (Format::Row, decode_rows(&mut r, signature, images)?)
                } else {
                    (Format::Columnar, decode_columns(&mut r, signature, images)?)
                });
            }
            _ => r.skip_value()?,
        }
    }
    r.finish()?;
    let (format, inputs) = decoded
        .ok_or_else(|| invalid("missing 'instances' (row format) or 'inputs' (columnar format)"))?;
    Ok(PredictRequest {
        format,
        signature_name,
        inputs,
    })
}

/// Whether the object at the reader is a binary value rather than an object of named inputs.
fn is_b64_value(r: &JsonReader<'_>, signature: &ModelSignature) -> bool {
    signature.input_index("b64").is_none() && at_b64_object(r)
}

fn single_input<'s>(
    signature: &'s ModelSignature,
    what: &str,
) -> Result<&'s quiver_core::TensorSpec, DecodeError> {
    match signature.inputs.as_slice() {
        [only] => Ok(only),
        specs => Err(invalid(format!(
            "the model has {} inputs ({}); {what} must be an object naming them",
            specs.len(),
            specs
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn builder(name: &str, dtype: quiver_core::DataType, images: &[&str]) -> TensorBuilder {
    TensorBuilder::new(name, dtype).or_bytes(images.contains(&name))
}

fn builder_for(
    signature: &ModelSignature,
    name: &str,
    images: &[&str],
) -> Result<(usize, TensorBuilder), DecodeError> {
    let ix = signature.input_index(name).ok_or_else(|| {
        invalid(format!(
            "unknown input '{name}'; the model's inputs are {}",
            signature
                .inputs
                .iter()
                .map(|s| format!("'{}'", s.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok((ix, builder(name, signature.inputs[ix].dtype, images)))
}

fn decode_rows(
    r: &mut JsonReader<'_>,
    signature: &ModelSignature,
    images: &[&str],
) -> Result<Vec<NamedTensor>, DecodeError> {
    if r.peek()? != Next::Array {
        return Err(invalid("'instances' must be a list"));
    }
    r.begin_array()?;
    let mut first = true;
    let mut rows = 0usize;
    // Named instances fill one builder per input; unnamed ones fill `unnamed`.
    let mut named: Option<Vec<Option<TensorBuilder>>> = None;
    let mut unnamed: Option<TensorBuilder> = None;
    while r.next_element(&mut first)? {
        let is_named = r.peek()? == Next::Object && !is_b64_value(r, signature);
        match (is_named, rows) {
            (true, 0) => named = Some(vec![None; signature.inputs.len()]),
            (false, 0) => {
                let spec = single_input(signature, "each instance")?;
                unnamed = Some(builder(&spec.name, spec.dtype, images));
            }
            _ if is_named != named.is_some() => {
                return Err(invalid(
                    "instances must all be objects of named inputs, or all be plain values",
                ));
            }
            _ => {}
        }
        if let Some(builders) = named.as_mut() {
            read_named_instance(r, signature, images, builders, rows)?;
        } else if let Some(builder) = unnamed.as_mut() {
            builder.read_value(r, 1)?;
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(invalid("'instances' is empty; send at least one instance"));
    }
    let builders: Vec<TensorBuilder> = match (named, unnamed) {
        (Some(builders), _) => builders.into_iter().flatten().collect(),
        (None, Some(builder)) => vec![builder],
        (None, None) => Vec::new(),
    };
    builders
        .into_iter()
        .map(|mut b| {
            b.close_outer(rows)?;
            let name = b.name().to_owned();
            Ok(NamedTensor::new(name, b.finish()?))
        })
        .collect()
}

fn read_named_instance(
    r: &mut JsonReader<'_>,
    signature: &ModelSignature,
    images: &[&str],
    builders: &mut [Option<TensorBuilder>],
    row: usize,
) -> Result<(), DecodeError> {
    r.begin_object()?;
    let mut first = true;
    let mut seen = vec![false; builders.len()];
    while let Some(key) = r.next_key(&mut first)? {
        let (ix, fresh) = builder_for(signature, &key, images)?;
        if std::mem::replace(&mut seen[ix], true) {
            return Err(invalid(format!(
                "instance {row}: input '{key}' is given twice"
            )));
        }
        let slot = &mut builders[ix];
        if slot.is_none() {
            if row > 0 {
                return Err(invalid(format!(
                    "instance {row} has input '{key}' that instance 0 does not; all instances must name the same inputs"
                )));
            }
            *slot = Some(fresh);
        }
        if let Some(builder) = slot.as_mut() {
            builder.read_value(r, 1)?;
        }
    }
    for (builder, seen) in builders.iter().zip(seen) {
        if let Some(b) = builder
            && !seen
        {
            return Err(invalid(format!(
                "instance {row} lacks input '{}'; all instances must name the same inputs",
                b.name()
            )));
        }
    }
    Ok(())
}

fn decode_columns(
    r: &mut JsonReader<'_>,
    signature: &ModelSignature,
    images: &[&str],
) -> Result<Vec<NamedTensor>, DecodeError> {
    if r.peek()? == Next::Object && !is_b64_value(r, signature) {
        r.begin_object()?;
        let mut first = true;
        let mut inputs: Vec<NamedTensor> = Vec::new();
        while let Some(key) = r.next_key(&mut first)? {
            if inputs.iter().any(|t| t.name == key) {
                return Err(invalid(format!("input '{key}' is given twice")));
            }
            let (_, mut builder) = builder_for(signature, &key, images)?;
            builder.read_value(r, 0)?;
            inputs.push(NamedTensor::new(key.into_owned(), builder.finish()?));
        }
        Ok(inputs)
    } else {
        let spec = single_input(signature, "'inputs'")?;
        let mut builder = builder(&spec.name, spec.dtype, images);
        builder.read_value(r, 0)?;
        Ok(vec![NamedTensor::new(spec.name.clone(), builder.finish()?)])
    }
}

fn bytes_mode(name: &str) -> writer::Bytes {
    if name.ends_with("_bytes") {
        writer::Bytes::Base64
    } else {
        writer::Bytes::TextOrBase64
    }
}

/// Encodes the response to a predict request of `format`. Fails (the client's request can be
/// resent in the columnar format) when the row format cannot represent the outputs.
pub fn encode_predict(format: Format, outputs: &[NamedTensor]) -> Result<Vec<u8>, String> {
    let estimate: usize = outputs.iter().map(|o| o.tensor.len() * 12).sum();
    let mut out = Vec::with_capacity(estimate + 32);
    match (format, outputs) {
        (Format::Columnar, [only]) => {
            out.extend_from_slice(b"{\"outputs\":");
            writer::tensor(&mut out, &only.tensor, bytes_mode(&only.name));
            out.push(b'}');
        }
        (Format::Columnar, many) => {
            out.extend_from_slice(b"{\"outputs\":{");
            for (i, o) in many.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                writer::string(&mut out, &o.name);
                out.push(b':');
                writer::tensor(&mut out, &o.tensor, bytes_mode(&o.name));
            }
            out.extend_from_slice(b"}}");
        }
        (Format::Row, outputs) => encode_rows(&mut out, outputs)?,
    }
    Ok(out)
}

fn encode_rows(out: &mut Vec<u8>, outputs: &[NamedTensor]) -> Result<(), String> {
    let mut rows = None;
    for o in outputs {
        let Some(&n) = o.tensor.shape().first() else {
            return Err(format!(
                "output '{}' is a scalar and cannot be split into rows; use the columnar format ('inputs')",
                o.name
            ));
        };
        match rows {
            None => rows = Some(n),
            Some(m) if m != n => {
                return Err(format!(
                    "outputs have different sizes in dimension 0 ({m} and {n} for '{}'), so they cannot be split into rows; use the columnar format ('inputs')",
                    o.name
                ));
            }
            Some(_) => {}
        }
    }
    let rows = rows.unwrap_or(0);
    out.extend_from_slice(b"{\"predictions\":[");
    for row in 0..rows {
        if row > 0 {
            out.push(b',');
        }
        let single = outputs.len() == 1;
        if !single {
            out.push(b'{');
        }
        for (i, o) in outputs.iter().enumerate() {
            if !single {
                if i > 0 {
                    out.push(b',');
                }
                writer::string(out, &o.name);
                out.push(b':');
            }
            let inner = &o.tensor.shape()[1..];
            let stride: usize = inner.iter().product();
            writer::nested(
                out,
                o.tensor.data(),
                inner,
                row * stride,
                bytes_mode(&o.name),
            );
        }
        if !single {
            out.push(b'}');
        }
    }
    out.extend_from_slice(b"]}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_core::{DataType, Tensor, TensorData, TensorSpec};

    fn spec(name: &str, dtype: DataType, shape: &[i64]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype,
            shape: shape.to_vec(),
        }
    }

    fn one_input() -> ModelSignature {
        ModelSignature {
            inputs: vec![spec("x", DataType::F32, &[-1, 3])],
            outputs: vec![],
        }
    }

    fn two_inputs() -> ModelSignature {
        ModelSignature {
            inputs: vec![
                spec("a", DataType::F32, &[-1, 2]),
                spec("b", DataType::String, &[-1]),
            ],
            outputs: vec![],
        }
    }

    fn decode(body: &str, sig: &ModelSignature) -> Result<PredictRequest, String> {
        decode_predict(body.as_bytes(), sig, &[]).map_err(|e| e.to_string())
    }

    #[test]
    fn row_format_unnamed() {
        let req = decode(r#"{"instances": [[1, 2, 3], [4, 5, 6]]}"#, &one_input()).unwrap();
        assert_eq!(req.format, Format::Row);
        assert_eq!(req.inputs.len(), 1);
        assert_eq!(req.inputs[0].name, "x");
        assert_eq!(req.inputs[0].tensor.shape(), &[2, 3]);
    }

    #[test]
    fn row_format_named() {
        let body = r#"{"signature_name": "serving_default", "instances": [
            {"a": [1, 2], "b": "x"}, {"b": {"b64": "eQ=="}, "a": [3, 4]}]}"#;
        let req = decode(body, &two_inputs()).unwrap();
        assert_eq!(req.signature_name.as_deref(), Some("serving_default"));
        let a = req.inputs.iter().find(|t| t.name == "a").unwrap();
        assert_eq!(a.tensor.data(), &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0]));
        assert_eq!(a.tensor.shape(), &[2, 2]);
        let b = req.inputs.iter().find(|t| t.name == "b").unwrap();
        assert_eq!(
            b.tensor.data(),
            &TensorData::String(vec![b"x".to_vec(), b"y".to_vec()])
        );
    }

    #[test]
    fn columnar_format() {
        let req = decode(r#"{"inputs": [[1, 2, 3]]}"#, &one_input()).unwrap();
        assert_eq!(req.format, Format::Columnar);
        assert_eq!(req.inputs[0].tensor.shape(), &[1, 3]);
        let req = decode(r#"{"inputs": {"a": [[1, 2]], "b": ["s"]}}"#, &two_inputs()).unwrap();
        assert_eq!(req.inputs.len(), 2);
        let single_string = ModelSignature {
            inputs: vec![spec("s", DataType::String, &[])],
            outputs: vec![],
        };
        let req = decode(r#"{"inputs": {"b64": "aGk="}}"#, &single_string).unwrap();
        assert_eq!(
            req.inputs[0].tensor.data(),
            &TensorData::String(vec![b"hi".to_vec()])
        );
    }

    #[test]
    fn request_errors() {
        let cases = [
            (
                r#"{"instances": [[1,2,3]], "inputs": [[1,2,3]]}"#,
                "either 'instances'",
            ),
            (r#"{"instances": []}"#, "'instances' is empty"),
            (r#"{}"#, "missing 'instances'"),
            (r#"[1]"#, "must be a JSON object"),
            (r#"{"instances": 5}"#, "must be a list"),
            (r#"{"instances": [[1,2,3], [4,5]]}"#, "rectangular"),
            (r#"{"instances": [[1,2,3]]"#, "malformed JSON"),
            (
                r#"{"signature_name": 1, "instances": [[1,2,3]]}"#,
                "must be a string",
            ),
        ];
        for (body, want) in cases {
            let e = decode(body, &one_input()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
        let cases = [
            (r#"{"instances": [[1, 2]]}"#, "the model has 2 inputs"),
            (
                r#"{"instances": [{"a": [1, 2], "b": "x"}, {"a": [1, 2]}]}"#,
                "lacks input 'b'",
            ),
            (
                r#"{"instances": [{"a": [1, 2]}, {"a": [1, 2], "b": "x"}]}"#,
                "instance 0 does not",
            ),
            (
                r#"{"instances": [{"a": [1, 2], "a": [1, 2]}]}"#,
                "given twice",
            ),
            (r#"{"instances": [{"c": 1}]}"#, "unknown input 'c'"),
            (
                r#"{"instances": [{"a": [1, 2], "b": "x"}, [1, 2]]}"#,
                "all be",
            ),
            (
                r#"{"inputs": {"a": [[1, 2]], "a": [[1, 2]]}}"#,
                "given twice",
            ),
            (r#"{"inputs": {"a": [["x", 2]]}}"#, "expected a number"),
        ];
        for (body, want) in cases {
            let e = decode(body, &two_inputs()).unwrap_err();
            assert!(e.contains(want), "{body}: {e}");
        }
    }

    fn named(name: &str, shape: Vec<usize>, data: TensorData) -> NamedTensor {
        NamedTensor::new(name, Tensor::new(shape, data).unwrap())
    }

    fn text(format: Format, outputs: &[NamedTensor]) -> String {
        String::from_utf8(encode_predict(format, outputs).unwrap()).unwrap()
    }

    #[test]
    fn responses() {
        let y = named(
            "y",
            vec![2, 2],
            TensorData::F32(vec![0.5, 1.0, f32::NAN, -2.0]),
        );
        let k = named(
            "k_bytes",
            vec![2],
            TensorData::String(vec![b"a".to_vec(), b"b".to_vec()]),
        );
        assert_eq!(
            text(Format::Row, std::slice::from_ref(&y)),
            r#"{"predictions":[[0.5,1.0],[NaN,-2.0]]}"#
        );
        assert_eq!(
            text(Format::Columnar, std::slice::from_ref(&y)),
            r#"{"outputs":[[0.5,1.0],[NaN,-2.0]]}"#
        );
        assert_eq!(
            text(Format::Row, &[y.clone(), k.clone()]),
            r#"{"predictions":[{"y":[0.5,1.0],"k_bytes":{"b64":"YQ=="}},{"y":[NaN,-2.0],"k_bytes":{"b64":"Yg=="}}]}"#
        );
        assert_eq!(
            text(Format::Columnar, &[y, k]),
            r#"{"outputs":{"y":[[0.5,1.0],[NaN,-2.0]],"k_bytes":[{"b64":"YQ=="},{"b64":"Yg=="}]}}"#
        );
    }

    #[test]
    fn row_responses_need_a_common_batch() {
        let a = named("a", vec![2], TensorData::I64(vec![1, 2]));
        let b = named("b", vec![3], TensorData::I64(vec![1, 2, 3]));
        let s = named("s", vec![], TensorData::I64(vec![1]));
        assert!(encode_predict(Format::Row, &[a.clone(), b]).is_err());
        assert!(encode_predict(Format::Row, std::slice::from_ref(&s)).is_err());
        assert_eq!(text(Format::Columnar, &[s]), r#"{"outputs":1}"#);
        assert_eq!(text(Format::Row, &[a]), r#"{"predictions":[1,2]}"#);
    }
}
