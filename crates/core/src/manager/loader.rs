//! Building a version: its engine, one session per instance, the check of its signature against
//! what the configuration declares, the processing pipeline, warm-up, and the queue that serves it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use quiver_batcher::BatchPolicy;
use quiver_engine_api::{EngineOptions, ModelSignature, Session};
use quiver_repository::{
    self as repository, BatchingConfig, EngineOptionsConfig, ModelConfig, VersionDir,
};

use super::BatchingDefaults;
use super::ModelManager;
use crate::Error;
use crate::load_error::LoadError;
use crate::payload_log::PayloadLog;
use crate::version::LoadedVersion;

impl ModelManager {
    /// Picks the model's engine, loads one version on every instance and warms them up; on
    /// success, also says why that engine.
    pub(super) fn build(
        &self,
        name: &str,
        model_dir: &Path,
        version: &VersionDir,
        loaded_config: &repository::LoadedConfig,
    ) -> Result<(LoadedVersion, String), LoadError> {
        let config = &loaded_config.config;
        let selection = self
            .engines
            .select(
                config
                    .engine
                    .as_ref()
                    .unwrap_or(&self.options.default_engine),
            )
            .map_err(LoadError::EngineUnavailable)?;
        let engine = selection.engine.name();
        let options = engine_options(
            self.options.optimized_model_dir.as_deref(),
            self.options.optimization,
            name,
            version.version,
            &config.engine_options,
        );
        let defaults = &self.options.batching;
        let instances = config
            .batching
            .instances
            .unwrap_or(defaults.instances)
            .max(1);
        let mut sessions: Vec<Box<dyn Session>> = Vec::with_capacity(instances);
        for _ in 0..instances {
            sessions.push(
                selection
                    .engine
                    .load(&version.model_file, &options)
                    .map_err(|e| LoadError::from_engine(engine, &e))?,
            );
        }
        let signature = sessions
            .first()
            .map(|s| s.signature().clone())
            .unwrap_or_default();
        if let Some(declared) = &loaded_config.declared {
            check_declared(declared, &signature).map_err(LoadError::Signature)?;
        }
        let policy = batch_policy(name, &config.batching, defaults, &signature)
            .map_err(LoadError::Signature)?;
        let pipeline = quiver_processing::Pipeline::build(
            model_dir,
            &config.inputs,
            &config.outputs,
            &signature,
        )
        .map_err(LoadError::Processing)?;
        let version_dir = model_dir.join(version.version.to_string());
        let warmup = crate::warmup::requests(config.lifecycle.warmup, &version_dir, &signature)
            .map_err(LoadError::Warmup)?;
        if !warmup.is_empty() {
            let started = Instant::now();
            for session in &sessions {
                crate::warmup::run(session.as_ref(), &warmup).map_err(LoadError::Warmup)?;
            }
            tracing::info!(model = %name, version = version.version, requests = warmup.len(),
                seconds = started.elapsed().as_secs_f64(), "warmed up");
        }
        let default_timeout = match config.batching.default_timeout_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => defaults.default_timeout,
        };
        let payload_log = config
            .payload_log
            .as_ref()
            .map(|log| PayloadLog::start(name, version.version, model_dir, log))
            .transpose()
            .map_err(LoadError::Config)?;
        let loaded = LoadedVersion::start(
            name,
            version.version,
            engine,
            selection.engine.platform(),
            sessions,
            policy,
            default_timeout,
        )
        .map_err(|e| LoadError::Resources(format!("cannot start the model's threads: {e}")))?
        .with_pipeline(pipeline)
        .with_cache(config.cache.max_bytes.unwrap_or(0))
        .with_payload_log(payload_log);
        Ok((loaded, selection.reason))
    }
}

/// A model's engine options: its config, then the server-wide settings.
fn engine_options(
    optimized_model_dir: Option<&Path>,
    optimization: quiver_engine_api::OptimizationLevel,
    name: &str,
    version: u64,
    config: &EngineOptionsConfig,
) -> EngineOptions {
    EngineOptions {
        intra_op_threads: config.intra_op_threads,
        inter_op_threads: config.inter_op_threads,
        optimization: config.graph_optimization_level.unwrap_or(optimization),
        optimized_model_path: config.optimized_model_path.clone().or_else(|| {
            let dir: PathBuf = optimized_model_dir?.join(name).join(version.to_string());
            if let Err(e) = std::fs::create_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), "cannot create the directory for the optimised model: {e}");
            }
            Some(dir.join(repository::MODEL_FILE))
        }),
    }
}

/// A model's batching: its `[batching]`, then the server's defaults. Batching needs every input
/// and output to have a dynamic first dimension; a model that asks for batching without one
/// fails to load, while the server-wide default just leaves such a model unbatched.
pub(super) fn batch_policy(
    name: &str,
    config: &BatchingConfig,
    defaults: &BatchingDefaults,
    signature: &ModelSignature,
) -> Result<BatchPolicy, String> {
    let mut max_batch_size = config.max_batch_size.unwrap_or(defaults.max_batch_size);
    if max_batch_size > 0 {
        let fixed = signature
            .inputs
            .iter()
            .chain(&signature.outputs)
            .find(|spec| spec.shape.first() != Some(&-1));
        if let Some(spec) = fixed {
            if config.max_batch_size.is_some() {
                return Err(format!(
                    "batching.max_batch_size = {max_batch_size} needs every input and output to have a dynamic first dimension; '{}' has shape {}",
                    spec.name,
                    crate::shape_text(&spec.shape)
                ));
            }
            tracing::info!(model = name, tensor = %spec.name, "not batching: a tensor has a fixed first dimension");
            max_batch_size = 0;
        }
    }
    let mut pad = Vec::new();
    if let Some(inputs) = &config.pad_inputs {
        pad = vec![None; signature.inputs.len()];
        for (input, &value) in inputs {
            let Some(position) = signature.inputs.iter().position(|s| &s.name == input) else {
                return Err(format!(
                    "batching.pad_inputs: the model has no input '{input}' (it has {})",
                    names(&signature.inputs)
                ));
            };
            if !signature.inputs[position]
                .shape
                .iter()
                .skip(1)
                .any(|&d| d < 0)
            {
                return Err(format!(
                    "batching.pad_inputs: input '{input}' has no variable dimension after the batch dimension (shape {})",
                    crate::shape_text(&signature.inputs[position].shape)
                ));
            }
            pad[position] = Some(value);
        }
    }
    Ok(BatchPolicy {
        pad,
        max_batch_size,
        max_queue_delay: config
            .max_queue_delay_us
            .map_or(defaults.max_queue_delay, Duration::from_micros),
        preferred_batch_sizes: config.preferred_batch_sizes.clone().unwrap_or_default(),
        max_queue_size: config
            .max_queue_size
            .unwrap_or(defaults.max_queue_size)
            .max(1),
        inline_max: quiver_batcher::state::INLINE_MAX,
    })
}

/// `'a', 'b'`: the tensors a message offers instead.
fn names(specs: &[quiver_engine_api::TensorSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("'{}'", s.name))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A load's `parameters.config`: Quiver's keys, else Triton's model configuration in JSON.
pub(super) fn override_config(name: &str, text: &str) -> Result<repository::LoadedConfig, Error> {
    let quiver = match serde_json::from_str::<ModelConfig>(text) {
        Ok(config) => {
            return Ok(repository::LoadedConfig {
                config,
                source: repository::ConfigSource::Default,
                declared: None,
                warnings: Vec::new(),
            });
        }
        Err(e) => e,
    };
    match repository::parse_triton_json(text) {
        Ok(triton) => {
            if let Some(declared) = triton.name.as_deref().filter(|n| *n != name) {
                return Err(Error::invalid(format!(
                    "parameters.config: name \"{declared}\" is not the model's name \"{name}\""
                )));
            }
            // Checked against the model at load, as a config.pbtxt's are.
            Ok(repository::LoadedConfig {
                config: triton.config,
                source: repository::ConfigSource::TritonPbtxt,
                declared: Some(repository::DeclaredSignature {
                    max_batch_size: triton.max_batch_size,
                    inputs: triton.inputs,
                    outputs: triton.outputs,
                }),
                warnings: triton
                    .warnings
                    .into_iter()
                    .map(|w| format!("parameters.config: {w}"))
                    .collect(),
            })
        }
        Err(triton) => Err(Error::invalid(format!(
            "parameters.config is neither Quiver's model config ({quiver}) nor Triton's ({triton})"
        ))),
    }
}

/// Checks that the tensors a Triton config declares are the model's: a config written for
/// another model (or an old version) fails at load instead of at the first request.
fn check_declared(
    declared: &repository::DeclaredSignature,
    signature: &ModelSignature,
) -> Result<(), String> {
    for (kind, tensors, specs) in [
        ("input", &declared.inputs, &signature.inputs),
        ("output", &declared.outputs, &signature.outputs),
    ] {
        for tensor in tensors {
            let Some(spec) = specs.iter().find(|s| s.name == tensor.name) else {
                return Err(format!(
                    "the Triton model config declares {kind} '{}', which the model does not have (it has {})",
                    tensor.name,
                    names(specs)
                ));
            };
            if tensor.dtype != spec.dtype.kserve_name() {
                return Err(format!(
                    "the Triton model config declares {kind} '{}' as {}, the model has {}",
                    tensor.name,
                    tensor.dtype,
                    spec.dtype.kserve_name()
                ));
            }
        }
    }
    Ok(())
}
