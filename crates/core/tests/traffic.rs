//! Traffic policies over a real engine (tract) and fixture models, in process: the split
//! routes requests that name no version, pins bypass it, a sticky key keeps its variant, bad
//! policies are refused naming the model, API labels win over config labels, and the admin
//! layer keeps it all in a (SQLite) metadata store that a second manager reads back.

#![allow(clippy::unwrap_used)] // a test may panic

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use quiver_core::serve::Target;
use quiver_core::traffic::{PolicySource, StickyKeys};
use quiver_core::{Engines, ErrorKind, ManagerOptions, ModelManager, Sources, VersionSelector};
use quiver_engine_tract::TractEngine;
use quiver_repository::TrafficPolicy;
use quiver_test_support::{TempRepository, fixture_model};

fn repository() -> TempRepository {
    let repo = TempRepository::new().unwrap();
    for version in [1, 2, 3] {
        repo.add("m", version, &fixture_model("half_plus_two_tf"))
            .unwrap();
    }
    repo.write(
        "m/config.toml",
        b"version_policy = \"all\"\n[labels]\nstable = 1\n",
    )
    .unwrap();
    repo
}

fn manager(repo: &TempRepository) -> Arc<ModelManager> {
    let engines = Engines::new().with(Arc::new(TractEngine::new(1)));
    let models = Arc::new(ModelManager::new(
        engines,
        ManagerOptions::default(),
        Sources::Repository(repo.path().to_owned()),
    ));
    models.load_all().unwrap();
    models
}

fn policy(json: &str) -> TrafficPolicy {
    serde_json::from_str(json).unwrap()
}

struct Keys(BTreeMap<&'static str, String>);

impl StickyKeys for Keys {
    fn value(&self, key: &str) -> Option<String> {
        self.0.get(key).cloned()
    }
}

fn served(models: &Arc<ModelManager>, target: &Target<'_>) -> u64 {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (loaded, _) = runtime.block_on(models.acquire_routed(target)).unwrap();
    loaded.version()
}

#[test]
fn a_split_routes_latest_requests_and_pins_bypass_it() {
    let repo = repository();
    let models = manager(&repo);
    assert_eq!(served(&models, &Target::latest("m")), 3);
    models.set_api_traffic(
        "m",
        Some(policy(
            r#"{"split": [{"version": 1, "weight": 50}, {"label": "stable", "weight": 0}, {"version": 2, "weight": 50}]}"#,
        )),
    );
    let mut counts = BTreeMap::new();
    for _ in 0..400 {
        *counts
            .entry(served(&models, &Target::latest("m")))
            .or_insert(0) += 1;
    }
    assert_eq!(counts.keys().copied().collect::<Vec<_>>(), vec![1, 2]);
    // 50% of 400: 5 standard deviations (10 each) either way.
    assert!((150..=250).contains(&counts[&2]), "{counts:?}");
    let pinned = Target::new("m", VersionSelector::Specific(3));
    assert_eq!(served(&models, &pinned), 3);
    let label = Target::new("m", VersionSelector::Label("stable".into()));
    assert_eq!(served(&models, &label), 1);
    models.set_api_traffic("m", None);
    assert_eq!(served(&models, &Target::latest("m")), 3);
}

#[test]
fn a_sticky_key_keeps_its_variant() {
    let repo = repository();
    let models = manager(&repo);
    models.set_api_traffic(
        "m",
        Some(policy(
            r#"{"split": [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}], "sticky_key": "user"}"#,
        )),
    );
    let mut seen = BTreeMap::new();
    for user in 0..100 {
        let keys = Keys(BTreeMap::from([("user", format!("u{user}"))]));
        let first = served(&models, &Target::latest("m").with_keys(&keys));
        for _ in 0..3 {
            assert_eq!(
                served(&models, &Target::latest("m").with_keys(&keys)),
                first
            );
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[test]
fn bad_policies_are_refused_naming_the_model() {
    let repo = repository();
    let models = manager(&repo);
    for (json, says) in [
        (
            r#"{"split": [{"version": 1, "weight": 40}]}"#,
            "add up to 40",
        ),
        (
            r#"{"split": [{"version": 7, "weight": 100}]}"#,
            "no version 7",
        ),
        (
            r#"{"split": [{"label": "canary", "weight": 100}]}"#,
            "no label 'canary'",
        ),
        (r#"{"shadow": {"version": 9}}"#, "no version 9"),
    ] {
        let e = models.check_policy("m", &policy(json)).unwrap_err();
        assert_eq!(e.kind, ErrorKind::InvalidInput, "{json}");
        assert!(
            e.message.contains(says) && e.message.contains("'m'"),
            "{json}: {}",
            e.message
        );
    }
    let e = models
        .check_policy(
            "absent",
            &policy(r#"{"split": [{"version": 1, "weight": 100}]}"#),
        )
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotFound);
}

#[test]
fn the_admin_layer_keeps_policies_and_labels_in_the_store() {
    let repo = repository();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("meta.sqlite3").display());
    let models = manager(&repo);
    let store = quiver_metadata::open(&url).unwrap();
    let admin =
        quiver_core::admin::Admin::start(Arc::clone(&models), store, "r1", Duration::from_secs(60))
            .unwrap();
    let split = policy(r#"{"split": [{"version": 2, "weight": 100}]}"#);
    let view = admin.set_traffic("m", split.clone(), "tester").unwrap();
    assert_eq!(view.source, Some(PolicySource::Api));
    let labels = admin.set_label("m", "stable", Some(3), "tester").unwrap();
    assert_eq!(
        labels["stable"], 3,
        "the API's label wins over config.toml's"
    );
    assert_eq!(served(&models, &Target::latest("m")), 2);

    // A second manager on the same store (a restart) applies both.
    let again = manager(&repo);
    let store = quiver_metadata::open(&url).unwrap();
    let admin2 =
        quiver_core::admin::Admin::start(Arc::clone(&again), store, "r2", Duration::from_secs(60))
            .unwrap();
    assert_eq!(admin2.traffic("m").unwrap().policy, Some(split));
    assert_eq!(served(&again, &Target::latest("m")), 2);
    assert_eq!(again.labels("m").unwrap()["stable"], 3);
    let audit = admin2.audit(0, 100, None).unwrap();
    let actions: Vec<&str> = audit.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["traffic.put", "label.put"]);
    assert!(audit.iter().all(|e| e.actor == "tester"));

    // Removing the API label brings config.toml's back.
    admin2.set_label("m", "stable", None, "tester").unwrap();
    assert_eq!(again.labels("m").unwrap()["stable"], 1);
    assert!(admin2.status().healthy);
}
