//! The CRM analytics API's and the admin API's CRM analytics end to end, on a CRM database in Owl's SQLite, in PostgreSQL and in
//! MariaDB/MySQL: every figure against rows the test inserts and counts itself, bucketing across
//! month and year ends, the admin API query and export, organization scoping and invalid parameters.

mod common;
mod crm_support;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use crm_support::{CrmDb, CrmEnv, DAY, Dataset, at};
use serde_json::{Value, json};

on_every_crm_db!(
    figures_match_inserted_rows,
    buckets_cross_month_and_year_ends,
    query_and_export_match_inserted_rows,
    organization_scope_limits_every_figure,
);

const BASE: &str = "/api/analytics-monitoring/analytics";

/// An order as the test writes it: customer, status, amount, currency, created, completed.
type OrderRow = (Option<usize>, &'static str, f64, &'static str, i64, Option<i64>);

fn date_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m-%d")
        .to_string()
}

fn month_of(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .format("%Y-%m")
        .to_string()
}

fn cents(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Every the CRM analytics API figure on one data set, each expectation counted here from the rows inserted.
async fn figures_match_inserted_rows(db: CrmDb) {
    let Some(env) = CrmEnv::start(db).await else {
        return;
    };
    let admin = env.admin().await;
    let now = env.now();
    let mut d = Dataset::default();

    let kinds = [
        ("individual", "own"),
        ("organization", "agent"),
        ("individual", "agent"),
        ("partner", "own"),
        ("organization", "own"),
    ];
    for i in 0..12 {
        let (customer_type, source) = kinds[i % kinds.len()];
        d.customer(customer_type, source, "ORG", now - (i as i64 + 1) * 7 * DAY);
    }
    // (customer, status, amount, currency, created, completed)
    let orders: Vec<OrderRow> = vec![
        (
            Some(0),
            "completed",
            1500.50,
            "IDR",
            now - 2 * DAY,
            Some(now - DAY),
        ),
        (Some(1), "submitted", 200.25, "IDR", now - 40 * DAY, None),
        (Some(2), "cancelled", 999.99, "IDR", now - 5 * DAY, None),
        (Some(3), "processing", 300.0, "USD", now - 3 * DAY, None),
        (Some(4), "approved", 10.10, "idr", now - 31 * DAY, None),
        (
            Some(0),
            "completed",
            70.0,
            "USD",
            now - 60 * DAY,
            Some(now - 50 * DAY),
        ),
        (None, "on_hold", 5.0, "IDR", now - DAY, None),
        (Some(5), "completed", 123.45, "IDR", now - 100 * DAY, None),
        (
            Some(6),
            "completed",
            42.0,
            "IDR",
            now - 500 * DAY,
            Some(now - 499 * DAY),
        ),
    ];
    for (customer, status, amount, currency, created, completed) in &orders {
        d.order(*customer, status, *amount, currency, "ORG", *created, *completed);
    }
    // (customer, status, priority, created)
    let records: Vec<(Option<usize>, &str, &str, i64)> = vec![
        (Some(7), "pending", "low", now - 10 * DAY),
        (Some(8), "in_progress", "urgent", now - 45 * DAY),
        (Some(1), "completed", "normal", now - 29 * DAY),
        (None, "completed", "high", now - DAY),
        (Some(9), "escalated", "normal", now - 2 * DAY),
    ];
    for (customer, status, priority, created) in &records {
        d.service_record(*customer, status, priority, "ORG", *created);
    }
    let users: Vec<(bool, Option<i64>)> = vec![
        (true, Some(now - DAY)),
        (true, Some(now - 31 * DAY)),
        (false, Some(now - 2 * DAY)),
        (true, None),
        (false, None),
    ];
    for (i, (active, login)) in users.iter().enumerate() {
        d.user(*active, *login, "ORG", now - (i as i64 + 1) * DAY);
    }
    let organizations = [
        ("internal", true),
        ("vendor", false),
        ("agent", true),
        ("internal", true),
        ("reseller", false),
    ];
    for (i, (org_type, active)) in organizations.iter().enumerate() {
        d.organization(org_type, *active, "ORG", now - (i as i64 + 1) * DAY);
    }
    env.insert(&d).await;

    // customers/summary
    let (summary, _) = env
        .crm_get(
            &admin,
            &format!("{BASE}/customers/summary"),
            "获取客户统计摘要成功",
        )
        .await;
    let count = |f: &dyn Fn(usize) -> bool| (0..d.customers.len()).filter(|&i| f(i)).count();
    let month_ago = now - 30 * DAY;
    let active = count(&|i| {
        orders.iter().any(|o| o.0 == Some(i) && o.4 >= month_ago)
            || records.iter().any(|r| r.0 == Some(i) && r.3 >= month_ago)
    });
    assert_eq!(summary["total"], d.customers.len());
    assert_eq!(summary["active_count"], active);
    assert!(active >= 3, "the data set has active customers: {active}");
    let by = |field: &str, value: &str| {
        d.customers
            .iter()
            .filter(|c| {
                if field == "type" {
                    c.customer_type == value
                } else {
                    c.source == value
                }
            })
            .count()
    };
    assert_eq!(
        summary["by_type"],
        json!({ "individual": by("type", "individual"), "organization": by("type", "organization"), "partner": by("type", "partner") })
    );
    assert_eq!(
        summary["by_source"],
        json!({ "own": by("source", "own"), "agent": by("source", "agent") })
    );
    let keys: Vec<&String> = summary["by_type"].as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["individual", "organization", "partner"],
        "the documented values first, others after"
    );

    // customers/trend (default: the last 30 days, by day)
    let (trend, _) = env
        .crm_get(&admin, &format!("{BASE}/customers/trend"), "获取客户增长趋势成功")
        .await;
    assert_eq!(trend["period"], "day");
    let points = trend["data_points"].as_array().unwrap();
    assert_eq!(points.len(), 30);
    assert_eq!(points.last().unwrap()["date"], date_of(now));
    for point in points {
        let label = point["date"].as_str().unwrap();
        let created: Vec<String> = d.customers.iter().map(|c| date_of(c.created_at_ms)).collect();
        assert_eq!(
            point["count"],
            created.iter().filter(|c| c.as_str() == label).count(),
            "{label}"
        );
        assert_eq!(
            point["cumulative"],
            created.iter().filter(|c| c.as_str() <= label).count(),
            "{label}"
        );
    }
    assert!(
        points.iter().any(|p| p["count"] != 0),
        "some customers fall in the window"
    );

    // orders/summary: every order, then a range
    let non_cancelled_idr = |o: &&OrderRow| o.1 != "cancelled" && o.3.eq_ignore_ascii_case("IDR");
    let (all, _) = env
        .crm_get(&admin, &format!("{BASE}/orders/summary"), "获取订单统计摘要成功")
        .await;
    assert_eq!(all["total"], orders.len());
    assert_eq!(all["currency_code"], "IDR");
    assert_eq!(
        all["total_amount"],
        cents(orders.iter().filter(non_cancelled_idr).map(|o| o.2).sum())
    );
    assert_eq!(all["other_currencies"], json!({ "USD": 370.0 }));
    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    for o in &orders {
        *by_status.entry(o.1).or_default() += 1;
    }
    for (status, n) in &by_status {
        assert_eq!(all["by_status"][status], *n, "{status}");
    }
    let status_keys: Vec<&String> = all["by_status"].as_object().unwrap().keys().collect();
    assert_eq!(
        status_keys,
        [
            "submitted",
            "approved",
            "processing",
            "completed",
            "cancelled",
            "on_hold"
        ]
    );

    let (start, end) = (date_of(now - 35 * DAY), date_of(now - 2 * DAY));
    let path = format!("{BASE}/orders/summary?start_date={start}&end_date={end}");
    let (ranged, _) = env.crm_get(&admin, &path, "获取订单统计摘要成功").await;
    let in_range: Vec<_> = orders
        .iter()
        .filter(|o| date_of(o.4) >= start && date_of(o.4) <= end)
        .collect();
    assert_eq!(ranged["total"], in_range.len());
    assert_eq!(
        ranged["total_amount"],
        cents(
            in_range
                .iter()
                .copied()
                .filter(non_cancelled_idr)
                .map(|o| o.2)
                .sum()
        )
    );
    assert_eq!(ranged["by_status"]["cancelled"], 1);
    assert!(in_range.len() < orders.len() && !in_range.is_empty());

    // orders/revenue (default: the last 12 months, by month)
    let (revenue, _) = env
        .crm_get(&admin, &format!("{BASE}/orders/revenue"), "获取收入统计成功")
        .await;
    assert_eq!(revenue["period"], "month");
    assert_eq!(revenue["currency_code"], "IDR");
    let points = revenue["data_points"].as_array().unwrap();
    assert_eq!(points.len(), 12);
    assert_eq!(points.last().unwrap()["date"], month_of(now));
    let recognised: Vec<(String, f64)> = orders
        .iter()
        .filter(|o| o.1 == "completed" && o.3.eq_ignore_ascii_case("IDR"))
        .map(|o| (month_of(o.5.unwrap_or(o.4)), o.2))
        .collect();
    let mut total = 0.0;
    for point in points {
        let label = point["date"].as_str().unwrap();
        let expected: f64 = recognised
            .iter()
            .filter(|(m, _)| m == label)
            .map(|(_, a)| a)
            .sum();
        assert_eq!(point["revenue"], cents(expected), "{label}");
        total += expected;
    }
    assert_eq!(revenue["total_revenue"], cents(total));
    assert_eq!(
        cents(total),
        cents(1500.50 + 123.45),
        "the order of 500 days ago is outside the window, USD never added"
    );

    // service-records/statistics
    let (services, _) = env
        .crm_get(
            &admin,
            &format!("{BASE}/service-records/statistics"),
            "获取服务记录统计成功",
        )
        .await;
    assert_eq!(services["total"], records.len());
    assert_eq!(
        services["by_status"],
        json!({ "pending": 1, "in_progress": 1, "completed": 2, "cancelled": 0, "escalated": 1 })
    );
    assert_eq!(
        services["by_priority"],
        json!({ "low": 1, "normal": 2, "high": 1, "urgent": 1 })
    );

    // users/activity
    let (activity, _) = env
        .crm_get(
            &admin,
            &format!("{BASE}/users/activity"),
            "获取用户活跃度统计成功",
        )
        .await;
    let active_users = users.iter().filter(|u| u.0).count();
    let recent = users
        .iter()
        .filter(|u| u.1.is_some_and(|t| t >= now - 30 * DAY))
        .count();
    assert_eq!(
        activity,
        json!({
            "total_users": users.len(),
            "active_users": active_users,
            "inactive_users": users.len() - active_users,
            "recent_login_count": recent,
        })
    );

    // organizations/summary
    let (orgs, _) = env
        .crm_get(
            &admin,
            &format!("{BASE}/organizations/summary"),
            "获取组织统计摘要成功",
        )
        .await;
    assert_eq!(orgs["total"], organizations.len());
    assert_eq!(orgs["active_count"], organizations.iter().filter(|o| o.1).count());
    assert_eq!(
        orgs["by_type"],
        json!({ "internal": 2, "vendor": 1, "agent": 1, "reseller": 1 })
    );
}

/// Day, ISO week and month buckets across a year end and month ends, for customers and revenue.
async fn buckets_cross_month_and_year_ends(db: CrmDb) {
    let Some(env) = CrmEnv::start(db).await else {
        return;
    };
    let admin = env.admin().await;
    let mut d = Dataset::default();
    for time in [
        "2024-12-29T12:00:00Z",
        "2024-12-30T00:00:00.000Z",
        "2024-12-31T23:59:59.999Z",
        "2025-01-01T00:00:00.000Z",
        "2025-01-05T23:59:59.999Z",
        "2025-01-06T00:00:00Z",
        "2025-01-31T23:59:59.999Z",
        "2025-02-01T00:00:00.000Z",
        "2025-02-02T10:00:00Z",
        "2025-02-03T00:00:00Z",
    ] {
        d.customer("individual", "own", "ORG", at(time));
    }
    // Revenue is dated by completion: each amount is a distinct power of ten, so a misplaced order
    // shows in the digits.
    d.order(
        None,
        "completed",
        1.0,
        "IDR",
        "ORG",
        at("2024-12-20T08:00:00Z"),
        Some(at("2024-12-31T23:59:59.999Z")),
    );
    d.order(
        None,
        "completed",
        10.0,
        "IDR",
        "ORG",
        at("2024-12-31T10:00:00Z"),
        Some(at("2025-01-01T00:00:00.000Z")),
    );
    d.order(
        None,
        "completed",
        100.0,
        "IDR",
        "ORG",
        at("2025-01-31T08:00:00Z"),
        Some(at("2025-02-01T00:00:00.000Z")),
    );
    d.order(
        None,
        "completed",
        1000.0,
        "IDR",
        "ORG",
        at("2025-01-15T08:00:00Z"),
        None,
    );
    d.order(
        None,
        "processing",
        5000.0,
        "IDR",
        "ORG",
        at("2025-01-10T08:00:00Z"),
        None,
    );
    d.order(
        None,
        "completed",
        20000.0,
        "IDR",
        "ORG",
        at("2024-11-01T08:00:00Z"),
        Some(at("2024-12-29T23:59:59.999Z")),
    );
    env.insert(&d).await;
    let range = "start_date=2024-12-30&end_date=2025-02-02";

    let trend = |period: &'static str| {
        let path = format!("{BASE}/customers/trend?period={period}&{range}");
        let env = &env;
        let admin = admin.clone();
        async move {
            let (data, _) = env.crm_get(&admin, &path, "获取客户增长趋势成功").await;
            assert_eq!(data["period"], period);
            data["data_points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["date"].as_str().unwrap().to_string(),
                        p["count"].as_i64().unwrap(),
                        p["cumulative"].as_i64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let weeks = trend("week").await;
    let expected_weeks = [
        ("2024-12-30", 4, 5),
        ("2025-01-06", 1, 6),
        ("2025-01-13", 0, 6),
        ("2025-01-20", 0, 6),
        ("2025-01-27", 3, 9),
    ];
    assert_eq!(weeks, expected_weeks.map(|(l, c, s)| (l.to_string(), c, s)));
    let months = trend("month").await;
    assert_eq!(
        months,
        [("2024-12", 2, 3), ("2025-01", 4, 7), ("2025-02", 2, 9)].map(|(l, c, s)| (l.to_string(), c, s))
    );
    let days = trend("day").await;
    assert_eq!(days.len(), 35);
    assert_eq!(days[0], ("2024-12-30".to_string(), 1, 2));
    let day = |label: &str| days.iter().find(|d| d.0 == label).unwrap().clone();
    assert_eq!(day("2024-12-31"), ("2024-12-31".to_string(), 1, 3));
    assert_eq!(day("2025-01-01"), ("2025-01-01".to_string(), 1, 4));
    assert_eq!(day("2025-01-31"), ("2025-01-31".to_string(), 1, 7));
    assert_eq!(day("2025-02-01"), ("2025-02-01".to_string(), 1, 8));
    assert_eq!(days[34], ("2025-02-02".to_string(), 1, 9));

    let revenue = |period: &'static str| {
        let path = format!("{BASE}/orders/revenue?period={period}&{range}");
        let env = &env;
        let admin = admin.clone();
        async move {
            let (data, _) = env.crm_get(&admin, &path, "获取收入统计成功").await;
            assert_eq!(data["total_revenue"], 1111.0, "{data}");
            data["data_points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    (
                        p["date"].as_str().unwrap().to_string(),
                        p["revenue"].as_f64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        revenue("month").await,
        [("2024-12", 1.0), ("2025-01", 1010.0), ("2025-02", 100.0)].map(|(l, r)| (l.to_string(), r))
    );
    let weekly = revenue("week").await;
    assert_eq!(
        weekly[0],
        ("2024-12-30".to_string(), 11.0),
        "2024-12-31 and 2025-01-01 share an ISO week"
    );
    assert_eq!(
        weekly[2],
        ("2025-01-13".to_string(), 1000.0),
        "no completed_at: dated by creation"
    );
    assert_eq!(weekly[4], ("2025-01-27".to_string(), 100.0));

    let (year_end, _) = env
        .crm_get(
            &admin,
            &format!("{BASE}/orders/summary?start_date=2024-12-31&end_date=2025-01-01"),
            "获取订单统计摘要成功",
        )
        .await;
    assert_eq!(
        year_end["total"], 1,
        "orders created on 2024-12-31 or 2025-01-01 (UTC)"
    );
    assert_eq!(year_end["total_amount"], 10.0);
}

async fn create_orgs(env: &CrmEnv, admin: &str, orgs: &[(&str, &str, &str)]) {
    for (code, name, parent) in orgs {
        env.create_org(admin, code, name, parent).await;
    }
}

/// The admin API's query (metrics × dimensions × filters) and its export, counted by hand from the rows.
async fn query_and_export_match_inserted_rows(db: CrmDb) {
    let Some(env) = CrmEnv::start(db).await else {
        return;
    };
    let admin = env.admin().await;
    create_orgs(&env, &admin, &[("Q1", "青岛一部", "0"), ("Q2", "青岛二部", "0")]).await;
    let mut d = Dataset::default();
    d.user(true, None, "Q1", at("2025-01-10T08:00:00Z"));
    d.user(false, None, "Q1", at("2025-01-20T08:00:00Z"));
    d.user(true, None, "Q1", at("2025-02-05T08:00:00Z"));
    d.user(true, None, "Q2", at("2025-02-10T08:00:00Z"));
    d.user(true, None, "Q2", at("2024-12-31T23:59:59.999Z"));
    let c1 = d.customer("individual", "own", "Q1", at("2025-01-15T08:00:00Z"));
    let c2 = d.customer("organization", "agent", "Q2", at("2025-02-20T08:00:00Z"));
    d.order(
        Some(c1),
        "completed",
        500.5,
        "IDR",
        "Q1",
        at("2025-01-16T08:00:00Z"),
        Some(at("2025-02-01T00:00:00Z")),
    );
    d.order(
        Some(c2),
        "cancelled",
        100.0,
        "IDR",
        "Q2",
        at("2025-02-21T08:00:00Z"),
        None,
    );
    d.order(
        Some(c2),
        "submitted",
        250.25,
        "IDR",
        "Q2",
        at("2025-02-22T08:00:00Z"),
        None,
    );
    d.service_record(Some(c1), "pending", "high", "Q1", at("2025-02-02T08:00:00Z"));
    env.insert(&d).await;

    let body = json!({
        "start_date": "2025-01-01",
        "end_date": "2025-02-28",
        "metrics": ["user_count", "data_volume", "order_amount", "revenue"],
        "dimensions": ["org", "month"],
        "filters": { "status": 1 }
    });
    let reply = env
        .call("POST", "/api/analytics/query", Some(&admin), Some(body.clone()))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["success"], true);
    let expected = json!({
        "results": [
            { "org_code": "Q1", "org_name": "青岛一部", "month": "2025-01", "user_count": 1, "data_volume": 2, "order_amount": 500.5, "revenue": 0.0 },
            { "org_code": "Q1", "org_name": "青岛一部", "month": "2025-02", "user_count": 1, "data_volume": 1, "order_amount": 0.0, "revenue": 500.5 },
            { "org_code": "Q2", "org_name": "青岛二部", "month": "2025-02", "user_count": 1, "data_volume": 3, "order_amount": 250.25, "revenue": 0.0 },
        ],
        "summary": { "total": 3, "aggregations": { "user_count": 3, "data_volume": 6, "order_amount": 750.75, "revenue": 500.5 } }
    });
    assert_eq!(reply.body["data"], expected);

    // The admin API's example: user_count and data_volume by org and date, status 1.
    let example = json!({
        "start_date": "2025-01-01",
        "end_date": "2025-12-31",
        "org_codes": ["Q1"],
        "metrics": ["user_count", "data_volume"],
        "dimensions": ["org", "date"],
        "filters": { "status": 1 }
    });
    let reply = env
        .call("POST", "/api/analytics/query", Some(&admin), Some(example))
        .await
        .expect(StatusCode::OK);
    let dates: Vec<(&str, i64, i64)> = reply.body["data"]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["date"].as_str().unwrap(),
                r["user_count"].as_i64().unwrap(),
                r["data_volume"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        dates,
        [
            ("2025-01-10", 1, 0),
            ("2025-01-15", 0, 1),
            ("2025-01-16", 0, 1),
            ("2025-02-02", 0, 1),
            ("2025-02-05", 1, 0)
        ]
    );

    // No dimension: one row of totals, even when it is zero; a filter value is bound, never spliced.
    let injection = json!({
        "start_date": "2025-01-01",
        "end_date": "2025-02-28",
        "metrics": ["customer_count"],
        "filters": { "customer_type": "x' OR '1'='1" }
    });
    let reply = env
        .call("POST", "/api/analytics/query", Some(&admin), Some(injection))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["results"], json!([{ "customer_count": 0 }]));
    let typed = json!({ "start_date": "2025-01-01", "end_date": "2025-02-28", "metrics": ["customer_count"], "filters": { "customer_type": "organization" } });
    let reply = env
        .call("POST", "/api/analytics/query", Some(&admin), Some(typed))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["results"], json!([{ "customer_count": 1 }]));

    // Export: the same rows as CSV and as JSON.
    let mut csv_body = body.clone();
    csv_body["format"] = json!("csv");
    let csv = env
        .call("POST", "/api/analytics/export", Some(&admin), Some(csv_body))
        .await
        .expect(StatusCode::OK);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(
        csv.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains(".csv")
    );
    assert_eq!(
        csv.headers["x-cache"], "HIT",
        "the export reuses the query's cached answer"
    );
    assert_eq!(
        csv.text,
        "org_code,org_name,month,user_count,data_volume,order_amount,revenue\r\n\
         Q1,青岛一部,2025-01,1,2,500.5,0.0\r\n\
         Q1,青岛一部,2025-02,1,1,0.0,500.5\r\n\
         Q2,青岛二部,2025-02,1,3,250.25,0.0\r\n"
    );
    let mut json_body = body.clone();
    json_body["format"] = json!("json");
    let exported = env
        .call("POST", "/api/analytics/export", Some(&admin), Some(json_body))
        .await
        .expect(StatusCode::OK);
    assert_eq!(exported.body, expected["results"]);
    let mut bad = body;
    bad["format"] = json!("xlsx");
    let refused = env
        .call("POST", "/api/analytics/export", Some(&admin), Some(bad))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["errors"][0]["field"], "format");

    // The overview of the same range.
    let overview = env
        .call(
            "GET",
            "/api/analytics/overview?start_date=2025-01-01&end_date=2025-02-28",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let data = &overview.body["data"];
    assert_eq!(overview.body["success"], true);
    assert_eq!(
        data["total_users"], 5,
        "users created before the end of the range"
    );
    assert_eq!(data["active_users"], 4);
    assert_eq!(data["data_points"], 6, "2 customers, 3 orders, 1 service record");
    assert_eq!(data["charts"]["data_statistics"][1]["count"], 3);
    assert_eq!(data["charts"]["data_statistics"][3]["amount"], 500.5);
    let trend = data["charts"]["user_trend"].as_array().unwrap();
    assert_eq!(trend.len(), 59, "59 days by day");
    assert_eq!(
        trend[0],
        json!({ "date": "2025-01-01", "count": 0, "cumulative": 1 })
    );
    assert_eq!(trend.last().unwrap()["cumulative"], 5);
    let distribution = data["charts"]["org_distribution"].as_array().unwrap();
    assert_eq!(
        distribution[0],
        json!({ "org_code": "Q1", "org_name": "青岛一部", "user_count": 3, "data_volume": 3 })
    );
    assert_eq!(
        distribution[1],
        json!({ "org_code": "Q2", "org_name": "青岛二部", "user_count": 2, "data_volume": 3 })
    );
}

/// A user who is not a super admin sees only their organization and its descendants, everywhere.
async fn organization_scope_limits_every_figure(db: CrmDb) {
    let Some(env) = CrmEnv::start(db).await else {
        return;
    };
    let admin = env.admin().await;
    create_orgs(
        &env,
        &admin,
        &[("A", "甲", "0"), ("A1", "甲一", "A"), ("B", "乙", "0")],
    )
    .await;
    let now = env.now();
    let mut d = Dataset::default();
    for (org, n) in [("A", 2), ("A1", 3), ("B", 4)] {
        for i in 0..n {
            let customer = d.customer("individual", "own", org, now - (i + 1) * DAY);
            d.order(
                Some(customer),
                "completed",
                100.0,
                "IDR",
                org,
                now - (i + 1) * DAY,
                Some(now - DAY),
            );
            d.user(true, Some(now - DAY), org, now - (i + 1) * DAY);
            d.service_record(Some(customer), "pending", "low", org, now - DAY);
            d.organization("vendor", true, org, now - DAY);
        }
    }
    env.insert(&d).await;
    let analyst = env
        .user_with(&admin, "analyst", "A", &["analytics:read", "analytics:export"])
        .await;

    let total = |token: String, path: &'static str, field: &'static str| {
        let env = &env;
        async move {
            let reply = env
                .call("GET", &format!("{BASE}/{path}"), Some(&token), None)
                .await
                .expect(StatusCode::OK);
            reply.body["data"][field].as_f64().unwrap()
        }
    };
    for (path, field, mine, all) in [
        ("customers/summary", "total", 5.0, 9.0),
        ("customers/summary", "active_count", 5.0, 9.0),
        ("orders/summary", "total_amount", 500.0, 900.0),
        ("orders/revenue?period=day", "total_revenue", 500.0, 900.0),
        ("service-records/statistics", "total", 5.0, 9.0),
        ("users/activity", "recent_login_count", 5.0, 9.0),
        ("organizations/summary", "total", 5.0, 9.0),
    ] {
        assert_eq!(
            total(analyst.clone(), path, field).await,
            mine,
            "{path} {field} for A and A1"
        );
        assert_eq!(
            total(admin.clone(), path, field).await,
            all,
            "{path} {field} for the super admin"
        );
    }

    let overview = env
        .call("GET", "/api/analytics/overview", Some(&analyst), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(overview.body["data"]["total_users"], 5);
    let codes: Vec<&str> = overview.body["data"]["charts"]["org_distribution"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["org_code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["A1", "A"]);
    let narrowed = env
        .call("GET", "/api/analytics/overview?org_code=A1", Some(&analyst), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(narrowed.body["data"]["total_users"], 3);
    let outside = env
        .call("GET", "/api/analytics/overview?org_code=B", Some(&analyst), None)
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(outside.body["errors"][0]["field"], "org_code");
    let admin_b = env
        .call("GET", "/api/analytics/overview?org_code=B", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(admin_b.body["data"]["total_users"], 4);

    let query = json!({ "metrics": ["user_count"], "dimensions": ["org"] });
    let rows = env
        .call(
            "POST",
            "/api/analytics/query",
            Some(&analyst),
            Some(query.clone()),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        rows.body["data"]["results"],
        json!([{ "org_code": "A", "org_name": "甲", "user_count": 2 }, { "org_code": "A1", "org_name": "甲一", "user_count": 3 }])
    );
    let mut foreign = query.clone();
    foreign["org_codes"] = json!(["A1", "B"]);
    let refused = env
        .call("POST", "/api/analytics/query", Some(&analyst), Some(foreign))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["errors"][0]["field"], "org_codes[1]");
    let csv = env
        .call("POST", "/api/analytics/export", Some(&analyst), Some(query))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        csv.text,
        "org_code,org_name,user_count\r\nA,甲,2\r\nA1,甲一,3\r\n"
    );

    // A reader without an organization reads nothing; one without the permission is refused.
    env.create_user(
        &admin,
        json!({ "user_code": "drifter", "username": "drifter", "password": "Passw0rd", "role_id": 2 }),
    )
    .await;
    let reader = env.user_with(&admin, "loner", "", &["analytics:read"]).await;
    assert_eq!(total(reader.clone(), "customers/summary", "total").await, 0.0);
    let export = json!({ "metrics": ["user_count"] });
    let no_export = env
        .call("POST", "/api/analytics/export", Some(&reader), Some(export))
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(
        no_export.body["success"], false,
        "analytics:read alone does not export"
    );
    let ops = env.login("drifter", "Passw0rd").await.0;
    let denied = env
        .call("GET", &format!("{BASE}/customers/summary"), Some(&ops), None)
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(
        denied.body,
        json!({ "code": 403, "message": "权限不足", "data": null })
    );
}

/// Invalid dates, periods and ranges answer 400 in each family's shape, naming the parameter.
#[tokio::test]
async fn invalid_parameters_are_refused_with_their_name() {
    let env = CrmEnv::start(CrmDb::Shared)
        .await
        .expect("sqlite needs no service");
    let admin = env.admin().await;
    for (path, field) in [
        ("customers/trend?period=year", "period"),
        ("orders/revenue?period=quarter", "period"),
        ("customers/trend?start_date=2024-02-30", "start_date"),
        ("orders/summary?start_date=2024/12/01", "start_date"),
        ("orders/summary?end_date=2024-1-5", "end_date"),
        (
            "orders/summary?start_date=2024-12-02&end_date=2024-12-01",
            "start_date",
        ),
        (
            "orders/revenue?period=day&start_date=2000-01-01&end_date=2024-01-01",
            "start_date",
        ),
    ] {
        let reply = env
            .call("GET", &format!("{BASE}/{path}"), Some(&admin), None)
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["code"], 400, "{path}");
        assert_eq!(reply.body["data"], Value::Null, "{path}");
        assert!(
            reply.body["message"].as_str().unwrap().contains(field),
            "{path}: {}",
            reply.text
        );
    }
    let reply = env
        .call(
            "GET",
            &format!("{BASE}/customers/trend?period=year"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(
        reply.body["message"],
        "period 必须是 day、week 或 month，收到 \"year\""
    );

    let overview = env
        .call(
            "GET",
            "/api/analytics/overview?start_date=2025-13-01",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        (overview.body["success"].clone(), overview.body["code"].clone()),
        (json!(false), json!(400))
    );
    assert_eq!(overview.body["errors"][0]["field"], "start_date");
    let too_long = env
        .call(
            "GET",
            "/api/analytics/overview?start_date=2000-01-01&end_date=2025-01-01",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(too_long.body["errors"][0]["field"], "end_date");

    let query = json!({ "metrics": ["user_count", "revenue_per_user"], "dimensions": ["org", "region"], "filters": { "status": "yes" } });
    let reply = env
        .call("POST", "/api/analytics/query", Some(&admin), Some(query))
        .await
        .expect(StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = reply.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["metrics[1]", "dimensions[1]", "filters.status"]);
    let missing = env
        .call("POST", "/api/analytics/query", Some(&admin), Some(json!({})))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(missing.body["errors"][0]["field"], "metrics");
    let unknown_org = env
        .call(
            "POST",
            "/api/analytics/query",
            Some(&admin),
            Some(json!({ "metrics": ["user_count"], "org_codes": ["'; DROP TABLE customers; --"] })),
        )
        .await;
    assert_eq!(unknown_org.status, StatusCode::BAD_REQUEST);
    let (summary, _) = env
        .crm_get(
            &admin,
            &format!("{BASE}/customers/summary"),
            "获取客户统计摘要成功",
        )
        .await;
    assert_eq!(summary["total"], 0, "the table is still there");

    let anonymous = env
        .call("GET", &format!("{BASE}/customers/summary"), None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(anonymous.body["code"], 401);
    assert_eq!(anonymous.body["data"], Value::Null);
}
