//! Choosing the engine per model, with and without ONNX Runtime, through the real binary.

use quiver_test_support::{ServerProcess, TempRepository, fixture_model, onnxruntime_library};
use serde_json::{Value, json};

use crate::support::{get_json, post_json, serve, serve_with_env, version_status};

/// `auto` (no config), `tract` and `onnxruntime` by config, and a config with a typo.
fn repository() -> TempRepository {
    let repo = TempRepository::new().unwrap();
    for name in ["auto", "pinned_tract", "pinned_ort", "typo"] {
        repo.add(name, 1, &fixture_model("half_plus_two")).unwrap();
    }
    repo.write("pinned_tract/config.toml", b"engine = \"tract\"\n")
        .unwrap();
    repo.write(
        "pinned_ort/config.toml",
        b"engine = \"onnxruntime\"\n[engine_options]\nintra_op_threads = 1\ngraph_optimization_level = \"basic\"\n",
    )
    .unwrap();
    repo.write(
        "typo/config.toml",
        b"[engine_options]\nintra_op_thread = 2\n",
    )
    .unwrap();
    repo
}

fn get(server: &ServerProcess, path: &str) -> Value {
    get_json(&format!("{}{path}", server.url()))
}

fn predict(server: &ServerProcess, model: &str) -> Value {
    let url = format!("{}/v1/models/{model}:predict", server.url());
    post_json(&url, &json!({"instances": [[0.0, 2.0, 4.0]]})).1
}

/// Why the model's only version failed to load.
fn status_error(server: &ServerProcess, model: &str) -> String {
    version_status(&server.url(), model, 1).unwrap().1
}

#[test]
fn without_onnxruntime_auto_uses_tract_and_a_model_that_demands_it_fails_alone() {
    let repo = repository();
    let server = serve(
        repo.path(),
        &["--onnxruntime-lib", "/nonexistent/libonnxruntime.so"],
    );
    for model in ["auto", "pinned_tract"] {
        assert_eq!(
            get(&server, &format!("/v2/models/{model}"))["platform"],
            "tract_onnx"
        );
        assert_eq!(
            predict(&server, model),
            json!({"predictions": [[2.0, 3.0, 4.0]]})
        );
    }
    let why = status_error(&server, "pinned_ort");
    assert!(
        why.contains("engine 'onnxruntime' is not available")
            && why.contains("/nonexistent/libonnxruntime.so")
            && why.contains("scripts/fetch-onnxruntime.sh"),
        "{why}"
    );
    let why = status_error(&server, "typo");
    assert!(
        why.contains("intra_op_thread") && why.contains("config.toml"),
        "{why}"
    );
    assert!(
        server.log().contains("ONNX Runtime is not available"),
        "{}",
        server.log()
    );
}

#[test]
fn with_onnxruntime_auto_prefers_it_and_config_pins_either_engine() {
    let Some(library) = onnxruntime_library() else {
        return;
    };
    let repo = repository();
    let server = serve(
        repo.path(),
        &["--onnxruntime-lib", library.to_str().unwrap()],
    );
    for (model, platform, backend) in [
        ("auto", "onnxruntime_onnx", "onnxruntime"),
        ("pinned_ort", "onnxruntime_onnx", "onnxruntime"),
        ("pinned_tract", "tract_onnx", "tract"),
    ] {
        assert_eq!(
            get(&server, &format!("/v2/models/{model}"))["platform"],
            platform
        );
        assert_eq!(
            get(&server, &format!("/v2/models/{model}/config"))["backend"],
            backend
        );
        assert_eq!(
            predict(&server, model),
            json!({"predictions": [[2.0, 3.0, 4.0]]}),
            "{model}"
        );
    }
    let log = server.log();
    assert!(log.contains("ONNX Runtime loaded"), "{log}");
    assert!(
        log.contains("auto: onnxruntime is the first engine available"),
        "{log}"
    );
}

#[test]
fn the_server_wide_engine_flag_sets_the_default() {
    let repo = repository();
    let server = serve_with_env(repo.path(), &[], &[("QUIVER_ENGINE", "tract")]);
    assert_eq!(get(&server, "/v2/models/auto")["platform"], "tract_onnx");
}

#[test]
fn a_library_too_old_is_reported_with_both_versions() {
    // scripts/test.sh fetches ONNX Runtime 1.22 for this test (QUIVER_OLD_ONNXRUNTIME_LIB).
    let Some(old) = std::env::var_os("QUIVER_OLD_ONNXRUNTIME_LIB") else {
        eprintln!(
            "\n!!! SKIPPED: QUIVER_OLD_ONNXRUNTIME_LIB not set (scripts/test.sh sets it); this test did not run !!!\n"
        );
        assert!(
            std::env::var("QUIVER_REQUIRE_ONNXRUNTIME").as_deref() != Ok("1"),
            "QUIVER_REQUIRE_ONNXRUNTIME=1 but QUIVER_OLD_ONNXRUNTIME_LIB is not set"
        );
        return;
    };
    let repo = repository();
    let server = serve(repo.path(), &["--onnxruntime-lib", old.to_str().unwrap()]);
    let why = status_error(&server, "pinned_ort");
    assert!(
        why.contains("is version 1.22") && why.contains("needs 1.31 or newer"),
        "{why}"
    );
    assert_eq!(get(&server, "/v2/models/auto")["platform"], "tract_onnx");
}
