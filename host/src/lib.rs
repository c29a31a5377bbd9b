//! Samples of the host Owl runs on: CPU, memory, disks and load as an [`owl_model::MetricSample`].
//!
//! The agent ships one every `agent.host_metrics_interval_s`; the query API samples its own host
//! when no agent reports it (the CRM analytics API's monitoring). Both read the same figures the same way: memory
//! in use is total minus available, disks are the mounted file systems that are disks (not
//! [`PSEUDO_FS`]), each mount once.

use std::time::Instant;

use owl_model::{DiskUsage, LoadAverage, MetricSample};

/// File systems that are not disks.
pub const PSEUDO_FS: &[&str] = &[
    "tmpfs", "devtmpfs", "overlay", "squashfs", "proc", "sysfs", "devfs", "autofs", "nsfs",
];

/// This host's name, or `localhost` when the system does not say.
pub fn host_name() -> String {
    sysinfo::System::host_name().unwrap_or_else(|_| "localhost".to_string())
}

/// Samples CPU, memory, disks and load. Blocking: keep it on a blocking thread.
pub struct Sampler {
    system: sysinfo::System,
    disks: sysinfo::Disks,
    cpu_refreshed: Instant,
}

impl std::fmt::Debug for Sampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sampler").finish_non_exhaustive()
    }
}

impl Sampler {
    /// A sampler; fails where sysinfo cannot read this system.
    pub fn new() -> Result<Sampler, sysinfo::Error> {
        let mut system = sysinfo::System::new()?;
        system.refresh_cpu_usage();
        Ok(Sampler {
            system,
            disks: sysinfo::Disks::new()?,
            cpu_refreshed: Instant::now(),
        })
    }

    /// One sample of `host`. CPU usage is measured since the previous call (or the sampler's
    /// creation), over at least sysinfo's minimum interval: a call sooner than that waits.
    pub fn sample(&mut self, host: &str, region: Option<String>) -> MetricSample {
        let since = self.cpu_refreshed.elapsed();
        if since < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since);
        }
        self.system.refresh_cpu_usage();
        self.cpu_refreshed = Instant::now();
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
            host: host.to_string(),
            timestamp: chrono::Utc::now(),
            cpu_percent: round2(f64::from(self.system.global_cpu_usage())),
            memory_percent: round2(memory_percent),
            disks,
            load,
            region,
        }
    }
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_plausible() {
        let mut sampler = Sampler::new().unwrap();
        let sample = sampler.sample("h", Some("CN".into()));
        assert_eq!(sample.host, "h");
        assert!((0.0..=100.0).contains(&sample.cpu_percent), "{sample:?}");
        assert!(
            sample.memory_percent > 0.0 && sample.memory_percent <= 100.0,
            "{sample:?}"
        );
        assert!(!sample.disks.is_empty(), "this machine has a disk: {sample:?}");
        assert!(sample.disks.iter().all(|d| (0.0..=100.0).contains(&d.percent)));
        assert!(sample.disks.iter().all(|d| d.used_bytes <= d.total_bytes));
        let mounts: std::collections::BTreeSet<&str> =
            sample.disks.iter().map(|d| d.mount.as_str()).collect();
        assert_eq!(mounts.len(), sample.disks.len(), "each mount once");
        assert!(sample.load.one >= 0.0);
        assert_eq!(sample.region.as_deref(), Some("CN"));
        // A second sample right away still measures over the minimum interval.
        let again = sampler.sample("h", None);
        assert!((0.0..=100.0).contains(&again.cpu_percent), "{again:?}");
    }
}
