//! [`LiveLogConfig`]: the settings a running collector applies, swapped in as they change.
//!
//! Readers (every ingested record) take a read lock for the time of cloning an `Arc`; the reloader
//! swaps the snapshot under the write lock when the stored version moves. Polling the version every
//! second was chosen over notifications (PostgreSQL `LISTEN` has no SQLite counterpart, and a file
//! watch would not reach a collector on another node): one indexed read per second per process,
//! and a change applies within about a second wherever the collector runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use owl_index::RetentionPolicy;
use owl_model::LogRecord;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::LogConfig;
use crate::policy::{IngestPolicy, Verdict};
use crate::store::{LogConfigStore, StoreError, Stored};

/// The settings in force and their compiled policy.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The store version they came from (0: defaults).
    pub version: i64,
    /// The settings.
    pub config: LogConfig,
    /// The compiled policy.
    pub policy: IngestPolicy,
}

/// What the policy decided so far, since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decisions {
    /// Records stored.
    pub kept: u64,
    /// Records below the minimum level.
    pub below_level: u64,
    /// Records on a `neverLog` path.
    pub never_log: u64,
    /// Records dropped by dynamic sampling.
    pub sampled: u64,
}

#[derive(Debug, Default)]
struct Counters {
    kept: AtomicU64,
    below_level: AtomicU64,
    never_log: AtomicU64,
    sampled: AtomicU64,
}

/// Records per second, from per-second counts: the larger of the last complete second and the
/// current one, so a burst counts as soon as it starts.
#[derive(Debug, Default)]
struct RateMeter {
    state: Mutex<(i64, u64, u64)>,
}

impl RateMeter {
    fn observe(&self, now_ms: i64) -> f64 {
        let second = now_ms.div_euclid(1000);
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (current_second, current, previous) = &mut *state;
        if second != *current_second {
            *previous = if second == *current_second + 1 {
                *current
            } else {
                0
            };
            *current = 0;
            *current_second = second;
        }
        *current += 1;
        (*previous).max(*current) as f64
    }
}

/// A clock in epoch milliseconds.
pub type ClockFn = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The live settings of one process.
pub struct LiveLogConfig {
    snapshot: RwLock<Arc<Snapshot>>,
    meter: RateMeter,
    counters: Counters,
    clock: ClockFn,
}

impl std::fmt::Debug for LiveLogConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveLogConfig")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl LiveLogConfig {
    /// Starts from `initial` (version 0) with the system clock.
    pub fn new(initial: LogConfig) -> Arc<LiveLogConfig> {
        LiveLogConfig::with_clock(initial, Arc::new(|| chrono::Utc::now().timestamp_millis()))
    }

    /// Starts from `initial` with a clock of its own (tests).
    pub fn with_clock(initial: LogConfig, clock: ClockFn) -> Arc<LiveLogConfig> {
        let snapshot = Snapshot {
            version: 0,
            policy: IngestPolicy::compile(&initial),
            config: initial,
        };
        Arc::new(LiveLogConfig {
            snapshot: RwLock::new(Arc::new(snapshot)),
            meter: RateMeter::default(),
            counters: Counters::default(),
            clock,
        })
    }

    /// The settings in force.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The version in force.
    pub fn version(&self) -> i64 {
        self.snapshot().version
    }

    /// Puts stored settings in force.
    pub fn install(&self, stored: Stored) {
        let snapshot = Snapshot {
            version: stored.version,
            policy: IngestPolicy::compile(&stored.config),
            config: stored.config,
        };
        tracing::info!(
            version = snapshot.version,
            level = %snapshot.config.level,
            sampling = snapshot.config.sampling.enabled,
            "log config applied"
        );
        *self
            .snapshot
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(snapshot);
    }

    /// Decides for one record and counts the decision.
    pub fn decide(&self, record: &LogRecord) -> Verdict {
        let snapshot = self.snapshot();
        let verdict = snapshot
            .policy
            .decide(record, || self.meter.observe((self.clock)()));
        let counter = match verdict {
            Verdict::Keep => &self.counters.kept,
            Verdict::BelowLevel => &self.counters.below_level,
            Verdict::NeverLog => &self.counters.never_log,
            Verdict::Sampled => &self.counters.sampled,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if !verdict.keeps() {
            tracing::trace!(id = %record.id, ?verdict, "record dropped by the log config");
        }
        verdict
    }

    /// The retention in force: the days per kind of the stored settings, or `file` (the
    /// configuration file's policy) while none are stored. Metrics are not part of the settings
    /// and keep `file`'s days.
    pub fn retention_policy(&self, file: &RetentionPolicy) -> RetentionPolicy {
        let snapshot = self.snapshot();
        if snapshot.version == 0 {
            return *file;
        }
        let retention = &snapshot.config.retention;
        RetentionPolicy {
            http_days: Some(retention.http),
            application_days: Some(retention.application),
            error_days: Some(retention.error),
            metrics_days: file.metrics_days,
        }
    }

    /// Whether the record is stored.
    pub fn admit(&self, record: &LogRecord) -> bool {
        self.decide(record).keeps()
    }

    /// The decisions so far.
    pub fn decisions(&self) -> Decisions {
        Decisions {
            kept: self.counters.kept.load(Ordering::Relaxed),
            below_level: self.counters.below_level.load(Ordering::Relaxed),
            never_log: self.counters.never_log.load(Ordering::Relaxed),
            sampled: self.counters.sampled.load(Ordering::Relaxed),
        }
    }

    /// Reads the stored version and, when it moved, loads and applies the settings. Returns whether
    /// anything changed.
    pub async fn refresh(&self, store: &LogConfigStore) -> Result<bool, StoreError> {
        let version = store.version().await?;
        if version == self.version() {
            return Ok(false);
        }
        let stored = store.load().await?;
        self.install(stored);
        Ok(true)
    }

    /// Polls the store every `interval` until `shutdown`.
    pub fn spawn_reloader(
        self: &Arc<Self>,
        store: LogConfigStore,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let live = self.clone();
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                match live.refresh(&store).await {
                    Ok(_) if failing => {
                        tracing::info!("log config store reachable again");
                        failing = false;
                    }
                    Ok(_) => {}
                    Err(error) if !failing => {
                        tracing::warn!(%error, "cannot read the log config; keeping the settings in force");
                        failing = true;
                    }
                    Err(error) => tracing::debug!(%error, "log config store still unreachable"),
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        })
    }
}

#[cfg(feature = "collector")]
impl owl_collector::IngestFilter for LiveLogConfig {
    fn admit(&self, record: &LogRecord) -> bool {
        LiveLogConfig::admit(self, record)
    }
}

#[cfg(feature = "collector")]
impl owl_collector::RetentionSource for LiveLogConfig {
    fn policy(&self, file: &RetentionPolicy) -> RetentionPolicy {
        self.retention_policy(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    #[test]
    fn rate_meter_counts_per_second() {
        let meter = RateMeter::default();
        for _ in 0..9 {
            meter.observe(10_500);
        }
        assert_eq!(meter.observe(10_999), 10.0);
        assert_eq!(meter.observe(11_000), 10.0, "the last complete second counts");
        assert_eq!(meter.observe(13_000), 1.0, "a gap resets it");
    }

    #[test]
    fn retention_follows_the_stored_settings_and_falls_back_to_the_file() {
        let file = RetentionPolicy {
            http_days: Some(14),
            application_days: Some(30),
            error_days: Some(30),
            metrics_days: Some(7),
        };
        // The defaults of a config file with other days than `file`: version 0 still means the
        // file's policy.
        let live = LiveLogConfig::new(LogConfig::default());
        assert_eq!(live.retention_policy(&file), file);
        let update: crate::model::LogConfigUpdate =
            serde_json::from_value(serde_json::json!({"retention": {"application": 5, "error": 9}})).unwrap();
        let changed = LogConfig::default().apply(&update).unwrap();
        live.install(Stored {
            version: 1,
            config: changed.clone(),
        });
        let policy = live.retention_policy(&file);
        assert_eq!(policy.application_days, Some(5));
        assert_eq!(policy.error_days, Some(9));
        assert_eq!(policy.http_days, Some(changed.retention.http));
        assert_eq!(policy.metrics_days, Some(7), "metrics keep the file's days");
    }

    #[test]
    fn dynamic_sampling_follows_the_measured_rate() {
        let now = Arc::new(AtomicI64::new(0));
        let clock = now.clone();
        let update: crate::model::LogConfigUpdate = serde_json::from_value(serde_json::json!({
            "sampling": {"enabled": true, "rules": {"alwaysLog": {"levels": []},
                "dynamic": {"qpsThreshold": 10, "minSampleRate": 0.1, "maxSampleRate": 1.0}}}
        }))
        .unwrap();
        let config = LogConfig::default().apply(&update).unwrap();
        let live = LiveLogConfig::with_clock(config, Arc::new(move || clock.load(Ordering::Relaxed)));
        let record = |i: u32| {
            LogRecord::from_json_value(
                serde_json::json!({"id": format!("r{i}"), "message": "m", "level": "INFO"}),
                chrono::Utc::now(),
            )
            .unwrap()
        };
        // Ten a second: under the threshold, all kept.
        for second in 0..3 {
            for i in 0..10 {
                now.store(second * 1000 + i * 10, Ordering::Relaxed);
                assert!(live.admit(&record((second * 10 + i) as u32)));
            }
        }
        // A thousand a second: most are sampled out.
        let mut kept = 0;
        for i in 0..1000 {
            now.store(3000 + i, Ordering::Relaxed);
            kept += u32::from(live.admit(&record(10_000 + i as u32)));
        }
        assert!(
            kept < 300,
            "kept {kept} of 1000 at 1000/s with a threshold of 10/s"
        );
        let decisions = live.decisions();
        assert_eq!(decisions.kept + decisions.sampled, 1030);
    }
}
