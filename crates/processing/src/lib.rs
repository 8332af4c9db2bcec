//! Pre- and post-processing declared in a model's `config.toml` (`docs/processing.md`).
//!
//! A [`Pipeline`] is built once per loaded version from the config and the model's signature
//! (every mistake is reported then, naming the key). On the request path it turns what clients
//! send — encoded images, raw pixels in their own layout, text — into the model's tensors, and
//! the model's outputs into what clients want: classes with labels, embeddings. It knows
//! nothing of protocols or engines; `quiver-core` runs it on [`pool`], off the async runtime.

mod image;
mod post;
mod text;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use quiver_engine_api::{DataType, ModelSignature, NamedTensor, Tensor, TensorData, TensorSpec};
use quiver_repository::processing::{InputProcessing, OutputProcessing, Task};

pub use image::{DEFAULT_MAX_PIXELS, ImageStep};
pub use post::{Classes, OutputStep, classification_tensor, rows_of, softmax, top_k};
pub use text::TextStep;

/// Why a request could not be processed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The client sent something that cannot be processed (a corrupt image, empty text).
    #[error("{0}")]
    Invalid(String),
    /// A fault of ours.
    #[error("processing failed: {0}")]
    Internal(String),
}

/// The threads processing runs on: one per core, shared by every model, so decoding images
/// never competes with the async runtime's threads for more than the cores there are. `None`
/// when the threads could not be started (the caller then processes on a blocking thread).
pub fn pool() -> Option<&'static rayon::ThreadPool> {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("quiver-process-{i}"))
            // A panic must not abort the server (rayon's default): the job's caller sees its
            // answer channel closed and answers with an internal error.
            .panic_handler(|_| tracing::error!("a processing job panicked"))
            .build()
            .inspect_err(|e| tracing::warn!("cannot start the processing threads: {e}"))
            .ok()
    })
    .as_ref()
}

/// A model version's processing steps.
#[derive(Debug)]
pub struct Pipeline {
    images: Vec<ImageStep>,
    texts: Vec<TextStep>,
    outputs: Vec<OutputStep>,
    client: ModelSignature,
    /// Model inputs that post-processing reads (the attention mask for mean pooling).
    keep: Vec<String>,
}

/// A request's inputs ready for the model.
#[derive(Debug)]
pub struct Prepared {
    /// The model's inputs.
    pub inputs: Vec<NamedTensor>,
    /// Copies of the inputs post-processing needs.
    pub kept: Vec<NamedTensor>,
    /// Tokens the text inputs came to (padding excluded).
    pub tokens: usize,
}

/// A request's outputs after post-processing.
#[derive(Debug)]
pub struct Finished {
    /// What clients get, in the client signature's order.
    pub outputs: Vec<NamedTensor>,
    /// The model outputs post-processing replaced, as the model returned them.
    pub raw: Vec<NamedTensor>,
}

impl Pipeline {
    /// Builds the steps a model's config declares; `None` when it declares none.
    pub fn build(
        model_dir: &Path,
        inputs: &BTreeMap<String, InputProcessing>,
        outputs: &BTreeMap<String, OutputProcessing>,
        model: &ModelSignature,
    ) -> Result<Option<Self>, String> {
        if inputs.is_empty() && outputs.is_empty() {
            return Ok(None);
        }
        let mut images = Vec::new();
        let mut texts: Vec<TextStep> = Vec::new();
        for (name, config) in inputs {
            match (&config.image, &config.text) {
                (Some(image), None) => {
                    let spec = model
                        .inputs
                        .iter()
                        .find(|s| &s.name == name)
                        .ok_or_else(|| {
                            format!(
                                "inputs.{name}.image: the model has no input '{name}' (its inputs: {})",
                                names(&model.inputs)
                            )
                        })?;
                    images.push(ImageStep::build(name, image, spec)?);
                }
                (None, Some(text)) => {
                    let step = TextStep::build(name, text, model_dir, model)?;
                    if let Some(other) = texts
                        .iter()
                        .find(|t| t.feeds().any(|f| step.feeds().any(|g| g == f)))
                    {
                        return Err(format!(
                            "inputs.{name}.text: feeds the same model inputs as inputs.{}.text",
                            other.input()
                        ));
                    }
                    texts.push(step);
                }
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "inputs.{name}: an input is an image or a text, not both"
                    ));
                }
                (None, None) => {
                    return Err(format!(
                        "inputs.{name}: say what it is: [inputs.{name}.image] or [inputs.{name}.text]"
                    ));
                }
            }
        }
        let mut steps = Vec::new();
        for (name, config) in outputs {
            steps.push(OutputStep::build(name, config, model_dir, model)?);
        }
        for task in [Task::Classification, Task::Regression] {
            let with: Vec<&str> = steps
                .iter()
                .filter(|s| s.task() == Some(task))
                .map(OutputStep::output)
                .collect();
            if with.len() > 1 {
                return Err(format!(
                    "outputs: task = \"{}\" is set on '{}'; one output answers it",
                    task_name(task),
                    with.join("', '")
                ));
            }
        }
        let client = client_signature(model, &texts, &steps);
        let mut seen = std::collections::BTreeSet::new();
        for spec in &client.outputs {
            if !seen.insert(spec.name.as_str()) {
                return Err(format!(
                    "outputs: two outputs would be called '{}'; rename one with name = \"…\"",
                    spec.name
                ));
            }
        }
        let keep = steps
            .iter()
            .filter_map(|s| s.needs_input().map(str::to_owned))
            .collect();
        Ok(Some(Self {
            images,
            texts,
            outputs: steps,
            client,
            keep,
        }))
    }

    /// The inputs and outputs clients see: text inputs instead of the token inputs they feed,
    /// processed outputs in place of raw ones.
    pub fn client_signature(&self) -> &ModelSignature {
        &self.client
    }

    /// Whether the model input `name` also takes encoded images.
    pub fn takes_images(&self, name: &str) -> bool {
        self.images.iter().any(|s| s.input() == name)
    }

    /// The model's image inputs.
    pub fn image_inputs(&self) -> impl Iterator<Item = &str> {
        self.images.iter().map(ImageStep::input)
    }

    /// The text input and the pooled output, when the model makes sentence embeddings.
    pub fn embedding(&self) -> Option<(&str, &str)> {
        let text = self.texts.first()?;
        let pooled = self.outputs.iter().find(|s| s.pools())?;
        Some((text.input(), pooled.spec().name.as_str()))
    }

    /// The output that answers `task`.
    pub fn task_output(&self, task: Task) -> Option<&OutputStep> {
        self.outputs.iter().find(|s| s.task() == Some(task))
    }

    /// Whether some output's config names a TF Serving task (then nothing is implied).
    pub fn declares_task(&self) -> bool {
        self.outputs.iter().any(|s| s.task().is_some())
    }

    /// The step processing the model output `name`.
    pub fn output_step(&self, name: &str) -> Option<&OutputStep> {
        self.outputs.iter().find(|s| s.output() == name)
    }

    /// Whether any input of the request needs work (else it goes to the model as it is).
    pub fn has_input_work(&self, inputs: &[NamedTensor]) -> bool {
        inputs.iter().any(|i| {
            self.texts.iter().any(|t| t.input() == i.name)
                || self.images.iter().any(|s| {
                    s.input() == i.name
                        && (i.tensor.dtype() == DataType::String || s.takes_pixels(&i.tensor))
                })
        })
    }

    /// Whether any output is post-processed.
    pub fn has_output_work(&self) -> bool {
        !self.outputs.is_empty()
    }

    /// Turns what the client sent into the model's inputs.
    pub fn preprocess(&self, inputs: Vec<NamedTensor>) -> Result<Prepared, ProcessError> {
        let mut out = Vec::with_capacity(inputs.len() + 2);
        let mut tokens = 0;
        for input in inputs {
            if let Some(step) = self.images.iter().find(|s| s.input() == input.name) {
                let tensor = if let TensorData::String(images) = input.tensor.data() {
                    step.from_encoded(images)?
                } else if step.takes_pixels(&input.tensor) {
                    step.from_pixels(&input.tensor)?
                } else {
                    input.tensor
                };
                out.push(NamedTensor::new(input.name, tensor));
            } else if let Some(step) = self.texts.iter().find(|t| t.input() == input.name) {
                let TensorData::String(texts) = input.tensor.data() else {
                    return Err(ProcessError::Invalid(format!(
                        "input '{}' takes text (BYTES), not {}",
                        input.name,
                        input.tensor.dtype()
                    )));
                };
                let tokenized = step.tokenize(texts)?;
                tokens += tokenized.tokens;
                out.extend(tokenized.inputs);
            } else {
                out.push(input);
            }
        }
        let kept = out
            .iter()
            .filter(|t| self.keep.contains(&t.name))
            .cloned()
            .collect();
        Ok(Prepared {
            inputs: out,
            kept,
            tokens,
        })
    }

    /// Turns the model's outputs (signature order) into what clients get.
    pub fn postprocess(
        &self,
        outputs: Vec<NamedTensor>,
        kept: &[NamedTensor],
    ) -> Result<Finished, ProcessError> {
        let mut processed = Vec::with_capacity(outputs.len());
        let mut raw = Vec::new();
        for output in outputs {
            match self.output_step(&output.name) {
                Some(step) => {
                    processed.push(step.apply(&output.tensor, kept)?);
                    raw.push(output);
                }
                None => processed.push(output),
            }
        }
        Ok(Finished {
            outputs: processed,
            raw,
        })
    }
}

fn client_signature(
    model: &ModelSignature,
    texts: &[TextStep],
    steps: &[OutputStep],
) -> ModelSignature {
    let fed: Vec<&str> = texts.iter().flat_map(TextStep::feeds).collect();
    let mut inputs: Vec<TensorSpec> = model
        .inputs
        .iter()
        .filter(|s| !fed.contains(&s.name.as_str()))
        .cloned()
        .collect();
    inputs.extend(texts.iter().map(|t| TensorSpec {
        name: t.input().to_owned(),
        dtype: DataType::String,
        shape: vec![-1],
    }));
    let outputs = model
        .outputs
        .iter()
        .map(|s| {
            steps
                .iter()
                .find(|step| step.output() == s.name)
                .map_or_else(|| s.clone(), |step| step.spec().clone())
        })
        .collect();
    ModelSignature { inputs, outputs }
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Classification => "classification",
        Task::Regression => "regression",
    }
}

fn names(specs: &[TensorSpec]) -> String {
    let quoted: Vec<String> = specs.iter().map(|s| format!("'{}'", s.name)).collect();
    quoted.join(", ")
}

/// Top `k` of any float output as Triton's classification strings, for the V2 output parameter
/// `classification` (tritonclient's `class_count`).
pub fn classify_tensor(
    raw: &Tensor,
    k: usize,
    labels: Option<&[String]>,
) -> Result<Tensor, ProcessError> {
    let (rows, classes, scores) = rows_of(raw)?;
    let k = k.min(classes).max(1);
    let best = top_k(&scores, classes, k, None);
    classification_tensor(&best, rows, k, labels)
}
