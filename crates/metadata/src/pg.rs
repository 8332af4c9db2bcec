//! The shared backend: PostgreSQL, which several server replicas use at once.
//!
//! One connection runs the queries (behind a mutex; reconnected once when found broken); a
//! second one `LISTEN`s on [`CHANNEL`], where every policy or label change `NOTIFY`s in its
//! transaction, so another replica wakes as soon as the change is committed.
//!
//! Writers of policies and labels take one transaction-level advisory lock: they run one at a
//! time across replicas, so the "before" each audit entry records is the value its write
//! replaced, and audit sequence numbers are committed in order — a replica that has read up to
//! `seq` N never later finds an N-1 it missed, and the revision (the largest `seq`) moves on
//! every change.
//!
//! The sync `postgres` client runs each connection on a private current-thread tokio runtime,
//! driven from the calling thread: fine on a plain thread or in `spawn_blocking`, a panic inside
//! an async task (which is why the store's `Drop` hands its connections to a thread of their own
//! when it runs inside a runtime).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Config, IsolationLevel, NoTls, Transaction};
use serde_json::Value;

use crate::error::chain;
use crate::records::{self, now_ms};
use crate::{AuditEntry, LoadEvent, MetadataError, MetadataStore, Snapshot, address};

/// The `LISTEN`/`NOTIFY` channel changes are announced on.
const CHANNEL: &str = "quiver_metadata";
/// Connecting gives up after this, unless the URL says otherwise (`connect_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server cancels a statement (lock waits included) after this: every query here is small,
/// so one that runs this long is stuck.
const STATEMENT_TIMEOUT_MS: u64 = 10_000;
/// A server that stops acknowledging what was sent (host down, network cut) fails the
/// connection after this, instead of after the kernel's ~15 minutes of retransmissions.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(15);
/// An idle connection (the listener's above all) is probed after this, so a lost server is
/// noticed in well under a minute.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// tokio-postgres's default keepalive idle time, which we replace unless the URL set another.
const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);
/// The advisory lock migrations run under, so replicas starting together migrate once.
const MIGRATION_LOCK: i64 = 0x5155_4956_4d44_0001;
/// The advisory lock policy and label writers take (see the module's documentation).
const WRITE_LOCK: i64 = 0x5155_4956_4d44_0002;

/// The schema, one migration per version; a migration, once released, never changes.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
    CREATE TABLE traffic_policies (
        model TEXT PRIMARY KEY,
        policy JSONB NOT NULL,
        updated_ms BIGINT NOT NULL
    );
    CREATE TABLE labels (
        model TEXT NOT NULL,
        label TEXT NOT NULL,
        version BIGINT NOT NULL,
        updated_ms BIGINT NOT NULL,
        PRIMARY KEY (model, label)
    );
    CREATE TABLE audit (
        seq BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        actor TEXT NOT NULL,
        model TEXT NOT NULL,
        action TEXT NOT NULL,
        "before" JSONB,
        "after" JSONB
    );
    CREATE INDEX audit_model_seq ON audit (model, seq);
    CREATE TABLE load_history (
        id BIGSERIAL PRIMARY KEY,
        at_ms BIGINT NOT NULL,
        replica TEXT NOT NULL,
        model TEXT NOT NULL,
        version BIGINT NOT NULL,
        event TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX load_history_model_at ON load_history (model, at_ms);
    "#,
)];

/// Why an operation on the connection failed.
enum Fail {
    /// A statement failed; retried on a new connection if this one broke.
    Db(postgres::Error),
    /// The commit of a write failed: never retried, as it may have been applied.
    Commit(postgres::Error),
    /// Not the connection's doing.
    Store(MetadataError),
}

impl From<postgres::Error> for Fail {
    fn from(error: postgres::Error) -> Self {
        Self::Db(error)
    }
}

impl From<MetadataError> for Fail {
    fn from(error: MetadataError) -> Self {
        Self::Store(error)
    }
}

/// The connection `wait_for_change` listens on.
#[derive(Default)]
struct Listener {
    client: Option<Client>,
    /// It failed (and was logged): once listening again, report a change, since some may have
    /// been missed meanwhile.
    lost: bool,
}

/// A metadata store in a PostgreSQL database.
pub(crate) struct PgStore {
    config: Config,
    location: String,
    /// This handle's `NOTIFY` payload, so it can tell its own changes from other replicas'.
    token: String,
    client: Mutex<Option<Client>>,
    listener: Mutex<Listener>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the config: it holds the password.
        f.debug_struct("PgStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to `url`, migrates the schema and starts listening for changes.
    pub(crate) fn open(url: &str) -> Result<Self, MetadataError> {
        let location = address::redact(url);
        let mut config: Config =
            url.parse()
                .map_err(|e: postgres::Error| MetadataError::InvalidUrl {
                    url: location.clone(),
                    message: chain(&e),
                })?;
        configure(&mut config);
        static HANDLES: AtomicU64 = AtomicU64::new(0);
        let token = format!(
            "{}-{}-{}",
            std::process::id(),
            HANDLES.fetch_add(1, Ordering::Relaxed),
            now_ms()
        );
        let store = Self {
            config,
            location,
            token,
            client: Mutex::new(None),
            listener: Mutex::new(Listener::default()),
        };
        store
            .run("cannot migrate the schema", |client| Ok(migrate(client)?))
            .map_err(|e| {
                // Failing to set up the schema fails the open.
                if let MetadataError::Query { store, message } = e {
                    MetadataError::Open { store, message }
                } else {
                    e
                }
            })?;
        let listener = store.listen()?;
        store.lock_listener().client = Some(listener);
        Ok(store)
    }

    fn connect(&self) -> Result<Client, MetadataError> {
        self.config.connect(NoTls).map_err(|e| {
            let refused = e.code().is_some_and(|code| {
                // The server is there but not taking connections now: as good as unreachable.
                *code != SqlState::CANNOT_CONNECT_NOW && *code != SqlState::TOO_MANY_CONNECTIONS
            });
            if refused {
                MetadataError::Open {
                    store: self.location.clone(),
                    message: format!("the server refused the connection: {}", chain(&e)),
                }
            } else {
                MetadataError::Unreachable {
                    store: self.location.clone(),
                    message: format!("cannot connect: {}", chain(&e)),
                }
            }
        })
    }

    /// A new connection, listening on [`CHANNEL`].
    fn listen(&self) -> Result<Client, MetadataError> {
        let mut client = self.connect()?;
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .map_err(|e| MetadataError::Unreachable {
                store: self.location.clone(),
                message: format!("cannot listen for changes: {}", chain(&e)),
            })?;
        Ok(client)
    }

    fn lock_listener(&self) -> MutexGuard<'_, Listener> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `op` on the query connection, connecting first if there is none; on a connection
    /// found broken, reconnects and runs it once more (not after a failed commit, which may
    /// have been applied).
    fn run<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&mut Client) -> Result<T, Fail>,
    ) -> Result<T, MetadataError> {
        let mut slot = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        let mut fresh = false;
        loop {
            let client = match slot.take() {
                Some(client) if !client.is_closed() => client,
                _ => {
                    fresh = true;
                    self.connect()?
                }
            };
            let client = slot.insert(client);
            let (error, committing) = match op(client) {
                Ok(value) => return Ok(value),
                Err(Fail::Store(e)) => return Err(e),
                Err(Fail::Db(e)) => (e, false),
                Err(Fail::Commit(e)) => (e, true),
            };
            if !is_broken(&error, client) {
                return Err(MetadataError::Query {
                    store: self.location.clone(),
                    message: format!("{what}: {}", chain(&error)),
                });
            }
            *slot = None;
            if committing {
                return Err(MetadataError::Unreachable {
                    store: self.location.clone(),
                    message: format!(
                        "{what}: the connection was lost while committing, so the change may or may not have been made: {}",
                        chain(&error)
                    ),
                });
            }
            if fresh {
                return Err(MetadataError::Unreachable {
                    store: self.location.clone(),
                    message: format!("{what}: {}", chain(&error)),
                });
            }
            tracing::info!(store = %self.location, error = %chain(&error), "lost the metadata store's connection; reconnecting");
        }
    }

    /// Writes the audit entry for a change and announces it, in the change's transaction.
    fn append_audit(
        &self,
        tx: &mut Transaction<'_>,
        model: &str,
        action: &str,
        actor: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<AuditEntry, Fail> {
        let at_ms = now_ms();
        let text = |v: &Option<Value>| {
            v.as_ref()
                .map(|v| records::json_text(&self.location, v))
                .transpose()
        };
        let (before_text, after_text) = (text(&before)?, text(&after)?);
        let seq: i64 = tx
            .query_one(
                r#"INSERT INTO audit (at_ms, actor, model, action, "before", "after")
                   VALUES ($1, $2, $3, $4, $5::text::jsonb, $6::text::jsonb) RETURNING seq"#,
                &[&at_ms, &actor, &model, &action, &before_text, &after_text],
            )?
            .try_get(0)?;
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &self.token])?;
        Ok(AuditEntry {
            seq,
            at_ms,
            actor: actor.to_owned(),
            model: model.to_owned(),
            action: action.to_owned(),
            before,
            after,
        })
    }

    fn json_column(&self, what: &str, text: Option<String>) -> Result<Option<Value>, Fail> {
        Ok(text
            .map(|t| records::parse_json(&self.location, what, &t))
            .transpose()?)
    }
}

/// Our defaults, where the URL sets none.
fn configure(config: &mut Config) {
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
    }
    if config.get_keepalives_idle() == DEFAULT_KEEPALIVE_IDLE {
        config.keepalives_idle(KEEPALIVE_IDLE);
    }
    if config.get_application_name().is_none() {
        config.application_name("quiver");
    }
    // First, so a statement_timeout in the URL's own options (later) wins.
    let options = match config.get_options() {
        Some(theirs) => format!("-c statement_timeout={STATEMENT_TIMEOUT_MS} {theirs}"),
        None => format!("-c statement_timeout={STATEMENT_TIMEOUT_MS}"),
    };
    config.options(&options);
}

/// Whether the connection is unusable (as opposed to a statement the server refused, or a
/// value that did not convert).
fn is_broken(error: &postgres::Error, client: &Client) -> bool {
    if client.is_closed() || error.is_closed() {
        return true;
    }
    if let Some(code) = error.code() {
        // The server is ending this session (shutdown, restart, crash recovery).
        return *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
            || *code == SqlState::CANNOT_CONNECT_NOW;
    }
    // The socket failed (reset, timed out).
    std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
}

/// Brings the schema up to date, under an advisory lock so replicas starting at once take turns
/// (`CREATE TABLE IF NOT EXISTS` alone races).
fn migrate(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS quiver_schema_migrations (
            version BIGINT PRIMARY KEY,
            applied_ms BIGINT NOT NULL
        )",
    )?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0)::bigint FROM quiver_schema_migrations",
            &[],
        )?
        .try_get(0)?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.batch_execute(sql)?;
        tx.execute(
            "INSERT INTO quiver_schema_migrations (version, applied_ms) VALUES ($1, $2)",
            &[version, &now_ms()],
        )?;
    }
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        // A newer build migrated the database; its migrations only add, so this build still works.
        tracing::warn!(
            schema = current,
            known,
            "the metadata schema is newer than this build"
        );
    }
    tx.commit()
}

/// Sleeps until `deadline` (no later than now).
fn sleep_until(deadline: Instant) {
    std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
}

impl MetadataStore for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn snapshot(&self) -> Result<Snapshot, MetadataError> {
        self.run("cannot read a snapshot", |client| {
            // One repeatable-read transaction: the three reads see one state of the database.
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let revision: i64 = tx
                .query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM audit", &[])?
                .try_get(0)?;
            let mut policies = BTreeMap::new();
            for row in tx.query("SELECT model, policy::text FROM traffic_policies", &[])? {
                let model: String = row.try_get(0)?;
                let text: String = row.try_get(1)?;
                let policy = records::parse_json(&self.location, "a traffic policy", &text)?;
                policies.insert(model, policy);
            }
            let mut labels: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
            for row in tx.query("SELECT model, label, version FROM labels", &[])? {
                let model: String = row.try_get(0)?;
                let label: String = row.try_get(1)?;
                let version = records::version_from_db(&self.location, row.try_get(2)?)?;
                labels.entry(model).or_default().insert(label, version);
            }
            tx.commit()?;
            Ok(Snapshot {
                revision,
                policies,
                labels,
            })
        })
    }

    fn revision(&self) -> Result<i64, MetadataError> {
        self.run("cannot read the revision", |client| {
            Ok(client
                .query_one("SELECT COALESCE(MAX(seq), 0)::bigint FROM audit", &[])?
                .try_get(0)?)
        })
    }

    fn set_policy(
        &self,
        model: &str,
        policy: Option<&Value>,
        actor: &str,
    ) -> Result<Option<AuditEntry>, MetadataError> {
        let text = policy
            .map(|p| records::policy_text(&self.location, p))
            .transpose()?;
        self.run("cannot change the policy", |client| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            let before: Option<String> = tx
                .query_opt(
                    "SELECT policy::text FROM traffic_policies WHERE model = $1",
                    &[&model],
                )?
                .map(|row| row.try_get(0))
                .transpose()?;
            let before = self.json_column("a traffic policy", before)?;
            let action = match &text {
                Some(text) => {
                    tx.execute(
                        "INSERT INTO traffic_policies (model, policy, updated_ms)
                         VALUES ($1, $2::text::jsonb, $3)
                         ON CONFLICT (model) DO UPDATE
                         SET policy = EXCLUDED.policy, updated_ms = EXCLUDED.updated_ms",
                        &[&model, text, &now_ms()],
                    )?;
                    records::TRAFFIC_PUT
                }
                None if before.is_none() => return Ok(None),
                None => {
                    tx.execute("DELETE FROM traffic_policies WHERE model = $1", &[&model])?;
                    records::TRAFFIC_DELETE
                }
            };
            let entry =
                self.append_audit(&mut tx, model, action, actor, before, policy.cloned())?;
            tx.commit().map_err(Fail::Commit)?;
            Ok(Some(entry))
        })
    }

    fn set_label(
        &self,
        model: &str,
        label: &str,
        version: Option<u64>,
        actor: &str,
    ) -> Result<Option<AuditEntry>, MetadataError> {
        let stored = version
            .map(|v| records::version_to_db(&self.location, v))
            .transpose()?;
        self.run("cannot change the label", |client| {
            let mut tx = client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
            let before: Option<i64> = tx
                .query_opt(
                    "SELECT version FROM labels WHERE model = $1 AND label = $2",
                    &[&model, &label],
                )?
                .map(|row| row.try_get(0))
                .transpose()?;
            let before = before
                .map(|v| records::version_from_db(&self.location, v))
                .transpose()?;
            let action = match stored {
                Some(stored) => {
                    tx.execute(
                        "INSERT INTO labels (model, label, version, updated_ms)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (model, label) DO UPDATE
                         SET version = EXCLUDED.version, updated_ms = EXCLUDED.updated_ms",
                        &[&model, &label, &stored, &now_ms()],
                    )?;
                    records::LABEL_PUT
                }
                None if before.is_none() => return Ok(None),
                None => {
                    tx.execute(
                        "DELETE FROM labels WHERE model = $1 AND label = $2",
                        &[&model, &label],
                    )?;
                    records::LABEL_DELETE
                }
            };
            let before = before.map(|v| records::label_value(label, v));
            let after = version.map(|v| records::label_value(label, v));
            let entry = self.append_audit(&mut tx, model, action, actor, before, after)?;
            tx.commit().map_err(Fail::Commit)?;
            Ok(Some(entry))
        })
    }

    fn audit(
        &self,
        after_seq: i64,
        limit: usize,
        model: Option<&str>,
    ) -> Result<Vec<AuditEntry>, MetadataError> {
        let limit = records::limit_to_db(limit);
        self.run("cannot read the audit log", |client| {
            const COLUMNS: &str =
                r#"SELECT seq, at_ms, actor, model, action, "before"::text, "after"::text FROM audit"#;
            let rows = match model {
                Some(model) => client.query(
                    &format!("{COLUMNS} WHERE model = $1 AND seq > $2 ORDER BY seq LIMIT $3"),
                    &[&model, &after_seq, &limit],
                )?,
                None => client.query(
                    &format!("{COLUMNS} WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    &[&after_seq, &limit],
                )?,
            };
            let mut entries = Vec::with_capacity(rows.len());
            for row in rows {
                entries.push(AuditEntry {
                    seq: row.try_get(0)?,
                    at_ms: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    model: row.try_get(3)?,
                    action: row.try_get(4)?,
                    before: self.json_column("an audit entry's before", row.try_get(5)?)?,
                    after: self.json_column("an audit entry's after", row.try_get(6)?)?,
                });
            }
            Ok(entries)
        })
    }

    fn record_load(&self, event: &LoadEvent) -> Result<(), MetadataError> {
        let version = records::version_to_db(&self.location, event.version)?;
        self.run("cannot record a load event", |client| {
            client.execute(
                "INSERT INTO load_history (at_ms, replica, model, version, event, reason)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &event.at_ms,
                    &event.replica,
                    &event.model,
                    &version,
                    &event.event,
                    &event.reason,
                ],
            )?;
            Ok(())
        })
    }

    fn load_history(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LoadEvent>, MetadataError> {
        let limit = records::limit_to_db(limit);
        self.run("cannot read the load history", |client| {
            const COLUMNS: &str =
                "SELECT at_ms, replica, model, version, event, reason FROM load_history";
            let rows = match model {
                Some(model) => client.query(
                    &format!("{COLUMNS} WHERE model = $1 ORDER BY at_ms DESC, id DESC LIMIT $2"),
                    &[&model, &limit],
                )?,
                None => client.query(
                    &format!("{COLUMNS} ORDER BY at_ms DESC, id DESC LIMIT $1"),
                    &[&limit],
                )?,
            };
            let mut events = Vec::with_capacity(rows.len());
            for row in rows {
                events.push(LoadEvent {
                    at_ms: row.try_get(0)?,
                    replica: row.try_get(1)?,
                    model: row.try_get(2)?,
                    version: records::version_from_db(&self.location, row.try_get(3)?)?,
                    event: row.try_get(4)?,
                    reason: row.try_get(5)?,
                });
            }
            Ok(events)
        })
    }

    fn wait_for_change(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut listener = self.lock_listener();
        if listener.client.as_ref().is_none_or(Client::is_closed) {
            listener.client = None;
            match self.listen() {
                Ok(client) => {
                    listener.client = Some(client);
                    if listener.lost {
                        listener.lost = false;
                        tracing::info!(store = %self.location, "listening for metadata changes again");
                        return true;
                    }
                }
                Err(error) => {
                    if !listener.lost {
                        listener.lost = true;
                        tracing::warn!(%error, "cannot listen for metadata changes; other replicas' changes show at the next poll");
                    }
                    drop(listener);
                    sleep_until(deadline);
                    return false;
                }
            }
        }
        let Some(client) = listener.client.as_mut() else {
            return false;
        };
        let error = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let next = client.notifications().timeout_iter(remaining).next();
            match next {
                Ok(Some(notification)) if notification.payload() != self.token => {
                    // Those already here are covered by the reload this one causes.
                    let mut notifications = client.notifications();
                    let mut pending = notifications.iter();
                    while let Ok(Some(_)) = pending.next() {}
                    return true;
                }
                // This handle's own change: the caller knows of it.
                Ok(Some(_)) => {}
                Ok(None) if client.is_closed() => break "the connection closed".to_owned(),
                Ok(None) => return false,
                Err(error) => break chain(&error),
            }
        };
        listener.client = None;
        if !listener.lost {
            listener.lost = true;
            tracing::warn!(store = %self.location, %error, "lost the connection listening for metadata changes; reconnecting");
        }
        drop(listener);
        sleep_until(deadline);
        false
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        let client = self
            .client
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let listener = self
            .listener
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .client
            .take();
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        // Closing a connection blocks on its private runtime, which panics inside an async
        // task: close them on a thread of their own.
        let parcel = Arc::new(Mutex::new(Some((client, listener))));
        let theirs = Arc::clone(&parcel);
        let spawned = std::thread::Builder::new()
            .name("quiver-metadata-close".into())
            .spawn(move || drop(theirs.lock().unwrap_or_else(PoisonError::into_inner).take()));
        if spawned.is_err() {
            // No thread to close them on: leak the connections rather than panic.
            std::mem::forget(parcel.lock().unwrap_or_else(PoisonError::into_inner).take());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_defaults_fill_what_the_url_leaves_out() {
        let mut config: Config = "postgres://quiver:pw@db/quiver".parse().expect("parse");
        configure(&mut config);
        assert_eq!(config.get_connect_timeout(), Some(&CONNECT_TIMEOUT));
        assert_eq!(config.get_tcp_user_timeout(), Some(&TCP_USER_TIMEOUT));
        assert_eq!(config.get_keepalives_idle(), KEEPALIVE_IDLE);
        assert_eq!(config.get_application_name(), Some("quiver"));
        assert_eq!(config.get_options(), Some("-c statement_timeout=10000"));

        let mut config: Config =
            "postgres://db/quiver?connect_timeout=2&application_name=a&options=-c%20search_path%3Dq"
                .parse()
                .expect("parse");
        configure(&mut config);
        assert_eq!(config.get_connect_timeout(), Some(&Duration::from_secs(2)));
        assert_eq!(config.get_application_name(), Some("a"));
        assert_eq!(
            config.get_options(),
            Some("-c statement_timeout=10000 -c search_path=q"),
            "theirs last, so theirs win"
        );
    }

    #[test]
    fn a_url_that_does_not_parse_is_invalid_without_its_password() {
        let err = PgStore::open("postgres://quiver:pw@db:notaport/quiver").expect_err("bad port");
        assert!(matches!(err, MetadataError::InvalidUrl { .. }), "{err:?}");
        assert!(!err.to_string().contains("pw"), "{err}");
    }
}
