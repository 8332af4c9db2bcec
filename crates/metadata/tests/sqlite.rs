//! The SQLite backend against the shared contract, plus what is SQLite's own.

#[path = "common/contract.rs"]
mod contract;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use quiver_metadata::{MetadataStore, default_url, open};
use serde_json::json;

fn opener(dir: &Path) -> impl Fn() -> Arc<dyn MetadataStore> + Sync + use<> {
    let url = default_url(dir);
    move || open(&url).expect("open the SQLite store")
}

#[test]
fn behaves_as_a_metadata_store_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::run(&opener(dir.path()), "sqlite");
    assert!(dir.path().join("metadata.sqlite3").is_file());
}

#[test]
fn serialises_concurrent_writers() {
    let dir = tempfile::tempdir().expect("tempdir");
    contract::concurrent_writers(&opener(dir.path()));
}

#[test]
fn default_url_and_its_forms() {
    assert_eq!(
        default_url(Path::new("/var/lib/quiver")),
        "sqlite:/var/lib/quiver/metadata.sqlite3"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dirs/meta.db");
    let store = open(&format!("sqlite://{}", path.display())).expect("sqlite://");
    assert_eq!(store.kind(), "sqlite");
    assert_eq!(store.location(), path.display().to_string());
    assert!(path.is_file(), "parents created");

    let err = open("mysql://root:pw@db/quiver").expect_err("not a store");
    assert!(err.to_string().contains("expected sqlite:PATH"), "{err}");
    assert!(!err.to_string().contains("pw"), "{err}");
}

#[test]
fn a_second_process_change_shows_in_the_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open = opener(dir.path());
    let (a, b) = (open(), open());
    let before = b.revision().expect("revision");
    let entry = a
        .set_policy("m", Some(&json!({"versions": []})), "ops")
        .expect("set")
        .expect("an entry");
    let started = Instant::now();
    assert!(
        !b.wait_for_change(Duration::from_millis(200)),
        "SQLite announces nothing"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "it waits out the timeout"
    );
    let after = b.revision().expect("revision");
    assert_ne!(after, before);
    assert_eq!(after, entry.seq);
    assert_eq!(
        b.snapshot().expect("snapshot").policies["m"],
        json!({"versions": []})
    );
}

#[test]
fn unwritable_paths_fail_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").expect("write");
    // Root ignores permissions, so a file stands where a directory must go.
    let url = default_url(&file);
    let err = open(&url).expect_err("unwritable");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "metadata store {}",
            file.join("metadata.sqlite3").display()
        )),
        "{text}"
    );
    assert!(text.contains("cannot create the directory"), "{text}");
    assert!(!err.is_unreachable());
}
