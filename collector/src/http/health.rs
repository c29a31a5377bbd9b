//! `GET /health` and `GET /api/health`, without authentication.

use axum::Json;
use axum::routing::get;

use super::CollectorState;

pub(crate) fn router() -> axum::Router<CollectorState> {
    axum::Router::new()
        .route("/health", get(health))
        .route("/api/health", get(health))
}

async fn health() -> Json<serde_json::Value> {
    Json(owl_http::health_body(env!("CARGO_PKG_VERSION")))
}
