//! What can go wrong with a metadata store. Every message names the store (a PostgreSQL URL
//! without its password) and what failed.

/// A metadata store could not be opened, read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// The URL names no store this build opens.
    #[error("metadata store {url}: {message}")]
    InvalidUrl {
        /// The URL, without any password.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// The store could not be reached: connection refused or timed out, or lost and not
    /// re-established.
    #[error("metadata store {store} is unreachable: {message}")]
    Unreachable {
        /// The store ([`MetadataStore::location`](crate::MetadataStore::location)).
        store: String,
        /// What failed, and why.
        message: String,
    },
    /// The store could not be opened or set up: a file or directory that cannot be created, a
    /// login or database the server refused, a migration that failed.
    #[error("metadata store {store}: cannot open: {message}")]
    Open {
        /// The store.
        store: String,
        /// What failed, and why.
        message: String,
    },
    /// A read or a write failed.
    #[error("metadata store {store}: {message}")]
    Query {
        /// The store.
        store: String,
        /// What failed, and why.
        message: String,
    },
    /// The arguments cannot be stored (a JSON null policy, a version above `i64::MAX`).
    #[error("metadata store {store}: {message}")]
    Invalid {
        /// The store.
        store: String,
        /// What was refused.
        message: String,
    },
    /// The store holds something this build did not write (JSON that does not parse, a
    /// negative version).
    #[error("metadata store {store}: stored data is invalid: {message}")]
    Corrupt {
        /// The store.
        store: String,
        /// What is wrong.
        message: String,
    },
}

impl MetadataError {
    /// Whether the store could not be reached (as opposed to refusing what was asked): worth
    /// retrying later.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }
}

/// An error and its sources, as one line: the database clients put the detail in the sources
/// (PostgreSQL's "db error" says nothing on its own).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        // Some wrappers repeat their source's message; say it once.
        if !text.ends_with(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
