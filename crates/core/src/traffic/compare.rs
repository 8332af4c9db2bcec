//! Comparing a shadow's answer with the primary's: exact for integers, booleans and strings,
//! within a tolerance for floats, and the top-1 class for float outputs with classes (a last
//! dimension of more than one).

use quiver_engine_api::{NamedTensor, TensorData};

/// What a comparison found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Comparison {
    /// The answers disagree.
    pub(crate) disagreed: bool,
    /// The largest absolute difference between float outputs (`None`: no float output).
    pub(crate) difference: Option<f64>,
}

/// Compares every output of the primary with the shadow's output of the same name; a missing
/// output or a different shape is a disagreement.
pub(crate) fn compare(
    primary: &[NamedTensor],
    shadow: &[NamedTensor],
    tolerance: f64,
) -> Comparison {
    let mut result = Comparison {
        disagreed: false,
        difference: None,
    };
    for output in primary {
        let Some(other) = shadow.iter().find(|s| s.name == output.name) else {
            result.disagreed = true;
            continue;
        };
        if other.tensor.shape() != output.tensor.shape() {
            result.disagreed = true;
            continue;
        }
        let classes = output.tensor.shape().last().copied().unwrap_or(1);
        match (floats(output.tensor.data()), floats(other.tensor.data())) {
            (Some(a), Some(b)) => {
                let (difference, outside) = float_difference(&a, &b, tolerance);
                result.difference =
                    Some(result.difference.map_or(difference, |d| d.max(difference)));
                if outside || (classes > 1 && !same_top1(&a, &b, classes)) {
                    result.disagreed = true;
                }
            }
            (None, None) => {
                if output.tensor.data() != other.tensor.data() {
                    result.disagreed = true;
                }
            }
            _ => result.disagreed = true,
        }
    }
    result
}

/// The elements of a float tensor, widened; `None` for other types.
fn floats(data: &TensorData) -> Option<Vec<f64>> {
    match data {
        TensorData::F16(v) => Some(v.iter().map(|x| f64::from(x.to_f32())).collect()),
        TensorData::F32(v) => Some(v.iter().map(|&x| f64::from(x)).collect()),
        TensorData::F64(v) => Some(v.clone()),
        TensorData::Bool(_)
        | TensorData::U8(_)
        | TensorData::U16(_)
        | TensorData::U32(_)
        | TensorData::U64(_)
        | TensorData::I8(_)
        | TensorData::I16(_)
        | TensorData::I32(_)
        | TensorData::I64(_)
        | TensorData::String(_) => None,
    }
}

/// The largest |a - b|, and whether any pair is further apart than `tolerance * max(1, |a|)`
/// (a NaN on one side only counts as outside).
fn float_difference(a: &[f64], b: &[f64], tolerance: f64) -> (f64, bool) {
    let mut largest = 0.0f64;
    let mut outside = false;
    for (&x, &y) in a.iter().zip(b) {
        if x.is_nan() || y.is_nan() {
            outside |= x.is_nan() != y.is_nan();
            continue;
        }
        let difference = (x - y).abs();
        largest = largest.max(difference);
        outside |= difference > tolerance * x.abs().max(1.0);
    }
    (largest, outside)
}

/// Whether each row (of `classes` elements) has its largest element at the same place.
fn same_top1(a: &[f64], b: &[f64], classes: usize) -> bool {
    let top = |row: &[f64]| {
        row.iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, &x)| {
                if x > best.1 { (i, x) } else { best }
            })
            .0
    };
    a.chunks(classes)
        .zip(b.chunks(classes))
        .all(|(x, y)| top(x) == top(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::Tensor;

    fn output(name: &str, shape: &[usize], data: TensorData) -> NamedTensor {
        NamedTensor::new(name, Tensor::new(shape.to_vec(), data).unwrap())
    }

    #[test]
    fn floats_within_tolerance_agree_and_report_their_difference() {
        let a = [output("y", &[1, 1], TensorData::F32(vec![2.5]))];
        let b = [output("y", &[1, 1], TensorData::F32(vec![2.500_1]))];
        let c = compare(&a, &b, 1e-3);
        assert!(!c.disagreed);
        assert!((c.difference.unwrap() - 1e-4).abs() < 1e-5);
        assert!(compare(&a, &b, 1e-6).disagreed);
    }

    #[test]
    fn a_different_top1_disagrees_even_within_tolerance() {
        let a = [output(
            "p",
            &[1, 3],
            TensorData::F32(vec![0.1, 0.500_01, 0.5]),
        )];
        let b = [output(
            "p",
            &[1, 3],
            TensorData::F32(vec![0.1, 0.5, 0.500_01]),
        )];
        assert!(compare(&a, &b, 1.0).disagreed);
        assert!(!compare(&a, &a, 0.0).disagreed);
    }

    #[test]
    fn integers_and_strings_must_match_exactly() {
        let a = [output("c", &[2], TensorData::I64(vec![1, 2]))];
        let b = [output("c", &[2], TensorData::I64(vec![1, 3]))];
        assert!(compare(&a, &b, 1.0).disagreed);
        assert!(!compare(&a, &a, 0.0).disagreed);
        assert_eq!(compare(&a, &a, 0.0).difference, None);
        let s = [output("s", &[1], TensorData::String(vec![b"cat".to_vec()]))];
        let t = [output("s", &[1], TensorData::String(vec![b"dog".to_vec()]))];
        assert!(compare(&s, &t, 1.0).disagreed);
    }

    #[test]
    fn missing_outputs_and_other_shapes_disagree() {
        let a = [output("y", &[2], TensorData::F32(vec![1.0, 2.0]))];
        let b = [output("z", &[2], TensorData::F32(vec![1.0, 2.0]))];
        assert!(compare(&a, &b, 1.0).disagreed);
        let c = [output("y", &[1, 2], TensorData::F32(vec![1.0, 2.0]))];
        assert!(compare(&a, &c, 1.0).disagreed);
    }
}
