//! `quiver bench TARGET`: drives one model with KServe V2 JSON requests at each concurrency asked
//! for, shows progress once a second, and prints a table of throughput and p50/p90/p99 latency.
//! TARGET is a running server's REST address, or a repository that it serves for the run by
//! starting this same binary as `quiver serve` on a free loopback port.
//!
//! wrk and perf_analyzer measure more finely (and `bench/` uses them); this is the command a
//! user has at hand to size a model on their own machine without installing either.

use std::fmt;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};

use crate::config::BenchConfig;

/// Requests sent before each measured run, for connections and caches to settle.
const WARM_UP: Duration = Duration::from_secs(1);
/// Most elements a synthesised input may have (a model declaring more needs `--request`).
const MAX_ELEMENTS: u64 = 1 << 24;
/// How long a repository's server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(300);

/// One run's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Concurrent clients.
    pub concurrency: usize,
    /// Successful requests measured.
    pub requests: u64,
    /// Successful requests per second.
    pub throughput: f64,
    /// Latency percentiles of the successful requests, in milliseconds.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Requests that failed (any answer but 200, or no answer).
    pub errors: u64,
}

/// The table `quiver bench` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The model measured.
    pub model: String,
    /// One row per concurrency.
    pub rows: Vec<Row>,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<24} {:>11} {:>9} {:>12} {:>9} {:>9} {:>9} {:>7}",
            "model",
            "concurrency",
            "requests",
            "throughput/s",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "errors"
        )?;
        for row in &self.rows {
            writeln!(
                f,
                "{:<24} {:>11} {:>9} {:>12.1} {:>9.3} {:>9.3} {:>9.3} {:>7}",
                self.model,
                row.concurrency,
                row.requests,
                row.throughput,
                row.p50_ms,
                row.p90_ms,
                row.p99_ms,
                row.errors
            )?;
        }
        Ok(())
    }
}

/// Runs the benchmark `config` describes.
pub fn run(config: &BenchConfig) -> anyhow::Result<Table> {
    if config.concurrency.contains(&0) {
        bail!("--concurrency: every value must be at least 1");
    }
    let served = if config.target.starts_with("http://") || config.target.starts_with("https://") {
        None
    } else {
        Some(Served::start(&config.target, config.serve_args.as_deref())?)
    };
    let base = served.as_ref().map_or_else(
        || config.target.trim_end_matches('/').to_owned(),
        |s| s.url.clone(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the client's runtime")?;
    let table = runtime.block_on(measure(config, &base));
    drop(served);
    table
}

async fn measure(config: &BenchConfig, base: &str) -> anyhow::Result<Table> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .context("cannot make an HTTP client")?;
    let model = match &config.model {
        Some(model) => model.clone(),
        None => first_ready_model(&client, base).await?,
    };
    let body = match &config.request {
        Some(path) => std::fs::read(path)
            .with_context(|| format!("cannot read --request {}", path.display()))?,
        None => synthesise(&client, base, &model).await?,
    };
    let url = format!("{base}/v2/models/{model}/infer");
    let load = Load {
        client,
        url,
        body: bytes::Bytes::from(body),
    };
    let duration = Duration::from_secs_f64(config.duration_secs);
    let mut rows = Vec::new();
    for &concurrency in &config.concurrency {
        load.run(concurrency, WARM_UP, false).await;
        let (latencies, errors, first_error) = load.run(concurrency, duration, true).await;
        if latencies.is_empty()
            && let Some(error) = first_error
        {
            bail!("every request to {} failed; the first: {error}", load.url);
        }
        rows.push(row(concurrency, duration, latencies, errors));
    }
    Ok(Table { model, rows })
}

/// What each client sends, again and again.
struct Load {
    client: reqwest::Client,
    url: String,
    body: bytes::Bytes,
}

impl Load {
    /// `concurrency` clients for `duration`: every successful request's latency (µs), the
    /// failures, and the first failure's description.
    async fn run(
        &self,
        concurrency: usize,
        duration: Duration,
        progress: bool,
    ) -> (Vec<u64>, u64, Option<String>) {
        let until = Instant::now() + duration;
        let done = Arc::new(AtomicU64::new(0));
        let ticker = progress.then(|| {
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                let started = Instant::now();
                loop {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    eprintln!(
                        "  concurrency {concurrency}: {:>4.0} s, {} requests",
                        started.elapsed().as_secs_f64(),
                        done.load(Ordering::Relaxed)
                    );
                }
            })
        });
        let clients: Vec<_> = (0..concurrency)
            .map(|_| {
                let (client, url, body, done) = (
                    self.client.clone(),
                    self.url.clone(),
                    self.body.clone(),
                    Arc::clone(&done),
                );
                tokio::spawn(async move {
                    let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0u64, None);
                    while Instant::now() < until {
                        let started = Instant::now();
                        let sent = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send()
                            .await;
                        let outcome = match sent {
                            Ok(response) if response.status().is_success() => response
                                .bytes()
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string()),
                            Ok(response) => {
                                let status = response.status();
                                let text = response.text().await.unwrap_or_default();
                                Err(format!("{status}: {text}"))
                            }
                            Err(e) => Err(e.to_string()),
                        };
                        match outcome {
                            Ok(()) => {
                                let micros = started.elapsed().as_micros();
                                latencies.push(u64::try_from(micros).unwrap_or(u64::MAX));
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => {
                                errors += 1;
                                first_error.get_or_insert(e);
                            }
                        }
                    }
                    (latencies, errors, first_error)
                })
            })
            .collect();
        let (mut latencies, mut errors, mut first_error) = (Vec::new(), 0, None);
        for client in clients {
            match client.await {
                Ok((mine, failed, first)) => {
                    latencies.extend(mine);
                    errors += failed;
                    first_error = first_error.or(first);
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert(e.to_string());
                }
            }
        }
        if let Some(ticker) = ticker {
            ticker.abort();
        }
        (latencies, errors, first_error)
    }
}

/// A run's row from its latencies (µs).
fn row(concurrency: usize, duration: Duration, mut latencies: Vec<u64>, errors: u64) -> Row {
    latencies.sort_unstable();
    let requests = latencies.len() as u64;
    let percentile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        // Nearest rank: the smallest latency with at least q of them at or below it.
        let rank = (q * latencies.len() as f64).ceil() as usize;
        latencies[rank.clamp(1, latencies.len()) - 1] as f64 / 1e3
    };
    Row {
        concurrency,
        requests,
        throughput: requests as f64 / duration.as_secs_f64(),
        p50_ms: percentile(0.50),
        p90_ms: percentile(0.90),
        p99_ms: percentile(0.99),
        errors,
    }
}

async fn get_json(client: &reqwest::Client, url: &str, post: bool) -> anyhow::Result<Value> {
    let request = if post {
        client.post(url).json(&json!({}))
    } else {
        client.get(url)
    };
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("{url} did not answer JSON"))
}

async fn first_ready_model(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let index = get_json(client, &format!("{base}/v2/repository/index"), true).await?;
    index
        .as_array()
        .into_iter()
        .flatten()
        .find(|row| row["state"] == "READY")
        .and_then(|row| row["name"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the server has no ready model; name one with --model"))
}

/// A V2 JSON request for the model's inputs as its metadata declares them: zeros (empty
/// strings, false), each dynamic dimension taken as 1.
async fn synthesise(client: &reqwest::Client, base: &str, model: &str) -> anyhow::Result<Vec<u8>> {
    let metadata = get_json(client, &format!("{base}/v2/models/{model}"), false).await?;
    let inputs = metadata["inputs"]
        .as_array()
        .ok_or_else(|| anyhow!("the metadata of '{model}' lists no inputs"))?
        .iter()
        .map(|input| synthesise_input(model, input))
        .collect::<anyhow::Result<Vec<Value>>>()?;
    Ok(serde_json::to_vec(&json!({ "inputs": inputs }))?)
}

fn synthesise_input(model: &str, input: &Value) -> anyhow::Result<Value> {
    let name = input["name"].as_str().unwrap_or_default();
    let datatype = input["datatype"].as_str().unwrap_or_default();
    let shape: Vec<u64> = input["shape"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| d.as_i64().map_or(1, |d| u64::try_from(d).unwrap_or(1)))
        .collect();
    let count = shape
        .iter()
        .try_fold(1u64, |n, &d| n.checked_mul(d))
        .filter(|&n| n <= MAX_ELEMENTS)
        .ok_or_else(|| {
            anyhow!("input '{name}' of '{model}' is too large to synthesise; give --request FILE")
        })?;
    let count = usize::try_from(count)?;
    let data = match datatype {
        "BYTES" => json!(vec![""; count]),
        "BOOL" => json!(vec![false; count]),
        _ => json!(vec![0; count]),
    };
    Ok(json!({ "name": name, "datatype": datatype, "shape": shape, "data": data }))
}

/// A `quiver serve` of a repository for the length of a run.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(repository: &str, extra: Option<&str>) -> anyhow::Result<Self> {
        if !std::path::Path::new(repository).is_dir() {
            bail!("'{repository}' is neither an http:// address nor a model repository directory");
        }
        let binary = std::env::current_exe().context("cannot find this binary to serve with")?;
        let mut child = Command::new(binary)
            .args(["serve", "--model-repository", repository])
            .args([
                "--host",
                "127.0.0.1",
                "--rest-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .args(extra.unwrap_or_default().split_whitespace())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start quiver serve")?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| anyhow!("no log from quiver serve"))?;
        let (found, listening) = std::sync::mpsc::channel();
        // Read the log to its end (a full pipe would stall the server), passing on the address.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("REST API listening on ").nth(1) {
                    let _ = found.send(url.trim().to_owned());
                }
            }
        });
        let url = match listening.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("quiver serve did not start on {repository} (see its log above)");
            }
        };
        eprintln!("serving {repository} at {url} for the run");
        Ok(Self { child, url })
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let latencies: Vec<u64> = (1..=100).map(|ms| ms * 1000).collect();
        let row = row(4, Duration::from_secs(2), latencies, 3);
        assert_eq!(row.requests, 100);
        assert_eq!(row.throughput, 50.0);
        assert_eq!((row.p50_ms, row.p90_ms, row.p99_ms), (50.0, 90.0, 99.0));
        assert_eq!(row.errors, 3);
        let empty = super::row(1, Duration::from_secs(1), Vec::new(), 5);
        assert_eq!((empty.requests, empty.p99_ms), (0, 0.0));
    }

    #[test]
    fn inputs_are_synthesised_from_metadata() {
        let input = json!({"name": "x", "datatype": "FP32", "shape": [-1, 3]});
        assert_eq!(
            synthesise_input("m", &input).unwrap(),
            json!({"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]})
        );
        let text = json!({"name": "t", "datatype": "BYTES", "shape": [2]});
        assert_eq!(
            synthesise_input("m", &text).unwrap()["data"],
            json!(["", ""])
        );
        let huge = json!({"name": "x", "datatype": "FP32", "shape": [1_000_000, 1_000_000]});
        assert!(synthesise_input("m", &huge).is_err());
    }

    #[test]
    fn the_table_has_a_row_per_concurrency() {
        let table = Table {
            model: "m".into(),
            rows: vec![row(1, Duration::from_secs(1), vec![1000], 0)],
        };
        let text = table.to_string();
        assert!(text.starts_with("model"), "{text}");
        assert!(text.lines().nth(1).unwrap().starts_with("m "), "{text}");
        assert!(text.contains("p99 ms"));
    }
}
