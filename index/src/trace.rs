//! A trace assembled from the records sharing a trace id (the log API's `GET /logs/trace/:traceId`).

use chrono::{DateTime, Duration, Utc};
use owl_model::{LogRecord, SpanEvent};

/// Outcome of a span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanStatus {
    /// Not an error record.
    Success,
    /// ERROR level, an error, or status >= 500.
    Error,
}

impl SpanStatus {
    /// The log API name (`SUCCESS`, `ERROR`).
    pub fn as_str(self) -> &'static str {
        match self {
            SpanStatus::Success => "SUCCESS",
            SpanStatus::Error => "ERROR",
        }
    }
}

/// One record of a trace seen as a span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Span id, if the record has one.
    pub span_id: Option<String>,
    /// Parent span id, if any.
    pub parent_span_id: Option<String>,
    /// Service name.
    pub service: String,
    /// Region, if known.
    pub region: Option<String>,
    /// `METHOD url` for an HTTP record, else the message.
    pub operation: String,
    /// The record's timestamp.
    pub start: DateTime<Utc>,
    /// HTTP duration in milliseconds, 0 when the record has none.
    pub duration_ms: f64,
    /// Success or error.
    pub status: SpanStatus,
    /// Id of the record the span comes from.
    pub record_id: String,
    /// The record is the span itself (a tracer's span), not a line written inside it.
    pub recorded: bool,
    /// The span's events, when `recorded`.
    pub events: Vec<SpanEvent>,
}

/// All records of one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceView {
    /// The trace id.
    pub trace_id: String,
    /// Earliest span start.
    pub start: DateTime<Utc>,
    /// Latest span end (start plus duration).
    pub end: DateTime<Utc>,
    /// `end - start` in milliseconds.
    pub total_duration_ms: f64,
    /// Spans by start, then record id.
    pub spans: Vec<Span>,
    /// The records, in the order of `spans`.
    pub records: Vec<LogRecord>,
}

impl TraceView {
    /// Assembles a trace; `None` without records.
    pub(crate) fn assemble(trace_id: &str, mut records: Vec<LogRecord>) -> Option<TraceView> {
        records.sort_by(|a, b| a.timestamp.cmp(&b.timestamp).then_with(|| a.id.cmp(&b.id)));
        let spans: Vec<Span> = records.iter().map(span_of).collect();
        let start = spans.first()?.start;
        let end = spans.iter().map(span_end).max().unwrap_or(start);
        Some(TraceView {
            trace_id: trace_id.to_string(),
            start,
            end,
            total_duration_ms: (end - start).num_microseconds().unwrap_or(0) as f64 / 1000.0,
            spans,
            records,
        })
    }
}

fn span_end(span: &Span) -> DateTime<Utc> {
    span.start + Duration::microseconds((span.duration_ms * 1000.0).round() as i64)
}

fn span_of(record: &LogRecord) -> Span {
    let trace = record.trace.as_ref();
    let http = record.http.as_ref();
    let facts = trace.and_then(|t| t.span.as_ref());
    let operation = match (
        facts,
        http.and_then(|h| h.method.as_deref()),
        http.and_then(|h| h.url.as_deref()),
    ) {
        (Some(facts), _, _) => facts.name.clone(),
        (None, Some(method), Some(url)) => format!("{method} {url}"),
        (None, None, Some(url)) => url.to_string(),
        _ => record.message.clone(),
    };
    Span {
        span_id: trace.and_then(|t| t.span_id.clone()),
        parent_span_id: trace.and_then(|t| t.parent_span_id.clone()),
        service: record.service.name.clone(),
        region: record.service.region.clone(),
        operation,
        start: record.timestamp,
        duration_ms: facts
            .map(|f| f.duration_ms)
            .or_else(|| record.duration_ms())
            .filter(|d| d.is_finite() && *d >= 0.0)
            .unwrap_or(0.0),
        status: if record.has_error() {
            SpanStatus::Error
        } else {
            SpanStatus::Success
        },
        record_id: record.id.clone(),
        recorded: facts.is_some(),
        events: facts.map(|f| f.events.clone()).unwrap_or_default(),
    }
}
