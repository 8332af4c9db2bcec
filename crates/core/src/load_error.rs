//! Why a model version failed to load, by kind: status, the repository index, logs and metrics
//! all say which, so an operator can tell a missing engine library from a corrupt file.

/// A version's load failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    /// The model's configuration cannot be read, or a key in it is wrong.
    #[error("{0}")]
    Config(String),
    /// The engine the model asks for is not in this server (ONNX Runtime's library missing, say).
    #[error("{0}")]
    EngineUnavailable(String),
    /// The engine cannot read or parse the model file.
    #[error("{engine} engine: {message}")]
    CorruptModel {
        /// The engine that tried.
        engine: &'static str,
        /// What it said.
        message: String,
    },
    /// The model uses an operator or type the engine cannot run.
    #[error("{engine} engine: {message}")]
    Unsupported {
        /// The engine that refused it.
        engine: &'static str,
        /// What it cannot run.
        message: String,
    },
    /// The model's tensors do not fit what its configuration declares (a Triton config for
    /// another model, batching without a batch dimension).
    #[error("{0}")]
    Signature(String),
    /// The pre- or post-processing the configuration declares does not fit the model.
    #[error("{0}")]
    Processing(String),
    /// A warm-up request failed.
    #[error("warm-up: {0}")]
    Warmup(String),
    /// The server could not get what serving needs (threads).
    #[error("{0}")]
    Resources(String),
    /// The version could not be downloaded from its object store.
    #[error("{0}")]
    Download(String),
}

impl LoadError {
    /// Every [`LoadError::reason`], for metrics and documentation.
    pub const REASONS: [&'static str; 9] = [
        "config",
        "engine_unavailable",
        "corrupt_model",
        "unsupported",
        "signature",
        "processing",
        "warmup",
        "resources",
        "download",
    ];

    /// Stable snake_case name of the kind: the `reason` label of
    /// `quiver_model_load_errors_total` and the `reason` field of log lines.
    pub fn reason(&self) -> &'static str {
        match self {
            LoadError::Config(_) => "config",
            LoadError::EngineUnavailable(_) => "engine_unavailable",
            LoadError::CorruptModel { .. } => "corrupt_model",
            LoadError::Unsupported { .. } => "unsupported",
            LoadError::Signature(_) => "signature",
            LoadError::Processing(_) => "processing",
            LoadError::Warmup(_) => "warmup",
            LoadError::Resources(_) => "resources",
            LoadError::Download(_) => "download",
        }
    }

    /// An engine's load error, sorted into the file's fault or the engine's limit.
    pub fn from_engine(engine: &'static str, error: &quiver_engine_api::EngineError) -> Self {
        use quiver_engine_api::EngineError;
        let message = error.to_string();
        match error {
            EngineError::Unsupported(_) => LoadError::Unsupported { engine, message },
            EngineError::Load(_) | EngineError::InvalidInput(_) | EngineError::Runtime(_) => {
                LoadError::CorruptModel { engine, message }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::EngineError;

    #[test]
    fn engine_errors_keep_their_message_and_say_which() {
        let e = LoadError::from_engine("tract", &EngineError::Unsupported("op Foo".into()));
        assert_eq!(e.reason(), "unsupported");
        assert_eq!(
            e.to_string(),
            "tract engine: unsupported by this engine: op Foo"
        );
        let e = LoadError::from_engine("tract", &EngineError::Load("bad protobuf".into()));
        assert_eq!(e.reason(), "corrupt_model");
        assert_eq!(
            e.to_string(),
            "tract engine: cannot load model: bad protobuf"
        );
        for e in [
            LoadError::Config(String::new()),
            LoadError::EngineUnavailable(String::new()),
            LoadError::Signature(String::new()),
            LoadError::Processing(String::new()),
            LoadError::Warmup(String::new()),
            LoadError::Resources(String::new()),
        ] {
            assert!(LoadError::REASONS.contains(&e.reason()));
        }
    }
}
