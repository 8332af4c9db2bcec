//! A loaded, servable model version and the checks every request passes before compute.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use quiver_batcher::{BatchError, BatchPolicy, Company, Queue, QueueStats};
use quiver_engine_api::{
    EngineError, ModelSignature, NamedTensor, Session, Tensor, TensorSpec, shape_text,
};
use quiver_processing::{Pipeline, ProcessError};
use quiver_telemetry::VersionMetrics;

use crate::cache::{CacheResult, Cached, ResponseCache};
use crate::examples::{ImpliedTask, implied_task, through_pipeline};
use crate::manager::Retirement;
use crate::payload_log::PayloadLog;
use crate::{Error, ErrorKind};

/// A model version ready to serve. Requests hold an `Arc` to it, so a version being retired
/// finishes the work it accepted before its engine session is dropped.
pub struct LoadedVersion {
    name: String,
    version: u64,
    engine: &'static str,
    platform: &'static str,
    /// What clients see: the model's signature, changed by `pipeline`.
    signature: ModelSignature,
    /// What the engine sees.
    model_signature: ModelSignature,
    pipeline: Option<Arc<Pipeline>>,
    /// What `:classify` / `:regress` read when the config names no task.
    implied_task: ImpliedTask,
    /// Answers kept for repeated identical requests (`[cache]`), when configured.
    cache: Option<ResponseCache>,
    /// A sample of request/response pairs written elsewhere (`[payload_log]`), when configured.
    payload_log: Option<PayloadLog>,
    queue: Queue,
    default_timeout: Option<Duration>,
    instances: usize,
    metrics: Arc<VersionMetrics>,
    /// Set when the version is retired. The last field, so it is dropped after the queue and
    /// sessions: when the last request lets go, it finishes the retirement.
    retirement: Mutex<Option<Retirement>>,
}

/// A request's outputs and where its time went inside the model.
#[derive(Debug)]
pub struct Inference {
    /// Every output, in signature order.
    pub outputs: Vec<NamedTensor>,
    /// Time waiting in the queue.
    pub queued: Duration,
    /// Time of the engine call (with batch assembly and splitting).
    pub compute: Duration,
    /// Time of the pre-processing the model's config declares (images, text).
    pub preprocess: Duration,
    /// Time of the post-processing the model's config declares.
    pub postprocess: Duration,
    /// The model outputs post-processing replaced, as the model returned them.
    pub raw: Vec<NamedTensor>,
    /// Tokens the request's text came to (0 without text inputs).
    pub tokens: usize,
    /// Whether the answer came from the version's response cache (`None`: it has none).
    pub cache: Option<CacheResult>,
}

impl Inference {
    /// The model's own output `name`, before any post-processing.
    pub fn raw_output(&self, name: &str) -> Option<&NamedTensor> {
        self.raw
            .iter()
            .chain(&self.outputs)
            .find(|o| o.name == name)
    }
}

impl std::fmt::Debug for LoadedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedVersion")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("engine", &self.engine)
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

impl LoadedVersion {
    /// Starts serving `sessions` (one per engine instance, each on its own thread) behind a
    /// queue that batches under `policy`.
    pub(crate) fn start(
        name: &str,
        version: u64,
        engine: &'static str,
        platform: &'static str,
        sessions: Vec<Box<dyn Session>>,
        policy: BatchPolicy,
        default_timeout: Option<Duration>,
    ) -> std::io::Result<Self> {
        let model_signature = sessions
            .first()
            .map(|s| s.signature().clone())
            .unwrap_or_default();
        let signature = model_signature.clone();
        let implied_task = implied_task(&model_signature);
        let instances = sessions.len();
        let sessions = sessions.into_iter().map(Arc::from).collect();
        let metrics = Arc::new(VersionMetrics::new(name, version));
        let queue = Queue::start(Arc::clone(&metrics), sessions, policy)?;
        Ok(Self {
            name: name.to_owned(),
            version,
            engine,
            platform,
            signature,
            model_signature,
            pipeline: None,
            implied_task,
            cache: None,
            payload_log: None,
            queue,
            default_timeout,
            instances,
            metrics,
            retirement: Mutex::new(None),
        })
    }

    /// Has the version finish retiring once the last reference to it is dropped.
    pub(crate) fn retire_on_drop(&self, retirement: Retirement) {
        *self
            .retirement
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(retirement);
    }

    /// Serves with the pre- and post-processing `pipeline` (clients then see its signature).
    pub(crate) fn with_pipeline(mut self, pipeline: Option<Pipeline>) -> Self {
        if let Some(p) = &pipeline {
            self.signature = p.client_signature().clone();
            self.implied_task = through_pipeline(
                std::mem::replace(&mut self.implied_task, Err(String::new())),
                p,
            );
        }
        self.pipeline = pipeline.map(Arc::new);
        self
    }

    /// Keeps answers to repeated identical requests, up to `max_bytes` (0: no cache).
    pub(crate) fn with_cache(mut self, max_bytes: u64) -> Self {
        self.cache = (max_bytes > 0).then(|| {
            ResponseCache::new(
                max_bytes,
                quiver_telemetry::CacheMetrics::new(&self.name, self.version),
            )
        });
        self
    }

    /// Logs a sample of its requests and answers through `log`.
    pub(crate) fn with_payload_log(mut self, log: Option<PayloadLog>) -> Self {
        self.payload_log = log;
        self
    }

    /// The payload log, when this request is one of its sample.
    pub(crate) fn payload_log_draw(&self) -> Option<&PayloadLog> {
        self.payload_log.as_ref().filter(|log| log.draw())
    }

    /// The TF Serving task the model's shape implies, and the step answering it.
    pub(crate) fn implied_task(&self) -> &ImpliedTask {
        &self.implied_task
    }

    /// This version's metric handles.
    pub fn metrics(&self) -> &Arc<VersionMetrics> {
        &self.metrics
    }

    /// Model name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Version number.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The engine running this version (`tract`, `onnxruntime`).
    pub fn engine(&self) -> &'static str {
        self.engine
    }

    /// The engine's platform name (`tract_onnx`, `onnxruntime_onnx`).
    pub fn platform(&self) -> &'static str {
        self.platform
    }

    /// Inputs and outputs as clients see them (after the config's pre- and post-processing).
    pub fn signature(&self) -> &ModelSignature {
        &self.signature
    }

    /// Inputs and outputs of the model itself.
    pub fn model_signature(&self) -> &ModelSignature {
        &self.model_signature
    }

    /// The pre- and post-processing the model's config declares.
    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.pipeline.as_deref()
    }

    /// Whether the input `name` also takes encoded images (as BYTES).
    pub fn takes_images(&self, name: &str) -> bool {
        self.pipeline.as_ref().is_some_and(|p| p.takes_images(name))
    }

    /// How requests are batched (`max_batch_size` 0: not at all).
    pub fn batch_policy(&self) -> &BatchPolicy {
        self.queue.policy()
    }

    /// Engine instances (sessions on their own threads).
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Batches and requests run so far.
    pub fn batch_stats(&self) -> QueueStats {
        self.queue.stats()
    }

    /// Runs the model on `inputs` (any order, each named once) and returns every output in
    /// signature order. A request still waiting at `deadline` (or, without one, after the
    /// model's `default_timeout_ms`) is answered with [`ErrorKind::Timeout`] without running.
    pub async fn infer(
        &self,
        inputs: Vec<NamedTensor>,
        deadline: Option<Instant>,
    ) -> Result<Vec<NamedTensor>, Error> {
        Ok(self
            .infer_timed(inputs, deadline, Company::Unknown)
            .await?
            .outputs)
    }

    /// [`LoadedVersion::infer`], also saying how long the request queued and computed.
    pub async fn infer_timed(
        &self,
        inputs: Vec<NamedTensor>,
        deadline: Option<Instant>,
        company: Company,
    ) -> Result<Inference, Error> {
        let started = Instant::now();
        let Some(cache) = &self.cache else {
            return self.run_model(inputs, deadline, started, company).await;
        };
        let key = crate::cache::key(&inputs);
        if let Some(kept) = cache.get(&key) {
            return Ok(Inference {
                outputs: kept.outputs.clone(),
                raw: kept.raw.clone(),
                queued: Duration::ZERO,
                compute: Duration::ZERO,
                preprocess: started.elapsed(),
                postprocess: Duration::ZERO,
                tokens: 0,
                cache: Some(CacheResult::Hit),
            });
        }
        let mut inference = self.run_model(inputs, deadline, started, company).await?;
        cache.insert(
            key,
            Cached {
                outputs: inference.outputs.clone(),
                raw: inference.raw.clone(),
            },
        );
        inference.cache = Some(CacheResult::Miss);
        Ok(inference)
    }

    /// Pre-processing, the queue and the engine, post-processing: a request the cache did not
    /// answer.
    async fn run_model(
        &self,
        inputs: Vec<NamedTensor>,
        deadline: Option<Instant>,
        started: Instant,
        company: Company,
    ) -> Result<Inference, Error> {
        let deadline = deadline.or_else(|| self.default_timeout.map(|t| started + t));
        let _inflight = self.metrics.inflight();
        let (inputs, kept, tokens) = match &self.pipeline {
            None => (inputs, Vec::new(), 0),
            Some(pipeline) if pipeline.has_input_work(&inputs) => {
                let pipeline = Arc::clone(pipeline);
                let prepared = on_processing_pool(move || pipeline.preprocess(inputs)).await??;
                (prepared.inputs, prepared.kept, prepared.tokens)
            }
            Some(pipeline) => {
                let prepared = pipeline.preprocess(inputs)?;
                (prepared.inputs, prepared.kept, prepared.tokens)
            }
        };
        let ordered = order_inputs(&self.model_signature, inputs)?;
        let preprocess = started.elapsed();
        let answer = self
            .queue
            .run(ordered, deadline, company)
            .await
            .map_err(|e| batch_error(&self.name, e))?;
        let outputs = answer.outputs;
        if outputs.len() != self.model_signature.outputs.len() {
            return Err(Error::internal(format!(
                "the engine returned {} outputs, the signature has {}",
                outputs.len(),
                self.model_signature.outputs.len()
            )));
        }
        let outputs: Vec<NamedTensor> = self
            .model_signature
            .outputs
            .iter()
            .zip(outputs)
            .map(|(spec, tensor)| NamedTensor::new(spec.name.clone(), tensor))
            .collect();
        let post_started = Instant::now();
        let (outputs, raw) = match &self.pipeline {
            Some(pipeline) if pipeline.has_output_work() => {
                let pipeline = Arc::clone(pipeline);
                let finished =
                    on_processing_pool(move || pipeline.postprocess(outputs, &kept)).await??;
                (finished.outputs, finished.raw)
            }
            Some(_) | None => (outputs, Vec::new()),
        };
        Ok(Inference {
            outputs,
            queued: answer.queued,
            compute: answer.compute,
            preprocess,
            postprocess: post_started.elapsed(),
            raw,
            tokens,
            cache: None,
        })
    }
}

impl LoadedVersion {
    /// The output a request names, as it asked for it: processed (the default), `raw` (the
    /// model's own, before the config's post-processing) or as its top `classification`
    /// classes in Triton's `"score:index:label"` form (of the raw output, as Triton does).
    pub fn select_output<'a>(
        &self,
        inference: &'a Inference,
        name: &str,
        raw: bool,
        classification: Option<usize>,
    ) -> Result<Cow<'a, NamedTensor>, Error> {
        let unknown = || {
            let mut names: Vec<&str> = inference.outputs.iter().map(|o| o.name.as_str()).collect();
            for raw in &inference.raw {
                if !names.contains(&raw.name.as_str()) {
                    names.push(&raw.name);
                }
            }
            Error::invalid(format!(
                "unknown output '{name}'; the model's outputs are '{}'",
                names.join("', '")
            ))
        };
        let found = if raw || classification.is_some() {
            inference.raw_output(name)
        } else {
            inference
                .outputs
                .iter()
                .find(|o| o.name == name)
                .or_else(|| inference.raw_output(name))
        };
        let found = found.ok_or_else(unknown)?;
        let Some(k) = classification else {
            return Ok(Cow::Borrowed(found));
        };
        let labels = self
            .pipeline
            .as_ref()
            .and_then(|p| p.output_step(name))
            .and_then(|s| s.labels());
        let tensor = quiver_processing::classify_tensor(&found.tensor, k, labels)
            .map_err(|e| Error::invalid(format!("output '{name}': classification: {e}")))?;
        Ok(Cow::Owned(NamedTensor::new(name, tensor)))
    }
}

/// Runs `work` on the processing pool (off the async runtime) and waits for it. At most
/// [`PROCESSING_PERMITS`] jobs are handed over at once; the others wait here, without a
/// thread, so a burst of large images cannot pile up unbounded work behind the pool.
async fn on_processing_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Error> {
    static PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PROCESSING_PERMITS);
    let _permit = PERMITS
        .acquire()
        .await
        .map_err(|_| Error::internal("processing is shut down"))?;
    let stopped = || Error::internal("processing stopped before it finished (see the log)");
    match quiver_processing::pool() {
        Some(pool) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            pool.spawn(move || {
                let _ = tx.send(work());
            });
            rx.await.map_err(|_| stopped())
        }
        None => tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| stopped()),
    }
}

/// Processing jobs handed to the pool at once.
const PROCESSING_PERMITS: usize = 64;

impl From<ProcessError> for Error {
    fn from(e: ProcessError) -> Self {
        match e {
            ProcessError::Invalid(m) => Error::invalid(m),
            e @ ProcessError::Internal(_) => Error::internal(e.to_string()),
        }
    }
}

fn batch_error(model: &str, e: BatchError) -> Error {
    match e {
        BatchError::Overloaded(queued) => Error::new(
            ErrorKind::Overloaded,
            format!("model '{model}' is overloaded ({queued} requests queued); try again later"),
        ),
        BatchError::TooManyRows { .. } | BatchError::InvalidInput(_) => {
            Error::invalid(e.to_string())
        }
        BatchError::DeadlineExceeded => Error::new(ErrorKind::Timeout, e.to_string()),
        BatchError::Stopped => Error::new(ErrorKind::Unavailable, e.to_string()),
        BatchError::Engine(EngineError::InvalidInput(m)) => Error::invalid(m),
        BatchError::Engine(EngineError::Unsupported(m)) => {
            Error::invalid(format!("unsupported by this engine: {m}"))
        }
        BatchError::Engine(e @ (EngineError::Load(_) | EngineError::Runtime(_))) => {
            Error::internal(e.to_string())
        }
    }
}

/// The output called `name`, or an error listing the outputs there are (for requests that select
/// outputs by name).
pub fn find_output<'a>(outputs: &'a [NamedTensor], name: &str) -> Result<&'a NamedTensor, Error> {
    outputs.iter().find(|o| o.name == name).ok_or_else(|| {
        let names: Vec<&str> = outputs.iter().map(|o| o.name.as_str()).collect();
        Error::invalid(format!(
            "unknown output '{name}'; the model's outputs are '{}'",
            names.join("', '")
        ))
    })
}

/// Checks names, dtypes and shapes against the signature and puts the inputs in its order.
pub(crate) fn order_inputs(
    signature: &ModelSignature,
    inputs: Vec<NamedTensor>,
) -> Result<Vec<Tensor>, Error> {
    let mut slots: Vec<Option<Tensor>> = vec![None; signature.inputs.len()];
    for input in inputs {
        let Some(ix) = signature.input_index(&input.name) else {
            return Err(Error::invalid(format!(
                "unknown input '{}'; the model's inputs are {}",
                input.name,
                names(&signature.inputs)
            )));
        };
        let spec = &signature.inputs[ix];
        check_tensor(spec, &input.tensor)?;
        if slots[ix].replace(input.tensor).is_some() {
            return Err(Error::invalid(format!(
                "input '{}' is given twice",
                spec.name
            )));
        }
    }
    let missing: Vec<&str> = signature
        .inputs
        .iter()
        .zip(&slots)
        .filter(|(_, slot)| slot.is_none())
        .map(|(spec, _)| spec.name.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(Error::invalid(format!(
            "missing input{} '{}'; the model's inputs are {}",
            if missing.len() > 1 { "s" } else { "" },
            missing.join("', '"),
            names(&signature.inputs)
        )));
    }
    Ok(slots.into_iter().flatten().collect())
}

fn check_tensor(spec: &TensorSpec, tensor: &Tensor) -> Result<(), Error> {
    if tensor.dtype() != spec.dtype {
        return Err(Error::invalid(format!(
            "input '{}': expected data type {}, got {}",
            spec.name,
            spec.dtype,
            tensor.dtype()
        )));
    }
    if !spec.accepts_shape(tensor.shape()) {
        return Err(Error::invalid(format!(
            "input '{}': expected shape {}, got {}",
            spec.name,
            shape_text(&spec.shape),
            shape_text(tensor.shape())
        )));
    }
    Ok(())
}

fn names(specs: &[TensorSpec]) -> String {
    let quoted: Vec<String> = specs.iter().map(|s| format!("'{}'", s.name)).collect();
    quoted.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::{DataType, TensorData};

    fn sig() -> ModelSignature {
        ModelSignature {
            inputs: vec![
                TensorSpec {
                    name: "a".into(),
                    dtype: DataType::F32,
                    shape: vec![-1, 2],
                },
                TensorSpec {
                    name: "b".into(),
                    dtype: DataType::I64,
                    shape: vec![-1],
                },
            ],
            outputs: vec![],
        }
    }

    fn a(rows: usize) -> NamedTensor {
        let t = Tensor::new(vec![rows, 2], TensorData::F32(vec![0.0; rows * 2])).unwrap();
        NamedTensor::new("a", t)
    }

    fn b() -> NamedTensor {
        NamedTensor::new("b", Tensor::new(vec![1], TensorData::I64(vec![1])).unwrap())
    }

    #[test]
    fn orders_inputs_by_signature() {
        let ordered = order_inputs(&sig(), vec![b(), a(1)]).unwrap();
        assert_eq!(ordered[0].dtype(), DataType::F32);
        assert_eq!(ordered[1].dtype(), DataType::I64);
    }

    #[test]
    fn names_what_is_wrong() {
        let e = order_inputs(&sig(), vec![a(1)]).unwrap_err();
        assert_eq!(
            e.message,
            "missing input 'b'; the model's inputs are 'a', 'b'"
        );
        let e =
            order_inputs(&sig(), vec![a(1), b(), NamedTensor::new("c", b().tensor)]).unwrap_err();
        assert!(e.message.starts_with("unknown input 'c'"), "{}", e.message);
        let e = order_inputs(&sig(), vec![a(1), a(1), b()]).unwrap_err();
        assert_eq!(e.message, "input 'a' is given twice");
        let wrong = Tensor::new(vec![1, 3], TensorData::F32(vec![0.0; 3])).unwrap();
        let e = order_inputs(&sig(), vec![NamedTensor::new("a", wrong), b()]).unwrap_err();
        assert_eq!(e.message, "input 'a': expected shape [-1,2], got [1,3]");
        let e = order_inputs(&sig(), vec![a(1), NamedTensor::new("b", a(1).tensor)]).unwrap_err();
        assert_eq!(e.message, "input 'b': expected data type INT64, got FP32");
    }
}
