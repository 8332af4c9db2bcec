//! Payload logging (`[payload_log]`): a sample of request/response pairs, each written as one
//! CloudEvent — to a file (JSON lines) or POSTed to an HTTP endpoint (structured mode) — by a
//! thread of the version's own. A request only draws the sample, copies its tensors when drawn
//! and offers them to a bounded queue; when the queue is full the pair is dropped and counted,
//! so a slow or dead sink never slows requests. Everything else (JSON, time stamps, I/O) happens
//! on the writer thread.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use quiver_engine_api::{NamedTensor, TensorData};
use quiver_repository::PayloadLogConfig;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Events waiting for the sink unless the config says otherwise.
const DEFAULT_QUEUE: usize = 1024;
/// Longest wait for an HTTP sink to answer one event.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// The CloudEvents `type` of a logged pair.
const EVENT_TYPE: &str = "dev.quiver.inference.payload";

/// One sampled request and its answer, as the request path hands it over.
#[derive(Debug)]
pub(crate) struct Pair {
    /// The client's `x-request-id` or the one the server gave the request, when known.
    pub(crate) request_id: Option<std::sync::Arc<str>>,
    /// When the request reached the model.
    pub(crate) received: SystemTime,
    /// Time queued and computing, as the request's metrics count them.
    pub(crate) queued: Duration,
    pub(crate) compute: Duration,
    /// From receipt to the answer.
    pub(crate) duration: Duration,
    pub(crate) inputs: Vec<NamedTensor>,
    pub(crate) outputs: Vec<NamedTensor>,
}

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Sink {
    File(PathBuf),
    Http(String),
}

impl Sink {
    fn parse(sink: &str, model_dir: &Path) -> Result<Self, String> {
        if let Some(path) = sink.strip_prefix("file:") {
            Ok(Sink::File(model_dir.join(path)))
        } else if sink.starts_with("http://") {
            Ok(Sink::Http(sink.to_owned()))
        } else {
            Err(format!(
                "payload_log.sink: expected file:PATH or http://…, got {sink}"
            ))
        }
    }
}

/// A version's payload log: the sample rate and the queue to its writer thread.
#[derive(Debug)]
pub(crate) struct PayloadLog {
    sample: f64,
    queue: mpsc::Sender<Pair>,
    model: String,
    version: u64,
}

impl PayloadLog {
    /// Starts the writer thread of `model` version `version`; a file sink is opened (created)
    /// now, so that a path that cannot be written fails the load rather than every event.
    pub(crate) fn start(
        model: &str,
        version: u64,
        model_dir: &Path,
        config: &PayloadLogConfig,
    ) -> Result<Self, String> {
        let sink = Sink::parse(&config.sink, model_dir)?;
        let writer = Writer::open(&sink, model, version)?;
        let (queue, events) = mpsc::channel(config.queue.unwrap_or(DEFAULT_QUEUE).max(1));
        quiver_telemetry::payload_log::register(model, version);
        std::thread::Builder::new()
            .name(format!("quiver-payload-log-{model}"))
            .spawn(move || writer.run(events))
            .map_err(|e| format!("cannot start the payload log's thread: {e}"))?;
        Ok(Self {
            sample: config.sample,
            queue,
            model: model.to_owned(),
            version,
        })
    }

    /// Whether this request is one of the sample.
    pub(crate) fn draw(&self) -> bool {
        self.sample >= 1.0 || (self.sample > 0.0 && fastrand::f64() < self.sample)
    }

    /// Hands a sampled pair to the writer, or drops it (counted) when the queue is full.
    pub(crate) fn offer(&self, pair: Pair) {
        if self.queue.try_send(pair).is_err() {
            quiver_telemetry::payload_log::record(&self.model, self.version, "dropped");
        }
    }
}

/// The writer thread's side: the sink, open.
struct Writer {
    model: String,
    version: u64,
    out: Out,
}

enum Out {
    File(std::io::BufWriter<std::fs::File>),
    Http {
        client: reqwest::blocking::Client,
        url: String,
    },
}

impl Writer {
    fn open(sink: &Sink, model: &str, version: u64) -> Result<Self, String> {
        let out = match sink {
            Sink::File(path) => {
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        format!("payload_log.sink: cannot open {}: {e}", path.display())
                    })?;
                Out::File(std::io::BufWriter::new(file))
            }
            Sink::Http(url) => Out::Http {
                client: reqwest::blocking::Client::builder()
                    .timeout(HTTP_TIMEOUT)
                    .build()
                    .map_err(|e| format!("payload_log.sink: cannot make an HTTP client: {e}"))?,
                url: url.clone(),
            },
        };
        Ok(Self {
            model: model.to_owned(),
            version,
            out,
        })
    }

    /// Writes events until the version is dropped (its queue closes), then flushes.
    fn run(mut self, mut events: mpsc::Receiver<Pair>) {
        while let Some(pair) = events.blocking_recv() {
            let event = event(&self.model, self.version, &pair);
            let outcome = match self.write(&event, events.is_empty()) {
                Ok(()) => "written",
                Err(e) => {
                    tracing::warn!(model = %self.model, version = self.version,
                        "payload log: event not written: {e}");
                    "failed"
                }
            };
            quiver_telemetry::payload_log::record(&self.model, self.version, outcome);
        }
    }

    /// Writes one event; `flush`: nothing else is waiting, so a file is flushed now.
    fn write(&mut self, event: &Value, flush: bool) -> Result<(), String> {
        match &mut self.out {
            Out::File(file) => {
                serde_json::to_writer(&mut *file, event).map_err(|e| e.to_string())?;
                file.write_all(b"\n").map_err(|e| e.to_string())?;
                if flush {
                    file.flush().map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Out::Http { client, url } => {
                let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
                let response = client
                    .post(url.as_str())
                    .header("content-type", "application/cloudevents+json")
                    .body(body)
                    .send()
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("the sink answered {}", response.status()))
                }
            }
        }
    }
}

/// The CloudEvent (specversion 1.0, structured) of one pair.
fn event(model: &str, version: u64, pair: &Pair) -> Value {
    let received = rfc3339(pair.received);
    let mut event = json!({
        "specversion": "1.0",
        "id": uuid::Uuid::new_v4().to_string(),
        "source": format!("/v2/models/{model}/versions/{version}"),
        "type": EVENT_TYPE,
        "time": received,
        "datacontenttype": "application/json",
        "quivermodel": model,
        "quivermodelversion": version.to_string(),
        "data": {
            "request_id": pair.request_id.as_deref(),
            "model": model,
            "version": version.to_string(),
            "received": received,
            "duration_ms": millis(pair.duration),
            "queue_ms": millis(pair.queued),
            "compute_ms": millis(pair.compute),
            "inputs": pair.inputs.iter().map(tensor_json).collect::<Vec<_>>(),
            "outputs": pair.outputs.iter().map(tensor_json).collect::<Vec<_>>(),
        },
    });
    if let (Some(id), Some(object)) = (&pair.request_id, event.as_object_mut()) {
        object.insert("quiverrequestid".into(), Value::String(id.to_string()));
    }
    event
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn rfc3339(at: SystemTime) -> String {
    time::OffsetDateTime::from(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A tensor as KServe V2 JSON writes it: name, datatype, shape and flat data (strings as UTF-8,
/// lossily).
fn tensor_json(tensor: &NamedTensor) -> Value {
    let t = &tensor.tensor;
    let data = match t.data() {
        TensorData::Bool(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::U16(v) => json!(v),
        TensorData::U32(v) => json!(v),
        TensorData::U64(v) => json!(v),
        TensorData::I8(v) => json!(v),
        TensorData::I16(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::F16(v) => json!(v.iter().map(|x| x.to_f32()).collect::<Vec<_>>()),
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::String(v) => json!(
            v.iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect::<Vec<_>>()
        ),
    };
    json!({
        "name": tensor.name,
        "datatype": t.dtype().kserve_name(),
        "shape": t.shape(),
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::Tensor;

    fn pair() -> Pair {
        let x = Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.5])).unwrap();
        let y = Tensor::new(vec![1], TensorData::String(vec![b"cat".to_vec()])).unwrap();
        Pair {
            request_id: Some("abc".into()),
            received: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            queued: Duration::from_micros(1500),
            compute: Duration::from_millis(3),
            duration: Duration::from_millis(5),
            inputs: vec![NamedTensor::new("x", x)],
            outputs: vec![NamedTensor::new("label", y)],
        }
    }

    #[test]
    fn a_pair_is_one_cloud_event() {
        let e = event("m", 2, &pair());
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["type"], EVENT_TYPE);
        assert_eq!(e["source"], "/v2/models/m/versions/2");
        assert_eq!(e["time"], "2023-11-14T22:13:20Z");
        assert_eq!(e["quiverrequestid"], "abc");
        let data = &e["data"];
        assert_eq!(data["request_id"], "abc");
        assert_eq!(data["queue_ms"], 1.5);
        assert_eq!(
            data["inputs"][0],
            json!({"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1.0, 2.5]})
        );
        assert_eq!(data["outputs"][0]["data"], json!(["cat"]));
        assert_eq!(data["outputs"][0]["datatype"], "BYTES");
    }

    #[test]
    fn sinks_are_files_or_http() {
        let dir = Path::new("/models/m");
        assert_eq!(
            Sink::parse("file:log.jsonl", dir).unwrap(),
            Sink::File(dir.join("log.jsonl"))
        );
        assert_eq!(
            Sink::parse("file:/var/log/p.jsonl", dir).unwrap(),
            Sink::File("/var/log/p.jsonl".into())
        );
        assert!(Sink::parse("https://x", dir).is_err());
    }

    #[test]
    fn the_sample_is_drawn_at_its_rate() {
        let dir = tempfile::tempdir().unwrap();
        let config = |sample| PayloadLogConfig {
            sample,
            sink: "file:log.jsonl".into(),
            queue: None,
        };
        let never = PayloadLog::start("m", 1, dir.path(), &config(0.0)).unwrap();
        assert!((0..1000).all(|_| !never.draw()));
        let always = PayloadLog::start("m", 1, dir.path(), &config(1.0)).unwrap();
        assert!((0..1000).all(|_| always.draw()));
        let tenth = PayloadLog::start("m", 1, dir.path(), &config(0.1)).unwrap();
        let drawn = (0..10_000).filter(|_| tenth.draw()).count();
        // Mean 1000, standard deviation 30: six of them either side.
        assert!((820..=1180).contains(&drawn), "{drawn}");
    }
}
