//! Owl's configuration: one TOML file for every role.
//!
//! Loading goes raw, then validated, then used: the file (or an empty one) is parsed into a TOML
//! table, environment overrides are laid over it, the table is deserialised into [`Config`] with
//! unknown keys refused, and [`Config::validate`] reports every problem in one pass, each with its
//! full key path, the bad value and what is allowed. This crate reads no environment itself: the
//! caller passes the variables in, so tests stay pure.
//!
//! Environment overrides: `OWL_<SECTION>__<KEY>[__<SUBKEY>]` sets `section.key.subkey`
//! (`OWL_COLLECTOR__LISTEN=0.0.0.0:4318`, `OWL_AGENT__BATCH__MAX_BYTES=524288`), and a few
//! shortcuts cover the common cases: `OWL_DATA_DIR`, `OWL_AGENT_TOKEN`, `OWL_ADMIN_PASSWORD`,
//! `OWL_DATABASE_URL`, `OWL_CRM_DATABASE_URL`, `OWL_REDIS_URL`, `OWL_JWT_SECRET`, `OWL_LOG`,
//! `OWL_LOG_FORMAT`.
#![warn(missing_docs)]

mod agent;
mod alerts;
pub mod files;
pub mod net;
mod secret;
mod server;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use agent::{
    AgentConfig, BatchConfig, BufferConfig, Compression, InputConfig, KubernetesConfig, MultilineConfig,
    ParserKind, ReadFrom, RetryConfig, SyslogConfig, SyslogFormat, SyslogListen, WhenFull,
};
pub use alerts::{
    AlertsConfig, DiskSpaceRule, EmailChannel, ErrorRateRule, FeishuChannel, IpAnomalyRule,
    NotificationsConfig, SlowRequestRule, SmtpTls, ThresholdRule, WebhookChannel,
};
pub use net::Networks;
pub use owl_model::MaskingRules;
pub use secret::Secret;
pub use server::{AuthConfig, CollectorConfig, QueryApiConfig, RetentionConfig, StorageConfig};

/// The whole configuration of an Owl node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Directory for every piece of local state (SQLite file, index, agent buffer, tokens).
    pub data_dir: PathBuf,
    /// Owl's own logging.
    pub log: LogConfig,
    /// The node agent.
    pub agent: AgentConfig,
    /// The collector.
    pub collector: CollectorConfig,
    /// The query API.
    pub query_api: QueryApiConfig,
    /// Databases, cache, index and retention.
    pub storage: StorageConfig,
    /// Login and tokens.
    pub auth: AuthConfig,
    /// Alert rules.
    pub alerts: AlertsConfig,
    /// Alert channels.
    pub notifications: NotificationsConfig,
    /// Masking of sensitive values.
    pub masking: MaskingRules,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            log: LogConfig::default(),
            agent: AgentConfig::default(),
            collector: CollectorConfig::default(),
            query_api: QueryApiConfig::default(),
            storage: StorageConfig::default(),
            auth: AuthConfig::default(),
            alerts: AlertsConfig::default(),
            notifications: NotificationsConfig::default(),
            masking: MaskingRules::default(),
        }
    }
}

/// `[log]`: Owl's own logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A tracing filter (`info`, `owl_collector=debug,info`).
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// Format of Owl's own logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Full key path (`agent.inputs[0].paths`).
    pub key: String,
    /// The offending value as written (secrets as `(secret)`).
    pub value: String,
    /// What is allowed.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.key, self.value, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not TOML, or a key is unknown or of the wrong type.
    #[error("{origin}: {message}")]
    Parse {
        /// The file or environment variable the problem came from.
        origin: String,
        /// What is wrong, with the key.
        message: String,
    },
    /// Values are out of range or inconsistent.
    #[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// Collects validation problems.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, key: &str, value: impl fmt::Display, message: &str) {
        self.0.push(Problem {
            key: key.to_string(),
            value: value.to_string(),
            message: message.to_string(),
        });
    }

    pub(crate) fn range(&mut self, key: &str, value: u64, min: u64, max: u64) {
        if value < min || value > max {
            let message = if max == u64::MAX {
                format!("must be at least {min}")
            } else {
                format!("must be between {min} and {max}")
            };
            self.push(key, value, &message);
        }
    }

    pub(crate) fn positive(&mut self, key: &str, value: u64) {
        if value == 0 {
            self.push(key, value, "must be greater than 0");
        }
    }

    pub(crate) fn percent(&mut self, key: &str, value: f64) {
        if !(0.0..=100.0).contains(&value) {
            self.push(key, value, "must be a percentage between 0 and 100");
        }
    }

    pub(crate) fn socket_addr(&mut self, key: &str, value: &str) {
        if value.parse::<std::net::SocketAddr>().is_err() {
            self.push(
                key,
                format!("{value:?}"),
                "must be an IP:port address such as 127.0.0.1:3001",
            );
        }
    }

    /// Refuses a secret that is still an example's placeholder.
    pub(crate) fn not_placeholder(&mut self, key: &str, secret: &Secret) {
        if secret.is_placeholder() {
            self.push(
                key,
                "(placeholder)",
                "is a placeholder from an example; set a real secret (or leave it empty to have one generated where Owl can)",
            );
        }
    }

    pub(crate) fn url(&mut self, key: &str, value: &str) {
        let ok = (value.starts_with("http://") || value.starts_with("https://"))
            && value.split("://").nth(1).is_some_and(|rest| !rest.is_empty());
        if !ok {
            let shown = if value.is_empty() {
                "\"\"".to_string()
            } else {
                format!("{value:?}")
            };
            self.push(key, shown, "must be an http:// or https:// URL");
        }
    }
}

const SHORTCUTS: &[(&str, &[&str])] = &[
    ("OWL_DATA_DIR", &["data_dir"]),
    ("OWL_ADMIN_PASSWORD", &["auth.admin_password"]),
    ("OWL_DATABASE_URL", &["storage.database_url"]),
    ("OWL_CRM_DATABASE_URL", &["storage.crm_database_url"]),
    ("OWL_REDIS_URL", &["storage.redis_url"]),
    ("OWL_JWT_SECRET", &["auth.jwt_secret"]),
    ("OWL_SECRET_KEY", &["storage.secret_key"]),
    ("OWL_LOG", &["log.level"]),
    ("OWL_LOG_FORMAT", &["log.format"]),
];

impl Config {
    /// Loads a config file (or the defaults when `path` is `None`), applies the environment
    /// overrides in `env`, and validates the result.
    pub fn load(path: Option<&Path>, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let (text, origin) = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
                    path: path.to_path_buf(),
                    source,
                })?;
                (text, path.display().to_string())
            }
            None => (String::new(), "defaults".to_string()),
        };
        Config::from_toml(&text, &origin, env)
    }

    /// Parses TOML text, applies overrides and validates. `origin` names the text in errors.
    pub fn from_toml(
        text: &str,
        origin: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Config, ConfigError> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?;
        let overrides = env_overrides(env);
        for (path, raw, _) in &overrides {
            set_path(&mut table, path, guess_value(raw));
        }
        // An override whose text looked like a number but belongs to a string key ("12345" as a
        // token) is retried as a string before the error is reported.
        let mut retried = std::collections::BTreeSet::new();
        let config = loop {
            match deserialize(&table) {
                Ok(config) => break config,
                Err((key, message)) => {
                    if let Some((path, raw, var)) = overrides.iter().find(|(p, _, _)| p.join(".") == key) {
                        if retried.insert(var.clone()) && !matches!(guess_value(raw), toml::Value::String(_))
                        {
                            set_path(&mut table, path, toml::Value::String(raw.clone()));
                            continue;
                        }
                        return Err(ConfigError::Parse {
                            origin: format!("environment variable {var}"),
                            message,
                        });
                    }
                    return Err(ConfigError::Parse {
                        origin: origin.to_string(),
                        message,
                    });
                }
            }
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        if self.data_dir.as_os_str().is_empty() {
            p.push("data_dir", "\"\"", "name a directory, e.g. ./data");
        }
        if self.log.level.trim().is_empty() {
            p.push(
                "log.level",
                "\"\"",
                "a tracing filter such as info or owl_collector=debug",
            );
        }
        self.agent.validate(&mut p);
        self.collector.validate(&mut p);
        self.query_api.validate(&mut p);
        self.storage.validate(&mut p);
        self.auth.validate(&mut p);
        self.alerts.validate(&mut p);
        self.notifications.validate(&mut p);
        if let Err(e) = owl_model::Masker::new(&self.masking) {
            let (key, value) = match &e {
                owl_model::MaskError::BadPattern { index, pattern, .. } => {
                    (format!("masking.patterns[{index}]"), pattern.clone())
                }
                owl_model::MaskError::BadKey { index, key } => {
                    (format!("masking.keys[{index}]"), key.clone())
                }
            };
            let message = e.to_string();
            let message = message
                .split_once(": ")
                .map_or(message.as_str(), |(_, m)| m)
                .to_string();
            p.push(&key, value, &message);
        }
        if p.0.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(p.0))
        }
    }

    /// The SQL database URL, defaulting to a SQLite file in the data dir.
    pub fn database_url(&self) -> String {
        let url = self.storage.database_url.expose();
        if url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.data_dir.join("owl.db").display())
        } else {
            url.to_string()
        }
    }

    /// The CRM database URL, defaulting to [`Config::database_url`].
    pub fn crm_database_url(&self) -> String {
        let url = self.storage.crm_database_url.expose();
        if url.is_empty() {
            self.database_url()
        } else {
            url.to_string()
        }
    }

    /// The index directory.
    pub fn index_dir(&self) -> PathBuf {
        self.storage
            .index_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("index"))
    }

    /// The agent's state directory.
    pub fn agent_data_dir(&self) -> PathBuf {
        self.agent
            .data_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("agent"))
    }
}

fn deserialize(table: &toml::Table) -> Result<Config, (String, String)> {
    let value = toml::Value::Table(table.clone());
    serde_path_to_error::deserialize::<_, Config>(value).map_err(|e| {
        let key = e.path().to_string();
        let message = format!("key `{}`: {}", key, e.inner());
        (key, message)
    })
}

/// `(path, raw value, variable name)` for each override found in `env`.
fn env_overrides(env: &BTreeMap<String, String>) -> Vec<(Vec<String>, String, String)> {
    let mut out = Vec::new();
    for (name, value) in env {
        if let Some((_, paths)) = SHORTCUTS.iter().find(|(var, _)| var == name) {
            for path in *paths {
                out.push((
                    path.split('.').map(str::to_string).collect(),
                    value.clone(),
                    name.clone(),
                ));
            }
        } else if name == "OWL_AGENT_TOKEN" {
            // One token serves both sides of `owl up`: the collector accepts it, the agent sends it.
            out.push((vec!["agent".into(), "token".into()], value.clone(), name.clone()));
            out.push((
                vec!["collector".into(), "agent_tokens".into()],
                format!("[{}]", toml_string(value)),
                name.clone(),
            ));
        } else if let Some(rest) = name.strip_prefix("OWL_")
            && rest.contains("__")
        {
            let path = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
            out.push((path, value.clone(), name.clone()));
        }
    }
    out
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Reads an override as a TOML value when it is one (number, bool, array), else as a string.
fn guess_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    let looks_typed = trimmed == "true"
        || trimmed == "false"
        || trimmed.starts_with('[')
        || trimmed.parse::<i64>().is_ok()
        || trimmed.parse::<f64>().is_ok();
    if looks_typed
        && let Ok(table) = format!("v = {trimmed}").parse::<toml::Table>()
        && let Some(v) = table.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_string())
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("made a table just above");
    }
    current.insert(last.clone(), value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let config = Config::load(None, &BTreeMap::new()).unwrap();
        assert_eq!(config.query_api.listen, "127.0.0.1:3001");
        assert_eq!(config.collector.listen, "127.0.0.1:4318");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(config.auth.access_token_ttl_s, 1800);
        assert_eq!(config.storage.retention.http_days, 14);
        assert_eq!(config.storage.retention.application_days, 30);
        assert!(config.database_url().starts_with("sqlite://"));
        assert_eq!(config.index_dir(), PathBuf::from("./data/index"));
        assert!(config.collector.max_body_bytes >= 10 * 1024 * 1024);
    }

    #[test]
    fn env_overrides_apply() {
        let config = Config::from_toml(
            "[collector]\nlisten = \"127.0.0.1:5000\"\n",
            "test.toml",
            &env(&[
                ("OWL_COLLECTOR__LISTEN", "0.0.0.0:4318"),
                ("OWL_AGENT__BATCH__MAX_BYTES", "524288"),
                ("OWL_DATA_DIR", "/tmp/owl"),
                ("OWL_AGENT_TOKEN", "1234567890123456"),
                ("OWL_ADMIN_PASSWORD", "correct horse"),
                ("OWL_ALERTS__SLOW_REQUEST__EXCLUDE_PATHS", "[\"/upload/*\"]"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(config.collector.listen, "0.0.0.0:4318");
        assert_eq!(config.agent.batch.max_bytes, 524288);
        assert_eq!(config.data_dir, PathBuf::from("/tmp/owl"));
        // A numeric-looking token stays a string.
        assert_eq!(config.agent.token.expose(), "1234567890123456");
        assert_eq!(config.collector.agent_tokens[0].expose(), "1234567890123456");
        assert_eq!(config.auth.admin_password.expose(), "correct horse");
        assert_eq!(
            config.alerts.slow_request.exclude_paths,
            vec!["/upload/*".to_string()]
        );
    }

    #[test]
    fn owl_log_format_picks_the_log_format() {
        let config = Config::from_toml("", "owl.toml", &env(&[("OWL_LOG_FORMAT", "json")])).unwrap();
        assert_eq!(config.log.format, LogFormat::Json);
        assert_eq!(
            Config::from_toml("", "owl.toml", &BTreeMap::new())
                .unwrap()
                .log
                .format,
            LogFormat::Text
        );
        let text = Config::from_toml("", "owl.toml", &env(&[("OWL_LOG_FORMAT", "yaml")]))
            .unwrap_err()
            .to_string();
        assert!(text.contains("OWL_LOG_FORMAT") && text.contains("yaml"), "{text}");
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::from_toml("[collector]\nlisten_addr = \"x\"\n", "owl.toml", &BTreeMap::new())
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("owl.toml") && text.contains("listen_addr"),
            "{text}"
        );

        let err = Config::from_toml("", "owl.toml", &env(&[("OWL_COLLECTOR__NOPE", "1")])).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("OWL_COLLECTOR__NOPE") && text.contains("nope"),
            "{text}"
        );
    }

    #[test]
    fn wrong_types_name_the_key() {
        let err = Config::from_toml(
            "[agent.batch]\nmax_bytes = \"big\"\n",
            "owl.toml",
            &BTreeMap::new(),
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("agent.batch.max_bytes"), "{text}");
        let err = Config::from_toml(
            "[agent.batch]\ncompression = \"lz4\"\n",
            "owl.toml",
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("agent.batch.compression"), "{err}");
    }

    #[test]
    fn validation_reports_every_problem_with_key_value_and_fix() {
        let text = r#"
[query_api]
listen = "localhost"
[collector]
max_body_bytes = 1000
[[agent.inputs]]
paths = []
service = ""
[alerts.disk_space]
warning_percent = 95
critical_percent = 90
[masking]
patterns = ["("]
"#;
        let err = Config::from_toml(text, "owl.toml", &BTreeMap::new()).unwrap_err();
        let ConfigError::Invalid(problems) = &err else {
            panic!("expected Invalid, got {err}")
        };
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        for expected in [
            "query_api.listen",
            "collector.max_body_bytes",
            "agent.inputs[0].paths",
            "agent.inputs[0].service",
            "alerts.disk_space.critical_percent",
            "masking.patterns[0]",
        ] {
            assert!(keys.contains(&expected), "missing {expected} in {keys:?}");
        }
        let listen = problems.iter().find(|p| p.key == "query_api.listen").unwrap();
        assert_eq!(listen.value, "\"localhost\"");
        assert!(listen.message.contains("IP:port"));
        let body = problems
            .iter()
            .find(|p| p.key == "collector.max_body_bytes")
            .unwrap();
        assert_eq!(body.value, "1000");
        assert!(
            err.to_string()
                .contains("collector.max_body_bytes = 1000: must be between")
        );
    }

    #[test]
    fn secrets_never_print() {
        let config = Config::from_toml(
            "[auth]\njwt_secret = \"0123456789abcdef0123456789abcdef-secret\"\n",
            "t",
            &BTreeMap::new(),
        )
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        let toml_out = toml::to_string(&config).unwrap();
        assert!(!toml_out.contains("0123456789abcdef"));
    }

    #[test]
    fn examples_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                // Valid once the placeholder tokens are replaced (here through the environment)...
                let env = BTreeMap::from([(
                    "OWL_AGENT_TOKEN".to_string(),
                    "k3J9s8dF0aQ2mX7pL5vN1cB4".to_string(),
                )]);
                Config::load(Some(&path), &env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                // ...and refused while they are not, naming the key.
                let text = std::fs::read_to_string(&path).unwrap();
                if text.contains("\"replace-with") {
                    let error = Config::load(Some(&path), &BTreeMap::new())
                        .unwrap_err()
                        .to_string();
                    assert!(error.contains("placeholder"), "{}: {error}", path.display());
                    assert!(error.contains("token"), "{}: {error}", path.display());
                }
                seen += 1;
            }
        }
        assert!(seen >= 4, "expected the documented examples, found {seen}");
    }
}
