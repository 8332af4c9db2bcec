//! KServe V2 inference requests and responses: JSON tensors, and Triton's binary tensor data
//! extension (raw little-endian elements after the JSON header; BYTES elements each prefixed by
//! a 4-byte little-endian length).
//!
//! Over 600 lines only with its unit tests (the last 290 lines); the codec itself is ~425.

use quiver_core::NamedTensor;
use quiver_engine_api::{DataType, MAX_RANK, Tensor, element_count, raw};

use crate::json::number;
use crate::json::reader::{JsonReader, Next};
use crate::json::tensor::{DecodeError, TensorBuilder, invalid};
use crate::json::writer;

/// A decoded `…/infer` request.
#[derive(Debug)]
pub struct InferRequest {
    /// The request id, echoed in the response.
    pub id: Option<String>,
    /// The inputs, in request order.
    pub inputs: Vec<NamedTensor>,
    /// The outputs asked for, in the order wanted; empty means all.
    pub outputs: Vec<RequestedOutput>,
    /// `parameters.binary_data_output`: outputs as binary unless an output says otherwise.
    pub binary_output: bool,
    /// `parameters.timeout`: how long the request may take, in microseconds (Triton's meaning).
    pub timeout_us: Option<u64>,
}

/// One entry of a request's `outputs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedOutput {
    /// Output name.
    pub name: String,
    /// `parameters.binary_data`, when given.
    pub binary: Option<bool>,
    /// `parameters.raw`: the model's own output, before the config's post-processing.
    pub raw: bool,
    /// `parameters.classification`: the top `k` classes, as Triton's classification extension.
    pub classification: Option<usize>,
}

/// An input as read from the JSON header, before its data is decoded.
struct PendingInput<'a> {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    binary_size: Option<usize>,
    data: Option<PendingData<'a>>,
}

/// An input's `data`: read as it came when its name, datatype and shape came before it (the
/// order clients write), else left to read once they are known.
enum PendingData<'a> {
    Read(Tensor),
    /// A reader positioned at the `data` value.
    Later(JsonReader<'a>),
}

/// Decodes a request from its JSON `header` and the `binary` bytes that followed it.
pub fn decode_infer(header: &[u8], binary: &[u8]) -> Result<InferRequest, DecodeError> {
    let mut r = JsonReader::new(header)?;
    if r.peek()? != Next::Object {
        return Err(invalid("the request body must be a JSON object"));
    }
    r.begin_object()?;
    let mut first = true;
    let mut id = None;
    let mut pending = Vec::new();
    let mut outputs = Vec::new();
    let mut binary_output = false;
    let mut timeout_us = None;
    let mut saw_inputs = false;
    while let Some(key) = r.next_key(&mut first)? {
        match key.as_ref() {
            "id" => id = Some(read_string(&mut r, "id")?),
            "parameters" => {
                read_parameters(&mut r, "parameters", |key, r| match key {
                    "binary_data_output" => {
                        binary_output = read_bool(r, "parameters.binary_data_output")?;
                        Ok(true)
                    }
                    "timeout" => {
                        timeout_us = Some(read_size(r, "parameters.timeout")? as u64);
                        Ok(true)
                    }
                    _ => Ok(false),
                })?;
            }
            "inputs" => {
                saw_inputs = true;
                read_array(&mut r, "inputs", |r| {
                    pending.push(read_input(r)?);
                    Ok(())
                })?;
            }
            "outputs" => read_array(&mut r, "outputs", |r| {
                outputs.push(read_output(r)?);
                Ok(())
            })?,
            _ => r.skip_value()?,
        }
    }
    r.finish()?;
    if !saw_inputs || pending.is_empty() {
        return Err(invalid("the request has no 'inputs'"));
    }
    let mut rest = binary;
    let mut inputs = Vec::with_capacity(pending.len());
    for input in pending {
        inputs.push(decode_input(input, &mut rest)?);
    }
    if !rest.is_empty() {
        return Err(invalid(format!(
            "the body has {} bytes of binary data beyond what the inputs' binary_data_size account for",
            rest.len()
        )));
    }
    Ok(InferRequest {
        id,
        inputs,
        outputs,
        binary_output,
        timeout_us,
    })
}

fn read_string(r: &mut JsonReader<'_>, what: &str) -> Result<String, DecodeError> {
    if r.peek()? != Next::String {
        return Err(invalid(format!("'{what}' must be a string")));
    }
    Ok(r.read_string()?.into_owned())
}

fn read_bool(r: &mut JsonReader<'_>, what: &str) -> Result<bool, DecodeError> {
    if r.peek()? != Next::Bool {
        return Err(invalid(format!("'{what}' must be true or false")));
    }
    Ok(r.read_bool()?)
}

fn read_size(r: &mut JsonReader<'_>, what: &str) -> Result<usize, DecodeError> {
    if r.peek()? != Next::Number {
        return Err(invalid(format!("'{what}' must be a non-negative integer")));
    }
    let token = r.read_number_token()?;
    number::to_int::<usize>(&token, DataType::U64).map_err(|_| {
        invalid(format!(
            "'{what}' must be a non-negative integer, not {}",
            token.text
        ))
    })
}

/// Reads an array, calling `each` with the reader at every element.
fn read_array<'a>(
    r: &mut JsonReader<'a>,
    what: &str,
    mut each: impl FnMut(&mut JsonReader<'a>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    if r.peek()? != Next::Array {
        return Err(invalid(format!("'{what}' must be a list")));
    }
    r.begin_array()?;
    let mut first = true;
    while r.next_element(&mut first)? {
        each(r)?;
    }
    Ok(())
}

/// Reads a `parameters` object: `known` reads the values it knows (returning `true`); the
/// others are skipped (parameters are open-ended in the protocol).
fn read_parameters<'a>(
    r: &mut JsonReader<'a>,
    what: &str,
    mut known: impl FnMut(&str, &mut JsonReader<'a>) -> Result<bool, DecodeError>,
) -> Result<(), DecodeError> {
    if r.peek()? != Next::Object {
        return Err(invalid(format!("'{what}' must be an object")));
    }
    r.begin_object()?;
    let mut first = true;
    while let Some(key) = r.next_key(&mut first)? {
        if !known(&key, r)? {
            r.skip_value()?;
        }
    }
    Ok(())
}

fn read_input<'a>(r: &mut JsonReader<'a>) -> Result<PendingInput<'a>, DecodeError> {
    if r.peek()? != Next::Object {
        return Err(invalid("each of 'inputs' must be an object"));
    }
    r.begin_object()?;
    let mut first = true;
    let (mut name, mut shape, mut datatype, mut binary_size, mut data) =
        (None, None, None, None, None);
    while let Some(key) = r.next_key(&mut first)? {
        match key.as_ref() {
            "name" => name = Some(read_string(r, "inputs[].name")?),
            "datatype" => datatype = Some(read_string(r, "inputs[].datatype")?),
            "shape" => {
                let mut dims = Vec::new();
                read_array(r, "inputs[].shape", |r| {
                    if dims.len() == MAX_RANK {
                        return Err(invalid(format!(
                            "a shape may have at most {MAX_RANK} dimensions"
                        )));
                    }
                    dims.push(read_size(r, "inputs[].shape[]")?);
                    Ok(())
                })?;
                shape = Some(dims);
            }
            "parameters" => read_parameters(r, "inputs[].parameters", |key, r| match key {
                "binary_data_size" => {
                    binary_size = Some(read_size(r, "binary_data_size")?);
                    Ok(true)
                }
                "shared_memory_region" => Err(invalid(
                    "shared memory is not supported; send the data in the request",
                )),
                _ => Ok(false),
            })?,
            "data" => {
                let known = match (&name, &datatype, &shape) {
                    (Some(name), Some(datatype), Some(shape)) => {
                        DataType::from_kserve_name(datatype)
                            .filter(|_| element_count(shape).is_some())
                            .map(|dtype| (name, dtype, shape))
                    }
                    _ => None,
                };
                data = Some(match known {
                    Some((name, dtype, shape)) => PendingData::Read(
                        TensorBuilder::new(name, dtype).read_flat(r, shape.clone())?,
                    ),
                    // The datatype or shape may come after the data (or be wrong, which
                    // decode_input reports): remember where the data is, read it then.
                    None => {
                        let later = r.clone();
                        r.skip_value()?;
                        PendingData::Later(later)
                    }
                });
            }
            _ => r.skip_value()?,
        }
    }
    let name = name.ok_or_else(|| invalid("an input has no 'name'"))?;
    let missing = |field: &str| invalid(format!("input '{name}' has no '{field}'"));
    Ok(PendingInput {
        shape: shape.ok_or_else(|| missing("shape"))?,
        datatype: datatype.ok_or_else(|| missing("datatype"))?,
        binary_size,
        data,
        name,
    })
}

fn read_output(r: &mut JsonReader<'_>) -> Result<RequestedOutput, DecodeError> {
    if r.peek()? != Next::Object {
        return Err(invalid("each of 'outputs' must be an object"));
    }
    r.begin_object()?;
    let mut first = true;
    let (mut name, mut binary, mut raw, mut classification) = (None, None, false, None);
    while let Some(key) = r.next_key(&mut first)? {
        match key.as_ref() {
            "name" => name = Some(read_string(r, "outputs[].name")?),
            "parameters" => read_parameters(r, "outputs[].parameters", |key, r| match key {
                "binary_data" => {
                    binary = Some(read_bool(r, "outputs[].parameters.binary_data")?);
                    Ok(true)
                }
                "classification" => {
                    let k = read_size(r, "outputs[].parameters.classification")?;
                    if k == 0 {
                        return Err(invalid(
                            "outputs[].parameters.classification must be at least 1",
                        ));
                    }
                    classification = Some(k);
                    Ok(true)
                }
                "raw" => {
                    raw = read_bool(r, "outputs[].parameters.raw")?;
                    Ok(true)
                }
                _ => Ok(false),
            })?,
            _ => r.skip_value()?,
        }
    }
    let name = name.ok_or_else(|| invalid("an entry of 'outputs' has no 'name'"))?;
    Ok(RequestedOutput {
        name,
        binary,
        raw,
        classification,
    })
}

fn decode_input(input: PendingInput<'_>, binary: &mut &[u8]) -> Result<NamedTensor, DecodeError> {
    let PendingInput {
        name,
        shape,
        datatype,
        binary_size,
        data,
    } = input;
    let dtype = DataType::from_kserve_name(&datatype).ok_or_else(|| {
        invalid(format!(
            "input '{name}': unsupported datatype '{datatype}' (BOOL, UINT8…UINT64, INT8…INT64, FP16, FP32, FP64, BYTES)"
        ))
    })?;
    let count = element_count(&shape).ok_or_else(|| {
        invalid(format!(
            "input '{name}': shape {shape:?} has too many elements"
        ))
    })?;
    let tensor = match (binary_size, data) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "input '{name}' has both 'data' and binary_data_size; give one"
            )));
        }
        (None, None) => return Err(invalid(format!("input '{name}' has no 'data'"))),
        // Read with the name, datatype and shape given before the data; a key given twice may
        // have changed them since.
        (None, Some(PendingData::Read(tensor))) => {
            if tensor.shape() != shape.as_slice() || tensor.dtype() != dtype {
                return Err(invalid(format!(
                    "input '{name}' gives its datatype or shape twice, differently"
                )));
            }
            tensor
        }
        (None, Some(PendingData::Later(mut r))) => {
            TensorBuilder::new(&name, dtype).read_flat(&mut r, shape)?
        }
        (Some(size), None) => {
            if size > binary.len() {
                return Err(invalid(format!(
                    "input '{name}': binary_data_size is {size} but only {} bytes of binary data remain",
                    binary.len()
                )));
            }
            let (bytes, rest) = binary.split_at(size);
            *binary = rest;
            let data = raw::decode(dtype, bytes, count)
                .map_err(|m| invalid(format!("input '{name}': {m}")))?;
            Tensor::new(shape, data).map_err(|m| invalid(format!("input '{name}': {m}")))?
        }
    };
    Ok(NamedTensor::new(name, tensor))
}

/// An output to answer with, and whether as binary data.
pub struct ResponseOutput<'a> {
    /// The output.
    pub output: std::borrow::Cow<'a, NamedTensor>,
    /// Send its elements as binary data after the JSON.
    pub binary: bool,
}

/// Encodes a response: the JSON header, and the binary data that follows it (empty when no
/// output is binary).
pub fn encode_infer(
    model: &str,
    version: u64,
    id: Option<&str>,
    outputs: &[ResponseOutput<'_>],
) -> (Vec<u8>, Vec<u8>) {
    let mut json = Vec::with_capacity(
        128 + outputs
            .iter()
            .filter(|o| !o.binary)
            .map(|o| o.output.tensor.len() * 12)
            .sum::<usize>(),
    );
    let mut binary = Vec::new();
    json.extend_from_slice(b"{\"model_name\":");
    writer::string(&mut json, model);
    json.extend_from_slice(b",\"model_version\":\"");
    writer::int(&mut json, version);
    json.push(b'"');
    if let Some(id) = id {
        json.extend_from_slice(b",\"id\":");
        writer::string(&mut json, id);
    }
    json.extend_from_slice(b",\"outputs\":[");
    for (i, o) in outputs.iter().enumerate() {
        if i > 0 {
            json.push(b',');
        }
        let tensor = &o.output.tensor;
        json.extend_from_slice(b"{\"name\":");
        writer::string(&mut json, &o.output.name);
        json.extend_from_slice(b",\"datatype\":\"");
        json.extend_from_slice(tensor.dtype().kserve_name().as_bytes());
        json.extend_from_slice(b"\",\"shape\":[");
        for (j, d) in tensor.shape().iter().enumerate() {
            if j > 0 {
                json.push(b',');
            }
            writer::int(&mut json, *d);
        }
        json.push(b']');
        if o.binary {
            let start = binary.len();
            raw::encode(tensor.data(), &mut binary);
            json.extend_from_slice(b",\"parameters\":{\"binary_data_size\":");
            writer::int(&mut json, binary.len() - start);
            json.push(b'}');
        } else {
            json.extend_from_slice(b",\"data\":");
            writer::flat(&mut json, tensor, writer::Bytes::TextOrBase64);
        }
        json.push(b'}');
    }
    json.extend_from_slice(b"]}");
    (json, binary)
}

#[cfg(test)]
#[allow(clippy::wildcard_enum_match_arm)] // tests may match loosely
mod tests {
    use super::*;
    use quiver_engine_api::TensorData;

    fn decode(json: &str, binary: &[u8]) -> Result<InferRequest, String> {
        decode_infer(json.as_bytes(), binary).map_err(|e| e.to_string())
    }

    fn f32_tensor(t: &NamedTensor) -> (&[usize], &[f32]) {
        match t.tensor.data() {
            TensorData::F32(v) => (t.tensor.shape(), v),
            other => panic!("not f32: {other:?}"),
        }
    }

    #[test]
    fn json_inputs_flat_and_nested_in_any_key_order() {
        let req = decode(
            r#"{"id": "r1", "inputs": [
                {"data": [1, 2, 3, 4, 5, 6], "name": "x", "shape": [2, 3], "datatype": "FP32"},
                {"name": "y", "shape": [2], "datatype": "INT64", "data": [[7], [8]]}
            ], "outputs": [{"name": "z", "parameters": {"binary_data": true}}],
            "parameters": {"binary_data_output": true, "other": [1, {"x": 2}]}}"#,
            &[],
        )
        .unwrap();
        assert_eq!(req.id.as_deref(), Some("r1"));
        assert!(req.binary_output);
        assert_eq!(
            req.outputs,
            vec![RequestedOutput {
                name: "z".into(),
                binary: Some(true),
                raw: false,
                classification: None,
            }]
        );
        let (shape, data) = f32_tensor(&req.inputs[0]);
        assert_eq!(shape, [2, 3]);
        assert_eq!(data, [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(req.inputs[1].tensor.data(), &TensorData::I64(vec![7, 8]));
    }

    #[test]
    fn data_read_as_it_comes_or_later_fails_alike() {
        // With name, datatype and shape first the data is read in passing; with the data first
        // it is read after the object. Either way a bad input gets the same error.
        for (fields, data) in [
            (
                r#""name": "x", "shape": [2], "datatype": "FP32""#,
                "[1, 2, 3]",
            ),
            (
                r#""name": "x", "shape": [2], "datatype": "FP32""#,
                r#"[1, "two"]"#,
            ),
            (
                r#""name": "x", "shape": [2], "datatype": "INT8""#,
                "[1, 300]",
            ),
            (
                r#""name": "x", "shape": [2, 2], "datatype": "FP32""#,
                "[[1, 2], [3]]",
            ),
        ] {
            let eager = decode(
                &format!(r#"{{"inputs": [{{{fields}, "data": {data}}}]}}"#),
                &[],
            )
            .unwrap_err();
            let later = decode(
                &format!(r#"{{"inputs": [{{"data": {data}, {fields}}}]}}"#),
                &[],
            )
            .unwrap_err();
            assert_eq!(eager, later, "{fields} {data}");
            assert!(eager.contains("'x'"), "{eager}");
        }
        let both = decode(
            r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
                "parameters": {"binary_data_size": 4}}]}"#,
            &[0; 4],
        )
        .unwrap_err();
        assert!(both.contains("both"), "{both}");
        let twice = decode(
            r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2],
                "shape": [1, 2]}]}"#,
            &[],
        )
        .unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
    }

    #[test]
    fn binary_inputs_of_every_kind() {
        let mut binary = Vec::new();
        for x in [1.5f32, -2.0] {
            binary.extend_from_slice(&x.to_le_bytes());
        }
        for s in [&b"ab"[..], b""] {
            binary.extend_from_slice(&(s.len() as u32).to_le_bytes());
            binary.extend_from_slice(s);
        }
        binary.extend_from_slice(&[1, 0, 1]);
        let req = decode(
            r#"{"inputs": [
                {"name": "f", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}},
                {"name": "s", "shape": [1, 2], "datatype": "BYTES", "parameters": {"binary_data_size": 10}},
                {"name": "b", "shape": [3], "datatype": "BOOL", "parameters": {"binary_data_size": 3}}
            ]}"#,
            &binary,
        )
        .unwrap();
        assert_eq!(
            req.inputs[0].tensor.data(),
            &TensorData::F32(vec![1.5, -2.0])
        );
        assert_eq!(
            req.inputs[1].tensor.data(),
            &TensorData::String(vec![b"ab".to_vec(), vec![]])
        );
        assert_eq!(
            req.inputs[2].tensor.data(),
            &TensorData::Bool(vec![true, false, true])
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let cases: &[(&str, &[u8], &str)] = &[
            ("{", &[], "malformed JSON"),
            ("[]", &[], "object"),
            ("{}", &[], "no 'inputs'"),
            (r#"{"inputs": []}"#, &[], "no 'inputs'"),
            (
                r#"{"inputs": [{"shape": [1], "datatype": "FP32", "data": [1]}]}"#,
                &[],
                "no 'name'",
            ),
            (
                r#"{"inputs": [{"name": "x", "datatype": "FP32", "data": [1]}]}"#,
                &[],
                "'shape'",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "data": [1]}]}"#,
                &[],
                "'datatype'",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}"#,
                &[],
                "no 'data'",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "BF16", "data": [1]}]}"#,
                &[],
                "unsupported datatype",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1]}]}"#,
                &[],
                "declared shape",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}]}"#,
                &[],
                "non-negative",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": ["a"]}]}"#,
                &[],
                "integer",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [4294967296, 4294967296, 4294967296], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}"#,
                &[0; 4],
                "too many elements",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1000000000], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}"#,
                &[0; 4],
                "= 4000000000 bytes",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}"#,
                &[0; 4],
                "only 4 bytes",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": 4}}]}"#,
                &[0; 8],
                "beyond",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 6}}]}"#,
                &[255, 255, 255, 255, 0, 0],
                "claims",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}"#,
                &[1, 0, 0, 0, 7],
                "needs 2",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}]}"#,
                &[0; 4],
                "both",
            ),
            (
                r#"{"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}], "outputs": [{}]}"#,
                &[],
                "no 'name'",
            ),
        ];
        for (json, binary, needle) in cases {
            let err = decode(json, binary).unwrap_err();
            assert!(
                err.contains(needle),
                "{json}: {err:?} does not mention {needle:?}"
            );
        }
    }

    #[test]
    fn responses_in_json_and_binary() {
        let a = NamedTensor::new(
            "a",
            Tensor::new(vec![1, 2], TensorData::F32(vec![0.5, 2.0])).unwrap(),
        );
        let s = NamedTensor::new(
            "s",
            Tensor::new(vec![1], TensorData::String(vec![b"hi".to_vec()])).unwrap(),
        );
        let (json, binary) = encode_infer(
            "m",
            3,
            Some("7"),
            &[
                ResponseOutput {
                    output: std::borrow::Cow::Borrowed(&a),
                    binary: false,
                },
                ResponseOutput {
                    output: std::borrow::Cow::Borrowed(&s),
                    binary: true,
                },
            ],
        );
        assert_eq!(
            String::from_utf8(json).unwrap(),
            r#"{"model_name":"m","model_version":"3","id":"7","outputs":[{"name":"a","datatype":"FP32","shape":[1,2],"data":[0.5,2.0]},{"name":"s","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}}]}"#
        );
        assert_eq!(binary, [2, 0, 0, 0, b'h', b'i']);
    }

    #[test]
    fn bytes_elements_keep_every_byte() {
        let elements = vec![b"a\0b".to_vec(), vec![0xff, 0xfe], Vec::new()];
        let s = NamedTensor::new(
            "s",
            Tensor::new(vec![3], TensorData::String(elements.clone())).unwrap(),
        );
        // JSON: UTF-8 as strings (NUL escaped), other bytes as {"b64": …}, never replaced.
        let (json, _) = encode_infer(
            "m",
            1,
            None,
            &[ResponseOutput {
                output: std::borrow::Cow::Borrowed(&s),
                binary: false,
            }],
        );
        let json = String::from_utf8(json).unwrap();
        assert!(
            json.contains(r#""data":["a\u0000b",{"b64":"//4="},""]"#),
            "{json}"
        );
        // And what a JSON request sends the same way decodes to the same bytes.
        let req = decode(
            r#"{"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES",
                "data": ["a\u0000b", {"b64": "//4="}, ""]}]}"#,
            &[],
        )
        .unwrap();
        assert_eq!(req.inputs[0].tensor.data(), &TensorData::String(elements));
    }
}
