//! The engine end to end on SQLite, with real webhook sinks and an SMTP server on 127.0.0.1 and a
//! manual clock: every rule fires, folds, re-notifies after the cooldown and resolves; channels
//! receive exactly what Slack, Feishu and SMTP expect; a dead channel fails without holding up
//! anything else.

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use hmac::{Hmac, Mac};
use owl_alerts::{
    Alert, AlertSettings, AlertSeverity, AlertState, AlertStatus, AlertStore, AlertType, Clock, Mute,
    format_millis,
};
use owl_model::{DiskUsage, LoadAverage, MetricSample};
use serde_json::json;
use sha2::Sha256;

/// Polls until `check` holds, or panics at the deadline.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn only_alert(store: &AlertStore) -> Alert {
    let (alerts, total) = store.list_alerts(&Default::default(), 0, 10).await.unwrap();
    assert_eq!(total, 1, "{alerts:#?}");
    alerts.into_iter().next().unwrap()
}

async fn wait_status(store: &AlertStore, id: uuid::Uuid, status: AlertStatus) -> Alert {
    eventually(&format!("status {status}"), || async {
        store.get_alert(id).await.unwrap().unwrap().status == status
    })
    .await;
    store.get_alert(id).await.unwrap().unwrap()
}

fn sample(at_ms: i64, cpu: f64, memory: f64, disk: f64) -> MetricSample {
    MetricSample {
        host: "db-1".into(),
        timestamp: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(),
        cpu_percent: cpu,
        memory_percent: memory,
        disks: vec![DiskUsage {
            mount: "/data".into(),
            total_bytes: 1000,
            used_bytes: (disk * 10.0) as u64,
            percent: disk,
        }],
        load: LoadAverage::default(),
        region: Some("CN".into()),
    }
}

#[tokio::test]
async fn slow_request_fires_folds_renotifies_after_cooldown_and_resolves() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let config = config_with(Some(&slack), None);
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    engine
        .feed(&[request(
            t0,
            "Form",
            "POST",
            "/api/v1/forms/submit?draft=1",
            5234.0,
            200,
        )])
        .await;
    let fired = slack.next().await;
    let alert = only_alert(&store).await;
    let expected = format!(
        "*[WARNING] 慢请求告警: POST /api/v1/forms/submit 耗时 5234ms*\n类型: SLOW_REQUEST\n级别: WARNING\n\
         traceId: CN-1733580000000-a1b2c3d4\nurl: /api/v1/forms/submit?draft=1\nmethod: POST\nduration: 5234ms\n\
         threshold: 2000ms\nservice: Form\nhost: web-1\nstatusCode: 200\n首次: {}\n告警 ID: {}\n\
         <https://owl.example.com/api/v1/logs/trace/CN-1733580000000-a1b2c3d4|在 Owl 中查看>",
        format_millis(t0),
        alert.id
    );
    assert_eq!(fired.body, json!({ "text": expected }));
    assert_eq!(fired.headers["content-type"], "application/json");
    let alert = wait_status(&store, alert.id, AlertStatus::Sent).await;
    assert_eq!(
        (alert.alert_type, alert.severity, alert.state),
        (AlertType::SlowRequest, AlertSeverity::Warning, AlertState::Open)
    );
    assert_eq!(alert.message, "慢请求告警: POST /api/v1/forms/submit 耗时 5234ms");
    assert_eq!(alert.context["threshold"], 2000);
    assert!(alert.sent_at.is_some());

    // Repeats inside the cooldown fold into the alert and stay quiet.
    clock.advance(Duration::from_secs(10));
    let now = clock.now_ms();
    let repeats: Vec<_> = (0..3)
        .map(|_| request(now, "Form", "POST", "/api/v1/forms/submit", 3100.0, 200))
        .collect();
    engine.feed(&repeats).await;
    let folded = store.get_alert(alert.id).await.unwrap().unwrap();
    assert_eq!((folded.occurrences, folded.notices), (4, 1));
    assert_eq!(
        folded.message, "慢请求告警: POST /api/v1/forms/submit 耗时 3100ms",
        "the latest occurrence is shown"
    );

    // After the cooldown the next occurrence is notified again, once.
    clock.advance(Duration::from_secs(60));
    engine
        .feed(&[request(
            clock.now_ms(),
            "Form",
            "POST",
            "/api/v1/forms/submit",
            2500.0,
            200,
        )])
        .await;
    let repeat = slack.next().await;
    let text = repeat.body["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "*[WARNING] 持续告警 · 慢请求告警: POST /api/v1/forms/submit 耗时 2500ms（共 5 次）*"
        ),
        "{text}"
    );
    engine
        .feed(&[request(
            clock.now_ms(),
            "Form",
            "POST",
            "/api/v1/forms/submit",
            2500.0,
            200,
        )])
        .await;
    assert_eq!(
        store.get_alert(alert.id).await.unwrap().unwrap().notices,
        2,
        "one repeat per cooldown"
    );

    // Silence for resolveAfterSeconds resolves it, with a resolved notice.
    clock.advance(Duration::from_secs(119));
    assert!(engine.engine.sync().await);
    assert_eq!(
        store.get_alert(alert.id).await.unwrap().unwrap().state,
        AlertState::Open
    );
    clock.advance(Duration::from_secs(1));
    assert!(engine.engine.sync().await);
    let resolved = slack.next().await;
    assert!(
        resolved.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[已恢复] 慢请求告警"),
        "{}",
        resolved.body
    );
    let row = store.get_alert(alert.id).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.resolved_at),
        (AlertState::Resolved, Some(clock.now_ms()))
    );
    assert_eq!(row.notices, 3);

    // The next slow request is a new incident.
    engine
        .feed(&[request(
            clock.now_ms(),
            "Form",
            "POST",
            "/api/v1/forms/submit",
            9000.0,
            200,
        )])
        .await;
    let again = slack.next().await;
    assert!(
        again.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[WARNING] 慢请求告警")
    );
    let open = store.open_alerts().await.unwrap();
    assert_eq!(open.len(), 1);
    assert_ne!(open[0].id, alert.id);
    engine.stop().await;
}

#[tokio::test]
async fn error_rate_alerts_per_service_on_a_signed_feishu_bot() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut feishu = Sink::feishu().await;
    let mut config = config_with(None, Some((&feishu, "bot-signing-secret")));
    config.alerts.error_rate.min_requests = 20;
    config.alerts.slow_request.enabled = false;
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    let mut records: Vec<_> = (0..19)
        .map(|_| request(t0, "Form", "GET", "/api/v1/forms", 12.0, 200))
        .collect();
    // Another service fails too, but has too few requests to count.
    records.extend((0..5).map(|_| request(t0, "HR", "GET", "/api/v1/hr", 12.0, 503)));
    engine.feed(&records).await;
    assert_eq!(
        store.open_alerts().await.unwrap().len(),
        0,
        "19 requests, no failure yet; HR under minRequests"
    );
    engine
        .feed(&[request(t0, "Form", "GET", "/api/v1/forms", 12.0, 500)])
        .await;

    let received = feishu.next().await;
    let body = &received.body;
    let timestamp = body["timestamp"]
        .as_str()
        .expect("signed bodies carry the timestamp as a string");
    let seconds: i64 = timestamp.parse().unwrap();
    assert!(
        (seconds - chrono::Utc::now().timestamp()).abs() < 3600,
        "Feishu refuses timestamps an hour off"
    );
    let mut mac =
        Hmac::<Sha256>::new_from_slice(format!("{timestamp}\nbot-signing-secret").as_bytes()).unwrap();
    mac.update(b"");
    let expected_sign = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(body["sign"], expected_sign.as_str());
    assert_eq!(body["msg_type"], "text");
    let text = body["content"]["text"].as_str().unwrap();
    assert!(
        text.starts_with(
            "[WARNING] 高错误率告警: Form 最近 5 分钟错误率 5% (1/20)，超过 5%\n类型: HIGH_ERROR_RATE\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\n查看: https://owl.example.com/api/v1/logs/alerts?type=HIGH_ERROR_RATE"),
        "{text}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        4,
        "timestamp, sign, msg_type, content: {body}"
    );

    let alert = only_alert(&store).await;
    assert_eq!(
        (alert.alert_type, alert.key.as_str(), alert.service.as_deref()),
        (AlertType::HighErrorRate, "Form", Some("Form"))
    );
    wait_status(&store, alert.id, AlertStatus::Sent).await;

    // More failures fold; the rate doubling past the threshold escalates at once.
    engine
        .feed(
            &(0..3)
                .map(|_| request(t0, "Form", "GET", "/api/v1/forms", 12.0, 500))
                .collect::<Vec<_>>(),
        )
        .await;
    let escalated = feishu.next().await;
    let text = escalated.body["content"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[CRITICAL] 告警升级 · 高错误率告警: Form"),
        "{text}"
    );
    assert_eq!(
        store.get_alert(alert.id).await.unwrap().unwrap().severity,
        AlertSeverity::Critical
    );

    clock.advance(Duration::from_secs(120));
    assert!(engine.engine.sync().await);
    let resolved = feishu.next().await;
    assert!(
        resolved.body["content"]["text"]
            .as_str()
            .unwrap()
            .starts_with("[已恢复] 高错误率告警")
    );
    engine.stop().await;
}

#[tokio::test]
async fn disk_space_warns_then_escalates_to_critical_and_resolves() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let config = config_with(Some(&slack), None);
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    engine.engine.observe_metric(&sample(t0, 10.0, 10.0, 79.9));
    assert!(engine.engine.sync().await);
    assert!(store.open_alerts().await.unwrap().is_empty());
    engine.engine.observe_metric(&sample(t0, 10.0, 10.0, 85.0));
    assert!(engine.engine.sync().await);
    let warning = slack.next().await;
    assert!(
        warning.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[WARNING] 磁盘空间告警: db-1 挂载点 /data 使用率 85%，超过 80%*")
    );
    clock.advance(Duration::from_secs(5));
    engine
        .engine
        .observe_metric(&sample(clock.now_ms(), 10.0, 10.0, 93.5));
    assert!(engine.engine.sync().await);
    let critical = slack.next().await;
    assert!(
        critical.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[CRITICAL] 告警升级 · 磁盘空间告警: db-1 挂载点 /data 使用率 93.5%，超过 90%*")
    );
    let alert = only_alert(&store).await;
    assert_eq!(
        (alert.severity, alert.occurrences, alert.key.as_str()),
        (AlertSeverity::Critical, 2, "db-1 /data")
    );
    assert_eq!(alert.host.as_deref(), Some("db-1"));

    clock.advance(Duration::from_secs(120));
    engine
        .engine
        .observe_metric(&sample(clock.now_ms(), 10.0, 10.0, 40.0));
    assert!(engine.engine.sync().await);
    assert_eq!(
        store.get_alert(alert.id).await.unwrap().unwrap().state,
        AlertState::Resolved
    );
    assert!(
        slack.next().await.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[已恢复] 磁盘空间告警")
    );
    engine.stop().await;
}

#[tokio::test]
async fn cpu_and_memory_high_use_000s_type_and_wording() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let config = config_with(Some(&slack), None);
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    engine.engine.observe_metric(&sample(t0, 70.0, 90.0, 10.0));
    assert!(engine.engine.sync().await);
    assert!(
        store.open_alerts().await.unwrap().is_empty(),
        "at the threshold is not over it"
    );
    engine.engine.observe_metric(&sample(t0, 85.0, 95.5, 10.0));
    assert!(engine.engine.sync().await);
    let mut texts = vec![slack.next().await.body["text"].as_str().unwrap().to_string()];
    texts.push(slack.next().await.body["text"].as_str().unwrap().to_string());
    texts.sort();
    assert!(
        texts[0].starts_with("*[WARNING] CPU使用率超过70% (db-1: 85%)*\n类型: CPU_HIGH"),
        "{texts:?}"
    );
    assert!(
        texts[1].starts_with("*[WARNING] 内存使用率超过90% (db-1: 95.5%)*\n类型: MEMORY_HIGH"),
        "{texts:?}"
    );
    let open = store.open_alerts().await.unwrap();
    let types: Vec<(&str, &str)> = open
        .iter()
        .map(|a| (a.alert_type.crm_name(), a.severity.crm_name()))
        .collect();
    assert!(
        types.contains(&("cpu_high", "warning")) && types.contains(&("memory_high", "warning")),
        "{types:?}"
    );
    engine.stop().await;
}

#[tokio::test]
async fn ip_anomaly_blocks_the_ip_and_extends_the_block_while_it_lasts() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let mut config = config_with(Some(&slack), None);
    config.alerts.ip_anomaly.max_requests_per_minute = 10;
    config.alerts.ip_anomaly.block_duration_minutes = 10;
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    engine
        .feed(
            &(0..10)
                .map(|_| request(t0, "Gateway", "GET", "/api/v1/items", 5.0, 200))
                .collect::<Vec<_>>(),
        )
        .await;
    assert!(
        store.blocked_ips(t0).await.unwrap().is_empty(),
        "10 per minute is allowed"
    );
    engine
        .feed(&[request(t0, "Gateway", "GET", "/api/v1/items", 5.0, 200)])
        .await;
    let text = slack.next().await.body["text"].as_str().unwrap().to_string();
    assert!(
        text.starts_with("*[WARNING] IP 异常告警: 198.51.100.23 每分钟请求 11 次，超过 10 次，封禁 10 分钟*"),
        "{text}"
    );
    let blocked = store.blocked_ips(t0).await.unwrap();
    assert_eq!(blocked.len(), 1);
    assert_eq!(
        (blocked[0].ip.as_str(), blocked[0].until_ms),
        ("198.51.100.23", t0 + 600_000)
    );
    let alert = only_alert(&store).await;
    assert_eq!(blocked[0].alert_id, Some(alert.id));

    // Still over the limit 30 s later: the block is extended from then.
    clock.advance(Duration::from_secs(30));
    engine
        .feed(&[request(
            clock.now_ms(),
            "Gateway",
            "GET",
            "/api/v1/items",
            5.0,
            200,
        )])
        .await;
    let blocked = store.blocked_ips(clock.now_ms()).await.unwrap();
    assert_eq!(blocked[0].until_ms, t0 + 30_000 + 600_000);

    // The alert resolves on silence; the block runs its course, then lifts.
    clock.advance(Duration::from_secs(120));
    assert!(engine.engine.sync().await);
    assert_eq!(
        store.get_alert(alert.id).await.unwrap().unwrap().state,
        AlertState::Resolved
    );
    assert_eq!(store.blocked_ips(clock.now_ms()).await.unwrap().len(), 1);
    assert!(store.blocked_ips(t0 + 30_000 + 600_000).await.unwrap().is_empty());
    engine.stop().await;
}

/// Decodes a MIME body in base64 or quoted-printable, with `\n` line ends.
fn decode_body(data: &str) -> String {
    decode_transfer(data).replace("\r\n", "\n")
}

fn decode_transfer(data: &str) -> String {
    let (headers, body) = data.split_once("\r\n\r\n").unwrap();
    let headers = headers.to_ascii_lowercase();
    if headers.contains("content-transfer-encoding: base64") {
        let joined: String = body.split_whitespace().collect();
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(joined).unwrap()).unwrap()
    } else if headers.contains("content-transfer-encoding: quoted-printable") {
        let soft = body.replace("=\r\n", "");
        let mut bytes = Vec::new();
        let raw = soft.as_bytes();
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'=' && i + 2 < raw.len() {
                bytes.push(u8::from_str_radix(std::str::from_utf8(&raw[i + 1..i + 3]).unwrap(), 16).unwrap());
                i += 3;
            } else {
                bytes.push(raw[i]);
                i += 1;
            }
        }
        String::from_utf8(bytes).unwrap()
    } else {
        body.to_string()
    }
}

#[tokio::test]
async fn email_reaches_every_recipient_over_smtp() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut smtp = SmtpServer::start().await;
    let mut config = config_with(None, None);
    let email = &mut config.notifications.email;
    email.enabled = true;
    email.smtp_host = "127.0.0.1".into();
    email.smtp_port = smtp.port;
    email.tls = owl_config::SmtpTls::None;
    email.from = "Owl Alerts <owl@example.com>".into();
    email.recipients = vec!["ops@example.com".into(), "oncall@example.com".into()];
    let t0 = start_ms();
    let engine = TestEngine::start(&config, &store, Clock::manual(t0)).await;

    engine
        .feed(&[request(t0, "Form", "POST", "/api/v1/forms/submit", 5234.0, 200)])
        .await;
    let mail = smtp.next().await;
    assert_eq!(mail.from, "owl@example.com");
    assert_eq!(mail.to, ["ops@example.com", "oncall@example.com"]);
    assert!(
        mail.data.contains("To: ops@example.com, oncall@example.com"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Subject: "), "{}", mail.data);
    let body = decode_body(&mail.data);
    assert!(
        body.starts_with("[WARNING] 慢请求告警: POST /api/v1/forms/submit 耗时 5234ms\n"),
        "{body}"
    );
    assert!(body.contains("traceId: CN-1733580000000-a1b2c3d4"), "{body}");
    let alert = only_alert(&store).await;
    wait_status(&store, alert.id, AlertStatus::Sent).await;
    engine.stop().await;
}

#[tokio::test]
async fn a_hung_channel_fails_after_retries_while_ingest_and_other_channels_go_on() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let slack = Sink::start(Answer::Hang).await;
    let mut feishu = Sink::feishu().await;
    let mut config = config_with(Some(&slack), Some((&feishu, "")));
    config.alerts.ip_anomaly.enabled = false;
    let t0 = start_ms();
    let engine = TestEngine::start(&config, &store, Clock::manual(t0)).await;

    engine
        .feed(&[request(t0, "Form", "POST", "/api/v1/forms/submit", 5234.0, 200)])
        .await;
    // Feishu gets it at once although Slack is hanging.
    let received = feishu.next().await;
    assert!(received.body.get("sign").is_none(), "no secret, no signature");
    // Ingest keeps going: feeding never waits, and the engine keeps evaluating.
    let started = Instant::now();
    for i in 0..2000 {
        engine
            .engine
            .observe_records(&[request(t0, "Form", "GET", &format!("/fast/{i}"), 3.0, 200)]);
    }
    let feeding = started.elapsed();
    assert!(engine.engine.sync().await);
    assert!(
        feeding < Duration::from_secs(1),
        "2000 observe calls took {feeding:?}"
    );

    let alert = only_alert(&store).await;
    let failed = wait_status(&store, alert.id, AlertStatus::Failed).await;
    let error = failed.last_error.unwrap();
    assert!(
        error.starts_with("slack: timed out") && error.ends_with("(after 3 attempts)"),
        "{error}"
    );
    assert_eq!(slack.hits(), 3);
    assert!(failed.sent_at.is_some(), "Feishu delivered");
    engine.stop().await;
}

#[tokio::test]
async fn refusals_are_retried_only_when_a_retry_may_help() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let slack = Sink::start(Answer::Reply(500, "rollup_error".into())).await;
    let config = config_with(Some(&slack), None);
    let t0 = start_ms();
    let engine = TestEngine::start(&config, &store, Clock::manual(t0)).await;

    engine
        .feed(&[request(t0, "Form", "POST", "/a", 5234.0, 200)])
        .await;
    let first = only_alert(&store).await;
    let failed = wait_status(&store, first.id, AlertStatus::Failed).await;
    assert_eq!(
        failed.last_error.as_deref(),
        Some("slack: HTTP 500 (after 3 attempts)")
    );
    assert_eq!(slack.hits(), 3);

    slack.answer(Answer::Reply(404, "no_service".into()));
    engine
        .feed(&[request(t0, "Form", "POST", "/b", 5234.0, 200)])
        .await;
    let second = store
        .open_alerts()
        .await
        .unwrap()
        .into_iter()
        .find(|a| a.id != first.id)
        .unwrap();
    let failed = wait_status(&store, second.id, AlertStatus::Failed).await;
    assert_eq!(failed.last_error.as_deref(), Some("slack: HTTP 404"));
    assert_eq!(slack.hits(), 4, "a 404 is not retried");
    engine.stop().await;
}

#[tokio::test]
async fn a_muted_type_is_recorded_but_not_notified_until_the_mute_ends() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let mut config = config_with(Some(&slack), None);
    config.alerts.resolve_after_s = 3600;
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let mute = Mute {
        alert_type: AlertType::SlowRequest,
        until_ms: t0 + 300_000,
        reason: "deploy".into(),
        created_by: "ops".into(),
        created_at: t0,
    };
    store.mute(&mute).await.unwrap();
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    engine
        .feed(&[request(t0, "Form", "POST", "/a", 5234.0, 200)])
        .await;
    let alert = only_alert(&store).await;
    assert_eq!((alert.status, alert.notices), (AlertStatus::Suppressed, 0));
    assert!(
        alert
            .last_error
            .as_deref()
            .unwrap()
            .starts_with("SLOW_REQUEST 已静默至 "),
        "{:?}",
        alert.last_error
    );

    clock.advance(Duration::from_secs(301));
    engine
        .feed(&[request(clock.now_ms(), "Form", "POST", "/a", 5234.0, 200)])
        .await;
    let fired = slack.next().await;
    assert!(
        fired.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[WARNING] 慢请求告警"),
        "first notice once the mute ended"
    );
    let alert = wait_status(&store, alert.id, AlertStatus::Sent).await;
    assert_eq!((alert.notices, alert.occurrences), (1, 2));
    assert_eq!(alert.last_error, None);
    engine.stop().await;
}

#[tokio::test]
async fn an_acknowledged_alert_is_not_renotified_but_its_resolution_is_told() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let config = config_with(Some(&slack), None);
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let engine = TestEngine::start(&config, &store, clock.clone()).await;

    engine
        .feed(&[request(t0, "Form", "POST", "/a", 5234.0, 200)])
        .await;
    slack.next().await;
    let alert = only_alert(&store).await;
    wait_status(&store, alert.id, AlertStatus::Sent).await;
    let acknowledged = store.acknowledge(alert.id, "ops", t0 + 1).await.unwrap().unwrap();
    assert_eq!(
        (acknowledged.status, acknowledged.acknowledged_by.as_deref()),
        (AlertStatus::Acknowledged, Some("ops"))
    );

    for _ in 0..3 {
        clock.advance(Duration::from_secs(61));
        engine
            .feed(&[request(clock.now_ms(), "Form", "POST", "/a", 5234.0, 200)])
            .await;
    }
    let row = store.get_alert(alert.id).await.unwrap().unwrap();
    assert_eq!(
        (row.notices, row.occurrences, row.status),
        (1, 4, AlertStatus::Acknowledged)
    );

    clock.advance(Duration::from_secs(120));
    assert!(engine.engine.sync().await);
    assert!(
        slack.next().await.body["text"]
            .as_str()
            .unwrap()
            .starts_with("*[已恢复]")
    );
    eventually("the resolved notice recorded", || async {
        store.get_alert(alert.id).await.unwrap().unwrap().sent_at > row.sent_at
    })
    .await;
    let row = store.get_alert(alert.id).await.unwrap().unwrap();
    assert_eq!(
        (row.state, row.status),
        (AlertState::Resolved, AlertStatus::Acknowledged),
        "acknowledgement is kept"
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_restarted_engine_folds_into_the_open_alert_without_notifying_again() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let config = config_with(Some(&slack), None);
    let t0 = start_ms();
    let clock = Clock::manual(t0);
    let first = TestEngine::start(&config, &store, clock.clone()).await;
    first
        .feed(&[request(t0, "Form", "POST", "/a", 5234.0, 200)])
        .await;
    slack.next().await;
    first.stop().await;

    let second = TestEngine::start(&config, &store, clock.clone()).await;
    clock.advance(Duration::from_secs(5));
    second
        .feed(&[request(clock.now_ms(), "Form", "POST", "/a", 5234.0, 200)])
        .await;
    let alert = only_alert(&store).await;
    assert_eq!(
        (alert.occurrences, alert.notices, alert.state),
        (2, 1, AlertState::Open)
    );
    assert!(slack.try_next().is_none());
    second.stop().await;
}

#[tokio::test]
async fn a_configuration_change_in_the_store_applies_without_restart() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let mut slack = Sink::slack().await;
    let config = config_with(None, None);
    let t0 = start_ms();
    let engine = TestEngine::start(&config, &store, Clock::manual(t0)).await;

    // No channel enabled: the alert is recorded and says why nothing was sent.
    engine
        .feed(&[request(t0, "Form", "POST", "/a", 3000.0, 200)])
        .await;
    let alert = only_alert(&store).await;
    assert_eq!(
        (alert.status, alert.last_error.as_deref()),
        (AlertStatus::Suppressed, Some("未启用任何通知通道"))
    );

    let url = slack.url.clone();
    let saved = store
        .update_settings(&config, "admin", t0, |current: &AlertSettings| {
            let mut next = current.clone();
            next.slow_request.threshold_ms = 6000;
            next.notifications.slack.enabled = true;
            next.notifications.slack.webhook_url = url.clone();
            Ok::<_, ()>(next)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(saved.version, Some(1));
    // The engine's clock stands still, so only an explicit reload (what the query API does after a
    // change) applies the new settings.
    assert!(engine.engine.reload().await);
    // The alert opened while no channel was enabled is delivered now, while it is still open, and
    // its history says it was held.
    assert!(
        slack.next().await.body["text"]
            .as_str()
            .unwrap()
            .contains("耗时 3000ms")
    );
    engine
        .feed(&[request(t0, "Form", "POST", "/b", 5234.0, 200)])
        .await;
    // The worker records the delivery once the sink has answered: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let alert = loop {
        let alert = only_alert(&store).await;
        if alert.status == AlertStatus::Sent || Instant::now() > deadline {
            break alert;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        (alert.status, alert.last_error.as_deref(), alert.notices),
        (AlertStatus::Sent, None, 1),
        "{alert:?}"
    );
    assert!(
        alert.context["heldDelivery"]["reason"].is_string(),
        "{:?}",
        alert.context
    );
    assert_eq!(
        store.open_alerts().await.unwrap().len(),
        1,
        "5234 ms is under the new 6000 ms threshold"
    );
    // A new occurrence of the held alert folds into it; the note stays.
    engine
        .feed(&[request(t0, "Form", "POST", "/a", 6500.0, 200)])
        .await;
    let alert = only_alert(&store).await;
    assert_eq!(alert.occurrences, 2);
    assert!(
        alert.context["heldDelivery"].is_object(),
        "the note survives a fold: {:?}",
        alert.context
    );
    engine
        .feed(&[request(t0, "Form", "POST", "/c", 7000.0, 200)])
        .await;
    // The fold above may have escalated /a first; the new alert for /c follows.
    let mut seen = Vec::new();
    while !seen.iter().any(|t: &String| t.contains("耗时 7000ms")) {
        assert!(seen.len() < 3, "no notice for /c: {seen:?}");
        seen.push(slack.next().await.body["text"].as_str().unwrap().to_string());
    }
    let open = store.open_alerts().await.unwrap();
    let fresh = open.iter().find(|a| a.message.contains("7000")).unwrap();
    assert!(
        fresh.context.get("heldDelivery").is_none(),
        "delivered at once: {:?}",
        fresh.context
    );
    engine.stop().await;
}

#[tokio::test]
async fn a_reload_applies_a_change_before_the_next_record() {
    install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(dir.path()).await;
    let config = config_with(None, None);
    let t0 = start_ms();
    let engine = TestEngine::start(&config, &store, Clock::manual(t0)).await;
    store
        .update_settings(&config, "admin", t0, |current: &AlertSettings| {
            let mut next = current.clone();
            next.slow_request.threshold_ms = 100;
            Ok::<_, ()>(next)
        })
        .await
        .unwrap()
        .unwrap();
    assert!(engine.engine.reload().await);
    // Not fed through `feed`, whose sync would reload on its own: the very next record.
    engine
        .engine
        .observe_records(&[request(t0, "Form", "GET", "/fast", 150.0, 200)]);
    assert!(engine.engine.sync().await);
    assert_eq!(
        store.open_alerts().await.unwrap().len(),
        1,
        "150 ms is over the new 100 ms threshold"
    );
    engine.stop().await;
}

#[tokio::test]
async fn another_process_change_reaches_the_engine_through_postgres_without_a_poll() {
    if services_skipped() {
        eprintln!("skipping PostgreSQL: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    install_crypto();
    let database = PgDatabase::create().await;
    let mut config = config_with(None, None);
    config.storage.database_url = owl_config::Secret::new(database.url());
    let store = store_at(&database.url(), 2, owl_alerts::SecretCipher::random()).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let options = owl_alerts::EngineOptions {
        // A poll an hour apart: only the announcement can bring the change in time.
        reload_interval: Duration::from_secs(3600),
        notifier: fast_notifier(),
        ..owl_alerts::EngineOptions::default()
    };
    let (engine, task) = owl_alerts::AlertEngine::start(&config, store.clone(), options, stop.clone())
        .await
        .unwrap();
    // Let the engine's listener connect first: a change it hears of only on connecting would prove
    // nothing about the announcement.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Another process: its own pool.
    let other = store_at(&database.url(), 2, owl_alerts::SecretCipher::random()).await;
    let t0 = start_ms();
    other
        .update_settings(&config, "admin", t0, |current: &AlertSettings| {
            let mut next = current.clone();
            next.slow_request.threshold_ms = 100;
            Ok::<_, ()>(next)
        })
        .await
        .unwrap()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        engine.observe_records(&[request(start_ms(), "Form", "GET", "/fast", 150.0, 200)]);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !store.open_alerts().await.unwrap().is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the change never reached the engine"
        );
    }
    stop.cancel();
    task.await.unwrap();
    other.close().await;
    store.close().await;
}

/// What makes each rule fire once at `now`.
fn trigger(alert_type: AlertType, now: i64) -> (Vec<owl_model::LogRecord>, Vec<MetricSample>) {
    let ok = |url: &str| request(now, "Form", "GET", url, 5.0, 200);
    match alert_type {
        AlertType::SlowRequest => (
            vec![request(now, "Form", "POST", "/api/v1/forms/submit", 5234.0, 200)],
            vec![],
        ),
        AlertType::HighErrorRate => {
            let mut records: Vec<_> = (0..19).map(|_| ok("/api/v1/forms")).collect();
            records.push(request(now, "Form", "GET", "/api/v1/forms", 5.0, 500));
            (records, vec![])
        }
        AlertType::IpAnomaly => ((0..101).map(|_| ok("/api/v1/items")).collect(), vec![]),
        AlertType::DiskSpace => (vec![], vec![sample(now, 10.0, 10.0, 85.0)]),
        AlertType::CpuHigh => (vec![], vec![sample(now, 90.0, 10.0, 10.0)]),
        AlertType::MemoryHigh => (vec![], vec![sample(now, 10.0, 95.0, 10.0)]),
    }
}

#[tokio::test]
async fn every_rule_fires_folds_renotifies_after_the_cooldown_and_resolves() {
    install_crypto();
    for alert_type in AlertType::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let mut slack = Sink::slack().await;
        let mut config = config_with(Some(&slack), None);
        config.alerts.error_rate.min_requests = 20;
        let t0 = start_ms();
        let clock = Clock::manual(t0);
        let engine = TestEngine::start(&config, &store, clock.clone()).await;
        let feed = |now: i64| {
            let (records, samples) = trigger(alert_type, now);
            engine.engine.observe(&records, &samples);
        };
        let text = |received: Received| received.body["text"].as_str().unwrap().to_string();

        feed(t0);
        assert!(engine.engine.sync().await);
        let fired = text(slack.next().await);
        assert!(fired.starts_with("*[WARNING] "), "{alert_type}: {fired}");
        assert!(
            fired.contains(&format!("类型: {alert_type}")),
            "{alert_type}: {fired}"
        );
        let alert = only_alert(&store).await;
        assert_eq!(alert.alert_type, alert_type);

        clock.advance(Duration::from_secs(10));
        feed(clock.now_ms());
        assert!(engine.engine.sync().await);
        let folded = store.get_alert(alert.id).await.unwrap().unwrap();
        // IP_ANOMALY counts every request over the limit, the others one occurrence per trigger.
        assert!(folded.occurrences >= 2, "{alert_type}: folded");
        assert_eq!(
            folded.notices, 1,
            "{alert_type}: inside the cooldown, not notified"
        );

        clock.advance(Duration::from_secs(60));
        feed(clock.now_ms());
        assert!(engine.engine.sync().await);
        let repeat = text(slack.next().await);
        assert!(repeat.contains("持续告警"), "{alert_type}: {repeat}");

        clock.advance(Duration::from_secs(120));
        assert!(engine.engine.sync().await);
        let resolved = text(slack.next().await);
        assert!(resolved.starts_with("*[已恢复] "), "{alert_type}: {resolved}");
        let row = store.get_alert(alert.id).await.unwrap().unwrap();
        assert_eq!(
            (row.state, row.notices),
            (AlertState::Resolved, 3),
            "{alert_type}"
        );
        engine.stop().await;
    }
}
