//! Element types and the names each protocol gives them.

use std::fmt;

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// Boolean.
    Bool,
    /// Unsigned 8-bit integer.
    U8,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 64-bit integer.
    U64,
    /// Signed 8-bit integer.
    I8,
    /// Signed 16-bit integer.
    I16,
    /// Signed 32-bit integer.
    I32,
    /// Signed 64-bit integer.
    I64,
    /// IEEE half-precision float.
    F16,
    /// IEEE single-precision float.
    F32,
    /// IEEE double-precision float.
    F64,
    /// Byte strings (TensorFlow's `DT_STRING`, KServe's `BYTES`).
    String,
}

impl DataType {
    /// Every data type, for tests and tables.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::F32,
        DataType::F64,
        DataType::String,
    ];

    /// Size of one element in bytes; `None` for variable-length strings.
    pub fn size_of(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => Some(1),
            DataType::U16 | DataType::I16 | DataType::F16 => Some(2),
            DataType::U32 | DataType::I32 | DataType::F32 => Some(4),
            DataType::U64 | DataType::I64 | DataType::F64 => Some(8),
            DataType::String => None,
        }
    }

    /// TensorFlow's name, as TF Serving's REST metadata shows it (`DT_FLOAT`).
    pub fn tf_name(self) -> &'static str {
        match self {
            DataType::Bool => "DT_BOOL",
            DataType::U8 => "DT_UINT8",
            DataType::U16 => "DT_UINT16",
            DataType::U32 => "DT_UINT32",
            DataType::U64 => "DT_UINT64",
            DataType::I8 => "DT_INT8",
            DataType::I16 => "DT_INT16",
            DataType::I32 => "DT_INT32",
            DataType::I64 => "DT_INT64",
            DataType::F16 => "DT_HALF",
            DataType::F32 => "DT_FLOAT",
            DataType::F64 => "DT_DOUBLE",
            DataType::String => "DT_STRING",
        }
    }

    /// The KServe V2 / Open Inference Protocol name (`FP32`).
    pub fn kserve_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::String => "BYTES",
        }
    }

    /// Name in Triton's model configuration (`TYPE_FP32`; BYTES is `TYPE_STRING`).
    pub fn triton_config_name(self) -> &'static str {
        match self {
            DataType::Bool => "TYPE_BOOL",
            DataType::U8 => "TYPE_UINT8",
            DataType::U16 => "TYPE_UINT16",
            DataType::U32 => "TYPE_UINT32",
            DataType::U64 => "TYPE_UINT64",
            DataType::I8 => "TYPE_INT8",
            DataType::I16 => "TYPE_INT16",
            DataType::I32 => "TYPE_INT32",
            DataType::I64 => "TYPE_INT64",
            DataType::F16 => "TYPE_FP16",
            DataType::F32 => "TYPE_FP32",
            DataType::F64 => "TYPE_FP64",
            DataType::String => "TYPE_STRING",
        }
    }

    /// The data type with KServe V2 name `name`.
    pub fn from_kserve_name(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.kserve_name() == name)
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kserve_name())
    }
}
