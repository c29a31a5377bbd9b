//! The CRM analytics API's analytics and monitoring (`/api/analytics-monitoring/analytics/*` and
//! `/api/analytics-monitoring/monitoring/{health,metrics}/*`), in the CRM analytics API's `{code, message, data}`
//! envelope. The figures are defined in `crm::figures` and `crm::monitoring`.
//!
//! - Analytics need `analytics:read` and read only the caller's organization scope; every answer is
//!   cached ([`AnalyticsCache`]), and says so in `X-Cache` (`HIT`, `MISS`, `BYPASS`).
//! - Monitoring needs `monitoring:read`; it is not cached. Heartbeats, error rates and agent
//!   samples follow the caller's region scope: a region-limited user sees only agents and hosts of
//!   their regions (a host outside them is answered like a host never seen).
//! - Invalid parameters answer `{code: 400, message, data: null}` with the parameter and the
//!   accepted values in the message.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Routes;
use super::extract::{AuthUser, Query};
use crate::authz;
use crate::crm::answers::{Figure, PeriodParams, RangeParams, to_json_text};
use crate::crm::monitoring::{self, SystemFigures};
use crate::crm::{AnalyticsCache, CacheStatus, CrmStore};
use crate::envelope::{AnalyticsMonitoringError, AnalyticsMonitoringOk, Failure, FailureKind, Family};
use crate::permissions::{Access, Permission};
use crate::state::AppState;

/// The routes.
pub(crate) fn routes() -> Routes {
    let read = Access::perm(Permission::AnalyticsRead);
    let monitor = Access::perm(Permission::MonitoringRead);
    Routes::new(Family::AnalyticsMonitoring, "analytics")
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/customers/summary",
            read,
            customers_summary,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/customers/trend",
            read,
            customers_trend,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/orders/summary",
            read,
            orders_summary,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/orders/revenue",
            read,
            orders_revenue,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/service-records/statistics",
            read,
            service_statistics,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/users/activity",
            read,
            users_activity,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/analytics/organizations/summary",
            read,
            organizations_summary,
        )
        .resource("monitoring")
        .route(
            Method::GET,
            "/api/analytics-monitoring/monitoring/health/services",
            monitor,
            services_health,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/monitoring/health/database",
            monitor,
            database_health,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/monitoring/metrics/system",
            monitor,
            system_metrics,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/monitoring/metrics/database",
            monitor,
            database_metrics,
        )
}

/// The router of these endpoints.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// A 400 in the CRM analytics API's shape, `{code: 400, message, data: null}`.
fn bad_parameter(field: &str, message: impl Into<String>) -> Failure {
    let mut failure = Failure::new(FailureKind::Invalid, message);
    failure.field = Some(field.to_string());
    failure
}

/// A JSON body written as is, with the cache outcome in `X-Cache`.
pub(crate) fn json_body(body: String, cache: CacheStatus) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert("x-cache", HeaderValue::from_static(cache.header_value()));
    response
}

/// Answers a figure through the cache: it is computed only on a miss, over the caller's scope.
async fn answer(
    state: &AppState,
    user: &AuthUser,
    figure: Figure,
) -> Result<Response, AnalyticsMonitoringError> {
    let scope = authz::org_scope(user);
    let now = state.clock.now_ms();
    let (data, status) = AnalyticsCache::of(state)
        .get_or_compute(&figure.cache_key(&scope), || async {
            let store = CrmStore::of(state).await?;
            Ok(figure.compute(&store, &scope, now).await?)
        })
        .await?;
    let body = format!(
        r#"{{"code":200,"message":{},"data":{data}}}"#,
        to_json_text(&figure.message())
    );
    Ok(json_body(body, status))
}

fn today(state: &AppState) -> chrono::NaiveDate {
    state.clock.now().date_naive()
}

fn currency(state: &AppState) -> &str {
    &state.config.query_api.crm_currency_code
}

/// `GET .../analytics/customers/summary`.
async fn customers_summary(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, AnalyticsMonitoringError> {
    answer(&state, &user, Figure::CustomersSummary).await
}

/// `GET .../analytics/customers/trend?period=day|week|month` (default `day`).
async fn customers_trend(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<PeriodParams>,
) -> Result<Response, AnalyticsMonitoringError> {
    let figure = Figure::customers_trend(&params, today(&state)).map_err(Failure::from)?;
    answer(&state, &user, figure).await
}

/// `GET .../analytics/orders/summary?start_date=&end_date=` (both optional, `YYYY-MM-DD`, UTC days,
/// both included).
async fn orders_summary(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<RangeParams>,
) -> Result<Response, AnalyticsMonitoringError> {
    let figure = Figure::orders_summary(&params, currency(&state)).map_err(Failure::from)?;
    answer(&state, &user, figure).await
}

/// `GET .../analytics/orders/revenue?period=day|week|month` (default `month`).
async fn orders_revenue(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<PeriodParams>,
) -> Result<Response, AnalyticsMonitoringError> {
    let figure = Figure::orders_revenue(&params, today(&state), currency(&state)).map_err(Failure::from)?;
    answer(&state, &user, figure).await
}

/// `GET .../analytics/service-records/statistics`.
async fn service_statistics(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, AnalyticsMonitoringError> {
    answer(&state, &user, Figure::ServiceStatistics).await
}

/// `GET .../analytics/users/activity`.
async fn users_activity(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, AnalyticsMonitoringError> {
    answer(&state, &user, Figure::UsersActivity).await
}

/// `GET .../analytics/organizations/summary`.
async fn organizations_summary(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Response, AnalyticsMonitoringError> {
    answer(&state, &user, Figure::OrganizationsSummary).await
}

/// The regions the caller may see (`None`: all).
fn allowed_regions(user: &AuthUser) -> Option<Vec<String>> {
    user.scope().regions_for(None)
}

fn region_allowed(allowed: &Option<Vec<String>>, region: Option<&str>) -> bool {
    match allowed {
        None => true,
        Some(regions) => region.is_some_and(|r| regions.contains(&crate::authz::scope::normalise_region(r))),
    }
}

/// Runs blocking index work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Failure::internal(anyhow::anyhow!("blocking task failed: {e}")))?
}

/// `GET .../monitoring/health/services`.
async fn services_health(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let allowed = allowed_regions(&user);
    let now = state.clock.now();
    let index = state.index.clone();
    let health = blocking(move || {
        let heartbeats: Vec<_> = index
            .metrics()
            .latest_heartbeats()
            .map_err(Failure::internal)?
            .into_iter()
            .filter(|h| region_allowed(&allowed, h.region.as_deref()))
            .collect();
        let services: Vec<String> = heartbeats
            .iter()
            .flat_map(|h| h.services.iter().cloned())
            .collect();
        let (mut records, mut errors) = (BTreeMap::new(), BTreeMap::new());
        if !services.is_empty() {
            let window = chrono::Duration::from_std(monitoring::ERROR_WINDOW).expect("five minutes fit");
            let mut filter = owl_index::LogFilter::between(now - window, now);
            filter.services = services;
            filter.regions = allowed.clone().unwrap_or_default();
            let request = owl_index::StatsRequest {
                filter: filter.clone(),
                ..Default::default()
            };
            records = index.stats(&request).map_err(Failure::internal)?.by_service;
            filter.has_error = Some(true);
            let request = owl_index::StatsRequest {
                filter,
                ..Default::default()
            };
            errors = index.stats(&request).map_err(Failure::internal)?.by_service;
        }
        Ok((heartbeats, records, errors))
    })
    .await?;
    let (heartbeats, records, errors) = health;
    let interval = Duration::from_secs(state.config.agent.heartbeat_interval_s);
    Ok(AnalyticsMonitoringOk::new(
        "获取服务健康状态成功",
        monitoring::services_health(&heartbeats, &records, &errors, now, interval),
    ))
}

/// `GET .../monitoring/health/database`: the CRM database.
async fn database_health(
    State(state): State<AppState>,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let store = CrmStore::of(&state).await;
    let body = monitoring::database_health(store.as_ref(), state.config.storage.max_connections).await;
    Ok(AnalyticsMonitoringOk::new("获取数据库健康状态成功", body))
}

/// `GET .../monitoring/metrics/database`: the CRM database server's counts.
async fn database_metrics(
    State(state): State<AppState>,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let store = CrmStore::of(&state).await?;
    let counts = store.database_counts().await?;
    Ok(AnalyticsMonitoringOk::new(
        "获取数据库指标成功",
        json!({
            "connection_count": counts.connection_count,
            "query_count": counts.query_count,
            "slow_query_count": counts.slow_query_count,
            "timestamp": monitoring::format_time(state.clock.now()),
            "backend": store.backend().name(),
            "source": counts.source,
        }),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
struct HostParams {
    host: Option<String>,
}

/// An agent sample older than this is not "latest" for the query API's own host, which is then
/// sampled directly.
const OWN_SAMPLE_MAX_AGE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// `GET .../monitoring/metrics/system?host=` (default: the query API's own host).
async fn system_metrics(
    State(state): State<AppState>,
    user: AuthUser,
    Query(params): Query<HostParams>,
) -> Result<AnalyticsMonitoringOk<SystemFigures>, AnalyticsMonitoringError> {
    let own = monitoring::own_host(&state.config);
    let host = params
        .host
        .as_deref()
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or(&own)
        .to_string();
    if host.chars().count() > 255 {
        return Err(bad_parameter("host", "host 最多 255 个字符").into());
    }
    let allowed = allowed_regions(&user);
    let now = state.clock.now();
    let index = state.index.clone();
    let is_own = host == own;
    let figures = blocking(move || {
        let store = index.metrics();
        let sample = store.latest_metrics(&host).map_err(Failure::internal)?;
        match sample {
            Some(sample) if region_allowed(&allowed, sample.region.as_deref()) => {
                if !is_own || now - sample.timestamp <= OWN_SAMPLE_MAX_AGE {
                    return Ok(SystemFigures::from_sample(&sample));
                }
            }
            Some(_) => return Err(Failure::not_found(format!("主机 {host} 不存在或从未上报数据"))),
            None if is_own => {}
            None => {
                let heard_of = store.hosts().map_err(Failure::internal)?.contains(&host);
                let message = if heard_of {
                    format!("主机 {host} 没有上报系统指标")
                } else {
                    format!("主机 {host} 不存在或从未上报数据")
                };
                return Err(Failure::not_found(message));
            }
        }
        monitoring::sample_local_host(&host, now)
            .map_err(|e| Failure::unavailable("无法读取本机系统指标", anyhow::anyhow!("sysinfo: {e}")))
    })
    .await?;
    Ok(AnalyticsMonitoringOk::new("获取系统指标成功", figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_lives_under_the_analytics_monitoring_prefix() {
        let table = routes();
        let specs: Vec<_> = table.specs().collect();
        assert_eq!(specs.len(), 11);
        for spec in specs {
            assert!(
                spec.path.starts_with("/api/analytics-monitoring/"),
                "{}",
                spec.path
            );
            assert_eq!(spec.family, Family::AnalyticsMonitoring);
            let expected = if spec.path.contains("/monitoring/") {
                Permission::MonitoringRead
            } else {
                Permission::AnalyticsRead
            };
            assert_eq!(spec.access, Access::perm(expected), "{}", spec.path);
        }
    }
}
