//! Telling a remote repository from a local one, and opening the object store a URL names with
//! the credentials and endpoint each cloud's own environment variables give.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreScheme, RetryConfig};
use url::Url;

use crate::StoreError;

/// The URL schemes read as object stores; anything else is a local path.
pub const SCHEMES: &[&str] = &[
    "s3", "s3a", "gs", "az", "azure", "abfs", "abfss", "adl", "http", "https",
];

/// Where a repository (or a model's base path) lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A local directory (also `file://` URLs).
    Local(PathBuf),
    /// An object store URL.
    Remote(Url),
}

impl Location {
    /// Reads `text` as a URL when it has one of [`SCHEMES`] (or `file://`), else as a path.
    pub fn parse(text: &str) -> Result<Location, StoreError> {
        let Some((scheme, _)) = text.split_once("://") else {
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let scheme = scheme.to_ascii_lowercase();
        if scheme == "file" {
            let url = Url::parse(text).map_err(|e| StoreError::new(text, e.to_string()))?;
            return url
                .to_file_path()
                .map(Location::Local)
                .map_err(|()| StoreError::new(text, "not a local file URL"));
        }
        if !SCHEMES.contains(&scheme.as_str()) {
            return Err(StoreError::new(
                text,
                format!(
                    "unknown scheme '{scheme}://' (a local path, or one of: {})",
                    SCHEMES.join(", ")
                ),
            ));
        }
        let url = Url::parse(text).map_err(|e| StoreError::new(text, e.to_string()))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(StoreError::new(text, "no bucket or host in the URL"));
        }
        Ok(Location::Remote(url))
    }
}

/// The URL as logs and metrics show it: no user, password, query or fragment, which is where
/// a URL could carry a secret (an Azure SAS token, say).
pub fn display(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string().trim_end_matches('/').to_owned()
}

/// How hard a request is retried before a download or listing fails.
#[derive(Debug, Clone, Copy)]
pub struct Retries {
    /// Retries of one request.
    pub max_retries: usize,
    /// Give up retrying a request after this long.
    pub timeout: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            max_retries: 5,
            timeout: Duration::from_secs(60),
        }
    }
}

/// The store `url` names and the path of the repository in it. Credentials, region and
/// endpoint come from the environment as each cloud's tools read them (`AWS_*`, `GOOGLE_*`,
/// `AZURE_*`); a plain-HTTP endpoint is allowed, as the operator named it.
pub(crate) fn open(
    url: &Url,
    retries: Retries,
) -> Result<(Arc<dyn ObjectStore>, Path), StoreError> {
    // reqwest's TLS has no provider of its own here: rustls's ring provider, as the server's
    // listeners use. Installing it twice is harmless.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let shown = display(url);
    let failed = |e: object_store::Error| StoreError::new(&shown, e.to_string());
    let (scheme, path) =
        ObjectStoreScheme::parse(url).map_err(|e| StoreError::new(&shown, e.to_string()))?;
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: retries.max_retries,
        retry_timeout: retries.timeout,
    };
    let client = ClientOptions::new()
        .with_allow_http(true)
        .with_connect_timeout(Duration::from_secs(10));
    let store: Arc<dyn ObjectStore> = match scheme {
        ObjectStoreScheme::AmazonS3 => Arc::new(
            AmazonS3Builder::from_env()
                .with_url(url.as_str())
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(failed)?,
        ),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(failed)?,
        ),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_url(url.as_str())
                .with_retry(retry)
                .with_client_options(client)
                .build()
                .map_err(failed)?,
        ),
        ObjectStoreScheme::Http => {
            // The store is rooted at the URL's origin; the path is the repository in it.
            let mut origin = url.clone();
            origin.set_path("/");
            Arc::new(
                HttpBuilder::new()
                    .with_url(origin.as_str())
                    .with_retry(retry)
                    .with_client_options(client)
                    .build()
                    .map_err(failed)?,
            )
        }
        ObjectStoreScheme::Local | ObjectStoreScheme::Memory | _ => {
            return Err(StoreError::new(&shown, "not an object store URL"));
        }
    };
    Ok((store, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths() {
        assert_eq!(
            Location::parse("/srv/models").unwrap(),
            Location::Local("/srv/models".into())
        );
        assert_eq!(
            Location::parse("models").unwrap(),
            Location::Local("models".into())
        );
        assert_eq!(
            Location::parse("file:///srv/models").unwrap(),
            Location::Local("/srv/models".into())
        );
        for url in [
            "s3://bucket/models",
            "S3://bucket",
            "gs://bucket/a/b",
            "az://container/models",
            "abfs://container@account.dfs.core.windows.net/models",
            "https://account.blob.core.windows.net/container/models",
            "http://127.0.0.1:8080/models",
        ] {
            assert!(
                matches!(Location::parse(url).unwrap(), Location::Remote(_)),
                "{url}"
            );
        }
        let e = Location::parse("ftp://host/models")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("ftp://host/models") && e.contains("unknown scheme"),
            "{e}"
        );
        let e = Location::parse("s3:///models").unwrap_err().to_string();
        assert!(e.contains("no bucket"), "{e}");
    }

    #[test]
    fn secrets_never_shown() {
        let url =
            Url::parse("https://user:pw@account.blob.core.windows.net/c/m?sig=SECRET#x").unwrap();
        assert_eq!(display(&url), "https://account.blob.core.windows.net/c/m");
    }

    #[test]
    fn each_cloud_opens_from_its_url() {
        // No request is made: building a store only reads configuration.
        for (url, path) in [
            ("s3://bucket/models/prod", "models/prod"),
            ("gs://bucket/models", "models"),
            ("az://container/models", "models"),
            (
                "https://account.blob.core.windows.net/container/models",
                "models",
            ),
            ("http://127.0.0.1:9/repo", "repo"),
        ] {
            let url = Url::parse(url).unwrap();
            // GCS and Azure need an account or credentials from the environment; without
            // them the error names the store instead of panicking.
            match open(&url, Retries::default()) {
                Ok((_, p)) => assert_eq!(p.as_ref(), path, "{url}"),
                Err(e) => assert!(e.to_string().contains(&display(&url)), "{e}"),
            }
        }
    }
}
