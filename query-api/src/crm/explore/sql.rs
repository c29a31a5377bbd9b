//! The statements: one grouped, parameterised statement per table a metric reads, and the
//! overview's figures.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::catalogue::*;
use super::merge::Merged;
use super::query::*;
use crate::crm::figures::{push_scope, round2};
use crate::crm::period::{Buckets, Period, Window};
use crate::crm::{CrmStore, CrmStoreError, OrgScope};
use owl_sql::Sql;

impl CrmStore {
    /// Runs a validated query in `scope` (already narrowed to the requested organizations).
    pub(crate) async fn run_query(
        &self,
        query: &AnalyticsQuery,
        scope: &OrgScope,
        org_names: &BTreeMap<String, String>,
        currency: &str,
    ) -> Result<Value, CrmStoreError> {
        let mut merged = Merged::new(query);
        for (m, metric) in query.metrics.iter().enumerate() {
            for source in metric.sources() {
                let rows = self
                    .grouped(
                        source,
                        metric.filters(),
                        query,
                        scope,
                        currency,
                        merged.by_org(),
                        merged.by_day(),
                    )
                    .await?;
                merged.add(m, rows);
            }
        }
        Ok(merged.finish(org_names))
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

    /// The admin API's overview over a window, in `scope`.
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

pub(super) fn push_filters(
    sql: &mut Sql,
    table: &str,
    declared: &[Filter],
    filters: &BTreeMap<Filter, FilterValue>,
) {
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
