//! Query parameters of the log endpoints: read from the raw query string, validated all at once
//! (every bad parameter is one entry of `errors[]`), turned into an index [`LogFilter`] with the
//! caller's scope applied.
//!
//! # Time ranges
//!
//! - `startTime` and `endTime` are ISO 8601; a time without a zone is UTC.
//! - `endTime` is inclusive at the precision it is written in: `23:59:59.999` includes that
//!   millisecond, `23:59:59` the whole second, `2025-12-07` the whole day.
//! - No `startTime`: the hour before `endTime` (or now). No `endTime`: from `startTime` to now, but
//!   never more than the endpoint's longest span (so `startTime` alone asks for "from then on").
//! - A span longer than the endpoint allows (7 days for query, errors, slow requests and export;
//!   30 days for stats and modules) is `LOG_QUERY_TIME_RANGE_TOO_LARGE`.
//!
//! Unknown parameters are refused rather than ignored: a misspelt filter (`levle=ERROR`) would
//! otherwise silently return everything.

use chrono::{DateTime, Duration, Utc};
use owl_index::{LogFilter, SortBy, SortOrder};
use owl_model::Level;
use serde_json::json;
use std::collections::BTreeSet;

use crate::authz::scope::Scope;
use crate::envelope::Failure;
use crate::validate::Validator;

/// The query string as name/value pairs, in order, repeated names kept.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawQuery(pub Vec<(String, String)>);

impl RawQuery {
    /// The pairs of a query string.
    pub(crate) fn parse(query: &str) -> RawQuery {
        RawQuery(
            form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }
}

/// The log API's default page size.
pub(crate) const DEFAULT_LIMIT: i64 = 50;
/// The log API's largest page size.
pub(crate) const MAX_LIMIT: i64 = 200;
/// The longest span of query, errors, slow requests and export.
pub(crate) const QUERY_MAX_DAYS: i64 = 7;
/// The longest span of stats (and alerts).
pub(crate) const STATS_MAX_DAYS: i64 = 30;
/// A query with no narrowing filter may span at most this many hours with a large page...
pub(crate) const BROAD_MAX_HOURS: i64 = 24;
/// ...where a large page is more than this many items.
pub(crate) const BROAD_MAX_LIMIT: i64 = 100;
/// The longest text filter accepted, in characters.
const MAX_TEXT_CHARS: usize = 512;

/// Parameters common to the paged the log API endpoints.
pub(crate) const COMMON: &[&str] = &[
    "startTime",
    "endTime",
    "service",
    "region",
    "sortBy",
    "sortOrder",
    "page",
    "limit",
];
/// The filters of `GET /query` (QueryLogDto), beyond [`COMMON`].
pub(crate) const QUERY_FILTERS: &[&str] = &[
    "level",
    "traceId",
    "requestId",
    "userId",
    "url",
    "keyword",
    "minDuration",
    "maxDuration",
    "statusCode",
    "hasError",
];

/// The query string, checked against the names an endpoint accepts.
#[derive(Debug)]
pub(crate) struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Reads the pairs, reporting unknown names and repeated single-valued ones.
    pub(crate) fn new(raw: RawQuery, allowed: &[&str], lists: &[&str], v: &mut Validator) -> Params {
        let mut seen = BTreeSet::new();
        for (name, _) in &raw.0 {
            if !allowed.contains(&name.as_str()) {
                v.error(
                    name,
                    "unknown",
                    format!("不支持的参数 {name}；可用参数：{}", allowed.join(", ")),
                );
            } else if !seen.insert(name.clone()) && !lists.contains(&name.as_str()) {
                v.error(name, "duplicate", format!("参数 {name} 只能出现一次"));
            }
        }
        Params { pairs: raw.0 }
    }

    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A text value, trimmed; blank is absent.
    pub(crate) fn text(&self, v: &mut Validator, name: &str) -> Option<String> {
        let value = self.values(name).last()?.trim();
        if value.is_empty() {
            return None;
        }
        if value.chars().count() > MAX_TEXT_CHARS {
            v.error(name, "length", format!("{name} 最多 {MAX_TEXT_CHARS} 个字符"));
            return None;
        }
        Some(value.to_string())
    }

    /// A list: comma-separated and/or repeated, blanks dropped, duplicates removed.
    pub(crate) fn list(&self, v: &mut Validator, name: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for value in self.values(name) {
            for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if item.chars().count() > MAX_TEXT_CHARS {
                    v.error(
                        name,
                        "length",
                        format!("{name} 的每项最多 {MAX_TEXT_CHARS} 个字符"),
                    );
                } else if !out.iter().any(|o| o == item) {
                    out.push(item.to_string());
                }
            }
        }
        out
    }

    /// An integer within bounds.
    pub(crate) fn int(&self, v: &mut Validator, name: &str, min: i64, max: i64) -> Option<i64> {
        let text = self.text(v, name)?;
        match text.parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            Ok(_) => {
                v.error(name, "range", format!("{name} 需在 {min} 到 {max} 之间"));
                None
            }
            Err(_) => {
                v.error(name, "type", format!("{name} 需为整数"));
                None
            }
        }
    }

    /// A finite number within bounds.
    pub(crate) fn number(&self, v: &mut Validator, name: &str, min: f64, max: f64) -> Option<f64> {
        let text = self.text(v, name)?;
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() && n >= min && n <= max => Some(n),
            Ok(_) => {
                v.error(name, "range", format!("{name} 需在 {min} 到 {max} 之间"));
                None
            }
            Err(_) => {
                v.error(name, "type", format!("{name} 需为数字"));
                None
            }
        }
    }

    /// `true` or `false` (also `1`/`0`).
    pub(crate) fn boolean(&self, v: &mut Validator, name: &str) -> Option<bool> {
        let text = self.text(v, name)?;
        match text.to_ascii_lowercase().as_str() {
            "true" | "1" => Some(true),
            "false" | "0" => Some(false),
            _ => {
                v.error(name, "type", format!("{name} 只能是 true 或 false"));
                None
            }
        }
    }

    /// One of a set of values.
    pub(crate) fn choice(
        &self,
        v: &mut Validator,
        name: &str,
        allowed: &[&'static str],
    ) -> Option<&'static str> {
        let text = self.text(v, name)?;
        match allowed.iter().find(|a| **a == text) {
            Some(found) => Some(found),
            None => {
                v.error(name, "enum", format!("{name} 只能是 {}", allowed.join("、")));
                None
            }
        }
    }

    /// A time parameter.
    pub(crate) fn time(&self, v: &mut Validator, name: &str) -> Option<GivenTime> {
        let text = self.text(v, name)?;
        GivenTime::parse(v, name, &text)
    }
}

/// A time as given, with the precision it was written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GivenTime {
    /// The instant.
    pub at: DateTime<Utc>,
    /// The length of the unit it was written in (1 ms, 1 s, 1 day): an inclusive end covers it.
    pub unit: Duration,
}

impl GivenTime {
    /// Parses ISO 8601 (a time without a zone is UTC), reporting a bad value on `field`.
    pub(crate) fn parse(v: &mut Validator, field: &str, text: &str) -> Option<GivenTime> {
        let Some(at) = owl_model::parse_timestamp(text) else {
            v.error(
                field,
                "format",
                format!("{field} 需为 ISO 8601 时间，例如 2025-12-07T00:00:00.000Z"),
            );
            return None;
        };
        let text = text.trim();
        let unit = if text.len() <= 10 {
            Duration::days(1)
        } else if text.contains('.') {
            Duration::milliseconds(1)
        } else if text.len() <= 16 || text[11..].matches(':').count() < 2 {
            Duration::minutes(1)
        } else {
            Duration::seconds(1)
        };
        Some(GivenTime { at, unit })
    }
}

/// A resolved time range: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeRange {
    /// Inclusive start.
    pub start: DateTime<Utc>,
    /// Exclusive end.
    pub end: DateTime<Utc>,
}

impl TimeRange {
    /// The last millisecond inside the range, for display as an inclusive end.
    pub(crate) fn last(&self) -> DateTime<Utc> {
        (self.end - Duration::milliseconds(1)).max(self.start)
    }

    /// The log API's `period`.
    pub(crate) fn period(&self) -> serde_json::Value {
        json!({ "start": owl_model::format_timestamp(&self.start), "end": owl_model::format_timestamp(&self.last()) })
    }

    /// Its length in hours.
    pub(crate) fn hours(&self) -> f64 {
        (self.end - self.start).num_milliseconds() as f64 / 3_600_000.0
    }
}

/// Resolves `startTime`/`endTime` (see the module docs); `Ok(None)` when a field error was
/// reported, `Err` for a span over `max_days`.
pub(crate) fn resolve_range(
    v: &mut Validator,
    start: Option<GivenTime>,
    end: Option<GivenTime>,
    now: DateTime<Utc>,
    default_span: Duration,
    max_days: i64,
) -> Result<TimeRange, Failure> {
    let max_span = Duration::days(max_days);
    let range = match (start, end) {
        (None, None) => TimeRange {
            start: now - default_span,
            end: now,
        },
        (None, Some(end)) => {
            let end = end.at + end.unit;
            TimeRange {
                start: end - default_span,
                end,
            }
        }
        (Some(start), None) => {
            let end = (start.at + max_span).min(now.max(start.at));
            TimeRange { start: start.at, end }
        }
        (Some(start), Some(end)) => {
            if end.at < start.at {
                v.error("endTime", "range", "endTime 不能早于 startTime");
                return Ok(TimeRange {
                    start: start.at,
                    end: start.at,
                });
            }
            let span = end.at - start.at;
            if span > max_span {
                let requested_days = (span.num_milliseconds() as f64 / 86_400_000.0 * 100.0).round() / 100.0;
                return Err(Failure::invalid_field(
                    "endTime",
                    "max_span",
                    format!("时间范围过大（最大 {max_days} 天），请求的跨度为 {requested_days} 天"),
                )
                .with_code("LOG_QUERY_TIME_RANGE_TOO_LARGE")
                .with_details(json!({ "maxDays": max_days, "requestedDays": requested_days })));
            }
            TimeRange {
                start: start.at,
                end: end.at + end.unit,
            }
        }
    };
    Ok(range)
}

/// The level names of the log API (`WARNING` accepted for `WARN`).
pub(crate) fn levels(v: &mut Validator, field: &str, names: &[String]) -> Vec<Level> {
    let mut out = Vec::new();
    for name in names {
        match owl_logconfig::parse_level(name) {
            Some(level) if !out.contains(&level) => out.push(level),
            Some(_) => {}
            None => v.error(
                field,
                "enum",
                format!("{field} 只能是 ERROR、WARN、INFO、DEBUG，收到 {name}"),
            ),
        }
    }
    out
}

/// The log API's `sortBy` and `sortOrder`.
pub(crate) fn sort(params: &Params, v: &mut Validator) -> (SortBy, SortOrder) {
    let by = match params.choice(v, "sortBy", &["@timestamp", "level", "duration", "service"]) {
        Some("level") => SortBy::Level,
        Some("duration") => SortBy::Duration,
        Some("service") => SortBy::Service,
        _ => SortBy::Timestamp,
    };
    let order = match params.choice(v, "sortOrder", &["asc", "desc"]) {
        Some("asc") => SortOrder::Asc,
        _ => SortOrder::Desc,
    };
    (by, order)
}

/// The log API's `page` and `limit`, with the index's deepest page.
pub(crate) fn page(params: &Params, v: &mut Validator) -> (usize, usize) {
    let page = params.int(v, "page", 1, 1_000_000).unwrap_or(1);
    let limit = params.int(v, "limit", 1, MAX_LIMIT).unwrap_or(DEFAULT_LIMIT);
    let depth = page.saturating_mul(limit);
    if depth > owl_index::MAX_SEARCH_DEPTH as i64 {
        v.error(
            "page",
            "range",
            format!(
                "page × limit 最大为 {}，请缩小时间范围或添加过滤条件",
                owl_index::MAX_SEARCH_DEPTH
            ),
        );
    }
    (page as usize, limit as usize)
}

/// The filters an endpoint reads: `service` and `region` always, then the named optional ones.
/// Returns the filter (without time range and scope) and whether any narrowing filter was given.
pub(crate) fn filters(params: &Params, v: &mut Validator, names: &[&str]) -> (LogFilter, Vec<String>, bool) {
    let mut filter = LogFilter {
        services: params.list(v, "service"),
        ..LogFilter::default()
    };
    let regions = params.list(v, "region");
    for (i, region) in regions.iter().enumerate() {
        if region.len() > 16
            || !region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            v.error(
                &format!("region[{i}]"),
                "format",
                "区域代码只能包含字母和数字，例如 CN、US、UAE",
            );
        }
    }
    let wants = |name: &str| names.contains(&name);
    if wants("level") {
        let names = params.list(v, "level");
        filter.levels = levels(v, "level", &names);
    }
    let text = |v: &mut Validator, name: &str| if wants(name) { params.text(v, name) } else { None };
    filter.trace_id = text(v, "traceId");
    filter.request_id = text(v, "requestId");
    filter.user_id = text(v, "userId");
    filter.url = text(v, "url");
    filter.keyword = text(v, "keyword");
    filter.error_type = text(v, "errorType");
    filter.error_code = text(v, "errorCode");
    if wants("minDuration") {
        filter.min_duration_ms = params.number(v, "minDuration", 0.0, 86_400_000.0);
    }
    if wants("maxDuration") {
        filter.max_duration_ms = params.number(v, "maxDuration", 0.0, 86_400_000.0);
    }
    if let (Some(min), Some(max)) = (filter.min_duration_ms, filter.max_duration_ms) {
        v.check(
            min <= max,
            "maxDuration",
            "range",
            "maxDuration 不能小于 minDuration",
        );
    }
    if wants("statusCode") {
        filter.status_code = params.int(v, "statusCode", 100, 599).map(|s| s as u16);
    }
    if wants("hasError") {
        filter.has_error = params.boolean(v, "hasError");
    }
    let others = !filter.services.is_empty()
        || !regions.is_empty()
        || !filter.levels.is_empty()
        || filter.trace_id.is_some()
        || filter.request_id.is_some()
        || filter.user_id.is_some()
        || filter.url.is_some()
        || filter.error_type.is_some()
        || filter.error_code.is_some()
        || filter.min_duration_ms.is_some()
        || filter.max_duration_ms.is_some()
        || filter.status_code.is_some()
        || filter.has_error.is_some();
    let keyword = filter.keyword.as_deref();
    if keyword.is_some_and(|k| !keyword_narrows(k)) && !others {
        v.error(
            "keyword",
            "length",
            "keyword 至少需要 2 个字符，或同时指定 service、level 等过滤条件",
        );
    }
    let narrowed = others || keyword.is_some_and(keyword_narrows);
    (filter, regions, narrowed)
}

/// Whether a keyword narrows a search: two characters or more, or any non-Latin character (one
/// Chinese character is a word). A single Latin letter or digit matches nearly every record.
pub(crate) fn keyword_narrows(keyword: &str) -> bool {
    let keyword = keyword.trim();
    keyword.chars().count() >= 2 || !keyword.is_ascii()
}

/// `LOG_QUERY_TOO_BROAD`: no narrowing filter, a range over [`BROAD_MAX_HOURS`] and a page over
/// [`BROAD_MAX_LIMIT`] together.
pub(crate) fn check_broad(narrowed: bool, range: &TimeRange, limit: usize) -> Result<(), Failure> {
    if narrowed || range.hours() <= BROAD_MAX_HOURS as f64 || limit as i64 <= BROAD_MAX_LIMIT {
        return Ok(());
    }
    Err(Failure::invalid_field(
        "limit",
        "too_broad",
        format!(
            "查询范围过大，请添加过滤条件（level、service、traceId、keyword 等），或把时间范围缩小到 {BROAD_MAX_HOURS} 小时以内，或把 limit 减到 {BROAD_MAX_LIMIT} 以内"
        ),
    )
    .with_code("LOG_QUERY_TOO_BROAD")
    .with_details(json!({ "maxHoursWithoutFilter": BROAD_MAX_HOURS, "maxLimitWithoutFilter": BROAD_MAX_LIMIT })))
}

/// The spellings an environment name may be stored under, for the index's exact match.
fn environment_spellings(canonical: &str) -> Vec<String> {
    let aliases: &[&str] = match canonical {
        "development" => &["development", "dev", "develop"],
        "production" => &["production", "prod", "prd"],
        "staging" => &["staging", "stage", "stg"],
        "test" => &["test", "testing", "qa"],
        other => &[other][..],
    };
    let mut out: Vec<String> = Vec::new();
    for alias in aliases {
        let capitalised = alias
            .chars()
            .next()
            .map(|c| c.to_ascii_uppercase().to_string() + &alias[1..])
            .unwrap_or_default();
        for spelling in [alias.to_string(), alias.to_ascii_uppercase(), capitalised] {
            if !out.contains(&spelling) {
                out.push(spelling);
            }
        }
    }
    out
}

/// Applies the caller's scope: the regions are the intersection of the requested ones and the
/// allowed ones (the log API: a region-limited user never sees another region, whatever `region` says), the
/// environments those the role may read. Returns `false` when nothing can match (a CN user asking
/// for US): the caller answers an empty result without touching the index.
pub(crate) fn apply_scope(filter: &mut LogFilter, scope: &Scope, requested_regions: &[String]) -> bool {
    let requested = (!requested_regions.is_empty()).then_some(requested_regions);
    match scope.regions_for(requested) {
        None => filter.regions = Vec::new(),
        Some(regions) if regions.is_empty() => return false,
        Some(regions) => {
            let mut spellings = Vec::new();
            for region in regions {
                let lower = region.to_ascii_lowercase();
                spellings.push(region);
                spellings.push(lower);
            }
            filter.regions = spellings;
        }
    }
    match scope.environments_for(None) {
        None => filter.environments = Vec::new(),
        Some(environments) if environments.is_empty() => return false,
        Some(environments) => {
            filter.environments = environments
                .iter()
                .flat_map(|e| environment_spellings(e))
                .collect()
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keyword_narrows_from_two_characters_or_one_non_latin() {
        for narrow in ["ab", "登", "登录", " 42 "] {
            assert!(keyword_narrows(narrow), "{narrow:?}");
        }
        for broad in ["e", "7", " x ", ""] {
            assert!(!keyword_narrows(broad), "{broad:?}");
        }
        let mut v = Validator::new();
        let (_, _, narrowed) = filters(
            &Params::new(raw(&[("keyword", "e")]), &["keyword"], &[], &mut v),
            &mut v,
            &["keyword"],
        );
        assert!(!narrowed);
        assert!(v.finish().is_err(), "a one-letter keyword alone is refused");
        let mut v = Validator::new();
        let (_, _, narrowed) = filters(
            &Params::new(
                raw(&[("keyword", "e"), ("level", "ERROR")]),
                &["keyword", "level"],
                &["level"],
                &mut v,
            ),
            &mut v,
            &["keyword", "level"],
        );
        assert!(narrowed && v.finish().is_ok(), "with another filter it is fine");
    }

    fn raw(pairs: &[(&str, &str)]) -> RawQuery {
        RawQuery(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn at(text: &str) -> DateTime<Utc> {
        owl_model::parse_timestamp(text).unwrap()
    }

    fn given(text: &str) -> Option<GivenTime> {
        GivenTime::parse(&mut Validator::new(), "t", text)
    }

    #[test]
    fn end_times_are_inclusive_at_their_precision() {
        let now = at("2026-01-01T00:00:00Z");
        let hour = Duration::hours(1);
        let range = |s: &str, e: &str| {
            resolve_range(&mut Validator::new(), given(s), given(e), now, hour, 7).unwrap()
        };
        let day = range("2025-12-07T00:00:00.000Z", "2025-12-07T23:59:59.999Z");
        assert_eq!(day.end, at("2025-12-08T00:00:00Z"));
        assert_eq!(
            range("2025-01-01T00:00:00", "2025-01-01T23:59:59").end,
            at("2025-01-02T00:00:00Z")
        );
        assert_eq!(range("2025-01-01", "2025-01-01").end, at("2025-01-02T00:00:00Z"));
    }

    #[test]
    fn missing_bounds_default_to_the_last_hour_or_the_longest_span() {
        let now = at("2026-01-01T00:00:00Z");
        let hour = Duration::hours(1);
        let last_hour = resolve_range(&mut Validator::new(), None, None, now, hour, 7).unwrap();
        assert_eq!(
            (last_hour.start, last_hour.end),
            (at("2025-12-31T23:00:00Z"), now)
        );
        let from = resolve_range(
            &mut Validator::new(),
            given("2025-12-07T00:00:00Z"),
            None,
            now,
            hour,
            7,
        )
        .unwrap();
        assert_eq!(
            from.end,
            at("2025-12-14T00:00:00Z"),
            "startTime alone: up to the longest span"
        );
        let recent = resolve_range(
            &mut Validator::new(),
            given("2025-12-31T12:00:00Z"),
            None,
            now,
            hour,
            7,
        )
        .unwrap();
        assert_eq!(recent.end, now);
    }

    #[test]
    fn spans_over_the_limit_are_refused_with_their_code() {
        let now = at("2026-01-01T00:00:00Z");
        let hour = Duration::hours(1);
        let ok = resolve_range(
            &mut Validator::new(),
            given("2025-12-01T00:00:00Z"),
            given("2025-12-08T00:00:00Z"),
            now,
            hour,
            7,
        );
        assert!(ok.is_ok(), "exactly seven days is allowed");
        let too_large = resolve_range(
            &mut Validator::new(),
            given("2025-12-01T00:00:00Z"),
            given("2025-12-08T00:00:01Z"),
            now,
            hour,
            7,
        )
        .unwrap_err();
        assert_eq!(too_large.code(), "LOG_QUERY_TIME_RANGE_TOO_LARGE");
        let mut v = Validator::new();
        let _ = resolve_range(
            &mut v,
            given("2025-12-08T00:00:00Z"),
            given("2025-12-01T00:00:00Z"),
            now,
            hour,
            7,
        );
        assert_eq!(v.finish().unwrap_err().errors[0].field, "endTime");
    }

    #[test]
    fn unknown_and_repeated_parameters_are_reported() {
        let mut v = Validator::new();
        let params = Params::new(
            raw(&[
                ("levle", "ERROR"),
                ("page", "1"),
                ("page", "2"),
                ("level", "ERROR"),
            ]),
            &["page", "level"],
            &["level"],
            &mut v,
        );
        let errors = v.finish().unwrap_err().errors;
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["levle", "page"]);
        let mut v = Validator::new();
        assert_eq!(params.list(&mut v, "level"), ["ERROR"]);
    }

    #[test]
    fn broad_queries_need_all_three_conditions() {
        let now = at("2026-01-01T00:00:00Z");
        let day = TimeRange {
            start: now - Duration::hours(25),
            end: now,
        };
        assert_eq!(
            check_broad(false, &day, 200).unwrap_err().code(),
            "LOG_QUERY_TOO_BROAD"
        );
        assert!(check_broad(true, &day, 200).is_ok());
        assert!(check_broad(false, &day, 100).is_ok());
        assert!(
            check_broad(
                false,
                &TimeRange {
                    start: now - Duration::hours(24),
                    end: now
                },
                200
            )
            .is_ok()
        );
    }

    #[test]
    fn scope_forces_regions_and_environments() {
        let cn = Scope::new(&["CN".into()], &[]);
        let mut filter = LogFilter::default();
        assert!(apply_scope(&mut filter, &cn, &[]));
        assert_eq!(filter.regions, ["CN", "cn"]);
        assert!(
            !apply_scope(&mut filter, &cn, &["US".into()]),
            "a CN user asking for US sees nothing"
        );
        let developer = Scope::new(&[], &["development".into()]);
        let mut filter = LogFilter::default();
        assert!(apply_scope(&mut filter, &developer, &["US".into()]));
        assert_eq!(filter.regions, ["US", "us"]);
        assert!(filter.environments.contains(&"development".to_string()));
        assert!(filter.environments.contains(&"dev".to_string()));
        assert!(!filter.environments.contains(&"production".to_string()));
    }
}
