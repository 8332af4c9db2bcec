//! OpenTelemetry export: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, the binary sends each request's
//! span over OTLP/gRPC, carrying the request id, model, version and the time split. The
//! collector here is the OTLP trace service generated from the official protos.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use quiver_test_support::{TempRepository, fixture_model, poll_until};

use crate::support::{dense_body, serve_with_env};

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn attribute(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

#[test]
fn request_spans_reach_an_otlp_collector() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let collector = Collector::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let repo = TempRepository::new().unwrap();
    repo.add("dense", 1, &fixture_model("dense")).unwrap();
    let server = serve_with_env(
        repo.path(),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let response = reqwest::blocking::Client::new()
        .post(format!("{}/v2/models/dense/infer", server.url()))
        .header("x-request-id", "otlp-span-1")
        .json(&dense_body(64))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);

    // The batch span processor exports every OTEL_BSP_SCHEDULE_DELAY (100 ms).
    let found = poll_until(Duration::from_secs(10), || {
        collector
            .spans
            .lock()
            .unwrap()
            .iter()
            .find(|s| {
                s.name == "request"
                    && attribute(s, "id") == Some(AnyValue::StringValue("otlp-span-1".into()))
            })
            .cloned()
    });
    let span =
        found.unwrap_or_else(|| panic!("no request span exported; server log:\n{}", server.log()));
    assert_eq!(
        attribute(&span, "model"),
        Some(AnyValue::StringValue("dense".into()))
    );
    assert_eq!(
        attribute(&span, "version"),
        Some(AnyValue::StringValue("1".into()))
    );
    for stage in [
        "preprocess_us",
        "queue_us",
        "compute_us",
        "postprocess_us",
        "encode_us",
    ] {
        assert!(
            matches!(attribute(&span, stage), Some(AnyValue::IntValue(_))),
            "{stage} missing from {:?}",
            span.attributes
        );
    }
    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
}
