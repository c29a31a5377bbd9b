//! Owl's one SQL layer: connecting (SQLite, PostgreSQL, MySQL/MariaDB), the dialect, a statement
//! builder and the embedded migrations. Every store of Owl (the control plane, alerts, log settings,
//! agent tokens, the CRM tables) reaches its database through this crate.
//!
//! # Portable SQL
//!
//! sqlx's compile-time `query!` macros check against one database only, so Owl uses sqlx's `Any`
//! driver with runtime statements and SQL that every backend accepts; the whole test suite runs on
//! each. The rules that keep the SQL portable:
//!
//! - placeholders come from [`Sql::bind`], which writes `$N` for SQLite and PostgreSQL and `?` for
//!   MySQL; a hand-written statement that only ever runs on Owl's own database (SQLite or
//!   PostgreSQL) may write `$N` itself;
//! - times are integer epoch milliseconds (UTC), statuses and flags integers, lists JSON text: the
//!   `Any` driver maps only integers, floats, text and blobs the same way everywhere;
//! - every integer column is 64-bit and decoded as `i64`;
//! - the statements that differ between backends come from [`Backend`], next to their reason: a
//!   new row's id ([`Sql::insert_returning_id`]), skipping or updating a row whose key is taken
//!   ([`Backend::insert_ignore`], [`Backend::on_conflict_update`]), integer division, sums;
//! - DDL differs (identity columns, types, partial indexes), so migrations live in one folder per
//!   backend with the same numbered steps, embedded in the binary (see [`migrate`]).
//!
//! Owl's own schema (`migrations/sqlite`, `migrations/postgres`, `migrations/mysql`) runs on
//! SQLite, the embedded default, on PostgreSQL, or on MariaDB 10.5+, for replicas that share
//! state. A CRM database (`storage.crm_database_url`) may also be MySQL.

mod builder;
mod migrate;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::str::FromStr;
use std::time::{Duration, Instant};

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

pub use builder::Sql;
pub use migrate::{migrate, open, run_migrator};

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite:`.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `mysql://` or `mariadb://` (MySQL 5.7+, MariaDB 10.3+).
    MySql,
}

impl Backend {
    /// The backend of a URL.
    pub fn of_url(url: &str) -> Result<Backend, SqlError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            Ok(Backend::MySql)
        } else {
            Err(SqlError::UnsupportedUrl {
                scheme: url.split(':').next().unwrap_or_default().to_string(),
            })
        }
    }

    /// `sqlite`, `postgres` or `mysql`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
            Backend::MySql => "mysql",
        }
    }

    /// `INSERT INTO ` that skips a row whose key is taken, with [`Backend::on_conflict_ignore`]
    /// after the values: MySQL's `INSERT IGNORE` (affected rows 0 when skipped; `ON DUPLICATE KEY
    /// UPDATE` would report 1 under the found-rows flag sqlx sets), else `ON CONFLICT DO NOTHING`.
    pub fn insert_ignore(self) -> &'static str {
        match self {
            Backend::MySql => "INSERT IGNORE INTO ",
            Backend::Sqlite | Backend::Postgres => "INSERT INTO ",
        }
    }

    /// What follows the values of an [`Backend::insert_ignore`] whose key is `target`.
    pub fn on_conflict_ignore(self, target: &str) -> String {
        match self {
            Backend::MySql => String::new(),
            Backend::Sqlite | Backend::Postgres => format!(" ON CONFLICT ({target}) DO NOTHING"),
        }
    }

    /// What follows the values of an upsert on the key `target`, before its assignments.
    pub fn on_conflict_update(self, target: &str) -> String {
        match self {
            Backend::MySql => " ON DUPLICATE KEY UPDATE ".to_string(),
            Backend::Sqlite | Backend::Postgres => format!(" ON CONFLICT ({target}) DO UPDATE SET "),
        }
    }

    /// In an upsert's assignments, the value the refused row brought for `column`.
    pub fn excluded(self, column: &str) -> String {
        match self {
            Backend::MySql => format!("VALUES({column})"),
            Backend::Sqlite | Backend::Postgres => format!("excluded.{column}"),
        }
    }

    /// The UTC day number (days since 1970-01-01) of an epoch-milliseconds expression: integer
    /// division is `/` on SQLite and PostgreSQL integers but `DIV` on MySQL, where `/` yields a
    /// DECIMAL the `Any` driver cannot decode. Times before 1970 are outside what Owl stores.
    pub fn epoch_day(self, millis_expr: &str) -> String {
        match self {
            Backend::MySql => format!("(({millis_expr}) DIV {DAY_MS})"),
            Backend::Sqlite | Backend::Postgres => format!("(({millis_expr}) / {DAY_MS})"),
        }
    }

    /// `SUM(expr)` as a double, 0 over no rows: the `SUM` of a NUMERIC/DECIMAL column is itself
    /// NUMERIC/DECIMAL, which the `Any` driver cannot decode, so each backend converts it its way.
    pub fn sum_f64(self, expr: &str) -> String {
        match self {
            Backend::Sqlite => format!("CAST(COALESCE(SUM({expr}), 0) AS REAL)"),
            Backend::Postgres => format!("CAST(COALESCE(SUM({expr}), 0) AS DOUBLE PRECISION)"),
            // `CAST(... AS DOUBLE)` needs MySQL 8.0.17 or MariaDB 10.4.3; adding a float literal
            // turns a DECIMAL into a DOUBLE on every version.
            Backend::MySql => format!("(COALESCE(SUM({expr}), 0) + 0e0)"),
        }
    }
}

/// Why connecting or migrating failed.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The URL names no backend Owl speaks.
    #[error("unsupported database url scheme `{scheme}`: use sqlite:, postgres:// or mysql://")]
    UnsupportedUrl {
        /// The scheme found.
        scheme: String,
    },
    /// Applying the migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

/// A pool and the backend it speaks. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    /// Connects a pool of at most `max_connections` (at least one) and waits for the first
    /// connection. A SQLite file is created when absent, with its directory, and put in WAL mode so
    /// readers do not wait for the writer.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, SqlError> {
        let (backend, options) = prepare(url)?;
        let pool = pool_options(max_connections, Duration::from_secs(10))
            .connect_with(options)
            .await?;
        if backend == Backend::Sqlite {
            enable_wal(&pool).await?;
        }
        Ok(Db { pool, backend })
    }

    /// A pool that connects on first use, so a process does not fail to start while its database
    /// is briefly away; a statement waits at most `acquire_timeout` for a connection.
    pub fn connect_lazy(url: &str, max_connections: u32, acquire_timeout: Duration) -> Result<Db, SqlError> {
        let (backend, options) = prepare(url)?;
        let pool = pool_options(max_connections, acquire_timeout).connect_lazy_with(options);
        Ok(Db { pool, backend })
    }

    /// A handle over a pool opened elsewhere.
    pub fn from_pool(pool: AnyPool, backend: Backend) -> Db {
        Db { pool, backend }
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A statement for this backend, starting with `text`.
    pub fn sql(&self, text: &str) -> Sql {
        Sql::new(self.backend, text)
    }

    /// Runs `SELECT 1` and returns its latency.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = Instant::now();
        let _: i64 = sqlx::query_scalar("SELECT 1").fetch_one(&self.pool).await?;
        Ok(started.elapsed())
    }

    /// Closes the pool (for every clone).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Puts a SQLite file in WAL mode. The switch needs the file to itself, and SQLite answers a
/// second process switching at the same moment "database is locked" without waiting on its busy
/// timeout, so a busy answer is tried again (the other process's switch has usually done it).
async fn enable_wal(pool: &AnyPool) -> Result<(), sqlx::Error> {
    let mut attempt: u32 = 1;
    loop {
        match sqlx::query("PRAGMA journal_mode = WAL").execute(pool).await {
            Ok(_) => return Ok(()),
            Err(error) if is_busy(&error) && attempt < 10 => {
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
            }
            Err(error) => return Err(error),
        }
    }
}

fn prepare(url: &str) -> Result<(Backend, AnyConnectOptions), SqlError> {
    sqlx::any::install_default_drivers();
    let backend = Backend::of_url(url)?;
    if backend == Backend::Sqlite {
        create_sqlite_parent_dir(url);
    }
    Ok((backend, AnyConnectOptions::from_str(url)?))
}

fn pool_options(max_connections: u32, acquire_timeout: Duration) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(acquire_timeout)
}

fn create_sqlite_parent_dir(url: &str) {
    let path = url.trim_start_matches("sqlite://").trim_start_matches("sqlite:");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return;
    }
    if let Some(parent) = std::path::Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        // A failure shows up as the connect error right after, with the path in it.
        let _ = std::fs::create_dir_all(parent);
    }
}

/// Whether the database refused a write because a unique value is taken.
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Whether a statement lost to a concurrent writer and may simply be tried again in a new
/// transaction: SQLite's busy and busy-snapshot (a deferred transaction that read before another
/// connection committed, then tried to write), PostgreSQL's serialization failure and deadlock.
pub fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => matches!(
            db.code().as_deref(),
            Some("5" | "6" | "261" | "517" | "40001" | "40P01")
        ),
        _ => false,
    }
}

/// What follows a `LIKE` placeholder bound to a [`like_pattern`]. `!` rather than a backslash:
/// MySQL reads `'\'` as an open string.
pub const LIKE_ESCAPE: &str = " ESCAPE '!'";

/// `%text%` for a `LOWER(column) LIKE $n` [`LIKE_ESCAPE`] match, lower-cased, with `%`, `_` and
/// `!` escaped so a client's text matches itself only.
pub fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            out.push('!');
        }
        out.push(c);
    }
    out.push('%');
    out.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backends_by_url() {
        assert_eq!(
            Backend::of_url("sqlite://x.db?mode=rwc").unwrap(),
            Backend::Sqlite
        );
        assert_eq!(Backend::of_url("postgres://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of_url("postgresql://u@h/db").unwrap(), Backend::Postgres);
        assert_eq!(Backend::of_url("mariadb://root@h/db").unwrap(), Backend::MySql);
        assert_eq!(Backend::of_url("mysql://root@h/db").unwrap(), Backend::MySql);
        let err = Backend::of_url("oracle://h/db").unwrap_err();
        assert!(err.to_string().contains("`oracle`"), "{err}");
    }

    #[test]
    fn day_numbers_divide_as_integers_on_each_backend() {
        assert_eq!(
            Backend::MySql.epoch_day("created_at"),
            "((created_at) DIV 86400000)"
        );
        assert_eq!(
            Backend::Postgres.epoch_day("created_at"),
            "((created_at) / 86400000)"
        );
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_pattern("A_b%"), "%a!_b!%%");
        assert_eq!(like_pattern("x!y\\z"), "%x!!y\\z%");
    }

    #[tokio::test]
    async fn a_sqlite_file_is_created_with_its_directory_in_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/owl.db");
        let db = Db::connect(&format!("sqlite://{}?mode=rwc", path.display()), 1)
            .await
            .unwrap();
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        assert!(path.exists());
        assert!(db.ping().await.is_ok());
        db.close().await;
    }
}
