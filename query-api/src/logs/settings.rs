//! The log config of `GET` and `PUT /api/v1/logs/config`.
//!
//! Two stores answer it. The log settings (`level`, `sampling`, `retention`) are `owl_logconfig`'s
//! (table `log_config`, which the collector polls); the `alerts` section is the alert engine's own
//! configuration, owned by `owl_alerts` (table `alert_config`), the same one
//! `/api/v1/logs/alerts/config` shows and changes. A `PUT` changes both in one transaction: either
//! every field sent is stored or none is.

use chrono::{DateTime, Utc};
use owl_alerts::{AlertSettingsPatch, EffectiveSettings};
use owl_logconfig::{LogConfig, LogConfigStore, LogConfigUpdate, Problem};
use serde_json::Value;

use crate::envelope::{Failure, FieldError};
use crate::state::AppState;

/// Attempts of an update that keeps meeting concurrent changes.
const UPDATE_ATTEMPTS: usize = 5;

/// A change of the log config: its own fields, and the alert rules under `alerts`.
#[derive(Debug, Default)]
pub(crate) struct LogConfigChange {
    /// `level`, `sampling`, `retention`.
    pub log: LogConfigUpdate,
    /// `alerts`: a patch of the alert configuration.
    pub alerts: Option<AlertSettingsPatch>,
}

impl LogConfigChange {
    /// Whether the change names no field at all.
    pub fn is_empty(&self) -> bool {
        self.log == LogConfigUpdate::default() && self.alerts.is_none()
    }
}

/// The store over the query API's pool, with the defaults of its configuration.
pub(crate) fn store(state: &AppState) -> LogConfigStore {
    LogConfigStore::new(state.db.sql_db().clone(), LogConfig::defaults(&state.config))
}

fn config_failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure::internal(error).with_code("LOG_CONFIG_UPDATE_FAILED")
}

/// The answer: the log settings with the alert configuration in force as `alerts`.
fn view(config: &LogConfig, alerts: &EffectiveSettings) -> Result<Value, Failure> {
    let mut value = serde_json::to_value(config).map_err(Failure::internal)?;
    value["alerts"] = alerts.settings.view();
    Ok(value)
}

/// `GET`: the stored log settings and the alert configuration in force.
pub(crate) async fn load(state: &AppState) -> Result<Value, Failure> {
    let stored = store(state).load().await.map_err(Failure::internal)?;
    let alerts = state
        .alert_store()
        .effective_settings(&state.config)
        .await
        .map_err(Failure::internal)?;
    view(&stored.config, &alerts)
}

/// `PUT` as `by`: both parts in one transaction, started over when another writer got in between.
pub(crate) async fn update(
    state: &AppState,
    change: &LogConfigChange,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Value, Failure> {
    for _ in 0..UPDATE_ATTEMPTS {
        match update_once(state, change, by, now).await {
            Ok(Some(answer)) => {
                if change.alerts.is_some() {
                    state.alert_store().announce_change().await;
                    state.reload_alert_engine().await;
                }
                return Ok(answer);
            }
            Ok(None) => continue,
            Err(Attempt::Raced) => continue,
            Err(Attempt::Failed(failure)) => return Err(failure),
        }
    }
    Err(config_failure(anyhow::anyhow!(
        "the log config changed concurrently {UPDATE_ATTEMPTS} times in a row"
    )))
}

/// Why one attempt did not store.
enum Attempt {
    /// A concurrent writer holds or changed the rows (SQLite's busy snapshot): start over.
    Raced,
    /// An answer to give.
    Failed(Failure),
}

impl From<sqlx::Error> for Attempt {
    fn from(error: sqlx::Error) -> Attempt {
        if owl_sql::is_busy(&error) {
            Attempt::Raced
        } else {
            Attempt::Failed(config_failure(error))
        }
    }
}

impl From<owl_logconfig::StoreError> for Attempt {
    fn from(error: owl_logconfig::StoreError) -> Attempt {
        match error {
            owl_logconfig::StoreError::Sqlx(error) => error.into(),
            other => Attempt::Failed(config_failure(other)),
        }
    }
}

impl From<owl_alerts::StoreError> for Attempt {
    fn from(error: owl_alerts::StoreError) -> Attempt {
        match error {
            owl_alerts::StoreError::Sqlx(error) => error.into(),
            other => Attempt::Failed(config_failure(other)),
        }
    }
}

/// One transaction: `Ok(None)` when a version moved under it (nothing was stored).
async fn update_once(
    state: &AppState,
    change: &LogConfigChange,
    by: &str,
    now: DateTime<Utc>,
) -> Result<Option<Value>, Attempt> {
    let logs = store(state);
    let alerts = state.alert_store();
    let mut tx = state.db.pool().begin().await?;
    let current = logs.load_on(&mut tx).await?;
    let mut problems: Vec<FieldError> = Vec::new();
    let next = match current.config.apply(&change.log) {
        Ok(next) => Some(next),
        Err(found) => {
            problems.extend(found.into_iter().map(field_error));
            None
        }
    };
    let mut refused = None;
    let saved_alerts = match &change.alerts {
        None => None,
        Some(patch) => {
            let mut patched = |current: &owl_alerts::AlertSettings| current.patched(patch.clone());
            match alerts
                .update_settings_on(&mut tx, &state.config, by, now.timestamp_millis(), &mut patched)
                .await?
            {
                None => return Ok(None),
                Some(Ok(saved)) => Some(saved),
                Some(Err(found)) => {
                    refused = Some(found);
                    None
                }
            }
        }
    };
    if let Some(found) = refused {
        let failure = crate::envelope::settings_failure(found, "alerts.");
        problems.extend(failure.errors);
    }
    let Some(mut next) = next.filter(|_| problems.is_empty()) else {
        return Err(Attempt::Failed(Failure::invalid(problems)));
    };
    next.updated_at = Some(now);
    next.updated_by = by.to_string();
    if !logs.save_on(&mut tx, &next, current.version, now).await? {
        return Ok(None);
    }
    tx.commit().await?;
    tracing::info!(by, level = %next.level, sampling = next.sampling.enabled, alerts = change.alerts.is_some(), "log config updated");
    let alerts_view = match saved_alerts {
        Some(saved) => saved,
        None => alerts
            .effective_settings(&state.config)
            .await
            .map_err(|e| Attempt::Failed(Failure::internal(e)))?,
    };
    view(&next, &alerts_view).map(Some).map_err(Attempt::Failed)
}

fn field_error(problem: Problem) -> FieldError {
    FieldError::new(problem.field, problem.constraint, problem.message)
}
