//! Metrics, request ids and access logs through the real binary: after a known sequence of
//! requests (successes, a 400, a 404, a 504, an overload) the exposition holds exactly the
//! expected counts; every request's id is echoed and shared by its log lines.

use quiver_test_support::{TempRepository, fixture_model};
use serde_json::{Value, json};

use crate::support::{
    Metrics, access_line, add_slow_model, dense_body, predict_slow, serve, serve_with_env,
};

#[test]
fn the_exposition_counts_a_known_sequence_of_requests() {
    let repo = TempRepository::new().unwrap();
    repo.add("dense", 1, &fixture_model("dense")).unwrap();
    add_slow_model(&repo, "max_queue_size = 2\n");
    repo.write("broken/1/model.onnx", b"not a model").unwrap();
    let server = serve(
        repo.path(),
        &["--intra-op-threads", "1", "--replica-id", "r1"],
    );
    let url = server.url();
    let client = reqwest::blocking::Client::new();
    let v2 = |model: &str, body: &Value, headers: &[(&str, &str)]| {
        let mut request = client
            .post(format!("{url}/v2/models/{model}/infer"))
            .json(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().unwrap()
    };
    for _ in 0..3 {
        assert_eq!(v2("dense", &dense_body(64), &[]).status(), 200);
    }
    for _ in 0..2 {
        let response = client
            .post(format!("{url}/v1/models/dense:predict"))
            .json(&json!({"instances": [vec![0.5f32; 64]]}))
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(v2("dense", &dense_body(63), &[]).status(), 400);
    assert_eq!(v2("nope", &dense_body(64), &[]).status(), 404);
    assert_eq!(
        v2("dense", &dense_body(64), &[("x-quiver-timeout-ms", "0")]).status(),
        504
    );
    // Overload: 16 clients at once on a slow model with room for 2 waiting requests.
    let statuses: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || predict_slow(&url, 8, None).status().as_u16())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = statuses.iter().filter(|&&s| s == 200).count() as f64;
    let refused = statuses.iter().filter(|&&s| s == 429).count() as f64;
    assert_eq!(ok + refused, 16.0, "{statuses:?}");
    assert!(refused > 0.0, "{statuses:?}");

    let (m, exposition) = Metrics::scrape(&url);
    let requests = |model: &str, protocol: &str, outcome: &str| {
        m.get(
            "quiver_requests_total",
            &[
                ("model", model),
                ("version", if model.is_empty() { "" } else { "1" }),
                ("protocol", protocol),
                ("outcome", outcome),
            ],
        )
    };
    assert_eq!(requests("dense", "kserve_rest", "ok"), 3.0);
    assert_eq!(requests("dense", "tfserving_rest", "ok"), 2.0);
    assert_eq!(requests("dense", "kserve_rest", "invalid_input"), 1.0);
    assert_eq!(requests("dense", "kserve_rest", "timeout"), 1.0);
    assert_eq!(requests("", "kserve_rest", "not_found"), 1.0);
    assert_eq!(requests("slow", "tfserving_rest", "ok"), ok);
    assert_eq!(requests("slow", "tfserving_rest", "overloaded"), refused);
    assert_eq!(requests("dense", "kserve_grpc", "ok"), 0.0);
    let slow = [("model", "slow"), ("version", "1")];
    let dense = [("model", "dense"), ("version", "1")];
    assert_eq!(m.get("quiver_rejected_requests_total", &slow), refused);
    // Every request is in the latency histogram under its own labels; a counter still at 0 (a
    // protocol no request used) has no histogram yet.
    let mut checked = 0;
    for ((name, labels), value) in &m.0 {
        if name == "quiver_requests_total" {
            let count = m.0.get(&(
                "quiver_request_duration_seconds_count".to_owned(),
                labels.clone(),
            ));
            assert_eq!(count.copied().unwrap_or(0.0), *value, "{labels:?}");
            checked += usize::from(*value > 0.0);
        }
    }
    assert!(checked >= 7, "{checked}");
    for stage in ["preprocess", "queue", "compute", "postprocess", "encode"] {
        let labels = [("model", "dense"), ("version", "1"), ("stage", stage)];
        assert_eq!(
            m.get("quiver_stage_duration_seconds_count", &labels),
            5.0,
            "{stage}"
        );
    }
    // The 504 expired in the queue and the 400 never got there: 5 engine calls.
    assert_eq!(m.get("quiver_batch_size_count", &dense), 5.0);
    assert_eq!(m.get("quiver_batch_size_count", &slow), ok);
    let kserve_dense = [
        ("model", "dense"),
        ("version", "1"),
        ("protocol", "kserve_rest"),
    ];
    assert_eq!(m.get("quiver_request_size_bytes_count", &kserve_dense), 3.0);
    assert_eq!(
        m.get("quiver_response_size_bytes_count", &kserve_dense),
        3.0
    );
    assert!(m.get("quiver_response_size_bytes_sum", &kserve_dense) > 3.0 * 50.0);
    assert_eq!(m.get("quiver_queue_depth", &slow), 0.0);
    assert_eq!(m.get("quiver_inflight_requests", &slow), 0.0);
    let state = |model: &str, state: &str| {
        m.get(
            "quiver_model_version_state",
            &[("model", model), ("version", "1"), ("state", state)],
        )
    };
    assert_eq!(state("dense", "available"), 1.0);
    assert_eq!(state("dense", "loading"), 0.0);
    assert_eq!(state("broken", "failed"), 1.0);
    assert_eq!(state("broken", "available"), 0.0);
    assert_eq!(
        m.get("quiver_model_load_failures_total", &[("model", "broken")]),
        1.0
    );
    assert_eq!(
        m.get("quiver_model_load_failures_total", &[("model", "dense")]),
        0.0
    );
    assert_eq!(
        m.get("quiver_model_load_duration_seconds_count", &dense),
        1.0
    );
    assert_eq!(
        m.get(
            "quiver_build_info",
            &[("replica", "r1"), ("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    assert!(m.get("process_resident_memory_bytes", &[]) > 1e6);
    assert!(m.get("process_open_fds", &[]) > 0.0);
    // Never raw URLs or unknown names as label values.
    assert!(!exposition.contains("nope"), "{exposition}");
}

#[test]
fn request_ids_are_echoed_and_carried_by_the_access_log() {
    let repo = TempRepository::new().unwrap();
    repo.add("dense", 1, &fixture_model("dense")).unwrap();
    let server = serve_with_env(
        repo.path(),
        &[],
        // Access lines are opt-in; the environment variable turns them on as the flag does.
        &[
            ("QUIVER_LOG", "info,quiver_batcher=debug"),
            ("QUIVER_ACCESS_LOG", "true"),
        ],
    );
    let url = server.url();
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{url}/v2/models/dense/infer"))
        .header("x-request-id", "trace-me-42")
        .json(&dense_body(64))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
    // Without one (or with a useless one), the server makes one up.
    let response = client
        .post(format!("{url}/v2/models/dense/infer"))
        .header("x-request-id", "")
        .json(&dense_body(64))
        .send()
        .unwrap();
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "{generated}");
    let line = access_line(&server, "id=trace-me-42");
    assert!(line.contains("quiver::access"), "{line}");
    for part in [
        "quiver::access",
        "model=\"dense\"",
        "version=\"1\"",
        "method=POST",
        "route=/v2/models/{name}/infer",
        "status=200",
        "client=127.0.0.1:",
        // Stage times go on the span only when something reads them: here, the access log.
        "preprocess_us=",
        "compute_us=",
        "encode_us=",
    ] {
        assert!(line.contains(part), "{part} not in {line}");
    }
    access_line(&server, &format!("id={generated}"));
    // The engine thread's lines carry the request's span too.
    let log = server.log();
    let batch_line = log
        .lines()
        .find(|l| l.contains("running a batch") && l.contains("id=trace-me-42"));
    assert!(
        batch_line.is_some(),
        "no engine-thread line with the id:\n{log}"
    );
}

#[test]
fn json_logs_metrics_port_and_metrics_off() {
    let repo = TempRepository::new().unwrap();
    repo.add("dense", 1, &fixture_model("dense")).unwrap();
    let server = serve(
        repo.path(),
        &[
            "--log-format",
            "json",
            "--metrics-port",
            "0",
            "--access-log",
            "true",
        ],
    );
    let url = server.url();
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{url}/v2/models/dense/infer"))
        .header("x-request-id", "json-line-7")
        .json(&dense_body(64))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let line = access_line(&server, "json-line-7");
    let entry: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["target"], "quiver::access", "{entry}");
    assert_eq!(entry["fields"]["status"], 200, "{entry}");
    assert_eq!(
        entry["fields"]["route"], "/v2/models/{name}/infer",
        "{entry}"
    );
    assert_eq!(entry["span"]["id"], "json-line-7", "{entry}");
    assert_eq!(entry["span"]["model"], "dense", "{entry}");
    // The metrics port serves the same exposition.
    let log = server.log();
    let marker = "metrics listening on http://";
    let metrics_url = log
        .lines()
        .find_map(|l| {
            let at = l.find(marker)?;
            Some(l[at + marker.len()..].split('"').next()?.to_owned())
        })
        .unwrap_or_else(|| panic!("no metrics listener in the log:\n{log}"));
    let text = client
        .get(format!("http://{metrics_url}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(text.contains("quiver_requests_total{model=\"dense\",version=\"1\",protocol=\"kserve_rest\",outcome=\"ok\"} 1"), "{text}");
    drop(server);

    let server = serve(repo.path(), &["--metrics", "false"]);
    let response = client
        .get(format!("{}/metrics", server.url()))
        .send()
        .unwrap();
    assert_eq!(response.status(), 404);
    let body: Value = response.json().unwrap();
    assert!(body["error"].as_str().unwrap().contains("--metrics false"));
}

/// An idle version's own lines of `/metrics` (its counters and gauges at 0, its state, its load
/// time) stay small, so that a server of many models stays cheap to scrape; its histograms come
/// with the first request, and only for the protocol that request used.
#[test]
fn an_idle_version_costs_little_exposition() {
    let repo = TempRepository::new().unwrap();
    for name in ["idle", "busy"] {
        repo.add(name, 1, &fixture_model("half_plus_two")).unwrap();
    }
    let server = serve(repo.path(), &[]);
    let url = server.url();
    let client = reqwest::blocking::Client::new();
    let response = client
        .post(format!("{url}/v1/models/busy:predict"))
        .json(&json!({"instances": [[1.0, 2.0, 3.0]]}))
        .send()
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = client
        .get(format!("{url}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let lines_of = |model: &str| -> Vec<&str> {
        let label = format!("model=\"{model}\"");
        text.lines().filter(|l| l.contains(&label)).collect()
    };
    let idle = lines_of("idle");
    let bytes: usize = idle.iter().map(|l| l.len() + 1).sum();
    assert!(
        bytes <= 5 * 1024,
        "an idle version has {bytes} bytes of /metrics:\n{}",
        idle.join("\n")
    );
    // Its counters exist at 0 for every protocol, so the first request's rate is seen.
    assert!(
        idle.iter().any(|l| l.starts_with("quiver_requests_total")
            && l.contains("protocol=\"kserve_grpc\"")
            && l.ends_with(" 0")),
        "{}",
        idle.join("\n")
    );
    // Of histograms, only its load time (observed once, when it loaded).
    assert!(
        idle.iter()
            .filter(|l| l.contains("_bucket"))
            .all(|l| l.starts_with("quiver_model_load_duration_seconds_bucket")),
        "{}",
        idle.join("\n")
    );
    // The busy one has the histograms of the protocol it served, and no other's.
    let busy = lines_of("busy");
    let has = |prefix: &str, protocol: &str| {
        busy.iter()
            .any(|l| l.starts_with(prefix) && l.contains(&format!("protocol=\"{protocol}\"")))
    };
    assert!(has(
        "quiver_request_duration_seconds_bucket",
        "tfserving_rest"
    ));
    assert!(!has(
        "quiver_request_duration_seconds_bucket",
        "kserve_rest"
    ));
    assert!(
        busy.iter()
            .any(|l| l.starts_with("quiver_stage_duration_seconds_bucket"))
    );
}
