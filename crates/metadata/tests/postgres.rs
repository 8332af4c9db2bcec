//! The PostgreSQL backend against a real server (Debian's `postgresql` package; each test
//! starts its own on a free port): the shared contract, replicas waking each other, concurrent
//! first starts, a server restart, use from tokio's blocking pool, and the errors of a server
//! that is not there. Without PostgreSQL installed the tests skip loudly, unless
//! `QUIVER_REQUIRE_POSTGRES=1`.

#[path = "common/contract.rs"]
mod contract;
#[path = "common/pg_server.rs"]
mod pg_server;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_server::PgServer;
use quiver_metadata::{MetadataError, MetadataStore, open};
use serde_json::json;

fn opener(url: String) -> impl Fn() -> Arc<dyn MetadataStore> + Sync {
    move || open(&url).expect("open the PostgreSQL store")
}

#[test]
fn behaves_as_a_metadata_store_and_survives_a_restart() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.create_database("quiver");
    contract::run(&opener(url.clone()), "postgres");
    let store = open(&url).expect("open");
    assert_eq!(store.location(), url);
}

#[test]
fn serialises_concurrent_writers_across_replicas() {
    let Some(server) = PgServer::start() else {
        return;
    };
    contract::concurrent_writers(&opener(server.create_database("quiver")));
}

#[test]
fn a_change_through_one_replica_wakes_the_other() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.create_database("quiver");
    let (a, b) = (open(&url).expect("open a"), open(&url).expect("open b"));
    assert!(
        !b.wait_for_change(Duration::from_millis(100)),
        "nothing changed yet"
    );

    let waiter = {
        let b = Arc::clone(&b);
        std::thread::spawn(move || {
            let woke = b.wait_for_change(Duration::from_secs(10));
            (woke, Instant::now())
        })
    };
    // Let the waiter block first.
    std::thread::sleep(Duration::from_millis(200));
    let entry = a
        .set_policy(
            "resnet",
            Some(&json!({"versions": [{"version": 3, "weight": 1}]})),
            "ops",
        )
        .expect("set")
        .expect("an entry");
    let committed = Instant::now();
    let (woke, woke_at) = waiter.join().expect("waiter");
    assert!(woke, "the other replica was told");
    // The notification goes out at the commit, which returns just after.
    let latency = woke_at.saturating_duration_since(committed);
    assert!(
        latency < Duration::from_secs(1),
        "woken {latency:?} after the commit"
    );
    let snapshot = b.snapshot().expect("snapshot");
    assert_eq!(snapshot.revision, entry.seq);
    assert_eq!(
        snapshot.policies["resnet"],
        json!({"versions": [{"version": 3, "weight": 1}]})
    );

    // A handle is not woken by its own changes; the other is, once per batch of them.
    a.set_label("resnet", "stable", Some(3), "ops")
        .expect("label");
    a.set_label("resnet", "canary", Some(4), "ops")
        .expect("label");
    assert!(
        !a.wait_for_change(Duration::from_millis(300)),
        "its own change"
    );
    assert!(b.wait_for_change(Duration::from_secs(5)), "b is told");
    assert!(
        !b.wait_for_change(Duration::from_millis(300)),
        "the two changes came as one wake-up"
    );
    assert_eq!(
        b.revision().expect("revision"),
        a.revision().expect("revision")
    );
}

#[test]
fn replicas_starting_together_migrate_once() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.create_database("quiver");
    let barrier = std::sync::Barrier::new(6);
    std::thread::scope(|scope| {
        for _ in 0..6 {
            scope.spawn(|| {
                barrier.wait();
                open(&url).expect("a concurrent first open")
            });
        }
    });
    let mut client = postgres::Client::connect(&url, postgres::NoTls).expect("connect");
    let versions: i64 = client
        .query_one("SELECT COUNT(*) FROM quiver_schema_migrations", &[])
        .expect("count")
        .get(0);
    assert_eq!(versions, 1);
}

#[test]
fn reconnects_after_the_server_restarts() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.create_database("quiver");
    let (a, b) = (open(&url).expect("open a"), open(&url).expect("open b"));
    a.set_policy("m", Some(&json!({"v": 1})), "ops")
        .expect("set");
    assert!(b.wait_for_change(Duration::from_secs(5)));

    server.restart();
    // Each handle's query connection broke: the next call reconnects, once, and succeeds.
    let snapshot = a
        .snapshot()
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));
    assert_eq!(snapshot.policies["m"], json!({"v": 1}));
    b.set_policy("m", Some(&json!({"v": 2})), "ops")
        .unwrap_or_else(|e| panic!("{e}\n{}", server.log()));

    // The listener broke too: a wait finds that out, the next listens again and reports a
    // change (some may have been missed meanwhile).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !a.wait_for_change(Duration::from_millis(200)) {
        assert!(Instant::now() < deadline, "a never listened again");
    }
    // And listens for real: b's next change wakes it.
    b.set_policy("m", Some(&json!({"v": 3})), "ops")
        .expect("set");
    assert!(a.wait_for_change(Duration::from_secs(5)), "a listens again");
    assert_eq!(
        a.snapshot().expect("snapshot").policies["m"],
        json!({"v": 3})
    );
}

#[test]
fn works_from_tokios_blocking_pool_and_drops_inside_a_runtime() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let url = server.create_database("quiver");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = tokio::task::spawn_blocking(move || open(&url))
            .await
            .expect("join")
            .expect("open in spawn_blocking");
        let writer = Arc::clone(&store);
        let entry = tokio::task::spawn_blocking(move || {
            writer.set_policy("m", Some(&json!({"v": 1})), "ops")
        })
        .await
        .expect("join")
        .expect("set_policy in spawn_blocking")
        .expect("an entry");
        let reader = Arc::clone(&store);
        let (snapshot, woke) = tokio::task::spawn_blocking(move || {
            (
                reader.snapshot(),
                reader.wait_for_change(Duration::from_millis(50)),
            )
        })
        .await
        .expect("join");
        assert_eq!(snapshot.expect("snapshot").revision, entry.seq);
        assert!(!woke);
        // The last handle dropped on an async worker: the connections close elsewhere.
        drop(store);
    });
}

#[test]
fn a_server_that_is_not_there_is_unreachable_quickly_and_without_the_password() {
    let port = pg_server::free_port();
    let url = format!("postgres://quiver:hunter2@127.0.0.1:{port}/quiver");
    let started = Instant::now();
    let err = open(&url).expect_err("nothing listens there");
    let elapsed = started.elapsed();
    eprintln!("after {elapsed:?}: {err}");
    assert!(err.is_unreachable(), "{err:?}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
}

#[test]
fn a_missing_database_is_an_open_error_not_unreachable() {
    let Some(server) = PgServer::start() else {
        return;
    };
    let err = open(&server.url("nonesuch")).expect_err("no such database");
    eprintln!("{err}");
    assert!(matches!(err, MetadataError::Open { .. }), "{err:?}");
    assert!(!err.is_unreachable());
    assert!(err.to_string().contains("nonesuch"), "{err}");
}
