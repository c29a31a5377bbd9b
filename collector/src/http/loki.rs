//! Loki's push API: `POST /loki/api/v1/push` (protobuf + snappy, or JSON, optionally gzip),
//! answered `204` once durable; `GET /ready` for the shippers' health checks.
//!
//! Errors are plain text as Loki writes them; overload is `429` with `Retry-After`, which Promtail,
//! Alloy and Vector retry.

use std::time::Instant;
use tracing::Instrument;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::CollectorState;
use super::error::{ApiError, with_refusal_headers};
use super::ingest::{Sizes, answered, receive};
use crate::ingest::{Encoding, IngestError, IngestOutcome};
use crate::loki;

pub(crate) fn router() -> axum::Router<CollectorState> {
    axum::Router::new()
        .route("/loki/api/v1/push", post(push))
        .route("/ready", get(ready))
}

async fn ready() -> &'static str {
    "ready\n"
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

/// Loki reads a body without `Content-Type` as protobuf, as Promtail sends it.
fn format_of(headers: &HeaderMap) -> Option<Format> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Some(Format::Protobuf);
    };
    let media = value
        .to_str()
        .ok()?
        .split(';')
        .next()?
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Format::Protobuf),
        "application/json" => Some(Format::Json),
        _ => None,
    }
}

async fn push(State(state): State<CollectorState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let mut sizes = Sizes::default();
    let span = super::ingest::batch_span("loki");
    let result = match format_of(&headers) {
        Some(format) => {
            handle(&state, &headers, body, &mut sizes, format)
                .instrument(span.clone())
                .await
        }
        None => Err(IngestError::UnsupportedMediaType(
            "send `application/x-protobuf` (snappy) or `application/json`",
        )),
    };
    let status = match &result {
        Ok(_) => StatusCode::NO_CONTENT,
        Err(error) => ApiError::status(error).0,
    };
    let _entered = span.enter();
    answered(&state, "loki", status, started, &sizes, result.as_ref().ok());
    match result {
        Ok(outcome) if outcome.rejected_count() > 0 => {
            // Loki refuses a push with a bad entry as a whole; Owl keeps the good ones and says
            // which were refused, with Loki's status for a partial write.
            let reasons: Vec<String> = outcome
                .rejected
                .iter()
                .take(10)
                .map(|r| format!("entry {}: {}", r.line, r.reason))
                .collect();
            let text = format!(
                "{} entries stored, {} refused: {}\n",
                outcome.accepted + outcome.duplicates + outcome.filtered,
                outcome.rejected_count(),
                reasons.join("; ")
            );
            (StatusCode::BAD_REQUEST, text).into_response()
        }
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(error) => refuse(&error),
    }
}

async fn handle(
    state: &CollectorState,
    headers: &HeaderMap,
    body: Body,
    sizes: &mut Sizes,
    format: Format,
) -> Result<IngestOutcome, IngestError> {
    // A protobuf push is always snappy; `Content-Encoding` may say so or be absent.
    let encoding = move |sent| match (format, sent) {
        (Format::Protobuf, Encoding::Identity | Encoding::Snappy) => Ok(Encoding::Snappy),
        (Format::Protobuf, _) => Err(IngestError::UnsupportedMediaType(
            "a protobuf push is snappy-compressed; send no other Content-Encoding",
        )),
        (Format::Json, sent) => Ok(sent),
    };
    let now = chrono::Utc::now();
    receive(state, headers, body, sizes, encoding, move |decoded, builder| {
        let records = match format {
            Format::Protobuf => loki::protobuf_records(decoded, now)?,
            Format::Json => loki::json_records(decoded, now)?,
        };
        builder.extend(records);
        Ok(())
    })
    .await
    .map(|(outcome, ())| outcome)
}

fn refuse(error: &IngestError) -> Response {
    let (status, _, retry_after) = ApiError::status(error);
    let message = ApiError::client_message(error, status);
    let response = (status, format!("{message}\n")).into_response();
    with_refusal_headers(response, retry_after, "Basic realm=\"owl\", Bearer")
}
