//! The ingest wire format: NDJSON, one item a line.
//!
//! A line is a log record unless its object carries `"@type": "metric"` or
//! `"@type": "heartbeat"` (`"@type": "log"` is accepted for symmetry). Any HTTP client can therefore
//! ship plain records with curl. Batches from owl-agent carry the headers
//! [`AGENT_ID_HEADER`] and [`BATCH_SEQ_HEADER`] so that the collector recognises a batch re-sent
//! after a crash, and every record the agent reads has a deterministic id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Heartbeat, LogRecord, MetricSample};

/// Header naming the shipping agent.
pub const AGENT_ID_HEADER: &str = "x-owl-agent-id";
/// Header carrying the agent's batch sequence number (monotonic per agent).
pub const BATCH_SEQ_HEADER: &str = "x-owl-batch-seq";
/// The key that marks a non-record line.
pub const TYPE_KEY: &str = "@type";

/// One parsed ingest line.
#[derive(Debug, Clone, PartialEq)]
pub enum IngestItem {
    /// A log record.
    Log(Box<LogRecord>),
    /// A host metric sample.
    Metric(MetricSample),
    /// An agent heartbeat.
    Heartbeat(Heartbeat),
}

#[derive(Deserialize)]
struct TypeProbe<'a> {
    #[serde(rename = "@type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

impl IngestItem {
    /// Parses one line; the error says why, for the per-line report of the ingest endpoint.
    pub fn parse(line: &[u8], now: DateTime<Utc>) -> Result<IngestItem, String> {
        // Fast path: a line that never mentions the marker is a record.
        if memchr_str(line, b"\"@type\"") {
            let probe: TypeProbe = serde_json::from_slice(line).map_err(|e| e.to_string())?;
            match probe.kind.as_deref() {
                None | Some("log") => {}
                Some("metric") => {
                    return serde_json::from_slice::<Tagged<MetricSample>>(line)
                        .map(|t| IngestItem::Metric(t.inner))
                        .map_err(|e| format!("metric: {e}"));
                }
                Some("heartbeat") => {
                    return serde_json::from_slice::<Tagged<Heartbeat>>(line)
                        .map(|t| IngestItem::Heartbeat(t.inner))
                        .map_err(|e| format!("heartbeat: {e}"));
                }
                Some(other) => {
                    return Err(format!(
                        "field `@type`: unknown type `{other}`, expected log, metric or heartbeat"
                    ));
                }
            }
        }
        LogRecord::from_json_slice(line, now).map(|r| IngestItem::Log(Box::new(r)))
    }

    /// Serialises the item as one NDJSON line (without the newline).
    pub fn to_line(&self) -> Vec<u8> {
        match self {
            IngestItem::Log(record) => serde_json::to_vec(record),
            IngestItem::Metric(sample) => serde_json::to_vec(&Tagged {
                kind: "metric",
                inner: sample,
            }),
            IngestItem::Heartbeat(beat) => serde_json::to_vec(&Tagged {
                kind: "heartbeat",
                inner: beat,
            }),
        }
        .expect("serialising owned model types cannot fail")
    }
}

#[derive(Serialize)]
struct Tagged<T> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(flatten)]
    inner: T,
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Tagged<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Inner<T> {
            #[serde(rename = "@type")]
            #[allow(dead_code)]
            kind: String,
            #[serde(flatten)]
            inner: T,
        }
        let inner = Inner::<T>::deserialize(deserializer)?;
        Ok(Tagged {
            kind: "",
            inner: inner.inner,
        })
    }
}

fn memchr_str(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DiskUsage, LoadAverage};

    #[test]
    fn plain_lines_are_records() {
        let item = IngestItem::parse(br#"{"message":"hi","level":"warn"}"#, Utc::now()).unwrap();
        assert!(matches!(item, IngestItem::Log(r) if r.message == "hi"));
    }

    #[test]
    fn metric_and_heartbeat_round_trip() {
        let sample = MetricSample {
            host: "node-1".into(),
            timestamp: crate::parse_timestamp("2025-12-07T10:30:00Z").unwrap(),
            cpu_percent: 45.5,
            memory_percent: 60.2,
            disks: vec![DiskUsage {
                mount: "/".into(),
                total_bytes: 100,
                used_bytes: 36,
                percent: 36.0,
            }],
            load: LoadAverage {
                one: 0.5,
                five: 0.4,
                fifteen: 0.3,
            },
            region: Some("CN".into()),
        };
        let item = IngestItem::Metric(sample);
        let line = item.to_line();
        assert!(String::from_utf8_lossy(&line).contains(r#""@type":"metric""#));
        assert_eq!(IngestItem::parse(&line, Utc::now()).unwrap(), item);

        let beat = IngestItem::Heartbeat(Heartbeat {
            agent_id: "a1".into(),
            host: "node-1".into(),
            timestamp: crate::parse_timestamp("2025-12-07T10:30:00Z").unwrap(),
            version: "0.1.0".into(),
            uptime_s: 5,
            services: vec!["Form".into()],
            region: None,
            counters: [("lines_read".to_string(), 3)].into(),
        });
        assert_eq!(IngestItem::parse(&beat.to_line(), Utc::now()).unwrap(), beat);
    }

    #[test]
    fn unknown_type_is_an_error() {
        let err = IngestItem::parse(br#"{"@type":"span"}"#, Utc::now()).unwrap_err();
        assert!(err.contains("span"), "{err}");
    }
}
