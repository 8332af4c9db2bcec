//! Quiver's fast ONNX engine: [ONNX Runtime](https://onnxruntime.ai) through the `ort` crate.
//!
//! The library is loaded at run time ([`library`] finds it), so Quiver builds and runs without
//! it; [`OnnxRuntimeEngine::init`] fails with a clear message when it is missing or too old, and
//! the server goes on with tract. ONNX Runtime allows one environment per process: the first
//! successful `init` sets the library and the shared thread pool for the life of the process.
//!
//! Threads: models that set no thread counts of their own share the environment's pool (by
//! default one thread per core), so any number of models and instances never run more threads
//! than there are cores. A model that sets `intra_op_threads` or `inter_op_threads` gets its own.

mod convert;
pub mod library;
mod strings;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::value::ValueType;
use quiver_engine_api::{
    Engine, EngineError, EngineOptions, ModelSignature, OptimizationLevel, Session, Tensor,
    TensorSpec,
};

pub use library::{Found, NotFound};

/// The shared thread pool of the ONNX Runtime environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedPool {
    /// Threads within an operator, shared by every model without threads of its own.
    pub intra_op_threads: usize,
    /// Threads running independent operators in parallel.
    pub inter_op_threads: usize,
    /// Whether idle pool threads spin waiting for work. Off by default: on a server the cores
    /// they would burn between calls are the ones decoding and encoding requests (measured:
    /// +25–50 % throughput with batching on 2 cores, unbatched unchanged).
    pub spinning: bool,
}

impl Default for SharedPool {
    fn default() -> Self {
        Self {
            intra_op_threads: std::thread::available_parallelism().map_or(1, usize::from),
            inter_op_threads: 1,
            spinning: false,
        }
    }
}

/// The ONNX Runtime engine. Cheap to clone; every clone shares the one environment.
#[derive(Clone)]
pub struct OnnxRuntimeEngine {
    inner: Arc<Inner>,
}

struct Inner {
    environment: Environment,
    library: PathBuf,
    pool: SharedPool,
}

impl std::fmt::Debug for OnnxRuntimeEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxRuntimeEngine")
            .field("library", &self.inner.library)
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

/// The process's engine, once initialised.
static ENGINE: Mutex<Option<OnnxRuntimeEngine>> = Mutex::new(None);

impl OnnxRuntimeEngine {
    /// Loads ONNX Runtime's library from `library` and creates the environment with a shared pool
    /// of `pool` threads. Returns the existing engine when one was made before (its library and
    /// pool stay as they were). The error says what was tried and how to get the library; a
    /// library too old for this build is reported with the version found and the one needed.
    pub fn init(library: &Path, pool: SharedPool) -> Result<Self, String> {
        let mut engine = ENGINE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(engine) = engine.as_ref() {
            if engine.inner.library != library || engine.inner.pool != pool {
                tracing::warn!(library = %engine.inner.library.display(),
                    "ONNX Runtime is already initialised in this process; keeping its library and thread pool");
            }
            return Ok(engine.clone());
        }
        let builder = ort::init_from(library).map_err(|e| match e {
            ort::LoadDynamicError::BadVersion { version_str, path } => format!(
                "ONNX Runtime at {} is version {version_str}; Quiver needs 1.{} or newer (fetch one \
                 with scripts/fetch-onnxruntime.sh)",
                path.display(),
                ort::MINOR_VERSION
            ),
            other @ (ort::LoadDynamicError::Dlopen { .. }
            | ort::LoadDynamicError::MissingApi { .. }
            | ort::LoadDynamicError::InvalidVersionString) => {
                format!("cannot load ONNX Runtime: {other}")
            }
        })?;
        let threads = GlobalThreadPoolOptions::default()
            .with_intra_threads(pool.intra_op_threads.max(1))
            .and_then(|o| o.with_inter_threads(pool.inter_op_threads.max(1)))
            .and_then(|o| o.with_spin_control(pool.spinning))
            .map_err(|e| format!("cannot configure ONNX Runtime's thread pool: {e}"))?;
        let environment = builder
            .with_name("quiver")
            .with_telemetry(false)
            .with_global_thread_pool(threads)
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        let made = OnnxRuntimeEngine {
            inner: Arc::new(Inner {
                environment,
                library: library.to_owned(),
                pool,
            }),
        };
        *engine = Some(made.clone());
        Ok(made)
    }

    /// The library in use.
    pub fn library(&self) -> &Path {
        &self.inner.library
    }

    /// ONNX Runtime's own description of its build (version, commit, flags).
    pub fn build_info(&self) -> &'static str {
        ort::info()
    }
}

impl Engine for OnnxRuntimeEngine {
    fn name(&self) -> &'static str {
        "onnxruntime"
    }

    fn platform(&self) -> &'static str {
        "onnxruntime_onnx"
    }

    fn load(&self, path: &Path, options: &EngineOptions) -> Result<Box<dyn Session>, EngineError> {
        OnnxRuntimeSession::load(&self.inner.environment, self.inner.pool, path, options)
            .map(|s| Box::new(s) as Box<dyn Session>)
    }
}

/// A model loaded into ONNX Runtime.
pub struct OnnxRuntimeSession {
    // `ort` needs exclusive access to run (ONNX Runtime's `Run` is not promised to be thread
    // safe); the lock is uncontended with one engine thread per session.
    session: Mutex<ort::session::Session>,
    signature: ModelSignature,
    /// Each input's dimension names (`None` for a fixed or unnamed one): inputs that share a
    /// name must agree on its size, which ONNX Runtime itself does not check.
    input_symbols: Vec<Vec<Option<String>>>,
}

impl OnnxRuntimeSession {
    /// Loads the model at `path` into `environment`, whose shared pool is `pool`.
    pub fn load(
        environment: &Environment,
        pool: SharedPool,
        path: &Path,
        options: &EngineOptions,
    ) -> Result<Self, EngineError> {
        let load_err =
            |e: &dyn std::fmt::Display| EngineError::Load(format!("{}: {e}", path.display()));
        let mut builder = ort::session::Session::builder(environment)
            .map_err(|e| load_err(&e))?
            .with_optimization_level(level(options.optimization))
            .map_err(|e| load_err(&e))?;
        if options.intra_op_threads.is_some() || options.inter_op_threads.is_some() {
            builder = builder
                .with_independent_thread_pool()
                .map_err(|e| load_err(&e))?;
            if let Some(n) = options.intra_op_threads {
                builder = builder.with_intra_threads(n).map_err(|e| load_err(&e))?;
            }
            if let Some(n) = options.inter_op_threads {
                builder = builder.with_inter_threads(n).map_err(|e| load_err(&e))?;
            }
        }
        // Operators run in parallel only when there are threads for it.
        if options.inter_op_threads.unwrap_or(pool.inter_op_threads) > 1 {
            builder = builder
                .with_parallel_execution(true)
                .map_err(|e| load_err(&e))?;
        }
        if let Some(saved) = &options.optimized_model_path {
            builder = builder
                .with_optimized_model_path(saved)
                .map_err(|e| load_err(&e))?;
        }
        let session = builder.commit_from_file(path).map_err(|e| load_err(&e))?;
        let signature = signature_of(&session)?;
        let input_symbols = session
            .inputs()
            .iter()
            .map(|outlet| match outlet.dtype() {
                ValueType::Tensor {
                    shape,
                    dimension_symbols,
                    ..
                } => shape
                    .iter()
                    .zip(dimension_symbols.iter())
                    .map(|(&d, name)| (d < 0 && !name.is_empty()).then(|| name.clone()))
                    .collect(),
                // Inputs are all tensors (checked by signature_of).
                ValueType::Sequence(_) | ValueType::Map { .. } | ValueType::Optional(_) => {
                    Vec::new()
                }
            })
            .collect();
        Ok(Self {
            session: Mutex::new(session),
            signature,
            input_symbols,
        })
    }
}

fn level(level: OptimizationLevel) -> GraphOptimizationLevel {
    match level {
        OptimizationLevel::Disable => GraphOptimizationLevel::Disable,
        OptimizationLevel::Basic => GraphOptimizationLevel::Level1,
        OptimizationLevel::Extended => GraphOptimizationLevel::Level2,
        OptimizationLevel::All => GraphOptimizationLevel::All,
    }
}

/// The tensors of the model. Inputs must all be tensors; outputs that are not (a ZipMap's
/// sequence of maps) are left out with a warning, as no protocol Quiver speaks can carry them.
fn signature_of(session: &ort::session::Session) -> Result<ModelSignature, EngineError> {
    let spec = |outlet: &ort::value::Outlet| -> Result<TensorSpec, String> {
        let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
            return Err(format!(
                "'{}' is a {}, not a tensor",
                outlet.name(),
                outlet.dtype()
            ));
        };
        let dtype = convert::dtype_from_ort(*ty)
            .ok_or_else(|| format!("'{}' has element type {ty:?}", outlet.name()))?;
        Ok(TensorSpec {
            name: outlet.name().to_owned(),
            dtype,
            shape: shape.iter().map(|&d| if d < 0 { -1 } else { d }).collect(),
        })
    };
    let inputs = session
        .inputs()
        .iter()
        .map(spec)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| EngineError::Unsupported(format!("input {e}")))?;
    let mut outputs = Vec::new();
    for outlet in session.outputs() {
        match spec(outlet) {
            Ok(s) => outputs.push(s),
            Err(why) => tracing::warn!("output {why}; it is left out of the model's outputs"),
        }
    }
    if outputs.is_empty() {
        return Err(EngineError::Unsupported(
            "the model has no tensor outputs".into(),
        ));
    }
    Ok(ModelSignature { inputs, outputs })
}

impl Session for OnnxRuntimeSession {
    fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    fn run(&self, inputs: Vec<Tensor>) -> Result<Vec<Tensor>, EngineError> {
        quiver_engine_api::check_shared_dims(&self.signature, &self.input_symbols, &inputs)?;
        let values = inputs
            .into_iter()
            .zip(&self.signature.inputs)
            .map(|(tensor, spec)| {
                convert::to_ort(tensor).map_err(|e| match e {
                    EngineError::InvalidInput(m) => {
                        EngineError::InvalidInput(format!("input '{}': {m}", spec.name))
                    }
                    other @ (EngineError::Load(_)
                    | EngineError::Unsupported(_)
                    | EngineError::Runtime(_)) => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut session = self.session.lock().unwrap_or_else(PoisonError::into_inner);
        let outputs = session.run(values.as_slice()).map_err(|e| {
            // Shapes that disagree with the model (e.g. two inputs on one symbolic dimension)
            // are the client's to fix.
            if e.code() == ort::ErrorCode::InvalidArgument {
                EngineError::InvalidInput(e.to_string())
            } else {
                EngineError::Runtime(e.to_string())
            }
        })?;
        self.signature
            .outputs
            .iter()
            .map(|spec| {
                let value = outputs.get(&spec.name).ok_or_else(|| {
                    EngineError::Runtime(format!("ONNX Runtime returned no output '{}'", spec.name))
                })?;
                convert::from_ort(&spec.name, value)
            })
            .collect()
    }
}
