//! The pre- and post-processing sections of a model's `config.toml`: `[inputs.NAME.image]`,
//! `[inputs.NAME.text]` and `[outputs.NAME]` (the user's guide is `docs/processing.md`).
//!
//! These are the keys as written; `quiver-processing` checks them against the model when it
//! loads (shapes, channels, files) and builds the steps that run.

use std::path::PathBuf;

use serde::Deserialize;

/// The tokenizer file a `[inputs.NAME.text]` table reads when it names none.
pub const DEFAULT_TOKENIZER: &str = "tokenizer.json";

/// What the server does to one input before the model runs: `[inputs.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputProcessing {
    /// The model input `NAME` also takes encoded images and raw pixels.
    pub image: Option<ImageConfig>,
    /// `NAME` is a text input clients send; a tokenizer turns it into the model's inputs.
    pub text: Option<TextConfig>,
}

/// `[inputs.NAME.image]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Channel order the model wants; default RGB (grey for a one-channel input).
    pub color: Option<ColorOrder>,
    /// How an image of another size is brought to the model's; default `shorter_side`.
    pub resize: Option<ResizeMode>,
    /// `shorter_side`: the length the shorter side is resized to before the centre crop.
    pub shorter_side: Option<u32>,
    /// Resampling filter; default bilinear.
    pub filter: Option<ResizeFilter>,
    /// `[height, width]`; default: the model input's fixed dimensions.
    pub size: Option<[u32; 2]>,
    /// The model's layout; default: from the model input's shape.
    pub layout: Option<Layout>,
    /// `[p_min, p_max]` of the pixel values; default `[0, 255]`.
    pub pixel_range: Option<[f64; 2]>,
    /// `[q_min, q_max]` the pixel range maps to; default: none (values stay as they are).
    pub range: Option<[f64; 2]>,
    /// Per-channel mean subtracted after the range mapping (one value: every channel).
    pub mean: Option<Vec<f64>>,
    /// Per-channel standard deviation divided by after the mean.
    pub std: Option<Vec<f64>>,
    /// Numeric inputs of this layout are raw pixels (values in `pixel_range`) to convert.
    pub pixels: Option<Layout>,
    /// Images declaring more pixels than this are refused before they are decoded.
    pub max_pixels: Option<u64>,
}

/// Channel order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (OpenCV-trained models).
    Bgr,
    /// One luma channel.
    Grey,
}

/// How an image is brought to the model's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// Shorter side to `shorter_side` (aspect kept), then a centre crop to the model's size.
    ShorterSide,
    /// Straight to the model's size (aspect not kept).
    Stretch,
    /// No resizing: images of another size are refused.
    None,
}

/// Resampling filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// Nearest neighbour.
    Nearest,
    /// Bilinear (with Pillow's antialiasing when shrinking).
    Bilinear,
    /// Bicubic.
    Bicubic,
    /// Lanczos, 3 lobes.
    Lanczos3,
}

/// Tensor layout of an image batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// `[batch, channels, height, width]` (PyTorch).
    Nchw,
    /// `[batch, height, width, channels]` (TensorFlow).
    Nhwc,
}

/// `[inputs.NAME.text]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Hugging Face tokenizer file, relative to the model directory; default `tokenizer.json`.
    pub tokenizer: Option<PathBuf>,
    /// Most tokens a text may have (special tokens included).
    pub max_length: Option<usize>,
    /// Over-long text is cut (true) or refused (false, the default).
    pub truncate: Option<bool>,
    /// How a request's texts are padded; default `longest`.
    pub padding: Option<Padding>,
    /// The model input taking token ids; default `input_ids`.
    pub ids: Option<String>,
    /// The model input taking the attention mask; default `attention_mask`.
    pub mask: Option<String>,
    /// The model input taking token type ids; default `token_type_ids`.
    pub type_ids: Option<String>,
}

/// Padding of a request's texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    /// To the longest text of the request.
    Longest,
    /// To `max_length`.
    MaxLength,
}

/// What the server does to one output after the model runs: `[outputs.NAME]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputProcessing {
    /// Softmax over the last dimension.
    #[serde(default)]
    pub softmax: bool,
    /// The `k` best classes as `"score:index:label"` strings (Triton's classification format).
    pub top_k: Option<usize>,
    /// Labels file, one label a line, relative to the model directory.
    pub labels: Option<PathBuf>,
    /// Classes scoring below this are dropped.
    pub threshold: Option<f64>,
    /// The best class's index (its label, with `labels`).
    #[serde(default)]
    pub argmax: bool,
    /// Pooling of token outputs `[N, seq, d]` into `[N, d]`.
    pub pool: Option<Pooling>,
    /// The model input holding the attention mask, for mean pooling; default `attention_mask`.
    pub mask: Option<String>,
    /// L2-normalise each row.
    #[serde(default)]
    pub normalize: bool,
    /// The processed output's name; default: the output's own.
    pub name: Option<String>,
    /// What TF Serving's `:classify` / `:regress` use this output for.
    pub task: Option<Task>,
}

/// Pooling of token outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the tokens the attention mask keeps.
    Mean,
    /// The first token's vector.
    Cls,
}

/// The TF Serving method an output answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// `:classify`: classes with scores.
    Classification,
    /// `:regress`: one value per example.
    Regression,
}
