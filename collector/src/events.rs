//! The collector's notable events: each logs and counts in one `emit()`, so a log line and its
//! metric cannot drift apart.

use std::path::Path;
use std::time::Duration;

use ::metrics::{counter, gauge, histogram};
use owl_index::RetentionReport;

use crate::metrics::*;

/// One group commit of the WAL completed.
pub(crate) struct WalSynced {
    pub entries: usize,
    pub bytes: usize,
    pub elapsed: Duration,
}

impl WalSynced {
    pub(crate) fn emit(self) {
        tracing::trace!(
            entries = self.entries,
            bytes = self.bytes,
            elapsed_us = self.elapsed.as_micros() as u64,
            "wal synced"
        );
        counter!(WAL_SYNCS_TOTAL).increment(1);
        counter!(WAL_BYTES_TOTAL).increment(self.bytes as u64);
        histogram!(WAL_SYNC_DURATION_SECONDS).record(self.elapsed.as_secs_f64());
        histogram!(WAL_SYNC_ENTRIES).record(self.entries as f64);
    }
}

/// A WAL segment reached its size and a new one was started.
pub(crate) struct WalSegmentRotated<'a> {
    pub closed: &'a Path,
    pub bytes: u64,
}

impl WalSegmentRotated<'_> {
    pub(crate) fn emit(self) {
        tracing::debug!(segment = %self.closed.display(), bytes = self.bytes, "wal segment closed");
        counter!(WAL_SEGMENTS_ROTATED_TOTAL).increment(1);
    }
}

/// Recovery found the newest segment cut short by a crash (the cut entry was never acknowledged).
pub(crate) struct WalTornTail<'a> {
    pub path: &'a Path,
    pub offset: u64,
    pub reason: &'static str,
}

impl WalTornTail<'_> {
    pub(crate) fn emit(self) {
        tracing::warn!(
            segment = %self.path.display(),
            offset = self.offset,
            reason = self.reason,
            "wal ends in a torn write (an unacknowledged request); truncated there"
        );
    }
}

/// Recovery found a bad frame or entry where a good one must be: acknowledged data is lost.
pub(crate) struct WalCorruption<'a> {
    pub path: &'a Path,
    pub offset: u64,
    pub reason: &'static str,
}

impl WalCorruption<'_> {
    pub(crate) fn emit(self) {
        tracing::error!(
            segment = %self.path.display(),
            offset = self.offset,
            reason = self.reason,
            "wal corruption: entries after this point in the segment are skipped"
        );
        counter!(WAL_CORRUPTIONS_TOTAL).increment(1);
    }
}

/// The WAL writer failed; the collector stops accepting and must be restarted.
pub(crate) struct WalWriteFailed<'a> {
    pub error: &'a crate::wal::WalError,
}

impl WalWriteFailed<'_> {
    pub(crate) fn emit(self) {
        tracing::error!(error = %self.error, "write-ahead log failed; ingest stops until the collector restarts");
    }
}

/// The WAL was replayed into the index at start.
pub(crate) struct WalReplayed {
    pub entries: u64,
    pub items: u64,
    pub checkpoint: u64,
    pub next_lsn: u64,
    pub elapsed: Duration,
}

impl WalReplayed {
    pub(crate) fn emit(self) {
        tracing::info!(
            entries = self.entries,
            items = self.items,
            checkpoint = self.checkpoint,
            next_lsn = self.next_lsn,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "write-ahead log replayed"
        );
        counter!(WAL_REPLAYED_ENTRIES_TOTAL).increment(self.entries);
    }
}

/// What one ingest request came to.
pub(crate) struct IngestAnswered {
    /// `owl`, `otlp_logs`, `otlp_traces`, ...
    pub protocol: &'static str,
    pub status: u16,
    pub elapsed: Duration,
    pub accepted: usize,
    pub duplicates: usize,
    pub rejected: usize,
    pub filtered: usize,
    pub wire_bytes: usize,
    pub decoded_bytes: usize,
}

impl IngestAnswered {
    pub(crate) fn emit(self) {
        tracing::debug!(
            protocol = self.protocol,
            status = self.status,
            accepted = self.accepted,
            duplicates = self.duplicates,
            rejected = self.rejected,
            filtered = self.filtered,
            bytes = self.wire_bytes,
            elapsed_us = self.elapsed.as_micros() as u64,
            "ingest answered"
        );
        let protocol = self.protocol;
        counter!(INGEST_REQUESTS_TOTAL, "protocol" => protocol, "status" => status_label(self.status))
            .increment(1);
        histogram!(INGEST_REQUEST_DURATION_SECONDS).record(self.elapsed.as_secs_f64());
        for (outcome, n) in [
            ("accepted", self.accepted),
            ("duplicate", self.duplicates),
            ("rejected", self.rejected),
            ("filtered", self.filtered),
        ] {
            if n > 0 {
                counter!(INGEST_ITEMS_TOTAL, "protocol" => protocol, "outcome" => outcome)
                    .increment(n as u64);
            }
        }
        counter!(INGEST_BYTES_TOTAL, "protocol" => protocol, "stage" => "wire")
            .increment(self.wire_bytes as u64);
        counter!(INGEST_BYTES_TOTAL, "protocol" => protocol, "stage" => "decoded")
            .increment(self.decoded_bytes as u64);
    }
}

/// The label of a status code: the codes ingest answers with, anything else folded.
fn status_label(status: u16) -> &'static str {
    match status {
        200 => "200",
        400 => "400",
        401 => "401",
        413 => "413",
        415 => "415",
        429 => "429",
        503 => "503",
        500..=599 => "5xx",
        _ => "other",
    }
}

/// Records were added to the index (and samples to the metrics store).
pub(crate) struct IndexAdded {
    pub records: usize,
    pub metrics: usize,
    pub pending: u64,
}

impl IndexAdded {
    pub(crate) fn emit(self) {
        tracing::trace!(
            records = self.records,
            metrics = self.metrics,
            pending = self.pending,
            "indexed"
        );
        counter!(INDEX_RECORDS_TOTAL).increment(self.records as u64);
        counter!(METRICS_ITEMS_TOTAL).increment(self.metrics as u64);
        gauge!(INDEX_PENDING_ITEMS).set(self.pending as f64);
    }
}

/// The index committed and the checkpoint moved.
pub(crate) struct IndexCommitted {
    pub checkpoint: u64,
    /// Records added since the previous commit.
    pub records: usize,
    pub elapsed: Duration,
}

impl IndexCommitted {
    pub(crate) fn emit(self) {
        tracing::debug!(
            checkpoint = self.checkpoint,
            records = self.records,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "index committed"
        );
        counter!(INDEX_COMMITS_TOTAL, "result" => "ok").increment(1);
        histogram!(INDEX_COMMIT_DURATION_SECONDS).record(self.elapsed.as_secs_f64());
    }
}

/// A step of the indexing loop failed; the WAL still holds everything, and the loop re-adds from
/// it after a pause.
pub(crate) struct IndexFailed<'a> {
    pub stage: &'static str,
    pub error: &'a dyn std::fmt::Display,
    pub retry_in: Duration,
}

impl IndexFailed<'_> {
    pub(crate) fn emit(self) {
        tracing::warn!(
            stage = self.stage,
            error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "indexing failed; re-adding from the write-ahead log"
        );
        counter!(INDEX_ERRORS_TOTAL, "stage" => self.stage).increment(1);
        if self.stage == "commit" {
            counter!(INDEX_COMMITS_TOTAL, "result" => "error").increment(1);
        }
    }
}

/// A scheduled retention run finished.
pub(crate) struct RetentionRan<'a> {
    pub report: &'a RetentionReport,
}

impl RetentionRan<'_> {
    pub(crate) fn emit(self) {
        let (partitions, bytes) = (self.report.partitions.len(), self.report.bytes());
        if bytes > 0 || partitions > 0 {
            tracing::info!(
                partitions,
                files = self.report.files(),
                bytes,
                "retention freed space"
            );
        } else {
            tracing::debug!("retention: nothing expired");
        }
        counter!(RETENTION_RUNS_TOTAL, "result" => "ok").increment(1);
        counter!(RETENTION_FREED_BYTES_TOTAL).increment(bytes);
    }
}

/// A scheduled retention run failed; the next one retries.
pub(crate) struct RetentionFailed<'a> {
    pub error: &'a dyn std::fmt::Display,
}

impl RetentionFailed<'_> {
    pub(crate) fn emit(self) {
        tracing::warn!(error = %self.error, "retention run failed; retrying at the next interval");
        counter!(RETENTION_RUNS_TOTAL, "result" => "error").increment(1);
    }
}
