//! The CRM analytics API's log query (POST and GET) and statistics against a dataset whose answers the test computes.

mod common;
mod logs_common;

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::{DateTime, Duration, Utc};
use common::{TestEnv, Variant};
use logs_common::*;
use owl_model::{Level, LogRecord};
use serde_json::{Value, json};

const FILES: &[&str] = &[
    "/app/foundation_service/api/v1/auth.py",
    "/app/order/workflow.py",
    "/app/Shared/Utils.py",
];
const FUNCTIONS: &[&str] = &["login", "LoginWithSSO", "submit_order", "refresh"];

fn python_records(n: usize, end: DateTime<Utc>) -> Vec<LogRecord> {
    let mut rng = Rng::new(41);
    (0..n)
        .map(|i| {
            let at = end - Duration::seconds((n - i) as i64 * 7);
            record(json!({
                "id": format!("py-{i:04}"),
                "timestamp": owl_model::format_timestamp(&at),
                "level": rng.pick(&["DEBUG", "INFO", "INFO", "WARNING", "ERROR", "CRITICAL"]),
                "message": rng.pick(&["用户登录失败：用户名或密码错误", "Order created", "LOGIN ok", "订单已提交"]),
                "service": rng.pick(&["foundation-service", "order-workflow-service", "analytics-monitoring-service"]),
                "name": "foundation_service.api.v1.auth",
                "function": rng.pick(FUNCTIONS),
                "line": 45 + i as u64,
                "file": rng.pick(FILES),
                "module": "auth",
                "thread": 12345,
                "process": 1,
                "exception": if i % 10 == 0 { json!("Traceback (most recent call last): ...") } else { Value::Null },
                "extra": if i % 7 == 0 { json!({"tenant": "acme"}) } else { Value::Null },
            }))
        })
        .collect()
}

fn naive(at: &DateTime<Utc>) -> String {
    at.naive_utc().format("%Y-%m-%dT%H:%M:%S%.f").to_string()
}

#[tokio::test]
async fn crm_log_query_and_statistics() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    let end = env.clock.now() - Duration::minutes(5);
    let records = python_records(400, end);
    ingest(&env.state.index, records.clone()).await;
    let admin = env.admin().await;
    let matching = |keep: &dyn Fn(&LogRecord) -> bool| {
        let mut found: Vec<&LogRecord> = records.iter().filter(|r| keep(r)).collect();
        newest_first(&mut found);
        found
    };
    let ci = |hay: Option<&str>, needle: &str| {
        hay.is_some_and(|h| h.to_lowercase().contains(&needle.to_lowercase()))
    };

    // POST: every filter.
    let body = json!({
        "services": ["foundation-service", "order-workflow-service"],
        "levels": ["ERROR", "WARNING"],
        "keyword": "登录失败",
        "file": "AUTH.py",
        "function": "login",
        "page": 1,
        "page_size": 50
    });
    let reply = env
        .call(
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(&admin),
            Some(body),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (reply.body["code"].clone(), reply.body["message"].clone()),
        (json!(200), json!("查询日志成功"))
    );
    let expected = matching(&|r| {
        r.service.name != "analytics-monitoring-service"
            && r.level >= Level::Warn
            && r.message.contains("登录失败")
            && ci(r.file.as_deref(), "auth.py")
            && ci(r.function.as_deref(), "login")
    });
    assert!(!expected.is_empty());
    let data = &reply.body["data"];
    assert_eq!(data["total"], expected.len());
    assert_eq!(
        (data["page"].clone(), data["page_size"].clone()),
        (json!(1), json!(50))
    );
    assert_eq!(data["total_pages"], expected.len().div_ceil(50));
    assert_eq!(
        ids(&data["logs"]),
        expected.iter().take(50).map(|r| r.id.clone()).collect::<Vec<_>>()
    );
    let item = &data["logs"][0];
    let first = expected[0];
    let keys: Vec<&String> = item.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "id",
            "timestamp",
            "level",
            "message",
            "service",
            "name",
            "function",
            "line",
            "file",
            "module",
            "thread",
            "process",
            "exception",
            "extra"
        ]
    );
    assert_eq!(item["timestamp"], naive(&first.timestamp));
    assert_eq!(item["line"], first.line.unwrap());
    assert!(
        item["level"] == "ERROR" || item["level"] == "WARNING",
        "WARN is written WARNING: {item}"
    );

    // Empty services mean all; keyword is case-insensitive; pages.
    let body = json!({ "services": [], "keyword": "login", "page": 2, "page_size": 20 });
    let data = env
        .call(
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(&admin),
            Some(body),
        )
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    let expected = matching(&|r| ci(Some(&r.message), "login"));
    assert_eq!(data["total"], expected.len());
    assert_eq!(
        ids(&data["logs"]),
        expected
            .iter()
            .skip(20)
            .take(20)
            .map(|r| r.id.clone())
            .collect::<Vec<_>>()
    );

    // GET: the same filters in the query string.
    let start = end - Duration::minutes(20);
    let path = format!(
        "/api/analytics-monitoring/logs/query?services=foundation-service,order-workflow-service&levels=ERROR,WARNING&start_time={}&end_time={}&function=LOGIN&page=1&page_size=500",
        naive(&start),
        naive(&end)
    );
    let data = env
        .call("GET", &path, Some(&admin), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    let expected = matching(&|r| {
        r.service.name != "analytics-monitoring-service"
            && r.level >= Level::Warn
            && r.timestamp >= start
            && r.timestamp < end + Duration::seconds(1)
            && ci(r.function.as_deref(), "login")
    });
    assert_eq!(data["total"], expected.len());
    assert_eq!(
        ids(&data["logs"]),
        expected.iter().map(|r| r.id.clone()).collect::<Vec<_>>()
    );
    assert_eq!(data["page_size"], 500);

    // Errors in the CRM analytics API's envelope.
    for (method, path, body, field) in [
        (
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(json!({"page_size": 501})),
            "page_size",
        ),
        (
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(json!({"levels": ["LOUD"]})),
            "levels[0]",
        ),
        (
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(json!({"start_time": "soon"})),
            "start_time",
        ),
        (
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(json!({"servics": []})),
            "servics",
        ),
        (
            "GET",
            "/api/analytics-monitoring/logs/query?page_size=0",
            None,
            "page_size",
        ),
        (
            "GET",
            "/api/analytics-monitoring/logs/statistics?levels=ERROR",
            None,
            "levels",
        ),
        // Bounded spans: 7 days for the query, 30 for the statistics.
        (
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(json!({"start_time": "2025-01-01T00:00:00", "end_time": "2025-01-09T00:00:00"})),
            "start_time",
        ),
        (
            "GET",
            "/api/analytics-monitoring/logs/query?end_time=2025-01-09T00:00:00&start_time=2024-12-01T00:00:00",
            None,
            "start_time",
        ),
        (
            "GET",
            "/api/analytics-monitoring/logs/statistics?start_time=2024-01-01T00:00:00&end_time=2024-03-01T00:00:00",
            None,
            "start_time",
        ),
        // A one-letter Latin keyword alone narrows nothing.
        (
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(json!({"keyword": "e"})),
            "keyword",
        ),
    ] {
        let reply = env
            .call(method, path, Some(&admin), body)
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["code"], 400, "{path}");
        assert!(
            reply.body["message"].as_str().unwrap().contains("参数"),
            "{}",
            reply.text
        );
        assert_eq!(
            reply.body["data"]["errors"][0]["field"], field,
            "{path}: {}",
            reply.text
        );
    }
    let reply = env
        .call("GET", "/api/analytics-monitoring/logs/query", None, None)
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(reply.body["code"], 401);

    // With another filter, or a Chinese character, a short keyword is fine; and without times the
    // last 24 hours are searched (the dataset lies within them).
    for body in [
        json!({"keyword": "e", "levels": ["ERROR"]}),
        json!({"keyword": "登"}),
    ] {
        env.call(
            "POST",
            "/api/analytics-monitoring/logs/query",
            Some(&admin),
            Some(body),
        )
        .await
        .expect(StatusCode::OK);
    }
    let reply = env
        .call(
            "GET",
            "/api/analytics-monitoring/logs/query?page_size=1",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["total"], records.len());
    let old = env.clock.now() - Duration::days(2);
    ingest(&env.state.index, vec![record(json!({"id": "two-days-old", "timestamp": owl_model::format_timestamp(&old), "message": "old", "service": "foundation-service"}))]).await;
    let reply = env
        .call(
            "GET",
            "/api/analytics-monitoring/logs/query?page_size=1",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.body["data"]["total"],
        records.len(),
        "older than 24 hours is not searched by default"
    );

    // Statistics.
    let path = format!(
        "/api/analytics-monitoring/logs/statistics?services=foundation-service,order-workflow-service&start_time={}&end_time={}",
        naive(&start),
        naive(&end)
    );
    let reply = env
        .call("GET", &path, Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "获取日志统计成功");
    let data = &reply.body["data"];
    let scoped: Vec<&LogRecord> = records
        .iter()
        .filter(|r| {
            r.service.name != "analytics-monitoring-service"
                && r.timestamp >= start
                && r.timestamp < end + Duration::seconds(1)
        })
        .collect();
    let mut by_level: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_service: BTreeMap<String, u64> = BTreeMap::new();
    for r in &scoped {
        *by_level.entry(r.level.python_name()).or_default() += 1;
        *by_service.entry(r.service.name.clone()).or_default() += 1;
    }
    assert_eq!(data["total_logs"], scoped.len());
    assert_eq!(data["by_level"], json!(by_level));
    assert_eq!(data["by_service"], json!(by_service));
    assert_eq!(data["error_count"], by_level.get("ERROR").copied().unwrap_or(0));
    assert_eq!(
        data["warning_count"],
        by_level.get("WARNING").copied().unwrap_or(0)
    );
    assert_eq!(
        data["time_range"],
        json!({ "start": naive(&start), "end": naive(&end) })
    );
    let order: Vec<&String> = data["by_level"].as_object().unwrap().keys().collect();
    assert_eq!(
        order.first().map(|s| s.as_str()),
        Some("DEBUG"),
        "levels from least severe: {order:?}"
    );

    // The caller's scope applies here too: these records carry no environment, a developer sees none.
    let dev = user(&env, &admin, "dev", 3, &[]).await;
    let data = env
        .call("GET", "/api/analytics-monitoring/logs/query", Some(&dev), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone();
    assert_eq!(data["total"], 0);
}
