//! What the store holds, as callers see it, and the helpers both backends share to build it.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::MetadataError;

/// One change to a policy or a label, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditEntry {
    /// Its place in the log: increasing, never reused.
    pub seq: i64,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// Who made the change (as the caller names them).
    pub actor: String,
    /// The model changed.
    pub model: String,
    /// `"traffic.put"`, `"traffic.delete"`, `"label.put"` or `"label.delete"`.
    pub action: String,
    /// The value before: the policy, or `{"label": L, "version": N}`; `None` if there was none.
    pub before: Option<Value>,
    /// The value after, as `before`; `None` once removed.
    pub after: Option<Value>,
}

/// One event in a model version's load history.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadEvent {
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: i64,
    /// The server replica it happened on.
    pub replica: String,
    /// The model.
    pub model: String,
    /// The model's version.
    pub version: u64,
    /// `"loaded"`, `"failed"`, `"retired"` or `"unloaded"`.
    pub event: String,
    /// Why, when there is something to say (a failure's message).
    pub reason: Option<String>,
}

/// Every policy and label, as of one revision.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    /// The store's revision these were read at ([`MetadataStore::revision`](crate::MetadataStore::revision)).
    pub revision: i64,
    /// Traffic policies by model.
    pub policies: BTreeMap<String, Value>,
    /// Labels by model, then label: the version each names.
    pub labels: BTreeMap<String, BTreeMap<String, u64>>,
}

pub(crate) const TRAFFIC_PUT: &str = "traffic.put";
pub(crate) const TRAFFIC_DELETE: &str = "traffic.delete";
pub(crate) const LABEL_PUT: &str = "label.put";
pub(crate) const LABEL_DELETE: &str = "label.delete";

/// Now, in milliseconds since the Unix epoch (0 for a clock set before it).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// How a label appears in the audit log.
pub(crate) fn label_value(label: &str, version: u64) -> Value {
    json!({ "label": label, "version": version })
}

/// A policy as stored (JSON text), refusing `null`: it would read back as "no policy".
pub(crate) fn policy_text(store: &str, policy: &Value) -> Result<String, MetadataError> {
    if policy.is_null() {
        return Err(MetadataError::Invalid {
            store: store.to_owned(),
            message: "a traffic policy cannot be JSON null (remove it instead)".into(),
        });
    }
    json_text(store, policy)
}

/// A JSON value as stored text.
pub(crate) fn json_text(store: &str, value: &Value) -> Result<String, MetadataError> {
    serde_json::to_string(value).map_err(|e| MetadataError::Invalid {
        store: store.to_owned(),
        message: format!("cannot serialise JSON: {e}"),
    })
}

/// A stored JSON text, read back.
pub(crate) fn parse_json(store: &str, what: &str, text: &str) -> Result<Value, MetadataError> {
    serde_json::from_str(text).map_err(|e| MetadataError::Corrupt {
        store: store.to_owned(),
        message: format!("{what} is not valid JSON: {e}"),
    })
}

/// A model version as stored: the databases have signed 64-bit integers only.
pub(crate) fn version_to_db(store: &str, version: u64) -> Result<i64, MetadataError> {
    i64::try_from(version).map_err(|_| MetadataError::Invalid {
        store: store.to_owned(),
        message: format!(
            "version {version} is above the largest storable ({})",
            i64::MAX
        ),
    })
}

/// A stored model version, read back.
pub(crate) fn version_from_db(store: &str, version: i64) -> Result<u64, MetadataError> {
    u64::try_from(version).map_err(|_| MetadataError::Corrupt {
        store: store.to_owned(),
        message: format!("a stored version is negative ({version})"),
    })
}

/// A row limit as SQL takes it.
pub(crate) fn limit_to_db(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}
