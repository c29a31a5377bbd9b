//! The log API's domain side: what `http/logs.rs` (003 and 004 under `/api/v1/logs`) and
//! `http/crm_logs.rs` (000 under `/api/analytics-monitoring/logs`) need beyond HTTP.
//!
//! - [`params`]: query parameters, time ranges, `LOG_QUERY_TIME_RANGE_TOO_LARGE`,
//!   `LOG_QUERY_TOO_BROAD`, and the caller's region and environment scope applied to the filter.
//! - [`render`]: 003's LogItem and summaries, 000's log item, sizes.
//! - [`trace`]: the waterfall and timeline of a trace.
//! - [`settings`]: the log config (`owl_logconfig`) with its `alerts` section kept in the alert
//!   store.
//! - [`cleanup`]: manual cleanup, here when this process holds the index writer, queued for the
//!   collector otherwise.
//! - [`export`]: streamed CSV and NDJSON.
//! - [`stream`]: the live tail (Server-Sent Events).
//!
//! Every index call runs on the blocking pool ([`blocking`]).

pub(crate) mod cleanup;
pub(crate) mod export;
pub(crate) mod params;
pub(crate) mod render;
pub(crate) mod settings;
pub(crate) mod stream;
pub(crate) mod trace;

use owl_index::{Index, IndexError};

use crate::envelope::Failure;

pub use stream::StreamShutdown;

/// Runs an index call on the blocking pool.
pub(crate) async fn blocking<T, F>(index: &Index, call: F) -> Result<T, Failure>
where
    T: Send + 'static,
    F: FnOnce(&Index) -> Result<T, IndexError> + Send + 'static,
{
    let index = index.clone();
    tokio::task::spawn_blocking(move || call(&index))
        .await
        .map_err(|e| Failure::internal(anyhow::anyhow!("index task failed: {e}")))?
        .map_err(index_failure)
}

/// An index error as an answer: a request the index refuses is the caller's mistake.
pub(crate) fn index_failure(error: IndexError) -> Failure {
    match error {
        IndexError::InvalidRequest { field, reason } => {
            Failure::invalid_field(field, "index", format!("{field} {reason}"))
        }
        other => Failure::internal(other),
    }
}
