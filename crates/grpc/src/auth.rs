//! Tokens on the gRPC port (`--auth-tokens-file`): the `authorization` metadata (`Bearer
//! TOKEN`), checked against the scope each method needs, as a tower layer inside the access
//! layer. Health checks stay open for probes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quiver_core::auth::{Auth, Scope};
use quiver_core::rate_limit::{RateLimiter, retry_after_secs};
use quiver_core::{Error, ErrorKind};
use tonic::codegen::http;
use tonic::transport::server::TcpConnectInfo;

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
        ("quiver.admin.AdminService", _) => Some(Scope::Admin),
        _ => Some(Scope::Infer),
    }
}

/// Refuses calls without a token (UNAUTHENTICATED), without the method's scope
/// (PERMISSION_DENIED) or over the client's rate (RESOURCE_EXHAUSTED with `retry-after`
/// metadata, in seconds); with neither set, every call goes through.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    /// The tokens in force.
    pub auth: Option<Arc<Auth>>,
    /// Requests per second per client (its token's name, else its address).
    pub limiter: Option<Arc<RateLimiter>>,
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Authorize<S>;

    fn layer(&self, inner: S) -> Authorize<S> {
        Authorize {
            inner,
            auth: self.auth.clone(),
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Debug, Clone)]
pub struct Authorize<S> {
    inner: S,
    auth: Option<Arc<Auth>>,
    limiter: Option<Arc<RateLimiter>>,
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
        if let Some(refused) = self.refusal(&request) {
            let refused = refused.into_http::<ResBody>();
            return Box::pin(async move { Ok(refused) });
        }
        Box::pin(self.inner.call(request))
    }
}

impl<S> Authorize<S> {
    /// Why `request` is refused, if it is.
    fn refusal<B>(&self, request: &http::Request<B>) -> Option<tonic::Status> {
        let scope = scope_of(request.uri().path())?;
        let mut client: Option<Arc<str>> = None;
        if let Some(auth) = &self.auth {
            let presented = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(http::HeaderValue::as_bytes);
            match auth.check(presented, scope) {
                Ok(name) => {
                    tracing::Span::current().record("token", &*name);
                    client = Some(name);
                }
                Err(error) => return Some(status(error)),
            }
        }
        let limiter = self.limiter.as_ref()?;
        let client = client.unwrap_or_else(|| {
            request
                .extensions()
                .get::<TcpConnectInfo>()
                .and_then(TcpConnectInfo::remote_addr)
                .map_or_else(|| "unknown".into(), |addr| addr.ip().to_string().into())
        });
        let wait = limiter.check(&client).err()?;
        let seconds = retry_after_secs(wait);
        let mut refused = status(Error::new(
            ErrorKind::Overloaded,
            format!("too many requests from this client (--rate-limit); retry in {seconds} s"),
        ));
        refused
            .metadata_mut()
            .insert("retry-after", tonic::metadata::MetadataValue::from(seconds));
        Some(refused)
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
