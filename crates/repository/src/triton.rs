//! Triton's `REPO/NAME/config.pbtxt` (protobuf text format of `inference.ModelConfig`), read
//! into Quiver's [`ModelConfig`] so a Triton repository of ONNX models serves unchanged.
//!
//! The text is parsed against Triton's whole schema (the workspace's
//! `proto/inference/model_config.proto`), so what Triton rejects (a syntax error, a field that
//! does not exist, a bad enum value) is an error here too, and every valid field is accepted.
//! Quiver acts on:
//!
//! | config.pbtxt | Quiver |
//! |---|---|
//! | `name` | checked against the directory name by [`load_model_config`](crate::load_model_config) |
//! | `platform: "onnxruntime_onnx"`, `backend: "onnxruntime"` | engine left to the server (others: error) |
//! | `max_batch_size` | `batching.max_batch_size`, only with `dynamic_batching` (as in Triton) |
//! | `version_policy` | `version_policy` |
//! | `dynamic_batching.preferred_batch_size` | `batching.preferred_batch_sizes` |
//! | `dynamic_batching.max_queue_delay_microseconds` | `batching.max_queue_delay_us` |
//! | `dynamic_batching.default_queue_policy.max_queue_size` | `batching.max_queue_size` (0, Triton's "no limit": the server's) |
//! | `dynamic_batching.default_queue_policy.default_timeout_microseconds` | `batching.default_timeout_ms`, rounded up |
//! | `instance_group[].count` | `batching.instances`, summed (default 1 per group) |
//! | `input`, `output` | [`TritonConfig::inputs`], [`TritonConfig::outputs`] |
//!
//! Any other field that is set gets a warning naming it, not an error: the model still serves,
//! and the operator learns what was not applied.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage};

use crate::textproto::{
    self, ZeroLatest, enum_name, field, int, list, message, string, warn_unused,
};
use crate::types::config::{BatchingConfig, ModelConfig};
use crate::types::layout::MODEL_FILE;
use crate::types::read::{DeclaredTensor, TritonConfig};

/// The ONNX Runtime `platform` and `backend` names: the only models Quiver serves.
const ONNX_PLATFORM: &str = "onnxruntime_onnx";
const ONNX_BACKEND: &str = "onnxruntime";

/// The model file Quiver loads, for `default_model_filename`.
const ONNX_FILE: &str = MODEL_FILE;

static SCHEMA: LazyLock<DescriptorPool> = LazyLock::new(|| {
    textproto::pool(include_bytes!(concat!(
        env!("OUT_DIR"),
        "/triton_model_config.bin"
    )))
});

/// Parses the text of a `config.pbtxt`. Errors name the field, and the line for syntax errors
/// and unknown fields; set fields Quiver does not use are [`TritonConfig::warnings`].
pub fn parse_triton_config(text: &str) -> Result<TritonConfig, String> {
    let desc = textproto::message_descriptor(&SCHEMA, "inference.ModelConfig");
    let m = textproto::parse(desc, text)?;
    from_message(&m)
}

/// Parses Triton's model configuration in its JSON form (what Triton's repository API takes as
/// `parameters.config`, and what `/v2/models/NAME/config` returns), with the same meaning and
/// checks as [`parse_triton_config`].
pub fn parse_triton_json(text: &str) -> Result<TritonConfig, String> {
    let desc = textproto::message_descriptor(&SCHEMA, "inference.ModelConfig");
    let mut reader = serde_json::Deserializer::from_str(text);
    let m = DynamicMessage::deserialize(desc, &mut reader).map_err(|e| e.to_string())?;
    reader.end().map_err(|e| e.to_string())?;
    from_message(&m)
}

fn from_message(m: &DynamicMessage) -> Result<TritonConfig, String> {
    let m = m.clone();
    let mut warnings = Vec::new();
    let mut config = ModelConfig::default();

    let platform = string(&m, "platform");
    let backend = string(&m, "backend");
    for (key, value, onnx) in [
        ("platform", platform, ONNX_PLATFORM),
        ("backend", backend, ONNX_BACKEND),
    ] {
        if let Some(value) = value
            && value != onnx
        {
            return Err(format!(
                "{key} \"{value}\" is not served by Quiver (ONNX models only: \
                 platform \"{ONNX_PLATFORM}\" or backend \"{ONNX_BACKEND}\")"
            ));
        }
    }

    let declared_batch = int(&m, "max_batch_size");
    let max_batch_size = u64::try_from(declared_batch)
        .map_err(|_| format!("max_batch_size: expected 0 or more, got {declared_batch}"))?;

    if let Some(policy) = message(&m, "version_policy") {
        config.version_policy =
            textproto::version_policy(policy, "version_policy", ZeroLatest::Error)?;
    }

    config.batching = batching(&m, max_batch_size, &mut warnings)?;
    if let Some(instances) = instances(&m, &mut warnings)? {
        config.batching.instances = Some(instances);
    }

    let inputs = tensors(&m, "input", &mut warnings)?;
    let outputs = tensors(&m, "output", &mut warnings)?;

    if let Some(file) = string(&m, "default_model_filename")
        && file != ONNX_FILE
    {
        warnings.push(format!(
            "default_model_filename: not used by Quiver, which loads {ONNX_FILE} (not \"{file}\")"
        ));
    }
    let used = [
        "name",
        "platform",
        "backend",
        "version_policy",
        "max_batch_size",
        "input",
        "output",
        "dynamic_batching",
        "instance_group",
        "default_model_filename",
    ];
    // Top-level fields first in the list: they are what an operator looks for.
    let mut top = Vec::new();
    warn_unused(&m, "", &used, &mut top);
    top.append(&mut warnings);

    Ok(TritonConfig {
        config,
        name: string(&m, "name").map(str::to_owned),
        platform: platform.or(backend).map(str::to_owned),
        max_batch_size,
        inputs,
        outputs,
        warnings: top,
    })
}

/// The `[batching]` keys from `max_batch_size` and `dynamic_batching`.
fn batching(
    m: &DynamicMessage,
    max_batch_size: u64,
    warnings: &mut Vec<String>,
) -> Result<BatchingConfig, String> {
    let mut batching = BatchingConfig {
        max_batch_size: Some(0),
        ..BatchingConfig::default()
    };
    let Some(dynamic) = message(m, "dynamic_batching") else {
        return Ok(batching);
    };
    if max_batch_size == 0 {
        warnings.push("dynamic_batching: not used, as max_batch_size is 0".into());
        return Ok(batching);
    }
    let max = usize::try_from(max_batch_size).unwrap_or(usize::MAX);
    batching.max_batch_size = Some(max);

    let preferred = list(dynamic, "preferred_batch_size")
        .iter()
        .filter_map(textproto::as_int)
        .map(|p| {
            usize::try_from(p)
                .ok()
                .filter(|&p| (1..=max).contains(&p))
                .ok_or_else(|| {
                    format!(
                        "dynamic_batching.preferred_batch_size: {p} is not between 1 and \
                         max_batch_size ({max})"
                    )
                })
        })
        .collect::<Result<Vec<usize>, String>>()?;
    if !preferred.is_empty() {
        batching.preferred_batch_sizes = Some(preferred);
    }
    // Triton's default delay is 0 (batch what is already queued), so a present
    // dynamic_batching always sets it, as Triton would run it.
    batching.max_queue_delay_us = Some(
        field(dynamic, "max_queue_delay_microseconds")
            .and_then(|v| v.as_u64())
            .unwrap_or(0),
    );
    if let Some(policy) = message(dynamic, "default_queue_policy") {
        let timeout_us = field(policy, "default_timeout_microseconds")
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        // Rounded up so that a short timeout does not become 0, which means "none".
        batching.default_timeout_ms = Some(timeout_us.div_ceil(1000));
        // Triton's 0 is "no limit", which Quiver does not have: the server-wide limit applies.
        let size = field(policy, "max_queue_size")
            .and_then(|v| v.as_u32())
            .unwrap_or(0);
        if size > 0 {
            batching.max_queue_size = Some(usize::try_from(size).unwrap_or(usize::MAX));
        }
        warn_unused(
            policy,
            "dynamic_batching.default_queue_policy",
            &["default_timeout_microseconds", "max_queue_size"],
            warnings,
        );
    }
    warn_unused(
        dynamic,
        "dynamic_batching",
        &[
            "preferred_batch_size",
            "max_queue_delay_microseconds",
            "default_queue_policy",
        ],
        warnings,
    );
    Ok(batching)
}

/// The total instance count of `instance_group`, if any group is listed.
fn instances(m: &DynamicMessage, warnings: &mut Vec<String>) -> Result<Option<usize>, String> {
    let groups = list(m, "instance_group");
    if groups.is_empty() {
        return Ok(None);
    }
    let mut total = 0usize;
    for (i, group) in groups.iter().enumerate() {
        let path = format!("instance_group[{i}]");
        let Some(group) = group.as_message() else {
            continue;
        };
        let count = match int(group, "count") {
            0 => 1, // Triton's default
            n => usize::try_from(n)
                .map_err(|_| format!("{path}.count: expected a positive number, got {n}"))?,
        };
        total = total.saturating_add(count);
        if enum_name(group, "kind").as_deref() == Some("KIND_GPU") {
            warnings.push(format!(
                "{path}.kind: KIND_GPU not used by Quiver; the instances run on the CPU"
            ));
        }
        warn_unused(group, &path, &["name", "kind", "count"], warnings);
    }
    Ok(Some(total))
}

/// The `input` or `output` list (`key`).
fn tensors(
    m: &DynamicMessage,
    key: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<DeclaredTensor>, String> {
    let mut tensors = Vec::new();
    for (i, tensor) in list(m, key).iter().enumerate() {
        let path = format!("{key}[{i}]");
        let Some(tensor) = tensor.as_message() else {
            continue;
        };
        let name = string(tensor, "name")
            .ok_or_else(|| format!("{path}.name: not set"))?
            .to_owned();
        let dtype = enum_name(tensor, "data_type")
            .and_then(|t| v2_datatype(&t))
            .ok_or_else(|| format!("{path}.data_type: not set (tensor \"{name}\")"))?;
        let dims = list(tensor, "dims")
            .iter()
            .filter_map(|d| d.as_i64())
            .collect();
        warn_unused(tensor, &path, &["name", "data_type", "dims"], warnings);
        tensors.push(DeclaredTensor { name, dtype, dims });
    }
    Ok(tensors)
}

/// The KServe V2 name of a Triton `DataType` value: `TYPE_FP32` -> `FP32`; strings are `BYTES`.
fn v2_datatype(triton: &str) -> Option<String> {
    match triton.strip_prefix("TYPE_")? {
        "INVALID" => None,
        "STRING" => Some("BYTES".into()),
        other => Some(other.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::config::VersionPolicy;

    const REALISTIC: &str = r#"
name: "densenet_onnx"
platform: "onnxruntime_onnx"
max_batch_size: 8
version_policy: { latest: { num_versions: 2 } }
input [
  {
    name: "data_0"
    data_type: TYPE_FP32
    dims: [ 3, 224, 224 ]
  }
]
output [
  {
    name: "fc6_1"
    data_type: TYPE_FP32
    dims: [ 1000 ]
  },
  {
    name: "label"
    data_type: TYPE_STRING
    dims: [ -1 ]
  }
]
dynamic_batching {
  preferred_batch_size: [ 4, 8 ]
  max_queue_delay_microseconds: 100
  default_queue_policy {
    max_queue_size: 64
    default_timeout_microseconds: 2500
  }
}
instance_group [ { count: 2, kind: KIND_CPU } ]
"#;

    #[test]
    fn json_form_means_the_same() {
        let t = parse_triton_json(
            r#"{"name": "m", "backend": "onnxruntime", "max_batch_size": 8,
                "version_policy": {"specific": {"versions": [2]}},
                "dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": "100"},
                "instance_group": [{"count": 2, "kind": "KIND_CPU"}],
                "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [3]}]}"#,
        )
        .unwrap();
        assert_eq!(t.config.version_policy, VersionPolicy::Specific(vec![2]));
        assert_eq!(t.config.batching.max_batch_size, Some(8));
        assert_eq!(t.config.batching.max_queue_delay_us, Some(100));
        assert_eq!(t.config.batching.instances, Some(2));
        assert_eq!(t.inputs[0].dtype, "FP32");
        assert!(parse_triton_json(r#"{"max_batch_size": 8, "nonsense": 1}"#).is_err());
        assert!(parse_triton_json(r#"{"platform": "tensorflow_savedmodel"}"#).is_err());
        assert!(parse_triton_json("{} trailing").is_err());
    }

    #[test]
    fn realistic_config() {
        let t = parse_triton_config(REALISTIC).unwrap();
        let expected = ModelConfig {
            batching: BatchingConfig {
                max_batch_size: Some(8),
                max_queue_delay_us: Some(100),
                preferred_batch_sizes: Some(vec![4, 8]),
                max_queue_size: Some(64),
                default_timeout_ms: Some(3),
                instances: Some(2),
                pad_inputs: None,
            },
            version_policy: VersionPolicy::Latest(2),
            ..ModelConfig::default()
        };
        assert_eq!(t.config, expected);
        assert_eq!(t.name.as_deref(), Some("densenet_onnx"));
        assert_eq!(t.platform.as_deref(), Some("onnxruntime_onnx"));
        assert_eq!(t.max_batch_size, 8);
        assert_eq!(
            t.inputs,
            [DeclaredTensor {
                name: "data_0".into(),
                dtype: "FP32".into(),
                dims: vec![3, 224, 224],
            }]
        );
        assert_eq!(t.outputs.len(), 2);
        assert_eq!(t.outputs[1].dtype, "BYTES");
        assert_eq!(t.outputs[1].dims, [-1]);
        assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    }

    #[test]
    fn version_policies() {
        let policy = |text: &str| parse_triton_config(text).map(|t| t.config.version_policy);
        assert_eq!(policy(""), Ok(VersionPolicy::Latest(1)));
        assert_eq!(
            policy("version_policy { latest { num_versions: 3 } }"),
            Ok(VersionPolicy::Latest(3))
        );
        assert_eq!(
            policy("version_policy: { all: {} }"),
            Ok(VersionPolicy::All)
        );
        assert_eq!(
            policy("version_policy { specific { versions: [1, 3] } }"),
            Ok(VersionPolicy::Specific(vec![1, 3]))
        );
        assert_eq!(
            policy("version_policy { specific { versions: 2 versions: 5 } }"),
            Ok(VersionPolicy::Specific(vec![2, 5]))
        );
        let e = policy("version_policy { latest {} }").unwrap_err();
        assert!(e.contains("version_policy.latest.num_versions"), "{e}");
        let e = policy("version_policy { specific { versions: [0] } }").unwrap_err();
        assert!(e.contains("version_policy.specific.versions"), "{e}");
        let e = policy("version_policy { latest { num_versions: 1 } all {} }").unwrap_err();
        assert!(e.contains("policy_choice"), "{e}");
    }

    #[test]
    fn without_dynamic_batching_requests_run_alone() {
        let t = parse_triton_config("platform: \"onnxruntime_onnx\"\nmax_batch_size: 16").unwrap();
        assert_eq!(t.config.batching.max_batch_size, Some(0));
        assert_eq!(t.max_batch_size, 16);
        assert_eq!(t.config.batching.max_queue_delay_us, None);

        let t = parse_triton_config("max_batch_size: 16\ndynamic_batching {}").unwrap();
        assert_eq!(t.config.batching.max_batch_size, Some(16));
        assert_eq!(t.config.batching.max_queue_delay_us, Some(0));
        assert_eq!(t.config.batching.preferred_batch_sizes, None);
        assert_eq!(t.config.batching.default_timeout_ms, None);

        let t = parse_triton_config("dynamic_batching {}").unwrap();
        assert_eq!(t.config.batching.max_batch_size, Some(0));
        assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
        assert!(t.warnings[0].starts_with("dynamic_batching:"));
    }

    #[test]
    fn queue_policy_units() {
        let batching = |us: u64| {
            parse_triton_config(&format!(
                "max_batch_size: 4 dynamic_batching {{ default_queue_policy {{ \
                 default_timeout_microseconds: {us} max_queue_size: 0 }} }}"
            ))
            .unwrap()
            .config
            .batching
        };
        assert_eq!(batching(0).default_timeout_ms, Some(0));
        assert_eq!(batching(1).default_timeout_ms, Some(1));
        assert_eq!(batching(1000).default_timeout_ms, Some(1));
        assert_eq!(batching(1001).default_timeout_ms, Some(2));
        assert_eq!(batching(0).max_queue_size, None);
    }

    #[test]
    fn instance_groups_add_up() {
        let t = parse_triton_config(
            "instance_group [ { count: 2 kind: KIND_CPU }, { kind: KIND_GPU gpus: [0, 1] } ]",
        )
        .unwrap();
        assert_eq!(t.config.batching.instances, Some(3));
        assert!(
            t.warnings
                .iter()
                .any(|w| w.starts_with("instance_group[1].kind"))
        );
        assert!(
            t.warnings
                .iter()
                .any(|w| w.starts_with("instance_group[1].gpus"))
        );
        assert_eq!(t.warnings.len(), 2, "{:?}", t.warnings);
        let e = parse_triton_config("instance_group { count: -1 }").unwrap_err();
        assert!(e.contains("instance_group[0].count"), "{e}");
    }

    #[test]
    fn unused_fields_are_warnings() {
        let t = parse_triton_config(
            r#"
backend: "onnxruntime"
optimization { execution_accelerators {
  gpu_execution_accelerator : [ {
    name : "tensorrt"
    parameters { key: "precision_mode" value: "FP16" }
  } ]
} }
model_warmup [ {
  name: "zeros"
  batch_size: 1
  inputs { key: "x" value: { data_type: TYPE_FP32 dims: [3] zero_data: true } }
} ]
parameters { key: "intra_op_thread_count" value: { string_value: "2" } }
input [ { name: "x" data_type: TYPE_FP32 dims: [3] reshape { shape: [1, 3] } } ]
max_batch_size: 4
dynamic_batching { preserve_ordering: true }
default_model_filename: "other.onnx"
"#,
        )
        .unwrap();
        assert_eq!(t.platform.as_deref(), Some("onnxruntime"));
        let named = |prefix: &str| t.warnings.iter().any(|w| w.starts_with(prefix));
        for prefix in [
            "optimization: not used by Quiver",
            "model_warmup: not used by Quiver",
            "parameters: not used by Quiver",
            "input[0].reshape: not used by Quiver",
            "dynamic_batching.preserve_ordering: not used by Quiver",
            "default_model_filename: not used",
        ] {
            assert!(named(prefix), "no '{prefix}' in {:?}", t.warnings);
        }
        assert_eq!(t.warnings.len(), 6, "{:?}", t.warnings);
    }

    #[test]
    fn errors_name_the_field_and_line() {
        let e = parse_triton_config("name: \"m\"\nmax_batch_size 8 8\n").unwrap_err();
        assert!(e.starts_with("line 2, column "), "{e}");
        let e = parse_triton_config("name: \"m\"\n\nmax_batchsize: 8\n").unwrap_err();
        assert!(
            e.contains("line 3, column 1") && e.contains("max_batchsize"),
            "{e}"
        );
        // Columns count in the file as written, before the parser's colons are added.
        let e = parse_triton_config("input [ {} ] output [ {} ]\ninput [ {} ] oops [ {} ]")
            .unwrap_err();
        assert!(
            e.starts_with("line 2, column 14: ") && e.contains("oops"),
            "{e}"
        );
        let e = parse_triton_config("version_policy { newest {} }").unwrap_err();
        assert!(e.contains("newest"), "{e}");
        let e = parse_triton_config("input [ { name: \"x\" data_type: TYPE_FLOAT } ]").unwrap_err();
        assert!(e.contains("TYPE_FLOAT"), "{e}");
        let e = parse_triton_config("input [ { name: \"x\" dims: [1] } ]").unwrap_err();
        assert!(e.contains("input[0].data_type"), "{e}");
        let e = parse_triton_config("output [ { data_type: TYPE_FP32 } ]").unwrap_err();
        assert!(e.contains("output[0].name"), "{e}");
        let e = parse_triton_config("max_batch_size: -2").unwrap_err();
        assert!(e.contains("max_batch_size"), "{e}");
        let e = parse_triton_config(
            "max_batch_size: 4 dynamic_batching { preferred_batch_size: [2, 8] }",
        )
        .unwrap_err();
        assert!(
            e.contains("dynamic_batching.preferred_batch_size: 8"),
            "{e}"
        );
    }

    #[test]
    fn other_platforms_are_errors() {
        for text in [
            "platform: \"tensorflow_savedmodel\"",
            "platform: \"pytorch_libtorch\"",
            "backend: \"python\"",
            "platform: \"onnxruntime_onnx\" backend: \"tensorrt\"",
        ] {
            let e = parse_triton_config(text).unwrap_err();
            let value = text.rsplit('"').nth(1).unwrap();
            assert!(
                e.contains(value) && e.contains("not served by Quiver"),
                "{text}: {e}"
            );
        }
        assert_eq!(parse_triton_config("").unwrap().platform, None);
    }
}
