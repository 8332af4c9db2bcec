//! Outputs into answers: softmax, top-k with labels, threshold, argmax, pooling of token
//! outputs into sentence embeddings, L2 normalisation.

use std::path::Path;

use quiver_engine_api::{DataType, ModelSignature, NamedTensor, Tensor, TensorData, TensorSpec};
use quiver_repository::processing::{OutputProcessing, Pooling, Task};

use crate::ProcessError;

/// One model output's post-processing.
#[derive(Debug, Clone)]
pub struct OutputStep {
    output: String,
    name: String,
    softmax: bool,
    top_k: Option<usize>,
    labels: Option<Vec<String>>,
    threshold: Option<f32>,
    argmax: bool,
    pool: Option<Pooling>,
    mask: String,
    normalize: bool,
    task: Option<Task>,
    spec: TensorSpec,
}

/// One row's classes, best first: (class index, score).
pub type Classes = Vec<(usize, f32)>;

impl OutputStep {
    /// Checks `config` against the model output `output` and loads its labels file.
    pub fn build(
        output: &str,
        config: &OutputProcessing,
        model_dir: &Path,
        signature: &ModelSignature,
    ) -> Result<Self, String> {
        let key = |k: &str| format!("outputs.{output}.{k}");
        let Some(ix) = signature.output_index(output) else {
            let names: Vec<&str> = signature.outputs.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "outputs.{output}: the model has no output '{output}' (its outputs: '{}')",
                names.join("', '")
            ));
        };
        let raw = &signature.outputs[ix];
        if !matches!(raw.dtype, DataType::F32 | DataType::F64 | DataType::F16) {
            return Err(format!(
                "outputs.{output}: the output is {}; post-processing takes FP32, FP64 or FP16 outputs",
                raw.dtype
            ));
        }
        let labels: Option<Vec<String>> = match &config.labels {
            None => None,
            Some(file) => {
                let path = model_dir.join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("{}: cannot read {}: {e}", key("labels"), path.display())
                })?;
                Some(text.lines().map(|l| l.trim_end().to_owned()).collect())
            }
        };
        let classes = raw.shape.last().copied().filter(|&d| d > 0);
        if let (Some(labels), Some(classes)) = (&labels, classes)
            && labels.len() as i64 != classes
        {
            return Err(format!(
                "{}: {} labels for {classes} classes",
                key("labels"),
                labels.len()
            ));
        }
        if config.top_k == Some(0) {
            return Err(format!("{}: must be at least 1", key("top_k")));
        }
        if config.top_k.is_some() && config.argmax {
            return Err(format!(
                "outputs.{output}: top_k and argmax each make the output; choose one"
            ));
        }
        let classifies = config.top_k.is_some() || config.argmax || config.softmax;
        if config.pool.is_some() && classifies {
            return Err(format!(
                "outputs.{output}: pool makes embeddings; softmax, top_k and argmax make classes; choose one"
            ));
        }
        if config.pool.is_some() && raw.shape.len() != 3 {
            return Err(format!(
                "{}: pooling takes token outputs [batch, tokens, dim]; '{output}' has shape {}",
                key("pool"),
                quiver_engine_api::shape_text(&raw.shape)
            ));
        }
        let mask = config
            .mask
            .clone()
            .unwrap_or_else(|| "attention_mask".to_owned());
        if config.pool == Some(Pooling::Mean) && signature.input_index(&mask).is_none() {
            return Err(format!(
                "{}: the model has no input '{mask}' to pool over",
                key("mask")
            ));
        }
        if config.task == Some(Task::Regression) && (classifies || config.pool.is_some()) {
            return Err(format!(
                "{}: a regression output is used as it is; leave out softmax, top_k, argmax and pool",
                key("task")
            ));
        }
        let threshold = config.threshold.map(|t| t as f32);
        let name = config.name.clone().unwrap_or_else(|| output.to_owned());
        let spec = Self::client_spec(&name, raw, config);
        Ok(Self {
            output: output.to_owned(),
            name,
            softmax: config.softmax,
            top_k: config.top_k,
            labels,
            threshold,
            argmax: config.argmax,
            pool: config.pool,
            mask,
            normalize: config.normalize,
            task: config.task,
            spec,
        })
    }

    fn client_spec(name: &str, raw: &TensorSpec, config: &OutputProcessing) -> TensorSpec {
        let batch = raw.shape.first().copied().unwrap_or(-1);
        let (dtype, shape) = if let Some(k) = config.top_k {
            (DataType::String, vec![batch, k as i64])
        } else if config.argmax {
            let dtype = if config.labels.is_some() {
                DataType::String
            } else {
                DataType::I64
            };
            (dtype, vec![batch])
        } else if config.pool.is_some() {
            (DataType::F32, vec![batch, raw.shape[2]])
        } else if config.softmax || config.normalize {
            (DataType::F32, raw.shape.clone())
        } else {
            (raw.dtype, raw.shape.clone())
        };
        TensorSpec {
            name: name.to_owned(),
            dtype,
            shape,
        }
    }

    /// The model output this step reads.
    pub fn output(&self) -> &str {
        &self.output
    }

    /// What clients see of it.
    pub fn spec(&self) -> &TensorSpec {
        &self.spec
    }

    /// The model input it also needs (the attention mask for mean pooling).
    pub fn needs_input(&self) -> Option<&str> {
        (self.pool == Some(Pooling::Mean)).then_some(self.mask.as_str())
    }

    /// Whether it pools token outputs into one vector a row (an embedding).
    pub fn pools(&self) -> bool {
        self.pool.is_some()
    }

    /// The TF Serving method this output answers.
    pub fn task(&self) -> Option<Task> {
        self.task
    }

    /// This step answering `task` too, when its config did not say (a task implied by the
    /// model's shape, see `quiver_core`'s examples): `None` where the step's work contradicts
    /// the task — pooling makes embeddings, not classes; a regression value is used as it is.
    pub fn with_task(&self, task: Task) -> Option<Self> {
        let classifies = self.softmax || self.top_k.is_some() || self.argmax;
        let fits = match task {
            Task::Classification => self.pool.is_none(),
            Task::Regression => self.pool.is_none() && !classifies && !self.normalize,
        };
        fits.then(|| Self {
            task: Some(task),
            ..self.clone()
        })
    }

    /// The labels file's lines.
    pub fn labels(&self) -> Option<&[String]> {
        self.labels.as_deref()
    }

    /// Turns the raw output into what clients get.
    pub fn apply(&self, raw: &Tensor, kept: &[NamedTensor]) -> Result<NamedTensor, ProcessError> {
        let tensor = if let Some(pool) = self.pool {
            let mask = match pool {
                Pooling::Mean => Some(
                    kept.iter()
                        .find(|t| t.name == self.mask)
                        .map(|t| &t.tensor)
                        .ok_or_else(|| {
                            ProcessError::Internal(format!("no '{}' to pool over", self.mask))
                        })?,
                ),
                Pooling::Cls => None,
            };
            let pooled = pool_tokens(raw, mask)?;
            if self.normalize {
                l2_normalize(pooled)?
            } else {
                pooled
            }
        } else {
            let (rows, classes, mut scores) = rows_of(raw)?;
            if self.softmax {
                softmax(&mut scores, classes);
            }
            if self.top_k.is_some() || self.argmax {
                let k = self.top_k.unwrap_or(1);
                let best = top_k(&scores, classes, k, self.threshold);
                if self.argmax {
                    argmax_tensor(&best, self.labels.as_deref())?
                } else {
                    classification_tensor(&best, rows, k, self.labels.as_deref())?
                }
            } else {
                let t = Tensor::new(raw.shape().to_vec(), TensorData::F32(scores))
                    .map_err(ProcessError::Internal)?;
                if self.normalize { l2_normalize(t)? } else { t }
            }
        };
        Ok(NamedTensor::new(self.name.clone(), tensor))
    }

    /// Every row's classes, best first, as `:classify` answers: softmax when configured, the
    /// configured `top_k` (all classes without), the threshold.
    pub fn classify(&self, raw: &Tensor) -> Result<Vec<Classes>, ProcessError> {
        let (_, classes, mut scores) = rows_of(raw)?;
        if self.softmax {
            softmax(&mut scores, classes);
        }
        Ok(top_k(
            &scores,
            classes,
            self.top_k.unwrap_or(classes),
            self.threshold,
        ))
    }

    /// The label of class `index`: its line in the labels file, else the index.
    pub fn label(&self, index: usize) -> String {
        label_of(self.labels.as_deref(), index)
    }
}

fn label_of(labels: Option<&[String]>, index: usize) -> String {
    labels
        .and_then(|l| l.get(index))
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

/// A tensor as rows of its last dimension, in `f32`: (rows, classes, values).
pub fn rows_of(t: &Tensor) -> Result<(usize, usize, Vec<f32>), ProcessError> {
    let values: Vec<f32> = match t.data() {
        TensorData::F32(v) => v.clone(),
        TensorData::F64(v) => v.iter().map(|&x| x as f32).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        other @ (TensorData::Bool(_)
        | TensorData::U8(_)
        | TensorData::U16(_)
        | TensorData::U32(_)
        | TensorData::U64(_)
        | TensorData::I8(_)
        | TensorData::I16(_)
        | TensorData::I32(_)
        | TensorData::I64(_)
        | TensorData::String(_)) => {
            return Err(ProcessError::Invalid(format!(
                "classes come from float outputs, not {}",
                other.dtype()
            )));
        }
    };
    let classes = t.shape().last().copied().unwrap_or(1).max(1);
    Ok((values.len() / classes, classes, values))
}

/// Softmax over each row of `classes` values, in place.
pub fn softmax(values: &mut [f32], classes: usize) {
    for row in values.chunks_exact_mut(classes) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        if sum > 0.0 {
            for v in row.iter_mut() {
                *v /= sum;
            }
        }
    }
}

/// The `k` highest scores of each row, best first, those below `threshold` left out.
pub fn top_k(values: &[f32], classes: usize, k: usize, threshold: Option<f32>) -> Vec<Classes> {
    values
        .chunks_exact(classes)
        .map(|row| {
            let mut order: Classes = row
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, s)| threshold.is_none_or(|t| *s >= t))
                .collect();
            let k = k.min(order.len());
            let by_score = |a: &(usize, f32), b: &(usize, f32)| b.1.total_cmp(&a.1);
            if k > 0 && k < order.len() {
                order.select_nth_unstable_by(k - 1, by_score);
                order.truncate(k);
            }
            order.sort_by(by_score);
            order
        })
        .collect()
}

/// Rows of classes as Triton's classification output: BYTES `[rows, k]` of
/// `"score:index[:label]"`, short rows padded with empty strings.
pub fn classification_tensor(
    best: &[Classes],
    rows: usize,
    k: usize,
    labels: Option<&[String]>,
) -> Result<Tensor, ProcessError> {
    let mut data = Vec::with_capacity(rows * k);
    for row in best {
        for slot in 0..k {
            data.push(match row.get(slot) {
                Some(&(index, score)) => match labels.and_then(|l| l.get(index)) {
                    Some(label) => format!("{score}:{index}:{label}").into_bytes(),
                    None => format!("{score}:{index}").into_bytes(),
                },
                None => Vec::new(),
            });
        }
    }
    Tensor::new(vec![best.len(), k], TensorData::String(data)).map_err(ProcessError::Internal)
}

fn argmax_tensor(best: &[Classes], labels: Option<&[String]>) -> Result<Tensor, ProcessError> {
    let n = best.len();
    let data = match labels {
        Some(labels) => TensorData::String(
            best.iter()
                .map(|r| {
                    r.first()
                        .map_or_else(Vec::new, |&(i, _)| label_of(Some(labels), i).into_bytes())
                })
                .collect(),
        ),
        None => TensorData::I64(
            best.iter()
                .map(|r| r.first().map_or(-1, |&(i, _)| i as i64))
                .collect(),
        ),
    };
    Tensor::new(vec![n], data).map_err(ProcessError::Internal)
}

/// `[N, tokens, d]` → `[N, d]`: the mean over the tokens `mask` keeps, or the first token.
fn pool_tokens(raw: &Tensor, mask: Option<&Tensor>) -> Result<Tensor, ProcessError> {
    let &[n, tokens, d] = raw.shape() else {
        return Err(ProcessError::Internal(format!(
            "pooling needs a rank-3 output, got shape {}",
            quiver_engine_api::shape_text(raw.shape())
        )));
    };
    let (_, _, values) = rows_of(raw)?;
    let mut out = vec![0f32; n * d];
    match mask {
        None => {
            for i in 0..n {
                out[i * d..(i + 1) * d]
                    .copy_from_slice(&values[i * tokens * d..i * tokens * d + d]);
            }
        }
        Some(mask) => {
            let keep = mask_values(mask)?;
            if mask.shape().first() != Some(&n) || keep.len() < n * tokens {
                return Err(ProcessError::Internal(format!(
                    "the mask's shape {} does not match the output's {}",
                    quiver_engine_api::shape_text(mask.shape()),
                    quiver_engine_api::shape_text(raw.shape())
                )));
            }
            let mask_width = keep.len() / n;
            for i in 0..n {
                let row = &mut out[i * d..(i + 1) * d];
                let mut count = 0f32;
                for t in 0..tokens {
                    if keep[i * mask_width + t] == 0 {
                        continue;
                    }
                    count += 1.0;
                    let token = &values[(i * tokens + t) * d..(i * tokens + t + 1) * d];
                    for (o, v) in row.iter_mut().zip(token) {
                        *o += v;
                    }
                }
                // sentence-transformers clamps the count to 1e-9 so an all-masked row is zeros.
                let count = count.max(1e-9);
                for o in row.iter_mut() {
                    *o /= count;
                }
            }
        }
    }
    Tensor::new(vec![n, d], TensorData::F32(out)).map_err(ProcessError::Internal)
}

fn mask_values(mask: &Tensor) -> Result<Vec<i64>, ProcessError> {
    Ok(match mask.data() {
        TensorData::I64(v) => v.clone(),
        TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        other @ (TensorData::Bool(_)
        | TensorData::U8(_)
        | TensorData::U16(_)
        | TensorData::U32(_)
        | TensorData::U64(_)
        | TensorData::I8(_)
        | TensorData::I16(_)
        | TensorData::F16(_)
        | TensorData::F32(_)
        | TensorData::F64(_)
        | TensorData::String(_)) => {
            return Err(ProcessError::Internal(format!(
                "an attention mask of {} cannot be pooled over",
                other.dtype()
            )));
        }
    })
}

/// Each row (last dimension) scaled to unit length; zero rows stay zero.
fn l2_normalize(t: Tensor) -> Result<Tensor, ProcessError> {
    let d = t.shape().last().copied().unwrap_or(1).max(1);
    let (shape, mut data) = t.into_parts();
    if let TensorData::F32(values) = &mut data {
        for row in values.chunks_exact_mut(d) {
            let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for v in row.iter_mut() {
                *v /= norm;
            }
        }
    }
    Tensor::new(shape, data).map_err(ProcessError::Internal)
}

#[cfg(test)]
mod tests;
