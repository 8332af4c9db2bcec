//! A model's `config.toml` as types: its top-level keys and tables (the `[inputs]` and
//! `[outputs]` processing tables are in [`super::processing`]). Every key is optional; what is
//! left out comes from the server-wide flags or from the model file itself. The reader is
//! `crate::config_toml`; Triton's `config.pbtxt` (`crate::triton`) fills the same types.
//!
//! ```toml
//! engine = "onnxruntime"           # auto, or an engine the server registers (onnxruntime, tract)
//!
//! [engine_options]
//! intra_op_threads = 2             # default: the engine's shared pool (one thread per core)
//! inter_op_threads = 1
//! graph_optimization_level = "all" # disable | basic | extended | all
//! optimized_model_path = "optimized.onnx"  # relative to the model directory
//!
//! [batching]
//! max_batch_size = 64              # 0 = the model does not batch
//! max_queue_delay_us = 500
//! preferred_batch_sizes = [16, 32]
//! max_queue_size = 1024
//! default_timeout_ms = 10000       # 0 = no deadline unless the request sets one
//! instances = 1
//! pad_inputs = { input_ids = 0, attention_mask = 0 }   # text: pad to the longest in a batch
//!
//! version_policy = { latest = 1 }  # default; or "all", or { specific = [1, 3] }
//!
//! [labels]                         # names for versions: /v1/models/NAME/labels/stable
//! stable = 1
//! canary = 2
//!
//! [lifecycle]
//! rollover = "load_first"          # or "unload_first" (memory-bound hosts)
//! warmup = "auto"                  # warmup/ samples, else synthesised; or "samples" / "none"
//! pinned = false                   # true: the memory budget never unloads it
//! memory_bytes = 268435456         # what the memory budget counts (default: measured at load)
//!
//! [cache]
//! max_bytes = 67108864             # answer repeated identical requests from memory (default off)
//!
//! [payload_log]                    # default off
//! sample = 0.01                    # share of requests logged
//! sink = "file:/var/log/quiver/payloads.jsonl"   # or "http://collector:8080/events" (CloudEvents)
//! queue = 1024                     # events waiting for the sink; more are dropped and counted
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use quiver_engine_api::OptimizationLevel;
use serde::Deserialize;

use super::processing::{DEFAULT_TOKENIZER, InputProcessing, OutputProcessing};

/// Which engine runs a model: `auto`, or the name of an engine the server registers
/// (`onnxruntime`, `tract`, …). The repository does not know which engines exist — a name is
/// checked when a model is loaded, against the server's engines, so adding an engine touches its
/// own crate and its registration only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// The first available engine in the server's registration order (ONNX Runtime, then
    /// tract, in the `quiver` binary).
    #[default]
    Auto,
    /// The engine with this name; the model fails to load when the server has none by it.
    Named(String),
}

impl EngineChoice {
    /// The engine called `name`, or `auto` (any case) for [`EngineChoice::Auto`].
    pub fn named(name: &str) -> Self {
        if name.eq_ignore_ascii_case("auto") {
            Self::Auto
        } else {
            Self::Named(name.to_ascii_lowercase())
        }
    }

    /// The name used in flags and config files.
    pub fn name(&self) -> &str {
        match self {
            Self::Auto => "auto",
            Self::Named(name) => name,
        }
    }
}

impl std::fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for EngineChoice {
    type Err = String;

    /// Any engine name: lower-case letters, digits, `_` and `-` (which engines exist is the
    /// server's to say, when it loads a model).
    fn from_str(s: &str) -> Result<Self, String> {
        let name = s.trim();
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if well_formed {
            Ok(Self::named(name))
        } else {
            Err(format!(
                "'{s}' is not an engine name: give auto or an engine's name (onnxruntime, tract)"
            ))
        }
    }
}

impl<'de> Deserialize<'de> for EngineChoice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// `[cache]`: answers kept for requests whose inputs are byte for byte the same as an earlier
/// one's (for deterministic models; the default is off).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// The cache's bound, in bytes of inputs and outputs kept; unset or 0: no cache.
    pub max_bytes: Option<u64>,
}

/// `[payload_log]`: a sample of request/response pairs written, as CloudEvents, to a file or an
/// HTTP endpoint, off the request path (opt-in).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PayloadLogConfig {
    /// The share of requests logged, from 0 to 1; default 1 (every request).
    #[serde(default = "every_request")]
    pub sample: f64,
    /// Where: `file:PATH` (JSON lines appended; a relative path is taken from the model
    /// directory) or `http://HOST:PORT/PATH` (each event POSTed in CloudEvents' structured mode).
    pub sink: String,
    /// Events waiting for the sink; beyond it, events are dropped (and counted) rather than
    /// slowing requests. Default 1024.
    pub queue: Option<usize>,
}

fn every_request() -> f64 {
    1.0
}

/// A model's `config.toml`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Which engine runs the model; default: the server's `--engine`.
    pub engine: Option<EngineChoice>,
    /// Engine settings; each unset one comes from the server-wide flag.
    #[serde(default)]
    pub engine_options: EngineOptionsConfig,
    /// Dynamic batching; each unset key comes from the server-wide flag.
    #[serde(default)]
    pub batching: BatchingConfig,
    /// Which versions of the model are served.
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Names for versions (`stable`, `canary`, ...), served by `/v1/models/NAME/labels/L`.
    #[serde(default)]
    pub labels: BTreeMap<String, u64>,
    /// How versions come and go.
    #[serde(default)]
    pub lifecycle: LifecycleConfig,
    /// Pre-processing, per input (`[inputs.NAME.image]`, `[inputs.NAME.text]`).
    #[serde(default)]
    pub inputs: BTreeMap<String, InputProcessing>,
    /// Post-processing, per output (`[outputs.NAME]`).
    #[serde(default)]
    pub outputs: BTreeMap<String, OutputProcessing>,
    /// The response cache: off unless `max_bytes` is set.
    #[serde(default)]
    pub cache: CacheConfig,
    /// Payload logging: off unless the table is present.
    pub payload_log: Option<PayloadLogConfig>,
    /// `[traffic]`: a split of the requests that name no version, and a shadow (the admin
    /// API's policy wins over it until deleted).
    pub traffic: Option<super::traffic::TrafficPolicy>,
}

impl ModelConfig {
    /// The files beside the model that its processing reads (tokenizers, label files), relative
    /// to the model directory: a change to one of them changes what a load builds.
    pub fn processing_files(&self) -> Vec<PathBuf> {
        let tokenizers = self.inputs.values().filter_map(|input| {
            input.text.as_ref().map(|text| {
                text.tokenizer
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_TOKENIZER))
            })
        });
        let labels = self
            .outputs
            .values()
            .filter_map(|output| output.labels.clone());
        tokenizers.chain(labels).collect()
    }
}

/// Which of a model's versions are served (TF Serving's `model_version_policy`, Triton's
/// `version_policy`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum VersionPolicy {
    /// The highest `n` versions.
    Latest(usize),
    /// Every version.
    All,
    /// Exactly these versions (those that exist).
    Specific(Vec<u64>),
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions among `available` (ascending) that the policy serves, ascending.
    pub fn select(&self, available: &[u64]) -> Vec<u64> {
        match self {
            VersionPolicy::Latest(n) => available[available.len().saturating_sub(*n)..].to_vec(),
            VersionPolicy::All => available.to_vec(),
            VersionPolicy::Specific(wanted) => available
                .iter()
                .copied()
                .filter(|v| wanted.contains(v))
                .collect(),
        }
    }
}

/// The `[lifecycle]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LifecycleConfig {
    /// Order of a version swap; default: load the new version first.
    #[serde(default)]
    pub rollover: Rollover,
    /// Requests run before a version takes traffic; default: `auto`.
    #[serde(default)]
    pub warmup: Warmup,
    /// Never unloaded to keep within the memory budget (`--max-loaded-models`,
    /// `--memory-budget-bytes`); default: false.
    #[serde(default)]
    pub pinned: bool,
    /// The version's memory in bytes as the memory budget counts it, in place of the estimate
    /// measured as it loads (for models whose use grows after loading, or hosts where the
    /// measure is blurred by other work).
    pub memory_bytes: Option<u64>,
}

/// Order of a version swap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rollover {
    /// Load and warm the new version, then retire the old: no gap, both in memory for a moment.
    #[default]
    LoadFirst,
    /// Retire the old version, then load the new: never two in memory, a gap in between.
    UnloadFirst,
}

/// Warm-up requests run before a version is marked available.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Warmup {
    /// The samples in the version's `warmup/` directory; without them, one request synthesised
    /// from the signature.
    #[default]
    Auto,
    /// Only the samples in `warmup/`; none when there are none.
    Samples,
    /// No warm-up.
    None,
}

/// The `[batching]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most rows in one engine call; 0: the model does not batch.
    pub max_batch_size: Option<usize>,
    /// Longest wait, in microseconds, for a batch to fill after its first request.
    pub max_queue_delay_us: Option<u64>,
    /// Batch sizes at which a batch closes at once.
    pub preferred_batch_sizes: Option<Vec<usize>>,
    /// Most requests waiting; more get "overloaded" (HTTP 429).
    pub max_queue_size: Option<usize>,
    /// Deadline, in milliseconds, of requests that set none; 0: none.
    pub default_timeout_ms: Option<u64>,
    /// Engine instances (each a session on its own thread).
    pub instances: Option<usize>,
    /// Inputs whose lengths (dimensions after the batch dimension) may differ between requests
    /// of one batch, each with the value it is padded with to the longest; outputs are cut back
    /// to each request's lengths. Default: none (requests of other lengths batch separately).
    pub pad_inputs: Option<BTreeMap<String, i64>>,
}

/// The `[engine_options]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineOptionsConfig {
    /// Threads within an operator; set, the model gets a thread pool of its own.
    pub intra_op_threads: Option<usize>,
    /// Threads running independent operators in parallel.
    pub inter_op_threads: Option<usize>,
    /// Graph optimisation at load time.
    pub graph_optimization_level: Option<OptimizationLevel>,
    /// Where to save the optimised model; a relative path is taken from the model directory.
    pub optimized_model_path: Option<PathBuf>,
}
