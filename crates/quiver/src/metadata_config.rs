//! The metadata store (`--metadata-store`, `--metadata-poll-secs`): where traffic policies,
//! API-set labels, the audit log and the load history are kept (docs/experiments.md).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

/// The metadata store.
#[derive(Debug, Clone, Args)]
pub struct MetadataConfig {
    /// Where traffic policies, labels set through the admin API, the audit log and the load
    /// history are kept: `sqlite:PATH` (created with its schema on first start) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (several replicas share one state), or
    /// `none` (no admin API). Default: `sqlite:` `metadata.sqlite3` in --data-dir.
    #[arg(long, env = "QUIVER_METADATA_STORE", value_name = "URL")]
    pub metadata_store: Option<String>,

    /// How often to look for changes another replica made to the metadata store, in seconds
    /// (PostgreSQL also announces them at once, through LISTEN/NOTIFY).
    #[arg(long, env = "QUIVER_METADATA_POLL_SECS", default_value_t = 2.0, value_name = "SECONDS",
        value_parser = poll_secs)]
    pub metadata_poll_secs: f64,
}

fn poll_secs(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(secs) if secs.is_finite() && (0.05..=3600.0).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a number of seconds from 0.05 to 3600"
        )),
    }
}

impl MetadataConfig {
    /// The store's URL (`None`: no store).
    pub fn url(&self, data_dir: &Path) -> Option<String> {
        match self.metadata_store.as_deref() {
            Some("none") => None,
            Some(url) => Some(url.to_owned()),
            None => Some(quiver_metadata::default_url(data_dir)),
        }
    }

    /// How often to look for others' changes.
    pub fn poll(&self) -> Duration {
        Duration::from_secs_f64(self.metadata_poll_secs)
    }
}

/// Opens the store and puts its state in force on `models` (blocking: call off the runtime).
/// A store that cannot be opened or read stops start-up with the reason.
pub fn start(
    config: &MetadataConfig,
    data_dir: &Path,
    models: Arc<quiver_core::ModelManager>,
    replica: &str,
) -> anyhow::Result<Option<Arc<quiver_core::admin::Admin>>> {
    let Some(url) = config.url(data_dir) else {
        tracing::info!("no metadata store (--metadata-store none): the admin API is off");
        return Ok(None);
    };
    let store = quiver_metadata::open(&url).map_err(|e| {
        let hint = if config.metadata_store.is_none() {
            " (the default store is a file in --data-dir: give a writable --data-dir, another \
             --metadata-store, or --metadata-store none)"
        } else {
            ""
        };
        anyhow::anyhow!("cannot open the metadata store (--metadata-store): {e}{hint}")
    })?;
    let admin = quiver_core::admin::Admin::start(models, store, replica, config.poll())
        .map_err(anyhow::Error::msg)?;
    Ok(Some(admin))
}
