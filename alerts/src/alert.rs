//! The vocabulary of alerts: types, severities, states, delivery statuses, and the stored alert.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// What an alert is about (the log API's `AlertType`, plus the CRM analytics API's `cpu_high` and its memory sibling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertType {
    /// An HTTP request slower than `slowRequest.thresholdMs`.
    SlowRequest,
    /// A service's failed requests over `errorRate.windowMinutes` at or above the threshold.
    HighErrorRate,
    /// A mount of a host at or above `diskSpace.warningPercent`.
    DiskSpace,
    /// A client IP over `ipAnomaly.maxRequestsPerMinute`.
    IpAnomaly,
    /// A host's CPU usage over `cpu.thresholdPercent` (the CRM analytics API's `cpu_high`).
    CpuHigh,
    /// A host's memory usage over `memory.thresholdPercent`.
    MemoryHigh,
}

impl AlertType {
    /// Every type, in the log API's order followed by the host rules.
    pub const ALL: [AlertType; 6] = [
        AlertType::SlowRequest,
        AlertType::HighErrorRate,
        AlertType::DiskSpace,
        AlertType::IpAnomaly,
        AlertType::CpuHigh,
        AlertType::MemoryHigh,
    ];

    /// The log API's name (`SLOW_REQUEST`), also the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertType::SlowRequest => "SLOW_REQUEST",
            AlertType::HighErrorRate => "HIGH_ERROR_RATE",
            AlertType::DiskSpace => "DISK_SPACE",
            AlertType::IpAnomaly => "IP_ANOMALY",
            AlertType::CpuHigh => "CPU_HIGH",
            AlertType::MemoryHigh => "MEMORY_HIGH",
        }
    }

    /// The CRM analytics API's name (`cpu_high`).
    pub fn crm_name(self) -> &'static str {
        match self {
            AlertType::SlowRequest => "slow_request",
            AlertType::HighErrorRate => "high_error_rate",
            AlertType::DiskSpace => "disk_space",
            AlertType::IpAnomaly => "ip_anomaly",
            AlertType::CpuHigh => "cpu_high",
            AlertType::MemoryHigh => "memory_high",
        }
    }

    /// The title of its notices (`慢请求告警`).
    pub fn title(self) -> &'static str {
        match self {
            AlertType::SlowRequest => "慢请求告警",
            AlertType::HighErrorRate => "高错误率告警",
            AlertType::DiskSpace => "磁盘空间告警",
            AlertType::IpAnomaly => "IP 异常告警",
            AlertType::CpuHigh => "CPU 使用率告警",
            AlertType::MemoryHigh => "内存使用率告警",
        }
    }
}

impl fmt::Display for AlertType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of an enum's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`: expected one of {allowed}")]
pub struct UnknownValue {
    /// Which enum.
    pub what: &'static str,
    /// The value given.
    pub value: String,
    /// The values accepted.
    pub allowed: &'static str,
}

impl FromStr for AlertType {
    type Err = UnknownValue;

    /// Reads the log API's (`SLOW_REQUEST`) or the CRM analytics API's (`slow_request`) name.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownValue {
                what: "alert type",
                value: s.to_string(),
                allowed: "SLOW_REQUEST, HIGH_ERROR_RATE, DISK_SPACE, IP_ANOMALY, CPU_HIGH, MEMORY_HIGH",
            })
    }
}

/// How urgent an alert is (the log API's `AlertSeverity`), ordered from least to most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertSeverity {
    /// For information only.
    Info,
    /// Needs attention.
    Warning,
    /// Needs action now.
    Critical,
}

impl AlertSeverity {
    /// The log API's name (`WARNING`), also the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertSeverity::Info => "INFO",
            AlertSeverity::Warning => "WARNING",
            AlertSeverity::Critical => "CRITICAL",
        }
    }

    /// The CRM analytics API's name (`warning`).
    pub fn crm_name(self) -> &'static str {
        match self {
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        }
    }
}

impl fmt::Display for AlertSeverity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertSeverity {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            AlertSeverity::Info,
            AlertSeverity::Warning,
            AlertSeverity::Critical,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| UnknownValue {
            what: "severity",
            value: s.to_string(),
            allowed: "CRITICAL, WARNING, INFO",
        })
    }
}

/// Whether the condition of an alert still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertState {
    /// The condition holds; repeats fold into the alert.
    Open,
    /// The condition cleared.
    Resolved,
}

impl AlertState {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Open => "OPEN",
            AlertState::Resolved => "RESOLVED",
        }
    }
}

impl FromStr for AlertState {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "OPEN" => Ok(AlertState::Open),
            "RESOLVED" => Ok(AlertState::Resolved),
            _ => Err(UnknownValue {
                what: "alert state",
                value: s.to_string(),
                allowed: "OPEN, RESOLVED",
            }),
        }
    }
}

/// Where the notices of an alert stand (the log API's `AlertStatus`: `SENT`, `FAILED`, `ACKNOWLEDGED`, plus
/// `PENDING` while the first delivery runs and `SUPPRESSED` when nothing was to be sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlertStatus {
    /// A notice is queued or being delivered.
    Pending,
    /// The latest notice reached every channel it was sent to.
    Sent,
    /// The latest notice failed on at least one channel (`lastError` says which and why).
    Failed,
    /// No notice went out: the type is muted or no channel is enabled.
    Suppressed,
    /// Someone took the alert; it is not re-notified. Kept whatever happens later.
    Acknowledged,
}

impl AlertStatus {
    /// Every status.
    pub const ALL: [AlertStatus; 5] = [
        AlertStatus::Pending,
        AlertStatus::Sent,
        AlertStatus::Failed,
        AlertStatus::Suppressed,
        AlertStatus::Acknowledged,
    ];

    /// The log API's name, also the stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Pending => "PENDING",
            AlertStatus::Sent => "SENT",
            AlertStatus::Failed => "FAILED",
            AlertStatus::Suppressed => "SUPPRESSED",
            AlertStatus::Acknowledged => "ACKNOWLEDGED",
        }
    }
}

impl fmt::Display for AlertStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AlertStatus {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertStatus::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownValue {
                what: "alert status",
                value: s.to_string(),
                allowed: "PENDING, SENT, FAILED, SUPPRESSED, ACKNOWLEDGED",
            })
    }
}

/// A notification channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// Slack incoming webhook.
    Slack,
    /// Feishu custom bot webhook.
    Feishu,
    /// Email over SMTP.
    Email,
}

impl Channel {
    /// Every channel.
    pub const ALL: [Channel; 3] = [Channel::Slack, Channel::Feishu, Channel::Email];

    /// The log API's name (`slack`).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Slack => "slack",
            Channel::Feishu => "feishu",
            Channel::Email => "email",
        }
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = UnknownValue;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Channel::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownValue {
                what: "channel",
                value: s.to_string(),
                allowed: "slack, feishu, email",
            })
    }
}

/// One stored alert: an incident from its first occurrence to its resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The id, the same in the log and CRM analytics APIs.
    pub id: Uuid,
    /// Its type.
    pub alert_type: AlertType,
    /// What the incident is about within its type (`Form POST /api/v1/forms/submit`, `web-1 /data`).
    pub key: String,
    /// Current severity.
    pub severity: AlertSeverity,
    /// Open or resolved.
    pub state: AlertState,
    /// Delivery or acknowledgement status.
    pub status: AlertStatus,
    /// The readable message of the latest occurrence (`慢请求告警: POST /api/v1/forms/submit 耗时 5234ms`).
    pub message: String,
    /// Facts of the latest occurrence (the log API's `context`: `traceId`, `url`, `duration`, `threshold`, ...).
    pub context: Map<String, Value>,
    /// The service concerned, if one.
    pub service: Option<String>,
    /// The host concerned, if one.
    pub host: Option<String>,
    /// The region of the service or host, if known.
    pub region: Option<String>,
    /// Channels the latest notice went to.
    pub channels: Vec<Channel>,
    /// Occurrences folded into the alert (1 at first).
    pub occurrences: i64,
    /// Notices sent for it (firing, repeats, escalations, resolution).
    pub notices: i64,
    /// Why the latest delivery failed or nothing was sent.
    pub last_error: Option<String>,
    /// First occurrence, epoch ms.
    pub created_at: i64,
    /// Latest occurrence, epoch ms.
    pub last_seen_at: i64,
    /// When the latest notice was queued, epoch ms.
    pub notified_at: Option<i64>,
    /// When a notice last reached a channel, epoch ms.
    pub sent_at: Option<i64>,
    /// When the condition cleared, epoch ms.
    pub resolved_at: Option<i64>,
    /// When it was acknowledged, epoch ms.
    pub acknowledged_at: Option<i64>,
    /// Who acknowledged it.
    pub acknowledged_by: Option<String>,
}

impl Alert {
    /// Whether someone acknowledged it.
    pub fn is_acknowledged(&self) -> bool {
        self.status == AlertStatus::Acknowledged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in AlertType::ALL {
            assert_eq!(t.as_str().parse::<AlertType>().unwrap(), t);
            assert_eq!(t.crm_name().parse::<AlertType>().unwrap(), t);
        }
        assert_eq!(AlertType::CpuHigh.crm_name(), "cpu_high");
        for s in AlertStatus::ALL {
            assert_eq!(s.as_str().parse::<AlertStatus>().unwrap(), s);
        }
        for c in Channel::ALL {
            assert_eq!(c.as_str().parse::<Channel>().unwrap(), c);
        }
        assert!(
            "LOUD"
                .parse::<AlertType>()
                .unwrap_err()
                .to_string()
                .contains("SLOW_REQUEST")
        );
        assert!(AlertSeverity::Critical > AlertSeverity::Warning);
        assert_eq!(
            serde_json::to_value(AlertType::HighErrorRate).unwrap(),
            "HIGH_ERROR_RATE"
        );
    }
}
