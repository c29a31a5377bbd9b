//! `GET /health` and `GET /api/health`, without authentication; `GET /health/detailed` with an
//! agent token: what each receiver has taken since start; `GET /metrics` (Prometheus) likewise.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::CollectorState;

pub(crate) fn router() -> axum::Router<CollectorState> {
    axum::Router::new()
        .route("/health", get(health))
        .route("/api/health", get(health))
        .route("/health/detailed", get(detailed))
        .route("/metrics", get(prometheus))
}

/// `GET /metrics`: the collector's Prometheus metrics, for an agent token holder (Prometheus:
/// `authorization: {credentials: <token>}` in the scrape config).
async fn prometheus(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if state.tokens.identify_header(authorization).await.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "send an agent token\n",
        )
            .into_response();
    }
    match crate::metrics::prometheus() {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "another metrics recorder is installed in this process\n",
        )
            .into_response(),
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(owl_http::health_body(env!("CARGO_PKG_VERSION")))
}

async fn detailed(State(state): State<CollectorState>, headers: HeaderMap) -> Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if state.tokens.identify_header(authorization).await.is_none() {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({"status": "healthy", "message": "send an agent token for the receivers' figures"})),
        )
            .into_response();
    }
    let mut body = owl_http::health_body(env!("CARGO_PKG_VERSION"));
    body["receivers"] = serde_json::to_value(state.receivers.snapshot()).unwrap_or_default();
    Json(body).into_response()
}
