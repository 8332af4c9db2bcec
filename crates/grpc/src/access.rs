//! Per-call span, request id and access log for every gRPC call: the gRPC side of
//! `quiver_http::access`, as a tower layer around all services.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use quiver_telemetry::request_id;
use tonic::codegen::http::{self, HeaderValue};
use tonic::transport::server::TcpConnectInfo;
use tracing::Instrument as _;

/// Wraps every call in a `request` span with its id (the client's `x-request-id` metadata or a
/// new one, returned as response metadata) and, with `log`, writes one access line per call:
/// method path, gRPC status, duration, client address.
#[derive(Debug, Clone)]
pub struct AccessLayer {
    /// Whether to write the access line.
    pub log: bool,
    /// `x-quiver-replica` on every response (`--replica-id`).
    pub replica: Option<HeaderValue>,
}

/// The response metadata naming the replica that answered (`--replica-id`).
pub const REPLICA_HEADER: &str = "x-quiver-replica";

impl<S> tower::Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Access<S> {
        Access {
            inner,
            log: self.log,
            replica: self.replica.clone(),
        }
    }
}

/// The service [`AccessLayer`] makes.
#[derive(Debug, Clone)]
pub struct Access<S> {
    inner: S,
    log: bool,
    replica: Option<HeaderValue>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Access<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let started = Instant::now();
        let id = request_id::accept_or_generate(
            request
                .headers()
                .get(request_id::HEADER)
                .map(HeaderValue::as_bytes),
        );
        let route = request.uri().path().to_owned();
        let client = request
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let span = quiver_telemetry::request_span!(id);
        let future = span.in_scope(|| self.inner.call(request));
        let log = self.log;
        let replica = self.replica.clone();
        Box::pin(async move {
            // The id is also the call's task-local, for the payload log.
            let context = request_id::RequestContext::new(std::sync::Arc::clone(&id));
            let mut response = request_id::scope(std::sync::Arc::clone(&context), future)
                .instrument(span.clone())
                .await?;
            let headers = response.headers_mut();
            if let Ok(value) = HeaderValue::from_str(&id) {
                headers.insert(request_id::HEADER, value);
            }
            if let Some(version) = context.served() {
                headers.insert(request_id::VERSION_HEADER, HeaderValue::from(version));
            }
            if let Some(replica) = replica {
                headers.insert(REPLICA_HEADER, replica);
            }
            if log {
                // A failed unary call is "trailers-only": its status is in the headers. A call
                // that succeeded sends it in the trailers, after this point.
                let grpc_status = response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .unwrap_or(0);
                let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                span.in_scope(|| match client {
                    Some(client) => tracing::info!(target: "quiver::access", method = "POST", %route, grpc_status, micros, %client, "access"),
                    None => tracing::info!(target: "quiver::access", method = "POST", %route, grpc_status, micros, "access"),
                });
            }
            Ok(response)
        })
    }
}
