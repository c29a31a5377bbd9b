//! The SQL home of the log settings (table `log_config`, one row) and of the cleanup queue (table
//! `log_cleanup_jobs`, see [`crate::cleanup`]).
//!
//! Portable SQL through `owl-sql` (its rules: `$n` placeholders on Owl's own database, epoch
//! milliseconds, JSON text, an insert that skips a taken key). The tables are step `0101_log_config` of
//! Owl's schema, which the binary applies before any store opens.
//!
//! Every change bumps `version`. Readers in other processes poll the version (one indexed read)
//! and load the document only when it moved; writers update with `WHERE version = $old`, so two
//! concurrent `PUT`s never lose each other's fields.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use owl_sql::Db;
use sqlx::{AnyConnection, AnyPool};

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
    db: Db,
    defaults: Arc<LogConfig>,
}

impl LogConfigStore {
    /// A store over Owl's database, already migrated ([`owl_sql::migrate`]).
    pub fn new(db: Db, defaults: LogConfig) -> LogConfigStore {
        LogConfigStore {
            db,
            defaults: Arc::new(defaults),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    /// The database.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// The settings that apply while nothing is stored.
    pub fn defaults(&self) -> &LogConfig {
        &self.defaults
    }

    /// The stored version; 0 while nothing is stored.
    pub async fn version(&self) -> Result<i64, StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT version FROM log_config WHERE id = 1")
            .fetch_optional(self.pool())
            .await?;
        Ok(found.unwrap_or(0))
    }

    /// The current settings: the stored document, or the defaults at version 0.
    pub async fn load(&self) -> Result<Stored, StoreError> {
        let mut conn = self.pool().acquire().await?;
        self.load_on(&mut conn).await
    }

    /// [`LogConfigStore::load`] on a connection of the caller's (inside its transaction).
    pub async fn load_on(&self, conn: &mut AnyConnection) -> Result<Stored, StoreError> {
        let row: Option<(i64, String)> = sqlx::query_as("SELECT version, body FROM log_config WHERE id = 1")
            .fetch_optional(&mut *conn)
            .await?;
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

    /// Stores `next` as version `expected + 1` if the stored version is still `expected` (0:
    /// nothing stored yet), on a connection of the caller's; `false` when another writer got there
    /// first. `next.updated_by` names the writer.
    pub async fn save_on(
        &self,
        conn: &mut AnyConnection,
        next: &LogConfig,
        expected: i64,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let body = serde_json::to_string(next).expect("the log config serialises");
        let version = expected + 1;
        let backend = self.db.backend();
        let stored = if expected == 0 {
            let mut sql = self.db.sql(&format!(
                "{}log_config (id, version, body, updated_at, updated_by) VALUES (1, ",
                backend.insert_ignore()
            ));
            sql.bind(version).push(", ").bind(body).push(", ");
            sql.bind(now.timestamp_millis())
                .push(", ")
                .bind(next.updated_by.clone())
                .push(")");
            sql.push(&backend.on_conflict_ignore("id"));
            sql.query().execute(&mut *conn).await?
        } else {
            let mut sql = self.db.sql("UPDATE log_config SET version = ");
            sql.bind(version).push(", body = ").bind(body);
            sql.push(", updated_at = ")
                .bind(now.timestamp_millis())
                .push(", updated_by = ")
                .bind(next.updated_by.clone());
            sql.push(" WHERE id = 1 AND version = ").bind(expected);
            sql.query().execute(&mut *conn).await?
        };
        Ok(stored.rows_affected() == 1)
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
            let mut conn = self.pool().acquire().await.map_err(StoreError::from)?;
            let current = self.load_on(&mut conn).await?;
            let mut next = current.config.apply(update).map_err(UpdateError::Invalid)?;
            next.updated_at = Some(now);
            next.updated_by = by.to_string();
            if self.save_on(&mut conn, &next, current.version, now).await? {
                let version = current.version + 1;
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
