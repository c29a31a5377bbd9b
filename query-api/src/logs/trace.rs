//! The log API's trace view (`GET /api/v1/logs/trace/:traceId`) from the index's spans.
//!
//! Records that carry a span id become spans; several records of one span (its access record and
//! the application lines written inside it) fold into one: the earliest start, the latest end, the
//! HTTP record's operation, `ERROR` if any of them is an error. Records without a span id appear in
//! the timeline only. A trace whose records carry no span id at all is shown one span per record
//! (span id = record id), so the waterfall is never empty. The timeline lists each span's start and
//! end and each span-less record, in milliseconds from the trace start.
//!
//! A span a tracer sent (OpenTelemetry) is taken as it is: its name, start, duration, parent and
//! status define it, its events join the timeline, and the log records written inside it appear
//! in the timeline instead of stretching it.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use owl_index::{Span, SpanStatus, TraceView};
use serde_json::{Value, json};

use super::render::num;

struct Folded {
    span_id: String,
    parent_span_id: Option<String>,
    service: String,
    region: Option<String>,
    operation: String,
    has_http: bool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    error: bool,
}

fn span_end(span: &Span) -> DateTime<Utc> {
    span.start + Duration::microseconds((span.duration_ms * 1000.0).round() as i64)
}

fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// Renders the spans the caller may see (`keep[i]` for `view.spans[i]`); `None` when none remain.
pub(crate) fn render(view: &TraceView, keep: &[bool]) -> Option<Value> {
    let visible: Vec<(&Span, bool)> = view
        .spans
        .iter()
        .zip(&view.records)
        .zip(keep)
        .filter(|(_, keep)| **keep)
        .map(|((span, record), _)| (span, record.http.as_ref().is_some_and(|h| h.url.is_some())))
        .collect();
    if visible.is_empty() {
        return None;
    }
    let any_span_ids = visible
        .iter()
        .any(|(s, _)| s.span_id.as_deref().is_some_and(|id| !id.is_empty()));
    let recorded: HashSet<&str> = visible
        .iter()
        .filter(|(s, _)| s.recorded)
        .filter_map(|(s, _)| s.span_id.as_deref())
        .collect();
    let mut folded: Vec<Folded> = Vec::new();
    let mut loose: Vec<&Span> = Vec::new();
    let mut events: Vec<(DateTime<Utc>, String)> = Vec::new();
    for (span, has_http) in &visible {
        let id = match span.span_id.as_deref().filter(|id| !id.is_empty()) {
            Some(id) if !span.recorded && recorded.contains(id) => {
                loose.push(span);
                continue;
            }
            Some(id) => id.to_string(),
            None if any_span_ids => {
                loose.push(span);
                continue;
            }
            None => span.record_id.clone(),
        };
        let end = span_end(span);
        let error = span.status == SpanStatus::Error;
        if span.recorded {
            for event in &span.events {
                events.push((
                    event.time,
                    format!("{} {}: {}", span.service, span.operation, event.name),
                ));
            }
        }
        match folded.iter_mut().find(|f| f.span_id == id) {
            Some(f) if span.recorded => {
                // A second copy of one span (sent twice under other record ids): the first stands.
                f.error |= error;
            }
            Some(f) => {
                f.start = f.start.min(span.start);
                f.end = f.end.max(end);
                f.error |= error;
                if f.parent_span_id.is_none() {
                    f.parent_span_id = span.parent_span_id.clone();
                }
                if *has_http && !f.has_http {
                    f.operation = span.operation.clone();
                    f.has_http = true;
                }
                if f.region.is_none() {
                    f.region = span.region.clone();
                }
            }
            None => folded.push(Folded {
                span_id: id,
                parent_span_id: span.parent_span_id.clone().filter(|p| !p.is_empty()),
                service: span.service.clone(),
                region: span.region.clone(),
                operation: span.operation.clone(),
                has_http: *has_http,
                start: span.start,
                end,
                error,
            }),
        }
    }
    let start = folded
        .iter()
        .map(|f| f.start)
        .chain(loose.iter().map(|s| s.start))
        .chain(events.iter().map(|(time, _)| *time))
        .min()
        .expect("at least one span");
    let end = folded
        .iter()
        .map(|f| f.end)
        .chain(loose.iter().map(|s| span_end(s)))
        .max()
        .expect("at least one span");
    folded.sort_by(|a, b| a.start.cmp(&b.start).then_with(|| a.span_id.cmp(&b.span_id)));

    let spans: Vec<Value> = folded
        .iter()
        .map(|f| {
            json!({
                "spanId": f.span_id,
                "parentSpanId": f.parent_span_id,
                "service": f.service,
                "region": f.region,
                "operation": f.operation,
                "startTime": owl_model::format_timestamp(&f.start),
                "duration": num(millis_between(f.start, f.end)),
                "status": if f.error { "ERROR" } else { "SUCCESS" },
            })
        })
        .collect();

    let mut timeline: Vec<(f64, usize, String)> = Vec::new();
    for (order, f) in folded.iter().enumerate() {
        timeline.push((
            millis_between(start, f.start),
            order * 2,
            format!("{} {} started", f.service, f.operation),
        ));
        let outcome = if f.error { "failed" } else { "completed" };
        timeline.push((
            millis_between(start, f.end),
            order * 2 + 1,
            format!("{} {} {outcome}", f.service, f.operation),
        ));
    }
    for span in &loose {
        timeline.push((
            millis_between(start, span.start),
            usize::MAX,
            format!("{} {}", span.service, span.operation),
        ));
    }
    for (time, event) in events {
        timeline.push((millis_between(start, time), usize::MAX, event));
    }
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let timeline: Vec<Value> = timeline
        .into_iter()
        .map(|(time, _, event)| json!({ "time": num(time), "event": event }))
        .collect();

    Some(json!({
        "traceId": view.trace_id,
        "startTime": owl_model::format_timestamp(&start),
        "endTime": owl_model::format_timestamp(&end),
        "totalDuration": num(millis_between(start, end)),
        "spans": spans,
        "timeline": timeline,
    }))
}
