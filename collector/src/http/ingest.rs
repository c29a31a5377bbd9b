//! `POST /api/v1/ingest`.

use std::time::Instant;

use tracing::{Instrument, Span};

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use owl_model::{AGENT_ID_HEADER, BATCH_SEQ_HEADER};

use super::CollectorState;
use super::error::ApiError;
use crate::agent_tokens::AgentIdentity;
use crate::events::IngestAnswered;
use crate::ingest::{self, BatchBuilder, Encoding, IngestError, IngestOutcome};
use crate::wal::BatchKey;

/// Longest accepted `x-owl-agent-id`.
const MAX_AGENT_ID_LEN: usize = 256;

pub(crate) fn router() -> axum::Router<CollectorState> {
    axum::Router::new().route("/api/v1/ingest", post(ingest))
}

/// Sizes of what was read, for the metrics.
#[derive(Default)]
pub(super) struct Sizes {
    pub wire: usize,
    pub decoded: usize,
}

async fn ingest(
    State(state): State<CollectorState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let mut sizes = Sizes::default();
    let span = batch_span("owl");
    let result = handle(&state, &headers, body, &mut sizes)
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => ApiError::status(error).0,
    };
    let _entered = span.enter();
    answered(&state, "owl", status, started, &sizes, result.as_ref().ok());
    match result {
        Ok(outcome) => (StatusCode::OK, Json(outcome)).into_response(),
        Err(error) => ApiError {
            error,
            path: uri.path().to_string(),
            method,
        }
        .into_response(),
    }
}

/// The span of one ingest batch, inside its request's span: `protocol`, then `agent`,
/// `batch_key` and `records` as they become known, so every line logged while the batch is
/// received, stored and answered names it.
pub(super) fn batch_span(protocol: &'static str) -> Span {
    tracing::info_span!(
        "ingest_batch",
        protocol,
        agent = tracing::field::Empty,
        batch_key = tracing::field::Empty,
        records = tracing::field::Empty,
    )
}

async fn handle(
    state: &CollectorState,
    headers: &HeaderMap,
    body: Body,
    sizes: &mut Sizes,
) -> Result<IngestOutcome, IngestError> {
    let admitted = admit(state, headers).await?;
    let key = batch_key(headers)?.map(|key| namespaced(key, &admitted.identity));
    if let Some(key) = &key {
        let span = Span::current();
        span.record("agent", key.agent.as_str());
        span.record("batch_key", format!("{}:{}", key.agent, key.seq));
    }
    let (wire, encoding) = read(state, headers, body, sizes).await?;
    if let Some(key) = &key
        && let Some(outcome) = state.ingestor.known_batch(key).await?
    {
        return Ok(outcome);
    }
    let now = chrono::Utc::now();
    parse_and_store(
        state,
        admitted,
        key,
        wire,
        encoding,
        sizes,
        move |decoded, builder| ingest::parse_ndjson(decoded, now, builder),
    )
    .await
    .map(|(outcome, ())| outcome)
}

/// What a receiver without batch keys does with a request (OTLP, Elasticsearch, Loki): admit,
/// read, let `encoding` correct the body's encoding (a protocol may imply one), then parse into the
/// shared builder and store.
pub(super) async fn receive<T: Send + 'static>(
    state: &CollectorState,
    headers: &HeaderMap,
    body: Body,
    sizes: &mut Sizes,
    encoding: impl FnOnce(Encoding) -> Result<Encoding, IngestError>,
    parse: impl FnOnce(&[u8], &mut BatchBuilder<'_>) -> Result<T, IngestError> + Send + 'static,
) -> Result<(IngestOutcome, T), IngestError> {
    let admitted = admit(state, headers).await?;
    let (wire, sent) = read(state, headers, body, sizes).await?;
    let encoding = encoding(sent)?;
    parse_and_store(state, admitted, None, wire, encoding, sizes, parse).await
}

/// Accounts for an answered request: its log line and metrics, and the receiver's counters.
pub(super) fn answered(
    state: &CollectorState,
    protocol: &'static str,
    status: StatusCode,
    started: Instant,
    sizes: &Sizes,
    outcome: Option<&IngestOutcome>,
) {
    let event = IngestAnswered {
        protocol,
        status: status.as_u16(),
        elapsed: started.elapsed(),
        accepted: outcome.map_or(0, |o| o.accepted),
        duplicates: outcome.map_or(0, |o| o.duplicates),
        rejected: outcome.map_or(0, IngestOutcome::rejected_count),
        filtered: outcome.map_or(0, |o| o.filtered),
        wire_bytes: sizes.wire,
        decoded_bytes: sizes.decoded,
    };
    state.receivers.record(
        protocol,
        event.status,
        event.accepted + event.duplicates + event.filtered,
        event.rejected,
    );
    event.emit();
}

/// A request let in: its slot among `collector.max_concurrent_requests` and who sent it.
pub(super) struct Admitted {
    _slot: tokio::sync::OwnedSemaphorePermit,
    pub identity: AgentIdentity,
}

/// What every receiver checks first: a free request slot, an agent token in force, and an
/// index that keeps up.
pub(super) async fn admit(state: &CollectorState, headers: &HeaderMap) -> Result<Admitted, IngestError> {
    // Bounded before anything is read: each request holds up to `collector.max_body_bytes`.
    let slot = state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| IngestError::Busy { retry_after_s: 1 })?;
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let identity = state
        .tokens
        .identify_header(authorization)
        .await
        .ok_or(IngestError::Unauthorized)?;
    if let Some(name) = &identity.name {
        Span::current().record("agent", name.as_str());
    }
    state.ingestor.check_backlog()?;
    Ok(Admitted {
        _slot: slot,
        identity,
    })
}

/// The body as sent (within `collector.max_body_bytes`) and its `Content-Encoding`.
pub(super) async fn read(
    state: &CollectorState,
    headers: &HeaderMap,
    body: Body,
    sizes: &mut Sizes,
) -> Result<(Bytes, Encoding), IngestError> {
    let encoding = Encoding::from_header(
        headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("(not ASCII)")),
    )?;
    let wire = read_body(body, headers, state.ingestor.limits.max_body_bytes).await?;
    sizes.wire = wire.len();
    Ok((wire, encoding))
}

/// Decodes (with the limit on the decoded size) and parses on a blocking thread, then stores
/// durably. `parse` turns the decoded body into a batch through the builder every receiver shares,
/// and returns what the receiver needs for its answer besides the outcome.
pub(super) async fn parse_and_store<T: Send + 'static>(
    state: &CollectorState,
    admitted: Admitted,
    key: Option<BatchKey>,
    wire: Bytes,
    encoding: Encoding,
    sizes: &mut Sizes,
    parse: impl FnOnce(&[u8], &mut BatchBuilder<'_>) -> Result<T, IngestError> + Send + 'static,
) -> Result<(IngestOutcome, T), IngestError> {
    let worker = state.ingestor.clone();
    let limit = worker.limits.max_body_bytes;
    let batch_key = key.clone();
    let identity = admitted.identity.clone();
    let (decoded, parsed, extra) = tokio::task::spawn_blocking(move || {
        let decoded = ingest::decode(wire, encoding, limit)?;
        let mut builder = BatchBuilder::new(&worker.masker, &*worker.filter, &identity);
        let extra = parse(&decoded, &mut builder)?;
        Ok::<_, IngestError>((decoded.len(), builder.finish(batch_key.as_ref()), extra))
    })
    .await
    .map_err(|e| IngestError::Internal(format!("ingest task failed: {e}")))??;
    sizes.decoded = decoded;
    Span::current().record("records", parsed.item_count() as u64);
    let outcome = state.ingestor.store(key, parsed).await?;
    drop(admitted);
    Ok((outcome, extra))
}

/// A per-agent token's batches live under its name, so two nodes (a VM image cloned with the
/// agent's state) can never collide. A shared token keeps the key as sent, as before.
fn namespaced(key: BatchKey, identity: &AgentIdentity) -> BatchKey {
    match &identity.name {
        Some(name) => BatchKey {
            agent: format!("{name}/{}", key.agent),
            seq: key.seq,
        },
        None => key,
    }
}

/// The agent batch key, when both headers are present.
fn batch_key(headers: &HeaderMap) -> Result<Option<BatchKey>, IngestError> {
    let text = |name: &'static str| -> Result<Option<&str>, IngestError> {
        headers
            .get(name)
            .map(|v| v.to_str().map(str::trim))
            .transpose()
            .map_err(|_| IngestError::BadHeader {
                header: name,
                reason: "must be ASCII".into(),
            })
    };
    let agent = text(AGENT_ID_HEADER)?.filter(|a| !a.is_empty());
    let seq = text(BATCH_SEQ_HEADER)?.filter(|s| !s.is_empty());
    match (agent, seq) {
        (None, None) => Ok(None),
        (Some(agent), Some(seq)) => {
            if agent.len() > MAX_AGENT_ID_LEN {
                return Err(IngestError::BadHeader {
                    header: AGENT_ID_HEADER,
                    reason: format!("at most {MAX_AGENT_ID_LEN} characters"),
                });
            }
            let seq = seq.parse().map_err(|_| IngestError::BadHeader {
                header: BATCH_SEQ_HEADER,
                reason: format!(
                    "`{}` is not an unsigned integer",
                    seq.chars().take(32).collect::<String>()
                ),
            })?;
            Ok(Some(BatchKey {
                agent: agent.to_string(),
                seq,
            }))
        }
        (Some(_), None) => Err(IngestError::BadHeader {
            header: BATCH_SEQ_HEADER,
            reason: format!("required with {AGENT_ID_HEADER}"),
        }),
        (None, Some(_)) => Err(IngestError::BadHeader {
            header: AGENT_ID_HEADER,
            reason: format!("required with {BATCH_SEQ_HEADER}"),
        }),
    }
}

/// Reads the body as sent, refusing more than `limit` bytes (by `Content-Length` before reading).
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, IngestError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(IngestError::TooLarge {
            limit,
            decoded: false,
        });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(IngestError::TooLarge {
            limit,
            decoded: false,
        }),
        Err(error) => Err(IngestError::BadBody(error.to_string())),
    }
}
