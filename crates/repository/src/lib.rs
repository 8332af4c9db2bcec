//! The on-disk model repository: `REPO/NAME/VERSION/model.onnx`, and each model's optional
//! `REPO/NAME/config.toml` or Triton `REPO/NAME/config.pbtxt` ([`load_model_config`]); and TF
//! Serving's `--model_config_file`, which lists models anywhere on disk
//! ([`read_model_config_file`]).
//!
//! This crate only reads the layout; it never loads a model. Anything that does not fit the
//! layout (stray files, non-numeric version directories, versions without a model file) is
//! skipped and reported as a [`Skipped`] entry so the caller can log it. Symbolic links are
//! followed, as Kubernetes volume mounts are made of them.

mod config_toml;
mod files;
mod load;
mod model_config_file;
mod scan;
mod textproto;
mod triton;
mod types;

pub use config_toml::parse_config;
pub use load::{load_config, load_model_config};
pub use model_config_file::{parse_model_config_file, read_model_config_file};
pub use scan::{scan, scan_model};
pub use triton::{parse_triton_config, parse_triton_json};
pub use types::config::{
    BatchingConfig, CacheConfig, EngineChoice, EngineOptionsConfig, LifecycleConfig, ModelConfig,
    PayloadLogConfig, Rollover, VersionPolicy, Warmup,
};
pub use types::layout::{
    CONFIG_FILE, MODEL_FILE, ModelDir, RepositoryError, Scan, Skipped, TRITON_CONFIG_FILE,
    VersionDir, check_label, check_model_name,
};
pub use types::processing;
pub use types::read::{
    ConfigError, ConfigSource, DeclaredSignature, DeclaredTensor, LoadedConfig, ServedModel,
    TritonConfig,
};
pub use types::traffic::{Shadow, TrafficPolicy, Variant, VariantTarget};
