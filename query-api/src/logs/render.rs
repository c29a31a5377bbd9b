//! How records and figures are written in answers: the log API's LogItem and summaries, the CRM analytics API's log item,
//! human sizes.

use chrono::{DateTime, Timelike, Utc};
use owl_index::TimeBucket;
use owl_model::LogRecord;
use serde_json::{Map, Value, json};

/// A number as JSON: an integer when it is one (`1234`, not `1234.0`), else rounded to 3 decimals.
pub(crate) fn num(value: f64) -> Value {
    if !value.is_finite() {
        return json!(0);
    }
    if value.fract() == 0.0 && value.abs() < 9.0e15 {
        return json!(value as i64);
    }
    json!((value * 1000.0).round() / 1000.0)
}

/// A mean in milliseconds as the log API shows it: a whole number of milliseconds, 0 when there is none.
pub(crate) fn mean_ms(value: Option<f64>) -> Value {
    num(value.unwrap_or(0.0).round())
}

/// A percentage with two decimals.
pub(crate) fn percent(part: u64, whole: u64) -> Value {
    if whole == 0 {
        return json!(0);
    }
    num((part as f64 / whole as f64 * 10_000.0).round() / 100.0)
}

/// Bytes as the log API writes sizes: `512B`, `1.5KB`, `2.3GB` (base 1024, one decimal, `.0` dropped).
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    let text = text.strip_suffix(".0").unwrap_or(&text);
    format!("{text}{}", UNITS[unit])
}

/// The log API's LogItem: the record in its canonical shape (with `id`, so `GET /logs/{id}` can find it).
pub(crate) fn log_item(record: &LogRecord) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}

/// An item of the log API's slow-request list.
pub(crate) fn slow_item(record: &LogRecord) -> Value {
    let http = record.http.as_ref();
    let mut item = json!({
        "id": record.id,
        "timestamp": owl_model::format_timestamp(&record.timestamp),
        "traceId": record.trace_id(),
        "requestId": http.and_then(|h| h.request_id.as_deref()),
        "method": http.and_then(|h| h.method.as_deref()),
        "url": http.and_then(|h| h.url.as_deref()),
        "duration": num(record.duration_ms().unwrap_or(0.0)),
        "statusCode": record.status_code(),
        "service": record.service.name,
        "region": record.service.region,
    });
    if let Some(user) = &record.user {
        item["user"] = json!({ "id": user.id, "name": user.name });
    }
    item
}

/// `HH:00` (the log API's hour label) and the bucket's start, so buckets of different days stay apart.
pub(crate) fn hour_label(start: &DateTime<Utc>) -> String {
    format!("{:02}:00", start.hour())
}

/// The log API's `byHour` of errors: `{hour, time, count}`.
pub(crate) fn hour_counts(buckets: &[TimeBucket]) -> Value {
    Value::Array(
        buckets
            .iter()
            .map(|b| json!({ "hour": hour_label(&b.start), "time": owl_model::format_timestamp(&b.start), "count": b.count }))
            .collect(),
    )
}

/// The log API's `byHour` of stats: `{hour, time, count, errorRate, avgDuration}`; `errorRate` is the
/// percentage of error records (ERROR level, an error object or a 5xx status) in the hour.
pub(crate) fn hour_stats(buckets: &[TimeBucket]) -> Value {
    Value::Array(
        buckets
            .iter()
            .map(|b| {
                json!({
                    "hour": hour_label(&b.start),
                    "time": owl_model::format_timestamp(&b.start),
                    "count": b.count,
                    "errorRate": percent(b.error_count, b.count),
                    "avgDuration": mean_ms(b.avg_duration_ms),
                })
            })
            .collect(),
    )
}

/// A time as the CRM analytics API writes it: naive UTC, `2025-01-01T12:00:00` (fractions only when present).
pub(crate) fn naive_time(at: &DateTime<Utc>) -> String {
    at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

/// The CRM analytics API's log item; `WARN` is written `WARNING`.
pub(crate) fn crm_item(record: &LogRecord) -> Value {
    let extra = record
        .extra
        .as_ref()
        .map(|m| Value::Object(m.clone()))
        .unwrap_or(Value::Null);
    let mut item = Map::new();
    item.insert("id".into(), json!(record.id));
    item.insert("timestamp".into(), json!(naive_time(&record.timestamp)));
    item.insert("level".into(), json!(record.level.python_name()));
    item.insert("message".into(), json!(record.message));
    item.insert("service".into(), json!(record.service.name));
    item.insert("name".into(), json!(record.logger));
    item.insert("function".into(), json!(record.function));
    item.insert("line".into(), json!(record.line));
    item.insert("file".into(), json!(record.file));
    item.insert("module".into(), json!(record.module));
    item.insert("thread".into(), json!(record.thread));
    item.insert("process".into(), json!(record.process));
    item.insert("exception".into(), json!(record.exception));
    item.insert("extra".into(), extra);
    Value::Object(item)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_the_log_api() {
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(512), "512B");
        assert_eq!(human_bytes(1536), "1.5KB");
        assert_eq!(human_bytes(45 * 1024 * 1024 * 1024), "45GB");
        assert_eq!(human_bytes((2.3 * 1024.0 * 1024.0 * 1024.0) as u64), "2.3GB");
    }

    #[test]
    fn numbers_are_integers_when_whole() {
        assert_eq!(num(1234.0), json!(1234));
        assert_eq!(num(0.12345), json!(0.123));
        assert_eq!(percent(1, 3), json!(33.33));
        assert_eq!(percent(0, 0), json!(0));
        assert_eq!(mean_ms(Some(122.5)), json!(123));
    }

    #[test]
    fn crm_items_follow_the_analytics_monitoring_api() {
        let record = LogRecord::from_json_slice(
            br#"{"id":"507f1f77bcf86cd799439011","timestamp":"2025-01-01T12:00:00","level":"WARNING","message":"m",
                "service":"foundation-service","name":"a.b","function":"login","line":45,"file":"/app/auth.py",
                "module":"auth","thread":12345,"process":1,"exception":null,"extra":null}"#,
            Utc::now(),
        )
        .unwrap();
        let item = crm_item(&record);
        assert_eq!(item["timestamp"], "2025-01-01T12:00:00");
        assert_eq!(item["level"], "WARNING");
        assert_eq!(item["extra"], Value::Null);
        let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "id",
                "timestamp",
                "level",
                "message",
                "service",
                "name",
                "function",
                "line",
                "file",
                "module",
                "thread",
                "process",
                "exception",
                "extra"
            ]
        );
    }
}
