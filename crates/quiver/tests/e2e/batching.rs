//! Dynamic batching through the real binary: concurrent clients each get the answer for their
//! own input while batches larger than one form; an overloaded model answers 429 at once and
//! recovers; an expired request answers 504.

use std::time::{Duration, Instant};

use quiver_test_support::{TempRepository, conformance, fixture_model};
use serde_json::{Value, json};

use crate::support::{
    add_slow_model, batch_sizes, get_json, infer_ok, predict_slow, serve, serve_with_env,
    wait_for_inflight,
};

fn infer(client: &reqwest::blocking::Client, url: &str, model: &str, rows: &[Vec<f32>]) -> Value {
    let width = rows[0].len();
    let data: Vec<f32> = rows.concat();
    let body = json!({"inputs": [{"name": "x", "shape": [rows.len(), width], "datatype": "FP32", "data": data}]});
    infer_ok(client, url, model, &body)
}

#[test]
fn concurrent_clients_get_their_own_rows_from_shared_batches() {
    let repo = TempRepository::new().unwrap();
    repo.add("dense", 1, &fixture_model("dense")).unwrap();
    repo.add("dense_alone", 1, &fixture_model("dense")).unwrap();
    repo.write(
        "dense/config.toml",
        b"[batching]\nmax_batch_size = 16\nmax_queue_delay_us = 20000\n",
    )
    .unwrap();
    let server = serve_with_env(
        repo.path(),
        &[],
        &[("QUIVER_LOG", "info,quiver_batcher=debug")],
    );
    let url = server.url();
    let config = get_json(&format!("{url}/v2/models/dense/config"));
    assert_eq!(config["max_batch_size"], 16);
    assert_eq!(config["input"][0]["dims"], json!([64]));
    assert_eq!(
        config["dynamic_batching"]["max_queue_delay_microseconds"],
        20000
    );

    // 64 clients, each with its own 1-3 distinct rows, all at once.
    let inputs: Vec<Vec<Vec<f32>>> = (0..64)
        .map(|client| {
            (0..1 + client % 3)
                .map(|row| {
                    (0..64)
                        .map(|i| {
                            (((i + row * 17 + client * 131) * 7919) % 1000) as f32 / 500.0 - 1.0
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let batched: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|rows| {
                let url = url.clone();
                scope.spawn(move || infer(&reqwest::blocking::Client::new(), &url, "dense", rows))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let client = reqwest::blocking::Client::new();
    for (rows, answer) in inputs.iter().zip(&batched) {
        let alone = infer(&client, &url, "dense_alone", rows);
        let output = &answer["outputs"][0];
        assert_eq!(output["shape"], json!([rows.len(), 10]));
        let to_tensor = |v: &Value| {
            let data = v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            quiver_engine_api::Tensor::new(
                vec![rows.len(), 10],
                quiver_engine_api::TensorData::F32(data),
            )
            .unwrap()
        };
        conformance::close(&to_tensor(output), &to_tensor(&alone["outputs"][0])).unwrap();
    }
    let log = server.log();
    let largest = batch_sizes(&log, "dense").into_iter().max().unwrap_or(0);
    assert!(largest > 1, "no batch larger than 1 in the log:\n{log}");
}

#[test]
fn an_overloaded_model_answers_429_at_once_and_recovers() {
    let repo = TempRepository::new().unwrap();
    add_slow_model(&repo, "max_queue_size = 2\n");
    let server = serve(repo.path(), &["--intra-op-threads", "1"]);
    let url = server.url();
    let results: Vec<(u16, Value, Duration)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..24)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let started = Instant::now();
                    let response = predict_slow(&url, 8, None);
                    let status = response.status().as_u16();
                    (status, response.json().unwrap(), started.elapsed())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.0 == 429).collect();
    assert_eq!(ok + refused.len(), 24, "{results:?}");
    assert!(
        ok >= 1 && !refused.is_empty(),
        "ok {ok}, refused {}",
        refused.len()
    );
    let slowest_ok = results
        .iter()
        .filter(|r| r.0 == 200)
        .map(|r| r.2)
        .max()
        .unwrap();
    for (_, body, took) in &refused {
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("model 'slow' is overloaded"),
            "{body}"
        );
        assert!(
            *took < slowest_ok,
            "a refusal took {took:?}, as long as the work"
        );
    }
    // Load gone: the model serves again.
    assert_eq!(predict_slow(&url, 1, None).status(), 200);
}

#[test]
fn a_request_that_waits_past_its_deadline_gets_504() {
    let repo = TempRepository::new().unwrap();
    add_slow_model(&repo, "");
    let server = serve(repo.path(), &["--intra-op-threads", "1"]);
    let url = server.url();
    std::thread::scope(|scope| {
        // Keep the only instance busy for a while: once the request has reached the model, one
        // sent now waits behind it.
        let busy = scope.spawn(|| predict_slow(&url, 32, None).status());
        wait_for_inflight(&url, "slow", 1.0);
        let response = predict_slow(&url, 1, Some("1"));
        assert_eq!(response.status(), 504);
        let body: Value = response.json().unwrap();
        assert!(
            body["error"].as_str().unwrap().contains("deadline"),
            "{body}"
        );
        assert_eq!(busy.join().unwrap(), 200);
    });
    assert_eq!(predict_slow(&url, 1, Some("soon")).status(), 400);
}

/// Text requests of different lengths share batches when the config pads them: each client
/// gets `last_hidden_state` of its own length, equal to what the model gives it alone.
#[test]
fn padded_requests_of_different_lengths_get_their_own_outputs() {
    let (Some(shared), Some(lib)) = (
        quiver_test_support::shared_models(),
        quiver_test_support::onnxruntime_library(),
    ) else {
        return;
    };
    let model = shared.join("all_minilm_l6_v2/1/model.onnx");
    let repo = TempRepository::new().unwrap();
    repo.add("minilm", 1, &model).unwrap();
    repo.add("minilm_alone", 1, &model).unwrap();
    repo.write(
        "minilm/config.toml",
        b"[batching]\nmax_batch_size = 8\nmax_queue_delay_us = 50000\n\
          pad_inputs = { input_ids = 0, attention_mask = 0, token_type_ids = 0 }\n",
    )
    .unwrap();
    let server = serve_with_env(
        repo.path(),
        &["--onnxruntime-lib", lib.to_str().unwrap()],
        &[("QUIVER_LOG", "info,quiver_batcher=debug")],
    );
    let url = server.url();
    let request = |model: &str, ids: &[i64]| -> Value {
        let n = ids.len();
        let tensor = |name: &str, data: Vec<i64>| json!({"name": name, "shape": [1, n], "datatype": "INT64", "data": data});
        let body = json!({"inputs": [
            tensor("input_ids", ids.to_vec()),
            tensor("attention_mask", vec![1; n]),
            tensor("token_type_ids", vec![0; n]),
        ]});
        infer_ok(&reqwest::blocking::Client::new(), &url, model, &body)
    };
    // Eight sentences of 3 to 10 tokens, all at once.
    let sentences: Vec<Vec<i64>> = (3..11)
        .map(|n| {
            let mut ids = vec![101];
            ids.extend((0..n - 2).map(|i| 1996 + 37 * i64::from(n) + i64::from(i)));
            ids.push(102);
            ids
        })
        .collect();
    let batched: Vec<Value> = std::thread::scope(|scope| {
        let handles: Vec<_> = sentences
            .iter()
            .map(|ids| scope.spawn(|| request("minilm", ids)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (ids, answer) in sentences.iter().zip(&batched) {
        let alone = request("minilm_alone", ids);
        let output = &answer["outputs"][0];
        assert_eq!(output["name"], "last_hidden_state");
        assert_eq!(output["shape"], json!([1, ids.len(), 384]), "{ids:?}");
        let values = |v: &Value| -> Vec<f64> {
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap())
                .collect()
        };
        let (got, want) = (values(output), values(&alone["outputs"][0]));
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-3, "{} tokens: differs by {worst}", ids.len());
    }
    let log = server.log();
    let mixed = batch_sizes(&log, "minilm").into_iter().any(|r| r > 1);
    assert!(mixed, "no batch of several lengths formed:\n{log}");
}
