//! Reads a model's `config.toml` into the [`ModelConfig`] types. Unknown keys are errors (a
//! misspelt key would otherwise be ignored without a word), and every error names the key.

use std::path::Path;

use crate::files::read_if_present;
use crate::types::config::{ModelConfig, VersionPolicy};
use crate::types::layout::{CONFIG_FILE, check_label};
use crate::types::read::ConfigError;

/// `model_dir/config.toml`, if there is one.
pub(crate) fn load_toml(model_dir: &Path) -> Result<Option<ModelConfig>, ConfigError> {
    let path = model_dir.join(CONFIG_FILE);
    let Some(text) = read_if_present(&path)? else {
        return Ok(None);
    };
    let mut config = parse_config(&text).map_err(|message| ConfigError::Invalid {
        path: path.clone(),
        message,
    })?;
    if let Some(saved) = &mut config.engine_options.optimized_model_path
        && saved.is_relative()
    {
        *saved = model_dir.join(&saved);
    }
    Ok(Some(config))
}

/// Parses the text of a `config.toml`; the error names the key and what was expected.
pub fn parse_config(text: &str) -> Result<ModelConfig, String> {
    let config: ModelConfig = toml::from_str(text).map_err(|e| {
        // toml's message spans several lines with a caret under the culprit; one line reads
        // better in a status message, and the key and reason are all in the last line.
        e.message().trim().to_owned()
            + &e.span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default()
    })?;
    for (key, value) in [
        ("intra_op_threads", config.engine_options.intra_op_threads),
        ("inter_op_threads", config.engine_options.inter_op_threads),
    ] {
        if value == Some(0) {
            return Err(format!(
                "engine_options.{key}: expected a positive number of threads, got 0"
            ));
        }
    }
    let batching = &config.batching;
    for (key, value) in [
        ("max_queue_size", batching.max_queue_size),
        ("instances", batching.instances),
    ] {
        if value == Some(0) {
            return Err(format!("batching.{key}: expected a positive number, got 0"));
        }
    }
    if let Some(preferred) = &batching.preferred_batch_sizes {
        let max = batching.max_batch_size.unwrap_or(usize::MAX);
        if let Some(bad) = preferred.iter().find(|&&p| p == 0 || p > max) {
            return Err(format!(
                "batching.preferred_batch_sizes: {bad} is not between 1 and max_batch_size ({max})"
            ));
        }
    }
    if let VersionPolicy::Latest(0) = config.version_policy {
        return Err("version_policy.latest: expected at least 1 version, got 0".into());
    }
    if let Some((label, _)) = config.labels.iter().find(|(_, v)| **v == 0) {
        return Err(format!(
            "labels.{label}: versions are positive integers, got 0"
        ));
    }
    if let Some(label) = config.labels.keys().find(|l| check_label(l).is_err()) {
        return Err(format!(
            "labels: '{label}' is not a label (letters, digits, '_', '-', '.')"
        ));
    }
    if let Some(traffic) = &config.traffic {
        traffic.check().map_err(|e| format!("traffic: {e}"))?;
    }
    if let Some(log) = &config.payload_log {
        if !(0.0..=1.0).contains(&log.sample) {
            return Err(format!(
                "payload_log.sample: expected a share from 0 to 1, got {}",
                log.sample
            ));
        }
        let known = log
            .sink
            .strip_prefix("file:")
            .is_some_and(|path| !path.is_empty())
            || log.sink.starts_with("http://");
        if !known {
            return Err(format!(
                "payload_log.sink: expected \"file:PATH\" or \"http://HOST:PORT/PATH\", got \"{}\"",
                log.sink
            ));
        }
        if log.queue == Some(0) {
            return Err("payload_log.queue: expected a positive number, got 0".into());
        }
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::config::{EngineChoice, Rollover, Warmup};
    use quiver_engine_api::OptimizationLevel;

    #[test]
    fn payload_logs_are_checked() {
        assert_eq!(parse_config("").unwrap().payload_log, None);
        let c = parse_config("[payload_log]\nsink = \"file:log.jsonl\"\n").unwrap();
        let log = c.payload_log.unwrap();
        assert_eq!((log.sample, log.queue), (1.0, None));
        let c = parse_config("[payload_log]\nsample = 0.01\nsink = \"http://c:80/e\"\nqueue = 8\n")
            .unwrap();
        assert_eq!(c.payload_log.unwrap().queue, Some(8));
        for (bad, says) in [
            ("sample = 1.5\nsink = \"file:x\"", "payload_log.sample"),
            ("sink = \"ftp://x\"", "payload_log.sink"),
            ("sink = \"file:\"", "payload_log.sink"),
            ("sink = \"file:x\"\nqueue = 0", "payload_log.queue"),
            ("sample = 0.5", "sink"),
        ] {
            let e = parse_config(&format!("[payload_log]\n{bad}\n")).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn everything_is_optional() {
        assert_eq!(parse_config("").unwrap(), ModelConfig::default());
    }

    #[test]
    fn reads_engine_and_options() {
        let c = parse_config(
            "engine = \"onnxruntime\"\n[engine_options]\nintra_op_threads = 2\n\
             graph_optimization_level = \"basic\"\noptimized_model_path = \"o.onnx\"\n",
        )
        .unwrap();
        assert_eq!(c.engine, Some(EngineChoice::named("onnxruntime")));
        assert_eq!(c.engine_options.intra_op_threads, Some(2));
        assert_eq!(
            c.engine_options.graph_optimization_level,
            Some(OptimizationLevel::Basic)
        );
    }

    #[test]
    fn the_cache_is_off_unless_bounded() {
        assert_eq!(parse_config("").unwrap().cache.max_bytes, None);
        let c = parse_config("[cache]\nmax_bytes = 1048576\n").unwrap();
        assert_eq!(c.cache.max_bytes, Some(1 << 20));
        let e = parse_config("[cache]\nmax_entries = 5\n").unwrap_err();
        assert!(e.contains("max_entries"), "{e}");
    }

    #[test]
    fn any_engine_name_parses_and_the_server_checks_it() {
        let engine = |text: &str| parse_config(text).map(|c| c.engine);
        assert_eq!(
            engine("engine = \"openvino\"\n"),
            Ok(Some(EngineChoice::Named("openvino".into())))
        );
        assert_eq!(engine("engine = \"AUTO\"\n"), Ok(Some(EngineChoice::Auto)));
        assert!(engine("engine = \"\"\n").is_err());
    }

    #[test]
    fn errors_name_the_key() {
        let e = parse_config("engine = \"tract; rm\"").unwrap_err();
        assert!(
            e.contains("not an engine name") && e.contains("onnxruntime"),
            "{e}"
        );
        let e = parse_config("engin = \"tract\"").unwrap_err();
        assert!(e.contains("engin"), "{e}");
        let e = parse_config("[engine_options]\nintra_op_threads = -1").unwrap_err();
        assert!(e.contains("line 2"), "{e}");
        let e = parse_config("[engine_options]\ninter_op_threads = 0").unwrap_err();
        assert!(e.contains("engine_options.inter_op_threads"), "{e}");
        let e = parse_config("[engine_options]\ngraph_optimization_level = \"max\"").unwrap_err();
        assert!(e.contains("max"), "{e}");
        let e = parse_config("[batching]\nmax_batch_size = 8\npreferred_batch_sizes = [4, 16]")
            .unwrap_err();
        assert!(e.contains("batching.preferred_batch_sizes: 16"), "{e}");
        let e = parse_config("[batching]\ninstances = 0").unwrap_err();
        assert!(e.contains("batching.instances"), "{e}");
        let c = parse_config("[batching]\nmax_batch_size = 64\nmax_queue_delay_us = 500").unwrap();
        assert_eq!(c.batching.max_batch_size, Some(64));
    }

    #[test]
    fn traffic_tables() {
        let c = parse_config(
            "[traffic]\nsticky_key = \"x-user-id\"\n[[traffic.split]]\nversion = 1\nweight = 90\n\
             [[traffic.split]]\nlabel = \"canary\"\nweight = 10\n[traffic.shadow]\nversion = 3\n",
        )
        .unwrap();
        let traffic = c.traffic.unwrap();
        assert_eq!(traffic.split.len(), 2);
        assert_eq!(traffic.shadow.unwrap().percent, 100);
        let e = parse_config("[[traffic.split]]\nversion = 1\nweight = 90\n").unwrap_err();
        assert!(
            e.contains("traffic: the split's weights add up to 90"),
            "{e}"
        );
    }

    #[test]
    fn version_policies_and_labels() {
        let c = parse_config("version_policy = \"all\"").unwrap();
        assert_eq!(c.version_policy, VersionPolicy::All);
        let c = parse_config("version_policy = { latest = 2 }").unwrap();
        assert_eq!(c.version_policy.select(&[1, 2, 5]), vec![2, 5]);
        let c = parse_config("version_policy = { specific = [1, 3] }").unwrap();
        assert_eq!(c.version_policy.select(&[1, 2, 5]), vec![1]);
        assert_eq!(VersionPolicy::default().select(&[]), Vec::<u64>::new());
        assert!(
            parse_config("version_policy = { latest = 0 }")
                .unwrap_err()
                .contains("version_policy.latest")
        );
        let c = parse_config("[labels]\nstable = 1\ncanary = 2\n").unwrap();
        assert_eq!(c.labels["canary"], 2);
        assert!(
            parse_config("[labels]\nstable = 0")
                .unwrap_err()
                .contains("labels.stable")
        );
        assert!(
            parse_config("[labels]\n\"a b\" = 1")
                .unwrap_err()
                .contains("a b")
        );
        let c =
            parse_config("[lifecycle]\nrollover = \"unload_first\"\nwarmup = \"none\"").unwrap();
        assert_eq!(c.lifecycle.rollover, Rollover::UnloadFirst);
        assert_eq!(c.lifecycle.warmup, Warmup::None);
    }
}
