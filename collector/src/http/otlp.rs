//! OTLP/HTTP: `POST /v1/logs` and `POST /v1/traces`, in protobuf or JSON, gzip or not.
//!
//! Answers follow the OTLP specification: the `Export*ServiceResponse` in the request's content
//! type, with `partial_success` counting refused items; a `google.rpc.Status` body for a refused
//! request; overload as 503 with `Retry-After` (the SDK exporters retry 503, and not all of them
//! retry 429).

use std::time::Instant;
use tracing::Instrument;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

use super::CollectorState;
use super::error::{ApiError, with_refusal_headers};
use super::ingest::{Sizes, answered, receive};
use crate::ingest::{IngestError, IngestOutcome};
use crate::otlp;

pub(crate) fn router() -> axum::Router<CollectorState> {
    axum::Router::new()
        .route("/v1/logs", post(logs))
        .route("/v1/traces", post(traces))
}

/// The two encodings of OTLP/HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn of(headers: &HeaderMap) -> Option<Format> {
        let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let media = value.split(';').next()?.trim();
        if media.eq_ignore_ascii_case("application/x-protobuf")
            || media.eq_ignore_ascii_case("application/protobuf")
        {
            Some(Format::Protobuf)
        } else if media.eq_ignore_ascii_case("application/json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => "application/x-protobuf",
            Format::Json => "application/json",
        }
    }

    /// Decodes a request message.
    fn decode<M: Message + Default + serde::de::DeserializeOwned>(
        self,
        body: &[u8],
    ) -> Result<M, IngestError> {
        match self {
            Format::Protobuf => M::decode(body)
                .map_err(|e| IngestError::BadMessage(format!("not a valid OTLP protobuf message: {e}"))),
            Format::Json => serde_json::from_slice(body)
                .map_err(|e| IngestError::BadMessage(format!("not a valid OTLP/JSON message: {e}"))),
        }
    }

    /// Encodes an answer message.
    fn encode<M: Message + serde::Serialize>(self, status: StatusCode, message: &M) -> Response {
        let body = match self {
            Format::Protobuf => message.encode_to_vec(),
            Format::Json => {
                // OTLP/JSON leaves out fields at their default; the generated types write `null`.
                let mut value = serde_json::to_value(message).expect("OTLP messages serialise");
                drop_nulls(&mut value);
                value.to_string().into_bytes()
            }
        };
        (status, [(header::CONTENT_TYPE, self.content_type())], body).into_response()
    }
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// `google.rpc.Status`, the body of a refused OTLP request.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    /// Always empty: the message says what is wrong.
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`, only so that `details` has its type.
#[derive(Clone, PartialEq, prost::Message, serde::Serialize)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// Which signal a request carries.
#[derive(Debug, Clone, Copy)]
enum Signal {
    Logs,
    Traces,
}

impl Signal {
    fn protocol(self) -> &'static str {
        match self {
            Signal::Logs => "otlp_logs",
            Signal::Traces => "otlp_traces",
        }
    }
}

async fn logs(State(state): State<CollectorState>, headers: HeaderMap, body: Body) -> Response {
    export(state, headers, body, Signal::Logs).await
}

async fn traces(State(state): State<CollectorState>, headers: HeaderMap, body: Body) -> Response {
    export(state, headers, body, Signal::Traces).await
}

async fn export(state: CollectorState, headers: HeaderMap, body: Body, signal: Signal) -> Response {
    let started = Instant::now();
    let mut sizes = Sizes::default();
    let format = Format::of(&headers);
    let span = super::ingest::batch_span(signal.protocol());
    let result = match format {
        Some(format) => {
            handle(&state, &headers, body, &mut sizes, format, signal)
                .instrument(span.clone())
                .await
        }
        None => Err(IngestError::UnsupportedMediaType(
            "send `application/x-protobuf` or `application/json`",
        )),
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => otlp_status(error).0,
    };
    let _entered = span.enter();
    answered(
        &state,
        signal.protocol(),
        status,
        started,
        &sizes,
        result.as_ref().ok(),
    );
    let format = format.unwrap_or(Format::Json);
    match result {
        Ok(outcome) => answer(format, signal, &outcome),
        Err(error) => refuse(format, &error),
    }
}

async fn handle(
    state: &CollectorState,
    headers: &HeaderMap,
    body: Body,
    sizes: &mut Sizes,
    format: Format,
    signal: Signal,
) -> Result<IngestOutcome, IngestError> {
    let now = chrono::Utc::now();
    receive(state, headers, body, sizes, Ok, move |decoded, builder| {
        let mapped = match signal {
            Signal::Logs => otlp::log_records(format.decode::<ExportLogsServiceRequest>(decoded)?, now),
            Signal::Traces => otlp::span_records(format.decode::<ExportTraceServiceRequest>(decoded)?, now),
        };
        builder.extend(mapped);
        Ok(())
    })
    .await
    .map(|(outcome, ())| outcome)
}

/// The success answer, with `partial_success` when items were refused.
fn answer(format: Format, signal: Signal, outcome: &IngestOutcome) -> Response {
    let rejected = outcome.rejected_count() as i64;
    let message = || {
        let mut text: Vec<String> = outcome
            .rejected
            .iter()
            .take(10)
            .map(|r| format!("item {}: {}", r.line, r.reason))
            .collect();
        if outcome.rejected_count() > text.len() {
            text.push(format!("and {} more", outcome.rejected_count() - text.len()));
        }
        text.join("; ")
    };
    match signal {
        Signal::Logs => format.encode(
            StatusCode::OK,
            &ExportLogsServiceResponse {
                partial_success: (rejected > 0).then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message(),
                }),
            },
        ),
        Signal::Traces => format.encode(
            StatusCode::OK,
            &ExportTraceServiceResponse {
                partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message(),
                }),
            },
        ),
    }
}

/// The HTTP status, gRPC code and `Retry-After` of a refused request.
fn otlp_status(error: &IngestError) -> (StatusCode, i32, Option<u64>) {
    const INVALID_ARGUMENT: i32 = 3;
    const RESOURCE_EXHAUSTED: i32 = 8;
    const INTERNAL: i32 = 13;
    const UNAVAILABLE: i32 = 14;
    const UNAUTHENTICATED: i32 = 16;
    match error {
        IngestError::Busy { retry_after_s } | IngestError::Overloaded { retry_after_s, .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, Some(*retry_after_s))
        }
        IngestError::Unauthorized => (StatusCode::UNAUTHORIZED, UNAUTHENTICATED, None),
        IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, RESOURCE_EXHAUSTED, None),
        IngestError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, UNAVAILABLE, Some(1)),
        IngestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, INTERNAL, None),
        other => (ApiError::status(other).0, INVALID_ARGUMENT, None),
    }
}

fn refuse(format: Format, error: &IngestError) -> Response {
    let (status, code, retry_after) = otlp_status(error);
    let message = ApiError::client_message(error, status);
    let response = format.encode(
        status,
        &RpcStatus {
            code,
            message,
            details: Vec::new(),
        },
    );
    with_refusal_headers(response, retry_after, "Bearer")
}
