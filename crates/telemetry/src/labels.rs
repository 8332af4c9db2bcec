//! The closed sets of label values: protocols and request stages.

/// The front end a request came through: the `protocol` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// TensorFlow Serving's REST API (`/v1/models/…`).
    TfservingRest,
    /// KServe V2 over HTTP (`/v2/models/…`).
    KserveRest,
    /// TensorFlow Serving's gRPC `PredictionService`.
    TfservingGrpc,
    /// KServe V2's gRPC `GRPCInferenceService`.
    KserveGrpc,
    /// The OpenAI-compatible `POST /v1/embeddings`.
    OpenaiRest,
}

impl Protocol {
    /// Every protocol, in the order of [`Protocol::index`].
    pub const ALL: [Protocol; 5] = [
        Protocol::TfservingRest,
        Protocol::KserveRest,
        Protocol::TfservingGrpc,
        Protocol::KserveGrpc,
        Protocol::OpenaiRest,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::TfservingRest => "tfserving_rest",
            Protocol::KserveRest => "kserve_rest",
            Protocol::TfservingGrpc => "tfserving_grpc",
            Protocol::KserveGrpc => "kserve_grpc",
            Protocol::OpenaiRest => "openai_rest",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Protocol::TfservingRest => 0,
            Protocol::KserveRest => 1,
            Protocol::TfservingGrpc => 2,
            Protocol::KserveGrpc => 3,
            Protocol::OpenaiRest => 4,
        }
    }
}

/// A stage of a request's life: the `stage` label of `quiver_stage_duration_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Stage {
    /// Decoding the request into tensors and checking them against the model.
    Preprocess,
    /// Waiting in the model's queue for an engine instance (and for a batch to fill).
    Queue,
    /// The engine call (with batch assembly and splitting).
    Compute,
    /// Turning outputs into what the client asked for.
    Postprocess,
    /// Encoding the response.
    Encode,
}

impl Stage {
    /// Every stage, in request order (the order of [`Stage::index`]).
    pub const ALL: [Stage; 5] = [
        Stage::Preprocess,
        Stage::Queue,
        Stage::Compute,
        Stage::Postprocess,
        Stage::Encode,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess",
            Stage::Queue => "queue",
            Stage::Compute => "compute",
            Stage::Postprocess => "postprocess",
            Stage::Encode => "encode",
        }
    }

    /// The field of the request span that holds the stage's time, in microseconds.
    pub fn span_field(self) -> &'static str {
        match self {
            Stage::Preprocess => "preprocess_us",
            Stage::Queue => "queue_us",
            Stage::Compute => "compute_us",
            Stage::Postprocess => "postprocess_us",
            Stage::Encode => "encode_us",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Stage::Preprocess => 0,
            Stage::Queue => 1,
            Stage::Compute => 2,
            Stage::Postprocess => 3,
            Stage::Encode => 4,
        }
    }
}
