//! Owl's query API: the HTTP API ops and CRM clients use.
//!
//! # Architecture
//!
//! ```text
//!  request ─> TraceLayer ─> audit ─> authenticate ─> route guard ─> handler (http/<resource>.rs)
//!              (owl-http)     │           │               │              │
//!                             │           │               │              ├─ db: SQL via sqlx Any (SQLite | PostgreSQL)
//!                             │           │               │              ├─ kv: Redis | in process
//!                             │           │               │              └─ index: owl_index::Index
//!                             │           │               └─ Access of the route (permission, role level),
//!                             │           │                  family of its envelope
//!                             │           └─ bearer token -> Principal (role, permissions, regions)
//!                             └─ audit_logs row for mutations, logins and exports (secrets filtered)
//! ```
//!
//! - [`http`]: one module per resource, each `pub fn router() -> Router<AppState>` built from a
//!   [`http::Routes`] table in which every route declares its [`Access`]. Later modules (the log API log
//!   queries, alerts, CRM analytics) add a file and a line in [`http::routes`].
//! - [`envelope`]: the response envelopes and the error type of each API family (the log API, the admin API, the platform API,
//!   The CRM analytics API/the CRM backend); handlers return `Result<_, LogsV1Error | AuthAdminError | PlatformError | AnalyticsMonitoringError>`.
//! - `auth`: argon2id passwords, HS256 tokens with rotating refresh tokens, revocation, lockout.
//! - [`Scope`]: the regions and environments a user may read; log endpoints must apply it.
//! - `db`: the SQL layer and its portability rules (module docs), migrations in `migrations/`.
//! - `kv`: the shared store for token families, revocations, login counters and the cache.
//! - [`crm`]: the CRM store (customers, orders, service records, CRM users and organizations on
//!   SQLite, PostgreSQL or MySQL), the figures of the CRM analytics API's and the admin API's analytics, their 5-minute cache,
//!   and the monitoring figures; its `README.md` documents the schema a CRM maps onto.
//!
//! [`run`] serves the API; [`app`] builds the same router for tests; [`bootstrap`] prepares a
//! fresh machine (migrations, the first `admin`); [`admin`] holds the `owl admin` commands.

// `Failure`, the error of every handler, is about 190 bytes. It is built once per refused request,
// where its size costs nothing measurable, and boxing it would clutter every construction site.
#![allow(clippy::result_large_err)]

pub mod admin;
mod auth;
pub mod authz;
pub mod crm;
mod csv_out;
mod db;
mod directory;
pub mod envelope;
pub mod http;
mod jobs;
mod kv;
pub mod limits;
mod logs;
mod metrics;
mod permissions;
mod state;
pub mod validate;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use admin::{AdminAccount, AdminError, Bootstrap, CreateUser, bootstrap};
pub use auth::{
    Auth, AuthError, Claims, PRINCIPAL_TTL, Principal, TokenError, TokenPair, TokenService, TokenType,
};
pub use authz::Scope;
pub use db::{
    AuditEntry, AuditFilter, Backend, Database, DbError, NewAuditEntry, Organization, PermissionRow, Role,
    UserRecord,
};
pub use http::{AuthUser, RouteSpec, Routes};
pub use kv::{KvError, KvStore, MemoryKv, RedisKv, Swap};
pub use owl_model::Clock;
pub use permissions::{
    ADMIN_ROLE, Access, BUILTIN_ROLES, CATALOGUE, Permission, PermissionInfo, SUPER_ADMIN_LEVEL,
};
pub use state::{AppState, ComponentHealth, Options, SharedState};

/// Builds the application for `config`: bootstraps the database (migrations, first admin), connects
/// the shared store and returns the router with its state.
pub async fn app_with(
    config: owl_config::Config,
    index: owl_index::Index,
    options: Options,
) -> anyhow::Result<(Router, AppState)> {
    let prepared = admin::bootstrap_with(&config, options.schema_ready).await?;
    let state = AppState::new(config, prepared.database, index, options).await?;
    Ok((http::application(state.clone(), http::routes()), state))
}

/// The application router, as [`run`] serves it (tests drive it with `oneshot`).
pub async fn app(config: owl_config::Config, index: owl_index::Index) -> anyhow::Result<Router> {
    Ok(app_with(config, index, Options::default()).await?.0)
}

/// Serves the query API on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish.
pub async fn run(
    config: owl_config::Config,
    index: owl_index::Index,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with(config, index, listener, shutdown, Options::default()).await
}

/// [`run`] with [`Options`] (`owl up` hands over its alert engine).
pub async fn run_with(
    config: owl_config::Config,
    index: owl_index::Index,
    listener: TcpListener,
    shutdown: CancellationToken,
    options: Options,
) -> anyhow::Result<()> {
    let scheduled_maintenance = options.scheduled_maintenance;
    let (router, state) = app_with(config, index, options).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, database = state.db.backend().name(), kv = state.kv.backend(), "query API listening");
    // Live log streams end with the server instead of holding its graceful shutdown open.
    let router = router.layer(axum::Extension(logs::StreamShutdown(shutdown.clone())));
    if !scheduled_maintenance {
        tokio::spawn(http::middleware::audit_retention(state.clone(), shutdown.clone()));
    }
    let scheduler = jobs::start(&state, shutdown.clone())
        .await
        .map_err(|e| anyhow::anyhow!("while starting the query API's scheduled jobs: {e}"))?;
    owl_http::serve(listener, router, shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("while serving the query API on {address}: {e}"))?;
    let _ = scheduler.await;
    state.db.close().await;
    Ok(())
}

#[cfg(test)]
pub(crate) mod testing {
    /// The Redis the tests use, or `None` when `OWL_TEST_SKIP_SERVICES=1` says this machine has none.
    /// Without that variable an unreachable Redis fails the test loudly.
    pub(crate) fn redis_url() -> Option<String> {
        if std::env::var("OWL_TEST_SKIP_SERVICES").is_ok_and(|v| v == "1") {
            return None;
        }
        Some(std::env::var("OWL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string()))
    }
}
