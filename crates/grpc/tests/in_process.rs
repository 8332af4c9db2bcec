//! The gRPC services in-process: the generated tonic servers called with `tower`'s `oneshot` and
//! a request framed as on the wire (HTTP/2 headers, `grpc-timeout` among them, and a
//! length-prefixed protobuf message), so what a client's deadline turns into is what is tested.

#![allow(clippy::unwrap_used)] // a test may panic

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use http_body_util::{BodyExt as _, Full};
use prost::Message;
use quiver_core::{Engines, ManagerOptions, ModelManager, Sources};
use quiver_engine_tract::TractEngine;
use quiver_grpc::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
use quiver_grpc::inference::infer_parameter::ParameterChoice;
use quiver_grpc::inference::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use quiver_grpc::inference::{InferParameter, ModelInferRequest, ModelInferResponse};
use quiver_grpc::kserve::InferenceService;
use quiver_grpc::tensorflow::serving::prediction_service_server::PredictionServiceServer;
use quiver_grpc::tensorflow::serving::{
    ClassificationRequest, ExampleList, Input, ModelSpec, PredictRequest, RegressionRequest, input,
};
use quiver_grpc::tensorflow::{
    self as tf, Example, Feature, Features, FloatList, TensorProto, TensorShapeProto, feature,
    tensor_shape_proto::Dim,
};
use quiver_grpc::tfserving::TfServing;
use quiver_test_support::TempRepository;
use tonic::Code;
use tonic::codegen::Bytes;
use tonic::codegen::http::{self, HeaderMap};
use tower::ServiceExt as _;

/// half_plus_two and multi_io (fixtures), breast_cancer (`:classify`) and diabetes
/// (`:regress`) from the tabular fixtures of the end-to-end tests, loaded once.
fn models() -> Arc<ModelManager> {
    static MODELS: OnceLock<(TempRepository, Arc<ModelManager>)> = OnceLock::new();
    let (_, models) = MODELS.get_or_init(|| {
        let repo = TempRepository::new().unwrap();
        for name in ["half_plus_two", "multi_io"] {
            repo.add(name, 1, &quiver_test_support::fixture_model(name))
                .unwrap();
        }
        let tabular = quiver_test_support::workspace_root().join("tests/e2e/fixtures/models");
        for (name, files) in [
            ("breast_cancer", &["config.toml", "labels.txt"][..]),
            ("diabetes", &["config.toml"]),
        ] {
            repo.add(name, 1, &tabular.join(name).join("1/model.onnx"))
                .unwrap();
            for file in files {
                let text = std::fs::read(tabular.join(name).join(file)).unwrap();
                repo.write(&format!("{name}/{file}"), &text).unwrap();
            }
        }
        let models = ModelManager::new(
            Engines::new().with(Arc::new(TractEngine::new(1))),
            ManagerOptions::default(),
            Sources::Repository(repo.path().to_owned()),
        );
        models.load_all().unwrap();
        models.set_ready(true);
        (repo, Arc::new(models))
    });
    Arc::clone(models)
}

/// How a call ended: its status code and message, and the answer when it succeeded.
struct Outcome {
    code: Code,
    message: String,
    answer: Bytes,
}

fn status_of(headers: &HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .map(|m| percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// `grpc-message` is percent-encoded.
fn percent_decode(text: &[u8]) -> String {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let hex = text
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (text[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Calls `path` with `message`, framed as gRPC frames it, with `grpc-timeout` when given.
async fn call<S>(service: S, path: &str, message: &impl Message, timeout: Option<&str>) -> Outcome
where
    S: tower::Service<
            http::Request<Full<Bytes>>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        >,
{
    let encoded = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(encoded.len()).unwrap().to_be_bytes());
    framed.extend_from_slice(&encoded);
    let mut request = http::Request::builder()
        .method("POST")
        .uri(format!("http://quiver{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(timeout) = timeout {
        request = request.header("grpc-timeout", timeout);
    }
    let request = request.body(Full::new(Bytes::from(framed))).unwrap();
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    // A failed call is usually trailers-only: its status is in the headers.
    let (code, message) = status_of(&parts.headers)
        .or_else(|| collected.trailers().and_then(status_of))
        .expect("a grpc-status");
    let data = collected.to_bytes();
    Outcome {
        code,
        message,
        answer: if data.len() >= 5 {
            data.slice(5..)
        } else {
            Bytes::new()
        },
    }
}

fn v2() -> GrpcInferenceServiceServer<InferenceService> {
    GrpcInferenceServiceServer::new(InferenceService::new(models()))
}

fn tf_serving() -> PredictionServiceServer<TfServing> {
    PredictionServiceServer::new(TfServing::new(models()))
}

const MODEL_INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

fn half_plus_two() -> ModelInferRequest {
    let x: Vec<u8> = [1.0f32, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    ModelInferRequest {
        model_name: "half_plus_two".into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 3],
            ..InferInputTensor::default()
        }],
        raw_input_contents: vec![x],
        ..ModelInferRequest::default()
    }
}

fn spec(name: &str) -> Option<ModelSpec> {
    Some(ModelSpec {
        name: name.into(),
        ..ModelSpec::default()
    })
}

fn predict() -> PredictRequest {
    PredictRequest {
        model_spec: spec("half_plus_two"),
        inputs: HashMap::from([(
            "x".to_owned(),
            TensorProto {
                dtype: tf::DataType::DtFloat.into(),
                tensor_shape: Some(TensorShapeProto {
                    dim: [1, 3]
                        .map(|size| Dim {
                            size,
                            name: String::new(),
                        })
                        .to_vec(),
                    unknown_rank: false,
                }),
                float_val: vec![1.0, 2.0, 3.0],
                ..TensorProto::default()
            },
        )]),
        output_filter: Vec::new(),
    }
}

/// One example whose feature `x` holds `n` floats.
fn examples(n: usize) -> Option<Input> {
    let x = Feature {
        kind: Some(feature::Kind::FloatList(FloatList {
            value: vec![0.5; n],
        })),
    };
    Some(Input {
        kind: Some(input::Kind::ExampleList(ExampleList {
            examples: vec![Example {
                features: Some(Features {
                    feature: HashMap::from([("x".to_owned(), x)]),
                }),
            }],
        })),
    })
}

fn classify() -> ClassificationRequest {
    ClassificationRequest {
        model_spec: spec("breast_cancer"),
        input: examples(30),
    }
}

fn regress() -> RegressionRequest {
    RegressionRequest {
        model_spec: spec("diabetes"),
        input: examples(10),
    }
}

#[tokio::test]
async fn grpc_timeout_is_honoured_by_every_infer_method() {
    const PREDICTION: &str = "/tensorflow.serving.PredictionService";
    // A deadline of 1 ns has passed by the time the model could run; one of a minute has not.
    for (timeout, expected) in [(Some("1n"), Code::DeadlineExceeded), (Some("1M"), Code::Ok)] {
        let outcomes = [
            (
                "V2 ModelInfer",
                call(v2(), MODEL_INFER, &half_plus_two(), timeout).await,
            ),
            (
                "TF Predict",
                call(
                    tf_serving(),
                    &format!("{PREDICTION}/Predict"),
                    &predict(),
                    timeout,
                )
                .await,
            ),
            (
                "TF Classify",
                call(
                    tf_serving(),
                    &format!("{PREDICTION}/Classify"),
                    &classify(),
                    timeout,
                )
                .await,
            ),
            (
                "TF Regress",
                call(
                    tf_serving(),
                    &format!("{PREDICTION}/Regress"),
                    &regress(),
                    timeout,
                )
                .await,
            ),
        ];
        for (what, outcome) in outcomes {
            assert_eq!(
                outcome.code, expected,
                "{what} {timeout:?}: {}",
                outcome.message
            );
            if expected == Code::DeadlineExceeded {
                assert!(
                    outcome.message.contains("deadline"),
                    "{what}: {}",
                    outcome.message
                );
            }
        }
    }
    let answer = call(v2(), MODEL_INFER, &half_plus_two(), None).await;
    assert_eq!(answer.code, Code::Ok, "{}", answer.message);
    let response = ModelInferResponse::decode(answer.answer).unwrap();
    let y: Vec<f32> = response.raw_output_contents[0]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(y, [2.5, 3.0, 3.5]);
}

#[tokio::test]
async fn the_v2_timeout_parameter_is_honoured() {
    for (choice, expected) in [
        (ParameterChoice::Int64Param(0), Code::DeadlineExceeded),
        (ParameterChoice::Uint64Param(0), Code::DeadlineExceeded),
        (ParameterChoice::Int64Param(60_000_000), Code::Ok),
        (ParameterChoice::Int64Param(-1), Code::InvalidArgument),
        (
            ParameterChoice::StringParam("soon".into()),
            Code::InvalidArgument,
        ),
    ] {
        let mut request = half_plus_two();
        request.parameters.insert(
            "timeout".into(),
            InferParameter {
                parameter_choice: Some(choice.clone()),
            },
        );
        let outcome = call(v2(), MODEL_INFER, &request, None).await;
        assert_eq!(outcome.code, expected, "{choice:?}: {}", outcome.message);
    }
}

#[tokio::test]
async fn an_output_requested_twice_is_invalid_argument_naming_it() {
    let a: Vec<u8> = [1.5f32, 2.0].iter().flat_map(|v| v.to_le_bytes()).collect();
    let request = |outputs: &[&str]| ModelInferRequest {
        model_name: "multi_io".into(),
        inputs: vec![
            InferInputTensor {
                name: "a".into(),
                datatype: "FP32".into(),
                shape: vec![1, 2],
                ..InferInputTensor::default()
            },
            InferInputTensor {
                name: "b".into(),
                datatype: "INT32".into(),
                shape: vec![1],
                ..InferInputTensor::default()
            },
        ],
        raw_input_contents: vec![a.clone(), 3i32.to_le_bytes().to_vec()],
        outputs: outputs
            .iter()
            .map(|name| InferRequestedOutputTensor {
                name: (*name).into(),
                ..InferRequestedOutputTensor::default()
            })
            .collect(),
        ..ModelInferRequest::default()
    };
    let outcome = call(v2(), MODEL_INFER, &request(&["sum", "b_doubled"]), None).await;
    assert_eq!(outcome.code, Code::Ok, "{}", outcome.message);
    let response = ModelInferResponse::decode(outcome.answer).unwrap();
    let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["sum", "b_doubled"]);
    for outputs in [&["sum", "sum"][..], &["b_doubled", "sum", "b_doubled"]] {
        let outcome = call(v2(), MODEL_INFER, &request(outputs), None).await;
        assert_eq!(outcome.code, Code::InvalidArgument, "{outputs:?}");
        let repeated = if outputs[0] == "sum" {
            "'sum'"
        } else {
            "'b_doubled'"
        };
        assert!(outcome.message.contains(repeated), "{}", outcome.message);
    }
}
