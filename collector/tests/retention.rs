//! Scheduled retention follows the live log settings: a retention changed through the SQL store
//! (what `PUT /api/v1/logs/config` does) applies at the collector's next scheduled run, without a
//! restart, and the configuration file's retention applies until then.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::{TestCollector, data_dir, eventually, wait_count};
use owl_index::Index;
use owl_logconfig::{LogConfig, LogConfigRuntime, LogConfigStore, LogConfigUpdate};
use owl_model::Kind;
use tokio_util::sync::CancellationToken;

fn application_days(index: &Index) -> Vec<chrono::NaiveDate> {
    index
        .partitions()
        .expect("partitions")
        .into_iter()
        .filter(|p| p.key.kind == Kind::Application)
        .map(|p| p.key.day)
        .collect()
}

fn record(id: &str, at: DateTime<Utc>) -> String {
    serde_json::json!({"id": id, "@timestamp": at.to_rfc3339(), "level": "INFO", "message": format!("livemark {id}")})
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_retention_change_applies_at_the_next_scheduled_run() {
    let (_dir, data) = data_dir();
    std::fs::create_dir_all(&data).unwrap();
    let mut config = common::config(&data);
    // Below what a config file may set (10 s), to keep the test short; `run_with` takes it as is.
    config.storage.retention.check_interval_s = 1;
    let file_days = config.storage.retention.application_days;
    assert!(file_days > 10, "the file's retention keeps both partitions");

    let db = owl_sql::open(&config.database_url(), 2)
        .await
        .expect("Owl's schema applies");
    let store = LogConfigStore::new(db, LogConfig::defaults(&config));
    let settings_stop = CancellationToken::new();
    let runtime = LogConfigRuntime::start_with(
        store.clone(),
        None,
        Duration::from_millis(50),
        settings_stop.clone(),
    )
    .await;
    let hooks = owl_collector::Hooks {
        filter: runtime.filter(),
        retention: runtime.retention(),
        ..owl_collector::Hooks::default()
    };
    let collector = TestCollector::start_with(config.clone(), hooks).await;

    let now = Utc::now();
    let old = now - chrono::Duration::days(10);
    let recent = now - chrono::Duration::days(3);
    let body = format!("{}\n{}\n", record("old", old), record("recent", recent));
    assert_eq!(collector.ingest(body.as_bytes(), &[]).await.json()["accepted"], 2);
    wait_count(&collector.index, "livemark", 2).await;

    // No live settings stored yet: a run applies the file's retention and keeps both.
    let job = owl_collector::RetentionJob::new(
        collector.index.clone(),
        &config.storage.retention,
        runtime.retention(),
    );
    assert_eq!(job.policy().application_days, Some(file_days));
    job.tick(Utc::now()).unwrap();
    assert_eq!(
        application_days(&collector.index),
        [old.date_naive(), recent.date_naive()]
    );

    let update: LogConfigUpdate =
        serde_json::from_value(serde_json::json!({"retention": {"application": 5}})).unwrap();
    store.update(&update, "admin", Utc::now()).await.unwrap();

    // The scheduled job (every second) picks the new days up once the settings reloaded.
    let dropped = eventually(Duration::from_secs(60), || {
        !application_days(&collector.index).contains(&old.date_naive())
    })
    .await;
    assert!(
        dropped.is_some(),
        "the partition of 10 days ago survived a live retention of 5 days: {:?}",
        application_days(&collector.index)
    );
    assert_eq!(job.policy().application_days, Some(5));
    assert_eq!(application_days(&collector.index), [recent.date_naive()]);
    assert!(collector.index.get("recent").unwrap().is_some());
    assert!(collector.index.get("old").unwrap().is_none());

    collector.stop().await;
    settings_stop.cancel();
    runtime.stopped().await;
}
