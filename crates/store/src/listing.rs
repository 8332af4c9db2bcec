//! One listing of a remote repository, grouped by model and version — by whole path segments,
//! so a model named `resnet` never picks up `resnet50/`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The file every version directory must hold.
pub const MODEL_FILE: &str = "model.onnx";

/// One object, as the listing saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// Its path under the model's directory, `/`-separated (`1/model.onnx`, `config.toml`).
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its ETag (or object version), when the store gives one: what tells a changed object.
    pub etag: Option<String>,
}

/// A model's objects as one listing saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelListing {
    /// Every object under the model's directory, by its path there.
    pub files: BTreeMap<String, RemoteFile>,
}

impl ModelListing {
    /// The version numbers the listing holds: directories named by a positive integer that
    /// hold a `model.onnx` (a version still uploading its model file is not one yet).
    pub fn versions(&self) -> Vec<u64> {
        let mut versions: Vec<u64> = self
            .files
            .keys()
            .filter_map(|path| {
                let (dir, rest) = path.split_once('/')?;
                (rest == MODEL_FILE).then(|| parse_version(dir)).flatten()
            })
            .collect();
        versions.sort_unstable();
        versions.dedup();
        versions
    }

    /// The files of version `version`, with their paths under the version's directory.
    pub fn version_files(&self, version: u64) -> Vec<RemoteFile> {
        let prefix = format!("{version}/");
        self.files
            .values()
            .filter_map(|f| {
                let path = f.path.strip_prefix(&prefix)?;
                Some(RemoteFile {
                    path: path.to_owned(),
                    ..f.clone()
                })
            })
            .collect()
    }

    /// The files beside the versions (`config.toml`, `config.pbtxt`, labels, tokenizers).
    pub fn model_files(&self) -> Vec<RemoteFile> {
        self.files
            .values()
            .filter(|f| {
                f.path
                    .split_once('/')
                    .is_none_or(|(dir, _)| parse_version(dir).is_none())
            })
            .cloned()
            .collect()
    }

    /// The number of bytes of version `version`.
    pub fn version_bytes(&self, version: u64) -> u64 {
        self.version_files(version).iter().map(|f| f.size).sum()
    }
}

/// Groups a repository's objects (paths relative to the repository, `/`-separated) by model:
/// the first segment is the model's name, the rest the path in its directory. Objects at the
/// repository's top level (a README) and folder markers (`name/`) are left out.
pub fn group(objects: impl IntoIterator<Item = RemoteFile>) -> BTreeMap<String, ModelListing> {
    let mut models: BTreeMap<String, ModelListing> = BTreeMap::new();
    for object in objects {
        let Some((model, path)) = object.path.split_once('/') else {
            continue;
        };
        if model.is_empty() || path.is_empty() || path.ends_with('/') || model.starts_with('.') {
            continue;
        }
        let file = RemoteFile {
            path: path.to_owned(),
            ..object
        };
        models
            .entry(model.to_owned())
            .or_default()
            .files
            .insert(file.path.clone(), file);
    }
    models
}

fn parse_version(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str) -> RemoteFile {
        RemoteFile {
            path: path.into(),
            size: 1,
            etag: Some(format!("\"{path}\"")),
        }
    }

    #[test]
    fn models_are_whole_folders() {
        let models = group(
            [
                "resnet/1/model.onnx",
                "resnet/config.toml",
                "resnet50/1/model.onnx",
                "resnet50/2/model.onnx",
                "README.md",
                "empty/",
            ]
            .map(file),
        );
        assert_eq!(models.keys().collect::<Vec<_>>(), ["resnet", "resnet50"]);
        assert_eq!(models["resnet"].versions(), [1]);
        assert_eq!(models["resnet50"].versions(), [1, 2]);
    }

    #[test]
    fn versions_need_their_model_file() {
        let models = group(
            [
                "m/1/model.onnx",
                "m/1/extra.bin",
                "m/2/config.txt",
                "m/0/model.onnx",
                "m/v3/model.onnx",
                "m/10/model.onnx",
                "m/labels.txt",
                "m/tokenizer/tokenizer.json",
            ]
            .map(file),
        );
        let m = &models["m"];
        assert_eq!(m.versions(), [1, 10]);
        let one: Vec<String> = m.version_files(1).into_iter().map(|f| f.path).collect();
        assert_eq!(one, ["extra.bin", "model.onnx"]);
        assert_eq!(m.version_bytes(1), 2);
        let beside: Vec<String> = m.model_files().into_iter().map(|f| f.path).collect();
        assert_eq!(
            beside,
            [
                "0/model.onnx",
                "labels.txt",
                "tokenizer/tokenizer.json",
                "v3/model.onnx"
            ]
        );
    }
}
