//! The request-path ceiling (`bench/request_path.sh`): the stack Quiver serves with — tokio's
//! multi-threaded runtime, hyper through axum with `TCP_NODELAY`, tonic with the generated KServe
//! V2 service, mimalloc — answering every inference with a fixed response for the `dense`
//! fixture (64 → 10, FP32), with no tensor parsing, no model and no logging or metrics. Quiver's
//! figures are read as ratios to this one, measured in the same run: what is left between them is
//! Quiver's own work.
//!
//! It answers just what wrk and perf_analyzer ask for: V2 infer (JSON or binary request, JSON
//! answer), model metadata and config, health; over gRPC `ModelInfer`, `ModelMetadata`,
//! `ModelConfig` and health. Everything else is `UNIMPLEMENTED` / 404.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::body::Bytes;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::serve::ListenerExt as _;
use clap::Parser;
use quiver_grpc::inference::grpc_inference_service_server::{
    GrpcInferenceService, GrpcInferenceServiceServer,
};
use quiver_grpc::inference::{self as v2};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `quiver-ceiling`: fixed V2 answers over HTTP and gRPC.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// HTTP port (0: any free one; the one taken is printed).
    #[arg(long, default_value_t = 0)]
    rest_port: u16,
    /// gRPC port (0: any free one; the one taken is printed).
    #[arg(long, default_value_t = 0)]
    grpc_port: u16,
}

/// The model the fixed answers describe: the `dense` fixture, as Quiver reports it.
const MODEL: &str = "dense";
const INPUTS: usize = 64;
const CLASSES: usize = 10;

/// The fixed scores: a softmax-like row, so the JSON is as long as a real answer.
fn scores() -> [f32; CLASSES] {
    std::array::from_fn(|i| 0.05 + 0.01 * i as f32)
}

fn json_answer() -> String {
    let data: Vec<String> = scores().iter().map(|s| s.to_string()).collect();
    format!(
        r#"{{"model_name":"{MODEL}","model_version":"1","outputs":[{{"name":"probs","datatype":"FP32","shape":[1,{CLASSES}],"data":[{}]}}]}}"#,
        data.join(",")
    )
}

fn json_metadata() -> String {
    format!(
        r#"{{"name":"{MODEL}","versions":["1"],"platform":"onnxruntime_onnx","inputs":[{{"name":"x","datatype":"FP32","shape":[-1,{INPUTS}]}}],"outputs":[{{"name":"probs","datatype":"FP32","shape":[-1,{CLASSES}]}}]}}"#
    )
}

fn json_config() -> String {
    format!(
        r#"{{"name":"{MODEL}","platform":"onnxruntime_onnx","backend":"onnxruntime","max_batch_size":0,"input":[{{"name":"x","data_type":"TYPE_FP32","dims":[-1,{INPUTS}]}}],"output":[{{"name":"probs","data_type":"TYPE_FP32","dims":[-1,{CLASSES}]}}]}}"#
    )
}

fn json(body: &'static str) -> impl IntoResponse + Clone {
    ([(CONTENT_TYPE, "application/json")], body)
}

fn router() -> Router {
    // Leaked once at start-up: the answers live as long as the process.
    let answer: &'static str = Box::leak(json_answer().into_boxed_str());
    let metadata: &'static str = Box::leak(json_metadata().into_boxed_str());
    let config: &'static str = Box::leak(json_config().into_boxed_str());
    Router::new()
        .route(
            "/v2/models/{name}/infer",
            post(move |_body: Bytes| async move { json(answer) }),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(move |_body: Bytes| async move { json(answer) }),
        )
        .route(
            "/v2/models/{name}",
            get(move || async move { json(metadata) }),
        )
        .route(
            "/v2/models/{name}/config",
            get(move || async move { json(config) }),
        )
        .route(
            "/v2",
            get(|| async {
                json(concat!(
                    r#"{"name":"quiver-ceiling","version":""#,
                    env!("CARGO_PKG_VERSION"),
                    r#"","extensions":[]}"#
                ))
            }),
        )
        .route("/v2/health/live", get(|| async { "" }))
        .route("/v2/health/ready", get(|| async { "" }))
        .route("/v2/models/{name}/ready", get(|| async { "" }))
}

/// The fixed gRPC answers.
struct Fixed;

fn tensor(name: &str, shape: [i64; 2]) -> v2::model_metadata_response::TensorMetadata {
    v2::model_metadata_response::TensorMetadata {
        name: name.to_owned(),
        datatype: "FP32".to_owned(),
        shape: shape.to_vec(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Fixed {
    async fn server_live(
        &self,
        _: Request<v2::ServerLiveRequest>,
    ) -> Result<Response<v2::ServerLiveResponse>, Status> {
        Ok(Response::new(v2::ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _: Request<v2::ServerReadyRequest>,
    ) -> Result<Response<v2::ServerReadyResponse>, Status> {
        Ok(Response::new(v2::ServerReadyResponse { ready: true }))
    }

    async fn model_ready(
        &self,
        _: Request<v2::ModelReadyRequest>,
    ) -> Result<Response<v2::ModelReadyResponse>, Status> {
        Ok(Response::new(v2::ModelReadyResponse { ready: true }))
    }

    async fn server_metadata(
        &self,
        _: Request<v2::ServerMetadataRequest>,
    ) -> Result<Response<v2::ServerMetadataResponse>, Status> {
        Ok(Response::new(v2::ServerMetadataResponse {
            name: "quiver-ceiling".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        _: Request<v2::ModelMetadataRequest>,
    ) -> Result<Response<v2::ModelMetadataResponse>, Status> {
        Ok(Response::new(v2::ModelMetadataResponse {
            name: MODEL.to_owned(),
            versions: vec!["1".to_owned()],
            platform: "onnxruntime_onnx".to_owned(),
            inputs: vec![tensor("x", [-1, INPUTS as i64])],
            outputs: vec![tensor("probs", [-1, CLASSES as i64])],
        }))
    }

    async fn model_infer(
        &self,
        request: Request<v2::ModelInferRequest>,
    ) -> Result<Response<v2::ModelInferResponse>, Status> {
        let request = request.into_inner();
        let raw: Vec<u8> = scores().iter().flat_map(|s| s.to_le_bytes()).collect();
        Ok(Response::new(v2::ModelInferResponse {
            model_name: MODEL.to_owned(),
            model_version: "1".to_owned(),
            id: request.id,
            outputs: vec![v2::model_infer_response::InferOutputTensor {
                name: "probs".to_owned(),
                datatype: "FP32".to_owned(),
                shape: vec![1, CLASSES as i64],
                ..Default::default()
            }],
            raw_output_contents: vec![raw],
            ..Default::default()
        }))
    }

    type ModelStreamInferStream = tokio_stream::Empty<Result<v2::ModelStreamInferResponse, Status>>;

    async fn model_stream_infer(
        &self,
        _: Request<tonic::Streaming<v2::ModelInferRequest>>,
    ) -> Result<Response<Self::ModelStreamInferStream>, Status> {
        Err(Status::unimplemented("the ceiling answers ModelInfer only"))
    }

    async fn model_config(
        &self,
        _: Request<v2::ModelConfigRequest>,
    ) -> Result<Response<v2::ModelConfigResponse>, Status> {
        let io = |name: &str, dims: [i64; 2]| (name.to_owned(), dims.to_vec());
        let (input, input_dims) = io("x", [-1, INPUTS as i64]);
        let (output, output_dims) = io("probs", [-1, CLASSES as i64]);
        Ok(Response::new(v2::ModelConfigResponse {
            config: Some(v2::ModelConfig {
                name: MODEL.to_owned(),
                platform: "onnxruntime_onnx".to_owned(),
                backend: "onnxruntime".to_owned(),
                max_batch_size: 0,
                input: vec![v2::ModelInput {
                    name: input,
                    data_type: v2::DataType::TypeFp32 as i32,
                    dims: input_dims,
                    ..Default::default()
                }],
                output: vec![v2::ModelOutput {
                    name: output,
                    data_type: v2::DataType::TypeFp32 as i32,
                    dims: output_dims,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        }))
    }

    async fn repository_index(
        &self,
        _: Request<v2::RepositoryIndexRequest>,
    ) -> Result<Response<v2::RepositoryIndexResponse>, Status> {
        Err(Status::unimplemented("not in the ceiling"))
    }

    async fn repository_model_load(
        &self,
        _: Request<v2::RepositoryModelLoadRequest>,
    ) -> Result<Response<v2::RepositoryModelLoadResponse>, Status> {
        Err(Status::unimplemented("not in the ceiling"))
    }

    async fn repository_model_unload(
        &self,
        _: Request<v2::RepositoryModelUnloadRequest>,
    ) -> Result<Response<v2::RepositoryModelUnloadResponse>, Status> {
        Err(Status::unimplemented("not in the ceiling"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rest = TcpListener::bind(SocketAddr::new(args.host, args.rest_port)).await?;
    let grpc = TcpListener::bind(SocketAddr::new(args.host, args.grpc_port)).await?;
    // The same lines Quiver prints, so the bench scripts find both alike.
    eprintln!("REST API listening on http://{}", rest.local_addr()?);
    eprintln!("gRPC API listening on {}", grpc.local_addr()?);
    let rest = rest.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let http = tokio::spawn(async move { axum::serve(rest, router()).await });
    let grpc = tonic::transport::Server::builder()
        .add_service(GrpcInferenceServiceServer::new(Fixed))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true)),
        );
    tokio::select! {
        result = http => result??,
        result = grpc => result?,
    }
    Ok(())
}
