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
fn validate_passes_the_example_repository() {
    let output = Command::new(bin())
        .args(["validate"])
        .arg(quiver_test_support::examples_repository())
        .env_remove("QUIVER_ONNXRUNTIME_LIB")
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{report}");
    assert!(report.contains("ok\tmobilenet_v2\t1\t"), "{report}");
    assert!(
        report.ends_with("1 ok, 0 failed, 0 skipped: passed\n"),
        "{report}"
    );
}

#[test]
fn validate_names_every_problem_of_a_broken_repository() {
    let repo = TempRepository::new().unwrap();
    repo.add("good", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("corrupt/1/model.onnx", b"not a model").unwrap();
    repo.add("bad_key", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("bad_key/config.toml", b"max_batch = 4\n")
        .unwrap();
    repo.add("typo", 1, &fixture_model("half_plus_two"))
        .unwrap();
    repo.write("typo/config.toml", b"engine = \"trakt\"\n")
        .unwrap();
    repo.write("empty/notes.txt", b"no versions here").unwrap();
    repo.write("README.txt", b"not a model").unwrap();
    let output = Command::new(bin())
        .args(["validate"])
        .arg(repo.path())
        .env_remove("QUIVER_ONNXRUNTIME_LIB")
        .output()
        .unwrap();
    let report = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(1), "{report}");
    let line = |start: &str| {
        report
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_else(|| panic!("no line starting {start:?}:\n{report}"))
            .to_owned()
    };
    assert!(line("ok\tgood\t1\t").ends_with("tract"), "{report}");
    assert!(
        line("FAILED\tcorrupt\t1\t").contains("corrupt_model"),
        "{report}"
    );
    assert!(line("FAILED\tbad_key\t").contains("max_batch"), "{report}");
    assert!(
        line("FAILED\ttypo\t1\t")
            .contains("engine_unavailable: this server has no engine called 'trakt'"),
        "{report}"
    );
    assert!(line("FAILED\tempty\t").contains("no version"), "{report}");
    assert!(line("skipped\t").contains("README.txt"), "{report}");
    assert!(
        report.ends_with("1 ok, 4 failed, 1 skipped: FAILED\n"),
        "{report}"
    );
    // A repository that is not there is an error of the command.
    let output = Command::new(bin())
        .args(["validate", "/no/such/repository"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8(output.stderr).unwrap();
    assert!(err.contains("/no/such/repository"), "{err}");
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
