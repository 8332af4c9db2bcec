//! String tensors as byte strings, through ONNX Runtime's C API.
//!
//! `ort`'s own string functions go through C strings and Rust `String`s, which lose everything
//! after a NUL byte and refuse bytes that are not UTF-8. ONNX Runtime itself holds each element as
//! a `std::string`, which takes any bytes: these functions fill and read elements with explicit
//! lengths, so every byte survives. This is the crate's only `unsafe` code.

#![allow(unsafe_code)]

use std::ptr;

use ort::AsPointer;
use ort::memory::Allocator;
use ort::value::{DynTensor, DynValue, TensorElementType};

/// A string tensor of `shape` holding `elements` (row-major; as many as the shape has).
pub(crate) fn to_tensor(shape: &[usize], elements: &[Vec<u8>]) -> Result<DynTensor, String> {
    let count = quiver_engine_api::element_count(shape)
        .ok_or_else(|| format!("shape {shape:?} is too large"))?;
    if count != elements.len() {
        return Err(format!(
            "shape {shape:?} needs {count} elements but {} were given",
            elements.len()
        ));
    }
    let dims = shape
        .iter()
        .map(|&d| i64::try_from(d).map_err(|_| format!("dimension {d} is too large")))
        .collect::<Result<Vec<i64>, String>>()?;
    // Every element starts as an empty string; only as many as the request holds.
    let mut tensor = DynTensor::new(&Allocator::default(), TensorElementType::String, dims)
        .map_err(|e| e.to_string())?;
    let value = tensor.ptr_mut();
    let api = ort::api();
    for (index, bytes) in elements.iter().enumerate() {
        let mut buffer: *mut std::ffi::c_char = ptr::null_mut();
        // SAFETY: `value` is the live string tensor made above, of `count` elements, and
        // `index < count`; ONNX Runtime resizes that element to `bytes.len()` bytes and writes the
        // address of its storage to `buffer`. The status it returns is consumed (and freed) by
        // `result_from_status`.
        let status = unsafe {
            ort::Error::result_from_status((api.GetResizedStringTensorElementBuffer)(
                value,
                index,
                bytes.len(),
                &mut buffer,
            ))
        };
        status.map_err(|e| format!("element {index}: {e}"))?;
        if bytes.is_empty() {
            continue;
        }
        if buffer.is_null() {
            return Err(format!("element {index}: ONNX Runtime gave no buffer"));
        }
        // SAFETY: `buffer` is the element's own storage, just resized to `bytes.len()` bytes and
        // not null; it belongs to the tensor, so it cannot overlap the request's `bytes`, and
        // nothing else touches the tensor until this function returns it.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), buffer.cast::<u8>(), bytes.len()) };
    }
    Ok(tensor)
}

/// The elements of the string tensor `value`, of `count` elements (its shape's product), with
/// their exact bytes.
pub(crate) fn elements(value: &DynValue, count: usize) -> Result<Vec<Vec<u8>>, String> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let value = value.ptr();
    let api = ort::api();
    let mut total = 0usize;
    // SAFETY: `value` is a live string tensor (the caller checked its element type) owned by the
    // borrowed `DynValue`; ONNX Runtime writes the sum of its elements' lengths to `total`.
    let status = unsafe {
        ort::Error::result_from_status((api.GetStringTensorDataLength)(value, &mut total))
    };
    status.map_err(|e| e.to_string())?;
    if total == 0 {
        return Ok(vec![Vec::new(); count]);
    }
    let mut content = vec![0u8; total];
    let mut offsets = vec![0usize; count];
    // SAFETY: `content` has room for `total` bytes and `offsets` for `count` offsets, the sizes
    // passed; ONNX Runtime checks both against the tensor (an error status otherwise) and writes
    // no further. Both are non-empty here, so neither pointer dangles.
    let status = unsafe {
        ort::Error::result_from_status((api.GetStringTensorContent)(
            value,
            content.as_mut_ptr().cast(),
            total,
            offsets.as_mut_ptr(),
            count,
        ))
    };
    status.map_err(|e| e.to_string())?;
    // Element i runs from its offset to the next one's (the last to the end).
    let ends = offsets.iter().skip(1).copied().chain([total]);
    offsets
        .iter()
        .zip(ends)
        .enumerate()
        .map(|(i, (&start, end))| {
            content
                .get(start..end)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| format!("element {i}: offsets {start}..{end} outside {total} bytes"))
        })
        .collect()
}
