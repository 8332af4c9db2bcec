//! The raw binary layout of tensor elements shared by KServe V2's binary data (HTTP) and
//! `raw_input_contents` / `raw_output_contents` (gRPC), and by TF Serving's `tensor_content`:
//! little-endian elements back to back; BOOL one byte each; BYTES elements each a 4-byte
//! little-endian length and that many bytes (KServe only: TF Serving strings are never raw).

use crate::{DataType, TensorData, f16};

/// Reads exactly `count` elements of `dtype` from `bytes`. Nothing is allocated beyond what
/// `bytes` holds, whatever `count` says.
pub fn decode(dtype: DataType, bytes: &[u8], count: usize) -> Result<TensorData, String> {
    if let Some(size) = dtype.size_of() {
        let want = count.checked_mul(size).ok_or("the shape is too large")?;
        if bytes.len() != want {
            return Err(format!(
                "{} bytes of data, but the shape needs {count} {dtype} elements = {want} bytes",
                bytes.len()
            ));
        }
    }
    macro_rules! le {
        ($variant:ident, $t:ty) => {
            TensorData::$variant(
                bytes
                    .chunks_exact(size_of::<$t>())
                    .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        };
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        DataType::U8 => TensorData::U8(bytes.to_vec()),
        DataType::I8 => TensorData::I8(bytes.iter().map(|&b| i8::from_le_bytes([b])).collect()),
        DataType::U16 => le!(U16, u16),
        DataType::U32 => le!(U32, u32),
        DataType::U64 => le!(U64, u64),
        DataType::I16 => le!(I16, i16),
        DataType::I32 => le!(I32, i32),
        DataType::I64 => le!(I64, i64),
        DataType::F32 => le!(F32, f32),
        DataType::F64 => le!(F64, f64),
        DataType::F16 => TensorData::F16(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]))
                .collect(),
        ),
        DataType::String => TensorData::String(decode_strings(bytes, count)?),
    })
}

/// Length-prefixed byte strings: exactly `count` of them must fill `bytes`.
fn decode_strings(mut bytes: &[u8], count: usize) -> Result<Vec<Vec<u8>>, String> {
    // Every element takes at least 4 bytes: the capacity is bounded by what was sent.
    let mut out = Vec::with_capacity(count.min(bytes.len() / 4));
    while !bytes.is_empty() {
        let Some((len, rest)) = bytes.split_first_chunk::<4>() else {
            return Err("BYTES data ends inside an element's 4-byte length".into());
        };
        let len = u32::from_le_bytes(*len) as usize;
        if len > rest.len() {
            return Err(format!(
                "a BYTES element claims {len} bytes but only {} remain",
                rest.len()
            ));
        }
        let (element, rest) = rest.split_at(len);
        out.push(element.to_vec());
        bytes = rest;
    }
    if out.len() != count {
        return Err(format!(
            "the data holds {} BYTES elements, the shape needs {count}",
            out.len()
        ));
    }
    Ok(out)
}

/// Appends the elements of `data` in the raw layout.
pub fn encode(data: &TensorData, out: &mut Vec<u8>) {
    macro_rules! le {
        ($v:expr) => {{
            out.reserve(std::mem::size_of_val($v.as_slice()));
            for x in $v {
                out.extend_from_slice(&x.to_le_bytes());
            }
        }};
    }
    match data {
        TensorData::Bool(v) => out.extend(v.iter().map(|&b| u8::from(b))),
        TensorData::U8(v) => out.extend_from_slice(v),
        TensorData::I8(v) => out.extend(v.iter().map(|&x| x.to_le_bytes()[0])),
        TensorData::U16(v) => le!(v),
        TensorData::U32(v) => le!(v),
        TensorData::U64(v) => le!(v),
        TensorData::I16(v) => le!(v),
        TensorData::I32(v) => le!(v),
        TensorData::I64(v) => le!(v),
        TensorData::F16(v) => le!(v),
        TensorData::F32(v) => le!(v),
        TensorData::F64(v) => le!(v),
        TensorData::String(v) => {
            for element in v {
                // Elements of 4 GiB or more cannot be framed; no model output comes near.
                let len = u32::try_from(element.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(element);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_type() {
        let samples = [
            TensorData::Bool(vec![true, false]),
            TensorData::U8(vec![0, 255]),
            TensorData::I8(vec![-128, 127]),
            TensorData::U16(vec![1, 65535]),
            TensorData::I16(vec![-2, 3]),
            TensorData::U32(vec![7, u32::MAX]),
            TensorData::I32(vec![-7, 9]),
            TensorData::U64(vec![u64::MAX, 1]),
            TensorData::I64(vec![i64::MIN, 5]),
            TensorData::F16(vec![f16::from_f32(1.5), f16::from_f32(-2.0)]),
            TensorData::F32(vec![0.25, -1e30]),
            TensorData::F64(vec![1e300, -0.5]),
            TensorData::String(vec![b"ab".to_vec(), Vec::new()]),
        ];
        for data in samples {
            let mut bytes = Vec::new();
            encode(&data, &mut bytes);
            assert_eq!(decode(data.dtype(), &bytes, 2).unwrap(), data);
        }
    }

    #[test]
    fn sizes_must_agree() {
        assert!(
            decode(DataType::F32, &[0; 4], 2)
                .unwrap_err()
                .contains("8 bytes")
        );
        assert!(
            decode(DataType::F32, &[0; 4], usize::MAX)
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            decode(DataType::String, &[255, 255, 255, 255, 1], 1)
                .unwrap_err()
                .contains("claims")
        );
        assert!(
            decode(DataType::String, &[1, 0], 1)
                .unwrap_err()
                .contains("4-byte length")
        );
        assert!(
            decode(DataType::String, &[0, 0, 0, 0], 2)
                .unwrap_err()
                .contains("needs 2")
        );
    }
}
