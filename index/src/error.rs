//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the index, the metrics store or retention.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file system operation failed.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// tantivy failed on a partition.
    #[error("tantivy error in partition {partition}: {source}")]
    Tantivy {
        /// The partition directory (`<root>/<kind>/<day>`).
        partition: PathBuf,
        /// The underlying error.
        source: tantivy::TantivyError,
    },
    /// Another process holds the writer lock of the index root.
    #[error("index root {path} is locked by another writer process; open it with `open_reader` instead")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A write or delete was attempted on an index opened with `open_reader`.
    #[error("index at {root} is open read-only; `{operation}` needs the writer (the collector)")]
    ReadOnly {
        /// The index root.
        root: PathBuf,
        /// What was attempted.
        operation: &'static str,
    },
    /// A partition's schema lacks a field this version needs.
    #[error("partition {partition} has no field `{field}`; it was written by an incompatible version")]
    SchemaMismatch {
        /// The partition directory.
        partition: PathBuf,
        /// The missing field.
        field: &'static str,
    },
    /// A stored record could not be decoded.
    #[error("stored record in partition {partition} is corrupt: {reason}")]
    CorruptRecord {
        /// The partition directory.
        partition: PathBuf,
        /// Why it could not be decoded.
        reason: String,
    },
    /// An [`crate::IndexSettings`] value is unusable.
    #[error("invalid index setting `{field}`: {reason}")]
    InvalidSettings {
        /// The setting.
        field: &'static str,
        /// What is wrong with it and what would work.
        reason: String,
    },
    /// A request is outside what the index serves.
    #[error("invalid request: `{field}` {reason}")]
    InvalidRequest {
        /// The offending request field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl IndexError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> IndexError {
        IndexError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn tantivy(partition: impl Into<PathBuf>, source: tantivy::TantivyError) -> IndexError {
        IndexError::Tantivy {
            partition: partition.into(),
            source,
        }
    }
}

/// Result alias of this crate.
pub type Result<T, E = IndexError> = std::result::Result<T, E>;
