//! Quiver's gRPC front ends, all on one listener: KServe V2's `inference.GRPCInferenceService`,
//! TF Serving's `PredictionService` and `ModelService`, and `grpc.health.v1.Health`. Services
//! only convert between protobuf and the core's types.

pub mod access;
pub mod admin;
pub mod auth;
pub mod deadline;
pub mod examples;
pub mod kserve;
pub mod status;
pub mod sticky;
pub mod tfserving;

use std::future::Future;
use std::sync::Arc;

use quiver_core::ModelManager;

/// Generated KServe V2 messages and services (package `inference`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::wildcard_enum_match_arm
)]
pub mod inference {
    tonic::include_proto!("inference");
}

/// Generated TensorFlow messages (package `tensorflow`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::wildcard_enum_match_arm
)]
pub mod tensorflow {
    tonic::include_proto!("tensorflow");

    /// Generated TF Serving messages and services (package `tensorflow.serving`).
    pub mod serving {
        tonic::include_proto!("tensorflow.serving");
    }
}

/// Generated messages and service of Quiver's admin API (package `quiver.admin`).
#[allow(
    missing_docs,
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::wildcard_enum_match_arm
)]
pub mod quiver_admin {
    tonic::include_proto!("quiver.admin");
}

/// Narrows protobuf's wide integer fields to the element type, refusing what does not fit.
fn narrow<W: Copy + std::fmt::Display, N: TryFrom<W>>(
    values: Vec<W>,
    dtype: quiver_engine_api::DataType,
) -> Result<Vec<N>, String> {
    values
        .into_iter()
        .map(|v| N::try_from(v).map_err(|_| format!("{v} is out of range for {dtype}")))
        .collect()
}

/// gRPC listener settings.
#[derive(Debug, Clone)]
pub struct GrpcOptions {
    /// Largest message accepted or sent, in bytes.
    pub max_message_bytes: usize,
    /// Whether to log one line per call.
    pub access_log: bool,
    /// The tokens calls must present (`--auth-tokens-file`); `None`: no tokens needed.
    pub auth: Option<Arc<quiver_core::auth::Auth>>,
    /// Calls per second per client (`--rate-limit`); `None`: no limit.
    pub limiter: Option<Arc<quiver_core::rate_limit::RateLimiter>>,
    /// Most calls (HTTP/2 streams) one connection may have open at once.
    pub max_concurrent_streams: u32,
    /// How often an idle connection is pinged; `None`: never.
    pub keepalive_interval: Option<std::time::Duration>,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: std::time::Duration,
    /// Largest header list (metadata) a call may send, in bytes.
    pub max_header_list_bytes: u32,
    /// Streams a client may reset before the server took them, before the connection is closed
    /// (the HTTP/2 "rapid reset" attack).
    pub max_pending_reset_streams: usize,
    /// This replica's name, sent as `x-quiver-replica` with every response (`--replica-id`).
    pub replica: Option<String>,
    /// The admin API's work (`quiver.admin.AdminService`); `None`: no metadata store.
    pub admin: Option<Arc<quiver_core::admin::Admin>>,
}

/// Serves every gRPC service on the connections `incoming` hands over (the listener's accept
/// loop, which applies the connection limits) until `shutdown` resolves, then finishes the
/// calls in flight.
pub async fn serve_incoming<I, IO, IE>(
    incoming: I,
    models: Arc<ModelManager>,
    options: GrpcOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error>
where
    I: tokio_stream::Stream<Item = Result<IO, IE>>,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let limit = options.max_message_bytes;
    let inference = inference::grpc_inference_service_server::GrpcInferenceServiceServer::new(
        kserve::InferenceService::new(Arc::clone(&models)),
    )
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let tf = tfserving::TfServing::new(models);
    let prediction =
        tensorflow::serving::prediction_service_server::PredictionServiceServer::new(tf.clone())
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
    let model_service = tensorflow::serving::model_service_server::ModelServiceServer::new(tf)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let admin = quiver_admin::admin_service_server::AdminServiceServer::new(
        admin::AdminService::new(options.admin.clone(), options.auth.clone()),
    );
    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<inference::grpc_inference_service_server::GrpcInferenceServiceServer<
            kserve::InferenceService,
        >>()
        .await;
    health_reporter
        .set_serving::<tensorflow::serving::prediction_service_server::PredictionServiceServer<
            tfserving::TfServing,
        >>()
        .await;
    tonic::transport::Server::builder()
        .max_concurrent_streams(options.max_concurrent_streams)
        .http2_keepalive_interval(options.keepalive_interval)
        .http2_keepalive_timeout(Some(options.keepalive_timeout))
        .http2_max_header_list_size(options.max_header_list_bytes)
        .http2_max_pending_accept_reset_streams(Some(options.max_pending_reset_streams))
        // The access log (outermost) sees the status as repaired.
        .layer(
            tower::ServiceBuilder::new()
                .layer(access::AccessLayer {
                    log: options.access_log,
                    replica: options
                        .replica
                        .as_deref()
                        .and_then(|r| tonic::codegen::http::HeaderValue::from_str(r).ok()),
                })
                // Inside the access layer, so that refusals are logged like any answer.
                .layer(auth::AuthLayer {
                    auth: options.auth,
                    limiter: options.limiter,
                })
                .map_response(move |response| status::repair(response, limit)),
        )
        .add_service(health)
        .add_service(inference)
        .add_service(prediction)
        .add_service(model_service)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
