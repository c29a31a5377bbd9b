//! The curl examples of the log API (`/api/v1/logs/*`, alerts aside) and the CRM analytics API (`/api/analytics-monitoring/logs/*`)
//! sent verbatim, apart from host and token, to a real server holding the records of the seeds'
//! own examples; the answers carry the seeds' shapes and messages.

mod common;
mod logs_common;

use common::{ADMIN_PASSWORD, base_config};
use logs_common::*;
use owl_index::Index;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// The log API's LogItem example, its error example, its trace example (three spans), a slow Form request
/// of now, and the CRM analytics API's log example.
fn seed_records() -> Vec<owl_model::LogRecord> {
    let span = |id: &str, parent: Value, service: &str, at: &str, url: &str, ms: u64| {
        record(json!({
            "@timestamp": at, "level": "INFO", "message": format!("POST {url} | 200 | {ms}ms"),
            "trace": { "id": "CN-1733580000000-a1b2c3d4", "span_id": id, "parent_span_id": parent },
            "http": { "method": "POST", "url": url, "status_code": 200, "duration_ms": ms },
            "service": { "name": service, "region": "CN" }
        }))
    };
    vec![
        record(json!({
            "@timestamp": "2025-12-07T10:30:00.123Z", "level": "ERROR", "message": "POST /api/v1/forms | 500 | 1234ms",
            "trace": { "id": "CN-1733580000000-a1b2c3d4", "span_id": "FORM-1733580000123-x1y2z3" },
            "http": { "request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms", "status_code": 500, "duration_ms": 1234 },
            "user": { "id": "user-001", "name": "zhangsan" },
            "client": { "ip": "192.168.1.100", "user_agent": "Mozilla/5.0..." },
            "service": { "name": "Form", "region": "CN", "instance": "form-pod-1" },
            "error": { "type": "InternalServerError", "message": "Database connection failed" }
        })),
        record(json!({
            "@timestamp": "2025-12-07T10:30:00.123Z", "level": "ERROR", "message": "Database connection failed",
            "trace": { "id": "CN-1733580000000-a1b2c3d4" },
            "http": { "request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms", "status_code": 500, "duration_ms": 1234 },
            "error": { "type": "DatabaseError", "code": "CONNECTION_REFUSED", "message": "Failed to connect to database",
                       "stack": "Error: Failed to connect...\n    at ..." },
            "user": { "id": "user-001", "name": "zhangsan" },
            "service": { "name": "Form", "region": "CN" }
        })),
        span(
            "IAM-1733580000100-m1n2o3",
            Value::Null,
            "IAM",
            "2025-12-07T10:30:00.100Z",
            "/api/v1/auth/verify",
            50,
        ),
        span(
            "APPROVAL-1733580000200-p1q2r3",
            json!("FORM-1733580000123-x1y2z3"),
            "Approval",
            "2025-12-07T10:30:00.300Z",
            "/api/v1/approval/start",
            50,
        ),
        record(json!({
            "@timestamp": ts(&(chrono::Utc::now() - chrono::Duration::minutes(2))), "level": "WARN", "message": "slow submit",
            "trace": { "id": "CN-1733580000000-slow0001" },
            "http": { "request_id": "1733580000999-slw", "method": "POST", "url": "/api/v1/forms/submit", "status_code": 200, "duration_ms": 5234 },
            "user": { "id": "user-001", "name": "zhangsan" },
            "service": { "name": "Form", "region": "CN" }
        })),
        record(json!({
            "id": "507f1f77bcf86cd799439011",
            "timestamp": "2025-01-01T12:00:00",
            "level": "ERROR",
            "message": "用户登录失败：用户名或密码错误",
            "service": "foundation-service",
            "name": "foundation_service.api.v1.auth",
            "function": "login",
            "line": 45,
            "file": "/app/foundation_service/api/v1/auth.py",
            "module": "auth",
            "thread": 12345,
            "process": 1,
            "exception": null,
            "extra": null
        })),
        // Within the last 24 hours: what the CRM analytics API's query finds when it names no time.
        record(json!({
            "id": "recent-login-failure",
            "timestamp": ts(&(chrono::Utc::now() - chrono::Duration::hours(1))),
            "level": "ERROR",
            "message": "用户登录失败：用户名或密码错误",
            "service": "foundation-service",
            "function": "login",
        })),
    ]
}

#[tokio::test]
async fn the_curl_examples_of_003_and_000_run_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let index = Index::open(&config.index_dir(), Default::default()).unwrap();
    ingest(&index, seed_records()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(owl_query_api::run(config, index, listener, shutdown.clone()));
    let client = http_client();
    eventually(30, "the query API to serve", || {
        let (client, host) = (client.clone(), host.clone());
        async move {
            client
                .get(format!("{host}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let login: Value = client
        .post(format!("{host}/api/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["access_token"].as_str().unwrap().to_string();
    // `curl -X METHOD 'URL' -H 'Authorization: Bearer <token>' [-H 'Content-Type: application/json' -d 'BODY']`
    let curl = |method: &str, path: &str, body: Option<&str>| {
        let mut request = client
            .request(method.parse().unwrap(), format!("{host}{path}"))
            .header("Authorization", format!("Bearer {token}"));
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        async move {
            let reply = request.send().await.unwrap();
            let status = reply.status().as_u16();
            let body: Value = reply.json().await.unwrap();
            assert_eq!(status, 200, "{body}");
            body
        }
    };

    // The log API: GET /api/v1/logs/query
    let body = curl(
        "GET",
        "/api/v1/logs/query?page=1&limit=20&level=ERROR&startTime=2025-12-07T00:00:00.000Z&endTime=2025-12-07T23:59:59.999Z",
        None,
    )
    .await;
    assert_eq!(body["success"], true);
    assert_eq!(body["path"], "/api/v1/logs/query");
    let data = &body["data"];
    assert_eq!(
        (data["total"].clone(), data["page"].clone(), data["limit"].clone()),
        (json!(2), json!(1), json!(20))
    );
    assert_eq!(
        (
            data["totalPages"].clone(),
            data["hasNext"].clone(),
            data["hasPrev"].clone()
        ),
        (json!(1), json!(false), json!(false))
    );
    let item = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["service"]["instance"] == "form-pod-1")
        .unwrap();
    assert_eq!(item["@timestamp"], "2025-12-07T10:30:00.123Z");
    assert_eq!(item["level"], "ERROR");
    assert_eq!(
        item["trace"],
        json!({ "id": "CN-1733580000000-a1b2c3d4", "span_id": "FORM-1733580000123-x1y2z3" })
    );
    assert_eq!(
        item["http"],
        json!({ "request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms", "status_code": 500, "duration_ms": 1234.0 })
    );
    assert_eq!(item["user"], json!({ "id": "user-001", "name": "zhangsan" }));
    assert_eq!(
        item["client"],
        json!({ "ip": "192.168.1.100", "user_agent": "Mozilla/5.0..." })
    );
    assert_eq!(
        item["service"],
        json!({ "name": "Form", "region": "CN", "instance": "form-pod-1" })
    );
    assert_eq!(
        item["error"],
        json!({ "type": "InternalServerError", "message": "Database connection failed" })
    );

    // The log API: GET /api/v1/logs/trace/:traceId
    let body = curl("GET", "/api/v1/logs/trace/CN-1733580000000-a1b2c3d4", None).await;
    let data = &body["data"];
    assert_eq!(data["traceId"], "CN-1733580000000-a1b2c3d4");
    // The seed's LogItem example is the Form span here (1234 ms, an error), so the trace ends with it.
    assert_eq!(data["startTime"], "2025-12-07T10:30:00.100Z");
    assert_eq!(data["endTime"], "2025-12-07T10:30:01.357Z");
    assert_eq!(data["totalDuration"], 1257);
    assert_eq!(data["spans"][1]["status"], "ERROR");
    let spans: Vec<(&str, Value)> = data["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["spanId"].as_str().unwrap(), s["parentSpanId"].clone()))
        .collect();
    assert_eq!(
        spans,
        [
            ("IAM-1733580000100-m1n2o3", Value::Null),
            ("FORM-1733580000123-x1y2z3", Value::Null),
            (
                "APPROVAL-1733580000200-p1q2r3",
                json!("FORM-1733580000123-x1y2z3")
            ),
        ]
    );
    assert_eq!(
        data["timeline"][0],
        json!({ "time": 0, "event": "IAM POST /api/v1/auth/verify started" })
    );

    // The log API: GET /api/v1/logs/errors (userId, startTime)
    let body = curl(
        "GET",
        "/api/v1/logs/errors?userId=user-001&startTime=2025-12-07T00:00:00Z",
        None,
    )
    .await;
    let data = &body["data"];
    assert_eq!(data["total"], 2);
    assert_eq!(
        data["summary"]["byType"],
        json!({ "DatabaseError": 1, "InternalServerError": 1 })
    );
    assert_eq!(
        data["summary"]["byHour"],
        json!([{ "hour": "10:00", "time": "2025-12-07T10:00:00.000Z", "count": 2 }])
    );
    let database = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["error"]["type"] == "DatabaseError")
        .unwrap();
    assert_eq!(database["error"]["code"], "CONNECTION_REFUSED");
    assert_eq!(
        database["error"]["stack"],
        "Error: Failed to connect...\n    at ..."
    );

    // The log API: GET /api/v1/logs/slow-requests (thresholdMs, service)
    let body = curl(
        "GET",
        "/api/v1/logs/slow-requests?thresholdMs=3000&service=Form",
        None,
    )
    .await;
    let data = &body["data"];
    assert_eq!(data["total"], 1);
    let item = &data["items"][0];
    assert_eq!(item["traceId"], "CN-1733580000000-slow0001");
    assert_eq!(item["requestId"], "1733580000999-slw");
    assert_eq!(
        (
            item["method"].clone(),
            item["url"].clone(),
            item["duration"].clone()
        ),
        (json!("POST"), json!("/api/v1/forms/submit"), json!(5234))
    );
    assert_eq!(item["user"], json!({ "id": "user-001", "name": "zhangsan" }));
    assert_eq!(
        (item["service"].clone(), item["region"].clone()),
        (json!("Form"), json!("CN"))
    );
    let summary = &data["summary"];
    assert_eq!(
        (
            summary["avgDuration"].clone(),
            summary["maxDuration"].clone(),
            summary["p99Duration"].clone()
        ),
        (json!(5234), json!(5234), json!(5234))
    );
    assert_eq!(
        summary["topPaths"],
        json!([{ "path": "/api/v1/forms/submit", "count": 1, "avgDuration": 5234 }])
    );
    assert_eq!(summary["byService"], json!({ "Form": 1 }));

    // The log API: PUT /api/v1/logs/config {"level": "DEBUG"}
    let body = curl("PUT", "/api/v1/logs/config", Some(r#"{"level": "DEBUG"}"#)).await;
    assert_eq!(body["message"], "日志配置已更新");
    assert_eq!(body["data"]["level"], "DEBUG");
    assert_eq!(body["data"]["updatedBy"], "admin");
    assert_eq!(body["path"], "/api/v1/logs/config");

    // The log API: POST /api/v1/logs/cleanup (dry run of HTTP logs older than 14 days)
    let body = curl(
        "POST",
        "/api/v1/logs/cleanup",
        Some(r#"{"type": "http", "olderThanDays": 14, "dryRun": true}"#),
    )
    .await;
    assert_eq!(body["message"], "日志清理完成（试运行）");
    assert_eq!(body["data"]["dryRun"], true);
    assert!(
        body["data"]["deletedFiles"].as_u64().unwrap() > 0,
        "the 2025-12-07 HTTP partition is older than 14 days"
    );
    assert_eq!(
        body["data"]["details"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["http"]
    );

    // The CRM analytics API: POST /api/analytics-monitoring/logs/query
    let body = curl(
        "POST",
        "/api/analytics-monitoring/logs/query",
        Some(
            r#"{
  "services": ["foundation-service", "order-workflow-service"],
  "levels": ["ERROR", "WARNING"],
  "start_time": "2025-01-01T00:00:00",
  "end_time": "2025-01-01T23:59:59",
  "keyword": "登录失败",
  "file": "auth.py",
  "function": "login",
  "page": 1,
  "page_size": 50
}"#,
        ),
    )
    .await;
    let seed_item = json!({
        "id": "507f1f77bcf86cd799439011",
        "timestamp": "2025-01-01T12:00:00",
        "level": "ERROR",
        "message": "用户登录失败：用户名或密码错误",
        "service": "foundation-service",
        "name": "foundation_service.api.v1.auth",
        "function": "login",
        "line": 45,
        "file": "/app/foundation_service/api/v1/auth.py",
        "module": "auth",
        "thread": 12345,
        "process": 1,
        "exception": null,
        "extra": null
    });
    assert_eq!(body["code"], 200);
    assert_eq!(body["message"], "查询日志成功");
    assert_eq!(
        body["data"],
        json!({ "logs": [seed_item], "total": 1, "page": 1, "page_size": 50, "total_pages": 1 })
    );

    // The CRM analytics API: GET /api/analytics-monitoring/logs/query
    // Without times it searches the last 24 hours (a bounded default), so it finds the recent
    // record and not the one of 2025-01-01.
    let body = curl("GET", "/api/analytics-monitoring/logs/query?services=foundation-service&levels=ERROR,WARNING&page=1&page_size=50", None).await;
    assert_eq!(body["message"], "查询日志成功");
    let ids: Vec<&str> = body["data"]["logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["recent-login-failure"]);

    // The CRM analytics API: GET /api/analytics-monitoring/logs/statistics
    let body = curl(
        "GET",
        "/api/analytics-monitoring/logs/statistics?services=foundation-service&start_time=2025-01-01T00:00:00&end_time=2025-01-01T23:59:59",
        None,
    )
    .await;
    assert_eq!(body["message"], "获取日志统计成功");
    assert_eq!(
        body["data"],
        json!({
            "total_logs": 1,
            "by_level": { "ERROR": 1 },
            "by_service": { "foundation-service": 1 },
            "error_count": 1,
            "warning_count": 0,
            "time_range": { "start": "2025-01-01T00:00:00", "end": "2025-01-01T23:59:59" }
        })
    );

    shutdown.cancel();
    tokio::time::timeout(std::time::Duration::from_secs(10), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
