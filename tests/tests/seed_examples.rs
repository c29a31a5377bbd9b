//! Every curl example of the seed documents, copied here with the seed and line it comes from,
//! sent as written (host and port changed to Owl's, `<token>` replaced by a real token) to a
//! running `owl up --demo`, in document order. Each answers 2xx with the fields its seed shows.
//!
//! Three examples are about systems Owl does not replace, and answer what Owl answers for them:
//! the log API's `POST /api/v1/forms` shows the Data Plane headers a business service returns
//! (checked here on the answer Owl gives that path); the platform API's database instances and
//! its account-sync task type (`/api/instances`, `task_type: sync_accounts`) belong to its
//! database-management side. Its `GET /api/statistics`, which that document gives three
//! meanings, is the one its example asks for: log statistics.

mod common;

use std::time::Duration;

use common::*;
use reqwest::Method;
use serde_json::Value;

/// Whose token an example carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum As {
    /// No `Authorization`.
    Nobody,
    /// The first admin.
    Admin,
    /// The demo's `test001` (developer of 050101).
    Test001,
    /// `test001`'s refresh token (the admin API's refresh takes it as the bearer).
    Test001Refresh,
}

struct Example {
    seed: &'static str,
    line: u32,
    method: &'static str,
    /// Path and query as the seed writes them.
    path: &'static str,
    /// The body as the seed writes it.
    body: Option<&'static str>,
    who: As,
    /// JSON pointers the answer must hold (the fields the seed shows).
    shows: &'static [&'static str],
}

const fn ex(
    seed: &'static str,
    line: u32,
    method: &'static str,
    path: &'static str,
    body: Option<&'static str>,
    who: As,
    shows: &'static [&'static str],
) -> Example {
    Example {
        seed,
        line,
        method,
        path,
        body,
        who,
        shows,
    }
}

const DATAASK: &str = "002_120e9dd3bb1db424.txt";
const LOGS: &str = "003_9c26b88eb14effbd.txt";
const WHALEFALL: &str = "004_556ad90b5091682b.txt";

const LOGIN: &[&str] = &[
    "/code",
    "/message",
    "/data/access_token",
    "/data/refresh_token",
    "/data/token_type",
    "/data/expires_in",
];
const USERS: &[&str] = &[
    "/success",
    "/data/list",
    "/data/pagination/page",
    "/data/pagination/total",
];
const OVERVIEW: &[&str] = &[
    "/success",
    "/data/total_users",
    "/data/total_organizations",
    "/data/charts",
];
const ERRORS: &[&str] = &[
    "/success",
    "/data/items",
    "/data/summary/total",
    "/data/summary/byType",
    "/data/total",
    "/data/page",
];
const TRACE: &[&str] = &[
    "/success",
    "/data/traceId",
    "/data/spans/2/spanId",
    "/data/totalDuration",
];
const SLOW: &[&str] = &[
    "/success",
    "/data/items/0/duration",
    "/data/summary/p95Duration",
    "/data/summary/topPaths",
    "/data/total",
];
const LOG_CONFIG: &[&str] = &[
    "/success",
    "/data/level",
    "/data/updatedAt",
    "/data/updatedBy",
    "/message",
];
const CLEANUP: &[&str] = &[
    "/success",
    "/data/dryRun",
    "/data/deletedFiles",
    "/data/freedSpace",
    "/data/details/http",
    "/message",
];
const ALERT_CONFIG: &[&str] = &[
    "/success",
    "/data/slowRequest/thresholdMs",
    "/data/notifications/slack/enabled",
    "/data/updatedAt",
];

/// The curl examples, in document order.
const EXAMPLES: &[Example] = &[
    ex(
        DATAASK,
        68,
        "POST",
        "/api/auth/login",
        Some(r#"{"username": "test001", "password": "test123"}"#),
        As::Nobody,
        LOGIN,
    ),
    ex(
        DATAASK,
        101,
        "POST",
        "/api/auth/refresh",
        None,
        As::Test001Refresh,
        &[
            "/code",
            "/data/access_token",
            "/data/token_type",
            "/data/expires_in",
        ],
    ),
    ex(
        DATAASK,
        126,
        "POST",
        "/api/auth/logout",
        None,
        As::Test001,
        &["/code", "/message"],
    ),
    ex(
        DATAASK,
        158,
        "GET",
        "/api/auth/profile",
        None,
        As::Test001,
        &[
            "/success",
            "/data/id",
            "/data/org_code",
            "/data/role_code",
            "/data/permissions",
        ],
    ),
    ex(
        DATAASK,
        192,
        "GET",
        "/api/auth/permissions",
        None,
        As::Test001,
        &["/success", "/data/0/permission_code", "/data/0/permission_name"],
    ),
    ex(
        DATAASK,
        240,
        "POST",
        "/api/users",
        Some(
            r#"{"user_code": "test001", "username": "测试用户", "password": "test123", "org_code": "050101", "role_id": 3, "phone": "13800138001", "address": "测试地址"}"#,
        ),
        As::Admin,
        &[
            "/success",
            "/data/id",
            "/data/user_code",
            "/data/org_code",
            "/data/role_id",
            "/data/status",
        ],
    ),
    ex(DATAASK, 302, "GET", "/api/users", None, As::Admin, USERS),
    ex(
        DATAASK,
        306,
        "GET",
        "/api/users?page=1&page_size=10&status=1&org_code=050101",
        None,
        As::Admin,
        &["/success", "/data/list/0/user_code", "/data/pagination/total"],
    ),
    ex(
        DATAASK,
        352,
        "POST",
        "/api/organizations",
        Some(
            r#"{"org_code": "050102", "org_name": "深圳供电局", "parent_code": "0501", "org_level": 2, "description": "深圳供电局", "status": 1}"#,
        ),
        As::Admin,
        &[
            "/success",
            "/data/id",
            "/data/org_code",
            "/data/parent_code",
            "/data/org_level",
        ],
    ),
    ex(
        DATAASK,
        408,
        "GET",
        "/api/organizations?type=tree",
        None,
        As::Admin,
        &["/success", "/data/0/org_code", "/data/0/children/0/org_code"],
    ),
    ex(
        DATAASK,
        412,
        "GET",
        "/api/organizations?type=list&parent_code=0501",
        None,
        As::Admin,
        &["/success", "/data/0/org_code"],
    ),
    ex(
        DATAASK,
        456,
        "POST",
        "/api/roles",
        Some(
            r#"{"role_code": "DEPT_MANAGER", "role_name": "部门经理", "role_level": 2, "description": "部门管理员角色", "status": 1}"#,
        ),
        As::Admin,
        &["/success", "/data/id", "/data/role_code", "/data/role_level"],
    ),
    ex(
        DATAASK,
        494,
        "POST",
        "/api/roles/4/permissions",
        Some(r#"{"permission_ids": [1, 2, 3, 4]}"#),
        As::Admin,
        &["/success", "/message"],
    ),
    ex(
        DATAASK,
        538,
        "GET",
        "/api/analytics/overview",
        None,
        As::Admin,
        OVERVIEW,
    ),
    ex(
        DATAASK,
        542,
        "GET",
        "/api/analytics/overview?start_date=2025-01-01&end_date=2025-12-31&org_code=050101",
        None,
        As::Admin,
        OVERVIEW,
    ),
    ex(
        DATAASK,
        585,
        "POST",
        "/api/analytics/query",
        Some(
            r#"{"start_date": "2025-01-01", "end_date": "2025-12-31", "org_codes": ["050101", "050102"], "metrics": ["user_count", "data_volume"], "dimensions": ["org", "date"], "filters": {"status": 1}}"#,
        ),
        As::Admin,
        &[
            "/success",
            "/data/results",
            "/data/summary/total",
            "/data/summary/aggregations",
        ],
    ),
    ex(
        DATAASK,
        625,
        "POST",
        "/api/auth/login",
        Some(r#"{"username": "test001", "password": "test123"}"#),
        As::Nobody,
        LOGIN,
    ),
    ex(
        LOGS,
        401,
        "GET",
        "/api/v1/logs/query?page=1&limit=20&level=ERROR&startTime=2025-12-07T00:00:00.000Z&endTime=2025-12-07T23:59:59.999Z",
        None,
        As::Admin,
        &[
            "/success",
            "/data/items",
            "/data/total",
            "/data/page",
            "/data/limit",
            "/data/totalPages",
        ],
    ),
    ex(
        LOGS,
        516,
        "GET",
        "/api/v1/logs/trace/CN-1733580000000-a1b2c3d4",
        None,
        As::Admin,
        TRACE,
    ),
    ex(
        LOGS,
        629,
        "GET",
        "/api/v1/logs/errors?userId=user-001&startTime=2025-12-07T00:00:00Z",
        None,
        As::Admin,
        ERRORS,
    ),
    ex(
        LOGS,
        740,
        "GET",
        "/api/v1/logs/slow-requests?thresholdMs=3000&service=Form",
        None,
        As::Admin,
        SLOW,
    ),
    ex(
        LOGS,
        940,
        "PUT",
        "/api/v1/logs/config",
        Some(r#"{"level": "DEBUG"}"#),
        As::Admin,
        LOG_CONFIG,
    ),
    ex(
        LOGS,
        1014,
        "POST",
        "/api/v1/logs/cleanup",
        Some(r#"{"type": "http", "olderThanDays": 14, "dryRun": true}"#),
        As::Admin,
        CLEANUP,
    ),
    ex(
        LOGS,
        1331,
        "PUT",
        "/api/v1/logs/alerts/config",
        Some(r#"{"slowRequest": {"thresholdMs": 3000}}"#),
        As::Admin,
        ALERT_CONFIG,
    ),
    ex(
        LOGS,
        1452,
        "GET",
        "/api/v1/logs/errors?userId=user-001&startTime=2025-12-07T00:00:00Z",
        None,
        As::Admin,
        ERRORS,
    ),
    ex(
        LOGS,
        1459,
        "GET",
        "/api/v1/logs/trace/CN-1733580000000-a1b2c3d4",
        None,
        As::Admin,
        TRACE,
    ),
    ex(
        LOGS,
        1466,
        "GET",
        "/api/v1/logs/slow-requests?thresholdMs=3000&service=Form",
        None,
        As::Admin,
        SLOW,
    ),
    ex(
        LOGS,
        1473,
        "PUT",
        "/api/v1/logs/config",
        Some(r#"{"level": "DEBUG"}"#),
        As::Admin,
        LOG_CONFIG,
    ),
    ex(
        LOGS,
        1482,
        "POST",
        "/api/v1/logs/cleanup",
        Some(r#"{"type": "http", "olderThanDays": 14, "dryRun": true}"#),
        As::Admin,
        CLEANUP,
    ),
    ex(
        LOGS,
        1491,
        "PUT",
        "/api/v1/logs/alerts/config",
        Some(r#"{"slowRequest": {"thresholdMs": 3000}}"#),
        As::Admin,
        ALERT_CONFIG,
    ),
    ex(
        LOGS,
        1500,
        "POST",
        "/api/v1/logs/alerts/test",
        Some(r#"{"channel": "slack", "message": "测试告警消息"}"#),
        As::Admin,
        &[
            "/success",
            "/data/channel",
            "/data/status",
            "/data/sentAt",
            "/message",
        ],
    ),
    ex(
        WHALEFALL,
        543,
        "POST",
        "/auth/login",
        Some(r#"{"username": "admin", "password": "Admin123"}"#),
        As::Nobody,
        &["/status", "/data/access_token", "/data/refresh_token", "/message"],
    ),
    ex(
        WHALEFALL,
        564,
        "GET",
        "/api/statistics?start_date=2025-09-01&end_date=2025-09-18",
        None,
        As::Admin,
        &[
            "/status",
            "/data/total_logs",
            "/data/by_level",
            "/data/by_module",
            "/message",
        ],
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_seed_curl_example_answers_as_its_seed_shows() {
    let hook = webhook_sink().await;
    let node = start_demo_with(|config| {
        // The platform API's examples sign in as admin / Admin123.
        config.auth.admin_password = owl_config::Secret::new("Admin123");
        notify_slack_at(config, &hook);
    })
    .await;
    let http = reqwest::Client::new();
    let admin = admin_token_with(&http, &node, "Admin123").await;
    // The demo's seed trace is tailed and indexed within seconds of the start.
    let trace_url = format!("{}/api/v1/logs/trace/CN-1733580000000-a1b2c3d4", node.query);
    wait_for_json(
        "the seed trace",
        Duration::from_secs(60),
        &http,
        trace_url.clone(),
        &admin,
        |body| body["data"]["spans"].as_array().map(Vec::len) >= Some(3),
    )
    .await;
    // And slow Form requests of the demo (1 in 25 takes 2.1 s to 6 s; 3 s and more are asked).
    wait_for_json(
        "a slow Form request",
        Duration::from_secs(120),
        &http,
        format!(
            "{}/api/v1/logs/slow-requests?thresholdMs=3000&service=Form",
            node.query
        ),
        &admin,
        |body| body["data"]["total"].as_u64() > Some(0),
    )
    .await;

    let (mut test001, mut test001_refresh) = login(&http, &node, "test001", "test123").await;
    for example in EXAMPLES {
        let what = format!(
            "{}:{} {} {}",
            example.seed, example.line, example.method, example.path
        );
        let method = Method::from_bytes(example.method.as_bytes()).unwrap();
        let mut request = http.request(method, format!("{}{}", node.query, example.path));
        let token = match example.who {
            As::Nobody => None,
            As::Admin => Some(admin.clone()),
            As::Test001 => Some(test001.clone()),
            As::Test001Refresh => Some(test001_refresh.clone()),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = example.body {
            request = request.header("Content-Type", "application/json").body(body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{what}: {status} {text}");
        let body: Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"));
        for pointer in example.shows {
            assert!(body.pointer(pointer).is_some(), "{what}: no {pointer} in {text}");
        }
        // The examples after a refresh or logout carry the session's new tokens, as a client would.
        match (example.seed, example.line) {
            (DATAASK, 101) => test001 = body["data"]["access_token"].as_str().unwrap().to_string(),
            (DATAASK, 126) => (test001, test001_refresh) = login(&http, &node, "test001", "test123").await,
            _ => {}
        }
    }
    let _ = test001_refresh;

    // What the seeds' examples show of the demo: test001 of 050101, the trace's three spans in
    // their order, the replayed creates answering the stored resources.
    let (_, users) = get_json(
        &http,
        format!(
            "{}/api/users?page=1&page_size=10&status=1&org_code=050101",
            node.query
        ),
        &admin,
    )
    .await;
    assert_eq!(users["data"]["list"][0]["user_code"], "test001", "{users}");
    let (_, trace) = get_json(&http, trace_url, &admin).await;
    let spans: Vec<&str> = trace["data"]["spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["spanId"].as_str().unwrap())
        .collect();
    for span in [
        "IAM-1733580000100-m1n2o3",
        "FORM-1733580000123-x1y2z3",
        "APPROVAL-1733580000200-p1q2r3",
    ] {
        assert!(spans.contains(&span), "{span} not in {spans:?}");
    }

    // The examples of what Owl does not replace answer in the documented shapes.
    let forms = http
        .post(format!("{}/api/v1/forms", node.query))
        .bearer_auth(&admin)
        .header("X-Trace-Id", "CN-1733580000000-a1b2c3d4")
        .send()
        .await
        .unwrap();
    assert_eq!(forms.headers()["x-trace-id"], "CN-1733580000000-a1b2c3d4");
    assert!(forms.headers().contains_key("x-request-id"));
    assert!(forms.headers().contains_key("x-response-time"));
    let instances = http
        .get(format!("{}/api/instances", node.query))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(instances.status(), 404);
    let sync: Value = http
        .post(format!("{}/api/jobs", node.query))
        .bearer_auth(&admin)
        .header("Content-Type", "application/json")
        .body(r#"{"name": "账户同步任务", "task_type": "sync_accounts", "db_type": "postgresql", "schedule": "0 */30 * * * *", "description": "每30分钟同步一次账户"}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sync["status"], "error", "{sync}");
    node.stop().await;
}
