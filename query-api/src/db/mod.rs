//! The SQL store of the control plane: organizations, roles, permissions, users, audit log.
//!
//! The SQL itself goes through `owl-sql` (connecting, placeholders, migrations), whose crate docs
//! give the rules that keep one set of statements portable between SQLite and PostgreSQL.

mod audit;
mod orgs;
mod roles;
mod users;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::AnyPool;

pub use audit::{AuditEntry, AuditFilter, NewAuditEntry};
pub use orgs::{NewOrganization, OrgUpdate, Organization, ROOT_PARENT, subtree};
pub use owl_sql::Backend;
pub(crate) use owl_sql::{Sql, like_pattern};
pub use roles::{NewRole, PermissionRow, Role, RoleUpdate};
pub use users::{NewUser, UserFilter, UserRecord, UserStats, UserUpdate};

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// A unique value is already taken.
    #[error("{what} `{value}` already exists")]
    Conflict {
        /// The kind of value (`user_code`).
        what: &'static str,
        /// The value.
        value: String,
    },
    /// A stored value could not be read back.
    #[error("corrupt {what} in row {id}: {message}")]
    Corrupt {
        /// The column.
        what: &'static str,
        /// The row id.
        id: i64,
        /// What is wrong.
        message: String,
    },
    /// Connecting or migrating failed.
    #[error(transparent)]
    Sql(#[from] owl_sql::SqlError),
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl DbError {
    /// Maps a unique violation to [`DbError::Conflict`].
    fn conflict_on(error: sqlx::Error, what: &'static str, value: &str) -> DbError {
        if owl_sql::is_unique_violation(&error) {
            DbError::Conflict {
                what,
                value: value.to_string(),
            }
        } else {
            DbError::Sqlx(error)
        }
    }
}

/// The control-plane database.
#[derive(Debug, Clone)]
pub struct Database {
    db: owl_sql::Db,
    /// Bumped after every committed write that can change what a signed-in user may do (users,
    /// roles, grants, organizations): the principal cache of `auth` compares it on every request.
    access_generation: Arc<AtomicU64>,
}

impl Database {
    /// Connects a pool of at most `max_connections` to Owl's own database.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Database, DbError> {
        let db = owl_sql::Db::connect(url, max_connections).await?;
        Ok(Database {
            db,
            access_generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// A handle over a pool opened elsewhere (the `owl` binary's, for its jobs).
    pub fn over(db: owl_sql::Db) -> Database {
        Database {
            db,
            access_generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Brings Owl's schema up to date.
    pub async fn migrate(&self) -> Result<(), DbError> {
        Ok(owl_sql::migrate(&self.db).await?)
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The SQL handle, for stores with their own tables (alerts, log settings, CRM).
    pub fn sql_db(&self) -> &owl_sql::Db {
        &self.db
    }

    /// How many access-changing writes this handle (and its clones) has committed.
    pub fn access_generation(&self) -> u64 {
        self.access_generation.load(Ordering::Acquire)
    }

    /// Records an access-changing write; called after it committed, so a reader that saw the old
    /// generation before loading never keeps what it loaded past this point.
    fn access_changed(&self) {
        self.access_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The pool, for modules with their own tables.
    pub fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    /// A statement for this database's backend.
    pub(crate) fn sql(&self, text: &str) -> Sql {
        self.db.sql(text)
    }

    /// Runs `SELECT 1` and returns its latency.
    pub async fn ping(&self) -> Result<Duration, DbError> {
        Ok(self.db.ping().await?)
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }
}

/// Parses a JSON list column.
pub(crate) fn parse_list(text: &str, what: &'static str, id: i64) -> Result<Vec<String>, DbError> {
    serde_json::from_str(text).map_err(|e| DbError::Corrupt {
        what,
        id,
        message: e.to_string(),
    })
}

/// Renders a JSON list column.
pub(crate) fn render_list(items: &[String]) -> String {
    serde_json::to_string(items).expect("a list of strings serialises")
}
