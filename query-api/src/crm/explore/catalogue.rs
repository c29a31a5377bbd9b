//! What a client may name: the declared metrics, filters and dimensions, and the tables each reads.

use serde_json::{Value, json};

use crate::crm::period::Period;

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
pub(super) enum Aggregate {
    Count,
    SumAmount,
}

/// One table a metric reads.
#[derive(Debug, Clone, Copy)]
pub(super) struct Source {
    pub(super) table: &'static str,
    pub(super) time: &'static str,
    pub(super) aggregate: Aggregate,
    /// Fixed conditions (no client input).
    pub(super) condition: &'static str,
    /// Whether only orders in the reporting currency count.
    pub(super) currency: bool,
}

pub(super) const fn count(table: &'static str) -> Source {
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

    pub(super) fn label(self) -> &'static str {
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

    pub(super) fn parse(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }

    pub(super) fn is_amount(self) -> bool {
        matches!(self, Metric::OrderAmount | Metric::Revenue)
    }

    pub(super) fn sources(self) -> &'static [Source] {
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

    pub(super) fn filters(self) -> &'static [Filter] {
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

    pub(super) fn parse(name: &str) -> Option<Filter> {
        Filter::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The column it restricts in `table` (every metric that declares the filter reads only tables
    /// listed here).
    pub(super) fn column(self, table: &str) -> Option<&'static str> {
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

    pub(super) fn parse(name: &str) -> Option<Dimension> {
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
