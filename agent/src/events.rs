//! Events worth both a log line and a counter; `emit()` does the two together so they never
//! disagree.

use std::path::Path;

use crate::fingerprint::Fingerprint;
use crate::metrics::Metrics;

/// A tracked file was renamed away or deleted; it is read to its end before it is closed.
pub(crate) struct FileRotated<'a> {
    pub path: &'a Path,
}

impl FileRotated<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        Metrics::add(&metrics.files_rotated, 1);
        tracing::info!(path = %self.path.display(), "file rotated or deleted; draining it");
    }
}

/// A truncated file had unread bytes and no rotated copy of it matches the input's globs.
pub(crate) struct TruncatedUnread {
    pub fingerprint: Fingerprint,
    pub bytes: u64,
}

impl TruncatedUnread {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        Metrics::add(&metrics.unread_bytes_lost, self.bytes);
        tracing::error!(
            fingerprint = %self.fingerprint,
            bytes = self.bytes,
            "file truncated before it was read to the end and no rotated copy matches the input's paths; \
             add the copy's name (e.g. app.log.1) to the paths"
        );
    }
}

/// A batch was dropped because the buffer was full (`when_full = "drop_newest"`).
pub(crate) struct BatchDropped {
    pub records: u64,
}

impl BatchDropped {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        Metrics::add(&metrics.batches_dropped, 1);
        Metrics::add(&metrics.records_dropped, self.records);
        tracing::warn!(
            records = self.records,
            "disk buffer full; batch dropped (when_full = drop_newest)"
        );
    }
}

/// The collector refused a batch for good; it was written to the dead-letter directory.
pub(crate) struct BatchDeadLettered<'a> {
    pub seq: u64,
    pub records: u64,
    pub status: u16,
    pub reason: &'a str,
    pub path: &'a Path,
}

impl BatchDeadLettered<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        Metrics::add(&metrics.batches_dead_lettered, 1);
        tracing::error!(
            seq = self.seq,
            records = self.records,
            status = self.status,
            reason = self.reason,
            path = %self.path.display(),
            "collector refused batch; set aside as dead letter"
        );
    }
}

/// A disk buffer entry failed its checks and was skipped.
pub(crate) struct CorruptEntry<'a> {
    pub seq: u64,
    pub reason: &'a str,
}

impl CorruptEntry<'_> {
    pub(crate) fn emit(&self, metrics: &Metrics) {
        Metrics::add(&metrics.buffer_corrupt_entries, 1);
        tracing::error!(
            seq = self.seq,
            reason = self.reason,
            "corrupt disk buffer entry skipped; its records are read again from their files if they still exist"
        );
    }
}
