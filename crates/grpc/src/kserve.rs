//! KServe V2's `inference.GRPCInferenceService`: the same core calls as the HTTP front end,
//! with typed `contents` or `raw_input_contents` / `raw_output_contents`.

use std::borrow::Cow;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message as _;
use quiver_core::serve::{self, Decoded, Encoded, Stages, Target, check_outputs_unique};
use quiver_core::{
    CacheResult, Error, Inference, LoadedVersion, ModelManager, NamedTensor, TensorSpec,
    VersionSelector, VersionState,
};
use quiver_engine_api::{DataType, MAX_RANK, Tensor, TensorData, element_count, raw};
use tokio_stream::{Stream, StreamExt as _};
use tonic::{Request, Response, Status, Streaming};

use crate::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::inference::infer_parameter::ParameterChoice;
use crate::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use crate::inference::model_infer_response::InferOutputTensor;
use crate::inference::model_metadata_response::TensorMetadata;
use crate::inference::model_repository_parameter::ParameterChoice as RepositoryParameter;
use crate::inference::repository_index_response::ModelIndex;
use crate::inference::{
    self as pb, InferTensorContents, ModelConfigRequest, ModelConfigResponse, ModelInferRequest,
    ModelInferResponse, ModelMetadataRequest, ModelMetadataResponse, ModelReadyRequest,
    ModelReadyResponse, ModelStreamInferResponse, ServerLiveRequest, ServerLiveResponse,
    ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest, ServerReadyResponse,
};
use crate::inference::{
    RepositoryIndexRequest, RepositoryIndexResponse, RepositoryModelLoadRequest,
    RepositoryModelLoadResponse, RepositoryModelUnloadRequest, RepositoryModelUnloadResponse,
};
use crate::status::{invalid, status};
use crate::{deadline, narrow};
use quiver_telemetry::{Protocol, RequestRecord};

/// Extensions this server implements, as ServerMetadata lists them.
pub const EXTENSIONS: &[&str] = &["binary_tensor_data", "model_configuration"];

/// The KServe V2 gRPC service.
#[derive(Clone)]
pub struct InferenceService {
    models: Arc<ModelManager>,
}

impl InferenceService {
    /// A service over `models`.
    pub fn new(models: Arc<ModelManager>) -> Self {
        Self { models }
    }

    /// The version a request names, loaded on demand if it was unloaded while idle.
    async fn resolve(&self, name: &str, version: &str) -> Result<Arc<LoadedVersion>, Status> {
        let target = Target::parse(name, Some(version)).map_err(status)?;
        self.models
            .acquire(target.model, &target.version, None)
            .await
            .map_err(status)
    }

    /// One inference request, recorded in the metrics.
    async fn infer(
        &self,
        request: ModelInferRequest,
        deadline: Option<Instant>,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<(ModelInferResponse, Option<CacheResult>), Status> {
        let keys = crate::sticky::V2Keys {
            metadata,
            parameters: &request.parameters,
        };
        serve::infer(
            &self.models,
            Target::parse(&request.model_name, Some(&request.model_version))
                .map(|t| t.until(deadline).with_keys(&keys)),
            RequestRecord::start(Protocol::KserveGrpc, request.encoded_len()),
            |_| {
                check_outputs_unique(request.outputs.iter().map(|o| o.name.as_str()))?;
                Ok(Decoded {
                    deadline: deadline::earliest(deadline, timeout_of(&request.parameters)?),
                    inputs: decode_inputs(request.inputs, request.raw_input_contents)?,
                    plan: (request.id, request.outputs),
                })
            },
            encode,
        )
        .await
        .map_err(status)
    }
}

/// Triton's `parameters["timeout"]`, in microseconds, as a deadline.
fn timeout_of(parameters: &HashMap<String, pb::InferParameter>) -> Result<Option<Instant>, Error> {
    match parameters
        .get("timeout")
        .and_then(|p| p.parameter_choice.as_ref())
    {
        None => Ok(None),
        Some(ParameterChoice::Int64Param(us)) if *us >= 0 => {
            Ok(deadline::after(Duration::from_micros(us.unsigned_abs())))
        }
        Some(ParameterChoice::Uint64Param(us)) => Ok(deadline::after(Duration::from_micros(*us))),
        Some(_) => Err(invalid(
            "parameters[\"timeout\"] must be a non-negative integer of microseconds",
        )),
    }
}

/// The outputs asked for (all when none is named), raw in `raw_output_contents`.
fn encode(
    loaded: &LoadedVersion,
    inference: Inference,
    (id, requested): (String, Vec<InferRequestedOutputTensor>),
    stages: &mut Stages<'_>,
) -> Result<Encoded<(ModelInferResponse, Option<CacheResult>)>, Error> {
    let selected = select_outputs(loaded, &inference, &requested)?;
    stages.postprocessed();
    let mut response = ModelInferResponse {
        model_name: loaded.name().to_owned(),
        model_version: loaded.version().to_string(),
        id,
        ..ModelInferResponse::default()
    };
    for output in selected {
        let tensor = &output.tensor;
        response.outputs.push(InferOutputTensor {
            name: output.name.clone(),
            datatype: tensor.dtype().kserve_name().to_owned(),
            shape: tensor
                .shape()
                .iter()
                .map(|&d| i64::try_from(d).unwrap_or(i64::MAX))
                .collect(),
            ..InferOutputTensor::default()
        });
        let mut bytes = Vec::new();
        raw::encode(tensor.data(), &mut bytes);
        response.raw_output_contents.push(bytes);
    }
    let bytes = response.encoded_len();
    Ok(Encoded::new((response, inference.cache), bytes))
}

fn shape_of(name: &str, dims: &[i64]) -> Result<Vec<usize>, Error> {
    if dims.len() > MAX_RANK {
        return Err(invalid(format!(
            "input '{name}': a shape may have at most {MAX_RANK} dimensions"
        )));
    }
    dims.iter()
        .map(|&d| {
            usize::try_from(d).map_err(|_| {
                invalid(format!(
                    "input '{name}': shape dimensions must be non-negative, got {d}"
                ))
            })
        })
        .collect()
}

/// A `ModelInferRequest`'s inputs as tensors: typed `contents` or `raw_input_contents`, checked
/// against their declared datatype and shape (public for the fuzz targets in `fuzz/`).
pub fn decode_inputs(
    inputs: Vec<InferInputTensor>,
    raw_contents: Vec<Vec<u8>>,
) -> Result<Vec<NamedTensor>, Error> {
    if inputs.is_empty() {
        return Err(invalid("the request has no inputs"));
    }
    if !raw_contents.is_empty() && raw_contents.len() != inputs.len() {
        return Err(invalid(format!(
            "raw_input_contents has {} entries for {} inputs; give one per input or none",
            raw_contents.len(),
            inputs.len()
        )));
    }
    let mut raw_contents = raw_contents.into_iter();
    inputs
        .into_iter()
        .map(|input| {
            let name = input.name;
            let dtype = DataType::from_kserve_name(&input.datatype).ok_or_else(|| {
                invalid(format!(
                    "input '{name}': unsupported datatype '{}'",
                    input.datatype
                ))
            })?;
            let shape = shape_of(&name, &input.shape)?;
            let count = element_count(&shape).ok_or_else(|| {
                invalid(format!(
                    "input '{name}': shape {shape:?} has too many elements"
                ))
            })?;
            let data = match raw_contents.next() {
                Some(bytes) => {
                    if input.contents.is_some() {
                        return Err(invalid(format!(
                            "input '{name}' has both contents and raw_input_contents; give one"
                        )));
                    }
                    raw::decode(dtype, &bytes, count)
                        .map_err(|m| invalid(format!("input '{name}': {m}")))?
                }
                None => {
                    let contents = input
                        .contents
                        .ok_or_else(|| invalid(format!("input '{name}' has no contents")))?;
                    from_contents(dtype, contents)
                        .map_err(|m| invalid(format!("input '{name}': {m}")))?
                }
            };
            let tensor =
                Tensor::new(shape, data).map_err(|m| invalid(format!("input '{name}': {m}")))?;
            Ok(NamedTensor::new(name, tensor))
        })
        .collect()
}

/// The typed contents field that carries `dtype`, narrowed where the field is wider.
fn from_contents(dtype: DataType, c: InferTensorContents) -> Result<TensorData, String> {
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::I8 => TensorData::I8(narrow(c.int_contents, dtype)?),
        DataType::I16 => TensorData::I16(narrow(c.int_contents, dtype)?),
        DataType::I32 => TensorData::I32(c.int_contents),
        DataType::I64 => TensorData::I64(c.int64_contents),
        DataType::U8 => TensorData::U8(narrow(c.uint_contents, dtype)?),
        DataType::U16 => TensorData::U16(narrow(c.uint_contents, dtype)?),
        DataType::U32 => TensorData::U32(c.uint_contents),
        DataType::U64 => TensorData::U64(c.uint64_contents),
        DataType::F16 => {
            return Err("FP16 has no typed contents field; send it in raw_input_contents".into());
        }
        DataType::F32 => TensorData::F32(c.fp32_contents),
        DataType::F64 => TensorData::F64(c.fp64_contents),
        DataType::String => TensorData::String(c.bytes_contents),
    })
}

fn select_outputs<'a>(
    loaded: &LoadedVersion,
    inference: &'a Inference,
    requested: &[InferRequestedOutputTensor],
) -> Result<Vec<Cow<'a, NamedTensor>>, Error> {
    if requested.is_empty() {
        return Ok(inference.outputs.iter().map(Cow::Borrowed).collect());
    }
    requested
        .iter()
        .map(|want| {
            let raw = match want
                .parameters
                .get("raw")
                .and_then(|p| p.parameter_choice.as_ref())
            {
                None => false,
                Some(ParameterChoice::BoolParam(raw)) => *raw,
                Some(_) => return Err(invalid("outputs[].parameters[\"raw\"] must be a bool")),
            };
            let classification = match want
                .parameters
                .get("classification")
                .and_then(|p| p.parameter_choice.as_ref())
            {
                None => None,
                Some(ParameterChoice::Int64Param(k)) if *k > 0 => usize::try_from(*k).ok(),
                Some(ParameterChoice::Uint64Param(k)) if *k > 0 => usize::try_from(*k).ok(),
                Some(_) => {
                    return Err(invalid(
                        "outputs[].parameters[\"classification\"] must be a positive integer",
                    ));
                }
            };
            loaded.select_output(inference, &want.name, raw, classification)
        })
        .collect()
}

fn tensor_metadata(spec: &TensorSpec) -> TensorMetadata {
    TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.dtype.kserve_name().to_owned(),
        shape: spec.shape.clone(),
    }
}

/// A count for an `int32` config field (counts this large do not occur; saturate if one did).
fn int32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn config_type(dtype: DataType) -> pb::DataType {
    pb::DataType::from_str_name(dtype.triton_config_name()).unwrap_or(pb::DataType::TypeInvalid)
}

/// The model's configuration in Triton's form, as over HTTP: a batching model reports its
/// `max_batch_size`, dims without the batch dimension and its `dynamic_batching`.
fn model_config(loaded: &LoadedVersion) -> pb::ModelConfig {
    let signature = loaded.signature();
    let policy = loaded.batch_policy();
    let batching = policy.max_batch_size > 0;
    let dims = |shape: &[i64]| {
        if batching {
            shape[1..].to_vec()
        } else {
            shape.to_vec()
        }
    };
    pb::ModelConfig {
        name: loaded.name().to_owned(),
        platform: loaded.platform().to_owned(),
        backend: loaded.engine().to_owned(),
        version_policy: Some(pb::ModelVersionPolicy {
            policy_choice: Some(pb::model_version_policy::PolicyChoice::Latest(
                pb::model_version_policy::Latest { num_versions: 1 },
            )),
        }),
        max_batch_size: int32(policy.max_batch_size),
        scheduling_choice: batching.then(|| {
            pb::model_config::SchedulingChoice::DynamicBatching(pb::ModelDynamicBatching {
                preferred_batch_size: policy
                    .preferred_batch_sizes
                    .iter()
                    .map(|&n| int32(n))
                    .collect(),
                max_queue_delay_microseconds: u64::try_from(policy.max_queue_delay.as_micros())
                    .unwrap_or(u64::MAX),
                ..pb::ModelDynamicBatching::default()
            })
        }),
        input: signature
            .inputs
            .iter()
            .map(|s| pb::ModelInput {
                name: s.name.clone(),
                data_type: config_type(s.dtype).into(),
                dims: dims(&s.shape),
                ..pb::ModelInput::default()
            })
            .collect(),
        output: signature
            .outputs
            .iter()
            .map(|s| pb::ModelOutput {
                name: s.name.clone(),
                data_type: config_type(s.dtype).into(),
                dims: dims(&s.shape),
                ..pb::ModelOutput::default()
            })
            .collect(),
        instance_group: vec![pb::ModelInstanceGroup {
            name: loaded.name().to_owned(),
            count: int32(loaded.instances()),
            kind: pb::model_instance_group::Kind::Cpu.into(),
            ..pb::ModelInstanceGroup::default()
        }],
        ..pb::ModelConfig::default()
    }
}

type InferStream =
    Pin<Box<dyn Stream<Item = Result<ModelStreamInferResponse, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl GrpcInferenceService for InferenceService {
    async fn server_live(
        &self,
        _: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    /// Ready once the start-up models are loaded, until shutdown begins.
    async fn server_ready(
        &self,
        _: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.models.is_ready(),
        }))
    }

    async fn repository_index(
        &self,
        request: Request<RepositoryIndexRequest>,
    ) -> Result<Response<RepositoryIndexResponse>, Status> {
        let request = request.into_inner();
        let models = self
            .models
            .index(request.ready)
            .iter()
            .map(|row| ModelIndex {
                name: row.name.clone(),
                version: row.version.map(|v| v.to_string()).unwrap_or_default(),
                state: row.triton_state().to_owned(),
                reason: row.reason_text(),
            })
            .collect();
        Ok(Response::new(RepositoryIndexResponse { models }))
    }

    async fn repository_model_load(
        &self,
        request: Request<RepositoryModelLoadRequest>,
    ) -> Result<Response<RepositoryModelLoadResponse>, Status> {
        let request = request.into_inner();
        let config = match request
            .parameters
            .get("config")
            .and_then(|p| p.parameter_choice.as_ref())
        {
            None => None,
            Some(RepositoryParameter::StringParam(text)) => Some(text.clone()),
            Some(_) => {
                return Err(status(invalid(
                    "parameters.config must be a string holding a JSON object",
                )));
            }
        };
        let models = Arc::clone(&self.models);
        off_runtime(move || models.api_load(&request.model_name, config.as_deref())).await?;
        Ok(Response::new(RepositoryModelLoadResponse {}))
    }

    async fn repository_model_unload(
        &self,
        request: Request<RepositoryModelUnloadRequest>,
    ) -> Result<Response<RepositoryModelUnloadResponse>, Status> {
        let models = Arc::clone(&self.models);
        let name = request.into_inner().model_name;
        off_runtime(move || models.api_unload(&name)).await?;
        Ok(Response::new(RepositoryModelUnloadResponse {}))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let request = request.into_inner();
        let selector = VersionSelector::parse(&request.version).map_err(status)?;
        let ready = self.models.get(&request.name, &selector).is_ok();
        Ok(Response::new(ModelReadyResponse { ready }))
    }

    async fn server_metadata(
        &self,
        _: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "quiver".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: EXTENSIONS.iter().map(|&e| e.to_owned()).collect(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version).await?;
        let versions = self
            .models
            .status(&request.name, None)
            .map_err(status)?
            .iter()
            .filter(|v| v.state == VersionState::Available)
            .map(|v| v.version.to_string())
            .collect();
        let signature = loaded.signature();
        Ok(Response::new(ModelMetadataResponse {
            name: loaded.name().to_owned(),
            versions,
            platform: loaded.platform().to_owned(),
            inputs: signature.inputs.iter().map(tensor_metadata).collect(),
            outputs: signature.outputs.iter().map(tensor_metadata).collect(),
        }))
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let deadline = crate::deadline::from_metadata(request.metadata());
        let (metadata, _, request) = request.into_parts();
        let (answer, cache) = self.infer(request, deadline, &metadata).await?;
        let mut response = Response::new(answer);
        if let Some(result) = cache {
            // As HTTP's `x-quiver-cache` header: whether the response cache answered.
            response.metadata_mut().insert(
                "x-quiver-cache",
                tonic::metadata::MetadataValue::from_static(result.as_str()),
            );
        }
        Ok(response)
    }

    type ModelStreamInferStream = InferStream;

    /// Answers each request of the stream in order; a failed request answers with its error
    /// message and the stream goes on, as Triton does.
    async fn model_stream_infer(
        &self,
        request: Request<Streaming<ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        let deadline = crate::deadline::from_metadata(request.metadata());
        let metadata = request.metadata().clone();
        let mut inbound = request.into_inner();
        let service = self.clone();
        let outbound = async_stream_from(move |tx| async move {
            while let Some(next) = inbound.next().await {
                let answer = match next {
                    Ok(request) => match service.infer(request, deadline, &metadata).await {
                        Ok((response, _)) => ModelStreamInferResponse {
                            error_message: String::new(),
                            infer_response: Some(response),
                        },
                        Err(e) => ModelStreamInferResponse {
                            error_message: e.message().to_owned(),
                            infer_response: None,
                        },
                    },
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        break;
                    }
                };
                if tx.send(Ok(answer)).await.is_err() {
                    break;
                }
            }
        });
        Ok(Response::new(outbound))
    }

    async fn model_config(
        &self,
        request: Request<ModelConfigRequest>,
    ) -> Result<Response<ModelConfigResponse>, Status> {
        let request = request.into_inner();
        let loaded = self.resolve(&request.name, &request.version).await?;
        Ok(Response::new(ModelConfigResponse {
            config: Some(model_config(&loaded)),
        }))
    }
}

/// Runs a load or unload on a blocking thread: it waits for a load of the same model to finish.
async fn off_runtime(
    work: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Result<(), Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| status(Error::internal(e.to_string())))?
        .map_err(status)
}

/// A response stream fed by a task: `produce` gets the sending half of a small channel.
fn async_stream_from<F, Fut>(produce: F) -> InferStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<ModelStreamInferResponse, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(produce(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
