//! The `quiver.admin.AdminService` gRPC service: the HTTP admin API's traffic, label and audit
//! calls, with policies as the same JSON text. The work is `quiver_core::admin::Admin`'s; the
//! store is blocking, so each call runs off the async runtime.

use std::sync::Arc;

use quiver_core::admin::{Admin, TrafficView};
use quiver_core::auth::{Auth, Scope};
use quiver_core::{Error, ErrorKind};
use tonic::{Request, Response, Status};

use crate::quiver_admin::admin_service_server::AdminService as Service;
use crate::quiver_admin::{
    AuditEntry, DeleteLabelRequest, DeleteTrafficRequest, GetTrafficRequest, LabelsResponse,
    ListAuditRequest, ListAuditResponse, SetLabelRequest, SetTrafficRequest, TrafficResponse,
};
use crate::status::status;

/// The admin service over an [`Admin`] (`None`: no metadata store, every call UNAVAILABLE).
#[derive(Debug, Clone)]
pub struct AdminService {
    admin: Option<Arc<Admin>>,
    auth: Option<Arc<Auth>>,
}

impl AdminService {
    /// A service over `admin`; `auth` names who made a change (the token's name).
    pub fn new(admin: Option<Arc<Admin>>, auth: Option<Arc<Auth>>) -> Self {
        Self { admin, auth }
    }

    fn admin(&self) -> Result<Arc<Admin>, Status> {
        self.admin.clone().ok_or_else(|| {
            status(Error::new(
                ErrorKind::Unavailable,
                "the admin API needs a metadata store (--metadata-store)",
            ))
        })
    }

    /// Who makes the call, for the audit log: the token's name (the auth layer has already let
    /// it through), else the client's address.
    fn actor<T>(&self, request: &Request<T>) -> String {
        if let Some(auth) = &self.auth {
            let presented = request
                .metadata()
                .get("authorization")
                .map(tonic::metadata::MetadataValue::as_bytes);
            if let Ok(name) = auth.check(presented, Scope::Admin) {
                return name.to_string();
            }
        }
        request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string())
    }
}

/// Runs `work` on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| status(Error::internal(e.to_string())))?
        .map_err(status)
}

fn traffic_response(view: TrafficView) -> Result<Response<TrafficResponse>, Status> {
    let policy_json = match &view.policy {
        Some(policy) => {
            serde_json::to_string(policy).map_err(|e| status(Error::internal(e.to_string())))?
        }
        None => String::new(),
    };
    Ok(Response::new(TrafficResponse {
        model: view.model,
        source: view
            .source
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        policy_json,
    }))
}

fn labels_response(
    model: String,
    labels: std::collections::BTreeMap<String, u64>,
) -> Response<LabelsResponse> {
    Response::new(LabelsResponse {
        model,
        labels: labels.into_iter().collect(),
    })
}

#[tonic::async_trait]
impl Service for AdminService {
    async fn get_traffic(
        &self,
        request: Request<GetTrafficRequest>,
    ) -> Result<Response<TrafficResponse>, Status> {
        let admin = self.admin()?;
        let model = request.into_inner().model;
        traffic_response(blocking(move || admin.traffic(&model)).await?)
    }

    async fn set_traffic(
        &self,
        request: Request<SetTrafficRequest>,
    ) -> Result<Response<TrafficResponse>, Status> {
        let admin = self.admin()?;
        let actor = self.actor(&request);
        let SetTrafficRequest { model, policy_json } = request.into_inner();
        let policy = serde_json::from_str(&policy_json).map_err(|e| {
            status(Error::invalid(format!(
                "traffic policy for model '{model}': {e}"
            )))
        })?;
        traffic_response(blocking(move || admin.set_traffic(&model, policy, &actor)).await?)
    }

    async fn delete_traffic(
        &self,
        request: Request<DeleteTrafficRequest>,
    ) -> Result<Response<TrafficResponse>, Status> {
        let admin = self.admin()?;
        let actor = self.actor(&request);
        let model = request.into_inner().model;
        traffic_response(blocking(move || admin.delete_traffic(&model, &actor)).await?)
    }

    async fn set_label(
        &self,
        request: Request<SetLabelRequest>,
    ) -> Result<Response<LabelsResponse>, Status> {
        let admin = self.admin()?;
        let actor = self.actor(&request);
        let SetLabelRequest {
            model,
            label,
            version,
        } = request.into_inner();
        let name = model.clone();
        let labels =
            blocking(move || admin.set_label(&name, &label, Some(version), &actor)).await?;
        Ok(labels_response(model, labels))
    }

    async fn delete_label(
        &self,
        request: Request<DeleteLabelRequest>,
    ) -> Result<Response<LabelsResponse>, Status> {
        let admin = self.admin()?;
        let actor = self.actor(&request);
        let DeleteLabelRequest { model, label } = request.into_inner();
        let name = model.clone();
        let labels = blocking(move || admin.set_label(&name, &label, None, &actor)).await?;
        Ok(labels_response(model, labels))
    }

    async fn list_audit(
        &self,
        request: Request<ListAuditRequest>,
    ) -> Result<Response<ListAuditResponse>, Status> {
        let admin = self.admin()?;
        let ListAuditRequest {
            since,
            limit,
            model,
        } = request.into_inner();
        let limit = match limit {
            0 => 1000,
            n => usize::try_from(n).unwrap_or(10_000).min(10_000),
        };
        let entries = blocking(move || {
            let model = (!model.is_empty()).then_some(model);
            admin.audit(since, limit, model.as_deref())
        })
        .await?;
        let json = |value: &Option<serde_json::Value>| {
            value
                .as_ref()
                .map_or_else(|| "null".to_owned(), ToString::to_string)
        };
        let entries = entries
            .iter()
            .map(|entry| AuditEntry {
                seq: entry.seq,
                time: quiver_core::admin::rfc3339(entry.at_ms),
                actor: entry.actor.clone(),
                model: entry.model.clone(),
                action: entry.action.clone(),
                before_json: json(&entry.before),
                after_json: json(&entry.after),
            })
            .collect();
        Ok(Response::new(ListAuditResponse { entries }))
    }
}
