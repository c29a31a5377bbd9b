//! The settings document of the log API's `GET` and `PUT /api/v1/logs/config`: its serde shape, the partial
//! update `PUT` accepts, and validation that reports every problem at once.

use chrono::{DateTime, Utc};
use globset::GlobBuilder;
use owl_model::Level;
use serde::{Deserialize, Serialize};

/// Longest path pattern accepted, in characters.
pub const MAX_PATH_PATTERN_CHARS: usize = 256;
/// Most path patterns per list.
pub const MAX_PATH_PATTERNS: usize = 100;
/// Longest retention accepted, in days (ten years).
pub const MAX_RETENTION_DAYS: u32 = 3650;

/// The log settings: what the collector stores (`level`, `sampling`) and how long it keeps it
/// (`retention`). The log API shows the alert rules beside them (`alerts`): those belong to the alert
/// store (`owl-alerts`), and the query API answers and changes them there, in the same
/// transaction as these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfig {
    /// The minimum level the collector stores; records below it are dropped at ingest.
    pub level: Level,
    /// Sampling rules applied at ingest to records at or above `level`.
    pub sampling: Sampling,
    /// Days each kind of record is kept.
    pub retention: Retention,
    /// When the settings last changed; `None` while the built-in defaults apply.
    #[serde(default, with = "optional_timestamp")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Who changed them last (`system` for the defaults).
    #[serde(default = "system")]
    pub updated_by: String,
}

fn system() -> String {
    "system".to_string()
}

/// The log API's `sampling`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sampling {
    /// Whether the rules apply; when off, everything at or above `level` is stored.
    pub enabled: bool,
    /// The rules.
    pub rules: SamplingRules,
}

/// The log API's `sampling.rules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplingRules {
    /// Records always stored (never sampled, never dropped by `neverLog`).
    pub always_log: AlwaysLog,
    /// Records never stored.
    pub never_log: NeverLog,
    /// Load-dependent sampling of everything else.
    pub dynamic: DynamicSampling,
}

/// The log API's `alwaysLog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AlwaysLog {
    /// Levels always stored.
    pub levels: Vec<Level>,
    /// Request path globs always stored (`/api/v1/auth/*`).
    pub paths: Vec<String>,
}

/// The log API's `neverLog`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NeverLog {
    /// Request path globs never stored (`/health`).
    pub paths: Vec<String>,
}

/// The log API's `dynamic`: above `qpsThreshold` records per second, keep a share of
/// `qpsThreshold / qps`, bounded by the two rates; at or below it keep `maxSampleRate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DynamicSampling {
    /// Records per second above which sampling starts.
    pub qps_threshold: u64,
    /// Smallest share kept under any load, 0 to 1.
    pub min_sample_rate: f64,
    /// Share kept below the threshold, 0 to 1.
    pub max_sample_rate: f64,
}

/// The log API's `retention`, in days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Days HTTP access records are kept.
    pub http: u32,
    /// Days application records are kept.
    pub application: u32,
    /// Days error records are kept.
    pub error: u32,
}

impl LogConfig {
    /// The settings before anyone changed them: store everything (`DEBUG`, sampling off, with
    /// The log API's example rules ready to be switched on) and the retention of the configuration file.
    ///
    /// Storing everything by default is deliberate: a fresh install that silently dropped DEBUG
    /// lines would look broken; ops raise the level with `PUT /api/v1/logs/config`.
    pub fn defaults(config: &owl_config::Config) -> LogConfig {
        let retention = &config.storage.retention;
        LogConfig {
            level: Level::Debug,
            sampling: Sampling {
                enabled: false,
                rules: SamplingRules {
                    always_log: AlwaysLog {
                        levels: vec![Level::Error, Level::Warn],
                        paths: vec!["/api/v1/auth/*".to_string()],
                    },
                    never_log: NeverLog {
                        paths: vec![
                            "/health".to_string(),
                            "/ready".to_string(),
                            "/metrics".to_string(),
                        ],
                    },
                    dynamic: DynamicSampling {
                        qps_threshold: 1000,
                        min_sample_rate: 0.1,
                        max_sample_rate: 1.0,
                    },
                },
            },
            retention: Retention {
                http: retention.http_days,
                application: retention.application_days,
                error: retention.error_days,
            },
            updated_at: None,
            updated_by: system(),
        }
    }

    /// The settings with `update` applied, or every problem found in the update and in the
    /// result. `updated_at` and `updated_by` are left to the caller.
    pub fn apply(&self, update: &LogConfigUpdate) -> Result<LogConfig, Vec<Problem>> {
        let mut next = self.clone();
        let mut problems = Vec::new();
        if let Some(name) = &update.level {
            match parse_level(name) {
                Some(level) => next.level = level,
                None => problems.push(Problem::new(
                    "level",
                    "enum",
                    "level 只能是 ERROR、WARN、INFO、DEBUG",
                )),
            }
        }
        if let Some(sampling) = &update.sampling {
            if let Some(enabled) = sampling.enabled {
                next.sampling.enabled = enabled;
            }
            if let Some(rules) = &sampling.rules {
                let target = &mut next.sampling.rules;
                if let Some(always) = &rules.always_log {
                    if let Some(levels) = &always.levels {
                        let mut parsed = Vec::new();
                        for (i, name) in levels.iter().enumerate() {
                            match parse_level(name) {
                                Some(level) if !parsed.contains(&level) => parsed.push(level),
                                Some(_) => {}
                                None => problems.push(Problem::new(
                                    format!("sampling.rules.alwaysLog.levels[{i}]"),
                                    "enum",
                                    "级别只能是 ERROR、WARN、INFO、DEBUG",
                                )),
                            }
                        }
                        target.always_log.levels = parsed;
                    }
                    if let Some(paths) = &always.paths {
                        target.always_log.paths = trimmed(paths);
                    }
                }
                if let Some(never) = &rules.never_log
                    && let Some(paths) = &never.paths
                {
                    target.never_log.paths = trimmed(paths);
                }
                if let Some(dynamic) = &rules.dynamic {
                    if let Some(v) = dynamic.qps_threshold {
                        target.dynamic.qps_threshold = v;
                    }
                    if let Some(v) = dynamic.min_sample_rate {
                        target.dynamic.min_sample_rate = v;
                    }
                    if let Some(v) = dynamic.max_sample_rate {
                        target.dynamic.max_sample_rate = v;
                    }
                }
            }
        }
        if let Some(retention) = &update.retention {
            if let Some(v) = retention.http {
                next.retention.http = v;
            }
            if let Some(v) = retention.application {
                next.retention.application = v;
            }
            if let Some(v) = retention.error {
                next.retention.error = v;
            }
        }
        problems.extend(next.validate());
        if problems.is_empty() {
            Ok(next)
        } else {
            Err(problems)
        }
    }

    /// Every problem of the settings, each naming its field in the API's spelling.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let rules = &self.sampling.rules;
        check_paths(
            &mut problems,
            "sampling.rules.alwaysLog.paths",
            &rules.always_log.paths,
        );
        check_paths(
            &mut problems,
            "sampling.rules.neverLog.paths",
            &rules.never_log.paths,
        );
        let dynamic = &rules.dynamic;
        if dynamic.qps_threshold == 0 {
            problems.push(Problem::new(
                "sampling.rules.dynamic.qpsThreshold",
                "range",
                "qpsThreshold 需大于 0",
            ));
        }
        let rate_ok = |r: f64| r.is_finite() && r > 0.0 && r <= 1.0;
        if !rate_ok(dynamic.min_sample_rate) {
            problems.push(Problem::new(
                "sampling.rules.dynamic.minSampleRate",
                "range",
                "minSampleRate 需在 (0, 1] 之间",
            ));
        }
        if !rate_ok(dynamic.max_sample_rate) {
            problems.push(Problem::new(
                "sampling.rules.dynamic.maxSampleRate",
                "range",
                "maxSampleRate 需在 (0, 1] 之间",
            ));
        }
        if rate_ok(dynamic.min_sample_rate)
            && rate_ok(dynamic.max_sample_rate)
            && dynamic.min_sample_rate > dynamic.max_sample_rate
        {
            problems.push(Problem::new(
                "sampling.rules.dynamic.minSampleRate",
                "order",
                "minSampleRate 不能大于 maxSampleRate",
            ));
        }
        for (field, days) in [
            ("retention.http", self.retention.http),
            ("retention.application", self.retention.application),
            ("retention.error", self.retention.error),
        ] {
            if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                problems.push(Problem::new(
                    field,
                    "range",
                    format!("{field} 需在 1 到 {MAX_RETENTION_DAYS} 天之间"),
                ));
            }
        }
        problems
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig::defaults(&owl_config::Config::default())
    }
}

fn trimmed(paths: &[String]) -> Vec<String> {
    paths.iter().map(|p| p.trim().to_string()).collect()
}

fn check_paths(problems: &mut Vec<Problem>, field: &str, paths: &[String]) {
    if paths.len() > MAX_PATH_PATTERNS {
        problems.push(Problem::new(
            field,
            "length",
            format!("{field} 最多 {MAX_PATH_PATTERNS} 项"),
        ));
    }
    for (i, path) in paths.iter().enumerate() {
        let item = format!("{field}[{i}]");
        if !path.starts_with('/') {
            problems.push(Problem::new(
                item,
                "format",
                "路径需以 / 开头，例如 /api/v1/auth/*",
            ));
        } else if path.chars().count() > MAX_PATH_PATTERN_CHARS {
            problems.push(Problem::new(
                item,
                "length",
                format!("路径最多 {MAX_PATH_PATTERN_CHARS} 个字符"),
            ));
        } else if let Err(error) = GlobBuilder::new(path).build() {
            problems.push(Problem::new(
                item,
                "format",
                format!("路径通配符无效：{}", error.kind()),
            ));
        }
    }
}

/// A level name of the API: `ERROR`, `WARN` (or `WARNING`), `INFO`, `DEBUG`, any case.
pub fn parse_level(name: &str) -> Option<Level> {
    match name.trim().to_ascii_uppercase().as_str() {
        "ERROR" => Some(Level::Error),
        "WARN" | "WARNING" => Some(Level::Warn),
        "INFO" => Some(Level::Info),
        "DEBUG" => Some(Level::Debug),
        _ => None,
    }
}

/// One problem of a settings document or update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as a JSON path in the API's spelling (`sampling.rules.dynamic.minSampleRate`).
    pub field: String,
    /// The rule that failed (`enum`, `range`, `format`, `length`, `order`).
    pub constraint: &'static str,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Problem {
    fn new(field: impl Into<String>, constraint: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            field: field.into(),
            constraint,
            message: message.into(),
        }
    }
}

/// The body of `PUT /api/v1/logs/config`: the log API's `UpdateLogConfigDto`, plus the alwaysLog and
/// neverLog rules and the retention the document shows. Absent fields keep their value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfigUpdate {
    /// New minimum level.
    pub level: Option<String>,
    /// Sampling changes.
    pub sampling: Option<SamplingUpdate>,
    /// Retention changes.
    pub retention: Option<RetentionUpdate>,
}

/// Changes to `sampling`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamplingUpdate {
    /// Switch the rules on or off.
    pub enabled: Option<bool>,
    /// Rule changes.
    pub rules: Option<SamplingRulesUpdate>,
}

/// Changes to `sampling.rules`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SamplingRulesUpdate {
    /// Replace alwaysLog lists.
    pub always_log: Option<AlwaysLogUpdate>,
    /// Replace the neverLog list.
    pub never_log: Option<NeverLogUpdate>,
    /// Dynamic sampling changes.
    pub dynamic: Option<DynamicUpdate>,
}

/// Changes to `alwaysLog` (each list replaced whole).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AlwaysLogUpdate {
    /// Levels always stored.
    pub levels: Option<Vec<String>>,
    /// Path globs always stored.
    pub paths: Option<Vec<String>>,
}

/// Changes to `neverLog` (the list replaced whole).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NeverLogUpdate {
    /// Path globs never stored.
    pub paths: Option<Vec<String>>,
}

/// Changes to `dynamic`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DynamicUpdate {
    /// Records per second above which sampling starts.
    pub qps_threshold: Option<u64>,
    /// Smallest share kept.
    pub min_sample_rate: Option<f64>,
    /// Share kept below the threshold.
    pub max_sample_rate: Option<f64>,
}

/// Changes to `retention`, in days.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetentionUpdate {
    /// HTTP records.
    pub http: Option<u32>,
    /// Application records.
    pub application: Option<u32>,
    /// Error records.
    pub error: Option<u32>,
}

mod optional_timestamp {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<DateTime<Utc>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(ts) => serializer.serialize_str(&owl_model::format_timestamp(ts)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<String>::deserialize(deserializer)?;
        match text {
            None => Ok(None),
            Some(text) => owl_model::parse_timestamp(&text)
                .map(Some)
                .ok_or_else(|| serde::de::Error::custom(format!("bad timestamp `{text}`"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn update(value: serde_json::Value) -> LogConfigUpdate {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn defaults_store_everything_and_follow_the_config_file() {
        let mut config = owl_config::Config::default();
        config.storage.retention.http_days = 7;
        let defaults = LogConfig::defaults(&config);
        assert_eq!(defaults.level, Level::Debug);
        assert!(!defaults.sampling.enabled);
        assert_eq!(defaults.retention.http, 7);
        assert!(defaults.validate().is_empty(), "{:?}", defaults.validate());
    }

    #[test]
    fn serialises_the_log_api_shape() {
        let value = serde_json::to_value(LogConfig::default()).unwrap();
        assert_eq!(value["level"], "DEBUG");
        assert_eq!(
            value["sampling"]["rules"]["alwaysLog"]["levels"],
            json!(["ERROR", "WARN"])
        );
        assert_eq!(
            value["sampling"]["rules"]["neverLog"]["paths"],
            json!(["/health", "/ready", "/metrics"])
        );
        assert_eq!(value["sampling"]["rules"]["dynamic"]["qpsThreshold"], 1000);
        assert_eq!(value["retention"]["http"], 14);
        assert_eq!(value["updatedAt"], serde_json::Value::Null);
        assert_eq!(value["updatedBy"], "system");
        let back: LogConfig = serde_json::from_value(value).unwrap();
        assert_eq!(back, LogConfig::default());
    }

    #[test]
    fn a_document_stored_with_alert_rules_still_reads() {
        // Documents written before the rules moved to the alert store carry an `alerts` section.
        let mut value = serde_json::to_value(LogConfig::default()).unwrap();
        value["alerts"] = json!({"slowRequest": {"thresholdMs": 2000}});
        let back: LogConfig = serde_json::from_value(value).unwrap();
        assert_eq!(back, LogConfig::default());
    }

    #[test]
    fn the_documented_example_update_applies() {
        let next = LogConfig::default()
            .apply(&update(json!({"level": "DEBUG"})))
            .unwrap();
        assert_eq!(next.level, Level::Debug);
        let next = next
            .apply(&update(json!({
                "level": "error",
                "sampling": {"enabled": true, "rules": {"dynamic": {"qpsThreshold": 50, "minSampleRate": 0.2}}}
            })))
            .unwrap();
        assert_eq!(next.level, Level::Error);
        assert!(next.sampling.enabled);
        assert_eq!(next.sampling.rules.dynamic.qps_threshold, 50);
        assert_eq!(next.sampling.rules.dynamic.min_sample_rate, 0.2);
        assert_eq!(next.sampling.rules.dynamic.max_sample_rate, 1.0);
        assert_eq!(
            next.retention,
            LogConfig::default().retention,
            "untouched fields keep their value"
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let problems = LogConfig::default()
            .apply(&update(json!({
                "level": "LOUD",
                "sampling": {"rules": {
                    "alwaysLog": {"levels": ["ERROR", "NOPE"], "paths": ["api/no-slash"]},
                    "dynamic": {"qpsThreshold": 0, "minSampleRate": 0.9, "maxSampleRate": 0.5}
                }},
                "retention": {"http": 0}
            })))
            .unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "level",
                "sampling.rules.alwaysLog.levels[1]",
                "sampling.rules.alwaysLog.paths[0]",
                "sampling.rules.dynamic.qpsThreshold",
                "sampling.rules.dynamic.minSampleRate",
                "retention.http",
            ]
        );
    }

    #[test]
    fn unknown_update_fields_are_refused() {
        let error = serde_json::from_value::<LogConfigUpdate>(json!({"levle": "DEBUG"})).unwrap_err();
        assert!(error.to_string().contains("levle"), "{error}");
        // The alert rules are the alert store's, changed there (the query API splits them off).
        let error = serde_json::from_value::<LogConfigUpdate>(json!({"alerts": {}})).unwrap_err();
        assert!(error.to_string().contains("alerts"), "{error}");
    }

    #[test]
    fn level_names_accept_warning() {
        assert_eq!(parse_level("warning"), Some(Level::Warn));
        assert_eq!(parse_level("Info"), Some(Level::Info));
        assert_eq!(parse_level("fatal"), None);
    }
}
