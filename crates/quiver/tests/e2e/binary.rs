//! Tests of the real `quiver` binary: command line, environment variables, start-up with a
//! broken model, graceful exit on SIGTERM.

use std::process::Command;

use quiver_test_support::{ServerProcess, TempRepository, fixture_model, fixtures_repository};

use crate::support::{bin, serve};

#[test]
fn inspect_prints_the_signature() {
    let output = Command::new(bin())
        .arg("inspect")
        .arg(fixture_model("multi_io"))
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("'a': dtype DT_FLOAT (FP32), shape [-1,2]"),
        "{text}"
    );
    assert!(
        text.contains("'b': dtype DT_INT32 (INT32), shape [-1]"),
        "{text}"
    );
    assert!(
        text.contains("'positive': dtype DT_BOOL (BOOL), shape [-1]"),
        "{text}"
    );

    let output = Command::new(bin())
        .args(["inspect", "/no/such/model.onnx"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("/no/such/model.onnx"), "{err}");
}

#[test]
fn help_documents_every_flag_and_its_environment_variable() {
    let output = Command::new(bin())
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--model-repository",
        "--host",
        "--rest-port",
        "--max-body-bytes",
        "--grpc-port",
        "--engine",
        "--onnxruntime-lib",
        "--intra-op-threads",
        "--inter-op-threads",
        "--graph-optimization-level",
        "--optimized-model-dir",
        "--max-queue-size",
        "--max-batch-size",
        "--max-queue-delay-us",
        "--default-timeout-ms",
        "--instances",
    ] {
        assert!(help.contains(flag), "{flag} missing from --help:\n{help}");
        let env = format!(
            "QUIVER_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(help.contains(&env), "{env} missing from --help:\n{help}");
    }
}

#[test]
fn a_missing_repository_is_a_clear_start_up_error() {
    let output = Command::new(bin())
        .args([
            "serve",
            "--model-repository",
            "/no/such/repo",
            "--rest-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.contains("/no/such/repo"), "{err}");
}

#[test]
fn an_engine_no_one_registers_is_a_start_up_error_listing_the_engines() {
    let repo = TempRepository::new().unwrap();
    let output = Command::new(bin())
        .args(["serve", "--model-repository"])
        .arg(repo.path())
        .args([
            "--rest-port",
            "0",
            "--grpc-port",
            "0",
            "--host",
            "127.0.0.1",
        ])
        .args(["--engine", "openvino"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(
        err.contains("no engine called 'openvino'") && err.contains("onnxruntime, tract"),
        "{err}"
    );
}

#[test]
fn serves_with_a_broken_model_and_exits_cleanly_on_sigterm() {
    let repo = TempRepository::new().unwrap();
    repo.add("good", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("broken/1/model.onnx", b"garbage").unwrap();
    let server = serve(repo.path(), &[]);
    let base = server.url();
    let http = reqwest::blocking::Client::new();
    let predict = http
        .post(format!("{base}/v1/models/good:predict"))
        .body(r#"{"instances": [[2, 4, 6]]}"#)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let status = reqwest::blocking::get(format!("{base}/v1/models/broken"))
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(predict, r#"{"predictions":[[3.0,4.0,5.0]]}"#);
    assert!(status.contains(r#""state":"END""#), "{status}");
    let log = server.log();
    assert!(
        log.contains("broken"),
        "the failed load is not logged:\n{log}"
    );
    let exit = server.terminate().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
}

#[test]
fn reads_flags_from_the_environment() {
    let server = {
        // QUIVER_MODEL_REPOSITORY instead of --model-repository.
        let repo = fixtures_repository();
        ServerProcess::start_with_env(
            bin(),
            &[],
            &[("QUIVER_MODEL_REPOSITORY", repo.to_str().unwrap())],
        )
        .unwrap()
    };
    let status = reqwest::blocking::get(format!("{}/v1/models/half_plus_two", server.url()))
        .unwrap()
        .status();
    assert_eq!(status, 200);
}
