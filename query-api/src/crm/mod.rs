//! The CRM store: business data (customers, orders, service records, CRM users and organizations)
//! read for the analytics of the CRM analytics API (`/api/analytics-monitoring/analytics/*`) and the admin API
//! (`/api/analytics/*`), the 5-minute answer cache, and the monitoring figures of the CRM database.
//!
//! # Architecture
//!
//! ```text
//!  http/analytics_monitoring.rs ─────┐                    ┌─ figures: one query set per figure
//!  http/analytics.rs ────────────────┼─> AnalyticsCache ──┼─ explore: overview, metrics × dimensions
//!                                    │   (KvStore: Redis  │
//!                                    │    or in process)  └─> CrmStore ─ sqlx Any ─> SQLite | PostgreSQL | MySQL/MariaDB
//!                                    └─> monitoring: heartbeats + index (services), CRM pool and
//!                                        server statistics (database), metrics store or sysinfo (system)
//! ```
//!
//! - **Where the data is.** `storage.crm_database_url` names the CRM database; empty means Owl's own
//!   database, whose pool the store then shares and into which it applies the CRM migrations
//!   (`migrations/crm/<backend>`, tracked in `_owl_crm_migrations` so they never mix with Owl's own).
//!   An external CRM database is never migrated implicitly: it is the CRM's, and it maps its tables
//!   or views onto the documented schema (`README.md` beside this file). [`migrate`] applies the
//!   migrations on purpose (demo, tests, a fresh CRM).
//! - **SQL.** One set of runtime statements for all three backends through `owl-sql`, whose
//!   [`Sql`] renders each backend's placeholders and whose [`Backend`] the two expressions that
//!   differ (integer division, sums of DECIMAL). Client values are always bound, never spliced into SQL.
//!   Time buckets are computed from per-day rows in Rust ([`period`]), identical on every backend.
//! - **Scope.** Every CRM row carries `org_code`, an organization of Owl's tree: a user who is not a
//!   super admin reads only rows of their organization and its descendants ([`OrgScope`]).
//! - **Cache.** Every analytics answer is cached for `query_api.analytics_cache_ttl_s` under a key
//!   of the endpoint, its normalised parameters and the caller's scope ([`cache`]).
//!
//! The store is opened on first use per application state (see [`CrmStore::of`]), so a CRM database
//! that is down at start-up does not stop the query API: its endpoints answer 503 and
//! `monitoring/health/database` reports it unhealthy until it is back.

pub mod answers;
pub mod cache;
mod demo;
pub(crate) mod explore;
pub(crate) mod figures;
pub(crate) mod monitoring;
pub mod period;
pub mod warm;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use owl_config::Config;
use owl_sql::{Backend, Db, Sql};
use sqlx::{Any, AnyPool};

pub use cache::{AnalyticsCache, CacheStatus};
pub use demo::{DemoReport, load_demo_data};

use crate::state::AppState;

pub use crate::authz::OrgScope;

/// A query slower than this counts as slow in the store's own counters.
pub const SLOW_QUERY: Duration = Duration::from_secs(1);

/// The migrations table of the CRM schema, apart from Owl's own `_sqlx_migrations`.
const MIGRATIONS_TABLE: &str = "_owl_crm_migrations";

/// Why the CRM store failed.
#[derive(Debug, thiserror::Error)]
pub enum CrmStoreError {
    /// The URL names no supported database.
    #[error("crm database: {0}")]
    Sql(#[from] owl_sql::SqlError),
    /// Applying the CRM migrations failed.
    #[error("crm migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The CRM database refused or could not be reached.
    #[error("crm database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl CrmStoreError {
    /// Whether the database could not be reached (rather than refusing a statement).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            CrmStoreError::Sqlx(
                sqlx::Error::Io(_)
                    | sqlx::Error::Tls(_)
                    | sqlx::Error::PoolTimedOut
                    | sqlx::Error::PoolClosed
                    | sqlx::Error::Protocol(_)
            )
        )
    }
}

/// The CRM database: a pool, its dialect, and counters of the statements the store ran.
#[derive(Debug, Clone)]
pub struct CrmStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    max_connections: u32,
    shares_owl_database: bool,
    queries: AtomicU64,
    slow_queries: AtomicU64,
}

impl CrmStore {
    /// A store over a CRM database URL. The pool connects lazily: an unreachable database makes
    /// each query fail, not the construction.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<CrmStore, CrmStoreError> {
        let db = Db::connect_lazy(url, max_connections, Duration::from_secs(5))?;
        Ok(CrmStore::new(db, max_connections, false))
    }

    /// A store over an already open pool.
    pub fn new(db: Db, max_connections: u32, shares_owl_database: bool) -> CrmStore {
        CrmStore {
            inner: Arc::new(Inner {
                db,
                max_connections,
                shares_owl_database,
                queries: AtomicU64::new(0),
                slow_queries: AtomicU64::new(0),
            }),
        }
    }

    /// The store of an application state, opened on first use: over Owl's own pool (migrating the
    /// CRM tables into it) when `storage.crm_database_url` is empty, else over the CRM URL.
    /// A store that failed to open is tried again by the next request; the pool closes with the
    /// state.
    pub async fn of(state: &AppState) -> Result<CrmStore, CrmStoreError> {
        state
            .crm
            .get_or_try_init(|| CrmStore::open_for(state))
            .await
            .cloned()
    }

    async fn open_for(state: &AppState) -> Result<CrmStore, CrmStoreError> {
        let config = &state.config;
        if config.storage.crm_database_url.is_empty() {
            let store = CrmStore::new(state.db.sql_db().clone(), config.storage.max_connections, true);
            store.migrate().await?;
            tracing::info!(
                backend = store.backend().name(),
                "crm store shares owl's database; crm tables migrated"
            );
            return Ok(store);
        }
        let store = CrmStore::connect_lazy(&config.crm_database_url(), config.storage.max_connections)?;
        tracing::info!(backend = store.backend().name(), "crm store opened");
        Ok(store)
    }

    /// Applies the CRM migrations of this backend (idempotent).
    pub async fn migrate(&self) -> Result<(), CrmStoreError> {
        let mut migrator = match self.backend() {
            Backend::Sqlite => sqlx::migrate!("../migrations/crm/sqlite"),
            Backend::Postgres => sqlx::migrate!("../migrations/crm/postgres"),
            Backend::MySql => sqlx::migrate!("../migrations/crm/mysql"),
        };
        migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
        Ok(owl_sql::run_migrator(&self.inner.db, &migrator).await?)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.inner.db.backend()
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        self.inner.db.pool()
    }

    /// The largest number of connections the pool opens.
    pub fn max_connections(&self) -> u32 {
        self.inner.max_connections
    }

    /// Whether the store reads Owl's own database.
    pub fn shares_owl_database(&self) -> bool {
        self.inner.shares_owl_database
    }

    /// Statements the store ran, and of those the ones slower than [`SLOW_QUERY`].
    pub fn query_counts(&self) -> (u64, u64) {
        (
            self.inner.queries.load(Ordering::Relaxed),
            self.inner.slow_queries.load(Ordering::Relaxed),
        )
    }

    /// Closes the pool (unless it is Owl's, which its owner closes).
    pub async fn close(&self) {
        if !self.inner.shares_owl_database {
            self.inner.db.pool().close().await;
        }
    }

    pub(crate) fn sql(&self, text: &str) -> Sql {
        self.inner.db.sql(text)
    }

    /// Runs a statement, counting it and its duration.
    pub(crate) async fn timed<T>(
        &self,
        run: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, CrmStoreError> {
        let started = Instant::now();
        let result = run.await;
        self.inner.queries.fetch_add(1, Ordering::Relaxed);
        let elapsed = started.elapsed();
        if elapsed >= SLOW_QUERY {
            self.inner.slow_queries.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(elapsed_ms = elapsed.as_millis() as u64, "slow crm query");
        }
        Ok(result?)
    }

    /// Starts a transaction to write CRM rows (demo data, tests, imports).
    pub async fn batch(&self) -> Result<CrmBatch, CrmStoreError> {
        Ok(CrmBatch {
            backend: self.backend(),
            tx: self.inner.db.pool().begin().await?,
        })
    }
}

/// Applies the CRM migrations to the database `storage.crm_database_url` names (Owl's own when
/// empty). For a fresh CRM database, the demo and tests; never done implicitly to an external CRM.
pub async fn migrate(config: &Config) -> Result<(), CrmStoreError> {
    let store = CrmStore::connect_lazy(&config.crm_database_url(), 2)?;
    let result = store.migrate().await;
    store.close().await;
    result
}

/// A CRM organization to insert.
#[derive(Debug, Clone)]
pub struct NewCrmOrganization {
    /// The CRM's own code (unique).
    pub code: String,
    /// Name.
    pub name: String,
    /// `internal`, `vendor`, `agent`, ...
    pub org_type: String,
    /// Active or not.
    pub is_active: bool,
    /// The Owl organization the row belongs to.
    pub org_code: String,
    /// Created, epoch milliseconds.
    pub created_at_ms: i64,
}

/// A CRM user to insert.
#[derive(Debug, Clone)]
pub struct NewCrmUser {
    /// Name.
    pub username: String,
    /// Active or not.
    pub is_active: bool,
    /// Last sign-in, epoch milliseconds.
    pub last_login_at_ms: Option<i64>,
    /// The Owl organization the row belongs to.
    pub org_code: String,
    /// Created, epoch milliseconds.
    pub created_at_ms: i64,
}

/// A customer to insert.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    /// Name.
    pub name: String,
    /// `individual` or `organization`.
    pub customer_type: String,
    /// `own` or `agent`.
    pub source: String,
    /// The Owl organization the row belongs to.
    pub org_code: String,
    /// Created, epoch milliseconds.
    pub created_at_ms: i64,
}

/// An order to insert.
#[derive(Debug, Clone)]
pub struct NewOrder {
    /// Order number (unique).
    pub order_no: String,
    /// The customer, if known.
    pub customer_id: Option<i64>,
    /// `submitted`, `approved`, `processing`, `completed` or `cancelled`.
    pub status: String,
    /// Amount in `currency_code`, two decimals.
    pub amount: f64,
    /// ISO 4217 code.
    pub currency_code: String,
    /// The Owl organization the row belongs to.
    pub org_code: String,
    /// Created, epoch milliseconds.
    pub created_at_ms: i64,
    /// Completed, epoch milliseconds.
    pub completed_at_ms: Option<i64>,
}

/// A service record to insert.
#[derive(Debug, Clone)]
pub struct NewServiceRecord {
    /// The customer, if known.
    pub customer_id: Option<i64>,
    /// `pending`, `in_progress`, `completed` or `cancelled`.
    pub status: String,
    /// `low`, `normal`, `high` or `urgent`.
    pub priority: String,
    /// The Owl organization the row belongs to.
    pub org_code: String,
    /// Created, epoch milliseconds.
    pub created_at_ms: i64,
}

/// Writes CRM rows in one transaction; nothing is visible until [`CrmBatch::commit`].
pub struct CrmBatch {
    backend: Backend,
    tx: sqlx::Transaction<'static, Any>,
}

impl std::fmt::Debug for CrmBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmBatch")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl CrmBatch {
    /// Runs an `INSERT` and returns the new row's id.
    async fn insert(&mut self, sql: Sql) -> Result<i64, CrmStoreError> {
        Ok(sql.insert_returning_id(&mut *self.tx).await?)
    }

    /// Inserts a CRM organization.
    pub async fn organization(&mut self, org: &NewCrmOrganization) -> Result<i64, CrmStoreError> {
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO crm_organizations (code, name, org_type, is_active, org_code, created_at) VALUES (",
        );
        sql.bind(org.code.clone()).push(", ");
        sql.bind(org.name.clone()).push(", ");
        sql.bind(org.org_type.clone()).push(", ");
        sql.bind(i64::from(org.is_active)).push(", ");
        sql.bind(org.org_code.clone()).push(", ");
        sql.bind(org.created_at_ms).push(")");
        self.insert(sql).await
    }

    /// Inserts a CRM user.
    pub async fn user(&mut self, user: &NewCrmUser) -> Result<i64, CrmStoreError> {
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO crm_users (username, is_active, last_login_at, org_code, created_at) VALUES (",
        );
        sql.bind(user.username.clone()).push(", ");
        sql.bind(i64::from(user.is_active)).push(", ");
        sql.bind(user.last_login_at_ms).push(", ");
        sql.bind(user.org_code.clone()).push(", ");
        sql.bind(user.created_at_ms).push(")");
        self.insert(sql).await
    }

    /// Inserts a customer.
    pub async fn customer(&mut self, customer: &NewCustomer) -> Result<i64, CrmStoreError> {
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO customers (name, customer_type, source, org_code, created_at) VALUES (",
        );
        sql.bind(customer.name.clone()).push(", ");
        sql.bind(customer.customer_type.clone()).push(", ");
        sql.bind(customer.source.clone()).push(", ");
        sql.bind(customer.org_code.clone()).push(", ");
        sql.bind(customer.created_at_ms).push(")");
        self.insert(sql).await
    }

    /// Inserts an order.
    pub async fn order(&mut self, order: &NewOrder) -> Result<i64, CrmStoreError> {
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO orders (order_no, customer_id, status, amount, currency_code, org_code, created_at, completed_at) VALUES (",
        );
        sql.bind(order.order_no.clone()).push(", ");
        sql.bind(order.customer_id).push(", ");
        sql.bind(order.status.clone()).push(", ");
        sql.bind(order.amount).push(", ");
        sql.bind(order.currency_code.clone()).push(", ");
        sql.bind(order.org_code.clone()).push(", ");
        sql.bind(order.created_at_ms).push(", ");
        sql.bind(order.completed_at_ms).push(")");
        self.insert(sql).await
    }

    /// Inserts a service record.
    pub async fn service_record(&mut self, record: &NewServiceRecord) -> Result<i64, CrmStoreError> {
        let mut sql = Sql::new(
            self.backend,
            "INSERT INTO service_records (customer_id, status, priority, org_code, created_at) VALUES (",
        );
        sql.bind(record.customer_id).push(", ");
        sql.bind(record.status.clone()).push(", ");
        sql.bind(record.priority.clone()).push(", ");
        sql.bind(record.org_code.clone()).push(", ");
        sql.bind(record.created_at_ms).push(")");
        self.insert(sql).await
    }

    /// Commits every row of the batch.
    pub async fn commit(self) -> Result<(), CrmStoreError> {
        Ok(self.tx.commit().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reporting_currency_is_validated() {
        let mut config = Config::default();
        assert_eq!(config.query_api.crm_currency_code, "IDR");
        assert!(config.validate().is_ok());
        config.query_api.crm_currency_code = "idr".into();
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("query_api.crm_currency_code"), "{error}");
    }

    #[test]
    fn unreachable_errors_answer_503_and_others_500() {
        let down = CrmStoreError::Sqlx(sqlx::Error::PoolTimedOut);
        assert!(down.is_unreachable());
        assert_eq!(
            crate::envelope::Failure::from(down).kind,
            crate::envelope::FailureKind::Unavailable
        );
        let refused = CrmStoreError::Sqlx(sqlx::Error::RowNotFound);
        assert_eq!(
            crate::envelope::Failure::from(refused).kind,
            crate::envelope::FailureKind::Internal
        );
    }
}
