//! Per-request span, request id and access log for every HTTP request.

use std::net::SocketAddr;
use std::time::Instant;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use quiver_telemetry::request_id;
use tracing::Instrument as _;

use crate::AppState;

/// The response header naming the replica that answered (`--replica-id`).
pub const REPLICA_HEADER: &str = "x-quiver-replica";

/// Wraps a request in a `request` span carrying its id (the client's `x-request-id` or a new
/// one, returned in the response), and logs one access line when it is answered: method, route
/// template (never the raw path), status, duration, client address; the span adds the id, model
/// and version.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id::accept_or_generate(
        request
            .headers()
            .get(request_id::HEADER)
            .map(HeaderValue::as_bytes),
    );
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "(no route)".to_owned(), |p| p.as_str().to_owned());
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    let span = quiver_telemetry::request_span!(id);
    // The id is also the request's task-local, for what logs the request beyond this span (the
    // payload log).
    let context = request_id::RequestContext::new(std::sync::Arc::clone(&id));
    let mut response = request_id::scope(std::sync::Arc::clone(&context), next.run(request))
        .instrument(span.clone())
        .await;
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(request_id::HEADER, value);
    }
    if let Some(version) = context.served() {
        headers.insert(request_id::VERSION_HEADER, HeaderValue::from(version));
    }
    if let Some(replica) = &state.replica {
        headers.insert(REPLICA_HEADER, replica.clone());
    }
    if state.access_log {
        let status = response.status().as_u16();
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        span.in_scope(|| match client {
            Some(client) => tracing::info!(target: "quiver::access", %method, %route, status, micros, %client, "access"),
            None => tracing::info!(target: "quiver::access", %method, %route, status, micros, "access"),
        });
    }
    response
}
