//! owl-agent: tails log files on a node, parses, masks and enriches their lines, samples the
//! host, and ships everything to the collector exactly once.
//!
//! # Architecture
//!
//! ```text
//!  files ──> tailer thread ─────────────────────────────> disk buffer (sled) ──> shipper ──> collector
//!            discover (globs, notify + poll)              sealed batches,        N in flight,   200 = durable
//!            fingerprint, rotation, truncation            bounded in bytes,      retry/backoff,
//!            lines, multiline, parse, mask, enrich        block or drop_newest   dead letters
//!            batch (NDJSON) ──> compress ──> push                                      │
//!  host sampler, heartbeat ──> (lines into the batch)                                  │
//!  checkpoints (sled) <───────────── marks applied in batch order after the ack ───────┘
//! ```
//!
//! - `tail`: finding files, following rotation (`tail/mod.rs` has the design note), reading.
//! - `multiline`, `parse`, `process`: from bytes to masked, enriched records.
//! - `batch`, `buffer`: batches and the disk buffer (its format is in `buffer.rs`).
//! - `ship`: sending, retries, the ordered finalizer that moves checkpoints; `deadletter`.
//! - `checkpoint`, `fingerprint`, `state`: what survives a restart.
//! - `host`, `metrics`, `serve`, `events`: host metrics, the agent's own counters and `/metrics`.
//!
//! Exactly once: a record's id is derived from its file's fingerprint and its byte offset, a
//! file's checkpoint moves only after the collector acknowledged every record before it, and a
//! restarted agent (after a stop, a crash or kill -9) reads from the checkpoints again. What it
//! sends twice carries the same ids (and, from the disk buffer, the same batch sequence
//! number), which the collector recognises.

mod batch;
mod buffer;
mod checkpoint;
mod deadletter;
mod events;
mod fingerprint;
mod host;
mod kubernetes;
mod metrics;
mod multiline;
mod process;
mod serve;
mod ship;
mod state;
mod syslog;
mod tail;
mod wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use owl_config::Config;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use fingerprint::Fingerprint;
pub use kubernetes::api::KubernetesError;
pub use metrics::Metrics;
pub use owl_config::{ParserKind, SyslogFormat};
pub use owl_parse::{Parsed, Parser, ParserError};
pub use state::StateError;
pub use syslog::SyslogError;

/// Why the agent could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// An input's glob is invalid.
    #[error("agent.inputs[{index}]: {source}")]
    Glob {
        /// Position of the input.
        index: usize,
        /// The glob error.
        source: tail::GlobError,
    },
    /// An input's parser or multiline pattern is invalid.
    #[error("agent.inputs[{index}]: {message}")]
    Input {
        /// Position of the input.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// A masking rule is invalid.
    #[error(transparent)]
    Masking(#[from] owl_model::MaskError),
    /// The state directory or database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The disk buffer failed.
    #[error("disk buffer: {0}")]
    Buffer(#[from] sled::Error),
    /// The HTTP client could not be built.
    #[error("http client: {0}")]
    Client(#[from] reqwest::Error),
    /// The collector URL is not usable.
    #[error("agent.collector_url `{0}` must be an http:// or https:// URL")]
    CollectorUrl(String),
    /// The Kubernetes API option could not start.
    #[error(transparent)]
    Kubernetes(#[from] KubernetesError),
    /// A syslog listener could not start.
    #[error(transparent)]
    Syslog(#[from] SyslogError),
    /// An internal task failed.
    #[error("agent task failed: {0}")]
    Task(String),
}

/// A started agent.
pub struct RunningAgent {
    metrics_addr: Option<SocketAddr>,
    syslog_addresses: Vec<String>,
    metrics: Arc<Metrics>,
    task: JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Where the syslog listeners listen, in config form with the real ports
    /// (`tcp://127.0.0.1:40123`), in the order of `agent.syslog`.
    pub fn syslog_addresses(&self) -> &[String] {
        &self.syslog_addresses
    }

    /// The agent's counters and gauges.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The agent's counters and gauges, readable after it stopped.
    pub fn metrics_handle(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Waits until the agent has stopped (after its shutdown token was cancelled).
    pub async fn wait(self) -> Result<(), AgentError> {
        match self.task.await {
            Ok(result) => result,
            Err(e) => Err(AgentError::Task(e.to_string())),
        }
    }

    /// Stops the agent at once, as a crash would: nothing is flushed or drained (what was not
    /// acknowledged is read again on the next start). Returns once its tasks are gone.
    pub async fn abort(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

/// Runs the agent until `shutdown` is cancelled, then flushes what it can (for up to
/// `agent.shutdown_timeout_ms`) and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), AgentError> {
    start(config, shutdown).await?.wait().await
}

/// Starts the agent in the background; the returned handle tells where `/metrics` is served.
pub async fn start(config: Config, shutdown: CancellationToken) -> Result<RunningAgent, AgentError> {
    let prepared = prepare(&config).await?;
    let metrics_addr = prepared
        .metrics_listener
        .as_ref()
        .and_then(|l| l.local_addr().ok());
    let metrics = prepared.metrics.clone();
    let syslog_addresses = prepared.syslog.iter().map(|b| b.address.clone()).collect();
    let task = tokio::spawn(run_prepared(config, prepared, shutdown));
    Ok(RunningAgent {
        metrics_addr,
        syslog_addresses,
        metrics,
        task,
    })
}

struct Prepared {
    inputs: Vec<tail::Input>,
    identity: host::Identity,
    db: sled::Db,
    checkpoints: checkpoint::CheckpointStore,
    buffer: Arc<buffer::Buffer>,
    shipper: ship::Shipper,
    metrics: Arc<Metrics>,
    metrics_listener: Option<tokio::net::TcpListener>,
    syslog: Vec<syslog::Bound>,
    kubernetes: Option<kubernetes::api::Watcher>,
}

async fn prepare(config: &Config) -> Result<Prepared, AgentError> {
    // Binaries install ring as the process's TLS provider; this covers callers that did not.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let agent = &config.agent;
    let url = agent.collector_url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(AgentError::CollectorUrl(agent.collector_url.clone()));
    }
    let host = if agent.host.is_empty() {
        owl_host::host_name()
    } else {
        agent.host.clone()
    };
    let metrics = Arc::new(Metrics::default());
    let masking = Arc::new(process::Masking::new(&config.masking)?);
    let kubernetes = if agent.kubernetes.api {
        Some(kubernetes::api::Watcher::new(&agent.kubernetes)?)
    } else {
        None
    };
    let pods = kubernetes.as_ref().map(kubernetes::api::Watcher::cache);
    let mut inputs = Vec::with_capacity(agent.inputs.len());
    for (index, input) in agent.inputs.iter().enumerate() {
        let matcher = tail::FileMatcher::new(&input.paths, &input.exclude)
            .map_err(|source| AgentError::Glob { index, source })?;
        let parser = Parser::new(input.content_parser(), &input.regex).map_err(|e| AgentError::Input {
            index,
            message: e.to_string(),
        })?;
        multiline::Joiner::new(&input.multiline, input.max_line_bytes).map_err(|e| AgentError::Input {
            index,
            message: format!("multiline.start_pattern: {e}"),
        })?;
        let enrichment = process::Enrichment::for_input(input, &host, &agent.region);
        inputs.push(tail::Input {
            config: input.clone(),
            matcher,
            processor: process::Processor::new(parser, enrichment, masking.clone(), metrics.clone())
                .with_pods(pods.clone()),
        });
    }
    let mut syslog_processors = Vec::with_capacity(agent.syslog.len());
    for (index, listener) in agent.syslog.iter().enumerate() {
        let parser = Parser::new(listener.inner_parser, &listener.regex).map_err(|e| AgentError::Input {
            index,
            message: format!("agent.syslog[{index}]: {e}"),
        })?;
        let enrichment = process::Enrichment::for_syslog(listener, &host, &agent.region);
        syslog_processors.push(process::Processor::new(
            parser,
            enrichment,
            masking.clone(),
            metrics.clone(),
        ));
    }
    if inputs.is_empty() && agent.syslog.is_empty() {
        tracing::warn!(
            "no agent.inputs or agent.syslog configured: only host metrics and heartbeats are shipped"
        );
    }
    let data_dir = config.agent_data_dir();
    let (db, agent_id) = {
        let data_dir = data_dir.clone();
        let configured = agent.agent_id.clone();
        tokio::task::spawn_blocking(move || -> Result<_, StateError> {
            let db = state::open_db(&data_dir, 2 << 20, Duration::from_secs(10))?;
            Ok((db, state::agent_id(&data_dir, &configured)?))
        })
        .await
        .map_err(|e| AgentError::Task(e.to_string()))??
    };
    let checkpoints = checkpoint::CheckpointStore::new(db.open_tree("checkpoints")?);
    match checkpoints.prune() {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "forgot checkpoints of files not seen for 30 days"),
        Err(e) => tracing::warn!(error = %e, "cannot prune checkpoints"),
    }
    let buffer = Arc::new(buffer::Buffer::open(
        &db,
        agent.buffer.max_bytes,
        agent.buffer.when_full,
        metrics.clone(),
    )?);
    let mut services: Vec<String> = agent.inputs.iter().map(|i| i.service.clone()).collect();
    services.sort();
    services.dedup();
    let region = (!agent.region.is_empty()).then(|| agent.region.clone());
    let identity = host::Identity {
        agent_id: agent_id.clone(),
        host,
        region,
        services,
    };
    let shipper = ship::Shipper::new(
        ship::ShipperConfig {
            ingest_url: format!("{url}/api/v1/ingest"),
            token: agent.token.expose().to_string(),
            agent_id,
            retry: agent.retry.clone(),
            max_in_flight: agent.batch.max_in_flight.max(1),
        },
        buffer.clone(),
        checkpoints.clone(),
        metrics.clone(),
        deadletter::DeadLetters::new(data_dir.join("dead-letter")),
    )?;
    let syslog = syslog::bind(&agent.syslog, syslog_processors, &metrics).await?;
    let metrics_listener = if agent.metrics_listen.is_empty() {
        None
    } else {
        match tokio::net::TcpListener::bind(&agent.metrics_listen).await {
            Ok(listener) => Some(listener),
            Err(e) => {
                // The agent's own metrics are not worth refusing to ship logs for.
                tracing::warn!(listen = %agent.metrics_listen, error = %e, "cannot serve /metrics");
                None
            }
        }
    };
    Ok(Prepared {
        inputs,
        identity,
        db,
        checkpoints,
        buffer,
        shipper,
        metrics,
        metrics_listener,
        syslog,
        kubernetes,
    })
}

async fn run_prepared(
    config: Config,
    prepared: Prepared,
    shutdown: CancellationToken,
) -> Result<(), AgentError> {
    let Prepared {
        inputs,
        identity,
        db,
        checkpoints,
        buffer,
        shipper,
        metrics,
        metrics_listener,
        syslog,
        kubernetes,
    } = prepared;
    let agent = &config.agent;
    tracing::info!(
        agent_id = %identity.agent_id,
        host = %identity.host,
        collector = %agent.collector_url,
        inputs = inputs.len(),
        data_dir = %config.agent_data_dir().display(),
        "owl-agent started"
    );
    // Everything below stops when this future ends or is dropped (an abort).
    let internal = CancellationToken::new();
    let _stop_all = internal.clone().drop_guard();
    if let Some(watcher) = kubernetes {
        // Labels for the first records: wait a little for the first list, not for ever.
        let cache = watcher.cache();
        tokio::spawn(watcher.run(internal.child_token()));
        if !cache.wait_synced(Duration::from_secs(5)).await {
            tracing::warn!(
                "no pod list from the Kubernetes API yet; records get their labels once it answers"
            );
        }
    }
    let stop_reading = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::sync_channel(1024);

    let compressor =
        batch::Compressor::new(agent.batch.compression).map_err(|e| AgentError::Task(e.to_string()))?;
    let output = tail::Output {
        batch: batch::BatchBuilder::new(
            agent.batch.max_bytes,
            Duration::from_millis(agent.batch.timeout_ms),
        ),
        compressor,
        buffer: buffer.clone(),
        metrics: metrics.clone(),
        stop: stop_reading.clone(),
    };
    let tailer = tail::Tailer::new(inputs, checkpoints, output, rx, tx.clone());
    let syslog_give_up = Arc::new(AtomicBool::new(false));
    let syslog = if syslog.is_empty() {
        None
    } else {
        let output = tail::Output {
            batch: batch::BatchBuilder::new(
                agent.batch.max_bytes,
                Duration::from_millis(agent.batch.timeout_ms),
            ),
            compressor: batch::Compressor::new(agent.batch.compression)
                .map_err(|e| AgentError::Task(e.to_string()))?,
            buffer: buffer.clone(),
            metrics: metrics.clone(),
            stop: syslog_give_up.clone(),
        };
        let drain = Duration::from_millis(agent.shutdown_timeout_ms);
        Some(
            syslog::start(syslog, output, drain)
                .map_err(|e| AgentError::Task(format!("cannot start the syslog writer: {e}")))?,
        )
    };
    let (tail_done_tx, tail_done) = tokio::sync::oneshot::channel::<()>();
    let tail_thread = std::thread::Builder::new()
        .name("owl-agent-tail".to_string())
        .spawn(move || {
            tailer.run();
            let _ = tail_done_tx.send(());
        })
        .map_err(|e| AgentError::Task(format!("cannot start the reader thread: {e}")))?;

    // Whatever ends this future, the reader thread stops.
    {
        let (internal, stop_reading, tx, buffer) =
            (internal.clone(), stop_reading.clone(), tx.clone(), buffer.clone());
        let syslog_give_up = syslog_give_up.clone();
        tokio::spawn(async move {
            internal.cancelled().await;
            stop_reading.store(true, Ordering::Relaxed);
            syslog_give_up.store(true, Ordering::Relaxed);
            let _ = tx.try_send(tail::TailerMsg::Stop);
            buffer.wake_producers();
        });
    }

    let drain = CancellationToken::new();
    let hard = internal.child_token();
    let shipper_task = tokio::spawn(Arc::new(shipper).run(drain.clone(), hard.clone()));
    let sample_every =
        (agent.host_metrics_interval_s > 0).then(|| Duration::from_secs(agent.host_metrics_interval_s));
    tokio::spawn(host::run(
        identity,
        sample_every,
        Duration::from_secs(agent.heartbeat_interval_s.max(1)),
        metrics.clone(),
        tx.clone(),
        internal.child_token(),
    ));
    if let Some(listener) = metrics_listener {
        tokio::spawn(serve::serve(listener, metrics.clone(), internal.child_token()));
    }

    let mut tail_done = tail_done;
    let tailer_died = tokio::select! {
        () = shutdown.cancelled() => false,
        _ = &mut tail_done => true,
    };
    // Stop reading first: the syslog listeners drain their connections into the buffer, the
    // reader seals what it batched.
    if let Some(syslog) = syslog {
        syslog
            .stop(Duration::from_millis(agent.shutdown_timeout_ms))
            .await;
    }
    stop_reading.store(true, Ordering::Relaxed);
    let _ = tx.try_send(tail::TailerMsg::Stop);
    buffer.wake_producers();
    let _ = tail_done.await;
    let joined = tokio::task::spawn_blocking(move || tail_thread.join()).await;
    let tail_result = match joined {
        Ok(Ok(())) if !tailer_died => Ok(()),
        Ok(Ok(())) => Err(AgentError::Task(
            "the reader thread stopped unexpectedly".to_string(),
        )),
        Ok(Err(_)) => Err(AgentError::Task("the reader thread panicked".to_string())),
        Err(e) => Err(AgentError::Task(e.to_string())),
    };
    // Then ship what is buffered, for at most the shutdown timeout.
    drain.cancel();
    let deadline = Duration::from_millis(agent.shutdown_timeout_ms);
    let mut shipper_task = shipper_task;
    if tokio::time::timeout(deadline, &mut shipper_task).await.is_err() {
        tracing::warn!(
            buffered_bytes = buffer.bytes(),
            "shutdown timeout reached; what is left stays in the disk buffer for the next start"
        );
        hard.cancel();
        let _ = shipper_task.await;
    }
    internal.cancel();
    let flushed = tokio::task::spawn_blocking(move || db.flush()).await;
    if let Ok(Err(e)) = flushed {
        tracing::error!(error = %e, "cannot flush agent state on shutdown");
    }
    tracing::info!(
        records_shipped = Metrics::get(&metrics.records_shipped),
        buffered_bytes = buffer.bytes(),
        "owl-agent stopped"
    );
    tail_result
}
