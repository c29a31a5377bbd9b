//! `[alerts]` and `[notifications]`: the starting values of the alert rules and channels. The
//! query API's `PUT /api/v1/logs/alerts/config` changes them at run time; what it stores wins over
//! the file from then on.

use serde::{Deserialize, Serialize};

use crate::{Problems, Secret};

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// SLOW_REQUEST.
    pub slow_request: SlowRequestRule,
    /// HIGH_ERROR_RATE.
    pub error_rate: ErrorRateRule,
    /// DISK_SPACE.
    pub disk_space: DiskSpaceRule,
    /// IP_ANOMALY.
    pub ip_anomaly: IpAnomalyRule,
    /// CPU high (`cpu_high`).
    pub cpu: ThresholdRule,
    /// Memory high (`memory_high`).
    pub memory: ThresholdRule,
    /// Seconds before an open alert is notified again.
    pub cooldown_s: u64,
    /// Seconds without a new occurrence after which an open alert resolves (and the resolved notice
    /// goes out).
    pub resolve_after_s: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            slow_request: SlowRequestRule::default(),
            error_rate: ErrorRateRule::default(),
            disk_space: DiskSpaceRule::default(),
            ip_anomaly: IpAnomalyRule::default(),
            cpu: ThresholdRule {
                enabled: true,
                threshold_percent: 70.0,
            },
            memory: ThresholdRule {
                enabled: true,
                threshold_percent: 90.0,
            },
            cooldown_s: 600,
            resolve_after_s: 300,
        }
    }
}

/// `[alerts.slow_request]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlowRequestRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Requests slower than this many milliseconds alert.
    pub threshold_ms: u64,
    /// Globs of paths never alerted on.
    pub exclude_paths: Vec<String>,
}

impl Default for SlowRequestRule {
    fn default() -> Self {
        SlowRequestRule {
            enabled: true,
            threshold_ms: 2000,
            exclude_paths: Vec::new(),
        }
    }
}

/// `[alerts.error_rate]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Percentage of failed requests that alerts.
    pub threshold_percent: f64,
    /// Sliding window in minutes.
    pub window_minutes: u64,
    /// Requests needed in the window before the rate counts.
    pub min_requests: u64,
}

impl Default for ErrorRateRule {
    fn default() -> Self {
        ErrorRateRule {
            enabled: true,
            threshold_percent: 5.0,
            window_minutes: 5,
            min_requests: 100,
        }
    }
}

/// `[alerts.disk_space]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiskSpaceRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Usage percentage of a WARNING.
    pub warning_percent: f64,
    /// Usage percentage of a CRITICAL.
    pub critical_percent: f64,
}

impl Default for DiskSpaceRule {
    fn default() -> Self {
        DiskSpaceRule {
            enabled: true,
            warning_percent: 80.0,
            critical_percent: 90.0,
        }
    }
}

/// `[alerts.ip_anomaly]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IpAnomalyRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Requests per minute from one client IP that alert.
    pub max_requests_per_minute: u64,
    /// Minutes the IP is then on the blocked list.
    pub block_duration_minutes: u64,
    /// Networks never put on the blocked list (CIDRs). Loopback addresses and
    /// `query_api.trusted_proxies` never are either: `client.ip` comes from ingested records,
    /// which any application's log lines can set.
    pub never_block: crate::Networks,
    /// Whether the query API itself refuses requests from blocked IPs. Off by default: the list
    /// is served by `GET /api/v1/logs/alerts/blocked-ips` for a gateway to enforce.
    pub enforce_at_query_api: bool,
}

impl Default for IpAnomalyRule {
    fn default() -> Self {
        IpAnomalyRule {
            enabled: true,
            max_requests_per_minute: 100,
            block_duration_minutes: 10,
            never_block: crate::Networks::default(),
            enforce_at_query_api: false,
        }
    }
}

/// A percentage threshold rule (CPU, memory).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThresholdRule {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Usage percentage that alerts.
    pub threshold_percent: f64,
}

impl Default for ThresholdRule {
    fn default() -> Self {
        ThresholdRule {
            enabled: true,
            threshold_percent: 70.0,
        }
    }
}

/// `[notifications]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationsConfig {
    /// Slack incoming webhook.
    pub slack: WebhookChannel,
    /// Feishu custom bot webhook.
    pub feishu: FeishuChannel,
    /// Email over SMTP.
    pub email: EmailChannel,
    /// Internal networks (loopback, private, link-local, unique local) that channels may reach,
    /// as CIDRs; empty by default, so a webhook or SMTP server must be a public address.
    pub allowed_networks: crate::Networks,
}

/// `[notifications.slack]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookChannel {
    /// Whether alerts go to this channel.
    pub enabled: bool,
    /// The webhook URL (a secret: it authorises posting).
    pub webhook_url: Secret,
}

/// `[notifications.feishu]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeishuChannel {
    /// Whether alerts go to this channel.
    pub enabled: bool,
    /// The webhook URL.
    pub webhook_url: Secret,
    /// The bot's signing secret; empty when signing is off.
    pub secret: Secret,
}

/// TLS mode of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain text (a local relay).
    None,
    /// STARTTLS upgrade (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `[notifications.email]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailChannel {
    /// Whether alerts go to this channel.
    pub enabled: bool,
    /// SMTP server host.
    pub smtp_host: String,
    /// SMTP server port.
    pub smtp_port: u16,
    /// TLS mode.
    pub tls: SmtpTls,
    /// SMTP user name; empty means no authentication.
    pub username: String,
    /// SMTP password.
    pub password: Secret,
    /// Sender address.
    pub from: String,
    /// Recipient addresses.
    pub recipients: Vec<String>,
}

impl Default for EmailChannel {
    fn default() -> Self {
        EmailChannel {
            enabled: false,
            smtp_host: String::new(),
            smtp_port: 587,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: Secret::default(),
            from: String::new(),
            recipients: Vec::new(),
        }
    }
}

impl AlertsConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        p.positive("alerts.slow_request.threshold_ms", self.slow_request.threshold_ms);
        for (i, glob) in self.slow_request.exclude_paths.iter().enumerate() {
            if let Err(e) = globset::Glob::new(glob) {
                p.push(
                    &format!("alerts.slow_request.exclude_paths[{i}]"),
                    glob,
                    &format!("is not a valid glob: {e}"),
                );
            }
        }
        p.percent(
            "alerts.error_rate.threshold_percent",
            self.error_rate.threshold_percent,
        );
        p.range(
            "alerts.error_rate.window_minutes",
            self.error_rate.window_minutes,
            1,
            1440,
        );
        p.percent(
            "alerts.disk_space.warning_percent",
            self.disk_space.warning_percent,
        );
        p.percent(
            "alerts.disk_space.critical_percent",
            self.disk_space.critical_percent,
        );
        if self.disk_space.critical_percent < self.disk_space.warning_percent {
            p.push(
                "alerts.disk_space.critical_percent",
                self.disk_space.critical_percent,
                "must be at least alerts.disk_space.warning_percent",
            );
        }
        p.positive(
            "alerts.ip_anomaly.max_requests_per_minute",
            self.ip_anomaly.max_requests_per_minute,
        );
        p.range(
            "alerts.ip_anomaly.block_duration_minutes",
            self.ip_anomaly.block_duration_minutes,
            1,
            10_080,
        );
        p.percent("alerts.cpu.threshold_percent", self.cpu.threshold_percent);
        p.percent("alerts.memory.threshold_percent", self.memory.threshold_percent);
        p.range("alerts.cooldown_s", self.cooldown_s, 1, 86_400);
        p.range("alerts.resolve_after_s", self.resolve_after_s, 1, 86_400);
    }
}

impl NotificationsConfig {
    pub(crate) fn validate(&self, p: &mut Problems) {
        if self.slack.enabled {
            p.url("notifications.slack.webhook_url", self.slack.webhook_url.expose());
        }
        if self.feishu.enabled {
            p.url(
                "notifications.feishu.webhook_url",
                self.feishu.webhook_url.expose(),
            );
        }
        let email = &self.email;
        if email.enabled {
            if email.smtp_host.is_empty() {
                p.push("notifications.email.smtp_host", "\"\"", "name the SMTP server");
            }
            if !email.from.contains('@') {
                p.push(
                    "notifications.email.from",
                    &email.from,
                    "must be an email address",
                );
            }
            if email.recipients.is_empty() {
                p.push(
                    "notifications.email.recipients",
                    "[]",
                    "list at least one recipient",
                );
            }
        }
        for (i, r) in email.recipients.iter().enumerate() {
            if !r.contains('@') {
                p.push(
                    &format!("notifications.email.recipients[{i}]"),
                    r,
                    "must be an email address",
                );
            }
        }
    }
}
