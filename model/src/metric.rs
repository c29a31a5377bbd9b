//! Host metric samples and agent heartbeats.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Usage of one mounted filesystem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskUsage {
    /// Mount point (`/`, `/var/lib/data`).
    pub mount: String,
    /// Capacity in bytes.
    pub total_bytes: u64,
    /// Bytes in use.
    pub used_bytes: u64,
    /// Percentage in use, 0 to 100.
    pub percent: f64,
}

/// Load averages over 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LoadAverage {
    /// One-minute load average.
    pub one: f64,
    /// Five-minute load average.
    pub five: f64,
    /// Fifteen-minute load average.
    pub fifteen: f64,
}

/// One sample of a host's CPU, memory and disks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Host name.
    pub host: String,
    /// When the sample was taken.
    #[serde(rename = "@timestamp", alias = "timestamp")]
    pub timestamp: DateTime<Utc>,
    /// CPU usage across all cores, 0 to 100.
    pub cpu_percent: f64,
    /// Memory in use, 0 to 100.
    pub memory_percent: f64,
    /// Per mount point usage.
    #[serde(default)]
    pub disks: Vec<DiskUsage>,
    /// Load averages (zero where the platform has none).
    #[serde(default)]
    pub load: LoadAverage,
    /// Region of the host, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
}

impl MetricSample {
    /// The highest disk usage of the sample (the figure the CRM analytics API's `disk_percent` reports).
    pub fn max_disk_percent(&self) -> f64 {
        self.disks.iter().map(|d| d.percent).fold(0.0, f64::max)
    }
}

/// An agent's periodic sign of life.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// The agent's stable id.
    pub agent_id: String,
    /// Host name.
    pub host: String,
    /// When it was sent.
    #[serde(rename = "@timestamp", alias = "timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Agent version.
    pub version: String,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// The services whose logs it tails.
    #[serde(default)]
    pub services: Vec<String>,
    /// Region of the node, if configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The agent's own counters (lines read, records shipped, retries, ...).
    #[serde(default)]
    pub counters: BTreeMap<String, u64>,
}
