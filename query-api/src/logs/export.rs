//! `GET /api/v1/logs/export`: the records of a `/query` filter as CSV or NDJSON, streamed.
//!
//! Pages of [`EXPORT_PAGE`] records are read by timestamp with a keyset cursor (the last timestamp
//! written, plus the ids already written at exactly that timestamp), not by offset: each page costs
//! the same however deep the export is, and the index's paging depth limit does not apply. Memory
//! stays at one page; a client that stops reading stops the export (the channel closes). At most
//! `query_api.export_max_rows` records are written.

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use owl_index::{Index, LogFilter, SearchRequest, SortBy, SortOrder};
use owl_model::LogRecord;

use crate::csv_out::CsvLine;

/// Records read per page.
pub(crate) const EXPORT_PAGE: usize = 1000;

/// The file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON record per line (the log API's LogItem).
    Ndjson,
}

const CSV_COLUMNS: &[&str] = &[
    "id",
    "@timestamp",
    "level",
    "service",
    "region",
    "environment",
    "host",
    "message",
    "trace_id",
    "span_id",
    "request_id",
    "method",
    "url",
    "status_code",
    "duration_ms",
    "user_id",
    "user_name",
    "client_ip",
    "error_type",
    "error_code",
    "error_message",
];

fn csv_row(record: &LogRecord) -> String {
    let http = record.http.as_ref();
    let user = record.user.as_ref();
    let error = record.error.as_ref();
    let trace = record.trace.as_ref();
    fn text(v: Option<&str>) -> &str {
        v.unwrap_or_default()
    }
    let mut line = CsvLine::new();
    line.text(&record.id)
        .text(&owl_model::format_timestamp(&record.timestamp))
        .text(record.level.as_str())
        .text(&record.service.name)
        .text(text(record.service.region.as_deref()))
        .text(text(record.environment.as_deref()))
        .text(text(record.host.as_deref()))
        .text(&record.message)
        .text(text(record.trace_id()))
        .text(text(trace.and_then(|t| t.span_id.as_deref())))
        .text(text(http.and_then(|h| h.request_id.as_deref())))
        .text(text(http.and_then(|h| h.method.as_deref())))
        .text(text(http.and_then(|h| h.url.as_deref())));
    match record.status_code() {
        Some(status) => line.number(status),
        None => line.text(""),
    };
    match record.duration_ms() {
        Some(duration) => line.number(duration),
        None => line.text(""),
    };
    line.text(text(user.and_then(|u| u.id.as_deref())))
        .text(text(user.and_then(|u| u.name.as_deref())))
        .text(text(record.client.as_ref().and_then(|c| c.ip.as_deref())))
        .text(text(error.and_then(|e| e.error_type.as_deref())))
        .text(text(error.and_then(|e| e.code.as_deref())))
        .text(text(error.and_then(|e| e.message.as_deref())));
    line.finish()
}

/// The millisecond a timestamp falls in. Stored records come back at millisecond precision while
/// the index orders by microsecond, so the cursor works in whole milliseconds: the next page starts
/// (or ends) with the cursor's whole millisecond and skips the ids already written in it.
fn millisecond_of(at: &DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(at.timestamp_millis()).unwrap_or(*at)
}

/// One page after the cursor, in order.
fn page(
    index: &Index,
    base: &LogFilter,
    order: SortOrder,
    cursor: Option<DateTime<Utc>>,
    seen: &HashSet<String>,
) -> owl_index::Result<Vec<LogRecord>> {
    let mut filter = base.clone();
    if let Some(cursor) = cursor {
        match order {
            SortOrder::Desc => {
                let end = cursor + Duration::milliseconds(1);
                filter.end = Some(base.end.map_or(end, |e| e.min(end)));
            }
            SortOrder::Asc => filter.start = Some(base.start.map_or(cursor, |s| s.max(cursor))),
        }
    }
    let request = SearchRequest {
        filter,
        sort_by: SortBy::Timestamp,
        order,
        offset: 0,
        limit: EXPORT_PAGE + seen.len(),
    };
    let found = index.search(&request)?;
    Ok(found.hits.into_iter().filter(|r| !seen.contains(&r.id)).collect())
}

/// A running export: its body as a stream of chunks, and what the answer's headers say of it.
pub(crate) struct Export {
    /// The file, chunk by chunk; an error midway ends it.
    pub body: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
    /// Its media type.
    pub content_type: &'static str,
    /// The name a browser saves it under.
    pub file_name: String,
    /// Records matching the filter.
    pub total: u64,
    /// Records the file holds (at most `max_rows`).
    pub rows: u64,
}

/// Starts streaming the export; `total` is the number of matching records.
pub(crate) fn start(
    index: Index,
    filter: LogFilter,
    order: SortOrder,
    format: Format,
    max_rows: usize,
    total: u64,
) -> Export {
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        if format == Format::Csv {
            let header = crate::csv_out::header_line(CSV_COLUMNS);
            if sender.send(Ok(Bytes::from(header))).await.is_err() {
                return;
            }
        }
        let mut written = 0usize;
        let mut cursor: Option<DateTime<Utc>> = None;
        let mut seen: HashSet<String> = HashSet::new();
        while written < max_rows {
            let (index, filter, at, known) = (index.clone(), filter.clone(), cursor, seen.clone());
            let fetched = tokio::task::spawn_blocking(move || page(&index, &filter, order, at, &known)).await;
            let records = match fetched {
                Ok(Ok(records)) => records,
                Ok(Err(error)) => {
                    tracing::error!(%error, written, "log export failed midway");
                    let _ = sender.send(Err(std::io::Error::other(error.to_string()))).await;
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, written, "log export task failed midway");
                    let _ = sender.send(Err(std::io::Error::other(error.to_string()))).await;
                    return;
                }
            };
            if records.is_empty() {
                break;
            }
            let take = records.len().min(max_rows - written);
            let mut chunk = String::new();
            for record in &records[..take] {
                match format {
                    Format::Csv => chunk.push_str(&csv_row(record)),
                    Format::Ndjson => {
                        chunk.push_str(&serde_json::to_string(record).unwrap_or_default());
                        chunk.push('\n');
                    }
                }
                let at = millisecond_of(&record.timestamp);
                if cursor != Some(at) {
                    cursor = Some(at);
                    seen.clear();
                }
                seen.insert(record.id.clone());
            }
            written += take;
            if sender.send(Ok(Bytes::from(chunk))).await.is_err() {
                tracing::debug!(written, "log export client went away");
                return;
            }
        }
        tracing::debug!(written, "log export finished");
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Ndjson => ("application/x-ndjson", "ndjson"),
    };
    Export {
        body: Box::pin(stream),
        content_type,
        file_name: format!("owl-logs-{}.{extension}", Utc::now().format("%Y%m%dT%H%M%SZ")),
        total,
        rows: total.min(max_rows as u64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_are_quoted_and_guarded() {
        let record = owl_model::LogRecord::from_json_value(
            serde_json::json!({"id": "r1", "message": "\ttab, then \"quote\"", "service": "=cmd|' /C calc'!A0",
                "http": {"method": "GET", "url": "-2+3", "status_code": 500, "duration_ms": 12.5}}),
            chrono::Utc::now(),
        )
        .unwrap();
        let line = csv_row(&record);
        let cells = crate::csv_out::read_line(&line);
        assert_eq!(cells.len(), CSV_COLUMNS.len());
        assert_eq!(cells[3], "'=cmd|' /C calc'!A0");
        assert_eq!(cells[7], "'\ttab, then \"quote\"");
        assert_eq!(cells[12], "'-2+3");
        assert_eq!(cells[13], "500");
    }
}
