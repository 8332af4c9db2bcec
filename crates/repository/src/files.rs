//! Reading the files the readers parse.

use std::fs;
use std::io;
use std::path::Path;

use crate::types::read::ConfigError;

/// The text of `path`; `None` when there is no such file.
pub(crate) fn read_if_present(path: &Path) -> Result<Option<String>, ConfigError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ConfigError::Unreadable {
            path: path.to_owned(),
            source,
        }),
    }
}
