//! The response cache of a model version (`[cache] max_bytes` in its config): the answer to a
//! request whose inputs are byte for byte those of an earlier one, kept in memory so the model
//! does not run again.
//!
//! The key is the whole input — every tensor's name, type, shape and elements — not a hash of it:
//! a lookup compares the stored bytes, so two different requests can never share an answer
//! (Triton keys its cache on a 64-bit hash, where a collision returns someone else's answer).
//! The cache is per version, so a new version starts empty and a reload invalidates it.
//! `moka` bounds it by bytes (a weigher over key and answer) and evicts with TinyLFU.

use std::sync::Arc;

use moka::sync::Cache;
use quiver_engine_api::{NamedTensor, TensorData};
use quiver_telemetry::CacheMetrics;

/// Whether a request's answer came from the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheResult {
    /// Answered from the cache; the model did not run.
    Hit,
    /// Not in the cache: the model ran, and its answer is now kept.
    Miss,
}

impl CacheResult {
    /// `hit` or `miss`, as the `x-quiver-cache` header and the metric say it.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheResult::Hit => "hit",
            CacheResult::Miss => "miss",
        }
    }
}

/// A kept answer: the outputs as served, and the raw ones post-processing replaced.
#[derive(Debug)]
pub(crate) struct Cached {
    pub(crate) outputs: Vec<NamedTensor>,
    pub(crate) raw: Vec<NamedTensor>,
}

/// One version's cache.
pub(crate) struct ResponseCache {
    entries: Cache<Arc<[u8]>, Arc<Cached>>,
    metrics: CacheMetrics,
}

impl std::fmt::Debug for ResponseCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseCache")
            .field("entries", &self.entries.entry_count())
            .finish_non_exhaustive()
    }
}

impl ResponseCache {
    /// A cache of at most `max_bytes` of keys and answers.
    pub(crate) fn new(max_bytes: u64, metrics: CacheMetrics) -> Self {
        let entries = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &Arc<[u8]>, answer: &Arc<Cached>| {
                let bytes = key.len() + answer_bytes(answer);
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        Self { entries, metrics }
    }

    /// The kept answer for `key`, counting the hit or the miss.
    pub(crate) fn get(&self, key: &Arc<[u8]>) -> Option<Arc<Cached>> {
        let found = self.entries.get(key);
        match found {
            Some(_) => self.metrics.hits.increment(1),
            None => self.metrics.misses.increment(1),
        }
        found
    }

    /// Keeps `answer` for `key`.
    pub(crate) fn insert(&self, key: Arc<[u8]>, answer: Cached) {
        self.entries.insert(key, Arc::new(answer));
    }
}

/// The key of a request: every input, sorted by name, as name, type, shape and elements in the
/// raw layout (strings each with its length), each part length-prefixed so no two different
/// requests make the same bytes.
pub(crate) fn key(inputs: &[NamedTensor]) -> Arc<[u8]> {
    let mut sorted: Vec<&NamedTensor> = inputs.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for input in sorted {
        let tensor = &input.tensor;
        out.extend_from_slice(&(input.name.len() as u64).to_le_bytes());
        out.extend_from_slice(input.name.as_bytes());
        out.extend_from_slice(tensor.dtype().kserve_name().as_bytes());
        out.push(0);
        out.extend_from_slice(&(tensor.shape().len() as u64).to_le_bytes());
        for &dim in tensor.shape() {
            out.extend_from_slice(&(dim as u64).to_le_bytes());
        }
        let start = out.len();
        out.extend_from_slice(&0u64.to_le_bytes());
        quiver_engine_api::raw::encode(tensor.data(), &mut out);
        let len = (out.len() - start - 8) as u64;
        out[start..start + 8].copy_from_slice(&len.to_le_bytes());
    }
    out.into()
}

fn answer_bytes(answer: &Cached) -> usize {
    answer
        .outputs
        .iter()
        .chain(&answer.raw)
        .map(|o| o.name.len() + data_bytes(o.tensor.data()))
        .sum()
}

fn data_bytes(data: &TensorData) -> usize {
    if let TensorData::String(v) = data {
        v.iter().map(|s| s.len() + 8).sum()
    } else {
        data.len() * data.dtype().size_of().unwrap_or(8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quiver_engine_api::Tensor;

    fn input(name: &str, shape: Vec<usize>, data: TensorData) -> NamedTensor {
        NamedTensor::new(name, Tensor::new(shape, data).unwrap())
    }

    #[test]
    fn keys_tell_apart_every_difference_and_ignore_input_order() {
        let a = input("a", vec![1, 2], TensorData::F32(vec![1.0, 2.0]));
        let b = input("b", vec![1], TensorData::I64(vec![7]));
        let same = key(&[a.clone(), b.clone()]);
        assert_eq!(same, key(&[b.clone(), a.clone()]));
        let differ = [
            key(&[
                input("a", vec![2, 1], TensorData::F32(vec![1.0, 2.0])),
                b.clone(),
            ]),
            key(&[
                input("a", vec![1, 2], TensorData::F32(vec![1.0, 2.5])),
                b.clone(),
            ]),
            key(&[
                input("a", vec![1, 2], TensorData::I32(vec![1, 2])),
                b.clone(),
            ]),
            key(&[
                input("c", vec![1, 2], TensorData::F32(vec![1.0, 2.0])),
                b.clone(),
            ]),
            key(std::slice::from_ref(&a)),
            key(&[a.clone(), input("b", vec![1], TensorData::I64(vec![8]))]),
        ];
        for k in &differ {
            assert_ne!(&same, k);
        }
        // Strings: the split between elements counts.
        let s1 = key(&[input(
            "s",
            vec![2],
            TensorData::String(vec![b"ab".to_vec(), b"c".to_vec()]),
        )]);
        let s2 = key(&[input(
            "s",
            vec![2],
            TensorData::String(vec![b"a".to_vec(), b"bc".to_vec()]),
        )]);
        assert_ne!(s1, s2);
    }

    #[test]
    fn a_kept_answer_is_found_by_equal_inputs_only() {
        let cache = ResponseCache::new(1 << 20, CacheMetrics::new("m", 1));
        let request = [input("x", vec![1], TensorData::F32(vec![1.0]))];
        assert!(cache.get(&key(&request)).is_none());
        let answer = Cached {
            outputs: vec![input("y", vec![1], TensorData::F32(vec![2.5]))],
            raw: Vec::new(),
        };
        cache.insert(key(&request), answer);
        let found = cache.get(&key(&request)).unwrap();
        assert_eq!(found.outputs[0].tensor.data(), &TensorData::F32(vec![2.5]));
        let other = [input("x", vec![1], TensorData::F32(vec![1.5]))];
        assert!(cache.get(&key(&other)).is_none());
    }
}
