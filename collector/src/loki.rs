//! Loki's push API (Promtail, Grafana Alloy, Vector's `loki` sink, logging handlers): streams of
//! labelled entries as Owl records.
//!
//! The protobuf form is Loki's `push.proto` (`PushRequest` of `StreamAdapter`s whose labels are a
//! Prometheus selector, `{app="web", env="prod"}`), sent raw-snappy compressed; the JSON form is
//! `{"streams": [{"stream": {labels}, "values": [["<ns>", "<line>", {metadata}?]]}]}`.
//!
//! | Loki | Owl record |
//! | --- | --- |
//! | label `service_name`, else `service`, `app`, `job` | `service.name` |
//! | label `region` (or `cloud_region`), `env` (or `environment`), `host` (or `hostname`) | `service.region`, `environment`, `host` |
//! | label `level` (or `detected_level`, `severity`) | `level` (else the line's own) |
//! | entry time (ns) | `@timestamp` |
//! | entry line: a JSON object is parsed as the agent's `json` parser does; anything else | the record's fields / `message` |
//! | structured metadata `trace_id`, `span_id` | `trace.id`, `trace.span_id` |
//! | other labels and structured metadata | `extra`, under their names |
//!
//! An entry's id derives from its labels, time and line, so a push Promtail retries is stored once
//! (Loki, too, drops an entry equal to one it has).

use chrono::{DateTime, Utc};
use owl_config::ParserKind;
use owl_model::{Level, LogRecord, Trace};
use owl_parse::Parser;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::ingest::IngestError;

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    /// The streams.
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: a label set and its entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// The labels as a selector: `{app="web", env="prod"}`.
    #[prost(string, tag = "1")]
    pub labels: String,
    /// The entries.
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
    /// The label hash (unused).
    #[prost(uint64, tag = "3")]
    pub hash: u64,
}

/// `logproto.EntryAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    /// When.
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<ProtoTimestamp>,
    /// The line.
    #[prost(string, tag = "2")]
    pub line: String,
    /// Structured metadata.
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `google.protobuf.Timestamp`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtoTimestamp {
    /// Seconds since the epoch.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// `logproto.LabelPairAdapter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// The JSON push body.
#[derive(Deserialize)]
struct JsonPush {
    streams: Vec<JsonStream>,
}

#[derive(Deserialize)]
struct JsonStream {
    #[serde(default)]
    stream: Map<String, Value>,
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

/// One entry, whatever the wire form.
struct Entry<'a> {
    labels: &'a [(String, String)],
    time: Result<DateTime<Utc>, String>,
    line: &'a str,
    metadata: Vec<(String, String)>,
}

/// The records of a protobuf push (already decompressed), in the request's order.
pub(crate) fn protobuf_records(
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<Result<LogRecord, String>>, IngestError> {
    use prost::Message as _;
    let request = PushRequest::decode(body)
        .map_err(|e| IngestError::BadMessage(format!("not a Loki PushRequest (protobuf, snappy): {e}")))?;
    let parser = Parser::new(ParserKind::Json, "").expect("the json parser needs no pattern");
    let mut out = Vec::new();
    for stream in &request.streams {
        let labels = match parse_labels(&stream.labels) {
            Ok(labels) => labels,
            Err(reason) => {
                out.extend(stream.entries.iter().map(|_| Err(reason.clone())));
                continue;
            }
        };
        for entry in &stream.entries {
            let time = match &entry.timestamp {
                Some(ts) => DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
                    .ok_or_else(|| format!("timestamp {}s is out of range", ts.seconds)),
                None => Ok(now),
            };
            let metadata = entry
                .structured_metadata
                .iter()
                .map(|pair| (pair.name.clone(), pair.value.clone()))
                .collect();
            out.push(record(
                Entry {
                    labels: &labels,
                    time,
                    line: &entry.line,
                    metadata,
                },
                &parser,
                now,
            ));
        }
    }
    Ok(out)
}

/// The records of a JSON push, in the request's order.
pub(crate) fn json_records(
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<Result<LogRecord, String>>, IngestError> {
    let request: JsonPush = serde_json::from_slice(body).map_err(|e| {
        IngestError::BadMessage(format!("not a Loki push body (`{{\"streams\": [...]}}`): {e}"))
    })?;
    let parser = Parser::new(ParserKind::Json, "").expect("the json parser needs no pattern");
    let mut out = Vec::new();
    for stream in &request.streams {
        let labels: Result<Vec<(String, String)>, String> = stream
            .stream
            .iter()
            .map(|(name, value)| match value {
                Value::String(v) => Ok((name.clone(), v.clone())),
                other => Err(format!("label `{name}` must be a string, not {other}")),
            })
            .collect();
        let labels = match labels {
            Ok(labels) => labels,
            Err(reason) => {
                out.extend(stream.values.iter().map(|_| Err(reason.clone())));
                continue;
            }
        };
        for value in &stream.values {
            let (Some(Value::String(ns)), Some(Value::String(line))) = (value.first(), value.get(1)) else {
                out.push(Err(
                    "an entry is [\"<unix epoch ns>\", \"<line>\", {metadata}?]".to_string()
                ));
                continue;
            };
            let time = ns
                .parse::<i64>()
                .map(DateTime::from_timestamp_nanos)
                .map_err(|_| format!("`{ns}` is not a time in nanoseconds since the epoch"));
            let metadata = match value.get(2) {
                Some(Value::Object(map)) => map
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str().map_or_else(|| v.to_string(), str::to_string),
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            };
            out.push(record(
                Entry {
                    labels: &labels,
                    time,
                    line,
                    metadata,
                },
                &parser,
                now,
            ));
        }
    }
    Ok(out)
}

fn record(entry: Entry<'_>, parser: &Parser, now: DateTime<Utc>) -> Result<LogRecord, String> {
    let time = entry.time?;
    if entry.labels.is_empty() {
        return Err("at least one label pair is required per stream".into());
    }
    let mut record = parser.parse(entry.line, now).record;
    record.timestamp = time;
    let label = |names: &[&str]| {
        names.iter().find_map(|name| {
            entry
                .labels
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
    };
    const CLAIMED: &[&str] = &[
        "service_name",
        "service",
        "app",
        "job",
        "region",
        "cloud_region",
        "env",
        "environment",
        "host",
        "hostname",
        "level",
        "detected_level",
        "severity",
    ];
    if let Some(service) = label(&["service_name", "service", "app", "job"]) {
        record.service.name = service;
    } else if record.service.name.is_empty() {
        record.service.name = crate::otlp::UNKNOWN_SERVICE.to_string();
    }
    if let Some(region) = label(&["region", "cloud_region"]) {
        record.service.region = Some(region);
    }
    if let Some(environment) = label(&["env", "environment"]) {
        record.environment = Some(environment);
    }
    if let Some(host) = label(&["host", "hostname"]) {
        record.host = Some(host);
    }
    if let Some(level) = label(&["level", "detected_level", "severity"]).and_then(|l| Level::parse(&l)) {
        record.level = level;
    }
    let mut extra = Map::new();
    for (name, value) in entry.labels {
        if !CLAIMED.contains(&name.as_str()) {
            extra.insert(name.clone(), Value::String(value.clone()));
        }
    }
    let mut trace_id = None;
    let mut span_id = None;
    for (name, value) in entry.metadata.iter() {
        match name.as_str() {
            "trace_id" | "traceID" | "traceId" => trace_id = Some(value.clone()),
            "span_id" | "spanID" | "spanId" => span_id = Some(value.clone()),
            _ => {
                extra.insert(name.clone(), Value::String(value.clone()));
            }
        }
    }
    if let Some(id) = trace_id {
        let trace = record.trace.get_or_insert_with(Trace::default);
        trace.id = id;
        trace.span_id = span_id.or(trace.span_id.take());
    }
    if !extra.is_empty() {
        record.extra.get_or_insert_with(Map::new).extend(extra);
    }
    let mut identity = String::new();
    for (name, value) in entry.labels {
        identity.push_str(name);
        identity.push('\0');
        identity.push_str(value);
        identity.push('\0');
    }
    identity.push_str(&time.timestamp_nanos_opt().unwrap_or_default().to_string());
    identity.push('\0');
    identity.push_str(entry.line);
    record.id = LogRecord::derive_id(format!("loki\0{identity}").as_bytes(), 0);
    record.kind = record.classify();
    Ok(record)
}

/// Parses a Prometheus label selector: `{name="value", other="with \"quotes\""}`.
pub(crate) fn parse_labels(text: &str) -> Result<Vec<(String, String)>, String> {
    let bad = |what: &str| format!("labels `{}`: {what}", text.chars().take(120).collect::<String>());
    let inner = text
        .trim()
        .strip_prefix('{')
        .and_then(|t| t.strip_suffix('}'))
        .ok_or_else(|| bad("expected {name=\"value\", ...}"))?;
    let mut labels = Vec::new();
    let mut chars = inner.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek().is_none() {
            break;
        }
        let mut name = String::new();
        while let Some(c) = chars.next_if(|c| c.is_ascii_alphanumeric() || *c == '_') {
            name.push(c);
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(bad("a label name is [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') || chars.next() != Some('"') {
            return Err(bad(&format!("expected =\"...\" after `{name}`")));
        }
        let mut value = String::new();
        loop {
            match chars.next() {
                None => return Err(bad("unterminated value")),
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some('t') => value.push('\t'),
                    Some(c @ ('"' | '\\')) => value.push(c),
                    Some(c) => {
                        value.push('\\');
                        value.push(c);
                    }
                    None => return Err(bad("unterminated value")),
                },
                Some(c) => value.push(c),
            }
        }
        labels.push((name, value));
    }
    if labels.is_empty() {
        return Err("at least one label pair is required per stream".into());
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors_parse_with_escapes() {
        assert_eq!(
            parse_labels(r#"{app="web", env="prod",msg="say \"hi\"\n"}"#).unwrap(),
            [
                ("app".to_string(), "web".to_string()),
                ("env".to_string(), "prod".to_string()),
                ("msg".to_string(), "say \"hi\"\n".to_string()),
            ]
        );
        for bad in [
            "app=\"web\"",
            "{app=web}",
            "{app=\"web}",
            "{}",
            "{1a=\"x\"}",
            "{=\"x\"}",
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn labels_and_json_lines_make_the_record() {
        let now = Utc::now();
        let body = serde_json::json!({"streams": [{
            "stream": {"service_name": "web", "env": "prod", "level": "warn", "pod": "web-1"},
            "values": [
                ["1765103400123456789", "{\"message\":\"slow\",\"http\":{\"method\":\"GET\",\"url\":\"/x\",\"duration_ms\":900}}", {"trace_id": "abc", "user": "u1"}],
                ["1765103400000000000", "plain text line"],
                ["soon", "x"],
                ["1"]
            ]
        }]});
        let out = json_records(body.to_string().as_bytes(), now).unwrap();
        assert_eq!(out.len(), 4);
        let json = out[0].as_ref().unwrap();
        assert_eq!(
            (json.service.name.as_str(), json.environment.as_deref()),
            ("web", Some("prod"))
        );
        assert_eq!((json.level, json.message.as_str()), (Level::Warn, "slow"));
        assert_eq!(json.duration_ms(), Some(900.0));
        assert_eq!(json.trace_id(), Some("abc"));
        assert_eq!(json.timestamp.timestamp_nanos_opt(), Some(1765103400123456789));
        let extra = json.extra.as_ref().unwrap();
        assert_eq!(
            (&extra["pod"], &extra["user"]),
            (&Value::from("web-1"), &Value::from("u1"))
        );
        let plain = out[1].as_ref().unwrap();
        assert_eq!(plain.message, "plain text line");
        assert_ne!(plain.id, json.id);
        assert!(out[2].as_ref().unwrap_err().contains("nanoseconds"));
        assert!(out[3].is_err());
        // Re-sent, the same entry has the same id.
        let again = json_records(body.to_string().as_bytes(), now).unwrap();
        assert_eq!(again[0].as_ref().unwrap().id, json.id);
        assert!(matches!(
            json_records(b"{\"streams\": 3}", now),
            Err(IngestError::BadMessage(_))
        ));
        assert!(matches!(
            protobuf_records(b"\xff\xff\xff", now),
            Err(IngestError::BadMessage(_))
        ));
    }

    proptest::proptest! {
        /// Whatever arrives, the parsers answer with records or an error, never a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let now = Utc::now();
            let _ = protobuf_records(&bytes, now);
            let _ = json_records(&bytes, now);
            let _ = parse_labels(&String::from_utf8_lossy(&bytes));
        }

        #[test]
        fn label_text_never_panics(text in "\\{[a-z_=\",\\\\ ]{0,40}\\}") {
            let _ = parse_labels(&text);
        }
    }
}
