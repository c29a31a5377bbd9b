//! The SQL home of the log settings (table `log_config`, one row) and of the cleanup queue (table
//! `log_cleanup_jobs`, see [`crate::cleanup`]).
//!
//! Portable SQL through sqlx's `Any` driver, the rules of the query API's `db` module: `$n`
//! placeholders, epoch milliseconds, JSON text, `ON CONFLICT ... DO NOTHING`. The tables come from
//! the query API's migrations (`migrations/*/0101_log_config.sql`); a process that starts before
//! they exist (a collector started before the query API ever ran) reads the defaults and keeps
//! polling.
//!
//! Every change bumps `version`. Readers in other processes poll the version (one indexed read)
//! and load the document only when it moved; writers update with `WHERE version = $old`, so two
//! concurrent `PUT`s never lose each other's fields.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};

use crate::model::{LogConfig, LogConfigUpdate, Problem};

/// Attempts of an update that keeps meeting concurrent changes.
const UPDATE_ATTEMPTS: usize = 5;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("log config database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// The stored document cannot be read.
    #[error("stored log config (version {version}) is corrupt: {message}")]
    Corrupt {
        /// The row's version.
        version: i64,
        /// What is wrong.
        message: String,
    },
    /// Other writers kept changing the settings.
    #[error("the log config changed concurrently {attempts} times in a row; retry")]
    Contended {
        /// Attempts made.
        attempts: usize,
    },
}

/// Why an update was not stored.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The update or its result is invalid.
    #[error("invalid log config update: {} problem(s)", .0.len())]
    Invalid(Vec<Problem>),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The settings as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// Incremented by every change; 0 while the defaults apply.
    pub version: i64,
    /// The settings.
    pub config: LogConfig,
}

/// The log settings and cleanup queue in SQL. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LogConfigStore {
    pool: AnyPool,
    defaults: Arc<LogConfig>,
}

/// Whether a database error says a table does not exist (yet).
pub(crate) fn is_missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        }
        _ => false,
    }
}

impl LogConfigStore {
    /// A store over an existing pool (the query API's).
    pub fn from_pool(pool: AnyPool, defaults: LogConfig) -> LogConfigStore {
        LogConfigStore {
            pool,
            defaults: Arc::new(defaults),
        }
    }

    /// A store with a small pool of its own that connects on first use, so a process does not fail
    /// to start while the database is briefly unreachable.
    pub fn connect_lazy(url: &str, defaults: LogConfig) -> Result<LogConfigStore, StoreError> {
        sqlx::any::install_default_drivers();
        let options = AnyConnectOptions::from_str(url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(options);
        Ok(LogConfigStore::from_pool(pool, defaults))
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The settings that apply while nothing is stored.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// The stored version; 0 while nothing is stored (or the table does not exist yet).
    pub async fn version(&self) -> Result<i64, StoreError> {
        let found: Result<Option<i64>, sqlx::Error> =
            sqlx::query_scalar("SELECT version FROM log_config WHERE id = 1")
                .fetch_optional(&self.pool)
                .await;
        match found {
            Ok(version) => Ok(version.unwrap_or(0)),
            Err(error) if is_missing_table(&error) => Ok(0),
            Err(error) => Err(error.into()),
        }
    }

    /// The current settings: the stored document, or the defaults at version 0.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        let found: Result<Option<(i64, String)>, sqlx::Error> =
            sqlx::query_as("SELECT version, body FROM log_config WHERE id = 1")
                .fetch_optional(&self.pool)
                .await;
        let row = match found {
            Ok(row) => row,
            Err(error) if is_missing_table(&error) => None,
            Err(error) => return Err(error.into()),
        };
        match row {
            None => Ok(Stored {
                version: 0,
                config: (*self.defaults).clone(),
            }),
            Some((version, body)) => {
                let config = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    version,
                    message: e.to_string(),
                })?;
                Ok(Stored { version, config })
            }
        }
    }

    /// Applies `update` as `by` at `now` and stores the result, retrying when another writer got
    /// there first.
    pub async fn update(
        &self,
        update: &LogConfigUpdate,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<Stored, UpdateError> {
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self.load().await?;
            let mut next = current.config.apply(update).map_err(UpdateError::Invalid)?;
            next.updated_at = Some(now);
            next.updated_by = by.to_string();
            let body = serde_json::to_string(&next).expect("the log config serialises");
            let version = current.version + 1;
            let stored = if current.version == 0 {
                sqlx::query(
                    "INSERT INTO log_config (id, version, body, updated_at, updated_by) VALUES (1, $1, $2, $3, $4) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(version)
                .bind(body)
                .bind(now.timestamp_millis())
                .bind(by.to_string())
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?
            } else {
                sqlx::query(
                    "UPDATE log_config SET version = $1, body = $2, updated_at = $3, updated_by = $4 \
                     WHERE id = 1 AND version = $5",
                )
                .bind(version)
                .bind(body)
                .bind(now.timestamp_millis())
                .bind(by.to_string())
                .bind(current.version)
                .execute(&self.pool)
                .await
                .map_err(StoreError::from)?
            };
            if stored.rows_affected() == 1 {
                tracing::info!(version, by, level = %next.level, sampling = next.sampling.enabled, "log config updated");
                return Ok(Stored {
                    version,
                    config: next,
                });
            }
            tracing::debug!(
                version = current.version,
                "log config changed concurrently; retrying the update"
            );
        }
        Err(StoreError::Contended {
            attempts: UPDATE_ATTEMPTS,
        }
        .into())
    }
}
