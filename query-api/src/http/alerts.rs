//! Alerts: the log API's `/api/v1/logs/alerts*` (history, configuration, channel test, plus mutes and
//! blocked IPs) and the CRM analytics API's `/api/analytics-monitoring/monitoring/alerts/*` (active alerts,
//! acknowledge), each in its family's envelope, over the one alert store of `owl_alerts` (the
//! tables of migration `0201_alerts`), so an alert has the same id in both.
//!
//! Where log API and CRM analytics API are silent:
//!
//! - History covers the last 7 days without `startTime` (30 at most, `LOG_QUERY_TIME_RANGE_TOO_LARGE`
//!   beyond). Items carry the log API's AlertItem fields and the incident's `state`, `occurrences`,
//!   `createdAt`, `lastSeenAt`, `resolvedAt`, `acknowledgedAt`/`By` and `lastError`. `summary`
//!   counts the alerts of the time range (and region scope) whatever the `type` and `status`
//!   filters, with every type and status present (0 when none), so a UI can show all tabs at once.
//! - Statuses beyond the log API's `SENT`, `FAILED`, `ACKNOWLEDGED`: `PENDING` while a delivery runs and
//!   `SUPPRESSED` when nothing was sent (type muted, no channel enabled; `lastError` says which).
//!   Types beyond the log API's four: `CPU_HIGH` and `MEMORY_HIGH` (the CRM analytics API's `cpu_high`, `memory_high`).
//! - The configuration answers every field of UpdateAlertConfigDto plus `cpu`, `memory`,
//!   `cooldownSeconds`, `resolveAfterSeconds` and the channel fields; webhook URLs, the Feishu
//!   secret and the SMTP password are write-only (`webhookConfigured`, `secretConfigured`,
//!   `passwordConfigured`). A `PUT` is validated as a whole; a problem in `notifications.*` is
//!   `LOG_ALERT_CHANNEL_INVALID`, in a rule `LOG_QUERY_INVALID_PARAMS`. Engines apply it within a
//!   second, in every process.
//! - `POST /test` delivers for real to a configured channel, enabled or not (a channel is tested
//!   before it is switched on); a failure is the log API's `LOG_ALERT_TEST_FAILED` (500) with the reason.
//! - Mutes: `POST /api/v1/logs/alerts/mutes` `{type, until | durationMinutes, reason?}` (at most 30
//!   days), `GET`, `DELETE /mutes/{type}`. Blocked IPs: `GET /blocked-ips`, `DELETE
//!   /blocked-ips/{ip}`. All changes are audited like every mutation.
//! - Active alerts are the open ones (acknowledged or not), newest first, at most
//!   [`MAX_ACTIVE`]; `created_at` is written like every Owl time (RFC 3339 UTC).
//!   Acknowledging an unknown id is 404, a malformed one 400; acknowledging twice keeps the first.
//! - Users restricted to regions see and acknowledge only alerts of those regions.
//!
//! Requests from an IP that IP_ANOMALY blocked are refused before anything else runs
//! ([`refuse_blocked`], 429 with `Retry-After`, code `IP_BLOCKED`); health endpoints stay open to
//! probes. The list of blocked IPs is cached for [`BLOCKLIST_REFRESH`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use owl_alerts::{
    Alert, AlertFilter, AlertSettings, AlertSettingsPatch, AlertState, AlertStatus, AlertStore, AlertType,
    Channel, EffectiveSettings, Mute, Notice, Notifier, NotifierOptions, SettingsProblem, TargetPolicy,
    format_millis,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Routes;
use super::extract::{AuthUser, ClientIp, Json, Path};
use crate::envelope::{
    AnalyticsMonitoringError, AnalyticsMonitoringOk, Failure, FailureKind, Family, LogsV1Error, LogsV1Ok,
    settings_failure, time_or_null,
};
use crate::logs::params::{
    COMMON, DEFAULT_LIMIT, MAX_LIMIT, Params, RawQuery, STATS_MAX_DAYS, resolve_range,
};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// Most alerts `alerts/active` lists.
pub const MAX_ACTIVE: i64 = 1000;
/// Longest mute.
pub const MAX_MUTE_DAYS: i64 = 30;
/// How long the list of blocked IPs is trusted before it is read again.
pub const BLOCKLIST_REFRESH: Duration = Duration::from_secs(1);

/// The routes.
pub(crate) fn routes() -> Routes {
    let alert = Access::perm(Permission::LogAlert);
    // Mutes, blocked IPs and the alert configuration are global: they affect every region.
    let global = alert.all_regions();
    Routes::new(Family::LogsV1, "alert")
        .route(Method::GET, "/api/v1/logs/alerts", alert, history)
        .doc(super::openapi::Doc::params(
            &[COMMON, &["type", "status"][..]].concat(),
        ))
        .route(Method::GET, "/api/v1/logs/alerts/mutes", alert, list_mutes)
        .route(Method::POST, "/api/v1/logs/alerts/mutes", global, mute)
        .route(Method::DELETE, "/api/v1/logs/alerts/mutes/{type}", global, unmute)
        .route(
            Method::GET,
            "/api/v1/logs/alerts/blocked-ips",
            alert,
            list_blocked,
        )
        .route(
            Method::DELETE,
            "/api/v1/logs/alerts/blocked-ips/{ip}",
            global,
            unblock,
        )
        .audited(
            Method::POST,
            "/api/v1/logs/alerts/test",
            alert,
            "test",
            super::AuditPolicy::Mutations,
            test_channel,
        )
        .resource("alert_config")
        .route(Method::GET, "/api/v1/logs/alerts/config", alert, get_config)
        .route(Method::PUT, "/api/v1/logs/alerts/config", global, put_config)
        .family(Family::AnalyticsMonitoring)
        .resource("alert")
        .route(
            Method::GET,
            "/api/analytics-monitoring/monitoring/alerts/active",
            Access::perm(Permission::MonitoringRead),
            active,
        )
        .audited(
            Method::POST,
            "/api/analytics-monitoring/monitoring/alerts/{alert_id}/acknowledge",
            alert,
            "acknowledge",
            super::AuditPolicy::Mutations,
            acknowledge,
        )
}

/// The alerts router.
pub fn router() -> axum::Router<AppState> {
    routes().into_router()
}

fn store_failure(error: owl_alerts::StoreError) -> Failure {
    Failure::internal(error)
}

/// The log API's AlertItem with the incident's facts.
fn item(alert: &Alert) -> Value {
    json!({
        "id": alert.id,
        "type": alert.alert_type.as_str(),
        "severity": alert.severity.as_str(),
        "message": alert.message,
        "context": alert.context,
        "sentAt": time_or_null(alert.sent_at),
        "channels": alert.channels,
        "status": alert.status.as_str(),
        "state": alert.state.as_str(),
        "occurrences": alert.occurrences,
        "service": alert.service,
        "host": alert.host,
        "region": alert.region,
        "createdAt": format_millis(alert.created_at),
        "lastSeenAt": format_millis(alert.last_seen_at),
        "resolvedAt": time_or_null(alert.resolved_at),
        "acknowledgedAt": time_or_null(alert.acknowledged_at),
        "acknowledgedBy": alert.acknowledged_by,
        "lastError": alert.last_error,
    })
}

/// `GET /api/v1/logs/alerts`.
async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let allowed: Vec<&str> = COMMON.iter().copied().chain(["type", "status"]).collect();
    let mut v = Validator::new();
    let params = Params::new(raw, &allowed, &["region"], &mut v);
    let alert_type = params
        .text(&mut v, "type")
        .and_then(|t| match t.parse::<AlertType>() {
            Ok(t) => Some(t),
            Err(e) => {
                v.error("type", "enum", e.to_string());
                None
            }
        });
    let status = params
        .text(&mut v, "status")
        .and_then(|s| match s.parse::<AlertStatus>() {
            Ok(s) => Some(s),
            Err(e) => {
                v.error("status", "enum", e.to_string());
                None
            }
        });
    let service = params.text(&mut v, "service");
    let regions = params.list(&mut v, "region");
    params.choice(&mut v, "sortBy", &["@timestamp"]);
    let ascending = params.choice(&mut v, "sortOrder", &["asc", "desc"]) == Some("asc");
    let page = params.int(&mut v, "page", 1, 1_000_000).unwrap_or(1);
    let limit = params.int(&mut v, "limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT);
    let start = params.time(&mut v, "startTime");
    let end = params.time(&mut v, "endTime");
    let range = resolve_range(
        &mut v,
        start,
        end,
        state.clock.now(),
        chrono::Duration::days(7),
        STATS_MAX_DAYS,
    )?;
    v.finish()?;

    let requested = (!regions.is_empty()).then_some(regions.as_slice());
    let scope = user.scope().regions_for(requested);
    let base = AlertFilter {
        start_ms: Some(range.start.timestamp_millis()),
        end_ms: Some(range.end.timestamp_millis() - 1),
        regions: scope,
        service,
        ascending,
        ..AlertFilter::default()
    };
    let filter = AlertFilter {
        alert_type,
        status,
        ..base.clone()
    };
    let store = state.alert_store();
    let (alerts, total) = store
        .list_alerts(&filter, (page - 1) * limit, limit)
        .await
        .map_err(store_failure)?;
    let summary = store.summary(&base).await.map_err(store_failure)?;
    let by_type: BTreeMap<&str, i64> = AlertType::ALL
        .iter()
        .map(|t| (t.as_str(), summary.by_type.get(t).copied().unwrap_or(0)))
        .collect();
    let by_status: BTreeMap<&str, i64> = AlertStatus::ALL
        .iter()
        .map(|s| (s.as_str(), summary.by_status.get(s).copied().unwrap_or(0)))
        .collect();
    let total_pages = (total + limit - 1) / limit;
    Ok(LogsV1Ok::new(json!({
        "items": alerts.iter().map(item).collect::<Vec<_>>(),
        "summary": { "total": summary.total, "byType": by_type, "byStatus": by_status },
        "total": total,
        "page": page,
        "limit": limit,
        "totalPages": total_pages,
        "hasNext": page < total_pages,
        "hasPrev": page > 1,
        "period": { "start": owl_model::format_timestamp(&range.start), "end": owl_model::format_timestamp(&range.last()) },
    })))
}

fn config_view(effective: &EffectiveSettings) -> Value {
    let mut view = effective.settings.view();
    view["updatedAt"] = time_or_null(effective.updated_at);
    view["updatedBy"] = json!(effective.updated_by);
    view
}

/// `GET /api/v1/logs/alerts/config`.
async fn get_config(State(state): State<AppState>) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let effective = state
        .alert_store()
        .effective_settings(&state.config)
        .await
        .map_err(store_failure)?;
    Ok(LogsV1Ok::new(config_view(&effective)))
}

/// `PUT /api/v1/logs/alerts/config`.
async fn put_config(
    State(state): State<AppState>,
    user: AuthUser,
    Json(patch): Json<AlertSettingsPatch>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let now = state.clock.now_ms();
    let may_move_channels = user.has(Permission::LogConfig);
    let saved = state
        .alert_store()
        .update_settings(&state.config, &user.user_code, now, |current: &AlertSettings| {
            // Where notices and channel credentials go is configuration (`log:config`); `log:alert`
            // may switch channels on and off and tune the rules.
            let moved = patch.destination_changes(current);
            if !may_move_channels && !moved.is_empty() {
                return Err(Failure::forbidden(format!(
                    "修改告警通道目标（{}）需要 log:config 权限",
                    moved.join("、")
                ))
                .with_code(crate::envelope::PERMISSION_DENIED_CODE));
            }
            current
                .patched(patch.clone())
                .map_err(|problems| settings_failure(problems, ""))
        })
        .await
        .map_err(|e| Failure::internal(e).with_code("LOG_CONFIG_UPDATE_FAILED"))??;
    state.reload_alert_engine().await;
    tracing::info!(by = %user.user_code, version = ?saved.version, "alert configuration updated");
    Ok(LogsV1Ok::with_message(config_view(&saved), "告警配置已更新"))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TestBody {
    channel: String,
    message: Option<String>,
}

/// `POST /api/v1/logs/alerts/test`.
async fn test_channel(
    State(state): State<AppState>,
    Json(body): Json<TestBody>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let channel: Channel = body
        .channel
        .parse()
        .map_err(|_| Failure::invalid_field("channel", "enum", "channel 只能是 slack、feishu 或 email"))?;
    let mut v = Validator::new();
    v.check(
        body.message.as_ref().is_none_or(|m| m.chars().count() <= 1000),
        "message",
        "length",
        "message 最多 1000 个字符",
    );
    v.finish()?;
    let effective = state
        .alert_store()
        .effective_settings(&state.config)
        .await
        .map_err(store_failure)?;
    let now = state.clock.now_ms();
    let notice = Notice::test(
        body.message.as_deref(),
        &owl_alerts::link_base(&state.config),
        now,
    );
    let policy = TargetPolicy::from_config(&state.config.notifications);
    let notifier = Notifier::direct(NotifierOptions::default(), policy).map_err(Failure::internal)?;
    match notifier.deliver(channel, &effective.settings, &notice).await {
        Ok(()) => Ok(LogsV1Ok::with_message(
            json!({ "channel": channel.as_str(), "status": "SUCCESS", "sentAt": format_millis(state.clock.now_ms()) }),
            "测试告警已发送",
        )),
        Err(error) if error.refused => {
            let field = match channel {
                Channel::Email => "notifications.email.smtpHost",
                Channel::Slack => "notifications.slack.webhookUrl",
                Channel::Feishu => "notifications.feishu.webhookUrl",
            };
            Err(settings_failure(
                vec![SettingsProblem {
                    field: field.to_string(),
                    message: error.message,
                    channel: true,
                }],
                "",
            )
            .into())
        }
        Err(error) => {
            // The log API answers a failed test with 500 and the reason in `details`.
            let failure = Failure {
                details: Some(json!(error.message)),
                ..Failure::new(FailureKind::Internal, "告警测试发送失败")
            };
            Err(failure.with_code("LOG_ALERT_TEST_FAILED").into())
        }
    }
}

fn mute_json(mute: &Mute) -> Value {
    json!({
        "type": mute.alert_type.as_str(),
        "until": format_millis(mute.until_ms),
        "reason": mute.reason,
        "createdBy": mute.created_by,
        "createdAt": format_millis(mute.created_at),
    })
}

/// `GET /api/v1/logs/alerts/mutes`.
async fn list_mutes(State(state): State<AppState>) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let mutes = state
        .alert_store()
        .mutes(state.clock.now_ms())
        .await
        .map_err(store_failure)?;
    Ok(LogsV1Ok::new(
        json!({ "items": mutes.iter().map(mute_json).collect::<Vec<_>>(), "total": mutes.len() }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MuteBody {
    r#type: String,
    until: Option<String>,
    duration_minutes: Option<i64>,
    reason: Option<String>,
}

/// `POST /api/v1/logs/alerts/mutes`.
async fn mute(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<MuteBody>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let now = state.clock.now_ms();
    let max_ms = MAX_MUTE_DAYS * 86_400_000;
    let mut v = Validator::new();
    let alert_type = match body.r#type.parse::<AlertType>() {
        Ok(t) => Some(t),
        Err(e) => {
            v.error("type", "enum", e.to_string());
            None
        }
    };
    let until_ms = match (&body.until, body.duration_minutes) {
        (Some(_), Some(_)) => {
            v.error("until", "exclusive", "until 与 durationMinutes 只能给出一个");
            None
        }
        (None, None) => {
            v.error("until", "required", "需要 until（ISO 8601）或 durationMinutes");
            None
        }
        (Some(until), None) => match owl_model::parse_timestamp(until) {
            Some(at) => Some(at.timestamp_millis()),
            None => {
                v.error(
                    "until",
                    "format",
                    "until 需为 ISO 8601 时间，例如 2025-12-07T12:00:00Z",
                );
                None
            }
        },
        (None, Some(minutes)) => {
            v.range("durationMinutes", minutes, 1, MAX_MUTE_DAYS * 1440);
            Some(now + minutes.clamp(1, MAX_MUTE_DAYS * 1440) * 60_000)
        }
    };
    if let Some(until) = until_ms {
        v.check(until > now, "until", "range", "until 需晚于当前时间");
        v.check(
            until <= now + max_ms,
            "until",
            "range",
            format!("最多静默 {MAX_MUTE_DAYS} 天"),
        );
    }
    let reason = v
        .optional("reason", body.reason.as_deref(), 500)
        .unwrap_or_default();
    v.finish()?;
    let (Some(alert_type), Some(until_ms)) = (alert_type, until_ms) else {
        unreachable!("validation reported the missing type or time above")
    };
    let mute = Mute {
        alert_type,
        until_ms,
        reason,
        created_by: user.user_code.clone(),
        created_at: now,
    };
    state.alert_store().mute(&mute).await.map_err(store_failure)?;
    state.reload_alert_engine().await;
    tracing::info!(by = %user.user_code, r#type = %alert_type, until = %format_millis(until_ms), "alert type muted");
    Ok(LogsV1Ok::with_message(mute_json(&mute), "告警已静默"))
}

/// `DELETE /api/v1/logs/alerts/mutes/{type}`.
async fn unmute(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let alert_type: AlertType = name
        .parse()
        .map_err(|e: owl_alerts::UnknownValue| Failure::invalid_field("type", "enum", e.to_string()))?;
    let lifted = state
        .alert_store()
        .unmute(alert_type, state.clock.now_ms())
        .await
        .map_err(store_failure)?;
    state.reload_alert_engine().await;
    if !lifted {
        return Err(Failure::not_found(format!("{alert_type} 未被静默")).into());
    }
    Ok(LogsV1Ok::with_message(
        json!({ "type": alert_type.as_str() }),
        "已取消静默",
    ))
}

/// `GET /api/v1/logs/alerts/blocked-ips`.
async fn list_blocked(State(state): State<AppState>) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let blocked = state
        .alert_store()
        .blocked_ips(state.clock.now_ms())
        .await
        .map_err(store_failure)?;
    let items: Vec<Value> = blocked
        .iter()
        .map(|b| {
            json!({
                "ip": b.ip,
                "until": format_millis(b.until_ms),
                "reason": b.reason,
                "alertId": b.alert_id,
                "createdAt": format_millis(b.created_at),
            })
        })
        .collect();
    Ok(LogsV1Ok::new(json!({ "items": items, "total": blocked.len() })))
}

/// `DELETE /api/v1/logs/alerts/blocked-ips/{ip}`.
async fn unblock(
    State(state): State<AppState>,
    Path(ip): Path<String>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let lifted = state
        .alert_store()
        .unblock_ip(&ip, state.clock.now_ms())
        .await
        .map_err(store_failure)?;
    if !lifted {
        return Err(Failure::not_found(format!("IP {ip} 未被封禁")).into());
    }
    Ok(LogsV1Ok::with_message(json!({ "ip": ip }), "已解除封禁"))
}

/// The CRM analytics API's alert item with the incident's facts.
fn active_item(alert: &Alert) -> Value {
    json!({
        "id": alert.id,
        "type": alert.alert_type.crm_name(),
        "severity": alert.severity.crm_name(),
        "message": alert.message,
        "created_at": format_millis(alert.created_at),
        "acknowledged": alert.is_acknowledged(),
        "status": alert.status.as_str(),
        "occurrences": alert.occurrences,
        "last_seen_at": format_millis(alert.last_seen_at),
        "context": alert.context,
    })
}

/// `GET /api/analytics-monitoring/monitoring/alerts/active`.
async fn active(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let filter = AlertFilter {
        state: Some(AlertState::Open),
        regions: user.scope().regions_for(None),
        ..AlertFilter::default()
    };
    let (alerts, total) = state
        .alert_store()
        .list_alerts(&filter, 0, MAX_ACTIVE)
        .await
        .map_err(store_failure)?;
    Ok(AnalyticsMonitoringOk::new(
        "获取活跃预警列表成功",
        json!({ "alerts": alerts.iter().map(active_item).collect::<Vec<_>>(), "total": total }),
    ))
}

/// `POST /api/analytics-monitoring/monitoring/alerts/{alert_id}/acknowledge`.
async fn acknowledge(
    State(state): State<AppState>,
    user: AuthUser,
    Path(alert_id): Path<uuid::Uuid>,
) -> Result<AnalyticsMonitoringOk<bool>, AnalyticsMonitoringError> {
    let store = state.alert_store();
    let not_found = || Failure::not_found(format!("预警 {alert_id} 不存在"));
    let alert = store
        .get_alert(alert_id)
        .await
        .map_err(store_failure)?
        .ok_or_else(not_found)?;
    if let Some(regions) = user.scope().regions {
        if !alert
            .region
            .as_ref()
            .is_some_and(|r| regions.contains(&crate::authz::scope::normalise_region(r)))
        {
            return Err(not_found().into());
        }
    }
    store
        .acknowledge(alert_id, &user.user_code, state.clock.now_ms())
        .await
        .map_err(store_failure)?
        .ok_or_else(not_found)?;
    tracing::info!(alert = %alert_id, by = %user.user_code, "alert acknowledged");
    Ok(AnalyticsMonitoringOk::new("预警确认成功", true))
}

/// Blocked IPs and the end of their block, epoch ms.
type BlockedUntil = Arc<HashMap<String, i64>>;

/// The IPs IP_ANOMALY blocked, cached for [`BLOCKLIST_REFRESH`].
pub(crate) struct Blocklist {
    store: AlertStore,
    clock: owl_model::clock::Clock,
    /// `alerts.ip_anomaly.enforce_at_query_api`.
    enforce: bool,
    /// Never refused, whatever the list says: `never_block` and the trusted proxies (loopback
    /// always).
    exempt: owl_config::Networks,
    /// When the list was read, and the list.
    cached: RwLock<(Option<Instant>, BlockedUntil)>,
    refreshing: AtomicBool,
}

impl Blocklist {
    /// A blocklist over the state's database.
    pub(crate) fn new(state: &AppState) -> Arc<Blocklist> {
        let ip_anomaly = &state.config.alerts.ip_anomaly;
        Arc::new(Blocklist {
            store: state.alert_store(),
            clock: state.clock.clone(),
            enforce: ip_anomaly.enforce_at_query_api,
            exempt: ip_anomaly
                .never_block
                .and(&state.config.query_api.trusted_proxies),
            cached: RwLock::new((None, Arc::new(HashMap::new()))),
            refreshing: AtomicBool::new(false),
        })
    }

    /// Until when `ip` is blocked, if it is. The list is read once at first, then refreshed in the
    /// background when stale, so no request after the first waits on the database.
    async fn blocked_until(self: &Arc<Self>, ip: &str) -> Option<i64> {
        let (loaded, current) = self.cached.read().expect("blocklist lock poisoned").clone();
        let stale = loaded.is_none_or(|at| at.elapsed() >= BLOCKLIST_REFRESH);
        // One refresh at a time; the others use the list they have meanwhile.
        let current = if stale && !self.refreshing.swap(true, Ordering::AcqRel) {
            if loaded.is_none() {
                self.refresh(current).await
            } else {
                let (list, kept) = (self.clone(), current.clone());
                tokio::spawn(async move { list.refresh(kept).await });
                current
            }
        } else {
            current
        };
        current
            .get(ip)
            .copied()
            .filter(|until| *until > self.clock.now_ms())
    }

    /// Reads the list, stores it and returns it; on failure keeps `current`.
    async fn refresh(&self, current: BlockedUntil) -> BlockedUntil {
        let now = self.clock.now_ms();
        let fresh = match self.store.blocked_ips(now).await {
            Ok(blocked) => Arc::new(
                blocked
                    .into_iter()
                    .map(|b| (b.ip, b.until_ms))
                    .collect::<HashMap<_, _>>(),
            ),
            Err(error) => {
                // Keep serving with the last list: an outage of the store must not lock
                // everyone out nor let everyone in for long.
                tracing::warn!(%error, "could not read the blocked IPs");
                current
            }
        };
        *self.cached.write().expect("blocklist lock poisoned") = (Some(Instant::now()), fresh.clone());
        self.refreshing.store(false, Ordering::Release);
        fresh
    }
}

fn is_health(path: &str) -> bool {
    matches!(path, "/health" | "/api/health" | "/health/detailed")
}

/// Refuses requests from blocked IPs (429, `Retry-After`, code `IP_BLOCKED`, in the envelope of
/// the path's family).
pub(crate) async fn refuse_blocked(
    State(list): State<Arc<Blocklist>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if !list.enforce || is_health(path) {
        return next.run(request).await;
    }
    let ip = ClientIp::of(request.extensions());
    let exempt = ip
        .parse::<std::net::IpAddr>()
        .is_ok_and(|addr| owl_config::net::is_loopback(addr) || list.exempt.contains(addr));
    if exempt {
        return next.run(request).await;
    }
    if let Some(until) = list.blocked_until(&ip).await {
        let retry_after_s = u64::try_from((until - list.clock.now_ms()).div_euclid(1000) + 1).unwrap_or(1);
        tracing::debug!(%ip, path, "request from a blocked IP refused");
        let failure = Failure::too_many_requests(
            format!(
                "IP {ip} 因请求异常已被临时封禁，请于 {} 后重试",
                format_millis(until)
            ),
            retry_after_s,
        );
        let family = Family::for_path(path);
        let context = crate::envelope::RequestContext {
            family,
            method: request.method().clone(),
            path: path.to_string(),
        };
        return context
            .scope(async move { failure.with_code("IP_BLOCKED").render(family) })
            .await;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_problems_use_003s_channel_code() {
        let problems = vec![
            SettingsProblem {
                field: "slowRequest.thresholdMs".into(),
                message: "bad".into(),
                channel: false,
            },
            SettingsProblem {
                field: "notifications.slack.webhookUrl".into(),
                message: "Slack webhook URL 未配置".into(),
                channel: true,
            },
        ];
        let failure = settings_failure(problems, "");
        assert_eq!(failure.code(), "LOG_ALERT_CHANNEL_INVALID");
        assert_eq!(failure.message, "告警通道配置无效：Slack webhook URL 未配置");
        assert_eq!(failure.errors.len(), 2);
        let rules_only = settings_failure(
            vec![SettingsProblem {
                field: "cpu.thresholdPercent".into(),
                message: "bad".into(),
                channel: false,
            }],
            "",
        );
        assert_eq!(rules_only.code(), "LOG_QUERY_INVALID_PARAMS");
    }

    #[test]
    fn health_paths_stay_open() {
        assert!(is_health("/health") && is_health("/health/detailed"));
        assert!(!is_health("/api/v1/logs/query"));
    }
}
