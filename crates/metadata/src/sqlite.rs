//! The embedded backend: one SQLite file, one connection behind a mutex.
//!
//! WAL mode lets a reader (another process inspecting the file, a backup) run beside the
//! writer; writes take the write lock up front (`BEGIN IMMEDIATE`) so the "before" an audit
//! entry records is the value the write replaced, even with a second process on the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde_json::Value;

use crate::records::{self, now_ms};
use crate::{AuditEntry, LoadEvent, MetadataError, MetadataStore, Snapshot};

/// How long a statement waits for another process's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The schema, one migration per version; a migration, once released, never changes.
const MIGRATIONS: &[(i64, &str)] = &[(
    1,
    r#"
    CREATE TABLE traffic_policies (
        model TEXT PRIMARY KEY,
        policy TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );
    CREATE TABLE labels (
        model TEXT NOT NULL,
        label TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_ms INTEGER NOT NULL,
        PRIMARY KEY (model, label)
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        actor TEXT NOT NULL,
        model TEXT NOT NULL,
        action TEXT NOT NULL,
        "before" TEXT,
        "after" TEXT
    );
    CREATE INDEX audit_model_seq ON audit (model, seq);
    CREATE TABLE load_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_ms INTEGER NOT NULL,
        replica TEXT NOT NULL,
        model TEXT NOT NULL,
        version INTEGER NOT NULL,
        event TEXT NOT NULL,
        reason TEXT
    );
    CREATE INDEX load_history_model_at ON load_history (model, at_ms);
    "#,
)];

/// A metadata store in an SQLite file.
pub(crate) struct SqliteStore {
    location: String,
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating) the file at `path` (absolute), its parent directories and the schema.
    pub(crate) fn open(path: &Path) -> Result<Self, MetadataError> {
        let location = path.display().to_string();
        let fail = |message: String| MetadataError::Open {
            store: location.clone(),
            message,
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                fail(format!(
                    "cannot create the directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let mut conn = Connection::open(path)
            .map_err(|e| fail(format!("cannot open the database file: {e}")))?;
        conn.busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| fail(format!("cannot set busy_timeout: {e}")))?;
        // SQLite opens lazily: this is the first read of the file, where a directory or a
        // file that is not a database shows.
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| fail(format!("cannot open the database file: {e}")))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(store = %location, %mode, "SQLite refused WAL mode; readers will block the writer");
        }
        migrate(&mut conn).map_err(|e| fail(format!("schema migration failed: {e}")))?;
        Ok(Self {
            location,
            conn: Mutex::new(conn),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic mid-transaction rolled it back as the transaction dropped: the connection is
        // sound.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Maps a database error to one naming the store and what failed.
    fn fail(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> MetadataError + '_ {
        move |e| MetadataError::Query {
            store: self.location.clone(),
            message: format!("{what}: {e}"),
        }
    }

    /// Writes the audit entry for a change, in the change's transaction.
    fn append_audit(
        &self,
        tx: &Transaction<'_>,
        model: &str,
        action: &str,
        actor: &str,
        before: Option<Value>,
        after: Option<Value>,
    ) -> Result<AuditEntry, MetadataError> {
        let at_ms = now_ms();
        let text = |v: &Option<Value>| {
            v.as_ref()
                .map(|v| records::json_text(&self.location, v))
                .transpose()
        };
        let seq: i64 = tx
            .query_row(
                r#"INSERT INTO audit (at_ms, actor, model, action, "before", "after")
                   VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq"#,
                params![at_ms, actor, model, action, text(&before)?, text(&after)?],
                |row| row.get(0),
            )
            .map_err(self.fail("cannot append to the audit log"))?;
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

    fn json_column(
        &self,
        what: &str,
        text: Option<String>,
    ) -> Result<Option<Value>, MetadataError> {
        text.map(|t| records::parse_json(&self.location, what, &t))
            .transpose()
    }
}

/// Brings the schema up to date, under the write lock so a second process waits its turn.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS quiver_schema_migrations (
            version INTEGER PRIMARY KEY,
            applied_ms INTEGER NOT NULL
        )",
    )?;
    let current: i64 = tx.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM quiver_schema_migrations",
        [],
        |row| row.get(0),
    )?;
    for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO quiver_schema_migrations (version, applied_ms) VALUES (?1, ?2)",
            params![version, now_ms()],
        )?;
    }
    let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
    if current > known {
        // A newer build migrated this file; its migrations only add, so this build still works.
        tracing::warn!(
            schema = current,
            known,
            "the metadata schema is newer than this build"
        );
    }
    tx.commit()
}

impl MetadataStore for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn snapshot(&self) -> Result<Snapshot, MetadataError> {
        let mut conn = self.lock();
        // One read transaction: the three reads see the same state of the file.
        let tx = conn
            .transaction()
            .map_err(self.fail("cannot begin a snapshot"))?;
        let revision: i64 = tx
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |row| {
                row.get(0)
            })
            .map_err(self.fail("cannot read the revision"))?;
        let mut policies = BTreeMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT model, policy FROM traffic_policies")
                .map_err(self.fail("cannot read policies"))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
                })
                .map_err(self.fail("cannot read policies"))?;
            for row in rows {
                let (model, text) = row.map_err(self.fail("cannot read policies"))?;
                let policy = records::parse_json(&self.location, "a traffic policy", &text)?;
                policies.insert(model, policy);
            }
        }
        let mut labels: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        {
            let mut stmt = tx
                .prepare("SELECT model, label, version FROM labels")
                .map_err(self.fail("cannot read labels"))?;
            let rows = stmt
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .map_err(self.fail("cannot read labels"))?;
            for row in rows {
                let (model, label, version) = row.map_err(self.fail("cannot read labels"))?;
                let version = records::version_from_db(&self.location, version)?;
                labels.entry(model).or_default().insert(label, version);
            }
        }
        tx.commit().map_err(self.fail("cannot end a snapshot"))?;
        Ok(Snapshot {
            revision,
            policies,
            labels,
        })
    }

    fn revision(&self) -> Result<i64, MetadataError> {
        self.lock()
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM audit", [], |row| {
                row.get(0)
            })
            .map_err(self.fail("cannot read the revision"))
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
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.fail("cannot begin a policy change"))?;
        let before: Option<String> = tx
            .query_row(
                "SELECT policy FROM traffic_policies WHERE model = ?1",
                [model],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.fail("cannot read the policy"))?;
        let before = self.json_column("a traffic policy", before)?;
        let action = match &text {
            Some(text) => {
                tx.execute(
                    "INSERT INTO traffic_policies (model, policy, updated_ms) VALUES (?1, ?2, ?3)
                     ON CONFLICT (model) DO UPDATE SET policy = excluded.policy, updated_ms = excluded.updated_ms",
                    params![model, text, now_ms()],
                )
                .map_err(self.fail("cannot write the policy"))?;
                records::TRAFFIC_PUT
            }
            None if before.is_none() => return Ok(None),
            None => {
                tx.execute("DELETE FROM traffic_policies WHERE model = ?1", [model])
                    .map_err(self.fail("cannot delete the policy"))?;
                records::TRAFFIC_DELETE
            }
        };
        let entry = self.append_audit(&tx, model, action, actor, before, policy.cloned())?;
        tx.commit()
            .map_err(self.fail("cannot commit the policy change"))?;
        Ok(Some(entry))
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
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.fail("cannot begin a label change"))?;
        let before: Option<i64> = tx
            .query_row(
                "SELECT version FROM labels WHERE model = ?1 AND label = ?2",
                [model, label],
                |row| row.get(0),
            )
            .optional()
            .map_err(self.fail("cannot read the label"))?;
        let before = before
            .map(|v| records::version_from_db(&self.location, v))
            .transpose()?;
        let action = match stored {
            Some(stored) => {
                tx.execute(
                    "INSERT INTO labels (model, label, version, updated_ms) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (model, label) DO UPDATE SET version = excluded.version, updated_ms = excluded.updated_ms",
                    params![model, label, stored, now_ms()],
                )
                .map_err(self.fail("cannot write the label"))?;
                records::LABEL_PUT
            }
            None if before.is_none() => return Ok(None),
            None => {
                tx.execute(
                    "DELETE FROM labels WHERE model = ?1 AND label = ?2",
                    [model, label],
                )
                .map_err(self.fail("cannot delete the label"))?;
                records::LABEL_DELETE
            }
        };
        let before = before.map(|v| records::label_value(label, v));
        let after = version.map(|v| records::label_value(label, v));
        let entry = self.append_audit(&tx, model, action, actor, before, after)?;
        tx.commit()
            .map_err(self.fail("cannot commit the label change"))?;
        Ok(Some(entry))
    }

    fn audit(
        &self,
        after_seq: i64,
        limit: usize,
        model: Option<&str>,
    ) -> Result<Vec<AuditEntry>, MetadataError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                r#"SELECT seq, at_ms, actor, model, action, "before", "after" FROM audit
                   WHERE seq > ?1 AND (?2 IS NULL OR model = ?2)
                   ORDER BY seq LIMIT ?3"#,
            )
            .map_err(self.fail("cannot read the audit log"))?;
        let rows = stmt
            .query_map(
                params![after_seq, model, records::limit_to_db(limit)],
                |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, i64>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, String>(3)?,
                        row.get::<_, String>(4)?,
                        row.get::<_, Option<String>>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                },
            )
            .map_err(self.fail("cannot read the audit log"))?;
        let mut entries = Vec::new();
        for row in rows {
            let (seq, at_ms, actor, model, action, before, after) =
                row.map_err(self.fail("cannot read the audit log"))?;
            entries.push(AuditEntry {
                seq,
                at_ms,
                actor,
                model,
                action,
                before: self.json_column("an audit entry's before", before)?,
                after: self.json_column("an audit entry's after", after)?,
            });
        }
        Ok(entries)
    }

    fn record_load(&self, event: &LoadEvent) -> Result<(), MetadataError> {
        let version = records::version_to_db(&self.location, event.version)?;
        self.lock()
            .prepare_cached(
                "INSERT INTO load_history (at_ms, replica, model, version, event, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    event.at_ms,
                    event.replica,
                    event.model,
                    version,
                    event.event,
                    event.reason
                ])
            })
            .map(drop)
            .map_err(self.fail("cannot record a load event"))
    }

    fn load_history(
        &self,
        model: Option<&str>,
        limit: usize,
    ) -> Result<Vec<LoadEvent>, MetadataError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT at_ms, replica, model, version, event, reason FROM load_history
                 WHERE ?1 IS NULL OR model = ?1
                 ORDER BY at_ms DESC, id DESC LIMIT ?2",
            )
            .map_err(self.fail("cannot read the load history"))?;
        let rows = stmt
            .query_map(params![model, records::limit_to_db(limit)], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(self.fail("cannot read the load history"))?;
        let mut events = Vec::new();
        for row in rows {
            let (at_ms, replica, model, version, event, reason) =
                row.map_err(self.fail("cannot read the load history"))?;
            events.push(LoadEvent {
                at_ms,
                replica,
                model,
                version: records::version_from_db(&self.location, version)?,
                event,
                reason,
            });
        }
        Ok(events)
    }

    fn wait_for_change(&self, timeout: Duration) -> bool {
        // One process owns the file: nothing announces changes; callers compare revisions.
        std::thread::sleep(timeout);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_names(path: &Path) -> Vec<String> {
        let conn = Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .expect("prepare");
        stmt.query_map([], |row| row.get(0))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    #[test]
    fn creates_the_schema_and_its_directories_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a/b/metadata.sqlite3");
        let store = SqliteStore::open(&path).expect("open");
        assert_eq!(store.location(), path.display().to_string());
        let mode: String = store
            .lock()
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        drop(store);
        for _ in 0..2 {
            SqliteStore::open(&path).expect("reopen");
        }
        let names = table_names(&path);
        for table in [
            "audit",
            "labels",
            "load_history",
            "quiver_schema_migrations",
            "traffic_policies",
        ] {
            assert!(names.iter().any(|n| n == table), "{table} in {names:?}");
        }
        let conn = Connection::open(&path).expect("open");
        let versions: i64 = conn
            .query_row("SELECT COUNT(*) FROM quiver_schema_migrations", [], |row| {
                row.get(0)
            })
            .expect("count");
        assert_eq!(versions, 1, "migration 1 ran once");
    }

    #[test]
    fn unwritable_paths_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A file where a directory must go (permissions would not stop root).
        let file = dir.path().join("plain-file");
        std::fs::write(&file, "not a database\n".repeat(300)).expect("write");
        let err = SqliteStore::open(&file.join("metadata.sqlite3")).expect_err("under a file");
        let text = err.to_string();
        assert!(matches!(err, MetadataError::Open { .. }), "{err:?}");
        assert!(text.contains("cannot create the directory"), "{text}");
        assert!(text.contains("plain-file"), "{text}");
        assert!(!err.is_unreachable());

        // A directory where the file must go.
        let err = SqliteStore::open(dir.path()).expect_err("a directory");
        let text = err.to_string();
        assert!(text.contains("cannot open the database file"), "{text}");
        assert!(text.contains(&dir.path().display().to_string()), "{text}");

        // A file that is not a database.
        let err = SqliteStore::open(&file).expect_err("not a database");
        let text = err.to_string();
        assert!(text.contains("plain-file"), "{text}");
        assert!(text.contains("not a database"), "{text}");
    }

    #[test]
    fn refuses_what_it_cannot_store() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("m.sqlite3")).expect("open");
        let err = store
            .set_policy("m", Some(&Value::Null), "me")
            .expect_err("null policy");
        assert!(matches!(err, MetadataError::Invalid { .. }), "{err:?}");
        let err = store
            .set_label("m", "stable", Some(u64::MAX), "me")
            .expect_err("huge version");
        assert!(err.to_string().contains("above the largest"), "{err}");
        assert_eq!(store.revision().expect("revision"), 0, "nothing recorded");
    }
}
