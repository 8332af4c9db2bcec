//! Conversions between Quiver's tensors and tract's.

use quiver_engine_api::{DataType, EngineError, Tensor, TensorData, f16};
use tract_onnx::prelude::tract_ndarray::{ArrayD, IxDyn};
use tract_onnx::prelude::{DatumType, TValue};

// A wildcard over tract's own enum: its quantised and symbolic types have no counterpart here, and
// types it adds later must not break the build.
#[allow(clippy::wildcard_enum_match_arm)]
pub(crate) fn dtype_from_tract(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::String,
        _ => return None,
    })
}

/// tract holds strings as Rust `String`s: an element that is not UTF-8 cannot be held (NUL and
/// every other UTF-8 text can). The refusal names the input, the element and the way out.
fn not_utf8(name: &str, element: usize, e: std::str::Utf8Error) -> EngineError {
    EngineError::InvalidInput(format!(
        "input '{name}': element {element} is not UTF-8 (byte {} is invalid); the tract engine \
         holds strings as text, so it takes only UTF-8 here (serve the model with \
         engine = \"onnxruntime\" for any bytes)",
        e.valid_up_to()
    ))
}

/// Refuses string elements of the input `name` that tract cannot hold, as [`to_tract`] would.
pub(crate) fn check(name: &str, t: &Tensor) -> Result<(), EngineError> {
    if let TensorData::String(v) = t.data() {
        for (i, b) in v.iter().enumerate() {
            std::str::from_utf8(b).map_err(|e| not_utf8(name, i, e))?;
        }
    }
    Ok(())
}

/// Moves the input `name` into a tract tensor; numeric data is not copied.
pub(crate) fn to_tract(name: &str, t: Tensor) -> Result<tract_onnx::prelude::Tensor, EngineError> {
    fn array<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>, EngineError> {
        ArrayD::from_shape_vec(IxDyn(shape), v)
            .map_err(|e| EngineError::InvalidInput(e.to_string()))
    }
    let (shape, data) = t.into_parts();
    Ok(match data {
        TensorData::String(v) => {
            let strings = v
                .into_iter()
                .enumerate()
                .map(|(i, b)| String::from_utf8(b).map_err(|e| not_utf8(name, i, e.utf8_error())))
                .collect::<Result<Vec<_>, _>>()?;
            array(&shape, strings)?.into()
        }
        TensorData::Bool(v) => array(&shape, v)?.into(),
        TensorData::U8(v) => array(&shape, v)?.into(),
        TensorData::U16(v) => array(&shape, v)?.into(),
        TensorData::U32(v) => array(&shape, v)?.into(),
        TensorData::U64(v) => array(&shape, v)?.into(),
        TensorData::I8(v) => array(&shape, v)?.into(),
        TensorData::I16(v) => array(&shape, v)?.into(),
        TensorData::I32(v) => array(&shape, v)?.into(),
        TensorData::I64(v) => array(&shape, v)?.into(),
        TensorData::F16(v) => array(&shape, v)?.into(),
        TensorData::F32(v) => array(&shape, v)?.into(),
        TensorData::F64(v) => array(&shape, v)?.into(),
    })
}

/// Copies a tract output into a Quiver tensor.
#[allow(clippy::wildcard_enum_match_arm)] // tract's enum, as above
pub(crate) fn from_tract(v: &TValue) -> Result<Tensor, EngineError> {
    let view = v
        .try_as_plain_ram()
        .map_err(|e| EngineError::Runtime(format!("{e:#}")))?;
    let shape = view.shape().to_vec();
    let err = |e: tract_onnx::prelude::TractError| EngineError::Runtime(format!("{e:#}"));
    macro_rules! copy {
        ($variant:ident, $t:ty) => {
            TensorData::$variant(view.as_slice::<$t>().map_err(err)?.to_vec())
        };
    }
    let data = match view.datum_type() {
        DatumType::Bool => copy!(Bool, bool),
        DatumType::U8 => copy!(U8, u8),
        DatumType::U16 => copy!(U16, u16),
        DatumType::U32 => copy!(U32, u32),
        DatumType::U64 => copy!(U64, u64),
        DatumType::I8 => copy!(I8, i8),
        DatumType::I16 => copy!(I16, i16),
        DatumType::I32 => copy!(I32, i32),
        DatumType::I64 => copy!(I64, i64),
        DatumType::F16 => copy!(F16, f16),
        DatumType::F32 => copy!(F32, f32),
        DatumType::F64 => copy!(F64, f64),
        DatumType::String => TensorData::String(
            view.as_slice::<String>()
                .map_err(err)?
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
        other => {
            return Err(EngineError::Unsupported(format!(
                "output element type {other:?}"
            )));
        }
    };
    Tensor::new(shape, data).map_err(EngineError::Runtime)
}
