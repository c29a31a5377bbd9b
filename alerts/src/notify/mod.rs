//! Delivery of notices to Slack, Feishu and email, off the hot path.
//!
//! ```text
//!  engine ── enqueue(notice, channels) ──┬─ slack queue  (bounded) ── slack worker  ─┐
//!            never waits: a full queue   ├─ feishu queue (bounded) ── feishu worker ─┼─ retries with backoff,
//!            fails that delivery at once └─ email queue  (bounded) ── email worker  ─┘  then SENT / FAILED
//!                                                                                       in the alert store
//! ```
//!
//! One worker and one bounded queue per channel, so a channel that is down (timeouts, retries)
//! delays only its own notices, never another channel's and never ingest. Each delivery is tried up
//! to `attempts` times with a doubling pause; errors that cannot succeed on retry (a 4xx from
//! Slack, a bad Feishu signature, a permanent SMTP reply) stop at once. Workers read the channel
//! settings when they deliver, so a new webhook URL applies to the next notice.
//!
//! Every connection goes through the [`TargetPolicy`]: internal addresses only when listed in
//! `notifications.allowed_networks`, redirects never followed, no system proxy, and nothing of
//! what a remote answers is echoed back (an error names its status code only).

mod email;
mod feishu;
mod slack;
mod target;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use ::metrics::{counter, histogram};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alert::Channel;
use crate::metrics::{
    DELIVERIES_TOTAL, DELIVERY_DURATION_SECONDS, DELIVERY_RETRIES_TOTAL, STORE_ERRORS_TOTAL,
};
use crate::notice::Notice;
use crate::settings::AlertSettings;
use crate::store::{AlertStore, DeliveryOutcome};
use owl_model::clock::Clock;

pub use feishu::sign as feishu_sign;
pub(crate) use target::is_local_host as is_local_url;
pub use target::{TargetPolicy, TargetRefused};

/// Why one delivery failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{channel}: {message}")]
pub struct DeliveryError {
    /// The channel.
    pub channel: Channel,
    /// What went wrong, safe to show (no URL, no secret).
    pub message: String,
    /// Whether trying again may succeed.
    pub retryable: bool,
    /// Whether the target address was refused by the [`TargetPolicy`] (a configuration error).
    pub refused: bool,
}

impl DeliveryError {
    pub(crate) fn new(channel: Channel, message: impl Into<String>, retryable: bool) -> DeliveryError {
        DeliveryError {
            channel,
            message: message.into(),
            retryable,
            refused: false,
        }
    }

    /// A target the policy refused.
    pub(crate) fn refused(channel: Channel, refused: TargetRefused) -> DeliveryError {
        DeliveryError {
            refused: true,
            ..DeliveryError::new(channel, refused.0, false)
        }
    }

    /// An error of the HTTP client, without the URL (webhook URLs are secrets).
    pub(crate) fn http(channel: Channel, error: reqwest::Error) -> DeliveryError {
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            if let Some(refused) = cause.downcast_ref::<TargetRefused>() {
                return DeliveryError::refused(channel, refused.clone());
            }
            source = cause.source();
        }
        let kind = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else if error.is_builder() {
            "invalid webhook URL"
        } else {
            "request failed"
        };
        let detail = std::error::Error::source(&error)
            .map(|s| format!(": {s}"))
            .unwrap_or_default();
        DeliveryError::new(channel, format!("{kind}{detail}"), !error.is_builder())
    }
}

/// Why the notifier could not start.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// The HTTP client could not be built.
    #[error("cannot build the webhook HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Delivery knobs (tests shorten them).
#[derive(Debug, Clone)]
pub struct NotifierOptions {
    /// Tries per delivery, the first included.
    pub attempts: u32,
    /// Pause after the first failure; it doubles per attempt up to `max_backoff`.
    pub first_backoff: Duration,
    /// Longest pause between attempts.
    pub max_backoff: Duration,
    /// Longest one attempt may take (HTTP request, SMTP session).
    pub timeout: Duration,
    /// Notices waiting per channel before new ones fail at once.
    pub queue_capacity: usize,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            attempts: 4,
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            queue_capacity: 256,
        }
    }
}

struct Inner {
    http: reqwest::Client,
    policy: Arc<TargetPolicy>,
    settings: RwLock<Arc<AlertSettings>>,
    options: NotifierOptions,
    store: Option<AlertStore>,
    clock: Clock,
    queues: Vec<(Channel, mpsc::Sender<Arc<Notice>>)>,
}

/// Sends notices. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("queued", &!self.inner.queues.is_empty())
            .finish_non_exhaustive()
    }
}

fn http_client(timeout: Duration, policy: Arc<TargetPolicy>) -> Result<reqwest::Client, NotifierError> {
    // reqwest is built without a default crypto provider; Owl uses ring everywhere. A binary
    // normally installed it already, in which case this does nothing.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Ok(reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        // A redirect would lead to an address nobody checked; a proxy would hide the target.
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(target::PolicyResolver(policy))
        .user_agent(concat!("owl-alerts/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

impl Notifier {
    /// A notifier without queues, for direct deliveries ([`Notifier::deliver`]): the API's channel
    /// test.
    pub fn direct(options: NotifierOptions, policy: TargetPolicy) -> Result<Notifier, NotifierError> {
        let policy = Arc::new(policy);
        let http = http_client(options.timeout, policy.clone())?;
        let settings = RwLock::new(Arc::new(AlertSettings::default()));
        let inner = Inner {
            http,
            policy,
            settings,
            options,
            store: None,
            clock: Clock::system(),
            queues: Vec::new(),
        };
        Ok(Notifier {
            inner: Arc::new(inner),
        })
    }

    /// Starts one worker per channel; deliveries are recorded in `store` at `clock`'s time.
    /// Workers stop when `shutdown` is cancelled, recording what is still queued as failed.
    pub fn start(
        store: AlertStore,
        settings: Arc<AlertSettings>,
        options: NotifierOptions,
        policy: TargetPolicy,
        clock: Clock,
        shutdown: CancellationToken,
    ) -> Result<(Notifier, Vec<JoinHandle<()>>), NotifierError> {
        let policy = Arc::new(policy);
        let http = http_client(options.timeout, policy.clone())?;
        let mut queues = Vec::new();
        let mut receivers = Vec::new();
        for channel in Channel::ALL {
            let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
            queues.push((channel, tx));
            receivers.push((channel, rx));
        }
        let inner = Arc::new(Inner {
            http,
            policy,
            settings: RwLock::new(settings),
            options,
            store: Some(store),
            clock,
            queues,
        });
        let notifier = Notifier { inner };
        let workers = receivers
            .into_iter()
            .map(|(channel, rx)| tokio::spawn(worker(notifier.clone(), channel, rx, shutdown.clone())))
            .collect();
        Ok((notifier, workers))
    }

    /// Takes new channel settings.
    pub fn set_settings(&self, settings: Arc<AlertSettings>) {
        *self
            .inner
            .settings
            .write()
            .expect("notifier settings lock poisoned") = settings;
    }

    fn settings(&self) -> Arc<AlertSettings> {
        self.inner
            .settings
            .read()
            .expect("notifier settings lock poisoned")
            .clone()
    }

    /// Queues a notice for `channels` without waiting. Returns the deliveries that failed at once
    /// (that channel's queue is full), which the caller records.
    pub fn enqueue(&self, notice: Notice, channels: &[Channel]) -> Vec<DeliveryError> {
        let notice = Arc::new(notice);
        let mut refused = Vec::new();
        for channel in channels {
            let Some((_, queue)) = self.inner.queues.iter().find(|(c, _)| c == channel) else {
                refused.push(DeliveryError::new(*channel, "notifier has no queue", false));
                continue;
            };
            if queue.try_send(notice.clone()).is_err() {
                counter!(DELIVERIES_TOTAL, "channel" => channel.as_str(), "kind" => notice.kind.as_str(), "outcome" => "failed")
                    .increment(1);
                refused.push(DeliveryError::new(
                    *channel,
                    "notification queue full; notice dropped",
                    false,
                ));
            }
        }
        refused
    }

    /// Delivers a notice to one channel once, with `settings`' channel configuration, whether the
    /// channel is enabled or not (a test of a channel being set up).
    pub async fn deliver(
        &self,
        channel: Channel,
        settings: &AlertSettings,
        notice: &Notice,
    ) -> Result<(), DeliveryError> {
        let timeout = self.inner.options.timeout;
        let n = &settings.notifications;
        match channel {
            Channel::Slack => {
                if n.slack.webhook_url.is_empty() {
                    return Err(DeliveryError::new(channel, "Slack webhook URL 未配置", false));
                }
                target::check_webhook_url(&self.inner.policy, &n.slack.webhook_url)
                    .map_err(|e| DeliveryError::refused(channel, e))?;
                slack::send(&self.inner.http, &n.slack.webhook_url, notice).await
            }
            Channel::Feishu => {
                if n.feishu.webhook_url.is_empty() {
                    return Err(DeliveryError::new(channel, "飞书 webhook URL 未配置", false));
                }
                target::check_webhook_url(&self.inner.policy, &n.feishu.webhook_url)
                    .map_err(|e| DeliveryError::refused(channel, e))?;
                let now_s = chrono::Utc::now().timestamp();
                feishu::send(
                    &self.inner.http,
                    &n.feishu.webhook_url,
                    &n.feishu.secret,
                    now_s,
                    notice,
                )
                .await
            }
            Channel::Email => {
                if n.email.smtp_host.is_empty() || n.email.recipients.is_empty() || n.email.from.is_empty() {
                    return Err(DeliveryError::new(
                        channel,
                        "邮件通道未配置（smtpHost、from、recipients）",
                        false,
                    ));
                }
                email::send(&n.email, &self.inner.policy, notice, timeout).await
            }
        }
    }

    /// Delivers with retries and backoff; gives up early when `stop` is cancelled.
    async fn deliver_with_retries(
        &self,
        channel: Channel,
        notice: &Notice,
        stop: &CancellationToken,
    ) -> Result<(), DeliveryError> {
        let options = &self.inner.options;
        let mut pause = options.first_backoff;
        let mut attempt = 1;
        loop {
            let settings = self.settings();
            match self.deliver(channel, &settings, notice).await {
                Ok(()) => return Ok(()),
                Err(error) if error.retryable && attempt < options.attempts && !stop.is_cancelled() => {
                    tracing::warn!(%channel, attempt, error = %error.message, retry_in_ms = pause.as_millis() as u64, "alert delivery failed, retrying");
                    counter!(DELIVERY_RETRIES_TOTAL, "channel" => channel.as_str()).increment(1);
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = stop.cancelled() => return Err(error),
                    }
                    pause = (pause * 2).min(options.max_backoff);
                    attempt += 1;
                }
                Err(error) => {
                    let error = if attempt > 1 {
                        DeliveryError {
                            message: format!("{} (after {attempt} attempts)", error.message),
                            ..error
                        }
                    } else {
                        error
                    };
                    return Err(error);
                }
            }
        }
    }

    async fn record(&self, notice: &Notice, outcome: DeliveryOutcome) {
        let (Some(store), Some(id)) = (&self.inner.store, notice.alert_id) else {
            return;
        };
        if let Err(error) = store.record_delivery(id, &outcome).await {
            tracing::warn!(%error, alert = %id, "could not record an alert delivery");
            counter!(STORE_ERRORS_TOTAL, "op" => "record_delivery").increment(1);
        }
    }
}

async fn worker(
    notifier: Notifier,
    channel: Channel,
    mut queue: mpsc::Receiver<Arc<Notice>>,
    shutdown: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            notice = queue.recv() => match notice {
                Some(notice) => notice,
                None => return,
            },
            () = shutdown.cancelled() => break,
        };
        let started = Instant::now();
        let result = notifier.deliver_with_retries(channel, &notice, &shutdown).await;
        histogram!(DELIVERY_DURATION_SECONDS, "channel" => channel.as_str())
            .record(started.elapsed().as_secs_f64());
        let (outcome, label) = match result {
            Ok(()) => {
                tracing::debug!(%channel, kind = notice.kind.as_str(), alert = ?notice.alert_id, "alert notice delivered");
                (DeliveryOutcome::Sent(notifier.inner.clock.now_ms()), "sent")
            }
            Err(error) => {
                // The operator must act: a channel is misconfigured or down and alerts are not
                // reaching anyone on it.
                tracing::error!(%channel, kind = notice.kind.as_str(), alert = ?notice.alert_id, error = %error.message, "alert notice not delivered");
                (DeliveryOutcome::Failed(error.to_string()), "failed")
            }
        };
        counter!(DELIVERIES_TOTAL, "channel" => channel.as_str(), "kind" => notice.kind.as_str(), "outcome" => label).increment(1);
        notifier.record(&notice, outcome).await;
    }
    // Stopping: what is still queued will not be delivered; say so in the store rather than leave
    // it pending forever.
    queue.close();
    while let Ok(notice) = queue.try_recv() {
        notifier
            .record(
                &notice,
                DeliveryOutcome::Failed(format!("{channel}: Owl stopped before delivery")),
            )
            .await;
    }
}
