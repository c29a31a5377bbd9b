//! Line parsers: text of one record (a line, or lines joined by multiline) into a [`LogRecord`].
//!
//! Every parser falls back to a plain record (the text as the message): a line is never dropped
//! because it does not match. Continuation lines of a joined record (a stack trace after the
//! first line) become the record's `exception`, and the exception's type and message are picked
//! out of Python tracebacks and Java stack traces.

mod fields;
mod json;
pub mod runtime;
pub mod syslog;
mod text;

use chrono::{DateTime, Utc};
use owl_config::ParserKind;
use owl_model::LogRecord;
use regex::Regex;

use fields::Builder;

/// A parser could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ParserError {
    /// The user regex does not compile.
    #[error("parser regex `{pattern}` is not valid: {source}")]
    BadRegex {
        /// The pattern.
        pattern: String,
        /// Why.
        source: regex::Error,
    },
    /// `parser = "regex"` without a regex.
    #[error("parser `regex` needs a regex with named captures")]
    MissingRegex,
}

/// A configured line parser.
#[derive(Debug, Clone)]
pub struct Parser {
    kind: ParserKind,
    regex: Option<Regex>,
}

/// What a parser made of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The record (without id, host or service enrichment).
    pub record: LogRecord,
    /// Whether the configured format matched; `false` means the plain fallback was used.
    pub matched: bool,
}

impl Parser {
    /// Builds a parser; `regex` is used by [`ParserKind::Regex`] only.
    pub fn new(kind: ParserKind, regex: &str) -> Result<Parser, ParserError> {
        let regex = match kind {
            ParserKind::Regex if regex.is_empty() => return Err(ParserError::MissingRegex),
            ParserKind::Regex => Some(Regex::new(regex).map_err(|source| ParserError::BadRegex {
                pattern: regex.to_string(),
                source,
            })?),
            _ => None,
        };
        Ok(Parser { kind, regex })
    }

    /// The configured kind.
    pub fn kind(&self) -> ParserKind {
        self.kind
    }

    /// Parses one record's text; `now` is the time of a record that carries none.
    pub fn parse(&self, text: &str, now: DateTime<Utc>) -> Parsed {
        self.parse_with(text, now, None)
    }

    /// As [`Parser::parse`], with the level of a record whose text names none (a syslog
    /// severity).
    pub fn parse_with(&self, text: &str, now: DateTime<Utc>, level: Option<owl_model::Level>) -> Parsed {
        let (first, rest) = match text.split_once('\n') {
            Some((first, rest)) => (first, Some(rest)),
            None => (text, None),
        };
        let mut builder = Builder::new();
        // Whether the parser consumed the whole text (JSON, user regex) rather than its first line.
        let mut whole = matches!(self.kind, ParserKind::Json | ParserKind::Regex);
        let matched = match self.kind {
            ParserKind::Json => self.json(text, &mut builder),
            ParserKind::Python => text::parse_python(first, &mut builder),
            ParserKind::Combined => text::parse_combined(first, &mut builder),
            ParserKind::Regex => {
                let re = self
                    .regex
                    .as_ref()
                    .expect("Parser::new requires a regex for ParserKind::Regex");
                text::parse_regex(re, text, &mut builder)
            }
            ParserKind::Plain => false,
            // The runtime envelopes are taken off by the reader; their content is parsed as `auto`.
            ParserKind::Auto | ParserKind::Cri | ParserKind::Docker => {
                if looks_like_json(text) && self.json(text, &mut builder) {
                    whole = true;
                    true
                } else {
                    text::parse_python(first, &mut builder)
                        || (first
                            .as_bytes()
                            .first()
                            .is_some_and(|b| b.is_ascii_hexdigit() || *b == b':')
                            && text::parse_combined(first, &mut builder))
                }
            }
        };
        if !matched {
            let mut builder = Builder::new();
            builder.default_level = level;
            text::parse_plain(text, &mut builder);
            let fallback = !matches!(
                self.kind,
                ParserKind::Plain | ParserKind::Auto | ParserKind::Cri | ParserKind::Docker
            );
            return Parsed {
                record: with_stack(builder, rest, now, false),
                matched: !fallback,
            };
        }
        let rest = if whole { None } else { rest };
        builder.default_level = level;
        Parsed {
            record: with_stack(builder, rest, now, true),
            matched: true,
        }
    }

    fn json(&self, text: &str, builder: &mut Builder) -> bool {
        let mut attempt = Builder::new();
        if json::parse_into(text, &mut attempt).is_ok() {
            *builder = attempt;
            true
        } else {
            false
        }
    }
}

fn looks_like_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Finishes a record, putting continuation lines into `exception` (structured formats) and
/// naming the exception from a stack trace.
fn with_stack(mut builder: Builder, rest: Option<&str>, now: DateTime<Utc>, structured: bool) -> LogRecord {
    let stack = rest.map(str::trim_end).filter(|r| !r.trim().is_empty());
    let named = stack.and_then(exception_name);
    let mut record = {
        if let (Some(stack), true) = (stack, structured) {
            builder.set_target(
                fields::Target::Exception,
                "exception",
                fields::Scalar::Str(stack.to_string()),
            );
        }
        builder.finish(now)
    };
    if let Some((error_type, message)) = named {
        let error = record.error.get_or_insert_with(Default::default);
        if error.error_type.is_none() && error.message.is_none() {
            error.error_type = Some(error_type);
            error.message = message;
            record.kind = record.classify();
        }
    }
    record
}

/// `(type, message)` of the exception a stack trace is about: the last unindented line of a
/// Python traceback, or the first line of a Java/Rust-style trace.
fn exception_name(stack: &str) -> Option<(String, Option<String>)> {
    let candidate = if stack.contains("Traceback (most recent call last):") {
        stack
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty() && !l.starts_with([' ', '\t']))?
    } else {
        stack
            .lines()
            .find(|l| !l.trim().is_empty())?
            .trim_start_matches("Caused by: ")
    };
    let (name, message) = match candidate.split_once(": ") {
        Some((name, message)) => (name, Some(message.trim().to_string())),
        None => (candidate.trim_end_matches(':'), None),
    };
    let is_type = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '$'))
        && [
            "Error",
            "Exception",
            "Exit",
            "Interrupt",
            "Warning",
            "Throwable",
            "Fault",
        ]
        .iter()
        .any(|suffix| name.ends_with(suffix));
    is_type.then(|| (name.to_string(), message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use owl_model::{Kind, Level};

    fn now() -> DateTime<Utc> {
        owl_model::parse_timestamp("2025-06-01T00:00:00Z").unwrap()
    }

    #[test]
    fn auto_picks_the_format() {
        let parser = Parser::new(ParserKind::Auto, "").unwrap();
        assert_eq!(parser.parse(r#"{"msg":"j"}"#, now()).record.message, "j");
        assert_eq!(
            parser.parse("INFO:root:p", now()).record.logger.as_deref(),
            Some("root")
        );
        let access = parser.parse(
            r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET / HTTP/1.1" 200 1"#,
            now(),
        );
        assert_eq!(access.record.kind, Kind::Http);
        let plain = parser.parse("{not json", now());
        assert_eq!(plain.record.message, "{not json");
        assert!(plain.matched);
    }

    #[test]
    fn configured_parsers_fall_back_to_plain() {
        for kind in [ParserKind::Json, ParserKind::Python, ParserKind::Combined] {
            let parsed = Parser::new(kind, "").unwrap().parse("hello world", now());
            assert!(!parsed.matched, "{kind:?}");
            assert_eq!(parsed.record.message, "hello world");
            assert_eq!(parsed.record.timestamp, now());
        }
        let parsed = Parser::new(ParserKind::Regex, r"^(?P<level>\w+) (?P<message>.*)$")
            .unwrap()
            .parse("", now());
        assert!(!parsed.matched);
        assert!(matches!(
            Parser::new(ParserKind::Regex, ""),
            Err(ParserError::MissingRegex)
        ));
        assert!(matches!(
            Parser::new(ParserKind::Regex, "("),
            Err(ParserError::BadRegex { .. })
        ));
    }

    #[test]
    fn python_traceback_becomes_the_exception() {
        let text = "2025-01-01 12:00:00,123 - app.views - ERROR - request failed\n\
                    Traceback (most recent call last):\n  File \"/app/views.py\", line 10, in get\n    1 / 0\n\
                    ZeroDivisionError: division by zero";
        let record = Parser::new(ParserKind::Python, "")
            .unwrap()
            .parse(text, now())
            .record;
        assert_eq!(record.message, "request failed");
        assert!(record.exception.as_deref().unwrap().starts_with("Traceback"));
        let error = record.error.unwrap();
        assert_eq!(error.error_type.as_deref(), Some("ZeroDivisionError"));
        assert_eq!(error.message.as_deref(), Some("division by zero"));
        assert_eq!(record.level, Level::Error);
    }

    #[test]
    fn java_trace_in_a_plain_record() {
        let text = "Exception in thread \"main\" boom\njava.lang.IllegalStateException: bad state\n\tat a.B.c(B.java:1)";
        let record = Parser::new(ParserKind::Auto, "")
            .unwrap()
            .parse(text, now())
            .record;
        assert_eq!(record.message, text);
        assert_eq!(
            record.error.unwrap().error_type.as_deref(),
            Some("java.lang.IllegalStateException")
        );
        assert_eq!(record.kind, Kind::Error);
    }

    #[test]
    fn pretty_printed_json_joined_by_multiline() {
        let text = "{\n  \"msg\": \"multi\",\n  \"level\": \"warn\"\n}";
        let record = Parser::new(ParserKind::Auto, "")
            .unwrap()
            .parse(text, now())
            .record;
        assert_eq!(record.message, "multi");
        assert_eq!(record.level, Level::Warn);
        assert_eq!(record.exception, None);
    }

    fn round_trips_through_the_wire(record: &LogRecord) {
        let line = serde_json::to_vec(record).unwrap();
        let back = LogRecord::from_json_slice(&line, now());
        assert!(
            back.is_ok(),
            "{:?} for {}",
            back.err(),
            String::from_utf8_lossy(&line)
        );
    }

    #[test]
    fn absurd_times_are_kept_but_not_used() {
        let record = Parser::new(ParserKind::Json, "")
            .unwrap()
            .parse(r#"{"ts":1e17,"msg":"x"}"#, now())
            .record;
        assert_eq!(record.timestamp, now());
        assert!(record.extra.unwrap().contains_key("ts"));
    }

    fn json_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,20}".prop_map(serde_json::Value::from),
            "(2025-01-01T00:00:00Z|2025-01-01 12:00:00,123|ERROR|warn|[0-9]{10,13}|/api/x|POST)"
                .prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            let key = "(level|msg|message|ts|time|@timestamp|trace|trace_id|traceId|span_id|http|status|url|path|method|duration_ms|user|user_id|client|service|error|err|log|event|host|extra|line|thread|process|exc_info|kind|id|[a-z.@]{1,8})";
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
                proptest::collection::btree_map(key, inner, 0..6)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn any_text_becomes_a_record_that_round_trips(text in "(?s).{0,300}") {
            for kind in [ParserKind::Auto, ParserKind::Json, ParserKind::Python, ParserKind::Combined, ParserKind::Plain] {
                let parsed = Parser::new(kind, "").unwrap().parse(&text, now());
                round_trips_through_the_wire(&parsed.record);
            }
        }

        #[test]
        fn any_json_object_becomes_a_record_that_round_trips(value in json_value()) {
            let text = value.to_string();
            let parsed = Parser::new(ParserKind::Json, "").unwrap().parse(&text, now());
            proptest::prop_assert_eq!(parsed.matched, value.is_object());
            round_trips_through_the_wire(&parsed.record);
        }

        #[test]
        fn access_log_lines_parse_whatever_their_fields(
            ip in "[0-9a-f.:]{1,39}",
            user in "[a-z-]{1,8}",
            method in "[A-Z]{3,7}",
            url in "/[ -~&&[^\" ]]{0,40}",
            status in 100u16..600,
            bytes in 0u64..10_000_000,
            ua in "[ -~&&[^\"\\\\]]{0,40}",
            rt in 0u32..100_000,
        ) {
            let line = format!(
                r#"{ip} - {user} [07/Dec/2025:18:30:00 +0800] "{method} {url} HTTP/1.1" {status} {bytes} "-" "{ua}" {}.{:03}"#,
                rt / 1000, rt % 1000
            );
            let parsed = Parser::new(ParserKind::Combined, "").unwrap().parse(&line, now());
            proptest::prop_assert!(parsed.matched, "{}", line);
            let http = parsed.record.http.clone().unwrap();
            proptest::prop_assert_eq!(http.status_code, Some(status));
            proptest::prop_assert_eq!(http.method.as_deref(), Some(method.as_str()));
            proptest::prop_assert_eq!(http.url.as_deref(), Some(url.as_str()));
            proptest::prop_assert_eq!(http.duration_ms, Some(f64::from(rt)));
            round_trips_through_the_wire(&parsed.record);
        }

        #[test]
        fn python_lines_keep_their_message(
            logger in "[a-z_]{1,10}(\\.[a-z_]{1,10}){0,3}",
            level in "(DEBUG|INFO|WARNING|ERROR|CRITICAL)",
            message in "[^\n]{0,80}",
            line_no in 1u64..100_000,
        ) {
            let text = format!(
                "2025-01-01 12:00:00,123 - {logger} - {level} - [7:140234] /app/{logger}.py:{line_no} mod.func - {message}"
            );
            let parsed = Parser::new(ParserKind::Python, "").unwrap().parse(&text, now());
            proptest::prop_assert!(parsed.matched);
            proptest::prop_assert_eq!(&parsed.record.message, &message);
            proptest::prop_assert_eq!(parsed.record.line, Some(line_no));
            proptest::prop_assert_eq!(parsed.record.logger.as_deref(), Some(logger.as_str()));
            round_trips_through_the_wire(&parsed.record);
        }
    }
}
