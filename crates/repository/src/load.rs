//! Which file a model's configuration comes from: its `config.toml`, else Triton's
//! `config.pbtxt`, else the defaults.

use std::fs;
use std::path::{Path, PathBuf};

use crate::config_toml::load_toml;
use crate::files::read_if_present;
use crate::triton::parse_triton_config;
use crate::types::config::ModelConfig;
use crate::types::layout::{CONFIG_FILE, TRITON_CONFIG_FILE};
use crate::types::read::{ConfigError, ConfigSource, DeclaredSignature, LoadedConfig};

/// Reads a model's configuration from `model_dir`.
///
/// Precedence: `config.toml` when present (a `config.pbtxt` beside it is then not read at all,
/// only reported in [`LoadedConfig::warnings`]); else Triton's `config.pbtxt`, whose `name`,
/// when set, must equal the directory name (as Triton requires); else the defaults. Errors
/// name the file.
pub fn load_model_config(model_dir: &Path) -> Result<LoadedConfig, ConfigError> {
    let pbtxt = model_dir.join(TRITON_CONFIG_FILE);
    if let Some(config) = load_toml(model_dir)? {
        let mut warnings = Vec::new();
        if pbtxt.exists() {
            warnings.push(format!(
                "{TRITON_CONFIG_FILE} ignored: {CONFIG_FILE} takes precedence"
            ));
        }
        return Ok(LoadedConfig {
            config,
            source: ConfigSource::Toml,
            declared: None,
            warnings,
        });
    }
    let Some(text) = read_if_present(&pbtxt)? else {
        return Ok(LoadedConfig {
            config: ModelConfig::default(),
            source: ConfigSource::Default,
            declared: None,
            warnings: Vec::new(),
        });
    };
    let invalid = |message: String| ConfigError::Invalid {
        path: pbtxt.clone(),
        message,
    };
    let triton = parse_triton_config(&text).map_err(invalid)?;
    if let Some(name) = &triton.name {
        // "." or a path ending in ".." has no file name of its own: ask the file system.
        let dir = model_dir.file_name().map(PathBuf::from).or_else(|| {
            fs::canonicalize(model_dir)
                .ok()?
                .file_name()
                .map(PathBuf::from)
        });
        if dir.as_deref() != Some(Path::new(name)) {
            let dir = dir.unwrap_or_default();
            return Err(invalid(format!(
                "name: \"{name}\" does not match the model directory \"{}\"",
                dir.display()
            )));
        }
    }
    Ok(LoadedConfig {
        config: triton.config,
        source: ConfigSource::TritonPbtxt,
        declared: Some(DeclaredSignature {
            max_batch_size: triton.max_batch_size,
            inputs: triton.inputs,
            outputs: triton.outputs,
        }),
        warnings: triton.warnings,
    })
}

/// Reads a model's configuration from `model_dir` (see [`load_model_config`] for which file);
/// a model with neither file gets the defaults.
pub fn load_config(model_dir: &Path) -> Result<ModelConfig, ConfigError> {
    load_model_config(model_dir).map(|loaded| loaded.config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_from_the_model_directory() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join(CONFIG_FILE),
            "[engine_options]\noptimized_model_path = \"opt.onnx\"\n",
        )
        .unwrap();
        let c = load_config(dir.path()).unwrap();
        assert_eq!(
            c.engine_options.optimized_model_path,
            Some(dir.path().join("opt.onnx"))
        );
        assert_eq!(
            load_config(&dir.path().join("none")).unwrap(),
            ModelConfig::default()
        );
    }

    const PBTXT: &str = "name: \"resnet\"\nplatform: \"onnxruntime_onnx\"\nmax_batch_size: 4\n\
                         input [ { name: \"x\" data_type: TYPE_FP32 dims: [ 3 ] } ]\n\
                         dynamic_batching { }\nmodel_warmup [ { name: \"w\" batch_size: 1 } ]\n";

    #[test]
    fn pbtxt_when_there_is_no_toml() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("resnet");
        fs::create_dir(&dir).unwrap();
        let loaded = load_model_config(&dir).unwrap();
        assert_eq!(loaded.source, ConfigSource::Default);
        assert_eq!(loaded.config, ModelConfig::default());

        fs::write(dir.join(TRITON_CONFIG_FILE), PBTXT).unwrap();
        let loaded = load_model_config(&dir).unwrap();
        assert_eq!(loaded.source, ConfigSource::TritonPbtxt);
        assert_eq!(loaded.config.batching.max_batch_size, Some(4));
        let declared = loaded.declared.unwrap();
        assert_eq!(declared.max_batch_size, 4);
        assert_eq!(declared.inputs[0].name, "x");
        assert!(declared.outputs.is_empty());
        assert_eq!(loaded.warnings, ["model_warmup: not used by Quiver"]);
        assert_eq!(load_config(&dir).unwrap().batching.max_batch_size, Some(4));
        // The directory's own name when the path has none.
        let here = load_model_config(&dir.join("."));
        assert!(here.is_ok(), "{here:?}");
    }

    #[test]
    fn pbtxt_name_must_match_the_directory() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("other");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join(TRITON_CONFIG_FILE), PBTXT).unwrap();
        let e = load_model_config(&dir).unwrap_err();
        let ConfigError::Invalid { path, message } = &e else {
            panic!("{e}");
        };
        assert_eq!(path, &dir.join(TRITON_CONFIG_FILE));
        assert!(
            message.contains("\"resnet\"") && message.contains("\"other\""),
            "{e}"
        );

        fs::write(
            dir.join(TRITON_CONFIG_FILE),
            "platform: \"onnxruntime_onnx\"",
        )
        .unwrap();
        assert!(load_model_config(&dir).is_ok());
        fs::write(dir.join(TRITON_CONFIG_FILE), "platform \"x\"").unwrap();
        let e = load_model_config(&dir).unwrap_err().to_string();
        assert!(
            e.contains(TRITON_CONFIG_FILE) && e.contains("line 1"),
            "{e}"
        );
    }

    #[test]
    fn toml_wins_over_pbtxt() {
        let repo = tempfile::tempdir().unwrap();
        let dir = repo.path().join("m");
        fs::create_dir(&dir).unwrap();
        // Invalid for this directory, so reading it at all would fail the load.
        fs::write(dir.join(TRITON_CONFIG_FILE), PBTXT).unwrap();
        fs::write(dir.join(CONFIG_FILE), "[batching]\nmax_batch_size = 32\n").unwrap();
        let loaded = load_model_config(&dir).unwrap();
        assert_eq!(loaded.source, ConfigSource::Toml);
        assert_eq!(loaded.config.batching.max_batch_size, Some(32));
        assert_eq!(loaded.declared, None);
        assert_eq!(
            loaded.warnings,
            ["config.pbtxt ignored: config.toml takes precedence"]
        );
    }
}
