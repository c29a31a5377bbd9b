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
    let alerts: Value = wait_for("the SLOW_REQUEST alert", Duration::from_secs(20), || async {
        let body: Value = http
            .get(format!("{}/api/v1/logs/alerts?type=SLOW_REQUEST", node.query))
            .bearer_auth(&token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (body["data"]["total"].as_u64() > Some(0)).then_some(body)
    })
    .await;
    assert_eq!(alerts["data"]["items"][0]["type"], "SLOW_REQUEST", "{alerts}");
    node.stop().await;
}
