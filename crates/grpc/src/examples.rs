//! TF Serving's gRPC `Classify` and `Regress`: `tensorflow.serving.Input` (tf.Example lists)
//! into the core's examples, and the core's results into the response messages.

use quiver_core::{Classification, Error, Example, Feature};

use crate::status::invalid;
use crate::tensorflow::feature::Kind;
use crate::tensorflow::serving::Input;
use crate::tensorflow::serving::{
    Class, ClassificationResponse, ClassificationResult, Classifications, ModelSpec, Regression,
    RegressionResponse, RegressionResult, input,
};

/// The request's examples and their shared context.
pub fn examples_of(input: Option<Input>) -> Result<(Example, Vec<Example>), Error> {
    let kind = input
        .and_then(|i| i.kind)
        .ok_or_else(|| invalid("the request has no input: send input.example_list"))?;
    let (context, examples) = match kind {
        input::Kind::ExampleList(list) => (None, list.examples),
        input::Kind::ExampleListWithContext(list) => (list.context, list.examples),
    };
    if examples.is_empty() {
        return Err(invalid("input has no examples; send at least one"));
    }
    let context = context.map(example).transpose()?.unwrap_or_default();
    let examples = examples
        .into_iter()
        .map(example)
        .collect::<Result<_, _>>()?;
    Ok((context, examples))
}

fn example(e: crate::tensorflow::Example) -> Result<Example, Error> {
    let features = e.features.map(|f| f.feature).unwrap_or_default();
    features
        .into_iter()
        .map(|(name, feature)| {
            let value = match feature.kind {
                Some(Kind::BytesList(l)) => Feature::Bytes(l.value),
                Some(Kind::FloatList(l)) => {
                    Feature::Floats(l.value.into_iter().map(f64::from).collect())
                }
                Some(Kind::Int64List(l)) => Feature::Ints(l.value),
                None => return Err(invalid(format!("feature '{name}' has no value list"))),
            };
            Ok((name, value))
        })
        .collect()
}

/// The answer to `Classify`: one `Classifications` an example.
pub fn classification_response(
    spec: ModelSpec,
    results: Vec<Classification>,
) -> ClassificationResponse {
    let result = ClassificationResult {
        classifications: results
            .into_iter()
            .map(|row| Classifications {
                classes: row
                    .into_iter()
                    .map(|(label, score)| Class { label, score })
                    .collect(),
            })
            .collect(),
    };
    ClassificationResponse {
        model_spec: Some(spec),
        result: Some(result),
    }
}

/// The answer to `Regress`: one `Regression` an example.
pub fn regression_response(spec: ModelSpec, values: Vec<f32>) -> RegressionResponse {
    let result = RegressionResult {
        regressions: values
            .into_iter()
            .map(|value| Regression { value })
            .collect(),
    };
    RegressionResponse {
        model_spec: Some(spec),
        result: Some(result),
    }
}
