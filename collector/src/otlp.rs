//! OpenTelemetry (OTLP/HTTP) logs and traces as Owl records.
//!
//! A log record becomes a record much as the agent would write it; a span becomes a record too,
//! carrying its own facts in `trace.span` (name, kind, duration, events), so traces, stats and
//! alerts see both. The mapping, from OpenTelemetry's semantic conventions:
//!
//! | OpenTelemetry | Owl |
//! | --- | --- |
//! | resource `service.name` | `service.name` |
//! | resource `service.instance.id` | `service.instance` |
//! | resource `deployment.environment.name` or `deployment.environment` | `environment` |
//! | resource `cloud.region` or `owl.region` | `service.region` |
//! | resource `host.name` | `host` |
//! | severity number (or text) | `level` (TRACE and DEBUG: DEBUG; FATAL: ERROR) |
//! | body | `message` (text as is, anything else as JSON) |
//! | trace and span ids | `trace.id`, `trace.span_id`, `trace.parent_span_id` (lower-case hex) |
//! | `http.request.method` (`http.method`) | `http.method` |
//! | `url.path` (`url.full`, `http.target`, `http.url`) | `http.url` |
//! | `http.response.status_code` (`http.status_code`) | `http.status_code` |
//! | `exception.type`, `exception.message`, `exception.stacktrace` | `error.type`, `error.message`, `error.stack` |
//! | `user.id` or `enduser.id`, `user.name` | `user.id`, `user.name` |
//! | `client.address`, `user_agent.original` | `client.ip`, `client.user_agent` |
//! | `code.function.name`, `code.file.path`, `code.line.number`, `code.namespace`, `thread.id` | `function`, `file`, `line`, `module`, `thread` |
//! | instrumentation scope name | `name` (the logger) |
//! | every other attribute (resource, then record) | `extra`, under its own key |
//!
//! A span's start is the record's time and its name the message; a server span with HTTP
//! attributes is an HTTP record (with the span's duration), so it counts as a request; an error
//! status is an ERROR record whose `error.message` is the status message, completed by an
//! `exception` event. Record ids derive from a log record's `log.record.uid` when it has one, else
//! from its content (a span: its trace and span ids), so an export the SDK retries is stored once;
//! two log records equal in every byte (time to the nanosecond included) are one.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord as OtlpLogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{Span as OtlpSpan, span::SpanKind, status::StatusCode};
use owl_model::{Client, ErrorInfo, Http, Level, LogRecord, Service, SpanEvent, SpanFacts, Trace, User};
use prost::Message;
use serde_json::{Map, Value};

/// The service of a resource that names none (the SDKs' own default).
pub const UNKNOWN_SERVICE: &str = "unknown_service";

/// One item of an export request: a record, or why it was refused.
pub(crate) type Mapped = Result<LogRecord, String>;

/// The records of a logs export, in the request's order.
pub(crate) fn log_records(request: ExportLogsServiceRequest, now: DateTime<Utc>) -> Vec<Mapped> {
    let mut out = Vec::new();
    for resource_logs in request.resource_logs {
        let resource = ResourceFields::of(resource_logs.resource.as_ref());
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_logs.scope.as_ref();
            for record in &scope_logs.log_records {
                out.push(log_record(&resource, scope, record, now));
            }
        }
    }
    out
}

/// The records of a traces export, one per span, in the request's order.
pub(crate) fn span_records(request: ExportTraceServiceRequest, now: DateTime<Utc>) -> Vec<Mapped> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = ResourceFields::of(resource_spans.resource.as_ref());
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.as_ref();
            for span in &scope_spans.spans {
                out.push(span_record(&resource, scope, span, now));
            }
        }
    }
    out
}

/// What a resource says about every record under it.
struct ResourceFields {
    service: Service,
    environment: Option<String>,
    host: Option<String>,
    process: Option<u64>,
    /// Attributes with no field of their own.
    extra: Map<String, Value>,
    /// The resource as encoded, part of a log record's content identity.
    encoded: Vec<u8>,
}

impl ResourceFields {
    fn of(resource: Option<&Resource>) -> ResourceFields {
        let mut attrs = Attributes::new(resource.map_or(&[][..], |r| &r.attributes));
        let service = Service {
            name: attrs
                .text("service.name")
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| UNKNOWN_SERVICE.to_string()),
            region: attrs.first_text(&["cloud.region", "owl.region"]),
            instance: attrs.text("service.instance.id"),
        };
        let environment = attrs.first_text(&["deployment.environment.name", "deployment.environment"]);
        let host = attrs.text("host.name");
        let process = attrs.unsigned("process.pid");
        ResourceFields {
            service,
            environment,
            host,
            process,
            extra: attrs.rest(),
            encoded: resource.map(Message::encode_to_vec).unwrap_or_default(),
        }
    }

    /// A record of this resource with the fields every signal shares.
    fn record(&self, scope: Option<&InstrumentationScope>) -> LogRecord {
        let mut record = LogRecord {
            service: self.service.clone(),
            environment: self.environment.clone(),
            host: self.host.clone(),
            process: self.process,
            logger: scope.map(|s| s.name.clone()).filter(|name| !name.is_empty()),
            ..LogRecord::default()
        };
        if !self.extra.is_empty() {
            record.extra = Some(self.extra.clone());
        }
        record
    }
}

fn log_record(
    resource: &ResourceFields,
    scope: Option<&InstrumentationScope>,
    otlp: &OtlpLogRecord,
    now: DateTime<Utc>,
) -> Mapped {
    let trace_id = optional_id(&otlp.trace_id, 16, "traceId")?;
    let span_id = optional_id(&otlp.span_id, 8, "spanId")?;
    let time = match (otlp.time_unix_nano, otlp.observed_time_unix_nano) {
        (0, 0) => now,
        (0, observed) => nanos(observed, "observedTimeUnixNano")?,
        (time, _) => nanos(time, "timeUnixNano")?,
    };
    let mut record = resource.record(scope);
    record.timestamp = time;
    record.level = level(otlp.severity_number, &otlp.severity_text);
    record.message = otlp.body.as_ref().map(text_of).unwrap_or_default();
    if let Some(id) = trace_id {
        record.trace = Some(Trace {
            id,
            span_id,
            ..Trace::default()
        });
    }
    let mut attrs = Attributes::new(&otlp.attributes);
    let uid = attrs.text("log.record.uid").filter(|uid| !uid.is_empty());
    let http = attrs.http();
    if http != Http::default() {
        record.http = Some(http);
    }
    attrs.common(&mut record);
    let mut extra = attrs.rest();
    if !otlp.event_name.is_empty() {
        extra.insert("event.name".into(), Value::String(otlp.event_name.clone()));
    }
    merge_extra(&mut record, extra);
    record.id = match uid {
        // The semantic conventions' unique id of a log record, made for deduplication.
        Some(uid) => LogRecord::derive_id(format!("otlp-log-uid\0{uid}").as_bytes(), 0),
        None => LogRecord::derive_id(
            &[
                &b"otlp-log\0"[..],
                &resource.encoded,
                &scope.map(Message::encode_to_vec).unwrap_or_default(),
                &otlp.encode_to_vec(),
            ]
            .concat(),
            0,
        ),
    };
    record.kind = record.classify();
    Ok(record)
}

fn span_record(
    resource: &ResourceFields,
    scope: Option<&InstrumentationScope>,
    span: &OtlpSpan,
    now: DateTime<Utc>,
) -> Mapped {
    let trace_id = optional_id(&span.trace_id, 16, "traceId")?.ok_or("a span needs a traceId")?;
    let span_id = optional_id(&span.span_id, 8, "spanId")?.ok_or("a span needs a spanId")?;
    let parent_span_id = optional_id(&span.parent_span_id, 8, "parentSpanId")?;
    let start = match span.start_time_unix_nano {
        0 => now,
        at => nanos(at, "startTimeUnixNano")?,
    };
    let duration_ms = if span.end_time_unix_nano > span.start_time_unix_nano && span.start_time_unix_nano > 0
    {
        (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6
    } else {
        0.0
    };
    let kind = SpanKind::try_from(span.kind).ok().and_then(|kind| match kind {
        SpanKind::Unspecified => None,
        SpanKind::Internal => Some("internal"),
        SpanKind::Server => Some("server"),
        SpanKind::Client => Some("client"),
        SpanKind::Producer => Some("producer"),
        SpanKind::Consumer => Some("consumer"),
    });
    let mut record = resource.record(scope);
    record.timestamp = start;
    record.message = span.name.clone();
    let mut events = Vec::with_capacity(span.events.len());
    let mut exception = ErrorInfo::default();
    for event in &span.events {
        let time = match event.time_unix_nano {
            0 => start,
            at => nanos(at, "events.timeUnixNano")?,
        };
        events.push(SpanEvent {
            time,
            name: event.name.clone(),
        });
        if event.name == "exception" {
            let mut attrs = Attributes::new(&event.attributes);
            attrs.error(&mut exception);
        }
    }
    let error = span
        .status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32);
    let mut attrs = Attributes::new(&span.attributes);
    // A client's view of someone else's request is not a request to this service: its HTTP
    // attributes stay in `extra`.
    if kind == Some("server") {
        let mut http = attrs.http();
        if http != Http::default() {
            http.duration_ms = Some(duration_ms);
            record.http = Some(http);
        }
    }
    attrs.common(&mut record);
    if error {
        record.level = Level::Error;
        let status_message = span
            .status
            .as_ref()
            .map(|s| s.message.clone())
            .unwrap_or_default();
        let info = record.error.get_or_insert_with(ErrorInfo::default);
        if info.message.is_none() {
            info.message = exception
                .message
                .take()
                .or_else(|| (!status_message.is_empty()).then_some(status_message));
        }
        info.error_type = info.error_type.take().or(exception.error_type.take());
        info.stack = info.stack.take().or(exception.stack.take());
    }
    merge_extra(&mut record, attrs.rest());
    record.trace = Some(Trace {
        id: trace_id.clone(),
        span_id: Some(span_id.clone()),
        parent_span_id,
        span: Some(SpanFacts {
            name: span.name.clone(),
            kind: kind.map(str::to_string),
            duration_ms,
            events,
        }),
    });
    record.id = LogRecord::derive_id(format!("otlp-span\0{trace_id}\0{span_id}").as_bytes(), 0);
    record.kind = record.classify();
    Ok(record)
}

/// Record attributes take precedence over the resource's.
fn merge_extra(record: &mut LogRecord, extra: Map<String, Value>) {
    if extra.is_empty() {
        return;
    }
    record.extra.get_or_insert_with(Map::new).extend(extra);
}

/// Owl's level of an OpenTelemetry severity: the number when set, else the text.
fn level(number: i32, text: &str) -> Level {
    match number {
        1..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=24 => Level::Error,
        _ => Level::parse(text).unwrap_or(Level::Info),
    }
}

/// Nanoseconds since the epoch as a time.
fn nanos(at: u64, field: &str) -> Result<DateTime<Utc>, String> {
    i64::try_from(at)
        .map(DateTime::from_timestamp_nanos)
        .map_err(|_| format!("{field} `{at}` is out of range"))
}

/// A trace or span id as lower-case hex; `None` when absent (empty or all zero bytes).
fn optional_id(bytes: &[u8], len: usize, field: &str) -> Result<Option<String>, String> {
    if bytes.is_empty() || bytes.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    if bytes.len() != len {
        return Err(format!(
            "{field} must be {len} bytes ({} hex digits), got {}",
            len,
            bytes.len()
        ));
    }
    Ok(Some(hex::encode(bytes)))
}

/// An attribute value as text: a string as is, anything else as JSON.
fn text_of(value: &AnyValue) -> String {
    match &value.value {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        _ => json_of(value).to_string(),
    }
}

/// An attribute value as JSON (bytes as base64, as OTLP/JSON writes them).
fn json_of(value: &AnyValue) -> Value {
    use base64::Engine as _;
    match &value.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(d.to_string())),
        Some(any_value::Value::ArrayValue(array)) => Value::Array(array.values.iter().map(json_of).collect()),
        Some(any_value::Value::KvlistValue(list)) => Value::Object(
            list.values
                .iter()
                .map(|kv| (kv.key.clone(), kv.value.as_ref().map_or(Value::Null, json_of)))
                .collect(),
        ),
        Some(any_value::Value::BytesValue(bytes)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
        Some(any_value::Value::StringValueStrindex(index)) => Value::from(*index),
    }
}

/// Attributes by key, taken out as fields claim them; what is left goes to `extra`.
struct Attributes<'a> {
    /// In the request's order, `None` once taken.
    entries: Vec<Option<(&'a str, &'a AnyValue)>>,
    index: HashMap<&'a str, usize>,
}

impl<'a> Attributes<'a> {
    fn new(attributes: &'a [KeyValue]) -> Attributes<'a> {
        let mut entries = Vec::with_capacity(attributes.len());
        let mut index = HashMap::with_capacity(attributes.len());
        for kv in attributes {
            let Some(value) = kv.value.as_ref() else { continue };
            // A repeated key: the last one stands, as in a map.
            if let Some(previous) = index.insert(kv.key.as_str(), entries.len()) {
                entries[previous] = None;
            }
            entries.push(Some((kv.key.as_str(), value)));
        }
        Attributes { entries, index }
    }

    fn take(&mut self, key: &str) -> Option<&'a AnyValue> {
        let at = self.index.remove(key)?;
        self.entries[at].take().map(|(_, value)| value)
    }

    fn text(&mut self, key: &str) -> Option<String> {
        self.take(key).map(text_of)
    }

    fn first_text(&mut self, keys: &[&str]) -> Option<String> {
        let mut found = None;
        for key in keys {
            let value = self.text(key);
            if found.is_none() {
                found = value;
            }
        }
        found
    }

    fn unsigned(&mut self, key: &str) -> Option<u64> {
        let value = self.take(key)?;
        match &value.value {
            Some(any_value::Value::IntValue(i)) => u64::try_from(*i).ok(),
            Some(any_value::Value::StringValue(s)) => s.trim().parse().ok(),
            Some(any_value::Value::DoubleValue(d)) if *d >= 0.0 && d.fract() == 0.0 => Some(*d as u64),
            _ => None,
        }
    }

    /// The HTTP facts of the current and the older semantic conventions.
    fn http(&mut self) -> Http {
        let method = self.first_text(&["http.request.method", "http.method"]);
        let url = self.first_text(&["url.path", "url.full", "http.target", "http.url"]);
        let status_code = ["http.response.status_code", "http.status_code"]
            .iter()
            .filter_map(|key| self.unsigned(key))
            .next()
            .and_then(|code| u16::try_from(code).ok());
        Http {
            method,
            url,
            status_code,
            ..Http::default()
        }
    }

    fn error(&mut self, into: &mut ErrorInfo) {
        into.error_type = into.error_type.take().or_else(|| self.text("exception.type"));
        into.message = into.message.take().or_else(|| self.text("exception.message"));
        into.stack = into.stack.take().or_else(|| self.text("exception.stacktrace"));
    }

    /// The fields records of every signal share: error, user, client, code location.
    fn common(&mut self, record: &mut LogRecord) {
        let mut error = ErrorInfo::default();
        self.error(&mut error);
        if error != ErrorInfo::default() {
            record.error = Some(error);
        }
        let user = User {
            id: self.first_text(&["user.id", "enduser.id"]),
            name: self.text("user.name"),
        };
        if user != User::default() {
            record.user = Some(user);
        }
        let client = Client {
            ip: self.text("client.address"),
            user_agent: self.text("user_agent.original"),
        };
        if client != Client::default() {
            record.client = Some(client);
        }
        record.function = self.first_text(&["code.function.name", "code.function"]);
        record.file = self.first_text(&["code.file.path", "code.filepath"]);
        record.line = ["code.line.number", "code.lineno"]
            .iter()
            .filter_map(|key| self.unsigned(key))
            .next();
        record.module = self.text("code.namespace");
        record.thread = self.unsigned("thread.id");
    }

    /// The attributes no field claimed, as JSON.
    fn rest(self) -> Map<String, Value> {
        self.entries
            .into_iter()
            .flatten()
            .map(|(key, value)| (key.to_string(), json_of(value)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// Whatever decodes as an export request maps without a panic.
        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let now = Utc::now();
            if let Ok(request) = ExportLogsServiceRequest::decode(&bytes[..]) {
                let _ = log_records(request, now);
            }
            if let Ok(request) = ExportTraceServiceRequest::decode(&bytes[..]) {
                let _ = span_records(request, now);
            }
            if let Ok(request) = serde_json::from_slice::<ExportLogsServiceRequest>(&bytes) {
                let _ = log_records(request, now);
            }
        }
    }

    #[test]
    fn extreme_values_are_refused_or_mapped() {
        let now = Utc::now();
        let span = OtlpSpan {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            start_time_unix_nano: u64::MAX,
            end_time_unix_nano: 1,
            ..OtlpSpan::default()
        };
        let request = ExportTraceServiceRequest {
            resource_spans: vec![opentelemetry_proto::tonic::trace::v1::ResourceSpans {
                scope_spans: vec![opentelemetry_proto::tonic::trace::v1::ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mapped = span_records(request, now);
        assert!(
            mapped[0].as_ref().unwrap_err().contains("out of range"),
            "{mapped:?}"
        );
        assert_eq!(level(0, "WARNING"), Level::Warn);
        assert_eq!(level(21, ""), Level::Error);
        assert_eq!(level(3, ""), Level::Debug);
        assert_eq!(level(99, "nonsense"), Level::Info);
    }
}
