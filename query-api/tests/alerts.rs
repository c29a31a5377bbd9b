//! The log API's `/api/v1/logs/alerts*` and the CRM analytics API's `/api/analytics-monitoring/monitoring/alerts/*` over the
//! one alert store, on SQLite and PostgreSQL: configuration round trip with write-only secrets,
//! history with filters and summary, active alerts and acknowledgement, real channel tests against
//! a webhook sink, mutes, and requests from an IP_ANOMALY-blocked address refused.

mod common;
mod logs_common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::{CLIENT_IP, TestEnv, Variant};
use logs_common::error_fields;
use owl_alerts::{Alert, AlertSeverity, AlertState, AlertStatus, AlertStore, AlertType, BlockedIp, Channel};
use serde_json::{Map, Value, json};
use uuid::Uuid;

const SLACK_SECRET: &str = "https://hooks.slack.com/services/T000/B000/XXXXSLACKSECRET";
const FEISHU_HOOK: &str = "https://open.feishu.cn/open-apis/bot/v2/hook/FEISHUHOOKSECRET";
const FEISHU_SIGNING: &str = "FEISHUSIGNINGSECRET";
const SMTP_PASSWORD: &str = "SMTPPASSWORDSECRET";

fn store(env: &TestEnv) -> AlertStore {
    AlertStore::new(env.state.db.sql_db().clone(), env.state.secrets.clone())
}

fn alert(
    alert_type: AlertType,
    key: &str,
    created_at: i64,
    state: AlertState,
    status: AlertStatus,
    region: Option<&str>,
) -> Alert {
    let mut context = Map::new();
    context.insert("traceId".into(), json!("CN-1733580000000-a1b2c3d4"));
    context.insert("url".into(), json!("/api/v1/forms/submit"));
    context.insert("duration".into(), json!(5234));
    context.insert("threshold".into(), json!(2000));
    Alert {
        id: Uuid::now_v7(),
        alert_type,
        key: key.into(),
        severity: AlertSeverity::Warning,
        state,
        status,
        message: if alert_type == AlertType::CpuHigh {
            "CPU使用率超过70% (web-1: 85%)".into()
        } else {
            "慢请求告警: POST /api/v1/forms/submit 耗时 5234ms".into()
        },
        context,
        service: Some("Form".into()),
        host: Some("web-1".into()),
        region: region.map(str::to_string),
        channels: vec![Channel::Slack, Channel::Feishu],
        occurrences: 1,
        notices: 1,
        last_error: None,
        created_at,
        last_seen_at: created_at,
        notified_at: Some(created_at),
        sent_at: Some(created_at + 5000),
        resolved_at: (state == AlertState::Resolved).then_some(created_at + 60_000),
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

async fn config_round_trip(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    let reply = env
        .call("GET", "/api/v1/logs/alerts/config", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let data = &reply.body["data"];
    assert_eq!(
        data["slowRequest"],
        json!({"enabled": true, "thresholdMs": 2000, "excludePaths": []})
    );
    assert_eq!(
        data["errorRate"],
        json!({"enabled": true, "thresholdPercent": 5, "windowMinutes": 5, "minRequests": 100})
    );
    assert_eq!(
        data["ipAnomaly"],
        json!({"enabled": true, "maxRequestsPerMinute": 100, "blockDurationMinutes": 10})
    );
    assert_eq!(
        data["diskSpace"],
        json!({"enabled": true, "warningPercent": 80, "criticalPercent": 90})
    );
    assert_eq!(
        data["notifications"]["slack"],
        json!({"enabled": false, "webhookConfigured": false})
    );
    assert_eq!(data["notifications"]["email"]["recipientCount"], 0);
    assert_eq!(data["updatedBy"], Value::Null);
    assert_eq!(reply.body["path"], "/api/v1/logs/alerts/config");

    // The log API's example.
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/alerts/config",
            Some(&admin),
            Some(json!({"slowRequest": {"thresholdMs": 3000}})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "告警配置已更新");
    assert_eq!(reply.body["data"]["slowRequest"]["thresholdMs"], 3000);
    assert_eq!(reply.body["data"]["slowRequest"]["enabled"], true);
    assert_eq!(reply.body["data"]["updatedBy"], "admin");

    // Every channel field; secrets go in and never come out.
    let change = json!({
        "errorRate": {"minRequests": 50},
        "ipAnomaly": {"maxRequestsPerMinute": 300, "blockDurationMinutes": 15},
        "cpu": {"thresholdPercent": 80},
        "cooldownSeconds": 300,
        "notifications": {
            "slack": {"webhookUrl": SLACK_SECRET, "enabled": true},
            "feishu": {"webhookUrl": FEISHU_HOOK, "secret": FEISHU_SIGNING, "enabled": true},
            "email": {
                "enabled": true, "smtpHost": "smtp.example.com", "smtpPort": 465, "tls": "tls",
                "username": "owl", "password": SMTP_PASSWORD, "from": "Owl <owl@example.com>",
                "recipients": ["ops@example.com", "oncall@example.com"]
            }
        }
    });
    let put = env
        .call("PUT", "/api/v1/logs/alerts/config", Some(&admin), Some(change))
        .await
        .expect(StatusCode::OK);
    let get = env
        .call("GET", "/api/v1/logs/alerts/config", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    for reply in [&put, &get] {
        for secret in [
            SLACK_SECRET,
            "XXXXSLACKSECRET",
            FEISHU_HOOK,
            FEISHU_SIGNING,
            SMTP_PASSWORD,
        ] {
            assert!(!reply.text.contains(secret), "{secret} returned: {}", reply.text);
        }
        let n = &reply.body["data"]["notifications"];
        assert_eq!(n["slack"], json!({"enabled": true, "webhookConfigured": true}));
        assert_eq!(
            n["feishu"],
            json!({"enabled": true, "webhookConfigured": true, "secretConfigured": true})
        );
        assert_eq!(n["email"]["recipientCount"], 2);
        assert_eq!(
            (n["email"]["tls"].clone(), n["email"]["smtpPort"].clone()),
            (json!("tls"), json!(465))
        );
        assert_eq!(n["email"]["passwordConfigured"], true);
        assert_eq!(
            reply.body["data"]["slowRequest"]["thresholdMs"], 3000,
            "earlier changes stay"
        );
        assert_eq!(reply.body["data"]["errorRate"]["minRequests"], 50);
        assert_eq!(reply.body["data"]["cpu"]["thresholdPercent"], 80);
    }
    // The engine reads what the API stored, secrets included.
    let stored = store(&env).effective_settings(&env.state.config).await.unwrap();
    assert_eq!(stored.settings.notifications.slack.webhook_url, SLACK_SECRET);
    assert_eq!(stored.settings.notifications.email.password, SMTP_PASSWORD);
    assert_eq!(stored.version, Some(2));

    // Invalid channels: the log API's LOG_ALERT_CHANNEL_INVALID, every problem named, nothing stored.
    let bad = json!({"notifications": {"slack": {"webhookUrl": "ftp://hooks"}, "email": {"recipients": ["nobody"]}}});
    let reply = env
        .call("PUT", "/api/v1/logs/alerts/config", Some(&admin), Some(bad))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_ALERT_CHANNEL_INVALID");
    let fields = error_fields(&reply.body);
    assert_eq!(
        fields,
        [
            "notifications.slack.webhookUrl",
            "notifications.email.recipients[0]"
        ]
    );
    let bad = json!({"notifications": {"feishu": {"webhookUrl": ""}}});
    let reply = env
        .call("PUT", "/api/v1/logs/alerts/config", Some(&admin), Some(bad))
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.body["error"]["errors"][0]["message"], "飞书 webhook URL 未配置",
        "enabled without a URL"
    );
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/alerts/config",
            Some(&admin),
            Some(json!({"errorRate": {"windowMinutes": 0}})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_QUERY_INVALID_PARAMS");
    assert_eq!(reply.body["error"]["field"], "errorRate.windowMinutes");
    let reply = env
        .call(
            "PUT",
            "/api/v1/logs/alerts/config",
            Some(&admin),
            Some(json!({"slowRequest": {"thresholdMS": 1}})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("thresholdMS"),
        "{}",
        reply.text
    );
    assert_eq!(
        store(&env).settings_version().await.unwrap(),
        Some(2),
        "refused changes store nothing"
    );

    // The audit log has every change, without the secrets.
    let params: Vec<String> = sqlx::query_scalar(
        "SELECT params FROM audit_logs WHERE path = '/api/v1/logs/alerts/config' AND method = 'PUT'",
    )
    .fetch_all(env.state.db.pool())
    .await
    .unwrap();
    assert_eq!(params.len(), 6, "{params:?}");
    for row in &params {
        for secret in [
            "XXXXSLACKSECRET",
            "FEISHUHOOKSECRET",
            FEISHU_SIGNING,
            SMTP_PASSWORD,
        ] {
            assert!(!row.contains(secret), "{secret} in the audit log: {row}");
        }
    }
}

async fn history_active_and_acknowledge(variant: Variant) {
    let Some(env) = TestEnv::start(variant).await else {
        return;
    };
    let admin = env.admin().await;
    let now = env.clock.now_ms();
    let store = store(&env);
    let slow = alert(
        AlertType::SlowRequest,
        "Form POST /a",
        now - 3_600_000,
        AlertState::Resolved,
        AlertStatus::Sent,
        Some("CN"),
    );
    let failed = alert(
        AlertType::SlowRequest,
        "Form POST /b",
        now - 1_800_000,
        AlertState::Resolved,
        AlertStatus::Failed,
        Some("CN"),
    );
    let cpu = alert(
        AlertType::CpuHigh,
        "web-1",
        now - 60_000,
        AlertState::Open,
        AlertStatus::Sent,
        Some("US"),
    );
    let old = alert(
        AlertType::DiskSpace,
        "web-1 /",
        now - 10 * 86_400_000,
        AlertState::Resolved,
        AlertStatus::Sent,
        Some("CN"),
    );
    for a in [&slow, &failed, &cpu, &old] {
        assert!(store.insert_alert(a).await.unwrap());
    }

    // The log API history: last 7 days by default, newest first, type and status filters, full summary.
    let reply = env
        .call("GET", "/api/v1/logs/alerts", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let data = &reply.body["data"];
    let ids: Vec<&str> = data["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [cpu.id.to_string(), failed.id.to_string(), slow.id.to_string()]
    );
    assert_eq!(data["summary"]["total"], 3);
    assert_eq!(data["summary"]["byType"]["SLOW_REQUEST"], 2);
    assert_eq!(data["summary"]["byType"]["IP_ANOMALY"], 0);
    assert_eq!(
        data["summary"]["byStatus"],
        json!({"PENDING": 0, "SENT": 2, "FAILED": 1, "SUPPRESSED": 0, "ACKNOWLEDGED": 0})
    );
    let first = &data["items"][2];
    assert_eq!(first["type"], "SLOW_REQUEST");
    assert_eq!(first["severity"], "WARNING");
    assert_eq!(
        first["message"],
        "慢请求告警: POST /api/v1/forms/submit 耗时 5234ms"
    );
    assert_eq!(
        first["context"],
        json!({"traceId": "CN-1733580000000-a1b2c3d4", "url": "/api/v1/forms/submit", "duration": 5234, "threshold": 2000})
    );
    assert_eq!(first["channels"], json!(["slack", "feishu"]));
    assert_eq!(first["status"], "SENT");
    assert_eq!(first["sentAt"], owl_alerts::format_millis(slow.created_at + 5000));

    let reply = env
        .call(
            "GET",
            "/api/v1/logs/alerts?type=SLOW_REQUEST&status=FAILED&limit=1&page=1",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    let data = &reply.body["data"];
    assert_eq!(
        (
            data["total"].clone(),
            data["totalPages"].clone(),
            data["hasNext"].clone()
        ),
        (json!(1), json!(1), json!(false))
    );
    assert_eq!(data["items"][0]["id"], failed.id.to_string());
    assert_eq!(data["summary"]["total"], 3, "the summary ignores type and status");
    let reply = env
        .call(
            "GET",
            "/api/v1/logs/alerts?limit=1&page=2&sortOrder=asc",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["items"][0]["id"], failed.id.to_string());
    assert_eq!(
        (
            reply.body["data"]["hasNext"].clone(),
            reply.body["data"]["hasPrev"].clone()
        ),
        (json!(true), json!(true))
    );
    let start = owl_alerts::format_millis(now - 12 * 86_400_000);
    let reply = env
        .call(
            "GET",
            &format!("/api/v1/logs/alerts?startTime={start}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.body["data"]["total"], 4,
        "an explicit range reaches older alerts"
    );
    let end = owl_alerts::format_millis(now);
    let far = owl_alerts::format_millis(now - 31 * 86_400_000);
    let reply = env
        .call(
            "GET",
            &format!("/api/v1/logs/alerts?startTime={far}&endTime={end}"),
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_QUERY_TIME_RANGE_TOO_LARGE");
    let reply = env
        .call(
            "GET",
            "/api/v1/logs/alerts?type=LOUD&status=MAYBE",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["errors"].as_array().unwrap().len(), 2);

    // The CRM analytics API: the open alert, by the same id, in the CRM analytics API's shape and names.
    let reply = env
        .call(
            "GET",
            "/api/analytics-monitoring/monitoring/alerts/active",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["code"], 200);
    assert_eq!(reply.body["message"], "获取活跃预警列表成功");
    let active = &reply.body["data"]["alerts"][0];
    assert_eq!(reply.body["data"]["total"], 1);
    assert_eq!(active["id"], cpu.id.to_string());
    assert_eq!(
        (active["type"].clone(), active["severity"].clone()),
        (json!("cpu_high"), json!("warning"))
    );
    assert_eq!(active["message"], "CPU使用率超过70% (web-1: 85%)");
    assert_eq!(active["acknowledged"], false);
    assert!(owl_model::parse_timestamp(active["created_at"].as_str().unwrap()).is_some());

    let ack = format!(
        "/api/analytics-monitoring/monitoring/alerts/{}/acknowledge",
        cpu.id
    );
    let reply = env
        .call("POST", &ack, Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.body,
        json!({"code": 200, "message": "预警确认成功", "data": true})
    );
    let reply = env
        .call(
            "GET",
            "/api/analytics-monitoring/monitoring/alerts/active",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["alerts"][0]["acknowledged"], true);
    let reply = env
        .call(
            "GET",
            "/api/v1/logs/alerts?status=ACKNOWLEDGED",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["items"][0]["id"], cpu.id.to_string());
    assert_eq!(reply.body["data"]["items"][0]["acknowledgedBy"], "admin");
    env.call("POST", &ack, Some(&admin), None)
        .await
        .expect(StatusCode::OK);

    let unknown = format!(
        "/api/analytics-monitoring/monitoring/alerts/{}/acknowledge",
        Uuid::now_v7()
    );
    let reply = env
        .call("POST", &unknown, Some(&admin), None)
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(
        (reply.body["code"].clone(), reply.body["data"].clone()),
        (json!(404), Value::Null)
    );
    env.call(
        "POST",
        "/api/analytics-monitoring/monitoring/alerts/not-a-uuid/acknowledge",
        Some(&admin),
        None,
    )
    .await
    .expect(StatusCode::BAD_REQUEST);

    // A CN ops user sees CN alerts only, and cannot acknowledge a US one.
    env.create_user(&admin, json!({"user_code": "cnops", "username": "CN Ops", "password": "Passw0rd", "role_id": 2, "regions": ["cn"]}))
        .await;
    let (ops, _) = env.login("cnops", "Passw0rd").await;
    let reply = env
        .call("GET", "/api/v1/logs/alerts", Some(&ops), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["total"], 2);
    let reply = env
        .call(
            "GET",
            "/api/analytics-monitoring/monitoring/alerts/active",
            Some(&ops),
            None,
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["total"], 0);
    env.call("POST", &ack, Some(&ops), None)
        .await
        .expect(StatusCode::NOT_FOUND);
}

mod sqlite {
    #[tokio::test]
    async fn config_round_trip() {
        super::config_round_trip(super::Variant::Sqlite).await;
    }

    #[tokio::test]
    async fn history_active_and_acknowledge() {
        super::history_active_and_acknowledge(super::Variant::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test]
    async fn config_round_trip() {
        super::config_round_trip(super::Variant::Postgres).await;
    }

    #[tokio::test]
    async fn history_active_and_acknowledge() {
        super::history_active_and_acknowledge(super::Variant::Postgres).await;
    }
}

mod mariadb {
    #[tokio::test]
    async fn config_round_trip() {
        super::config_round_trip(super::Variant::MariaDb).await;
    }

    #[tokio::test]
    async fn history_active_and_acknowledge() {
        super::history_active_and_acknowledge(super::Variant::MariaDb).await;
    }
}

/// A webhook endpoint on 127.0.0.1 that hands over what it receives.
async fn sink() -> (String, tokio::sync::mpsc::UnboundedReceiver<Value>) {
    use axum::routing::post;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/services/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/services/hook",
        post(move |axum::Json(body): axum::Json<Value>| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(body);
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, rx)
}

#[tokio::test]
async fn channel_tests_deliver_for_real_or_say_why_not() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let (url, mut received) = sink().await;
    // Configured but not yet enabled: testing comes before switching on.
    env.call(
        "PUT",
        "/api/v1/logs/alerts/config",
        Some(&admin),
        Some(json!({"notifications": {"slack": {"webhookUrl": url}}})),
    )
    .await
    .expect(StatusCode::OK);
    let reply = env
        .call(
            "POST",
            "/api/v1/logs/alerts/test",
            Some(&admin),
            Some(json!({"channel": "slack", "message": "测试告警消息"})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "测试告警已发送");
    assert_eq!(
        (
            reply.body["data"]["channel"].clone(),
            reply.body["data"]["status"].clone()
        ),
        (json!("slack"), json!("SUCCESS"))
    );
    let body = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[测试] 测试告警消息*"),
        "{body}"
    );

    let reply = env
        .call(
            "POST",
            "/api/v1/logs/alerts/test",
            Some(&admin),
            Some(json!({"channel": "feishu"})),
        )
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(reply.body["error"]["code"], "LOG_ALERT_TEST_FAILED");
    assert_eq!(reply.body["error"]["message"], "告警测试发送失败");
    assert_eq!(reply.body["error"]["details"], "飞书 webhook URL 未配置");
    assert_eq!(reply.body["statusCode"], 500);

    // An SMTP server that is not there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let email = json!({"notifications": {"email": {"smtpHost": "127.0.0.1", "smtpPort": port, "tls": "none", "from": "owl@example.com", "recipients": ["ops@example.com"]}}});
    env.call("PUT", "/api/v1/logs/alerts/config", Some(&admin), Some(email))
        .await
        .expect(StatusCode::OK);
    let reply = env
        .call(
            "POST",
            "/api/v1/logs/alerts/test",
            Some(&admin),
            Some(json!({"channel": "email"})),
        )
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR);
    let details = reply.body["error"]["details"].as_str().unwrap();
    assert!(
        details.starts_with(&format!("SMTP 127.0.0.1:{port}")),
        "{details}"
    );

    let reply = env
        .call(
            "POST",
            "/api/v1/logs/alerts/test",
            Some(&admin),
            Some(json!({"channel": "pager"})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["field"], "channel");
}

#[tokio::test]
async fn mutes_are_set_listed_lifted_and_audited() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let reply = env
        .call(
            "POST",
            "/api/v1/logs/alerts/mutes",
            Some(&admin),
            Some(json!({"type": "SLOW_REQUEST", "durationMinutes": 30, "reason": "发布中"})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["message"], "告警已静默");
    assert_eq!(
        reply.body["data"]["until"],
        owl_alerts::format_millis(env.clock.now_ms() + 30 * 60_000)
    );
    let until = owl_alerts::format_millis(env.clock.now_ms() + 3_600_000);
    env.call(
        "POST",
        "/api/v1/logs/alerts/mutes",
        Some(&admin),
        Some(json!({"type": "cpu_high", "until": until})),
    )
    .await
    .expect(StatusCode::OK);
    let reply = env
        .call("GET", "/api/v1/logs/alerts/mutes", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    let types: Vec<&str> = reply.body["data"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["CPU_HIGH", "SLOW_REQUEST"]);
    assert_eq!(reply.body["data"]["items"][1]["createdBy"], "admin");
    let past = owl_alerts::format_millis(env.clock.now_ms() - 1000);
    let reply = env
        .call(
            "POST",
            "/api/v1/logs/alerts/mutes",
            Some(&admin),
            Some(json!({"type": "LOUD", "until": past})),
        )
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["errors"].as_array().unwrap().len(), 2);

    env.call(
        "DELETE",
        "/api/v1/logs/alerts/mutes/SLOW_REQUEST",
        Some(&admin),
        None,
    )
    .await
    .expect(StatusCode::OK);
    env.call(
        "DELETE",
        "/api/v1/logs/alerts/mutes/SLOW_REQUEST",
        Some(&admin),
        None,
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    let mutes = store(&env).mutes(env.clock.now_ms()).await.unwrap();
    assert_eq!(
        mutes.iter().map(|m| m.alert_type).collect::<Vec<_>>(),
        [AlertType::CpuHigh]
    );

    let audited: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT action, method, status_code FROM audit_logs WHERE resource_type = 'alert' ORDER BY id",
    )
    .fetch_all(env.state.db.pool())
    .await
    .unwrap();
    let actions: Vec<(&str, &str, i64)> = audited
        .iter()
        .map(|(a, m, s)| (a.as_str(), m.as_str(), *s))
        .collect();
    assert_eq!(
        actions,
        [
            ("create", "POST", 200),
            ("create", "POST", 200),
            ("create", "POST", 400),
            ("delete", "DELETE", 200),
            ("delete", "DELETE", 404)
        ]
    );
}

#[tokio::test]
async fn requests_from_a_blocked_ip_are_refused_until_it_is_unblocked() {
    let Some(env) = TestEnv::start_with(Variant::Sqlite, |config| {
        config.alerts.ip_anomaly.enforce_at_query_api = true;
        config.alerts.ip_anomaly.never_block = owl_config::Networks::parse(&["198.51.100.0/24"]).unwrap();
    })
    .await
    else {
        return;
    };
    let admin = env.admin().await;
    let attacker = "203.0.113.66";
    let now = env.clock.now_ms();
    // Loopback and never-blocked addresses stay served even when the list names them (a list
    // written before they were exempt, or by hand).
    for ip in [attacker, "127.0.0.1", "198.51.100.9"] {
        let block = BlockedIp {
            ip: ip.into(),
            until_ms: now + 600_000,
            reason: "IP 异常告警".into(),
            alert_id: None,
            created_at: now,
        };
        store(&env).block_ip(&block).await.unwrap();
    }

    let refused = |reply: &common::Reply| reply.status == StatusCode::TOO_MANY_REQUESTS;
    let deadline = Instant::now() + Duration::from_secs(10);
    let reply = loop {
        let reply = env
            .call_from(attacker, "GET", "/api/v1/logs/alerts", Some(&admin), None)
            .await;
        if refused(&reply) || Instant::now() > deadline {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reply = reply.expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.body["error"]["code"], "IP_BLOCKED");
    assert_eq!(reply.headers["retry-after"], "601");
    assert_eq!(
        (reply.body["path"].as_str(), reply.body["method"].as_str()),
        (Some("/api/v1/logs/alerts"), Some("GET"))
    );
    for exempt in ["127.0.0.1", "198.51.100.9"] {
        env.call_from(exempt, "GET", "/api/v1/logs/alerts", Some(&admin), None)
            .await
            .expect(StatusCode::OK);
    }
    let crm = env
        .call_from(
            attacker,
            "GET",
            "/api/analytics-monitoring/monitoring/alerts/active",
            Some(&admin),
            None,
        )
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        crm.body["code"], 429,
        "the analytics-monitoring envelope on its paths"
    );
    env.call_from(attacker, "GET", "/health", None, None)
        .await
        .expect(StatusCode::OK);
    env.call("GET", "/api/v1/logs/alerts", Some(&admin), None)
        .await
        .expect(StatusCode::OK);

    let reply = env
        .call("GET", "/api/v1/logs/alerts/blocked-ips", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert!(
        reply.body["data"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["ip"] == attacker),
        "{}",
        reply.text
    );
    env.call(
        "DELETE",
        &format!("/api/v1/logs/alerts/blocked-ips/{attacker}"),
        Some(&admin),
        None,
    )
    .await
    .expect(StatusCode::OK);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = env
            .call_from(attacker, "GET", "/api/v1/logs/alerts", Some(&admin), None)
            .await;
        if reply.status == StatusCode::OK {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still refused after unblocking: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(attacker, CLIENT_IP);
}

#[tokio::test]
async fn the_blocked_list_is_only_enforced_at_the_query_api_when_asked() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let now = env.clock.now_ms();
    let block = BlockedIp {
        ip: "203.0.113.66".into(),
        until_ms: now + 600_000,
        reason: "IP 异常告警".into(),
        alert_id: None,
        created_at: now,
    };
    store(&env).block_ip(&block).await.unwrap();
    // Served to the gateway that enforces it...
    let reply = env
        .call("GET", "/api/v1/logs/alerts/blocked-ips", Some(&admin), None)
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.body["data"]["items"][0]["ip"], "203.0.113.66");
    // ...but the query API itself refuses nobody by default.
    for _ in 0..3 {
        env.call_from("203.0.113.66", "GET", "/api/v1/logs/alerts", Some(&admin), None)
            .await
            .expect(StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A webhook endpoint on 127.0.0.1 that answers every request with `status`, a `Location` to
/// `location` and a body that must never be echoed, counting the requests it gets.
async fn answering_sink(
    status: u16,
    location: &str,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = std::sync::Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let location = location.to_string();
    let counter = hits.clone();
    let app = axum::Router::new().fallback(move || {
        let counter = counter.clone();
        let location = location.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            (
                axum::http::StatusCode::from_u16(status).unwrap(),
                [(axum::http::header::LOCATION, location)],
                "REMOTE-ANSWER-MUST-NOT-BE-ECHOED",
            )
        }
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn moving_a_channel_needs_log_config_and_drops_its_stored_secret() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let put = |token: &str, body: Value| {
        let token = token.to_string();
        let env = &env;
        async move {
            env.call("PUT", "/api/v1/logs/alerts/config", Some(&token), Some(body))
                .await
        }
    };
    put(&admin, json!({"notifications": {
        "email": {"smtpHost": "smtp.example.com", "tls": "starttls", "username": "owl", "password": SMTP_PASSWORD,
                  "from": "owl@example.com", "recipients": ["ops@example.com"]},
        "feishu": {"webhookUrl": FEISHU_HOOK, "secret": FEISHU_SIGNING}
    }}))
    .await
    .expect(StatusCode::OK);

    env.create_user(
        &admin,
        json!({"user_code": "ops1", "username": "Ops", "password": "Passw0rd", "role_id": 2}),
    )
    .await;
    let (ops, _) = env.login("ops1", "Passw0rd").await;
    // Ops may tune rules and switch channels on and off.
    let reply = put(&ops, json!({"slowRequest": {"thresholdMs": 2500}, "notifications": {"email": {"enabled": true}, "feishu": {"enabled": true}}}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.body["data"]["notifications"]["email"]["passwordConfigured"],
        true
    );
    // But not move a channel: host, port, TLS, user, webhook, secret, recipients.
    for change in [
        json!({"email": {"smtpHost": "smtp.evil.example"}}),
        json!({"email": {"smtpPort": 2525}}),
        json!({"email": {"tls": "tls"}}),
        json!({"email": {"username": "root"}}),
        json!({"email": {"recipients": ["attacker@evil.example"]}}),
        json!({"feishu": {"webhookUrl": "https://evil.example/hook"}}),
        json!({"feishu": {"secret": "mine"}}),
        json!({"slack": {"webhookUrl": "https://evil.example/slack"}}),
    ] {
        let reply = put(&ops, json!({"notifications": change.clone()}))
            .await
            .expect(StatusCode::FORBIDDEN);
        assert_eq!(reply.body["error"]["code"], "LOG_PERMISSION_DENIED", "{change}");
    }
    // An admin moves the SMTP server: the old password does not go with it.
    let reply = put(
        &admin,
        json!({"notifications": {"email": {"smtpHost": "smtp2.example.com"}}}),
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        reply.body["data"]["notifications"]["email"]["passwordConfigured"],
        false
    );
    let reply = put(&admin, json!({"notifications": {"feishu": {"webhookUrl": "https://open.feishu.cn/open-apis/bot/v2/hook/OTHER"}}}))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.body["data"]["notifications"]["feishu"]["secretConfigured"],
        false
    );
    // Credentials in plain text to another host are refused.
    let reply = put(
        &admin,
        json!({"notifications": {"email": {"tls": "none", "password": "pw"}}}),
    )
    .await
    .expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_ALERT_CHANNEL_INVALID");
}

#[tokio::test]
async fn channels_reach_no_internal_address_follow_no_redirect_and_echo_no_answer() {
    // No allowed networks: the default.
    let Some(env) = TestEnv::start_with(Variant::Sqlite, |config| {
        config.notifications.allowed_networks = owl_config::Networks::default();
    })
    .await
    else {
        return;
    };
    let admin = env.admin().await;
    let (url, mut received) = sink().await;
    let test = |channel: &'static str| {
        let admin = admin.clone();
        let env = &env;
        async move {
            env.call(
                "POST",
                "/api/v1/logs/alerts/test",
                Some(&admin),
                Some(json!({"channel": channel})),
            )
            .await
        }
    };
    env.call(
        "PUT",
        "/api/v1/logs/alerts/config",
        Some(&admin),
        Some(json!({"notifications": {"slack": {"webhookUrl": url}}})),
    )
    .await
    .expect(StatusCode::OK);
    let reply = test("slack").await.expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_ALERT_CHANNEL_INVALID");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allowed_networks"),
        "{}",
        reply.body
    );
    for target in [
        "https://169.254.169.254/latest/meta-data/",
        "https://[::1]:9/hook",
        "https://10.0.0.1/hook",
        "https://localhost:9/hook",
    ] {
        env.call(
            "PUT",
            "/api/v1/logs/alerts/config",
            Some(&admin),
            Some(json!({"notifications": {"slack": {"webhookUrl": target}}})),
        )
        .await
        .expect(StatusCode::OK);
        let reply = test("slack").await.expect(StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.body["error"]["code"], "LOG_ALERT_CHANNEL_INVALID",
            "{target}"
        );
    }
    // SMTP: the host is checked after resolution.
    env.call("PUT", "/api/v1/logs/alerts/config", Some(&admin), Some(json!({"notifications": {"email": {
        "smtpHost": "localhost", "smtpPort": 25, "tls": "none", "from": "owl@example.com", "recipients": ["ops@example.com"]}}})))
        .await
        .expect(StatusCode::OK);
    let reply = test("email").await.expect(StatusCode::BAD_REQUEST);
    assert_eq!(reply.body["error"]["code"], "LOG_ALERT_CHANNEL_INVALID");
    assert!(
        tokio::time::timeout(Duration::from_millis(50), received.recv())
            .await
            .is_err(),
        "the internal sink was reached"
    );

    // With 127.0.0.0/8 allowed: a redirect is not followed and the answer is not echoed.
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    let (final_url, final_hits) = answering_sink(200, "").await;
    let (redirect_url, _) = answering_sink(302, &final_url).await;
    let (failing_url, failing_hits) = answering_sink(500, "").await;
    for (url, details) in [
        (redirect_url, "HTTP 302 (redirects are not followed)"),
        (failing_url, "HTTP 500"),
    ] {
        env.call(
            "PUT",
            "/api/v1/logs/alerts/config",
            Some(&admin),
            Some(json!({"notifications": {"slack": {"webhookUrl": url}}})),
        )
        .await
        .expect(StatusCode::OK);
        let reply = env
            .call(
                "POST",
                "/api/v1/logs/alerts/test",
                Some(&admin),
                Some(json!({"channel": "slack"})),
            )
            .await
            .expect(StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(reply.body["error"]["details"], details);
        assert!(!reply.text.contains("REMOTE-ANSWER"), "{}", reply.text);
    }
    assert_eq!(
        final_hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect was followed"
    );
    assert_eq!(failing_hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn region_scoped_users_cannot_take_actions_that_affect_every_region() {
    let Some(env) = TestEnv::start(Variant::Sqlite).await else {
        return;
    };
    let admin = env.admin().await;
    env.create_user(&admin, json!({"user_code": "cnops2", "username": "CN Ops", "password": "Passw0rd", "role_id": 2, "regions": ["CN"]}))
        .await;
    env.create_user(
        &admin,
        json!({"user_code": "allops", "username": "Ops", "password": "Passw0rd", "role_id": 2}),
    )
    .await;
    let (cn, _) = env.login("cnops2", "Passw0rd").await;
    let (all, _) = env.login("allops", "Passw0rd").await;
    let global: [(&str, &str, Option<Value>); 5] = [
        (
            "POST",
            "/api/v1/logs/cleanup",
            Some(json!({"type": "http", "olderThanDays": 14, "dryRun": true})),
        ),
        (
            "PUT",
            "/api/v1/logs/alerts/config",
            Some(json!({"slowRequest": {"thresholdMs": 3000}})),
        ),
        (
            "POST",
            "/api/v1/logs/alerts/mutes",
            Some(json!({"type": "SLOW_REQUEST", "durationMinutes": 30})),
        ),
        ("DELETE", "/api/v1/logs/alerts/mutes/SLOW_REQUEST", None),
        ("DELETE", "/api/v1/logs/alerts/blocked-ips/203.0.113.1", None),
    ];
    for (method, path, body) in &global {
        let reply = env
            .call(method, path, Some(&cn), body.clone())
            .await
            .expect(StatusCode::FORBIDDEN);
        assert_eq!(
            reply.body["error"]["code"], "LOG_PERMISSION_DENIED",
            "{method} {path}"
        );
        let reply = env.call(method, path, Some(&all), body.clone()).await;
        assert_ne!(
            reply.status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            reply.text
        );
    }
    // Reading stays allowed, within the user's regions.
    env.call("GET", "/api/v1/logs/alerts", Some(&cn), None)
        .await
        .expect(StatusCode::OK);
    env.call("GET", "/api/v1/logs/alerts/config", Some(&cn), None)
        .await
        .expect(StatusCode::OK);
}
