//! A model's own configuration: the optional `REPO/NAME/config.toml`, or failing that a
//! Triton `REPO/NAME/config.pbtxt` ([`crate::triton`]); see [`load_model_config`] for which
//! one is read.
//!
//! Every key is optional; what is left out comes from the server-wide flags or from the model
//! file itself, so a bare `NAME/1/model.onnx` serves with no config. Unknown keys are errors
//! (a misspelt key would otherwise be ignored without a word), and every error names the file
//! and the key.
//!
//! ```toml
//! engine = "onnxruntime"           # auto | onnxruntime | tract
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
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use quiver_engine_api::OptimizationLevel;
use serde::Deserialize;

use crate::processing::{InputProcessing, OutputProcessing};
use crate::triton::{DeclaredSignature, TRITON_CONFIG_FILE, parse_triton_config};

/// The config file's name in a model directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Which engine runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// ONNX Runtime when its library is loaded, tract otherwise.
    #[default]
    Auto,
    /// ONNX Runtime; the model fails to load when the library is missing.
    Onnxruntime,
    /// tract, the pure-Rust engine.
    Tract,
}

impl EngineChoice {
    /// Every choice, in the order the docs list them.
    pub const ALL: [EngineChoice; 3] = [Self::Auto, Self::Onnxruntime, Self::Tract];

    /// The name used in flags and config files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Onnxruntime => "onnxruntime",
            Self::Tract => "tract",
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

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("'{s}' is not one of auto, onnxruntime, tract"))
    }
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
}

impl ModelConfig {
    /// The files beside the model that its processing reads (tokenizers, label files), relative
    /// to the model directory: a change to one of them changes what a load builds.
    pub fn processing_files(&self) -> Vec<PathBuf> {
        let tokenizers = self.inputs.values().filter_map(|input| {
            input.text.as_ref().map(|text| {
                text.tokenizer
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(crate::processing::DEFAULT_TOKENIZER))
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

/// Why a model's config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The config file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file is not valid (TOML or protobuf text format) or has a wrong key or value.
    #[error("{path}: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// What is wrong, naming the key.
        message: String,
    },
}

/// Which file a model's configuration came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// `config.toml`.
    Toml,
    /// Triton's `config.pbtxt` (there was no `config.toml`).
    TritonPbtxt,
    /// Neither file: the defaults.
    Default,
}

/// A model's configuration and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// The configuration.
    pub config: ModelConfig,
    /// The file it was read from.
    pub source: ConfigSource,
    /// The tensors a `config.pbtxt` declares; `None` for the other sources.
    pub declared: Option<DeclaredSignature>,
    /// Things to log: the fields of a `config.pbtxt` Quiver does not act on, or that a
    /// `config.pbtxt` was ignored because a `config.toml` sits beside it.
    pub warnings: Vec<String>,
}

/// Reads a model's configuration from `model_dir`.
///
/// Precedence: `config.toml` when present (a `config.pbtxt` beside it is then not read at all,
/// only reported in [`LoadedConfig::warnings`]); else Triton's `config.pbtxt`, whose `name`,
/// when set, must equal the directory name (as Triton requires); else the defaults. Errors
/// name the file.
pub fn load_model_config(model_dir: &Path) -> Result<LoadedConfig, ConfigError> {
    let pbtxt = model_dir.join(TRITON_CONFIG_FILE);
    if let Some(config) = load_toml(model_dir)? {
        let mut warnings = Vec::new();
        if pbtxt.exists() {
            warnings.push(format!(
                "{TRITON_CONFIG_FILE} ignored: {CONFIG_FILE} takes precedence"
            ));
        }
        return Ok(LoadedConfig {
            config,
            source: ConfigSource::Toml,
            declared: None,
            warnings,
        });
    }
    let Some(text) = read_if_present(&pbtxt)? else {
        return Ok(LoadedConfig {
            config: ModelConfig::default(),
            source: ConfigSource::Default,
            declared: None,
            warnings: Vec::new(),
        });
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: pbtxt.clone(),
        message,
    };
    let triton = parse_triton_config(&text).map_err(invalid)?;
    if let Some(name) = &triton.name {
        // "." or a path ending in ".." has no file name of its own: ask the file system.
        let dir = model_dir.file_name().map(PathBuf::from).or_else(|| {
            fs::canonicalize(model_dir)
                .ok()?
                .file_name()
                .map(PathBuf::from)
        });
        if dir.as_deref() != Some(Path::new(name)) {
            let dir = dir.unwrap_or_default();
            return Err(invalid(format!(
                "name: \"{name}\" does not match the model directory \"{}\"",
                dir.display()
            )));
        }
    }
    Ok(LoadedConfig {
        config: triton.config,
        source: ConfigSource::TritonPbtxt,
        declared: Some(DeclaredSignature {
            max_batch_size: triton.max_batch_size,
            inputs: triton.inputs,
            outputs: triton.outputs,
        }),
        warnings: triton.warnings,
    })
}

/// Reads a model's configuration from `model_dir` (see [`load_model_config`] for which file);
/// a model with neither file gets the defaults.
pub fn load_config(model_dir: &Path) -> Result<ModelConfig, ConfigError> {
    load_model_config(model_dir).map(|loaded| loaded.config)
}

/// `model_dir/config.toml`, if there is one.
fn load_toml(model_dir: &Path) -> Result<Option<ModelConfig>, ConfigError> {
    let path = model_dir.join(CONFIG_FILE);
    let Some(text) = read_if_present(&path)? else {
        return Ok(None);
    };
    let mut config = parse_config(&text).map_err(|message| ConfigError::Invalid {
        path: path.clone(),
        message,
    })?;
    if let Some(saved) = &mut config.engine_options.optimized_model_path
        && saved.is_relative()
    {
        *saved = model_dir.join(&saved);
    }
    Ok(Some(config))
}

/// The text of `path`; `None` when there is no such file.
pub(crate) fn read_if_present(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Parses the text of a `config.toml`; the error names the key and what was expected.
pub fn parse_config(text: &str) -> Result<ModelConfig, String> {
    let config: ModelConfig = toml::from_str(text).map_err(|e| {
        // toml's message spans several lines with a caret under the culprit; one line reads
        // better in a status message, and the key and reason are all in the last line.
        e.message().trim().to_owned()
            + &e.span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default()
    })?;
    for (key, value) in [
        ("intra_op_threads", config.engine_options.intra_op_threads),
        ("inter_op_threads", config.engine_options.inter_op_threads),
    ] {
        if value == Some(0) {
            return Err(format!(
                "engine_options.{key}: expected a positive number of threads, got 0"
            ));
        }
    }
    let batching = &config.batching;
    for (key, value) in [
        ("max_queue_size", batching.max_queue_size),
        ("instances", batching.instances),
    ] {
        if value == Some(0) {
            return Err(format!("batching.{key}: expected a positive number, got 0"));
        }
    }
    if let Some(preferred) = &batching.preferred_batch_sizes {
        let max = batching.max_batch_size.unwrap_or(usize::MAX);
        if let Some(bad) = preferred.iter().find(|&&p| p == 0 || p > max) {
            return Err(format!(
                "batching.preferred_batch_sizes: {bad} is not between 1 and max_batch_size ({max})"
            ));
        }
    }
    if let VersionPolicy::Latest(0) = config.version_policy {
        return Err("version_policy.latest: expected at least 1 version, got 0".into());
    }
    if let Some((label, _)) = config.labels.iter().find(|(_, v)| **v == 0) {
        return Err(format!(
            "labels.{label}: versions are positive integers, got 0"
        ));
    }
    if let Some(label) = config.labels.keys().find(|l| check_label(l).is_err()) {
        return Err(format!(
            "labels: '{label}' is not a label (letters, digits, '_', '-', '.')"
        ));
    }
    Ok(config)
}

/// Checks a version label: what TF Serving accepts in a URL path segment.
pub fn check_label(label: &str) -> Result<(), String> {
    let ok = !label.is_empty()
        && label.len() <= 128
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("'{label}' is not a version label"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_is_optional() {
        assert_eq!(parse_config("").unwrap(), ModelConfig::default());
    }

    #[test]
    fn reads_engine_and_options() {
        let c = parse_config(
            "engine = \"onnxruntime\"\n[engine_options]\nintra_op_threads = 2\n\
             graph_optimization_level = \"basic\"\noptimized_model_path = \"o.onnx\"\n",
        )
        .unwrap();
        assert_eq!(c.engine, Some(EngineChoice::Onnxruntime));
        assert_eq!(c.engine_options.intra_op_threads, Some(2));
        assert_eq!(
            c.engine_options.graph_optimization_level,
            Some(OptimizationLevel::Basic)
        );
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse_config("engine = \"cuda\"").unwrap_err();
        assert!(e.contains("cuda") && e.contains("onnxruntime"), "{e}");
        let e = parse_config("engin = \"tract\"").unwrap_err();
        assert!(e.contains("engin"), "{e}");
        let e = parse_config("[engine_options]\nintra_op_threads = -1").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_config("[engine_options]\ninter_op_threads = 0").unwrap_err();
        assert!(e.contains("engine_options.inter_op_threads"), "{e}");
        let e = parse_config("[engine_options]\ngraph_optimization_level = \"max\"").unwrap_err();
        assert!(e.contains("max"), "{e}");
        let e = parse_config("[batching]\nmax_batch_size = 8\npreferred_batch_sizes = [4, 16]")
            .unwrap_err();
        assert!(e.contains("batching.preferred_batch_sizes: 16"), "{e}");
        let e = parse_config("[batching]\ninstances = 0").unwrap_err();
        assert!(e.contains("batching.instances"), "{e}");
        let c = parse_config("[batching]\nmax_batch_size = 64\nmax_queue_delay_us = 500").unwrap();
        assert_eq!(c.batching.max_batch_size, Some(64));
    }

    #[test]
    fn version_policies_and_labels() {
        let c = parse_config("version_policy = \"all\"").unwrap();
        assert_eq!(c.version_policy, VersionPolicy::All);
        let c = parse_config("version_policy = { latest = 2 }").unwrap();
        assert_eq!(c.version_policy.select(&[1, 2, 5]), vec![2, 5]);
        let c = parse_config("version_policy = { specific = [1, 3] }").unwrap();
        assert_eq!(c.version_policy.select(&[1, 2, 5]), vec![1]);
        assert_eq!(VersionPolicy::default().select(&[]), Vec::<u64>::new());
        assert!(
            parse_config("version_policy = { latest = 0 }")
                .unwrap_err()
                .contains("version_policy.latest")
        );
        let c = parse_config("[labels]\nstable = 1\ncanary = 2\n").unwrap();
        assert_eq!(c.labels["canary"], 2);
        assert!(
            parse_config("[labels]\nstable = 0")
                .unwrap_err()
                .contains("labels.stable")
        );
        assert!(
            parse_config("[labels]\n\"a b\" = 1")
                .unwrap_err()
                .contains("a b")
        );
        let c =
            parse_config("[lifecycle]\nrollover = \"unload_first\"\nwarmup = \"none\"").unwrap();
        assert_eq!(c.lifecycle.rollover, Rollover::UnloadFirst);
        assert_eq!(c.lifecycle.warmup, Warmup::None);
    }

    #[test]
    fn relative_paths_are_from_the_model_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(CONFIG_FILE),
            "[engine_options]\noptimized_model_path = \"opt.onnx\"\n",
        )
        .unwrap();
        let c = load_config(dir.path()).unwrap();
        assert_eq!(
            c.engine_options.optimized_model_path,
            Some(dir.path().join("opt.onnx"))
        );
        assert_eq!(
            load_config(&dir.path().join("none")).unwrap(),
            ModelConfig::default()
        );
    }

    const PBTXT: &str = "name: \"resnet\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n\
                         input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n\
                         dynamic_batching { }\nmodel_warmup [ { name: \"w\" batch_size: 1 } ]\n";

    #[test]
    fn pbtxt_when_there_is_no_toml() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("resnet");
        fs::create_dir(&dir).unwrap();
        let loaded = load_model_config(&dir).unwrap();
        assert_eq!(loaded.source, ConfigSource::Default);
        assert_eq!(loaded.config, ModelConfig::default());

        fs::write(dir.join(TRITON_CONFIG_FILE), PBTXT).unwrap();
        let loaded = load_model_config(&dir).unwrap();
        assert_eq!(loaded.source, ConfigSource::TritonPbtxt);
        assert_eq!(loaded.config.batching.max_batch_size, Some(4));
        let declared = loaded.declared.unwrap();
        assert_eq!(declared.max_batch_size, 4);
        assert_eq!(declared.inputs[0].name, "x");
        assert!(declared.outputs.is_empty());
        assert_eq!(loaded.warnings, ["model_warmup: not used by Quiver"]);
        assert_eq!(load_config(&dir).unwrap().batching.max_batch_size, Some(4));
        // The directory's own name when the path has none.
        let here = load_model_config(&dir.join("."));
        assert!(here.is_ok(), "{here:?}");
    }

    #[test]
    fn pbtxt_name_must_match_the_directory() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("other");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(TRITON_CONFIG_FILE), PBTXT).unwrap();
        let e = load_model_config(&dir).unwrap_err();
        let ConfigError::Invalid { path, message } = &e else {
            panic!("{e}");
        };
        assert_eq!(path, &dir.join(TRITON_CONFIG_FILE));
        assert!(
            message.contains("\"resnet\"") && message.contains("\"other\""),
            "{e}"
        );

        fs::write(
            dir.join(TRITON_CONFIG_FILE),
            "platform: \"onnxruntime_onnx\"",
        )
        .unwrap();
        assert!(load_model_config(&dir).is_ok());
        fs::write(dir.join(TRITON_CONFIG_FILE), "platform \"x\"").unwrap();
        let e = load_model_config(&dir).unwrap_err().to_string();
        assert!(
            e.contains(TRITON_CONFIG_FILE) && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn toml_wins_over_pbtxt() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("m");
        fs::create_dir(&dir).unwrap();
        // Invalid for this directory, so reading it at all would fail the load.
        fs::write(dir.join(TRITON_CONFIG_FILE), PBTXT).unwrap();
        fs::write(dir.join(CONFIG_FILE), "[batching]\nmax_batch_size = 32\n").unwrap();
        let loaded = load_model_config(&dir).unwrap();
        assert_eq!(loaded.source, ConfigSource::Toml);
        assert_eq!(loaded.config.batching.max_batch_size, Some(32));
        assert_eq!(loaded.declared, None);
        assert_eq!(
            loaded.warnings,
            ["config.pbtxt ignored: config.toml takes precedence"]
        );
    }
}
