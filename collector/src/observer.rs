//! The hook through which the rest of Owl (the alert engine) sees what the collector stored.

use owl_model::{Heartbeat, LogRecord, MetricSample};

/// Sees every record, metric sample and heartbeat once it is durable (the agent got its ack), in
/// the order the write-ahead log made them durable, just before they are added to the index.
/// Called on the indexing thread, so an implementation must return at once (hand the items to a
/// bounded queue and drop when full); the indexing loop waits for it. Items replayed from the WAL
/// at start, or re-added after an index failure, were seen when first stored and are not shown
/// again.
pub trait IngestObserver: Send + Sync + 'static {
    /// Takes one batch of stored items.
    fn on_stored(&self, records: &[LogRecord], samples: &[MetricSample], heartbeats: &[Heartbeat]);
}
