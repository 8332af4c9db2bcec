//! The metadata store (issue 18): traffic policies, API-set labels, the audit log of their
//! changes and the history of model loads, behind one trait ([`MetadataStore`]) with two
//! backends:
//!
//! - embedded SQLite (the default, `sqlite:DATA_DIR/metadata.sqlite3`): one file, one server;
//! - PostgreSQL (`postgres://…`): several server replicas share one state, and each learns of
//!   the others' changes through `LISTEN`/`NOTIFY` ([`MetadataStore::wait_for_change`]).
//!
//! Every change to a policy or a label is written together with its audit entry, in one
//! transaction, so the audit log is complete; the store's revision (the newest audit entry's
//! sequence number) tells a replica cheaply whether it must reload.
//!
//! The schema is versioned: [`open`] creates it on first start and runs the migrations a newer
//! build adds.
//!
//! Every call blocks: call it from a plain thread or `tokio::task::spawn_blocking`, never from an
//! async task.

mod address;
mod error;
mod history;
mod pg;
mod records;
mod sqlite;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub use error::MetadataError;
pub use history::HistoryWriter;
pub use records::{AuditEntry, LoadEvent, Snapshot};
/// JSON values: traffic policies and the audit log's before/after.
pub use serde_json::Value;

use address::Address;

/// Where Quiver keeps traffic policies, labels, the audit log and load history.
///
/// Every method blocks; call from a plain thread or `tokio::task::spawn_blocking`, never from an
/// async task.
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    /// The backend: `"sqlite"` or `"postgres"`.
    fn kind(&self) -> &'static str;

    /// Where the store is, for logs: the SQLite file's path, or the PostgreSQL URL without its
    /// password.
    fn location(&self) -> String;

    /// Every policy and label with the revision they belong to, read in one transaction.
    fn snapshot(&self) -> Result<Snapshot, MetadataError>;

    /// A number that changes whenever a policy or a label changes (the newest audit entry's
    /// `seq`; 0 for a new store). Cheap: compare it to a snapshot's to know whether to reload.
    fn revision(&self) -> Result<i64, MetadataError>;

    /// Sets (`Some`) or removes (`None`) a model's traffic policy; appends the audit entry
    /// (before = the previous policy or null, after = the new or null) in the same transaction;
    /// returns the entry. Removing one that is absent records nothing and returns `Ok(None)`.
    /// A policy that is JSON `null` is refused (`None` removes).
    fn set_policy(
        &self,
        model: &str,
        policy: Option<&Value>,
        actor: &str,
    ) -> Result<Option<AuditEntry>, MetadataError>;

    /// Sets (`Some(version)`) or removes (`None`) an API-set label, audited the same way (before
    /// and after are `{"label": L, "version": N}` or null). Versions above `i64::MAX` are refused.
    fn set_label(
        &self,
        model: &str,
        label: &str,
        version: Option<u64>,
        actor: &str,
    ) -> Result<Option<AuditEntry>, MetadataError>;

    /// Audit entries with `seq > after_seq`, oldest first, at most `limit`; optionally only one
    /// model's.
    fn audit(
        &self,
        after_seq: i64,
        limit: usize,
        model: Option<&str>,
    ) -> Result<Vec<AuditEntry>, MetadataError>;

    /// Appends an event to the load history.
    fn record_load(&self, event: &LoadEvent) -> Result<(), MetadataError>;

    /// Load events, newest first, at most `limit`; optionally only one model's.
    fn load_history(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LoadEvent>, MetadataError>;

    /// Blocks up to `timeout` for a change made through another store handle (another replica);
    /// true if one was announced. Never fails: after an error it waits out the timeout and says
    /// false (and true once listening again, as changes may have been missed meanwhile).
    ///
    /// PostgreSQL: `LISTEN`/`NOTIFY` on a dedicated connection. SQLite: sleeps `timeout` and
    /// returns false; callers then compare [`revision`](Self::revision).
    fn wait_for_change(&self, timeout: Duration) -> bool;
}

/// Opens a store from a URL, creating the SQLite file or the schema and running migrations on
/// first start: `sqlite:PATH` (also `sqlite://PATH`; a relative path is relative to the current
/// directory; parent directories are created) or `postgres://…` / `postgresql://…`.
///
/// A store that cannot be reached is an error ([`MetadataError::is_unreachable`]): the server
/// then refuses to start.
pub fn open(url: &str) -> Result<Arc<dyn MetadataStore>, MetadataError> {
    match address::parse(url)? {
        Address::Sqlite(path) => Ok(Arc::new(sqlite::SqliteStore::open(&path)?)),
        Address::Postgres(url) => Ok(Arc::new(pg::PgStore::open(&url)?)),
    }
}

/// The default URL: `sqlite:DATA_DIR/metadata.sqlite3`.
pub fn default_url(data_dir: &Path) -> String {
    format!("sqlite:{}", data_dir.join("metadata.sqlite3").display())
}
