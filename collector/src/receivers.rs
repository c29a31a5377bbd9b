//! What each receiver (native ingest, OTLP logs and traces, Elasticsearch bulk, Loki push) has
//! taken since start, for `/health/detailed`; the Prometheus counters of `events.rs` carry the
//! same by protocol.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// The receivers and the route each serves, in report order.
pub const RECEIVERS: [(&str, &str); 5] = [
    ("owl", "POST /api/v1/ingest"),
    ("otlp_logs", "POST /v1/logs"),
    ("otlp_traces", "POST /v1/traces"),
    ("elasticsearch", "POST /_bulk"),
    ("loki", "POST /loki/api/v1/push"),
];

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    refused: AtomicU64,
    records: AtomicU64,
    rejected: AtomicU64,
    /// Epoch milliseconds of the last request; 0 before the first.
    last_ms: AtomicI64,
}

/// Counters of every receiver of one collector. Cheap to update from any request.
#[derive(Default)]
pub struct ReceiverStats {
    counters: [Counters; RECEIVERS.len()],
}

/// One receiver's figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReceiverSnapshot {
    /// `owl`, `otlp_logs`, `otlp_traces`, `elasticsearch` or `loki`.
    pub protocol: &'static str,
    /// The route.
    pub route: &'static str,
    /// Requests answered.
    pub requests: u64,
    /// Requests refused as a whole (4xx and 5xx).
    pub refused_requests: u64,
    /// Records (and samples) stored or found already stored.
    pub records: u64,
    /// Items refused one by one.
    pub rejected: u64,
    /// When the last request was answered.
    pub last_request: Option<DateTime<Utc>>,
}

impl ReceiverStats {
    /// Counts one answered request of `protocol`.
    pub(crate) fn record(&self, protocol: &str, status: u16, records: usize, rejected: usize) {
        let Some(at) = RECEIVERS.iter().position(|(name, _)| *name == protocol) else {
            return;
        };
        let counters = &self.counters[at];
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if status >= 400 && records == 0 {
            counters.refused.fetch_add(1, Ordering::Relaxed);
        }
        counters.records.fetch_add(records as u64, Ordering::Relaxed);
        counters.rejected.fetch_add(rejected as u64, Ordering::Relaxed);
        counters
            .last_ms
            .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// Every receiver's figures.
    pub fn snapshot(&self) -> Vec<ReceiverSnapshot> {
        RECEIVERS
            .iter()
            .zip(&self.counters)
            .map(|((protocol, route), c)| ReceiverSnapshot {
                protocol,
                route,
                requests: c.requests.load(Ordering::Relaxed),
                refused_requests: c.refused.load(Ordering::Relaxed),
                records: c.records.load(Ordering::Relaxed),
                rejected: c.rejected.load(Ordering::Relaxed),
                last_request: match c.last_ms.load(Ordering::Relaxed) {
                    0 => None,
                    ms => DateTime::from_timestamp_millis(ms),
                },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_per_protocol() {
        let stats = ReceiverStats::default();
        stats.record("loki", 204, 3, 0);
        stats.record("loki", 400, 2, 1);
        stats.record("loki", 401, 0, 0);
        stats.record("unknown", 200, 9, 0);
        let snapshot = stats.snapshot();
        let loki = snapshot.iter().find(|s| s.protocol == "loki").unwrap();
        assert_eq!(
            (loki.requests, loki.refused_requests, loki.records, loki.rejected),
            (3, 1, 5, 1)
        );
        assert!(loki.last_request.is_some());
        let otlp = snapshot.iter().find(|s| s.protocol == "otlp_logs").unwrap();
        assert_eq!((otlp.requests, otlp.last_request), (0, None));
    }
}
