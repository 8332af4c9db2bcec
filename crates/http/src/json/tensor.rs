//! Decoding nested JSON lists straight into a typed tensor buffer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quiver_engine_api::{DataType, Tensor, TensorData, f16};

use super::number;
use super::reader::{JsonReader, Next, SyntaxError};

/// Why a JSON tensor could not be decoded. Both kinds are the client's mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// Not JSON.
    Syntax(SyntaxError),
    /// JSON, but not a valid request.
    Invalid(String),
}

impl From<SyntaxError> for DecodeError {
    fn from(e: SyntaxError) -> Self {
        DecodeError::Syntax(e)
    }
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Syntax(e) => e.fmt(f),
            DecodeError::Invalid(m) => f.write_str(m),
        }
    }
}

/// Shorthand for a [`DecodeError::Invalid`].
pub fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError::Invalid(message.into())
}

/// Whether the object at the reader's position is `{"b64": …}`, a binary string value.
pub fn at_b64_object(r: &JsonReader<'_>) -> bool {
    let mut probe = r.clone();
    probe.begin_object().is_ok() && matches!(probe.next_key(&mut true), Ok(Some(k)) if k == "b64")
}

/// Infers a tensor's shape from list nesting as values are read, rejecting ragged lists.
#[derive(Debug, Default, Clone)]
struct ShapeTracker {
    /// Length of the lists seen at each depth.
    dims: Vec<Option<usize>>,
    /// Depth of the scalars, once one is seen.
    rank: Option<usize>,
}

const RAGGED: &str =
    "lists must be rectangular (same length at each level, scalars only at the innermost)";

impl ShapeTracker {
    #[inline]
    fn list(&mut self, depth: usize, len: usize) -> Result<(), &'static str> {
        if self.rank.is_some_and(|r| depth >= r) {
            return Err(RAGGED);
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(len),
            Some(l) if l == len => {}
            Some(_) => return Err(RAGGED),
        }
        Ok(())
    }

    #[inline]
    fn scalar(&mut self, depth: usize) -> Result<(), &'static str> {
        match self.rank {
            Some(r) if r == depth => Ok(()),
            Some(_) => Err(RAGGED),
            None if self.dims.len() > depth => Err(RAGGED),
            None => {
                self.rank = Some(depth);
                Ok(())
            }
        }
    }

    fn shape(&self) -> Option<Vec<usize>> {
        self.dims.iter().copied().collect()
    }
}

/// Reads JSON values of one tensor into a typed buffer.
#[derive(Debug, Clone)]
pub struct TensorBuilder {
    name: String,
    data: TensorData,
    shape: ShapeTracker,
    /// The element type takes JSON numbers.
    numeric: bool,
    /// Strings and `{"b64": …}` are welcome too (an image input of a numeric type): the first
    /// value decides which the tensor holds.
    bytes_ok: bool,
}

impl TensorBuilder {
    /// A builder for the input `name` of element type `dtype`.
    pub fn new(name: &str, dtype: DataType) -> Self {
        Self {
            name: name.to_owned(),
            data: TensorData::with_capacity(dtype, 0),
            shape: ShapeTracker::default(),
            numeric: !matches!(dtype, DataType::Bool | DataType::String),
            bytes_ok: false,
        }
    }

    /// Also takes strings and `{"b64": …}` values (when the first value is one), for inputs that
    /// take encoded images besides numbers.
    pub fn or_bytes(mut self, bytes_ok: bool) -> Self {
        self.bytes_ok = bytes_ok;
        self
    }

    /// Input name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, message: impl std::fmt::Display) -> DecodeError {
        invalid(format!("input '{}': {message}", self.name))
    }

    /// Reads one value (a scalar or nested lists) found at list depth `depth`.
    pub fn read_value(&mut self, r: &mut JsonReader<'_>, depth: usize) -> Result<(), DecodeError> {
        if r.peek()? != Next::Array {
            self.shape.scalar(depth).map_err(|m| self.err(m))?;
            return self.read_scalar(r);
        }
        // Nested lists are walked with an explicit stack of open lists (their lengths so far and
        // whether the next element is the first), not by recursion: one classification per
        // element, and nesting bounded by the reader's depth limit.
        r.begin_array()?;
        let mut open: Vec<(usize, bool)> = vec![(0, true)];
        while let Some(&mut (_, ref mut first)) = open.last_mut() {
            let more = r.next_element(first)?;
            // The innermost open list sits at `list_depth`; its elements one deeper.
            let list_depth = depth + open.len() - 1;
            if !more {
                let (len, _) = open.pop().unwrap_or_default();
                self.shape.list(list_depth, len).map_err(|m| self.err(m))?;
                if let Some(parent) = open.last_mut() {
                    parent.0 += 1;
                }
                continue;
            }
            let added = match r.peek()? {
                Next::Array => {
                    r.begin_array()?;
                    open.push((0, true));
                    continue;
                }
                Next::Number if self.numeric => {
                    self.shape.scalar(list_depth + 1).map_err(|m| self.err(m))?;
                    self.read_number_run(r)?
                }
                Next::Number | Next::String | Next::Bool | Next::Null | Next::Object => {
                    self.shape.scalar(list_depth + 1).map_err(|m| self.err(m))?;
                    self.read_scalar(r)?;
                    1
                }
            };
            if let Some(list) = open.last_mut() {
                list.0 += added;
            }
        }
        Ok(())
    }

    /// Reads a run of comma-separated numbers, at least one; returns how many. The innermost
    /// lists of a numeric tensor hold nearly all of a body's bytes, so this loop is the
    /// decoder's hot path: one type dispatch per run, not per number.
    fn read_number_run(&mut self, r: &mut JsonReader<'_>) -> Result<usize, DecodeError> {
        let mut count = 0;
        macro_rules! floats {
            ($v:expr, $t:ty, $convert:expr) => {
                loop {
                    $v.push($convert(number::read_float::<$t>(r)?));
                    count += 1;
                    if !r.comma_then_number() {
                        break;
                    }
                }
            };
        }
        match &mut self.data {
            TensorData::F32(v) => floats!(v, f32, |x| x),
            TensorData::F64(v) => floats!(v, f64, |x| x),
            TensorData::F16(v) => floats!(v, f32, f16::from_f32),
            TensorData::U8(_)
            | TensorData::U16(_)
            | TensorData::U32(_)
            | TensorData::U64(_)
            | TensorData::I8(_)
            | TensorData::I16(_)
            | TensorData::I32(_)
            | TensorData::I64(_)
            | TensorData::Bool(_)
            | TensorData::String(_) => loop {
                if let Err(message) = push_number(&mut self.data, r)? {
                    return Err(self.err(message));
                }
                count += 1;
                if !r.comma_then_number() {
                    break;
                }
            },
        }
        Ok(count)
    }

    /// Records that the values read at depth 1 were `len` elements of one outer list (TF
    /// Serving's row format, where `instances` is that list).
    pub fn close_outer(&mut self, len: usize) -> Result<(), DecodeError> {
        self.shape.list(0, len).map_err(|m| self.err(m))
    }

    /// Reads a flat list of values into a tensor of the given `shape` (KServe V2's `data`),
    /// accepting nested lists as long as the element count matches.
    pub fn read_flat(
        mut self,
        r: &mut JsonReader<'_>,
        shape: Vec<usize>,
    ) -> Result<Tensor, DecodeError> {
        self.read_value(r, 0)?;
        let got = self.data.len();
        Tensor::new(shape, self.data).map_err(|_| {
            invalid(format!(
                "input '{}': {got} values do not fill the declared shape",
                self.name
            ))
        })
    }

    /// The tensor read so far.
    pub fn finish(self) -> Result<Tensor, DecodeError> {
        let Some(shape) = self.shape.shape() else {
            return Err(self.err(RAGGED));
        };
        let name = self.name;
        Tensor::new(shape, self.data).map_err(|e| invalid(format!("input '{name}': {e}")))
    }

    fn read_scalar(&mut self, r: &mut JsonReader<'_>) -> Result<(), DecodeError> {
        let next = r.peek()?;
        if self.bytes_ok
            && self.data.is_empty()
            && (next == Next::String || (next == Next::Object && at_b64_object(r)))
        {
            self.data = TensorData::String(Vec::new());
            self.numeric = false;
            self.bytes_ok = false;
        }
        let dtype = self.data.dtype();
        match (&mut self.data, next) {
            (TensorData::String(v), Next::String) => {
                v.push(r.read_string()?.into_owned().into_bytes())
            }
            (TensorData::String(v), Next::Object) => {
                let bytes = read_b64(r).map_err(|e| match e {
                    DecodeError::Invalid(m) => invalid(format!("input '{}': {m}", self.name)),
                    syntax @ DecodeError::Syntax(_) => syntax,
                })?;
                v.push(bytes);
            }
            (TensorData::Bool(v), Next::Bool) => v.push(r.read_bool()?),
            (data, Next::Number) if self.numeric => {
                push_number(data, r)?.map_err(|m| self.err(m))?;
            }
            (_, Next::Object) if at_b64_object(r) => {
                return Err(self.err(format!(
                    "{{\"b64\": …}} values are for string inputs; this input is {}",
                    dtype.tf_name()
                )));
            }
            (_, other) => {
                return Err(self.err(format!(
                    "expected {} for data type {}, got {}",
                    expected_for(dtype),
                    dtype.tf_name(),
                    other.describe()
                )));
            }
        }
        Ok(())
    }
}

fn expected_for(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "true or false",
        DataType::String => "a string or {\"b64\": …}",
        DataType::F16 | DataType::F32 | DataType::F64 => "a number",
        DataType::U8
        | DataType::U16
        | DataType::U32
        | DataType::U64
        | DataType::I8
        | DataType::I16
        | DataType::I32
        | DataType::I64 => "an integer",
    }
}

/// Reads `{"b64": "…"}` and decodes it.
pub fn read_b64(r: &mut JsonReader<'_>) -> Result<Vec<u8>, DecodeError> {
    r.begin_object()?;
    let mut first = true;
    match r.next_key(&mut first)? {
        Some(k) if k == "b64" => {}
        _ => return Err(invalid("expected an object of the form {\"b64\": \"…\"}")),
    }
    if r.peek()? != Next::String {
        return Err(invalid("the value of \"b64\" must be a base64 string"));
    }
    let text = r.read_string()?;
    let bytes = BASE64
        .decode(text.as_bytes())
        .map_err(|e| invalid(format!("invalid base64 in \"b64\": {e}")))?;
    if r.next_key(&mut first)?.is_some() {
        return Err(invalid(
            "an object of the form {\"b64\": \"…\"} has no other keys",
        ));
    }
    Ok(bytes)
}

/// Reads the number at the reader's position into `data`: a syntax error, or else a value the
/// element type cannot take (the inner error).
fn push_number(
    data: &mut TensorData,
    r: &mut JsonReader<'_>,
) -> Result<Result<(), String>, SyntaxError> {
    let dtype = data.dtype();
    macro_rules! int {
        ($v:expr) => {{
            let token = r.read_number_token()?;
            match number::to_int(&token, dtype) {
                Ok(value) => $v.push(value),
                Err(message) => return Ok(Err(message)),
            }
        }};
    }
    match data {
        TensorData::F32(v) => v.push(number::read_float::<f32>(r)?),
        TensorData::F64(v) => v.push(number::read_float::<f64>(r)?),
        TensorData::F16(v) => v.push(f16::from_f32(number::read_float::<f32>(r)?)),
        TensorData::U8(v) => int!(v),
        TensorData::U16(v) => int!(v),
        TensorData::U32(v) => int!(v),
        TensorData::U64(v) => int!(v),
        TensorData::I8(v) => int!(v),
        TensorData::I16(v) => int!(v),
        TensorData::I32(v) => int!(v),
        TensorData::I64(v) => int!(v),
        TensorData::Bool(_) | TensorData::String(_) => {
            return Ok(Err(format!(
                "numbers are not valid for {}",
                dtype.tf_name()
            )));
        }
    }
    Ok(Ok(()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str, dtype: DataType) -> Result<Tensor, DecodeError> {
        let mut r = JsonReader::new(json.as_bytes()).unwrap();
        let mut b = TensorBuilder::new("x", dtype);
        b.read_value(&mut r, 0)?;
        r.finish()?;
        b.finish()
    }

    #[test]
    fn shapes_from_nesting() {
        let t = decode("[[1, 2, 3], [4, 5, 6]]", DataType::F32).unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        assert_eq!(
            t.data(),
            &TensorData::F32(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
        );
        assert_eq!(decode("7", DataType::I64).unwrap().shape(), &[] as &[usize]);
        assert_eq!(decode("[]", DataType::F32).unwrap().shape(), &[0]);
        assert_eq!(decode("[[], []]", DataType::F32).unwrap().shape(), &[2, 0]);
    }

    #[test]
    fn ragged_lists_are_rejected() {
        for ragged in [
            "[[1, 2], [3]]",
            "[1, [2]]",
            "[[1], 2]",
            "[[1], []]",
            "[[], [1]]",
            "[[[]], [1]]",
        ] {
            let e = decode(ragged, DataType::F32).unwrap_err();
            assert!(e.to_string().contains("rectangular"), "{ragged}: {e}");
        }
    }

    #[test]
    fn numbers_by_dtype() {
        let t = decode("[NaN, Infinity, -Infinity, 1e3, -0.5]", DataType::F32).unwrap();
        let TensorData::F32(v) = t.data() else {
            panic!()
        };
        assert!(v[0].is_nan() && v[1] == f32::INFINITY && v[2] == f32::NEG_INFINITY);
        assert_eq!(&v[3..], &[1000.0, -0.5]);
        assert_eq!(
            decode("[255, 0]", DataType::U8).unwrap().data(),
            &TensorData::U8(vec![255, 0])
        );
        let e = decode("[256]", DataType::U8).unwrap_err().to_string();
        assert_eq!(e, "input 'x': 256 is out of range for DT_UINT8");
        let e = decode("[-1]", DataType::U64).unwrap_err().to_string();
        assert!(e.contains("out of range"), "{e}");
        let e = decode("[9223372036854775808]", DataType::I64)
            .unwrap_err()
            .to_string();
        assert!(e.contains("out of range"), "{e}");
        assert_eq!(
            decode("[18446744073709551615]", DataType::U64)
                .unwrap()
                .data(),
            &TensorData::U64(vec![u64::MAX])
        );
        let e = decode("[1.5]", DataType::I32).unwrap_err().to_string();
        assert!(e.contains("not an integer"), "{e}");
        let t = decode("[1, 2.5]", DataType::F64).unwrap();
        assert_eq!(t.data(), &TensorData::F64(vec![1.0, 2.5]));
        let t = decode("[0.5]", DataType::F16).unwrap();
        assert_eq!(t.data(), &TensorData::F16(vec![f16::from_f32(0.5)]));
    }

    #[test]
    fn mixed_types_are_rejected() {
        let e = decode(r#"[1, "a"]"#, DataType::F32)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "input 'x': expected a number for data type DT_FLOAT, got a string"
        );
        assert!(decode("[true, 1]", DataType::Bool).is_err());
        assert!(decode("[null]", DataType::F32).is_err());
        assert!(
            decode(r#"[{"b64": "aGk="}]"#, DataType::F32)
                .unwrap_err()
                .to_string()
                .contains("string inputs")
        );
        assert!(decode(r#"[1, "a"]"#, DataType::String).is_err());
    }

    #[test]
    fn strings_and_b64() {
        let t = decode(r#"["héllo", {"b64": "AAH/"}]"#, DataType::String).unwrap();
        assert_eq!(
            t.data(),
            &TensorData::String(vec!["héllo".as_bytes().to_vec(), vec![0, 1, 255]])
        );
        assert!(decode(r#"[{"b64": "!!"}]"#, DataType::String).is_err());
        assert!(decode(r#"[{"b64": "AA==", "x": 1}]"#, DataType::String).is_err());
        assert!(decode(r#"[{"c": "AA=="}]"#, DataType::String).is_err());
    }

    #[test]
    fn bools() {
        let t = decode("[[true, false]]", DataType::Bool).unwrap();
        assert_eq!(t.data(), &TensorData::Bool(vec![true, false]));
        assert!(decode("[0, 1]", DataType::Bool).is_err());
    }

    #[test]
    fn flat_data_with_declared_shape() {
        let mut r = JsonReader::new(b"[1, 2, 3, 4, 5, 6]").unwrap();
        let t = TensorBuilder::new("x", DataType::I32)
            .read_flat(&mut r, vec![2, 3])
            .unwrap();
        assert_eq!(t.shape(), &[2, 3]);
        let mut r = JsonReader::new(b"[1, 2, 3]").unwrap();
        assert!(
            TensorBuilder::new("x", DataType::I32)
                .read_flat(&mut r, vec![2, 3])
                .is_err()
        );
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(decode(&deep, DataType::F32).is_err());
    }
}
