//! The alert engine: one task that evaluates the rules on what the collector stored, keeps the
//! incidents, writes the store and hands notices to the notifier.
//!
//! ```text
//!  collector (indexing thread) ── observe(records, samples) ── bounded queue ──> engine task
//!    extracts request facts,        try_send: never waits;                         rules → signals
//!    clones samples                 full → counted, dropped                        incidents → open / fold / resolve
//!                                                                                  store (SQL) + notifier queues
//!  every tick (1 s): fold updates (learning of acknowledgements), repeats and escalations,
//!  resolutions, reload of the configuration and mutes when their version changed, window sweep
//! ```
//!
//! Opening an alert is on the fast path: the row is inserted and the firing notice queued as soon
//! as the signal is evaluated. Everything else waits for the tick, so a flood of repeats costs one
//! `UPDATE` per open alert per tick, not one per record.
//!
//! State that matters across a restart lives in the store: open alerts are adopted at start (so a
//! restart neither re-notifies nor loses an incident), blocks and mutes are rows. Windows (error
//! rates, per-IP counts) are rebuilt from new traffic within one window.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{counter, gauge};
use owl_model::{LogRecord, MetricSample};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::{AlertStatus, AlertType, Channel};
use crate::incidents::{Incident, Incidents, NoticeKind, Observed, notice_due};
use crate::metrics::*;
use crate::notice::Notice;
use crate::notify::{Notifier, NotifierError, NotifierOptions};
use crate::rules::{RequestFacts, Rules, Signal};
use crate::settings::AlertSettings;
use crate::store::{AlertStore, BlockedIp, DeliveryOutcome, StoreError};
use owl_model::clock::{Clock, format_millis};

/// Resolved alerts are kept this long (well past the log API's 30-day history limit).
pub const ALERT_RETENTION_MS: i64 = 90 * 24 * 3600 * 1000;
/// How often expired blocks and mutes, and old resolved alerts, are deleted.
const PURGE_INTERVAL_MS: i64 = 60_000;

/// Why the engine could not start.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The notifier could not start.
    #[error(transparent)]
    Notifier(#[from] NotifierError),
}

/// Engine knobs that are not configuration (tests replace them).
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// The time source.
    pub clock: Clock,
    /// How often folds are written, repeats and resolutions decided.
    pub tick: Duration,
    /// How often the stored configuration and mutes are checked for changes.
    pub reload_interval: Duration,
    /// Batches waiting for the engine before new ones are dropped.
    pub queue_capacity: usize,
    /// Base URL of links in notices (`None`: from `query_api.public_url` or `listen`).
    pub link_base: Option<String>,
    /// Delivery knobs.
    pub notifier: NotifierOptions,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            clock: Clock::system(),
            tick: Duration::from_secs(1),
            reload_interval: Duration::from_secs(1),
            queue_capacity: 4096,
            link_base: None,
            notifier: NotifierOptions::default(),
        }
    }
}

/// What IP_ANOMALY never blocks: `alerts.ip_anomaly.never_block` and the query API's trusted
/// proxies (blocking a proxy would refuse everyone behind it).
fn never_block(config: &owl_config::Config) -> owl_config::Networks {
    config
        .alerts
        .ip_anomaly
        .never_block
        .and(&config.query_api.trusted_proxies)
}

enum Input {
    Requests(Vec<RequestFacts>),
    Samples(Vec<MetricSample>),
    Sync(oneshot::Sender<()>),
    /// Read the configuration and mutes now; answer once they apply.
    Reload(Option<oneshot::Sender<()>>),
}

/// The handle through which records and samples reach the engine. Cheap to clone; every method
/// returns at once.
#[derive(Debug, Clone)]
pub struct AlertEngine {
    inputs: mpsc::Sender<Input>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::Requests(batch) => write!(f, "Requests({})", batch.len()),
            Input::Samples(batch) => write!(f, "Samples({})", batch.len()),
            Input::Sync(_) => f.write_str("Sync"),
            Input::Reload(_) => f.write_str("Reload"),
        }
    }
}

impl AlertEngine {
    /// Starts the engine and its notifier over `store`: reads the configuration (the stored one,
    /// else `config`'s `[alerts]` and `[notifications]`), mutes and open alerts, then runs until
    /// `shutdown`. The handle returned is what the collector feeds.
    pub async fn start(
        config: &owl_config::Config,
        store: AlertStore,
        options: EngineOptions,
        shutdown: CancellationToken,
    ) -> Result<(AlertEngine, JoinHandle<()>), EngineError> {
        crate::metrics::describe();
        let effective = store.effective_settings(config).await?;
        let settings = Arc::new(effective.settings);
        let (notifier, workers) = Notifier::start(
            store.clone(),
            settings.clone(),
            options.notifier.clone(),
            crate::notify::TargetPolicy::from_config(&config.notifications),
            options.clock.clone(),
            shutdown.clone(),
        )?;
        let now = options.clock.now_ms();
        let mut incidents = Incidents::default();
        let open = store.open_alerts().await?;
        for alert in &open {
            incidents.adopt(alert);
        }
        // Adopted alerts are not dirty: nothing new happened to them yet.
        incidents.take_dirty();
        let mutes = store
            .mutes(now)
            .await?
            .into_iter()
            .map(|m| (m.alert_type, m.until_ms))
            .collect();
        let link_base = options
            .link_base
            .clone()
            .unwrap_or_else(|| crate::notice::link_base(config));
        tracing::info!(
            open = open.len(),
            configured = effective.version.is_some(),
            "alert engine started"
        );
        let runner = Runner {
            base: AlertSettings::from_config(&config.alerts, &config.notifications),
            rules: Rules::new(&settings).with_never_block(never_block(config)),
            settings,
            version: effective.version,
            incidents,
            mutes,
            store,
            notifier,
            clock: options.clock.clone(),
            link_base,
            reload_interval_ms: i64::try_from(options.reload_interval.as_millis()).unwrap_or(1000),
            last_reload_ms: now,
            last_purge_ms: i64::MIN,
        };
        let (inputs, queue) = mpsc::channel(options.queue_capacity.max(1));
        if runner.store.is_postgres() {
            tokio::spawn(listen_for_changes(
                config.database_url(),
                inputs.clone(),
                shutdown.clone(),
            ));
        }
        let task = tokio::spawn(runner.run(queue, options.tick, shutdown, workers));
        Ok((AlertEngine { inputs }, task))
    }

    /// Feeds stored records and metric samples. Only HTTP request records matter to the rules;
    /// their facts are extracted here and queued. Never waits: when the engine is behind, the
    /// batch is dropped and counted in `owl_alerts_observations_dropped_total`.
    pub fn observe(&self, records: &[LogRecord], samples: &[MetricSample]) {
        let requests: Vec<RequestFacts> = records.iter().filter_map(RequestFacts::of).collect();
        if !requests.is_empty() {
            self.push(Input::Requests(requests));
        }
        if !samples.is_empty() {
            self.push(Input::Samples(samples.to_vec()));
        }
    }

    /// Feeds stored records (see [`AlertEngine::observe`]).
    pub fn observe_records(&self, records: &[LogRecord]) {
        self.observe(records, &[]);
    }

    /// Feeds one metric sample (see [`AlertEngine::observe`]).
    pub fn observe_metric(&self, sample: &MetricSample) {
        self.observe(&[], std::slice::from_ref(sample));
    }

    fn push(&self, input: Input) {
        if let Err(error) = self.inputs.try_send(input) {
            counter!(OBSERVATIONS_DROPPED_TOTAL).increment(1);
            tracing::debug!(?error, "alert engine behind; observation dropped");
        }
    }

    /// Makes the engine read the stored configuration and mutes now, and waits until they apply:
    /// the query API calls it after a change, so in one process the next record is judged by the
    /// new settings. Records fed before are evaluated first, under the settings they came under.
    /// False when the engine has stopped.
    pub async fn reload(&self) -> bool {
        let (reply, done) = oneshot::channel();
        if self.inputs.send(Input::Reload(Some(reply))).await.is_err() {
            return false;
        }
        done.await.is_ok()
    }

    /// Waits until everything fed so far was evaluated, then runs a tick at the clock's current
    /// time with a fresh read of the configuration and mutes. False when the engine has stopped.
    /// Tests drive time with it; production needs nothing of it.
    pub async fn sync(&self) -> bool {
        let (reply, done) = oneshot::channel();
        if self.inputs.send(Input::Sync(reply)).await.is_err() {
            return false;
        }
        done.await.is_ok()
    }
}

/// Reloads the engine whenever another process announces a change (PostgreSQL `LISTEN`), and once
/// after every (re)connection, since notices sent while disconnected are lost.
async fn listen_for_changes(url: String, inputs: mpsc::Sender<Input>, shutdown: CancellationToken) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => match listener.listen(crate::store::CHANGES_CHANNEL).await {
                Ok(()) => {
                    let _ = inputs.send(Input::Reload(None)).await;
                    loop {
                        tokio::select! {
                            notice = listener.recv() => match notice {
                                Ok(_) => {
                                    if inputs.send(Input::Reload(None)).await.is_err() {
                                        return;
                                    }
                                }
                                Err(error) => {
                                    tracing::warn!(%error, "alert change listener lost its connection");
                                    break;
                                }
                            },
                            () = shutdown.cancelled() => return,
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "cannot listen for alert configuration changes"),
            },
            Err(error) => tracing::warn!(%error, "cannot connect the alert change listener"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

struct Runner {
    /// The config file's settings, under the stored document.
    base: AlertSettings,
    rules: Rules,
    settings: Arc<AlertSettings>,
    version: Option<i64>,
    incidents: Incidents,
    mutes: HashMap<AlertType, i64>,
    store: AlertStore,
    notifier: Notifier,
    clock: Clock,
    link_base: String,
    reload_interval_ms: i64,
    last_reload_ms: i64,
    last_purge_ms: i64,
}

fn store_error(op: &'static str, error: &StoreError) {
    tracing::warn!(%error, op, "alert store operation failed");
    counter!(STORE_ERRORS_TOTAL, "op" => op).increment(1);
}

impl Runner {
    async fn run(
        mut self,
        mut queue: mpsc::Receiver<Input>,
        tick: Duration,
        shutdown: CancellationToken,
        workers: Vec<JoinHandle<()>>,
    ) {
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = queue.recv() => match input {
                    Some(input) => self.on_input(input).await,
                    None => break,
                },
                _ = ticker.tick() => self.tick(false).await,
                () = shutdown.cancelled() => break,
            }
        }
        // Evaluate what was already handed over, and write the folds, before stopping.
        queue.close();
        while let Ok(input) = queue.try_recv() {
            self.on_input(input).await;
        }
        self.flush(self.clock.now_ms()).await;
        for worker in workers {
            let _ = worker.await;
        }
        tracing::info!(open = self.incidents.len(), "alert engine stopped");
    }

    async fn on_input(&mut self, input: Input) {
        let now = self.clock.now_ms();
        let mut signals = Vec::new();
        match input {
            Input::Requests(batch) => {
                for request in &batch {
                    self.rules.on_request(request, now, &mut signals);
                }
            }
            Input::Samples(samples) => {
                for sample in &samples {
                    self.rules.on_sample(sample, now, &mut signals);
                }
            }
            Input::Reload(reply) => {
                self.reload(now).await;
                if let Some(reply) = reply {
                    let _ = reply.send(());
                }
            }
            Input::Sync(reply) => {
                self.tick(true).await;
                let _ = reply.send(());
            }
        }
        for signal in signals {
            self.on_signal(signal, now).await;
        }
    }

    async fn on_signal(&mut self, signal: Signal, now: i64) {
        counter!(SIGNALS_TOTAL, "type" => signal.alert_type.as_str()).increment(1);
        match self.incidents.observe(signal, now) {
            Observed::Opened(incident) => self.open(*incident, now).await,
            Observed::Folded => {}
            Observed::Dropped => {
                counter!(INCIDENTS_DROPPED_TOTAL).increment(1);
                tracing::warn!(
                    open = self.incidents.len(),
                    "too many open alerts; a new incident was dropped"
                );
            }
        }
    }

    fn muted_until(&self, alert_type: AlertType, now: i64) -> Option<i64> {
        self.mutes.get(&alert_type).copied().filter(|until| *until > now)
    }

    /// Where a notice would go now, or why it goes nowhere.
    fn route(&self, alert_type: AlertType, now: i64) -> Result<Vec<Channel>, String> {
        if let Some(until) = self.muted_until(alert_type, now) {
            return Err(format!("{alert_type} 已静默至 {}", format_millis(until)));
        }
        let channels = self.settings.enabled_channels();
        if channels.is_empty() {
            return Err("未启用任何通知通道".to_string());
        }
        Ok(channels)
    }

    async fn open(&mut self, incident: Incident, now: i64) {
        let alert_type = incident.latest.alert_type;
        let route = self.route(alert_type, now);
        let mut alert = incident.to_alert(if route.is_ok() {
            AlertStatus::Pending
        } else {
            AlertStatus::Suppressed
        });
        match &route {
            Ok(channels) => {
                alert.channels = channels.clone();
                alert.notices = 1;
                alert.notified_at = Some(now);
            }
            Err(reason) => alert.last_error = Some(reason.clone()),
        }
        match self.store.insert_alert(&alert).await {
            Ok(true) => {}
            Ok(false) => {
                // Another collector raised it first: fold into that one.
                match self.store.open_alert(alert_type, &alert.key).await {
                    Ok(Some(existing)) => self.incidents.adopt(&existing),
                    Ok(None) => self.incidents.forget(alert_type, &alert.key),
                    Err(error) => {
                        store_error("open_alert", &error);
                        self.incidents.forget(alert_type, &alert.key);
                    }
                }
                return;
            }
            Err(error) => {
                store_error("insert_alert", &error);
                self.incidents.forget(alert_type, &alert.key);
                return;
            }
        }
        counter!(OPENED_TOTAL, "type" => alert_type.as_str()).increment(1);
        gauge!(OPEN).set(self.incidents.len() as f64);
        tracing::info!(alert = %alert.id, r#type = %alert_type, key = %alert.key, message = %alert.message, "alert opened");
        if let Ok(channels) = route {
            self.incidents.notified(alert_type, &alert.key, now);
            let notice = Notice::for_alert(NoticeKind::Firing, &alert, &self.link_base);
            self.dispatch(notice, &channels).await;
        }
        if let Some(block) = &incident.latest.block {
            self.block(block.ip.clone(), block.until_ms, &alert.message, alert.id, now)
                .await;
        }
    }

    async fn block(&self, ip: String, until_ms: i64, reason: &str, alert_id: uuid::Uuid, now: i64) {
        let block = BlockedIp {
            ip,
            until_ms,
            reason: reason.to_string(),
            alert_id: Some(alert_id),
            created_at: now,
        };
        if let Err(error) = self.store.block_ip(&block).await {
            store_error("block_ip", &error);
        }
    }

    /// Queues a notice; deliveries refused at once (full queue) are recorded as failed.
    async fn dispatch(&self, notice: Notice, channels: &[Channel]) {
        let alert_id = notice.alert_id;
        let refused = self.notifier.enqueue(notice, channels);
        let Some(id) = alert_id else { return };
        for error in refused {
            tracing::warn!(alert = %id, error = %error, "alert notice not queued");
            if let Err(error) = self
                .store
                .record_delivery(id, &DeliveryOutcome::Failed(error.to_string()))
                .await
            {
                store_error("record_delivery", &error);
            }
        }
    }

    /// Sends the notice an incident is due, if any.
    async fn notify(&mut self, incident: &Incident, kind: NoticeKind, now: i64) {
        let alert_type = incident.latest.alert_type;
        let channels = match self.route(alert_type, now) {
            Ok(channels) => channels,
            Err(reason) => {
                // Never notified yet: say why in the store. A repeat while muted just stays quiet.
                if kind == NoticeKind::Firing
                    && let Err(error) = self
                        .store
                        .notice_queued(incident.id, &[], Some(&reason), now)
                        .await
                {
                    store_error("notice_queued", &error);
                }
                return;
            }
        };
        if let Err(error) = self.store.notice_queued(incident.id, &channels, None, now).await {
            store_error("notice_queued", &error);
            return;
        }
        self.incidents.notified(alert_type, &incident.latest.key, now);
        let mut alert = incident.to_alert(AlertStatus::Pending);
        alert.channels = channels.clone();
        let notice = Notice::for_alert(kind, &alert, &self.link_base);
        self.dispatch(notice, &channels).await;
    }

    /// Writes folds and decides repeats and escalations.
    async fn flush(&mut self, now: i64) {
        let cooldown_ms = i64::try_from(self.settings.cooldown_seconds).unwrap_or(86_400) * 1000;
        for incident in self.incidents.take_dirty() {
            let latest = &incident.latest;
            let status = match self
                .store
                .fold(
                    incident.id,
                    incident.severity,
                    &latest.message,
                    &latest.context,
                    incident.occurrences,
                    incident.last_seen_at,
                )
                .await
            {
                Ok(Some(status)) => status,
                Ok(None) => {
                    // The row is gone (deleted by hand): the next signal opens a new alert.
                    self.incidents.forget(latest.alert_type, &latest.key);
                    continue;
                }
                Err(error) => {
                    store_error("fold", &error);
                    continue;
                }
            };
            let acknowledged = status == AlertStatus::Acknowledged;
            self.incidents
                .set_acknowledged(latest.alert_type, &latest.key, acknowledged);
            if let Some(block) = &latest.block {
                self.block(
                    block.ip.clone(),
                    block.until_ms,
                    &latest.message,
                    incident.id,
                    now,
                )
                .await;
            }
            let incident = Incident {
                acknowledged,
                ..incident
            };
            if let Some(kind) = notice_due(&incident, now, cooldown_ms) {
                self.notify(&incident, kind, now).await;
            }
        }
    }

    async fn resolve(&mut self, now: i64) {
        let resolve_after_ms = i64::try_from(self.settings.resolve_after_seconds).unwrap_or(86_400) * 1000;
        for incident in self.incidents.take_resolved(now, resolve_after_ms) {
            let alert_type = incident.latest.alert_type;
            if let Err(error) = self.store.resolve(incident.id, now).await {
                store_error("resolve", &error);
            }
            counter!(RESOLVED_TOTAL, "type" => alert_type.as_str()).increment(1);
            tracing::info!(alert = %incident.id, r#type = %alert_type, key = %incident.latest.key, "alert resolved");
            // Nobody heard of it (muted, no channel): nobody needs to hear it is over.
            if incident.notified_at.is_none() {
                continue;
            }
            let Ok(channels) = self.route(alert_type, now) else {
                continue;
            };
            if let Err(error) = self.store.notice_queued(incident.id, &channels, None, now).await {
                store_error("notice_queued", &error);
            }
            let mut alert = incident.to_alert(AlertStatus::Pending);
            alert.state = crate::alert::AlertState::Resolved;
            alert.resolved_at = Some(now);
            alert.channels = channels.clone();
            let notice = Notice::for_alert(NoticeKind::Resolved, &alert, &self.link_base);
            self.dispatch(notice, &channels).await;
        }
        gauge!(OPEN).set(self.incidents.len() as f64);
    }

    async fn reload(&mut self, now: i64) {
        self.last_reload_ms = now;
        let mut held_changed = false;
        match self.store.settings_version().await {
            Ok(version) if version != self.version && version.is_some() => {
                match self.store.load_settings(&self.base).await {
                    Ok(Some(stored)) => {
                        tracing::info!(version = stored.version, by = %stored.updated_by, "alert configuration reloaded");
                        let settings = Arc::new(stored.settings);
                        self.rules.update(&settings);
                        self.notifier.set_settings(settings.clone());
                        self.settings = settings;
                        self.version = Some(stored.version);
                        held_changed = true;
                    }
                    Ok(None) => {}
                    Err(error) => store_error("load_settings", &error),
                }
            }
            Ok(_) => {}
            Err(error) => store_error("settings_version", &error),
        }
        match self.store.mutes(now).await {
            Ok(mutes) => {
                let mutes: HashMap<AlertType, i64> =
                    mutes.into_iter().map(|m| (m.alert_type, m.until_ms)).collect();
                held_changed |= mutes != self.mutes;
                self.mutes = mutes;
            }
            Err(error) => store_error("mutes", &error),
        }
        if held_changed {
            self.deliver_held(now).await;
        }
    }

    /// Open alerts nobody was told of (no channel was enabled, or the type was muted, when they
    /// opened) are delivered once a channel can take them, while they are still open, rather than
    /// waiting for a next occurrence that may never come. The alert's context records why it was
    /// held.
    async fn deliver_held(&mut self, now: i64) {
        for incident in self.incidents.unnotified() {
            let alert_type = incident.latest.alert_type;
            if self.route(alert_type, now).is_err() {
                continue;
            }
            let held = json!({
                "reason": "opened while no channel could take it (none enabled, or muted)",
                "openedAt": format_millis(incident.created_at),
                "deliveredAt": format_millis(now),
            });
            self.incidents.note_held(alert_type, &incident.latest.key, held);
            tracing::info!(alert = %incident.id, r#type = %alert_type, "held alert delivered now that a channel takes it");
            self.notify(&incident, NoticeKind::Firing, now).await;
        }
    }

    async fn tick(&mut self, force_reload: bool) {
        let now = self.clock.now_ms();
        if force_reload || now - self.last_reload_ms >= self.reload_interval_ms {
            self.reload(now).await;
        }
        self.flush(now).await;
        self.resolve(now).await;
        self.rules.sweep(now);
        if self.rules.untracked > 0 {
            counter!(UNTRACKED_KEYS_TOTAL).increment(std::mem::take(&mut self.rules.untracked));
        }
        if now.saturating_sub(self.last_purge_ms) >= PURGE_INTERVAL_MS {
            self.last_purge_ms = now;
            if let Err(error) = self.store.purge_expired(now).await {
                store_error("purge_expired", &error);
            }
            match self.store.purge_resolved(now - ALERT_RETENTION_MS).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "old resolved alerts deleted"),
                Err(error) => store_error("purge_resolved", &error),
            }
        }
    }
}
