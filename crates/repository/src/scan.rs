//! Scans the repository's directories for models and their versions (`NAME/VERSION/model.onnx`),
//! passing over what does not fit the layout with the reason.

use std::fs;
use std::path::Path;

use crate::types::layout::{
    MODEL_FILE, ModelDir, RepositoryError, Scan, Skipped, VersionDir, check_model_name,
};

/// Scans the repository at `root`.
pub fn scan(root: &Path) -> Result<Scan, RepositoryError> {
    let entries = fs::read_dir(root).map_err(|source| RepositoryError::Unreadable {
        path: root.to_owned(),
        source,
    })?;
    let mut scan = Scan::default();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = file_name(&path) else {
            scan.skip(&path, "name is not valid UTF-8");
            continue;
        };
        if name.starts_with('.') {
            continue; // hidden entries, e.g. Kubernetes' `..data` links
        }
        if !path.is_dir() {
            scan.skip(&path, "not a directory (models are directories)");
            continue;
        }
        if let Err(reason) = check_model_name(&name) {
            scan.skip(&path, &reason);
            continue;
        }
        let versions = scan_versions(&path, &mut scan.skipped);
        scan.models.push(ModelDir {
            name,
            path,
            versions,
        });
    }
    scan.models.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(scan)
}

/// Scans one model directory for its versions.
pub fn scan_model(path: &Path) -> (Vec<VersionDir>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    let versions = scan_versions(path, &mut skipped);
    (versions, skipped)
}

fn scan_versions(model_dir: &Path, skipped: &mut Vec<Skipped>) -> Vec<VersionDir> {
    let mut versions = Vec::new();
    let Ok(entries) = fs::read_dir(model_dir) else {
        skipped.push(Skipped {
            path: model_dir.to_owned(),
            reason: "cannot list the model directory".into(),
        });
        return versions;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = file_name(&path).unwrap_or_default();
        if name.starts_with('.') || !path.is_dir() {
            continue; // config files and the like live beside the versions
        }
        let Some(version) = parse_version(&name) else {
            skipped.push(Skipped {
                path,
                reason: "version directories are named by a positive integer".into(),
            });
            continue;
        };
        let model_file = path.join(MODEL_FILE);
        if !model_file.is_file() {
            skipped.push(Skipped {
                path,
                reason: format!("no {MODEL_FILE} in the version directory"),
            });
            continue;
        }
        versions.push(VersionDir {
            version,
            model_file,
        });
    }
    versions.sort_by_key(|v| v.version);
    versions
}

impl Scan {
    fn skip(&mut self, path: &Path, reason: &str) {
        self.skipped.push(Skipped {
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
    }
}

fn file_name(path: &Path) -> Option<String> {
    path.file_name()?.to_str().map(str::to_owned)
}

/// A version directory name: digits only, value at least 1.
fn parse_version(name: &str) -> Option<u64> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok().filter(|&v| v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, b"x").unwrap();
    }

    #[test]
    fn finds_models_and_versions_and_skips_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        touch(&root.join("a/1/model.onnx"));
        touch(&root.join("a/10/model.onnx"));
        touch(&root.join("a/2/model.onnx"));
        touch(&root.join("a/config.toml"));
        touch(&root.join("a/v3/model.onnx"));
        touch(&root.join("a/0/model.onnx"));
        fs::create_dir_all(root.join("a/4")).unwrap();
        touch(&root.join("b/1/model.onnx"));
        touch(&root.join("README.md"));
        fs::create_dir_all(root.join("empty")).unwrap();

        let scan = scan(root).unwrap();
        let names: Vec<_> = scan.models.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "empty"]);
        let a: Vec<_> = scan.models[0].versions.iter().map(|v| v.version).collect();
        assert_eq!(a, [1, 2, 10]);
        assert_eq!(scan.models[0].latest().unwrap().version, 10);
        assert!(scan.models[2].versions.is_empty());
        let skipped: Vec<_> = scan
            .skipped
            .iter()
            .map(|s| {
                s.path
                    .strip_prefix(root)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        for expected in ["a/v3", "a/0", "a/4", "README.md"] {
            assert!(
                skipped.contains(&expected.to_owned()),
                "{expected} not in {skipped:?}"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn follows_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store");
        touch(&store.join("v1/model.onnx"));
        let repo = dir.path().join("repo");
        fs::create_dir_all(repo.join("m")).unwrap();
        std::os::unix::fs::symlink(store.join("v1"), repo.join("m/1")).unwrap();
        std::os::unix::fs::symlink(repo.join("m"), repo.join("linked")).unwrap();
        let scan = scan(&repo).unwrap();
        assert_eq!(scan.models.len(), 2);
        assert!(scan.models.iter().all(|m| m.versions.len() == 1));
    }

    #[test]
    fn missing_root_is_an_error() {
        assert!(scan(Path::new("/definitely/not/here")).is_err());
    }

    #[test]
    fn model_names() {
        assert!(check_model_name("mobilenet_v2").is_ok());
        assert!(check_model_name("a b").is_err());
        assert!(check_model_name("").is_err());
    }
}
