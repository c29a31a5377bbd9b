//! Running the roles: all of them in one process (`owl up`), or one each.
//!
//! In `owl up` the collector and the query API share one [`Index`], so the query API also sees
//! records that are acknowledged but not yet committed (the index's in-memory tail). Shutdown goes
//! in data-flow order: the demo generator and the agent stop first (the agent flushes what it has
//! read to the collector and saves its checkpoints), then the servers stop accepting, finish
//! in-flight requests and the collector commits the index; the alert engine, which the collector
//! feeds everything it stores, stops last.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use owl_config::Config;
use owl_index::{Index, IndexSettings};
use owl_model::{Heartbeat, LogRecord, MetricSample};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::demo;

/// Binds a listener, naming the role in the error.
pub async fn bind(address: &str, role: &str) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("while binding the {role} to {address} (is another Owl running?)"))
}

/// The collector's observer: hands what it stored to the alert engine (never waits).
struct AlertObserver(owl_alerts::AlertEngine);

impl owl_collector::IngestObserver for AlertObserver {
    fn on_stored(&self, records: &[LogRecord], samples: &[MetricSample], _heartbeats: &[Heartbeat]) {
        self.0.observe(records, samples);
    }
}

/// A running alert engine.
struct Alerts {
    engine: owl_alerts::AlertEngine,
    observer: Arc<dyn owl_collector::IngestObserver>,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

impl Alerts {
    /// Starts the engine over the alert store in Owl's database.
    async fn start(config: &Config, db: &owl_sql::Db) -> anyhow::Result<Alerts> {
        let cipher = owl_alerts::SecretCipher::from_config(config).context("while loading the secret key")?;
        let store = owl_alerts::AlertStore::new(db.clone(), Arc::new(cipher));
        let stop = CancellationToken::new();
        let (engine, task) = owl_alerts::AlertEngine::start(config, store, Default::default(), stop.clone())
            .await
            .context("while starting the alert engine")?;
        Ok(Alerts {
            engine: engine.clone(),
            observer: Arc::new(AlertObserver(engine)),
            stop,
            task,
        })
    }

    /// Stops after the collector stopped, so everything it stored was evaluated.
    async fn stop(self) {
        self.stop.cancel();
        if self.task.await.is_err() {
            tracing::error!("the alert engine panicked");
        }
    }
}

/// The live log settings (the log API's `/api/v1/logs/config`): the collector's ingest filter and
/// scheduled retention, reloaded from SQL about every second, and the worker that runs the
/// cleanups the query API queues.
struct LogSettings {
    runtime: owl_logconfig::LogConfigRuntime,
    stop: CancellationToken,
}

impl LogSettings {
    async fn start(config: &Config, db: &owl_sql::Db, index: &Index) -> LogSettings {
        let stop = CancellationToken::new();
        let runtime =
            owl_logconfig::LogConfigRuntime::start(config, db.clone(), Some(index.clone()), stop.clone())
                .await;
        LogSettings { runtime, stop }
    }

    /// The collector's hooks: the live settings filter ingest, the alert engine observes.
    fn hooks(&self, alerts: &Alerts, receivers: Arc<owl_collector::ReceiverStats>) -> owl_collector::Hooks {
        owl_collector::Hooks {
            filter: self.runtime.filter(),
            observer: Some(alerts.observer.clone()),
            retention: self.runtime.retention(),
            receivers,
            // The `retention` job of the scheduler runs it ([`LogSettings::start_jobs`]).
            scheduled_maintenance: true,
        }
    }

    /// The scheduler of this process, with retention over the index writer at the live
    /// retention.
    async fn start_jobs(
        &self,
        config: &Config,
        db: &owl_sql::Db,
        index: &Index,
        alerts: &Alerts,
    ) -> anyhow::Result<crate::jobs::Jobs> {
        let retention = owl_collector::RetentionJob::new(
            index.clone(),
            &config.storage.retention,
            self.runtime.retention(),
        );
        crate::jobs::Jobs::start(config, db, index, retention, alerts.engine.clone())
            .await
            .context("while starting the scheduled jobs")
    }

    /// Stops after the collector stopped.
    async fn stop(self) {
        self.stop.cancel();
        self.runtime.stopped().await;
    }
}

/// A server role run on its own.
#[derive(Debug, Clone, Copy)]
pub enum Role {
    /// `owl collector`.
    Collector,
    /// `owl query-api`.
    QueryApi,
}

/// The collector's receivers as a line of the query API's `/health/detailed`: `up` (the collector
/// serves them) with what each has taken since start.
struct ReceiversHealth(Arc<owl_collector::ReceiverStats>);

impl owl_query_api::ComponentHealth for ReceiversHealth {
    fn name(&self) -> &'static str {
        "receivers"
    }

    fn check(&self) -> (String, serde_json::Value) {
        let detail = self
            .0
            .snapshot()
            .into_iter()
            .map(|r| {
                (
                    r.protocol.to_string(),
                    serde_json::to_value(&r).unwrap_or_default(),
                )
            })
            .collect::<serde_json::Map<_, _>>();
        ("up".to_string(), serde_json::Value::Object(detail))
    }
}

/// The shortest password `--demo` accepts (the seed examples' `test123`).
pub const DEMO_MIN_PASSWORD_LENGTH: usize = 6;

/// Options of `owl up`.
#[derive(Debug, Clone, Copy)]
pub struct UpOptions {
    /// Run the demo log generator.
    pub demo: bool,
    /// Demo requests per second.
    pub demo_rate: u32,
}

/// How long the agent gets to flush on shutdown before the servers stop anyway.
const AGENT_DRAIN: Duration = Duration::from_secs(15);

fn index_settings(config: &Config) -> IndexSettings {
    IndexSettings {
        writer_memory_bytes: config.collector.writer_memory_bytes,
        ..IndexSettings::default()
    }
}

fn open_index(config: &Config) -> anyhow::Result<Index> {
    let dir = config.index_dir();
    Index::open(&dir, index_settings(config))
        .with_context(|| format!("while opening the index at {}", dir.display()))
}

/// Opens the writer index on a blocking thread (it reads partition metadata from disk).
async fn open_index_off_runtime(config: &Config) -> anyhow::Result<Index> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || open_index(&config)).await?
}

/// The collector's agent token (configured, or generated into the data dir), made the one the
/// collector accepts when none is configured.
fn adopt_agent_token(config: &mut Config) -> anyhow::Result<owl_config::Secret> {
    let token = owl_collector::ensure_agent_token(config)?;
    if config.collector.agent_tokens.is_empty() {
        config.collector.agent_tokens = vec![token.clone()];
    }
    Ok(token)
}

/// Owl's database with its schema brought up to date: the one migration of a start, before any
/// store opens. The collector's stores share this small pool; the query API opens its own.
async fn open_database(config: &Config) -> anyhow::Result<owl_sql::Db> {
    owl_sql::open(&config.database_url(), config.storage.max_connections.min(4))
        .await
        .context("while preparing Owl's database (storage.database_url)")
}

fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    owl_config::files::private_dir(dir)
        .with_context(|| format!("while creating the data directory {}", dir.display()))
}

/// Spawns a role; its failure cancels `failed` so that the others stop too.
fn spawn_role<F>(name: &'static str, failed: &CancellationToken, role: F) -> JoinHandle<anyhow::Result<()>>
where
    F: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let failed = failed.clone();
    tokio::spawn(async move {
        let result = role.await.with_context(|| format!("the {name} stopped"));
        if let Err(error) = &result {
            tracing::error!(role = name, error = format!("{error:#}"), "role failed; stopping");
            failed.cancel();
        }
        result
    })
}

async fn join(handle: JoinHandle<anyhow::Result<()>>) -> anyhow::Result<()> {
    handle.await.context("a role panicked")?
}

/// `owl up`: every role in this process, on the configured addresses.
pub async fn run_all(config: Config, options: UpOptions, shutdown: CancellationToken) -> anyhow::Result<()> {
    let query_listener = bind(&config.query_api.listen, "query API").await?;
    let collector_listener = bind(&config.collector.listen, "collector").await?;
    run_all_on(config, options, query_listener, collector_listener, shutdown).await
}

/// `owl up` on listeners the caller bound (tests bind 127.0.0.1:0).
pub async fn run_all_on(
    mut config: Config,
    options: UpOptions,
    query_listener: TcpListener,
    collector_listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    create_data_dir(&config.data_dir)?;
    config.agent.token = adopt_agent_token(&mut config)?;

    let query_addr = query_listener.local_addr()?;
    let collector_addr = collector_listener.local_addr()?;
    config.agent.collector_url = format!("http://{collector_addr}");

    let failed = CancellationToken::new();
    let edge_stop = CancellationToken::new();
    let server_stop = CancellationToken::new();

    let demo_task = if options.demo {
        // The seed examples' user test001 has the password test123.
        config.auth.min_password_length = config.auth.min_password_length.min(DEMO_MIN_PASSWORD_LENGTH);

        let dir = config.data_dir.join("demo-logs");
        std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
        config.agent.inputs.extend(demo::agent_inputs(&dir));
        let stop = edge_stop.clone();
        let rate = options.demo_rate;
        Some(spawn_role("demo generator", &failed, async move {
            demo::run(dir, rate, stop)
                .await
                .context("while writing demo logs")
        }))
    } else {
        None
    };

    let index = open_index_off_runtime(&config).await?;

    let db = open_database(&config).await?;
    if options.demo {
        // The organizations and user the admin API's examples name, after the first admin and
        // before the query API starts (which then finds both and seeds nothing concurrently).
        owl_query_api::admin::load_demo_directory(&config)
            .await
            .context("while creating the demo organizations and user test001")?;
    }
    let alerts = Alerts::start(&config, &db).await?;
    let log_config = LogSettings::start(&config, &db, &index).await;
    let jobs = log_config.start_jobs(&config, &db, &index, &alerts).await?;
    let receivers = Arc::new(owl_collector::ReceiverStats::default());
    let collector = spawn_role(
        "collector",
        &failed,
        owl_collector::run_with(
            config.clone(),
            index.clone(),
            collector_listener,
            server_stop.clone(),
            log_config.hooks(&alerts, receivers.clone()),
        ),
    );
    let query_api = spawn_role(
        "query API",
        &failed,
        // The query API reloads this process's engine on every alert change, so a change applies
        // before it is answered.
        owl_query_api::run_with(
            config.clone(),
            index,
            query_listener,
            server_stop.clone(),
            owl_query_api::Options {
                alert_engine: Some(alerts.engine.clone()),
                components: vec![Arc::new(ReceiversHealth(receivers))],
                // Applied once above, for every role.
                schema_ready: true,
                // The scheduler above runs audit retention.
                scheduled_maintenance: true,
                more_api_paths: Some(owl_collector::api_docs::paths(&format!(
                    "http://{collector_addr}"
                ))),
                ..Default::default()
            },
        ),
    );
    let agent = {
        let (config, stop) = (config.clone(), edge_stop.clone());
        spawn_role("agent", &failed, async move {
            Ok(owl_agent::run(config, stop).await?)
        })
    };

    if options.demo {
        // The CRM analytics endpoints read these rows; a failure leaves them empty but the
        // pipeline running.
        match owl_query_api::crm::load_demo_data(&config).await {
            Ok(_) => tracing::info!("CRM demo data loaded"),
            Err(error) => tracing::warn!(%error, "could not load the CRM demo data"),
        }
    }

    println!("Owl is up.");
    println!("  query API  http://{query_addr}   (health: /health/detailed; login: admin)");
    println!(
        "  collector  http://{collector_addr}/api/v1/ingest   (agent token: {})",
        config.data_dir.join(owl_collector::AGENT_TOKEN_FILE).display()
    );
    println!("  data       {}", config.data_dir.display());
    if options.demo {
        println!("  demo logs  {}", config.data_dir.join("demo-logs").display());
    }
    println!("Press Ctrl-C to stop.");

    tokio::select! {
        () = shutdown.cancelled() => {}
        () = failed.cancelled() => {}
    }

    edge_stop.cancel();
    let mut errors = Vec::new();
    if let Some(task) = demo_task
        && let Err(e) = join(task).await
    {
        errors.push(e);
    }
    match tokio::time::timeout(AGENT_DRAIN, join(agent)).await {
        Ok(Err(e)) => errors.push(e),
        Ok(Ok(())) => {}
        Err(_) => tracing::warn!("the agent did not finish flushing in time; its disk buffer keeps the rest"),
    }
    server_stop.cancel();
    for task in [collector, query_api] {
        if let Err(e) = join(task).await {
            errors.push(e);
        }
    }
    jobs.stop().await;
    alerts.stop().await;
    log_config.stop().await;
    db.close().await;
    match errors.into_iter().next() {
        Some(error) => Err(error),
        None => {
            println!("Owl stopped.");
            Ok(())
        }
    }
}

/// `owl collector` or `owl query-api`.
pub async fn run_role(mut config: Config, role: Role, shutdown: CancellationToken) -> anyhow::Result<()> {
    create_data_dir(&config.data_dir)?;
    match role {
        Role::Collector => {
            adopt_agent_token(&mut config)?;
            let listener = bind(&config.collector.listen, "collector").await?;
            let index = open_index_off_runtime(&config).await?;
            let db = open_database(&config).await?;
            let alerts = Alerts::start(&config, &db).await?;
            let log_config = LogSettings::start(&config, &db, &index).await;
            let jobs = log_config.start_jobs(&config, &db, &index, &alerts).await?;
            let hooks = log_config.hooks(&alerts, Arc::default());
            let ran = owl_collector::run_with(config, index, listener, shutdown, hooks).await;
            jobs.stop().await;
            alerts.stop().await;
            log_config.stop().await;
            db.close().await;
            ran
        }
        Role::QueryApi => {
            let listener = bind(&config.query_api.listen, "query API").await?;
            let dir = config.index_dir();
            std::fs::create_dir_all(&dir).with_context(|| format!("while creating {}", dir.display()))?;
            let index = Index::open_reader(&dir)
                .with_context(|| format!("while opening the index at {}", dir.display()))?;
            owl_query_api::run(config, index, listener, shutdown).await
        }
    }
}
