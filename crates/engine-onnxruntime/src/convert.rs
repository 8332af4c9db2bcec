//! Conversions between Quiver's tensors and ONNX Runtime's values.
//!
//! Inputs are moved, not copied: ONNX Runtime reads the request's own buffers (the value keeps
//! the `Vec` alive). Only string tensors are copied, into ONNX Runtime's own strings, byte for byte
//! ([`crate::strings`]). Outputs are copied once, from ONNX Runtime's buffer into the response's.

use ort::session::SessionInputValue;
use ort::value::{DynValue, TensorElementType, ValueType};
use quiver_engine_api::{DataType, EngineError, Tensor, TensorData, f16};

/// Quiver's data type for an ONNX Runtime element type; `None` for those Quiver does not serve.
// ort's enum grows with ONNX (float8, int4, ...); those types have no counterpart in the protocols
// Quiver speaks, and a new one must not break the build.
#[allow(clippy::wildcard_enum_match_arm)]
pub(crate) fn dtype_from_ort(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::String,
        _ => return None,
    })
}

fn invalid(e: impl std::fmt::Display) -> EngineError {
    EngineError::InvalidInput(e.to_string())
}

/// Hands a Quiver tensor to ONNX Runtime; numeric data is not copied.
pub(crate) fn to_ort(t: Tensor) -> Result<SessionInputValue<'static>, EngineError> {
    fn owned<T>(shape: Vec<usize>, v: Vec<T>) -> Result<SessionInputValue<'static>, EngineError>
    where
        T: ort::value::PrimitiveTensorElementType + std::fmt::Debug + Clone + 'static,
    {
        Ok(ort::value::Tensor::from_array((shape, v))
            .map_err(invalid)?
            .into_dyn()
            .into())
    }
    let (shape, data) = t.into_parts();
    match data {
        TensorData::String(v) => Ok(crate::strings::to_tensor(&shape, &v)
            .map_err(invalid)?
            .into_dyn()
            .into()),
        TensorData::Bool(v) => owned(shape, v),
        TensorData::U8(v) => owned(shape, v),
        TensorData::U16(v) => owned(shape, v),
        TensorData::U32(v) => owned(shape, v),
        TensorData::U64(v) => owned(shape, v),
        TensorData::I8(v) => owned(shape, v),
        TensorData::I16(v) => owned(shape, v),
        TensorData::I32(v) => owned(shape, v),
        TensorData::I64(v) => owned(shape, v),
        TensorData::F16(v) => owned(shape, v),
        TensorData::F32(v) => owned(shape, v),
        TensorData::F64(v) => owned(shape, v),
    }
}

/// Copies an ONNX Runtime output into a Quiver tensor.
#[allow(clippy::wildcard_enum_match_arm)] // ort's enums, as above
pub(crate) fn from_ort(name: &str, value: &DynValue) -> Result<Tensor, EngineError> {
    let runtime = |e: ort::Error| EngineError::Runtime(format!("output '{name}': {e}"));
    let ValueType::Tensor {
        ty,
        shape: declared,
        ..
    } = value.dtype()
    else {
        return Err(EngineError::Unsupported(format!(
            "output '{name}' is not a tensor"
        )));
    };
    macro_rules! copy {
        ($variant:ident, $t:ty) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(runtime)?;
            (shape.to_vec(), TensorData::$variant(data.to_vec()))
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Bool => copy!(Bool, bool),
        TensorElementType::Uint8 => copy!(U8, u8),
        TensorElementType::Uint16 => copy!(U16, u16),
        TensorElementType::Uint32 => copy!(U32, u32),
        TensorElementType::Uint64 => copy!(U64, u64),
        TensorElementType::Int8 => copy!(I8, i8),
        TensorElementType::Int16 => copy!(I16, i16),
        TensorElementType::Int32 => copy!(I32, i32),
        TensorElementType::Int64 => copy!(I64, i64),
        TensorElementType::Float16 => copy!(F16, f16),
        TensorElementType::Float32 => copy!(F32, f32),
        TensorElementType::Float64 => copy!(F64, f64),
        TensorElementType::String => {
            let shape: Vec<i64> = declared.to_vec();
            let count = shape
                .iter()
                .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
                .ok_or_else(|| {
                    EngineError::Runtime(format!("output '{name}' has shape {shape:?}"))
                })?;
            let elements = crate::strings::elements(value, count)
                .map_err(|e| EngineError::Runtime(format!("output '{name}': {e}")))?;
            (shape, TensorData::String(elements))
        }
        other => {
            return Err(EngineError::Unsupported(format!(
                "output '{name}' has element type {other:?}"
            )));
        }
    };
    let shape = shape
        .into_iter()
        .map(|d| {
            usize::try_from(d)
                .map_err(|_| EngineError::Runtime(format!("output '{name}' has dimension {d}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Tensor::new(shape, data).map_err(EngineError::Runtime)
}
