//! The CRM analytics API's log query for CRM clients, in the `{code, message, data}` envelope:
//! `POST` and `GET /api/analytics-monitoring/logs/query`, `GET /api/analytics-monitoring/logs/statistics`.
//!
//! - `services` and `levels`: lists (JSON arrays in the body, comma-separated in the query string);
//!   empty means all. Levels accept Python's names (`WARNING`, `CRITICAL`); answers write `WARN` as
//!   `WARNING`.
//! - `start_time`, `end_time`: ISO 8601, a time without a zone is UTC; `end_time` is inclusive at
//!   its precision (`23:59:59` includes that second). Without times the last 24 hours; a span
//!   over 7 days (query) or 30 days (statistics) is refused with a field error.
//! - A one-character Latin `keyword` narrows nothing: it needs another filter beside it.
//! - `keyword`: case-insensitive substring of the message; `file`, `function`: case-insensitive
//!   substrings.
//! - `page` from 1 (default 1), `page_size` 1 to 500 (default 50); newest first.
//! - The caller's region and environment scope applies as on every log endpoint.

use axum::Router;
use axum::extract::State;
use axum::http::Method;
use chrono::{DateTime, Utc};
use owl_index::{LogFilter, LogStats, SearchRequest, SearchResponse, SortBy, SortOrder, StatsRequest};
use owl_model::Level;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::Routes;
use super::extract::{AuthUser, Json};
use super::openapi::Doc;
use crate::envelope::{AnalyticsMonitoringError, AnalyticsMonitoringOk, Family};
use crate::logs::params::{GivenTime, Params, RawQuery, apply_scope};
use crate::logs::render::{crm_item, naive_time};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// The CRM analytics API's default page size.
pub const DEFAULT_PAGE_SIZE: i64 = 50;
/// The CRM analytics API's largest page size.
pub const MAX_PAGE_SIZE: i64 = 500;
/// The span searched when no time is given, in hours.
pub const DEFAULT_HOURS: i64 = 24;
/// The longest span of a query, in days.
pub const QUERY_MAX_DAYS: i64 = 7;
/// The longest span of the statistics, in days.
pub const STATISTICS_MAX_DAYS: i64 = 30;
const MAX_TEXT_CHARS: usize = 512;

/// The routes.
pub(crate) fn routes() -> Routes {
    let read = Access::perm(Permission::LogRead);
    Routes::new(Family::AnalyticsMonitoring, "log")
        .route(
            Method::POST,
            "/api/analytics-monitoring/logs/query",
            read,
            query_post,
        )
        .route(
            Method::GET,
            "/api/analytics-monitoring/logs/query",
            read,
            query_get,
        )
        .doc(Doc::params(QUERY_PARAMS))
        .route(
            Method::GET,
            "/api/analytics-monitoring/logs/statistics",
            read,
            statistics,
        )
        .doc(Doc::params(STATISTICS_PARAMS))
}

/// The CRM log router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// The parameters of `GET /logs/query`: the body's fields.
const QUERY_PARAMS: &[&str] = &[
    "services",
    "levels",
    "start_time",
    "end_time",
    "keyword",
    "file",
    "function",
    "page",
    "page_size",
];
/// The parameters of `GET /logs/statistics`.
const STATISTICS_PARAMS: &[&str] = &["services", "start_time", "end_time"];

/// The CRM analytics API's query body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = CrmLogQuery)]
#[serde(deny_unknown_fields)]
struct QueryBody {
    services: Option<Vec<String>>,
    levels: Option<Vec<String>>,
    start_time: Option<String>,
    end_time: Option<String>,
    keyword: Option<String>,
    file: Option<String>,
    function: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// A validated query.
struct CrmQuery {
    filter: LogFilter,
    page: i64,
    page_size: i64,
}

fn text(v: &mut Validator, field: &str, value: Option<String>) -> Option<String> {
    let value = value?.trim().to_string();
    if value.is_empty() {
        return None;
    }
    v.check(
        value.chars().count() <= MAX_TEXT_CHARS,
        field,
        "length",
        format!("{field} 最多 {MAX_TEXT_CHARS} 个字符"),
    );
    Some(value)
}

fn clean_list(values: Option<Vec<String>>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for value in values.unwrap_or_default() {
        let value = value.trim().to_string();
        if !value.is_empty() && !out.contains(&value) {
            out.push(value);
        }
    }
    out
}

fn levels(v: &mut Validator, names: &[String]) -> Vec<Level> {
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        match Level::parse(name) {
            Some(level) if !out.contains(&level) => out.push(level),
            Some(_) => {}
            None => v.error(
                &format!("levels[{i}]"),
                "enum",
                format!("未知日志级别 {name}，可用：DEBUG、INFO、WARNING、ERROR、CRITICAL"),
            ),
        }
    }
    out
}

/// `[start, end)` from the CRM analytics API's times, `end_time` inclusive at its precision. Without times the last
/// [`DEFAULT_HOURS`]; with one, that span from or up to it; a span over `max_days` is refused.
/// The statistics of `filter` within the caller's regions (nothing outside them).
pub(crate) async fn scoped_stats(
    state: &AppState,
    user: &AuthUser,
    mut filter: LogFilter,
) -> Result<LogStats, crate::envelope::Failure> {
    if !apply_scope(&mut filter, &user.scope(), &[]) {
        return Ok(LogStats::default());
    }
    let request = StatsRequest {
        filter,
        top_paths: 0,
        ..StatsRequest::default()
    };
    crate::logs::search(state, user, move |index| index.stats(&request)).await
}

/// The count of each level that has records, by Python's level names (`WARNING`).
pub(crate) fn by_level(stats: &LogStats) -> Map<String, Value> {
    Level::ALL
        .iter()
        .filter(|l| stats.level_count(**l) > 0)
        .map(|l| (l.python_name().to_string(), json!(stats.level_count(*l))))
        .collect()
}

fn range(
    v: &mut Validator,
    start: Option<String>,
    end: Option<String>,
    now: DateTime<Utc>,
    max_days: i64,
) -> (DateTime<Utc>, DateTime<Utc>) {
    let start = start
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| GivenTime::parse(v, "start_time", &s));
    let end = end
        .filter(|s| !s.trim().is_empty())
        .and_then(|s| GivenTime::parse(v, "end_time", &s));
    let default = chrono::Duration::hours(DEFAULT_HOURS);
    let (start, end) = match (start, end) {
        (Some(start), Some(end)) => (start.at, end.at + end.unit),
        (Some(start), None) => (start.at, (start.at + default).min(now).max(start.at)),
        (None, Some(end)) => (end.at + end.unit - default, end.at + end.unit),
        (None, None) => (now - default, now),
    };
    if start > end {
        v.error("end_time", "range", "end_time 不能早于 start_time");
    } else if end - start > chrono::Duration::days(max_days) {
        v.error("start_time", "range", format!("时间范围不能超过 {max_days} 天"));
    }
    (start, end)
}

impl QueryBody {
    fn validate(self, v: &mut Validator, now: DateTime<Utc>) -> CrmQuery {
        let page = self.page.unwrap_or(1);
        let page_size = self.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        v.range("page", page, 1, 1_000_000);
        v.range("page_size", page_size, 1, MAX_PAGE_SIZE);
        if page.saturating_mul(page_size) > owl_index::MAX_SEARCH_DEPTH as i64 {
            v.error(
                "page",
                "range",
                format!("page × page_size 最大为 {}", owl_index::MAX_SEARCH_DEPTH),
            );
        }
        let services = clean_list(self.services);
        let level_names = clean_list(self.levels);
        let levels = levels(v, &level_names);
        let (start, end) = range(v, self.start_time, self.end_time, now, QUERY_MAX_DAYS);
        let filter = LogFilter {
            start: Some(start),
            end: Some(end),
            services,
            levels,
            message: text(v, "keyword", self.keyword),
            file: text(v, "file", self.file),
            function: text(v, "function", self.function),
            ..LogFilter::default()
        };
        let others = !filter.services.is_empty()
            || !filter.levels.is_empty()
            || filter.file.is_some()
            || filter.function.is_some();
        if let Some(keyword) = &filter.message
            && !crate::logs::params::keyword_narrows(keyword)
            && !others
        {
            v.error(
                "keyword",
                "length",
                "keyword 至少需要 2 个字符，或同时指定 services、levels 等过滤条件",
            );
        }
        CrmQuery {
            filter,
            page: page.max(1),
            page_size: page_size.clamp(1, MAX_PAGE_SIZE),
        }
    }
}

/// Reads the GET variant's query string into the body's shape.
fn from_query(raw: RawQuery, v: &mut Validator) -> QueryBody {
    let params = Params::new(raw, QUERY_PARAMS, &["services", "levels"], v);
    QueryBody {
        services: Some(params.list(v, "services")),
        levels: Some(params.list(v, "levels")),
        start_time: params.text(v, "start_time"),
        end_time: params.text(v, "end_time"),
        keyword: params.text(v, "keyword"),
        file: params.text(v, "file"),
        function: params.text(v, "function"),
        page: params.int(v, "page", 1, 1_000_000),
        page_size: params.int(v, "page_size", 1, MAX_PAGE_SIZE),
    }
}

async fn run_query(
    state: &AppState,
    user: &AuthUser,
    query: CrmQuery,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let mut filter = query.filter;
    let found = if apply_scope(&mut filter, &user.scope(), &[]) {
        let request = SearchRequest {
            filter,
            sort_by: SortBy::Timestamp,
            order: SortOrder::Desc,
            offset: ((query.page - 1) * query.page_size) as usize,
            limit: query.page_size as usize,
        };
        crate::logs::search(state, user, move |index| index.search(&request)).await?
    } else {
        SearchResponse::default()
    };
    let total_pages = found.total.div_ceil(query.page_size as u64);
    let logs: Vec<Value> = found.hits.iter().map(crm_item).collect();
    Ok(AnalyticsMonitoringOk::new(
        "查询日志成功",
        json!({
            "logs": logs,
            "total": found.total,
            "page": query.page,
            "page_size": query.page_size,
            "total_pages": total_pages,
        }),
    ))
}

/// `POST /api/analytics-monitoring/logs/query`.
async fn query_post(
    State(state): State<AppState>,
    user: AuthUser,
    Json(body): Json<QueryBody>,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let mut v = Validator::new();
    let query = body.validate(&mut v, state.clock.now());
    v.finish()?;
    run_query(&state, &user, query).await
}

/// `GET /api/analytics-monitoring/logs/query`.
async fn query_get(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let mut v = Validator::new();
    let body = from_query(raw, &mut v);
    let query = body.validate(&mut v, state.clock.now());
    v.finish()?;
    run_query(&state, &user, query).await
}

/// `GET /api/analytics-monitoring/logs/statistics`.
async fn statistics(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<AnalyticsMonitoringOk<Value>, AnalyticsMonitoringError> {
    let mut v = Validator::new();
    let params = Params::new(raw, STATISTICS_PARAMS, &["services"], &mut v);
    let services = params.list(&mut v, "services");
    let start_text = params.text(&mut v, "start_time");
    let end_text = params.text(&mut v, "end_time");
    let shown_start = start_text.as_deref().and_then(owl_model::parse_timestamp);
    let shown_end = end_text.as_deref().and_then(owl_model::parse_timestamp);
    let (start, end) = range(
        &mut v,
        start_text,
        end_text,
        state.clock.now(),
        STATISTICS_MAX_DAYS,
    );
    v.finish()?;
    let filter = LogFilter {
        start: Some(start),
        end: Some(end),
        services,
        ..LogFilter::default()
    };
    let stats = scoped_stats(&state, &user, filter).await?;
    Ok(AnalyticsMonitoringOk::new(
        "获取日志统计成功",
        json!({
            "total_logs": stats.total,
            "by_level": by_level(&stats),
            "by_service": stats.by_service,
            "error_count": stats.level_count(Level::Error),
            "warning_count": stats.level_count(Level::Warn),
            "time_range": {
                "start": naive_time(&shown_start.unwrap_or(start)),
                "end": naive_time(&shown_end.unwrap_or(end)),
            },
        }),
    ))
}
