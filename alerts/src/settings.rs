//! The live alert configuration: rules and channels.
//!
//! Three shapes, in the order of the style guide's raw → validated → runtime:
//!
//! - [`AlertSettingsPatch`]: the log API's `UpdateAlertConfigDto` (every field optional) plus what the
//!   channels need (`feishu.secret`, email's SMTP fields) and the host rules (`cpu`, `memory`),
//!   `cooldownSeconds` and `resolveAfterSeconds`;
//! - [`AlertSettings`]: the whole configuration with channel secrets, stored as JSON in
//!   `alert_config` and started from the config file's `[alerts]` and `[notifications]`;
//! - [`crate::rules::Rules`]: the compiled form the engine evaluates.
//!
//! [`AlertSettings::view`] is what the API answers: webhook URLs, the Feishu secret and the SMTP
//! password are write-only and appear only as `webhookConfigured`, `secretConfigured` and
//! `passwordConfigured`.

use std::fmt;

use owl_config::{AlertsConfig, NotificationsConfig, SmtpTls};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The SLOW_REQUEST rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlowRequestSettings {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Requests slower than this many milliseconds alert.
    pub threshold_ms: u64,
    /// Globs of request paths never alerted on (`/api/v1/files/upload`, `/api/v1/reports/*`).
    pub exclude_paths: Vec<String>,
}

/// The HIGH_ERROR_RATE rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorRateSettings {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Percentage of failed requests of a service that alerts.
    pub threshold_percent: f64,
    /// Length of the sliding window, minutes.
    pub window_minutes: u64,
    /// Requests a service needs in the window before its rate counts.
    pub min_requests: u64,
}

/// The IP_ANOMALY rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct IpAnomalySettings {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Requests per minute from one client IP above which it alerts.
    pub max_requests_per_minute: u64,
    /// Minutes the IP is then refused by the query API.
    pub block_duration_minutes: u64,
}

/// The DISK_SPACE rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DiskSpaceSettings {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Usage percentage of a WARNING.
    pub warning_percent: f64,
    /// Usage percentage of a CRITICAL.
    pub critical_percent: f64,
}

/// A host usage rule (CPU_HIGH, MEMORY_HIGH).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ThresholdSettings {
    /// Whether the rule runs.
    pub enabled: bool,
    /// Usage percentage above which it alerts.
    pub threshold_percent: f64,
}

/// A Slack incoming webhook.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct SlackSettings {
    /// Whether alerts go to Slack.
    pub enabled: bool,
    /// The webhook URL (a secret: it authorises posting).
    pub webhook_url: String,
}

/// A Feishu custom bot.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeishuSettings {
    /// Whether alerts go to Feishu.
    pub enabled: bool,
    /// The webhook URL.
    pub webhook_url: String,
    /// The bot's signing secret; empty when the bot does not check signatures.
    pub secret: String,
}

/// Email over SMTP.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EmailSettings {
    /// Whether alerts go by email.
    pub enabled: bool,
    /// SMTP server host.
    pub smtp_host: String,
    /// SMTP server port.
    pub smtp_port: u16,
    /// `none` (a local relay), `starttls` or `tls`.
    pub tls: SmtpTls,
    /// SMTP user; empty means no authentication.
    pub username: String,
    /// SMTP password.
    pub password: String,
    /// Sender address.
    pub from: String,
    /// Recipient addresses.
    pub recipients: Vec<String>,
}

impl Default for EmailSettings {
    fn default() -> Self {
        EmailSettings {
            enabled: false,
            smtp_host: String::new(),
            smtp_port: 587,
            tls: SmtpTls::Starttls,
            username: String::new(),
            password: String::new(),
            from: String::new(),
            recipients: Vec::new(),
        }
    }
}

fn redacted(secret: &str) -> &'static str {
    if secret.is_empty() {
        "\"\""
    } else {
        "***REDACTED***"
    }
}

impl fmt::Debug for SlackSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackSettings")
            .field("enabled", &self.enabled)
            .field("webhook_url", &redacted(&self.webhook_url))
            .finish()
    }
}

impl fmt::Debug for FeishuSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeishuSettings")
            .field("enabled", &self.enabled)
            .field("webhook_url", &redacted(&self.webhook_url))
            .field("secret", &redacted(&self.secret))
            .finish()
    }
}

impl fmt::Debug for EmailSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailSettings")
            .field("enabled", &self.enabled)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("from", &self.from)
            .field("recipients", &self.recipients.len())
            .finish()
    }
}

/// The channels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ChannelSettings {
    /// Slack.
    pub slack: SlackSettings,
    /// Feishu.
    pub feishu: FeishuSettings,
    /// Email.
    pub email: EmailSettings,
}

/// The whole alert configuration, secrets included. Its `Debug` redacts the secrets; never
/// serialise it into an answer: use [`AlertSettings::view`]. Fields missing from a stored document
/// (written by an older release) take the config file's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct AlertSettings {
    /// SLOW_REQUEST.
    pub slow_request: SlowRequestSettings,
    /// HIGH_ERROR_RATE.
    pub error_rate: ErrorRateSettings,
    /// IP_ANOMALY.
    pub ip_anomaly: IpAnomalySettings,
    /// DISK_SPACE.
    pub disk_space: DiskSpaceSettings,
    /// CPU_HIGH.
    pub cpu: ThresholdSettings,
    /// MEMORY_HIGH.
    pub memory: ThresholdSettings,
    /// Seconds before an open alert is notified again.
    pub cooldown_seconds: u64,
    /// Seconds without a new occurrence after which an open alert resolves.
    pub resolve_after_seconds: u64,
    /// Where notices go.
    pub notifications: ChannelSettings,
}

impl AlertSettings {
    /// The starting values from the config file.
    pub fn from_config(alerts: &AlertsConfig, notifications: &NotificationsConfig) -> AlertSettings {
        AlertSettings {
            slow_request: SlowRequestSettings {
                enabled: alerts.slow_request.enabled,
                threshold_ms: alerts.slow_request.threshold_ms,
                exclude_paths: alerts.slow_request.exclude_paths.clone(),
            },
            error_rate: ErrorRateSettings {
                enabled: alerts.error_rate.enabled,
                threshold_percent: alerts.error_rate.threshold_percent,
                window_minutes: alerts.error_rate.window_minutes,
                min_requests: alerts.error_rate.min_requests,
            },
            ip_anomaly: IpAnomalySettings {
                enabled: alerts.ip_anomaly.enabled,
                max_requests_per_minute: alerts.ip_anomaly.max_requests_per_minute,
                block_duration_minutes: alerts.ip_anomaly.block_duration_minutes,
            },
            disk_space: DiskSpaceSettings {
                enabled: alerts.disk_space.enabled,
                warning_percent: alerts.disk_space.warning_percent,
                critical_percent: alerts.disk_space.critical_percent,
            },
            cpu: ThresholdSettings {
                enabled: alerts.cpu.enabled,
                threshold_percent: alerts.cpu.threshold_percent,
            },
            memory: ThresholdSettings {
                enabled: alerts.memory.enabled,
                threshold_percent: alerts.memory.threshold_percent,
            },
            cooldown_seconds: alerts.cooldown_s,
            resolve_after_seconds: alerts.resolve_after_s,
            notifications: ChannelSettings {
                slack: SlackSettings {
                    enabled: notifications.slack.enabled,
                    webhook_url: notifications.slack.webhook_url.expose().to_string(),
                },
                feishu: FeishuSettings {
                    enabled: notifications.feishu.enabled,
                    webhook_url: notifications.feishu.webhook_url.expose().to_string(),
                    secret: notifications.feishu.secret.expose().to_string(),
                },
                email: EmailSettings {
                    enabled: notifications.email.enabled,
                    smtp_host: notifications.email.smtp_host.clone(),
                    smtp_port: notifications.email.smtp_port,
                    tls: notifications.email.tls,
                    username: notifications.email.username.clone(),
                    password: notifications.email.password.expose().to_string(),
                    from: notifications.email.from.clone(),
                    recipients: notifications.email.recipients.clone(),
                },
            },
        }
    }

    /// A stored document over these settings: every field the document has wins, every field it
    /// lacks keeps its value here. A document may be partial (written by an older release, or by
    /// the log config endpoint, which stores only the rule fields it was sent).
    pub fn overlay(&self, stored: &Value) -> Result<AlertSettings, serde_json::Error> {
        fn merge(base: &mut Value, over: &Value) {
            match (base, over) {
                (Value::Object(base), Value::Object(over)) => {
                    for (key, value) in over {
                        match base.get_mut(key) {
                            Some(slot) => merge(slot, value),
                            None => {
                                base.insert(key.clone(), value.clone());
                            }
                        }
                    }
                }
                (slot, value) => *slot = value.clone(),
            }
        }
        let mut document = serde_json::to_value(self)?;
        merge(&mut document, stored);
        serde_json::from_value(document)
    }

    /// The channels alerts go to now.
    pub fn enabled_channels(&self) -> Vec<crate::Channel> {
        let n = &self.notifications;
        let mut channels = Vec::new();
        if n.slack.enabled {
            channels.push(crate::Channel::Slack);
        }
        if n.feishu.enabled {
            channels.push(crate::Channel::Feishu);
        }
        if n.email.enabled {
            channels.push(crate::Channel::Email);
        }
        channels
    }

    /// Applies a patch: fields the patch names replace the current ones, the rest stay.
    pub fn apply(&self, patch: AlertSettingsPatch) -> AlertSettings {
        let mut next = self.clone();
        if let Some(p) = patch.slow_request {
            set(&mut next.slow_request.enabled, p.enabled);
            set(&mut next.slow_request.threshold_ms, p.threshold_ms);
            set(&mut next.slow_request.exclude_paths, p.exclude_paths);
        }
        if let Some(p) = patch.error_rate {
            set(&mut next.error_rate.enabled, p.enabled);
            set(&mut next.error_rate.threshold_percent, p.threshold_percent);
            set(&mut next.error_rate.window_minutes, p.window_minutes);
            set(&mut next.error_rate.min_requests, p.min_requests);
        }
        if let Some(p) = patch.ip_anomaly {
            set(&mut next.ip_anomaly.enabled, p.enabled);
            set(
                &mut next.ip_anomaly.max_requests_per_minute,
                p.max_requests_per_minute,
            );
            set(
                &mut next.ip_anomaly.block_duration_minutes,
                p.block_duration_minutes,
            );
        }
        if let Some(p) = patch.disk_space {
            set(&mut next.disk_space.enabled, p.enabled);
            set(&mut next.disk_space.warning_percent, p.warning_percent);
            set(&mut next.disk_space.critical_percent, p.critical_percent);
        }
        if let Some(p) = patch.cpu {
            set(&mut next.cpu.enabled, p.enabled);
            set(&mut next.cpu.threshold_percent, p.threshold_percent);
        }
        if let Some(p) = patch.memory {
            set(&mut next.memory.enabled, p.enabled);
            set(&mut next.memory.threshold_percent, p.threshold_percent);
        }
        set(&mut next.cooldown_seconds, patch.cooldown_seconds);
        set(&mut next.resolve_after_seconds, patch.resolve_after_seconds);
        if let Some(n) = patch.notifications {
            if let Some(p) = n.slack {
                set(&mut next.notifications.slack.enabled, p.enabled);
                set(
                    &mut next.notifications.slack.webhook_url,
                    p.webhook_url.map(|u| u.trim().to_string()),
                );
            }
            if let Some(p) = n.feishu {
                let feishu = &mut next.notifications.feishu;
                set(&mut feishu.enabled, p.enabled);
                set(
                    &mut feishu.webhook_url,
                    p.webhook_url.map(|u| u.trim().to_string()),
                );
                // A signing secret belongs to the bot it was set for: a new webhook without a
                // new secret has none, rather than handing the old one to another bot.
                if p.secret.is_none() && feishu.webhook_url != self.notifications.feishu.webhook_url {
                    feishu.secret.clear();
                }
                set(&mut feishu.secret, p.secret);
            }
            if let Some(p) = n.email {
                let email = &mut next.notifications.email;
                set(&mut email.enabled, p.enabled);
                set(&mut email.smtp_host, p.smtp_host.map(|h| h.trim().to_string()));
                set(&mut email.smtp_port, p.smtp_port);
                set(&mut email.tls, p.tls);
                set(&mut email.username, p.username);
                // Likewise the SMTP password belongs to the server, connection and user it was
                // set for: it is never sent to a changed destination unless given again.
                let before = &self.notifications.email;
                let moved = email.smtp_host != before.smtp_host
                    || email.smtp_port != before.smtp_port
                    || email.tls != before.tls
                    || email.username != before.username;
                if p.password.is_none() && moved {
                    email.password.clear();
                }
                set(&mut email.password, p.password);
                set(&mut email.from, p.from.map(|f| f.trim().to_string()));
                set(
                    &mut email.recipients,
                    p.recipients
                        .map(|r| r.into_iter().map(|a| a.trim().to_string()).collect()),
                );
            }
        }
        next
    }

    /// The settings with `patch` applied, or every problem of the result: what both the alert
    /// configuration endpoint and the log configuration's `alerts` section store.
    pub fn patched(&self, patch: AlertSettingsPatch) -> Result<AlertSettings, Vec<SettingsProblem>> {
        let next = self.apply(patch);
        let problems = next.validate();
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems)
        }
    }

    /// Every problem of the settings, each with the camelCase path of its field.
    pub fn validate(&self) -> Vec<SettingsProblem> {
        let mut p = Problems::default();
        let s = &self.slow_request;
        p.range("slowRequest.thresholdMs", s.threshold_ms, 1, MAX_THRESHOLD_MS);
        p.check(
            s.exclude_paths.len() <= MAX_EXCLUDE_PATHS,
            "slowRequest.excludePaths",
            || format!("excludePaths 最多 {MAX_EXCLUDE_PATHS} 项"),
        );
        for (i, glob) in s.exclude_paths.iter().enumerate() {
            if let Err(error) = globset::Glob::new(glob) {
                p.rule(
                    format!("slowRequest.excludePaths[{i}]"),
                    format!("不是有效的路径通配符 {glob:?}：{error}"),
                );
            }
        }
        let e = &self.error_rate;
        p.percent("errorRate.thresholdPercent", e.threshold_percent);
        p.range("errorRate.windowMinutes", e.window_minutes, 1, 1440);
        p.range("errorRate.minRequests", e.min_requests, 1, 1_000_000_000);
        let i = &self.ip_anomaly;
        p.range(
            "ipAnomaly.maxRequestsPerMinute",
            i.max_requests_per_minute,
            1,
            100_000_000,
        );
        p.range(
            "ipAnomaly.blockDurationMinutes",
            i.block_duration_minutes,
            1,
            10_080,
        );
        let d = &self.disk_space;
        p.percent("diskSpace.warningPercent", d.warning_percent);
        p.percent("diskSpace.criticalPercent", d.critical_percent);
        p.check(
            d.critical_percent >= d.warning_percent,
            "diskSpace.criticalPercent",
            || "criticalPercent 不能小于 warningPercent".to_string(),
        );
        p.percent("cpu.thresholdPercent", self.cpu.threshold_percent);
        p.percent("memory.thresholdPercent", self.memory.threshold_percent);
        p.range("cooldownSeconds", self.cooldown_seconds, 1, 86_400);
        p.range("resolveAfterSeconds", self.resolve_after_seconds, 1, 86_400);

        let n = &self.notifications;
        webhook(&mut p, "slack", "Slack", n.slack.enabled, &n.slack.webhook_url);
        webhook(&mut p, "feishu", "飞书", n.feishu.enabled, &n.feishu.webhook_url);
        let email = &n.email;
        if email.enabled {
            if email.smtp_host.is_empty() {
                p.channel("notifications.email.smtpHost", "启用邮件通知需要配置 smtpHost");
            }
            if email.recipients.is_empty() {
                p.channel("notifications.email.recipients", "启用邮件通知需要至少一个收件人");
            }
            if email.from.is_empty() {
                p.channel("notifications.email.from", "启用邮件通知需要配置发件人 from");
            }
        }
        if email.smtp_port == 0 {
            p.channel("notifications.email.smtpPort", "smtpPort 需在 1 到 65535 之间");
        }
        if !email.username.is_empty() && email.tls == SmtpTls::None && !is_local_name(&email.smtp_host) {
            p.channel(
                "notifications.email.tls",
                "SMTP 认证只能通过 TLS（starttls 或 tls）发送，tls 为 none 时只允许本机地址",
            );
        }
        if email.smtp_host.chars().any(|c| c.is_whitespace() || c == '/') {
            p.channel(
                "notifications.email.smtpHost",
                format!("smtpHost {:?} 不是有效的主机名", email.smtp_host),
            );
        }
        if !email.from.is_empty() && email.from.parse::<lettre::message::Mailbox>().is_err() {
            p.channel(
                "notifications.email.from",
                format!("from {:?} 不是有效的邮件地址", email.from),
            );
        }
        if email.recipients.len() > MAX_RECIPIENTS {
            p.channel(
                "notifications.email.recipients",
                format!("收件人最多 {MAX_RECIPIENTS} 个"),
            );
        }
        for (i, recipient) in email.recipients.iter().enumerate() {
            if recipient.parse::<lettre::message::Mailbox>().is_err() {
                p.channel(
                    format!("notifications.email.recipients[{i}]"),
                    format!("{recipient:?} 不是有效的邮件地址"),
                );
            }
        }
        p.problems
    }

    /// The configuration as the API shows it, secrets replaced by whether they are set.
    pub fn view(&self) -> Value {
        let n = &self.notifications;
        json!({
            "slowRequest": {
                "enabled": self.slow_request.enabled,
                "thresholdMs": self.slow_request.threshold_ms,
                "excludePaths": self.slow_request.exclude_paths,
            },
            "errorRate": {
                "enabled": self.error_rate.enabled,
                "thresholdPercent": number(self.error_rate.threshold_percent),
                "windowMinutes": self.error_rate.window_minutes,
                "minRequests": self.error_rate.min_requests,
            },
            "ipAnomaly": {
                "enabled": self.ip_anomaly.enabled,
                "maxRequestsPerMinute": self.ip_anomaly.max_requests_per_minute,
                "blockDurationMinutes": self.ip_anomaly.block_duration_minutes,
            },
            "diskSpace": {
                "enabled": self.disk_space.enabled,
                "warningPercent": number(self.disk_space.warning_percent),
                "criticalPercent": number(self.disk_space.critical_percent),
            },
            "cpu": { "enabled": self.cpu.enabled, "thresholdPercent": number(self.cpu.threshold_percent) },
            "memory": { "enabled": self.memory.enabled, "thresholdPercent": number(self.memory.threshold_percent) },
            "cooldownSeconds": self.cooldown_seconds,
            "resolveAfterSeconds": self.resolve_after_seconds,
            "notifications": {
                "slack": { "enabled": n.slack.enabled, "webhookConfigured": !n.slack.webhook_url.is_empty() },
                "feishu": {
                    "enabled": n.feishu.enabled,
                    "webhookConfigured": !n.feishu.webhook_url.is_empty(),
                    "secretConfigured": !n.feishu.secret.is_empty(),
                },
                "email": {
                    "enabled": n.email.enabled,
                    "recipientCount": n.email.recipients.len(),
                    "recipients": n.email.recipients,
                    "smtpHost": n.email.smtp_host,
                    "smtpPort": n.email.smtp_port,
                    "tls": n.email.tls,
                    "username": n.email.username,
                    "passwordConfigured": !n.email.password.is_empty(),
                    "from": n.email.from,
                },
            },
        })
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings::from_config(&AlertsConfig::default(), &NotificationsConfig::default())
    }
}

impl Default for SlowRequestSettings {
    fn default() -> Self {
        AlertSettings::default().slow_request
    }
}

impl Default for ErrorRateSettings {
    fn default() -> Self {
        AlertSettings::default().error_rate
    }
}

impl Default for IpAnomalySettings {
    fn default() -> Self {
        AlertSettings::default().ip_anomaly
    }
}

impl Default for DiskSpaceSettings {
    fn default() -> Self {
        AlertSettings::default().disk_space
    }
}

/// A rule that is off, at 100 %: the default of a missing host rule in a stored document.
impl Default for ThresholdSettings {
    fn default() -> Self {
        ThresholdSettings {
            enabled: false,
            threshold_percent: 100.0,
        }
    }
}

/// Largest slow-request threshold, in milliseconds (one hour).
pub const MAX_THRESHOLD_MS: u64 = 3_600_000;
/// Most exclude globs of the slow request rule.
pub const MAX_EXCLUDE_PATHS: usize = 100;
/// Most email recipients.
pub const MAX_RECIPIENTS: usize = 100;

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

/// A percentage as JSON: whole numbers without a fraction (`5`, not `5.0`), as the log API shows them.
pub(crate) fn number(value: f64) -> Value {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        json!(value as i64)
    } else {
        json!(value)
    }
}

fn webhook(p: &mut Problems, key: &str, name: &str, enabled: bool, url: &str) {
    let field = format!("notifications.{key}.webhookUrl");
    if url.is_empty() {
        if enabled {
            p.channel(field, format!("{name} webhook URL 未配置"));
        }
        return;
    }
    match reqwest::Url::parse(url) {
        Ok(parsed) if parsed.scheme() == "https" && parsed.host().is_some() => {}
        // The URL authorises posting: in plain text only to this host.
        Ok(parsed) if parsed.scheme() == "http" && crate::notify::is_local_url(&parsed) => {}
        _ => p.channel(
            field,
            format!("{name} webhookUrl 需为 https:// 地址（http:// 只允许本机地址）"),
        ),
    }
}

/// Whether an SMTP host names this host: `localhost` or a loopback address.
fn is_local_name(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(owl_config::net::is_loopback)
}

/// One problem found by [`AlertSettings::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// The field, as a camelCase JSON path (`notifications.slack.webhookUrl`).
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
    /// Whether the field belongs to a notification channel (the log API's `LOG_ALERT_CHANNEL_INVALID`).
    pub channel: bool,
}

#[derive(Default)]
struct Problems {
    problems: Vec<SettingsProblem>,
}

impl Problems {
    fn rule(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(SettingsProblem {
            field: field.into(),
            message: message.into(),
            channel: false,
        });
    }

    fn channel(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.problems.push(SettingsProblem {
            field: field.into(),
            message: message.into(),
            channel: true,
        });
    }

    fn check(&mut self, ok: bool, field: &str, message: impl FnOnce() -> String) {
        if !ok {
            self.rule(field, message());
        }
    }

    fn range(&mut self, field: &str, value: u64, min: u64, max: u64) {
        self.check((min..=max).contains(&value), field, || {
            format!("{field} 需在 {min} 到 {max} 之间")
        });
    }

    fn percent(&mut self, field: &str, value: f64) {
        self.check(value > 0.0 && value <= 100.0, field, || {
            format!("{field} 需为大于 0 且不超过 100 的百分比")
        });
    }
}

/// The log API's `UpdateAlertConfigDto`: every field optional; absent fields keep their value.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlertSettingsPatch {
    /// SLOW_REQUEST.
    pub slow_request: Option<SlowRequestPatch>,
    /// HIGH_ERROR_RATE.
    pub error_rate: Option<ErrorRatePatch>,
    /// IP_ANOMALY.
    pub ip_anomaly: Option<IpAnomalyPatch>,
    /// DISK_SPACE.
    pub disk_space: Option<DiskSpacePatch>,
    /// CPU_HIGH.
    pub cpu: Option<ThresholdPatch>,
    /// MEMORY_HIGH.
    pub memory: Option<ThresholdPatch>,
    /// Seconds before an open alert is notified again.
    pub cooldown_seconds: Option<u64>,
    /// Seconds without a new occurrence after which an open alert resolves.
    pub resolve_after_seconds: Option<u64>,
    /// Channels.
    pub notifications: Option<NotificationsPatch>,
}

impl AlertSettingsPatch {
    /// The channel fields whose change moves where notices (and credentials) go: webhook URLs,
    /// the Feishu secret, the SMTP host, port, TLS mode, user, password and the recipients. Only
    /// the fields this patch sets to a value other than `current`'s are named; changing them
    /// needs `log:config`, while enabling, disabling and thresholds need only `log:alert`.
    pub fn destination_changes(&self, current: &AlertSettings) -> Vec<&'static str> {
        fn differs<T: PartialEq>(new: &Option<T>, old: &T) -> bool {
            new.as_ref().is_some_and(|v| v != old)
        }
        let mut changed = Vec::new();
        let Some(n) = &self.notifications else {
            return changed;
        };
        let c = &current.notifications;
        if let Some(p) = &n.slack
            && p.webhook_url
                .as_ref()
                .is_some_and(|u| u.trim() != c.slack.webhook_url)
        {
            changed.push("notifications.slack.webhookUrl");
        }
        if let Some(p) = &n.feishu {
            if p.webhook_url
                .as_ref()
                .is_some_and(|u| u.trim() != c.feishu.webhook_url)
            {
                changed.push("notifications.feishu.webhookUrl");
            }
            if differs(&p.secret, &c.feishu.secret) {
                changed.push("notifications.feishu.secret");
            }
        }
        if let Some(p) = &n.email {
            let e = &c.email;
            if p.smtp_host.as_ref().is_some_and(|h| h.trim() != e.smtp_host) {
                changed.push("notifications.email.smtpHost");
            }
            if differs(&p.smtp_port, &e.smtp_port) {
                changed.push("notifications.email.smtpPort");
            }
            if differs(&p.tls, &e.tls) {
                changed.push("notifications.email.tls");
            }
            if differs(&p.username, &e.username) {
                changed.push("notifications.email.username");
            }
            if differs(&p.password, &e.password) {
                changed.push("notifications.email.password");
            }
            let recipients = p
                .recipients
                .as_ref()
                .map(|r| r.iter().map(|a| a.trim().to_string()).collect::<Vec<_>>());
            if differs(&recipients, &e.recipients) {
                changed.push("notifications.email.recipients");
            }
        }
        changed
    }
}

/// Changes to SLOW_REQUEST.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlowRequestPatch {
    /// Whether the rule runs.
    pub enabled: Option<bool>,
    /// Threshold, milliseconds.
    pub threshold_ms: Option<u64>,
    /// Excluded path globs (replaces the list).
    pub exclude_paths: Option<Vec<String>>,
}

/// Changes to HIGH_ERROR_RATE.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorRatePatch {
    /// Whether the rule runs.
    pub enabled: Option<bool>,
    /// Threshold, percent.
    pub threshold_percent: Option<f64>,
    /// Window, minutes.
    pub window_minutes: Option<u64>,
    /// Requests needed in the window.
    pub min_requests: Option<u64>,
}

/// Changes to IP_ANOMALY.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IpAnomalyPatch {
    /// Whether the rule runs.
    pub enabled: Option<bool>,
    /// Requests per minute.
    pub max_requests_per_minute: Option<u64>,
    /// Block duration, minutes.
    pub block_duration_minutes: Option<u64>,
}

/// Changes to DISK_SPACE.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiskSpacePatch {
    /// Whether the rule runs.
    pub enabled: Option<bool>,
    /// WARNING at, percent.
    pub warning_percent: Option<f64>,
    /// CRITICAL at, percent.
    pub critical_percent: Option<f64>,
}

/// Changes to CPU_HIGH or MEMORY_HIGH.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThresholdPatch {
    /// Whether the rule runs.
    pub enabled: Option<bool>,
    /// Threshold, percent.
    pub threshold_percent: Option<f64>,
}

/// Changes to the channels.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotificationsPatch {
    /// Slack.
    pub slack: Option<SlackPatch>,
    /// Feishu.
    pub feishu: Option<FeishuPatch>,
    /// Email.
    pub email: Option<EmailPatch>,
}

/// Changes to Slack.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlackPatch {
    /// The webhook URL; `""` removes it.
    pub webhook_url: Option<String>,
    /// Whether alerts go to Slack.
    pub enabled: Option<bool>,
}

/// Changes to Feishu.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FeishuPatch {
    /// The webhook URL; `""` removes it.
    pub webhook_url: Option<String>,
    /// The signing secret; `""` turns signing off.
    pub secret: Option<String>,
    /// Whether alerts go to Feishu.
    pub enabled: Option<bool>,
}

/// Changes to email.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailPatch {
    /// Recipients (replaces the list).
    pub recipients: Option<Vec<String>>,
    /// Whether alerts go by email.
    pub enabled: Option<bool>,
    /// SMTP host.
    pub smtp_host: Option<String>,
    /// SMTP port.
    pub smtp_port: Option<u16>,
    /// `none`, `starttls` or `tls`.
    #[schema(value_type = Option<String>)]
    pub tls: Option<SmtpTls>,
    /// SMTP user; `""` for none.
    pub username: Option<String>,
    /// SMTP password.
    pub password: Option<String>,
    /// Sender address.
    pub from: Option<String>,
}

impl fmt::Debug for SlackPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackPatch")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for FeishuPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeishuPatch")
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for EmailPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailPatch")
            .field("enabled", &self.enabled)
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> AlertSettings {
        AlertSettings::from_config(&AlertsConfig::default(), &NotificationsConfig::default())
    }

    fn patch(value: Value) -> AlertSettingsPatch {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn config_defaults_are_valid_and_match_the_log_api() {
        let settings = defaults();
        assert!(settings.validate().is_empty(), "{:?}", settings.validate());
        let view = settings.view();
        assert_eq!(view["slowRequest"]["thresholdMs"], 2000);
        assert_eq!(view["errorRate"]["thresholdPercent"], 5);
        assert_eq!(view["errorRate"]["minRequests"], 100);
        assert_eq!(view["ipAnomaly"]["maxRequestsPerMinute"], 100);
        assert_eq!(view["diskSpace"]["criticalPercent"], 90);
        assert_eq!(view["cpu"]["thresholdPercent"], 70);
        assert_eq!(view["notifications"]["email"]["recipientCount"], 0);
    }

    #[test]
    fn patches_change_only_what_they_name() {
        let settings = defaults();
        let next = settings.apply(patch(json!({"slowRequest": {"thresholdMs": 3000}})));
        assert_eq!(next.slow_request.threshold_ms, 3000);
        assert_eq!(next.slow_request.enabled, settings.slow_request.enabled);
        assert_eq!(next.error_rate, settings.error_rate);
        let next = next.apply(patch(json!({"notifications": {"feishu": {"webhookUrl": " https://open.feishu.cn/x ", "secret": "s", "enabled": true}}})));
        assert_eq!(next.notifications.feishu.webhook_url, "https://open.feishu.cn/x");
        assert!(next.validate().is_empty());
        // Enabling again without repeating the URL keeps the stored one.
        let again = next.apply(patch(json!({"notifications": {"feishu": {"enabled": true}}})));
        assert_eq!(again.notifications.feishu.webhook_url, "https://open.feishu.cn/x");
    }

    #[test]
    fn a_stored_secret_is_dropped_when_its_destination_changes() {
        let base = defaults().apply(patch(json!({"notifications": {
            "feishu": {"webhookUrl": "https://open.feishu.cn/open-apis/bot/v2/hook/A", "secret": "bot-a"},
            "email": {"smtpHost": "smtp.example.com", "smtpPort": 587, "tls": "starttls", "username": "owl", "password": "pw"}
        }})));
        // Same destination: the secrets stay.
        let same = base.apply(patch(json!({"notifications": {"feishu": {"enabled": true}, "email": {"smtpHost": "smtp.example.com", "enabled": true}}})));
        assert_eq!(same.notifications.feishu.secret, "bot-a");
        assert_eq!(same.notifications.email.password, "pw");
        // A new webhook: the old bot's secret does not follow it.
        let moved = base.apply(patch(
            json!({"notifications": {"feishu": {"webhookUrl": "https://evil.example.com/hook"}}}),
        ));
        assert_eq!(moved.notifications.feishu.secret, "");
        // Unless the same request sets one.
        let given = base.apply(patch(json!({"notifications": {"feishu": {"webhookUrl": "https://open.feishu.cn/open-apis/bot/v2/hook/B", "secret": "bot-b"}}})));
        assert_eq!(given.notifications.feishu.secret, "bot-b");
        for change in [
            json!({"smtpHost": "smtp.evil.example"}),
            json!({"smtpPort": 2525}),
            json!({"tls": "tls"}),
            json!({"username": "other"}),
        ] {
            let moved = base.apply(patch(json!({"notifications": {"email": change.clone()}})));
            assert_eq!(moved.notifications.email.password, "", "{change}");
        }
        let given = base.apply(patch(
            json!({"notifications": {"email": {"smtpHost": "smtp2.example.com", "password": "pw2"}}}),
        ));
        assert_eq!(given.notifications.email.password, "pw2");
    }

    #[test]
    fn credentials_never_travel_in_plain_text_to_another_host() {
        let plain = defaults().apply(patch(json!({"notifications": {"email": {
            "smtpHost": "smtp.example.com", "tls": "none", "username": "owl", "password": "pw"
        }}})));
        let problems = plain.validate();
        assert!(
            problems
                .iter()
                .any(|p| p.field == "notifications.email.tls" && p.channel),
            "{problems:?}"
        );
        let local = plain.apply(patch(
            json!({"notifications": {"email": {"smtpHost": "127.0.0.1", "password": "pw"}}}),
        ));
        assert!(local.validate().is_empty(), "{:?}", local.validate());
        let anonymous = plain.apply(patch(json!({"notifications": {"email": {"username": ""}}})));
        assert!(anonymous.validate().is_empty(), "{:?}", anonymous.validate());
        let http = defaults().apply(patch(
            json!({"notifications": {"slack": {"webhookUrl": "http://hooks.example.com/x"}}}),
        ));
        assert!(
            http.validate()
                .iter()
                .any(|p| p.field == "notifications.slack.webhookUrl")
        );
        let local_http = defaults().apply(patch(
            json!({"notifications": {"slack": {"webhookUrl": "http://127.0.0.1:9/x"}}}),
        ));
        assert!(local_http.validate().is_empty());
    }

    #[test]
    fn destination_changes_are_named_and_thresholds_are_not() {
        let base = defaults().apply(patch(json!({"notifications": {"email": {"smtpHost": "smtp.example.com", "recipients": ["a@example.com"]}}})));
        let thresholds = patch(
            json!({"slowRequest": {"thresholdMs": 10}, "notifications": {"slack": {"enabled": true}, "email": {"enabled": true, "smtpHost": "smtp.example.com", "recipients": [" a@example.com"]}}}),
        );
        assert!(thresholds.destination_changes(&base).is_empty());
        let moves = patch(json!({"notifications": {
            "slack": {"webhookUrl": "https://hooks.slack.com/x"},
            "feishu": {"secret": "s"},
            "email": {"smtpPort": 25, "recipients": ["b@example.com"]}
        }}));
        assert_eq!(
            moves.destination_changes(&base),
            [
                "notifications.slack.webhookUrl",
                "notifications.feishu.secret",
                "notifications.email.smtpPort",
                "notifications.email.recipients"
            ]
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = serde_json::from_value::<AlertSettingsPatch>(json!({"slowRequest": {"thresholdMS": 1}}))
            .unwrap_err();
        assert!(error.to_string().contains("thresholdMS"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let settings = defaults().apply(patch(json!({
            "slowRequest": {"thresholdMs": 0, "excludePaths": ["/a/[", "/ok/*"]},
            "diskSpace": {"warningPercent": 95, "criticalPercent": 90},
            "notifications": {
                "slack": {"enabled": true},
                "feishu": {"webhookUrl": "ftp://x"},
                "email": {"enabled": true, "recipients": ["ops@example.com", "not-an-address"], "from": "owl@example.com"}
            }
        })));
        let problems = settings.validate();
        let fields: Vec<(&str, bool)> = problems.iter().map(|p| (p.field.as_str(), p.channel)).collect();
        assert_eq!(
            fields,
            [
                ("slowRequest.thresholdMs", false),
                ("slowRequest.excludePaths[0]", false),
                ("diskSpace.criticalPercent", false),
                ("notifications.slack.webhookUrl", true),
                ("notifications.feishu.webhookUrl", true),
                ("notifications.email.smtpHost", true),
                ("notifications.email.recipients[1]", true),
            ]
        );
    }

    #[test]
    fn secrets_never_reach_the_view_or_debug() {
        let settings = defaults().apply(patch(json!({"notifications": {
            "slack": {"webhookUrl": "https://hooks.slack.com/services/T/B/SLACKSECRET", "enabled": true},
            "feishu": {"webhookUrl": "https://open.feishu.cn/open-apis/bot/v2/hook/FEISHUHOOK", "secret": "FEISHUSECRET"},
            "email": {"password": "SMTPPASSWORD", "recipients": ["a@example.com", "b@example.com"]}
        }})));
        let shown = format!("{} {:?}", settings.view(), settings);
        for secret in ["SLACKSECRET", "FEISHUHOOK", "FEISHUSECRET", "SMTPPASSWORD"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        let view = settings.view();
        assert_eq!(view["notifications"]["slack"]["webhookConfigured"], true);
        assert_eq!(view["notifications"]["feishu"]["secretConfigured"], true);
        assert_eq!(view["notifications"]["email"]["recipientCount"], 2);
        assert_eq!(view["notifications"]["email"]["passwordConfigured"], true);
    }

    #[test]
    fn a_partial_stored_document_keeps_the_rest_of_the_base() {
        let mut base = defaults();
        base.cpu.threshold_percent = 80.0;
        base.notifications.slack.webhook_url = "https://hooks.example/x".into();
        let merged = base
            .overlay(&json!({"slowRequest": {"thresholdMs": 3000}, "errorRate": {"thresholdPercent": 7.5}}))
            .unwrap();
        assert_eq!(merged.slow_request.threshold_ms, 3000);
        assert_eq!(merged.slow_request.enabled, base.slow_request.enabled);
        assert_eq!(merged.error_rate.threshold_percent, 7.5);
        assert_eq!(merged.error_rate.window_minutes, base.error_rate.window_minutes);
        assert_eq!(
            merged.cpu.threshold_percent, 80.0,
            "the base is the config file, not the built-in defaults"
        );
        assert_eq!(merged.notifications.slack.webhook_url, "https://hooks.example/x");
        assert!(
            base.overlay(&json!({"slowRequest": {"thresholdMs": "fast"}}))
                .is_err()
        );
    }

    #[test]
    fn stored_form_round_trips_with_secrets() {
        let settings = defaults().apply(patch(json!({"notifications": {"feishu": {"secret": "s3"}}})));
        let text = serde_json::to_string(&settings).unwrap();
        let back: AlertSettings = serde_json::from_str(&text).unwrap();
        assert_eq!(back, settings);
        assert_eq!(back.notifications.feishu.secret, "s3");
    }
}
