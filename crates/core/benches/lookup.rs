//! The memory budget's bookkeeping on the request path: resolving a request's version with and
//! without a budget set (with one, each lookup also moves the least-recently-used clock). One
//! tiny model on tract; the engine call is not part of it.
//!
//! `cargo bench -p quiver-core --bench lookup`

#![allow(missing_docs, clippy::unwrap_used)] // a benchmark harness

use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use quiver_core::{Budget, Engines, ManagerOptions, ModelManager, Sources, VersionSelector};
use quiver_engine_tract::TractEngine;
use quiver_test_support::{TempRepository, fixture_model};

fn manager(repo: &TempRepository, budget: Budget) -> Arc<ModelManager> {
    let engines = Engines::new().with(Arc::new(TractEngine::new(1)));
    let options = ManagerOptions {
        budget,
        ..ManagerOptions::default()
    };
    let models = Arc::new(ModelManager::new(
        engines,
        options,
        Sources::Repository(repo.path().to_owned()),
    ));
    models.load_all().unwrap();
    models
}

fn lookup(c: &mut Criterion) {
    let repo = TempRepository::new().unwrap();
    for name in ["a", "b", "c"] {
        repo.add(name, 1, &fixture_model("half_plus_two")).unwrap();
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("acquire");
    for (label, budget) in [
        ("no budget", Budget::default()),
        (
            "budget",
            Budget {
                max_loaded_versions: Some(100),
                memory_bytes: None,
            },
        ),
    ] {
        let models = manager(&repo, budget);
        group.bench_function(label, |b| {
            b.iter(|| {
                runtime
                    .block_on(models.acquire("b", &VersionSelector::Latest, None))
                    .unwrap()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
