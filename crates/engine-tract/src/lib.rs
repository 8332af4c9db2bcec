//! Quiver's pure-Rust ONNX engine, built on [tract](https://github.com/sonos/tract).
//!
//! It needs no native library, so it is always available and is the default. The model is
//! optimised once at load time with its dynamic dimensions kept symbolic, then run with concrete
//! shapes. Convolutional models are run one item at a time: tract is much faster at batch 1 than
//! at larger batches on them (see `shared/models/README.md`). Operators tract is known to get
//! wrong are refused at load time ([`gaps`]), so such a model fails loudly instead of answering
//! wrongly.

mod convert;
pub mod gaps;

use std::path::Path;
use std::sync::Arc;

use quiver_engine_api::{
    DataType, Engine, EngineError, EngineOptions, ModelSignature, OptimizationLevel, Session,
    Tensor, TensorSpec,
};
use tract_linalg::multithread::Executor;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

/// The tract engine. Models that do not ask for thread counts of their own share one pool.
#[derive(Debug, Clone)]
pub struct TractEngine {
    shared: Executor,
}

impl TractEngine {
    /// An engine whose shared pool has `threads` threads (1: models run on the calling thread).
    pub fn new(threads: usize) -> Self {
        Self {
            shared: executor(threads),
        }
    }
}

impl Default for TractEngine {
    /// A shared pool with one thread per core.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }
}

fn executor(threads: usize) -> Executor {
    if threads > 1 {
        Executor::multithread_with_name(threads, "quiver-tract")
    } else {
        Executor::SingleThread
    }
}

impl Engine for TractEngine {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn platform(&self) -> &'static str {
        "tract_onnx"
    }

    fn load(&self, path: &Path, options: &EngineOptions) -> Result<Box<dyn Session>, EngineError> {
        let executor = match options.intra_op_threads {
            Some(n) => executor(n),
            None => self.shared.clone(),
        };
        TractSession::load(path, options, executor).map(|s| Box::new(s) as Box<dyn Session>)
    }
}

type Plan = Arc<TypedSimplePlan>;

/// A model optimised by tract, ready to run.
pub struct TractSession {
    plan: Plan,
    signature: ModelSignature,
    /// Each input's symbolic dimension names (`None` for a concrete one), to check that inputs
    /// sharing one (`batch`) agree on its value before running.
    input_dims: Vec<Vec<Option<String>>>,
    /// Run a batch item by item (see the crate docs).
    split_batch: bool,
}

impl TractSession {
    /// Loads and optimises the ONNX model at `path`; `executor` runs its matrix products.
    pub fn load(
        path: &Path,
        options: &EngineOptions,
        executor: Executor,
    ) -> Result<Self, EngineError> {
        let load_err = |e: TractError| EngineError::Load(format!("{}: {e:#}", path.display()));
        let onnx = tract_onnx::onnx();
        let proto = onnx.proto_model_for_path(path).map_err(load_err)?;
        gaps::check(&proto)?;
        if let Some(saved) = &options.optimized_model_path {
            tracing::warn!(path = %saved.display(), "the tract engine keeps its optimised model in memory only; not saving it");
        }
        let model_dir = path.parent().and_then(Path::to_str);
        let parse = |batch_of_one: Option<&[TypedFact]>| {
            onnx.parse(&proto, model_dir)
                .and_then(|parsed| {
                    if parsed.unresolved_inputs.is_empty() {
                        Ok(parsed.model)
                    } else {
                        Err(tract_onnx::tract_core::internal::format_err!(
                            "could not resolve inputs {:?}",
                            parsed.unresolved_inputs
                        ))
                    }
                })
                .and_then(|mut model| {
                    for (ix, fact) in batch_of_one.into_iter().flatten().enumerate() {
                        let mut dims: Vec<TDim> = fact.shape.iter().cloned().collect();
                        dims[0] = TDim::from(1);
                        model.set_input_fact(ix, InferenceFact::dt_shape(fact.datum_type, dims))?;
                    }
                    model.into_typed()
                })
        };
        let explain = |e| gaps::explain(&proto, load_err(e));
        let symbolic = parse(None).map_err(explain)?;
        let signature = signature_of(&symbolic)?;
        let input_dims = (0..signature.inputs.len())
            .map(|ix| {
                symbolic.input_fact(ix).map(|f| {
                    f.shape
                        .iter()
                        .map(|d| {
                            if let TDim::Sym(symbol) = d {
                                Some(symbol.to_string())
                            } else {
                                None
                            }
                        })
                        .collect()
                })
            })
            .collect::<TractResult<Vec<Vec<Option<String>>>>>()
            .map_err(load_err)?;
        // A convolutional model runs item by item (see the crate docs); planned for exactly one
        // item, tract picks its fast concrete kernels (10x and more on MobileNet).
        let split_batch = is_convolutional(&symbolic) && batch_is_dynamic(&signature);
        let typed = if split_batch {
            let facts = (0..signature.inputs.len())
                .map(|ix| symbolic.input_fact(ix).cloned())
                .collect::<TractResult<Vec<TypedFact>>>()
                .map_err(load_err)?;
            parse(Some(&facts)).map_err(explain)?
        } else {
            symbolic
        };
        let model = match options.optimization {
            OptimizationLevel::Disable => Ok(typed),
            OptimizationLevel::Basic => typed.into_decluttered(),
            OptimizationLevel::Extended | OptimizationLevel::All => typed.into_optimized(),
        }
        .map_err(explain)?;
        let run_options = RunOptions {
            executor: Some(executor),
            ..RunOptions::default()
        };
        let plan = TypedSimplePlan::new_with_options(model, &run_options).map_err(load_err)?;
        Ok(Self {
            plan,
            signature,
            input_dims,
            split_batch,
        })
    }

    fn run_once(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        let values = inputs
            .into_iter()
            .zip(&self.signature.inputs)
            .map(|(t, spec)| convert::to_tract(&spec.name, t).map(TValue::from))
            .collect::<Result<TVec<_>, _>>()?;
        let outputs = self
            .plan
            .run(values)
            .map_err(|e| EngineError::Runtime(format!("{e:#}")))?;
        outputs.iter().map(convert::from_tract).collect()
    }
}

impl Session for TractSession {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn check_inputs(&self, inputs: &[Tensor]) -> Result<(), EngineError> {
        inputs
            .iter()
            .zip(&self.signature.inputs)
            .try_for_each(|(t, spec)| convert::check(&spec.name, t))
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        quiver_engine_api::check_shared_dims(&self.signature, &self.input_dims, &inputs)?;
        let batch = inputs.first().and_then(|t| t.shape().first().copied());
        match batch {
            Some(n) if self.split_batch && n > 1 => {
                let mut per_output: Vec<Vec<Tensor>> = Vec::new();
                for i in 0..n {
                    let item = inputs
                        .iter()
                        .map(|t| t.slice_rows(i, 1))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(EngineError::InvalidInput)?;
                    let outputs = self.run_once(item)?;
                    per_output.resize_with(outputs.len(), Vec::new);
                    for (acc, t) in per_output.iter_mut().zip(outputs) {
                        acc.push(t);
                    }
                }
                per_output
                    .into_iter()
                    .map(|parts| Tensor::concat_rows(parts).map_err(EngineError::Runtime))
                    .collect()
            }
            _ => self.run_once(inputs),
        }
    }
}

fn signature_of(model: &TypedModel) -> Result<ModelSignature, EngineError> {
    let spec = |name: String, fact: &TypedFact| -> Result<TensorSpec, EngineError> {
        let dtype = convert::dtype_from_tract(fact.datum_type).ok_or_else(|| {
            EngineError::Unsupported(format!(
                "tensor '{name}' has element type {:?}",
                fact.datum_type
            ))
        })?;
        let shape = fact
            .shape
            .iter()
            .map(|d| d.as_i64().unwrap_or(-1))
            .collect();
        Ok(TensorSpec { name, dtype, shape })
    };
    let load_err = |e: TractError| EngineError::Load(format!("{e:#}"));
    let mut inputs = Vec::new();
    for (ix, outlet) in model.input_outlets().map_err(load_err)?.iter().enumerate() {
        let name = model.node(outlet.node).name.clone();
        inputs.push(spec(name, model.input_fact(ix).map_err(load_err)?)?);
    }
    let mut outputs = Vec::new();
    for (ix, outlet) in model.output_outlets().map_err(load_err)?.iter().enumerate() {
        let name = model
            .outlet_label(*outlet)
            .map_or_else(|| model.node(outlet.node).name.clone(), str::to_owned);
        outputs.push(spec(name, model.output_fact(ix).map_err(load_err)?)?);
    }
    Ok(ModelSignature { inputs, outputs })
}

fn is_convolutional(model: &TypedModel) -> bool {
    model
        .nodes()
        .iter()
        .any(|n| n.op.name().to_ascii_lowercase().contains("conv"))
}

/// Whether every input and output has a dynamic first dimension, so items can be run alone.
fn batch_is_dynamic(signature: &ModelSignature) -> bool {
    let dynamic = |s: &TensorSpec| s.shape.first() == Some(&-1);
    !signature.inputs.is_empty()
        && signature.inputs.iter().all(dynamic)
        && signature.outputs.iter().all(dynamic)
        && signature.inputs.iter().all(|s| s.dtype != DataType::String)
}
