//! A model in an object store, through the manager: shown LOADING with what is happening while
//! its version downloads, then served from the cache; a restart finds it there.

#![allow(clippy::unwrap_used)] // a test may panic

use std::sync::Arc;
use std::time::Duration;

use quiver_core::{Engines, ManagerOptions, ModelManager, Sources, VersionState};
use quiver_engine_tract::TractEngine;
use quiver_store::object_store::memory::InMemory;
use quiver_store::object_store::path::Path;
use quiver_store::object_store::throttle::{ThrottleConfig, ThrottledStore};
use quiver_store::object_store::{ObjectStore, ObjectStoreExt};
use quiver_store::{Store, StoreOptions};
use quiver_test_support::fixture_model;

fn manager(store: Arc<Store>) -> ModelManager {
    let engines = Engines::new().with(Arc::new(TractEngine::new(1)));
    ModelManager::new(engines, ManagerOptions::default(), Sources::Remote(store))
}

#[test]
fn a_downloading_version_says_so_then_serves() {
    let memory = InMemory::new();
    let model = std::fs::read(fixture_model("half_plus_two")).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime
        .block_on(memory.put(&Path::from("repo/half/1/model.onnx"), model.into()))
        .unwrap();
    // Every read takes a while: long enough to see the download in progress.
    let slow = ThrottledStore::new(
        memory,
        ThrottleConfig {
            wait_get_per_call: Duration::from_millis(700),
            ..ThrottleConfig::default()
        },
    );
    let cache = tempfile::tempdir().unwrap();
    let open = |inner: Arc<dyn ObjectStore>| {
        Store::from_parts(
            "memory://test",
            inner,
            Path::from("repo"),
            false,
            StoreOptions::new(cache.path().to_owned()),
        )
        .unwrap()
    };
    let slow: Arc<dyn ObjectStore> = Arc::new(slow);
    let models = manager(open(Arc::clone(&slow)));
    std::thread::scope(|scope| {
        let loading = scope.spawn(|| models.load_all());
        quiver_test_support::wait_until(Duration::from_secs(10), "LOADING, downloading", || {
            models.index(false).iter().any(|row| {
                row.name == "half"
                    && row.state == Some(VersionState::Loading)
                    && row.reason.as_deref().is_some_and(|r| {
                        r.contains("downloading 1 file(s)") && r.contains("memory://test")
                    })
            })
        });
        loading.join().unwrap().unwrap();
    });
    let status = models.status("half", Some(1)).unwrap();
    assert_eq!(status[0].state, VersionState::Available, "{status:?}");
    let row = models
        .index(false)
        .into_iter()
        .find(|r| r.name == "half")
        .unwrap();
    assert_eq!(row.reason, None, "the note goes once it is in");

    // A restart on the same cache finds the version whole: loaded with no read of the store's
    // objects (the slow store would take 700 ms; a listing alone is not throttled).
    drop(models);
    let again = manager(open(slow));
    let started = std::time::Instant::now();
    again.load_all().unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(650),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        again.status("half", Some(1)).unwrap()[0].state,
        VersionState::Available
    );
}
