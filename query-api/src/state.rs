//! What every handler shares.

use std::sync::Arc;
use std::time::Instant;

use owl_config::Config;
use owl_model::Masker;

use crate::auth::{Auth, load_or_create_secret};
use crate::db::Database;
use crate::kv::{KvStore, MemoryKv, RedisKv};
use owl_model::clock::Clock;

/// A part of this process that `/health/detailed` reports on besides its own stores (in `owl up`,
/// the collector's receivers).
pub trait ComponentHealth: Send + Sync {
    /// The key of its line in the report.
    fn name(&self) -> &'static str;
    /// Its status word and its figures.
    fn check(&self) -> (String, serde_json::Value);
}

/// Knobs that are not configuration: what tests replace.
#[derive(Clone, Default)]
pub struct Options {
    /// The time source (a manual clock in tests).
    pub clock: Clock,
    /// The alert engine of this process, when it runs one (`owl up`): reloaded by every change of
    /// the alert configuration or mutes before the change is answered.
    pub alert_engine: Option<owl_alerts::AlertEngine>,
    /// More components for `/health/detailed`.
    pub components: Vec<Arc<dyn ComponentHealth>>,
    /// Owl's schema is already up to date: the process applied the migrations when it started
    /// (`owl up` does, once for every role), so the query API does not check again.
    pub schema_ready: bool,
    /// The process's scheduler runs audit retention as a job (`owl up`), so the query API does not
    /// run it every `check_interval_s` itself.
    pub scheduled_maintenance: bool,
    /// More paths for `/openapi.json`: the collector's, when this process runs one (`owl up`).
    pub more_api_paths: Option<serde_json::Value>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("clock", &self.clock)
            .field("alert_engine", &self.alert_engine.is_some())
            .field("schema_ready", &self.schema_ready)
            .field("scheduled_maintenance", &self.scheduled_maintenance)
            .field(
                "components",
                &self.components.iter().map(|c| c.name()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The state behind every route: the SQL store, the shared key-value store (cache, token
/// families, revocations, login counters), config, the log index, sign-in and the audit masker.
///
/// One `Arc` over [`SharedState`], whose fields it dereferences to (`state.db`): axum clones the
/// state for every middleware layer of every request, so a clone must be one reference count, not
/// one per field.
#[derive(Clone)]
pub struct AppState {
    shared: Arc<SharedState>,
}

impl std::ops::Deref for AppState {
    type Target = SharedState;

    fn deref(&self) -> &SharedState {
        &self.shared
    }
}

/// What [`AppState`] shares.
pub struct SharedState {
    /// The loaded configuration.
    pub config: Arc<Config>,
    /// Users, organizations, roles, audit log.
    pub db: Database,
    /// Redis or the in-process store.
    pub kv: Arc<dyn KvStore>,
    /// The log index (read side).
    pub index: owl_index::Index,
    /// Sign-in and tokens.
    pub auth: Auth,
    /// The time source.
    pub clock: Clock,
    /// Filters secrets out of audited parameters: the configured masking rules, always enabled.
    pub audit_masker: Arc<Masker>,
    /// When the state was built (uptime in detailed health).
    pub started_at: Instant,
    /// The alert engine of this process, if any (see [`Options::alert_engine`]).
    pub alert_engine: Option<owl_alerts::AlertEngine>,
    /// Seals channel secrets stored in SQL (`storage.secret_key`).
    pub secrets: Arc<owl_alerts::SecretCipher>,
    /// Open live tails (`query_api.max_streams_per_user`, `max_streams`).
    pub streams: Arc<crate::limits::UserSlots>,
    /// Running log searches (`query_api.max_concurrent_queries_per_user`).
    pub queries: Arc<crate::limits::UserSlots>,
    /// More components for `/health/detailed` (see [`Options::components`]).
    pub components: Vec<Arc<dyn ComponentHealth>>,
    /// The CRM store, opened on first use ([`crate::crm::CrmStore::of`]), so that a CRM database
    /// that is down delays only the CRM endpoints.
    pub(crate) crm: tokio::sync::OnceCell<crate::crm::CrmStore>,
    /// See [`Options::more_api_paths`].
    pub more_api_paths: Option<serde_json::Value>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("database", &self.db.backend())
            .field("kv", &self.kv.backend())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The alert store over this state's database.
    pub fn alert_store(&self) -> owl_alerts::AlertStore {
        owl_alerts::AlertStore::new(self.db.sql_db().clone(), self.secrets.clone())
    }

    /// Makes this process's alert engine, if it runs one, apply a stored change before the change
    /// is answered. Other processes hear of it from the store
    /// ([`owl_alerts::AlertStore::announce_change`]).
    pub async fn reload_alert_engine(&self) {
        if let Some(engine) = &self.alert_engine
            && !engine.reload().await
        {
            tracing::warn!("the alert engine has stopped; the change applies when it starts again");
        }
    }

    /// Builds the state over an already migrated database.
    pub async fn new(
        config: Config,
        db: Database,
        index: owl_index::Index,
        options: Options,
    ) -> anyhow::Result<AppState> {
        let redis_url = config.storage.redis_url.expose();
        let kv: Arc<dyn KvStore> = if redis_url.is_empty() {
            Arc::new(MemoryKv::new(&config.storage.redis_prefix, options.clock.clone()))
        } else {
            let kv = RedisKv::connect(redis_url, &config.storage.redis_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("while connecting to storage.redis_url: {e}"))?;
            Arc::new(kv)
        };
        let secret = load_or_create_secret(&config)?;
        let auth = Auth::new(
            db.clone(),
            kv.clone(),
            &secret,
            options.clock.clone(),
            config.auth.clone(),
        );
        let audit_masker = crate::http::middleware::audit_masker(&config.masking)
            .map_err(|e| anyhow::anyhow!("while compiling the masking rules for the audit log: {e}"))?;
        let q = &config.query_api;
        let streams = crate::limits::UserSlots::new(q.max_streams_per_user, q.max_streams);
        // The total bound of searches is the blocking pool's business; per user is what matters.
        let queries = crate::limits::UserSlots::new(q.max_concurrent_queries_per_user, usize::MAX);
        let secrets = owl_alerts::SecretCipher::from_config(&config)
            .map_err(|e| anyhow::anyhow!("while loading the secret key: {e}"))?;
        let shared = SharedState {
            alert_engine: options.alert_engine,
            components: options.components,
            secrets: Arc::new(secrets),
            streams,
            queries,
            config: Arc::new(config),
            db,
            kv,
            index,
            auth,
            clock: options.clock,
            audit_masker: Arc::new(audit_masker),
            started_at: Instant::now(),
            crm: tokio::sync::OnceCell::new(),
            more_api_paths: options.more_api_paths,
        };
        Ok(AppState {
            shared: Arc::new(shared),
        })
    }
}
