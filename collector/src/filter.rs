//! The hook for dropping records at ingest by live settings (minimum level, sampling).

use owl_model::LogRecord;

/// Decides, per record, whether ingest stores it. Called after masking, before the record is
/// written to the WAL; a record it refuses is answered as `filtered`, not stored, and not retried
/// by agents. Implementations read their settings live (an `ArcSwap` or atomics), so a change
/// applies to the next request without a restart.
pub trait IngestFilter: Send + Sync + 'static {
    /// Whether `record` is stored.
    fn admit(&self, record: &LogRecord) -> bool;
}

/// Stores every record: the filter of a collector with no ingest settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct AdmitAll;

impl IngestFilter for AdmitAll {
    fn admit(&self, _record: &LogRecord) -> bool {
        true
    }
}
