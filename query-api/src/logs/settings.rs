//! The log config of `GET` and `PUT /api/v1/logs/config`.
//!
//! The document lives in `owl_logconfig`'s store (table `log_config`), which the collector polls.
//! Its `alerts` section is the alert engine's configuration seen from here: the alert store (table
//! `alert_config`, a JSON document in 003's camelCase with the channels beside the rules) is the one
//! the engine reads, so `GET` shows the rule thresholds from it when it has a row, and `PUT` writes
//! an `alerts` change into it, touching only the fields sent and keeping everything else there
//! (channels, secrets) as it was. Where the alert store has no table (an older schema), the section
//! lives in the log config document alone.

use chrono::{DateTime, Utc};
use owl_logconfig::model::AlertRulesUpdate;
use owl_logconfig::{LogConfig, LogConfigStore, LogConfigUpdate, Stored, UpdateError};
use serde_json::{Map, Value, json};

use crate::envelope::{Failure, FieldError};
use crate::state::AppState;

/// Attempts of an alert store write that keeps meeting concurrent changes.
const ALERT_WRITE_ATTEMPTS: usize = 5;

/// The store over the query API's pool, with the defaults of its configuration.
pub(crate) fn store(state: &AppState) -> LogConfigStore {
    LogConfigStore::from_pool(state.db.pool().clone(), LogConfig::defaults(&state.config))
}

fn config_failure(error: impl Into<anyhow::Error>) -> Failure {
    Failure::internal(error).with_code("LOG_CONFIG_UPDATE_FAILED")
}

/// The log config as answered: the stored document with the alert store's thresholds.
pub(crate) async fn load(state: &AppState) -> Result<LogConfig, Failure> {
    let stored = store(state).load().await.map_err(Failure::internal)?;
    let mut config = stored.config;
    if let Some((settings, _)) = read_alert_store(state).await.map_err(Failure::internal)? {
        overlay_alerts(&mut config, &settings);
    }
    Ok(config)
}

/// Applies a `PUT` as `by`.
pub(crate) async fn update(
    state: &AppState,
    update: &LogConfigUpdate,
    by: &str,
    now: DateTime<Utc>,
) -> Result<LogConfig, Failure> {
    let stored: Stored = store(state)
        .update(update, by, now)
        .await
        .map_err(|error| match error {
            UpdateError::Invalid(problems) => Failure::invalid(
                problems
                    .into_iter()
                    .map(|p| FieldError::new(p.field, p.constraint, p.message))
                    .collect(),
            ),
            UpdateError::Store(error) => config_failure(error),
        })?;
    let mut config = stored.config;
    if let Some(alerts) = &update.alerts {
        write_alert_store(state, alerts, by, now)
            .await
            .map_err(config_failure)?;
        owl_alerts::AlertStore::from_pool(state.db.pool().clone(), state.secrets.clone())
            .announce_change()
            .await;
        crate::http::alerts::engine_reload(state).await;
    }
    if let Some((settings, _)) = read_alert_store(state).await.map_err(Failure::internal)? {
        overlay_alerts(&mut config, &settings);
    }
    Ok(config)
}

fn missing_table(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.code().as_deref() == Some("42P01") || db.message().contains("no such table")
        }
        _ => false,
    }
}

/// The alert store's document and version, if it has one.
async fn read_alert_store(state: &AppState) -> Result<Option<(Value, i64)>, sqlx::Error> {
    let found: Result<Option<(String, i64)>, sqlx::Error> =
        sqlx::query_as("SELECT settings, version FROM alert_config WHERE id = 1")
            .fetch_optional(state.db.pool())
            .await;
    match found {
        Ok(Some((settings, version))) => {
            Ok(serde_json::from_str(&settings).ok().map(|value| (value, version)))
        }
        Ok(None) => Ok(None),
        Err(error) if missing_table(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

fn overlay_alerts(config: &mut LogConfig, settings: &Value) {
    let slow = &settings["slowRequest"];
    let target = &mut config.alerts.slow_request;
    if let Some(v) = slow["enabled"].as_bool() {
        target.enabled = v;
    }
    if let Some(v) = slow["thresholdMs"].as_u64() {
        target.threshold_ms = v;
    }
    if let Some(v) = slow["excludePaths"].as_array() {
        target.exclude_paths = v.iter().filter_map(|p| p.as_str().map(str::to_string)).collect();
    }
    let rate = &settings["errorRate"];
    let target = &mut config.alerts.error_rate;
    if let Some(v) = rate["enabled"].as_bool() {
        target.enabled = v;
    }
    if let Some(v) = rate["thresholdPercent"].as_f64() {
        target.threshold_percent = v;
    }
    if let Some(v) = rate["windowMinutes"].as_u64() {
        target.window_minutes = v;
    }
    let disk = &settings["diskSpace"];
    let target = &mut config.alerts.disk_space;
    if let Some(v) = disk["enabled"].as_bool() {
        target.enabled = v;
    }
    if let Some(v) = disk["warningPercent"].as_f64() {
        target.warning_percent = v;
    }
    if let Some(v) = disk["criticalPercent"].as_f64() {
        target.critical_percent = v;
    }
}

fn section<'a>(settings: &'a mut Map<String, Value>, name: &str) -> &'a mut Map<String, Value> {
    let entry = settings.entry(name.to_string()).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    entry.as_object_mut().expect("made an object above")
}

/// Writes the fields of an `alerts` update into a settings document.
fn merge_alerts(settings: &mut Map<String, Value>, alerts: &AlertRulesUpdate) {
    if let Some(slow) = &alerts.slow_request {
        let target = section(settings, "slowRequest");
        if let Some(v) = slow.enabled {
            target.insert("enabled".into(), json!(v));
        }
        if let Some(v) = slow.threshold_ms {
            target.insert("thresholdMs".into(), json!(v));
        }
        if let Some(v) = &slow.exclude_paths {
            target.insert("excludePaths".into(), json!(v));
        }
    }
    if let Some(rate) = &alerts.error_rate {
        let target = section(settings, "errorRate");
        if let Some(v) = rate.enabled {
            target.insert("enabled".into(), json!(v));
        }
        if let Some(v) = rate.threshold_percent {
            target.insert("thresholdPercent".into(), json!(v));
        }
        if let Some(v) = rate.window_minutes {
            target.insert("windowMinutes".into(), json!(v));
        }
    }
    if let Some(disk) = &alerts.disk_space {
        let target = section(settings, "diskSpace");
        if let Some(v) = disk.enabled {
            target.insert("enabled".into(), json!(v));
        }
        if let Some(v) = disk.warning_percent {
            target.insert("warningPercent".into(), json!(v));
        }
        if let Some(v) = disk.critical_percent {
            target.insert("criticalPercent".into(), json!(v));
        }
    }
}

/// Writes an `alerts` change into the alert store (see the module docs). A document created here
/// holds only the fields sent; the alert store fills the rest from the configuration file.
async fn write_alert_store(
    state: &AppState,
    alerts: &AlertRulesUpdate,
    by: &str,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    for _ in 0..ALERT_WRITE_ATTEMPTS {
        let found: Result<Option<(String, i64)>, sqlx::Error> =
            sqlx::query_as("SELECT settings, version FROM alert_config WHERE id = 1")
                .fetch_optional(state.db.pool())
                .await;
        let current = match found {
            Ok(found) => found,
            Err(error) if missing_table(&error) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let written = match current {
            Some((text, version)) => {
                let mut settings = match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => map,
                    _ => anyhow::bail!("the alert store's document (version {version}) is not a JSON object"),
                };
                merge_alerts(&mut settings, alerts);
                sqlx::query(
                    "UPDATE alert_config SET settings = $1, version = $2, updated_at = $3, updated_by = $4 \
                     WHERE id = 1 AND version = $5",
                )
                .bind(Value::Object(settings).to_string())
                .bind(version + 1)
                .bind(now.timestamp_millis())
                .bind(by.to_string())
                .bind(version)
                .execute(state.db.pool())
                .await?
            }
            None => {
                let mut settings = Map::new();
                merge_alerts(&mut settings, alerts);
                sqlx::query(
                    "INSERT INTO alert_config (id, settings, version, updated_at, updated_by) VALUES (1, $1, 1, $2, $3) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(Value::Object(settings).to_string())
                .bind(now.timestamp_millis())
                .bind(by.to_string())
                .execute(state.db.pool())
                .await?
            }
        };
        if written.rows_affected() == 1 {
            return Ok(());
        }
    }
    anyhow::bail!("the alert configuration changed concurrently {ALERT_WRITE_ATTEMPTS} times in a row")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_changes_touch_only_the_fields_sent() {
        let mut settings = json!({
            "slowRequest": {"enabled": true, "thresholdMs": 2000, "excludePaths": ["/upload"]},
            "notifications": {"slack": {"enabled": true, "webhookUrl": "https://hooks.example/x"}}
        })
        .as_object()
        .cloned()
        .unwrap();
        let update: AlertRulesUpdate =
            serde_json::from_value(json!({"slowRequest": {"thresholdMs": 3000}})).unwrap();
        merge_alerts(&mut settings, &update);
        let value = Value::Object(settings);
        assert_eq!(
            value["slowRequest"],
            json!({"enabled": true, "thresholdMs": 3000, "excludePaths": ["/upload"]})
        );
        assert_eq!(
            value["notifications"]["slack"]["webhookUrl"],
            "https://hooks.example/x"
        );
        let mut config = LogConfig::default();
        overlay_alerts(&mut config, &value);
        assert_eq!(config.alerts.slow_request.threshold_ms, 3000);
        assert_eq!(config.alerts.slow_request.exclude_paths, ["/upload"]);
    }
}
