//! The common field names of structured logs and where they go in the record model.
//!
//! JSON lines and named regex captures go through the same table, so `ts`, `time`,
//! `@timestamp`, `asctime` all become the record's time, `msg`, `message`, structlog's `event`
//! and Docker's `log` its message, `traceId`, `trace_id`, `trace.id` its trace id, and so on
//! (Elastic Common Schema's dotted and nested names included). The first key that fills a field
//! wins; a later alias, and every key the table does not know, is kept in `extra` under its own
//! name. Values of the wrong type (a `status` that is not a number) are kept in `extra` too:
//! nothing a log line says is dropped.

use std::borrow::Cow;
use std::collections::HashMap;

use chrono::{DateTime, Datelike, NaiveDateTime, Utc};
use owl_model::{ErrorInfo, Http, Kind, Level, LogRecord, Trace, parse_timestamp, timestamp_from_epoch};
use serde_json::{Map, Number, Value};

/// A value as found in the log line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
    Json(Value),
}

impl Scalar {
    pub(crate) fn into_value(self) -> Value {
        match self {
            Scalar::Str(s) => Value::String(s),
            Scalar::Num(n) => Value::Number(n),
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::Null => Value::Null,
            Scalar::Json(v) => v,
        }
    }

    fn from_value(value: Value) -> Scalar {
        match value {
            Value::String(s) => Scalar::Str(s),
            Value::Number(n) => Scalar::Num(n),
            Value::Bool(b) => Scalar::Bool(b),
            Value::Null => Scalar::Null,
            other => Scalar::Json(other),
        }
    }

    /// Text of a string (moved out, no copy), number or bool.
    fn take_text(&mut self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(std::mem::take(s)),
            other => other.text(),
        }
    }

    /// Text of a string, number or bool.
    fn text(&self) -> Option<String> {
        match self {
            Scalar::Str(s) => Some(s.clone()),
            Scalar::Num(n) => Some(n.to_string()),
            Scalar::Bool(b) => Some(b.to_string()),
            Scalar::Null | Scalar::Json(_) => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Scalar::Num(n) => n.as_f64(),
            Scalar::Str(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            _ => None,
        }
    }

    fn unsigned(&self) -> Option<u64> {
        match self {
            Scalar::Num(n) => n.as_u64(),
            Scalar::Str(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }
    }
}

/// A value whose objects are kept as their members in order: the objects of namespace keys
/// (`http`, `trace`, ...) are routed member by member, and building a `Value` map (hashing every
/// member name) just to take it apart again was the largest single cost of parsing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'a> {
    Scalar(Scalar),
    Object(Members<'a>),
}

impl Node<'_> {
    /// The value as [`Builder::set_target`] takes it (an object becomes a `Value` map).
    pub(crate) fn into_scalar(self) -> Scalar {
        match self {
            Node::Scalar(scalar) => scalar,
            Node::Object(members) => Scalar::Json(Value::Object(members.into_map())),
        }
    }

    fn into_value(self) -> Value {
        match self {
            Node::Scalar(scalar) => scalar.into_value(),
            Node::Object(members) => Value::Object(members.into_map()),
        }
    }
}

/// Object members with JSON-map semantics: a repeated name keeps its first position and takes
/// the last value (what `serde_json::Map` does), so routing members gives what routing the map
/// would.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Members<'a> {
    list: Vec<(Cow<'a, str>, Node<'a>)>,
    /// Positions by name, built only for large objects (small ones are searched in order).
    index: Option<HashMap<Cow<'a, str>, usize>>,
}

/// Up to this many members a linear search for a repeated name is cheaper than hashing.
const LINEAR_MEMBERS: usize = 16;

impl<'a> Members<'a> {
    pub(crate) fn insert(&mut self, name: Cow<'a, str>, value: Node<'a>) {
        let found = match &self.index {
            Some(index) => index.get(&name).copied(),
            None => self.list.iter().position(|(n, _)| *n == name),
        };
        if let Some(at) = found {
            self.list[at].1 = value;
            return;
        }
        if let Some(index) = &mut self.index {
            index.insert(name.clone(), self.list.len());
        } else if self.list.len() == LINEAR_MEMBERS {
            let mut index: HashMap<Cow<'a, str>, usize> = self
                .list
                .iter()
                .enumerate()
                .map(|(at, (n, _))| (n.clone(), at))
                .collect();
            index.insert(name.clone(), self.list.len());
            self.index = Some(index);
        }
        self.list.push((name, value));
    }

    fn into_map(self) -> Map<String, Value> {
        self.list
            .into_iter()
            .map(|(name, node)| (name.into_owned(), node.into_value()))
            .collect()
    }
}

/// `prefix.member` into `path` (reused, so a namespace's members cost no allocation each).
fn member_path(path: &mut String, prefix: &str, member: &str) {
    path.clear();
    path.push_str(prefix);
    path.push('.');
    path.push_str(member);
}

/// Where a key's value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Timestamp,
    Level,
    Message,
    TraceId,
    SpanId,
    ParentSpanId,
    RequestId,
    Method,
    Url,
    /// `path`: an URL only when the record also has a method or status.
    WeakUrl,
    Status,
    DurationMs,
    DurationS,
    DurationUs,
    DurationNs,
    UserId,
    UserName,
    ClientIp,
    UserAgent,
    ServiceName,
    Region,
    Instance,
    Host,
    Environment,
    Kind,
    ErrorType,
    ErrorMessage,
    ErrorCode,
    ErrorStack,
    Logger,
    Function,
    Line,
    File,
    Module,
    Thread,
    Process,
    Exception,
    Extra,
    /// An object whose members are looked up as `key.member`; a plain value goes to the target.
    Namespace(&'static str, Option<&'static Target>),
    Unknown,
}

/// The target of a key (exact, case-sensitive names as logging libraries write them).
pub(crate) fn target_of(key: &str) -> Target {
    use Target::*;
    match key {
        "@timestamp" | "timestamp" | "time" | "ts" | "datetime" | "asctime" | "created" | "@t"
        | "Timestamp" => Timestamp,
        "level" | "severity" | "levelname" | "lvl" | "loglevel" | "log_level" | "log.level" | "@l"
        | "Level" | "severity_text" => Level,
        "message" | "msg" | "@m" | "Message" | "log.message" => Message,
        "trace_id" | "traceId" | "traceid" | "traceID" | "trace.id" | "otelTraceID" | "x_trace_id" => TraceId,
        "span_id" | "spanId" | "spanID" | "span.id" | "trace.span_id" | "otelSpanID" => SpanId,
        "parent_span_id" | "parentSpanId" | "parent_id" | "trace.parent_span_id" | "span.parent_id" => {
            ParentSpanId
        }
        "request_id" | "requestId" | "req_id" | "reqId" | "x_request_id" | "http.request_id"
        | "http.request.id" => RequestId,
        "method" | "http_method" | "request_method" | "http.method" | "http.request.method" => Method,
        "uri" | "request_uri" | "http.url" | "url.path" | "url.original" | "http.target" | "http.path" => Url,
        "path" | "request_path" => WeakUrl,
        "status"
        | "status_code"
        | "statusCode"
        | "http_status"
        | "http.status_code"
        | "http.response.status_code"
        | "http.status" => Status,
        "duration_ms" | "elapsed_ms" | "latency_ms" | "response_time_ms" | "took_ms" | "time_ms"
        | "durationMs" | "responseTime" | "http.duration_ms" => DurationMs,
        "request_time" | "duration_s" | "elapsed_s" | "latency_s" => DurationS,
        "duration_us" => DurationUs,
        "duration_ns" | "event.duration" => DurationNs,
        "user_id" | "userId" | "uid" | "user.id" | "usr.id" => UserId,
        "user_name" | "username" | "userName" | "user.name" | "usr.name" => UserName,
        "client_ip" | "clientIp" | "remote_addr" | "remote_ip" | "ip" | "client.ip" | "source.ip"
        | "http.client_ip" => ClientIp,
        "userAgent" | "http_user_agent" | "user_agent.original" | "client.user_agent" | "http.user_agent" => {
            UserAgent
        }
        "service_name" | "serviceName" | "service.name" | "app" => ServiceName,
        "region" | "service.region" => Region,
        "instance" | "service.instance" | "pod" | "pod_name" | "service.instance.id" => Instance,
        "hostname" | "host.name" | "host.hostname" => Host,
        "environment" | "env" | "service.environment" | "deployment.environment" => Environment,
        "kind" => Kind,
        "error_type" | "error.type" | "error.kind" | "exc_type" | "err.type" | "error.error_type" => {
            ErrorType
        }
        "error_message" | "error.message" | "err.message" | "error.msg" => ErrorMessage,
        "error_code" | "error.code" | "err.code" => ErrorCode,
        "stack" | "stack_trace" | "stacktrace" | "error.stack" | "error.stack_trace" | "err.stack" => {
            ErrorStack
        }
        "name" | "logger" | "logger_name" | "loggerName" | "log.logger" => Logger,
        "function" | "funcName" | "func" | "log.origin.function" => Function,
        "line" | "lineno" | "lineNumber" | "log.origin.file.line" => Line,
        "file" | "filename" | "pathname" | "log.origin.file.name" => File,
        "module" => Module,
        "thread" | "thread_id" | "threadId" => Thread,
        "pid" | "process_id" | "process.pid" => Process,
        "exception" | "exc_info" | "exc_text" | "traceback" => Exception,
        "extra" => Extra,
        "trace" => Namespace("trace", Some(&TraceId)),
        "span" => Namespace("span", Some(&SpanId)),
        "http" => Namespace("http", None),
        "http.request" => Namespace("http.request", None),
        "http.response" => Namespace("http.response", None),
        "user" | "usr" => Namespace("user", Some(&UserName)),
        "client" => Namespace("client", Some(&ClientIp)),
        "source" => Namespace("source", None),
        "service" => Namespace("service", Some(&ServiceName)),
        "error" | "err" => Namespace("error", Some(&ErrorMessage)),
        "log" => Namespace("log", Some(&Message)),
        "log.origin" => Namespace("log.origin", None),
        "log.origin.file" => Namespace("log.origin.file", Some(&File)),
        "url" => Namespace("url", Some(&Url)),
        "host" => Namespace("host", Some(&Host)),
        "event" => Namespace("event", Some(&Message)),
        "user_agent" => Namespace("user_agent", Some(&UserAgent)),
        "process" => Namespace("process", Some(&Process)),
        "deployment" => Namespace("deployment", None),
        _ => Unknown,
    }
}

/// Parses the time formats found in logs: ISO 8601 / RFC 3339 (zone optional, `T` or space),
/// Python's `asctime` (`2025-01-01 12:00:00,123`), nginx's `10/Oct/2025:13:55:36 +0800`,
/// `2025/01/01 12:00:00`, and epoch seconds or milliseconds. Times without a zone are UTC.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(ts) = parse_timestamp(text) {
        return Some(ts);
    }
    let bytes = text.as_bytes();
    if bytes.len() > 20 && bytes[19] == b',' {
        let mut fixed = text.to_string();
        fixed.replace_range(19..20, ".");
        if let Some(ts) = parse_timestamp(&fixed) {
            return Some(ts);
        }
    }
    for format in ["%d/%b/%Y:%H:%M:%S %z", "%d/%b/%Y:%H:%M:%S%.f %z"] {
        if let Ok(ts) = DateTime::parse_from_str(text, format) {
            return Some(ts.with_timezone(&Utc));
        }
    }
    for format in ["%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M:%S"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Some(naive.and_utc());
        }
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return text.parse::<f64>().ok().and_then(timestamp_from_epoch);
    }
    None
}

/// A level from a name or a number (syslog severities 0 to 7, pino/bunyan levels 10 to 60).
fn parse_level(value: &Scalar) -> Option<Level> {
    match value {
        Scalar::Str(s) => Level::parse(s),
        Scalar::Num(n) => {
            let n = n.as_f64()?;
            Some(if n <= 7.0 {
                match n as u64 {
                    0..=3 => Level::Error,
                    4 => Level::Warn,
                    5 | 6 => Level::Info,
                    _ => Level::Debug,
                }
            } else if n >= 50.0 {
                Level::Error
            } else if n >= 40.0 {
                Level::Warn
            } else if n >= 30.0 {
                Level::Info
            } else {
                Level::Debug
            })
        }
        _ => None,
    }
}

/// Collects fields into a record.
#[derive(Default)]
pub(crate) struct Builder {
    pub(crate) record: LogRecord,
    timestamp: Option<DateTime<Utc>>,
    level: Option<Level>,
    message: Option<String>,
    kind: Option<Kind>,
    weak_url: Option<String>,
    extra: Map<String, Value>,
    /// The level when the text names none (before one derived from an HTTP status).
    pub(crate) default_level: Option<Level>,
}

fn put_str(slot: &mut Option<String>, value: &mut Scalar) -> bool {
    if slot.is_some() || matches!(value, Scalar::Null | Scalar::Json(_)) {
        return false;
    }
    match value.take_text() {
        Some(text) => {
            *slot = Some(text);
            true
        }
        None => false,
    }
}

fn put_u64(slot: &mut Option<u64>, value: &Scalar) -> bool {
    if slot.is_some() {
        return false;
    }
    match value.unsigned() {
        Some(n) => {
            *slot = Some(n);
            true
        }
        None => false,
    }
}

impl Builder {
    pub(crate) fn new() -> Builder {
        Builder::default()
    }

    /// Sets the field a key maps to.
    pub(crate) fn set(&mut self, key: &str, value: Scalar) {
        self.set_target(target_of(key), key, value);
    }

    fn http(&mut self) -> &mut Http {
        self.record.http.get_or_insert_with(Http::default)
    }

    fn trace(&mut self) -> &mut Trace {
        self.record.trace.get_or_insert_with(Trace::default)
    }

    fn error(&mut self) -> &mut ErrorInfo {
        self.record.error.get_or_insert_with(ErrorInfo::default)
    }

    fn duration(&mut self, value: &Scalar, factor_to_ms: f64) -> bool {
        let Some(n) = value.number().filter(|n| *n >= 0.0) else {
            return false;
        };
        let http = self.http();
        if http.duration_ms.is_some() {
            return false;
        }
        // Microsecond precision: `0.042` seconds is 42 ms, not 42.00000000000001.
        http.duration_ms = Some((n * factor_to_ms * 1000.0).round() / 1000.0);
        true
    }

    /// Sets a field by target from a value whose objects were kept as members: a namespace's
    /// object is routed member by member, exactly as [`Builder::set_target`] routes its map.
    pub(crate) fn set_node(&mut self, target: Target, key: &str, node: Node<'_>) {
        match (target, node) {
            (Target::Namespace(prefix, _), Node::Object(members)) => {
                let mut path = String::with_capacity(prefix.len() + 24);
                for (member, value) in members.list {
                    member_path(&mut path, prefix, &member);
                    self.set_node(target_of(&path), &path, value);
                }
            }
            (target, node) => self.set_target(target, key, node.into_scalar()),
        }
    }

    /// Sets a field by target; `key` names it in `extra` when it cannot be used.
    pub(crate) fn set_target(&mut self, target: Target, key: &str, mut value: Scalar) {
        let used = match target {
            Target::Timestamp => {
                let ts = match &value {
                    Scalar::Str(s) => parse_time(s),
                    Scalar::Num(n) => n.as_f64().and_then(timestamp_from_epoch),
                    _ => None,
                };
                // Only times every reader of the record can parse back (four-digit years).
                let ts = ts.filter(|t| (1..=9999).contains(&t.year()));
                match ts {
                    Some(ts) if self.timestamp.is_none() => {
                        self.timestamp = Some(ts);
                        true
                    }
                    _ => false,
                }
            }
            Target::Level => match parse_level(&value) {
                Some(level) if self.level.is_none() => {
                    self.level = Some(level);
                    true
                }
                _ => false,
            },
            Target::Message => match &value {
                Scalar::Str(_) | Scalar::Num(_) | Scalar::Bool(_) if self.message.is_none() => {
                    self.message = value.take_text();
                    true
                }
                _ => false,
            },
            Target::TraceId => {
                let free = self.record.trace.as_ref().is_none_or(|t| t.id.is_empty());
                let non_empty =
                    matches!(&value, Scalar::Str(s) if !s.is_empty()) || matches!(value, Scalar::Num(_));
                if free && non_empty {
                    let id = value.take_text().expect("a string or number has text");
                    self.trace().id = id;
                    true
                } else {
                    false
                }
            }
            Target::SpanId => put_str(&mut self.trace().span_id, &mut value),
            Target::ParentSpanId => put_str(&mut self.trace().parent_span_id, &mut value),
            Target::RequestId => put_str(&mut self.http().request_id, &mut value),
            Target::Method => put_str(&mut self.http().method, &mut value),
            Target::Url => put_str(&mut self.http().url, &mut value),
            Target::WeakUrl => put_str(&mut self.weak_url, &mut value),
            Target::Status => match value.unsigned() {
                Some(code @ 100..=599) if self.http().status_code.is_none() => {
                    self.http().status_code = Some(code as u16);
                    true
                }
                _ => false,
            },
            Target::DurationMs => self.duration(&value, 1.0),
            Target::DurationS => self.duration(&value, 1000.0),
            Target::DurationUs => self.duration(&value, 0.001),
            Target::DurationNs => self.duration(&value, 0.000_001),
            Target::UserId => put_str(
                &mut self.record.user.get_or_insert_with(Default::default).id,
                &mut value,
            ),
            Target::UserName => put_str(
                &mut self.record.user.get_or_insert_with(Default::default).name,
                &mut value,
            ),
            Target::ClientIp => put_str(
                &mut self.record.client.get_or_insert_with(Default::default).ip,
                &mut value,
            ),
            Target::UserAgent => put_str(
                &mut self.record.client.get_or_insert_with(Default::default).user_agent,
                &mut value,
            ),
            Target::ServiceName => {
                let non_empty =
                    matches!(&value, Scalar::Str(s) if !s.is_empty()) || matches!(value, Scalar::Num(_));
                if self.record.service.name.is_empty() && non_empty {
                    self.record.service.name = value.take_text().expect("a string or number has text");
                    true
                } else {
                    false
                }
            }
            Target::Region => put_str(&mut self.record.service.region, &mut value),
            Target::Instance => put_str(&mut self.record.service.instance, &mut value),
            Target::Host => put_str(&mut self.record.host, &mut value),
            Target::Environment => put_str(&mut self.record.environment, &mut value),
            Target::Kind => match value.text().and_then(|k| k.parse::<Kind>().ok()) {
                Some(kind) if self.kind.is_none() => {
                    self.kind = Some(kind);
                    true
                }
                _ => false,
            },
            Target::ErrorType => put_str(&mut self.error().error_type, &mut value),
            Target::ErrorMessage => put_str(&mut self.error().message, &mut value),
            Target::ErrorCode => put_str(&mut self.error().code, &mut value),
            Target::ErrorStack => put_str(&mut self.error().stack, &mut value),
            Target::Logger => put_str(&mut self.record.logger, &mut value),
            Target::Function => put_str(&mut self.record.function, &mut value),
            Target::Line => put_u64(&mut self.record.line, &value),
            Target::File => put_str(&mut self.record.file, &mut value),
            Target::Module => put_str(&mut self.record.module, &mut value),
            Target::Thread => put_u64(&mut self.record.thread, &value),
            Target::Process => put_u64(&mut self.record.process, &value),
            Target::Exception => match value {
                Scalar::Null => true,
                Scalar::Bool(_) => false,
                ref other if self.record.exception.is_none() => {
                    self.record.exception = Some(match other {
                        Scalar::Str(s) => s.clone(),
                        other => other.clone().into_value().to_string(),
                    });
                    true
                }
                _ => false,
            },
            Target::Extra => {
                match value {
                    Scalar::Null => {}
                    Scalar::Json(Value::Object(map)) => {
                        for (k, v) in map {
                            self.extra.entry(k).or_insert(v);
                        }
                    }
                    other => self.keep(key, other),
                }
                return;
            }
            Target::Namespace(prefix, fallback) => {
                match value {
                    Scalar::Json(Value::Object(map)) => {
                        let mut path = String::with_capacity(prefix.len() + 24);
                        for (member, v) in map {
                            member_path(&mut path, prefix, &member);
                            self.set_target(target_of(&path), &path, Scalar::from_value(v));
                        }
                    }
                    Scalar::Null => {}
                    other => match fallback {
                        Some(t) => self.set_target(*t, key, other),
                        None => self.keep(key, other),
                    },
                }
                return;
            }
            Target::Unknown => false,
        };
        if !used {
            self.keep(key, value);
        }
    }

    /// Keeps a value in `extra`.
    pub(crate) fn keep(&mut self, key: &str, value: Scalar) {
        if matches!(value, Scalar::Null) {
            return;
        }
        self.extra
            .entry(key.to_string())
            .or_insert_with(|| value.into_value());
    }

    /// Sets the message outright (parsers that know it).
    pub(crate) fn set_message(&mut self, message: String) {
        self.message = Some(message);
    }

    /// Sets the level outright.
    pub(crate) fn set_level(&mut self, level: Level) {
        self.level = Some(level);
    }

    /// Completes the record; `now` is the time of a record that has none.
    pub(crate) fn finish(mut self, now: DateTime<Utc>) -> LogRecord {
        if let Some(url) = self.weak_url.take() {
            let is_http = self
                .record
                .http
                .as_ref()
                .is_some_and(|h| h.method.is_some() || h.status_code.is_some());
            if is_http && self.record.http.as_ref().is_some_and(|h| h.url.is_none()) {
                self.http().url = Some(url);
            } else {
                self.extra.entry("path".to_string()).or_insert(Value::String(url));
            }
        }
        let mut record = self.record;
        if record.trace.as_ref().is_some_and(|t| t.id.is_empty()) {
            // A span id without a trace id is kept, not dropped.
            let trace = record.trace.take().expect("checked just above");
            if let Some(span) = trace.span_id {
                self.extra.insert("span_id".to_string(), Value::String(span));
            }
            if let Some(parent) = trace.parent_span_id {
                self.extra
                    .insert("parent_span_id".to_string(), Value::String(parent));
            }
        }
        record.timestamp = self.timestamp.unwrap_or(now);
        // Without a level, an access record's status says how bad it went.
        record.level = self.level.or(self.default_level).unwrap_or(
            match record.http.as_ref().and_then(|h| h.status_code) {
                Some(500..) => Level::Error,
                Some(400..=499) => Level::Warn,
                _ => Level::Info,
            },
        );
        record.message = match self.message {
            Some(message) => message,
            None => match &record.http {
                Some(http) if http.method.is_some() || http.url.is_some() => http_message(http),
                _ => record
                    .error
                    .as_ref()
                    .and_then(|e| e.message.clone())
                    .unwrap_or_default(),
            },
        };
        if !self.extra.is_empty() {
            record.extra = Some(self.extra);
        }
        record.kind = match self.kind {
            Some(kind) => kind,
            None => record.classify(),
        };
        record
    }
}

/// The log API access message: `POST /api/v1/forms | 500 | 1234ms`.
pub(crate) fn http_message(http: &Http) -> String {
    let mut message = String::new();
    if let Some(method) = &http.method {
        message.push_str(method);
        message.push(' ');
    }
    message.push_str(http.url.as_deref().unwrap_or("-"));
    if let Some(status) = http.status_code {
        message.push_str(&format!(" | {status}"));
    }
    if let Some(ms) = http.duration_ms {
        message.push_str(&format!(" | {}ms", ms.round() as u64));
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Scalar {
        Scalar::Str(text.to_string())
    }

    #[test]
    fn times_in_common_shapes() {
        let expect = parse_timestamp("2025-01-01T12:00:00.123Z").unwrap();
        for text in [
            "2025-01-01T12:00:00.123Z",
            "2025-01-01 12:00:00,123",
            "2025-01-01 12:00:00.123",
            "01/Jan/2025:20:00:00.123 +0800",
            "2025/01/01 12:00:00.123",
            "1735732800.123",
            "1735732800123",
        ] {
            assert_eq!(parse_time(text), Some(expect), "{text}");
        }
        assert_eq!(
            parse_time("01/Jan/2025:20:00:00 +0800"),
            parse_timestamp("2025-01-01T12:00:00Z")
        );
        assert_eq!(parse_time("soon"), None);
    }

    #[test]
    fn first_alias_wins_and_the_rest_is_kept() {
        let mut b = Builder::new();
        b.set("msg", s("first"));
        b.set("message", s("second"));
        b.set("status", s("ok"));
        b.set("tenant", s("acme"));
        let record = b.finish(Utc::now());
        assert_eq!(record.message, "first");
        let extra = record.extra.unwrap();
        assert_eq!(extra["message"], "second");
        assert_eq!(extra["status"], "ok");
        assert_eq!(extra["tenant"], "acme");
    }

    #[test]
    fn levels_by_name_and_number() {
        for (value, level) in [
            (s("warning"), Level::Warn),
            (Scalar::Num(50.into()), Level::Error),
            (Scalar::Num(30.into()), Level::Info),
            (Scalar::Num(3.into()), Level::Error),
            (Scalar::Num(7.into()), Level::Debug),
        ] {
            let mut b = Builder::new();
            b.set("level", value);
            assert_eq!(b.finish(Utc::now()).level, level);
        }
    }

    #[test]
    fn path_is_an_url_only_for_http_records() {
        let mut b = Builder::new();
        b.set("path", s("/data/x"));
        let record = b.finish(Utc::now());
        assert!(record.http.is_none());
        assert_eq!(record.extra.unwrap()["path"], "/data/x");
        assert_eq!(record.kind, Kind::Application);

        let mut b = Builder::new();
        b.set("path", s("/api/x"));
        b.set("method", s("GET"));
        b.set("status", Scalar::Num(200.into()));
        b.set("duration_ms", Scalar::Num(Number::from_f64(12.4).unwrap()));
        let record = b.finish(Utc::now());
        assert_eq!(record.message, "GET /api/x | 200 | 12ms");
        assert_eq!(record.kind, Kind::Http);

        let mut b = Builder::new();
        b.set("url", s("/api/x"));
        b.set("status", Scalar::Num(503.into()));
        let record = b.finish(Utc::now());
        assert_eq!(record.level, Level::Error);
        assert_eq!(record.kind, Kind::Error);
    }
}
