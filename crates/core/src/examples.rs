//! TF Serving's `Classify` and `Regress`: examples (feature maps, as `tf.Example` holds them)
//! into model inputs, and the model's classification or regression output into results. Both
//! front ends (REST `:classify`/`:regress`, gRPC `Classify`/`Regress`) decode their wire form
//! into [`Feature`]s and call these.

use std::collections::BTreeMap;

use quiver_engine_api::{DataType, ModelSignature, NamedTensor, Tensor, TensorData, TensorSpec};
use quiver_processing::OutputStep;
use quiver_repository::processing::{OutputProcessing, Task};

use crate::version::{Inference, LoadedVersion};
use crate::{Error, shape_text};

/// One feature of an example: `tf.train.Feature`'s three kinds.
#[derive(Debug, Clone, PartialEq)]
pub enum Feature {
    /// `float_list` (and JSON numbers with a fraction).
    Floats(Vec<f64>),
    /// `int64_list` (and JSON integers).
    Ints(Vec<i64>),
    /// `bytes_list` (and JSON strings or `{"b64": …}`).
    Bytes(Vec<Vec<u8>>),
}

impl Feature {
    fn len(&self) -> usize {
        match self {
            Feature::Floats(v) => v.len(),
            Feature::Ints(v) => v.len(),
            Feature::Bytes(v) => v.len(),
        }
    }
}

/// An example's features by name.
pub type Example = BTreeMap<String, Feature>;

/// One example's classes, best first: (label, score).
pub type Classification = Vec<(String, f32)>;

/// The TF Serving task a model answers without a config saying so, and the output step that
/// answers it — or why none is implied.
pub(crate) type ImpliedTask = Result<(Task, OutputStep), String>;

/// What a model's outputs say it answers, as TF Serving's own test models would: its only output,
/// of floats, holding one value per example is a regression (`half_plus_two`), and holding a
/// fixed number of values (two or more) per example is a score per class. Anything else — several
/// outputs, integers, a variable or nested number of values a row — is not clear, and the reason
/// says which.
pub(crate) fn implied_task(signature: &ModelSignature) -> ImpliedTask {
    let [output] = signature.outputs.as_slice() else {
        return Err(format!(
            "it has {} outputs, so which one answers is not clear",
            signature.outputs.len()
        ));
    };
    if !matches!(output.dtype, DataType::F32 | DataType::F64 | DataType::F16) {
        return Err(format!(
            "its output '{}' is {}, not scores or values",
            output.name, output.dtype
        ));
    }
    let task = match output.shape.as_slice() {
        [_] | [_, 1] => Task::Regression,
        [_, classes] if *classes >= 2 => Task::Classification,
        shape => {
            return Err(format!(
                "its output '{}' has shape {}, not one value or a fixed number of scores per example",
                output.name,
                shape_text(shape)
            ));
        }
    };
    let config = OutputProcessing {
        task: Some(task),
        ..OutputProcessing::default()
    };
    let step = OutputStep::build(&output.name, &config, std::path::Path::new(""), signature)?;
    Ok((task, step))
}

/// The implied task read through the config's processing of its output (labels, softmax,
/// top_k), when the config has some for it and it fits the task.
pub(crate) fn through_pipeline(
    implied: ImpliedTask,
    pipeline: &quiver_processing::Pipeline,
) -> ImpliedTask {
    let (task, step) = implied?;
    match pipeline.output_step(step.output()) {
        None => Ok((task, step)),
        Some(configured) => configured
            .with_task(task)
            .map(|s| (task, s))
            .ok_or_else(|| {
                format!(
                    "the config's processing of output '{}' does not fit a {}",
                    step.output(),
                    task_words(task).0
                )
            }),
    }
}

/// The task's names in TF Serving's words: (signature kind, method).
fn task_words(task: Task) -> (&'static str, &'static str) {
    match task {
        Task::Classification => ("classification", "classify"),
        Task::Regression => ("regression", "regress"),
    }
}

impl LoadedVersion {
    /// The output answering `task`: the one whose config says `task = "classification"` or
    /// `"regression"`, else the one the model's shape implies ([`implied_task`]) when the config
    /// names no task at all; or the error TF Serving gives a model without such a signature.
    fn task_output(&self, task: Task) -> Result<&OutputStep, Error> {
        let (kind, method) = task_words(task);
        let missing = |why: String| {
            Error::invalid(format!(
                "model '{}' has no {kind} signature: expected signature method_name to be tensorflow/serving/{method}, was tensorflow/serving/predict ({why}; declare one with task = \"{kind}\" on an output in config.toml)",
                self.name()
            ))
        };
        if let Some(pipeline) = self.pipeline().filter(|p| p.declares_task()) {
            return pipeline.task_output(task).ok_or_else(|| {
                missing(format!(
                    "its config names its outputs' tasks, and none is {kind}"
                ))
            });
        }
        match self.implied_task() {
            Ok((implied, step)) if *implied == task => Ok(step),
            Ok((implied, step)) => Err(missing(format!(
                "its output '{}' makes it a {}",
                step.output(),
                task_words(*implied).0
            ))),
            Err(why) => Err(missing(why.clone())),
        }
    }

    /// Checks that the model answers `task` before its request is decoded.
    pub fn check_task(&self, task: Task) -> Result<(), Error> {
        self.task_output(task).map(|_| ())
    }

    /// The examples (each with the `context`'s features, which it may override) as the model's
    /// inputs: feature `x` feeds input `x`, one example a row.
    pub fn examples_to_inputs(
        &self,
        context: &Example,
        examples: &[Example],
    ) -> Result<Vec<NamedTensor>, Error> {
        if examples.is_empty() {
            return Err(Error::invalid("no examples; send at least one"));
        }
        let signature = self.signature();
        signature
            .inputs
            .iter()
            .map(|spec| {
                let rows: Vec<&Feature> = examples
                    .iter()
                    .enumerate()
                    .map(|(i, e)| {
                        e.get(&spec.name).or_else(|| context.get(&spec.name)).ok_or_else(|| {
                            let names: Vec<&str> =
                                signature.inputs.iter().map(|s| s.name.as_str()).collect();
                            Error::invalid(format!(
                                "example {i} has no feature '{}' (features map to the model's inputs: '{}')",
                                spec.name,
                                names.join("', '")
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let tensor = column(spec, &rows, self.takes_images(&spec.name))?;
                Ok(NamedTensor::new(spec.name.clone(), tensor))
            })
            .collect()
    }

    /// Each example's classes, best first, from the classification output: softmax when the
    /// config says so, its `top_k` (every class without), labels from its labels file (the class
    /// index without).
    pub fn classification(&self, inference: &Inference) -> Result<Vec<Classification>, Error> {
        let step = self.task_output(Task::Classification)?;
        let raw = inference
            .raw_output(step.output())
            .ok_or_else(|| Error::internal(format!("no output '{}'", step.output())))?;
        let reshaped = one_per_row(&raw.tensor)?;
        let rows = step.classify(reshaped.as_ref().unwrap_or(&raw.tensor))?;
        Ok(rows
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|(index, score)| (step.label(index), score))
                    .collect()
            })
            .collect())
    }

    /// Each example's value from the regression output (one value a row).
    pub fn regression(&self, inference: &Inference) -> Result<Vec<f32>, Error> {
        let step = self.task_output(Task::Regression)?;
        let raw = inference
            .raw_output(step.output())
            .ok_or_else(|| Error::internal(format!("no output '{}'", step.output())))?;
        let reshaped = one_per_row(&raw.tensor)?;
        let (rows, per_row, values) =
            quiver_processing::rows_of(reshaped.as_ref().unwrap_or(&raw.tensor))?;
        if per_row != 1 || values.len() != rows {
            return Err(Error::invalid(format!(
                "output '{}' has shape {}; regression needs one value per example",
                step.output(),
                shape_text(raw.tensor.shape())
            )));
        }
        Ok(values)
    }
}

/// A `[batch]` output as `[batch, 1]` (one value for each example, not one row of them);
/// `None` for any other shape, which is read as it is.
fn one_per_row(tensor: &Tensor) -> Result<Option<Tensor>, Error> {
    match tensor.shape() {
        &[n] => Tensor::new(vec![n, 1], tensor.data().clone())
            .map(Some)
            .map_err(Error::internal),
        _ => Ok(None),
    }
}

/// One input's features, one a row, as a tensor of the input's type and shape.
fn column(spec: &TensorSpec, rows: &[&Feature], image: bool) -> Result<Tensor, Error> {
    let n = rows.len();
    let width = rows.first().map_or(0, |f| f.len());
    if let Some((i, f)) = rows.iter().enumerate().find(|(_, f)| f.len() != width) {
        return Err(Error::invalid(format!(
            "feature '{}': example {i} has {} values, example 0 has {width}; every example needs as many",
            spec.name,
            f.len()
        )));
    }
    if width == 0 {
        return Err(Error::invalid(format!("feature '{}' is empty", spec.name)));
    }
    let bytes = matches!(rows.first(), Some(Feature::Bytes(_)));
    if bytes && image {
        // Encoded images, one an example: the image pre-processing makes the rows.
        if width != 1 {
            return Err(Error::invalid(format!(
                "feature '{}': {width} images in one example; send one",
                spec.name
            )));
        }
        let images = rows
            .iter()
            .map(|f| match f {
                Feature::Bytes(v) => Ok(v.iter().cloned()),
                Feature::Floats(_) | Feature::Ints(_) => Err(mixed(&spec.name)),
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        return Tensor::new(vec![n], TensorData::String(images)).map_err(Error::invalid);
    }
    // The row's shape: the input's dims after the batch, with the one unknown filled in.
    let row_shape: Vec<usize> = match spec.shape.len() {
        0 | 1 if width == 1 => Vec::new(),
        2 => vec![width],
        rank if rank > 2 => {
            let fixed: Option<Vec<usize>> = spec.shape[1..]
                .iter()
                .map(|&d| usize::try_from(d).ok())
                .collect();
            match fixed {
                Some(dims) if dims.iter().product::<usize>() == width => dims,
                _ => {
                    return Err(Error::invalid(format!(
                        "feature '{}': {width} values do not fill one row of the input's shape {}",
                        spec.name,
                        shape_text(&spec.shape)
                    )));
                }
            }
        }
        _ => {
            return Err(Error::invalid(format!(
                "feature '{}': {width} values for an input of shape {}",
                spec.name,
                shape_text(&spec.shape)
            )));
        }
    };
    let data = if bytes {
        if spec.dtype != DataType::String {
            return Err(Error::invalid(format!(
                "feature '{}' holds bytes; the input is {}",
                spec.name, spec.dtype
            )));
        }
        let mut values = Vec::with_capacity(n * width);
        for f in rows {
            match f {
                Feature::Bytes(v) => values.extend(v.iter().cloned()),
                Feature::Floats(_) | Feature::Ints(_) => {
                    return Err(mixed(&spec.name));
                }
            }
        }
        TensorData::String(values)
    } else {
        let mut values = Vec::with_capacity(n * width);
        for f in rows {
            match f {
                Feature::Floats(v) => values.extend_from_slice(v),
                Feature::Ints(v) => values.extend(v.iter().map(|&x| x as f64)),
                Feature::Bytes(_) => return Err(mixed(&spec.name)),
            }
        }
        numeric(spec, values)?
    };
    let shape: Vec<usize> = std::iter::once(n).chain(row_shape).collect();
    Tensor::new(shape, data).map_err(Error::invalid)
}

fn mixed(name: &str) -> Error {
    Error::invalid(format!(
        "feature '{name}' holds bytes in some examples and numbers in others"
    ))
}

fn numeric(spec: &TensorSpec, values: Vec<f64>) -> Result<TensorData, Error> {
    let ints = |what: &str| {
        Error::invalid(format!(
            "feature '{}': the input is {}, which takes {what}",
            spec.name, spec.dtype
        ))
    };
    let whole = |v: &f64| v.fract() == 0.0;
    Ok(match spec.dtype {
        DataType::F32 => TensorData::F32(values.into_iter().map(|v| v as f32).collect()),
        DataType::F64 => TensorData::F64(values),
        DataType::F16 => TensorData::F16(
            values
                .into_iter()
                .map(quiver_engine_api::f16::from_f64)
                .collect(),
        ),
        DataType::I64 if values.iter().all(whole) => {
            TensorData::I64(values.into_iter().map(|v| v as i64).collect())
        }
        DataType::I32 if values.iter().all(whole) => {
            TensorData::I32(values.into_iter().map(|v| v as i32).collect())
        }
        DataType::I64 | DataType::I32 => return Err(ints("integers")),
        DataType::Bool
        | DataType::U8
        | DataType::U16
        | DataType::U32
        | DataType::U64
        | DataType::I8
        | DataType::I16
        | DataType::String => {
            return Err(ints("values a tf.Example cannot hold; use :predict"));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signature(outputs: &[(&str, DataType, &[i64])]) -> ModelSignature {
        let spec = |(name, dtype, shape): &(&str, DataType, &[i64])| TensorSpec {
            name: (*name).to_owned(),
            dtype: *dtype,
            shape: shape.to_vec(),
        };
        ModelSignature {
            inputs: vec![spec(&("x", DataType::F32, &[-1, 1]))],
            outputs: outputs.iter().map(spec).collect(),
        }
    }

    fn implied(outputs: &[(&str, DataType, &[i64])]) -> Result<(Task, String), String> {
        implied_task(&signature(outputs)).map(|(task, step)| (task, step.output().to_owned()))
    }

    #[test]
    fn one_value_per_example_is_a_regression() {
        for shape in [&[-1][..], &[-1, 1], &[4, 1]] {
            assert_eq!(
                implied(&[("y", DataType::F32, shape)]),
                Ok((Task::Regression, "y".to_owned())),
                "{shape:?}"
            );
        }
        assert_eq!(
            implied(&[("y", DataType::F64, &[-1])]).map(|(t, _)| t),
            Ok(Task::Regression)
        );
    }

    #[test]
    fn a_fixed_number_of_scores_per_example_is_a_classification() {
        assert_eq!(
            implied(&[("probs", DataType::F32, &[-1, 10])]),
            Ok((Task::Classification, "probs".to_owned()))
        );
        assert_eq!(
            implied(&[("p", DataType::F16, &[-1, 2])]).map(|(t, _)| t),
            Ok(Task::Classification)
        );
    }

    #[test]
    fn anything_else_is_ambiguous_and_says_why() {
        let why = |outputs: &[(&str, DataType, &[i64])]| implied(outputs).unwrap_err();
        assert_eq!(
            why(&[("a", DataType::F32, &[-1]), ("b", DataType::F32, &[-1])]),
            "it has 2 outputs, so which one answers is not clear"
        );
        assert_eq!(
            why(&[("label", DataType::I64, &[-1])]),
            "its output 'label' is INT64, not scores or values"
        );
        assert!(
            why(&[("y", DataType::F32, &[-1, -1])]).contains("has shape [-1,-1]"),
            "a variable number of values a row"
        );
        assert!(why(&[("y", DataType::F32, &[-1, 3, 4])]).contains("[-1,3,4]"));
        assert!(why(&[("y", DataType::F32, &[])]).contains("not one value"));
        assert!(why(&[]).contains("0 outputs"));
    }
}
