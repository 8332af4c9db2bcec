//! Text into a model's token inputs, with a Hugging Face `tokenizer.json`.

use std::path::Path;

use quiver_engine_api::{DataType, ModelSignature, NamedTensor, Tensor, TensorData};
use quiver_repository::processing::{Padding, TextConfig};
use tokenizers::{Tokenizer, TruncationParams};

use crate::ProcessError;

/// The tokenizer's own limit when neither the config nor the tokenizer sets one (BERT's).
const DEFAULT_MAX_LENGTH: usize = 512;

/// One text input: its tokenizer and the model inputs it feeds.
pub struct TextStep {
    input: String,
    tokenizer: Tokenizer,
    max_length: usize,
    truncate: bool,
    padding: Padding,
    pad_id: u32,
    pad_type_id: u32,
    /// (model input, its dtype) for ids, mask and type ids; the last two may be absent.
    ids: (String, DataType),
    mask: Option<(String, DataType)>,
    type_ids: Option<(String, DataType)>,
}

impl std::fmt::Debug for TextStep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextStep")
            .field("input", &self.input)
            .field("max_length", &self.max_length)
            .finish_non_exhaustive()
    }
}

/// A request's texts as the model's inputs.
pub struct Tokenized {
    /// ids, mask and type ids, as the model inputs they feed.
    pub inputs: Vec<NamedTensor>,
    /// Tokens in all (padding excluded).
    pub tokens: usize,
}

impl TextStep {
    /// Loads the tokenizer and checks the model inputs the config names.
    pub fn build(
        input: &str,
        config: &TextConfig,
        model_dir: &Path,
        signature: &ModelSignature,
    ) -> Result<Self, String> {
        let key = |k: &str| format!("inputs.{input}.text.{k}");
        if signature.input_index(input).is_some() {
            return Err(format!(
                "inputs.{input}.text: '{input}' is a model input; a text input is a new name clients send (the tokenizer feeds the model's ids and mask)"
            ));
        }
        let file = model_dir.join(
            config
                .tokenizer
                .as_deref()
                .unwrap_or(Path::new(quiver_repository::processing::DEFAULT_TOKENIZER)),
        );
        let mut tokenizer = Tokenizer::from_file(&file)
            .map_err(|e| format!("{}: cannot load {}: {e}", key("tokenizer"), file.display()))?;
        let max_length = config
            .max_length
            .or_else(|| tokenizer.get_truncation().map(|t| t.max_length))
            .unwrap_or(DEFAULT_MAX_LENGTH);
        if max_length == 0 {
            return Err(format!("{}: must be at least 1", key("max_length")));
        }
        let truncate = config.truncate.unwrap_or(false);
        let (pad_id, pad_type_id) = tokenizer
            .get_padding()
            .map_or((0, 0), |p| (p.pad_id, p.pad_type_id));
        // Padding is ours (to the longest of the request, or to max_length); truncation the
        // tokenizer's, so that special tokens survive it.
        tokenizer.with_padding(None);
        let truncation = truncate.then(|| TruncationParams {
            max_length,
            ..TruncationParams::default()
        });
        tokenizer
            .with_truncation(truncation)
            .map_err(|e| format!("{}: {e}", key("max_length")))?;
        let find = |k: &str, name: Option<&String>, default: &str, required: bool| {
            let name = name.map_or(default, String::as_str);
            match signature.input_index(name) {
                Some(ix) => {
                    let dtype = signature.inputs[ix].dtype;
                    if !matches!(dtype, DataType::I64 | DataType::I32) {
                        return Err(format!(
                            "{}: the model input '{name}' is {dtype}; token inputs are INT64 or INT32",
                            key(k)
                        ));
                    }
                    Ok(Some((name.to_owned(), dtype)))
                }
                None if required || name != default => {
                    Err(format!("{}: the model has no input '{name}'", key(k)))
                }
                None => Ok(None),
            }
        };
        let ids = find("ids", config.ids.as_ref(), "input_ids", true)?
            .ok_or_else(|| format!("{}: missing", key("ids")))?;
        let mask = find("mask", config.mask.as_ref(), "attention_mask", false)?;
        let type_ids = find(
            "type_ids",
            config.type_ids.as_ref(),
            "token_type_ids",
            false,
        )?;
        Ok(Self {
            input: input.to_owned(),
            tokenizer,
            max_length,
            truncate,
            padding: config.padding.unwrap_or(Padding::Longest),
            pad_id,
            pad_type_id,
            ids,
            mask,
            type_ids,
        })
    }

    /// The input clients send.
    pub fn input(&self) -> &str {
        &self.input
    }

    /// The model inputs this step feeds.
    pub fn feeds(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.ids.0.as_str())
            .chain(self.mask.as_ref().map(|m| m.0.as_str()))
            .chain(self.type_ids.as_ref().map(|t| t.0.as_str()))
    }

    /// Tokenizes one text a row.
    pub fn tokenize(&self, texts: &[Vec<u8>]) -> Result<Tokenized, ProcessError> {
        let invalid = |m: String| ProcessError::Invalid(format!("input '{}': {m}", self.input));
        let mut strings = Vec::with_capacity(texts.len());
        for (i, bytes) in texts.iter().enumerate() {
            let text = std::str::from_utf8(bytes)
                .map_err(|_| invalid(format!("text {i} is not valid UTF-8")))?;
            if text.trim().is_empty() {
                return Err(invalid(format!("text {i} is empty")));
            }
            strings.push(text);
        }
        if strings.is_empty() {
            return Err(invalid("no texts".into()));
        }
        let encodings = self
            .tokenizer
            .encode_batch(strings, true)
            .map_err(|e| invalid(format!("cannot tokenize: {e}")))?;
        if !self.truncate
            && let Some((i, e)) = encodings
                .iter()
                .enumerate()
                .find(|(_, e)| e.len() > self.max_length)
        {
            return Err(invalid(format!(
                "text {i} has {} tokens, more than the model's limit of {} (the model is configured not to truncate)",
                e.len(),
                self.max_length
            )));
        }
        let longest = encodings.iter().map(|e| e.len()).max().unwrap_or(0);
        let width = match self.padding {
            Padding::Longest => longest,
            Padding::MaxLength => self.max_length.max(longest),
        };
        let n = encodings.len();
        let mut ids = Vec::with_capacity(n * width);
        let mut mask = Vec::with_capacity(n * width);
        let mut types = Vec::with_capacity(n * width);
        let mut tokens = 0;
        for e in &encodings {
            let pad = width - e.len();
            tokens += e.len();
            ids.extend(e.get_ids().iter().map(|&v| i64::from(v)));
            ids.extend(std::iter::repeat_n(i64::from(self.pad_id), pad));
            mask.extend(e.get_attention_mask().iter().map(|&v| i64::from(v)));
            mask.extend(std::iter::repeat_n(0, pad));
            types.extend(e.get_type_ids().iter().map(|&v| i64::from(v)));
            types.extend(std::iter::repeat_n(i64::from(self.pad_type_id), pad));
        }
        let tensor = |(name, dtype): &(String, DataType), values: Vec<i64>| {
            let data = if *dtype == DataType::I32 {
                TensorData::I32(
                    values
                        .into_iter()
                        .map(|v| i32::try_from(v).unwrap_or(i32::MAX))
                        .collect(),
                )
            } else {
                TensorData::I64(values)
            };
            Tensor::new(vec![n, width], data)
                .map(|t| NamedTensor::new(name.clone(), t))
                .map_err(ProcessError::Internal)
        };
        let mut inputs = vec![tensor(&self.ids, ids)?];
        if let Some(m) = &self.mask {
            inputs.push(tensor(m, mask)?);
        }
        if let Some(t) = &self.type_ids {
            inputs.push(tensor(t, types)?);
        }
        Ok(Tokenized { inputs, tokens })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::TensorSpec;

    fn minilm() -> ModelSignature {
        let spec = |name: &str| TensorSpec {
            name: name.into(),
            dtype: DataType::I64,
            shape: vec![-1, -1],
        };
        ModelSignature {
            inputs: vec![
                spec("input_ids"),
                spec("attention_mask"),
                spec("token_type_ids"),
            ],
            outputs: Vec::new(),
        }
    }

    fn step(config: TextConfig) -> Option<TextStep> {
        let shared = quiver_test_support::shared_models()?;
        Some(TextStep::build("text", &config, &shared.join("all_minilm_l6_v2"), &minilm()).unwrap())
    }

    fn texts(t: &[&str]) -> Vec<Vec<u8>> {
        t.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn tokenizes_and_pads_to_the_longest() {
        let Some(step) = step(TextConfig::default()) else {
            return;
        };
        let out = step
            .tokenize(&texts(&["A man is eating food.", "Hi"]))
            .unwrap();
        let names: Vec<&str> = out.inputs.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["input_ids", "attention_mask", "token_type_ids"]);
        // [CLS] a man is eating food . [SEP] = 8 tokens; [CLS] hi [SEP] = 3, padded to 8.
        assert_eq!(out.inputs[0].tensor.shape(), [2, 8]);
        assert_eq!(out.tokens, 11);
        let TensorData::I64(mask) = out.inputs[1].tensor.data() else {
            panic!("mask is INT64");
        };
        assert_eq!(&mask[8..], [1, 1, 1, 0, 0, 0, 0, 0]);
        let TensorData::I64(ids) = out.inputs[0].tensor.data() else {
            panic!("ids are INT64");
        };
        assert_eq!((ids[0], ids[7]), (101, 102), "[CLS] … [SEP]");
    }

    #[test]
    fn empty_and_over_long_text_are_refused() {
        let Some(step) = step(TextConfig {
            max_length: Some(16),
            ..TextConfig::default()
        }) else {
            return;
        };
        let invalid = |r: Result<Tokenized, ProcessError>| match r {
            Err(ProcessError::Invalid(m)) => m,
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("accepted"),
        };
        assert_eq!(
            invalid(step.tokenize(&texts(&["ok", "  "]))),
            "input 'text': text 1 is empty"
        );
        let long = "word ".repeat(100);
        let e = invalid(step.tokenize(&texts(&[&long])));
        assert!(e.contains("more than the model's limit of 16"), "{e}");
        assert!(invalid(step.tokenize(&[vec![0xff, 0xfe]])).contains("UTF-8"));
    }

    #[test]
    fn truncation_keeps_the_special_tokens() {
        let Some(step) = step(TextConfig {
            max_length: Some(16),
            truncate: Some(true),
            padding: Some(Padding::MaxLength),
            ..TextConfig::default()
        }) else {
            return;
        };
        let out = step
            .tokenize(&texts(&[&"word ".repeat(100), "short"]))
            .unwrap();
        assert_eq!(out.inputs[0].tensor.shape(), [2, 16]);
        let TensorData::I64(ids) = out.inputs[0].tensor.data() else {
            panic!("ids are INT64");
        };
        assert_eq!(ids[15], 102, "[SEP] survives truncation");
    }

    #[test]
    fn config_mistakes_name_the_key() {
        let Some(shared) = quiver_test_support::shared_models() else {
            return;
        };
        let dir = shared.join("all_minilm_l6_v2");
        let e = TextStep::build(
            "text",
            &TextConfig {
                ids: Some("ids".into()),
                ..TextConfig::default()
            },
            &dir,
            &minilm(),
        )
        .unwrap_err();
        assert_eq!(e, "inputs.text.text.ids: the model has no input 'ids'");
        let e = TextStep::build(
            "text",
            &TextConfig {
                tokenizer: Some("missing.json".into()),
                ..TextConfig::default()
            },
            &dir,
            &minilm(),
        )
        .unwrap_err();
        assert!(
            e.starts_with("inputs.text.text.tokenizer: cannot load"),
            "{e}"
        );
        let e = TextStep::build("input_ids", &TextConfig::default(), &dir, &minilm()).unwrap_err();
        assert!(e.contains("is a model input"), "{e}");
    }
}
