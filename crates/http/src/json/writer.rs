//! Appending JSON tokens to a byte buffer: tensors are written element by element, so the
//! response is built in one pass without an intermediate value tree.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use quiver_engine_api::{Tensor, TensorData};

/// Appends `s` as a JSON string literal.
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
    out.push(b'"');
}

/// Appends a float; non-finite values as TF Serving writes them (`NaN`, `Infinity`).
pub fn f64_value(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        non_finite(out, v.is_nan(), v.is_sign_negative());
    }
}

/// Appends an `f32` in its shortest form (`0.1`, not `0.10000000149011612`).
pub fn f32_value(out: &mut Vec<u8>, v: f32) {
    if v.is_finite() {
        out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
    } else {
        non_finite(out, v.is_nan(), v.is_sign_negative());
    }
}

fn non_finite(out: &mut Vec<u8>, nan: bool, negative: bool) {
    out.extend_from_slice(match (nan, negative) {
        (true, _) => b"NaN",
        (false, true) => b"-Infinity",
        (false, false) => b"Infinity",
    });
}

/// Appends an integer.
pub fn int<I: itoa::Integer>(out: &mut Vec<u8>, v: I) {
    out.extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
}

/// How byte-string elements are written. JSON strings are Unicode text: any UTF-8 element
/// (NUL and control characters escaped) is exact as a string; other bytes cannot be a JSON string
/// and are never replaced — they are written as `{"b64": …}`, the form requests may use too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bytes {
    /// As JSON strings when they are UTF-8, else as `{"b64": …}` (TF Serving, and KServe V2
    /// JSON, whose clients ask for binary data output to get raw bytes).
    TextOrBase64,
    /// Always as `{"b64": …}` (TF Serving, for outputs named `*_bytes`).
    Base64,
}

/// Appends one byte string.
pub fn bytes_value(out: &mut Vec<u8>, v: &[u8], mode: Bytes) {
    match (mode, std::str::from_utf8(v)) {
        (Bytes::TextOrBase64, Ok(s)) => string(out, s),
        (Bytes::TextOrBase64 | Bytes::Base64, _) => {
            out.extend_from_slice(b"{\"b64\":\"");
            out.extend_from_slice(BASE64.encode(v).as_bytes());
            out.extend_from_slice(b"\"}");
        }
    }
}

/// Writes elements `range` of `data` one after the other, separated by commas.
fn elements(out: &mut Vec<u8>, data: &TensorData, start: usize, end: usize, mode: Bytes) {
    macro_rules! each {
        ($v:expr, $x:ident => $write:expr) => {
            for (i, $x) in $v[start..end].iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                $write;
            }
        };
    }
    match data {
        TensorData::Bool(v) => {
            each!(v, x => out.extend_from_slice(if *x { b"true" } else { b"false" }))
        }
        TensorData::U8(v) => each!(v, x => int(out, *x)),
        TensorData::U16(v) => each!(v, x => int(out, *x)),
        TensorData::U32(v) => each!(v, x => int(out, *x)),
        TensorData::U64(v) => each!(v, x => int(out, *x)),
        TensorData::I8(v) => each!(v, x => int(out, *x)),
        TensorData::I16(v) => each!(v, x => int(out, *x)),
        TensorData::I32(v) => each!(v, x => int(out, *x)),
        TensorData::I64(v) => each!(v, x => int(out, *x)),
        TensorData::F16(v) => each!(v, x => f32_value(out, x.to_f32())),
        TensorData::F32(v) => each!(v, x => f32_value(out, *x)),
        TensorData::F64(v) => each!(v, x => f64_value(out, *x)),
        TensorData::String(v) => each!(v, x => bytes_value(out, x, mode)),
    }
}

/// Writes elements `offset..` of `data` nested as `shape` (a scalar when `shape` is empty).
pub fn nested(out: &mut Vec<u8>, data: &TensorData, shape: &[usize], offset: usize, mode: Bytes) {
    match shape {
        [] => elements(out, data, offset, offset + 1, mode),
        [n] => {
            out.push(b'[');
            elements(out, data, offset, offset + n, mode);
            out.push(b']');
        }
        [n, rest @ ..] => {
            let stride: usize = rest.iter().product();
            out.push(b'[');
            for i in 0..*n {
                if i > 0 {
                    out.push(b',');
                }
                nested(out, data, rest, offset + i * stride, mode);
            }
            out.push(b']');
        }
    }
}

/// Writes the whole tensor as nested lists.
pub fn tensor(out: &mut Vec<u8>, t: &Tensor, mode: Bytes) {
    nested(out, t.data(), t.shape(), 0, mode);
}

/// Writes the tensor's elements as one flat list.
pub fn flat(out: &mut Vec<u8>, t: &Tensor, mode: Bytes) {
    out.push(b'[');
    elements(out, t.data(), 0, t.len(), mode);
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn scalars() {
        assert_eq!(text(|o| f32_value(o, 0.1)), "0.1");
        assert_eq!(text(|o| f32_value(o, 3.0)), "3.0");
        assert_eq!(text(|o| f32_value(o, f32::NAN)), "NaN");
        assert_eq!(text(|o| f64_value(o, f64::NEG_INFINITY)), "-Infinity");
        assert_eq!(text(|o| int(o, -42i64)), "-42");
        assert_eq!(
            text(|o| string(o, "a\"b\\\n\u{1}é")),
            r#""a\"b\\\n\u0001é""#
        );
        assert_eq!(
            text(|o| bytes_value(o, b"hi", Bytes::Base64)),
            r#"{"b64":"aGk="}"#
        );
        assert_eq!(
            text(|o| bytes_value(o, b"\xff", Bytes::TextOrBase64)),
            r#"{"b64":"/w=="}"#
        );
        assert_eq!(
            text(|o| bytes_value(o, b"a\0b\xc3\xa9", Bytes::TextOrBase64)),
            "\"a\\u0000b\u{e9}\""
        );
    }

    #[test]
    fn nesting() {
        let t = Tensor::new(vec![2, 3], TensorData::I32(vec![1, 2, 3, 4, 5, 6])).unwrap();
        assert_eq!(
            text(|o| tensor(o, &t, Bytes::TextOrBase64)),
            "[[1,2,3],[4,5,6]]"
        );
        assert_eq!(text(|o| flat(o, &t, Bytes::TextOrBase64)), "[1,2,3,4,5,6]");
        let s = Tensor::new(vec![], TensorData::Bool(vec![true])).unwrap();
        assert_eq!(text(|o| tensor(o, &s, Bytes::TextOrBase64)), "true");
        let e = Tensor::new(vec![2, 0], TensorData::F32(vec![])).unwrap();
        assert_eq!(text(|o| tensor(o, &e, Bytes::TextOrBase64)), "[[],[]]");
    }
}
