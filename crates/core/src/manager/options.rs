//! How the manager runs the models it loads: server-wide settings a model's config overrides.

use std::path::PathBuf;
use std::time::Duration;

use quiver_engine_api::OptimizationLevel;
use quiver_repository::EngineChoice;

use super::budget::Budget;

/// `--max-inflight-requests` unless told otherwise: far above what a busy server has in flight
/// (Little's law: 40,000 requests a second at 2 ms is 80), yet a bound on memory when many
/// models are flooded together.
pub const DEFAULT_MAX_INFLIGHT: usize = 4096;

/// How the manager runs the models it loads.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The engine for models whose config does not name one (`--engine`).
    pub default_engine: EngineChoice,
    /// Graph optimisation for models whose config does not set it.
    pub optimization: OptimizationLevel,
    /// Where to save every model's optimised graph, as `DIR/NAME/VERSION/model.onnx`, unless
    /// its config names a path.
    pub optimized_model_dir: Option<PathBuf>,
    /// Batching for models whose config does not set it.
    pub batching: BatchingDefaults,
    /// Let a label name a version that is not available (TF Serving's
    /// `--allow_version_labels_for_unavailable_models`); otherwise such a label keeps pointing
    /// where it did until the version becomes available.
    pub allow_unavailable_labels: bool,
    /// Whether the repository API may load and unload models (`--model-control-mode explicit`).
    pub model_control_api: bool,
    /// Bounds on what stays loaded (`--max-loaded-models`, `--memory-budget-bytes`).
    pub budget: Budget,
    /// Longest wait of a request for a version to load on demand, when its own deadline is
    /// later or unset.
    pub on_demand_wait: Duration,
    /// Most inference requests in flight in the whole server (`--max-inflight-requests`).
    pub max_inflight: usize,
}

/// Server-wide batching settings (`--max-batch-size` and friends); a model's `[batching]`
/// overrides each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchingDefaults {
    /// Most rows in one engine call; 0: no batching.
    pub max_batch_size: usize,
    /// Longest wait for a batch to fill.
    pub max_queue_delay: Duration,
    /// Most requests waiting per version.
    pub max_queue_size: usize,
    /// Deadline of requests that set none.
    pub default_timeout: Option<Duration>,
    /// Engine instances per version.
    pub instances: usize,
}

impl Default for BatchingDefaults {
    fn default() -> Self {
        Self {
            max_batch_size: 0,
            max_queue_delay: Duration::from_micros(500),
            max_queue_size: 1024,
            default_timeout: None,
            instances: 1,
        }
    }
}

impl Default for ManagerOptions {
    fn default() -> Self {
        Self {
            default_engine: EngineChoice::Auto,
            optimization: OptimizationLevel::default(),
            optimized_model_dir: None,
            batching: BatchingDefaults::default(),
            allow_unavailable_labels: false,
            model_control_api: false,
            budget: Budget::default(),
            on_demand_wait: Duration::from_secs(60),
            max_inflight: DEFAULT_MAX_INFLIGHT,
        }
    }
}
