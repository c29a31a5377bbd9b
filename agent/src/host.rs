//! Host metric samples and heartbeats, shipped like records (through the batch and the disk
//! buffer) as `@type` lines.

use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use owl_host::Sampler;
use owl_model::{Heartbeat, IngestItem};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::tail::TailerMsg;

/// Who the agent is, for samples and heartbeats.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub agent_id: String,
    pub host: String,
    pub region: Option<String>,
    pub services: Vec<String>,
}

/// Sends samples every `sample_every` (if any) and heartbeats every `beat_every` until cancelled.
pub(crate) async fn run(
    identity: Identity,
    sample_every: Option<Duration>,
    beat_every: Duration,
    metrics: Arc<Metrics>,
    tx: SyncSender<TailerMsg>,
    stop: CancellationToken,
) {
    let started = Instant::now();
    let mut sampler = match sample_every {
        Some(_) => match tokio::task::spawn_blocking(Sampler::new)
            .await
            .expect("creating a sampler does not panic")
        {
            Ok(sampler) => Some(sampler),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read host metrics on this system; sampling disabled");
                None
            }
        },
        None => None,
    };
    let far = Duration::from_secs(3600 * 24 * 365);
    let mut sample_tick = tokio::time::interval(sample_every.unwrap_or(far));
    let mut beat_tick = tokio::time::interval(beat_every);
    sample_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    beat_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first sample needs a CPU baseline: skip the immediate tick.
    sample_tick.tick().await;
    loop {
        let item = tokio::select! {
            () = stop.cancelled() => return,
            _ = sample_tick.tick(), if sampler.is_some() => {
                let (identity, mut s) = (identity.clone(), sampler.take().expect("guarded by is_some"));
                let (sample, s) = tokio::task::spawn_blocking(move || (s.sample(&identity.host, identity.region.clone()), s))
                    .await
                    .expect("sampling does not panic");
                sampler = Some(s);
                Metrics::add(&metrics.metric_samples, 1);
                IngestItem::Metric(sample)
            }
            _ = beat_tick.tick() => {
                Metrics::add(&metrics.heartbeats, 1);
                IngestItem::Heartbeat(Heartbeat {
                    agent_id: identity.agent_id.clone(),
                    host: identity.host.clone(),
                    timestamp: chrono::Utc::now(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    uptime_s: started.elapsed().as_secs(),
                    services: identity.services.clone(),
                    region: identity.region.clone(),
                    counters: metrics.snapshot(),
                })
            }
        };
        if tx.try_send(TailerMsg::Line(item.to_line())).is_err() {
            tracing::debug!("reader busy; host sample or heartbeat skipped");
        }
    }
}
