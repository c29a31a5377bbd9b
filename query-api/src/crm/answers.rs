//! The answers of the CRM analytics API's analytics (`/api/analytics-monitoring/analytics/*`),
//! each resolved from its request's parameters into a [`Figure`]: the one description of what an
//! answer is cached under and how it is computed. The handlers serve figures through the cache;
//! the `warm_analytics_cache` job ([`super::warm`]) computes [`Figure::defaults`] ahead of them,
//! under the very keys a request without parameters looks up.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::period::{Buckets, Period, PeriodError, Window, date_ms, parse_optional_date};
use super::{AnalyticsCache, CrmStore, CrmStoreError, OrgScope};

/// The parameters of a figure over periods (`period`, `start_date`, `end_date`, all optional).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct PeriodParams {
    /// `day`, `week` or `month`.
    pub period: Option<String>,
    /// First day, `YYYY-MM-DD` (UTC).
    pub start_date: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    pub end_date: Option<String>,
}

/// The parameters of a figure over a range of days (both optional).
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
pub struct RangeParams {
    /// First day, `YYYY-MM-DD` (UTC).
    pub start_date: Option<String>,
    /// Last day, `YYYY-MM-DD` (UTC), included.
    pub end_date: Option<String>,
}

/// One analytics answer, its parameters resolved.
#[derive(Debug, Clone)]
pub enum Figure {
    /// `customers/summary`.
    CustomersSummary,
    /// `customers/trend` (default period `day`).
    CustomersTrend {
        /// Bucket size.
        period: Period,
        /// Days covered.
        window: Window,
        /// The window's buckets.
        buckets: Buckets,
    },
    /// `orders/summary`: every order, or those of the days given.
    OrdersSummary {
        /// First day.
        start: Option<NaiveDate>,
        /// Last day, included.
        end: Option<NaiveDate>,
        /// `query_api.crm_currency_code`.
        currency: String,
    },
    /// `orders/revenue` (default period `month`).
    OrdersRevenue {
        /// Bucket size.
        period: Period,
        /// Days covered.
        window: Window,
        /// The window's buckets.
        buckets: Buckets,
        /// `query_api.crm_currency_code`.
        currency: String,
    },
    /// `service-records/statistics`.
    ServiceStatistics,
    /// `users/activity`.
    UsersActivity,
    /// `organizations/summary`.
    OrganizationsSummary,
}

/// The period and window of `params`: the period's default window ending `today` unless dates are
/// given.
fn resolve(
    params: &PeriodParams,
    default: Period,
    today: NaiveDate,
) -> Result<(Period, Window, Buckets), PeriodError> {
    let period = Period::parse("period", params.period.as_deref(), default)?;
    let start = parse_optional_date("start_date", params.start_date.as_deref())?;
    let end = parse_optional_date("end_date", params.end_date.as_deref())?;
    let window = Window::from_params(start, end, period.default_window(today))?;
    let buckets = window.buckets(period)?;
    Ok((period, window, buckets))
}

impl Figure {
    /// `customers/trend` of `params` on `today`.
    pub fn customers_trend(params: &PeriodParams, today: NaiveDate) -> Result<Figure, PeriodError> {
        let (period, window, buckets) = resolve(params, Period::Day, today)?;
        Ok(Figure::CustomersTrend {
            period,
            window,
            buckets,
        })
    }

    /// `orders/summary` of `params`.
    pub fn orders_summary(params: &RangeParams, currency: &str) -> Result<Figure, PeriodError> {
        let start = parse_optional_date("start_date", params.start_date.as_deref())?;
        let end = parse_optional_date("end_date", params.end_date.as_deref())?;
        if let (Some(start), Some(end)) = (start, end)
            && start > end
        {
            return Err(PeriodError::Reversed { start, end });
        }
        Ok(Figure::OrdersSummary {
            start,
            end,
            currency: currency.to_string(),
        })
    }

    /// `orders/revenue` of `params` on `today`.
    pub fn orders_revenue(
        params: &PeriodParams,
        today: NaiveDate,
        currency: &str,
    ) -> Result<Figure, PeriodError> {
        let (period, window, buckets) = resolve(params, Period::Month, today)?;
        Ok(Figure::OrdersRevenue {
            period,
            window,
            buckets,
            currency: currency.to_string(),
        })
    }

    /// Every figure as a request without parameters asks for it on `today`.
    pub fn defaults(today: NaiveDate, currency: &str) -> Vec<Figure> {
        let none = PeriodParams::default();
        vec![
            Figure::CustomersSummary,
            Figure::customers_trend(&none, today).expect("the default window is valid"),
            Figure::orders_summary(&RangeParams::default(), currency).expect("no dates are valid"),
            Figure::orders_revenue(&none, today, currency).expect("the default window is valid"),
            Figure::ServiceStatistics,
            Figure::UsersActivity,
            Figure::OrganizationsSummary,
        ]
    }

    /// The endpoint below `/api/analytics-monitoring/analytics/`.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Figure::CustomersSummary => "customers/summary",
            Figure::CustomersTrend { .. } => "customers/trend",
            Figure::OrdersSummary { .. } => "orders/summary",
            Figure::OrdersRevenue { .. } => "orders/revenue",
            Figure::ServiceStatistics => "service-records/statistics",
            Figure::UsersActivity => "users/activity",
            Figure::OrganizationsSummary => "organizations/summary",
        }
    }

    /// The answer's message.
    pub fn message(&self) -> &'static str {
        match self {
            Figure::CustomersSummary => "获取客户统计摘要成功",
            Figure::CustomersTrend { .. } => "获取客户增长趋势成功",
            Figure::OrdersSummary { .. } => "获取订单统计摘要成功",
            Figure::OrdersRevenue { .. } => "获取收入统计成功",
            Figure::ServiceStatistics => "获取服务记录统计成功",
            Figure::UsersActivity => "获取用户活跃度统计成功",
            Figure::OrganizationsSummary => "获取组织统计摘要成功",
        }
    }

    /// The normalised parameters the answer depends on.
    fn params(&self) -> Value {
        let window_params = |period: &Period, window: &Window| json!({ "period": period.name(), "start_date": window.first.to_string(), "end_date": window.last.to_string() });
        match self {
            Figure::CustomersTrend { period, window, .. } => window_params(period, window),
            Figure::OrdersSummary { start, end, currency } => json!({
                "start_date": start.map(|d| d.to_string()),
                "end_date": end.map(|d| d.to_string()),
                "currency": currency,
            }),
            Figure::OrdersRevenue {
                period,
                window,
                currency,
                ..
            } => {
                let mut params = window_params(period, window);
                params["currency"] = json!(currency);
                params
            }
            Figure::CustomersSummary
            | Figure::ServiceStatistics
            | Figure::UsersActivity
            | Figure::OrganizationsSummary => json!({}),
        }
    }

    /// The key of this answer for `scope`.
    pub fn cache_key(&self, scope: &OrgScope) -> String {
        AnalyticsCache::key(
            &format!("analytics-monitoring:{}", self.endpoint()),
            &self.params(),
            scope,
        )
    }

    /// The answer's `data`, as JSON text, over `scope` at `now_ms`.
    pub async fn compute(
        &self,
        store: &CrmStore,
        scope: &OrgScope,
        now_ms: i64,
    ) -> Result<String, CrmStoreError> {
        Ok(match self {
            Figure::CustomersSummary => to_json_text(&store.customers_summary(scope, now_ms).await?),
            Figure::CustomersTrend { window, buckets, .. } => {
                to_json_text(&store.customers_trend(scope, window, buckets).await?)
            }
            Figure::OrdersSummary { start, end, currency } => {
                let start_ms = start.map(date_ms);
                let end_ms = end.map(|end| date_ms(end + chrono::Days::new(1)));
                to_json_text(&store.orders_summary(scope, start_ms, end_ms, currency).await?)
            }
            Figure::OrdersRevenue {
                window,
                buckets,
                currency,
                ..
            } => to_json_text(&store.orders_revenue(scope, window, buckets, currency).await?),
            Figure::ServiceStatistics => to_json_text(&store.service_statistics(scope).await?),
            Figure::UsersActivity => to_json_text(&store.user_activity(scope, now_ms).await?),
            Figure::OrganizationsSummary => to_json_text(&store.organizations_summary(scope).await?),
        })
    }
}

/// Serialises a figure (cannot fail: the figures are plain data).
pub fn to_json_text(value: &impl Serialize) -> String {
    serde_json::to_string(value).expect("analytics figures serialise to JSON")
}
