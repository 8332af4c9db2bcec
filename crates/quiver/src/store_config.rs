//! Where models in object stores are cached, and how they are downloaded (`--data-dir`,
//! `--model-cache-dir`, `--model-cache-max-bytes`, `--model-download-concurrency`), and the
//! model manager's sources built from `--model-repository` / `--model-config-file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use quiver_core::{Sources, Stores};
use quiver_store::{Location, Store, StoreOptions};

/// Object stores and the local model cache (docs/model-stores.md).
#[derive(Debug, Clone, Args)]
pub struct StoreConfig {
    /// Where the server keeps its own files (the model cache, by default). Default:
    /// `$XDG_DATA_HOME/quiver`, else `$HOME/.local/share/quiver`, else `./quiver-data`; made
    /// only when something is stored in it.
    #[arg(long, env = "QUIVER_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Where versions from an object store (`--model-repository s3://…`) are downloaded to and
    /// loaded from; a restart with an unchanged store loads from it without downloading.
    /// Default: `model-cache` in --data-dir.
    #[arg(long, env = "QUIVER_MODEL_CACHE_DIR", value_name = "DIR")]
    pub model_cache_dir: Option<PathBuf>,

    /// Most bytes a store's cached versions may take: versions no longer served are removed,
    /// least recently used first, to keep within it (served ones always stay). Default: no
    /// bound.
    #[arg(long, env = "QUIVER_MODEL_CACHE_MAX_BYTES", value_name = "BYTES",
        value_parser = clap::value_parser!(u64).range(1..))]
    pub model_cache_max_bytes: Option<u64>,

    /// Files downloaded at once from a store.
    #[arg(long, env = "QUIVER_MODEL_DOWNLOAD_CONCURRENCY", default_value_t = 8, value_name = "N",
        value_parser = clap::value_parser!(u64).range(1..=256))]
    pub model_download_concurrency: u64,
}

impl StoreConfig {
    /// The data directory, as `--data-dir` or its default says.
    pub fn data_dir(&self) -> PathBuf {
        if let Some(dir) = &self.data_dir {
            return dir.clone();
        }
        let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        if let Some(xdg) = from_env("XDG_DATA_HOME") {
            return Path::new(&xdg).join("quiver");
        }
        if let Some(home) = from_env("HOME") {
            return Path::new(&home).join(".local/share/quiver");
        }
        PathBuf::from("quiver-data")
    }

    /// How stores cache and download.
    pub fn options(&self) -> StoreOptions {
        let cache = self
            .model_cache_dir
            .clone()
            .unwrap_or_else(|| self.data_dir().join("model-cache"));
        let mut options = StoreOptions::new(cache);
        options.max_cache_bytes = self.model_cache_max_bytes;
        options.concurrency = usize::try_from(self.model_download_concurrency).unwrap_or(8);
        options
    }
}

/// The manager's sources: TF Serving's model config file, else the repository, a local
/// directory or an object store URL.
pub fn sources(
    repository: Option<&Path>,
    config_file: Option<&Path>,
    stores: &StoreConfig,
) -> anyhow::Result<Sources> {
    if let Some(file) = config_file {
        let stores = Arc::new(Stores::new(stores.options()));
        return Ok(Sources::ConfigFile(file.to_owned(), Some(stores)));
    }
    let Some(repository) = repository else {
        anyhow::bail!("give --model-repository or --model-config-file");
    };
    Ok(match Location::parse(&repository.to_string_lossy())? {
        Location::Local(dir) => Sources::Repository(dir),
        Location::Remote(url) => Sources::Remote(Store::open(&url, stores.options())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(data_dir: Option<&str>, cache: Option<&str>) -> StoreConfig {
        StoreConfig {
            data_dir: data_dir.map(PathBuf::from),
            model_cache_dir: cache.map(PathBuf::from),
            model_cache_max_bytes: None,
            model_download_concurrency: 8,
        }
    }

    #[test]
    fn the_cache_is_in_the_data_directory_unless_given() {
        assert_eq!(
            config(Some("/var/lib/quiver"), None).options().cache_dir,
            Path::new("/var/lib/quiver/model-cache")
        );
        assert_eq!(
            config(Some("/d"), Some("/cache")).options().cache_dir,
            Path::new("/cache")
        );
    }

    #[test]
    fn local_repositories_stay_local() {
        let sources = sources(Some(Path::new("/models")), None, &config(None, None)).unwrap();
        assert!(matches!(sources, Sources::Repository(dir) if dir == Path::new("/models")));
        let e = sources_error("ftp://host/models");
        assert!(e.contains("unknown scheme"), "{e}");
    }

    fn sources_error(repository: &str) -> String {
        sources(Some(Path::new(repository)), None, &config(None, None))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }
}
