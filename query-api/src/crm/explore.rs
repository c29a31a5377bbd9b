//! 002's analytics: the overview and the query of declared metrics by declared dimensions.
//!
//! Every metric, dimension and filter a client may name is declared here (and listed by
//! `GET /api/analytics/metrics`); a name outside the declaration is a 400 naming the field. A query
//! runs one grouped, parameterised statement per table a metric reads, and merges the groups in Rust.
//!
//! | metric | rows | time | value | filters |
//! | --- | --- | --- | --- | --- |
//! | `user_count` | `crm_users` created in the range | `created_at` | count | `status` |
//! | `data_volume` | customers + orders + service records created in the range | `created_at` | count | none |
//! | `customer_count` | `customers` | `created_at` | count | `customer_type`, `source` |
//! | `order_count` | `orders` | `created_at` | count | `order_status` |
//! | `order_amount` | `orders` not cancelled, reporting currency | `created_at` | sum of `amount` | `order_status` |
//! | `revenue` | `orders` completed, reporting currency | `completed_at`, else `created_at` | sum of `amount` | none |
//! | `service_record_count` | `service_records` | `created_at` | count | `service_status`, `priority` |
//! | `organization_count` | `crm_organizations` | `created_at` | count | `status`, `org_type` |
//!
//! Dimensions: `org` (the row's `org_code`, with the organization's name from Owl's tree), and at
//! most one time dimension, `date` (UTC day), `week` (ISO week, by its Monday) or `month`. Filters:
//! `status` 0 or 1 (`is_active`), the others a text value. A filter applies to the requested metrics
//! that declare it and leaves the others unfiltered; a filter that applies to none of them is a 400.
//!
//! Results hold one row per combination of dimension values in which some metric is not zero
//! (without dimensions: exactly one row of totals), sorted by organization then time.
//! `summary.total` is the number of rows; `summary.aggregations` the sum of each metric over them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::dialect::CrmSql;
use super::figures::{push_scope, round2};
use super::period::{Buckets, Period, PeriodError, Window, parse_optional_date};
use super::{CrmStore, CrmStoreError, OrgScope};
use crate::http::validate::Validator;

/// The longest range a query or overview may cover, in days.
pub const MAX_RANGE_DAYS: i64 = 3660;
/// Most metrics in one query.
pub const MAX_METRICS: usize = 8;

/// A declared metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// CRM users created.
    UserCount,
    /// Business records created.
    DataVolume,
    /// Customers created.
    CustomerCount,
    /// Orders created.
    OrderCount,
    /// Amount of orders created (not cancelled, reporting currency).
    OrderAmount,
    /// Amount of orders completed (reporting currency).
    Revenue,
    /// Service records created.
    ServiceRecordCount,
    /// CRM organizations created.
    OrganizationCount,
}

/// A declared filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Filter {
    /// `is_active` of users and organizations: 0 or 1.
    Status,
    /// `customers.customer_type`.
    CustomerType,
    /// `customers.source`.
    Source,
    /// `orders.status`.
    OrderStatus,
    /// `service_records.status`.
    ServiceStatus,
    /// `service_records.priority`.
    Priority,
    /// `crm_organizations.org_type`.
    OrgType,
}

/// A declared dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dimension {
    /// The row's organization.
    Org,
    /// A time bucket.
    Time(Period),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aggregate {
    Count,
    SumAmount,
}

/// One table a metric reads.
#[derive(Debug, Clone, Copy)]
struct Source {
    table: &'static str,
    time: &'static str,
    aggregate: Aggregate,
    /// Fixed conditions (no client input).
    condition: &'static str,
    /// Whether only orders in the reporting currency count.
    currency: bool,
}

const fn count(table: &'static str) -> Source {
    Source {
        table,
        time: "created_at",
        aggregate: Aggregate::Count,
        condition: "",
        currency: false,
    }
}

impl Metric {
    /// Every metric, in the order of the documentation.
    pub const ALL: [Metric; 8] = [
        Metric::UserCount,
        Metric::DataVolume,
        Metric::CustomerCount,
        Metric::OrderCount,
        Metric::OrderAmount,
        Metric::Revenue,
        Metric::ServiceRecordCount,
        Metric::OrganizationCount,
    ];

    /// Its name in requests and results.
    pub fn name(self) -> &'static str {
        match self {
            Metric::UserCount => "user_count",
            Metric::DataVolume => "data_volume",
            Metric::CustomerCount => "customer_count",
            Metric::OrderCount => "order_count",
            Metric::OrderAmount => "order_amount",
            Metric::Revenue => "revenue",
            Metric::ServiceRecordCount => "service_record_count",
            Metric::OrganizationCount => "organization_count",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Metric::UserCount => "新增用户数",
            Metric::DataVolume => "数据量（客户、订单、服务记录）",
            Metric::CustomerCount => "新增客户数",
            Metric::OrderCount => "订单数",
            Metric::OrderAmount => "订单金额（不含已取消）",
            Metric::Revenue => "收入（已完成订单）",
            Metric::ServiceRecordCount => "服务记录数",
            Metric::OrganizationCount => "新增机构数",
        }
    }

    fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    fn is_amount(self) -> bool {
        matches!(self, Metric::OrderAmount | Metric::Revenue)
    }

    fn sources(self) -> &'static [Source] {
        const USERS: &[Source] = &[count("crm_users")];
        const DATA: &[Source] = &[count("customers"), count("orders"), count("service_records")];
        const CUSTOMERS: &[Source] = &[count("customers")];
        const ORDERS: &[Source] = &[count("orders")];
        const AMOUNT: &[Source] = &[Source {
            table: "orders",
            time: "created_at",
            aggregate: Aggregate::SumAmount,
            condition: " AND status <> 'cancelled'",
            currency: true,
        }];
        const REVENUE: &[Source] = &[Source {
            table: "orders",
            time: "COALESCE(completed_at, created_at)",
            aggregate: Aggregate::SumAmount,
            condition: " AND status = 'completed'",
            currency: true,
        }];
        const SERVICE: &[Source] = &[count("service_records")];
        const ORGS: &[Source] = &[count("crm_organizations")];
        match self {
            Metric::UserCount => USERS,
            Metric::DataVolume => DATA,
            Metric::CustomerCount => CUSTOMERS,
            Metric::OrderCount => ORDERS,
            Metric::OrderAmount => AMOUNT,
            Metric::Revenue => REVENUE,
            Metric::ServiceRecordCount => SERVICE,
            Metric::OrganizationCount => ORGS,
        }
    }

    fn filters(self) -> &'static [Filter] {
        match self {
            Metric::UserCount => &[Filter::Status],
            Metric::DataVolume | Metric::Revenue => &[],
            Metric::CustomerCount => &[Filter::CustomerType, Filter::Source],
            Metric::OrderCount | Metric::OrderAmount => &[Filter::OrderStatus],
            Metric::ServiceRecordCount => &[Filter::ServiceStatus, Filter::Priority],
            Metric::OrganizationCount => &[Filter::Status, Filter::OrgType],
        }
    }
}

impl Filter {
    /// Every filter.
    pub const ALL: [Filter; 7] = [
        Filter::Status,
        Filter::CustomerType,
        Filter::Source,
        Filter::OrderStatus,
        Filter::ServiceStatus,
        Filter::Priority,
        Filter::OrgType,
    ];

    /// Its key in `filters`.
    pub fn name(self) -> &'static str {
        match self {
            Filter::Status => "status",
            Filter::CustomerType => "customer_type",
            Filter::Source => "source",
            Filter::OrderStatus => "order_status",
            Filter::ServiceStatus => "service_status",
            Filter::Priority => "priority",
            Filter::OrgType => "org_type",
        }
    }

    fn parse(name: &str) -> Option<Filter> {
        Filter::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The column it restricts in `table` (every metric that declares the filter reads only tables
    /// listed here).
    fn column(self, table: &str) -> Option<&'static str> {
        match (self, table) {
            (Filter::Status, "crm_users" | "crm_organizations") => Some("is_active"),
            (Filter::CustomerType, "customers") => Some("customer_type"),
            (Filter::Source, "customers") => Some("source"),
            (Filter::OrderStatus, "orders") => Some("status"),
            (Filter::ServiceStatus, "service_records") => Some("status"),
            (Filter::Priority, "service_records") => Some("priority"),
            (Filter::OrgType, "crm_organizations") => Some("org_type"),
            _ => None,
        }
    }
}

impl Dimension {
    /// Its name in requests and results.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Org => "org",
            Dimension::Time(Period::Day) => "date",
            Dimension::Time(Period::Week) => "week",
            Dimension::Time(Period::Month) => "month",
        }
    }

    fn parse(name: &str) -> Option<Dimension> {
        match name {
            "org" => Some(Dimension::Org),
            "date" | "day" => Some(Dimension::Time(Period::Day)),
            "week" => Some(Dimension::Time(Period::Week)),
            "month" => Some(Dimension::Time(Period::Month)),
            _ => None,
        }
    }
}

/// The declaration, as `GET /api/analytics/metrics` lists it.
pub fn catalogue() -> Value {
    let metrics: Vec<Value> = Metric::ALL
        .iter()
        .map(|m| {
            json!({
                "name": m.name(),
                "label": m.label(),
                "type": if m.is_amount() { "amount" } else { "count" },
                "filters": m.filters().iter().map(|f| f.name()).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "metrics": metrics,
        "dimensions": [
            { "name": "org", "label": "机构", "columns": ["org_code", "org_name"] },
            { "name": "date", "label": "日（UTC）", "columns": ["date"] },
            { "name": "week", "label": "ISO 周（周一日期）", "columns": ["week"] },
            { "name": "month", "label": "月（UTC）", "columns": ["month"] },
        ],
        "filters": [
            { "name": "status", "type": "integer", "values": [0, 1] },
            { "name": "customer_type", "type": "string" },
            { "name": "source", "type": "string" },
            { "name": "order_status", "type": "string" },
            { "name": "service_status", "type": "string" },
            { "name": "priority", "type": "string" },
            { "name": "org_type", "type": "string" },
        ],
        "max_range_days": MAX_RANGE_DAYS,
    })
}

/// A filter's value.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum FilterValue {
    /// `status`.
    Integer(i64),
    /// The others.
    Text(String),
}

/// `POST /api/analytics/query` (and export) as sent.
#[derive(Debug, Clone, Default, Deserialize)]
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

    fn time_period(&self) -> Option<Period> {
        self.dimensions.iter().find_map(|d| match d {
            Dimension::Time(period) => Some(*period),
            Dimension::Org => None,
        })
    }

    fn by_org(&self) -> bool {
        self.dimensions.contains(&Dimension::Org)
    }
}

fn names_of(names: &[&str]) -> String {
    names.join(", ")
}

/// A group of the result: `(org_code or "", time bucket label or "")`.
type GroupKey = (String, String);

impl CrmStore {
    /// Runs a validated query in `scope` (already narrowed to the requested organizations).
    pub(crate) async fn run_query(
        &self,
        query: &AnalyticsQuery,
        scope: &OrgScope,
        org_names: &BTreeMap<String, String>,
        currency: &str,
    ) -> Result<Value, CrmStoreError> {
        let buckets = query.time_period().map(|period| {
            query
                .window
                .buckets(period)
                .expect("bucket count validated in AnalyticsQuery::parse")
        });
        let by_org = query.by_org();
        let mut groups: BTreeMap<GroupKey, Vec<f64>> = BTreeMap::new();
        for (m, metric) in query.metrics.iter().enumerate() {
            for source in metric.sources() {
                let rows = self
                    .grouped(
                        source,
                        metric.filters(),
                        query,
                        scope,
                        currency,
                        by_org,
                        buckets.is_some(),
                    )
                    .await?;
                for (org, day, value) in rows {
                    let time = match &buckets {
                        Some(buckets) => match buckets.label_of_day(day) {
                            Some(label) => label,
                            None => continue,
                        },
                        None => String::new(),
                    };
                    let values = groups
                        .entry((org, time))
                        .or_insert_with(|| vec![0.0; query.metrics.len()]);
                    values[m] += value;
                }
            }
        }
        if query.dimensions.is_empty() && groups.is_empty() {
            groups.insert((String::new(), String::new()), vec![0.0; query.metrics.len()]);
        }
        let mut results = Vec::with_capacity(groups.len());
        let mut sums = vec![0.0; query.metrics.len()];
        for ((org, time), values) in groups {
            if !query.dimensions.is_empty() && values.iter().all(|v| *v == 0.0) {
                continue;
            }
            let mut row = Map::new();
            for dimension in &query.dimensions {
                match dimension {
                    Dimension::Org => {
                        row.insert("org_code".into(), json!(org));
                        row.insert(
                            "org_name".into(),
                            json!(org_names.get(&org).cloned().unwrap_or_else(|| org.clone())),
                        );
                    }
                    time_dimension => {
                        row.insert(time_dimension.name().into(), json!(time));
                    }
                }
            }
            for (i, metric) in query.metrics.iter().enumerate() {
                sums[i] += values[i];
                row.insert(metric.name().into(), metric_value(*metric, values[i]));
            }
            results.push(Value::Object(row));
        }
        let aggregations: Map<String, Value> = query
            .metrics
            .iter()
            .zip(sums)
            .map(|(metric, sum)| (metric.name().to_string(), metric_value(*metric, sum)))
            .collect();
        Ok(json!({
            "results": results,
            "summary": { "total": results.len(), "aggregations": aggregations },
        }))
    }

    /// `(org_code, UTC day, value)` groups of one source.
    #[allow(clippy::too_many_arguments)]
    async fn grouped(
        &self,
        source: &Source,
        declared: &[Filter],
        query: &AnalyticsQuery,
        scope: &OrgScope,
        currency: &str,
        by_org: bool,
        by_day: bool,
    ) -> Result<Vec<(String, i64, f64)>, CrmStoreError> {
        let backend = self.backend();
        let org = if by_org { "org_code" } else { "''" };
        let day = if by_day {
            backend.epoch_day(source.time)
        } else {
            "0".to_string()
        };
        let value = match source.aggregate {
            Aggregate::Count => "COUNT(*)".to_string(),
            Aggregate::SumAmount => backend.sum_f64("amount"),
        };
        let mut sql = self.sql(&format!(
            "SELECT {org}, {day}, {value} FROM {} WHERE {} >= ",
            source.table, source.time
        ));
        sql.bind(query.window.start_ms())
            .push(&format!(" AND {} < ", source.time))
            .bind(query.window.end_ms());
        sql.push(source.condition);
        if source.currency {
            sql.push(" AND UPPER(currency_code) = ")
                .bind(currency.to_ascii_uppercase());
        }
        push_filters(&mut sql, source.table, declared, &query.filters);
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY 1, 2");
        match source.aggregate {
            Aggregate::Count => {
                let rows: Vec<(String, i64, i64)> = self.timed(sql.query_as().fetch_all(self.pool())).await?;
                Ok(rows.into_iter().map(|(o, d, n)| (o, d, n as f64)).collect())
            }
            Aggregate::SumAmount => self.timed(sql.query_as().fetch_all(self.pool())).await,
        }
    }

    /// 002's overview over a window, in `scope`.
    pub(crate) async fn overview(
        &self,
        window: &Window,
        scope: &OrgScope,
        org_names: &BTreeMap<String, String>,
        currency: &str,
    ) -> Result<Value, CrmStoreError> {
        let mut sql = self.sql(
            "SELECT COUNT(*), COUNT(CASE WHEN is_active = 1 THEN 1 END) FROM crm_users WHERE created_at < ",
        );
        sql.bind(window.end_ms());
        push_scope(&mut sql, scope, "org_code");
        let (total_users, active_users): (i64, i64) =
            self.timed(sql.query_as().fetch_one(self.pool())).await?;

        let mut sql = self.sql("SELECT COUNT(*) FROM crm_organizations WHERE created_at < ");
        sql.bind(window.end_ms());
        push_scope(&mut sql, scope, "org_code");
        let total_organizations: i64 = self.timed(sql.query_scalar().fetch_one(self.pool())).await?;

        // Users existing at the end of the window, per organization.
        let mut sql = self.sql("SELECT org_code, COUNT(*) FROM crm_users WHERE created_at < ");
        sql.bind(window.end_ms());
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY org_code");
        let users_per_org: Vec<(String, i64)> = self.timed(sql.query_as().fetch_all(self.pool())).await?;

        let mut per_org: BTreeMap<String, (i64, i64)> =
            users_per_org.into_iter().map(|(o, n)| (o, (n, 0))).collect();
        let mut statistics = Vec::new();
        let mut data_points = 0;
        for (table, label) in [
            ("customers", "客户"),
            ("orders", "订单"),
            ("service_records", "服务记录"),
        ] {
            let mut sql = self.sql(&format!(
                "SELECT org_code, COUNT(*) FROM {table} WHERE created_at >= "
            ));
            sql.bind(window.start_ms())
                .push(" AND created_at < ")
                .bind(window.end_ms());
            push_scope(&mut sql, scope, "org_code");
            sql.push(" GROUP BY org_code");
            let rows: Vec<(String, i64)> = self.timed(sql.query_as().fetch_all(self.pool())).await?;
            let count: i64 = rows.iter().map(|r| r.1).sum();
            for (org, n) in rows {
                per_org.entry(org).or_default().1 += n;
            }
            data_points += count;
            statistics.push(json!({ "name": table, "label": label, "count": count }));
        }
        let revenue: f64 = self
            .revenue_per_day(scope, window, currency, false)
            .await?
            .iter()
            .map(|r| r.2)
            .sum();
        statistics.push(json!({ "name": "revenue", "label": "收入", "amount": round2(revenue), "currency_code": currency }));

        let period = overview_period(window);
        let buckets = window
            .buckets(period)
            .expect("overview ranges fit the bucket limit (MAX_RANGE_DAYS)");
        let user_trend = self.user_trend(window, &buckets, scope).await?;

        let mut org_distribution: Vec<(String, i64, i64)> =
            per_org.into_iter().map(|(o, (u, d))| (o, u, d)).collect();
        org_distribution.sort_by(|a, b| (b.2 + b.1).cmp(&(a.2 + a.1)).then_with(|| a.0.cmp(&b.0)));
        let org_distribution: Vec<Value> = org_distribution
            .into_iter()
            .map(|(code, users, data)| {
                let name = org_names.get(&code).cloned().unwrap_or_else(|| code.clone());
                json!({ "org_code": code, "org_name": name, "user_count": users, "data_volume": data })
            })
            .collect();

        Ok(json!({
            "total_users": total_users,
            "active_users": active_users,
            "total_organizations": total_organizations,
            "data_points": data_points,
            "charts": {
                "user_trend": user_trend,
                "org_distribution": org_distribution,
                "data_statistics": statistics,
            },
            "start_date": window.first.to_string(),
            "end_date": window.last.to_string(),
            "period": period.name(),
        }))
    }

    async fn user_trend(
        &self,
        window: &Window,
        buckets: &Buckets,
        scope: &OrgScope,
    ) -> Result<Vec<Value>, CrmStoreError> {
        let mut sql = self.sql("SELECT COUNT(*) FROM crm_users WHERE created_at < ");
        sql.bind(window.start_ms());
        push_scope(&mut sql, scope, "org_code");
        let mut cumulative: i64 = self.timed(sql.query_scalar().fetch_one(self.pool())).await?;
        let per_day = self
            .count_per_day("crm_users", "created_at", scope, window)
            .await?;
        let counts = buckets.sum(per_day);
        Ok(buckets
            .labels()
            .into_iter()
            .zip(counts)
            .map(|(date, count)| {
                cumulative += count;
                json!({ "date": date, "count": count, "cumulative": cumulative })
            })
            .collect())
    }
}

/// The bucket size of the overview's user trend: days up to 92 days, ISO weeks up to two years,
/// months beyond.
pub fn overview_period(window: &Window) -> Period {
    match window.days() {
        ..=92 => Period::Day,
        93..=731 => Period::Week,
        _ => Period::Month,
    }
}

fn metric_value(metric: Metric, value: f64) -> Value {
    if metric.is_amount() {
        json!(round2(value))
    } else {
        json!(value.round() as i64)
    }
}

fn push_filters(sql: &mut CrmSql, table: &str, declared: &[Filter], filters: &BTreeMap<Filter, FilterValue>) {
    for (filter, value) in filters {
        if !declared.contains(filter) {
            continue;
        }
        let Some(column) = filter.column(table) else {
            continue;
        };
        sql.push(" AND ").push(column).push(" = ");
        match value {
            FilterValue::Integer(i) => sql.bind(*i),
            FilterValue::Text(t) => sql.bind(t.clone()),
        };
    }
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

/// Renders query results as CSV: a header of `columns`, then one line per result. Cells that a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, carriage return first) are prefixed
/// with `'`.
pub fn to_csv(columns: &[&str], results: &[Value]) -> String {
    let mut out = crate::csv_out::header_line(columns);
    for row in results {
        let mut line = crate::csv_out::CsvLine::new();
        for column in columns {
            match row.get(*column) {
                Some(Value::String(text)) => line.text(text),
                Some(Value::Null) | None => line.text(""),
                Some(other) => line.number(other),
            };
        }
        out.push_str(&line.finish());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 6, 15).unwrap()
    }

    fn parse(body: Value) -> Result<AnalyticsQuery, Vec<String>> {
        let body: QueryBody = serde_json::from_value(body).unwrap();
        let mut v = Validator::new();
        match AnalyticsQuery::parse(&mut v, &body, today()) {
            Some(query) => Ok(query),
            None => Err(v
                .finish()
                .unwrap_err()
                .errors
                .into_iter()
                .map(|e| e.field)
                .collect()),
        }
    }

    #[test]
    fn the_seed_example_is_valid() {
        let query = parse(json!({
            "start_date": "2025-01-01",
            "end_date": "2025-12-31",
            "org_codes": ["050101", "050102"],
            "metrics": ["user_count", "data_volume"],
            "dimensions": ["org", "date"],
            "filters": { "status": 1 }
        }))
        .unwrap();
        assert_eq!(query.metrics, [Metric::UserCount, Metric::DataVolume]);
        assert_eq!(query.dimensions, [Dimension::Org, Dimension::Time(Period::Day)]);
        assert_eq!(
            query.columns(),
            ["org_code", "org_name", "date", "user_count", "data_volume"]
        );
        assert_eq!(query.window.days(), 365);
        assert_eq!(query.filters[&Filter::Status], FilterValue::Integer(1));
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let fields = parse(json!({
            "start_date": "2025-13-01",
            "metrics": ["user_count", "bogus", "user_count"],
            "dimensions": ["date", "month", "region"],
            "filters": { "status": 2, "color": "red", "priority": "high" },
            "org_codes": [""]
        }))
        .unwrap_err();
        assert_eq!(
            fields,
            [
                "start_date",
                "metrics[1]",
                "metrics[2]",
                "dimensions[1]",
                "dimensions[2]",
                "filters.status",
                "filters.color",
                "filters.priority",
                "org_codes[0]"
            ]
        );
        assert_eq!(parse(json!({})).unwrap_err(), ["metrics"]);
        assert_eq!(
            parse(json!({"metrics": ["revenue"], "start_date": "2025-02-01", "end_date": "2025-01-01"}))
                .unwrap_err(),
            ["start_date"]
        );
        assert_eq!(
            parse(json!({"metrics": ["revenue"], "dimensions": ["date"], "start_date": "2020-01-01", "end_date": "2025-01-01"})).unwrap_err(),
            ["dimensions"],
            "more than 1000 days by day"
        );
        assert!(parse(json!({"metrics": ["revenue"], "dimensions": ["month"], "start_date": "2020-01-01", "end_date": "2025-01-01"})).is_ok());
    }

    #[test]
    fn defaults_are_the_last_30_days_and_the_canonical_form_is_stable() {
        let a =
            parse(json!({"metrics": ["data_volume", "user_count"], "org_codes": ["B", "A", "B"]})).unwrap();
        assert_eq!(a.window.first.to_string(), "2025-05-17");
        assert_eq!(a.window.last.to_string(), "2025-06-15");
        let canonical = a.canonical();
        assert_eq!(canonical["org_codes"], json!(["A", "B"]));
        let b = parse(json!({"metrics": ["data_volume", "user_count"], "org_codes": ["A", "B"], "end_date": "2025-06-15"})).unwrap();
        assert_eq!(b.canonical(), canonical);
    }

    #[test]
    fn csv_escapes_and_defuses_formulas() {
        let rows = [
            json!({"org_code": "A", "org_name": "=HYPERLINK(\"x\")", "user_count": 3}),
            json!({"org_code": "B,1", "user_count": 0}),
        ];
        let csv = to_csv(&["org_code", "org_name", "user_count"], &rows);
        assert_eq!(
            csv,
            "org_code,org_name,user_count\r\nA,\"'=HYPERLINK(\"\"x\"\")\",3\r\n\"B,1\",,0\r\n"
        );
    }

    #[test]
    fn overview_buckets_grow_with_the_range() {
        let window = |days: u64| Window {
            first: today() - chrono::Days::new(days - 1),
            last: today(),
        };
        assert_eq!(overview_period(&window(30)), Period::Day);
        assert_eq!(overview_period(&window(365)), Period::Week);
        assert_eq!(overview_period(&window(3660)), Period::Month);
        assert!(window(3660).buckets(Period::Month).is_ok());
    }
}
