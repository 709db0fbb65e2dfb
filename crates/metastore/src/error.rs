//! The crate's one error type.

use std::path::PathBuf;

/// A boxed error for sources that are not one concrete type (transport, server status, text).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything a [`MetadataStore`](crate::MetadataStore) call can fail with.
///
/// Messages say what was being done and with which ids, so a user can act on them.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// No etcd endpoint answered (connect refused, timeout, no leader). Retriable.
    #[error("cannot reach etcd at {endpoints}: {source}")]
    Unavailable {
        endpoints: String,
        #[source]
        source: BoxError,
    },
    /// The requested watch start revision is older than the retained history.
    /// Re-list with [`range`](crate::MetadataStore::range) and watch from its revision + 1.
    #[error(
        "metadata history before revision {revision} has been compacted; re-list and watch again"
    )]
    Compacted { revision: i64 },
    /// The lease expired, was revoked, or never existed.
    #[error("lease {lease:#x} not found (expired or revoked)")]
    LeaseNotFound { lease: i64 },
    /// The embedded store could not read or write its files.
    #[error("metadata store I/O on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The embedded store's files do not parse; the data dir needs inspection.
    #[error("metadata store file {} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
    /// The store (or the watch feeding this stream) has shut down.
    #[error("metadata store is closed")]
    Closed,

    /// The TLS settings for etcd (`etcd.ssl.*`) cannot be used.
    #[error("invalid config key `{key}`: {message}")]
    TlsConfig { key: String, message: String },
    /// etcd refused the request for a reason not covered above.
    #[error("etcd request failed: {0}")]
    Etcd(#[source] etcd_client::Error),
}

/// Whether retrying the same call later can succeed without the caller changing anything.
///
/// The etcd implementation already maps transport failures, timeouts and "no leader" to
/// [`MetaError::Unavailable`], so that is the one retriable kind. `Compacted` is not
/// retriable as such: the caller must re-list first.
pub fn is_retriable(err: &MetaError) -> bool {
    matches!(err, MetaError::Unavailable { .. })
}
