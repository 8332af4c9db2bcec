//! What a version is loaded from, summed up in one number: a change means "load it again".

use std::collections::BTreeMap;
use std::path::Path;

use quiver_repository::{ModelConfig, VersionDir};

/// Of the config, and the size and modification time of the model file and of the files its
/// processing reads (a new labels.txt or tokenizer.json reloads the version).
pub(crate) fn fingerprint(config: &ModelConfig, model_dir: &Path, version: &VersionDir) -> u64 {
    use std::hash::{Hash as _, Hasher as _};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // Labels and traffic are routing, not part of what is loaded: moving one must not reload
    // anything.
    let loaded_from = ModelConfig {
        labels: BTreeMap::new(),
        traffic: None,
        ..config.clone()
    };
    format!("{loaded_from:?}").hash(&mut hasher);
    let files = config.processing_files();
    let files = files.iter().map(|file| model_dir.join(file));
    for file in std::iter::once(version.model_file.clone()).chain(files) {
        if let Ok(meta) = std::fs::metadata(&file) {
            meta.len().hash(&mut hasher);
            meta.modified().ok().hash(&mut hasher);
        }
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_do_not_count_but_the_config_and_file_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("1/model.onnx");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"one").unwrap();
        let version = VersionDir {
            version: 1,
            model_file: file.clone(),
        };
        let config = ModelConfig::default();
        let base = fingerprint(&config, dir.path(), &version);
        let labelled = ModelConfig {
            labels: BTreeMap::from([("stable".to_owned(), 1)]),
            ..config.clone()
        };
        assert_eq!(fingerprint(&labelled, dir.path(), &version), base);
        let mut other = config.clone();
        other.batching.max_batch_size = Some(4);
        assert_ne!(fingerprint(&other, dir.path(), &version), base);
        std::fs::write(&file, b"longer").unwrap();
        assert_ne!(fingerprint(&config, dir.path(), &version), base);
    }
}
