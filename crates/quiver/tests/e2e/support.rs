//! What the end-to-end tests share: the binary, a server on a repository, JSON over HTTP, the
//! metrics exposition, the server's log, and the fixture setups more than one test uses.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use quiver_test_support::{ServerProcess, TempRepository, conformance, wait_for};
use serde_json::{Value, json};

/// The `quiver` binary cargo built for these tests.
pub fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_quiver"))
}

/// The binary serving `repository`, with `args` after `--model-repository`.
pub fn serve(repository: &Path, args: &[&str]) -> ServerProcess {
    serve_with_env(repository, args, &[])
}

/// [`serve`] with extra environment variables.
pub fn serve_with_env(repository: &Path, args: &[&str], env: &[(&str, &str)]) -> ServerProcess {
    let repository = repository.to_str().unwrap();
    let args: Vec<&str> = ["--model-repository", repository]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    ServerProcess::start_with_env(bin(), &args, env).unwrap()
}

/// `GET url`, its body as JSON.
pub fn get_json(url: &str) -> Value {
    reqwest::blocking::get(url).unwrap().json().unwrap()
}

/// `POST url` with a JSON body: the status and the body as JSON.
pub fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::blocking::Client::new()
        .post(url)
        .json(body)
        .send()
        .unwrap();
    (response.status().as_u16(), response.json().unwrap())
}

/// `POST /v2/models/{model}/infer` with `body` on `client`: asserts 200, returns the answer.
pub fn infer_ok(client: &reqwest::blocking::Client, url: &str, model: &str, body: &Value) -> Value {
    let response = client
        .post(format!("{url}/v2/models/{model}/infer"))
        .json(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), 200, "{model}");
    response.json().unwrap()
}

/// A V2 infer body for the `dense` fixture (input `x`): one row of `width` values.
pub fn dense_body(width: usize) -> Value {
    json!({"inputs": [{"name": "x", "shape": [1, width], "datatype": "FP32", "data": vec![0.25f32; width]}]})
}

/// Adds the conformance suite's `slow` model (a few ms a row on tract) as `slow`, version 1,
/// on tract, with `batching` (TOML lines) as its `[batching]` table.
pub fn add_slow_model(repo: &TempRepository, batching: &str) {
    repo.add("slow", 1, &conformance::model("slow")).unwrap();
    let config = format!("engine = \"tract\"\n[batching]\n{batching}");
    repo.write("slow/config.toml", config.as_bytes()).unwrap();
}

/// `POST /v1/models/slow:predict` ([`add_slow_model`]) with `rows` rows of 256 values, and
/// `X-Quiver-Timeout-Ms: timeout_ms` when given.
pub fn predict_slow(
    url: &str,
    rows: usize,
    timeout_ms: Option<&str>,
) -> reqwest::blocking::Response {
    let mut request = reqwest::blocking::Client::new()
        .post(format!("{url}/v1/models/slow:predict"))
        .json(&json!({"instances": vec![vec![0.1f32; 256]; rows]}));
    if let Some(timeout_ms) = timeout_ms {
        request = request.header("X-Quiver-Timeout-Ms", timeout_ms);
    }
    request.send().unwrap()
}

/// The state and error message of `model`'s `version`, from TF Serving's status API.
pub fn version_status(url: &str, model: &str, version: u64) -> Option<(String, String)> {
    let status = get_json(&format!("{url}/v1/models/{model}"));
    status["model_version_status"]
        .as_array()?
        .iter()
        .find(|v| v["version"] == json!(version.to_string()))
        .map(|v| {
            (
                v["state"].as_str().unwrap_or_default().to_owned(),
                v["status"]["error_message"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
}

/// The number of requests in each batch the worker threads ran for `model`, from their debug
/// lines (`QUIVER_LOG=info,quiver_batcher=debug`).
pub fn batch_sizes(log: &str, model: &str) -> Vec<usize> {
    let model = format!("model=\"{model}\"");
    log.lines()
        .filter(|l| l.contains("running a batch") && l.contains(&model))
        .filter_map(|l| {
            // The last `requests=` is the event's field; a batch span prefix carries one too.
            l.rsplit("requests=")
                .next()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The first access-log line containing `needle`, once the log writer thread has written it.
pub fn access_line(server: &ServerProcess, needle: &str) -> String {
    quiver_test_support::poll_until(Duration::from_secs(5), || {
        server
            .log()
            .lines()
            .find(|l| l.contains(needle) && l.contains("quiver::access"))
            .map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no log line with {needle}:\n{}", server.log()))
}

/// One series of the exposition: name and sorted labels.
pub type Series = (String, BTreeMap<String, String>);

/// A scrape of `/metrics`: every series and its value.
pub struct Metrics(pub BTreeMap<Series, f64>);

impl Metrics {
    /// Scrapes `url` (the server's base URL).
    pub fn scrape(url: &str) -> (Self, String) {
        let text = reqwest::blocking::get(format!("{url}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        (Self::parse(&text), text)
    }

    /// Parses Prometheus' text format (as Quiver writes it: no escapes in label values).
    pub fn parse(exposition: &str) -> Self {
        let mut series = BTreeMap::new();
        for line in exposition.lines() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|l| !l.is_empty())
                .map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap();
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            series.insert((name.to_owned(), labels), value.parse().unwrap());
        }
        Self(series)
    }

    /// The value of `name{labels}`, if the exposition has it.
    pub fn find(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.0.get(&(name.to_owned(), labels)).copied()
    }

    /// The value of `name{labels}`; a panic when the exposition lacks it.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels)
            .unwrap_or_else(|| panic!("no series {name}{labels:?}"))
    }
}

/// Waits until `quiver_inflight_requests` of `model` version 1 is at least `n`: that many
/// requests have reached the version (queued or running).
pub fn wait_for_inflight(url: &str, model: &str, n: f64) {
    let labels = [("model", model), ("version", "1")];
    wait_for(
        Duration::from_secs(10),
        &format!("{n} requests in flight on {model}"),
        || {
            let (metrics, _) = Metrics::scrape(url);
            (metrics.find("quiver_inflight_requests", &labels)? >= n).then_some(())
        },
    );
}
