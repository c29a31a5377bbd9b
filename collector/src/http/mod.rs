//! The collector's HTTP surface: one file per resource, each with its `router()`.

mod elastic;
mod error;
mod health;
mod ingest;
mod loki;
pub mod openapi;
mod otlp;

use std::sync::Arc;

use axum::Router;

use crate::ingest::Ingestor;
use crate::token::AgentTokens;

/// What the handlers share: the ingest path and the accepted agent tokens. Cheap to clone.
#[derive(Clone)]
pub struct CollectorState {
    pub(crate) ingestor: Arc<Ingestor>,
    /// Ingest requests in progress (`collector.max_concurrent_requests`).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    pub(crate) tokens: Arc<AgentTokens>,
    pub(crate) region: Arc<str>,
    pub(crate) receivers: Arc<crate::receivers::ReceiverStats>,
}

impl std::fmt::Debug for CollectorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CollectorState")
            .field("tokens", &self.tokens)
            .field("region", &self.region)
            .finish()
    }
}

/// The collector's routes: `POST /api/v1/ingest`, `GET /health` and `GET /api/health`, behind the
/// Data Plane trace-header layer. Tests serve it with `oneshot` or on a bound listener.
pub fn router(state: CollectorState) -> Router {
    let trace = owl_http::TraceLayer::new(&*state.region, "owl-collector");
    Router::new()
        .merge(ingest::router())
        .merge(otlp::router())
        .merge(elastic::router())
        .merge(loki::router())
        .merge(health::router())
        .fallback(error::not_found)
        .with_state(state)
        .layer(trace)
}
