//! `GET`/`PUT /api/v1/logs/config` on SQLite and PostgreSQL, and the collector applying a change
//! without a restart: its ingest filter is `owl_logconfig`'s live settings, reading the same
//! database through a pool of its own as a separate `owl collector` process would.

mod common;
mod logs_common;

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use common::{TestEnv, Variant};
use logs_common::*;
use owl_logconfig::{LogConfig, LogConfigRuntime, LogConfigStore};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

async fn config_round_trip(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    // Defaults: everything stored, retention from the config file.
    let reply = env
        .call("GET", "/api/v1/logs/config", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let data = &reply.body["data"];
    assert_eq!(data["level"], "DEBUG");
    assert_eq!(data["sampling"]["enabled"], false);
    assert_eq!(
        data["sampling"]["rules"]["alwaysLog"]["levels"],
        json!(["ERROR", "WARN"])
    );
    assert_eq!(
        data["sampling"]["rules"]["neverLog"]["paths"],
        json!(["/health", "/ready", "/metrics"])
    );
    assert_eq!(
        data["retention"],
        json!({ "http": 14, "application": 30, "error": 30 })
    );
    assert_eq!(data["alerts"]["slowRequest"]["thresholdMs"], 2000);
    assert_eq!(data["updatedBy"], "system");

    // The log API's example.
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/config",
            Some(&admin),
            Some(json!({"level": "DEBUG"})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "日志配置已更新");
    assert_eq!(reply.body["data"]["updatedBy"], "admin");
    assert!(owl_model::parse_timestamp(reply.body["data"]["updatedAt"].as_str().unwrap()).is_some());

    let change = json!({
        "level": "WARN",
        "sampling": { "enabled": true, "rules": {
            "alwaysLog": { "levels": ["ERROR"], "paths": ["/api/v1/auth/*", "/api/v1/pay/**"] },
            "neverLog": { "paths": ["/health"] },
            "dynamic": { "qpsThreshold": 500, "minSampleRate": 0.2, "maxSampleRate": 0.9 }
        }},
        "retention": { "http": 7 },
        "alerts": { "slowRequest": { "thresholdMs": 3000 } }
    });
    let reply = env
        .call("PUT", "/api/v1/logs/config", Some(&admin), Some(change))
        .await
        .expect(StatusCode::OK);
    let stored = config_of(&env, &admin).await;
    assert_eq!(stored, reply.body["data"], "what PUT answers is what GET reads");
    assert_eq!(stored["level"], "WARN");
    assert_eq!(
        stored["sampling"]["rules"]["alwaysLog"],
        json!({ "levels": ["ERROR"], "paths": ["/api/v1/auth/*", "/api/v1/pay/**"] })
    );
    assert_eq!(
        stored["sampling"]["rules"]["dynamic"],
        json!({ "qpsThreshold": 500, "minSampleRate": 0.2, "maxSampleRate": 0.9 })
    );
    assert_eq!(
        stored["retention"],
        json!({ "http": 7, "application": 30, "error": 30 })
    );
    assert_eq!(stored["alerts"]["slowRequest"]["thresholdMs"], 3000);
    assert_eq!(stored["alerts"]["slowRequest"]["enabled"], true);

    // Persisted: another store over the same database reads it.
    let store = LogConfigStore::new(env.state.db.sql_db().clone(), LogConfig::default());
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.version, 2);
    assert_eq!(loaded.config.level, owl_model::Level::Warn);

    // Validation: every problem, with its field; nothing is stored.
    let bad = json!({
        "level": "LOUD",
        "sampling": { "rules": { "dynamic": { "minSampleRate": 1.5 }, "neverLog": { "paths": ["health"] } } },
        "retention": { "error": 0 }
    });
    let reply = env
        .call("PUT", "/api/v1/logs/config", Some(&admin), Some(bad))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_QUERY_INVALID_PARAMS");
    let fields = error_fields(&reply.body);
    assert_eq!(
        fields,
        [
            "level",
            "sampling.rules.neverLog.paths[0]",
            "sampling.rules.dynamic.minSampleRate",
            "retention.error"
        ]
    );
    assert_eq!(reply.body["error"]["field"], "level");
    for body in [
        json!({"levle": "DEBUG"}),
        json!({}),
        json!({"retention": {"http": "seven"}}),
        json!([1]),
    ] {
        let reply = env
            .call("PUT", "/api/v1/logs/config", Some(&admin), Some(body.clone()))
            .await
            .expect(StatusCode::BAD_REQUEST);
        assert_eq!(reply.body["error"]["code"], "LOG_QUERY_INVALID_PARAMS", "{body}");
    }
    assert_eq!(store.load().await.unwrap().version, 2);

    // Roles: ops and developers have no log:config.
    let ops = user(&env, &admin, "ops", 2, &[]).await;
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/config",
            Some(&ops),
            Some(json!({"level": "INFO"})),
        )
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(reply.body["error"]["code"], "LOG_PERMISSION_DENIED");

    // A store failure is LOG_CONFIG_UPDATE_FAILED.
    sqlx::query("DROP TABLE log_config")
        .execute(env.state.db.pool())
        .await
        .unwrap();
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/config",
            Some(&admin),
            Some(json!({"level": "INFO"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR, "{}", reply.text);
    assert_eq!(reply.body["error"]["code"], "LOG_CONFIG_UPDATE_FAILED");
    assert_eq!(reply.body["statusCode"], 500);
}

on_every_backend!(config_round_trip);

/// The alert section of the log config is the alert store's: a change through `/logs/config`
/// lands in `alert_config` without touching the channels there, whose secrets stay sealed.
#[tokio::test]
async fn alert_thresholds_live_in_the_alert_store() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    let admin = env.admin().await;
    env.call(
        "PUT",
        "/api/v1/logs/alerts/config",
        Some(&admin),
        Some(json!({ "slowRequest": { "enabled": true, "thresholdMs": 2500, "excludePaths": [] },
                     "notifications": { "slack": { "enabled": true, "webhookUrl": "https://hooks.example/T0" } } })),
    )
    .await
    .expect(StatusCode::OK);
    let data = config_of(&env, &admin).await;
    assert_eq!(data["alerts"]["slowRequest"]["thresholdMs"], 2500);
    assert_eq!(
        data["alerts"]["notifications"]["slack"]["webhookConfigured"],
        true
    );
    assert!(
        !data.to_string().contains("hooks.example"),
        "secrets are write-only: {data}"
    );
    env.call(
        "PUT",
        "/api/v1/logs/config",
        Some(&admin),
        Some(json!({"alerts": {"slowRequest": {"thresholdMs": 3000}}})),
    )
    .await
    .expect(StatusCode::OK);
    let (text, version): (String, i64) =
        sqlx::query_as("SELECT settings, version FROM alert_config WHERE id = 1")
            .fetch_one(env.state.db.pool())
            .await
            .unwrap();
    assert_eq!(version, 2);
    assert!(
        !text.contains("hooks.example"),
        "the webhook stays sealed at rest: {text}"
    );
    let effective = owl_alerts::AlertStore::new(env.state.db.sql_db().clone(), env.state.secrets.clone())
        .effective_settings(&env.state.config)
        .await
        .unwrap();
    assert_eq!(effective.settings.slow_request.threshold_ms, 3000);
    assert_eq!(
        effective.settings.notifications.slack.webhook_url,
        "https://hooks.example/T0"
    );
}

/// One `PUT` is one transaction: when the alert part is refused, the log part is not stored
/// either, and every problem of both parts is named.
#[tokio::test]
async fn a_refused_alert_section_stores_nothing() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    let admin = env.admin().await;
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/config",
            Some(&admin),
            Some(json!({
                "retention": { "http": 0 },
                "level": "WARN",
                "alerts": { "slowRequest": { "thresholdMs": 0 } }
            })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    let fields = error_fields(&reply.body);
    assert_eq!(fields, ["retention.http", "alerts.slowRequest.thresholdMs"]);
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/config",
            Some(&admin),
            Some(json!({ "level": "WARN", "alerts": { "slowRequest": { "thresholdMs": 0 } } })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "alerts.slowRequest.thresholdMs");
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/config",
            Some(&admin),
            Some(json!({ "alerts": { "slowRequest": { "thresholdMS": 10 } } })),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    let field = reply.body["error"]["field"].as_str().unwrap_or_default();
    assert!(field.starts_with("alerts.slowRequest"), "{}", reply.text);
    // A valid alert part written inside the transaction rolls back with the refused log part.
    env.call(
        "PUT",
        "/api/v1/logs/config",
        Some(&admin),
        Some(json!({ "retention": { "http": 0 }, "alerts": { "slowRequest": { "thresholdMs": 2500 } } })),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    let data = config_of(&env, &admin).await;
    assert_eq!(data["level"], "DEBUG", "the log part was not stored");
    assert_eq!(data["alerts"]["slowRequest"]["thresholdMs"], 2000);
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM log_config")
        .fetch_one(env.state.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0);
    let (rows,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM alert_config")
        .fetch_one(env.state.db.pool())
        .await
        .unwrap();
    assert_eq!(rows, 0, "the alert part rolled back");
}

/// `GET /api/v1/logs/config` as `token`: the answer's `data`.
async fn config_of(env: &TestEnv, token: &str) -> Value {
    env.call("GET", "/api/v1/logs/config", Some(token), None)
        .await
        .expect(StatusCode::OK)
        .body["data"]
        .clone()
}

struct RunningCollector {
    addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

const TOKEN: &str = "logs-config-test-token-0123456789";

async fn start_collector(env: &TestEnv, filter: Arc<dyn owl_collector::IngestFilter>) -> RunningCollector {
    let mut config = (*env.state.config).clone();
    config.collector.agent_tokens = vec![owl_config::Secret::new(TOKEN)];
    config.collector.commit_interval_ms = 200;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(owl_collector::run_with_filter(
        config,
        env.state.index.clone(),
        listener,
        shutdown.clone(),
        filter,
    ));
    let client = http_client();
    eventually(20, "the collector to serve", || {
        let client = client.clone();
        async move {
            client
                .get(format!("http://{addr}/health"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    RunningCollector { addr, shutdown, task }
}

async fn ship(collector: &RunningCollector, lines: &[Value]) -> Value {
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let reply = http_client()
        .post(format!("http://{}/api/v1/ingest", collector.addr))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success());
    reply.json().await.unwrap()
}

fn line(id: &str, level: &str, url: Option<&str>) -> Value {
    let mut value = json!({ "id": id, "@timestamp": ts(&chrono::Utc::now()), "level": level, "message": format!("{level} line {id}"), "service": "Form" });
    if let Some(url) = url {
        value["http"] = json!({ "method": "GET", "url": url, "status_code": 200, "duration_ms": 3 });
    }
    value
}

#[tokio::test]
async fn the_collector_keeps_what_the_config_says_without_a_restart() {
    let env = TestEnv::start(Variant::Sqlite).await.unwrap();
    let admin = env.admin().await;
    // The collector's side: its own connection to the database, polling every 50 ms.
    let config = (*env.state.config).clone();
    let db = owl_sql::Db::connect(&config.database_url(), 2).await.unwrap();
    let store = LogConfigStore::new(db, LogConfig::defaults(&config));
    let stop = CancellationToken::new();
    let runtime = LogConfigRuntime::start_with(store, None, Duration::from_millis(50), stop.clone()).await;
    let live = runtime.live();
    let collector = start_collector(&env, runtime.filter()).await;
    let stored = |id: &'static str| {
        let env = &env;
        let admin = admin.clone();
        async move {
            env.call("GET", &format!("/api/v1/logs/{id}"), Some(&admin), None)
                .await
                .status
                == StatusCode::OK
        }
    };

    // Defaults: INFO and DEBUG are stored.
    let answer = ship(
        &collector,
        &[line("info-1", "INFO", None), line("debug-1", "DEBUG", None)],
    )
    .await;
    assert_eq!(answer["accepted"], 2);
    // Acknowledged means durable; the indexer adds it a moment later.
    eventually(10, "info-1 and debug-1 to be searchable", || async {
        stored("info-1").await && stored("debug-1").await
    })
    .await;

    // PUT level=ERROR: an INFO record is no longer stored, an ERROR one is.
    env.call(
        "PUT",
        "/api/v1/logs/config",
        Some(&admin),
        Some(json!({"level": "ERROR"})),
    )
    .await
    .expect(StatusCode::OK);
    eventually(10, "the collector to apply version 1", || {
        let live = live.clone();
        async move { live.version() == 1 }
    })
    .await;
    let answer = ship(
        &collector,
        &[line("info-2", "INFO", None), line("error-2", "ERROR", None)],
    )
    .await;
    assert_eq!(
        (answer["accepted"].clone(), answer["filtered"].clone()),
        (json!(1), json!(1)),
        "{answer}"
    );
    // One batch is indexed together: once error-2 is searchable, info-2 would be too.
    eventually(10, "error-2 to be searchable", || stored("error-2")).await;
    assert!(!stored("info-2").await, "INFO is below the level");

    // Sampling on: /health is never stored, an ERROR on it always is, other paths are.
    env.call(
        "PUT",
        "/api/v1/logs/config",
        Some(&admin),
        Some(json!({"level": "INFO", "sampling": {"enabled": true, "rules": {"alwaysLog": {"levels": ["ERROR"]}, "neverLog": {"paths": ["/health", "/internal/*"]}}}})),
    )
    .await
    .expect(StatusCode::OK);
    eventually(10, "the collector to apply version 2", || {
        let live = live.clone();
        async move { live.version() == 2 }
    })
    .await;
    let answer = ship(
        &collector,
        &[
            line("health-3", "INFO", Some("/health?probe=k8s")),
            line("internal-3", "INFO", Some("/internal/jobs/7")),
            line("health-error-3", "ERROR", Some("/health")),
            line("forms-3", "INFO", Some("/api/v1/forms")),
            line("debug-3", "DEBUG", Some("/api/v1/forms")),
        ],
    )
    .await;
    assert_eq!(
        (answer["accepted"].clone(), answer["filtered"].clone()),
        (json!(2), json!(3)),
        "{answer}"
    );
    eventually(10, "the kept records of batch 3 to be searchable", || async {
        stored("health-error-3").await && stored("forms-3").await
    })
    .await;
    assert!(!stored("health-3").await && !stored("internal-3").await && !stored("debug-3").await);
    let decisions = live.decisions();
    assert_eq!((decisions.below_level, decisions.never_log), (2, 2));

    collector.shutdown.cancel();
    collector.task.await.unwrap().unwrap();
    stop.cancel();
    runtime.stopped().await;
}
