//! The SQL store of the control plane: organizations, roles, permissions, users, audit log.
//!
//! # One portable SQL layer
//!
//! Owl runs on SQLite (the embedded default) and PostgreSQL (several replicas sharing state). sqlx's
//! compile-time `query!` macros check against one database only, so this module uses sqlx's `Any`
//! driver with runtime `query`/`query_as` and SQL that both backends accept, and the whole test
//! suite runs on both. The rules that keep the SQL portable:
//!
//! - placeholders are `$1`, `$2`, ... (PostgreSQL's; SQLite reads `$N` as parameter N);
//! - times are integer epoch milliseconds (UTC), statuses and flags integers, lists JSON text: the
//!   `Any` driver maps only integers, floats, text and blobs the same way on both;
//! - every integer column is 64-bit (`BIGINT` on PostgreSQL) and decoded as `i64`;
//! - `INSERT ... RETURNING id` (SQLite 3.35+), `LOWER(x) LIKE LOWER($n)` for case-insensitive
//!   search, `COALESCE`, `COUNT(*)`, joins and `ORDER BY ... LIMIT/OFFSET`: nothing else;
//! - DDL differs (identity columns, types), so migrations live in one folder per backend
//!   (`migrations/sqlite`, `migrations/postgres`) with the same numbered steps, embedded in the
//!   binary by `sqlx::migrate!`.
//!
//! A store module per backend was the alternative; it doubles every query for no gain at this size
//! of schema.

mod audit;
mod orgs;
mod roles;
mod users;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::any::{AnyArguments, AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Arguments, Encode, Type};

pub use audit::{AuditEntry, AuditFilter, NewAuditEntry};
pub use orgs::{NewOrganization, OrgUpdate, Organization, ROOT_PARENT, subtree};
pub use roles::{NewRole, PermissionRow, Role, RoleUpdate};
pub use users::{NewUser, UserFilter, UserRecord, UserUpdate};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database the URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:`.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
}

impl Backend {
    /// The backend of a URL.
    pub fn of_url(url: &str) -> Result<Backend, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(DbError::UnsupportedUrl {
                scheme: url.split(':').next().unwrap_or_default().to_string(),
            })
        }
    }

    /// `sqlite` or `postgres`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither SQLite nor PostgreSQL.
    #[error("unsupported database url scheme `{scheme}`: use sqlite: or postgres://")]
    UnsupportedUrl {
        /// The scheme found.
        scheme: String,
    },
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
    /// Applying the migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl DbError {
    /// Maps a unique violation to [`DbError::Conflict`].
    fn conflict_on(error: sqlx::Error, what: &'static str, value: &str) -> DbError {
        match &error {
            sqlx::Error::Database(db) if db.is_unique_violation() => DbError::Conflict {
                what,
                value: value.to_string(),
            },
            _ => DbError::Sqlx(error),
        }
    }
}

impl From<DbError> for crate::envelope::Failure {
    fn from(error: DbError) -> Self {
        use crate::envelope::{Failure, FieldError};
        match error {
            DbError::Conflict { what, value } => {
                let mut failure = Failure::invalid(vec![FieldError::new(
                    what,
                    "unique",
                    format!("{what} {value} 已存在"),
                )]);
                failure.kind = crate::envelope::FailureKind::Conflict;
                failure.message = format!("{what} {value} 已存在");
                failure
            }
            other => Failure::internal(other),
        }
    }
}

impl From<crate::kv::KvError> for crate::envelope::Failure {
    fn from(error: crate::kv::KvError) -> Self {
        crate::envelope::Failure::unavailable("缓存服务不可用", error)
    }
}

/// The control-plane database.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
    /// Bumped after every committed write that can change what a signed-in user may do (users,
    /// roles, grants, organizations): the principal cache of `auth` compares it on every request.
    access_generation: Arc<AtomicU64>,
}

impl Database {
    /// Connects a pool of at most `max_connections` (SQLite files are created when absent, and put in
    /// WAL mode so readers do not wait for the writer).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url)?;
        if backend == Backend::Sqlite {
            create_sqlite_parent_dir(url);
        }
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        Ok(Database {
            pool,
            backend,
            access_generation: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Applies the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        };
        migrator.run(&self.pool).await?;
        Ok(())
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
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
        &self.pool
    }

    /// Runs `SELECT 1` and returns its latency.
    pub async fn ping(&self) -> Result<Duration, DbError> {
        let started = Instant::now();
        let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        debug_assert_eq!(one, 1);
        Ok(started.elapsed())
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn create_sqlite_parent_dir(url: &str) {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent() {
        if !parent.as_os_str().is_empty() {
            // A failure shows up as the connect error right after, with the path in it.
            let _ = std::fs::create_dir_all(parent);
        }
    }
}

/// A statement built at run time with `$n` placeholders and its arguments.
pub(crate) struct Sql {
    text: String,
    args: AnyArguments,
    count: usize,
}

impl Sql {
    pub(crate) fn new(text: &str) -> Sql {
        Sql {
            text: text.to_string(),
            args: AnyArguments::default(),
            count: 0,
        }
    }

    /// Appends SQL text.
    pub(crate) fn push(&mut self, text: &str) -> &mut Sql {
        self.text.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(crate) fn bind<T>(&mut self, value: T) -> &mut Sql
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.count += 1;
        self.text.push('$');
        self.text.push_str(&self.count.to_string());
        // Encoding into the Any buffer only copies the value; it cannot fail for the integer and
        // text types used here.
        self.args
            .add(value)
            .expect("Any arguments accept integers and text");
        self
    }

    /// Appends `(p1, p2, ...)` for the values.
    pub(crate) fn bind_list<T>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Sql
    where
        T: for<'q> Encode<'q, Any> + Type<Any>,
    {
        self.text.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.text.push_str(", ");
            }
            self.bind(value);
        }
        self.text.push(')');
        self
    }

    pub(crate) fn query(self) -> sqlx::query::Query<'static, Any, AnyArguments> {
        sqlx::query_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    pub(crate) fn query_as<O>(self) -> sqlx::query::QueryAs<'static, Any, O, AnyArguments>
    where
        O: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_as_with(sqlx::AssertSqlSafe(self.text), self.args)
    }

    pub(crate) fn query_scalar<O>(self) -> sqlx::query::QueryScalar<'static, Any, O, AnyArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar_with(sqlx::AssertSqlSafe(self.text), self.args)
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

/// Escapes `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out.to_lowercase()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn backends_by_url() {
        assert_eq!(
            Backend::of_url("sqlite://x.db?mode=rwc").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(Backend::of_url("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://u@h/db").unwrap(), Backend::Postgres);
        let err = Backend::of_url("mysql://h/db").unwrap_err();
        assert!(err.to_string().contains("mysql"), "{err}");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("A_b%"), "%a\\_b\\%%");
    }
}
