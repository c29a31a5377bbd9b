//! The figures of the CRM analytics API's analytics endpoints, each defined here and in `README.md`:
//!
//! | endpoint | figure | definition |
//! | --- | --- | --- |
//! | `customers/summary` | `total` | customers in scope |
//! | | `by_type`, `by_source` | customers per `customer_type` / `source`; the documented values always appear (0 when none), others as found |
//! | | `active_count` | customers with an order or a service record created in the last [`ACTIVE_DAYS`] days (rolling, up to now) |
//! | `customers/trend` | `count` | customers created in the bucket (UTC) |
//! | | `cumulative` | customers created before the end of the bucket, including those before the window |
//! | `orders/summary` | `total`, `by_status` | orders created in `[start_date, end_date]` (UTC days, both optional) |
//! | | `total_amount` | sum of `amount` of those orders that are not `cancelled`, in the reporting currency |
//! | `orders/revenue` | `revenue` | sum of `amount` of `completed` orders in the reporting currency, by completion time (`completed_at`, else `created_at`) |
//! | `service-records/statistics` | `total`, `by_status`, `by_priority` | service records in scope |
//! | `users/activity` | `active_users` / `inactive_users` | CRM users with `is_active` 1 / 0 |
//! | | `recent_login_count` | CRM users (active or not) whose `last_login_at` is in the last [`RECENT_LOGIN_DAYS`] days |
//! | `organizations/summary` | `total`, `by_type`, `active_count` | CRM organizations in scope; active: `is_active` 1 |
//!
//! Amounts in another currency than the reporting one (`query_api.crm_currency_code`) are never
//! added to it: they are reported apart in `other_currencies` when there are any.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use super::period::{Buckets, Period, Window};
use super::{CrmStore, CrmStoreError, OrgScope};
use owl_sql::{DAY_MS, Sql};

/// Days of activity that make a customer active.
pub const ACTIVE_DAYS: i64 = 30;
/// Days within which a sign-in counts as recent.
pub const RECENT_LOGIN_DAYS: i64 = 30;

/// The documented values of each categorical column, in the order the CRM analytics API shows them.
pub const CUSTOMER_TYPES: &[&str] = &["individual", "organization"];
/// Customer sources.
pub const CUSTOMER_SOURCES: &[&str] = &["own", "agent"];
/// Order statuses.
pub const ORDER_STATUSES: &[&str] = &["submitted", "approved", "processing", "completed", "cancelled"];
/// Service record statuses.
pub const SERVICE_STATUSES: &[&str] = &["pending", "in_progress", "completed", "cancelled"];
/// Service record priorities.
pub const SERVICE_PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
/// CRM organization types.
pub const ORG_TYPES: &[&str] = &["internal", "vendor", "agent"];

/// The label of a missing category value.
const UNKNOWN: &str = "unknown";

/// Appends ` AND <column> IN (...)` for a restricted scope.
pub(crate) fn push_scope(sql: &mut Sql, scope: &OrgScope, column: &str) {
    if let Some(codes) = scope {
        sql.push(" AND ")
            .push(column)
            .push(" IN ")
            .bind_list(codes.iter().cloned());
    }
}

/// Counts per category: the documented values first (0 when absent), then others sorted.
pub(crate) fn tally(
    known: &[&str],
    rows: impl IntoIterator<Item = (Option<String>, i64)>,
) -> Map<String, Value> {
    let mut counts: BTreeMap<String, i64> = BTreeMap::new();
    for (key, count) in rows {
        let key = key
            .filter(|k| !k.is_empty())
            .unwrap_or_else(|| UNKNOWN.to_string());
        *counts.entry(key).or_default() += count;
    }
    let mut map = Map::new();
    for key in known {
        map.insert((*key).to_string(), Value::from(counts.remove(*key).unwrap_or(0)));
    }
    for (key, count) in counts {
        map.insert(key, Value::from(count));
    }
    map
}

/// Rounds money to cents.
pub(crate) fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// `customers/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CustomersSummary {
    /// Customers.
    pub total: i64,
    /// Per type.
    pub by_type: Map<String, Value>,
    /// Per source.
    pub by_source: Map<String, Value>,
    /// Customers with recent activity.
    pub active_count: i64,
}

/// One point of `customers/trend`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendPoint {
    /// Bucket label.
    pub date: String,
    /// Created in the bucket.
    pub count: i64,
    /// Created up to the end of the bucket.
    pub cumulative: i64,
}

/// `customers/trend`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    /// `day`, `week` or `month`.
    pub period: Period,
    /// Points, oldest first, one per bucket of the window.
    pub data_points: Vec<TrendPoint>,
}

/// `orders/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrdersSummary {
    /// Orders.
    pub total: i64,
    /// Per status.
    pub by_status: Map<String, Value>,
    /// Amount of the orders that are not cancelled, in `currency_code`.
    pub total_amount: f64,
    /// The reporting currency.
    pub currency_code: String,
    /// Amounts of orders in other currencies, by currency; absent when there are none.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub other_currencies: BTreeMap<String, f64>,
}

/// One point of `orders/revenue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevenuePoint {
    /// Bucket label.
    pub date: String,
    /// Revenue recognised in the bucket.
    pub revenue: f64,
}

/// `orders/revenue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Revenue {
    /// `day`, `week` or `month`.
    pub period: Period,
    /// Revenue of the whole window.
    pub total_revenue: f64,
    /// The reporting currency.
    pub currency_code: String,
    /// Points, oldest first, one per bucket of the window.
    pub data_points: Vec<RevenuePoint>,
}

/// `service-records/statistics`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceStatistics {
    /// Service records.
    pub total: i64,
    /// Per status.
    pub by_status: Map<String, Value>,
    /// Per priority.
    pub by_priority: Map<String, Value>,
}

/// `users/activity`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UserActivity {
    /// CRM users.
    pub total_users: i64,
    /// Active ones.
    pub active_users: i64,
    /// Inactive ones.
    pub inactive_users: i64,
    /// Signed in recently.
    pub recent_login_count: i64,
}

/// `organizations/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrganizationsSummary {
    /// CRM organizations.
    pub total: i64,
    /// Per type.
    pub by_type: Map<String, Value>,
    /// Active ones.
    pub active_count: i64,
}

impl CrmStore {
    /// `customers/summary` at `now_ms`.
    pub(crate) async fn customers_summary(
        &self,
        scope: &OrgScope,
        now_ms: i64,
    ) -> Result<CustomersSummary, CrmStoreError> {
        let mut sql = self.sql("SELECT customer_type, source, COUNT(*) FROM customers WHERE 1 = 1");
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY customer_type, source");
        let rows: Vec<(Option<String>, Option<String>, i64)> =
            self.timed(sql.query_as().fetch_all(self.pool())).await?;
        let total = rows.iter().map(|r| r.2).sum();
        let by_type = tally(CUSTOMER_TYPES, rows.iter().map(|r| (r.0.clone(), r.2)));
        let by_source = tally(CUSTOMER_SOURCES, rows.iter().map(|r| (r.1.clone(), r.2)));

        let since = now_ms - ACTIVE_DAYS * DAY_MS;
        let mut sql = self.sql("SELECT COUNT(*) FROM customers c WHERE 1 = 1");
        push_scope(&mut sql, scope, "c.org_code");
        sql.push(" AND (EXISTS (SELECT 1 FROM orders o WHERE o.customer_id = c.id AND o.created_at >= ")
            .bind(since);
        sql.push(
            ") OR EXISTS (SELECT 1 FROM service_records s WHERE s.customer_id = c.id AND s.created_at >= ",
        )
        .bind(since);
        sql.push("))");
        let active_count: i64 = self.timed(sql.query_scalar().fetch_one(self.pool())).await?;
        Ok(CustomersSummary {
            total,
            by_type,
            by_source,
            active_count,
        })
    }

    /// `customers/trend` over a window.
    pub(crate) async fn customers_trend(
        &self,
        scope: &OrgScope,
        window: &Window,
        buckets: &Buckets,
    ) -> Result<Trend, CrmStoreError> {
        let mut sql = self.sql("SELECT COUNT(*) FROM customers WHERE created_at < ");
        sql.bind(window.start_ms());
        push_scope(&mut sql, scope, "org_code");
        let before: i64 = self.timed(sql.query_scalar().fetch_one(self.pool())).await?;
        let per_day = self
            .count_per_day("customers", "created_at", scope, window)
            .await?;
        let counts = buckets.sum(per_day);
        let mut cumulative = before;
        let data_points = buckets
            .labels()
            .into_iter()
            .zip(counts)
            .map(|(date, count)| {
                cumulative += count;
                TrendPoint {
                    date,
                    count,
                    cumulative,
                }
            })
            .collect();
        Ok(Trend {
            period: buckets.period(),
            data_points,
        })
    }

    /// `(UTC day number, rows)` of a table whose `time_column` falls in the window.
    pub(crate) async fn count_per_day(
        &self,
        table: &str,
        time_column: &str,
        scope: &OrgScope,
        window: &Window,
    ) -> Result<Vec<(i64, i64)>, CrmStoreError> {
        let day = self.backend().epoch_day(time_column);
        let mut sql = self.sql(&format!(
            "SELECT {day}, COUNT(*) FROM {table} WHERE {time_column} >= "
        ));
        sql.bind(window.start_ms())
            .push(&format!(" AND {time_column} < "))
            .bind(window.end_ms());
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY 1");
        self.timed(sql.query_as().fetch_all(self.pool())).await
    }

    /// `orders/summary` of orders created in `[start_ms, end_ms)` (either bound optional).
    pub(crate) async fn orders_summary(
        &self,
        scope: &OrgScope,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        currency: &str,
    ) -> Result<OrdersSummary, CrmStoreError> {
        let amount = self
            .backend()
            .sum_f64("CASE WHEN status <> 'cancelled' THEN amount END");
        let mut sql = self.sql(&format!(
            "SELECT status, currency_code, COUNT(*), {amount} FROM orders WHERE 1 = 1"
        ));
        if let Some(start) = start_ms {
            sql.push(" AND created_at >= ").bind(start);
        }
        if let Some(end) = end_ms {
            sql.push(" AND created_at < ").bind(end);
        }
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY status, currency_code");
        let rows: Vec<(Option<String>, Option<String>, i64, f64)> =
            self.timed(sql.query_as().fetch_all(self.pool())).await?;
        let total = rows.iter().map(|r| r.2).sum();
        let by_status = tally(ORDER_STATUSES, rows.iter().map(|r| (r.0.clone(), r.2)));
        let mut total_amount = 0.0;
        let mut other_currencies: BTreeMap<String, f64> = BTreeMap::new();
        for (_, code, _, sum) in &rows {
            let code = code.as_deref().unwrap_or(UNKNOWN).to_ascii_uppercase();
            if code.eq_ignore_ascii_case(currency) {
                total_amount += sum;
            } else if *sum != 0.0 {
                *other_currencies.entry(code).or_default() += sum;
            }
        }
        other_currencies.values_mut().for_each(|v| *v = round2(*v));
        Ok(OrdersSummary {
            total,
            by_status,
            total_amount: round2(total_amount),
            currency_code: currency.to_string(),
            other_currencies,
        })
    }

    /// `orders/revenue` over a window.
    pub(crate) async fn orders_revenue(
        &self,
        scope: &OrgScope,
        window: &Window,
        buckets: &Buckets,
        currency: &str,
    ) -> Result<Revenue, CrmStoreError> {
        let per_day = self.revenue_per_day(scope, window, currency, false).await?;
        let sums = buckets.sum(per_day.into_iter().map(|(day, _, revenue)| (day, revenue)));
        let data_points: Vec<RevenuePoint> = buckets
            .labels()
            .into_iter()
            .zip(sums)
            .map(|(date, revenue)| RevenuePoint {
                date,
                revenue: round2(revenue),
            })
            .collect();
        let total_revenue = round2(data_points.iter().map(|p| p.revenue).sum());
        Ok(Revenue {
            period: buckets.period(),
            total_revenue,
            currency_code: currency.to_string(),
            data_points,
        })
    }

    /// `(UTC day, org_code, revenue)` of completed orders in the reporting currency whose
    /// completion falls in the window, optionally grouped by organization too.
    pub(crate) async fn revenue_per_day(
        &self,
        scope: &OrgScope,
        window: &Window,
        currency: &str,
        by_org: bool,
    ) -> Result<Vec<(i64, String, f64)>, CrmStoreError> {
        const RECOGNISED: &str = "COALESCE(completed_at, created_at)";
        let day = self.backend().epoch_day(RECOGNISED);
        let amount = self.backend().sum_f64("amount");
        let org = if by_org { "org_code" } else { "''" };
        let mut sql = self.sql(&format!(
            "SELECT {day}, {org}, {amount} FROM orders WHERE status = 'completed' AND UPPER(currency_code) = "
        ));
        sql.bind(currency.to_ascii_uppercase());
        sql.push(&format!(" AND {RECOGNISED} >= "))
            .bind(window.start_ms());
        sql.push(&format!(" AND {RECOGNISED} < ")).bind(window.end_ms());
        push_scope(&mut sql, scope, "org_code");
        sql.push(if by_org { " GROUP BY 1, 2" } else { " GROUP BY 1" });
        self.timed(sql.query_as().fetch_all(self.pool())).await
    }

    /// `service-records/statistics`.
    pub(crate) async fn service_statistics(
        &self,
        scope: &OrgScope,
    ) -> Result<ServiceStatistics, CrmStoreError> {
        let mut sql = self.sql("SELECT status, priority, COUNT(*) FROM service_records WHERE 1 = 1");
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY status, priority");
        let rows: Vec<(Option<String>, Option<String>, i64)> =
            self.timed(sql.query_as().fetch_all(self.pool())).await?;
        Ok(ServiceStatistics {
            total: rows.iter().map(|r| r.2).sum(),
            by_status: tally(SERVICE_STATUSES, rows.iter().map(|r| (r.0.clone(), r.2))),
            by_priority: tally(SERVICE_PRIORITIES, rows.iter().map(|r| (r.1.clone(), r.2))),
        })
    }

    /// `users/activity` at `now_ms`.
    pub(crate) async fn user_activity(
        &self,
        scope: &OrgScope,
        now_ms: i64,
    ) -> Result<UserActivity, CrmStoreError> {
        let mut sql = self.sql(
            "SELECT COUNT(*), COUNT(CASE WHEN is_active = 1 THEN 1 END), COUNT(CASE WHEN last_login_at >= ",
        );
        sql.bind(now_ms - RECENT_LOGIN_DAYS * DAY_MS);
        sql.push(" THEN 1 END) FROM crm_users WHERE 1 = 1");
        push_scope(&mut sql, scope, "org_code");
        let (total_users, active_users, recent_login_count): (i64, i64, i64) =
            self.timed(sql.query_as().fetch_one(self.pool())).await?;
        Ok(UserActivity {
            total_users,
            active_users,
            inactive_users: total_users - active_users,
            recent_login_count,
        })
    }

    /// `organizations/summary`.
    pub(crate) async fn organizations_summary(
        &self,
        scope: &OrgScope,
    ) -> Result<OrganizationsSummary, CrmStoreError> {
        let mut sql =
            self.sql("SELECT org_type, COUNT(*), COUNT(CASE WHEN is_active = 1 THEN 1 END) FROM crm_organizations WHERE 1 = 1");
        push_scope(&mut sql, scope, "org_code");
        sql.push(" GROUP BY org_type");
        let rows: Vec<(Option<String>, i64, i64)> = self.timed(sql.query_as().fetch_all(self.pool())).await?;
        Ok(OrganizationsSummary {
            total: rows.iter().map(|r| r.1).sum(),
            by_type: tally(ORG_TYPES, rows.iter().map(|r| (r.0.clone(), r.1))),
            active_count: rows.iter().map(|r| r.2).sum(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tally_puts_documented_values_first_with_zeros() {
        let map = tally(
            ORDER_STATUSES,
            [
                (Some("completed".into()), 2),
                (Some("on_hold".into()), 1),
                (None, 1),
                (Some("completed".into()), 3),
            ],
        );
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "submitted",
                "approved",
                "processing",
                "completed",
                "cancelled",
                "on_hold",
                "unknown"
            ]
        );
        assert_eq!(map["completed"], 5);
        assert_eq!(map["submitted"], 0);
    }

    #[test]
    fn money_rounds_to_cents() {
        assert_eq!(round2(0.1 + 0.2), 0.3);
        assert_eq!(round2(50_000_000.004), 50_000_000.0);
    }
}
