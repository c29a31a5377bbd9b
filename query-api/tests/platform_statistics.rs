//! The platform API's log statistics, `GET /api/statistics?start_date=&end_date=`, against a
//! dataset whose counts the test computes: the days given (UTC, both included), the last 7 days
//! without dates, the caller's regions only, and every bad parameter a 400 naming it.

mod common;
mod logs_common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{Duration, NaiveDate};
use common::{TestEnv, Variant};
use logs_common::*;
use owl_model::LogRecord;
use serde_json::{Value, json};

/// What the answer should count of `records` from `first` to `last`, in `regions` ([] = all).
fn expected(records: &[LogRecord], first: NaiveDate, last: NaiveDate, regions: &[&str]) -> Value {
    let kept: Vec<&LogRecord> = records
        .iter()
        .filter(|r| {
            let day = r.timestamp.date_naive();
            day >= first
                && day <= last
                && (regions.is_empty()
                    || r.service
                        .region
                        .as_deref()
                        .is_some_and(|region| regions.contains(&region)))
        })
        .collect();
    let mut by_level: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_module: BTreeMap<String, u64> = BTreeMap::new();
    for r in &kept {
        *by_level.entry(r.level.python_name().to_string()).or_default() += 1;
        *by_module.entry(r.service.name.clone()).or_default() += 1;
    }
    json!({
        "total_logs": kept.len(),
        "by_level": by_level,
        "by_module": by_module,
        "error_count": by_level.get("ERROR").copied().unwrap_or(0),
        "warning_count": by_level.get("WARNING").copied().unwrap_or(0),
        "start_date": first.to_string(),
        "end_date": last.to_string(),
    })
}

#[tokio::test]
async fn log_statistics_count_the_days_asked_within_the_callers_regions() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    let now = env.clock.now();
    let today = now.date_naive();
    // Recent records, and older ones 10 days back, outside the default 7 days.
    let mut records = dataset(240, now - Duration::minutes(5), 7);
    let old_end = now - Duration::days(10);
    records.extend(dataset(60, old_end, 8).into_iter().map(|mut r| {
        r.id = format!("old-{}", r.id);
        r
    }));
    ingest(&env.state.index, records.clone()).await;
    let admin = env.admin().await;
    let get = |token: &str, query: &str| {
        let path = format!("/api/statistics{query}");
        let token = token.to_string();
        let env = &env;
        async move { env.call("GET", &path, Some(&token), None).await }
    };

    let reply = get(&admin, "").await.expect(StatusCode::OK);
    assert_eq!(reply.body["status"], "success");
    assert_eq!(reply.body["message"], "获取日志统计成功");
    let week = today - Duration::days(6);
    assert_eq!(
        reply.body["data"],
        expected(&records, week, today, &[]),
        "{}",
        reply.text
    );
    assert!(reply.body["data"]["total_logs"].as_u64().unwrap() >= 200);

    // The seed's example: a range of days, both included.
    let old_day = old_end.date_naive();
    let query = format!("?start_date={}&end_date={}", old_day - Duration::days(1), old_day);
    let reply = get(&admin, &query).await.expect(StatusCode::OK);
    let old = expected(&records, old_day - Duration::days(1), old_day, &[]);
    assert_eq!(reply.body["data"], old, "{}", reply.text);
    assert!(old["total_logs"].as_u64().unwrap() > 0);

    // A user limited to CN counts CN's records only.
    let cn = user(&env, &admin, "cn-ops", 2, &["CN"]).await;
    let reply = get(&cn, "").await.expect(StatusCode::OK);
    assert_eq!(reply.body["data"], expected(&records, week, today, &["CN"]));

    // Bad parameters: a 400 in the platform envelope naming the field.
    for (query, field) in [
        ("?start_date=2025-13-01", "start_date"),
        ("?start_date=2025-09-18&end_date=2025-09-01", "end_date"),
        ("?start_date=2025-01-01&end_date=2025-03-01", "start_date"),
        ("?start_dat=2025-09-01", "start_dat"),
    ] {
        let reply = get(&admin, query).await.expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["status"], "error", "{query}: {}", reply.text);
        assert!(reply.text.contains(field), "{query}: {}", reply.text);
    }
    let reply = env.call("GET", "/api/statistics", None, None).await;
    reply.expect(StatusCode::UNAUTHORIZED);
}
