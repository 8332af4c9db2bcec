//! The memory budget over a real engine (tract) and fixture models: the least recently used
//! version makes room, an unloaded version loads again on its next request, pinned versions
//! stay, and a version held by a request finishes it before it goes.

#![allow(clippy::unwrap_used)] // a test may panic

use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_core::{
    Budget, Engines, ManagerOptions, ModelManager, NamedTensor, Sources, Tensor, TensorData,
    VersionSelector, VersionState,
};
use quiver_engine_tract::TractEngine;
use quiver_test_support::{TempRepository, fixture_model};

const LATEST: VersionSelector = VersionSelector::Latest;

fn repository(names: &[&str]) -> TempRepository {
    let repo = TempRepository::new().unwrap();
    for name in names {
        repo.add(name, 1, &fixture_model("half_plus_two_tf"))
            .unwrap();
    }
    repo
}

fn manager(repo: &TempRepository, budget: Budget) -> Arc<ModelManager> {
    let engines = Engines::new().with(Arc::new(TractEngine::new(1)));
    let options = ManagerOptions {
        budget,
        ..ManagerOptions::default()
    };
    Arc::new(ModelManager::new(
        engines,
        options,
        Sources::Repository(repo.path().to_owned()),
    ))
}

fn at_most(versions: usize) -> Budget {
    Budget {
        max_loaded_versions: Some(versions),
        memory_bytes: None,
    }
}

fn state(models: &ModelManager, name: &str) -> VersionState {
    models.status(name, Some(1)).unwrap()[0].state
}

fn loaded(models: &ModelManager) -> Vec<String> {
    models.index(true).into_iter().map(|row| row.name).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn x(value: f32) -> Vec<NamedTensor> {
    let tensor = Tensor::new(vec![1], TensorData::F32(vec![value])).unwrap();
    vec![NamedTensor::new("x", tensor)]
}

fn first(outputs: &[NamedTensor]) -> f32 {
    let TensorData::F32(values) = outputs[0].tensor.data() else {
        panic!("not f32: {:?}", outputs[0].tensor)
    };
    values[0]
}

/// half_plus_two of 4 through `name`, loading it on demand if need be.
fn half_plus_two(rt: &tokio::runtime::Runtime, models: &Arc<ModelManager>, name: &str) -> f32 {
    rt.block_on(async {
        let version = models.acquire(name, &LATEST, None).await.unwrap();
        first(&version.infer(x(4.0), None).await.unwrap())
    })
}

#[test]
fn a_repository_larger_than_the_budget_serves_every_model_in_turn() {
    let repo = repository(&["a", "b", "c"]);
    let models = manager(&repo, at_most(2));
    models.load_all().unwrap();
    // Start-up loads what fits and leaves the rest idle rather than thrashing.
    assert_eq!(loaded(&models), ["a", "b"]);
    assert_eq!(state(&models, "c"), VersionState::Idle);
    let row = models
        .index(false)
        .into_iter()
        .find(|r| r.name == "c")
        .unwrap();
    assert_eq!(row.triton_state(), "UNLOADED_IDLE");
    assert!(
        models.get("c", &LATEST).is_err(),
        "an idle version is not ready"
    );

    let rt = runtime();
    for name in ["c", "a", "b", "c", "c", "a"] {
        assert_eq!(half_plus_two(&rt, &models, name), 4.0, "{name}");
        assert!(loaded(&models).len() <= 2, "{:?}", loaded(&models));
        assert!(loaded(&models).contains(&name.to_owned()));
    }
    // The least recently used went each time: after c, a: b went; after b: c; after c: a.
    models.wait_retired();
    assert_eq!(loaded(&models), ["a", "c"]);
    assert_eq!(state(&models, "b"), VersionState::Idle);
}

#[test]
fn pinned_versions_are_never_unloaded() {
    let repo = repository(&["a", "b", "c"]);
    repo.write("a/config.toml", b"[lifecycle]\npinned = true\n")
        .unwrap();
    let models = manager(&repo, at_most(2));
    models.load_all().unwrap();
    let rt = runtime();
    for name in ["b", "c", "b", "c", "b"] {
        assert_eq!(half_plus_two(&rt, &models, name), 4.0);
        assert_eq!(state(&models, "a"), VersionState::Available);
    }

    // With room for one only, the pinned version keeps it and the others cannot load.
    let models = manager(&repo, at_most(1));
    models.load_all().unwrap();
    assert_eq!(loaded(&models), ["a"]);
    let refused = rt
        .block_on(models.acquire("b", &LATEST, None))
        .map(|_| ())
        .unwrap_err();
    assert!(refused.message.contains("pinned"), "{}", refused.message);
    // It stays loadable on demand (the pinned version might go), and says why it is not now.
    assert_eq!(state(&models, "b"), VersionState::Idle);
    assert!(
        models.status("b", Some(1)).unwrap()[0]
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("pinned")
    );
}

#[test]
fn a_busy_version_finishes_its_requests_before_it_goes() {
    let repo = repository(&["a", "b"]);
    let models = manager(&repo, at_most(1));
    models.load_all().unwrap();
    assert_eq!(loaded(&models), ["a"]);
    let rt = runtime();
    // A request holds a; b's request makes room by unloading it, which waits for the hold.
    let held = rt.block_on(models.acquire("a", &LATEST, None)).unwrap();
    let waking = {
        let models = Arc::clone(&models);
        std::thread::spawn(move || {
            let rt = runtime();
            half_plus_two(&rt, &models, "b")
        })
    };
    quiver_test_support::wait_until(Duration::from_secs(10), "a to leave routing", || {
        state(&models, "a") == VersionState::Idle
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waking.is_finished(), "b loaded while a was still held");
    // The held version still answers.
    let out = rt.block_on(held.infer(x(2.0), None)).unwrap();
    assert_eq!(first(&out), 3.0);
    drop(held);
    assert_eq!(waking.join().unwrap(), 4.0);
    assert_eq!(loaded(&models), ["b"]);
}

#[test]
fn a_byte_budget_counts_each_versions_memory() {
    let repo = repository(&["a", "b", "c"]);
    // Declared sizes (the measured estimate of so small a model is mostly noise).
    for (name, mib) in [("a", 100), ("b", 100), ("c", 150)] {
        let config = format!("[lifecycle]\nmemory_bytes = {}\n", mib << 20);
        repo.write(&format!("{name}/config.toml"), config.as_bytes())
            .unwrap();
    }
    let models = manager(
        &repo,
        Budget {
            max_loaded_versions: None,
            memory_bytes: Some(260 << 20),
        },
    );
    models.load_all().unwrap();
    assert_eq!(loaded(&models), ["a", "b"]);
    let rt = runtime();
    // c (150) fits beside one of them: the least recently used goes.
    for (name, after) in [("a", ["a", "b"]), ("c", ["a", "c"]), ("b", ["b", "c"])] {
        assert_eq!(half_plus_two(&rt, &models, name), 4.0);
        assert_eq!(loaded(&models), after);
    }
    // Two of 100 fit, so c going makes room enough for a.
    assert_eq!(half_plus_two(&rt, &models, "a"), 4.0);
    assert_eq!(loaded(&models), ["a", "b"]);
}

#[test]
fn a_version_larger_than_the_whole_budget_is_refused_with_the_reason() {
    let repo = repository(&["a"]);
    repo.write("a/config.toml", b"[lifecycle]\nmemory_bytes = 1000\n")
        .unwrap();
    let models = manager(
        &repo,
        Budget {
            max_loaded_versions: None,
            memory_bytes: Some(999),
        },
    );
    assert!(models.load_all().is_ok());
    let error = runtime()
        .block_on(models.acquire("a", &LATEST, None))
        .map(|_| ())
        .unwrap_err();
    assert!(
        error.message.contains("--memory-budget-bytes 999"),
        "{}",
        error.message
    );
    assert_eq!(error.kind, quiver_core::ErrorKind::Unavailable);
}

#[test]
fn waking_an_idle_version_respects_the_deadline() {
    let repo = repository(&["a", "b"]);
    let models = manager(&repo, at_most(1));
    models.load_all().unwrap();
    let rt = runtime();
    let past = Instant::now();
    let error = rt
        .block_on(models.acquire("b", &LATEST, Some(past)))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        error.kind,
        quiver_core::ErrorKind::Timeout,
        "{}",
        error.message
    );
    // The load carries on without the request; a later one finds it.
    quiver_test_support::wait_until(Duration::from_secs(30), "b to load", || {
        state(&models, "b") == VersionState::Available
    });
}

#[test]
fn a_version_that_no_longer_loads_is_unavailable_not_the_clients_fault() {
    let repo = repository(&["a", "b"]);
    let models = manager(&repo, at_most(1));
    models.load_all().unwrap();
    assert_eq!(state(&models, "b"), VersionState::Idle);
    // b's file breaks while it is idle.
    repo.write("b/1/model.onnx", b"not a model any more")
        .unwrap();
    let error = runtime()
        .block_on(models.acquire("b", &LATEST, None))
        .map(|_| ())
        .unwrap_err();
    assert_eq!(
        error.kind,
        quiver_core::ErrorKind::Unavailable,
        "{}",
        error.message
    );
    assert!(error.message.contains("'b'"), "{}", error.message);
    // a serves again on its next request.
    assert_eq!(half_plus_two(&runtime(), &models, "a"), 4.0);
}
