//! The agent's own metrics: every name in one place, rendered in the Prometheus text format at
//! `/metrics` and copied into each heartbeat.
//!
//! The agent keeps its counters in plain atomics rather than behind the `metrics` facade: the
//! heartbeat has to read its own counters back, and several agents can live in one process (the
//! tests, `owl up`), each of which must report only its own numbers. A global recorder offers
//! neither.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One counter or gauge: its name, help line and kind.
struct Def {
    name: &'static str,
    help: &'static str,
    gauge: bool,
}

macro_rules! agent_metrics {
    ($( $field:ident : $kind:ident = $name:literal, $help:literal; )*) => {
        /// The agent's counters and gauges.
        #[derive(Default)]
        pub struct Metrics {
            $( pub(crate) $field: AtomicU64, )*
            /// Bytes not yet read, per tracked file path.
            file_lag: Mutex<BTreeMap<String, u64>>,
        }

        impl Metrics {
            fn all(&self) -> Vec<(Def, u64)> {
                vec![$( (
                    Def { name: $name, help: $help, gauge: agent_metrics!(@gauge $kind) },
                    self.$field.load(Ordering::Relaxed),
                ), )*]
            }
        }
    };
    (@gauge counter) => { false };
    (@gauge gauge) => { true };
}

agent_metrics! {
    lines_read: counter = "owl_agent_lines_read_total", "Lines read from files.";
    bytes_read: counter = "owl_agent_read_bytes_total", "Bytes read from files.";
    records_read: counter = "owl_agent_records_read_total", "Records built from lines (after multiline joining).";
    records_buffered: counter = "owl_agent_records_buffered_total", "Items written to the disk buffer: log records, and the agent's own metric samples and heartbeats.";
    records_shipped: counter = "owl_agent_records_shipped_total", "Records the collector acknowledged (accepted or duplicate).";
    records_duplicate: counter = "owl_agent_records_duplicate_total", "Records the collector reported as already stored.";
    records_rejected: counter = "owl_agent_records_rejected_total", "Records the collector rejected (written to the dead-letter file).";
    records_dropped: counter = "owl_agent_records_dropped_total", "Records dropped because the disk buffer was full (drop_newest).";
    records_masked: counter = "owl_agent_records_masked_total", "Records in which masking changed something.";
    lines_truncated: counter = "owl_agent_lines_truncated_total", "Lines longer than max_line_bytes, truncated and flagged.";
    lines_invalid_utf8: counter = "owl_agent_lines_invalid_utf8_total", "Lines with invalid UTF-8, replaced and flagged.";
    nul_bytes: counter = "owl_agent_nul_bytes_total", "NUL bytes removed from lines.";
    parse_fallbacks: counter = "owl_agent_parse_fallbacks_total", "Lines the configured parser did not match, kept as plain messages.";
    batches_buffered: counter = "owl_agent_batches_buffered_total", "Batches written to the disk buffer.";
    batches_shipped: counter = "owl_agent_batches_shipped_total", "Batches the collector acknowledged.";
    batches_dead_lettered: counter = "owl_agent_batches_dead_lettered_total", "Batches refused by the collector and set aside in the dead-letter directory.";
    batches_dropped: counter = "owl_agent_batches_dropped_total", "Batches dropped because the disk buffer was full (drop_newest).";
    send_retries: counter = "owl_agent_send_retries_total", "Failed sends that were retried.";
    send_auth_failures: counter = "owl_agent_send_auth_failures_total", "Sends the collector refused for the token (401/403) or path (404).";
    shipped_bytes: counter = "owl_agent_shipped_bytes_total", "Compressed bytes the collector acknowledged.";
    buffer_corrupt_entries: counter = "owl_agent_buffer_corrupt_entries_total", "Disk buffer entries that failed their checksum and were skipped.";
    buffer_full_waits: counter = "owl_agent_buffer_full_waits_total", "Times reading paused because the disk buffer was full.";
    files_rotated: counter = "owl_agent_files_rotated_total", "Files renamed or deleted while tailed.";
    files_truncated: counter = "owl_agent_files_truncated_total", "Files truncated while tailed (copytruncate).";
    unread_bytes_lost: counter = "owl_agent_unread_bytes_lost_total", "Bytes of truncated files that were never read because no rotated copy was visible.";
    syslog_messages: counter = "owl_agent_syslog_messages_total", "Syslog messages received and written to the disk buffer.";
    syslog_dropped: counter = "owl_agent_syslog_messages_dropped_total", "Syslog datagrams (UDP, Unix datagram) not taken because the agent's pipeline was full.";
    syslog_connections_refused: counter = "owl_agent_syslog_connections_refused_total", "Syslog stream connections closed at once because max_connections were open.";
    syslog_connections: gauge = "owl_agent_syslog_connections", "Syslog stream connections open.";
    metric_samples: counter = "owl_agent_metric_samples_total", "Host metric samples taken.";
    heartbeats: counter = "owl_agent_heartbeats_total", "Heartbeats sent.";
    buffer_bytes: gauge = "owl_agent_buffer_bytes", "Bytes held in the disk buffer.";
    buffer_entries: gauge = "owl_agent_buffer_entries", "Batches held in the disk buffer.";
    files_tracked: gauge = "owl_agent_files_tracked", "Files open for reading.";
    in_flight: gauge = "owl_agent_batches_in_flight", "Batches being sent.";
}

impl Metrics {
    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets a gauge.
    pub(crate) fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// Reads a counter or gauge.
    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Replaces the per-file lag gauges (label set = the files tracked now, so it stays bounded).
    pub(crate) fn set_file_lag(&self, lag: BTreeMap<String, u64>) {
        *self
            .file_lag
            .lock()
            .expect("metrics lock is never poisoned: no code panics under it") = lag;
    }

    /// All counters and gauges by name without the `owl_agent_` prefix, for the heartbeat.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.all()
            .into_iter()
            .map(|(def, value)| (def.name.trim_start_matches("owl_agent_").to_string(), value))
            .collect()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for (def, value) in self.all() {
            let kind = if def.gauge { "gauge" } else { "counter" };
            let _ = writeln!(
                out,
                "# HELP {} {}\n# TYPE {} {kind}\n{} {value}",
                def.name, def.help, def.name, def.name
            );
        }
        let lag = self
            .file_lag
            .lock()
            .expect("metrics lock is never poisoned: no code panics under it");
        out.push_str("# HELP owl_agent_file_lag_bytes Bytes of a tracked file not read yet.\n");
        out.push_str("# TYPE owl_agent_file_lag_bytes gauge\n");
        for (path, bytes) in lag.iter() {
            let _ = writeln!(
                out,
                "owl_agent_file_lag_bytes{{path=\"{}\"}} {bytes}",
                escape_label(path)
            );
        }
        out
    }
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.lines_read, 3);
        Metrics::set(&metrics.buffer_bytes, 42);
        metrics.set_file_lag([("/var/log/a \"x\".log".to_string(), 7)].into());
        let text = metrics.render();
        assert!(
            text.contains("# TYPE owl_agent_lines_read_total counter\nowl_agent_lines_read_total 3\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE owl_agent_buffer_bytes gauge\nowl_agent_buffer_bytes 42\n"),
            "{text}"
        );
        assert!(
            text.contains(r#"owl_agent_file_lag_bytes{path="/var/log/a \"x\".log"} 7"#),
            "{text}"
        );
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(line.starts_with("owl_agent_"), "{line}");
        }
    }

    #[test]
    fn snapshot_drops_the_prefix() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.records_shipped, 5);
        let snapshot = metrics.snapshot();
        assert_eq!(snapshot["records_shipped_total"], 5);
        assert!(snapshot.contains_key("buffer_bytes"));
    }
}
