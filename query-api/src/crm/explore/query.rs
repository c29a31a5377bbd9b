//! A query as sent, validated into an [`AnalyticsQuery`], and the organizations it reads.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::catalogue::*;
use crate::crm::OrgScope;
use crate::crm::period::{Period, PeriodError, Window, parse_optional_date};
use crate::validate::Validator;

/// A filter's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FilterValue {
    /// `status`.
    Integer(i64),
    /// The others.
    Text(String),
}

/// `POST /api/analytics/query` (and export) as sent.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[schema(as = AnalyticsQueryBody)]
pub struct QueryBody {
    /// `YYYY-MM-DD`, default 29 days before the end.
    pub start_date: Option<String>,
    /// `YYYY-MM-DD`, default today (UTC).
    pub end_date: Option<String>,
    /// Organizations (each with its descendants) to restrict to.
    pub org_codes: Option<Vec<String>>,
    /// Metric names.
    pub metrics: Option<Vec<String>>,
    /// Dimension names.
    pub dimensions: Option<Vec<String>>,
    /// Filter values by name.
    pub filters: Option<Map<String, Value>>,
    /// Export only: `csv` (default) or `json`.
    pub format: Option<String>,
}

/// A validated query.
#[derive(Debug, Clone)]
pub struct AnalyticsQuery {
    /// The range of UTC days.
    pub window: Window,
    /// Organizations asked for (validated against the caller's scope by the HTTP layer).
    pub org_codes: Vec<String>,
    /// Metrics, in request order.
    pub metrics: Vec<Metric>,
    /// Dimensions, in request order.
    pub dimensions: Vec<Dimension>,
    /// Filters.
    pub filters: BTreeMap<Filter, FilterValue>,
}

/// Adds a period error to a validator.
pub(crate) fn report(v: &mut Validator, error: PeriodError) {
    v.error(error.field(), "format", error.to_string());
}

/// The range of `start_date`/`end_date` (default: the 30 days ending today), at most
/// [`MAX_RANGE_DAYS`].
pub(crate) fn range(
    v: &mut Validator,
    start: Option<&str>,
    end: Option<&str>,
    today: NaiveDate,
) -> Option<Window> {
    let start = parse_optional_date("start_date", start)
        .map_err(|e| report(v, e))
        .ok()?;
    let end = parse_optional_date("end_date", end)
        .map_err(|e| report(v, e))
        .ok()?;
    let window = Window::from_params(start, end, Period::Day.default_window(today))
        .map_err(|e| report(v, e))
        .ok()?;
    if window.days() > MAX_RANGE_DAYS {
        v.error(
            "end_date",
            "range",
            format!("时间范围最多 {MAX_RANGE_DAYS} 天，请求了 {} 天", window.days()),
        );
        return None;
    }
    Some(window)
}

impl AnalyticsQuery {
    /// Validates a body, reporting every problem at once into `v`.
    pub fn parse(v: &mut Validator, body: &QueryBody, today: NaiveDate) -> Option<AnalyticsQuery> {
        let window = range(v, body.start_date.as_deref(), body.end_date.as_deref(), today);

        let mut metrics = Vec::new();
        match body.metrics.as_deref() {
            None | Some([]) => v.error(
                "metrics",
                "required",
                "metrics 不能为空，例如 [\"user_count\", \"data_volume\"]",
            ),
            Some(names) => {
                if names.len() > MAX_METRICS {
                    v.error("metrics", "length", format!("metrics 最多 {MAX_METRICS} 个"));
                }
                for (i, name) in names.iter().enumerate() {
                    match Metric::parse(name.trim()) {
                        Some(metric) if metrics.contains(&metric) => {
                            v.error(&format!("metrics[{i}]"), "unique", format!("指标 {name} 重复"));
                        }
                        Some(metric) => metrics.push(metric),
                        None => v.error(
                            &format!("metrics[{i}]"),
                            "enum",
                            format!(
                                "未知指标 {name:?}，可选：{}",
                                names_of(&Metric::ALL.map(Metric::name))
                            ),
                        ),
                    }
                }
            }
        }

        let mut dimensions = Vec::new();
        for (i, name) in body.dimensions.as_deref().unwrap_or_default().iter().enumerate() {
            match Dimension::parse(name.trim()) {
                Some(dimension) if dimensions.contains(&dimension) => {
                    v.error(&format!("dimensions[{i}]"), "unique", format!("维度 {name} 重复"));
                }
                Some(Dimension::Time(_)) if dimensions.iter().any(|d| matches!(d, Dimension::Time(_))) => {
                    v.error(
                        &format!("dimensions[{i}]"),
                        "exclusive",
                        "date、week、month 只能选择一个",
                    );
                }
                Some(dimension) => dimensions.push(dimension),
                None => v.error(
                    &format!("dimensions[{i}]"),
                    "enum",
                    format!("未知维度 {name:?}，可选：org, date, week, month"),
                ),
            }
        }
        if let (Some(window), Some(Dimension::Time(period))) = (
            window,
            dimensions.iter().find(|d| matches!(d, Dimension::Time(_))),
        ) {
            if let Err(error) = window.buckets(*period) {
                v.error("dimensions", "range", error.to_string());
            }
        }

        let mut filters = BTreeMap::new();
        for (key, value) in body.filters.iter().flatten() {
            let field = format!("filters.{key}");
            let Some(filter) = Filter::parse(key) else {
                v.error(
                    &field,
                    "enum",
                    format!(
                        "未知过滤条件 {key:?}，可选：{}",
                        names_of(&Filter::ALL.map(Filter::name))
                    ),
                );
                continue;
            };
            let parsed = match (filter, value) {
                (Filter::Status, Value::Number(n)) => n
                    .as_i64()
                    .filter(|s| matches!(s, 0 | 1))
                    .map(FilterValue::Integer),
                (Filter::Status, _) => None,
                (_, Value::String(text)) if !text.trim().is_empty() && text.chars().count() <= 64 => {
                    Some(FilterValue::Text(text.trim().to_string()))
                }
                _ => None,
            };
            let Some(parsed) = parsed else {
                let expected = if filter == Filter::Status {
                    "0 或 1"
                } else {
                    "1 到 64 个字符的文本"
                };
                v.error(&field, "type", format!("{field} 必须是 {expected}"));
                continue;
            };
            if !metrics.is_empty() && !metrics.iter().any(|m| m.filters().contains(&filter)) {
                v.error(
                    &field,
                    "applicable",
                    format!("过滤条件 {key} 不适用于所请求的任何指标"),
                );
            }
            filters.insert(filter, parsed);
        }

        let mut org_codes: Vec<String> = Vec::new();
        for (i, code) in body.org_codes.as_deref().unwrap_or_default().iter().enumerate() {
            let code = code.trim();
            if code.is_empty() || code.chars().count() > 64 {
                v.error(
                    &format!("org_codes[{i}]"),
                    "format",
                    "机构编码不能为空且最多 64 个字符",
                );
            } else if !org_codes.iter().any(|c| c == code) {
                org_codes.push(code.to_string());
            }
        }
        org_codes.sort();

        let window = window?;
        v.is_ok().then_some(AnalyticsQuery {
            window,
            org_codes,
            metrics,
            dimensions,
            filters,
        })
    }

    /// The normalised query (cache keys): defaults applied, names canonical.
    pub fn canonical(&self) -> Value {
        let filters: Map<String, Value> = self
            .filters
            .iter()
            .map(|(f, v)| {
                let value = match v {
                    FilterValue::Integer(i) => json!(i),
                    FilterValue::Text(t) => json!(t),
                };
                (f.name().to_string(), value)
            })
            .collect();
        json!({
            "start_date": self.window.first.to_string(),
            "end_date": self.window.last.to_string(),
            "org_codes": self.org_codes,
            "metrics": self.metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
            "dimensions": self.dimensions.iter().map(|d| d.name()).collect::<Vec<_>>(),
            "filters": filters,
        })
    }

    /// The result columns: dimension columns, then metrics.
    pub fn columns(&self) -> Vec<&'static str> {
        let mut columns = Vec::new();
        for dimension in &self.dimensions {
            match dimension {
                Dimension::Org => columns.extend(["org_code", "org_name"]),
                time => columns.push(time.name()),
            }
        }
        columns.extend(self.metrics.iter().map(|m| m.name()));
        columns
    }

    pub(super) fn time_period(&self) -> Option<Period> {
        self.dimensions.iter().find_map(|d| match d {
            Dimension::Time(period) => Some(*period),
            Dimension::Org => None,
        })
    }

    pub(super) fn by_org(&self) -> bool {
        self.dimensions.contains(&Dimension::Org)
    }
}

pub(super) fn names_of(names: &[&str]) -> String {
    names.join(", ")
}

/// The organizations a query reads: the caller's scope narrowed to the requested organizations and
/// their descendants. Codes that do not exist or lie outside the scope are reported into `v`.
pub(crate) fn narrow_scope(
    v: &mut Validator,
    field: &str,
    requested: &[String],
    scope: &OrgScope,
    tree: &[crate::db::Organization],
) -> OrgScope {
    if requested.is_empty() {
        return scope.clone();
    }
    let mut narrowed = BTreeSet::new();
    for (i, code) in requested.iter().enumerate() {
        let exists = tree.iter().any(|o| &o.org_code == code);
        let visible = scope.as_ref().is_none_or(|codes| codes.contains(code));
        if !exists || !visible {
            let field = if requested.len() == 1 && field == "org_code" {
                field.to_string()
            } else {
                format!("{field}[{i}]")
            };
            v.error(
                &field,
                "exists",
                format!("机构 {code} 不存在或不在您的数据范围内"),
            );
            continue;
        }
        let subtree = crate::db::subtree(tree, code);
        narrowed.extend(
            subtree
                .into_iter()
                .filter(|c| scope.as_ref().is_none_or(|codes| codes.contains(c))),
        );
    }
    Some(narrowed)
}
