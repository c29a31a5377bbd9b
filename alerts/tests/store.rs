//! The alert store on SQLite and on PostgreSQL (a fresh database per run): the same portable SQL
//! must behave the same on both.

mod common;

use common::*;
use owl_alerts::{
    Alert, AlertFilter, AlertSettings, AlertSeverity, AlertState, AlertStatus, AlertStore, AlertType,
    BlockedIp, Channel, DeliveryOutcome, Mute, SecretCipher,
};
use serde_json::{Map, json};
use uuid::Uuid;

const T0: i64 = 1_733_567_400_000;

fn alert(alert_type: AlertType, key: &str, created_at: i64, region: Option<&str>) -> Alert {
    let mut context = Map::new();
    context.insert("traceId".into(), json!("CN-1"));
    Alert {
        id: Uuid::now_v7(),
        alert_type,
        key: key.into(),
        severity: AlertSeverity::Warning,
        state: AlertState::Open,
        status: AlertStatus::Pending,
        message: format!("{alert_type} {key}"),
        context,
        service: Some("Form".into()),
        host: None,
        region: region.map(str::to_string),
        channels: vec![Channel::Slack, Channel::Email],
        occurrences: 1,
        notices: 1,
        last_error: None,
        created_at,
        last_seen_at: created_at,
        notified_at: Some(created_at),
        sent_at: None,
        resolved_at: None,
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

async fn exercise(store: AlertStore) {
    // One open alert per type and key.
    let first = alert(AlertType::SlowRequest, "Form POST /a", T0, Some("CN"));
    assert!(store.insert_alert(&first).await.unwrap());
    assert_eq!(
        store.get_alert(first.id).await.unwrap().unwrap(),
        first,
        "round trip of every column"
    );
    let twin = alert(AlertType::SlowRequest, "Form POST /a", T0 + 1, Some("CN"));
    assert!(
        !store.insert_alert(&twin).await.unwrap(),
        "a second open alert of the same key is refused"
    );
    assert_eq!(
        store
            .open_alert(AlertType::SlowRequest, "Form POST /a")
            .await
            .unwrap()
            .unwrap()
            .id,
        first.id
    );

    // Folds report the status; deliveries never override an acknowledgement.
    let status = store
        .fold(first.id, AlertSeverity::Critical, "m2", &Map::new(), 3, T0 + 50)
        .await
        .unwrap();
    assert_eq!(status, Some(AlertStatus::Pending));
    store
        .record_delivery(first.id, &DeliveryOutcome::Failed("email: SMTP down".into()))
        .await
        .unwrap();
    store
        .record_delivery(first.id, &DeliveryOutcome::Sent(T0 + 60))
        .await
        .unwrap();
    let row = store.get_alert(first.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.last_error.as_deref(), row.sent_at),
        (AlertStatus::Failed, Some("email: SMTP down"), Some(T0 + 60))
    );
    assert_eq!(
        (row.occurrences, row.severity, row.message.as_str()),
        (3, AlertSeverity::Critical, "m2")
    );
    let acked = store
        .acknowledge(first.id, "ops", T0 + 70)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            acked.status,
            acked.acknowledged_at,
            acked.acknowledged_by.as_deref()
        ),
        (AlertStatus::Acknowledged, Some(T0 + 70), Some("ops"))
    );
    let again = store
        .acknowledge(first.id, "admin", T0 + 80)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.acknowledged_at, again.acknowledged_by.as_deref()),
        (Some(T0 + 70), Some("ops")),
        "the first acknowledgement stays"
    );
    store
        .notice_queued(first.id, &[Channel::Slack], None, T0 + 90)
        .await
        .unwrap();
    store
        .record_delivery(first.id, &DeliveryOutcome::Failed("slack: down".into()))
        .await
        .unwrap();
    assert_eq!(
        store
            .fold(first.id, AlertSeverity::Critical, "m3", &Map::new(), 4, T0 + 95)
            .await
            .unwrap(),
        Some(AlertStatus::Acknowledged)
    );
    assert!(
        store
            .acknowledge(Uuid::now_v7(), "ops", T0)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .fold(Uuid::now_v7(), AlertSeverity::Info, "", &Map::new(), 1, T0)
            .await
            .unwrap(),
        None
    );

    store.resolve(first.id, T0 + 100).await.unwrap();
    assert!(store.open_alerts().await.unwrap().is_empty());
    assert!(
        store.insert_alert(&twin).await.unwrap(),
        "a new incident once the first resolved"
    );

    // Listing: filters, order, pages, summary.
    let disk = alert(AlertType::DiskSpace, "db-1 /", T0 + 10, Some("US"));
    let cpu = alert(AlertType::CpuHigh, "db-1", T0 + 20, None);
    store.insert_alert(&disk).await.unwrap();
    store.insert_alert(&cpu).await.unwrap();
    let (page, total) = store.list_alerts(&AlertFilter::default(), 0, 2).await.unwrap();
    assert_eq!(total, 4);
    assert_eq!(
        page.iter().map(|a| a.id).collect::<Vec<_>>(),
        [cpu.id, disk.id],
        "newest first"
    );
    let (page, _) = store
        .list_alerts(
            &AlertFilter {
                ascending: true,
                ..AlertFilter::default()
            },
            1,
            2,
        )
        .await
        .unwrap();
    assert_eq!(page.iter().map(|a| a.id).collect::<Vec<_>>(), [twin.id, disk.id]);
    let only_cn = AlertFilter {
        regions: Some(vec!["CN".into()]),
        ..AlertFilter::default()
    };
    assert_eq!(store.list_alerts(&only_cn, 0, 10).await.unwrap().1, 2);
    let nothing = AlertFilter {
        regions: Some(vec![]),
        ..AlertFilter::default()
    };
    assert_eq!(store.list_alerts(&nothing, 0, 10).await.unwrap().1, 0);
    let acknowledged = AlertFilter {
        status: Some(AlertStatus::Acknowledged),
        ..AlertFilter::default()
    };
    assert_eq!(
        store.list_alerts(&acknowledged, 0, 10).await.unwrap().0[0].id,
        first.id
    );
    let window = AlertFilter {
        start_ms: Some(T0 + 5),
        end_ms: Some(T0 + 15),
        ..AlertFilter::default()
    };
    assert_eq!(store.list_alerts(&window, 0, 10).await.unwrap().0[0].id, disk.id);
    let summary = store.summary(&AlertFilter::default()).await.unwrap();
    assert_eq!(summary.total, 4);
    assert_eq!(summary.by_type[&AlertType::SlowRequest], 2);
    assert_eq!(summary.by_status[&AlertStatus::Acknowledged], 1);
    assert_eq!(summary.by_status[&AlertStatus::Pending], 3);
    assert_eq!(store.purge_resolved(T0 + 1).await.unwrap(), 1);

    // Configuration: compare-and-swap on the version.
    let config = owl_config::Config::default();
    let effective = store.effective_settings(&config).await.unwrap();
    assert_eq!(
        (effective.version, effective.settings.slow_request.threshold_ms),
        (None, 2000)
    );
    let mut settings = AlertSettings::default();
    settings.notifications.feishu.secret = "s3cret".into();
    assert_eq!(
        store.save_settings(&settings, None, "admin", T0).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        store.save_settings(&settings, None, "admin", T0).await.unwrap(),
        None,
        "lost the race"
    );
    assert_eq!(
        store
            .save_settings(&settings, Some(1), "ops", T0 + 1)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        store
            .save_settings(&settings, Some(1), "ops", T0 + 1)
            .await
            .unwrap(),
        None
    );
    let stored = store
        .load_settings(&AlertSettings::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            stored.version,
            stored.updated_by.as_str(),
            stored.settings.notifications.feishu.secret.as_str()
        ),
        (2, "ops", "s3cret")
    );
    let updated = store
        .update_settings(&config, "admin", T0 + 2, |current| {
            let mut next = current.clone();
            next.cooldown_seconds = 30;
            Ok::<_, ()>(next)
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.version, Some(3));
    assert_eq!(store.settings_version().await.unwrap(), Some(3));
    let refused = store
        .update_settings(&config, "admin", T0, |_| Err::<AlertSettings, _>("no"))
        .await
        .unwrap();
    // A partial document (the log config endpoint writes only rule fields) keeps the config file's
    // values for the rest.
    let mut partial = store.sql("UPDATE alert_config SET settings = ");
    partial
        .bind(json!({"slowRequest": {"thresholdMs": 3000}}).to_string())
        .push(", version = version + 1 WHERE id = 1");
    partial.query().execute(store.pool()).await.unwrap();
    let mut file = owl_config::Config::default();
    file.alerts.cpu.threshold_percent = 85.0;
    let effective = store.effective_settings(&file).await.unwrap();
    assert_eq!(
        (effective.version, effective.settings.slow_request.threshold_ms),
        (Some(4), 3000)
    );
    assert_eq!(effective.settings.cpu.threshold_percent, 85.0);
    assert_eq!(refused.unwrap_err(), "no");

    // Mutes and blocks.
    let mute = Mute {
        alert_type: AlertType::DiskSpace,
        until_ms: T0 + 1000,
        reason: "maintenance".into(),
        created_by: "ops".into(),
        created_at: T0,
    };
    store.mute(&mute).await.unwrap();
    store
        .mute(&Mute {
            until_ms: T0 + 2000,
            ..mute.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.mutes(T0).await.unwrap(),
        [Mute {
            until_ms: T0 + 2000,
            ..mute.clone()
        }]
    );
    assert!(store.mutes(T0 + 2000).await.unwrap().is_empty());
    assert!(store.unmute(AlertType::DiskSpace, T0).await.unwrap());
    assert!(!store.unmute(AlertType::DiskSpace, T0).await.unwrap());

    let block = BlockedIp {
        ip: "203.0.113.9".into(),
        until_ms: T0 + 600_000,
        reason: "IP 异常".into(),
        alert_id: Some(first.id),
        created_at: T0,
    };
    store.block_ip(&block).await.unwrap();
    store
        .block_ip(&BlockedIp {
            until_ms: T0 + 1000,
            ..block.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        store.blocked_ips(T0).await.unwrap(),
        std::slice::from_ref(&block),
        "a block is never shortened"
    );
    store
        .block_ip(&BlockedIp {
            until_ms: T0 + 900_000,
            ..block.clone()
        })
        .await
        .unwrap();
    assert_eq!(store.blocked_ips(T0).await.unwrap()[0].until_ms, T0 + 900_000);
    store.purge_expired(T0 + 900_000).await.unwrap();
    assert!(
        store.blocked_ips(T0).await.unwrap().is_empty(),
        "expired blocks are purged"
    );
    store.block_ip(&block).await.unwrap();
    assert!(store.unblock_ip("203.0.113.9", T0).await.unwrap());
    assert!(store.blocked_ips(T0).await.unwrap().is_empty());
}

#[tokio::test]
async fn store_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    exercise(sqlite_store(dir.path()).await).await;
}

#[tokio::test]
async fn store_on_postgres() {
    if services_skipped() {
        eprintln!("skipping PostgreSQL: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = PgDatabase::create().await;
    let store = store_at(&database.url(), 4, SecretCipher::random()).await;
    exercise(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn store_on_mariadb() {
    if services_skipped() {
        eprintln!("skipping MariaDB: OWL_TEST_SKIP_SERVICES=1");
        return;
    }
    let database = PgDatabase::mariadb().await;
    let store = store_at(&database.url(), 4, SecretCipher::random()).await;
    exercise(store.clone()).await;
    store.close().await;
}

#[tokio::test]
async fn channel_secrets_are_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("owl.db").display());
    let key = [7u8; 32];
    let store = store_at(&url, 2, SecretCipher::new(key)).await;
    let mut settings = AlertSettings::default();
    settings.notifications.slack.webhook_url = "https://hooks.slack.com/services/T/B/SLACKSECRET".into();
    settings.notifications.feishu.webhook_url =
        "https://open.feishu.cn/open-apis/bot/v2/hook/FEISHUHOOK".into();
    settings.notifications.feishu.secret = "FEISHUSIGNING".into();
    settings.notifications.email.password = "SMTPPASSWORD".into();
    settings.notifications.email.smtp_host = "smtp.example.com".into();
    store.save_settings(&settings, None, "admin", T0).await.unwrap();
    let raw: String = sqlx::query_scalar("SELECT settings FROM alert_config WHERE id = 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    for secret in ["SLACKSECRET", "FEISHUHOOK", "FEISHUSIGNING", "SMTPPASSWORD"] {
        assert!(!raw.contains(secret), "{secret} stored in clear: {raw}");
    }
    assert!(
        raw.contains("smtp.example.com"),
        "what is not secret stays readable: {raw}"
    );
    let loaded = store
        .load_settings(&AlertSettings::default())
        .await
        .unwrap()
        .unwrap()
        .settings;
    assert_eq!(loaded.notifications, settings.notifications);
    // Another key cannot read them, and says so rather than sending garbage.
    let other = AlertStore::new(
        owl_sql::Db::from_pool(store.pool().clone(), owl_sql::Backend::Sqlite),
        std::sync::Arc::new(SecretCipher::random()),
    );
    let error = other.load_settings(&AlertSettings::default()).await.unwrap_err();
    assert!(error.to_string().contains("secret key"), "{error}");
    // A value stored in clear before encryption existed is read, and sealed by the next save.
    let legacy = raw.replace(
        &serde_json::from_str::<serde_json::Value>(&raw).unwrap()["notifications"]["email"]["password"]
            .as_str()
            .unwrap()
            .to_string(),
        "LEGACYPASSWORD",
    );
    sqlx::query("UPDATE alert_config SET settings = $1 WHERE id = 1")
        .bind(legacy)
        .execute(store.pool())
        .await
        .unwrap();
    let loaded = store
        .load_settings(&AlertSettings::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(loaded.settings.notifications.email.password, "LEGACYPASSWORD");
    store
        .save_settings(&loaded.settings, Some(loaded.version), "admin", T0 + 1)
        .await
        .unwrap();
    let raw: String = sqlx::query_scalar("SELECT settings FROM alert_config WHERE id = 1")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!raw.contains("LEGACYPASSWORD"), "{raw}");
}
