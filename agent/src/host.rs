//! Host metric samples and heartbeats, shipped like records (through the batch and the disk
//! buffer) as `@type` lines.

use std::sync::Arc;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use owl_model::{DiskUsage, Heartbeat, IngestItem, LoadAverage, MetricSample};
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

/// File systems that are not disks.
const PSEUDO_FS: &[&str] = &[
    "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "devfs", "autofs", "nsfs",
];

/// Samples CPU, memory, disks and load.
pub(crate) struct Sampler {
    system: sysinfo::System,
    disks: sysinfo::Disks,
}

impl Sampler {
    pub(crate) fn new() -> Result<Sampler, sysinfo::Error> {
        let mut system = sysinfo::System::new()?;
        system.refresh_cpu_usage();
        Ok(Sampler {
            system,
            disks: sysinfo::Disks::new()?,
        })
    }

    /// One sample (CPU usage is measured since the previous call).
    pub(crate) fn sample(&mut self, identity: &Identity) -> MetricSample {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let total = self.system.total_memory();
        let memory_percent = if total == 0 {
            0.0
        } else {
            100.0 * total.saturating_sub(self.system.available_memory()) as f64 / total as f64
        };
        self.disks.refresh(true);
        let mut disks: Vec<DiskUsage> = Vec::new();
        for disk in &self.disks {
            let fs = disk.file_system().to_string_lossy();
            let total_bytes = disk.total_space();
            if total_bytes == 0 || PSEUDO_FS.contains(&fs.as_ref()) {
                continue;
            }
            let mount = disk.mount_point().display().to_string();
            if disks.iter().any(|d| d.mount == mount) {
                continue;
            }
            let used_bytes = total_bytes.saturating_sub(disk.available_space());
            disks.push(DiskUsage {
                mount,
                total_bytes,
                used_bytes,
                percent: round2(100.0 * used_bytes as f64 / total_bytes as f64),
            });
        }
        let load = sysinfo::System::load_average()
            .map(|l| LoadAverage {
                one: l.one,
                five: l.five,
                fifteen: l.fifteen,
            })
            .unwrap_or_default();
        MetricSample {
            host: identity.host.clone(),
            timestamp: chrono::Utc::now(),
            cpu_percent: round2(f64::from(self.system.global_cpu_usage())),
            memory_percent: round2(memory_percent),
            disks,
            load,
            region: identity.region.clone(),
        }
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
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
                let (sample, s) = tokio::task::spawn_blocking(move || (s.sample(&identity), s))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_plausible() {
        let identity = Identity {
            agent_id: "a".into(),
            host: "h".into(),
            region: Some("CN".into()),
            services: vec![],
        };
        let mut sampler = Sampler::new().unwrap();
        std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let sample = sampler.sample(&identity);
        assert!((0.0..=100.0).contains(&sample.cpu_percent), "{sample:?}");
        assert!(
            sample.memory_percent > 0.0 && sample.memory_percent <= 100.0,
            "{sample:?}"
        );
        assert!(sample.disks.iter().all(|d| (0.0..=100.0).contains(&d.percent)));
        assert!(sample.load.one >= 0.0);
        assert_eq!(sample.region.as_deref(), Some("CN"));
    }
}
