//! `owl up` end to end: the roles start on free ports with a temporary data dir, report healthy,
//! and a line written to a tailed file comes out of the other end.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owl_up_serves_health_and_a_tailed_line_becomes_searchable() {
    let node = start().await;
    let http = reqwest::Client::new();

    // Health, then the detailed report of every component.
    let detailed: Value = wait_for("query API health", Duration::from_secs(60), || async {
        let response = http
            .get(format!("{}/health/detailed", node.query))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json().await.ok()
    })
    .await;
    assert_eq!(detailed["status"], "success", "{detailed}");
    // In public only the statuses of the platform API's example; details need a signed-in user.
    assert!(detailed["data"]["checks"].is_null(), "{detailed}");
    for component in ["database", "redis"] {
        assert!(
            !detailed["data"][component].is_null(),
            "component {component} missing: {detailed}"
        );
    }
    let health: Value = http
        .get(format!("{}/api/health", node.query))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["data"]["status"], "healthy");
    let response = http
        .get(format!("{}/health", node.collector))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(response.headers().contains_key("x-trace-id"));

    // The first admin logs in with the configured password.
    let login: Value = http
        .post(format!("{}/api/auth/login", node.query))
        .json(&serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["data"]["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token in {login}"))
        .to_string();
    assert!(!token.is_empty());

    // A line written to the tailed file reaches the index through agent and collector.
    let marker = format!("e2e-marker-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap());
    let line = serde_json::json!({
        "@timestamp": owl_model::format_timestamp(&chrono::Utc::now()),
        "level": "ERROR",
        "message": format!("{marker} payment failed password=hunter2"),
        "trace": {"id": "CN-1733580000000-a1b2c3d4"},
    });
    append(&node.logs.path().join("app.log"), &line.to_string());
    let index = owl_index::Index::open_reader(&node.data_dir.path().join("index")).unwrap();
    let found = wait_for("the tailed line in the index", Duration::from_secs(30), || {
        let found = search_recent(
            &index,
            owl_index::LogFilter {
                keyword: Some(marker.clone()),
                ..owl_index::LogFilter::default()
            },
        );
        async move { found }
    })
    .await;
    assert_eq!(found.total, 1, "the line is stored exactly once");
    let record = &found.hits[0];
    assert_eq!(record.service.name, "Form");
    assert_eq!(record.service.region.as_deref(), Some("CN"));
    assert!(
        record.message.contains("password=***REDACTED***"),
        "masked at write time: {}",
        record.message
    );
    assert!(!record.message.contains("hunter2"));

    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_config_change_applies_before_the_put_answers() {
    let node = start().await;
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node).await;
    // 150 ms is far under the default 2000 ms threshold; the PUT lowers it to 100 ms.
    let put = http
        .put(format!("{}/api/v1/logs/alerts/config", node.query))
        .bearer_auth(&token)
        .json(&serde_json::json!({"slowRequest": {"thresholdMs": 100}}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    // The very next record, right after the answer, is judged by the new threshold.
    let agent_token = std::fs::read_to_string(node.data_dir.path().join("agent-token")).unwrap();
    let line = serde_json::json!({
        "@timestamp": owl_model::format_timestamp(&chrono::Utc::now()),
        "level": "INFO",
        "message": "GET /api/v1/forms 200",
        "service": {"name": "Form", "region": "CN"},
        "http": {"method": "GET", "url": "/api/v1/forms", "status_code": 200, "duration_ms": 150},
    });
    let ingest = http
        .post(format!("{}/api/v1/ingest", node.collector))
        .bearer_auth(agent_token.trim())
        .body(format!("{line}\n"))
        .send()
        .await
        .unwrap();
    assert!(ingest.status().is_success(), "{}", ingest.text().await.unwrap());
    let alerts = wait_for_json(
        "the SLOW_REQUEST alert",
        Duration::from_secs(20),
        &http,
        format!("{}/api/v1/logs/alerts?type=SLOW_REQUEST", node.query),
        &token,
        |body| body["data"]["total"].as_u64() > Some(0),
    )
    .await;
    assert_eq!(alerts["data"]["items"][0]["type"], "SLOW_REQUEST", "{alerts}");
    node.stop().await;
}

/// The platform API's scheduled jobs over `owl up`: the built-in jobs exist from the first start,
/// a run asked for is started by the scheduler where the index is and recorded with what it did,
/// one run at a time, and a bad schedule is a 400 naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owl_up_lists_runs_and_steers_its_jobs() {
    lists_runs_and_steers_its_jobs(start().await).await;
}

/// The same with Owl's whole schema on MariaDB (`storage.database_url = "mariadb://..."`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owl_up_on_mariadb_lists_runs_and_steers_its_jobs() {
    if owl_sql::testing::services_skipped() {
        eprintln!("skipping MariaDB: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = owl_sql::testing::TempDatabase::mysql("owl_up_test").await;
    let url = database.url();
    let node = start_tweaked(|config| config.storage.database_url = owl_config::Secret::new(&url)).await;
    lists_runs_and_steers_its_jobs(node).await;
}

async fn lists_runs_and_steers_its_jobs(node: Node) {
    let http = reqwest::Client::new();
    let token = admin_token(&http, &node).await;
    let call = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let request = http
            .request(method, format!("{}{path}", node.query))
            .bearer_auth(&token);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<Value>().await.unwrap())
        }
    };
    let (status, list) = call(reqwest::Method::GET, "/api/jobs", None).await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(list["status"], "success");
    let names: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "audit_retention",
            "disk_check",
            "merge_partitions",
            "retention",
            "warm_analytics_cache"
        ]
    );
    let retention = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "retention")
        .unwrap()
        .clone();
    assert_eq!(retention["status"], "active");
    assert_eq!(retention["builtin"], true);
    assert!(retention["next_run_at"].is_string(), "{retention}");
    let id = retention["id"].as_str().unwrap().to_string();

    // Run now: queued at once, started where the index is, recorded with its report.
    let (status, run) = call(reqwest::Method::POST, &format!("/api/jobs/{id}/run"), None).await;
    assert_eq!(status, 202, "{run}");
    let run_id = run["data"]["run_id"].as_str().unwrap().to_string();
    let runs = finished_run(&http, &node, &token, &id).await;
    assert_eq!(runs["data"][0]["id"], run_id.as_str());
    assert_eq!(runs["data"][0]["trigger"], "manual");
    assert!(runs["data"][0]["duration_ms"].is_i64(), "{runs}");
    assert_eq!(runs["data"][0]["detail"]["policy"]["http_days"], 14, "{runs}");
    assert_eq!(runs["pagination"]["total"], 1);

    // The disk check samples this host for the alert rules: with thresholds every disk passes,
    // its run raises DISK_SPACE.
    let put = http
        .put(format!("{}/api/v1/logs/alerts/config", node.query))
        .bearer_auth(&token)
        .json(&serde_json::json!({"diskSpace": {"enabled": true, "warningPercent": 0.01, "criticalPercent": 0.02}}))
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.text().await.unwrap());
    let disk = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "disk_check")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, _) = call(reqwest::Method::POST, &format!("/api/jobs/{disk}/run"), None).await;
    assert_eq!(status, 202);
    let runs = finished_run(&http, &node, &token, &disk).await;
    assert!(
        runs["data"][0]["detail"]["disks"]
            .as_array()
            .is_some_and(|d| !d.is_empty()),
        "{runs}"
    );
    wait_for_json(
        "the DISK_SPACE alert",
        Duration::from_secs(20),
        &http,
        format!("{}/api/v1/logs/alerts?type=DISK_SPACE", node.query),
        &token,
        |body| body["data"]["total"].as_u64() > Some(0),
    )
    .await;

    // Paused, it says so; a bad schedule names the field; an unknown task type is named too.
    let (status, paused) = call(reqwest::Method::POST, &format!("/api/jobs/{id}/pause"), None).await;
    assert_eq!(
        (status, paused["data"]["status"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    let (status, refused) = call(
        reqwest::Method::PUT,
        &format!("/api/jobs/{id}"),
        Some(serde_json::json!({"schedule": "every hour"})),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert_eq!(refused["status"], "error");
    assert!(
        refused["message"].as_str().unwrap().contains("every hour"),
        "{refused}"
    );
    let (status, created) = call(
        reqwest::Method::POST,
        "/api/jobs",
        Some(serde_json::json!({
            "name": "账户同步任务", "task_type": "sync_accounts", "db_type": "postgresql",
            "schedule": "0 */30 * * * *", "description": "每30分钟同步一次账户"
        })),
    )
    .await;
    assert_eq!(status, 400, "{created}");
    assert!(
        created["message"].as_str().unwrap().contains("sync_accounts"),
        "{created}"
    );
    let (status, refused) = call(
        reqwest::Method::POST,
        "/api/jobs",
        Some(
            serde_json::json!({"name": "warm", "task_type": "warm_analytics_cache",
                                "schedule": "0 4 * * *", "params": {"max_scopes": 0}}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("max_scopes"),
        "{refused}"
    );

    // The cache warming, run by the query API's scheduler: the seven figures for the one scope
    // (the admin's), after which a request without parameters is a hit.
    let warm = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "warm_analytics_cache")
        .unwrap()
        .clone();
    assert_eq!(warm["schedule"], "0 */4 * * * *", "{warm}");
    let warm_id = warm["id"].as_str().unwrap().to_string();
    let (status, run) = call(reqwest::Method::POST, &format!("/api/jobs/{warm_id}/run"), None).await;
    assert_eq!(status, 202, "{run}");
    let runs = finished_run(&http, &node, &token, &warm_id).await;
    assert_eq!(runs["data"][0]["records"], 7, "{runs}");
    assert_eq!(runs["data"][0]["detail"]["scopes"], 1, "{runs}");
    assert!(
        runs["data"][0]["runner"]
            .as_str()
            .unwrap()
            .ends_with(":query-api"),
        "{runs}"
    );
    let summary = http
        .get(format!(
            "{}/api/analytics-monitoring/analytics/customers/summary",
            node.query
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(summary.headers()["x-cache"], "HIT");

    // A cleanup on a schedule: its parameters are checked, and a run reports what it dropped.
    let (status, refused) = call(
        reqwest::Method::POST,
        "/api/jobs",
        Some(
            serde_json::json!({"name": "weekly http cleanup", "task_type": "cleanup",
                                 "schedule": "0 4 * * 0", "params": {"type": "http"}}),
        ),
    )
    .await;
    assert_eq!(status, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("olderThanDays"),
        "{refused}"
    );
    let (status, cleanup) = call(
        reqwest::Method::POST,
        "/api/jobs",
        Some(
            serde_json::json!({"name": "weekly http cleanup", "task_type": "cleanup",
                                 "schedule": "0 4 * * 0", "params": {"type": "http", "olderThanDays": 7}}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{cleanup}");
    let cleanup_id = cleanup["data"]["id"].as_str().unwrap().to_string();
    let (status, _) = call(
        reqwest::Method::POST,
        &format!("/api/jobs/{cleanup_id}/run"),
        None,
    )
    .await;
    assert_eq!(status, 202);
    let runs = finished_run(&http, &node, &token, &cleanup_id).await;
    assert_eq!(runs["data"][0]["detail"]["params"]["olderThanDays"], 7, "{runs}");

    // A job of one's own: created, disabled (then it does not run), deleted.
    let (status, created) = call(
        reqwest::Method::POST,
        "/api/jobs",
        Some(serde_json::json!({
            "name": "audit sweep", "task_type": "audit_retention", "schedule": "0 */30 * * * *",
            "description": "every half hour"
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let own = created["data"]["id"].as_str().unwrap().to_string();
    let (status, _) = call(reqwest::Method::POST, &format!("/api/jobs/{own}/disable"), None).await;
    assert_eq!(status, 200);
    let (status, refused) = call(reqwest::Method::POST, &format!("/api/jobs/{own}/run"), None).await;
    assert_eq!(status, 409, "a disabled job does not run: {refused}");
    let (status, _) = call(reqwest::Method::DELETE, &format!("/api/jobs/{own}"), None).await;
    assert_eq!(status, 200);
    let (status, _) = call(reqwest::Method::GET, &format!("/api/jobs/{own}"), None).await;
    assert_eq!(status, 404);
    let (status, refused) = call(reqwest::Method::DELETE, &format!("/api/jobs/{id}"), None).await;
    assert_eq!(status, 403, "built-in jobs are disabled, not deleted: {refused}");
    // Every change was audited, with the job it changed.
    let (status, audit) = call(
        reqwest::Method::GET,
        "/api/foundation/audit-logs?resource_type=job&page_size=50",
        None,
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let entries: Vec<(String, String)> = audit["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let path = e["path"].as_str().unwrap_or_default().to_string();
            (
                format!("{} {path}", e["method"].as_str().unwrap_or_default()),
                e["resource_id"].to_string(),
            )
        })
        .collect();
    for expected in [
        format!("POST /api/jobs/{id}/run"),
        format!("POST /api/jobs/{id}/pause"),
        format!("PUT /api/jobs/{id}"),
        format!("POST /api/jobs/{own}/disable"),
        format!("DELETE /api/jobs/{own}"),
    ] {
        assert!(
            entries.iter().any(|(e, _)| *e == expected),
            "{expected} in {entries:?}"
        );
    }
    assert!(
        entries
            .iter()
            .any(|(e, resource)| e == "POST /api/jobs" && resource.contains(&own)),
        "the creation names the new job: {entries:?}"
    );
    node.stop().await;
}

/// The runs of a job once its newest run succeeded.
async fn finished_run(http: &reqwest::Client, node: &Node, token: &str, job: &str) -> Value {
    wait_for_json(
        "the job's run to finish",
        Duration::from_secs(20),
        http,
        format!("{}/api/jobs/{job}/runs", node.query),
        token,
        |body| body["data"][0]["status"] == "succeeded",
    )
    .await
}
