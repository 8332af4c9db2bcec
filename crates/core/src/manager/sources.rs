//! Where the manager finds models: a repository directory, TF Serving's model config file, or a
//! fixed list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use quiver_repository::{self as repository, RepositoryError, VersionPolicy};

/// Where one model's versions live, and what overrides the model's own config (an entry of
/// TF Serving's model config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSource {
    /// Model name.
    pub name: String,
    /// The directory holding `VERSION/model.onnx`.
    pub dir: PathBuf,
    /// Replaces the config's `version_policy` when set.
    pub version_policy: Option<VersionPolicy>,
    /// Replaces the config's `[labels]` when set.
    pub labels: Option<BTreeMap<String, u64>>,
}

impl ModelSource {
    /// A model of a repository: its directory, nothing overridden.
    pub fn in_repository(name: &str, dir: &Path) -> Self {
        Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            version_policy: None,
            labels: None,
        }
    }
}

/// Where the manager finds models.
#[derive(Debug, Clone)]
pub enum Sources {
    /// Every model directory of a repository (`--model-repository`).
    Repository(PathBuf),
    /// A fixed list of models.
    List(Vec<ModelSource>),
    /// The models a TF Serving model config file lists (`--model-config-file`), read again at
    /// every poll.
    ConfigFile(PathBuf),
}

impl Sources {
    /// Every model the sources hold now.
    pub fn list(&self) -> Result<Vec<ModelSource>, RepositoryError> {
        match self {
            Sources::List(list) => Ok(list.clone()),
            Sources::ConfigFile(path) => {
                let models = repository::read_model_config_file(path).map_err(|e| {
                    RepositoryError::Config {
                        message: e.to_string(),
                    }
                })?;
                Ok(models
                    .into_iter()
                    .map(|m| {
                        for warning in &m.warnings {
                            tracing::debug!(model = %m.name, "{warning}");
                        }
                        ModelSource {
                            name: m.name,
                            dir: m.base_path,
                            version_policy: m.version_policy,
                            labels: (!m.labels.is_empty()).then_some(m.labels),
                        }
                    })
                    .collect())
            }
            Sources::Repository(root) => {
                let scan = repository::scan(root)?;
                for skipped in &scan.skipped {
                    tracing::debug!(path = %skipped.path.display(), reason = %skipped.reason, "skipped repository entry");
                }
                Ok(scan
                    .models
                    .iter()
                    .map(|m| ModelSource::in_repository(&m.name, &m.path))
                    .collect())
            }
        }
    }
}
