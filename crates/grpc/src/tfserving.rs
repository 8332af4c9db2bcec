//! TensorFlow Serving's gRPC API: `PredictionService` (Predict, Classify, Regress,
//! GetModelMetadata) and
//! `ModelService` (GetModelStatus), over the same core calls as the REST API.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use prost::Message as _;
use quiver_core::serve::{self, Decoded, Encoded, Target};
use quiver_core::{
    Error, Inference, LoadedVersion, ModelManager, NamedTensor, Task, TensorSpec, VersionSelector,
    VersionState,
};
use quiver_engine_api::{DataType, MAX_RANK, Tensor, TensorData, element_count, f16, raw};
use tonic::{Request, Response, Status};

use crate::examples::{classification_response, regression_response};
use crate::status::{invalid, status};
use crate::tensorflow::serving::model_service_server::ModelService;
use crate::tensorflow::serving::model_spec::VersionChoice;
use crate::tensorflow::serving::model_version_status::State;
use crate::tensorflow::serving::prediction_service_server::PredictionService;
use crate::tensorflow::serving::{
    ClassificationRequest, ClassificationResponse, GetModelMetadataRequest,
    GetModelMetadataResponse, GetModelStatusRequest, GetModelStatusResponse, Input, ModelSpec,
    ModelVersionStatus, PredictRequest, PredictResponse, RegressionRequest, RegressionResponse,
    SignatureDefMap, StatusProto,
};
use crate::tensorflow::{self as tf, TensorProto, TensorShapeProto, tensor_shape_proto::Dim};
use crate::{deadline, narrow};
use quiver_telemetry::{Protocol, RequestRecord};

/// TF Serving's one signature name for models without named signatures.
pub const DEFAULT_SIGNATURE: &str = "serving_default";

/// TF Serving's gRPC services.
#[derive(Clone)]
pub struct TfServing {
    models: Arc<ModelManager>,
}

impl TfServing {
    /// The services over `models`.
    pub fn new(models: Arc<ModelManager>) -> Self {
        Self { models }
    }

    /// The version a request names, loaded on demand if it was unloaded while idle.
    async fn resolve(&self, spec: Option<&ModelSpec>) -> Result<Arc<LoadedVersion>, Status> {
        let target = target_of(spec).map_err(status)?;
        self.models
            .acquire(target.model, &target.version, None)
            .await
            .map_err(status)
    }
}

/// The version a request's `model_spec` names.
fn target_of(spec: Option<&ModelSpec>) -> Result<Target<'_>, Error> {
    let spec = spec.ok_or_else(|| invalid("the request has no model_spec"))?;
    if spec.name.is_empty() {
        return Err(invalid("model_spec.name is empty"));
    }
    Ok(Target::new(&spec.name, selector_of(spec)?))
}

/// The version a spec asks for: a number, a label, or (neither) the latest.
fn selector_of(spec: &ModelSpec) -> Result<VersionSelector, Error> {
    match &spec.version_choice {
        None => Ok(VersionSelector::Latest),
        Some(VersionChoice::Version(v)) => u64::try_from(*v)
            .ok()
            .filter(|&v| v > 0)
            .map(VersionSelector::Specific)
            .ok_or_else(|| invalid(format!("version {v} is not a positive integer"))),
        Some(VersionChoice::VersionLabel(label)) => Ok(VersionSelector::Label(label.clone())),
    }
}

fn check_signature(spec: Option<&ModelSpec>, model: &str) -> Result<(), Error> {
    match spec.map(|s| s.signature_name.as_str()) {
        None | Some("" | DEFAULT_SIGNATURE) => Ok(()),
        Some(other) => Err(invalid(format!(
            "signature '{other}' not found in model '{model}'; its only signature is '{DEFAULT_SIGNATURE}'"
        ))),
    }
}

fn answered_spec(loaded: &LoadedVersion, signature_name: &str) -> ModelSpec {
    ModelSpec {
        name: loaded.name().to_owned(),
        version_choice: Some(VersionChoice::Version(
            i64::try_from(loaded.version()).unwrap_or(i64::MAX),
        )),
        signature_name: signature_name.to_owned(),
    }
}

/// TensorFlow's element type for each of ours.
pub fn tf_dtype(dtype: DataType) -> tf::DataType {
    match dtype {
        DataType::Bool => tf::DataType::DtBool,
        DataType::U8 => tf::DataType::DtUint8,
        DataType::U16 => tf::DataType::DtUint16,
        DataType::U32 => tf::DataType::DtUint32,
        DataType::U64 => tf::DataType::DtUint64,
        DataType::I8 => tf::DataType::DtInt8,
        DataType::I16 => tf::DataType::DtInt16,
        DataType::I32 => tf::DataType::DtInt32,
        DataType::I64 => tf::DataType::DtInt64,
        DataType::F16 => tf::DataType::DtHalf,
        DataType::F32 => tf::DataType::DtFloat,
        DataType::F64 => tf::DataType::DtDouble,
        DataType::String => tf::DataType::DtString,
    }
}

fn from_tf_dtype(code: i32) -> Option<DataType> {
    DataType::ALL
        .into_iter()
        .find(|&d| tf_dtype(d) as i32 == code)
}

/// A request's TensorProto as a tensor: typed `*_val` fields or packed `tensor_content`.
pub fn from_proto(name: &str, mut proto: TensorProto) -> Result<Tensor, Error> {
    let err = |m: String| invalid(format!("input '{name}': {m}"));
    let dtype = from_tf_dtype(proto.dtype).ok_or_else(|| {
        let tf_name =
            tf::DataType::try_from(proto.dtype).map_or("an unknown type", |d| d.as_str_name());
        err(format!("unsupported dtype {tf_name} ({})", proto.dtype))
    })?;
    let shape_proto = proto.tensor_shape.take().unwrap_or_default();
    if shape_proto.unknown_rank {
        return Err(err("the tensor_shape has unknown rank".into()));
    }
    if shape_proto.dim.len() > MAX_RANK {
        return Err(err(format!(
            "a shape may have at most {MAX_RANK} dimensions"
        )));
    }
    let shape = shape_proto
        .dim
        .iter()
        .map(|d| {
            usize::try_from(d.size).map_err(|_| {
                err(format!(
                    "dimension sizes must be non-negative, got {}",
                    d.size
                ))
            })
        })
        .collect::<Result<Vec<usize>, Error>>()?;
    let count = element_count(&shape)
        .ok_or_else(|| err(format!("shape {shape:?} has too many elements")))?;
    let data = if !proto.tensor_content.is_empty() && dtype != DataType::String {
        raw::decode(dtype, &proto.tensor_content, count).map_err(err)?
    } else {
        typed_values(dtype, proto).map_err(err)?
    };
    Tensor::new(shape, data).map_err(err)
}

fn typed_values(dtype: DataType, p: TensorProto) -> Result<TensorData, String> {
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(p.bool_val),
        DataType::F32 => TensorData::F32(p.float_val),
        DataType::F64 => TensorData::F64(p.double_val),
        DataType::I32 => TensorData::I32(p.int_val),
        DataType::I16 => TensorData::I16(narrow(p.int_val, dtype)?),
        DataType::I8 => TensorData::I8(narrow(p.int_val, dtype)?),
        DataType::U8 => TensorData::U8(narrow(p.int_val, dtype)?),
        DataType::U16 => TensorData::U16(narrow(p.int_val, dtype)?),
        DataType::I64 => TensorData::I64(p.int64_val),
        DataType::U32 => TensorData::U32(p.uint32_val),
        DataType::U64 => TensorData::U64(p.uint64_val),
        DataType::String => TensorData::String(p.string_val),
        DataType::F16 => TensorData::F16(
            narrow::<i32, u16>(p.half_val, dtype)?
                .into_iter()
                .map(f16::from_bits)
                .collect(),
        ),
    })
}

fn shape_proto(dims: impl Iterator<Item = i64>) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .map(|size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}

/// An output tensor as TF Serving answers it: packed `tensor_content`, strings in `string_val`.
pub fn to_proto(tensor: &Tensor) -> TensorProto {
    let mut proto = TensorProto {
        dtype: tf_dtype(tensor.dtype()).into(),
        tensor_shape: Some(shape_proto(
            tensor
                .shape()
                .iter()
                .map(|&d| i64::try_from(d).unwrap_or(i64::MAX)),
        )),
        ..TensorProto::default()
    };
    if let TensorData::String(v) = tensor.data() {
        proto.string_val.clone_from(v);
    } else {
        raw::encode(tensor.data(), &mut proto.tensor_content);
    }
    proto
}

fn tensor_info(spec: &TensorSpec) -> tf::TensorInfo {
    tf::TensorInfo {
        encoding: Some(tf::tensor_info::Encoding::Name(spec.name.clone())),
        dtype: tf_dtype(spec.dtype).into(),
        tensor_shape: Some(shape_proto(spec.shape.iter().copied())),
    }
}

fn tf_state(state: VersionState) -> State {
    match state {
        VersionState::Start => State::Start,
        VersionState::Loading => State::Loading,
        VersionState::Available => State::Available,
        VersionState::Unloading => State::Unloading,
        VersionState::End | VersionState::Failed | VersionState::Idle => State::End,
    }
}

impl TfServing {
    async fn serve_predict(
        &self,
        request: PredictRequest,
        deadline: Option<Instant>,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<PredictResponse, Status> {
        let output_filter = &request.output_filter;
        let keys = crate::sticky::MetadataKeys(metadata);
        serve::infer(
            &self.models,
            target_of(request.model_spec.as_ref()).map(|t| t.until(deadline).with_keys(&keys)),
            RequestRecord::start(Protocol::TfservingGrpc, request.encoded_len()),
            |loaded| {
                check_signature(request.model_spec.as_ref(), loaded.name())?;
                if request.inputs.is_empty() {
                    return Err(invalid("the request has no inputs"));
                }
                if let Some(wanted) = output_filter
                    .iter()
                    .find(|wanted| loaded.signature().output_index(wanted).is_none())
                {
                    return Err(invalid(format!(
                        "output_filter names '{wanted}', which is not an output of model '{}'",
                        loaded.name()
                    )));
                }
                let inputs = request
                    .inputs
                    .into_iter()
                    .map(|(name, proto)| {
                        let tensor = from_proto(&name, proto)?;
                        Ok(NamedTensor::new(name, tensor))
                    })
                    .collect::<Result<Vec<_>, Error>>()?;
                Ok(Decoded {
                    inputs,
                    deadline,
                    plan: (),
                })
            },
            |loaded, inference, (), _| {
                let outputs = inference
                    .outputs
                    .into_iter()
                    .filter(|o| output_filter.is_empty() || output_filter.contains(&o.name))
                    .map(|o| {
                        let proto = to_proto(&o.tensor);
                        (o.name, proto)
                    })
                    .collect();
                let response = PredictResponse {
                    model_spec: Some(answered_spec(loaded, DEFAULT_SIGNATURE)),
                    outputs,
                };
                let bytes = response.encoded_len();
                Ok(Encoded::new(response, bytes))
            },
        )
        .await
        .map_err(status)
    }

    /// Classify or Regress: the examples as the model's inputs, then `answer` (given the spec to
    /// answer with) of the results of the model's `task` output.
    async fn examples<R: ExamplesRequest, T: prost::Message>(
        &self,
        request: Request<R>,
        task: Task,
        answer: impl FnOnce(ModelSpec, &LoadedVersion, &Inference) -> Result<T, Error>,
    ) -> Result<Response<T>, Status> {
        let deadline = deadline::from_metadata(request.metadata());
        let (metadata, _, request) = request.into_parts();
        let keys = crate::sticky::MetadataKeys(&metadata);
        let record = RequestRecord::start(Protocol::TfservingGrpc, request.encoded_len());
        let (spec, input) = request.into_parts();
        serve::infer(
            &self.models,
            target_of(spec.as_ref()).map(|t| t.until(deadline).with_keys(&keys)),
            record,
            |loaded| {
                check_signature(spec.as_ref(), loaded.name())?;
                loaded.check_task(task)?;
                let (context, examples) = crate::examples::examples_of(input)?;
                Ok(Decoded {
                    inputs: loaded.examples_to_inputs(&context, &examples)?,
                    deadline,
                    plan: (),
                })
            },
            |loaded, inference, (), stages| {
                let response =
                    answer(answered_spec(loaded, DEFAULT_SIGNATURE), loaded, &inference)?;
                stages.postprocessed();
                let bytes = response.encoded_len();
                Ok(Encoded::new(response, bytes))
            },
        )
        .await
        .map(Response::new)
        .map_err(status)
    }
}

/// `ClassificationRequest` and `RegressionRequest`: a model spec and examples.
trait ExamplesRequest: prost::Message {
    fn into_parts(self) -> (Option<ModelSpec>, Option<Input>);
}

impl ExamplesRequest for ClassificationRequest {
    fn into_parts(self) -> (Option<ModelSpec>, Option<Input>) {
        (self.model_spec, self.input)
    }
}

impl ExamplesRequest for RegressionRequest {
    fn into_parts(self) -> (Option<ModelSpec>, Option<Input>) {
        (self.model_spec, self.input)
    }
}

#[tonic::async_trait]
impl PredictionService for TfServing {
    async fn classify(
        &self,
        request: Request<ClassificationRequest>,
    ) -> Result<Response<ClassificationResponse>, Status> {
        self.examples(request, Task::Classification, |spec, loaded, inference| {
            Ok(classification_response(
                spec,
                loaded.classification(inference)?,
            ))
        })
        .await
    }

    async fn regress(
        &self,
        request: Request<RegressionRequest>,
    ) -> Result<Response<RegressionResponse>, Status> {
        self.examples(request, Task::Regression, |spec, loaded, inference| {
            Ok(regression_response(spec, loaded.regression(inference)?))
        })
        .await
    }

    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let deadline = deadline::from_metadata(request.metadata());
        let (metadata, _, request) = request.into_parts();
        self.serve_predict(request, deadline, &metadata)
            .await
            .map(Response::new)
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let request = request.into_inner();
        let loaded = self.resolve(request.model_spec.as_ref()).await?;
        if request.metadata_field.is_empty() {
            return Err(status(invalid(
                "metadata_field is empty; ask for \"signature_def\"",
            )));
        }
        if let Some(other) = request
            .metadata_field
            .iter()
            .find(|f| *f != "signature_def")
        {
            return Err(status(invalid(format!(
                "metadata field '{other}' is not supported; ask for \"signature_def\""
            ))));
        }
        let signature = loaded.signature();
        let def = tf::SignatureDef {
            inputs: signature
                .inputs
                .iter()
                .map(|s| (s.name.clone(), tensor_info(s)))
                .collect(),
            outputs: signature
                .outputs
                .iter()
                .map(|s| (s.name.clone(), tensor_info(s)))
                .collect(),
            method_name: "tensorflow/serving/predict".into(),
            defaults: HashMap::new(),
        };
        let map = SignatureDefMap {
            signature_def: HashMap::from([(DEFAULT_SIGNATURE.to_owned(), def)]),
        };
        let any = prost_types::Any {
            type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".into(),
            value: map.encode_to_vec(),
        };
        Ok(Response::new(GetModelMetadataResponse {
            model_spec: Some(answered_spec(&loaded, "")),
            metadata: HashMap::from([("signature_def".to_owned(), any)]),
        }))
    }
}

#[tonic::async_trait]
impl ModelService for TfServing {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let request = request.into_inner();
        let target = target_of(request.model_spec.as_ref()).map_err(status)?;
        let versions = self
            .models
            .status_of(target.model, &target.version)
            .map_err(status)?;
        Ok(Response::new(GetModelStatusResponse {
            model_version_status: versions
                .into_iter()
                .map(|v| ModelVersionStatus {
                    version: i64::try_from(v.version).unwrap_or(i64::MAX),
                    state: tf_state(v.state).into(),
                    status: Some(StatusProto {
                        error_code: v.tf_error_code().0,
                        error_message: v.error.unwrap_or_default(),
                    }),
                })
                .collect(),
        }))
    }
}
