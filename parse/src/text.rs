//! Text formats: Python `logging`, nginx/Apache access logs, user regexes, plain lines.
//!
//! Python formats recognised (first match wins):
//! - the CRM services' format, which carries every logger field of the CRM analytics API log items:
//!   `%(asctime)s - %(name)s - %(levelname)s - [%(process)d:%(thread)d] %(pathname)s:%(lineno)d %(module)s.%(funcName)s - %(message)s`
//!   e.g. `2025-01-01 12:00:00,123 - foundation_service.api.v1.auth - ERROR - [1:12345] /app/foundation_service/api/v1/auth.py:45 auth.login - 用户登录失败`;
//! - the logging cookbook's `%(asctime)s - %(name)s - %(levelname)s - %(message)s`;
//! - `%(asctime)s [%(levelname)s] %(name)s: %(message)s`;
//! - loguru's default `{time} | {level: <8} | {name}:{function}:{line} - {message}`;
//! - `logging.basicConfig()`'s default `%(levelname)s:%(name)s:%(message)s`.
//!
//! Access logs: the combined format `$remote_addr - $remote_user [$time_local] "$request" $status
//! $body_bytes_sent "$http_referer" "$http_user_agent"` (Apache's common format, without the last
//! two, too), optionally followed by a request time: `rt=` or `request_time=` in seconds, a bare
//! decimal number in seconds (nginx `$request_time`) or a bare integer in microseconds (Apache
//! `%D`).

use std::sync::LazyLock;

use owl_model::Level;
use regex::Regex;

use super::fields::{Builder, Scalar, Target};

const TS: &str = r"(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)";
const LEVEL: &str = r"(?P<level>DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE|NOTSET)";

static PYTHON: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    [
        format!(
            r"^{TS} - (?P<name>\S+) - {LEVEL} - \[(?P<process>\d+):(?P<thread>\d+)\] (?P<file>\S+):(?P<line>\d+) (?P<module>[^\s.]+)\.(?P<function>\S+) - (?P<message>.*)$"
        ),
        format!(r"^{TS} - (?P<name>\S+) - {LEVEL} - (?P<message>.*)$"),
        format!(r"^{TS} \[{LEVEL}\] (?P<name>[^\s:]+): (?P<message>.*)$"),
        format!(
            r"^{TS} \| {LEVEL}\s*\| (?P<module>[^\s:]+):(?P<function>[^\s:]+):(?P<line>\d+) - (?P<message>.*)$"
        ),
        format!(r"^{LEVEL}:(?P<name>[^:\s]*):(?P<message>.*)$"),
    ]
    .iter()
    .map(|p| Regex::new(p).expect("built-in python patterns are valid"))
    .collect()
});

static COMBINED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"^(?P<ip>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]]+)\] "(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+|-)(?: "(?P<referer>(?:[^"\\]|\\.)*)" "(?P<ua>(?:[^"\\]|\\.)*)")?(?P<rest>.*)$"#,
    )
    .expect("built-in access log pattern is valid")
});

static REQUEST_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|\s)(?:rt|request_time)=(?P<s>\d+(?:\.\d+)?)").expect("built-in pattern is valid")
});

static LEADING_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[?(?P<ts>\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?)\]?")
        .expect("built-in pattern is valid")
});

fn set_captures(builder: &mut Builder, re: &Regex, caps: &regex::Captures<'_>) {
    for name in re.capture_names().flatten() {
        let Some(m) = caps.name(name) else { continue };
        match name {
            "ts" => builder.set_target(
                Target::Timestamp,
                "timestamp",
                Scalar::Str(m.as_str().to_string()),
            ),
            "level" => builder.set_target(Target::Level, "level", Scalar::Str(m.as_str().to_string())),
            "name" => builder.set_target(Target::Logger, "name", Scalar::Str(m.as_str().to_string())),
            "message" => builder.set_message(m.as_str().to_string()),
            other => builder.set(other, Scalar::Str(m.as_str().to_string())),
        }
    }
}

/// Python `logging` formats; `false` if the line is none of them.
pub(crate) fn parse_python(line: &str, builder: &mut Builder) -> bool {
    let candidates: &[Regex] = if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        &PYTHON[..4]
    } else {
        &PYTHON[4..]
    };
    for re in candidates {
        if let Some(caps) = re.captures(line) {
            set_captures(builder, re, &caps);
            return true;
        }
    }
    false
}

/// nginx/Apache combined or common access log line; `false` if it is not one.
pub(crate) fn parse_combined(line: &str, builder: &mut Builder) -> bool {
    let Some(caps) = COMBINED.captures(line) else {
        return false;
    };
    let text = |name: &str| {
        caps.name(name)
            .map(|m| m.as_str())
            .filter(|s| !s.is_empty() && *s != "-")
    };
    builder.set_target(
        Target::ClientIp,
        "remote_addr",
        Scalar::Str(caps["ip"].to_string()),
    );
    if let Some(user) = text("user") {
        builder.set_target(Target::UserName, "remote_user", Scalar::Str(user.to_string()));
    }
    builder.set_target(
        Target::Timestamp,
        "time_local",
        Scalar::Str(caps["time"].to_string()),
    );
    let request = &caps["request"];
    let mut parts = request.split(' ');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(method), Some(url), protocol)
            if !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase()) =>
        {
            builder.set_target(Target::Method, "method", Scalar::Str(method.to_string()));
            builder.set_target(Target::Url, "url", Scalar::Str(url.to_string()));
            if let Some(protocol) = protocol {
                builder.keep("protocol", Scalar::Str(protocol.to_string()));
            }
        }
        _ => builder.keep("request", Scalar::Str(request.to_string())),
    }
    let status: u64 = caps["status"].parse().expect("three digits");
    builder.set_target(Target::Status, "status", Scalar::Num(status.into()));
    if let Some(bytes) = text("bytes").and_then(|b| b.parse::<u64>().ok()) {
        builder.keep("body_bytes_sent", Scalar::Num(bytes.into()));
    }
    if let Some(referer) = text("referer") {
        builder.keep("referer", Scalar::Str(referer.to_string()));
    }
    if let Some(ua) = text("ua") {
        builder.set_target(Target::UserAgent, "user_agent", Scalar::Str(ua.to_string()));
    }
    let rest = caps.name("rest").map_or("", |m| m.as_str()).trim();
    if !rest.is_empty() {
        let seconds = REQUEST_TIME
            .captures(rest)
            .and_then(|c| c["s"].parse::<f64>().ok());
        let duration_ms = seconds.map(|s| s * 1000.0).or_else(|| {
            let first = rest.split_whitespace().next()?;
            if first.contains('.') {
                first.parse::<f64>().ok().map(|s| s * 1000.0)
            } else {
                first.parse::<u64>().ok().map(|us| us as f64 / 1000.0)
            }
        });
        if let Some(ms) = duration_ms {
            builder.set_target(
                Target::DurationMs,
                "request_time",
                Scalar::Num(serde_json::Number::from_f64(ms).unwrap_or_else(|| 0.into())),
            );
        }
        builder.keep("log_tail", Scalar::Str(rest.to_string()));
    }
    builder.set_level(match status {
        500.. => Level::Error,
        400..=499 => Level::Warn,
        _ => Level::Info,
    });
    true
}

/// A user regex with named captures; `false` if it does not match.
pub(crate) fn parse_regex(re: &Regex, line: &str, builder: &mut Builder) -> bool {
    let Some(caps) = re.captures(line) else {
        return false;
    };
    for name in re.capture_names().flatten() {
        if let Some(m) = caps.name(name) {
            builder.set(name, Scalar::Str(m.as_str().to_string()));
        }
    }
    true
}

/// A plain line: the message is the line; a leading timestamp and a level word near the start
/// are picked up when present.
pub(crate) fn parse_plain(line: &str, builder: &mut Builder) {
    if let Some(caps) = LEADING_TIME.captures(line) {
        builder.set_target(
            Target::Timestamp,
            "timestamp",
            Scalar::Str(caps["ts"].to_string()),
        );
    }
    if let Some(level) = sniff_level(line) {
        builder.set_level(level);
    }
    builder.set_message(line.to_string());
}

/// A level word (`ERROR`, `WARN`, `[info]`, ...) among the first words of a line.
fn sniff_level(line: &str) -> Option<Level> {
    let head = match line.char_indices().nth(80) {
        Some((end, _)) => &line[..end],
        None => line,
    };
    head.split(|c: char| !c.is_ascii_alphabetic())
        .filter(|w| (4..=8).contains(&w.len()))
        .take(8)
        .find_map(|word| {
            let upper = word.bytes().all(|b| b.is_ascii_uppercase());
            let bracketed = head.contains(&format!("[{word}]"));
            if upper || bracketed {
                level_word(word)
            } else {
                None
            }
        })
}

fn level_word(word: &str) -> Option<Level> {
    match word.to_ascii_uppercase().as_str() {
        "ERROR" | "FATAL" | "CRITICAL" | "PANIC" => Some(Level::Error),
        "WARN" | "WARNING" => Some(Level::Warn),
        "INFO" | "NOTICE" => Some(Level::Info),
        "DEBUG" | "TRACE" => Some(Level::Debug),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use owl_model::{Kind, LogRecord, format_timestamp};

    fn python(line: &str) -> LogRecord {
        let mut b = Builder::new();
        assert!(parse_python(line, &mut b), "{line}");
        b.finish(Utc::now())
    }

    #[test]
    fn crm_service_format_carries_every_logger_field() {
        let r = python(
            "2025-01-01 12:00:00,123 - foundation_service.api.v1.auth - ERROR - [1:12345] /app/foundation_service/api/v1/auth.py:45 auth.login - 用户登录失败：用户名或密码错误",
        );
        assert_eq!(format_timestamp(&r.timestamp), "2025-01-01T12:00:00.123Z");
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.logger.as_deref(), Some("foundation_service.api.v1.auth"));
        assert_eq!(r.process, Some(1));
        assert_eq!(r.thread, Some(12345));
        assert_eq!(r.file.as_deref(), Some("/app/foundation_service/api/v1/auth.py"));
        assert_eq!(r.line, Some(45));
        assert_eq!(r.module.as_deref(), Some("auth"));
        assert_eq!(r.function.as_deref(), Some("login"));
        assert_eq!(r.message, "用户登录失败：用户名或密码错误");
        assert_eq!(r.kind, Kind::Error);
    }

    #[test]
    fn common_python_formats() {
        let r = python("WARNING:root:disk almost full");
        assert_eq!(
            (r.level, r.logger.as_deref(), r.message.as_str()),
            (Level::Warn, Some("root"), "disk almost full")
        );
        let r = python("2025-01-01 12:00:00,001 - order_workflow.tasks - INFO - order 42 shipped");
        assert_eq!(r.logger.as_deref(), Some("order_workflow.tasks"));
        assert_eq!(r.message, "order 42 shipped");
        let r = python(
            "2025-01-01 12:00:00,001 [DEBUG] urllib3.connectionpool: Starting new HTTPS connection (1): x:443",
        );
        assert_eq!(r.level, Level::Debug);
        assert_eq!(r.message, "Starting new HTTPS connection (1): x:443");
        let r = python("2025-01-01 12:00:00.001 | WARNING  | app.main:startup:17 - slow start");
        assert_eq!(
            (r.module.as_deref(), r.function.as_deref(), r.line),
            (Some("app.main"), Some("startup"), Some(17))
        );
        assert_eq!(r.level, Level::Warn);
        let mut b = Builder::new();
        assert!(!parse_python("just some text", &mut b));
    }

    #[test]
    fn nginx_combined_with_request_time() {
        let mut b = Builder::new();
        let line = r#"192.168.1.100 - alice [07/Dec/2025:18:30:00 +0800] "POST /api/v1/forms?x=1 HTTP/1.1" 500 1234 "https://example.com/" "Mozilla/5.0 (X11)" 1.234"#;
        assert!(parse_combined(line, &mut b));
        let r = b.finish(Utc::now());
        assert_eq!(format_timestamp(&r.timestamp), "2025-12-07T10:30:00.000Z");
        let http = r.http.as_ref().unwrap();
        assert_eq!(
            (http.method.as_deref(), http.url.as_deref(), http.status_code),
            (Some("POST"), Some("/api/v1/forms?x=1"), Some(500))
        );
        assert_eq!(http.duration_ms, Some(1234.0));
        assert_eq!(r.message, "POST /api/v1/forms?x=1 | 500 | 1234ms");
        assert_eq!(r.level, Level::Error);
        assert_eq!(r.kind, Kind::Error);
        let client = r.client.as_ref().unwrap();
        assert_eq!(
            (client.ip.as_deref(), client.user_agent.as_deref()),
            (Some("192.168.1.100"), Some("Mozilla/5.0 (X11)"))
        );
        assert_eq!(r.user.as_ref().unwrap().name.as_deref(), Some("alice"));
        assert_eq!(r.extra.as_ref().unwrap()["referer"], "https://example.com/");
    }

    #[test]
    fn apache_common_and_microseconds() {
        let mut b = Builder::new();
        assert!(parse_combined(
            r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
            &mut b
        ));
        let r = b.finish(Utc::now());
        assert_eq!(r.kind, Kind::Http);
        assert_eq!(r.message, "GET /apache_pb.gif | 200");
        let mut b = Builder::new();
        assert!(parse_combined(
            r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 404 0 "-" "curl/8" 2500"#,
            &mut b
        ));
        let r = b.finish(Utc::now());
        assert_eq!(r.http.as_ref().unwrap().duration_ms, Some(2.5));
        assert_eq!(r.level, Level::Warn);
        let mut b = Builder::new();
        assert!(parse_combined(
            r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 5 "-" "curl/8" rt=0.050 uct="0.001""#,
            &mut b
        ));
        assert_eq!(b.finish(Utc::now()).http.unwrap().duration_ms, Some(50.0));
        let mut b = Builder::new();
        assert!(parse_combined(
            r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "\x16\x03\x01" 400 157 "-" "-""#,
            &mut b
        ));
        let r = b.finish(Utc::now());
        assert_eq!(r.status_code(), Some(400));
        assert!(!parse_combined("not an access log", &mut Builder::new()));
    }

    #[test]
    fn user_regex_maps_common_names() {
        let re = Regex::new(r"^(?P<time>\S+) (?P<severity>\w+) \[(?P<trace_id>[^\]]*)\] (?P<msg>.*?)(?: user=(?P<tenant>\w+))?$").unwrap();
        let mut b = Builder::new();
        assert!(parse_regex(
            &re,
            "2025-01-01T00:00:00Z WARN [CN-1-x] quota low user=acme",
            &mut b
        ));
        let r = b.finish(Utc::now());
        assert_eq!(r.level, Level::Warn);
        assert_eq!(r.trace_id(), Some("CN-1-x"));
        assert_eq!(r.message, "quota low");
        assert_eq!(r.extra.unwrap()["tenant"], "acme");
    }

    #[test]
    fn plain_lines_keep_everything_and_sniff_level_and_time() {
        let mut b = Builder::new();
        parse_plain("2025-01-01T08:00:00+08:00 [error] upstream timed out", &mut b);
        let r = b.finish(Utc::now());
        assert_eq!(r.message, "2025-01-01T08:00:00+08:00 [error] upstream timed out");
        assert_eq!(r.level, Level::Error);
        assert_eq!(format_timestamp(&r.timestamp), "2025-01-01T00:00:00.000Z");
        let mut b = Builder::new();
        parse_plain("Information superhighway errors are fine", &mut b);
        assert_eq!(b.finish(Utc::now()).level, Level::Info);
        let mut b = Builder::new();
        parse_plain("W0101 main.go:1] WARN disk", &mut b);
        assert_eq!(b.finish(Utc::now()).level, Level::Warn);
    }
}
