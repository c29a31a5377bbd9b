//! Owl's collector: where shipped records become durable and searchable.
//!
//! # Architecture
//!
//! ```text
//!  POST /api/v1/ingest ──> token, back-pressure, size limit
//!    (NDJSON, gzip/zstd)     │
//!                            ├─ re-sent batch (agent id, seq)? ── answer from the dedup set
//!                            v
//!                     blocking thread: decompress (limit), split lines, parse, assign ids, mask,
//!                            │         ingest filter, serialise the WAL entry
//!                            v
//!                     one lock: dedup by record id ── WAL append (memory) ──┐
//!                            │                                            │
//!                            │              owl-wal-writer thread: write + fdatasync (group commit)
//!                            v                                            │
//!                     wait until durable ──> 200 {accepted, duplicates, rejected}
//!                                                                         │ durable entries, in order
//!                                                                         v
//!                     owl-indexer thread: journal ids ── Index::add (searchable at once, tail)
//!                                         samples/heartbeats ── MetricsStore
//!                                         every commit_interval_ms: journal sync ── Index::commit
//!                                         ── checkpoint ── delete covered WAL segments
//! ```
//!
//! - Durability and recovery: the `wal` and `checkpoint` module docs (`src/wal.rs`, `src/checkpoint.rs`).
//!   An answer is sent only once every record it counts is on disk; kill -9 at any moment loses
//!   nothing acknowledged (the `crash` integration test does it to a child process).
//! - Dedup: the `dedup` module docs (`src/dedup.rs`): record ids and agent batch keys, remembered in
//!   bounded memory and persisted in a journal, so re-sent data is stored once across restarts.
//! - Freshness: a record is searchable as soon as the indexer has added it (the index serves its
//!   uncommitted tail), typically a few milliseconds after the answer.
//! - Back-pressure: items durable but not yet added to the index are counted; past
//!   `collector.max_pending_records` ingest answers 429 with `Retry-After`.
//! - Retention runs every `storage.retention.check_interval_s` through the index, with the
//!   retention in force at each run: a [`RetentionSource`] (the live log settings, changed by
//!   `PUT /api/v1/logs/config`) or else the configuration file (the `retention` module docs).
//! - Hooks ([`Hooks`], passed to [`run_with`]): an [`IngestFilter`] decides per record whether it
//!   is stored (the live log settings); an [`IngestObserver`] sees every item once durable, before
//!   indexing (the alert engine); a [`RetentionSource`] says which retention is in force.
//!
//! On disk: `<data_dir>/collector/wal/` (segments and checkpoint), `<data_dir>/collector/dedup/`
//! (id journal) and `<data_dir>/agent-token` (the generated agent token).

pub mod agent_tokens;
mod checkpoint;
mod dedup;
mod elastic;
mod events;
mod filter;
mod frame;
mod http;
mod indexer;
mod ingest;
mod loki;
pub mod metrics;
mod observer;
mod otlp;
mod receivers;
mod retention;
mod token;
mod wal;

use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use fs2::FileExt;
use owl_config::Config;
use owl_index::Index;
use owl_model::{IngestItem, Masker};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use agent_tokens::{AgentIdentity, AgentTokenError, AgentTokenStore, IssuedToken};
pub use filter::{AdmitAll, IngestFilter};
pub use http::openapi as api_docs;
pub use http::{CollectorState, router};
pub use ingest::{IngestError, IngestOutcome, Rejection};
pub use observer::IngestObserver;
/// Loki's push messages (`push.proto`), for clients of the Loki receiver.
pub mod loki_proto {
    pub use crate::loki::{EntryAdapter, LabelPairAdapter, ProtoTimestamp, PushRequest, StreamAdapter};
}
pub use receivers::{RECEIVERS, ReceiverSnapshot, ReceiverStats};
pub use retention::{FileRetention, RetentionJob, RetentionSource, file_policy};
pub use token::{AGENT_TOKEN_FILE, ensure_agent_token};
pub use wal::WalError;

use crate::dedup::{Journal, id_hash};
use crate::events::WalReplayed;
use crate::indexer::{Backlog, Indexer, IndexerError};
use crate::ingest::{IngestLimits, Ingestor};
use crate::token::AgentTokens;
use crate::wal::{Wal, WalOptions};

/// Records gathered into one `Index::add` during replay.
const REPLAY_BATCH_ITEMS: usize = 20_000;

/// A started collector: the ingest path, the WAL writer and the indexing loop, without the HTTP
/// listener (see [`run`], or serve [`router`]`(collector.state())` yourself).
pub struct Collector {
    state: CollectorState,
    indexer: Option<JoinHandle<()>>,
    stopping: CancellationToken,
    failed: CancellationToken,
    _lock: File,
}

impl Collector {
    /// Recovers and starts: replays the WAL above the checkpoint into `index` and commits, rebuilds
    /// the dedup set, then starts the WAL writer and the indexing loop. Blocking (recovery reads
    /// files and indexes); call it from `spawn_blocking` in async code.
    pub fn start(config: &Config, index: Index, filter: Arc<dyn IngestFilter>) -> anyhow::Result<Collector> {
        Collector::start_observed(config, index, filter, None)
    }

    /// [`Collector::start`] with an [`IngestObserver`] shown every item stored from now on.
    pub fn start_observed(
        config: &Config,
        index: Index,
        filter: Arc<dyn IngestFilter>,
        observer: Option<Arc<dyn IngestObserver>>,
    ) -> anyhow::Result<Collector> {
        let base = config.data_dir.join("collector");
        let wal_dir = base.join("wal");
        std::fs::create_dir_all(&wal_dir).with_context(|| format!("while creating {}", wal_dir.display()))?;
        let lock = lock_dir(&base)?;
        let masker = Masker::new(&config.masking).context("while compiling the masking rules")?;
        let tokens = AgentTokens::from_config(config)?;
        let checkpoint = checkpoint::read(&wal_dir).context("while reading the index checkpoint")?;
        let (journal, mut dedup) = Journal::open(&base.join("dedup"), config.collector.dedup_max_ids)
            .context("while reading the dedup journal")?;
        let backlog = Arc::new(Backlog::default());
        let commit_interval = Duration::from_millis(config.collector.commit_interval_ms);
        let mut indexer = Indexer::new(
            index,
            journal,
            wal_dir.clone(),
            backlog.clone(),
            commit_interval,
            checkpoint,
        );

        let started = Instant::now();
        let (mut entries, mut items, mut batch, mut batch_items) = (0u64, 0u64, Vec::new(), 0usize);
        let next_lsn = wal::replay(&wal_dir, checkpoint, |entry| {
            for item in &entry.items {
                if let IngestItem::Log(record) = item {
                    dedup.insert(id_hash(&record.id));
                }
            }
            if let Some(key) = &entry.batch {
                dedup.insert_batch(key.clone(), entry.items.len() as u32);
            }
            entries += 1;
            items += entry.items.len() as u64;
            batch_items += entry.items.len();
            batch.push(entry);
            if batch_items >= REPLAY_BATCH_ITEMS {
                batch_items = 0;
                indexer.apply_replayed(std::mem::take(&mut batch))?;
            }
            Ok::<_, IndexerError>(())
        })
        .context("while replaying the write-ahead log")?;
        indexer
            .apply_replayed(batch)
            .context("while replaying the write-ahead log")?;
        indexer
            .commit()
            .context("while committing the replayed records")?;
        WalReplayed {
            entries,
            items,
            checkpoint,
            next_lsn,
            elapsed: started.elapsed(),
        }
        .emit();

        let (sink, durable_entries) = mpsc::channel();
        let failed = CancellationToken::new();
        let wal = Wal::start(&wal_dir, next_lsn, WalOptions::default(), sink, failed.clone())
            .context("while starting the write-ahead log")?;
        if let Some(observer) = observer {
            indexer.set_observer(observer);
        }
        let stopping = CancellationToken::new();
        let indexer_stopping = stopping.clone();
        let indexer = std::thread::Builder::new()
            .name("owl-indexer".into())
            .spawn(move || indexer.run(durable_entries, indexer_stopping))
            .context("while starting the indexing thread")?;
        let limits = IngestLimits {
            max_pending: config.collector.max_pending_records as u64,
            retry_after_s: config.collector.commit_interval_ms.div_ceil(1000).max(1),
            max_body_bytes: config.collector.max_body_bytes,
        };
        let ingestor = Ingestor::new(wal, dedup, backlog, limits, masker, filter);
        let state = CollectorState {
            ingestor: Arc::new(ingestor),
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.collector.max_concurrent_requests,
            )),
            tokens: Arc::new(tokens),
            region: Arc::from(config.query_api.region.as_str()),
            receivers: Arc::default(),
        };
        Ok(Collector {
            state,
            indexer: Some(indexer),
            stopping,
            failed,
            _lock: lock,
        })
    }

    /// The state the HTTP handlers need; serve it with [`router`].
    pub fn state(&self) -> CollectorState {
        self.state.clone()
    }

    /// Cancelled when the WAL fails: the collector can no longer make anything durable and should
    /// be restarted (recovery picks up from disk).
    pub fn failed(&self) -> CancellationToken {
        self.failed.clone()
    }

    /// Stops: makes everything appended durable, lets the indexer add it and commit, and waits.
    /// Call it after the HTTP server stopped, so no request is cut off.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let ingestor = self.state.ingestor.clone();
        tokio::task::spawn_blocking(move || ingestor.wal().close())
            .await
            .context("while closing the WAL")?;
        self.stopping.cancel();
        if let Some(indexer) = self.indexer.take() {
            tokio::task::spawn_blocking(move || indexer.join())
                .await
                .context("while stopping the indexer")?
                .map_err(|_| anyhow::anyhow!("the indexing thread panicked"))?;
        }
        if self.failed.is_cancelled() {
            anyhow::bail!("the write-ahead log failed; restart the collector to recover from disk");
        }
        Ok(())
    }
}

/// Takes the collector's directory lock, so two collectors never share a WAL.
fn lock_dir(base: &Path) -> anyhow::Result<File> {
    let path = base.join(".lock");
    let file = File::create(&path).with_context(|| format!("while creating {}", path.display()))?;
    file.try_lock_exclusive().with_context(|| {
        format!(
            "{} is locked: another collector uses this data directory",
            path.display()
        )
    })?;
    Ok(file)
}

/// Runs the collector on `listener` until `shutdown` is cancelled: recovers, serves
/// `POST /api/v1/ingest` and `/health`, runs retention on schedule; on shutdown stops accepting,
/// finishes in-flight requests, and commits everything they stored.
pub async fn run(
    config: Config,
    index: Index,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    run_with_filter(config, index, listener, shutdown, Arc::new(AdmitAll)).await
}

/// [`run`] with an [`IngestFilter`] deciding which records are stored.
pub async fn run_with_filter(
    config: Config,
    index: Index,
    listener: TcpListener,
    shutdown: CancellationToken,
    filter: Arc<dyn IngestFilter>,
) -> anyhow::Result<()> {
    run_with_hooks(config, index, listener, shutdown, filter, None).await
}

/// [`run_with_filter`] with an [`IngestObserver`] (the alert engine) shown every item stored.
pub async fn run_with_hooks(
    config: Config,
    index: Index,
    listener: TcpListener,
    shutdown: CancellationToken,
    filter: Arc<dyn IngestFilter>,
    observer: Option<Arc<dyn IngestObserver>>,
) -> anyhow::Result<()> {
    let hooks = Hooks {
        filter,
        observer,
        ..Hooks::default()
    };
    run_with(config, index, listener, shutdown, hooks).await
}

/// What a process plugs into its collector.
#[derive(Clone)]
pub struct Hooks {
    /// Decides per record whether it is stored.
    pub filter: Arc<dyn IngestFilter>,
    /// Sees every item stored (the alert engine).
    pub observer: Option<Arc<dyn IngestObserver>>,
    /// The retention in force, read at every scheduled run.
    pub retention: Arc<dyn RetentionSource>,
    /// Counts what each receiver takes (shown by the query API's `/health/detailed` in `owl up`).
    pub receivers: Arc<ReceiverStats>,
    /// The process's scheduler runs retention as a job (`owl up`, `owl collector`), so the
    /// collector does not run it every `check_interval_s` itself.
    pub scheduled_maintenance: bool,
}

impl Default for Hooks {
    /// Stores every record, observes nothing, keeps the configuration file's retention.
    fn default() -> Hooks {
        Hooks {
            filter: Arc::new(AdmitAll),
            observer: None,
            retention: Arc::new(FileRetention),
            receivers: Arc::default(),
            scheduled_maintenance: false,
        }
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
}

/// [`run`] with [`Hooks`].
pub async fn run_with(
    config: Config,
    index: Index,
    listener: TcpListener,
    shutdown: CancellationToken,
    hooks: Hooks,
) -> anyhow::Result<()> {
    metrics::prometheus();
    metrics::describe();
    let Hooks {
        filter,
        observer,
        retention,
        receivers,
        scheduled_maintenance,
    } = hooks;
    let retention_job = RetentionJob::new(index.clone(), &config.storage.retention, retention);
    let retention_interval = Duration::from_secs(config.storage.retention.check_interval_s);
    let collector =
        tokio::task::spawn_blocking(move || Collector::start_observed(&config, index, filter, observer))
            .await
            .context("while starting the collector")??;
    let stop = shutdown.child_token();
    let failed = collector.failed();
    let watch_failure = {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = failed.cancelled() => stop.cancel(),
                () = stop.cancelled() => {}
            }
        })
    };
    let retention_task =
        (!scheduled_maintenance).then(|| tokio::spawn(retention_job.run(retention_interval, stop.clone())));
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "collector listening");
    }
    let state = CollectorState {
        receivers,
        ..collector.state()
    };
    let served = owl_http::serve(listener, router(state), stop.clone()).await;
    stop.cancel();
    let _ = watch_failure.await;
    if let Some(task) = retention_task {
        let _ = task.await;
    }
    let stopped = collector.shutdown().await;
    served.context("while serving the collector")?;
    stopped
}
