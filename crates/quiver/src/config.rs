//! The command line. Every flag can also be set through a `QUIVER_<FLAG>` environment variable.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use quiver_engine_api::OptimizationLevel;
use quiver_repository::EngineChoice;

/// Quiver: a fast model server for ONNX models, speaking the TensorFlow Serving and KServe V2
/// protocols over REST and gRPC.
#[derive(Debug, Parser)]
#[command(name = "quiver", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every model of a model repository.
    Serve(Box<ServeConfig>),
    /// Print a model file's inputs and outputs (like `saved_model_cli show`).
    Inspect(InspectConfig),
    /// Check every model of a repository as `serve` would load it (config, files, engine,
    /// signature, processing, warm-up) without serving; exit status 1 when any fails.
    Validate(ValidateConfig),
    /// Load a model with requests at given concurrencies and print a table of throughput and
    /// p50/p90/p99 latency: a running server (`http://HOST:PORT`) or a repository, which it
    /// serves itself for the run.
    Bench(BenchConfig),
}

/// `quiver serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Model repository: a directory of `NAME/VERSION/model.onnx` (each model may have a
    /// `config.toml`, or Triton's `config.pbtxt`), or the same in an object store:
    /// `s3://BUCKET/PREFIX`, `gs://…`, `az://CONTAINER/PREFIX`, `http(s)://…` (WebDAV),
    /// cached in --model-cache-dir (docs/model-stores.md).
    #[arg(
        long,
        env = "QUIVER_MODEL_REPOSITORY",
        value_name = "DIR|URL",
        required_unless_present = "model_config_file"
    )]
    pub model_repository: Option<PathBuf>,

    /// TF Serving's model config file (`model_config_list` in protobuf text format): the models
    /// to serve, each with its base path, version policy and labels; used instead of
    /// --model-repository. In `poll` mode it is read again at every poll.
    #[arg(
        long,
        env = "QUIVER_MODEL_CONFIG_FILE",
        value_name = "FILE",
        conflicts_with = "model_repository"
    )]
    pub model_config_file: Option<PathBuf>,

    /// HTTP listener settings.
    #[command(flatten)]
    pub http: HttpConfig,

    /// gRPC listener settings.
    #[command(flatten)]
    pub grpc: GrpcConfig,

    /// Engine settings.
    #[command(flatten)]
    pub engine: EngineConfig,

    /// Logging settings.
    #[command(flatten)]
    pub log: LogConfig,

    /// Model lifecycle settings.
    #[command(flatten)]
    pub lifecycle: LifecycleConfig,

    /// Who may do what.
    #[command(flatten)]
    pub security: SecurityConfig,

    /// Connection limits and timeouts.
    #[command(flatten)]
    pub limits: LimitsConfig,

    /// Object stores and the model cache.
    #[command(flatten)]
    pub store: crate::store_config::StoreConfig,

    /// The metadata store.
    #[command(flatten)]
    pub metadata: crate::metadata_config::MetadataConfig,

    /// This replica's name among several behind a load balancer: the `x-quiver-replica` header
    /// (and gRPC metadata) of every response, the `replica` label of `quiver_build_info` and a
    /// field of every request's log lines. Default: the host name (a pod's name on Kubernetes).
    #[arg(long, env = "QUIVER_REPLICA_ID", value_name = "NAME", value_parser = replica_id)]
    pub replica_id: Option<String>,
}

impl ServeConfig {
    /// `--replica-id`, or the host name, or `quiver`.
    pub fn replica(&self) -> String {
        self.replica_id.clone().unwrap_or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .or_else(|| std::env::var("HOSTNAME").ok())
                .map(|name| name.trim().to_owned())
                .filter(|name| replica_id(name).is_ok())
                .unwrap_or_else(|| "quiver".to_owned())
        })
    }
}

/// A replica name fit for a header and a label: 1 to 128 visible ASCII characters.
fn replica_id(text: &str) -> Result<String, String> {
    if !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "'{text}' is not a replica name (1 to 128 visible ASCII characters)"
        ))
    }
}

/// What protects the listeners from slow, hostile and excessive clients (docs/security.md,
/// "Connections and overload").
#[derive(Debug, Clone, Args)]
pub struct LimitsConfig {
    /// Connections open at once across every listener (REST, gRPC, --metrics-port); over it a
    /// new connection is closed at once, and counted. Default: the file descriptor limit (raised
    /// to its hard limit) less a tenth and 64, kept for model files and logs.
    #[arg(long, env = "QUIVER_MAX_CONNECTIONS", value_name = "N", value_parser = positive)]
    pub max_connections: Option<usize>,

    /// Inference requests in flight in the whole server (decoded, queued or running, every
    /// model together); over it, 429 / RESOURCE_EXHAUSTED with Retry-After at once.
    #[arg(long, env = "QUIVER_MAX_INFLIGHT_REQUESTS", value_name = "N",
        default_value_t = quiver_core::DEFAULT_MAX_INFLIGHT, value_parser = positive)]
    pub max_inflight_requests: usize,

    /// HTTP/1.1: time from a request's first byte (a new connection's opening) to the end of
    /// its headers; a slower client is disconnected. Also how soon a new gRPC connection must
    /// start HTTP/2.
    #[arg(long, env = "QUIVER_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10.0,
        value_name = "SECS", value_parser = positive_seconds)]
    pub http_header_timeout_secs: f64,

    /// HTTP/1.1: how long a kept-alive connection may sit between requests before it is closed.
    #[arg(long, env = "QUIVER_HTTP_IDLE_TIMEOUT_SECS", default_value_t = 60.0,
        value_name = "SECS", value_parser = positive_seconds)]
    pub http_idle_timeout_secs: f64,

    /// HTTP: time every request body gets to arrive whatever its length; a body also gets its
    /// length at --http-body-min-rate. A slower body gets 408 and its connection is closed.
    #[arg(long, env = "QUIVER_HTTP_BODY_TIMEOUT_SECS", default_value_t = 10.0,
        value_name = "SECS", value_parser = positive_seconds)]
    pub http_body_timeout_secs: f64,

    /// HTTP: the slowest average upload accepted beyond --http-body-timeout-secs, in bytes a
    /// second.
    #[arg(long, env = "QUIVER_HTTP_BODY_MIN_RATE", default_value_t = 64 * 1024,
        value_name = "BYTES_PER_SEC", value_parser = clap::value_parser!(u64).range(1..))]
    pub http_body_min_rate: u64,

    /// HTTP/2 (gRPC, and h2 on the REST port): ping a connection idle this long, to find dead
    /// peers (0: never).
    #[arg(long, env = "QUIVER_HTTP2_KEEPALIVE_INTERVAL_SECS", default_value_t = 60.0,
        value_name = "SECS", value_parser = non_negative_seconds)]
    pub http2_keepalive_interval_secs: f64,

    /// HTTP/2: close a connection whose ping goes unanswered this long.
    #[arg(long, env = "QUIVER_HTTP2_KEEPALIVE_TIMEOUT_SECS", default_value_t = 20.0,
        value_name = "SECS", value_parser = positive_seconds)]
    pub http2_keepalive_timeout_secs: f64,

    /// HTTP/2: largest header list (gRPC metadata) a request may send, in bytes.
    #[arg(long, env = "QUIVER_HTTP2_MAX_HEADER_LIST_BYTES", default_value_t = 16 * 1024,
        value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_header_list_bytes: u32,

    /// HTTP/2: streams a client may open and reset before the server took them, before its
    /// connection is closed (GOAWAY ENHANCE_YOUR_CALM): the "rapid reset" attack.
    #[arg(long, env = "QUIVER_HTTP2_MAX_PENDING_RESET_STREAMS", default_value_t = 20,
        value_name = "N", value_parser = positive)]
    pub http2_max_pending_reset_streams: usize,
}

impl LimitsConfig {
    /// The limits the listeners enforce; `max_concurrent_streams` is gRPC's setting, which
    /// HTTP/2 on the REST port shares.
    pub fn limits(&self, max_concurrent_streams: u32) -> crate::listen::Limits {
        let fd_limit = crate::listen::cap::raise_fd_limit();
        let max = self
            .max_connections
            .unwrap_or_else(|| crate::listen::cap::default_max_connections(fd_limit));
        crate::listen::Limits {
            connections: crate::listen::cap::ConnectionCap::new(max),
            timeouts: crate::listen::slow::Timeouts {
                header: Duration::from_secs_f64(self.http_header_timeout_secs),
                idle: Duration::from_secs_f64(self.http_idle_timeout_secs),
            },
            body: quiver_http::body_deadline::BodyDeadline {
                floor: Duration::from_secs_f64(self.http_body_timeout_secs),
                min_rate: self.http_body_min_rate,
            },
            http2: crate::listen::Http2Limits {
                max_concurrent_streams,
                keepalive_interval: (self.http2_keepalive_interval_secs > 0.0)
                    .then(|| Duration::from_secs_f64(self.http2_keepalive_interval_secs)),
                keepalive_timeout: Duration::from_secs_f64(self.http2_keepalive_timeout_secs),
                max_header_list_bytes: self.http2_max_header_list_bytes,
                max_pending_reset_streams: self.http2_max_pending_reset_streams,
            },
        }
    }
}

/// Access control.
#[derive(Debug, Clone, Args)]
pub struct SecurityConfig {
    /// Bearer tokens requests must present (`Authorization: Bearer TOKEN` on HTTP, the
    /// `authorization` metadata on gRPC): one a line, `TOKEN SCOPE[,SCOPE...] [NAME]`, scopes
    /// `infer` (inference, metadata, status), `admin` (repository API) and `metrics`
    /// (`/metrics`); `#` starts a comment. Read again when it changes. Health checks stay
    /// open. Default: no tokens needed.
    #[arg(long, env = "QUIVER_AUTH_TOKENS_FILE", value_name = "FILE")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Requests a second each client may send on average (its token's name when tokens are on,
    /// else its address); beyond it, 429 / RESOURCE_EXHAUSTED with Retry-After. Health checks
    /// are exempt. Default: no limit.
    #[arg(long, env = "QUIVER_RATE_LIMIT", value_name = "PER_SECOND", value_parser = positive_rate)]
    pub rate_limit: Option<f64>,

    /// Requests a client may send at once above --rate-limit. Default: the rate, rounded up.
    #[arg(long, env = "QUIVER_RATE_LIMIT_BURST", value_name = "N", requires = "rate_limit",
        value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit_burst: Option<u32>,

    /// TLS on both listeners (and --metrics-port): the server's PEM certificate chain. Read
    /// again when it changes (new connections get the new one). Needs --tls-key.
    #[arg(
        long,
        env = "QUIVER_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "QUIVER_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,

    /// Mutual TLS: PEM CA certificates; clients must present a certificate that chains to one.
    #[arg(
        long,
        env = "QUIVER_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,
}

impl SecurityConfig {
    /// The TLS files, when TLS is on.
    pub fn tls(&self) -> Option<crate::tls::TlsFiles> {
        Some(crate::tls::TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.tls_client_ca.clone(),
        })
    }
}

/// How models are loaded and unloaded, and how the server stops.
#[derive(Debug, Clone, Args)]
pub struct LifecycleConfig {
    /// `poll`: watch the repository and load new versions, unload removed ones, reload changed
    /// ones; `explicit`: load only what `--load-model` and the repository API ask for; `none`:
    /// load everything once at start-up.
    #[arg(long, env = "QUIVER_MODEL_CONTROL_MODE", value_enum, default_value_t = ControlMode::Poll)]
    pub model_control_mode: ControlMode,

    /// Seconds between two looks at the repository in `poll` mode.
    #[arg(long, env = "QUIVER_REPOSITORY_POLL_SECS", default_value_t = 5.0, value_name = "SECS",
        value_parser = positive_seconds)]
    pub repository_poll_secs: f64,

    /// In `explicit` mode, a model to load at start-up (repeatable; `*` loads every model).
    #[arg(
        long,
        env = "QUIVER_LOAD_MODEL",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub load_model: Vec<String>,

    /// Let a version label name a version that is not available (yet); by default such a label
    /// keeps pointing at its previous version until the new one is available.
    #[arg(long, env = "QUIVER_ALLOW_VERSION_LABELS_FOR_UNAVAILABLE_MODELS", default_value_t = false,
        action = clap::ArgAction::Set, value_name = "BOOL")]
    pub allow_version_labels_for_unavailable_models: bool,

    /// Most model versions loaded at once. Loading one more first unloads the least recently
    /// used versions (idle ones first; `[lifecycle] pinned = true` ones never); an unloaded
    /// version shows as UNLOADED_IDLE and loads again when a request asks for it. Default: no
    /// bound.
    #[arg(long, env = "QUIVER_MAX_LOADED_MODELS", value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub max_loaded_models: Option<u64>,

    /// Most memory, in bytes, that loaded model versions may take, by each version's estimate
    /// (what the process grew by while it loaded, at least its model file). Over it, the least
    /// recently used versions are unloaded as with --max-loaded-models. Default: no bound.
    #[arg(long, env = "QUIVER_MEMORY_BUDGET_BYTES", value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub memory_budget_bytes: Option<u64>,

    /// After SIGTERM/SIGINT, seconds to keep accepting requests while reporting not-ready (time
    /// for a load balancer to notice), before the listeners close.
    #[arg(long, env = "QUIVER_SHUTDOWN_DELAY_SECS", default_value_t = 0.0, value_name = "SECS",
        value_parser = non_negative_seconds)]
    pub shutdown_delay_secs: f64,

    /// Once the listeners close, the longest wait, in seconds, for in-flight and queued
    /// requests to finish before the server exits anyway.
    #[arg(long, env = "QUIVER_EXIT_TIMEOUT_SECS", default_value_t = 30.0, value_name = "SECS",
        value_parser = non_negative_seconds)]
    pub exit_timeout_secs: f64,
}

/// Model control modes (Triton's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ControlMode {
    /// Load once at start-up.
    None,
    /// Follow the repository.
    Poll,
    /// Load and unload on request.
    Explicit,
}

/// Where and how the REST API listens.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Address to listen on.
    #[arg(long, env = "QUIVER_HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Port of the REST API (TF Serving REST; 0 picks a free port).
    #[arg(long, env = "QUIVER_REST_PORT", default_value_t = 8501)]
    pub rest_port: u16,

    /// Largest request body accepted, in bytes; larger ones get 413.
    #[arg(long, env = "QUIVER_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub max_body_bytes: usize,
}

/// Where and how the gRPC services (KServe V2, TF Serving, health) listen.
#[derive(Debug, Clone, Args)]
pub struct GrpcConfig {
    /// Port of every gRPC service (0 picks a free port).
    #[arg(long, env = "QUIVER_GRPC_PORT", default_value_t = 8500)]
    pub grpc_port: u16,

    /// Largest gRPC message accepted or sent, in bytes (gRPC's usual 4 MiB is too small for
    /// images and embeddings); a larger one gets RESOURCE_EXHAUSTED.
    #[arg(long, env = "QUIVER_GRPC_MAX_MESSAGE_BYTES", default_value_t = 1 << 30)]
    pub grpc_max_message_bytes: usize,

    /// Most calls one gRPC connection may have open at once (HTTP/2 streams); a client opening
    /// more waits for one to end. Bounds what one connection can hold of the server.
    #[arg(long, env = "QUIVER_GRPC_MAX_CONCURRENT_STREAMS", default_value_t = 200, value_name = "N",
        value_parser = clap::value_parser!(u32).range(1..))]
    pub grpc_max_concurrent_streams: u32,
}

/// How models are run.
#[derive(Debug, Clone, Args)]
pub struct EngineConfig {
    /// Which engine, and where ONNX Runtime is.
    #[command(flatten)]
    pub selection: EngineSelection,

    /// Threads of the engines' shared pool, which every model without threads of its own uses
    /// (so all models together never run more); default: the number of cores.
    #[arg(long, env = "QUIVER_INTRA_OP_THREADS", value_name = "N",
        value_parser = positive)]
    pub intra_op_threads: Option<usize>,

    /// Let ONNX Runtime's idle pool threads spin waiting for work (faster when the engine is
    /// busy without pause; off, they leave the cores to request handling between calls).
    #[arg(long, env = "QUIVER_ONNXRUNTIME_SPINNING", default_value_t = false,
        action = clap::ArgAction::Set, value_name = "BOOL")]
    pub onnxruntime_spinning: bool,

    /// Threads running independent operators of one inference in parallel (ONNX Runtime);
    /// 1 runs them one after another.
    #[arg(long, env = "QUIVER_INTER_OP_THREADS", value_name = "N", default_value_t = 1,
        value_parser = positive)]
    pub inter_op_threads: usize,

    /// Graph optimisation at load time for models whose config does not set it: disable,
    /// basic, extended or all.
    #[arg(
        long,
        env = "QUIVER_GRAPH_OPTIMIZATION_LEVEL",
        default_value = "all",
        value_name = "LEVEL"
    )]
    pub graph_optimization_level: OptimizationLevel,

    /// Save every model's optimised graph as DIR/NAME/VERSION/model.onnx (ONNX Runtime), unless
    /// its config names a path.
    #[arg(long, env = "QUIVER_OPTIMIZED_MODEL_DIR", value_name = "DIR")]
    pub optimized_model_dir: Option<PathBuf>,

    /// Requests that may wait per model version before new ones get 429 (RESOURCE_EXHAUSTED);
    /// a model's `[batching] max_queue_size` overrides it.
    #[arg(long, env = "QUIVER_MAX_QUEUE_SIZE", default_value_t = 1024, value_parser = positive)]
    pub max_queue_size: usize,

    /// Dynamic batching for models whose config does not set it: most rows in one engine call
    /// (0: no batching). Models with a fixed first dimension are never batched.
    #[arg(
        long,
        env = "QUIVER_MAX_BATCH_SIZE",
        default_value_t = 0,
        value_name = "N"
    )]
    pub max_batch_size: usize,

    /// Longest wait, in microseconds, for a batch to fill after its first request.
    #[arg(
        long,
        env = "QUIVER_MAX_QUEUE_DELAY_US",
        default_value_t = 500,
        value_name = "US"
    )]
    pub max_queue_delay_us: u64,

    /// Deadline, in milliseconds, of requests that set none (gRPC deadline, KServe
    /// `parameters.timeout`, `X-Quiver-Timeout-Ms`); 0: none. Expired requests get 504
    /// (DEADLINE_EXCEEDED) without running.
    #[arg(
        long,
        env = "QUIVER_DEFAULT_TIMEOUT_MS",
        default_value_t = 0,
        value_name = "MS"
    )]
    pub default_timeout_ms: u64,

    /// Engine instances per model version, each a session on its own thread (they share the
    /// engine's thread pool, so more instances do not mean more compute threads).
    #[arg(long, env = "QUIVER_INSTANCES", default_value_t = 1, value_parser = positive, value_name = "N")]
    pub instances: usize,
}

/// Log output.
#[derive(Debug, Clone, Args)]
pub struct LogConfig {
    /// Log line format. The level comes from QUIVER_LOG (default `info,ort=warn`), in
    /// tracing's filter syntax, e.g. `QUIVER_LOG=debug` or `QUIVER_LOG=info,quiver::access=off`.
    #[arg(long, env = "QUIVER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Log one line per request (target `quiver::access`): method, route, status, duration,
    /// client, request id, model, version. Off by default, as in TF Serving and Triton: at tens
    /// of thousands of requests a second it is hundreds of MB of log a minute. Errors and model
    /// lifecycle are logged either way.
    #[arg(long, env = "QUIVER_ACCESS_LOG", default_value_t = false, action = clap::ArgAction::Set,
        value_name = "BOOL")]
    pub access_log: bool,

    /// Export Prometheus metrics on `/metrics` (REST port). `false` records nothing at all.
    #[arg(long, env = "QUIVER_METRICS", default_value_t = true, action = clap::ArgAction::Set,
        value_name = "BOOL")]
    pub metrics: bool,

    /// Also serve `/metrics` on this port of --host (0: any free port), e.g. to keep it off
    /// the port clients reach.
    #[arg(long, env = "QUIVER_METRICS_PORT", value_name = "PORT")]
    pub metrics_port: Option<u16>,
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The engine choice and ONNX Runtime's library, shared by `serve` and `inspect`.
#[derive(Debug, Clone, Args)]
pub struct EngineSelection {
    /// Engine for models whose config.toml names none: `auto` (the first engine available, in
    /// the order onnxruntime, tract) or an engine's name (`onnxruntime`, `tract`). A name this
    /// server has no engine for stops start-up with the list of engines it has.
    #[arg(
        long,
        env = "QUIVER_ENGINE",
        default_value = "auto",
        value_name = "ENGINE"
    )]
    pub engine: EngineChoice,

    /// ONNX Runtime's shared library (libonnxruntime.so*), or a directory holding it. Unset:
    /// ORT_DYLIB_PATH, then next to the quiver binary, then python3's onnxruntime package.
    /// scripts/fetch-onnxruntime.sh fetches one.
    #[arg(long, env = "QUIVER_ONNXRUNTIME_LIB", value_name = "PATH")]
    pub onnxruntime_lib: Option<PathBuf>,
}

/// `quiver inspect`.
#[derive(Debug, Clone, Args)]
pub struct InspectConfig {
    /// Path to an ONNX model file.
    pub model: PathBuf,

    /// Which engine loads it.
    #[command(flatten)]
    pub selection: EngineSelection,
}

/// `quiver validate`.
#[derive(Debug, Clone, Args)]
pub struct ValidateConfig {
    /// The model repository to check.
    pub model_repository: PathBuf,

    /// Which engine loads models whose config names none, and where ONNX Runtime is.
    #[command(flatten)]
    pub selection: EngineSelection,
}

/// `quiver bench`.
#[derive(Debug, Clone, Args)]
pub struct BenchConfig {
    /// A running server's REST address (`http://HOST:PORT`), or a model repository to serve
    /// for the run (on a free loopback port, with this binary).
    pub target: String,

    /// The model to load; default: the first ready model of the repository index.
    #[arg(long, env = "QUIVER_BENCH_MODEL", value_name = "NAME")]
    pub model: Option<String>,

    /// Concurrent clients, one run per value (comma-separated).
    #[arg(long, env = "QUIVER_BENCH_CONCURRENCY", value_name = "N,...", value_delimiter = ',',
        default_values_t = [1usize, 8], value_parser = clap::value_parser!(usize))]
    pub concurrency: Vec<usize>,

    /// Seconds each run measures (after a one-second warm-up).
    #[arg(long, env = "QUIVER_BENCH_DURATION_SECS", default_value_t = 10.0, value_name = "SECS",
        value_parser = positive_seconds)]
    pub duration_secs: f64,

    /// A V2 JSON request body to send, in place of one synthesised from the model's metadata
    /// (zeros; needed for models whose inputs are images or text).
    #[arg(long, env = "QUIVER_BENCH_REQUEST", value_name = "FILE")]
    pub request: Option<PathBuf>,

    /// Extra `quiver serve` flags when TARGET is a repository (e.g. "--max-batch-size 8").
    #[arg(
        long,
        env = "QUIVER_BENCH_SERVE_ARGS",
        value_name = "FLAGS",
        allow_hyphen_values = true
    )]
    pub serve_args: Option<String>,
}

/// A count of threads: a positive integer.
fn positive_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("'{text}' is not a positive number of seconds")),
    }
}

fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r.is_finite() => Ok(r),
        _ => Err(format!(
            "'{text}' is not a positive number of requests a second"
        )),
    }
}

fn non_negative_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s >= 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("'{text}' is not a number of seconds")),
    }
}

fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("'{text}' is not a positive integer")),
    }
}

impl ServeConfig {
    /// A configuration with every default, serving `model_repository`: for tests and embedding.
    pub fn new(model_repository: impl Into<PathBuf>) -> Self {
        let cli = Cli::parse_from(["quiver", "serve", "--model-repository", "."]);
        let Command::Serve(mut config) = cli.command else {
            unreachable!("parsed a serve command line")
        };
        config.model_repository = Some(model_repository.into());
        *config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn defaults() {
        let c = ServeConfig::new("/models");
        assert_eq!(c.http.rest_port, 8501);
        assert_eq!(c.http.host.to_string(), "0.0.0.0");
        assert_eq!(c.http.max_body_bytes, 64 << 20);
        assert_eq!(c.grpc.grpc_port, 8500);
        assert_eq!(c.engine.selection.engine, EngineChoice::Auto);
        assert_eq!(c.engine.graph_optimization_level, OptimizationLevel::All);
        assert_eq!(c.engine.inter_op_threads, 1);
        assert!(!c.log.access_log);
        assert!(c.log.metrics);
        assert_eq!(c.log.metrics_port, None);
    }

    #[test]
    fn engine_flags() {
        let cli = Cli::try_parse_from([
            "quiver",
            "serve",
            "--model-repository",
            "m",
            "--engine",
            "tract",
            "--graph-optimization-level",
            "basic",
            "--intra-op-threads",
            "3",
        ])
        .unwrap();
        let Command::Serve(c) = cli.command else {
            panic!("a serve command")
        };
        assert_eq!(
            c.engine.selection.engine,
            EngineChoice::Named("tract".into())
        );
        assert_eq!(c.engine.graph_optimization_level, OptimizationLevel::Basic);
        assert_eq!(c.engine.intra_op_threads, Some(3));
        for bad in [
            ["--engine", "not a name"],
            ["--intra-op-threads", "0"],
            ["--graph-optimization-level", "max"],
        ] {
            let args = ["quiver", "serve", "--model-repository", "m", bad[0], bad[1]];
            assert!(Cli::try_parse_from(args).is_err(), "{bad:?}");
        }
    }
}
