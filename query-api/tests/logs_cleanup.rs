//! `POST /api/v1/logs/cleanup`: dry runs that only measure, real runs that free the partitions, in
//! `owl up` (this process holds the index writer) and beside a collector (the collector's worker
//! deletes), and one cleanup at a time (`409 LOG_CLEANUP_IN_PROGRESS`).

mod common;
mod logs_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use common::{ADMIN_PASSWORD, TestEnv, Variant, base_config};
use logs_common::*;
use owl_index::Index;
use owl_logconfig::{LogConfig, LogConfigRuntime, LogConfigStore};
use owl_model::LogRecord;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

/// An HTTP, an application and an error record on the day `days_ago` days before `now`.
fn day_records(now: DateTime<Utc>, days_ago: i64) -> Vec<LogRecord> {
    let at = ts(&(now - chrono::Duration::days(days_ago)));
    vec![
        record(
            json!({ "id": format!("http-{days_ago}"), "@timestamp": at, "level": "INFO", "message": "GET /a",
            "http": { "method": "GET", "url": "/a", "status_code": 200, "duration_ms": 4 }, "service": "Form" }),
        ),
        record(
            json!({ "id": format!("app-{days_ago}"), "@timestamp": at, "level": "INFO", "message": "started", "service": "Form" }),
        ),
        record(
            json!({ "id": format!("error-{days_ago}"), "@timestamp": at, "level": "ERROR", "message": "boom", "service": "Form" }),
        ),
    ]
}

/// Files and bytes under a directory.
fn usage(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() {
            let inner = usage(&entry.path());
            total = (total.0 + inner.0, total.1 + inner.1);
        } else {
            total = (total.0 + 1, total.1 + meta.len());
        }
    }
    total
}

fn partition(root: &Path, kind: &str, now: DateTime<Utc>, days_ago: i64) -> PathBuf {
    root.join(kind).join(
        (now - chrono::Duration::days(days_ago))
            .format("%Y-%m-%d")
            .to_string(),
    )
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    if bytes < 1024 {
        return format!("{bytes}B");
    }
    let (mut value, mut unit) = (bytes as f64, 0);
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    let text = format!("{value:.1}");
    format!("{}{}", text.strip_suffix(".0").unwrap_or(&text), UNITS[unit])
}

/// Writes old data and lets the writer settle (merges finished), so file counts hold still.
async fn seed(index: &Index, now: DateTime<Utc>) {
    let mut records = Vec::new();
    for days in [40, 20, 3, 0] {
        records.extend(day_records(now, days));
    }
    ingest(index, records).await;
    let index = index.clone();
    tokio::task::spawn_blocking(move || index.close().unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn dry_run_measures_and_a_real_run_frees_the_partitions() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    let now = env.clock.now();
    seed(&env.state.index, now).await;
    let admin = env.admin().await;
    let root = env.state.index.root().to_path_buf();
    let old_http = [
        partition(&root, "http", now, 40),
        partition(&root, "http", now, 20),
    ];
    let (files, bytes) = old_http
        .iter()
        .map(|d| usage(d))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    assert!(files > 0 && bytes > 0);

    // The log API's example: a dry run of HTTP records older than 14 days.
    let body = json!({"type": "http", "olderThanDays": 14, "dryRun": true});
    let reply = env
        .call("POST", "/api/v1/logs/cleanup", Some(&admin), Some(body))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "日志清理完成（试运行）");
    let data = &reply.body["data"];
    assert_eq!(data["dryRun"], true);
    assert_eq!(data["deletedFiles"], files);
    assert_eq!(data["freedSpace"], human(bytes));
    assert_eq!(
        data["details"],
        json!({ "http": { "files": files, "size": human(bytes), "bytes": bytes } })
    );
    assert!(owl_model::parse_timestamp(data["completedAt"].as_str().unwrap()).is_some());
    assert!(old_http.iter().all(|d| d.exists()), "a dry run deletes nothing");
    let old = |days: i64| {
        let at = now - chrono::Duration::days(days);
        format!(
            "startTime={}&endTime={}",
            enc(&ts(&(at - chrono::Duration::hours(1)))),
            enc(&ts(&(at + chrono::Duration::hours(1))))
        )
    };
    let count = |query: String| {
        let env = &env;
        let admin = admin.clone();
        async move {
            env.call("GET", &format!("/api/v1/logs/query?{query}"), Some(&admin), None)
                .await
                .expect(StatusCode::OK)
                .body["data"]["total"]
                .as_u64()
                .unwrap()
        }
    };
    assert_eq!(count(old(40)).await, 3);

    // For real: the same partitions go, the rest stays.
    let body = json!({"type": "http", "olderThanDays": 14});
    let reply = env
        .call("POST", "/api/v1/logs/cleanup", Some(&admin), Some(body))
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "日志清理完成");
    assert_eq!(reply.body["data"]["dryRun"], false);
    assert_eq!(reply.body["data"]["deletedFiles"], files);
    assert_eq!(reply.body["data"]["freedBytes"], bytes);
    assert!(old_http.iter().all(|d| !d.exists()), "the partitions are deleted");
    assert_eq!(
        count(old(40)).await,
        2,
        "the application and error records of that day stay"
    );
    assert_eq!(count(format!("{}&level=INFO", old(20))).await, 1);
    assert!(partition(&root, "http", now, 3).exists());

    // Without olderThanDays, the configured retention applies to each kind.
    env.call(
        "PUT",
        "/api/v1/logs/config",
        Some(&admin),
        Some(json!({"retention": {"application": 30, "error": 10}})),
    )
    .await
    .expect(StatusCode::OK);
    let reply = env
        .call("POST", "/api/v1/logs/cleanup", Some(&admin), Some(json!({})))
        .await
        .expect(StatusCode::OK);
    let details = &reply.body["data"]["details"];
    assert_eq!(
        details.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["http", "application", "error"]
    );
    assert_eq!(details["http"]["files"], 0);
    assert!(details["application"]["files"].as_u64().unwrap() > 0);
    assert!(!partition(&root, "application", now, 40).exists());
    assert!(
        partition(&root, "application", now, 20).exists(),
        "30 days of application records are kept"
    );
    assert!(
        !partition(&root, "error", now, 20).exists(),
        "10 days of error records are kept"
    );
    assert!(partition(&root, "error", now, 3).exists());

    // Bad bodies.
    for (body, field) in [
        (json!({"type": "logs"}), "type"),
        (json!({"olderThanDays": 0}), "olderThanDays"),
        (json!({"olderThanDays": "ten"}), "olderThanDays"),
        (json!({"dryrun": true}), "dryrun"),
    ] {
        let reply = env
            .call("POST", "/api/v1/logs/cleanup", Some(&admin), Some(body.clone()))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"]["code"], "LOG_QUERY_INVALID_PARAMS", "{body}");
        assert_eq!(reply.body["error"]["field"], field, "{body}: {}", reply.text);
    }
    // ops may clean up.
    let ops = user(&env, &admin, "ops", 2, &[]).await;
    env.call(
        "POST",
        "/api/v1/logs/cleanup",
        Some(&ops),
        Some(json!({"dryRun": true})),
    )
    .await
    .expect(StatusCode::OK);
}

async fn login(client: &reqwest::Client, base: &str) -> String {
    let reply: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    reply["data"]["access_token"].as_str().unwrap().to_string()
}

async fn cleanup(client: &reqwest::Client, base: &str, token: &str, body: Value) -> (u16, Value) {
    let reply = client
        .post(format!("{base}/api/v1/logs/cleanup"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (reply.status().as_u16(), reply.json().await.unwrap())
}

#[tokio::test]
async fn beside_a_collector_the_cleanup_is_queued_and_runs_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let config = base_config(dir.path());
    let now = Utc::now();
    // The collector's side holds the writer; the query API reads.
    let writer = Index::open(&config.index_dir(), Default::default()).unwrap();
    seed(&writer, now).await;
    let reader = Index::open_reader(&config.index_dir()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(owl_query_api::run(
        config.clone(),
        reader,
        listener,
        shutdown.clone(),
    ));
    let client = http_client();
    eventually(30, "the query API to serve", || {
        let (client, base) = (client.clone(), base.clone());
        async move {
            client
                .get(format!("{base}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    let token = login(&client, &base).await;

    // No worker yet: the first cleanup waits in the queue, a second one is refused.
    let first = tokio::spawn({
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            cleanup(
                &client,
                &base,
                &token,
                json!({"type": "all", "olderThanDays": 14}),
            )
            .await
        }
    });
    let db = owl_sql::Db::connect(&config.database_url(), 2).await.unwrap();
    let store = LogConfigStore::new(db, LogConfig::defaults(&config));
    eventually(10, "the cleanup to be queued", || {
        let store = store.clone();
        async move { store.active_cleanup().await.unwrap().is_some() }
    })
    .await;
    let (status, body) = cleanup(
        &client,
        &base,
        &token,
        json!({"type": "http", "olderThanDays": 30}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "LOG_CLEANUP_IN_PROGRESS");
    assert_eq!(body["statusCode"], 409);
    let (status, body) = cleanup(
        &client,
        &base,
        &token,
        json!({"type": "all", "olderThanDays": 14, "dryRun": true}),
    )
    .await;
    assert_eq!(status, 200, "dry runs only read: {body}");
    let expected_files = body["data"]["deletedFiles"].as_u64().unwrap();
    assert!(expected_files > 0);

    // The collector's worker takes it and deletes.
    let stop = CancellationToken::new();
    let runtime = LogConfigRuntime::start_with(
        store.clone(),
        Some(writer.clone()),
        Duration::from_millis(50),
        stop.clone(),
    )
    .await;
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "日志清理完成");
    assert_eq!(body["data"]["deletedFiles"], expected_files);
    let root = config.index_dir();
    for kind in ["http", "application", "error"] {
        assert!(!partition(&root, kind, now, 40).exists(), "{kind}");
        assert!(!partition(&root, kind, now, 20).exists(), "{kind}");
        assert!(partition(&root, kind, now, 3).exists(), "{kind}");
    }
    // The lock is released: the next one runs (and finds nothing more to delete).
    let (status, body) = cleanup(&client, &base, &token, json!({"olderThanDays": 14})).await;
    assert_eq!(
        (status, body["data"]["deletedFiles"].clone()),
        (200, json!(0)),
        "{body}"
    );

    stop.cancel();
    runtime.stopped().await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}
