//! Tokens on the gRPC port (`--auth-tokens-file`): the `authorization` metadata (`Bearer
//! TOKEN`), checked against the scope each method needs, as a tower layer inside the access
//! layer. Health checks stay open for probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quiver_core::auth::{Auth, Scope};
use tonic::codegen::http;

use crate::status::status;

/// The scope a method (`/package.Service/Method`) needs; `None` for health checks.
pub fn scope_of(path: &str) -> Option<Scope> {
    let (service, method) = path
        .trim_start_matches('/')
        .split_once('/')
        .unwrap_or((path, ""));
    match (service, method) {
        ("grpc.health.v1.Health", _) => None,
        ("inference.GRPCInferenceService", "ServerLive" | "ServerReady") => None,
        ("inference.GRPCInferenceService", m) if m.starts_with("Repository") => Some(Scope::Admin),
        ("tensorflow.serving.ModelService", "HandleReloadConfigRequest") => Some(Scope::Admin),
        _ => Some(Scope::Infer),
    }
}

/// Refuses calls without a token (UNAUTHENTICATED) or without the method's scope
/// (PERMISSION_DENIED); `None` lets every call through.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    /// The tokens in force.
    pub auth: Option<Arc<Auth>>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Authorize<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        if let Some(auth) = &self.auth
            && let Some(scope) = scope_of(request.uri().path())
        {
            let presented = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes);
            match auth.check(presented, scope) {
                Ok(name) => {
                    tracing::Span::current().record("token", &*name);
                }
                Err(error) => {
                    let refused = status(error).into_http::<ResBody>();
                    return Box::pin(async move { Ok(refused) });
                }
            }
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_need_the_scope_of_what_they_do() {
        assert_eq!(scope_of("/grpc.health.v1.Health/Check"), None);
        assert_eq!(
            scope_of("/inference.GRPCInferenceService/ServerReady"),
            None
        );
        assert_eq!(
            scope_of("/inference.GRPCInferenceService/RepositoryModelLoad"),
            Some(Scope::Admin)
        );
        assert_eq!(
            scope_of("/tensorflow.serving.ModelService/HandleReloadConfigRequest"),
            Some(Scope::Admin)
        );
        for infer in [
            "/inference.GRPCInferenceService/ModelInfer",
            "/inference.GRPCInferenceService/ModelMetadata",
            "/tensorflow.serving.PredictionService/Predict",
            "/tensorflow.serving.ModelService/GetModelStatus",
            "/nonsense",
        ] {
            assert_eq!(scope_of(infer), Some(Scope::Infer), "{infer}");
        }
    }
}
