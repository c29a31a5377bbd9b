//! Health (platform API): `/health` and `/api/health` answer that the process serves; `/health/detailed`
//! probes every dependency for real, each within [`PROBE_TIMEOUT`]:
//!
//! - `database`: `SELECT 1` and its latency;
//! - `redis` / `cache`: a write, read and delete round trip through the shared store;
//! - `index`: opening the searchers of the last hour and counting its records;
//! - `disk`: free space of the data directory.
//!
//! Overall `healthy` when all pass; `degraded` when the cache or index fails or the disk is nearly
//! full (below 10 % free); `unhealthy` (HTTP 503) when the database fails or the disk is full
//! (below 2 % free), since nothing can be signed into or recorded then.

use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Json as AxumJson, Response};
use serde_json::{Value, json};

use super::Routes;
use super::extract::AuthUser;
use crate::envelope::{Family, StatusOk, now_rfc3339};
use crate::permissions::Access;
use crate::state::AppState;

/// The longest a single probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Free disk below this percentage makes the node degraded.
const DISK_DEGRADED_PERCENT: f64 = 10.0;
/// Free disk below this percentage makes the node unhealthy.
const DISK_UNHEALTHY_PERCENT: f64 = 2.0;

/// The routes.
pub(crate) fn routes() -> Routes {
    Routes::new(Family::Platform, "health")
        .route(Method::GET, "/health", Access::Public, health)
        .doc(unhealthy())
        .route(Method::GET, "/api/health", Access::Public, health)
        .doc(unhealthy())
        .route(Method::GET, "/health/detailed", Access::Public, detailed)
        .doc(unhealthy())
}

/// Unhealthy is a 503 in the success envelope, with `status: "error"`.
fn unhealthy() -> super::openapi::Doc {
    super::openapi::Doc::default().success_also(503)
}

/// The health router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

async fn health() -> Response {
    AxumJson(owl_http::health_body(env!("CARGO_PKG_VERSION"))).into_response()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Degraded => "degraded",
            Level::Unhealthy => "unhealthy",
        }
    }
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0 * 100.0).round() / 100.0
}

async fn within<T, E: std::fmt::Display>(future: impl Future<Output = Result<T, E>>) -> Result<T, String> {
    match tokio::time::timeout(PROBE_TIMEOUT, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

async fn probe_database(state: &AppState) -> (Level, Value) {
    match within(state.db.ping()).await {
        Ok(latency) => (
            Level::Healthy,
            json!({ "status": "connected", "backend": state.db.backend().name(), "latency_ms": millis(latency) }),
        ),
        Err(error) => {
            tracing::warn!(%error, "health: database probe failed");
            (
                Level::Unhealthy,
                json!({ "status": "disconnected", "backend": state.db.backend().name(), "error": "database unreachable" }),
            )
        }
    }
}

async fn probe_cache(state: &AppState) -> (Level, Value) {
    let started = Instant::now();
    let key = format!("health:{}", uuid::Uuid::new_v4().simple());
    let round_trip = async {
        state.kv.set(&key, "1", Some(Duration::from_secs(10))).await?;
        let value = state.kv.get(&key).await?;
        state.kv.delete(&key).await?;
        Ok::<_, crate::kv::KvError>(value.as_deref() == Some("1"))
    };
    let backend = state.kv.backend();
    match within(round_trip).await {
        Ok(true) => (
            Level::Healthy,
            json!({ "status": "connected", "backend": backend, "latency_ms": millis(started.elapsed()) }),
        ),
        Ok(false) => (
            Level::Degraded,
            json!({ "status": "inconsistent", "backend": backend, "error": "value written was not read back" }),
        ),
        Err(error) => {
            tracing::warn!(%error, "health: cache probe failed");
            (
                Level::Degraded,
                json!({ "status": "disconnected", "backend": backend, "error": "cache unreachable" }),
            )
        }
    }
}

async fn probe_index(state: &AppState) -> (Level, Value) {
    let index = state.index.clone();
    let now = state.clock.now();
    let started = Instant::now();
    let count = tokio::task::spawn_blocking(move || {
        let filter = owl_index::LogFilter::between(now - chrono::Duration::hours(1), now);
        let count = index.count(&filter)?;
        let partitions = index.partitions()?.len();
        Ok::<_, owl_index::IndexError>((count, partitions))
    });
    match within(async { count.await.map_err(|e| e.to_string())?.map_err(|e| e.to_string()) }).await {
        Ok((count, partitions)) => (
            Level::Healthy,
            json!({ "status": "ok", "records_last_hour": count, "partitions": partitions, "latency_ms": millis(started.elapsed()) }),
        ),
        Err(error) => {
            tracing::warn!(%error, "health: index probe failed");
            (
                Level::Degraded,
                json!({ "status": "error", "error": "index unreadable" }),
            )
        }
    }
}

fn probe_disk(state: &AppState) -> (Level, Value) {
    let dir = &state.config.data_dir;
    let measured = fs2::available_space(dir).and_then(|free| Ok((free, fs2::total_space(dir)?)));
    match measured {
        Ok((free, total)) => {
            let free_percent = if total == 0 {
                0.0
            } else {
                free as f64 * 100.0 / total as f64
            };
            let level = if free_percent < DISK_UNHEALTHY_PERCENT {
                Level::Unhealthy
            } else if free_percent < DISK_DEGRADED_PERCENT {
                Level::Degraded
            } else {
                Level::Healthy
            };
            let status = if level == Level::Healthy { "ok" } else { "low" };
            let free_percent = (free_percent * 100.0).round() / 100.0;
            (
                level,
                json!({ "status": status, "free_bytes": free, "total_bytes": total, "free_percent": free_percent }),
            )
        }
        Err(error) => {
            tracing::warn!(%error, dir = %dir.display(), "health: disk probe failed");
            (
                Level::Degraded,
                json!({ "status": "error", "error": "data directory unreadable" }),
            )
        }
    }
}

/// `GET /health/detailed`: the platform API's statuses (`status`, `database`, `redis`, `timestamp`) for anyone;
/// a signed-in user also gets the version, uptime, the cache, index and disk, and every
/// component's detail under `checks` (counts, sizes and latencies are not for the public).
async fn detailed(State(state): State<AppState>, user: Option<AuthUser>) -> Response {
    let ((database_level, database), (cache_level, cache), (index_level, index)) =
        tokio::join!(probe_database(&state), probe_cache(&state), probe_index(&state));
    let (disk_level, disk) = probe_disk(&state);
    let overall = [database_level, cache_level, index_level, disk_level]
        .into_iter()
        .max()
        .unwrap_or(Level::Healthy);
    let redis = if state.kv.backend() == "redis" {
        cache["status"].clone()
    } else {
        json!("not_configured")
    };
    let (status, message) = match overall {
        Level::Healthy => (StatusCode::OK, "服务运行正常"),
        Level::Degraded => (StatusCode::OK, "服务降级运行"),
        Level::Unhealthy => (StatusCode::SERVICE_UNAVAILABLE, "服务不可用"),
    };
    if user.is_none() {
        let data = json!({
            "status": overall.as_str(),
            "database": database["status"],
            "redis": redis,
            "timestamp": now_rfc3339(),
        });
        return StatusOk::new(data, message).with_status(status).into_response();
    }
    let mut data = json!({
        "status": overall.as_str(),
        "database": database["status"],
        "redis": redis,
        "cache": cache["status"],
        "index": index["status"],
        "disk": disk["status"],
        "timestamp": now_rfc3339(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": state.started_at.elapsed().as_secs(),
        "checks": { "database": database, "cache": cache, "index": index, "disk": disk },
    });
    for component in &state.components {
        let (status, detail) = component.check();
        data[component.name()] = json!(status);
        data["checks"][component.name()] = detail;
    }
    StatusOk::new(data, message).with_status(status).into_response()
}
