//! TF Serving's `--model_config_file`: the protobuf text format of
//! `tensorflow.serving.ModelServerConfig`, listing the models to serve and where they are, so
//! a TF Serving deployment's file serves unchanged.
//!
//! ```text
//! model_config_list {
//!   config {
//!     name: "resnet"
//!     base_path: "/models/resnet"
//!     model_platform: "tensorflow"
//!     model_version_policy { specific { versions: 1 versions: 2 } }
//!     version_labels { key: "stable" value: 1 }
//!     version_labels { key: "canary" value: 2 }
//!   }
//! }
//! ```
//!
//! Parsed against TF Serving's schema (the workspace's proto/tensorflow_serving/config), so
//! unknown fields and syntax errors are errors, as in TF Serving.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, DynamicMessage, MapKey};

use crate::files::read_if_present;
use crate::textproto::{self, ZeroLatest, as_int, field, list, message, string, warn_unused};
use crate::types::layout::{check_label, check_model_name};
use crate::types::read::{ConfigError, ServedModel};

static SCHEMA: LazyLock<DescriptorPool> = LazyLock::new(|| {
    textproto::pool(include_bytes!(concat!(
        env!("OUT_DIR"),
        "/tf_serving_model_server_config.bin"
    )))
});

/// Parses the text of a model config file: the `model_config_list` entries, in file order.
/// A `base_path` is returned as written. Errors name the entry and the field, and the line for
/// syntax errors and unknown fields.
pub fn parse_model_config_file(text: &str) -> Result<Vec<ServedModel>, String> {
    let desc = textproto::message_descriptor(&SCHEMA, "tensorflow.serving.ModelServerConfig");
    let m = textproto::parse(desc, text).map_err(|e| {
        // Its usual text form, `custom_model_config { [type.googleapis.com/...] {...} }`, names
        // a type this schema cannot know, so the parse fails before the check below; say why.
        if text.contains("custom_model_config") {
            custom_unsupported()
        } else {
            e
        }
    })?;
    if field(&m, "custom_model_config").is_some() {
        return Err(custom_unsupported());
    }
    let Some(list_message) = message(&m, "model_config_list") else {
        return Ok(Vec::new());
    };
    let mut models: Vec<ServedModel> = Vec::new();
    for (i, entry) in list(list_message, "config").iter().enumerate() {
        let Some(entry) = entry.as_message() else {
            continue;
        };
        let model = served_model(entry, i)?;
        if models.iter().any(|m| m.name == model.name) {
            return Err(format!(
                "model_config_list.config[{i}]: model \"{}\" is listed twice",
                model.name
            ));
        }
        models.push(model);
    }
    Ok(models)
}

/// Reads the model config file at `path`; relative `base_path`s are taken from its directory;
/// object store URLs (`s3://…`) are kept as written.
pub fn read_model_config_file(path: &Path) -> Result<Vec<ServedModel>, ConfigError> {
    let text = read_if_present(path)?.ok_or_else(|| ConfigError::Unreadable {
        path: path.to_owned(),
        source: std::io::ErrorKind::NotFound.into(),
    })?;
    let mut models = parse_model_config_file(&text).map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    })?;
    let dir = path.parent().unwrap_or(Path::new(""));
    for model in &mut models {
        // A URL (an object store) is kept as written.
        if model.base_path.is_relative() && !model.base_path.to_string_lossy().contains("://") {
            model.base_path = dir.join(&model.base_path);
        }
    }
    Ok(models)
}

fn custom_unsupported() -> String {
    "custom_model_config is not supported; use model_config_list".into()
}

fn served_model(entry: &DynamicMessage, i: usize) -> Result<ServedModel, String> {
    let path = format!("model_config_list.config[{i}]");
    let name = string(entry, "name").ok_or_else(|| format!("{path}.name: not set"))?;
    let path = format!("{path} (\"{name}\")");
    check_model_name(name).map_err(|e| format!("{path}.name: {e}"))?;
    let base_path =
        string(entry, "base_path").ok_or_else(|| format!("{path}.base_path: not set"))?;
    let version_policy = message(entry, "model_version_policy")
        .map(|p| {
            textproto::version_policy(p, &format!("{path}.model_version_policy"), ZeroLatest::One)
        })
        .transpose()?;
    let mut labels = BTreeMap::new();
    if let Some(map) = field(entry, "version_labels").and_then(|v| v.as_map()) {
        for (key, value) in map {
            let MapKey::String(label) = key else {
                continue;
            };
            check_label(label).map_err(|e| format!("{path}.version_labels: {e}"))?;
            let version = as_int(value)
                .and_then(|v| u64::try_from(v).ok())
                .filter(|&v| v > 0)
                .ok_or_else(|| {
                    format!(
                        "{path}.version_labels: label '{label}' -> {}: versions are positive \
                         integers",
                        as_int(value).unwrap_or_default()
                    )
                })?;
            labels.insert(label.clone(), version);
        }
    }
    let mut warnings = Vec::new();
    warn_unused(
        entry,
        &path,
        &[
            "name",
            "base_path",
            "model_platform",
            "model_version_policy",
            "version_labels",
        ],
        &mut warnings,
    );
    Ok(ServedModel {
        name: name.to_owned(),
        base_path: PathBuf::from(base_path),
        platform: string(entry, "model_platform").map(str::to_owned),
        version_policy,
        labels,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::config::VersionPolicy;
    use std::fs;

    const TWO_MODELS: &str = r#"
model_config_list {
  config {
    name: "a"
    base_path: "/models/a"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 1 versions: 2 } }
    version_labels { key: "stable" value: 1 }
    version_labels { key: "canary" value: 2 }
  }
  config {
    name: "b"
    base_path: "/models/b"
    model_version_policy { latest { num_versions: 3 } }
  }
}
"#;

    #[test]
    fn two_models() {
        let models = parse_model_config_file(TWO_MODELS).unwrap();
        assert_eq!(
            models,
            [
                ServedModel {
                    name: "a".into(),
                    base_path: "/models/a".into(),
                    platform: Some("tensorflow".into()),
                    version_policy: Some(VersionPolicy::Specific(vec![1, 2])),
                    labels: BTreeMap::from([("canary".into(), 2), ("stable".into(), 1)]),
                    warnings: vec![],
                },
                ServedModel {
                    name: "b".into(),
                    base_path: "/models/b".into(),
                    platform: None,
                    version_policy: Some(VersionPolicy::Latest(3)),
                    labels: BTreeMap::new(),
                    warnings: vec![],
                },
            ]
        );
    }

    #[test]
    fn policies_as_tf_serving_reads_them() {
        let policy = |p: &str| {
            parse_model_config_file(&format!(
                "model_config_list {{ config {{ name: \"m\" base_path: \"/m\" {p} }} }}"
            ))
            .map(|models| models[0].version_policy.clone())
        };
        assert_eq!(policy(""), Ok(None));
        assert_eq!(
            policy("model_version_policy { all {} }"),
            Ok(Some(VersionPolicy::All))
        );
        assert_eq!(
            policy("model_version_policy { latest {} }"),
            Ok(Some(VersionPolicy::Latest(1)))
        );
        let e = policy("model_version_policy { specific { versions: -1 } }").unwrap_err();
        assert!(
            e.contains("config[0] (\"m\").model_version_policy.specific"),
            "{e}"
        );
        let e =
            policy("model_version_policy { latest { num_versions: 1 } newest {} }").unwrap_err();
        assert!(e.contains("line 1") && e.contains("newest"), "{e}");
        let w = parse_model_config_file(
            "model_config_list { config { name: \"m\" base_path: \"/m\" \
             logging_config { sampling_config { sampling_rate: 0.1 } } } }",
        )
        .unwrap();
        assert_eq!(
            w[0].warnings,
            ["model_config_list.config[0] (\"m\").logging_config: not used by Quiver"]
        );
    }

    #[test]
    fn relative_base_paths_are_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("models.config");
        fs::write(
            &file,
            "model_config_list { config { name: \"a\" base_path: \"models/a\" } \
             config { name: \"b\" base_path: \"/abs/b\" } }",
        )
        .unwrap();
        let models = read_model_config_file(&file).unwrap();
        assert_eq!(models[0].base_path, dir.path().join("models/a"));
        assert_eq!(models[1].base_path, Path::new("/abs/b"));

        let e = read_model_config_file(&dir.path().join("missing")).unwrap_err();
        assert!(matches!(e, ConfigError::Unreadable { .. }), "{e}");
        fs::write(&file, "model_config_list { config { name: \"a\" } }").unwrap();
        let e = read_model_config_file(&file).unwrap_err().to_string();
        assert!(
            e.contains("models.config") && e.contains("base_path"),
            "{e}"
        );
    }

    #[test]
    fn bad_entries_are_errors() {
        let err = |text: &str| parse_model_config_file(text).unwrap_err();
        let e = err(
            "model_config_list { config { name: \"a\" base_path: \"/a\" } \
                     config { name: \"a\" base_path: \"/b\" } }",
        );
        assert!(
            e.contains("config[1]") && e.contains("\"a\" is listed twice"),
            "{e}"
        );
        let e = err("model_config_list { config { base_path: \"/a\" } }");
        assert!(e.contains("config[0].name"), "{e}");
        let e = err("model_config_list { config { name: \"a\" } }");
        assert!(e.contains("config[0] (\"a\").base_path"), "{e}");
        let e = err("model_config_list { config { name: \"a b\" base_path: \"/a\" } }");
        assert!(e.contains("config[0] (\"a b\").name"), "{e}");
        let e = err(
            "model_config_list { config { name: \"a\" base_path: \"/a\" \
                     version_labels { key: \"bad label\" value: 1 } } }",
        );
        assert!(
            e.contains("version_labels") && e.contains("bad label"),
            "{e}"
        );
        let e = err(
            "model_config_list { config { name: \"a\" base_path: \"/a\" \
                     version_labels { key: \"stable\" value: 0 } } }",
        );
        assert!(e.contains("version_labels") && e.contains("stable"), "{e}");
    }

    #[test]
    fn custom_model_config_is_refused() {
        for text in [
            "custom_model_config { type_url: \"type.googleapis.com/x.Y\" value: \"\" }",
            "custom_model_config { [type.googleapis.com/x.Y] { z: 1 } }",
        ] {
            let e = parse_model_config_file(text).unwrap_err();
            assert!(e.contains("custom_model_config is not supported"), "{e}");
        }
        assert_eq!(parse_model_config_file("").unwrap(), []);
    }
}
