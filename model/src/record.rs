//! The log record: the LogItem shape of the log API (`/api/v1/logs/*`) plus the logger fields of
//! the CRM's log items (`/api/analytics-monitoring/logs/*`), the retention kind, host, environment and a stable id.
//!
//! Deserialisation is lenient in the ways real shippers need: `timestamp` is accepted for
//! `@timestamp` (with or without a zone; a naive time is UTC), `service` may be a bare name (CRM analytics API) or
//! the object of the log API, a level is matched case-insensitively with the usual aliases (`WARNING`,
//! `CRITICAL`, ...), and keys the model does not know are kept in `extra` instead of being dropped.
//! Serialisation always produces the canonical log API shape.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Severity of a record, ordered from least to most severe (`Debug < Info < Warn < Error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Level {
    /// Detailed debugging output (TRACE is folded into it).
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// A potential problem.
    Warn,
    /// A failure (FATAL and CRITICAL are folded into it).
    Error,
}

impl Level {
    /// All levels, least severe first.
    pub const ALL: [Level; 4] = [Level::Debug, Level::Info, Level::Warn, Level::Error];

    /// The canonical upper-case name used by the log API (`WARN`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }

    /// The name the CRM analytics API and Python's `logging` use (`WARNING`).
    pub fn python_name(self) -> &'static str {
        match self {
            Level::Warn => "WARNING",
            other => other.as_str(),
        }
    }

    /// Parses a level name case-insensitively, accepting common aliases; `None` if unknown.
    pub fn parse(name: &str) -> Option<Level> {
        let name = name.trim();
        let level = if name.eq_ignore_ascii_case("error")
            || name.eq_ignore_ascii_case("err")
            || name.eq_ignore_ascii_case("fatal")
            || name.eq_ignore_ascii_case("critical")
            || name.eq_ignore_ascii_case("crit")
            || name.eq_ignore_ascii_case("alert")
            || name.eq_ignore_ascii_case("emerg")
            || name.eq_ignore_ascii_case("panic")
        {
            Level::Error
        } else if name.eq_ignore_ascii_case("warn") || name.eq_ignore_ascii_case("warning") {
            Level::Warn
        } else if name.eq_ignore_ascii_case("info")
            || name.eq_ignore_ascii_case("information")
            || name.eq_ignore_ascii_case("notice")
        {
            Level::Info
        } else if name.eq_ignore_ascii_case("debug")
            || name.eq_ignore_ascii_case("trace")
            || name.eq_ignore_ascii_case("verbose")
        {
            Level::Debug
        } else {
            return None;
        };
        Some(level)
    }

    /// A small integer for sorting and fast fields (`Debug` = 0 ... `Error` = 3).
    pub fn rank(self) -> u64 {
        self as u64
    }

    /// The inverse of [`Level::rank`].
    pub fn from_rank(rank: u64) -> Option<Level> {
        Level::ALL.get(rank as usize).copied()
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a level or kind name is not recognised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} `{value}`, expected one of {allowed}")]
pub struct UnknownName {
    /// What was being parsed (`level`, `kind`).
    pub what: &'static str,
    /// The offending value.
    pub value: String,
    /// The accepted names.
    pub allowed: &'static str,
}

impl FromStr for Level {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Level::parse(s).ok_or_else(|| UnknownName {
            what: "level",
            value: s.to_string(),
            allowed: "ERROR, WARN, INFO, DEBUG",
        })
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Retention class of a record (the log API's cleanup and retention `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An HTTP access record (has `http`).
    Http,
    /// Any other application record.
    #[default]
    Application,
    /// A record at ERROR level or carrying an `error`.
    Error,
}

impl Kind {
    /// All kinds.
    pub const ALL: [Kind; 3] = [Kind::Http, Kind::Application, Kind::Error];

    /// The lower-case name (`http`, `application`, `error`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Http => "http",
            Kind::Application => "application",
            Kind::Error => "error",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "http" => Ok(Kind::Http),
            "application" => Ok(Kind::Application),
            "error" => Ok(Kind::Error),
            _ => Err(UnknownName {
                what: "kind",
                value: s.to_string(),
                allowed: "http, application, error",
            }),
        }
    }
}

/// Trace context of a record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Trace {
    /// Trace id, shared across services (`{region}-{timestamp}-{random8}` or W3C hex).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// Span id of the operation that wrote the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span_id: Option<String>,
    /// Span id of the caller, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<String>,
    /// The span itself, when the record is one (received as an OpenTelemetry span) rather than a
    /// line written inside it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<SpanFacts>,
}

/// What a tracer recorded about a span: its name, kind, duration and events.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpanFacts {
    /// The span's name (the operation).
    #[serde(default)]
    pub name: String,
    /// `server`, `client`, `internal`, `producer` or `consumer`, when the tracer said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// End minus start, in milliseconds.
    #[serde(default)]
    pub duration_ms: f64,
    /// Events recorded during the span, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<SpanEvent>,
}

/// A timestamped event of a span (an exception, a retry, a message sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpanEvent {
    /// When it happened.
    #[serde(with = "timestamp_format")]
    pub time: DateTime<Utc>,
    /// The event's name.
    pub name: String,
}

/// Timestamps in the form every Owl API uses.
mod timestamp_format {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ts: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_timestamp(ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        super::parse_timestamp(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("`{text}` is not a time")))
    }
}

/// HTTP request facts of an access record.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Http {
    /// Request id, unique within one service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// HTTP method (`GET`, `POST`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Request path and query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Response status code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    /// Time to respond in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

/// The user on whose behalf the record was written.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct User {
    /// User id.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub id: Option<String>,
    /// User name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The client that made the request.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Client {
    /// Client IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// Client user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

/// The service that wrote the record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Service {
    /// Service name (`Form`, `foundation-service`, ...).
    #[serde(default)]
    pub name: String,
    /// Region (`CN`, `US`, `UAE`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Instance (pod, container or process) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

/// An error carried by a record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Error type or class (`DatabaseError`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub error_type: Option<String>,
    /// Error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Application error code (`CONNECTION_REFUSED`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "string_or_number"
    )]
    pub code: Option<String>,
    /// Stack trace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    /// Stable record id; empty until the agent or collector assigns one.
    pub id: String,
    /// When the event happened (UTC).
    pub timestamp: DateTime<Utc>,
    /// Severity.
    pub level: Level,
    /// The message.
    pub message: String,
    /// Retention class; classified from the other fields when absent.
    pub kind: Kind,
    /// Host (node) the record was read on.
    pub host: Option<String>,
    /// Deployment environment (`production`, `development`, ...).
    pub environment: Option<String>,
    /// Trace context.
    pub trace: Option<Trace>,
    /// HTTP request facts.
    pub http: Option<Http>,
    /// Acting user.
    pub user: Option<User>,
    /// Calling client.
    pub client: Option<Client>,
    /// Writing service.
    pub service: Service,
    /// Error details.
    pub error: Option<ErrorInfo>,
    /// Logger name (Python `name`).
    pub logger: Option<String>,
    /// Function that logged.
    pub function: Option<String>,
    /// Source line.
    pub line: Option<u64>,
    /// Source file.
    pub file: Option<String>,
    /// Module.
    pub module: Option<String>,
    /// Thread id.
    pub thread: Option<u64>,
    /// Process id.
    pub process: Option<u64>,
    /// Exception text (traceback).
    pub exception: Option<String>,
    /// Any other fields.
    pub extra: Option<Map<String, Value>>,
}

impl LogRecord {
    /// The kind a record belongs to by its content: `error` for ERROR records or records with an
    /// error, `http` for records with HTTP facts, `application` otherwise.
    pub fn classify(&self) -> Kind {
        if self.level == Level::Error || self.error.is_some() {
            Kind::Error
        } else if self
            .http
            .as_ref()
            .is_some_and(|h| h.url.is_some() || h.status_code.is_some())
        {
            Kind::Http
        } else {
            Kind::Application
        }
    }

    /// Trace id, if the record has one.
    pub fn trace_id(&self) -> Option<&str> {
        self.trace
            .as_ref()
            .map(|t| t.id.as_str())
            .filter(|id| !id.is_empty())
    }

    /// HTTP duration in milliseconds, if the record has one.
    pub fn duration_ms(&self) -> Option<f64> {
        self.http.as_ref().and_then(|h| h.duration_ms)
    }

    /// HTTP status code, if the record has one.
    pub fn status_code(&self) -> Option<u16> {
        self.http.as_ref().and_then(|h| h.status_code)
    }

    /// Whether the record is an error (ERROR level, an `error` object, or a 5xx status).
    pub fn has_error(&self) -> bool {
        self.level == Level::Error || self.error.is_some() || self.status_code().is_some_and(|s| s >= 500)
    }

    /// A deterministic id from a source identity and position: a record re-read from the same
    /// place gets the same id, which is what lets the collector store a re-sent record once.
    ///
    /// The id is the lowercase hex of the 128-bit XXH3 of `source` followed by `position` in
    /// little endian; it must never change, or re-sent records would be stored twice.
    pub fn derive_id(source: &[u8], position: u64) -> String {
        // Agents derive an id per record: no heap buffer and no formatter for the usual short
        // source (a 16-byte file fingerprint).
        const STACK: usize = 56;
        let hash = if source.len() <= STACK {
            let mut buf = [0u8; STACK + 8];
            buf[..source.len()].copy_from_slice(source);
            buf[source.len()..source.len() + 8].copy_from_slice(&position.to_le_bytes());
            xxhash_rust::xxh3::xxh3_128(&buf[..source.len() + 8])
        } else {
            let mut buf = Vec::with_capacity(source.len() + 8);
            buf.extend_from_slice(source);
            buf.extend_from_slice(&position.to_le_bytes());
            xxhash_rust::xxh3::xxh3_128(&buf)
        };
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = HEX[((hash >> (124 - 4 * i)) & 0xf) as usize];
        }
        text.iter().map(|&b| char::from(b)).collect()
    }

    /// A fresh random id (UUID v7, time ordered).
    pub fn new_id() -> String {
        uuid::Uuid::now_v7().simple().to_string()
    }

    /// Assigns a fresh id when the record has none.
    pub fn ensure_id(&mut self) {
        if self.id.is_empty() {
            self.id = Self::new_id();
        }
    }
}

/// Formats a timestamp the way every Owl API does: UTC, milliseconds, `Z`.
pub fn format_timestamp(ts: &DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses an ISO 8601 / RFC 3339 timestamp; a time without a zone is taken as UTC, a bare date as
/// its midnight UTC. Also accepts a space instead of `T`.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(ts) = DateTime::parse_from_rfc3339(s) {
        return Some(ts.with_timezone(&Utc));
    }
    let normalised;
    let s = if s.len() > 10 && s.as_bytes()[10] == b' ' {
        normalised = format!("{}T{}", &s[..10], &s[11..]);
        if let Ok(ts) = DateTime::parse_from_rfc3339(&normalised) {
            return Some(ts.with_timezone(&Utc));
        }
        normalised.as_str()
    } else {
        s
    };
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(naive.and_utc());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M:%S%z"] {
        if let Ok(ts) = DateTime::parse_from_str(s, fmt) {
            return Some(ts.with_timezone(&Utc));
        }
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return date.and_hms_opt(0, 0, 0).map(|n| n.and_utc());
    }
    None
}

/// Converts epoch seconds or milliseconds (told apart by magnitude) to a timestamp.
pub fn timestamp_from_epoch(value: f64) -> Option<DateTime<Utc>> {
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    // Anything above 1e11 cannot be seconds before the year 5000: treat it as milliseconds.
    let millis = if value > 1e11 { value } else { value * 1000.0 };
    DateTime::from_timestamp_millis(millis as i64)
}

fn string_or_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        Some(other) => Some(other.to_string()),
    })
}

/// The wire shape, lenient on input.
#[derive(Deserialize)]
struct RawRecord {
    #[serde(default)]
    id: Option<Value>,
    #[serde(rename = "@timestamp", alias = "timestamp", default)]
    timestamp: Option<Value>,
    #[serde(default)]
    level: Option<String>,
    #[serde(default)]
    message: Option<Value>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    environment: Option<String>,
    #[serde(default)]
    trace: Option<Trace>,
    #[serde(default)]
    http: Option<Http>,
    #[serde(default)]
    user: Option<User>,
    #[serde(default)]
    client: Option<Client>,
    #[serde(default)]
    service: Option<ServiceField>,
    #[serde(default)]
    error: Option<ErrorInfo>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    function: Option<String>,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    thread: Option<u64>,
    #[serde(default)]
    process: Option<u64>,
    #[serde(default)]
    exception: Option<Value>,
    #[serde(default)]
    extra: Option<Value>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ServiceField {
    Name(String),
    Full(Service),
}

/// Why a JSON value could not become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// `@timestamp` is present but not a time.
    #[error("field `@timestamp`: `{0}` is not an ISO 8601 time or epoch number")]
    BadTimestamp(String),
    /// `level` is not a known level.
    #[error("field `level`: {0}")]
    BadLevel(UnknownName),
    /// `kind` is not a known kind.
    #[error("field `kind`: {0}")]
    BadKind(UnknownName),
    /// `id` is not a usable id.
    #[error("field `id`: {0}")]
    BadId(String),
}

/// Longest accepted record id.
pub const MAX_ID_LEN: usize = 128;

impl RawRecord {
    fn into_record(self, now: DateTime<Utc>) -> Result<LogRecord, RecordError> {
        let timestamp = match self.timestamp {
            None | Some(Value::Null) => now,
            Some(Value::String(s)) => parse_timestamp(&s).ok_or(RecordError::BadTimestamp(s))?,
            Some(Value::Number(n)) => n
                .as_f64()
                .and_then(timestamp_from_epoch)
                .ok_or_else(|| RecordError::BadTimestamp(n.to_string()))?,
            Some(other) => return Err(RecordError::BadTimestamp(other.to_string())),
        };
        let level = match self.level {
            None => Level::Info,
            Some(name) => name.parse().map_err(RecordError::BadLevel)?,
        };
        let id = match self.id {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => return Err(RecordError::BadId(format!("`{other}` is not a string"))),
        };
        if id.len() > MAX_ID_LEN || id.chars().any(|c| c.is_control()) {
            return Err(RecordError::BadId(format!(
                "ids are at most {MAX_ID_LEN} bytes without control characters"
            )));
        }
        let message = match self.message {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
        };
        let service = match self.service {
            None => Service::default(),
            Some(ServiceField::Name(name)) => Service {
                name,
                ..Service::default()
            },
            Some(ServiceField::Full(service)) => service,
        };
        let exception = match self.exception {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
        };
        let mut extra = match self.extra {
            None | Some(Value::Null) => None,
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                let mut map = Map::new();
                map.insert("extra".to_string(), other);
                Some(map)
            }
        };
        if !self.rest.is_empty() {
            extra.get_or_insert_with(Map::new).extend(self.rest);
        }
        let mut record = LogRecord {
            id,
            timestamp,
            level,
            message,
            kind: Kind::Application,
            host: self.host,
            environment: self.environment,
            trace: self.trace,
            http: self.http,
            user: self.user,
            client: self.client,
            service,
            error: self.error,
            logger: self.name,
            function: self.function,
            line: self.line,
            file: self.file,
            module: self.module,
            thread: self.thread,
            process: self.process,
            exception,
            extra,
        };
        record.kind = match self.kind {
            Some(kind) => kind.parse().map_err(RecordError::BadKind)?,
            None => record.classify(),
        };
        Ok(record)
    }
}

impl LogRecord {
    /// Builds a record from a JSON object, with `now` as the time of a record that has none.
    pub fn from_json_value(value: Value, now: DateTime<Utc>) -> Result<LogRecord, String> {
        let raw: RawRecord = serde_json::from_value(value).map_err(|e| e.to_string())?;
        raw.into_record(now).map_err(|e| e.to_string())
    }

    /// Parses one JSON line into a record, with `now` as the time of a record that has none.
    pub fn from_json_slice(line: &[u8], now: DateTime<Utc>) -> Result<LogRecord, String> {
        let raw: RawRecord = serde_json::from_slice(line).map_err(|e| e.to_string())?;
        raw.into_record(now).map_err(|e| e.to_string())
    }
}

impl<'de> Deserialize<'de> for LogRecord {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawRecord::deserialize(deserializer)?;
        raw.into_record(Utc::now()).map_err(serde::de::Error::custom)
    }
}

impl Serialize for LogRecord {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        if !self.id.is_empty() {
            map.serialize_entry("id", &self.id)?;
        }
        map.serialize_entry("@timestamp", &format_timestamp(&self.timestamp))?;
        map.serialize_entry("level", &self.level)?;
        map.serialize_entry("message", &self.message)?;
        map.serialize_entry("kind", &self.kind)?;
        if let Some(host) = &self.host {
            map.serialize_entry("host", host)?;
        }
        if let Some(environment) = &self.environment {
            map.serialize_entry("environment", environment)?;
        }
        if let Some(trace) = &self.trace {
            map.serialize_entry("trace", trace)?;
        }
        if let Some(http) = &self.http {
            map.serialize_entry("http", http)?;
        }
        if let Some(user) = &self.user {
            map.serialize_entry("user", user)?;
        }
        if let Some(client) = &self.client {
            map.serialize_entry("client", client)?;
        }
        map.serialize_entry("service", &self.service)?;
        if let Some(error) = &self.error {
            map.serialize_entry("error", error)?;
        }
        if let Some(v) = &self.logger {
            map.serialize_entry("name", v)?;
        }
        if let Some(v) = &self.function {
            map.serialize_entry("function", v)?;
        }
        if let Some(v) = &self.line {
            map.serialize_entry("line", v)?;
        }
        if let Some(v) = &self.file {
            map.serialize_entry("file", v)?;
        }
        if let Some(v) = &self.module {
            map.serialize_entry("module", v)?;
        }
        if let Some(v) = &self.thread {
            map.serialize_entry("thread", v)?;
        }
        if let Some(v) = &self.process {
            map.serialize_entry("process", v)?;
        }
        if let Some(v) = &self.exception {
            map.serialize_entry("exception", v)?;
        }
        if let Some(v) = &self.extra {
            map.serialize_entry("extra", v)?;
        }
        map.end()
    }
}

/// The path of a request URL, the one reading every part of Owl uses (path rules of the log config,
/// the slow-request rule's exclusions, the index's path field): an absolute URL loses its scheme and
/// authority (`https://form.example.com/a?b` is `/a`, a bare host is `/`), and the query string and
/// fragment go.
pub fn url_path(url: &str) -> &str {
    let (rest, absolute) = match url.find("://") {
        Some(at) => {
            let authority_and_rest = &url[at + 3..];
            let end = authority_and_rest
                .find(['/', '?', '#'])
                .unwrap_or(authority_and_rest.len());
            (&authority_and_rest[end..], true)
        }
        None => (url, false),
    };
    let path = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    if absolute && path.is_empty() { "/" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_path_drops_scheme_authority_query_and_fragment() {
        for (url, path) in [
            ("/api/v1/forms?page=2", "/api/v1/forms"),
            ("/a#top", "/a"),
            ("/plain", "/plain"),
            ("https://form.example.com/api/v1/forms?x=1", "/api/v1/forms"),
            ("http://form.example.com:8080/api/v1/forms#top", "/api/v1/forms"),
            ("https://form.example.com", "/"),
            ("https://form.example.com?x=1", "/"),
            ("", ""),
            ("forms/list?x", "forms/list"),
        ] {
            assert_eq!(url_path(url), path, "{url}");
        }
    }

    fn now() -> DateTime<Utc> {
        parse_timestamp("2025-12-07T10:35:00Z").unwrap()
    }

    // The LogItem of the log API's GET /api/v1/logs/query example, verbatim.
    const SEED_003_QUERY_ITEM: &str = r#"{
        "@timestamp": "2025-12-07T10:30:00.123Z",
        "level": "ERROR",
        "message": "POST /api/v1/forms | 500 | 1234ms",
        "trace": { "id": "CN-1733580000000-a1b2c3d4", "span_id": "FORM-1733580000123-x1y2z3" },
        "http": { "request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms",
                  "status_code": 500, "duration_ms": 1234 },
        "user": { "id": "user-001", "name": "zhangsan" },
        "client": { "ip": "192.168.1.100", "user_agent": "Mozilla/5.0..." },
        "service": { "name": "Form", "region": "CN", "instance": "form-pod-1" },
        "error": { "type": "InternalServerError", "message": "Database connection failed" }
    }"#;

    // The error item of the log API's GET /api/v1/logs/errors example, verbatim.
    const SEED_003_ERROR_ITEM: &str = r#"{
        "@timestamp": "2025-12-07T10:30:00.123Z",
        "level": "ERROR",
        "message": "Database connection failed",
        "trace": { "id": "CN-1733580000000-a1b2c3d4" },
        "http": { "request_id": "1733580000123-abc", "method": "POST", "url": "/api/v1/forms",
                  "status_code": 500, "duration_ms": 1234 },
        "error": { "type": "DatabaseError", "code": "CONNECTION_REFUSED",
                   "message": "Failed to connect to database",
                   "stack": "Error: Failed to connect...\n    at ..." },
        "user": { "id": "user-001", "name": "zhangsan" }
    }"#;

    // The log item of the CRM analytics API's POST /api/analytics-monitoring/logs/query example, verbatim.
    const SEED_000_LOG: &str = r#"{
        "id": "507f1f77bcf86cd799439011",
        "timestamp": "2025-01-01T12:00:00",
        "level": "ERROR",
        "message": "用户登录失败：用户名或密码错误",
        "service": "foundation-service",
        "name": "foundation_service.api.v1.auth",
        "function": "login",
        "line": 45,
        "file": "/app/foundation_service/api/v1/auth.py",
        "module": "auth",
        "thread": 12345,
        "process": 1,
        "exception": null,
        "extra": null
    }"#;

    #[test]
    fn seed_003_query_item_parses_verbatim() {
        let record = LogRecord::from_json_slice(SEED_003_QUERY_ITEM.as_bytes(), now()).unwrap();
        assert_eq!(format_timestamp(&record.timestamp), "2025-12-07T10:30:00.123Z");
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.trace_id(), Some("CN-1733580000000-a1b2c3d4"));
        assert_eq!(
            record.trace.as_ref().unwrap().span_id.as_deref(),
            Some("FORM-1733580000123-x1y2z3")
        );
        let http = record.http.as_ref().unwrap();
        assert_eq!(http.status_code, Some(500));
        assert_eq!(http.duration_ms, Some(1234.0));
        assert_eq!(http.request_id.as_deref(), Some("1733580000123-abc"));
        assert_eq!(record.user.as_ref().unwrap().name.as_deref(), Some("zhangsan"));
        assert_eq!(
            record.client.as_ref().unwrap().ip.as_deref(),
            Some("192.168.1.100")
        );
        assert_eq!(record.service.name, "Form");
        assert_eq!(record.service.region.as_deref(), Some("CN"));
        assert_eq!(record.service.instance.as_deref(), Some("form-pod-1"));
        assert_eq!(
            record.error.as_ref().unwrap().error_type.as_deref(),
            Some("InternalServerError")
        );
        assert_eq!(record.kind, Kind::Error);
        assert!(record.extra.is_none());
    }

    #[test]
    fn seed_003_error_item_parses_verbatim() {
        let record = LogRecord::from_json_slice(SEED_003_ERROR_ITEM.as_bytes(), now()).unwrap();
        let error = record.error.as_ref().unwrap();
        assert_eq!(error.code.as_deref(), Some("CONNECTION_REFUSED"));
        assert!(
            error
                .stack
                .as_deref()
                .unwrap()
                .starts_with("Error: Failed to connect...")
        );
        assert_eq!(record.trace.as_ref().unwrap().span_id, None);
    }

    #[test]
    fn seed_000_log_parses_verbatim() {
        let record = LogRecord::from_json_slice(SEED_000_LOG.as_bytes(), now()).unwrap();
        assert_eq!(record.id, "507f1f77bcf86cd799439011");
        assert_eq!(format_timestamp(&record.timestamp), "2025-01-01T12:00:00.000Z");
        assert_eq!(record.message, "用户登录失败：用户名或密码错误");
        assert_eq!(record.service.name, "foundation-service");
        assert_eq!(record.logger.as_deref(), Some("foundation_service.api.v1.auth"));
        assert_eq!(record.function.as_deref(), Some("login"));
        assert_eq!(record.line, Some(45));
        assert_eq!(
            record.file.as_deref(),
            Some("/app/foundation_service/api/v1/auth.py")
        );
        assert_eq!(record.module.as_deref(), Some("auth"));
        assert_eq!(record.thread, Some(12345));
        assert_eq!(record.process, Some(1));
        assert_eq!(record.exception, None);
        assert_eq!(record.extra, None);
    }

    #[test]
    fn serialisation_round_trips() {
        for seed in [SEED_003_QUERY_ITEM, SEED_003_ERROR_ITEM, SEED_000_LOG] {
            let record = LogRecord::from_json_slice(seed.as_bytes(), now()).unwrap();
            let json = serde_json::to_vec(&record).unwrap();
            let again = LogRecord::from_json_slice(&json, now()).unwrap();
            assert_eq!(record, again);
        }
    }

    #[test]
    fn serialises_the_log_api_shape() {
        let record = LogRecord::from_json_slice(SEED_003_QUERY_ITEM.as_bytes(), now()).unwrap();
        let value = serde_json::to_value(&record).unwrap();
        assert_eq!(value["@timestamp"], "2025-12-07T10:30:00.123Z");
        assert_eq!(value["trace"]["id"], "CN-1733580000000-a1b2c3d4");
        assert_eq!(value["http"]["status_code"], 500);
        assert_eq!(value["service"]["name"], "Form");
        assert_eq!(value["error"]["type"], "InternalServerError");
        assert_eq!(value["kind"], "error");
    }

    #[test]
    fn unknown_keys_go_to_extra_and_defaults_apply() {
        let line = br#"{"message":"hello","tenant":"acme","extra":{"a":1}}"#;
        let record = LogRecord::from_json_slice(line, now()).unwrap();
        assert_eq!(record.timestamp, now());
        assert_eq!(record.level, Level::Info);
        assert_eq!(record.kind, Kind::Application);
        let extra = record.extra.unwrap();
        assert_eq!(extra["tenant"], "acme");
        assert_eq!(extra["a"], 1);
    }

    #[test]
    fn bad_fields_are_named() {
        let err = LogRecord::from_json_slice(br#"{"level":"LOUD"}"#, now()).unwrap_err();
        assert!(err.contains("level") && err.contains("LOUD"), "{err}");
        let err = LogRecord::from_json_slice(br#"{"@timestamp":"yesterday"}"#, now()).unwrap_err();
        assert!(err.contains("@timestamp") && err.contains("yesterday"), "{err}");
        let err = LogRecord::from_json_slice(br#"{"kind":"audit"}"#, now()).unwrap_err();
        assert!(err.contains("kind") && err.contains("audit"), "{err}");
        assert!(LogRecord::from_json_slice(b"[1,2]", now()).is_err());
        assert!(LogRecord::from_json_slice(b"{", now()).is_err());
    }

    #[test]
    fn levels_parse_with_aliases() {
        assert_eq!(Level::parse("warning"), Some(Level::Warn));
        assert_eq!(Level::parse("CRITICAL"), Some(Level::Error));
        assert_eq!(Level::parse("trace"), Some(Level::Debug));
        assert_eq!(Level::parse("nope"), None);
        assert!(Level::Debug < Level::Error);
        for level in Level::ALL {
            assert_eq!(Level::from_rank(level.rank()), Some(level));
        }
    }

    #[test]
    fn timestamps_parse_in_common_shapes() {
        let expect = parse_timestamp("2025-01-01T12:00:00Z").unwrap();
        for s in [
            "2025-01-01T12:00:00",
            "2025-01-01 12:00:00",
            "2025-01-01T20:00:00+08:00",
            "2025-01-01T12:00:00.000Z",
            "2025-01-01T12:00:00+0000",
        ] {
            assert_eq!(parse_timestamp(s), Some(expect), "{s}");
        }
        assert_eq!(timestamp_from_epoch(1735732800.0), Some(expect));
        assert_eq!(timestamp_from_epoch(1735732800000.0), Some(expect));
        assert_eq!(parse_timestamp("not a time"), None);
    }

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = LogRecord::derive_id(b"fp", 10);
        assert_eq!(a, LogRecord::derive_id(b"fp", 10));
        assert_ne!(a, LogRecord::derive_id(b"fp", 11));
        assert_eq!(a.len(), 32);
        // Ids the collector already holds: the derivation must never change.
        assert_eq!(a, "a99513e12c933a60f458d823f5d0ddb9");
        assert_eq!(
            LogRecord::derive_id(&[1; 16], 12345),
            "7c7b075d6f23d8f0b9ac7e58f89e6d2b"
        );
        assert_eq!(
            LogRecord::derive_id(&[7; 100], u64::MAX),
            "2ffee365c4601a6dc62052c2ce1fdb4c"
        );
    }

    proptest::proptest! {
        #[test]
        fn derived_ids_follow_their_definition(
            source in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            position in proptest::num::u64::ANY,
        ) {
            let mut bytes = source.clone();
            bytes.extend_from_slice(&position.to_le_bytes());
            let expected = format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes));
            proptest::prop_assert_eq!(LogRecord::derive_id(&source, position), expected);
        }

        #[test]
        fn parser_survives_garbage(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = LogRecord::from_json_slice(&bytes, now());
        }
    }
}
