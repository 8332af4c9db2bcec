//! Who may do what on the REST port: tokens (`--auth-tokens-file`) — which scope each route
//! needs — and request-rate limits per client (`--rate-limit`). Health checks are exempt from
//! both, for probes.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use quiver_core::auth::Scope;
use quiver_core::rate_limit::retry_after_secs;
use quiver_core::{Error, ErrorKind};

use crate::AppState;
use crate::error::ApiError;

/// The scope a path needs; `None` for the health checks, which probes reach without a token.
pub fn scope_of(path: &str) -> Option<Scope> {
    if path.starts_with("/v2/health/") {
        None
    } else if path == "/metrics" {
        Some(Scope::Metrics)
    } else if path.starts_with("/v2/repository") || path.starts_with("/admin/") {
        Some(Scope::Admin)
    } else {
        Some(Scope::Infer)
    }
}

/// Answers 401 (no or an unknown token, with `WWW-Authenticate: Bearer`), 403 (a token without
/// the scope) or 429 (over the client's rate, with `Retry-After`) in the protocol's error
/// shape, or lets the request through, its token's name recorded on the request's span (the
/// access log shows it; the secret is never logged).
pub async fn layer(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(scope) = scope_of(request.uri().path()) else {
        return next.run(request).await;
    };
    let mut client: Option<Arc<str>> = None;
    if let Some(auth) = &state.auth {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        match auth.check(presented, scope) {
            Ok(name) => {
                tracing::Span::current().record("token", &*name);
                // The admin API's audit log names who made a change.
                request
                    .extensions_mut()
                    .insert(crate::admin::Actor(Arc::clone(&name)));
                client = Some(name);
            }
            Err(error) => {
                let mut response = ApiError(error).into_response();
                if response.status() == StatusCode::UNAUTHORIZED {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                return response;
            }
        }
    }
    if let Some(limiter) = &state.limiter {
        let client = client.unwrap_or_else(|| {
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map_or_else(|| "unknown".into(), |info| info.0.ip().to_string().into())
        });
        if let Err(wait) = limiter.check(&client) {
            let seconds = retry_after_secs(wait);
            let error = Error::new(
                ErrorKind::Overloaded,
                format!("too many requests from this client (--rate-limit); retry in {seconds} s"),
            );
            let mut response = ApiError(error).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_scope_of_what_they_do() {
        assert_eq!(scope_of("/v2/health/ready"), None);
        assert_eq!(scope_of("/v2/health/live"), None);
        assert_eq!(scope_of("/metrics"), Some(Scope::Metrics));
        assert_eq!(scope_of("/v2/repository/index"), Some(Scope::Admin));
        assert_eq!(scope_of("/v2/repository/models/m/load"), Some(Scope::Admin));
        assert_eq!(scope_of("/admin/models/m/traffic"), Some(Scope::Admin));
        for infer in [
            "/v2/models/m/infer",
            "/v1/models/m:predict",
            "/v1/models/m",
            "/v2",
            "/v1/embeddings",
        ] {
            assert_eq!(scope_of(infer), Some(Scope::Infer), "{infer}");
        }
    }
}
