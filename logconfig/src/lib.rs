//! Owl's live log settings: the log API's log config, shared by the query API (which reads and changes it)
//! and the collector (which applies it to every record it ingests, without a restart).
//!
//! # Architecture
//!
//! ```text
//!  query API: GET/PUT /api/v1/logs/config ──> LogConfigStore ──> SQL table log_config (version, JSON)
//!                                                                    │ polled every second
//!  collector: ingest ── LiveLogConfig::admit ◄── LiveLogConfig::refresh ◄┘
//!                        (level floor, alwaysLog, neverLog, dynamic sampling by QPS)
//!
//!  query API: POST /api/v1/logs/cleanup ── writer here? ──yes──> run_cleanup (Index::apply_retention)
//!                                            │ no
//!                                            └─> log_cleanup_jobs (queue + lock) ──> cleanup_worker
//!                                                                                   (collector, writer)
//! ```
//!
//! - [`model`]: the document ([`LogConfig`]), the update `PUT` accepts ([`LogConfigUpdate`]) and
//!   validation.
//! - [`policy`]: the per-record decision and its order of rules.
//! - [`LiveLogConfig`]: the settings in force in one process, swapped when the stored version moves.
//! - [`LogConfigStore`]: the SQL store (portable SQL over sqlx `Any`; tables created by the query
//!   API's migrations `0101_log_config.sql`).
//! - [`cleanup`]: one-at-a-time manual cleanup, run where the index writer is.
//!
//! A process runs it all with [`LogConfigRuntime::start`]; with the `collector` feature,
//! [`LiveLogConfig`] implements `owl_collector::IngestFilter` and `owl_collector::RetentionSource`,
//! so the collector is started with `owl_collector::run_with(config, index, listener, shutdown,
//! Hooks { filter: runtime.filter(), retention: runtime.retention(), .. })`: it stores what the
//! live settings admit and its scheduled retention applies the live `retention` at every run.
#![warn(missing_docs)]

pub mod cleanup;
mod live;
pub mod model;
pub mod policy;
mod store;

use std::sync::Arc;
use std::time::Duration;

use owl_index::Index;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use cleanup::{
    CleanupError, CleanupJob, CleanupPolicy, CleanupReport, JobStatus, cleanup_worker, run_cleanup,
};
pub use live::{ClockFn, Decisions, LiveLogConfig, Snapshot};
pub use model::{LogConfig, LogConfigUpdate, Problem, parse_level};
pub use policy::{IngestPolicy, Verdict};
pub use store::{LogConfigStore, StoreError, Stored, UpdateError};

/// How often a running process looks for changed settings and queued cleanups.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// The live settings of a process and the tasks that keep them current.
#[derive(Debug)]
pub struct LogConfigRuntime {
    live: Arc<LiveLogConfig>,
    store: LogConfigStore,
    tasks: Vec<JoinHandle<()>>,
}

impl LogConfigRuntime {
    /// Loads the settings from Owl's database (the defaults when none are stored or the database
    /// cannot be read yet) and polls for changes every [`POLL_INTERVAL`] until `shutdown`. With the
    /// index writer (`index`), also runs the cleanups the query API queues.
    pub async fn start(
        config: &owl_config::Config,
        db: owl_sql::Db,
        index: Option<Index>,
        shutdown: CancellationToken,
    ) -> LogConfigRuntime {
        let store = LogConfigStore::new(db, LogConfig::defaults(config));
        LogConfigRuntime::start_with(store, index, POLL_INTERVAL, shutdown).await
    }

    /// [`LogConfigRuntime::start`] over a prepared store, polling every `interval`.
    pub async fn start_with(
        store: LogConfigStore,
        index: Option<Index>,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> LogConfigRuntime {
        let live = LiveLogConfig::new(store.defaults().clone());
        if let Err(error) = live.refresh(&store).await {
            tracing::warn!(%error, "cannot read the log config at start; storing everything until it can be read");
        }
        let mut tasks = vec![live.spawn_reloader(store.clone(), interval, shutdown.clone())];
        if let Some(index) = index.filter(|i| !i.is_read_only()) {
            tasks.push(tokio::spawn(cleanup_worker(
                store.clone(),
                index,
                interval,
                shutdown,
            )));
        }
        LogConfigRuntime { live, store, tasks }
    }

    /// The live settings.
    pub fn live(&self) -> Arc<LiveLogConfig> {
        self.live.clone()
    }

    /// The store.
    pub fn store(&self) -> &LogConfigStore {
        &self.store
    }

    /// The live settings as the collector's ingest filter.
    #[cfg(feature = "collector")]
    pub fn filter(&self) -> Arc<dyn owl_collector::IngestFilter> {
        self.live.clone()
    }

    /// The live settings as the source of the collector's scheduled retention.
    #[cfg(feature = "collector")]
    pub fn retention(&self) -> Arc<dyn owl_collector::RetentionSource> {
        self.live.clone()
    }

    /// Waits for the polling tasks to end (after `shutdown`).
    pub async fn stopped(self) {
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
