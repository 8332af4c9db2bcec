//! The model manager over a real engine (tract) and the fixture repository: retirement waits
//! for the requests holding a version, and load failures say what kind they are.

#![allow(clippy::unwrap_used)] // a test may panic

use std::sync::Arc;
use std::time::Duration;

use quiver_core::{Engines, ManagerOptions, ModelManager, Sources, VersionSelector, VersionState};
use quiver_engine_tract::TractEngine;
use quiver_test_support::{TempRepository, fixture_model};

fn manager(repository: &std::path::Path) -> ModelManager {
    let engines = Engines::new().with(Arc::new(TractEngine::new(1)));
    ModelManager::new(
        engines,
        ManagerOptions::default(),
        Sources::Repository(repository.to_owned()),
    )
}

fn state(models: &ModelManager, name: &str, version: u64) -> VersionState {
    models.status(name, Some(version)).unwrap()[0].state
}

#[test]
fn an_unloaded_version_ends_when_its_last_request_lets_go() {
    let repo = TempRepository::new().unwrap();
    repo.add("half_plus_two", 1, &fixture_model("half_plus_two"))
        .unwrap();
    let models = manager(repo.path());
    models.load_all().unwrap();
    let held = models
        .get("half_plus_two", &VersionSelector::Latest)
        .unwrap();
    std::thread::scope(|scope| {
        let unload = scope.spawn(|| models.unload("half_plus_two"));
        // Out of routing at once, but still held by a request: the unload waits for it.
        quiver_test_support::wait_until(Duration::from_secs(10), "the version to unload", || {
            state(&models, "half_plus_two", 1) == VersionState::Unloading
        });
        assert!(
            models
                .get("half_plus_two", &VersionSelector::Latest)
                .is_err()
        );
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !unload.is_finished(),
            "the unload answered while a request held the version"
        );
        drop(held);
        unload.join().unwrap().unwrap();
    });
    // It answered once the version was gone.
    assert_eq!(state(&models, "half_plus_two", 1), VersionState::End);
}

#[test]
fn a_reload_swaps_the_version_and_the_old_one_is_dropped() {
    let repo = TempRepository::new().unwrap();
    repo.add("half_plus_two", 1, &fixture_model("half_plus_two"))
        .unwrap();
    let models = manager(repo.path());
    models.load_all().unwrap();
    let old = models
        .get("half_plus_two", &VersionSelector::Latest)
        .unwrap();
    models.load("half_plus_two", None).unwrap();
    let new = models
        .get("half_plus_two", &VersionSelector::Latest)
        .unwrap();
    assert!(
        !Arc::ptr_eq(&old, &new),
        "a forced load builds a new version"
    );
    assert_eq!(state(&models, "half_plus_two", 1), VersionState::Available);
    drop(old);
    models.wait_retired();
    assert_eq!(state(&models, "half_plus_two", 1), VersionState::Available);
}

#[test]
fn load_failures_say_what_kind_they_are() {
    let repo = TempRepository::new().unwrap();
    repo.write("corrupt/1/model.onnx", b"this is not a protobuf")
        .unwrap();
    repo.add("needs_ort", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("needs_ort/config.toml", b"engine = \"onnxruntime\"\n")
        .unwrap();
    repo.add("bad_key", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("bad_key/config.toml", b"no_such_key = 1\n")
        .unwrap();
    repo.add("typo", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("typo/config.toml", b"engine = \"trakt\"\n")
        .unwrap();
    let models = manager(repo.path());
    models.load_all().unwrap();
    let kind = |name: &str| {
        let status = models.status(name, Some(1)).unwrap().remove(0);
        assert_eq!(status.state, VersionState::Failed, "{name}: {status:?}");
        status.error_kind
    };
    assert_eq!(kind("corrupt"), Some("corrupt_model"));
    assert_eq!(kind("needs_ort"), Some("engine_unavailable"));
    assert_eq!(kind("bad_key"), Some("config"));
    assert_eq!(kind("typo"), Some("engine_unavailable"));
    let typo = models.status("typo", Some(1)).unwrap().remove(0);
    assert!(
        typo.error
            .as_deref()
            .unwrap_or_default()
            .contains("no engine called 'trakt'; its engines are: tract"),
        "{typo:?}"
    );
    let index = models.index(false);
    let row = index.iter().find(|r| r.name == "corrupt").unwrap();
    assert_eq!(row.error_kind, Some("corrupt_model"));
    assert!(row.reason_text().contains("tract engine"), "{row:?}");
}
