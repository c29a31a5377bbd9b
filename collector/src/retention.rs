//! Scheduled retention: every `storage.retention.check_interval_s` the collector (the index writer)
//! drops the partitions and metric day files past the retention in force.
//!
//! The retention in force can change while the collector runs: the log API's `PUT /api/v1/logs/config`
//! stores new days per kind in SQL, and the live settings (`owl-logconfig`) pick them up. So the
//! job asks a [`RetentionSource`] at every run rather than fixing the policy at start; the source
//! gets the configuration file's policy and returns the one in force, which is the file's until
//! live settings exist. The collector cannot depend on `owl-logconfig` (that crate implements the
//! collector's hooks), hence the trait.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use owl_config::RetentionConfig;
use owl_index::{Index, IndexError, RetentionPolicy, RetentionReport};
use tokio_util::sync::CancellationToken;

use crate::events::{RetentionFailed, RetentionRan};

/// Where scheduled retention reads the days to keep, at every run.
pub trait RetentionSource: Send + Sync {
    /// The policy in force now; `file` is the configuration file's, the fallback.
    fn policy(&self, file: &RetentionPolicy) -> RetentionPolicy;
}

/// The configuration file's retention, unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileRetention;

impl RetentionSource for FileRetention {
    fn policy(&self, file: &RetentionPolicy) -> RetentionPolicy {
        *file
    }
}

/// The index's retention policy from the configuration file.
pub fn file_policy(config: &RetentionConfig) -> RetentionPolicy {
    RetentionPolicy {
        http_days: Some(config.http_days),
        application_days: Some(config.application_days),
        error_days: Some(config.error_days),
        metrics_days: Some(config.metrics_days),
    }
}

/// One scheduled retention job over an index writer.
#[derive(Clone)]
pub struct RetentionJob {
    index: Index,
    file: RetentionPolicy,
    source: Arc<dyn RetentionSource>,
}

impl std::fmt::Debug for RetentionJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetentionJob")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl RetentionJob {
    /// A job applying `source`'s policy (given the file's `config`) to `index`.
    pub fn new(index: Index, config: &RetentionConfig, source: Arc<dyn RetentionSource>) -> RetentionJob {
        RetentionJob {
            index,
            file: file_policy(config),
            source,
        }
    }

    /// The policy the next run applies.
    pub fn policy(&self) -> RetentionPolicy {
        self.source.policy(&self.file)
    }

    /// One run at `now`: reads the policy in force and drops what it expires. Blocking.
    pub fn tick(&self, now: DateTime<Utc>) -> Result<RetentionReport, IndexError> {
        let policy = self.policy();
        tracing::debug!(?policy, "running scheduled retention");
        self.index.apply_retention(now, &policy, false)
    }

    /// Runs now and then every `interval` until `stop`.
    pub(crate) async fn run(self, interval: Duration, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let job = self.clone();
            match tokio::task::spawn_blocking(move || job.tick(Utc::now())).await {
                Ok(Ok(report)) => RetentionRan { report: &report }.emit(),
                Ok(Err(error)) => RetentionFailed { error: &error }.emit(),
                Err(error) => RetentionFailed { error: &error }.emit(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use owl_index::IndexSettings;
    use owl_model::{Kind, LogRecord};

    use super::*;

    /// A source whose application days a test changes between runs.
    #[derive(Default)]
    struct Switch(Mutex<Option<u32>>);

    impl RetentionSource for Switch {
        fn policy(&self, file: &RetentionPolicy) -> RetentionPolicy {
            let mut policy = *file;
            if let Some(days) = *self.0.lock().unwrap() {
                policy.application_days = Some(days);
            }
            policy
        }
    }

    fn record(id: &str, at: DateTime<Utc>) -> LogRecord {
        LogRecord::from_json_value(
            serde_json::json!({"id": id, "@timestamp": at.to_rfc3339(), "message": "m", "level": "INFO"}),
            at,
        )
        .unwrap()
    }

    fn application_days(index: &Index) -> Vec<chrono::NaiveDate> {
        index
            .partitions()
            .unwrap()
            .into_iter()
            .filter(|p| p.key.kind == Kind::Application)
            .map(|p| p.key.day)
            .collect()
    }

    #[test]
    fn every_run_reads_the_policy_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(
            dir.path(),
            IndexSettings {
                writer_memory_bytes: 15_000_000,
                ..IndexSettings::default()
            },
        )
        .unwrap();
        let now = Utc::now();
        let old = now - chrono::Duration::days(10);
        let recent = now - chrono::Duration::days(3);
        index
            .add(&[record("old", old), record("recent", recent)])
            .unwrap();
        index.commit().unwrap();
        let config = RetentionConfig::default();
        assert!(config.application_days > 10, "the file keeps both");
        let switch = Arc::new(Switch::default());
        let job = RetentionJob::new(index.clone(), &config, switch.clone());

        job.tick(now).unwrap();
        assert_eq!(application_days(&index), [old.date_naive(), recent.date_naive()]);

        *switch.0.lock().unwrap() = Some(5);
        let report = job.tick(now).unwrap();
        assert_eq!(report.partitions.len(), 1, "{report:?}");
        assert_eq!(application_days(&index), [recent.date_naive()]);
        assert!(index.get("recent").unwrap().is_some());
        assert!(index.get("old").unwrap().is_none());
    }

    #[test]
    fn the_file_source_returns_the_file_policy() {
        let config = RetentionConfig {
            http_days: 1,
            application_days: 2,
            error_days: 3,
            metrics_days: 4,
            check_interval_s: 60,
            audit_days: 180,
        };
        let file = file_policy(&config);
        assert_eq!(FileRetention.policy(&file), file);
        assert_eq!(
            (
                file.http_days,
                file.application_days,
                file.error_days,
                file.metrics_days
            ),
            (Some(1), Some(2), Some(3), Some(4))
        );
    }
}
