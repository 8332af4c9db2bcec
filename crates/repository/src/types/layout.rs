//! The repository's layout: the files a model directory may hold, what a scan finds
//! ([`Scan`]), and the names models and version labels may take.

use std::io;
use std::path::PathBuf;

/// The file a version directory must contain.
pub const MODEL_FILE: &str = "model.onnx";

/// The config file's name in a model directory.
pub const CONFIG_FILE: &str = "config.toml";

/// Triton's config file name in a model directory.
pub const TRITON_CONFIG_FILE: &str = "config.pbtxt";

/// A model directory of the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelDir {
    /// Model name: the directory name.
    pub name: String,
    /// The model directory.
    pub path: PathBuf,
    /// Versions found, in ascending order.
    pub versions: Vec<VersionDir>,
}

impl ModelDir {
    /// The highest version, which TF Serving's default `latest` policy serves.
    pub fn latest(&self) -> Option<&VersionDir> {
        self.versions.last()
    }
}

/// One version of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    /// Version number (a positive integer).
    pub version: u64,
    /// Path to the model file.
    pub model_file: PathBuf,
}

/// Something in the repository that was passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The path passed over.
    pub path: PathBuf,
    /// Why.
    pub reason: String,
}

/// What a scan of the repository found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    /// Models, sorted by name.
    pub models: Vec<ModelDir>,
    /// Entries that do not fit the layout.
    pub skipped: Vec<Skipped>,
}

/// Errors reading the repository itself (not its entries, which are skipped).
#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    /// The repository root cannot be read.
    #[error("cannot read model repository {path}: {source}")]
    Unreadable {
        /// The repository root.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The model config file (`--model-config-file`) cannot be used.
    #[error("{message}")]
    Config {
        /// What is wrong, naming the file.
        message: String,
    },
}

/// Model names appear in URLs and metric labels, so keep them to a safe alphabet.
pub fn check_model_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "model name '{name}' must be 1-128 characters of letters, digits, '_', '-' or '.'"
        ))
    }
}

/// Checks a version label: what TF Serving accepts in a URL path segment.
pub fn check_label(label: &str) -> Result<(), String> {
    let ok = !label.is_empty()
        && label.len() <= 128
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("'{label}' is not a version label"))
    }
}
