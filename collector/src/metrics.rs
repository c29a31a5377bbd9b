//! Every metric the collector records, through the `metrics` facade (the binary installs the
//! Prometheus exporter). Labels are bounded: status codes, fixed outcome and stage names.

use std::sync::OnceLock;

use ::metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Ingest requests answered, by `status` (HTTP status code).
pub const INGEST_REQUESTS_TOTAL: &str = "owl_collector_ingest_requests_total";
/// Time from request to answer, including the wait for durability.
pub const INGEST_REQUEST_DURATION_SECONDS: &str = "owl_collector_ingest_request_duration_seconds";
/// Ingest lines by `outcome`: `accepted`, `duplicate`, `rejected`, `filtered`.
pub const INGEST_ITEMS_TOTAL: &str = "owl_collector_ingest_items_total";
/// Request body bytes, by `stage`: `wire` (as sent) and `decoded` (after decompression).
pub const INGEST_BYTES_TOTAL: &str = "owl_collector_ingest_bytes_total";
/// Write-ahead log syncs (group commits).
pub const WAL_SYNCS_TOTAL: &str = "owl_collector_wal_syncs_total";
/// Duration of one group commit: write and `fdatasync`.
pub const WAL_SYNC_DURATION_SECONDS: &str = "owl_collector_wal_sync_duration_seconds";
/// Entries (requests) made durable by one group commit.
pub const WAL_SYNC_ENTRIES: &str = "owl_collector_wal_sync_entries";
/// Bytes written to the write-ahead log.
pub const WAL_BYTES_TOTAL: &str = "owl_collector_wal_bytes_total";
/// Segments closed because they reached their size.
pub const WAL_SEGMENTS_ROTATED_TOTAL: &str = "owl_collector_wal_segments_rotated_total";
/// Corrupt WAL frames found during recovery (not torn tails): data was lost.
pub const WAL_CORRUPTIONS_TOTAL: &str = "owl_collector_wal_corruptions_total";
/// WAL entries replayed into the index at start.
pub const WAL_REPLAYED_ENTRIES_TOTAL: &str = "owl_collector_wal_replayed_entries_total";
/// Items accepted (durable) but not yet added to the index.
pub const INDEX_PENDING_ITEMS: &str = "owl_collector_index_pending_items";
/// Records added to the index.
pub const INDEX_RECORDS_TOTAL: &str = "owl_collector_index_records_total";
/// Metric samples and heartbeats written to the metrics store.
pub const METRICS_ITEMS_TOTAL: &str = "owl_collector_metrics_items_total";
/// Index commits, by `result`: `ok` or `error`.
pub const INDEX_COMMITS_TOTAL: &str = "owl_collector_index_commits_total";
/// Duration of a commit: journal sync, index commit, checkpoint.
pub const INDEX_COMMIT_DURATION_SECONDS: &str = "owl_collector_index_commit_duration_seconds";
/// Failures of the indexing loop, by `stage`: `add`, `metrics`, `commit`, `wal` (journal,
/// checkpoint or re-reading the WAL).
pub const INDEX_ERRORS_TOTAL: &str = "owl_collector_index_errors_total";
/// Record ids remembered for dedup.
pub const DEDUP_IDS: &str = "owl_collector_dedup_ids";
/// Retention runs, by `result`: `ok` or `error`.
pub const RETENTION_RUNS_TOTAL: &str = "owl_collector_retention_runs_total";
/// Bytes retention freed.
pub const RETENTION_FREED_BYTES_TOTAL: &str = "owl_collector_retention_freed_bytes_total";

/// Registers the descriptions and units of the collector's metrics with the installed recorder.
pub fn describe() {
    describe_counter!(
        INGEST_REQUESTS_TOTAL,
        "Ingest requests answered, by protocol (owl, otlp_logs, otlp_traces, elasticsearch, loki) and HTTP status"
    );
    describe_histogram!(
        INGEST_REQUEST_DURATION_SECONDS,
        Unit::Seconds,
        "Ingest request time, durability included"
    );
    describe_counter!(INGEST_ITEMS_TOTAL, "Ingested items by protocol and outcome");
    describe_counter!(
        INGEST_BYTES_TOTAL,
        Unit::Bytes,
        "Ingest body bytes, as sent and decoded"
    );
    describe_counter!(WAL_SYNCS_TOTAL, "Write-ahead log group commits");
    describe_histogram!(
        WAL_SYNC_DURATION_SECONDS,
        Unit::Seconds,
        "Write and fdatasync of one group commit"
    );
    describe_histogram!(
        WAL_SYNC_ENTRIES,
        Unit::Count,
        "Requests made durable by one group commit"
    );
    describe_counter!(
        WAL_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes written to the write-ahead log"
    );
    describe_counter!(WAL_SEGMENTS_ROTATED_TOTAL, "Write-ahead log segments closed");
    describe_counter!(
        WAL_CORRUPTIONS_TOTAL,
        "Corrupt write-ahead log frames found in recovery"
    );
    describe_counter!(
        WAL_REPLAYED_ENTRIES_TOTAL,
        "Write-ahead log entries replayed at start"
    );
    describe_gauge!(
        INDEX_PENDING_ITEMS,
        Unit::Count,
        "Items durable but not yet indexed"
    );
    describe_counter!(INDEX_RECORDS_TOTAL, "Records added to the index");
    describe_counter!(METRICS_ITEMS_TOTAL, "Metric samples and heartbeats stored");
    describe_counter!(INDEX_COMMITS_TOTAL, "Index commits by result");
    describe_histogram!(
        INDEX_COMMIT_DURATION_SECONDS,
        Unit::Seconds,
        "Journal sync, index commit and checkpoint"
    );
    describe_counter!(INDEX_ERRORS_TOTAL, "Indexing loop failures by stage");
    describe_gauge!(DEDUP_IDS, Unit::Count, "Record ids remembered for dedup");
    describe_counter!(RETENTION_RUNS_TOTAL, "Retention runs by result");
    describe_counter!(
        RETENTION_FREED_BYTES_TOTAL,
        Unit::Bytes,
        "Bytes freed by retention"
    );
}

/// The process's Prometheus recorder, installed on first use (a process has one recorder);
/// `None` when another recorder was installed first.
pub fn prometheus() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .as_ref()
}
