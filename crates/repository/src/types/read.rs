//! What the readers return: a model's configuration with where it came from
//! ([`LoadedConfig`]), what a Triton `config.pbtxt` says ([`TritonConfig`]), the models a TF
//! Serving model config file lists ([`ServedModel`]), and why a file cannot be used
//! ([`ConfigError`]).

use std::collections::BTreeMap;
use std::io;
use std::path::PathBuf;

use super::config::{ModelConfig, VersionPolicy};

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

/// What a `config.pbtxt` says, in Quiver's terms.
#[derive(Debug, Clone, PartialEq)]
pub struct TritonConfig {
    /// The settings Quiver acts on. `batching.max_batch_size` is always set: to the declared
    /// `max_batch_size` when `dynamic_batching` is present, else to 0, because without
    /// `dynamic_batching` Triton runs each request on its own however large `max_batch_size`
    /// is. With `dynamic_batching`, `max_queue_delay_us` is always set too (Triton's default
    /// delay is 0); the other batching keys only when the pbtxt sets them, unset ones coming
    /// from the server-wide flags. `engine` is left unset (the server's `--engine`).
    pub config: ModelConfig,
    /// The `name` field; when set, Triton requires it to equal the model directory's name
    /// (checked by [`load_model_config`](crate::load_model_config), not here).
    pub name: Option<String>,
    /// `platform`, or `backend` when `platform` is unset: always an ONNX Runtime one.
    pub platform: Option<String>,
    /// `max_batch_size` as declared, whether or not requests are batched dynamically. When
    /// above 0 the model takes a leading batch dimension that `dims` leave out.
    pub max_batch_size: u64,
    /// The `input` tensors, in file order.
    pub inputs: Vec<DeclaredTensor>,
    /// The `output` tensors, in file order.
    pub outputs: Vec<DeclaredTensor>,
    /// One line per set field Quiver does not act on, naming it, e.g.
    /// `optimization: not used by Quiver`.
    pub warnings: Vec<String>,
}

/// An input or output tensor as `config.pbtxt` declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredTensor {
    /// The tensor name.
    pub name: String,
    /// The KServe V2 datatype: `FP32` for `TYPE_FP32`, `BYTES` for `TYPE_STRING`, and so on.
    pub dtype: String,
    /// The dimensions as written: -1 for a variable one, and without the batch dimension when
    /// the model's `max_batch_size` is above 0.
    pub dims: Vec<i64>,
}

/// The tensors a `config.pbtxt` declares, for checking them against the model's own signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclaredSignature {
    /// `max_batch_size` as declared (see [`TritonConfig::max_batch_size`]): above 0, the dims
    /// leave out the leading batch dimension.
    pub max_batch_size: u64,
    /// The `input` tensors.
    pub inputs: Vec<DeclaredTensor>,
    /// The `output` tensors.
    pub outputs: Vec<DeclaredTensor>,
}

/// One `model_config_list.config` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// The model name (checked with [`check_model_name`](crate::check_model_name)).
    pub name: String,
    /// The directory holding the version directories; a relative `base_path` is taken from the
    /// config file's directory by [`read_model_config_file`](crate::read_model_config_file).
    pub base_path: PathBuf,
    /// `model_platform` as written (`None` when empty). Recorded only: whatever it says
    /// ("tensorflow" in most TF Serving files), Quiver looks for `model.onnx` in the versions.
    pub platform: Option<String>,
    /// `model_version_policy`; `None` when unset, which TF Serving reads as the latest version.
    /// `latest {}` without `num_versions` is the latest 1, as in TF Serving.
    pub version_policy: Option<VersionPolicy>,
    /// `version_labels`: label -> version.
    pub labels: BTreeMap<String, u64>,
    /// One line per set field Quiver does not act on (`logging_config`, `model_type`).
    pub warnings: Vec<String>,
}
