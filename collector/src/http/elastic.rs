//! The Elasticsearch surface the log shippers need: `_bulk` (stored), and the probes they make
//! before sending (`GET /`, `_cluster/health`, `_license`, `_xpack`, templates, ILM policies,
//! ingest pipelines, data streams), answered so that they start. Every answer carries
//! `X-Elastic-Product: Elasticsearch`, which elasticsearch-py and the Elastic agents check.

use std::time::Instant;
use tracing::Instrument;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::CollectorState;
use super::error::with_refusal_headers;
use super::ingest::{Sizes, answered, receive};
use crate::elastic::{self, BulkItem, Op};
use crate::ingest::{IngestError, IngestOutcome};

const PRODUCT: HeaderName = HeaderName::from_static("x-elastic-product");

/// The version announced to a client that asks for no compatibility mode.
const VERSION: &str = "8.17.0";

pub(crate) fn router() -> axum::Router<CollectorState> {
    axum::Router::new()
        .route("/", get(info))
        .route("/_bulk", post(bulk_all).put(bulk_all))
        .route("/{index}/_bulk", post(bulk_index).put(bulk_index))
        .route("/_cluster/health", get(cluster_health))
        .route("/_license", get(license))
        .route("/_xpack", get(xpack))
        .route("/_ilm/policy/{name}", get(exists).put(acknowledged))
        .route("/_index_template/{name}", get(index_template).put(acknowledged))
        .route("/_template/{name}", get(legacy_template).put(acknowledged))
        .route("/_ingest/pipeline/{name}", get(exists).put(acknowledged))
        .route("/_data_stream/{name}", get(data_stream).put(acknowledged))
        .layer(axum::middleware::map_response(
            |mut response: Response| async move {
                response
                    .headers_mut()
                    .insert(PRODUCT, HeaderValue::from_static("Elasticsearch"));
                response
            },
        ))
}

/// The compatibility major a client asked for (`compatible-with=9`), if any.
fn compat(headers: &HeaderMap) -> Option<u8> {
    [header::ACCEPT, header::CONTENT_TYPE].iter().find_map(|name| {
        let value = headers.get(name)?.to_str().ok()?;
        let (_, rest) = value.split_once("compatible-with=")?;
        rest.trim_matches(|c: char| !c.is_ascii_digit())
            .get(..1)?
            .parse()
            .ok()
    })
}

/// A JSON answer in the media type the client speaks.
fn answer(headers: &HeaderMap, status: StatusCode, body: Value) -> Response {
    let content_type = match compat(headers) {
        Some(major) => format!("application/vnd.elasticsearch+json; compatible-with={major}"),
        None => "application/json".to_string(),
    };
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).expect("ASCII"),
    );
    response
}

/// Elasticsearch's error shape for a refused request.
fn refuse(headers: &HeaderMap, error: &IngestError) -> Response {
    let (status, kind, retry_after) = match error {
        IngestError::Unauthorized => (StatusCode::UNAUTHORIZED, "security_exception", None),
        IngestError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "content_too_long_exception", None),
        IngestError::UnsupportedMediaType(_) | IngestError::UnsupportedEncoding(_) => {
            (StatusCode::NOT_ACCEPTABLE, "media_type_header_exception", None)
        }
        IngestError::Busy { retry_after_s } | IngestError::Overloaded { retry_after_s, .. } => (
            StatusCode::TOO_MANY_REQUESTS,
            "es_rejected_execution_exception",
            Some(*retry_after_s),
        ),
        IngestError::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable_shards_exception",
            Some(1),
        ),
        IngestError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "exception", None),
        _ => (StatusCode::BAD_REQUEST, "illegal_argument_exception", None),
    };
    let reason = super::error::ApiError::client_message(error, status);
    let response = answer(
        headers,
        status,
        json!({
            "error": {"root_cause": [{"type": kind, "reason": reason}], "type": kind, "reason": reason},
            "status": status.as_u16(),
        }),
    );
    with_refusal_headers(response, retry_after, "Basic realm=\"owl\", ApiKey, Bearer")
}

/// Answers a probe with `body`; the probes need the token too, as on a secured cluster.
async fn probe(state: &CollectorState, headers: &HeaderMap, body: impl FnOnce() -> Value) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.tokens.identify_header(authorization).await {
        Some(_) => answer(headers, StatusCode::OK, body()),
        None => refuse(headers, &IngestError::Unauthorized),
    }
}

fn info_body(state: &CollectorState, headers: &HeaderMap) -> Value {
    let version = match compat(headers) {
        Some(9) => "9.1.0".to_string(),
        _ => VERSION.to_string(),
    };
    json!({
        "name": format!("owl-collector-{}", state.region),
        "cluster_name": "owl",
        "cluster_uuid": "owl",
        "version": {
            "number": version,
            "build_flavor": "default",
            "build_type": "owl",
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    })
}

async fn info(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    probe(&state, &headers, || info_body(&state, &headers)).await
}

async fn cluster_health(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    probe(&state, &headers, || {
        json!({
            "cluster_name": "owl", "status": "green", "timed_out": false, "number_of_nodes": 1,
            "number_of_data_nodes": 1, "active_primary_shards": 1, "active_shards": 1,
            "relocating_shards": 0, "initializing_shards": 0, "unassigned_shards": 0,
            "active_shards_percent_as_number": 100.0,
        })
    })
    .await
}

async fn license(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    probe(
        &state,
        &headers,
        || json!({"license": {"status": "active", "uid": "owl", "type": "basic", "issue_date_in_millis": 0}}),
    )
    .await
}

async fn xpack(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    probe(&state, &headers, || {
        let off = json!({"available": false, "enabled": false});
        json!({
            "build": {"hash": "owl", "date": "2026-01-01T00:00:00Z"},
            "license": {"uid": "owl", "type": "basic", "mode": "basic", "status": "active"},
            "features": {"ilm": {"available": true, "enabled": true}, "security": off, "ml": off},
        })
    })
    .await
}

/// A policy, pipeline or template of that name exists (Owl needs none of them: what a shipper
/// would install is taken as installed).
async fn exists(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    probe(&state, &headers, || json!({ name: {} })).await
}

async fn index_template(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    probe(&state, &headers, || json!({"index_templates": [{"name": name, "index_template": {"index_patterns": [format!("{name}*")], "composed_of": []}}]})).await
}

async fn legacy_template(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    probe(
        &state,
        &headers,
        || json!({ name.clone(): {"index_patterns": [format!("{name}*")]} }),
    )
    .await
}

async fn data_stream(
    State(state): State<CollectorState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    probe(&state, &headers, || json!({"data_streams": [{"name": name, "timestamp_field": {"name": "@timestamp"}, "status": "GREEN"}]})).await
}

async fn acknowledged(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    probe(&state, &headers, || json!({"acknowledged": true})).await
}

async fn bulk_all(State(state): State<CollectorState>, headers: HeaderMap, body: Body) -> Response {
    bulk(state, headers, None, body).await
}

async fn bulk_index(
    State(state): State<CollectorState>,
    Path(index): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    bulk(state, headers, Some(index), body).await
}

/// Media types a bulk body may come in.
fn bulk_media_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let media = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        media.as_str(),
        "application/x-ndjson"
            | "application/json"
            | "application/vnd.elasticsearch+x-ndjson"
            | "application/vnd.elasticsearch+json"
    )
}

async fn bulk(state: CollectorState, headers: HeaderMap, index: Option<String>, body: Body) -> Response {
    let started = Instant::now();
    let mut sizes = Sizes::default();
    let span = super::ingest::batch_span("elasticsearch");
    let result = if bulk_media_type(&headers) {
        handle(&state, &headers, index, body, &mut sizes)
            .instrument(span.clone())
            .await
    } else {
        Err(IngestError::UnsupportedMediaType("send `application/x-ndjson`"))
    };
    let status = match &result {
        Ok(_) => StatusCode::OK,
        Err(error) => super::error::ApiError::status(error).0,
    };
    let _entered = span.enter();
    answered(
        &state,
        "elasticsearch",
        status,
        started,
        &sizes,
        result.as_ref().ok().map(|(o, _)| o),
    );
    match result {
        Ok((outcome, items)) => answer(&headers, StatusCode::OK, bulk_answer(&outcome, &items, started)),
        Err(error) => refuse(&headers, &error),
    }
}

async fn handle(
    state: &CollectorState,
    headers: &HeaderMap,
    index: Option<String>,
    body: Body,
    sizes: &mut Sizes,
) -> Result<(IngestOutcome, Vec<BulkItem>), IngestError> {
    let now = chrono::Utc::now();
    receive(state, headers, body, sizes, Ok, move |decoded, builder| {
        elastic::parse_bulk(decoded, index.as_deref(), now, builder)
    })
    .await
}

/// `{took, errors, items}`, one entry per action in the request's order.
fn bulk_answer(outcome: &IngestOutcome, items: &[BulkItem], started: Instant) -> Value {
    let duplicates: std::collections::HashSet<usize> = outcome.duplicate_positions.iter().copied().collect();
    let mut errors = false;
    let entries: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut entry = json!({"_index": item.index, "_id": item.id});
            let error = item.error.clone().or_else(|| {
                (item.op == Op::Create && duplicates.contains(&item.position)).then(|| elastic::ItemError {
                    status: 409,
                    kind: "version_conflict_engine_exception",
                    reason: format!("[{}]: version conflict, document already exists", item.id),
                })
            });
            match error {
                Some(error) => {
                    errors = true;
                    entry["status"] = json!(error.status);
                    entry["error"] = json!({"type": error.kind, "reason": error.reason, "index": item.index});
                }
                None => {
                    let duplicate = duplicates.contains(&item.position);
                    entry["_version"] = json!(if duplicate { 2 } else { 1 });
                    entry["result"] = json!(if duplicate { "updated" } else { "created" });
                    entry["_shards"] = json!({"total": 1, "successful": 1, "failed": 0});
                    entry["_seq_no"] = json!(item.position - 1);
                    entry["_primary_term"] = json!(1);
                    entry["status"] = json!(if duplicate { 200 } else { 201 });
                }
            }
            json!({ item.op.as_str(): entry })
        })
        .collect();
    json!({
        "took": started.elapsed().as_millis() as u64,
        "errors": errors,
        "items": entries,
    })
}
