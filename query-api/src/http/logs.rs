//! The log API under `/api/v1/logs` (query, trace, errors, slow requests, stats, config, cleanup)
//! and the platform API's log extras served there with the log API's envelope (modules, detail, export, live stream).
//! Alerts (`/api/v1/logs/alerts*`) live in their own module.
//!
//! Every endpoint reads its parameters through [`crate::logs::params`] (all errors at once, unknown
//! parameters refused), applies the caller's scope (regions, environments) and runs index calls on
//! the blocking pool. Shapes, limits and codes follow the log API; where the log API is silent:
//!
//! - `LOG_QUERY_TOO_BROAD` (`GET /query`): no narrowing filter (`level`, `service`, `region`,
//!   `traceId`, `requestId`, `userId`, `url`, `keyword`, `minDuration`, `maxDuration`,
//!   `statusCode`, `hasError`) **and** a range over 24 hours **and** `limit` over 100.
//! - Items carry the record `id` beside the log API's LogItem fields, so `GET /logs/{id}` can find them.
//! - `byHour` entries carry `time` (the hour's start, ISO 8601) beside the log API's `HH:00` label, so hours
//!   of different days stay apart; `errorRate` is a percentage.
//! - `GET /stats` without `startTime` covers the last hour like every log endpoint; `groupBy` adds
//!   `groups` (the breakdown by that key) to the full LogStatsResponse.
//! - `GET /modules` covers the last 7 days by default (30 at most).
//! - `GET /stream` needs at least one narrowing filter (`LOG_QUERY_TOO_BROAD` otherwise): an
//!   unfiltered firehose is not something anyone reads.

use std::convert::Infallible;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, Method, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use chrono::Duration;
use futures::StreamExt;
use owl_index::{LogFilter, LogStats, SearchRequest, SearchResponse, SortBy, SortOrder, StatsRequest};
use owl_model::{Kind, Level};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::extract::{AuthUser, Path, ShutdownSignal, parse_json, parse_part};
use super::openapi::Doc;
use super::{AuditPolicy, Routes};
use crate::envelope::{Failure, Family, LogsV1Error, LogsV1Ok};
use crate::logs::cleanup::CleanupType;
use crate::logs::params::{
    self, COMMON, GivenTime, Params, QUERY_FILTERS, QUERY_MAX_DAYS, RawQuery, STATS_MAX_DAYS, TimeRange,
    apply_scope, check_broad, resolve_range,
};
use crate::logs::render::{self, human_bytes, mean_ms, num, percent};
use crate::logs::{cleanup, export, search, settings, stream, trace};
use crate::permissions::{Access, Permission};
use crate::state::AppState;
use crate::validate::Validator;

/// The slow-request threshold of the log API (`thresholdMs` default, and `slowRequestCount` of stats).
pub const DEFAULT_SLOW_MS: i64 = 2000;
/// Top paths in the slow-request summary.
const TOP_PATHS: usize = 10;

/// The routes.
pub(crate) fn routes() -> Routes {
    let read = Access::perm(Permission::LogRead);
    let config = Access::perm(Permission::LogConfig);
    let common = COMMON;
    let ranged: &[&'static str] = &["startTime", "endTime", "service", "region"];
    Routes::new(Family::LogsV1, "log")
        .route(Method::GET, "/api/v1/logs/query", read, query)
        .doc(Doc::params(&[common, QUERY_FILTERS].concat()))
        .route(Method::GET, "/api/v1/logs/trace/{traceId}", read, trace_of)
        .route(Method::GET, "/api/v1/logs/errors", read, errors)
        .doc(Doc::params(&[common, ERROR_FILTERS].concat()))
        .route(Method::GET, "/api/v1/logs/slow-requests", read, slow_requests)
        .doc(Doc::params(&[common, &["thresholdMs"], SLOW_FILTERS].concat()))
        .route(Method::GET, "/api/v1/logs/stats", read, stats)
        .doc(Doc::params(&[ranged, &["groupBy"]].concat()))
        .route(Method::GET, "/api/v1/logs/modules", read, modules)
        .doc(Doc::params(ranged))
        .audited(
            Method::GET,
            "/api/v1/logs/export",
            read,
            "export",
            AuditPolicy::Always,
            export_logs,
        )
        .doc(
            Doc::params(&[ranged, &["sortBy", "sortOrder", "format"], QUERY_FILTERS].concat())
                .produces(&["text/csv", "application/x-ndjson"]),
        )
        .route(Method::GET, "/api/v1/logs/stream", read, live)
        .doc(Doc::params(&[&["service", "region"], QUERY_FILTERS].concat()).produces(&["text/event-stream"]))
        .route(Method::GET, "/api/v1/logs/{id}", read, detail)
        .route(
            Method::POST,
            "/api/v1/logs/cleanup",
            Access::perm(Permission::LogCleanup).all_regions(),
            run_cleanup,
        )
        .doc(Doc::default().body::<CleanupBody>(true))
        .resource("log_config")
        .route(Method::GET, "/api/v1/logs/config", config, get_config)
        .route(
            Method::PUT,
            "/api/v1/logs/config",
            config.all_regions(),
            put_config,
        )
        .doc(Doc::default().body::<Value>(false))
}

/// The filters of `GET /errors`, beyond [`COMMON`].
const ERROR_FILTERS: &[&str] = &["errorType", "errorCode", "userId", "url", "keyword"];
/// The filters of `GET /slow-requests`, beyond [`COMMON`] and `thresholdMs`.
const SLOW_FILTERS: &[&str] = &["url", "userId"];

/// The log API router.
pub fn router() -> Router<AppState> {
    routes().into_router()
}

/// Parameters read as lists (comma-separated or repeated).
const LISTS: &[&str] = &["service", "region", "level"];

/// A paged listing's parameters, parsed.
struct Listing {
    params: Params,
    filter: LogFilter,
    regions: Vec<String>,
    narrowed: bool,
    sort_by: SortBy,
    order: SortOrder,
    page: usize,
    limit: usize,
}

impl Listing {
    /// Reads [`COMMON`] plus `extra` parameters, the filters named in `filters`.
    /// The time range comes back beside it: a span over the limit is an error of its own, answered
    /// only when every parameter is otherwise valid.
    fn parse(
        state: &AppState,
        raw: RawQuery,
        extra: &[&str],
        filters: &[&str],
        max_days: i64,
        v: &mut Validator,
    ) -> (Listing, Result<TimeRange, Failure>) {
        let allowed: Vec<&str> = COMMON.iter().chain(extra).copied().collect();
        let params = Params::new(raw, &allowed, LISTS, v);
        let (filter, regions, narrowed) = params::filters(&params, v, filters);
        let (sort_by, order) = params::sort(&params, v);
        let (page, limit) = params::page(&params, v);
        let range = time_range(&params, v, state, Duration::hours(1), max_days);
        (
            Listing {
                params,
                filter,
                regions,
                narrowed,
                sort_by,
                order,
                page,
                limit,
            },
            range,
        )
    }

    /// The filter with range and scope, or `None` when the scope excludes everything.
    fn scoped(&self, user: &AuthUser, range: &TimeRange) -> Option<LogFilter> {
        let mut filter = LogFilter {
            start: Some(range.start),
            end: Some(range.end),
            ..self.filter.clone()
        };
        apply_scope(&mut filter, &user.scope(), &self.regions).then_some(filter)
    }

    fn request(&self, filter: LogFilter) -> SearchRequest {
        SearchRequest {
            filter,
            sort_by: self.sort_by,
            order: self.order,
            offset: (self.page - 1) * self.limit,
            limit: self.limit,
        }
    }
}

fn time_range(
    params: &Params,
    v: &mut Validator,
    state: &AppState,
    default_span: Duration,
    max_days: i64,
) -> Result<TimeRange, Failure> {
    let start: Option<GivenTime> = params.time(v, "startTime");
    let end = params.time(v, "endTime");
    resolve_range(v, start, end, state.clock.now(), default_span, max_days)
}

/// The log API's paginated data, with a summary after the items when there is one.
fn paginated(
    items: Vec<Value>,
    summary: Option<Value>,
    total: u64,
    page: usize,
    limit: usize,
) -> Map<String, Value> {
    let total_pages = total.div_ceil(limit as u64);
    let mut data = Map::new();
    data.insert("items".into(), Value::Array(items));
    if let Some(summary) = summary {
        data.insert("summary".into(), summary);
    }
    data.insert("total".into(), json!(total));
    data.insert("page".into(), json!(page));
    data.insert("limit".into(), json!(limit));
    data.insert("totalPages".into(), json!(total_pages));
    data.insert("hasNext".into(), json!((page as u64) < total_pages));
    data.insert("hasPrev".into(), json!(page > 1));
    data
}

/// `GET /api/v1/logs/query`.
async fn query(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let mut v = Validator::new();
    let (listing, range) = Listing::parse(&state, raw, QUERY_FILTERS, QUERY_FILTERS, QUERY_MAX_DAYS, &mut v);
    v.finish()?;
    let range = range?;
    check_broad(listing.narrowed, &range, listing.limit)?;
    let found = match listing.scoped(&user, &range) {
        Some(filter) => {
            let request = listing.request(filter);
            search(&state, &user, move |index| index.search(&request)).await?
        }
        None => SearchResponse::default(),
    };
    let items = found.hits.iter().map(render::log_item).collect();
    Ok(LogsV1Ok::new(Value::Object(paginated(
        items,
        None,
        found.total,
        listing.page,
        listing.limit,
    ))))
}

/// `GET /api/v1/logs/trace/{traceId}`.
async fn trace_of(
    State(state): State<AppState>,
    user: AuthUser,
    Path(trace_id): Path<String>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let trace_id = trace_id.trim().to_string();
    if trace_id.is_empty() || trace_id.chars().count() > 256 {
        return Err(Failure::invalid_field("traceId", "length", "traceId 需为 1 到 256 个字符").into());
    }
    // W3C trace ids are stored as OpenTelemetry writes them, in lower-case hex.
    let lookup = if trace_id.len() == 32 && trace_id.bytes().all(|b| b.is_ascii_hexdigit()) {
        trace_id.to_ascii_lowercase()
    } else {
        trace_id.clone()
    };
    let view = search(&state, &user, move |index| index.trace(&lookup)).await?;
    let scope = user.scope();
    let rendered = view.and_then(|view| {
        let keep: Vec<bool> = view.records.iter().map(|r| scope.allows_record(r)).collect();
        trace::render(&view, &keep)
    });
    match rendered {
        Some(data) => Ok(LogsV1Ok::new(data)),
        None => Err(Failure::not_found(format!("追踪 ID 未找到：{trace_id}"))
            .with_code("LOG_TRACE_NOT_FOUND")
            .into()),
    }
}

/// A search and aggregations over one filter, in one blocking call.
async fn search_with_stats(
    state: &AppState,
    user: &crate::auth::Principal,
    request: SearchRequest,
    stats: StatsRequest,
) -> Result<(SearchResponse, LogStats), Failure> {
    search(state, user, move |index| {
        Ok((index.search(&request)?, index.stats(&stats)?))
    })
    .await
}

/// `GET /api/v1/logs/errors`.
async fn errors(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let mut v = Validator::new();
    let (listing, range) = Listing::parse(&state, raw, ERROR_FILTERS, ERROR_FILTERS, QUERY_MAX_DAYS, &mut v);
    v.finish()?;
    let range = range?;
    let (found, stats) = match listing.scoped(&user, &range) {
        Some(filter) => {
            // The log API: the error list's keyword searches message and error.message, not user names.
            let filter = LogFilter {
                has_error: Some(true),
                error_keyword: filter.keyword.clone(),
                keyword: None,
                ..filter
            };
            let stats = StatsRequest {
                filter: filter.clone(),
                top_paths: 0,
                ..StatsRequest::default()
            };
            search_with_stats(&state, &user, listing.request(filter), stats).await?
        }
        None => (SearchResponse::default(), LogStats::default()),
    };
    let mut by_type: Map<String, Value> = stats
        .by_error_type
        .iter()
        .map(|(k, n)| (k.clone(), json!(n)))
        .collect();
    let typed: u64 = stats.by_error_type.values().sum();
    if stats.total > typed {
        by_type.insert("Unknown".into(), json!(stats.total - typed));
    }
    let items = found.hits.iter().map(render::log_item).collect();
    let summary =
        json!({ "total": stats.total, "byType": by_type, "byHour": render::hour_counts(&stats.by_hour) });
    Ok(LogsV1Ok::new(Value::Object(paginated(
        items,
        Some(summary),
        found.total,
        listing.page,
        listing.limit,
    ))))
}

/// `GET /api/v1/logs/slow-requests`.
async fn slow_requests(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let mut v = Validator::new();
    let (listing, range) = Listing::parse(
        &state,
        raw,
        &["thresholdMs", "url", "userId"],
        SLOW_FILTERS,
        QUERY_MAX_DAYS,
        &mut v,
    );
    let threshold = listing
        .params
        .int(&mut v, "thresholdMs", 1, owl_alerts::MAX_THRESHOLD_MS as i64)
        .unwrap_or(DEFAULT_SLOW_MS);
    v.finish()?;
    let range = range?;
    let (found, stats) = match listing.scoped(&user, &range) {
        Some(filter) => {
            let filter = LogFilter {
                min_duration_ms: Some(threshold as f64),
                ..filter
            };
            let stats = StatsRequest {
                filter: filter.clone(),
                slow_threshold_ms: threshold as f64,
                top_paths: TOP_PATHS,
            };
            search_with_stats(&state, &user, listing.request(filter), stats).await?
        }
        None => (SearchResponse::default(), LogStats::default()),
    };
    let durations = &stats.durations;
    let top_paths: Vec<Value> = stats
        .top_paths
        .iter()
        .map(|p| json!({ "path": p.path, "count": p.count, "avgDuration": mean_ms(p.avg_duration_ms) }))
        .collect();
    let summary = json!({
        "total": stats.total,
        "thresholdMs": threshold,
        "avgDuration": mean_ms(durations.avg_ms),
        "maxDuration": num(durations.max_ms.unwrap_or(0.0)),
        "p95Duration": num(durations.p95_ms.unwrap_or(0.0)),
        "p99Duration": num(durations.p99_ms.unwrap_or(0.0)),
        "topPaths": top_paths,
        "byService": stats.by_service,
    });
    let items = found.hits.iter().map(render::slow_item).collect();
    Ok(LogsV1Ok::new(Value::Object(paginated(
        items,
        Some(summary),
        found.total,
        listing.page,
        listing.limit,
    ))))
}

/// The parameters of stats and modules: a range, `service`, `region` and the named extras.
fn parse_ranged(
    state: &AppState,
    raw: RawQuery,
    extra: &[&str],
    default_span: Duration,
    v: &mut Validator,
) -> (Params, LogFilter, Vec<String>, Result<TimeRange, Failure>) {
    let allowed: Vec<&str> = ["startTime", "endTime", "service", "region"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let params = Params::new(raw, &allowed, LISTS, v);
    let (filter, regions, _) = params::filters(&params, v, &[]);
    let range = time_range(&params, v, state, default_span, STATS_MAX_DAYS);
    (params, filter, regions, range)
}

fn scoped_range(
    filter: LogFilter,
    range: &TimeRange,
    user: &AuthUser,
    regions: &[String],
) -> Option<LogFilter> {
    let mut filter = LogFilter {
        start: Some(range.start),
        end: Some(range.end),
        ..filter
    };
    apply_scope(&mut filter, &user.scope(), regions).then_some(filter)
}

/// The disk the index lives on, for `diskUsage`.
fn disk_usage(index: &owl_index::Index, data_dir: &std::path::Path) -> owl_index::Result<Value> {
    let usage = index.disk_usage()?;
    let probe = if index.root().exists() {
        index.root()
    } else {
        data_dir
    };
    let total = fs2::total_space(probe).unwrap_or(0);
    let available = fs2::available_space(probe).unwrap_or(0);
    let used = usage.total.bytes;
    let by_type: Map<String, Value> = Kind::ALL
        .iter()
        .map(|k| {
            (
                k.as_str().to_string(),
                json!(human_bytes(usage.by_kind.get(k).map_or(0, |u| u.bytes))),
            )
        })
        .collect();
    Ok(json!({
        "total": human_bytes(total),
        "used": human_bytes(used),
        "usedPercent": percent(used, total),
        "byType": by_type,
        "totalBytes": total,
        "usedBytes": used,
        "available": human_bytes(available),
        "filesystemUsedPercent": percent(total.saturating_sub(available), total),
    }))
}

/// `GET /api/v1/logs/stats`.
async fn stats(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let mut v = Validator::new();
    let (params, filter, regions, range) =
        parse_ranged(&state, raw, &["groupBy"], Duration::hours(1), &mut v);
    let group_by = params.choice(&mut v, "groupBy", &["hour", "day", "service", "level", "region"]);
    v.finish()?;
    let range = range?;
    let request = scoped_range(filter, &range, &user, &regions).map(|filter| StatsRequest {
        filter,
        slow_threshold_ms: DEFAULT_SLOW_MS as f64,
        top_paths: 0,
    });
    let data_dir = state.config.data_dir.clone();
    let (stats, disk) = search(&state, &user, move |index| {
        let stats = match &request {
            Some(request) => index.stats(request)?,
            None => LogStats::default(),
        };
        Ok((stats, disk_usage(index, &data_dir)?))
    })
    .await?;
    let by_level: Map<String, Value> = Level::ALL
        .iter()
        .rev()
        .map(|l| (l.as_str().to_string(), json!(stats.level_count(*l))))
        .collect();
    let durations = &stats.durations;
    let mut data = Map::new();
    data.insert("period".into(), range.period());
    data.insert(
        "summary".into(),
        json!({
            "totalLogs": stats.total,
            "totalRequests": durations.count,
            "errorCount": stats.level_count(Level::Error),
            "warnCount": stats.level_count(Level::Warn),
            "avgDuration": mean_ms(durations.avg_ms),
            "p95Duration": num(durations.p95_ms.unwrap_or(0.0)),
            "p99Duration": num(durations.p99_ms.unwrap_or(0.0)),
            "slowRequestCount": stats.slow_count,
        }),
    );
    data.insert("byLevel".into(), Value::Object(by_level));
    data.insert("byService".into(), json!(stats.by_service));
    data.insert("byRegion".into(), json!(stats.by_region));
    data.insert("byHour".into(), render::hour_stats(&stats.by_hour));
    data.insert("diskUsage".into(), disk);
    data.insert("groupBy".into(), json!(group_by));
    if let Some(group_by) = group_by {
        let counts = |map: Vec<(String, u64)>| {
            let mut map = map;
            map.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            Value::Array(
                map.into_iter()
                    .map(|(key, count)| json!({ "key": key, "count": count }))
                    .collect(),
            )
        };
        let groups = match group_by {
            "hour" => render::hour_stats(&stats.by_hour),
            "day" => Value::Array(
                stats
                    .by_day
                    .iter()
                    .map(|b| {
                        json!({
                            "day": b.start.format("%Y-%m-%d").to_string(),
                            "time": owl_model::format_timestamp(&b.start),
                            "count": b.count,
                            "errorRate": percent(b.error_count, b.count),
                            "avgDuration": mean_ms(b.avg_duration_ms),
                        })
                    })
                    .collect(),
            ),
            "service" => counts(stats.by_service.clone().into_iter().collect()),
            "region" => counts(stats.by_region.clone().into_iter().collect()),
            _ => counts(
                stats
                    .by_level
                    .iter()
                    .map(|(l, n)| (l.as_str().to_string(), *n))
                    .collect(),
            ),
        };
        data.insert("groups".into(), groups);
    }
    Ok(LogsV1Ok::new(Value::Object(data)))
}

/// `GET /api/v1/logs/modules` (platform API): the services and modules seen.
async fn modules(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let mut v = Validator::new();
    let (_, filter, regions, range) = parse_ranged(&state, raw, &[], Duration::days(7), &mut v);
    v.finish()?;
    let range = range?;
    let stats = match scoped_range(filter, &range, &user, &regions) {
        Some(filter) => {
            let request = StatsRequest {
                filter,
                top_paths: 0,
                ..StatsRequest::default()
            };
            search(&state, &user, move |index| index.stats(&request)).await?
        }
        None => LogStats::default(),
    };
    Ok(LogsV1Ok::new(json!({
        "services": stats.services(),
        "modules": stats.modules(),
        "serviceCounts": stats.by_service,
        "moduleCounts": stats.by_module,
        "period": range.period(),
    })))
}

/// `GET /api/v1/logs/{id}` (the platform API's detail).
async fn detail(
    State(state): State<AppState>,
    user: AuthUser,
    Path(id): Path<String>,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    if id.is_empty() || id.len() > owl_model::MAX_ID_LEN || id.chars().any(char::is_control) {
        return Err(Failure::invalid_field(
            "id",
            "format",
            format!("id 需为 1 到 {} 字节", owl_model::MAX_ID_LEN),
        )
        .into());
    }
    let lookup = id.clone();
    let record = search(&state, &user, move |index| index.get(&lookup)).await?;
    match record.filter(|r| user.scope().allows_record(r)) {
        Some(record) => Ok(LogsV1Ok::new(render::log_item(&record))),
        None => Err(Failure::not_found(format!("日志记录不存在：{id}"))
            .with_code("LOG_NOT_FOUND")
            .into()),
    }
}

/// `GET /api/v1/logs/export` (platform API): the filters of `/query`, `format=csv|ndjson`, streamed.
async fn export_logs(
    State(state): State<AppState>,
    user: AuthUser,
    raw: RawQuery,
) -> Result<Response, LogsV1Error> {
    let mut v = Validator::new();
    let allowed: Vec<&str> = [
        "startTime",
        "endTime",
        "service",
        "region",
        "sortBy",
        "sortOrder",
        "format",
    ]
    .iter()
    .chain(QUERY_FILTERS)
    .copied()
    .collect();
    let params = Params::new(raw, &allowed, LISTS, &mut v);
    let (filter, regions, _) = params::filters(&params, &mut v, QUERY_FILTERS);
    let (sort_by, order) = params::sort(&params, &mut v);
    v.check(
        sort_by == SortBy::Timestamp,
        "sortBy",
        "enum",
        "导出只支持按 @timestamp 排序",
    );
    let format = match params.choice(&mut v, "format", &["csv", "ndjson"]) {
        Some("ndjson") => export::Format::Ndjson,
        _ => export::Format::Csv,
    };
    let range = time_range(&params, &mut v, &state, Duration::hours(1), QUERY_MAX_DAYS);
    v.finish()?;
    let range = range?;
    let max_rows = state.config.query_api.export_max_rows;
    let Some(filter) = scoped_range(filter, &range, &user, &regions) else {
        let nothing = LogFilter {
            start: Some(range.start),
            end: Some(range.start),
            ..LogFilter::default()
        };
        return Ok(export_response(export::start(
            state.index.clone(),
            nothing,
            order,
            format,
            max_rows,
            0,
        )));
    };
    let counted = filter.clone();
    let total = search(&state, &user, move |index| index.count(&counted)).await?;
    Ok(export_response(export::start(
        state.index.clone(),
        filter,
        order,
        format,
        max_rows,
        total,
    )))
}

/// The streamed file, with `X-Total-Count` (records matching) and `X-Export-Rows` (records in it).
fn export_response(export: export::Export) -> Response {
    let mut response = axum::body::Body::from_stream(export.body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(export.content_type),
    );
    let disposition = format!("attachment; filename=\"{}\"", export.file_name);
    if let Ok(value) = HeaderValue::from_str(&disposition) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    headers.insert("x-total-count", HeaderValue::from(export.total));
    headers.insert("x-export-rows", HeaderValue::from(export.rows));
    response
}

/// `GET /api/v1/logs/stream` (the platform API's real-time log): Server-Sent Events.
async fn live(
    State(state): State<AppState>,
    user: AuthUser,
    shutdown: ShutdownSignal,
    headers: axum::http::HeaderMap,
    raw: RawQuery,
) -> Result<Response, LogsV1Error> {
    let mut v = Validator::new();
    let allowed: Vec<&str> = ["service", "region"]
        .iter()
        .chain(QUERY_FILTERS)
        .copied()
        .collect();
    let params = Params::new(raw, &allowed, LISTS, &mut v);
    let (filter, regions, narrowed) = params::filters(&params, &mut v, QUERY_FILTERS);
    v.finish()?;
    if !narrowed {
        return Err(Failure::invalid_field(
            "service",
            "too_broad",
            "实时日志需要至少一个过滤条件（service、level、keyword 等）",
        )
        .with_code("LOG_QUERY_TOO_BROAD")
        .into());
    }
    let mut filter = filter;
    let scope = user.scope();
    let visible = apply_scope(&mut filter, &scope, &regions);
    let slot = state.streams.acquire(user.user_id).map_err(|refused| {
        let message = match refused {
            crate::limits::SlotRefused::User(n) => format!("每个用户最多同时打开 {n} 个实时日志流"),
            crate::limits::SlotRefused::Total(n) => format!("实时日志流已达上限 {n}，请稍后重试"),
        };
        Failure::too_many_requests(message, 5).with_code("LOG_STREAM_LIMIT_EXCEEDED")
    })?;
    let token = crate::http::extract::bearer_token(&headers)
        .unwrap_or_default()
        .to_string();
    let viewer = stream::Viewer {
        auth: state.auth.clone(),
        token,
        scope,
        slot,
    };
    let events = stream::tail(
        state.index.clone(),
        visible.then_some(filter),
        viewer,
        state.clock.clone(),
        shutdown.0,
    )
    .map(|event| {
        let mut sse = Event::default().event(event.kind).data(event.data);
        if let Some(id) = event.id {
            sse = sse.id(id);
        }
        Ok::<_, Infallible>(sse)
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE).text("keep-alive"))
        .into_response())
}

/// Interval of the live tail's keep-alive comments.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

/// `GET /api/v1/logs/config`.
async fn get_config(State(state): State<AppState>) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    Ok(LogsV1Ok::new(settings::load(&state).await?))
}

/// `PUT /api/v1/logs/config`.
async fn put_config(
    State(state): State<AppState>,
    user: AuthUser,
    body: Bytes,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    // The `alerts` section is the alert configuration's patch; the rest, the log settings'.
    let mut fields: serde_json::Map<String, Value> = parse_json(&body)?;
    let alerts = match fields.remove("alerts") {
        None | Some(Value::Null) => None,
        Some(section) => Some(parse_part(section, "alerts")?),
    };
    let change = settings::LogConfigChange {
        log: parse_part(Value::Object(fields), "")?,
        alerts,
    };
    if change.is_empty() {
        return Err(Failure::invalid_field(
            "body",
            "required",
            "请求体至少需要一个配置项（level、sampling、retention 或 alerts）",
        )
        .into());
    }
    let config = settings::update(&state, &change, &user.user_code, state.clock.now()).await?;
    Ok(LogsV1Ok::with_message(config, "日志配置已更新"))
}

/// The log API's CleanupLogDto.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CleanupBody {
    #[serde(rename = "type")]
    kind: Option<String>,
    older_than_days: Option<i64>,
    dry_run: Option<bool>,
}

/// `POST /api/v1/logs/cleanup`.
async fn run_cleanup(
    State(state): State<AppState>,
    user: AuthUser,
    body: Bytes,
) -> Result<LogsV1Ok<Value>, LogsV1Error> {
    let body: CleanupBody = if body.iter().all(u8::is_ascii_whitespace) {
        CleanupBody::default()
    } else {
        parse_json(&body)?
    };
    let mut v = Validator::new();
    let what = match body.kind.as_deref() {
        None => Some(CleanupType::All),
        Some(text) => {
            let parsed = CleanupType::parse(text);
            v.check(
                parsed.is_some(),
                "type",
                "enum",
                "type 只能是 http、application、error 或 all",
            );
            parsed
        }
    };
    let days = body.older_than_days.and_then(|days| {
        let max = i64::from(owl_logconfig::model::MAX_RETENTION_DAYS);
        v.range("olderThanDays", days, 1, max).then_some(days as u32)
    });
    v.finish()?;
    let what = what.expect("validated above");
    let dry_run = body.dry_run.unwrap_or(false);
    let (policy, report) = cleanup::run(&state, what, days, dry_run, &user.user_code).await?;
    let message = if dry_run {
        "日志清理完成（试运行）"
    } else {
        "日志清理完成"
    };
    Ok(LogsV1Ok::with_message(
        cleanup::render(&policy, &report, state.clock.now()),
        message,
    ))
}
