//! The admin API's analytics: the overview and the query of declared metrics by declared dimensions.
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
//!
//! - [`catalogue`]: the declared metrics, filters and dimensions, and the tables each reads.
//! - [`query`]: a query as sent, validated into an [`AnalyticsQuery`]; the organizations it reads.
//! - [`sql`]: the statements of a query and of the overview.
//! - [`merge`]: the statements' groups merged into rows and totals.
//! - [`csv`]: results as CSV.

mod catalogue;
mod csv;
mod merge;
mod query;
mod sql;
#[cfg(test)]
mod tests;

pub(crate) use catalogue::catalogue;
pub(crate) use csv::to_csv;
pub(crate) use query::{AnalyticsQuery, QueryBody, narrow_scope, range};
