//! Quiver's core: the model manager, version routing and the inference facade.
//!
//! Front ends (HTTP, gRPC) decode their wire format into named [`Tensor`]s, ask the
//! [`ModelManager`] for a [`LoadedVersion`] and call [`LoadedVersion::infer`]. The core never
//! learns which protocol or which engine is in play.

pub mod admin;
pub mod auth;
mod cache;
pub mod deadline;
mod engines;
mod error;
mod examples;
pub mod inflight;
mod load_error;
mod manager;
pub mod memory;
mod payload_log;
pub mod rate_limit;
pub mod serve;
pub mod traffic;
mod version;
pub mod warmup;

pub use cache::CacheResult;
pub use engines::{Engines, Selection};
pub use error::{Error, ErrorKind};
pub use examples::{Classification, Example, Feature};
pub use load_error::LoadError;
pub use manager::{
    BatchingDefaults, Budget, DEFAULT_MAX_INFLIGHT, HistoryHook, IndexEntry, ManagerOptions,
    ModelManager, ModelSource, RemoteModel, Sources, Stores, VersionSelector, VersionState,
    VersionStatus,
};
pub use quiver_batcher::{BatchPolicy, QueueStats};
pub use quiver_engine_api::NamedTensor;
pub use quiver_engine_api::shape_text;
pub use quiver_engine_api::{DataType, ModelSignature, Tensor, TensorData, TensorSpec};
pub use quiver_repository::processing::Task;
pub use quiver_repository::{EngineChoice, ModelConfig};
pub use version::{Inference, LoadedVersion, find_output};
