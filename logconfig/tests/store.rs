//! The SQL store on SQLite and MariaDB with the real migration: versions, concurrent updates, the cleanup queue
//! and its one-at-a-time lock, and a worker deleting partitions of a real index.

use std::time::Duration;

use chrono::Utc;
use owl_logconfig::{
    CleanupError, CleanupPolicy, JobStatus, LiveLogConfig, LogConfig, LogConfigStore, LogConfigUpdate,
};
use serde_json::json;

fn url(dir: &std::path::Path) -> String {
    format!("sqlite://{}?mode=rwc", dir.join("owl.db").display())
}

async fn migrated(dir: &std::path::Path) -> LogConfigStore {
    let db = owl_sql::open(&url(dir), 4).await.unwrap();
    LogConfigStore::new(db, LogConfig::default())
}

/// A store on a MariaDB database of its own, migrated; `None` (said) when the services are skipped.
async fn on_mariadb() -> Option<(owl_sql::testing::TempDatabase, LogConfigStore)> {
    if owl_sql::testing::services_skipped() {
        eprintln!("skipping MariaDB: OWL_TEST_SKIP_SERVICES=1");
        return None;
    }
    let database = owl_sql::testing::TempDatabase::mysql("owl_logconfig_test").await;
    let db = owl_sql::open(&database.url(), 4).await.unwrap();
    Some((database, LogConfigStore::new(db, LogConfig::default())))
}

/// A test on SQLite and on MariaDB.
macro_rules! on_each_backend {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let dir = tempfile::tempdir().unwrap();
                super::$name(super::migrated(dir.path()).await).await;
            })*
        }
        mod mariadb {
            $(#[tokio::test]
            async fn $name() {
                if let Some((_database, store)) = super::on_mariadb().await {
                    super::$name(store).await;
                }
            })*
        }
    };
}

on_each_backend!(
    while_nothing_is_stored_the_defaults_apply,
    updates_bump_the_version_and_never_lose_each_other,
    one_cleanup_at_a_time_with_leases,
);

fn update(value: serde_json::Value) -> LogConfigUpdate {
    serde_json::from_value(value).unwrap()
}

async fn while_nothing_is_stored_the_defaults_apply(store: LogConfigStore) {
    assert_eq!(store.version().await.unwrap(), 0);
    let loaded = store.load().await.unwrap();
    assert_eq!((loaded.version, loaded.config), (0, LogConfig::default()));
    assert_eq!(store.claim_cleanup(0).await.unwrap(), None);
}

async fn updates_bump_the_version_and_never_lose_each_other(store: LogConfigStore) {
    let now = Utc::now();
    let first = store
        .update(&update(json!({"level": "INFO"})), "alice", now)
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.config.updated_by, "alice");
    // Concurrent writers touching different fields: both land.
    let (retention, sampling) = (
        update(json!({"retention": {"http": 3}})),
        update(json!({"sampling": {"enabled": true}})),
    );
    let (a, b) = tokio::join!(
        store.update(&retention, "bob", now),
        store.update(&sampling, "carol", now)
    );
    a.unwrap();
    b.unwrap();
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.version, 3);
    assert_eq!(loaded.config.retention.http, 3);
    assert!(loaded.config.sampling.enabled);
    assert_eq!(loaded.config.level, owl_model::Level::Info);
    // An invalid update changes nothing.
    assert!(
        store
            .update(&update(json!({"level": "LOUD"})), "dave", now)
            .await
            .is_err()
    );
    assert_eq!(store.version().await.unwrap(), 3);

    // A live view follows the store.
    let live = LiveLogConfig::new(LogConfig::default());
    assert!(live.refresh(&store).await.unwrap());
    assert!(!live.refresh(&store).await.unwrap(), "nothing new");
    assert_eq!(live.version(), 3);
    assert_eq!(live.snapshot().policy.min_level(), owl_model::Level::Info);
}

async fn one_cleanup_at_a_time_with_leases(store: LogConfigStore) {
    let policy = CleanupPolicy {
        http_days: Some(14),
        ..CleanupPolicy::default()
    };
    let t0 = 1_000_000_000_000;
    let queued = store
        .submit_cleanup("http", &policy, "admin", t0, false)
        .await
        .unwrap();
    let refused = store
        .submit_cleanup("all", &policy, "ops", t0 + 1, true)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, CleanupError::InProgress { job_id: Some(id) } if id == queued),
        "{refused:?}"
    );

    let claimed = store.claim_cleanup(t0 + 2).await.unwrap().unwrap();
    assert_eq!(
        (claimed.id, claimed.status, claimed.policy),
        (queued, JobStatus::Running, policy)
    );
    assert_eq!(store.claim_cleanup(t0 + 3).await.unwrap(), None, "claimed once");
    let report = owl_logconfig::CleanupReport::default();
    store.finish_cleanup(queued, Ok(&report), t0 + 4).await.unwrap();
    let done = store.cleanup_job(queued).await.unwrap().unwrap();
    assert_eq!((done.status, done.report), (JobStatus::Done, Some(report)));
    assert_eq!(store.active_cleanup().await.unwrap(), None);

    // A job no worker takes expires with its lease; a withdrawn one releases the lock at once.
    let stale = store
        .submit_cleanup("http", &policy, "admin", t0 + 10, false)
        .await
        .unwrap();
    let later = t0 + 10 + owl_logconfig::cleanup::PENDING_LEASE_MS + 1;
    let next = store
        .submit_cleanup("http", &policy, "admin", later, false)
        .await
        .unwrap();
    assert_eq!(
        store.cleanup_job(stale).await.unwrap().unwrap().status,
        JobStatus::Failed
    );
    assert!(store.withdraw_cleanup(next, later + 1).await.unwrap());
    store
        .submit_cleanup("http", &policy, "admin", later + 2, true)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_worker_deletes_on_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let store = migrated(dir.path()).await;
    let index = owl_index::Index::open(&dir.path().join("index"), Default::default()).unwrap();
    let old = Utc::now() - chrono::Duration::days(30);
    let record = owl_model::LogRecord::from_json_value(
        json!({"id": "old", "@timestamp": owl_model::format_timestamp(&old), "message": "m", "http": {"url": "/a"}}),
        Utc::now(),
    )
    .unwrap();
    index.add(&[record]).unwrap();
    index.close().unwrap();
    let partition = dir
        .path()
        .join("index/http")
        .join(old.format("%Y-%m-%d").to_string());
    assert!(partition.exists());
    let job = store
        .submit_cleanup(
            "http",
            &CleanupPolicy {
                http_days: Some(7),
                ..CleanupPolicy::default()
            },
            "admin",
            Utc::now().timestamp_millis(),
            false,
        )
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let worker = tokio::spawn(owl_logconfig::cleanup_worker(
        store.clone(),
        index.clone(),
        Duration::from_millis(20),
        stop.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let finished = loop {
        let current = store.cleanup_job(job).await.unwrap().unwrap();
        if current.status == JobStatus::Done {
            break current;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the worker did not run the job"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let report = finished.report.unwrap();
    assert_eq!(report.partitions.len(), 1);
    assert!(report.files() > 0 && report.bytes() > 0);
    assert!(!partition.exists());
    stop.cancel();
    worker.await.unwrap();
}
