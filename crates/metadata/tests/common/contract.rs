//! What every backend must do, run against SQLite (tests/sqlite.rs) and PostgreSQL
//! (tests/postgres.rs) alike.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use quiver_metadata::{AuditEntry, LoadEvent, MetadataStore, Snapshot, Value};
use serde_json::json;

/// Opens a new handle on the store under test (the same database every time).
pub type Open<'a> = &'a (dyn Fn() -> Arc<dyn MetadataStore> + Sync);

fn now_ms() -> i64 {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    i64::try_from(ms).expect("ms")
}

fn load(at_ms: i64, model: &str, version: u64, event: &str, reason: Option<&str>) -> LoadEvent {
    LoadEvent {
        at_ms,
        replica: "replica-a".into(),
        model: model.into(),
        version,
        event: event.into(),
        reason: reason.map(Into::into),
    }
}

/// Every behaviour, in order, on a new (empty) store; then a reopen (a restart) finds it all.
pub fn run(open: Open<'_>, kind: &str) {
    let store = open();
    assert_eq!(store.kind(), kind);
    assert_eq!(store.revision().expect("revision"), 0, "a new store");
    assert_eq!(store.snapshot().expect("snapshot"), Snapshot::default());
    assert!(store.audit(0, 100, None).expect("audit").is_empty());
    assert!(store.load_history(None, 100).expect("history").is_empty());

    let entries = policies(store.as_ref());
    let entries = [entries, labels(store.as_ref())].concat();
    audit_log(store.as_ref(), &entries);
    history(store.as_ref());

    let snapshot = store.snapshot().expect("snapshot");
    let audit = store.audit(0, 1000, None).expect("audit");
    let history = store.load_history(None, 1000).expect("history");
    drop(store);
    let reopened = open();
    assert_eq!(
        reopened.snapshot().expect("snapshot"),
        snapshot,
        "after a restart"
    );
    assert_eq!(reopened.audit(0, 1000, None).expect("audit"), audit);
    assert_eq!(reopened.load_history(None, 1000).expect("history"), history);
    assert_eq!(reopened.revision().expect("revision"), snapshot.revision);
}

fn policies(store: &dyn MetadataStore) -> Vec<AuditEntry> {
    let first = json!({"versions": [{"version": 1, "weight": 0.75}, {"version": 2, "weight": 0.25}], "note": "ünïcode"});
    let second = json!({"versions": [{"version": 2, "weight": 1}], "mirror": null});
    let started = now_ms();

    let put = store
        .set_policy("resnet", Some(&first), "alice")
        .expect("put")
        .expect("an entry");
    assert_eq!(put.action, "traffic.put");
    assert_eq!(
        (put.actor.as_str(), put.model.as_str()),
        ("alice", "resnet")
    );
    assert_eq!(
        (put.before.as_ref(), put.after.as_ref()),
        (None, Some(&first))
    );
    assert!(put.seq > 0);
    assert!(
        (started - 1000..now_ms() + 1000).contains(&put.at_ms),
        "{}",
        put.at_ms
    );
    assert_eq!(store.revision().expect("revision"), put.seq);
    let snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.revision, put.seq);
    assert_eq!(
        snapshot.policies,
        BTreeMap::from([("resnet".to_owned(), first.clone())])
    );

    let replace = store
        .set_policy("resnet", Some(&second), "bob")
        .expect("replace")
        .expect("an entry");
    assert_eq!(replace.action, "traffic.put");
    assert_eq!(
        (replace.before.as_ref(), replace.after.as_ref()),
        (Some(&first), Some(&second))
    );
    assert!(replace.seq > put.seq);
    assert_eq!(store.revision().expect("revision"), replace.seq);

    let other = store
        .set_policy("bert", Some(&first), "alice")
        .expect("put")
        .expect("an entry");
    let delete = store
        .set_policy("resnet", None, "carol")
        .expect("delete")
        .expect("an entry");
    assert_eq!(delete.action, "traffic.delete");
    assert_eq!(
        (delete.before.as_ref(), delete.after.as_ref()),
        (Some(&second), None)
    );
    let revision = store.revision().expect("revision");
    assert_eq!(revision, delete.seq);
    assert_eq!(
        store.set_policy("resnet", None, "carol").expect("delete"),
        None,
        "removing an absent policy records nothing"
    );
    assert_eq!(store.revision().expect("revision"), revision, "unchanged");
    let snapshot = store.snapshot().expect("snapshot");
    assert_eq!(
        snapshot.policies,
        BTreeMap::from([("bert".to_owned(), first.clone())])
    );
    assert_eq!(snapshot.revision, revision);

    let err = store
        .set_policy("resnet", Some(&Value::Null), "carol")
        .expect_err("a null policy");
    assert!(!err.is_unreachable());
    assert_eq!(store.revision().expect("revision"), revision, "unchanged");
    vec![put, replace, other, delete]
}

fn labels(store: &dyn MetadataStore) -> Vec<AuditEntry> {
    let stable = store
        .set_label("resnet", "stable", Some(1), "alice")
        .expect("put")
        .expect("an entry");
    assert_eq!(stable.action, "label.put");
    assert_eq!(stable.before, None);
    assert_eq!(stable.after, Some(json!({"label": "stable", "version": 1})));
    let moved = store
        .set_label("resnet", "stable", Some(2), "bob")
        .expect("move")
        .expect("an entry");
    assert_eq!(moved.before, Some(json!({"label": "stable", "version": 1})));
    assert_eq!(moved.after, Some(json!({"label": "stable", "version": 2})));
    let canary = store
        .set_label("resnet", "canary", Some(3), "bob")
        .expect("put")
        .expect("an entry");
    let big = store
        .set_label("bert", "stable", Some(1 << 40), "bob")
        .expect("put")
        .expect("an entry");
    let removed = store
        .set_label("resnet", "canary", None, "carol")
        .expect("delete")
        .expect("an entry");
    assert_eq!(removed.action, "label.delete");
    assert_eq!(
        removed.before,
        Some(json!({"label": "canary", "version": 3}))
    );
    assert_eq!(removed.after, None);
    assert_eq!(
        store
            .set_label("resnet", "canary", None, "carol")
            .expect("delete"),
        None
    );
    assert!(
        store
            .set_label("resnet", "huge", Some(u64::MAX), "carol")
            .is_err(),
        "a version past i64::MAX"
    );
    let snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.revision, removed.seq);
    assert_eq!(
        snapshot.labels,
        BTreeMap::from([
            (
                "resnet".to_owned(),
                BTreeMap::from([("stable".to_owned(), 2)])
            ),
            (
                "bert".to_owned(),
                BTreeMap::from([("stable".to_owned(), 1 << 40)])
            ),
        ])
    );
    vec![stable, moved, canary, big, removed]
}

fn audit_log(store: &dyn MetadataStore, written: &[AuditEntry]) {
    let all = store.audit(0, 1000, None).expect("audit");
    assert_eq!(
        all, written,
        "every change, oldest first, as returned when made"
    );
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let actions: Vec<&str> = all.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "traffic.put",
            "traffic.put",
            "traffic.put",
            "traffic.delete",
            "label.put",
            "label.put",
            "label.put",
            "label.put",
            "label.delete"
        ]
    );

    let page = store.audit(all[1].seq, 3, None).expect("a page");
    assert_eq!(page, all[2..5]);
    assert!(
        store
            .audit(all[8].seq, 10, None)
            .expect("past the end")
            .is_empty()
    );
    assert!(store.audit(0, 0, None).expect("limit 0").is_empty());

    let bert = store.audit(0, 1000, Some("bert")).expect("one model's");
    let expected: Vec<AuditEntry> = all.iter().filter(|e| e.model == "bert").cloned().collect();
    assert_eq!(bert, expected);
    assert_eq!(bert.len(), 2);
    let after = store.audit(bert[0].seq, 1000, Some("bert")).expect("after");
    assert_eq!(after, bert[1..]);
    assert!(
        store
            .audit(0, 1000, Some("nobody"))
            .expect("audit")
            .is_empty()
    );
}

fn history(store: &dyn MetadataStore) {
    let revision = store.revision().expect("revision");
    let events = [
        load(1_000, "resnet", 1, "loaded", None),
        load(3_000, "resnet", 2, "failed", Some("bad model: no graph")),
        load(2_000, "bert", 7, "loaded", None),
        load(4_000, "resnet", 1, "retired", None),
        load(4_000, "bert", 7, "unloaded", None),
    ];
    for event in &events {
        store.record_load(event).expect("record");
    }
    assert_eq!(
        store.revision().expect("revision"),
        revision,
        "load history is not a policy change"
    );
    let all = store.load_history(None, 100).expect("history");
    let expected = [&events[4], &events[3], &events[1], &events[2], &events[0]];
    assert_eq!(all.iter().collect::<Vec<_>>(), expected, "newest first");
    let two = store.load_history(None, 2).expect("history");
    assert_eq!(two, all[..2]);
    let resnet = store.load_history(Some("resnet"), 100).expect("history");
    assert_eq!(
        resnet.iter().collect::<Vec<_>>(),
        [&events[3], &events[1], &events[0]]
    );
    assert_eq!(resnet[1].reason.as_deref(), Some("bad model: no graph"));
    assert_eq!(
        store.load_history(Some("resnet"), 1).expect("history"),
        [events[3].clone()]
    );
    assert!(
        store
            .load_history(Some("nobody"), 10)
            .expect("history")
            .is_empty()
    );
}

/// Writers through several handles at once (replicas, or threads of one): each change's
/// `before` is exactly the `after` of the one before it, and the log has them all, in order.
pub fn concurrent_writers(open: Open<'_>) {
    const HANDLES: usize = 2;
    const THREADS: usize = 3;
    const CHANGES: u64 = 10;
    let handles: Vec<Arc<dyn MetadataStore>> = (0..HANDLES).map(|_| open()).collect();
    std::thread::scope(|scope| {
        for (i, store) in handles.iter().enumerate() {
            for t in 0..THREADS {
                let store = Arc::clone(store);
                scope.spawn(move || {
                    for n in 0..CHANGES {
                        let version = (i * THREADS + t) as u64 * 100 + n + 1;
                        store
                            .set_label(
                                "shared",
                                "stable",
                                Some(version),
                                &format!("writer-{i}-{t}"),
                            )
                            .expect("set_label")
                            .expect("an entry");
                    }
                });
            }
        }
    });
    let log = handles[0].audit(0, 10_000, Some("shared")).expect("audit");
    let total = HANDLES * THREADS * CHANGES as usize;
    assert_eq!(log.len(), total);
    assert_eq!(log[0].before, None);
    for pair in log.windows(2) {
        assert_eq!(pair[1].before, pair[0].after, "serialised writes: {pair:?}");
    }
    let last = log.last().and_then(|e| e.after.clone()).expect("last");
    let snapshot = handles[1].snapshot().expect("snapshot");
    assert_eq!(
        Some(json!({"label": "stable", "version": snapshot.labels["shared"]["stable"]})),
        Some(last)
    );
    assert_eq!(snapshot.revision, log.last().map(|e| e.seq).expect("seq"));
}
