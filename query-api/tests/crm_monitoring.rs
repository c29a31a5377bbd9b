//! The CRM analytics API's monitoring end to end: service health from heartbeats and indexed error rates, system
//! metrics of agents' hosts and of the query API's own host, and the CRM database's health and
//! server counts on Owl's SQLite, PostgreSQL and MariaDB/MySQL.

mod common;
mod crm_support;

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::StatusCode;
use common::Variant;
use crm_support::{CrmDb, CrmEnv};
use owl_model::{DiskUsage, Heartbeat, LoadAverage, LogRecord, MetricSample};
use serde_json::{Value, json};

on_every_crm_db!(database_health_and_counts_come_from_the_crm_database);

const BASE: &str = "/api/analytics-monitoring/monitoring";
const OWN_HOST: &str = "owl-query-host";

fn heartbeat(
    agent: &str,
    host: &str,
    at: chrono::DateTime<chrono::Utc>,
    region: &str,
    services: &[&str],
) -> Heartbeat {
    Heartbeat {
        agent_id: agent.into(),
        host: host.into(),
        timestamp: at,
        version: "0.3.1".into(),
        uptime_s: 600,
        services: services.iter().map(|s| s.to_string()).collect(),
        region: Some(region.into()),
        counters: BTreeMap::new(),
    }
}

fn sample(host: &str, at: chrono::DateTime<chrono::Utc>, region: &str, cpu: f64) -> MetricSample {
    MetricSample {
        host: host.into(),
        timestamp: at,
        cpu_percent: cpu,
        memory_percent: 61.25,
        disks: vec![
            DiskUsage {
                mount: "/".into(),
                total_bytes: 100,
                used_bytes: 30,
                percent: 30.0,
            },
            DiskUsage {
                mount: "/data".into(),
                total_bytes: 100,
                used_bytes: 80,
                percent: 80.5,
            },
        ],
        load: LoadAverage {
            one: 1.0,
            five: 1.0,
            fifteen: 1.0,
        },
        region: Some(region.into()),
    }
}

fn record(service: &str, level: &str, at: chrono::DateTime<chrono::Utc>, region: &str) -> LogRecord {
    let line = json!({ "@timestamp": owl_model::format_timestamp(&at), "level": level, "message": "m", "service": { "name": service, "region": region } });
    LogRecord::from_json_slice(line.to_string().as_bytes(), at).unwrap()
}

async fn start() -> CrmEnv {
    CrmEnv::start_on(CrmDb::Shared, Variant::Sqlite, |c| {
        c.agent.host = OWN_HOST.into();
        c.agent.heartbeat_interval_s = 30;
    })
    .await
    .expect("sqlite needs no service")
}

#[tokio::test]
async fn service_health_follows_heartbeats_and_error_rates() {
    let env = start().await;
    let admin = env.admin().await;
    let now = env.clock.now();
    let ago = |s: i64| now - chrono::Duration::seconds(s);
    let index = &env.state.index;
    index
        .metrics()
        .append_heartbeats(&[
            heartbeat(
                "a1",
                "node-1",
                ago(20),
                "CN",
                &["foundation-service", "order-workflow-service"],
            ),
            heartbeat("a2", "node-2", ago(600), "CN", &["order-workflow-service"]),
            heartbeat("a3", "node-3", ago(10), "US", &["billing-service"]),
        ])
        .unwrap();
    let mut records = Vec::new();
    for i in 0..25 {
        records.push(record(
            "foundation-service",
            if i == 0 { "ERROR" } else { "INFO" },
            ago(60),
            "CN",
        ));
    }
    for i in 0..20 {
        records.push(record(
            "billing-service",
            if i < 5 { "ERROR" } else { "INFO" },
            ago(30),
            "US",
        ));
    }
    records.push(record("foundation-service", "ERROR", ago(3600), "CN"));
    index.add(&records).unwrap();
    index.commit().unwrap();

    let reply = env
        .call("GET", &format!("{BASE}/health/services"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["code"], 200);
    assert_eq!(reply.body["message"], "获取服务健康状态成功");
    let data = &reply.body["data"];
    let service = |name: &str| {
        data["services"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap()
    };
    let foundation = service("foundation-service");
    assert_eq!(
        foundation["status"], "healthy",
        "1 error in 25 records of the last 5 minutes"
    );
    assert_eq!(foundation["error_rate"], 0.04);
    assert_eq!(
        foundation["record_count"], 25,
        "the error of an hour ago is outside the window"
    );
    assert_eq!(foundation["uptime"], 620);
    assert_eq!(foundation["version"], "0.3.1");
    assert_eq!(
        service("order-workflow-service")["status"],
        "degraded",
        "node-2 is silent for 600 s"
    );
    let billing = service("billing-service");
    assert_eq!(
        (billing["status"].clone(), billing["error_rate"].clone()),
        (json!("degraded"), json!(0.25))
    );
    assert_eq!(data["overall_status"], "degraded");

    let ops_cn = {
        env.create_user(&admin, json!({ "user_code": "ops-cn", "username": "ops-cn", "password": "Passw0rd", "role_id": 2, "regions": ["CN"] }))
            .await;
        env.login("ops-cn", "Passw0rd").await.0
    };
    let reply = env
        .call("GET", &format!("{BASE}/health/services"), Some(&ops_cn), None)
        .await
        .expect(StatusCode::OK);
    let names: Vec<&str> = reply.body["data"]["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["foundation-service", "order-workflow-service"],
        "a CN user sees CN agents only"
    );

    let analytics = env
        .call(
            "GET",
            "/api/analytics-monitoring/analytics/users/activity",
            Some(&ops_cn),
            None,
        )
        .await;
    assert_eq!(
        analytics.status,
        StatusCode::FORBIDDEN,
        "ops reads monitoring, not business analytics"
    );
    let developer = {
        env.create_user(
            &admin,
            json!({ "user_code": "dev1", "username": "dev1", "password": "Passw0rd", "role_id": 3 }),
        )
        .await;
        env.login("dev1", "Passw0rd").await.0
    };
    let denied = env
        .call("GET", &format!("{BASE}/health/services"), Some(&developer), None)
        .await
        .expect(StatusCode::FORBIDDEN);
    assert_eq!(
        denied.body,
        json!({ "code": 403, "message": "权限不足", "data": null })
    );

    // Every agent silent: all unhealthy (an hour later, past the access token's life: sign in again).
    env.clock.advance(Duration::from_secs(3600));
    let admin = env.admin().await;
    let reply = env
        .call("GET", &format!("{BASE}/health/services"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["overall_status"], "unhealthy");
    assert!(
        reply.body["data"]["services"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["uptime"] == 0)
    );
}

#[tokio::test]
async fn system_metrics_of_agents_hosts_and_of_this_host() {
    let env = start().await;
    let admin = env.admin().await;
    let now = env.clock.now();
    let metrics = env.state.index.metrics();

    // No agent reports this host: it is sampled directly.
    let reply = env
        .call("GET", &format!("{BASE}/metrics/system"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "获取系统指标成功");
    let data = &reply.body["data"];
    assert_eq!(
        (data["host"].clone(), data["source"].clone()),
        (json!(OWN_HOST), json!("local"))
    );
    for key in ["cpu_percent", "memory_percent", "disk_percent"] {
        let value = data[key].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&value), "{key} = {value}");
    }

    metrics
        .append_samples(&[sample("node-7", now - chrono::Duration::seconds(5), "CN", 45.5)])
        .unwrap();
    metrics
        .append_samples(&[sample(OWN_HOST, now - chrono::Duration::seconds(3), "CN", 12.0)])
        .unwrap();
    metrics
        .append_heartbeats(&[heartbeat("a9", "node-9", now, "CN", &["svc"])])
        .unwrap();
    let reply = env
        .call(
            "GET",
            &format!("{BASE}/metrics/system?host=node-7"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let expected_time = (now - chrono::Duration::seconds(5))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    assert_eq!(
        reply.body["data"],
        json!({ "cpu_percent": 45.5, "memory_percent": 61.25, "disk_percent": 80.5, "timestamp": expected_time, "host": "node-7", "source": "agent" })
    );
    let own = env
        .call("GET", &format!("{BASE}/metrics/system"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        (
            own.body["data"]["source"].clone(),
            own.body["data"]["cpu_percent"].clone()
        ),
        (json!("agent"), json!(12.0))
    );
    env.clock.advance(Duration::from_secs(600));
    let stale = env
        .call("GET", &format!("{BASE}/metrics/system"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        stale.body["data"]["source"], "local",
        "an agent sample 10 minutes old is not this host's latest"
    );

    let ghost = env
        .call(
            "GET",
            &format!("{BASE}/metrics/system?host=ghost"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(ghost.body["code"], 404);
    assert_eq!(ghost.body["data"], Value::Null);
    assert!(ghost.body["message"].as_str().unwrap().contains("ghost"));
    let quiet = env
        .call(
            "GET",
            &format!("{BASE}/metrics/system?host=node-9"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    assert!(
        quiet.body["message"]
            .as_str()
            .unwrap()
            .contains("没有上报系统指标"),
        "{}",
        quiet.text
    );

    env.create_user(&admin, json!({ "user_code": "ops-us", "username": "ops-us", "password": "Passw0rd", "role_id": 2, "regions": ["US"] }))
        .await;
    let ops_us = env.login("ops-us", "Passw0rd").await.0;
    let hidden = env
        .call(
            "GET",
            &format!("{BASE}/metrics/system?host=node-7"),
            Some(&ops_us),
            None,
        )
        .await;
    assert_eq!(
        hidden.status,
        StatusCode::NOT_FOUND,
        "a CN host is not shown to a US-only user"
    );
}

/// Pool, ping and the server's own counts, from each CRM database.
async fn database_health_and_counts_come_from_the_crm_database(db: CrmDb) {
    let Some(env) = CrmEnv::start(db).await else {
        return;
    };
    let admin = env.admin().await;
    let reply = env
        .call("GET", &format!("{BASE}/health/database"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "获取数据库健康状态成功");
    let health = &reply.body["data"];
    assert_eq!(health["status"], "healthy", "{health}");
    assert_eq!(
        health["connection_pool_size"], 4,
        "storage.max_connections of the test config"
    );
    assert!(health["active_connections"].as_u64().unwrap() <= 4);
    assert!(
        health["response_time_ms"].as_f64().unwrap() > 0.0,
        "a measured ping: {health}"
    );
    let backend = match db {
        CrmDb::Shared => "sqlite",
        CrmDb::Postgres => "postgres",
        CrmDb::MySql => "mysql",
    };
    assert_eq!(health["backend"], backend);

    let counts = || async {
        let reply = env
            .call("GET", &format!("{BASE}/metrics/database"), Some(&admin), None)
            .await
            .expect(StatusCode::OK);
        assert_eq!(reply.body["message"], "获取数据库指标成功");
        reply.body["data"].clone()
    };
    let before = counts().await;
    for path in ["customers/summary", "users/activity", "organizations/summary"] {
        env.call(
            "GET",
            &format!("/api/analytics-monitoring/analytics/{path}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    }
    let after = counts().await;
    assert_eq!(after["backend"], backend);
    assert!(after["connection_count"].as_i64().unwrap() >= 1, "{after}");
    assert!(after["slow_query_count"].as_i64().unwrap() >= 0);
    assert_eq!(
        after["timestamp"].as_str().unwrap().len(),
        19,
        "YYYY-MM-DDTHH:MM:SS"
    );
    let (q0, q1) = (
        before["query_count"].as_i64().unwrap(),
        after["query_count"].as_i64().unwrap(),
    );
    match db {
        CrmDb::Shared => {
            assert_eq!(after["source"], "owl_counters");
            assert!(
                q1 >= q0 + 4,
                "three figures (four statements) were counted: {q0} -> {q1}"
            );
        }
        CrmDb::Postgres => {
            assert!(["pg_stat_statements", "pg_stat_database"].contains(&after["source"].as_str().unwrap()));
            assert!(q1 > 0, "{after}");
        }
        CrmDb::MySql => {
            assert_eq!(after["source"], "mysql_global_status");
            assert!(
                q1 > q0,
                "Questions grows with the figures' statements: {q0} -> {q1}"
            );
        }
    }
}

#[tokio::test]
async fn an_unreachable_crm_database_is_reported_not_fatal() {
    let env = CrmEnv::start_on(CrmDb::Shared, Variant::Sqlite, |c| {
        // Port 9 (discard) on the loopback: nothing listens there.
        c.storage.crm_database_url = owl_config::Secret::new("mysql://root@127.0.0.1:9/none");
    })
    .await
    .unwrap();
    let admin = env.admin().await;
    let reply = env
        .call("GET", &format!("{BASE}/health/database"), Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["status"], "unhealthy");
    assert_eq!(reply.body["data"]["response_time_ms"], Value::Null);
    let figure = env
        .call(
            "GET",
            "/api/analytics-monitoring/analytics/customers/summary",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(figure.status, StatusCode::SERVICE_UNAVAILABLE, "{}", figure.text);
    assert_eq!(figure.body["code"], 503);
    assert_eq!(figure.body["data"], Value::Null);
}
