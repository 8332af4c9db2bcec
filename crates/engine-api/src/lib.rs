//! The contract between Quiver and its inference engines.
//!
//! Everything here is plain data plus two traits: an [`Engine`] loads a model file into a
//! [`Session`]; a session reports its [`ModelSignature`] and runs tensors through the model.
//! Nothing in this crate knows about async runtimes or wire protocols.

mod dtype;
mod tensor;

pub mod raw;

pub use dtype::DataType;
pub use half::f16;
pub use tensor::{MAX_RANK, Tensor, TensorData, element_count};

use std::path::{Path, PathBuf};

/// `[-1,3,224,224]`, the way error messages show shapes.
pub fn shape_text<T: std::fmt::Display>(dims: &[T]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("[");
    for (i, d) in dims.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{d}");
    }
    s.push(']');
    s
}

/// A tensor with the name of the model input or output it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedTensor {
    /// Input or output name.
    pub name: String,
    /// The tensor.
    pub tensor: Tensor,
}

impl NamedTensor {
    /// Pairs `name` with `tensor`.
    pub fn new(name: impl Into<String>, tensor: Tensor) -> Self {
        Self {
            name: name.into(),
            tensor,
        }
    }
}

/// One named input or output of a model, as the engine reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// The name clients use for this tensor.
    pub name: String,
    /// Element type.
    pub dtype: DataType,
    /// Dimensions; `-1` marks a dimension only known at run time (dynamic).
    pub shape: Vec<i64>,
}

impl TensorSpec {
    /// Whether `shape` (a concrete tensor shape) fits this spec: same rank, equal fixed dims.
    pub fn accepts_shape(&self, shape: &[usize]) -> bool {
        self.shape.len() == shape.len()
            && self
                .shape
                .iter()
                .zip(shape)
                .all(|(&want, &got)| want < 0 || usize::try_from(want).is_ok_and(|w| w == got))
    }
}

/// The inputs and outputs of a loaded model, in the order [`Session::run`] takes and returns them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ModelSignature {
    /// Model inputs.
    pub inputs: Vec<TensorSpec>,
    /// Model outputs.
    pub outputs: Vec<TensorSpec>,
}

impl ModelSignature {
    /// Position of the input called `name`.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.inputs.iter().position(|s| s.name == name)
    }

    /// Position of the output called `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.outputs.iter().position(|s| s.name == name)
    }
}

/// Checks that there is one tensor per input of `signature`, and that inputs which share a named
/// dimension (the ONNX `dim_param`, e.g. `batch`) agree on its size: `dims[i][d]` names dimension
/// `d` of input `i` (`None` for a fixed or unnamed one). Engines call it before running, as not
/// every runtime checks this itself.
pub fn check_shared_dims(
    signature: &ModelSignature,
    dims: &[Vec<Option<String>>],
    inputs: &[Tensor],
) -> Result<(), EngineError> {
    if inputs.len() != signature.inputs.len() {
        return Err(EngineError::InvalidInput(format!(
            "the model takes {} inputs, {} were given",
            signature.inputs.len(),
            inputs.len()
        )));
    }
    let mut bound: Vec<(&str, usize, usize)> = Vec::new();
    for (ix, (tensor, names)) in inputs.iter().zip(dims).enumerate() {
        for (name, &size) in names.iter().zip(tensor.shape()) {
            let Some(name) = name.as_deref() else {
                continue;
            };
            match bound.iter().find(|(n, _, _)| *n == name) {
                Some(&(_, first_size, first_ix)) if first_size != size => {
                    let input = |i: usize| signature.inputs.get(i).map_or("?", |s| s.name.as_str());
                    return Err(EngineError::InvalidInput(format!(
                        "inputs '{}' and '{}' disagree on dimension '{name}': {first_size} vs {size}",
                        input(first_ix),
                        input(ix)
                    )));
                }
                Some(_) => {}
                None => bound.push((name, size, ix)),
            }
        }
    }
    Ok(())
}

/// Options an engine honours when it loads a model.
///
/// Threads left unset share the engine's one server-wide pool, so however many models and
/// instances are loaded, the engines never run more threads than that pool has (by default, the
/// number of cores). A model that sets its own thread counts gets a pool of its own.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EngineOptions {
    /// Threads one inference call may use within an operator; `None`: the shared pool.
    pub intra_op_threads: Option<usize>,
    /// Threads that run independent operators of one call in parallel; `None` or 1: operators
    /// run one after another.
    pub inter_op_threads: Option<usize>,
    /// How hard the engine optimises the graph at load time.
    pub optimization: OptimizationLevel,
    /// Where to save the optimised model, for inspection or a faster next load (engines that
    /// cannot write one say so in their log).
    pub optimized_model_path: Option<PathBuf>,
}

/// Graph optimisation at load time, in ONNX Runtime's four levels (other engines map them onto
/// what they have).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizationLevel {
    /// No graph rewriting.
    Disable,
    /// Semantics-preserving rewrites: constant folding, redundant node removal.
    Basic,
    /// Basic plus operator fusions.
    Extended,
    /// Everything, including layout changes.
    #[default]
    All,
}

impl OptimizationLevel {
    /// Every level, in order.
    pub const ALL: [OptimizationLevel; 4] = [Self::Disable, Self::Basic, Self::Extended, Self::All];

    /// The name used in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Basic => "basic",
            Self::Extended => "extended",
            Self::All => "all",
        }
    }
}

impl std::fmt::Display for OptimizationLevel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for OptimizationLevel {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("'{s}' is not one of disable, basic, extended, all"))
    }
}

/// Why an engine could not load or run a model. `Clone`, so one failure can be handed to every
/// request of a batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be read or understood.
    #[error("cannot load model: {0}")]
    Load(String),
    /// The model uses something this engine cannot run.
    #[error("unsupported by this engine: {0}")]
    Unsupported(String),
    /// The inputs handed to [`Session::run`] do not fit the model.
    #[error("{0}")]
    InvalidInput(String),
    /// The engine failed while computing.
    #[error("inference failed: {0}")]
    Runtime(String),
}

/// An inference engine: turns a model file into a runnable [`Session`].
pub trait Engine: Send + Sync {
    /// Short name used in configuration and logs, e.g. `tract`.
    fn name(&self) -> &'static str;
    /// Platform name reported to clients, e.g. `tract_onnx` (Triton's `platform` field).
    fn platform(&self) -> &'static str;
    /// Loads the model at `path`.
    fn load(&self, path: &Path, options: &EngineOptions) -> Result<Box<dyn Session>, EngineError>;
}

/// A loaded model, ready to run. Blocking: callers run it on their own threads.
pub trait Session: Send + Sync {
    /// Inputs and outputs of the model.
    fn signature(&self) -> &ModelSignature;
    /// Runs the model. `inputs` are in [`ModelSignature::inputs`] order and already checked
    /// against it (dtype and shape); outputs come back in [`ModelSignature::outputs`] order.
    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError>;

    /// Refuses, as [`run`](Session::run) would, inputs this engine cannot take for a reason the
    /// signature does not show (e.g. string bytes it cannot hold), so a batcher can answer one
    /// request alone instead of failing the batch it would join. `inputs` as for `run`. The
    /// default takes everything.
    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), EngineError> {
        let _ = inputs;
        Ok(())
    }
}
