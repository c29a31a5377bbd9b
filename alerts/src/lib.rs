//! Owl's alerting: streaming rules over what the collector stores, one alert per incident, the
//! alert store, and notifications to Slack, Feishu and email.
//!
//! # Architecture
//!
//! ```text
//!  collector indexing thread ── AlertEngine::observe(records, samples) ── bounded queue (never waits)
//!                                                                              │
//!  engine task ─ rules (SLOW_REQUEST, HIGH_ERROR_RATE, IP_ANOMALY,             v
//!                 DISK_SPACE, CPU_HIGH, MEMORY_HIGH) ── signals ── incidents: open / fold / resolve
//!                                                                    │                 │
//!                    alert store (SQL: alerts, alert_config, ────────┘                 │ notices
//!                    alert_mutes, blocked_ips) <── query API (history,                 v
//!                    acknowledge, config, mutes, blocked IPs)        notifier: a bounded queue and a
//!                                                                    worker per channel, retries,
//!                                                                    SENT / FAILED in the store
//! ```
//!
//! - [`rules`](crate::rules) module docs: what each rule reads, windows and their memory bounds.
//! - [`incidents`](crate::incidents) module docs: folding, cooldown, escalation, resolution.
//! - [`store`](crate::store) module docs: the portable SQL and how several processes share it.
//! - [`notify`](crate::notify) module docs: queues, retries, channel formats (Feishu signing).
//!
//! The configuration lives in SQL (`alert_config`) once changed through the API, with the config
//! file's `[alerts]` and `[notifications]` as the starting values; engines notice a change by its
//! version within a second, in any process. The query API uses [`AlertStore`], [`AlertSettings`]
//! and [`Notifier::deliver`] (channel tests); the collector feeds an [`AlertEngine`].

mod alert;
mod engine;
mod incidents;
pub mod metrics;
mod notice;
mod notify;
mod rules;
mod secrets;
mod settings;
mod store;

pub use alert::{Alert, AlertSeverity, AlertState, AlertStatus, AlertType, Channel, UnknownValue};
pub use engine::{ALERT_RETENTION_MS, AlertEngine, EngineError, EngineOptions};
pub use incidents::{MAX_OPEN_INCIDENTS, NoticeKind};
pub use notice::{Notice, link_base};
pub use notify::{
    DeliveryError, Notifier, NotifierError, NotifierOptions, TargetPolicy, TargetRefused, feishu_sign,
};
pub use owl_model::clock::{Clock, format_millis};
pub use rules::{MAX_IPS, MAX_RECORD_AGE_MS, MAX_SERVICES, RequestFacts};
pub use secrets::{CipherError, SECRET_KEY_FILE, SecretCipher};
pub use settings::{
    AlertSettings, AlertSettingsPatch, ChannelSettings, DiskSpaceSettings, EmailSettings, ErrorRateSettings,
    FeishuSettings, IpAnomalySettings, MAX_THRESHOLD_MS, SettingsProblem, SlackSettings, SlowRequestSettings,
    ThresholdSettings,
};
pub use store::{
    AlertFilter, AlertStore, BlockedIp, DeliveryOutcome, EffectiveSettings, Mute, StoreError, StoredSettings,
    Summary,
};
