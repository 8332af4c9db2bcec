//! Dense tensors with typed, contiguous, row-major storage.

use crate::DataType;
use half::f16;

/// Typed element storage of a [`Tensor`], row-major.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    /// Booleans.
    Bool(Vec<bool>),
    /// `u8` elements.
    U8(Vec<u8>),
    /// `u16` elements.
    U16(Vec<u16>),
    /// `u32` elements.
    U32(Vec<u32>),
    /// `u64` elements.
    U64(Vec<u64>),
    /// `i8` elements.
    I8(Vec<i8>),
    /// `i16` elements.
    I16(Vec<i16>),
    /// `i32` elements.
    I32(Vec<i32>),
    /// `i64` elements.
    I64(Vec<i64>),
    /// Half-precision elements.
    F16(Vec<f16>),
    /// `f32` elements.
    F32(Vec<f32>),
    /// `f64` elements.
    F64(Vec<f64>),
    /// Byte strings.
    String(Vec<Vec<u8>>),
}

/// Applies `$body` to the typed vector inside a [`TensorData`], whatever its type.
#[macro_export]
macro_rules! with_tensor_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            $crate::TensorData::Bool($v) => $body,
            $crate::TensorData::U8($v) => $body,
            $crate::TensorData::U16($v) => $body,
            $crate::TensorData::U32($v) => $body,
            $crate::TensorData::U64($v) => $body,
            $crate::TensorData::I8($v) => $body,
            $crate::TensorData::I16($v) => $body,
            $crate::TensorData::I32($v) => $body,
            $crate::TensorData::I64($v) => $body,
            $crate::TensorData::F16($v) => $body,
            $crate::TensorData::F32($v) => $body,
            $crate::TensorData::F64($v) => $body,
            $crate::TensorData::String($v) => $body,
        }
    };
}

impl TensorData {
    /// An empty buffer of type `dtype` with room for `capacity` elements.
    pub fn with_capacity(dtype: DataType, capacity: usize) -> Self {
        match dtype {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(capacity)),
            DataType::U8 => TensorData::U8(Vec::with_capacity(capacity)),
            DataType::U16 => TensorData::U16(Vec::with_capacity(capacity)),
            DataType::U32 => TensorData::U32(Vec::with_capacity(capacity)),
            DataType::U64 => TensorData::U64(Vec::with_capacity(capacity)),
            DataType::I8 => TensorData::I8(Vec::with_capacity(capacity)),
            DataType::I16 => TensorData::I16(Vec::with_capacity(capacity)),
            DataType::I32 => TensorData::I32(Vec::with_capacity(capacity)),
            DataType::I64 => TensorData::I64(Vec::with_capacity(capacity)),
            DataType::F16 => TensorData::F16(Vec::with_capacity(capacity)),
            DataType::F32 => TensorData::F32(Vec::with_capacity(capacity)),
            DataType::F64 => TensorData::F64(Vec::with_capacity(capacity)),
            DataType::String => TensorData::String(Vec::with_capacity(capacity)),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F16(_) => DataType::F16,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::String(_) => DataType::String,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        with_tensor_data!(self, v => v.len())
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A dense tensor: shape plus row-major typed data whose length is the product of the shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// Largest rank a client may declare for a tensor: far above any model's, and small enough that
/// a declared shape can never make the server allocate or recurse without bound.
pub const MAX_RANK: usize = 64;

/// The element count of `shape`, or `None` when it overflows `usize`.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

impl Tensor {
    /// A tensor of `shape` holding `data`; fails when the element count does not match the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Result<Self, String> {
        match element_count(&shape) {
            Some(n) if n == data.len() => Ok(Self { shape, data }),
            Some(n) => Err(format!(
                "shape {shape:?} needs {n} elements but {} were given",
                data.len()
            )),
            None => Err(format!("shape {shape:?} is too large")),
        }
    }

    /// Dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Element storage.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Element type.
    pub fn dtype(&self) -> DataType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Takes the tensor apart.
    pub fn into_parts(self) -> (Vec<usize>, TensorData) {
        (self.shape, self.data)
    }
}

/// Applies `$body` to two [`TensorData`] of the same variant; `$mismatch` when they differ.
macro_rules! zip_tensor_data {
    ($a:expr, $b:expr, ($x:ident, $y:ident) => $body:expr, $mismatch:expr) => {
        match ($a, $b) {
            (TensorData::Bool($x), TensorData::Bool($y)) => $body,
            (TensorData::U8($x), TensorData::U8($y)) => $body,
            (TensorData::U16($x), TensorData::U16($y)) => $body,
            (TensorData::U32($x), TensorData::U32($y)) => $body,
            (TensorData::U64($x), TensorData::U64($y)) => $body,
            (TensorData::I8($x), TensorData::I8($y)) => $body,
            (TensorData::I16($x), TensorData::I16($y)) => $body,
            (TensorData::I32($x), TensorData::I32($y)) => $body,
            (TensorData::I64($x), TensorData::I64($y)) => $body,
            (TensorData::F16($x), TensorData::F16($y)) => $body,
            (TensorData::F32($x), TensorData::F32($y)) => $body,
            (TensorData::F64($x), TensorData::F64($y)) => $body,
            (TensorData::String($x), TensorData::String($y)) => $body,
            _ => $mismatch,
        }
    };
}

impl TensorData {
    /// A copy of elements `range`; `None` when the range is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Option<TensorData> {
        macro_rules! part {
            ($variant:ident, $v:expr) => {
                TensorData::$variant($v.get(range)?.to_vec())
            };
        }
        Some(match self {
            TensorData::Bool(v) => part!(Bool, v),
            TensorData::U8(v) => part!(U8, v),
            TensorData::U16(v) => part!(U16, v),
            TensorData::U32(v) => part!(U32, v),
            TensorData::U64(v) => part!(U64, v),
            TensorData::I8(v) => part!(I8, v),
            TensorData::I16(v) => part!(I16, v),
            TensorData::I32(v) => part!(I32, v),
            TensorData::I64(v) => part!(I64, v),
            TensorData::F16(v) => part!(F16, v),
            TensorData::F32(v) => part!(F32, v),
            TensorData::F64(v) => part!(F64, v),
            TensorData::String(v) => part!(String, v),
        })
    }

    /// Appends `other`'s elements; fails when the element types differ.
    pub fn append(&mut self, other: TensorData) -> Result<(), String> {
        let (want, got) = (self.dtype(), other.dtype());
        zip_tensor_data!(self, other, (a, b) => { a.extend(b); Ok(()) },
            Err(format!("cannot append {got} elements to {want} elements")))
    }
}

impl Tensor {
    /// Rows `start..start + len` along dimension 0, as a tensor of the same rank.
    pub fn slice_rows(&self, start: usize, len: usize) -> Result<Tensor, String> {
        let rows = *self.shape.first().ok_or("a scalar has no rows")?;
        let end = start
            .checked_add(len)
            .filter(|&e| e <= rows)
            .ok_or_else(|| {
                format!("rows {start}..{start}+{len} are out of range for {rows} rows")
            })?;
        let per_row = self.len().checked_div(rows).unwrap_or(0);
        let data = self
            .data
            .slice(start * per_row..end * per_row)
            .ok_or("row range out of bounds")?;
        let mut shape = self.shape.clone();
        shape[0] = len;
        Tensor::new(shape, data)
    }

    /// Stacks tensors along dimension 0; all must share type and the dimensions after the first.
    pub fn concat_rows(parts: Vec<Tensor>) -> Result<Tensor, String> {
        let mut iter = parts.into_iter();
        let first = iter.next().ok_or("nothing to concatenate")?;
        let (mut shape, mut data) = first.into_parts();
        if shape.is_empty() {
            return Err("cannot concatenate scalars".into());
        }
        for t in iter {
            if t.shape.get(1..) != shape.get(1..) {
                return Err(format!(
                    "cannot concatenate shapes {:?} and {:?}",
                    shape, t.shape
                ));
            }
            shape[0] += t.shape[0];
            data.append(t.data)?;
        }
        Tensor::new(shape, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_checks_element_count() {
        assert!(Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 6])).is_ok());
        assert!(Tensor::new(vec![2, 3], TensorData::F32(vec![0.0; 5])).is_err());
        assert!(Tensor::new(vec![usize::MAX, 3], TensorData::F32(vec![])).is_err());
        let scalar = Tensor::new(vec![], TensorData::I64(vec![7])).unwrap();
        assert_eq!(scalar.len(), 1);
    }

    #[test]
    fn rows_slice_and_concat() {
        let t = Tensor::new(vec![3, 2], TensorData::I32(vec![1, 2, 3, 4, 5, 6])).unwrap();
        let a = t.slice_rows(0, 1).unwrap();
        let b = t.slice_rows(1, 2).unwrap();
        assert_eq!(b.shape(), &[2, 2]);
        assert_eq!(b.data(), &TensorData::I32(vec![3, 4, 5, 6]));
        assert!(t.slice_rows(2, 2).is_err());
        assert_eq!(Tensor::concat_rows(vec![a, b]).unwrap(), t);
        let f = Tensor::new(vec![1, 2], TensorData::F32(vec![0.0; 2])).unwrap();
        assert!(Tensor::concat_rows(vec![t, f]).is_err());
    }

    #[test]
    fn kserve_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::from_kserve_name(d.kserve_name()), Some(d));
        }
    }
}

/// Row-major copy of `v` (shape `from`) into a buffer of shape `to` (same rank, every
/// dimension at least as large) filled with `pad`.
fn pad_elements<T: Clone>(v: &[T], from: &[usize], to: &[usize], pad: T) -> Vec<T> {
    let total: usize = to.iter().product();
    let mut out = vec![pad; total];
    let Some((&inner, outer_dims)) = from.split_last() else {
        if let (Some(x), Some(slot)) = (v.first(), out.first_mut()) {
            *slot = x.clone();
        }
        return out;
    };
    // Strides of the destination, for every dimension but the last (whose stride is 1).
    let mut strides = vec![1usize; to.len()];
    for d in (0..to.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * to[d + 1];
    }
    let runs: usize = outer_dims.iter().product();
    let mut index = vec![0usize; outer_dims.len()];
    for run in 0..runs {
        let dest: usize = index.iter().zip(&strides).map(|(i, s)| i * s).sum();
        let src = run * inner;
        out[dest..dest + inner].clone_from_slice(&v[src..src + inner]);
        // The next multi-index over the outer dimensions, last one fastest.
        for d in (0..index.len()).rev() {
            index[d] += 1;
            if index[d] < outer_dims[d] {
                break;
            }
            index[d] = 0;
        }
    }
    out
}

/// The first `len` entries of dimension `dim` of `v` (shape `shape`), row-major.
fn cut_elements<T: Clone>(v: &[T], shape: &[usize], dim: usize, len: usize) -> Vec<T> {
    let outer: usize = shape[..dim].iter().product();
    let inner: usize = shape[dim + 1..].iter().product();
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        let start = o * shape[dim] * inner;
        out.extend_from_slice(&v[start..start + len * inner]);
    }
    out
}

impl Tensor {
    /// This tensor grown to `shape` (same rank, no dimension smaller), the new elements set to
    /// `pad` (converted to the element type; strings pad with empty strings): how requests of
    /// different lengths share one batch.
    pub fn pad_to(&self, shape: &[usize], pad: f64) -> Result<Tensor, String> {
        if shape.len() != self.shape.len() || shape.iter().zip(&self.shape).any(|(t, f)| t < f) {
            return Err(format!("cannot pad shape {:?} to {shape:?}", self.shape));
        }
        element_count(shape).ok_or("the padded shape is too large")?;
        let from = &self.shape;
        // `as` saturates: a pad value out of the element type's range takes its nearest value.
        let data = match &self.data {
            TensorData::Bool(v) => TensorData::Bool(pad_elements(v, from, shape, pad != 0.0)),
            TensorData::U8(v) => TensorData::U8(pad_elements(v, from, shape, pad as u8)),
            TensorData::U16(v) => TensorData::U16(pad_elements(v, from, shape, pad as u16)),
            TensorData::U32(v) => TensorData::U32(pad_elements(v, from, shape, pad as u32)),
            TensorData::U64(v) => TensorData::U64(pad_elements(v, from, shape, pad as u64)),
            TensorData::I8(v) => TensorData::I8(pad_elements(v, from, shape, pad as i8)),
            TensorData::I16(v) => TensorData::I16(pad_elements(v, from, shape, pad as i16)),
            TensorData::I32(v) => TensorData::I32(pad_elements(v, from, shape, pad as i32)),
            TensorData::I64(v) => TensorData::I64(pad_elements(v, from, shape, pad as i64)),
            TensorData::F16(v) => {
                TensorData::F16(pad_elements(v, from, shape, half::f16::from_f64(pad)))
            }
            TensorData::F32(v) => TensorData::F32(pad_elements(v, from, shape, pad as f32)),
            TensorData::F64(v) => TensorData::F64(pad_elements(v, from, shape, pad)),
            TensorData::String(v) => TensorData::String(pad_elements(v, from, shape, Vec::new())),
        };
        Tensor::new(shape.to_vec(), data)
    }

    /// The first `len` entries along dimension `dim`: a padded output cut back to a request's
    /// own length.
    pub fn truncate_dim(&self, dim: usize, len: usize) -> Result<Tensor, String> {
        if self.shape.get(dim).is_none_or(|&d| d < len) {
            return Err(format!(
                "cannot cut dimension {dim} of shape {:?} to {len}",
                self.shape
            ));
        }
        let shape = &self.shape;
        macro_rules! cut {
            ($variant:ident, $v:expr) => {
                TensorData::$variant(cut_elements($v, shape, dim, len))
            };
        }
        let data = match &self.data {
            TensorData::Bool(v) => cut!(Bool, v),
            TensorData::U8(v) => cut!(U8, v),
            TensorData::U16(v) => cut!(U16, v),
            TensorData::U32(v) => cut!(U32, v),
            TensorData::U64(v) => cut!(U64, v),
            TensorData::I8(v) => cut!(I8, v),
            TensorData::I16(v) => cut!(I16, v),
            TensorData::I32(v) => cut!(I32, v),
            TensorData::I64(v) => cut!(I64, v),
            TensorData::F16(v) => cut!(F16, v),
            TensorData::F32(v) => cut!(F32, v),
            TensorData::F64(v) => cut!(F64, v),
            TensorData::String(v) => cut!(String, v),
        };
        let mut new_shape = shape.clone();
        new_shape[dim] = len;
        Tensor::new(new_shape, data)
    }
}

#[cfg(test)]
mod padding_tests {
    use super::*;

    #[test]
    fn pads_and_cuts_back() {
        let t = Tensor::new(vec![2, 2], TensorData::I64(vec![1, 2, 3, 4])).unwrap();
        let padded = t.pad_to(&[2, 4], 0.0).unwrap();
        assert_eq!(
            padded.data(),
            &TensorData::I64(vec![1, 2, 0, 0, 3, 4, 0, 0])
        );
        assert_eq!(padded.truncate_dim(1, 2).unwrap(), t);
        let t3 = Tensor::new(vec![1, 2, 2], TensorData::F32(vec![1.0, 2.0, 3.0, 4.0])).unwrap();
        let padded = t3.pad_to(&[1, 3, 3], -1.0).unwrap();
        assert_eq!(
            padded.data(),
            &TensorData::F32(vec![1.0, 2.0, -1.0, 3.0, 4.0, -1.0, -1.0, -1.0, -1.0])
        );
        assert_eq!(
            padded
                .truncate_dim(1, 2)
                .unwrap()
                .truncate_dim(2, 2)
                .unwrap(),
            t3
        );
        assert!(t.pad_to(&[2, 1], 0.0).is_err());
        assert!(t.pad_to(&[2], 0.0).is_err());
        assert!(t.truncate_dim(1, 3).is_err());
        assert!(t.truncate_dim(2, 1).is_err());
    }
}
