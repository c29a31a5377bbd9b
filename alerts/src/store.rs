//! The alert store: alerts, the live alert configuration, mutes and blocked IPs, in SQL.
//!
//! Portable SQL through `owl-sql` (its rules: runtime statements, integer epoch milliseconds, JSON
//! text for lists and objects); the tables are step `0201_alerts` of Owl's schema, which the binary
//! applies before any store opens. Upserts come from [`Backend::on_conflict_update`] (`ON CONFLICT`,
//! or MySQL's `ON DUPLICATE KEY UPDATE`); an update that must report back uses `RETURNING`, or on
//! MySQL a read in the same transaction. The engine (collector
//! process) writes alerts and blocks; the query API reads them and writes acknowledgements,
//! configuration and mutes, so several processes share one store safely:
//!
//! - at most one open alert per type and key is enforced by a unique index (partial, or on MySQL
//!   over a column that is NULL once the alert is resolved);
//! - configuration changes are compare-and-swap on `version`, so two concurrent edits never lose
//!   one another;
//! - an acknowledgement is never overwritten by a later delivery status.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use owl_sql::{Backend, Db, Sql};
use serde_json::{Map, Value};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AnyPool, Row};
use uuid::Uuid;

use crate::alert::{Alert, AlertSeverity, AlertState, AlertStatus, AlertType, Channel};
use crate::secrets::SecretCipher;
use crate::settings::AlertSettings;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stored value could not be read back.
    #[error("corrupt {what} in alert store row {id}: {message}")]
    Corrupt {
        /// The column.
        what: &'static str,
        /// The row's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// Other edits of the alert configuration kept landing while this one was being saved.
    #[error("the alert configuration changed under {attempts} attempts to save it; try again")]
    Contended {
        /// Attempts made.
        attempts: u32,
    },
    /// The database refused or could not be reached.
    #[error("alert store database error: {0}")]
    Sqlx(#[from] sqlx::Error),
}

impl StoreError {
    fn is_unique_violation(&self) -> bool {
        matches!(self, StoreError::Sqlx(error) if owl_sql::is_unique_violation(error))
    }
}

/// The stored configuration and who changed it last.
#[derive(Debug, Clone)]
pub struct StoredSettings {
    /// The settings.
    pub settings: AlertSettings,
    /// Grows with every change.
    pub version: i64,
    /// When it was changed, epoch ms.
    pub updated_at: i64,
    /// Who changed it.
    pub updated_by: String,
}

/// The configuration in force: the stored one, else the config file's.
#[derive(Debug, Clone)]
pub struct EffectiveSettings {
    /// The settings.
    pub settings: AlertSettings,
    /// The stored version; `None` while the config file's values apply.
    pub version: Option<i64>,
    /// When it was last changed through the API, epoch ms.
    pub updated_at: Option<i64>,
    /// Who changed it.
    pub updated_by: Option<String>,
}

/// How often a configuration change is retried when another edit landed in between.
const SAVE_ATTEMPTS: u32 = 5;

/// An alert type muted until a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mute {
    /// The type.
    pub alert_type: AlertType,
    /// Muted until, epoch ms.
    pub until_ms: i64,
    /// Why.
    pub reason: String,
    /// Who muted it.
    pub created_by: String,
    /// When, epoch ms.
    pub created_at: i64,
}

/// A client IP refused after an IP anomaly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedIp {
    /// The address.
    pub ip: String,
    /// Refused until, epoch ms.
    pub until_ms: i64,
    /// Why.
    pub reason: String,
    /// The IP_ANOMALY alert that blocked it.
    pub alert_id: Option<Uuid>,
    /// When it was first blocked, epoch ms.
    pub created_at: i64,
}

/// Which alerts a listing returns.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// Only this type.
    pub alert_type: Option<AlertType>,
    /// Only this status.
    pub status: Option<AlertStatus>,
    /// Only this state.
    pub state: Option<AlertState>,
    /// Raised at or after, epoch ms.
    pub start_ms: Option<i64>,
    /// Raised at or before, epoch ms.
    pub end_ms: Option<i64>,
    /// Only these regions (`None`: all; an empty list matches nothing).
    pub regions: Option<Vec<String>>,
    /// Only this service.
    pub service: Option<String>,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

/// Counts of alerts by type and status (the log API's `summary`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// All alerts counted.
    pub total: i64,
    /// By type.
    pub by_type: BTreeMap<AlertType, i64>,
    /// By status.
    pub by_status: BTreeMap<AlertStatus, i64>,
}

/// The outcome of one channel's delivery of a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// Delivered at this time, epoch ms.
    Sent(i64),
    /// Failed for good after retries, with the reason (`slack: HTTP 500 ...`).
    Failed(String),
}

/// The alert store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AlertStore {
    db: Db,
    cipher: Arc<SecretCipher>,
}

const ALERT_COLUMNS: &str = "id, alert_type, alert_key, severity, state, status, message, context, service, host, \
     region, channels, occurrences, notices, last_error, created_at, last_seen_at, notified_at, sent_at, \
     resolved_at, acknowledged_at, acknowledged_by";

/// The PostgreSQL channel on which configuration and mute changes are announced.
pub const CHANGES_CHANNEL: &str = "owl_alert_config";

/// The fields of the stored settings that are secrets, encrypted at rest.
const SECRET_FIELDS: [&str; 4] = [
    "notifications.slack.webhookUrl",
    "notifications.feishu.webhookUrl",
    "notifications.feishu.secret",
    "notifications.email.password",
];

/// A dotted field as a JSON pointer.
fn pointer(field: &str) -> String {
    format!("/{}", field.replace('.', "/"))
}

impl AlertStore {
    /// A store over Owl's database, already migrated ([`owl_sql::migrate`]).
    pub fn new(db: Db, cipher: Arc<SecretCipher>) -> AlertStore {
        AlertStore { db, cipher }
    }

    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        self.db.pool()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// A statement for the store's backend, starting with `text`.
    pub fn sql(&self, text: &str) -> Sql {
        self.db.sql(text)
    }

    // ----- alerts -----

    /// Inserts a new open alert. `Ok(false)` when another open alert of the same type and key
    /// exists (raised by another process): the caller adopts that one.
    pub async fn insert_alert(&self, alert: &Alert) -> Result<bool, StoreError> {
        let mut sql = self.sql(&format!("INSERT INTO alerts ({ALERT_COLUMNS}) VALUES "));
        sql.push("(");
        sql.bind(alert.id.to_string()).push(", ");
        sql.bind(alert.alert_type.as_str().to_string()).push(", ");
        sql.bind(alert.key.clone()).push(", ");
        sql.bind(alert.severity.as_str().to_string()).push(", ");
        sql.bind(alert.state.as_str().to_string()).push(", ");
        sql.bind(alert.status.as_str().to_string()).push(", ");
        sql.bind(alert.message.clone()).push(", ");
        sql.bind(Value::Object(alert.context.clone()).to_string())
            .push(", ");
        sql.bind(alert.service.clone()).push(", ");
        sql.bind(alert.host.clone()).push(", ");
        sql.bind(alert.region.clone()).push(", ");
        sql.bind(channels_json(&alert.channels)).push(", ");
        sql.bind(alert.occurrences).push(", ");
        sql.bind(alert.notices).push(", ");
        sql.bind(alert.last_error.clone()).push(", ");
        sql.bind(alert.created_at).push(", ");
        sql.bind(alert.last_seen_at).push(", ");
        sql.bind(alert.notified_at).push(", ");
        sql.bind(alert.sent_at).push(", ");
        sql.bind(alert.resolved_at).push(", ");
        sql.bind(alert.acknowledged_at).push(", ");
        sql.bind(alert.acknowledged_by.clone()).push(")");
        match sql
            .query()
            .execute(self.db.pool())
            .await
            .map_err(StoreError::from)
        {
            Ok(_) => Ok(true),
            Err(error) if error.is_unique_violation() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// The open alert of a type and key, if any.
    pub async fn open_alert(&self, alert_type: AlertType, key: &str) -> Result<Option<Alert>, StoreError> {
        let mut sql = self.sql(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_type = "));
        sql.bind(alert_type.as_str().to_string())
            .push(" AND alert_key = ")
            .bind(key.to_string())
            .push(" AND state = 'OPEN'");
        let row = sql.query().fetch_optional(self.db.pool()).await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// Every open alert, oldest first.
    pub async fn open_alerts(&self) -> Result<Vec<Alert>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE state = 'OPEN' ORDER BY created_at, id"
        ));
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        rows.iter().map(alert_from_row).collect()
    }

    /// One alert.
    pub async fn get_alert(&self, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let mut sql = self.sql(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = "));
        sql.bind(id.to_string());
        let row = sql.query().fetch_optional(self.db.pool()).await?;
        row.as_ref().map(alert_from_row).transpose()
    }

    /// Records new occurrences of an open alert and returns its status (to learn of an
    /// acknowledgement made elsewhere); `None` if the alert is gone.
    #[allow(clippy::too_many_arguments)]
    pub async fn fold(
        &self,
        id: Uuid,
        severity: AlertSeverity,
        message: &str,
        context: &Map<String, Value>,
        occurrences: i64,
        last_seen_at: i64,
    ) -> Result<Option<AlertStatus>, StoreError> {
        let mut sql = self.sql("UPDATE alerts SET severity = ");
        sql.bind(severity.as_str().to_string())
            .push(", message = ")
            .bind(message.to_string());
        sql.push(", context = ")
            .bind(Value::Object(context.clone()).to_string());
        sql.push(", occurrences = ")
            .bind(occurrences)
            .push(", last_seen_at = ")
            .bind(last_seen_at);
        sql.push(" WHERE id = ").bind(id.to_string());
        let status: Option<String> = if self.db.backend() == Backend::MySql {
            // No `UPDATE ... RETURNING` on MySQL: the status is read back in the same transaction.
            let mut tx = self.db.pool().begin().await?;
            let status = if sql.query().execute(&mut *tx).await?.rows_affected() == 0 {
                None
            } else {
                let mut read = self.sql("SELECT status FROM alerts WHERE id = ");
                read.bind(id.to_string());
                read.query_scalar().fetch_optional(&mut *tx).await?
            };
            tx.commit().await?;
            status
        } else {
            sql.push(" RETURNING status");
            sql.query_scalar().fetch_optional(self.db.pool()).await?
        };
        status
            .map(|s| parse_column::<AlertStatus>(&s, "status", id))
            .transpose()
    }

    /// Marks a notice queued: the status becomes `PENDING` (or `SUPPRESSED` with `reason` when no
    /// channel was to receive it) unless the alert is acknowledged.
    pub async fn notice_queued(
        &self,
        id: Uuid,
        channels: &[Channel],
        suppressed_reason: Option<&str>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let status = if suppressed_reason.is_some() {
            AlertStatus::Suppressed
        } else {
            AlertStatus::Pending
        };
        let mut sql =
            self.sql("UPDATE alerts SET status = CASE WHEN status = 'ACKNOWLEDGED' THEN status ELSE ");
        sql.bind(status.as_str().to_string())
            .push(" END, last_error = ")
            .bind(suppressed_reason.map(str::to_string));
        if suppressed_reason.is_none() {
            sql.push(", notified_at = ")
                .bind(now_ms)
                .push(", notices = notices + 1");
        }
        sql.push(", channels = ").bind(channels_json(channels));
        sql.push(" WHERE id = ").bind(id.to_string());
        sql.query().execute(self.db.pool()).await?;
        Ok(())
    }

    /// Records one channel's delivery: a success turns `PENDING` into `SENT`; a failure turns
    /// `PENDING` or `SENT` into `FAILED` with the reason. `ACKNOWLEDGED` and `SUPPRESSED` stay.
    pub async fn record_delivery(&self, id: Uuid, outcome: &DeliveryOutcome) -> Result<(), StoreError> {
        let mut sql = match outcome {
            DeliveryOutcome::Sent(at) => {
                let mut sql = self.sql("UPDATE alerts SET sent_at = ");
                sql.bind(*at)
                    .push(", status = CASE WHEN status = 'PENDING' THEN 'SENT' ELSE status END");
                sql
            }
            DeliveryOutcome::Failed(reason) => {
                let mut sql = self.sql("UPDATE alerts SET last_error = ");
                sql.bind(reason.clone());
                sql.push(", status = CASE WHEN status IN ('PENDING', 'SENT') THEN 'FAILED' ELSE status END");
                sql
            }
        };
        sql.push(" WHERE id = ").bind(id.to_string());
        sql.query().execute(self.db.pool()).await?;
        Ok(())
    }

    /// Resolves an open alert.
    pub async fn resolve(&self, id: Uuid, resolved_at: i64) -> Result<(), StoreError> {
        let mut sql = self.sql("UPDATE alerts SET state = 'RESOLVED', resolved_at = ");
        sql.bind(resolved_at)
            .push(" WHERE id = ")
            .bind(id.to_string())
            .push(" AND state = 'OPEN'");
        sql.query().execute(self.db.pool()).await?;
        Ok(())
    }

    /// Acknowledges an alert (idempotent: the first acknowledgement's time and user stay). `None`
    /// for an unknown id.
    pub async fn acknowledge(&self, id: Uuid, by: &str, now_ms: i64) -> Result<Option<Alert>, StoreError> {
        let mut sql = self
            .sql("UPDATE alerts SET status = 'ACKNOWLEDGED', acknowledged_at = COALESCE(acknowledged_at, ");
        sql.bind(now_ms)
            .push("), acknowledged_by = COALESCE(acknowledged_by, ")
            .bind(by.to_string());
        sql.push(") WHERE id = ").bind(id.to_string());
        let done = sql.query().execute(self.db.pool()).await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        self.get_alert(id).await
    }

    /// A page of alerts (`offset`, `limit`) and the number matching.
    pub async fn list_alerts(
        &self,
        filter: &AlertFilter,
        offset: i64,
        limit: i64,
    ) -> Result<(Vec<Alert>, i64), StoreError> {
        let mut count = self.sql("SELECT COUNT(*) FROM alerts WHERE 1 = 1");
        where_clause(&mut count, filter);
        let total: i64 = count.query_scalar().fetch_one(self.db.pool()).await?;
        let mut sql = self.sql(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE 1 = 1"));
        where_clause(&mut sql, filter);
        let order = if filter.ascending { "ASC" } else { "DESC" };
        sql.push(&format!(" ORDER BY created_at {order}, id {order} LIMIT "));
        sql.bind(limit.max(0)).push(" OFFSET ").bind(offset.max(0));
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        let alerts = rows.iter().map(alert_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok((alerts, total))
    }

    /// Counts by type and status of the alerts matching `filter`.
    pub async fn summary(&self, filter: &AlertFilter) -> Result<Summary, StoreError> {
        let mut sql = self.sql("SELECT alert_type, status, COUNT(*) FROM alerts WHERE 1 = 1");
        where_clause(&mut sql, filter);
        sql.push(" GROUP BY alert_type, status");
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        let mut summary = Summary::default();
        for row in rows {
            let alert_type: String = row.try_get(0)?;
            let status: String = row.try_get(1)?;
            let count: i64 = row.try_get(2)?;
            summary.total += count;
            // Rows of a type or status this release does not know (written by a newer one) count in
            // the total only.
            if let Ok(t) = alert_type.parse::<AlertType>() {
                *summary.by_type.entry(t).or_default() += count;
            }
            if let Ok(s) = status.parse::<AlertStatus>() {
                *summary.by_status.entry(s).or_default() += count;
            }
        }
        Ok(summary)
    }

    /// Deletes resolved alerts raised before `before_ms`; returns how many.
    pub async fn purge_resolved(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut sql = self.sql("DELETE FROM alerts WHERE state = 'RESOLVED' AND created_at < ");
        sql.bind(before_ms);
        Ok(sql.query().execute(self.db.pool()).await?.rows_affected())
    }

    // ----- configuration -----

    /// The stored configuration over `base` (the config file's), if it was ever changed through
    /// the API.
    pub async fn load_settings(&self, base: &AlertSettings) -> Result<Option<StoredSettings>, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        self.load_settings_on(&mut conn, base).await
    }

    async fn load_settings_on(
        &self,
        conn: &mut AnyConnection,
        base: &AlertSettings,
    ) -> Result<Option<StoredSettings>, StoreError> {
        let row =
            sqlx::query("SELECT settings, version, updated_at, updated_by FROM alert_config WHERE id = 1")
                .fetch_optional(&mut *conn)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let text: String = row.try_get(0)?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            what: "alert_config.settings",
            id: "1".into(),
            message: e.to_string(),
        };
        let mut document: Value = serde_json::from_str(&text).map_err(corrupt)?;
        for field in SECRET_FIELDS {
            if let Some(Value::String(stored)) = document.pointer_mut(&pointer(field)) {
                *stored = self.cipher.open(field, stored).map_err(|e| StoreError::Corrupt {
                    what: "alert_config.settings",
                    id: "1".into(),
                    message: e.to_string(),
                })?;
            }
        }
        let settings = base.overlay(&document).map_err(corrupt)?;
        Ok(Some(StoredSettings {
            settings,
            version: row.try_get(1)?,
            updated_at: row.try_get(2)?,
            updated_by: row.try_get(3)?,
        }))
    }

    /// The stored configuration's version, `None` while the file's values apply.
    pub async fn settings_version(&self) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT version FROM alert_config WHERE id = 1")
                .fetch_optional(self.db.pool())
                .await?,
        )
    }

    /// Stores `settings` if the stored version is still `expected` (`None`: nothing stored yet).
    /// Returns the new version, or `None` when someone else changed it meanwhile.
    pub async fn save_settings(
        &self,
        settings: &AlertSettings,
        expected: Option<i64>,
        updated_by: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        let saved = self
            .save_settings_on(&mut conn, settings, expected, updated_by, now_ms)
            .await?;
        if saved.is_some() {
            self.announce_change().await;
        }
        Ok(saved)
    }

    async fn save_settings_on(
        &self,
        conn: &mut AnyConnection,
        settings: &AlertSettings,
        expected: Option<i64>,
        updated_by: &str,
        now_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let mut document = serde_json::to_value(settings).expect("alert settings serialise");
        for field in SECRET_FIELDS {
            if let Some(Value::String(plain)) = document.pointer_mut(&pointer(field)) {
                *plain = self.cipher.seal(field, plain);
            }
        }
        let text = document.to_string();
        let done = match expected {
            None => {
                let b = self.db.backend();
                let mut sql = self.sql(&format!(
                    "{}alert_config (id, settings, version, updated_at, updated_by) VALUES (1, ",
                    b.insert_ignore()
                ));
                sql.bind(text)
                    .push(", 1, ")
                    .bind(now_ms)
                    .push(", ")
                    .bind(updated_by.to_string());
                sql.push(")").push(&b.on_conflict_ignore("id"));
                sql.query().execute(&mut *conn).await?
            }
            Some(version) => {
                let mut sql = self.sql("UPDATE alert_config SET settings = ");
                sql.bind(text)
                    .push(", version = version + 1, updated_at = ")
                    .bind(now_ms);
                sql.push(", updated_by = ").bind(updated_by.to_string());
                sql.push(" WHERE id = 1 AND version = ").bind(version);
                sql.query().execute(&mut *conn).await?
            }
        };
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(Some(expected.map_or(1, |v| v + 1)))
    }

    /// Tells the engines of other processes that the configuration or the mutes changed: on
    /// PostgreSQL a `NOTIFY` on [`CHANGES_CHANNEL`], which every engine listens to, so they apply
    /// it within a round trip rather than at their next poll. SQLite serves one node, where the
    /// query API reloads its own engine directly and a second process polls. A failure is logged:
    /// the change is stored, and the poll still finds it.
    pub async fn announce_change(&self) {
        if !self.is_postgres() {
            return;
        }
        let notified = sqlx::query("SELECT pg_notify($1, '')")
            .bind(CHANGES_CHANNEL)
            .execute(self.db.pool())
            .await;
        if let Err(error) = notified {
            tracing::warn!(%error, "could not announce an alert configuration change");
        }
    }

    /// Whether the store is on PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        self.db.backend() == Backend::Postgres
    }

    /// The configuration in force: the stored one, else `config`'s `[alerts]` and `[notifications]`.
    pub async fn effective_settings(
        &self,
        config: &owl_config::Config,
    ) -> Result<EffectiveSettings, StoreError> {
        let mut conn = self.db.pool().acquire().await?;
        self.effective_settings_on(&mut conn, config).await
    }

    /// [`AlertStore::effective_settings`] on a connection of the caller's (inside its transaction).
    pub async fn effective_settings_on(
        &self,
        conn: &mut AnyConnection,
        config: &owl_config::Config,
    ) -> Result<EffectiveSettings, StoreError> {
        let base = AlertSettings::from_config(&config.alerts, &config.notifications);
        Ok(match self.load_settings_on(conn, &base).await? {
            Some(stored) => EffectiveSettings {
                settings: stored.settings,
                version: Some(stored.version),
                updated_at: Some(stored.updated_at),
                updated_by: Some(stored.updated_by),
            },
            None => EffectiveSettings {
                settings: base,
                version: None,
                updated_at: None,
                updated_by: None,
            },
        })
    }

    /// Applies `change` to the configuration in force and stores the result if `change` accepts
    /// it (returns `Ok`); a concurrent edit makes it start over from the newer configuration.
    /// Returns the stored configuration, or what `change` refused with.
    pub async fn update_settings<E>(
        &self,
        config: &owl_config::Config,
        updated_by: &str,
        now_ms: i64,
        mut change: impl FnMut(&AlertSettings) -> Result<AlertSettings, E>,
    ) -> Result<Result<EffectiveSettings, E>, StoreError> {
        for _ in 0..SAVE_ATTEMPTS {
            let mut conn = self.db.pool().acquire().await?;
            let outcome = self
                .update_settings_on(&mut conn, config, updated_by, now_ms, &mut change)
                .await?;
            drop(conn);
            match outcome {
                Some(Ok(saved)) => {
                    self.announce_change().await;
                    return Ok(Ok(saved));
                }
                Some(Err(refused)) => return Ok(Err(refused)),
                None => continue,
            }
        }
        Err(StoreError::Contended {
            attempts: SAVE_ATTEMPTS,
        })
    }

    /// One attempt of [`AlertStore::update_settings`] on a connection of the caller's, so that the
    /// change commits or rolls back with the caller's transaction: `None` when another edit landed
    /// since the configuration was read (start over in a new transaction). The caller announces
    /// the change ([`AlertStore::announce_change`]) once it committed.
    pub async fn update_settings_on<E>(
        &self,
        conn: &mut AnyConnection,
        config: &owl_config::Config,
        updated_by: &str,
        now_ms: i64,
        change: &mut impl FnMut(&AlertSettings) -> Result<AlertSettings, E>,
    ) -> Result<Option<Result<EffectiveSettings, E>>, StoreError> {
        let current = self.effective_settings_on(conn, config).await?;
        let next = match change(&current.settings) {
            Ok(next) => next,
            Err(refused) => return Ok(Some(Err(refused))),
        };
        let saved = self
            .save_settings_on(conn, &next, current.version, updated_by, now_ms)
            .await?;
        Ok(saved.map(|version| {
            Ok(EffectiveSettings {
                settings: next,
                version: Some(version),
                updated_at: Some(now_ms),
                updated_by: Some(updated_by.to_string()),
            })
        }))
    }

    // ----- mutes -----

    /// Mutes a type until `until_ms` (replacing an earlier mute of the type).
    pub async fn mute(&self, mute: &Mute) -> Result<(), StoreError> {
        let mut sql = self
            .sql("INSERT INTO alert_mutes (alert_type, until_at, reason, created_by, created_at) VALUES (");
        sql.bind(mute.alert_type.as_str().to_string())
            .push(", ")
            .bind(mute.until_ms)
            .push(", ")
            .bind(mute.reason.clone());
        sql.push(", ")
            .bind(mute.created_by.clone())
            .push(", ")
            .bind(mute.created_at)
            .push(")");
        let b = self.db.backend();
        sql.push(&b.on_conflict_update("alert_type"));
        sql.push(&format!(
            "until_at = {}, reason = {}, created_by = {}, created_at = {}",
            b.excluded("until_at"),
            b.excluded("reason"),
            b.excluded("created_by"),
            b.excluded("created_at")
        ));
        sql.query().execute(self.db.pool()).await?;
        self.announce_change().await;
        Ok(())
    }

    /// Lifts the mute of a type; whether one was in force.
    pub async fn unmute(&self, alert_type: AlertType, now_ms: i64) -> Result<bool, StoreError> {
        let mut sql = self.sql("DELETE FROM alert_mutes WHERE alert_type = ");
        sql.bind(alert_type.as_str().to_string())
            .push(" AND until_at > ")
            .bind(now_ms);
        let lifted = sql.query().execute(self.db.pool()).await?.rows_affected() > 0;
        let mut expired = self.sql("DELETE FROM alert_mutes WHERE alert_type = ");
        expired.bind(alert_type.as_str().to_string());
        expired.query().execute(self.db.pool()).await?;
        self.announce_change().await;
        Ok(lifted)
    }

    /// Mutes in force at `now_ms`.
    pub async fn mutes(&self, now_ms: i64) -> Result<Vec<Mute>, StoreError> {
        let mut sql = self.sql(
            "SELECT alert_type, until_at, reason, created_by, created_at FROM alert_mutes WHERE until_at > ",
        );
        sql.bind(now_ms).push(" ORDER BY alert_type");
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        let mut mutes = Vec::with_capacity(rows.len());
        for row in rows {
            let alert_type: String = row.try_get(0)?;
            // A type this release does not know cannot be raised by it either.
            let Ok(alert_type) = alert_type.parse() else {
                continue;
            };
            mutes.push(Mute {
                alert_type,
                until_ms: row.try_get(1)?,
                reason: row.try_get(2)?,
                created_by: row.try_get(3)?,
                created_at: row.try_get(4)?,
            });
        }
        Ok(mutes)
    }

    // ----- blocked IPs -----

    /// Blocks an IP until `until_ms`, or extends its block; never shortens one.
    pub async fn block_ip(&self, block: &BlockedIp) -> Result<(), StoreError> {
        let mut sql =
            self.sql("INSERT INTO blocked_ips (ip, until_at, reason, alert_id, created_at) VALUES (");
        sql.bind(block.ip.clone())
            .push(", ")
            .bind(block.until_ms)
            .push(", ")
            .bind(block.reason.clone());
        sql.push(", ")
            .bind(block.alert_id.map(|id| id.to_string()))
            .push(", ")
            .bind(block.created_at)
            .push(")");
        // `reason` and `alert_id` come after `until_at`: MySQL applies the assignments in order,
        // and they do not read it.
        let b = self.db.backend();
        let until = b.excluded("until_at");
        sql.push(&b.on_conflict_update("ip"));
        sql.push(&format!(
            "until_at = CASE WHEN {until} > blocked_ips.until_at THEN {until} ELSE blocked_ips.until_at END, \
             reason = {}, alert_id = {}",
            b.excluded("reason"),
            b.excluded("alert_id")
        ));
        sql.query().execute(self.db.pool()).await?;
        Ok(())
    }

    /// IPs blocked at `now_ms`.
    pub async fn blocked_ips(&self, now_ms: i64) -> Result<Vec<BlockedIp>, StoreError> {
        let mut sql =
            self.sql("SELECT ip, until_at, reason, alert_id, created_at FROM blocked_ips WHERE until_at > ");
        sql.bind(now_ms).push(" ORDER BY ip");
        let rows = sql.query().fetch_all(self.db.pool()).await?;
        rows.iter()
            .map(|row| {
                let ip: String = row.try_get(0)?;
                let alert_id: Option<String> = row.try_get(3)?;
                let alert_id = alert_id
                    .map(|id| {
                        Uuid::parse_str(&id).map_err(|e| StoreError::Corrupt {
                            what: "blocked_ips.alert_id",
                            id: ip.clone(),
                            message: e.to_string(),
                        })
                    })
                    .transpose()?;
                Ok(BlockedIp {
                    until_ms: row.try_get(1)?,
                    reason: row.try_get(2)?,
                    alert_id,
                    created_at: row.try_get(4)?,
                    ip,
                })
            })
            .collect()
    }

    /// Lifts the block of an IP; whether one was in force.
    pub async fn unblock_ip(&self, ip: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut sql = self.sql("DELETE FROM blocked_ips WHERE ip = ");
        sql.bind(ip.to_string()).push(" AND until_at > ").bind(now_ms);
        let lifted = sql.query().execute(self.db.pool()).await?.rows_affected() > 0;
        let mut expired = self.sql("DELETE FROM blocked_ips WHERE ip = ");
        expired.bind(ip.to_string());
        expired.query().execute(self.db.pool()).await?;
        Ok(lifted)
    }

    /// Deletes expired blocks and mutes.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<(), StoreError> {
        let mut blocks = self.sql("DELETE FROM blocked_ips WHERE until_at <= ");
        blocks.bind(now_ms);
        blocks.query().execute(self.db.pool()).await?;
        let mut mutes = self.sql("DELETE FROM alert_mutes WHERE until_at <= ");
        mutes.bind(now_ms);
        mutes.query().execute(self.db.pool()).await?;
        Ok(())
    }
}

fn where_clause(sql: &mut Sql, filter: &AlertFilter) {
    if let Some(t) = filter.alert_type {
        sql.push(" AND alert_type = ").bind(t.as_str().to_string());
    }
    if let Some(s) = filter.status {
        sql.push(" AND status = ").bind(s.as_str().to_string());
    }
    if let Some(s) = filter.state {
        sql.push(" AND state = ").bind(s.as_str().to_string());
    }
    if let Some(start) = filter.start_ms {
        sql.push(" AND created_at >= ").bind(start);
    }
    if let Some(end) = filter.end_ms {
        sql.push(" AND created_at <= ").bind(end);
    }
    if let Some(service) = &filter.service {
        sql.push(" AND service = ").bind(service.clone());
    }
    if let Some(regions) = &filter.regions {
        sql.push(" AND region IN ").bind_list(regions.iter().cloned());
    }
}

fn channels_json(channels: &[Channel]) -> String {
    serde_json::to_string(channels).expect("channel names serialise")
}

fn parse_column<T: FromStr>(text: &str, what: &'static str, id: impl ToString) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>().map_err(|e| StoreError::Corrupt {
        what,
        id: id.to_string(),
        message: e.to_string(),
    })
}

fn alert_from_row(row: &AnyRow) -> Result<Alert, StoreError> {
    let id_text: String = row.try_get("id")?;
    let id = Uuid::parse_str(&id_text).map_err(|e| StoreError::Corrupt {
        what: "alerts.id",
        id: id_text.clone(),
        message: e.to_string(),
    })?;
    let context: String = row.try_get("context")?;
    let context = match serde_json::from_str::<Value>(&context) {
        Ok(Value::Object(map)) => map,
        Ok(_) => Map::new(),
        Err(e) => {
            return Err(StoreError::Corrupt {
                what: "alerts.context",
                id: id_text,
                message: e.to_string(),
            });
        }
    };
    let channels: String = row.try_get("channels")?;
    let channels: Vec<Channel> = serde_json::from_str(&channels).map_err(|e| StoreError::Corrupt {
        what: "alerts.channels",
        id: id_text.clone(),
        message: e.to_string(),
    })?;
    let text = |name: &str| row.try_get::<String, _>(name);
    Ok(Alert {
        id,
        alert_type: parse_column(&text("alert_type")?, "alerts.alert_type", id)?,
        key: text("alert_key")?,
        severity: parse_column(&text("severity")?, "alerts.severity", id)?,
        state: parse_column(&text("state")?, "alerts.state", id)?,
        status: parse_column(&text("status")?, "alerts.status", id)?,
        message: text("message")?,
        context,
        service: row.try_get("service")?,
        host: row.try_get("host")?,
        region: row.try_get("region")?,
        channels,
        occurrences: row.try_get("occurrences")?,
        notices: row.try_get("notices")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        notified_at: row.try_get("notified_at")?,
        sent_at: row.try_get("sent_at")?,
        resolved_at: row.try_get("resolved_at")?,
        acknowledged_at: row.try_get("acknowledged_at")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
    })
}
